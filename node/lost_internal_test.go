package node

import (
	"context"
	"fmt"
	"testing"
)

// silentTransport reaches nobody.
type silentTransport struct{}

func (silentTransport) ID() string                                                  { return "id-self" }
func (silentTransport) Addrs() []string                                             { return nil }
func (silentTransport) Serve(func(context.Context, string, []byte) ([]byte, error)) {}
func (silentTransport) Call(context.Context, string, []byte) ([]byte, error) {
	return nil, context.Canceled
}
func (silentTransport) AddAddrs(string, []string)                       {}
func (silentTransport) Connect(context.Context, string) (string, error) { return "", context.Canceled }

// TestDeathsKeepNoCaches: found by an adversarial review. Every death
// (lost.go) keeps the view where the copies were for defaultForgetAfter,
// and a member in a crash loop makes a death, and a view, at every
// restart: each view kept whole held its cache of primaries (up to
// maxCachedPrimaries buckets), hundreds of MiB after a thousand restarts.
// Deaths are bounded in number, and keep their views without the caches.
func TestDeathsKeepNoCaches(t *testing.T) {
	n, err := New(Config{Name: "self", Transport: silentTransport{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	const buckets = 200
	n.mu.Lock()
	e := n.addLocked(Member{ID: "id-x", Name: "x", Addrs: []string{"/x"}})
	e.State, e.Incarnation = StateAlive, 1
	n.rebuildLocked()
	n.mu.Unlock()
	for inc := uint64(2); inc < maxDeaths+100; inc++ {
		v := n.view.Load()
		for b := range buckets {
			_, _ = v.primary(fmt.Sprintf("bucket%05d", b))
		}
		n.mu.Lock()
		e.Incarnation = inc // x restarted: a new life, a new view, a death
		n.rebuildLocked()
		n.mu.Unlock()
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.deaths) != maxDeaths {
		t.Errorf("%d deaths remembered after %d restarts; want the latest %d", len(n.deaths), maxDeaths+98, maxDeaths)
	}
	for _, d := range n.deaths {
		if c := d.before.cached.Load(); c != 0 {
			t.Fatalf("a death keeps a view with %d cached primaries", c)
		}
		if owners, err := d.before.owners("bucket00000", 1); err != nil || len(owners) != 1 {
			t.Fatalf("a death's view no longer places buckets: %v, %v", owners, err)
		}
	}
}
