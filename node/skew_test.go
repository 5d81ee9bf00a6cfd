package node_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/dboutique/dboutique/node"
	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/node/store/storetest"
)

// TestDefect6_FarClockRefused: defect 6. Nodes accepted versions up to an
// hour ahead, while tombstones are collected after TombstoneGrace by the
// local clock; a node whose clock ran ahead collected them early, and a
// delete could come back. Now a member whose clock is further off than
// Config.MaxClockSkew is not let in, and the node says why, naming it and
// its skew.
func TestDefect6_FarClockRefused(t *testing.T) {
	net := newMemNet()
	core, logs := observer.New(zapcore.WarnLevel)
	a := startMemNodeWith(t, net, "a", nil, func(c *node.Config) { c.Logger = zap.New(core) })
	ahead := func(c *node.Config) { c.Now = func() time.Time { return time.Now().Add(time.Hour) } }
	b := startMemNodeWith(t, net, "b", nil, ahead, "/mem/id-a")
	waitFor(t, "a to log that it refuses b's clock", func() bool {
		for _, e := range logs.FilterMessageSnippet("clock is off").All() {
			f := e.ContextMap()
			// An hour, give or take the round trip it is measured over.
			if skew := f["skew"].(time.Duration); f["name"] == "b" && skew > time.Hour-time.Second && skew < time.Hour+time.Second {
				return true
			}
		}
		return false
	})
	// Proving that something does not happen: a few probe rounds.
	if pollFor(10*20*time.Millisecond, func() bool { return stateOf(a, b.ID()) == node.StateAlive || stateOf(b, a.ID()) == node.StateAlive }) {
		t.Errorf("a node an hour ahead joined: a sees b %v, b sees a %v", stateOf(a, b.ID()), stateOf(b, a.ID()))
	}
	_, err := b.Execute(context.Background(), storetest.Create("bucket"))
	if !errors.Is(err, node.ErrUnavailable) {
		t.Errorf("CREATE through b, which never joined: %v, want ErrUnavailable", err)
	}
}

// TestDefect6_DeleteOutlivesSkew: with every clock within MaxClockSkew of
// the others, a delete is remembered everywhere for TombstoneGrace minus
// MaxClockSkew, even by a node whose clock runs ahead by almost that much.
// Three nodes, each holding every bucket; one is cut off while a key is
// deleted, and comes back just before that bound with the old value: the
// key stays deleted. (On the bubble's fake clock, so a minute passes at
// once.)
func TestDefect6_DeleteOutlivesSkew(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			grace = time.Minute
			skew  = 9 * time.Second
			limit = 10 * time.Second // MaxClockSkew
		)
		net := newSimNet(6)
		nodes := startSkewed(t, net, []time.Duration{0, 0, skew}, func(c *node.Config) {
			c.TombstoneGrace, c.MaxClockSkew = grace, limit
		})
		p, r, c := nodes[0], nodes[1], nodes[2]
		settle := func(ns ...*node.Node) {
			for !converged(ns) || !allSettled(ns) {
				time.Sleep(50 * time.Millisecond)
			}
		}
		settle(nodes...)
		// A bucket whose primary is p, whose clock is right: its
		// versions, the delete's included, come from p's clock, and c's
		// runs 9 seconds ahead of them.
		bucket := ""
		for i := 0; bucket == ""; i++ {
			if o, err := p.Owners(bucketName(i)); err == nil && o[0].ID == p.ID() {
				bucket = bucketName(i)
			}
		}
		mustExec(t, p, storetest.Create(bucket))
		mustExec(t, p, storetest.Put(bucket, "k", "v"))
		settle(nodes...)

		// Cut r off; once p and c see it dead, delete k.
		for _, other := range []string{p.ID(), c.ID()} {
			net.setCut(r.ID(), other, true)
			net.setCut(other, r.ID(), true)
		}
		settle(p, c)
		mustExec(t, p, storetest.Del(bucket, "k"))
		deleted := time.Now()
		tombstone := func(n *node.Node) bool {
			es, _, _ := n.Store().Page(bucket, store.ShardOf("k"), "", 1<<20)
			for _, e := range es {
				if e.Key == "k" {
					return e.Deleted
				}
			}
			return false
		}

		// Just inside the bound, p and c still remember the delete, and
		// r comes back with k = v.
		time.Sleep(grace - limit - time.Second - time.Since(deleted))
		for _, n := range []*node.Node{p, c} {
			if !tombstone(n) {
				t.Errorf("%s forgot the delete %v after it, within TombstoneGrace-MaxClockSkew", n.Name(), time.Since(deleted))
			}
		}
		net.healAll()
		settle(nodes...)
		for _, n := range nodes {
			if res, err := n.Execute(context.Background(), storetest.Get(bucket, "k")); !errors.Is(err, store.ErrKeyNotFound) {
				t.Errorf("GET k through %s, %v after its delete: %q, %v; want it deleted", n.Name(), time.Since(deleted), res.Value, err)
			}
		}
	})
}

// allSettled reports whether every node's copies are where its view wants
// them.
func allSettled(nodes []*node.Node) bool {
	for _, n := range nodes {
		if !n.Settled() {
			return false
		}
	}
	return true
}
