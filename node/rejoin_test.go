package node_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dboutique/dboutique/node"
	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/node/store/storetest"
)

// withBook gives a node the peer book b and the rejoin timeout d, with
// two replicas.
func withBook(b *memBook, d time.Duration) func(*node.Config) {
	return replicas(2, func(c *node.Config) { c.PeerBook, c.RejoinTimeout = b, d })
}

// TestDefect4_RestartedSeedFindsItsCluster: defect 4. The first node of a
// cluster (no --join: the others joined through it) restarted with the same
// identity used to serve alone at once: NOT FOUND for buckets that exist,
// and writes acknowledged with one copy, until another member happened to
// probe it. Now it remembers the members it knew (its peer book) and
// answers ErrUnavailable until it has reached one of them; from its very
// first answer on, it never says NOT FOUND for a bucket that exists, nor
// gives a value that is not the one written.
func TestDefect4_RestartedSeedFindsItsCluster(t *testing.T) {
	net := newMemNet()
	books := []*memBook{{}, {}, {}}
	nodes := []*node.Node{startMemNodeWith(t, net, "a", nil, withBook(books[0], time.Minute))}
	for i, name := range []string{"b", "c"} {
		nodes = append(nodes, startMemNodeWith(t, net, name, nil, withBook(books[i+1], time.Minute), "/mem/id-a"))
	}
	waitConverged(t, nodes)
	const nb, nk = 20, 3
	fill(t, nodes, nb, nk)
	seed := nodes[0]
	waitFor(t, "the seed's peer book to list the others", func() bool {
		ms, _ := books[0].Load()
		return len(ms) == 2
	})

	kill(net, seed)
	net.setDown(seed.ID(), false)
	restarted := startMemNodeWith(t, net, "a", nil, withBook(books[0], time.Minute))
	for i := range nb {
		for k := range nk {
			var res store.Result
			var err error
			var refusals int
			if !pollFor(10*time.Second, func() bool {
				res, err = restarted.Execute(context.Background(), storetest.Get(bucketName(i), keyName(k)))
				if errors.Is(err, node.ErrUnavailable) {
					refusals++
				}
				return !transient(err)
			}) {
				t.Fatalf("GET %s %s through the restarted seed: still %v", bucketName(i), keyName(k), err)
			}
			if err != nil || res.Value != valueOf(i, k) {
				t.Fatalf("GET %s %s through the restarted seed = %q, %v; want %q", bucketName(i), keyName(k), res.Value, err, valueOf(i, k))
			}
		}
	}
	others := append([]*node.Node{restarted}, nodes[1:]...)
	waitConverged(t, others)
	readAll(t, others, nb, nk)
}

// TestRejoinTimeout: a node whose peer book names only members that are
// gone for good refuses requests while it looks for them, and serves on
// its own once Config.RejoinTimeout has passed.
func TestRejoinTimeout(t *testing.T) {
	net := newMemNet()
	book := &memBook{ms: []node.Member{{ID: "id-gone", Name: "gone", Addrs: []string{"/mem/id-gone"}}}}
	const rejoin = 300 * time.Millisecond
	start := time.Now()
	n := startMemNodeWith(t, net, "alone", nil, withBook(book, rejoin))
	_, err := n.Execute(context.Background(), storetest.Create("bucket"))
	if elapsed := time.Since(start); elapsed < rejoin && !errors.Is(err, node.ErrUnavailable) {
		t.Fatalf("CREATE %v after the start, before the rejoin timeout: %v, want ErrUnavailable", elapsed, err)
	}
	waitFor(t, "the node to serve on its own", func() bool {
		_, err := n.Execute(context.Background(), storetest.Create("bucket"))
		return err == nil
	})
	if elapsed := time.Since(start); elapsed < rejoin {
		t.Errorf("served %v after the start, before the rejoin timeout %v", elapsed, rejoin)
	}
	mustExec(t, n, storetest.Put("bucket", "k", "v"))
	mustRead(t, n, "bucket", "k", "v")
}

// TestNoBookNoWait: a node with a peer book that is empty (its first start)
// and no --join serves at once, as a cluster of one.
func TestNoBookNoWait(t *testing.T) {
	net := newMemNet()
	n := startMemNodeWith(t, net, "first", nil, withBook(&memBook{}, time.Hour))
	mustExec(t, n, storetest.Create("bucket"))
}

// TestPeerBookSaved: the book lists the members alive and dead (not those
// that left), with their addresses.
func TestPeerBookSaved(t *testing.T) {
	net := newMemNet()
	books := []*memBook{{}, {}, {}}
	var nodes []*node.Node
	for i, name := range []string{"a", "b", "c"} {
		var join []string
		if i > 0 {
			join = []string{"/mem/id-a"}
		}
		nodes = append(nodes, startMemNodeWith(t, net, name, nil, withBook(books[i], time.Minute), join...))
	}
	waitConverged(t, nodes)
	ids := func(b *memBook) []string {
		ms, _ := b.Load()
		var out []string
		for _, m := range ms {
			if len(m.Addrs) > 0 {
				out = append(out, m.ID)
			}
		}
		slices.Sort(out)
		return out
	}
	waitFor(t, "a's book to list b and c", func() bool { return slices.Equal(ids(books[0]), []string{"id-b", "id-c"}) })
	kill(net, nodes[2]) // dead: still in the book
	if err := nodes[1].Leave(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a's book to forget b, which left, and keep c, which died", func() bool {
		return slices.Equal(ids(books[0]), []string{"id-c"})
	})
}

// TestRestartedNodeOpensOnlyForItsCluster: a restarted node serves only
// once a member that is part of a cluster answers it, not any node: a
// brand-new node that joins through it is no cluster, and the two would
// serve every bucket from empty stores. And its peer book holds every
// member it has seen alive, at once (it was saved once a second). Both
// were an adversarial review's finding. Here n3 joins through n2, which
// crashes as soon as it has seen n3; then n1 dies; n2 restarts with its
// book and no --join while a new n4 joins through it (or through n3), right
// away or after n3 has forgotten n2: no NOT FOUND for the bucket n3 holds,
// and n2 finds n3.
func TestRestartedNodeOpensOnlyForItsCluster(t *testing.T) {
	for _, forget := range []bool{false, true} {
		for _, viaRestarted := range []bool{false, true} {
			name := map[bool]string{false: "at once", true: "after n3 forgot n2"}[forget] +
				map[bool]string{false: ", n4 joins through n3", true: ", n4 joins through n2"}[viaRestarted]
			t.Run(name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) { restartAmongNewcomers(t, forget, viaRestarted) })
			})
		}
	}
}

func restartAmongNewcomers(t *testing.T, forget, viaRestarted bool) {
	plan := simPlan{mode: "ap", start: 3, replicas: 3, maxNodes: 5}
	sc := newSimScenario(t, 7, plan)
	n1 := sc.addNode()
	n2 := sc.addNode()
	sc.settle("two nodes")
	sc.mustDo(n1, storetest.Create("apple"))
	sc.mustDo(n1, storetest.Put("apple", "k", "v"))
	// n3 joins through n2, which crashes as soon as it has seen n3.
	n3 := sc.addNodeVia(n2)
	for stateOf(sc.nodeOf(n2), n3.id) != node.StateAlive {
		time.Sleep(time.Millisecond)
	}
	sc.crash(n2)
	sc.settle("n1 and n3 to settle")
	sc.crash(n1)
	sc.settle("n3 to settle alone")
	if forget {
		time.Sleep(defaultForgetAfter + time.Minute)
	}
	sc.boot(n2, nil)
	via := n3
	if viaRestarted {
		via = n2
	}
	n4 := sc.addNodeVia(via)
	for range 20 {
		for _, sn := range []*simNode{n2, n4} {
			if _, err := sc.try(sn, storetest.Get("apple", "k")); errors.Is(err, store.ErrBucketNotFound) {
				t.Fatalf("at %v, GET apple k through %s: NOT FOUND", time.Since(sc.start), sn.name)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	sc.settle("n2, n3 and n4 to form one cluster")
	for _, sn := range []*simNode{n2, n3, n4} {
		if res := sc.mustDo(sn, storetest.Get("apple", "k")); res.Value != "v" {
			t.Errorf("GET apple k through %s = %q, want v", sn.name, res.Value)
		}
	}
}

// defaultForgetAfter is node's: how long a dead member is remembered.
const defaultForgetAfter = 10 * time.Minute

// TestDeadMembersForgotten: a dead member is forgotten by every node at
// about the same time, although members gossip the dead to each other
// (with how long they have been dead): a member that forgot it does not
// learn it back from one that has not yet.
func TestDeadMembersForgotten(t *testing.T) {
	for _, size := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d nodes", size), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				plan := simPlan{mode: "ap", start: size, replicas: 2, maxNodes: size}
				sc := newSimScenario(t, 9, plan)
				dead := sc.form()[size-1]
				sc.crash(dead)
				died := time.Now()
				sc.settle("the survivors to settle")
				for time.Since(died) < defaultForgetAfter+2*time.Minute {
					time.Sleep(time.Minute)
				}
				for _, sn := range sc.up() {
					for _, m := range sc.nodeOf(sn).Members() {
						if m.ID == dead.id {
							t.Errorf("%v after it died, %s still lists %s (%v)", time.Since(died).Round(time.Second), sn.name, dead.name, m.State)
						}
					}
				}
			})
		})
	}
}

// TestStalledBookSaveKeepsDetectingDeaths: found by an adversarial review.
// The periodic save of the peer book ran on the membership loop, so a
// save that stalled (a disk stuck on fsync) stopped every probe and every
// death: a member that died stayed in the stalled node's view, which
// refused the others' pulls for another view, and their buckets stalled
// with it. Saves now run on a goroutine of their own.
func TestStalledBookSaveKeepsDetectingDeaths(t *testing.T) {
	net := newMemNet()
	book := newSwitchBook()
	m := startMemNodeWith(t, net, "m", nil, func(c *node.Config) { c.PeerBook = book })
	t.Cleanup(func() { book.set(false) }) // before m's Close, which waits for the save
	a := startMemNodeWith(t, net, "a", nil, nil, "/mem/"+m.ID())
	b := startMemNodeWith(t, net, "b", nil, nil, "/mem/"+m.ID())
	waitConverged(t, []*node.Node{m, a, b})

	book.set(true) // m's disk stalls
	kill(net, a)   // m sees a dead: a change for its book, whose save stalls
	waitFor(t, "m to see a dead", func() bool { return stateOf(m, a.ID()) == node.StateDead })
	waitFor(t, "m's save of its book to stall", book.stalled)
	kill(net, b)
	waitFor(t, "m to see b dead while its book's save is stalled", func() bool { return stateOf(m, b.ID()) == node.StateDead })
}

// TestJoinedThroughALeaverFindsTheOthers: found by the fault schedules
// (seed 80000547). n3 crashes, a partition puts n1 alone against n2 and
// n4, a new node n5 joins through n1 alone, n1 leaves, and the partition
// heals: n5's only contact is gone, and n2 and n4 never heard of n5. The
// two sides must find each other. n5 either reaches n2 and n4 all along
// (as in the seed) or is cut off from them with n1; it joins once n1
// holds them dead (memberlist tells no one of a dead member it has never
// heard of alive), or at once, while n1 still holds them alive (n5 hears
// of them then, fails to reach them, and its engine gives up on them; the
// heal waits until the engine has forgotten them altogether).
func TestJoinedThroughALeaverFindsTheOthers(t *testing.T) {
	for _, tc := range []struct {
		name         string
		cutOff, soon bool
	}{
		{"n5 reaches the others", false, false},
		{"n5 cut off with n1", true, false},
		{"n5 cut off with n1, joins before n1 sees the cut", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { joinThroughALeaver(t, tc.cutOff, tc.soon) })
		})
	}
}

func joinThroughALeaver(t *testing.T, cutOff, soon bool) {
	plan := simPlan{mode: "cp", start: 4, maxNodes: 5, replicas: 3, minMembers: 3}
	sc := newSimScenario(t, 80000547, plan)
	ns := sc.form()
	n1, n2, n3, n4 := ns[0], ns[1], ns[2], ns[3]
	sc.crash(n3)
	sc.logf("crash n3")
	sc.waitUntil("n1, n2 and n4 to see n3 dead", 10*time.Second, func() bool {
		return stateOf(sc.nodeOf(n1), n3.id) == node.StateDead && stateOf(sc.nodeOf(n2), n3.id) == node.StateDead &&
			stateOf(sc.nodeOf(n4), n3.id) == node.StateDead
	})
	// The next node's peer ID, so that it is cut off before it starts.
	const n5id = "id-5"
	side := []string{n1.id}
	if cutOff {
		side = append(side, n5id)
	}
	for _, a := range side {
		for _, b := range []*simNode{n2, n4} {
			sc.net.setCut(a, b.id, true)
			sc.net.setCut(b.id, a, true)
		}
	}
	sc.logf("partition %v | [n2 n4]", side)
	if !soon {
		sc.waitUntil("n1 to see n2 and n4 dead", 10*time.Second, func() bool {
			return stateOf(sc.nodeOf(n1), n2.id) == node.StateDead && stateOf(sc.nodeOf(n1), n4.id) == node.StateDead
		})
	}
	n5 := sc.addNodeVia(n1)
	if n5.id != n5id {
		t.Fatalf("the new node is %s, not %s", n5.id, n5id)
	}
	sc.waitUntil("n5 to join through n1", 10*time.Second, func() bool {
		return sc.nodeOf(n5).Joined() && stateOf(sc.nodeOf(n5), n1.id) == node.StateAlive
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	err := sc.nodeOf(n1).Leave(ctx)
	cancel()
	sc.crash(n1)
	sc.logf("n1 left (%v)", err)
	if soon {
		time.Sleep(45 * time.Second) // longer than the engine's GossipToTheDeadTime
	}
	sc.heal()
	healed := time.Now()
	sc.waitUntil("n2, n4 and n5 to form one cluster", 30*time.Second, func() bool { return sc.settled() == nil })
	t.Logf("settled %v after the heal", time.Since(healed))
}

// waitUntil polls cond on the fake clock until it holds, and fails the
// test if it does not within the given time.
func (sc *simCluster) waitUntil(what string, within time.Duration, cond func() bool) {
	sc.t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			sc.t.Fatalf("gave up waiting %v for %s; %s", within, what, simViews(sc, sc.up()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
