package gossip_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/dboutique/dboutique/node/gossip"
)

const (
	typePacket = 1
	typeStream = 2
)

// net is an in-memory network of engines; cut members neither send nor
// receive.
type memNet struct {
	mu      sync.Mutex
	engines map[string]*gossip.Engine
	cut     map[string]bool
}

func (m *memNet) caller(from string) gossip.Caller { return caller{m, from} }

type caller struct {
	m    *memNet
	from string
}

func (c caller) Call(ctx context.Context, to string, req []byte) ([]byte, error) {
	c.m.mu.Lock()
	e := c.m.engines[to]
	cut := c.m.cut[to] || c.m.cut[c.from]
	c.m.mu.Unlock()
	if e == nil || cut {
		return nil, errors.New("unreachable")
	}
	switch req[0] {
	case typePacket:
		return nil, e.HandlePacket(c.from, req[1:])
	case typeStream:
		return e.HandleStream(ctx, c.from, req[1:])
	}
	return nil, errors.New("unknown type")
}

// recorder keeps what Events heard.
type recorder struct {
	mu    sync.Mutex
	alive map[string]string // id -> meta
	gone  map[string]bool   // id -> left
}

func (r *recorder) Alive(id string, meta []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.alive[id] = string(meta)
	delete(r.gone, id)
}

func (r *recorder) Gone(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.alive, id)
	r.gone[id] = true
}

func (r *recorder) snapshot() (alive map[string]string, gone map[string]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	alive, gone = make(map[string]string), make(map[string]bool)
	for k, v := range r.alive {
		alive[k] = v
	}
	for k, v := range r.gone {
		gone[k] = v
	}
	return alive, gone
}

type member struct {
	id  string
	e   *gossip.Engine
	rec *recorder
}

func startMembers(t *testing.T, n int) (*memNet, []*member) {
	t.Helper()
	return startMembersWith(t, n, nil)
}

// startMembersWith starts n engines, tweak changing each one's
// configuration first, and joins them all through the first.
func startMembersWith(t *testing.T, n int, tweak func(id string, c *gossip.Config)) (*memNet, []*member) {
	t.Helper()
	m := &memNet{engines: make(map[string]*gossip.Engine), cut: make(map[string]bool)}
	var ms []*member
	for i := range n {
		id := fmt.Sprintf("peer-%d", i)
		rec := &recorder{alive: make(map[string]string), gone: make(map[string]bool)}
		cfg := gossip.Config{
			ID: id, Caller: m.caller(id), PacketType: typePacket, StreamType: typeStream,
			Events: rec, Meta: func() []byte { return []byte("meta of " + id) },
			ProbeInterval: 50 * time.Millisecond, DeadAfter: 300 * time.Millisecond, Log: testLog(t, id),
		}
		if tweak != nil {
			tweak(id, &cfg)
		}
		e, err := gossip.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		m.mu.Lock()
		m.engines[id] = e
		m.mu.Unlock()
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = e.Close() })
		ms = append(ms, &member{id, e, rec})
	}
	for _, mb := range ms[1:] {
		if _, err := mb.e.Join(ms[0].id); err != nil {
			t.Fatal(err)
		}
	}
	return m, ms
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestEngineJoinDeathAndLeave(t *testing.T) {
	net, ms := startMembers(t, 4)
	waitFor(t, "every member sees the others alive", func() bool {
		for _, mb := range ms {
			alive, _ := mb.rec.snapshot()
			if len(alive) != len(ms) { // itself included
				return false
			}
		}
		return true
	})
	if alive, _ := ms[1].rec.snapshot(); alive["peer-2"] != "meta of peer-2" {
		t.Fatalf("peer-1 has peer-2's metadata %q", alive["peer-2"])
	}

	// A member cut off is declared dead by the others.
	net.mu.Lock()
	net.cut["peer-3"] = true
	net.mu.Unlock()
	suspected := false
	waitFor(t, "peer-3 declared dead", func() bool {
		for _, mb := range ms[:3] {
			suspected = suspected || mb.e.Suspects()["peer-3"]
		}
		for _, mb := range ms[:3] {
			if _, gone := mb.rec.snapshot(); !has(gone, "peer-3") {
				return false
			}
		}
		return true
	})
	if st := ms[0].e.Stats(); st.Probes == 0 || st.Sent == 0 || st.Received == 0 {
		t.Fatalf("stats count no work: %+v", st)
	}
	var suspicions uint64
	for _, mb := range ms[:3] {
		suspicions += mb.e.Stats().Suspicions
		if mb.e.Suspects()["peer-3"] {
			t.Errorf("%s still suspects peer-3 once it is dead", mb.id)
		}
	}
	if suspicions == 0 {
		t.Error("nobody counted a suspicion of peer-3 before its death")
	}
	t.Logf("peer-3 seen suspect before its death: %v", suspected)

	// A member that leaves is reported gone at once, without a suspicion.
	if err := ms[2].e.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "peer-2 left", func() bool {
		_, gone := ms[0].rec.snapshot()
		return has(gone, "peer-2")
	})
	for _, mb := range ms {
		if err := mb.e.Close(); err != nil {
			t.Fatal(err)
		}
		if err := mb.e.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	}
}

// TestStateInPushPull: both sides of a push/pull (a join is one) receive
// the other's Config.State; a state over MaxState is not sent.
func TestStateInPushPull(t *testing.T) {
	var mu sync.Mutex
	got := make(map[string][]string) // receiver -> the states it received
	_, ms := startMembersWith(t, 3, func(id string, c *gossip.Config) {
		c.State = func() []byte {
			if id == "peer-2" {
				return make([]byte, gossip.MaxState+1)
			}
			return []byte("state of " + id)
		}
		c.MergeState = func(s []byte) {
			mu.Lock()
			defer mu.Unlock()
			got[id] = append(got[id], string(s))
		}
	})
	received := func(to, state string) bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(got[to], state)
	}
	waitFor(t, "each side of the joins to receive the other's state", func() bool {
		return received("peer-0", "state of peer-1") && received("peer-1", "state of peer-0") && received("peer-2", "state of peer-0")
	})
	for _, mb := range ms {
		_ = mb.e.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	for to, states := range got {
		for _, s := range states {
			if s != "state of peer-0" && s != "state of peer-1" {
				t.Errorf("%s received a state of %d bytes; peer-2's is over MaxState and must not be sent", to, len(s))
			}
		}
	}
}

func TestConfigMustFail(t *testing.T) {
	ok := gossip.Config{ID: "a", Caller: caller{}, PacketType: 1, StreamType: 2, Events: &recorder{}, Meta: func() []byte { return nil }}
	for name, mutate := range map[string]func(*gossip.Config){
		"no ID":         func(c *gossip.Config) { c.ID = "" },
		"no caller":     func(c *gossip.Config) { c.Caller = nil },
		"no events":     func(c *gossip.Config) { c.Events = nil },
		"no meta":       func(c *gossip.Config) { c.Meta = nil },
		"same types":    func(c *gossip.Config) { c.StreamType = c.PacketType },
		"dead too soon": func(c *gossip.Config) { c.ProbeInterval, c.DeadAfter = time.Second, 1500*time.Millisecond },
		"tiny interval": func(c *gossip.Config) { c.ProbeInterval, c.DeadAfter = time.Microsecond, time.Second },
	} {
		c := ok
		mutate(&c)
		if _, err := gossip.New(c); !errors.Is(err, gossip.ErrConfig) {
			t.Errorf("%s: New returned %v, want ErrConfig", name, err)
		}
	}
	if _, err := gossip.New(ok); err != nil {
		t.Fatalf("valid config: %v", err)
	}
}

func TestHandleCapsAndClose(t *testing.T) {
	_, ms := startMembers(t, 1)
	e := ms[0].e
	if err := e.HandlePacket("x", make([]byte, gossip.MaxPacket+1)); !errors.Is(err, gossip.ErrTooLarge) {
		t.Fatalf("oversized packet: %v", err)
	}
	if _, err := e.HandleStream(context.Background(), "x", make([]byte, gossip.MaxStream+1)); !errors.Is(err, gossip.ErrTooLarge) {
		t.Fatalf("oversized stream: %v", err)
	}
	// Garbage is memberlist's to refuse; it must not hang or crash.
	if err := e.HandlePacket("x", []byte{0xff, 1, 2, 3}); err != nil {
		t.Fatalf("garbage packet: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.HandleStream(ctx, "x", []byte{0xff, 1, 2, 3}); err != nil && ctx.Err() != nil {
		t.Fatalf("garbage stream hung: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.HandlePacket("x", []byte{0}); !errors.Is(err, gossip.ErrClosed) {
		t.Fatalf("packet after Close: %v", err)
	}
	if _, err := e.Join("peer-9"); !errors.Is(err, gossip.ErrClosed) {
		t.Fatalf("Join after Close: %v", err)
	}
}

func testLog(t *testing.T, id string) *zap.Logger {
	if testing.Verbose() {
		return zaptest.NewLogger(t).Named(id)
	}
	return nil
}

func has(m map[string]bool, k string) bool {
	_, ok := m[k]
	return ok
}
