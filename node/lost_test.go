package node_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dboutique/dboutique/node"
	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/node/store/storetest"
)

// TestRestartedCutOffSaysUnreachable: a node that has just restarted owns
// buckets whose copies are still on their way to it; cut off then (no
// --min-members, so it goes on serving on its side), it must answer
// unreachable for them, not NOT FOUND: it does not hold its share yet. The
// fault schedules found it: a node counted itself a holder of every bucket
// of a view it had settled in, and a node with nothing to hand anyone
// settles at once. Now it counts itself a holder only once every other
// member has confirmed that it lacks nothing of theirs.
func TestRestartedCutOffSaysUnreachable(t *testing.T) {
	for i := range 3 {
		synctest.Test(t, func(t *testing.T) {
			plan := simPlan{mode: "ap", start: 3, replicas: 3, maxNodes: 3}
			sc := newSimScenario(t, uint64(40+i), plan)
			ns := sc.form()
			var buckets []string
			for b := range 10 {
				buckets = append(buckets, bucketName(b))
				sc.mustDo(ns[0], storetest.Create(bucketName(b)))
				sc.mustDo(ns[0], storetest.Put(bucketName(b), "k", "v"))
			}
			sc.settle("the copies to settle")
			r := ns[1]
			sc.crash(r)
			sc.settle("the two others to settle")

			// A slow network: the restarted node's copies take a few
			// round trips to come; it is cut off as soon as its own pass
			// (it has nothing to hand anyone) has settled.
			sc.net.setQuality(80*time.Millisecond, 0)
			sc.boot(r, []string{"/sim/" + ns[2].id})
			for !sc.nodeOf(r).Settled() || len(sc.nodeOf(r).Members()) < 3 {
				time.Sleep(time.Millisecond)
			}
			for _, o := range []*simNode{ns[0], ns[2]} {
				sc.net.setCut(o.id, r.id, true)
				sc.net.setCut(r.id, o.id, true)
			}
			time.Sleep(3 * simDeadAfter) // until it holds the others dead
			for _, b := range buckets {
				if _, err := sc.try(r, storetest.Get(b, "k")); errors.Is(err, store.ErrBucketNotFound) {
					t.Fatalf("GET %s k through the cut-off restarted node: NOT FOUND; want its value, or unreachable", b)
				}
			}
			sc.heal()
		})
	}
}

// TestLostCopiesOfARestartedOwner: found by an adversarial review. lost.go
// decides that a bucket's copies are gone when every owner of the bucket in
// the view where they were is no longer in the current view, and it asked
// the view by peer ID. An owner that crashed and restarted at once (same
// peer ID, new incarnation, empty store) was in the current view by ID, so
// it counted as still holding its copy, and its restart was no death at
// all: a primary that found no record answered NOT FOUND for a bucket that
// exists. Here both owners of a bucket crash together (more than
// Replicas-1: the data is gone, which the design accepts); the third node
// must answer unreachable, as it does when neither owner comes back.
func TestLostCopiesOfARestartedOwner(t *testing.T) {
	for _, restart := range []bool{false, true} {
		name := "both owners stay dead"
		if restart {
			name = "one owner restarts at once"
		}
		t.Run(name, func(t *testing.T) {
			net := newMemNet()
			tweak := replicas(2)
			nodes := startReplicated(t, net, tweak, "a", "b", "c")
			const b = "tomato"
			o := mustOwners(t, nodes[0], b, 2)
			x, y := find(nodes, o[0].ID), find(nodes, o[1].ID)
			z := nodes[slices.IndexFunc(nodes, func(n *node.Node) bool { return n != x && n != y })]
			mustExec(t, z, storetest.Create(b))
			mustExec(t, z, storetest.Put(b, "k", "v"))
			eventually(t, "the copies to settle", func() error { return settled(nodes, b) })

			kill(net, x)
			kill(net, y)
			survivors := []*node.Node{z}
			if restart {
				net.setDown(y.ID(), false)
				survivors = append(survivors, startMemNodeWith(t, net, y.Name(), nil, tweak, "/mem/"+z.ID()))
			}
			waitFor(t, z.Name()+" to see "+x.Name()+" dead", func() bool { return stateOf(z, x.ID()) == node.StateDead })
			waitConverged(t, survivors)
			if restart && slices.ContainsFunc(survivors[1].Store().Records(), func(r string) bool { return r == b }) {
				t.Fatalf("%s's new life holds %s: the test expected its copy lost", y.Name(), b)
			}
			_, err := readEventually(z, b, "k", 5*time.Second)
			var ue *node.UnreachableError
			if !errors.As(err, &ue) {
				t.Fatalf("GET %s k through %s, after both owners (%s, %s) crashed: %v; want unreachable, never NOT FOUND",
					b, z.Name(), x.Name(), y.Name(), err)
			}
			t.Logf("GET %s k: %v", b, err)
		})
	}
}

// TestRestartedThenLeftIsADeath: found by an adversarial review. A member
// whose entry had the view's incarnation and was not dead was taken for
// one that left, but a goodbye never told its incarnation: when an owner
// crashed and its next life left before this node heard from it otherwise
// (a crash-looping node stopped during its start), the old life's death
// went unrecorded, and the primary answered NOT FOUND for a bucket whose
// only copy died with it, as TestLostCopiesOfARestartedOwner forbids.
// Goodbyes now carry the sender's incarnation.
func TestRestartedThenLeftIsADeath(t *testing.T) {
	net := newMemNet()
	nodes := startReplicated(t, net, replicas(1), "n", "x")
	n, x := nodes[0], nodes[1]
	var b string
	for i := 0; ; i++ {
		if b = bucketName(i); mustOwners(t, n, b, 1)[0].ID == x.ID() {
			break
		}
	}
	mustExec(t, n, storetest.Create(b))
	mustExec(t, n, storetest.Put(b, "k", "v"))

	// n's probes of x's next life do not get through (it would refuse
	// them anyway once it leaves; this closes the start-up window).
	net.setLinkHung(n.ID(), x.ID(), ofType(node.MsgPing))
	kill(net, x)
	net.setDown(x.ID(), false)
	x2 := startMemNodeWith(t, net, "x", nil, replicas(1), "/mem/"+n.ID())
	go x2.Leave(context.Background())
	waitFor(t, "n to see x leave", func() bool { return stateOf(n, x.ID()) == node.StateLeft })
	_, err := readEventually(n, b, "k", 3*time.Second)
	var ue *node.UnreachableError
	if !errors.As(err, &ue) {
		t.Fatalf("GET %s k through %s after %s (the only copy) crashed, and its next life left: %v; want unreachable, never NOT FOUND",
			b, n.Name(), x.Name(), err)
	}
}
