package node_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dboutique/dboutique/node"
	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/node/store/storetest"
)

// Tests of the operation kinds behind Redis's commands (KindPutCreate,
// KindLen, KindGetAll) and of Result.Count: on a Store, then through a
// replicated cluster on memNet, where the primary decides the counts and
// forwarding carries them back.

func putCreate(b, k, v string) store.Op {
	return store.Op{Kind: store.KindPutCreate, Bucket: b, Key: k, Value: v}
}
func lenOf(b string) store.Op  { return store.Op{Kind: store.KindLen, Bucket: b} }
func getAll(b string) store.Op { return store.Op{Kind: store.KindGetAll, Bucket: b} }

// countStep is an operation and its expected outcome: Count, Value and
// Names (compared with slices.Equal), or the error.
type countStep struct {
	op      store.Op
	count   int
	value   string
	names   []string
	wantErr error
}

func (st countStep) check(t *testing.T, via string, res store.Result, err error) {
	t.Helper()
	what := fmt.Sprintf("%v %q %q via %s", st.op.Kind, st.op.Bucket, st.op.Key, via)
	storetest.CheckErr(t, what, err, st.wantErr)
	if err == nil && (res.Count != st.count || res.Value != st.value || !slices.Equal(res.Names, st.names)) {
		t.Errorf("%s = %+v; want Count %d, Value %q, Names %q", what, res, st.count, st.value, st.names)
	}
}

// kindScenario is a scenario of the new kinds on a bucket "b" that does
// not exist yet; it is run on a Store and through a cluster.
func kindScenario() []countStep {
	return []countStep{
		{op: lenOf("b"), wantErr: store.ErrBucketNotFound},
		{op: getAll("b"), wantErr: store.ErrBucketNotFound},
		{op: storetest.Del("b", "k"), wantErr: store.ErrBucketNotFound},
		{op: storetest.Drop("b"), wantErr: store.ErrBucketNotFound},
		{op: storetest.Put("b", "k", "v"), wantErr: store.ErrBucketNotFound},
		// PUTCREATE creates the bucket; a key counts 1 when it had no value.
		{op: putCreate("b", "k2", "v2"), count: 1},
		{op: putCreate("b", "k2", "v2bis"), count: 0},
		{op: putCreate("b", "k1", "v1"), count: 1},
		{op: putCreate("b", "", ""), count: 1},
		{op: putCreate("b", "\x00\r\n", "\xff"), count: 1},
		{op: lenOf("b"), count: 4},
		{op: getAll("b"), names: []string{"", "", "\x00\r\n", "\xff", "k1", "v1", "k2", "v2bis"}},
		{op: storetest.Keys("b"), names: []string{"", "\x00\r\n", "k1", "k2"}},
		{op: storetest.Get("b", "k2"), value: "v2bis"},
		// PUT leaves Count 0 whether or not the key is new.
		{op: storetest.Put("b", "k3", "v3"), count: 0},
		{op: storetest.Put("b", "k3", "v3bis"), count: 0},
		// DELETE counts live keys only.
		{op: storetest.Del("b", "k3"), count: 1},
		{op: storetest.Del("b", "k3"), count: 0},
		{op: storetest.Del("b", "never"), count: 0},
		{op: storetest.Del("b", ""), count: 1},
		{op: lenOf("b"), count: 3},
		// A deleted key set again counts as new.
		{op: putCreate("b", "k3", "again"), count: 1},
		{op: getAll("b"), names: []string{"\x00\r\n", "\xff", "k1", "v1", "k2", "v2bis", "k3", "again"}},
		// CREATE counts a new bucket only.
		{op: storetest.Create("b"), count: 0},
		{op: lenOf("b"), count: 4},
		// DROP counts the bucket; afterwards nothing of it is left.
		{op: storetest.Drop("b"), count: 1},
		{op: storetest.Drop("b"), wantErr: store.ErrBucketNotFound},
		{op: lenOf("b"), wantErr: store.ErrBucketNotFound},
		{op: getAll("b"), wantErr: store.ErrBucketNotFound},
		{op: storetest.Create("b"), count: 1},
		{op: lenOf("b"), count: 0},
		{op: getAll("b")},
		{op: putCreate("b", "k1", "new"), count: 1},
		{op: storetest.Drop("b"), count: 1},
		// PUTCREATE of a dropped bucket makes it again, empty but for the key.
		{op: putCreate("b", "k2", "fresh"), count: 1},
		{op: getAll("b"), names: []string{"k2", "fresh"}},
		{op: storetest.Get("b", "k1"), wantErr: store.ErrKeyNotFound},
	}
}

func TestStoreKinds(t *testing.T) {
	s := store.NewStore()
	for _, st := range kindScenario() {
		res, err := s.Execute(context.Background(), st.op)
		st.check(t, "store", res, err)
	}
}

// TestStoreGetAllOrder: GETALL alternates keys and values in key order
// (byte order), across shards, and agrees with KEYS and LEN.
func TestStoreGetAllOrder(t *testing.T) {
	s := store.NewStore()
	ctx := context.Background()
	want := map[string]string{}
	for i := range 500 {
		k := strconv.Itoa(i * 7919 % 1000)
		want[k] = "v" + k
		if _, err := s.Execute(ctx, putCreate("b", k, "v"+k)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 100 {
		k := strconv.Itoa(i * 7919 % 1000)
		delete(want, k)
		if res, err := s.Execute(ctx, storetest.Del("b", k)); err != nil || res.Count != 1 {
			t.Fatalf("DELETE %s: %+v, %v", k, res, err)
		}
	}
	res, err := s.Execute(ctx, getAll("b"))
	if err != nil || len(res.Names) != 2*len(want) {
		t.Fatalf("GETALL: %d names, %v; want %d", len(res.Names), err, 2*len(want))
	}
	var ks []string
	for i := 0; i < len(res.Names); i += 2 {
		k, v := res.Names[i], res.Names[i+1]
		if want[k] != v {
			t.Errorf("GETALL pair %q=%q, want %q", k, v, want[k])
		}
		ks = append(ks, k)
	}
	if !slices.IsSorted(ks) {
		t.Errorf("GETALL keys not in key order: %q", ks)
	}
	kr, err := s.Execute(ctx, storetest.Keys("b"))
	if err != nil || !slices.Equal(kr.Names, ks) {
		t.Errorf("KEYS %q, %v; want GETALL's keys %q", kr.Names, err, ks)
	}
	lr, err := s.Execute(ctx, lenOf("b"))
	if err != nil || lr.Count != len(want) {
		t.Errorf("LEN = %d, %v; want %d", lr.Count, err, len(want))
	}
}

func TestOpValidateNewKinds(t *testing.T) {
	valid := []store.Op{
		putCreate("b", "k", "v"),
		putCreate("b", "", ""),
		putCreate("\x00kv:1", "k", "v"),
		lenOf("b"),
		getAll("b"),
	}
	for _, op := range valid {
		if err := op.Validate(); err != nil {
			t.Errorf("%+v: %v, want valid", op, err)
		}
	}
	invalid := []store.Op{
		{Kind: store.KindPutCreate},
		{Kind: store.KindPutCreate, Key: "k", Value: "v"},
		{Kind: store.KindLen},
		{Kind: store.KindLen, Bucket: "b", Value: "v"},
		{Kind: store.KindLen, Bucket: "b", Key: "k"},
		{Kind: store.KindLen, Key: "k"},
		{Kind: store.KindGetAll},
		{Kind: store.KindGetAll, Bucket: "b", Key: "k"},
		{Kind: store.KindGetAll, Bucket: "b", Value: "v"},
		{Kind: store.KindGetAll, Bucket: "b", Key: "k", Value: "v"},
		{Kind: store.KindEvict + 1, Bucket: "b"},
		{Kind: 255, Bucket: "b"},
		// Expiry options that do not go together, or not with the kind.
		{Kind: store.KindGet, Bucket: "b", Key: "k", Expires: 5},
		{Kind: store.KindGet, Bucket: "b", Key: "k", Flags: store.FlagNX},
		{Kind: store.KindSet, Bucket: "b", Key: "k", Flags: store.FlagNX | store.FlagXX},
		{Kind: store.KindSet, Bucket: "b", Key: "k", Flags: store.FlagKeepTTL | store.FlagRelative, Expires: 5},
		{Kind: store.KindSet, Bucket: "b", Key: "k", Flags: store.FlagBucket},
		{Kind: store.KindExpire, Bucket: "b", Key: "k"},
		{Kind: store.KindExpire, Bucket: "b", Key: "k", Expires: 5, Flags: store.FlagGT | store.FlagLT},
		{Kind: store.KindExpire, Bucket: "b", Key: "k", Expires: -5},
		{Kind: store.KindExpire, Bucket: "b", Key: "k", Expires: 5, Flags: store.FlagBucket},
		{Kind: store.KindExpire, Bucket: "b", Key: "k", Expires: 5, Value: "v"},
		{Kind: store.KindTTL, Bucket: "b", Key: "k", Expires: 5},
		{Kind: store.KindGetEx, Bucket: "b", Key: "k", Flags: store.FlagPersist | store.FlagRelative, Expires: 5},
		{Kind: store.KindPersist, Bucket: "b", Key: "k", Flags: store.FlagNX},
		{Kind: store.KindPut, Bucket: "b", Key: "k", Flags: store.FlagNX},
	}
	s := store.NewStore()
	for _, op := range invalid {
		if err := op.Validate(); !errors.Is(err, store.ErrInvalidOp) {
			t.Errorf("%+v: Validate = %v, want ErrInvalidOp", op, err)
		}
		if res, err := s.Execute(context.Background(), op); !errors.Is(err, store.ErrInvalidOp) || res.Count != 0 {
			t.Errorf("%+v: Execute = %+v, %v; want ErrInvalidOp", op, res, err)
		}
	}
	if got := s.Buckets(); len(got) != 0 {
		t.Errorf("invalid operations created buckets %q", got)
	}
	// The new kinds travel between nodes.
	for _, op := range valid {
		b, err := op.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := store.DecodeOp(b); err != nil || got != op {
			t.Errorf("%+v round trip: %+v, %v", op, got, err)
		}
	}
}

// nonOwner returns a node of nodes that does not hold bucket, and the
// bucket's primary and other owner.
func nonOwner(t *testing.T, nodes []*node.Node, bucket string) (outsider, primary, secondary *node.Node) {
	t.Helper()
	owners := mustOwners(t, nodes[0], bucket, 2)
	primary, secondary = find(nodes, owners[0].ID), find(nodes, owners[1].ID)
	for _, n := range nodes {
		if n != primary && n != secondary {
			return n, primary, secondary
		}
	}
	t.Fatalf("every node owns %s", bucket)
	return nil, nil, nil
}

// TestClusterKinds runs the scenario through each node of a replicated
// cluster in turn (the outsider, the primary, the other owner): the counts
// come back through forwarding, and after every write both owners hold
// equal copies and the outsider none.
func TestClusterKinds(t *testing.T) {
	nodes := startReplicated(t, newMemNet(), replicas(2), "a", "b", "c")
	const bucket = "b"
	outsider, primary, secondary := nonOwner(t, nodes, bucket)
	for _, via := range []*node.Node{outsider, primary, secondary} {
		t.Run("via "+via.Name(), func(t *testing.T) {
			for _, st := range kindScenario() {
				res, err := via.Execute(context.Background(), st.op)
				st.check(t, via.Name(), res, err)
				if st.op.Kind.IsWrite() && err == nil {
					if err := checkPlacement(nodes, bucket); err != nil {
						t.Fatalf("after %v %q: %v", st.op.Kind, st.op.Key, err)
					}
				}
			}
			mustExec(t, via, storetest.Drop(bucket))
		})
	}
	// PUTCREATE through the outsider made the bucket on both owners.
	res := mustExec(t, outsider, putCreate(bucket, "k", "v"))
	if res.Count != 1 || !primary.Store().Exists(bucket) || !secondary.Store().Exists(bucket) || outsider.Store().Exists(bucket) {
		t.Errorf("PUTCREATE via the outsider: count %d; bucket on primary %v, other owner %v, outsider %v",
			res.Count, primary.Store().Exists(bucket), secondary.Store().Exists(bucket), outsider.Store().Exists(bucket))
	}
	for _, n := range []*node.Node{primary, secondary} {
		if v, err := n.Store().Get(bucket, "k"); err != nil || v != "v" {
			t.Errorf("%s's copy: k = %q, %v", n.Name(), v, err)
		}
	}
}

// TestClusterBatchCounts: ExecuteBatch runs the new kinds in order through
// any node; counts follow the writes earlier in the same batch.
func TestClusterBatchCounts(t *testing.T) {
	nodes := startReplicated(t, newMemNet(), replicas(2), "a", "b", "c")
	// Two buckets with different primaries, so a batch is split.
	b1 := "first"
	_, p1, _ := nonOwner(t, nodes, b1)
	b2 := ""
	for i := range 100 {
		name := "other" + strconv.Itoa(i)
		if _, p, _ := nonOwner(t, nodes, name); p != p1 {
			b2 = name
			break
		}
	}
	if b2 == "" {
		t.Fatal("no bucket with another primary")
	}
	for round, via := range nodes {
		t.Run("via "+via.Name(), func(t *testing.T) {
			n1, n2 := b1+strconv.Itoa(round), b2
			steps := []countStep{
				{op: putCreate(n1, "k", "v"), count: 1},
				{op: putCreate(n1, "k", "w"), count: 0},
				{op: storetest.Del(n1, "k"), count: 1},
				// Another bucket in between splits the run of writes.
				{op: putCreate(n2, "k"+n1, "x"), count: 1},
				{op: putCreate(n1, "k", "again"), count: 1},
				{op: putCreate(n1, "k2", "v2"), count: 1},
				{op: lenOf(n1), count: 2},
				{op: getAll(n1), names: []string{"k", "again", "k2", "v2"}},
				{op: storetest.Del(n1, "k2"), count: 1},
				{op: storetest.Del(n1, "k2"), count: 0},
				{op: storetest.Drop(n1), count: 1},
				{op: putCreate(n1, "k", "reborn"), count: 1},
				{op: storetest.Drop(n1), count: 1},
				{op: storetest.Drop(n1), wantErr: store.ErrBucketNotFound},
				{op: storetest.Del(n1, "k"), wantErr: store.ErrBucketNotFound},
				{op: storetest.Create(n1), count: 1},
				{op: storetest.Create(n1), count: 0},
				{op: putCreate(n1, "k", "last"), count: 1},
				{op: getAll(n1), names: []string{"k", "last"}},
				{op: lenOf(n2), count: round + 1},
				{op: lenOf("missing"), wantErr: store.ErrBucketNotFound},
				{op: getAll("missing"), wantErr: store.ErrBucketNotFound},
			}
			ops := make([]store.Op, len(steps))
			for i, st := range steps {
				ops[i] = st.op
			}
			res := make([]store.Result, len(ops))
			errs := make([]error, len(ops))
			via.ExecuteBatch(context.Background(), ops, res, errs)
			for i, st := range steps {
				st.check(t, via.Name(), res[i], errs[i])
			}
			if err := checkPlacement(nodes, n1); err != nil {
				t.Error(err)
			}

			// The brief's batch: PUTCREATE on a new bucket, the same key
			// again, DELETE: 1, 0, 1, whether the run is forwarded in one
			// message or run by the primary.
			fresh := "fresh" + strconv.Itoa(round)
			ops = []store.Op{putCreate(fresh, "k", "v"), putCreate(fresh, "k", "v"), storetest.Del(fresh, "k")}
			via.ExecuteBatch(context.Background(), ops, res[:3], errs[:3])
			for i, want := range []int{1, 0, 1} {
				if errs[i] != nil || res[i].Count != want {
					t.Errorf("batch op %d (%v): count %d, %v; want %d", i, ops[i].Kind, res[i].Count, errs[i], want)
				}
			}
		})
	}
}

// TestClusterPutCreateRacesDrop: 8 goroutines PUTCREATE distinct keys into
// one new bucket, through every node, while another goroutine drops and
// re-creates it.
//
// What must hold: PUTCREATE never fails (it creates the bucket when a DROP
// got there first), and each key, written once, counts 1 (it never had a
// value). The dropper's DROP always finds the bucket, since only it drops
// and it re-creates before dropping again. Afterwards the owners' copies
// are equal, and LEN, KEYS and GETALL agree.
func TestClusterPutCreateRacesDrop(t *testing.T) {
	nodes := startReplicated(t, newMemNet(), replicas(2), "a", "b", "c")
	const (
		bucket  = "raced"
		writers = 8
		perKey  = 150
		drops   = 60
	)
	ctx := context.Background()
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range writers {
		wg.Go(func() {
			<-start
			via := nodes[w%len(nodes)]
			for i := range perKey {
				k := fmt.Sprintf("w%d-%03d", w, i)
				res, err := via.Execute(ctx, putCreate(bucket, k, "v"))
				if err != nil || res.Count != 1 {
					t.Errorf("PUTCREATE %s via %s: count %d, %v; want 1, nil", k, via.Name(), res.Count, err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		<-start
		for i := range drops {
			via := nodes[i%len(nodes)]
			res, err := via.Execute(ctx, storetest.Create(bucket))
			if err != nil || res.Count > 1 {
				t.Errorf("CREATE via %s: %+v, %v", via.Name(), res, err)
				return
			}
			res, err = via.Execute(ctx, storetest.Drop(bucket))
			if err != nil || res.Count != 1 {
				t.Errorf("DROP via %s: %+v, %v; want count 1", via.Name(), res, err)
				return
			}
		}
	})
	close(start)
	wg.Wait()

	if err := checkPlacement(nodes, bucket); err != nil {
		t.Fatal(err)
	}
	for _, via := range nodes {
		ln, err := via.Execute(ctx, lenOf(bucket))
		if errors.Is(err, store.ErrBucketNotFound) {
			continue // the last write was a DROP
		}
		ks := mustExec(t, via, storetest.Keys(bucket))
		all := mustExec(t, via, getAll(bucket))
		if err != nil || ln.Count != len(ks.Names) || 2*len(ks.Names) != len(all.Names) {
			t.Fatalf("via %s: LEN %d, %v; %d keys; GETALL %d names", via.Name(), ln.Count, err, len(ks.Names), len(all.Names))
		}
		for i, k := range ks.Names {
			if all.Names[2*i] != k || all.Names[2*i+1] != "v" {
				t.Fatalf("via %s: GETALL pair %d = %q, %q; want %q, v", via.Name(), i, all.Names[2*i], all.Names[2*i+1], k)
			}
		}
	}
	// Every key written after the races is counted once more.
	res := mustExec(t, nodes[0], putCreate(bucket, "after", "v"))
	if res.Count != 1 {
		t.Errorf("PUTCREATE after the race: count %d, want 1", res.Count)
	}
}

// TestClusterConcurrentCountsSum: writers PUTCREATE overlapping sets of
// keys into one existing bucket through different nodes, then DELETE
// them. A key counts 1 for the writer that first set it, but writes to one
// key ordered at once may each count 1 (see Result), so only bounds hold:
// the sum of PUTCREATE counts is at least the number of keys, and the sum
// of DELETE counts, done one writer at a time, exactly that number.
func TestClusterConcurrentCountsSum(t *testing.T) {
	nodes := startReplicated(t, newMemNet(), replicas(2), "a", "b", "c")
	const (
		bucket  = "shared"
		writers = 6
		keysN   = 200
	)
	ctx := context.Background()
	mustExec(t, nodes[0], storetest.Create(bucket))
	var mu sync.Mutex
	added := 0
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			via := nodes[w%len(nodes)]
			for i := range keysN {
				res, err := via.Execute(ctx, putCreate(bucket, strconv.Itoa((i+w*17)%keysN), strconv.Itoa(w)))
				if err != nil {
					t.Errorf("PUTCREATE via %s: %v", via.Name(), err)
					return
				}
				mu.Lock()
				added += res.Count
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if added < keysN {
		t.Errorf("PUTCREATE counted %d new keys, fewer than the %d keys written", added, keysN)
	}
	if ln := mustExec(t, nodes[1], lenOf(bucket)); ln.Count != keysN {
		t.Errorf("LEN = %d, want %d", ln.Count, keysN)
	}
	removed := 0
	for w := range writers {
		via := nodes[w%len(nodes)]
		for i := range keysN {
			removed += mustExec(t, via, storetest.Del(bucket, strconv.Itoa(i))).Count
		}
	}
	if removed != keysN {
		t.Errorf("DELETE counted %d keys, want %d", removed, keysN)
	}
	if err := checkPlacement(nodes, bucket); err != nil {
		t.Error(err)
	}
}

// TestClusterCountsUnderAntiEntropy: with sync passes running all the
// time, a key written once still counts 1, and a live key deleted once
// counts 1. A pass may carry a write from the replica back to the primary
// before the primary applies it itself.
func TestClusterCountsUnderAntiEntropy(t *testing.T) {
	nodes := startReplicated(t, newMemNet(), replicas(2, func(c *node.Config) { c.SyncInterval = time.Millisecond }), "a", "b", "c")
	const bucket = "synced"
	ctx := context.Background()
	mustExec(t, nodes[0], storetest.Create(bucket))
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			via := nodes[w%len(nodes)]
			for i := range 300 {
				k := fmt.Sprintf("w%d-%03d", w, i)
				if res, err := via.Execute(ctx, putCreate(bucket, k, "v")); err != nil || res.Count != 1 {
					t.Errorf("PUTCREATE %s via %s: count %d, %v; want 1", k, via.Name(), res.Count, err)
					return
				}
				if res, err := via.Execute(ctx, storetest.Del(bucket, k)); err != nil || res.Count != 1 {
					t.Errorf("DELETE %s via %s: count %d, %v; want 1", k, via.Name(), res.Count, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		// What the sync passes carried while the writes ran.
		for _, n := range nodes {
			st := n.Stats()
			t.Logf("%s: %d sync passes sent %d copies, %d keys; %d members dead", n.Name(), st.SyncPasses, st.CopiesSent, st.KeysSent, st.MembersDead)
		}
	}
}

// TestAloneKinds: a node alone, and a cluster with replicas 1, count their
// writes as they apply them (nothing is sent first); the counts, singly
// and in a batch, are the same as elsewhere.
func TestAloneKinds(t *testing.T) {
	for _, tc := range []struct {
		name  string
		nodes []string
		r     int
	}{{"alone", []string{"a"}, 2}, {"replicas 1", []string{"a", "b"}, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			nodes := startReplicated(t, newMemNet(), replicas(tc.r), tc.nodes...)
			for _, via := range nodes {
				for _, st := range kindScenario() {
					res, err := via.Execute(context.Background(), st.op)
					st.check(t, via.Name(), res, err)
				}
				mustExec(t, via, storetest.Drop("b"))
				ops := []store.Op{putCreate("b", "k", "1"), putCreate("b", "k", "2"), storetest.Del("b", "k"), storetest.Del("b", "k"), putCreate("b", "k", "3")}
				res := make([]store.Result, len(ops))
				errs := make([]error, len(ops))
				via.ExecuteBatch(context.Background(), ops, res, errs)
				for i, want := range []int{1, 0, 1, 0, 1} {
					if errs[i] != nil || res[i].Count != want {
						t.Errorf("via %s: batch op %d (%v): count %d, %v; want %d", via.Name(), i, ops[i].Kind, res[i].Count, errs[i], want)
					}
				}
				mustExec(t, via, storetest.Drop("b"))
			}
		})
	}
}

// TestBatchAcrossOwners: a batch over many buckets, whose owners' shares
// (and, on each owner, whose buckets) run at the same time, keeps each
// bucket's operations in order and puts every outcome in its place.
func TestBatchAcrossOwners(t *testing.T) {
	nodes := startReplicated(t, newMemNet(), replicas(2), "a", "b", "c")
	var ops []store.Op
	for round := range 3 {
		for b := range 12 {
			bucket := fmt.Sprintf("bk%d", b)
			ops = append(ops,
				putCreate(bucket, "k", fmt.Sprintf("v%d", round)),
				store.Op{Kind: store.KindGet, Bucket: bucket, Key: "k"},
				storetest.Del(bucket, "gone"))
		}
	}
	ops = append(ops, store.Op{Kind: store.KindBuckets}) // runs after everything before it
	for _, via := range nodes {
		res := make([]store.Result, len(ops))
		errs := make([]error, len(ops))
		via.ExecuteBatch(context.Background(), ops, res, errs)
		for i, op := range ops[:len(ops)-1] {
			round := i / 36
			switch {
			case errs[i] != nil:
				t.Fatalf("via %s: op %d %v %s: %v", via.Name(), i, op.Kind, op.Bucket, errs[i])
			case op.Kind == store.KindGet && res[i].Value != fmt.Sprintf("v%d", round):
				t.Errorf("via %s: op %d GET %s = %q, want v%d", via.Name(), i, op.Bucket, res[i].Value, round)
			case op.Kind == store.KindDelete && res[i].Count != 0:
				t.Errorf("via %s: op %d DELETE %s counted %d", via.Name(), i, op.Bucket, res[i].Count)
			}
		}
		if got := res[len(ops)-1].Names; len(got) != 12 {
			t.Errorf("via %s: BUCKETS after the writes = %q, want 12 buckets", via.Name(), got)
		}
	}
}
