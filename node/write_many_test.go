package node_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dboutique/dboutique/node"
	"github.com/dboutique/dboutique/node/store"
)

// primaryBuckets returns k bucket names whose primary is p, created.
func primaryBuckets(t *testing.T, p *node.Node, prefix string, k int) []string {
	t.Helper()
	var names []string
	for i := 0; len(names) < k; i++ {
		b := fmt.Sprintf("%s%03d", prefix, i)
		if o, err := p.Owners(b); err == nil && o[0].ID == p.ID() {
			if _, err := p.Execute(context.Background(), store.Op{Kind: store.KindCreate, Bucket: b}); err != nil {
				t.Fatalf("create %s: %v", b, err)
			}
			names = append(names, b)
		}
	}
	return names
}

// TestWritesToManyBucketsTravelTogether: a pipeline of plain writes to 64
// existing buckets whose primary is p is ordered and replicated as one:
// one message to each replica carries all 64 groups, every replica holds
// every write when p answers, and each HSET-style count is right.
func TestWritesToManyBucketsTravelTogether(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := newSimNet(3)
		nodes := startSkewed(t, net, []time.Duration{0, 0, 0}, nil)
		p := nodes[0]
		settleNodes(nodes...)
		buckets := primaryBuckets(t, p, "together", 64)
		// Half the keys exist already: their count is 0, the others' 1.
		for _, b := range buckets[:32] {
			if _, err := p.Execute(context.Background(), store.Op{Kind: store.KindPut, Bucket: b, Key: "k", Value: "old"}); err != nil {
				t.Fatal(err)
			}
		}
		net.setQuality(time.Millisecond, 0)
		var ops []store.Op
		for _, b := range buckets {
			ops = append(ops, store.Op{Kind: store.KindPutCreate, Bucket: b, Key: "k", Value: b})
			ops = append(ops, store.Op{Kind: store.KindDelete, Bucket: b, Key: "gone"})
		}
		before := p.Stats()
		res, errs := make([]store.Result, len(ops)), make([]error, len(ops))
		p.ExecuteBatch(context.Background(), ops, res, errs)
		after := p.Stats()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("write %d (%s): %v", i, ops[i].Bucket, err)
			}
		}
		for i := 0; i < len(ops); i += 2 {
			want := 1
			if i/2 < 32 {
				want = 0
			}
			if res[i].Count != want || res[i+1].Count != 0 {
				t.Errorf("%s: counts %d and %d, want %d and 0", ops[i].Bucket, res[i].Count, res[i+1].Count, want)
			}
		}
		groups, msgs := after.Replications-before.Replications, after.ReplicaMessages-before.ReplicaMessages
		t.Logf("%d write groups to 2 replicas in %d messages", groups, msgs)
		if groups != 64 {
			t.Errorf("%d write groups replicated, want 64", groups)
		}
		if msgs != 2 {
			t.Errorf("%d messages carried the pipeline's 64 groups to 2 replicas, want 2 (one each)", msgs)
		}
		for _, n := range nodes[1:] {
			for _, b := range buckets {
				if e, ok := heldEntry(n, b, "k"); !ok || e.Value != b {
					t.Errorf("%s holds %+v for %s/k once p answered; want %q", n.Name(), e, b, b)
				}
			}
		}
	})
}

// TestWritesToManyBucketsDoNotDeadlock: pipelines that write to many
// buckets hold several sequencers at once. Run them from many clients at
// once over the same buckets, with writes that take a sequencer alone
// (DROP, CREATE, SET NX) in between, and every request must succeed
// within a minute of the bubble's time: a cycle of waits would hold them
// until their contexts end. (Taking the sequencers in any order but the
// stripes' makes this fail.)
func TestWritesToManyBucketsDoNotDeadlock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := newSimNet(3)
		nodes := startSkewed(t, net, []time.Duration{0, 0, 0}, nil)
		p := nodes[0]
		settleNodes(nodes...)
		buckets := primaryBuckets(t, p, "deadlock", 24)
		net.setQuality(time.Millisecond, 0)
		var wg sync.WaitGroup
		for c := range 16 {
			wg.Go(func() {
				for round := range 40 {
					var ops []store.Op
					for j := range 12 {
						b := buckets[(c*5+round*7+j*11)%len(buckets)]
						ops = append(ops, store.Op{Kind: store.KindPutCreate, Bucket: b, Key: fmt.Sprint(c), Value: fmt.Sprint(round)})
					}
					switch round % 3 {
					case 1:
						ops = append(ops, store.Op{Kind: store.KindSet, Bucket: buckets[(c+round)%len(buckets)], Key: "nx", Value: "v", Flags: store.FlagNX})
					case 2:
						b := buckets[(c*3+round)%len(buckets)]
						ops = append(ops, store.Op{Kind: store.KindDrop, Bucket: b}, store.Op{Kind: store.KindCreate, Bucket: b})
					}
					res, errs := make([]store.Result, len(ops)), make([]error, len(ops))
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					p.ExecuteBatch(ctx, ops, res, errs)
					cancel()
					for i, err := range errs {
						if err != nil {
							t.Errorf("client %d round %d: %s on %s: %v", c, round, ops[i].Kind, ops[i].Bucket, err)
						}
					}
				}
			})
		}
		wg.Wait()
	})
}
