package node_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dboutique/dboutique/node"
	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/node/store/storetest"
)

// Replication tests: clusters of nodes on memNet (cluster_test.go) with
// Replicas above 1. They check where the copies of each bucket are and what
// reads and writes answer; they wait for conditions with a deadline and
// never assert on durations.

// TestReplicasHoldCopies: a write is acknowledged only once every owner
// holds it, so right after each acknowledgement the bucket's Replicas
// owners hold equal copies and no other node holds one, whichever node the
// write went through.
func TestReplicasHoldCopies(t *testing.T) {
	for _, r := range []int{1, 2, 3} {
		t.Run(fmt.Sprintf("replicas=%d", r), func(t *testing.T) {
			nodes := startReplicated(t, newMemNet(), replicas(r), "a", "b", "c")
			for i := range 4 {
				b := bucketName(i)
				mustOwners(t, nodes[0], b, r)
				for j, op := range []store.Op{
					storetest.Create(b), storetest.Put(b, "k1", "v1"), storetest.Put(b, "k2", "v2"), storetest.Put(b, "k1", "v3"), storetest.Del(b, "k2"),
				} {
					via := nodes[(i+j)%len(nodes)]
					mustExec(t, via, op)
					if err := checkPlacement(nodes, b); err != nil {
						t.Fatalf("right after %v %s %q via %s: %v", op.Kind, b, op.Key, via.Name(), err)
					}
				}
				for _, n := range nodes {
					mustRead(t, n, b, "k1", "v3")
					mustMiss(t, n, b, "k2")
				}
			}
		})
	}
}

// TestPrimaryDiesCopiesRemade: once a bucket's primary is declared dead,
// reads through any survivor return every acknowledged value, and the
// survivors re-make the lost copies until every bucket has Replicas equal
// copies again, on its owners only.
func TestPrimaryDiesCopiesRemade(t *testing.T) {
	const nb, nk = 12, 10
	net := newMemNet()
	nodes := startReplicated(t, net, replicas(2), "a", "b", "c", "d")
	buckets := fill(t, nodes, nb, nk)
	victim := find(nodes, mustOwners(t, nodes[0], buckets[0], 2)[0].ID)
	survivors := without(nodes, victim)

	net.setDown(victim.ID(), true)
	waitConverged(t, survivors)
	readAll(t, survivors, nb, nk)
	eventually(t, "the survivors to re-make the lost copies", func() error { return settled(survivors, buckets...) })
	for _, b := range buckets {
		mustOwners(t, survivors[0], b, 2)
	}
	readAll(t, survivors, nb, nk)
}

// holdReplicatedWrite runs op, a write, through primary, and returns once
// its replication reached replica, which holds it from then on without an
// answer (memNet.setHung); the write's outcome comes on the channel.
func holdReplicatedWrite(t *testing.T, net *memNet, primary, replica *node.Node, op store.Op) <-chan error {
	t.Helper()
	reached := make(chan struct{})
	var once sync.Once
	net.setHung(replica.ID(), func(req []byte) bool {
		if ofType(node.MsgReplicate)(req) {
			once.Do(func() { close(reached) })
			return true
		}
		return false
	})
	done := make(chan error, 1)
	go func() {
		_, err := primary.Execute(context.Background(), op)
		done <- err
	}()
	select {
	case <-reached:
	case err := <-done:
		t.Fatalf("the write ended before it reached the replica: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the write never reached the replica")
	}
	return done
}

// TestWriteWaitsForDeadReplica: a write while an owner cannot be reached,
// but is still alive in the view, waits until the owner is declared dead
// and then succeeds; the value is on the owners of the new view. The
// replica is either cut off, or hung: it takes the replicated write and
// never answers, and then is cut off.
func TestWriteWaitsForDeadReplica(t *testing.T) {
	for _, hang := range []bool{false, true} {
		name := "down"
		if hang {
			name = "hung"
		}
		t.Run(name, func(t *testing.T) {
			net := newMemNet()
			// The write must end because the replica left the view, not
			// because WriteTimeout passed. When hung, ForwardTimeout is as
			// long: the call that hangs must end because the view changed.
			nodes := startReplicated(t, net, replicas(2, func(c *node.Config) {
				c.WriteTimeout = 5 * time.Second
				if hang {
					c.ForwardTimeout = c.WriteTimeout
				}
			}), "a", "b", "c")
			const b = "bucket"
			owners := mustOwners(t, nodes[0], b, 2)
			primary, replica := find(nodes, owners[0].ID), find(nodes, owners[1].ID)
			mustExec(t, primary, storetest.Create(b))
			mustExec(t, primary, storetest.Put(b, "before", "1"))

			var err error
			if hang {
				done := holdReplicatedWrite(t, net, primary, replica, storetest.Put(b, "during", "2"))
				net.setDown(replica.ID(), true)
				select {
				case err = <-done:
				case <-time.After(10 * time.Second):
					t.Fatal("the write never ended")
				}
			} else {
				net.setDown(replica.ID(), true)
				_, err = primary.Execute(context.Background(), storetest.Put(b, "during", "2"))
			}
			if err != nil {
				t.Fatalf("write while %s was %s: %v", replica.Name(), name, err)
			}
			// Only the replica's death can have ended the write.
			if alive(primary) != 2 {
				t.Fatalf("the write was acknowledged while %s was unreachable and still alive", replica.Name())
			}
			for _, m := range mustOwners(t, primary, b, 2) {
				n := find(nodes, m.ID)
				if n == replica {
					t.Fatalf("%s, declared dead, still owns %s", replica.Name(), b)
				}
				if v, err := n.Store().Get(b, "during"); err != nil || v != "2" {
					t.Errorf("owner %s holds during = %q, %v", n.Name(), v, err)
				}
			}
			survivors := without(nodes, replica)
			waitConverged(t, survivors)
			for _, n := range survivors {
				mustRead(t, n, b, "before", "1")
				mustRead(t, n, b, "during", "2")
			}
		})
	}
}

// TestJoinMovesBuckets: a node joins two that hold every bucket; the
// cluster settles with every bucket exactly on its owners, every key reads
// back through every node, and GETs running all along never find a bucket
// or key missing.
func TestJoinMovesBuckets(t *testing.T) {
	const nb, nk = 20, 50
	net := newMemNet()
	tweak := replicas(2)
	nodes := startReplicated(t, net, tweak, "a", "b")
	buckets := fill(t, nodes, nb, nk)
	for _, b := range buckets {
		if err := checkPlacement(nodes, b); err != nil {
			t.Fatal(err)
		}
	}

	var (
		stop      = make(chan struct{})
		wg        sync.WaitGroup
		mu        sync.Mutex // guards bad
		bad       []string
		good      atomic.Int64
		transient atomic.Int64
	)
	read := func(n *node.Node, start int) {
		for i := start; ; i += 7 {
			select {
			case <-stop:
				return
			default:
			}
			bi, k := i%nb, (i/nb)%nk
			res, err := n.Execute(context.Background(), storetest.Get(bucketName(bi), keyName(k)))
			switch {
			case err == nil && res.Value == valueOf(bi, k):
				good.Add(1)
			case err == nil, errors.Is(err, store.ErrBucketNotFound), errors.Is(err, store.ErrKeyNotFound):
				mu.Lock()
				bad = append(bad, fmt.Sprintf("GET %s %s via %s = %q, %v", bucketName(bi), keyName(k), n.Name(), res.Value, err))
				mu.Unlock()
			default:
				transient.Add(1) // not joined yet, views differ for a moment, ...
			}
		}
	}
	for i, n := range nodes {
		wg.Go(func() { read(n, i) })
	}
	c := startMemNodeWith(t, net, "c", nil, tweak, "/mem/id-a")
	wg.Go(func() { read(c, 3) })
	stopReaders := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	t.Cleanup(stopReaders)

	all := append(slices.Clone(nodes), c)
	eventually(t, "the buckets to settle on three nodes", func() error { return settled(all, buckets...) })
	stopReaders()
	t.Logf("GETs during the join: %d right, %d transient errors", good.Load(), transient.Load())
	for i, s := range bad {
		if i == 10 {
			t.Errorf("... and %d more", len(bad)-i)
			break
		}
		t.Error(s)
	}
	holds := 0
	for _, b := range buckets {
		if _, ok := c.Store().Digest(b); ok {
			holds++
		}
	}
	if holds == 0 {
		t.Error("the new node holds no bucket")
	}
	readAll(t, all, nb, nk)
}

// TestLeaveHandsOffBuckets: with one copy per bucket, a node that leaves
// hands every copy to the bucket's new owner before Leave returns.
func TestLeaveHandsOffBuckets(t *testing.T) {
	const nb, nk = 10, 10
	nodes := startReplicated(t, newMemNet(), replicas(1), "a", "b", "c")
	buckets := fill(t, nodes, nb, nk)
	leaver := nodes[0]
	for _, n := range nodes {
		if len(n.Store().Records()) > len(leaver.Store().Records()) {
			leaver = n
		}
	}
	held := len(leaver.Store().Records())
	if held == 0 {
		t.Fatal("no node holds a bucket")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := leaver.Leave(ctx); err != nil {
		t.Fatalf("Leave of %s, holding %d buckets: %v", leaver.Name(), held, err)
	}
	if recs := leaver.Store().Records(); len(recs) != 0 {
		t.Fatalf("%s still holds %v after leaving", leaver.Name(), recs)
	}
	others := without(nodes, leaver)
	readAll(t, others, nb, nk)
	eventually(t, "the remaining nodes to settle", func() error { return settled(others, buckets...) })
}

// TestMinMembers: a node that sees fewer than MinMembers members refuses
// reads and writes with ErrUnavailable (it holds no lease: the others may
// be serving without it); once the others are back, both work again.
func TestMinMembers(t *testing.T) {
	net := newMemNet()
	nodes := startReplicated(t, net, replicas(3, func(c *node.Config) { c.MinMembers = 2 }), "a", "b", "c")
	const b = "bucket"
	mustExec(t, nodes[1], storetest.Create(b))
	mustExec(t, nodes[2], storetest.Put(b, "k", "v"))

	survivor := nodes[0]
	for _, n := range nodes[1:] {
		net.setDown(n.ID(), true)
	}
	waitFor(t, "the survivor to see the others dead", func() bool { return alive(survivor) == 1 })
	// Alone, the survivor can be sure of nothing: the others may be
	// serving without it. It refuses reads as well as writes.
	for _, op := range []store.Op{storetest.Put(b, "k", "w"), storetest.Del(b, "k"), storetest.Create("other"), {Kind: store.KindDrop, Bucket: b}, storetest.Get(b, "k")} {
		if _, err := survivor.Execute(context.Background(), op); !errors.Is(err, node.ErrUnavailable) {
			t.Errorf("%v %s alone: %v, want ErrUnavailable", op.Kind, op.Bucket, err)
		}
	}

	for _, n := range nodes[1:] {
		net.setDown(n.ID(), false)
	}
	waitConverged(t, nodes)
	mustExec(t, survivor, storetest.Put(b, "k", "w"))
	for _, n := range nodes {
		mustRead(t, n, b, "k", "w")
	}
}

// TestNotJoinedIsUnavailable: a node told to join through an address that
// does not answer refuses reads and writes with ErrUnavailable rather than
// answering NOT FOUND for buckets it cannot know of, until it has joined.
func TestNotJoinedIsUnavailable(t *testing.T) {
	net := newMemNet()
	seed := startMemNodeWith(t, net, "seed", nil, replicas(2))
	mustExec(t, seed, storetest.Create("bucket"))
	mustExec(t, seed, storetest.Put("bucket", "k", "v"))
	net.setDown(seed.ID(), true)
	joiner := startMemNodeWith(t, net, "joiner", nil, replicas(2), "/mem/"+seed.ID())
	for _, op := range []store.Op{
		storetest.Get("bucket", "k"), storetest.Put("bucket", "k", "w"), storetest.Get("nope", "k"), storetest.Create("new"), {Kind: store.KindKeys, Bucket: "bucket"},
	} {
		if _, err := joiner.Execute(context.Background(), op); !errors.Is(err, node.ErrUnavailable) {
			t.Errorf("%v %s before joining: %v, want ErrUnavailable", op.Kind, op.Bucket, err)
		}
	}
	net.setDown(seed.ID(), false)
	nodes := []*node.Node{seed, joiner}
	waitConverged(t, nodes)
	mustRead(t, joiner, "bucket", "k", "v")
	mustExec(t, joiner, storetest.Put("bucket", "k", "w"))
	for _, n := range nodes {
		mustRead(t, n, "bucket", "k", "w")
	}
}

// entryOf returns key's entry in s's copy of bucket, read with Page.
func entryOf(t *testing.T, s *store.Store, bucket, key string) store.Entry {
	t.Helper()
	es, _, ok := s.Page(bucket, store.ShardOf(key), "", 1<<20)
	for _, e := range es {
		if e.Key == key {
			return e
		}
	}
	t.Fatalf("no entry for %s %s (copy exists: %v)", bucket, key, ok)
	return store.Entry{}
}

// TestTombstonesSurviveAntiEntropy: an older copy of a deleted key, merged
// by anti-entropy or rebalancing, never brings the key back.
func TestTombstonesSurviveAntiEntropy(t *testing.T) {
	const b = "bucket"
	t.Run("stale copy on a non-owner", func(t *testing.T) {
		nodes := startReplicated(t, newMemNet(), replicas(2, func(c *node.Config) {
			c.SyncInterval = 50 * time.Millisecond
		}), "a", "b", "c")
		owners := mustOwners(t, nodes[0], b, 2)
		var other *node.Node
		for _, n := range nodes {
			if n.ID() != owners[0].ID && n.ID() != owners[1].ID {
				other = n
			}
		}
		mustExec(t, nodes[0], storetest.Create(b))
		mustExec(t, nodes[1], storetest.Put(b, "k", "old"))
		mustExec(t, nodes[1], storetest.Put(b, "keep", "x"))
		old := entryOf(t, find(nodes, owners[0].ID).Store(), b, "k")
		mustExec(t, nodes[2], storetest.Del(b, "k"))

		// A copy that missed the delete turns up on a node that does not
		// own the bucket (as after a partition), and an owner is offered
		// the old entry directly.
		storetest.MustNil(t, other.Store().ApplyEntry(b, old))
		storetest.MustNil(t, find(nodes, owners[1].ID).Store().ApplyEntry(b, old))
		if v, err := other.Store().Get(b, "k"); err != nil || v != "old" {
			t.Fatalf("stale copy: k = %q, %v", v, err)
		}
		eventually(t, "the stale copy to be handed off", func() error { return settled(nodes, b) })
		for _, n := range nodes {
			mustMiss(t, n, b, "k")
			mustRead(t, n, b, "keep", "x")
		}
		for _, m := range owners {
			if v, err := find(nodes, m.ID).Store().Get(b, "k"); !errors.Is(err, store.ErrKeyNotFound) {
				t.Errorf("owner %s: k = %q, %v; want ErrKeyNotFound", m.Name, v, err)
			}
		}
	})
	t.Run("owner cut off during the delete", func(t *testing.T) {
		net := newMemNet()
		nodes := startReplicated(t, net, replicas(3), "a", "b", "c")
		owners := mustOwners(t, nodes[0], b, 3)
		cut := find(nodes, owners[2].ID)
		mustExec(t, nodes[0], storetest.Create(b))
		mustExec(t, nodes[0], storetest.Put(b, "k", "old"))
		mustExec(t, nodes[0], storetest.Put(b, "keep", "x"))

		net.setDown(cut.ID(), true)
		survivors := without(nodes, cut)
		waitConverged(t, survivors)
		mustExec(t, survivors[0], storetest.Del(b, "k"))
		if v, err := cut.Store().Get(b, "k"); err != nil || v != "old" {
			t.Fatalf("the cut-off copy: k = %q, %v; want the old value", v, err)
		}
		net.setDown(cut.ID(), false)
		eventually(t, "the copies to converge", func() error { return settled(nodes, b) })
		for _, n := range nodes {
			mustMiss(t, n, b, "k")
			mustRead(t, n, b, "keep", "x")
			if v, err := n.Store().Get(b, "k"); !errors.Is(err, store.ErrKeyNotFound) {
				t.Errorf("%s's copy: k = %q, %v; want ErrKeyNotFound", n.Name(), v, err)
			}
		}
	})
	t.Run("drop while an owner is cut off", func(t *testing.T) {
		net := newMemNet()
		nodes := startReplicated(t, net, replicas(3), "a", "b", "c")
		owners := mustOwners(t, nodes[0], b, 3)
		cut := find(nodes, owners[1].ID)
		mustExec(t, nodes[0], storetest.Create(b))
		mustExec(t, nodes[0], storetest.Put(b, "k", "old"))

		net.setDown(cut.ID(), true)
		survivors := without(nodes, cut)
		waitConverged(t, survivors)
		mustExec(t, survivors[1], store.Op{Kind: store.KindDrop, Bucket: b})
		if !cut.Store().Exists(b) {
			t.Fatal("the cut-off copy missed nothing")
		}
		net.setDown(cut.ID(), false)
		eventually(t, "the copies to converge", func() error { return settled(nodes, b) })
		for _, n := range nodes {
			if _, err := n.Execute(context.Background(), storetest.Get(b, "k")); !errors.Is(err, store.ErrBucketNotFound) {
				t.Errorf("GET after the drop via %s: %v, want ErrBucketNotFound", n.Name(), err)
			}
			if n.Store().Exists(b) {
				t.Errorf("%s's copy of the dropped bucket exists", n.Name())
			}
		}
	})
}

// TestConfigValidationReplication: replication settings out of range are
// refused; zero takes the default.
func TestConfigValidationReplication(t *testing.T) {
	tr := &memTransport{net: newMemNet(), id: "x"}
	cfg := func(f func(*node.Config)) node.Config {
		c := node.Config{Name: "a", Transport: tr}
		f(&c)
		return c
	}
	for _, tc := range []struct {
		name string
		cfg  node.Config
	}{
		{"negative replicas", cfg(func(c *node.Config) { c.Replicas = -1 })},
		{"17 replicas", cfg(func(c *node.Config) { c.Replicas = 17 })},
		{"negative min members", cfg(func(c *node.Config) { c.MinMembers = -1 })},
		{"negative write timeout", cfg(func(c *node.Config) { c.WriteTimeout = -time.Second })},
		{"negative sync interval", cfg(func(c *node.Config) { c.SyncInterval = -time.Second })},
		{"negative tombstone grace", cfg(func(c *node.Config) { c.TombstoneGrace = -time.Second })},
	} {
		if _, err := node.New(tc.cfg); !errors.Is(err, node.ErrInvalidConfig) {
			t.Errorf("%s: %v, want ErrInvalidConfig", tc.name, err)
		}
	}
	for _, tc := range []struct {
		name string
		cfg  node.Config
	}{
		{"zero replicas (the default)", cfg(func(c *node.Config) { c.Replicas = 0 })},
		{"one replica", cfg(func(c *node.Config) { c.Replicas = 1 })},
		{"16 replicas", cfg(func(c *node.Config) { c.Replicas = 16 })},
		{"min members", cfg(func(c *node.Config) { c.MinMembers = 3 })},
		{"durations", cfg(func(c *node.Config) {
			c.WriteTimeout, c.SyncInterval, c.TombstoneGrace = time.Second, time.Minute, time.Hour
		})},
	} {
		n, err := node.New(tc.cfg)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		storetest.MustNil(t, n.Close())
	}
}

// TestLeaveWaitsForSlowOwner: a hand-off that lasts longer than DeadAfter
// (new owners slow to take the copies) must not end with Leave returning
// nil while the leaving node still holds copies: Leave returns nil only
// once every copy is handed off, or an error when ctx ends. (A leaving node
// that neither probes nor is probed would see every member go silent,
// declare them dead, and give up with its copies still in hand.)
func TestLeaveWaitsForSlowOwner(t *testing.T) {
	const nb, nk = 10, 10
	net := newMemNet()
	nodes := startReplicated(t, net, replicas(1), "a", "b", "c")
	fill(t, nodes, nb, nk)
	leaver := nodes[0]
	for _, n := range nodes {
		if len(n.Store().Records()) > len(leaver.Store().Records()) {
			leaver = n
		}
	}
	others := without(nodes, leaver)
	// The others take no merge (message type 9) until enough attempts have
	// hung: the hand-off then lasts several DeadAfter periods.
	var hung atomic.Int64
	slow := make(chan struct{})
	var once sync.Once
	for _, n := range others {
		net.setHung(n.ID(), func(req []byte) bool {
			if len(req) == 0 || req[0] != 9 {
				return false
			}
			if hung.Add(1) == 20 {
				once.Do(func() { close(slow) })
			}
			return true
		})
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- leaver.Leave(ctx)
	}()
	var err error
	select {
	case err = <-done:
		t.Logf("Leave ended after %d hung merges", hung.Load())
	case <-slow:
		for _, n := range others {
			net.setHung(n.ID(), nil)
		}
		err = <-done
	}
	recs := leaver.Store().Records()
	if err == nil && len(recs) > 0 {
		t.Fatalf("Leave of %s returned nil, but it still holds %d copies: %v", leaver.Name(), len(recs), recs)
	}
	if err != nil {
		t.Fatalf("Leave of %s: %v", leaver.Name(), err)
	}
	readAll(t, others, nb, nk)
}

// TestTombstonesCollectedAfterGrace: a delete's tombstone, and a dropped
// bucket's record, are collected once Config.TombstoneGrace has passed.
func TestTombstonesCollectedAfterGrace(t *testing.T) {
	net := newMemNet()
	n := startMemNodeWith(t, net, "solo", nil, func(c *node.Config) {
		c.TombstoneGrace = 20 * time.Millisecond
		c.SyncInterval = 30 * time.Millisecond
	})
	ctx := context.Background()
	for _, op := range []store.Op{
		{Kind: store.KindCreate, Bucket: "b"},
		{Kind: store.KindPut, Bucket: "b", Key: "k", Value: "v"},
		{Kind: store.KindDelete, Bucket: "b", Key: "k"},
		{Kind: store.KindCreate, Bucket: "gone"},
		{Kind: store.KindDrop, Bucket: "gone"},
	} {
		if _, err := n.Execute(ctx, op); err != nil {
			t.Fatalf("%v: %v", op.Kind, err)
		}
	}
	if st := n.Store().Stats(); st.Tombstones != 1 || st.Records != 2 {
		t.Fatalf("after the writes: %+v, want 1 tombstone and 2 records", st)
	}
	waitFor(t, "the tombstone and the dropped bucket to be collected", func() bool {
		st := n.Store().Stats()
		return st.Tombstones == 0 && st.Records == 1
	})
}

// TestFutureVersionsRefused: a peer's copy whose versions are far ahead of
// this node's clock is refused, so that a wrong clock cannot drag the
// cluster's versions along.
func TestFutureVersionsRefused(t *testing.T) {
	net := newMemNet()
	fast := func(c *node.Config) { c.Replicas, c.SyncInterval = 2, 20*time.Millisecond }
	a := startMemNodeWith(t, net, "a", nil, fast)
	b := startMemNodeWith(t, net, "b", nil, fast, "/mem/id-a")
	waitFor(t, "both nodes to see each other", func() bool { return alive(a) == 2 && alive(b) == 2 })
	waitFor(t, "a to settle", a.Settled)
	// A rogue copy on a, two days ahead: a's passes try to push it to b,
	// its co-owner, and fail.
	future := store.VersionAt(time.Now().Add(48 * time.Hour))
	if err := a.Store().ApplyEntry("rogue", store.Entry{Key: "k", Value: "v", Version: future}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a pass on a to fail to push the rogue copy", func() bool { return !a.Settled() })
	if _, ok := b.Store().Meta("rogue"); ok {
		t.Error("b took a copy with a version 48 h ahead")
	}
	if got := b.Store().Clock().Last(); got >= future {
		t.Errorf("b's clock moved to %v", got)
	}
}
