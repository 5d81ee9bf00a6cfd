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

// forwarding starts three nodes with replicas 2 on a network of seed, and
// returns a node a and a bucket (named from prefix, created) whose
// primary is p, another node: a forwards requests for it to p.
func forwarding(t *testing.T, seed uint64, prefix string) (net *simNet, a, p *node.Node, bucket string) {
	t.Helper()
	net = newSimNet(seed)
	nodes := startSkewed(t, net, []time.Duration{0, 0, 0}, func(c *node.Config) { c.Replicas = 2 })
	settleNodes(nodes...)
	a, p = nodes[0], nodes[1]
	return net, a, p, primaryBuckets(t, p, prefix, 1)[0]
}

// TestForwardsShareMessages: requests that node a forwards to the same
// primary at the same time travel together (group commit): 64 clients'
// single GETs reach the primary in a few messages, not 64, and each gets
// its own answer.
func TestForwardsShareMessages(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net, a, p, b := forwarding(t, 11, "fwd")
		for i := range 64 {
			mustExec(t, p, store.Op{Kind: store.KindPut, Bucket: b, Key: fmt.Sprint(i), Value: fmt.Sprint("v", i)})
		}
		net.setQuality(time.Millisecond, 0)
		before := a.Stats()
		var wg sync.WaitGroup
		for i := range 64 {
			wg.Go(func() {
				res, err := a.Execute(context.Background(), store.Op{Kind: store.KindGet, Bucket: b, Key: fmt.Sprint(i)})
				if want := fmt.Sprint("v", i); err != nil || res.Value != want {
					t.Errorf("GET %d through a: %q, %v; want %q", i, res.Value, err, want)
				}
			})
		}
		wg.Wait()
		after := a.Stats()
		ops, msgs := after.ForwardedOps-before.ForwardedOps, after.ForwardMessages-before.ForwardMessages
		t.Logf("%d forwarded GETs in %d messages", ops, msgs)
		if ops != 64 || msgs > 16 {
			t.Errorf("%d GETs forwarded in %d messages; want 64 in at most 16", ops, msgs)
		}
	})
}

// TestForwardedPipelineKeepsItsOrder: a pipeline longer than one message
// (3,000 writes of one key, forwarded) goes in chunks, and other clients'
// forwards share the messages meanwhile; the primary applies the client's
// writes in the client's order, so the last one wins.
func TestForwardedPipelineKeepsItsOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net, a, p, b := forwarding(t, 12, "order")
		net.setQuality(time.Millisecond, 0)
		var wg sync.WaitGroup
		for c := range 8 {
			wg.Go(func() {
				for i := range 50 {
					if _, err := a.Execute(context.Background(), store.Op{Kind: store.KindPut, Bucket: b, Key: fmt.Sprint("other", c), Value: fmt.Sprint(i)}); err != nil {
						t.Errorf("client %d: %v", c, err)
					}
				}
			})
		}
		ops := make([]store.Op, 3000)
		for i := range ops {
			ops[i] = store.Op{Kind: store.KindPut, Bucket: b, Key: "k", Value: fmt.Sprint(i)}
		}
		res, errs := make([]store.Result, len(ops)), make([]error, len(ops))
		a.ExecuteBatch(context.Background(), ops, res, errs)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("write %d: %v", i, err)
			}
		}
		got, err := p.Execute(context.Background(), store.Op{Kind: store.KindGet, Bucket: b, Key: "k"})
		if err != nil || got.Value != "2999" {
			t.Errorf("k at the primary: %q, %v; want the pipeline's last write, 2999", got.Value, err)
		}
	})
}
