package node_test

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dboutique/dboutique/node/store"
)

// TestReplicationBatchesAcrossBuckets: a pipeline of writes to 64 buckets
// whose primary is p reaches each replica in a few messages, not one per
// bucket, and every replica holds every write when p answers. (On the
// bubble's fake clock, with 1 ms of delay each way, so that writes queue
// behind the messages in flight.)
func TestReplicationBatchesAcrossBuckets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := newSimNet(3)
		nodes := startSkewed(t, net, []time.Duration{0, 0, 0}, nil)
		p := nodes[0]
		settleNodes(nodes...)
		net.setQuality(time.Millisecond, 0)
		var ops []store.Op
		for i := 0; len(ops) < 64; i++ {
			b := fmt.Sprintf("batched%03d", i)
			if o, err := p.Owners(b); err == nil && o[0].ID == p.ID() {
				ops = append(ops, store.Op{Kind: store.KindPutCreate, Bucket: b, Key: "k", Value: b})
			}
		}
		before := p.Stats()
		res, errs := make([]store.Result, len(ops)), make([]error, len(ops))
		p.ExecuteBatch(context.Background(), ops, res, errs)
		for i, err := range errs {
			if err != nil {
				t.Fatalf("write %d (%s): %v", i, ops[i].Bucket, err)
			}
		}
		after := p.Stats()
		groups, msgs := after.Replications-before.Replications, after.ReplicaMessages-before.ReplicaMessages
		t.Logf("%d write groups to 2 replicas in %d messages", groups, msgs)
		if groups != 64 {
			t.Errorf("%d write groups replicated, want 64", groups)
		}
		// Two replicas, at most two messages in flight to each, and the
		// rest of the groups queued behind them: a handful of messages.
		if msgs > 32 {
			t.Errorf("%d messages carried 64 write groups to 2 replicas; want them batched (at most 32, a quarter of one per group)", msgs)
		}
		for _, n := range nodes[1:] {
			for _, op := range ops {
				if e, ok := heldEntry(n, op.Bucket, "k"); !ok || e.Value != op.Value {
					t.Errorf("%s holds %+v for %s/k once p answered; want %q", n.Name(), e, op.Bucket, op.Value)
				}
			}
		}
	})
}
