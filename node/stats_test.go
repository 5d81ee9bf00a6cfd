package node_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dboutique/dboutique/node"
	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/node/store/storetest"
)

// Statistics tests: nodes on memNet (cluster_test.go) do known work, and
// the counters of Node.Stats must move by exactly what that work implies.

// counters are the forwarding and replication counters of a Stats.
type counters struct {
	fwdOps, fwdMsgs, fwdErrs uint64
	repls, writes, replErrs  uint64
	latencyCount             uint64 // observations of ReplicationLatency
}

func countersOf(s node.Stats) counters {
	return counters{
		fwdOps: s.ForwardedOps, fwdMsgs: s.ForwardMessages, fwdErrs: s.ForwardErrors,
		repls: s.Replications, writes: s.ReplicatedWrites, replErrs: s.ReplicationErrors,
		latencyCount: s.ReplicationLatency.Count,
	}
}

func (c counters) minus(d counters) counters {
	return counters{
		fwdOps: c.fwdOps - d.fwdOps, fwdMsgs: c.fwdMsgs - d.fwdMsgs, fwdErrs: c.fwdErrs - d.fwdErrs,
		repls: c.repls - d.repls, writes: c.writes - d.writes, replErrs: c.replErrs - d.replErrs,
		latencyCount: c.latencyCount - d.latencyCount,
	}
}

// checkHistogram fails the test unless h is a well-formed cumulative
// histogram: bounds increasing, counts never decreasing, none above Count.
func checkHistogram(t *testing.T, name string, h node.Histogram) {
	t.Helper()
	for i := range h.Bounds {
		if i > 0 && h.Bounds[i] <= h.Bounds[i-1] {
			t.Errorf("%s: bound %d (%v) not above bound %d (%v)", name, i, h.Bounds[i], i-1, h.Bounds[i-1])
		}
		if i > 0 && h.Counts[i] < h.Counts[i-1] {
			t.Errorf("%s: bucket %v counts %d, fewer than bucket %v (%d): not cumulative",
				name, h.Bounds[i], h.Counts[i], h.Bounds[i-1], h.Counts[i-1])
		}
	}
	if last := h.Counts[len(h.Counts)-1]; last > h.Count {
		t.Errorf("%s: last bucket counts %d, more than the total %d", name, last, h.Count)
	}
	if h.Count > 0 && h.Sum <= 0 {
		t.Errorf("%s: %d observations summing to %v", name, h.Count, h.Sum)
	}
}

// TestStatsForwardingAndReplication runs known operations through a node
// that owns nothing of the bucket (so it forwards) and through the
// bucket's primary (so it replicates), and checks each step's deltas.
func TestStatsForwardingAndReplication(t *testing.T) {
	net := newMemNet()
	nodes := startReplicated(t, net, replicas(2, func(c *node.Config) {
		c.WriteTimeout = time.Second // the hung replica's write fails after this
	}), "a", "b", "c")
	const b = "stats"
	owners := mustOwners(t, nodes[0], b, 2)
	primary, replica := find(nodes, owners[0].ID), find(nodes, owners[1].ID)
	var via *node.Node // the node that is no owner
	for _, n := range nodes {
		if n != primary && n != replica {
			via = n
		}
	}
	puts := func(n int) []store.Op {
		var ops []store.Op
		for i := range n {
			ops = append(ops, storetest.Put(b, keyName(i), valueOf(0, i)))
		}
		return ops
	}
	isMsg := func(types ...byte) func([]byte) bool {
		return func(req []byte) bool {
			for _, typ := range types {
				if len(req) > 0 && req[0] == typ {
					return true
				}
			}
			return false
		}
	}
	msgOp, msgBatch, msgReplicate := node.MsgOp, node.MsgBatch, node.MsgReplicate

	for _, step := range []struct {
		name        string
		through     *node.Node
		ops         []store.Op
		batch       bool                    // ExecuteBatch rather than one Execute per op
		hang        *node.Node              // requests to it that hangMatch matches never get an answer
		hangMatch   func(req []byte) bool   // see hang
		wantErr     bool                    // every op fails
		wantVia     counters                // deltas on via
		wantPrimary counters                // deltas on the primary
		during      func(t *testing.T)      // runs while the ops are in flight (hang only)
		check       func(*testing.T, error) // extra checks on an op's error
	}{
		{name: "create, forwarded", through: via, ops: []store.Op{storetest.Create(b)},
			wantVia:     counters{fwdOps: 1, fwdMsgs: 1},
			wantPrimary: counters{repls: 1, writes: 1, latencyCount: 1}},
		{name: "puts one by one, forwarded", through: via, ops: puts(3),
			wantVia:     counters{fwdOps: 3, fwdMsgs: 3},
			wantPrimary: counters{repls: 3, writes: 3, latencyCount: 3}},
		{name: "a batch of puts: one message, one write group", through: via, ops: puts(5), batch: true,
			wantVia:     counters{fwdOps: 5, fwdMsgs: 1},
			wantPrimary: counters{repls: 1, writes: 5, latencyCount: 1}},
		{name: "reads are forwarded, not replicated", through: via, ops: []store.Op{storetest.Get(b, keyName(0)), storetest.Get(b, keyName(1))},
			wantVia: counters{fwdOps: 2, fwdMsgs: 2}},
		{name: "writes at the primary are not forwarded", through: primary, ops: puts(2),
			wantPrimary: counters{repls: 2, writes: 2, latencyCount: 2}},
		{name: "reads at the primary: nothing moves", through: primary, ops: []store.Op{storetest.Get(b, keyName(0))}},
		{name: "hung replica: the write fails", through: primary, ops: puts(1),
			hang: replica, hangMatch: isMsg(msgReplicate), wantErr: true,
			wantPrimary: counters{repls: 1, writes: 1, replErrs: 1, latencyCount: 1},
			during: func(t *testing.T) {
				waitFor(t, "a replication in flight", func() bool { return primary.Stats().ReplicationsInFlight == 1 })
			}},
		{name: "hung primary: the forward fails", through: via, ops: []store.Op{storetest.Get(b, keyName(0))},
			hang: primary, hangMatch: isMsg(msgOp, msgBatch), wantErr: true,
			wantVia: counters{fwdOps: 1, fwdMsgs: 1, fwdErrs: 1},
			check: func(t *testing.T, err error) {
				if ue := (*node.UnreachableError)(nil); !errors.As(err, &ue) {
					t.Errorf("forward to a hung primary: %v, want an UnreachableError", err)
				}
			}},
	} {
		t.Run(step.name, func(t *testing.T) {
			beforeVia, beforePrimary := countersOf(via.Stats()), countersOf(primary.Stats())
			if step.hang != nil {
				net.setHung(step.hang.ID(), step.hangMatch)
				defer net.setHung(step.hang.ID(), nil)
			}
			errs := make([]error, len(step.ops))
			done := make(chan struct{})
			go func() {
				defer close(done)
				if step.batch {
					res := make([]store.Result, len(step.ops))
					step.through.ExecuteBatch(context.Background(), step.ops, res, errs)
					return
				}
				for i, op := range step.ops {
					_, errs[i] = step.through.Execute(context.Background(), op)
				}
			}()
			if step.during != nil {
				step.during(t)
			}
			<-done
			for i, err := range errs {
				if (err != nil) != step.wantErr {
					t.Fatalf("op %d (%v): error %v, want an error: %v", i, step.ops[i].Kind, err, step.wantErr)
				}
				if step.check != nil {
					step.check(t, err)
				}
			}
			if got := countersOf(via.Stats()).minus(beforeVia); got != step.wantVia {
				t.Errorf("via %s: counters moved by %+v, want %+v", via.Name(), got, step.wantVia)
			}
			if got := countersOf(primary.Stats()).minus(beforePrimary); got != step.wantPrimary {
				t.Errorf("primary %s: counters moved by %+v, want %+v", primary.Name(), got, step.wantPrimary)
			}
		})
	}

	for _, n := range nodes {
		st := n.Stats()
		checkHistogram(t, n.Name(), st.ReplicationLatency)
		if st.ReplicationLatency.Count != st.Replications {
			t.Errorf("%s: %d latencies observed for %d replications", n.Name(), st.ReplicationLatency.Count, st.Replications)
		}
		if st.ReplicationsInFlight != 0 {
			t.Errorf("%s: %d replications in flight, none running", n.Name(), st.ReplicationsInFlight)
		}
		if st.MembersAlive != 3 || st.MembersDead+st.MembersJoining+st.MembersLeft != 0 {
			t.Errorf("%s: members %d alive, %d joining, %d dead, %d left; want 3 alive",
				n.Name(), st.MembersAlive, st.MembersJoining, st.MembersDead, st.MembersLeft)
		}
		if st.Epoch != nodes[0].Epoch() || st.Replicas != 2 {
			t.Errorf("%s: epoch %x, replicas %d; want %x, 2", n.Name(), st.Epoch, st.Replicas, nodes[0].Epoch())
		}
	}
	// Both owners hold the bucket: 3+5+2 keys written, the hung write
	// applied on neither (the primary applies only what every owner holds).
	for _, n := range []*node.Node{primary, replica} {
		if st := n.Stats().Store; st.Buckets != 1 || st.Keys < 5 {
			t.Errorf("%s: store %+v, want 1 bucket and its keys", n.Name(), st)
		}
	}
	if st := via.Stats().Store; st.Buckets != 0 || st.Keys != 0 {
		t.Errorf("%s owns nothing but its store has %+v", via.Name(), st)
	}
}

// TestStatsRebalancing: a node joins two that hold every bucket, and later
// leaves; the pushes, removals and passes show in the counters, and the
// store figures add up to what was written.
func TestStatsRebalancing(t *testing.T) {
	const nb, nk = 12, 10
	net := newMemNet()
	nodes := startReplicated(t, net, replicas(1), "a", "b")
	buckets := fill(t, nodes, nb, nk)
	eventually(t, "two nodes to settle", func() error { return settled(nodes, buckets...) })

	sum := func(ns []*node.Node, f func(node.Stats) uint64) uint64 {
		var total uint64
		for _, n := range ns {
			total += f(n.Stats())
		}
		return total
	}
	keysSent := func(s node.Stats) uint64 { return s.KeysSent }
	bytesSent := func(s node.Stats) uint64 { return s.BytesSent }
	copiesSent := func(s node.Stats) uint64 { return s.CopiesSent }
	removed := func(s node.Stats) uint64 { return s.CopiesRemoved }
	passes := func(s node.Stats) uint64 { return s.SyncPasses }
	keys := func(s node.Stats) uint64 { return uint64(s.Store.Keys) }
	bucketsHeld := func(s node.Stats) uint64 { return uint64(s.Store.Buckets) }
	storeBytes := func(s node.Stats) uint64 { return uint64(s.Store.Bytes) }

	before := map[string]uint64{
		"keys": sum(nodes, keysSent), "bytes": sum(nodes, bytesSent), "copies": sum(nodes, copiesSent),
		"removed": sum(nodes, removed), "passes": sum(nodes, passes),
	}
	c := startMemNodeWith(t, net, "c", nil, replicas(1), "/mem/id-a")
	all := append(nodes[:2:2], c)
	eventually(t, "three nodes to settle", func() error { return settled(all, buckets...) })

	cs := c.Stats()
	if cs.Store.Buckets == 0 {
		t.Fatal("the new node took no bucket; the test needs it to")
	}
	for _, tc := range []struct {
		name string
		got  uint64
		min  uint64
	}{
		// Pushes may repeat (a pass cut short by a view change), never
		// fall short of what c holds now.
		{"keys sent", sum(nodes, keysSent) - before["keys"], uint64(cs.Store.Keys)},
		{"bytes sent", sum(nodes, bytesSent) - before["bytes"], uint64(cs.Store.Bytes)},
		{"copies sent", sum(nodes, copiesSent) - before["copies"], uint64(cs.Store.Buckets)},
		{"copies removed", sum(nodes, removed) - before["removed"], uint64(cs.Store.Buckets)},
		{"sync passes", sum(nodes, passes) - before["passes"], 2},
	} {
		if tc.got < tc.min {
			t.Errorf("%s by a and b while c joined: %d, want at least %d", tc.name, tc.got, tc.min)
		}
	}
	if got := sum(all, keys); got != nb*nk {
		t.Errorf("keys held: %d, want %d", got, nb*nk)
	}
	if got := sum(all, bucketsHeld); got != nb {
		t.Errorf("buckets held: %d, want %d", got, nb)
	}
	var wantBytes uint64
	for i := range nb {
		for k := range nk {
			wantBytes += uint64(len(keyName(k)) + len(valueOf(i, k)))
		}
	}
	if got := sum(all, storeBytes); got != wantBytes {
		t.Errorf("bytes held: %d, want %d", got, wantBytes)
	}
	for _, n := range all {
		st := n.Stats()
		if !st.Settled || st.MembersAlive != 3 || st.Epoch != n.Epoch() {
			t.Errorf("%s: settled %v, %d alive, epoch %x; want settled, 3 alive, epoch %x",
				n.Name(), st.Settled, st.MembersAlive, st.Epoch, n.Epoch())
		}
		if st.SyncPasses == 0 || st.LastSyncPass <= 0 {
			t.Errorf("%s: %d passes, the last taking %v", n.Name(), st.SyncPasses, st.LastSyncPass)
		}
	}

	// c leaves: it hands every copy off and removes it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	left := c.Stats()
	if left.CopiesRemoved < uint64(cs.Store.Buckets) || left.Store.Buckets != 0 {
		t.Errorf("c removed %d copies after leaving with %d, and holds %d", left.CopiesRemoved, cs.Store.Buckets, left.Store.Buckets)
	}
	if left.MembersLeft != 1 || left.MembersAlive != 2 {
		t.Errorf("c after leaving counts %d left and %d alive; want itself left, 2 alive", left.MembersLeft, left.MembersAlive)
	}
	eventually(t, "a and b to see c gone", func() error {
		for _, n := range nodes {
			if st := n.Stats(); st.MembersAlive != 2 || st.MembersLeft != 1 {
				return errors.New(n.Name() + " still counts c alive")
			}
		}
		return nil
	})
	eventually(t, "no pass running", func() error {
		for _, n := range all {
			if n.Stats().SyncInProgress {
				return errors.New(n.Name() + " has a pass in progress")
			}
		}
		return nil
	})
}

// BenchmarkStats measures a snapshot of a node holding 1,000 buckets of 10
// keys each (Stats visits every bucket).
func BenchmarkStats(b *testing.B) {
	s := store.NewStore()
	for i := range 1000 {
		bucket := bucketName(i)
		if err := s.Create(bucket); err != nil {
			b.Fatal(err)
		}
		for k := range 10 {
			if err := s.Put(bucket, keyName(k), valueOf(i, k)); err != nil {
				b.Fatal(err)
			}
		}
	}
	n, err := node.New(node.Config{Name: "bench", Transport: &memTransport{net: newMemNet(), id: "id-bench"}, Store: s})
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	b.ReportAllocs()
	for b.Loop() {
		if st := n.Stats(); st.Store.Buckets != 1000 {
			b.Fatalf("%d buckets", st.Store.Buckets)
		}
	}
}
