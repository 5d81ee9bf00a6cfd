package testcluster_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dboutique/dboutique/testcluster"
)

// TestGracefulLeaveDownToOne: every node but one leaves in turn while
// clients keep writing; nothing acknowledged is lost, even with a single
// copy of each bucket, because a leaving node hands its buckets off first.
func TestGracefulLeaveDownToOne(t *testing.T) {
	for _, replicas := range []int{1, 2} {
		t.Run(fmt.Sprintf("replicas=%d", replicas), func(t *testing.T) {
			c := testcluster.New(t, 4, testcluster.WithReplicas(replicas))
			buckets := createBuckets(t, c, "leave", 10)
			l := newLedger()
			rng := rand.New(rand.NewPCG(5, uint64(replicas)))
			for victim := c.Len() - 1; victim > 0; victim-- {
				// Clients write through the nodes that stay while the
				// victim hands its buckets off.
				var stay []int
				for i := range victim {
					stay = append(stay, i)
				}
				load, stop := context.WithCancel(context.Background())
				var wg sync.WaitGroup
				for w := range 6 {
					wr := &writer{id: victim*100 + w, c: c, buckets: buckets, l: l,
						rng: rand.New(rand.NewPCG(rng.Uint64(), 2)), nodes: stay, overwrite: 4}
					wg.Go(func() { wr.run(load) })
				}
				pauseCtx(context.Background(), 300*time.Millisecond)
				c.Leave(victim)
				pauseCtx(context.Background(), 200*time.Millisecond)
				stop()
				wg.Wait()
				c.WaitReplicated()
				ctx, cancel := context.WithTimeout(context.Background(), testcluster.WaitTimeout)
				checked, lost, examples := l.verify(t, ctx, c)
				cancel()
				t.Logf("%s left; %d nodes remain; %d acknowledged keys checked, %d lost", c.Name(victim), victim, checked, lost)
				if lost > 0 {
					t.Fatalf("%d acknowledged writes lost after %s left, for example:\n%s", lost, c.Name(victim), strings.Join(examples, "\n"))
				}
			}
			if l.acked.Load() < 100 {
				t.Errorf("only %d writes acknowledged", l.acked.Load())
			}
			st := c.Node(0).Store().Stats()
			t.Logf("the last node holds %d buckets and %d keys; %d writes acknowledged, %d failed",
				st.Buckets, st.Keys, l.acked.Load(), l.unack.Load())
		})
	}
}

// TestKillAnyNodeOfThree is the README's promise: in a cluster of three
// with two replicas, kill -9 any one node and everything written reads
// back through the other two.
func TestKillAnyNodeOfThree(t *testing.T) {
	for victim := range 3 {
		t.Run(fmt.Sprintf("kill-node-%d", victim), func(t *testing.T) {
			c := testcluster.New(t, 3, testcluster.WithReplicas(2), testcluster.WithFailureDetection(100*time.Millisecond, time.Second))
			ctx := ctxT(t)
			buckets := createBuckets(t, c, "demo", 6)
			cl := c.Client(0)
			for _, b := range buckets {
				for k := range 50 {
					if err := cl.Put(ctx, b, fmt.Sprintf("key-%d", k), b+"-value"); err != nil {
						t.Fatal(err)
					}
				}
			}
			c.Kill(victim)
			c.WaitConverged()
			for i := range 3 {
				if i == victim {
					continue
				}
				cl := c.Client(i)
				for _, b := range buckets {
					for k := range 50 {
						got, err := cl.Get(ctx, b, fmt.Sprintf("key-%d", k))
						if err != nil || got != b+"-value" {
							t.Fatalf("after %s was killed, GET %s key-%d through %s = %q, %v", c.Name(victim), b, k, c.Name(i), got, err)
						}
					}
				}
			}
			c.WaitReplicated()
		})
	}
}
