package node_test

// Adversarial review of expiry and eviction (i14): attacks on the node's
// side, on the bubble's fake clock (synctest) with per-node clocks. Each
// test names the claim it attacks.

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dboutique/dboutique/node"
	"github.com/dboutique/dboutique/node/store"
)

// reviewSkew is how far behind p's clock r's runs in the skewed trio.
const reviewSkew = 9 * time.Second

// reviewTrio starts p, r and c (replicas 3), r's clock reviewSkew behind
// the others', and waits until they have settled. It returns the nodes and
// the network.
func reviewTrio(t *testing.T) (*simNet, []*node.Node) {
	net := newSimNet(11)
	nodes := startSkewed(t, net, []time.Duration{0, -reviewSkew, 0}, nil)
	settleNodes(nodes...)
	return net, nodes
}

// settleNodes waits until the nodes agree on the membership and have
// settled.
func settleNodes(ns ...*node.Node) {
	for !converged(ns) || !allSettled(ns) {
		time.Sleep(50 * time.Millisecond)
	}
}

// bucketsOwnedBy returns k bucket names whose owners begin with ids, in
// order, as n places them now.
func bucketsOwnedBy(n *node.Node, k int, ids ...string) []string {
	var bs []string
	for i := 0; len(bs) < k && i < 10000; i++ {
		o, err := n.Owners(bucketName(i))
		if err != nil || len(o) < len(ids) {
			continue
		}
		ok := true
		for j, id := range ids {
			ok = ok && o[j].ID == id
		}
		if ok {
			bs = append(bs, bucketName(i))
		}
	}
	return bs
}

// cutOff cuts x from every other node, both ways.
func cutOff(net *simNet, x *node.Node, others ...*node.Node) {
	for _, o := range others {
		net.setCut(x.ID(), o.ID(), true)
		net.setCut(o.ID(), x.ID(), true)
	}
}

// TestReviewHiddenExpiredKeyComesBackAfterFailover attacks "a key never
// comes back after it expired, in particular after a client saw it
// missing". Only GET, TTL and reads of a whole expired bucket delete what
// they find expired before answering (primary.go, read); HKEYS (and HLEN,
// HGETALL, HVALS, SCAN) leave an expired key out without deleting it, and
// a write to an expired bucket (HDEL, PUT) answers NOT FOUND without
// dropping it. When the primary p dies before its active expiry deletes
// them, the replica r that takes over, its clock behind p's, serves both
// again.
func TestReviewHiddenExpiredKeyComesBackAfterFailover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net, nodes := reviewTrio(t)
		p, r, c := nodes[0], nodes[1], nodes[2]
		bs := bucketsOwnedBy(p, 2, p.ID(), r.ID())
		if len(bs) < 2 {
			t.Fatal("no buckets with owners p, r")
		}
		keyed, whole := bs[0], bs[1]
		ctx := context.Background()
		// The expiry falls between two rounds of p's active expiry
		// (every 100ms from the start; the settling ends on a 50ms step).
		const ttl = 1025
		mustExec(t, p, store.Op{Kind: store.KindPutCreate, Bucket: keyed, Key: "stays", Value: "s"})
		mustExec(t, p, store.Op{Kind: store.KindPutCreate, Bucket: keyed, Key: "k", Value: "v", Expires: ttl, Flags: store.FlagRelative})
		mustExec(t, p, store.Op{Kind: store.KindPutCreate, Bucket: whole, Key: "x", Value: "v"})
		mustExec(t, p, store.Op{Kind: store.KindExpire, Bucket: whole, Expires: ttl, Flags: store.FlagRelative | store.FlagBucket})
		time.Sleep(ttl*time.Millisecond + 5*time.Millisecond)
		// A client lists the keys of `keyed` through p: k has expired.
		res, err := p.Execute(ctx, store.Op{Kind: store.KindKeys, Bucket: keyed})
		if err != nil || slices.Contains(res.Names, "k") {
			t.Fatalf("HKEYS %s through p after k expired = %v, %v; want k left out", keyed, res.Names, err)
		}
		// Another deletes a key of `whole`: the bucket has expired.
		if _, err := p.Execute(ctx, store.Op{Kind: store.KindDelete, Bucket: whole, Key: "x"}); !errors.Is(err, store.ErrBucketNotFound) {
			t.Fatalf("HDEL %s x through p after the bucket expired: %v; want the bucket missing", whole, err)
		}
		// p dies at once, before its next round of active expiry.
		cutOff(net, p, r, c)
		settleNodes(r, c)
		if o, _ := r.Owners(keyed); o[0].ID != r.ID() {
			t.Fatalf("r is not the primary after p's death: %v", memberNames(o))
		}
		if res, err := r.Execute(ctx, store.Op{Kind: store.KindGet, Bucket: keyed, Key: "k"}); !errors.Is(err, store.ErrKeyNotFound) {
			t.Errorf("GET %s k through r after a client saw it expired = %q, %v; want it still missing", keyed, res.Value, err)
		}
		if res, err := r.Execute(ctx, store.Op{Kind: store.KindGet, Bucket: whole, Key: "x"}); !errors.Is(err, store.ErrBucketNotFound) {
			t.Errorf("GET %s x through r after a client saw the bucket expired = %q, %v; want the bucket still missing", whole, res.Value, err)
		}
	})
}

// TestReviewPersistAndDropAfterFailoverToABehindReplica attacks "an expiry
// survives failover" and "no acknowledged write is lost": r applied p's
// EXPIRE of a bucket (ApplyExpiry) without its clock observing the
// version, so once r is the primary, its clock behind p's, the PERSIST
// and the DROP it orders are older than the expiry, and the merge ignores
// them although r acknowledged them: the bucket keeps its expiry (and
// then expires with its data), and a dropped bucket keeps its keys.
func TestReviewPersistAndDropAfterFailoverToABehindReplica(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net, nodes := reviewTrio(t)
		p, r, c := nodes[0], nodes[1], nodes[2]
		bs := bucketsOwnedBy(p, 2, p.ID(), r.ID())
		if len(bs) < 2 {
			t.Fatal("no buckets with owners p, r")
		}
		persisted, dropped := bs[0], bs[1]
		ctx := context.Background()
		for _, b := range bs {
			mustExec(t, p, store.Op{Kind: store.KindPutCreate, Bucket: b, Key: "k", Value: "v"})
		}
		// The expiries come a little later than the keys (p's clock).
		time.Sleep(500 * time.Millisecond)
		mustExec(t, p, store.Op{Kind: store.KindExpire, Bucket: persisted, Expires: 5000, Flags: store.FlagRelative | store.FlagBucket})
		mustExec(t, p, store.Op{Kind: store.KindExpire, Bucket: dropped, Expires: 60_000, Flags: store.FlagRelative | store.FlagBucket})
		cutOff(net, p, r, c)
		settleNodes(r, c)
		if o, _ := r.Owners(persisted); o[0].ID != r.ID() {
			t.Fatalf("r is not the primary after p's death: %v", memberNames(o))
		}
		if res, err := r.Execute(ctx, store.Op{Kind: store.KindPersist, Bucket: persisted, Flags: store.FlagBucket}); err != nil || res.Count != 1 {
			t.Fatalf("PERSIST %s through r = %+v, %v; want 1", persisted, res, err)
		}
		if res, err := r.Execute(ctx, store.Op{Kind: store.KindTTL, Bucket: persisted, Flags: store.FlagBucket}); err != nil || res.Value != "" {
			t.Errorf("TTL %s through r after an acknowledged PERSIST = %q, %v; want no expiry", persisted, res.Value, err)
		}
		if res, err := r.Execute(ctx, store.Op{Kind: store.KindDrop, Bucket: dropped}); err != nil || res.Count != 1 {
			t.Fatalf("DROP %s through r = %+v, %v; want 1", dropped, res, err)
		}
		// (Its keys are gone: r's clock observed their versions. The
		// bucket is not: the drop is older than the expiry.)
		if res, err := r.Execute(ctx, store.Op{Kind: store.KindLen, Bucket: dropped}); !errors.Is(err, store.ErrBucketNotFound) {
			t.Errorf("HLEN %s through r after an acknowledged DROP = %d, %v; want the bucket missing", dropped, res.Count, err)
		}
		if res, err := r.Execute(ctx, store.Op{Kind: store.KindTTL, Bucket: dropped, Flags: store.FlagBucket}); !errors.Is(err, store.ErrBucketNotFound) {
			t.Errorf("TTL %s through r after an acknowledged DROP = %q, %v; want the bucket missing", dropped, res.Value, err)
		}
		// Past the expiry PERSIST removed (by every clock), the data is
		// still there.
		time.Sleep(reviewSkew + 6*time.Second)
		if res, err := r.Execute(ctx, store.Op{Kind: store.KindGet, Bucket: persisted, Key: "k"}); err != nil || res.Value != "v" {
			t.Errorf("GET %s k through r long after an acknowledged PERSIST = %q, %v; want %q", persisted, res.Value, err, "v")
		}
	})
}

// TestReviewScanListsWhatThePrimaryHasExpired attacks "SCAN never lists
// an expired key": every member lists its copies by its own clock, so a
// replica whose clock runs behind the primary's lists a bucket the
// primary has expired (until the primary's active expiry, up to 100ms
// later, or for as long as the primary cannot replicate the drop).
func TestReviewScanListsWhatThePrimaryHasExpired(t *testing.T) {
	t.Skip("a known limit, stated in the README (Exactly what is guaranteed): each node judges expiry by its own clock when it lists, " +
		"so a name that expired within the skew between clocks, or in the 100 ms before its primary deletes it, may be listed")
	synctest.Test(t, func(t *testing.T) {
		_, nodes := reviewTrio(t)
		p, r := nodes[0], nodes[1]
		bs := bucketsOwnedBy(p, 1, p.ID(), r.ID())
		if len(bs) == 0 {
			t.Fatal("no bucket with owners p, r")
		}
		b := bs[0]
		ctx := context.Background()
		const ttl = 1025 // between two rounds of active expiry
		mustExec(t, p, store.Op{Kind: store.KindPutCreate, Bucket: b, Key: "x", Value: "v"})
		mustExec(t, p, store.Op{Kind: store.KindExpire, Bucket: b, Expires: ttl, Flags: store.FlagRelative | store.FlagBucket})
		time.Sleep(ttl*time.Millisecond + 5*time.Millisecond)
		// (A read through p would delete it first: look at p's store.)
		if p.Store().BucketLive(b) {
			t.Fatalf("%s has not expired at its primary", b)
		}
		page, err := p.Scan(ctx, store.ScanRequest{Count: 1000, Match: b})
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range page.Items {
			if it.Name == b {
				t.Errorf("SCAN MATCH %s lists the bucket its primary answered missing (expired)", b)
			}
		}
	})
}

// TestReviewEvictionBringsBackAnOverwrittenValue attacks "no
// acknowledged write is lost because of eviction" and "an evicted entry
// can only come back from an owner that was down": with --min-members 2
// of 3 (the majority serves, linearizable while at most replicas-1 nodes
// are cut off), the owner o of a bucket is cut off; the primary p
// overwrites k (v0 -> v1) with the majority's view, then evicts k (no
// tombstone). When the partition heals, o's copy of k, the older v0, has
// nothing to lose against, and p serves v0 again: the acknowledged v1 is
// lost and a stale value read.
func TestReviewEvictionBringsBackAnOverwrittenValue(t *testing.T) {
	t.Skip("a known limit, stated in the README (Exactly what is guaranteed): an eviction leaves no tombstone, " +
		"so an owner cut off while a key was evicted brings back the value it holds, which may be older than the evicted one")
	synctest.Test(t, func(t *testing.T) {
		net := newSimNet(13)
		var nodes []*node.Node
		for i, id := range []string{"id-p", "id-o", "id-x"} {
			var join []string
			if i > 0 {
				join = []string{"/sim/id-p"}
			}
			n, err := node.New(node.Config{
				Name: id[3:], Transport: net.transport(id), Join: join, Replicas: 2, MinMembers: 2,
				ProbeInterval: 50 * time.Millisecond, DeadAfter: 300 * time.Millisecond, ForwardTimeout: 200 * time.Millisecond,
				SyncInterval: time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
			n.Start()
			t.Cleanup(func() { n.Close() })
			nodes = append(nodes, n)
		}
		p, o, x := nodes[0], nodes[1], nodes[2]
		settleNodes(nodes...)
		bs := bucketsOwnedBy(p, 1, p.ID(), o.ID())
		if len(bs) == 0 {
			t.Fatal("no bucket with owners p, o")
		}
		b := bs[0]
		ctx := context.Background()
		mustExec(t, p, store.Op{Kind: store.KindPutCreate, Bucket: b, Key: "k", Value: "v0"})
		cutOff(net, o, p, x)
		settleNodes(p, x)
		if own, _ := p.Owners(b); own[0].ID != p.ID() {
			t.Fatalf("p is not the primary of %s without o: %v", b, memberNames(own))
		}
		mustExec(t, p, store.Op{Kind: store.KindPutCreate, Bucket: b, Key: "k", Value: "v1"})
		mustRead(t, p, b, "k", "v1")
		// p evicts k, as its evictor does under a memory limit.
		if res := mustExec(t, p, store.Op{Kind: store.KindEvict, Bucket: b, Key: "k"}); res.Count != 1 {
			t.Fatalf("EVICT %s k through p = %+v; want 1", b, res)
		}
		net.healAll()
		settleNodes(nodes...)
		res, err := p.Execute(ctx, store.Op{Kind: store.KindGet, Bucket: b, Key: "k"})
		if err == nil && res.Value == "v0" {
			t.Errorf("GET %s k after the heal = %q: the value overwritten by an acknowledged write (v1) is back", b, res.Value)
		} else if err != nil && !errors.Is(err, store.ErrKeyNotFound) {
			t.Fatalf("GET %s k after the heal: %v", b, err)
		}
	})
}

// TestReviewReadFailsWhenItsReclaimFails checks (an attack that held) that
// a GET which finds its key expired, and cannot replicate the delete
// (the primary was just cut off), answers an error rather than "missing":
// a client told "missing" for a key that no copy deleted could see it
// again through a new primary whose clock runs behind.
func TestReviewReadFailsWhenItsReclaimFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net, nodes := reviewTrio(t)
		p, r, c := nodes[0], nodes[1], nodes[2]
		bs := bucketsOwnedBy(p, 1, p.ID(), r.ID())
		if len(bs) == 0 {
			t.Fatal("no bucket with owners p, r")
		}
		b := bs[0]
		const ttl = 1025 // between two rounds of active expiry
		mustExec(t, p, store.Op{Kind: store.KindPutCreate, Bucket: b, Key: "k", Value: "v", Expires: ttl, Flags: store.FlagRelative})
		time.Sleep(ttl*time.Millisecond + 5*time.Millisecond)
		cutOff(net, p, r, c)
		res, err := p.Execute(context.Background(), store.Op{Kind: store.KindGet, Bucket: b, Key: "k"})
		if err == nil || errors.Is(err, store.ErrKeyNotFound) {
			t.Errorf("GET %s k through a primary that cannot replicate its reclaim = %q, %v; want an error", b, res.Value, err)
		}
		settleNodes(r, c)
		if res, err := r.Execute(context.Background(), store.Op{Kind: store.KindGet, Bucket: b, Key: "k"}); err != nil {
			t.Logf("GET through r after the failover = %q, %v", res.Value, err)
		}
	})
}

// TestReviewSetRacingActiveExpiryIsKept checks (an attack that held) "a
// SET racing an active-expiry reclaim is never deleted by it": keys
// expire at an instant when p's active expiry runs, while clients SET them
// anew without an expiry at that same instant; every SET acknowledged
// must read back, on the primary and, after p dies, on the next one.
func TestReviewSetRacingActiveExpiryIsKept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net, nodes := reviewTrio(t)
		p, r, c := nodes[0], nodes[1], nodes[2]
		bs := bucketsOwnedBy(p, 1, p.ID(), r.ID())
		if len(bs) == 0 {
			t.Fatal("no bucket with owners p, r")
		}
		b := bs[0]
		ctx := context.Background()
		const keys = 64
		acked := make(map[string]bool)
		// Both phases of the 100ms rounds against the 50ms settling.
		for round, ttl := range []time.Duration{1000 * time.Millisecond, 1050 * time.Millisecond} {
			for i := range keys {
				mustExec(t, p, store.Op{Kind: store.KindPutCreate, Bucket: b, Key: keyName(i + round*keys), Value: "old",
					Expires: ttl.Milliseconds(), Flags: store.FlagRelative})
			}
			time.Sleep(ttl)
			done := make(chan string, keys)
			for i := range keys {
				key := keyName(i + round*keys)
				go func() {
					op := store.Op{Kind: store.KindSet, Bucket: b, Key: key, Value: "new"}
					if _, err := p.Execute(ctx, op); err == nil {
						done <- key
					} else {
						done <- ""
					}
				}()
			}
			for range keys {
				if k := <-done; k != "" {
					acked[k] = true
				}
			}
			time.Sleep(300 * time.Millisecond) // a few rounds of active expiry
		}
		if len(acked) == 0 {
			t.Fatal("no SET was acknowledged")
		}
		check := func(n *node.Node) {
			for k := range acked {
				if res, err := n.Execute(ctx, store.Op{Kind: store.KindGet, Bucket: b, Key: k}); err != nil || res.Value != "new" {
					t.Errorf("GET %s %s through %s after an acknowledged SET = %q, %v", b, k, n.Name(), res.Value, err)
				}
			}
		}
		check(p)
		cutOff(net, p, r, c)
		settleNodes(r, c)
		check(r)
	})
}

// TestReviewReclaimRoutedToABehindPrimaryDeletesNothing attacks "what a
// read finds expired is deleted before it answers" (primary.go, read and
// reclaimRead): the delete is a KindReclaim routed like any write, so when
// the view changes between the read and its reclaim (p leaves, or loses
// its lease and the bucket moves), the reclaim runs on the new primary r,
// which judges expiry by its own clock, here 9s behind: it finds nothing
// expired, deletes nothing, and reclaimRead returns nil, so the read
// answers "missing". r then serves the key. The race between the read's
// last check (stillServing) and the reclaim is simulated by calling
// reclaimRead on p once it has left (ReviewReclaimRead, export_test).
func TestReviewReclaimRoutedToABehindPrimaryDeletesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, nodes := reviewTrio(t)
		p, r, c := nodes[0], nodes[1], nodes[2]
		bs := bucketsOwnedBy(p, 1, p.ID(), r.ID())
		if len(bs) == 0 {
			t.Fatal("no bucket with owners p, r")
		}
		b := bs[0]
		ctx := context.Background()
		const ttl = 1025 // between two rounds of active expiry
		mustExec(t, p, store.Op{Kind: store.KindPutCreate, Bucket: b, Key: "k", Value: "v", Expires: ttl, Flags: store.FlagRelative})
		time.Sleep(ttl*time.Millisecond + 5*time.Millisecond)
		// p's read found k expired (p's store says so) ...
		if p.Store().Live(b, "k") {
			t.Fatal("k has not expired at p")
		}
		// ... and the view changes before its reclaim runs.
		if err := p.Leave(ctx); err != nil {
			t.Fatal(err)
		}
		settleNodes(r, c)
		if err := p.ReviewReclaimRead(ctx, store.Op{Kind: store.KindGet, Bucket: b, Key: "k"}); err != nil {
			t.Logf("the reclaim failed (the read would answer an error): %v", err)
			return
		}
		// The read answers "missing"; k must stay missing.
		if res, err := r.Execute(ctx, store.Op{Kind: store.KindGet, Bucket: b, Key: "k"}); !errors.Is(err, store.ErrKeyNotFound) {
			t.Errorf("GET %s k through r after p's read answered it missing (its reclaim returned nil) = %q, %v", b, res.Value, err)
		}
	})
}

// TestReviewConditionalWritesAreAtomic checks (an attack that held) claim
// 4: clients race SET NX on one key, and INCR-like GETEX/SET GET chains,
// while blind writes (HSET) hit other keys of the bucket: exactly one SET
// NX wins per round, and no SET ... GET sees a value twice.
func TestReviewConditionalWritesAreAtomic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, nodes := reviewTrio(t)
		p := nodes[0]
		b := bucketsOwnedBy(p, 1, p.ID())[0]
		ctx := context.Background()
		const clients = 16
		for round := range 5 {
			key := keyName(round)
			wins := make(chan bool, clients)
			olds := make(chan string, clients)
			for i := range clients {
				go func() {
					// A blind write to another key of the bucket.
					_, _ = nodes[i%3].Execute(ctx, store.Op{Kind: store.KindPutCreate, Bucket: b, Key: keyName(100 + i), Value: "x"})
					res, err := nodes[i%3].Execute(ctx, store.Op{Kind: store.KindSet, Bucket: b, Key: key, Value: "nx", Flags: store.FlagNX | store.FlagRelative, Expires: 60_000})
					wins <- err == nil && res.Count&1 != 0
					res, err = nodes[(i+1)%3].Execute(ctx, store.Op{Kind: store.KindSet, Bucket: b, Key: key + "g", Value: keyName(i), Flags: store.FlagGet})
					if err != nil {
						olds <- "error"
					} else {
						olds <- res.Value
					}
				}()
			}
			won, seen := 0, make(map[string]int)
			for range clients {
				if <-wins {
					won++
				}
				seen[<-olds]++
			}
			if won != 1 {
				t.Errorf("round %d: %d SET NX won, want 1", round, won)
			}
			for v, n := range seen {
				if v != "error" && n > 1 {
					t.Errorf("round %d: %d SET GET saw the old value %q", round, n, v)
				}
			}
		}
	})
}
