package node

import (
	"context"
	"time"

	"github.com/dboutique/dboutique/node/store"
)

// Active expiry. Every copy treats a key or bucket whose expiry has passed
// as missing (package store judges it on every read and write), but only a
// bucket's primary deletes it, with a versioned write replicated like any
// other (store.KindReclaim), so that the copies stay equal and the memory
// comes back everywhere. Every expireInterval the primary looks at a sample
// of the entries with an expiry in each bucket it is the primary of and
// deletes those that expired; while most of what it looked at had expired,
// it goes on at once, for up to expireBudget: Redis's active expiry cycle.
// A key found expired by a read is deleted by the next round.

const (
	expireInterval = 100 * time.Millisecond
	expireBudget   = 25 * time.Millisecond
	// expireBatch is the most deletions one step of a round writes.
	expireBatch = maxBatch
	// expireSteps bounds the steps of a round, whatever the clock says.
	expireSteps = 16
	// expireSample is how many entries with an expiry a step looks at in
	// each bucket.
	expireSample = 64
)

// rounds runs round every interval, and whenever wake (nil: never)
// receives, until the node closes; the caller added it to n.wg.
func (n *Node) rounds(interval time.Duration, wake <-chan struct{}, round func()) {
	defer n.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		case <-wake:
		}
		round()
	}
}

// expireRound deletes expired keys and buckets this node is the primary of.
func (n *Node) expireRound() {
	s := n.cfg.Store
	deadline := time.Now().Add(expireBudget)
	var found []store.Expired
	for step := 0; step < expireSteps; step++ {
		v := n.ms.view()
		var looked int
		now := s.Clock().Millis()
		found, looked = s.FindExpired(found[:0], now, expireBatch, expireSample, func(bucket string) bool {
			m, err := v.primary(bucket)
			return err == nil && m.Self
		})
		if len(found) == 0 {
			return
		}
		reclaimed := n.runOwn(reclaimOps(found, now))
		n.stats.expired.Add(uint64(reclaimed))
		// Go on while most of what was looked at had expired, as Redis
		// does, within the round's budget; not when nothing could be
		// deleted (this node is not serving: the next round tries again).
		if reclaimed == 0 || len(found) < expireBatch && 4*len(found) < 3*max(looked, 1) ||
			time.Now().After(deadline) || n.ctx.Err() != nil {
			return
		}
	}
}

// reclaimOps returns the deletes (store.KindReclaim) of what was found
// expired at now.
func reclaimOps(found []store.Expired, now int64) []store.Op {
	ops := make([]store.Op, len(found))
	for i, e := range found {
		ops[i] = store.Op{Kind: store.KindReclaim, Bucket: e.Bucket, Key: e.Key, Expires: now}
		if e.Whole {
			ops[i].Flags = store.FlagBucket
		}
	}
	return ops
}

// runOwn runs ops, writes this node decided on its own (deletes of what
// expired, evictions), within the write timeout, and returns the sum of
// the counts of those that succeeded.
func (n *Node) runOwn(ops []store.Op) int {
	res := make([]store.Result, len(ops))
	errs := make([]error, len(ops))
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.WriteTimeout)
	n.ExecuteBatch(ctx, ops, res, errs)
	cancel()
	sum := 0
	for i := range res {
		if errs[i] == nil {
			sum += res[i].Count
		}
	}
	return sum
}
