package node_test

// Adversarial review of writeMany (write_many.go): a pipeline's plain
// writes to many buckets ordered under several sequencers at once and
// replicated together. On the bubble's fake clock (synctest).

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/dboutique/dboutique/node"
	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/ring"
)

// startLate starts one more node named name (id-name) on net, joining p,
// configured as startSkewed configures its nodes; it closes with the test.
func startLate(t *testing.T, net *simNet, name string, tweak func(*node.Config)) *node.Node {
	t.Helper()
	cfg := skewedConfig(net, name, 0)
	cfg.Join = []string{"/sim/id-p"}
	if tweak != nil {
		tweak(&cfg)
	}
	return startConfigured(t, cfg)
}

// startRanged starts p, r and c on net with replicas 2 and the letter
// ranges a=p, b=r, c=c, d=p, e=c, f-z=r: p is the primary of the buckets
// beginning with a (replicated to r) and with d (replicated to c), so
// that one primary's buckets have different replicas. tweak, when not
// nil, changes the config further. It returns the nodes settled.
func startRanged(t *testing.T, net *simNet, tweak func(*node.Config)) (p, r, c *node.Node) {
	t.Helper()
	table, err := ring.ParseRanges("a=p,b=r,c=c,d=p,e=c,f-z=r")
	if err != nil {
		t.Fatal(err)
	}
	nodes := startSkewed(t, net, []time.Duration{0, 0, 0}, func(cfg *node.Config) {
		cfg.Replicas, cfg.Placement = 2, table
		if tweak != nil {
			tweak(cfg)
		}
	})
	settleNodes(nodes...)
	return nodes[0], nodes[1], nodes[2]
}

// TestWriteManyServesBucketsAtOnce: after a view change, a primary is
// ready for none of its buckets, and each must be pulled (a round trip to
// every member, and their barriers) before it is written. writeGroup ran
// a bucket's group on a goroutine of its own, so a pipeline over many
// buckets pulled them all at once; writeMany serves its buckets one after
// another, so the pipeline waits for one pull per bucket in turn (and,
// without a lease, for one ForwardTimeout per bucket; over the memory
// limit, for one evictWait per bucket). Here 32 buckets, 20 ms each way:
// at once, the pipeline answers in a few round trips.
func TestWriteManyServesBucketsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := newSimNet(5)
		nodes := startSkewed(t, net, []time.Duration{0, 0, 0}, nil)
		p := nodes[0]
		settleNodes(nodes...)
		buckets := primaryBuckets(t, p, "atonce", 48)
		// A new member: a new view, a new term on p, in which p is ready
		// for none of its buckets.
		nodes = append(nodes, startLate(t, net, "d", nil))
		settleNodes(nodes...)
		var ops []store.Op
		for _, b := range buckets {
			if o, err := p.Owners(b); err != nil || o[0].ID != p.ID() {
				continue
			}
			ops = append(ops, store.Op{Kind: store.KindPut, Bucket: b, Key: "k", Value: b})
		}
		if len(ops) < 16 {
			t.Fatalf("only %d buckets still p's", len(ops))
		}
		net.setQuality(20*time.Millisecond, 0)
		res, errs := make([]store.Result, len(ops)), make([]error, len(ops))
		start := time.Now()
		p.ExecuteBatch(context.Background(), ops, res, errs)
		took := time.Since(start)
		for i, err := range errs {
			if err != nil {
				t.Errorf("write %d (%s): %v", i, ops[i].Bucket, err)
			}
		}
		t.Logf("a pipeline over %d buckets that p must pull first took %v", len(ops), took)
		if took > 400*time.Millisecond {
			t.Errorf("a pipeline over %d buckets took %v with 20 ms each way: its buckets were pulled one after another", len(ops), took)
		}
	})
}

// TestWriteManyHoldsNoSequencerForOthersGroups: writeMany holds every
// sequencer it took until the last of its groups is replicated. A bucket
// whose group every owner acknowledged at once stays locked while another
// bucket's group of the same pipeline waits for an owner that does not
// answer (until the view drops it, or WriteTimeout): a write that takes
// that bucket's sequencer alone (SET NX here; also CREATE, DROP, expiry,
// eviction, and the barrier a new primary needs before it serves it)
// waits for a bucket it has nothing to do with, and, the semaphore being
// first come first served, so does every write behind it. With writeGroup
// each group let go of its own sequencer once it was done.
func TestWriteManyHoldsNoSequencerForOthersGroups(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := newSimNet(7)
		p, r, c := startRanged(t, net, nil)
		fast, slow := "apple", "date"
		if o := mustOwners(t, p, fast, 2); o[0].ID != p.ID() || o[1].ID != r.ID() {
			t.Fatalf("%s on %v", fast, memberNames(o))
		}
		if o := mustOwners(t, p, slow, 2); o[0].ID != p.ID() || o[1].ID != c.ID() {
			t.Fatalf("%s on %v", slow, memberNames(o))
		}
		for _, b := range []string{fast, slow} {
			mustExec(t, p, store.Op{Kind: store.KindCreate, Bucket: b})
		}
		net.setQuality(time.Millisecond, 0)
		// p's messages to c are lost from now on (c still reaches p).
		net.setCut(p.ID(), c.ID(), true)
		done := make(chan struct{})
		go func() {
			defer close(done)
			ops := []store.Op{
				{Kind: store.KindPut, Bucket: fast, Key: "k", Value: "v"},
				{Kind: store.KindPut, Bucket: slow, Key: "k", Value: "v"},
			}
			res, errs := make([]store.Result, len(ops)), make([]error, len(ops))
			p.ExecuteBatch(context.Background(), ops, res, errs)
			t.Logf("the pipeline answered %v", errs)
		}()
		time.Sleep(20 * time.Millisecond)
		if e, ok := heldEntry(r, fast, "k"); !ok || e.Value != "v" {
			t.Fatalf("r does not hold %s/k yet: %+v", fast, e)
		}
		start := time.Now()
		if _, err := p.Execute(context.Background(), store.Op{Kind: store.KindSet, Bucket: fast, Key: "nx", Value: "v", Flags: store.FlagNX}); err != nil {
			t.Errorf("SET NX %s: %v", fast, err)
		}
		took := time.Since(start)
		t.Logf("SET NX on %s, whose pipeline group was done, took %v", fast, took)
		if took > 50*time.Millisecond {
			t.Errorf("SET NX on %s took %v: it waited for %s's group, which waits for c", fast, took, slow)
		}
		<-done
	})
}

// TestWriteManyLockFailureLeavesNoSequencer: a pipeline whose context
// ends while writeMany waits for one of its stripes (held alone by a SET
// NX that waits for an owner that does not answer) fails the groups it
// could not lock with the context's error (and so the groups it did lock,
// which find the context ended: a pipeline waits for its slowest stripe),
// applies none of them, and holds no sequencer once it has answered.
func TestWriteManyLockFailureLeavesNoSequencer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := newSimNet(7)
		p, _, c := startRanged(t, net, nil)
		// Buckets replicated to r, on stripes below and above that of
		// blocked, which is replicated to c.
		const blocked = "date"
		stripe := func(b string) uint64 { return xxhash.Sum64String(b) % 256 }
		var below, above string
		for i := 0; below == "" || above == ""; i++ {
			b := fmt.Sprintf("a%03d", i)
			switch s := stripe(b); {
			case s < stripe(blocked) && below == "":
				below = b
			case s > stripe(blocked) && above == "":
				above = b
			}
		}
		for _, b := range []string{below, above, blocked} {
			mustExec(t, p, store.Op{Kind: store.KindCreate, Bucket: b})
		}
		net.setQuality(time.Millisecond, 0)
		net.setCut(p.ID(), c.ID(), true)
		nx := make(chan error, 1)
		go func() {
			_, err := p.Execute(context.Background(), store.Op{Kind: store.KindSet, Bucket: blocked, Key: "nx", Value: "v", Flags: store.FlagNX})
			nx <- err
		}()
		time.Sleep(10 * time.Millisecond) // the SET NX holds blocked's stripe alone
		ops := []store.Op{
			{Kind: store.KindPut, Bucket: above, Key: "k", Value: "v"},
			{Kind: store.KindPut, Bucket: blocked, Key: "k", Value: "v"},
			{Kind: store.KindPut, Bucket: below, Key: "k", Value: "v"},
		}
		res, errs := make([]store.Result, len(ops)), make([]error, len(ops))
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		p.ExecuteBatch(ctx, ops, res, errs)
		cancel()
		t.Logf("the pipeline answered %v", errs)
		// The groups it could not lock fail; the one it locked (below)
		// waited with its stripe held and finds the context ended too.
		for i := range ops {
			if !errors.Is(errs[i], context.DeadlineExceeded) {
				t.Errorf("%s: %v, want the context's end", ops[i].Bucket, errs[i])
			}
			if e, ok := heldEntry(p, ops[i].Bucket, "k"); ok {
				t.Errorf("p applied %s/k (%+v), which failed", ops[i].Bucket, e)
			}
		}
		for _, b := range []string{below, above} {
			start := time.Now()
			if _, err := p.Execute(context.Background(), store.Op{Kind: store.KindSet, Bucket: b, Key: "nx", Value: "v", Flags: store.FlagNX}); err != nil {
				t.Errorf("SET NX %s: %v", b, err)
			}
			if took := time.Since(start); took > 50*time.Millisecond {
				t.Errorf("SET NX %s took %v: its sequencer was still held", b, took)
			}
		}
		<-nx
	})
}

// TestWriteManyViewChangeMidReplication: the view changes while a
// pipeline's groups are replicated, for one bucket's owners and not the
// other's: c crashed, and p's messages to it are refused until the view
// drops it, when date moves to r. Each group is acknowledged only once every owner of the
// view then holds it: apple at once (r), date once r, its new owner,
// holds it too.
func TestWriteManyViewChangeMidReplication(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := newSimNet(7)
		p, r, c := startRanged(t, net, func(cfg *node.Config) { cfg.WriteTimeout = 5 * time.Second })
		for _, b := range []string{"apple", "date"} {
			mustExec(t, p, store.Op{Kind: store.KindCreate, Bucket: b})
		}
		net.setQuality(time.Millisecond, 0)
		// c crashes: p's messages to it are refused until p, and r,
		// find it dead.
		net.down(c.ID())
		c.Close()
		ops := []store.Op{
			{Kind: store.KindPutCreate, Bucket: "date", Key: "k", Value: "v"},
			{Kind: store.KindPutCreate, Bucket: "apple", Key: "k", Value: "v"},
			{Kind: store.KindDelete, Bucket: "date", Key: "gone"},
		}
		res, errs := make([]store.Result, len(ops)), make([]error, len(ops))
		p.ExecuteBatch(context.Background(), ops, res, errs)
		t.Logf("the pipeline answered %v %v", res, errs)
		for i, err := range errs {
			if err != nil {
				t.Errorf("%s %s: %v", ops[i].Kind, ops[i].Bucket, err)
			}
		}
		if res[0].Count != 1 || res[1].Count != 1 || res[2].Count != 0 {
			t.Errorf("counts %d %d %d, want 1 1 0", res[0].Count, res[1].Count, res[2].Count)
		}
		if o := mustOwners(t, p, "date", 2); o[1].ID != r.ID() {
			t.Fatalf("date on %v once p answered; want it moved to r", memberNames(o))
		}
		for _, b := range []string{"apple", "date"} {
			if e, ok := heldEntry(r, b, "k"); !ok || e.Value != "v" {
				t.Errorf("r holds %+v for %s/k once p answered", e, b)
			}
		}
	})
}

// TestWriteManyPartsSpanBatches: a caller of the replica queue with more
// parts than one batch carries (large groups) sends them over several
// turns, with other callers' parts in between, and one caller gives up
// (its context ends) while its parts are queued or in flight. Every
// write acknowledged is on every replica, every other write failed, and
// nothing waits forever (synctest would report it).
func TestWriteManyPartsSpanBatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := newSimNet(9)
		nodes := startSkewed(t, net, []time.Duration{0, 0, 0}, nil)
		p := nodes[0]
		settleNodes(nodes...)
		buckets := primaryBuckets(t, p, "span", 24)
		net.setQuality(5*time.Millisecond, 0)
		big := string(make([]byte, 3<<20)) // a group of 3 MiB: five fill a batch
		type call struct {
			ops  []store.Op
			res  []store.Result
			errs []error
		}
		calls := make([]call, 3)
		var wg sync.WaitGroup
		for c := range calls {
			var ops []store.Op
			for _, b := range buckets[c*8 : c*8+8] {
				ops = append(ops, store.Op{Kind: store.KindPut, Bucket: b, Key: fmt.Sprint("k", c), Value: fmt.Sprint(c) + big})
			}
			calls[c] = call{ops: ops, res: make([]store.Result, len(ops)), errs: make([]error, len(ops))}
			wg.Go(func() {
				ctx := context.Background()
				if c == 1 {
					// This caller leaves while its parts are on their way.
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, 8*time.Millisecond)
					defer cancel()
				}
				p.ExecuteBatch(ctx, calls[c].ops, calls[c].res, calls[c].errs)
			})
		}
		wg.Wait()
		acked := 0
		for c, cl := range calls {
			for i, err := range cl.errs {
				op := cl.ops[i]
				if err != nil {
					t.Logf("caller %d, %s: %v", c, op.Bucket, err)
					continue
				}
				acked++
				for _, n := range nodes {
					if e, ok := heldEntry(n, op.Bucket, op.Key); !ok || e.Value != op.Value {
						t.Errorf("caller %d: %s/%s acknowledged, but %s does not hold it", c, op.Bucket, op.Key, n.Name())
					}
				}
			}
		}
		t.Logf("%d of 24 writes acknowledged", acked)
		if acked < 16 {
			t.Errorf("%d writes acknowledged; want at least those of the two callers that stayed", acked)
		}
	})
}

// TestWriteManyResultsInPlace: the groups of a pipeline are sorted by
// stripe inside writeMany; each outcome still goes back to its own
// request: a bucket that does not exist (a group with nothing to write)
// answers NOT FOUND, the others their counts, in the pipeline's order.
func TestWriteManyResultsInPlace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := newSimNet(3)
		nodes := startSkewed(t, net, []time.Duration{0, 0, 0}, nil)
		p := nodes[0]
		settleNodes(nodes...)
		buckets := primaryBuckets(t, p, "inplace", 12)
		var missing []string
		for i := 0; len(missing) < 3; i++ {
			b := fmt.Sprintf("missing%03d", i)
			if o, err := p.Owners(b); err == nil && o[0].ID == p.ID() {
				missing = append(missing, b)
			}
		}
		for _, b := range buckets[:6] {
			mustExec(t, p, store.Op{Kind: store.KindPut, Bucket: b, Key: "old", Value: "x"})
		}
		var ops []store.Op
		for i, b := range buckets {
			ops = append(ops,
				store.Op{Kind: store.KindPutCreate, Bucket: b, Key: "old", Value: b},
				store.Op{Kind: store.KindDelete, Bucket: b, Key: "old"},
				store.Op{Kind: store.KindPutCreate, Bucket: b, Key: fmt.Sprint("new", i), Value: b})
			if i%4 == 0 {
				ops = append(ops, store.Op{Kind: store.KindPut, Bucket: missing[i/4], Key: "k", Value: "v"},
					store.Op{Kind: store.KindDelete, Bucket: missing[i/4], Key: "k"})
			}
		}
		res, errs := make([]store.Result, len(ops)), make([]error, len(ops))
		p.ExecuteBatch(context.Background(), ops, res, errs)
		existed := make(map[string]bool)
		for _, b := range buckets[:6] {
			existed[b] = true
		}
		seen := make(map[string]int)
		for i, op := range ops {
			if slices.Contains(missing, op.Bucket) {
				if !errors.Is(errs[i], store.ErrBucketNotFound) {
					t.Errorf("%d: %s %s: %v, want NOT FOUND", i, op.Kind, op.Bucket, errs[i])
				}
				continue
			}
			if errs[i] != nil {
				t.Errorf("%d: %s %s: %v", i, op.Kind, op.Bucket, errs[i])
				continue
			}
			var want int
			switch k := seen[op.Bucket]; k {
			case 0: // PUTCREATE old: new unless it existed
				want = b2i(!existed[op.Bucket])
			case 1: // DELETE old: it exists now
				want = 1
			case 2: // PUTCREATE new<i>
				want = 1
			}
			seen[op.Bucket]++
			if res[i].Count != want {
				t.Errorf("%d: %s %s/%s counted %d, want %d", i, op.Kind, op.Bucket, op.Key, res[i].Count, want)
			}
		}
	})
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
