package node_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dboutique/dboutique/node"
	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/node/store/storetest"
)

// Defects of failure detection and of links: a link lost one way, a write
// while a failure is being detected, a drop during a partition.

// TestDefect5_OneWayLinkLoss: defect 5. An incoming ping counts as proof of
// life, so when only the link a -> b fails (a's calls to b fail, b's calls
// to a work), b stays alive at a for ever, and a's writes to the buckets b
// holds fail, each after WriteTimeout, for ever. "Alive" must mean "my own
// probe was answered": within a few DeadAfter a must see b as not alive.
// The test also checks that a write through a to a bucket replicated on b
// returns, success or one of node's errors, right after the cut and again
// once a has had time to decide (it logs how long each took: about
// WriteTimeout + ForwardTimeout at most).
func TestDefect5_OneWayLinkLoss(t *testing.T) {
	const deadAfter, forwardTimeout = 200 * time.Millisecond, 100 * time.Millisecond
	const bound = deadAfter + forwardTimeout + forwardTimeout + time.Second // WriteTimeout is DeadAfter+ForwardTimeout
	net := newMemNet()
	nodes := startReplicated(t, net, replicas(2), "a", "b", "c")
	a, b := nodes[0], nodes[1]
	bucket := ""
	for i := 0; i < 1000 && bucket == ""; i++ {
		if o, err := a.Owners(bucketName(i)); err == nil && o[0].ID == a.ID() && o[1].ID == b.ID() {
			bucket = bucketName(i)
		}
	}
	if bucket == "" {
		t.Fatal("no bucket with owners a, b")
	}
	mustExec(t, a, storetest.Create(bucket))

	write := func(when string) {
		t.Helper()
		done := make(chan error, 1)
		start := time.Now()
		go func() {
			_, err := a.Execute(context.Background(), storetest.Put(bucket, "k", when))
			done <- err
		}()
		select {
		case err := <-done:
			took := time.Since(start)
			t.Logf("PUT via a %s: %v after %v", when, err, took.Round(time.Millisecond))
			if err != nil && !errors.Is(err, node.ErrUnreachable) && !errors.Is(err, node.ErrNoRoute) && !errors.Is(err, node.ErrUnavailable) {
				t.Errorf("PUT via a %s: %v, not one of node's errors", when, err)
			}
		case <-time.After(bound + 5*time.Second):
			// A deadline for a hang, with room for a slow machine: the
			// time a write takes is logged above, not asserted.
			t.Fatalf("PUT via a %s has not returned after %v", when, bound+5*time.Second)
		}
	}

	net.setLink(a.ID(), b.ID(), false)
	write("right after the cut")
	if !pollFor(5*deadAfter, func() bool { return stateOf(a, b.ID()) != node.StateAlive }) {
		t.Errorf("%v after a's link to b went down, a still sees b %v: b's pings reach a, a's probes to b fail",
			5*deadAfter, stateOf(a, b.ID()))
	}
	write("once a had time to decide")
}

// TestDefect7_WriteDuringFailureDetection: defect 7. Right after a
// bucket's replica dies, and before it is declared dead, a write to the
// bucket fails at once with an UnreachableError naming the dead node,
// although it could succeed: when the primary is not yet ready for the
// bucket in this view, it pulls the bucket from every alive member, the
// dead one included, and the pull gives up on the first unreachable
// member. The rule is that a write waits, up to Config.WriteTimeout, for
// the view to drop a dead replica or source, and then completes.
//
// Letter ranges a-g, h-n, o-u, v-z, replicas 2: apple and banana belong to
// a-g, with h-n their replica. Right after h-n dies, CREATE and PUT apple
// through a-g, and banana through o-u (forwarded to a-g), at once: all four
// must succeed (each within about WriteTimeout + ForwardTimeout: logged)
// and read back.
func TestDefect7_WriteDuringFailureDetection(t *testing.T) {
	const writeTimeout = time.Second
	const bound = writeTimeout + 100*time.Millisecond + time.Second
	net := newMemNet()
	table := mustRanges(t, "a-g=a-g,h-n=h-n,o-u=o-u,v-z=v-z")
	nodes := startPlaced(t, net, table, replicas(2, func(c *node.Config) { c.WriteTimeout = writeTimeout }),
		"a-g", "h-n", "o-u", "v-z")
	ag, hn, ou := nodes[0], nodes[1], nodes[2]
	for _, bucket := range []string{"apple", "banana"} {
		if o := mustOwners(t, ag, bucket, 2); o[0].ID != ag.ID() || o[1].ID != hn.ID() {
			t.Fatalf("owners of %s: %v, want a-g, h-n", bucket, memberNames(o))
		}
	}

	kill(net, hn)
	var wg sync.WaitGroup
	for _, w := range []struct {
		via    *node.Node
		bucket string
	}{{ag, "apple"}, {ou, "banana"}} {
		wg.Go(func() {
			for _, op := range []store.Op{storetest.Create(w.bucket), storetest.Put(w.bucket, "k", "v")} {
				// The context is a deadline for a hang, with room for a
				// slow machine; the time each write takes is logged, not
				// asserted.
				ctx, cancel := context.WithTimeout(context.Background(), bound+5*time.Second)
				start := time.Now()
				_, err := w.via.Execute(ctx, op)
				took := time.Since(start)
				cancel()
				if err != nil {
					t.Errorf("%v %s via %s right after h-n died: %v (after %v); want success", op.Kind, w.bucket, w.via.Name(), err, took.Round(time.Millisecond))
					return
				}
				t.Logf("%v %s via %s: OK after %v (WriteTimeout %v)", op.Kind, w.bucket, w.via.Name(), took.Round(time.Millisecond), writeTimeout)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	survivors := without(nodes, hn)
	waitConverged(t, survivors)
	for _, n := range survivors {
		mustRead(t, n, "apple", "k", "v")
		mustRead(t, n, "banana", "k", "v")
	}
}

// TestDefect8_DropDuringPartition: defect 8 (a rule to document). Two sides
// of a partition each take writes to one bucket (no MinMembers); one side
// drops it (and, in the second case, creates it again). Once the partition
// heals and the copies converge, what survives is decided by versions
// alone: every key written with a version older than the drop is gone, on
// both sides, acknowledged or not by the side that did not drop; keys
// written after the drop's version survive, and the bucket exists again if
// any did. The test records which keys survive.
func TestDefect8_DropDuringPartition(t *testing.T) {
	for _, recreate := range []bool{false, true} {
		name := "drop"
		if recreate {
			name = "drop then create"
		}
		t.Run(name, func(t *testing.T) {
			net := newMemNet()
			nodes := startReplicated(t, net, replicas(2), "a", "b", "c")
			const b = "bucket"
			// Side A is b's primary alone (it holds a copy, so it serves
			// b); side B the two others.
			p := find(nodes, mustOwners(t, nodes[0], b, 2)[0].ID)
			sideB := without(nodes, p)
			mustExec(t, p, storetest.Create(b))
			mustExec(t, p, storetest.Put(b, "k0", "before the partition"))

			// laterThanAll lets the wall clock pass every version issued
			// so far (about a millisecond), so that the versions of the
			// next writes order as the steps do whichever node issues
			// them.
			laterThanAll := func() {
				var top store.Version
				for _, n := range nodes {
					top = max(top, n.Store().Clock().Last())
				}
				waitFor(t, "the clock to pass "+top.String(), func() bool { return store.VersionAt(time.Now()) > top })
			}

			net.setDown(p.ID(), true)
			waitConverged(t, sideB)
			waitFor(t, p.Name()+" to see itself alone", func() bool { return alive(p) == 1 })
			mustExec(t, p, storetest.Put(b, "a1", "A, before the drop"))
			mustExec(t, sideB[0], storetest.Put(b, "b1", "B, before the drop"))
			laterThanAll()
			mustExec(t, sideB[0], storetest.Drop(b))
			var dropped store.Version
			for _, n := range sideB {
				if m, ok := n.Store().Meta(b); ok {
					dropped = max(dropped, m.Dropped)
				}
			}
			want := []string{"a2"}
			if recreate {
				mustExec(t, sideB[0], storetest.Create(b))
				mustExec(t, sideB[0], storetest.Put(b, "b2", "B, after the drop"))
				want = []string{"a2", "b2"}
			}
			laterThanAll()
			mustExec(t, p, storetest.Put(b, "a2", "A, after the drop"))

			net.setDown(p.ID(), false)
			eventually(t, "the copies to converge", func() error { return settled(nodes, b) })
			for _, n := range nodes {
				res, err := n.Execute(context.Background(), storetest.Keys(b))
				slices.Sort(res.Names)
				if err != nil || !slices.Equal(res.Names, want) {
					t.Errorf("KEYS %s via %s = %v, %v; want %v", b, n.Name(), res.Names, err, want)
				} else if n == p {
					t.Logf("dropped at %v on side B; the keys that survive: %v", dropped, res.Names)
				}
			}
		})
	}
}
