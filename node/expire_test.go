package node_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dboutique/dboutique/node"
	"github.com/dboutique/dboutique/node/store"
)

// TestExpiredStaysExpiredAfterFailover attacks "a key never comes back
// after it expired" with clock skew: the primary p's clock is right, the
// replica r that takes over runs 9 seconds behind it. A key that a client
// saw expire through p must stay missing through r, although by r's
// clock it has 8 seconds left; so must one that p's active expiry deleted
// unseen. (On the bubble's fake clock.)
func TestExpiredStaysExpiredAfterFailover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const skew = 9 * time.Second
		net := newSimNet(7)
		nodes := startSkewed(t, net, []time.Duration{0, -skew, 0}, nil)
		p, r, c := nodes[0], nodes[1], nodes[2]
		settleNodes(nodes...)
		bucket := ""
		for i := 0; bucket == ""; i++ {
			if o, err := p.Owners(bucketName(i)); err == nil && o[0].ID == p.ID() && o[1].ID == r.ID() {
				bucket = bucketName(i)
			}
		}
		ctx := context.Background()
		for _, key := range []string{"seen", "unseen", "kept"} {
			op := store.Op{Kind: store.KindPutCreate, Bucket: bucket, Key: key, Value: "v", Expires: 1000, Flags: store.FlagRelative}
			if key == "kept" {
				op.Expires = 60_000
			}
			mustExec(t, p, op)
		}
		time.Sleep(time.Second)
		// The moment it expires, a client reads "seen" through p.
		if res, err := p.Execute(ctx, store.Op{Kind: store.KindGet, Bucket: bucket, Key: "seen"}); !errors.Is(err, store.ErrKeyNotFound) {
			t.Fatalf("GET seen at its expiry = %q, %v; want missing", res.Value, err)
		}
		// What p answered missing is deleted on every copy already.
		for _, n := range nodes {
			if e, ok := heldEntry(n, bucket, "seen"); !ok || !e.Deleted {
				t.Errorf("%s holds %+v for seen after p answered it missing; want a tombstone", n.Name(), e)
			}
		}
		// p's active expiry deletes "unseen" within a round.
		time.Sleep(200 * time.Millisecond)
		for _, n := range nodes {
			if e, ok := heldEntry(n, bucket, "unseen"); !ok || !e.Deleted {
				t.Errorf("%s holds %+v for unseen after active expiry; want a tombstone", n.Name(), e)
			}
		}
		// p dies; r, 9 seconds behind, serves the bucket.
		for _, other := range []string{r.ID(), c.ID()} {
			net.setCut(p.ID(), other, true)
			net.setCut(other, p.ID(), true)
		}
		settleNodes(r, c)
		if o, _ := r.Owners(bucket); o[0].ID != r.ID() {
			t.Fatalf("r is not the primary after p's death: %v", o)
		}
		for _, key := range []string{"seen", "unseen"} {
			if res, err := r.Execute(ctx, store.Op{Kind: store.KindGet, Bucket: bucket, Key: key}); !errors.Is(err, store.ErrKeyNotFound) {
				t.Errorf("GET %s through r after the failover = %q, %v; want it still expired", key, res.Value, err)
			}
		}
		if res, err := r.Execute(ctx, store.Op{Kind: store.KindTTL, Bucket: bucket, Key: "kept"}); err != nil || res.Value == "" {
			t.Errorf("TTL kept through r = %+v, %v; want its expiry carried over", res, err)
		}
	})
}

// heldEntry returns n's entry of key in bucket, tombstones included.
func heldEntry(n *node.Node, bucket, key string) (store.Entry, bool) {
	es, _, _ := n.Store().Page(bucket, store.ShardOf(key), "", 1<<20)
	for _, e := range es {
		if e.Key == key {
			return e, true
		}
	}
	return store.Entry{}, false
}
