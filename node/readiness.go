package node

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"github.com/dboutique/dboutique/node/store"
)

// Readiness. Invariant: a node answers for a bucket as its primary in a
// term only once it is ready for the bucket in that term: it has pulled
// the bucket from every member of its view (and from the members that left
// within leftSourceWindow, which may be handing it off), and every member
// of the view agreed to it. A member agrees when it has the puller's epoch
// (so it does not order writes to the bucket itself), its holds have passed
// (lease.go), and the writes it was ordering to the bucket as its primary
// have finished (a barrier on its sequencer). So whatever any primary
// acknowledged before is in the new primary's copy before it answers, and
// a bucket in flight never answers NOT FOUND.
//
// Readiness is remembered per term, never per epoch: a view that comes
// back is a new term and its buckets are pulled again.
//
// A member that does not answer a pull is asked again until it answers or
// the view drops it (it died), within Config.WriteTimeout: a request that
// arrives while a death is being detected waits for the new view rather
// than failing.

// maxReady caps the buckets remembered as ready in one term; past it the
// set starts over (the cost is one more pull per bucket).
const maxReady = 1 << 20

// readiness remembers the buckets this node has pulled in the current
// term, and runs one pull per bucket and term at a time.
type readiness struct {
	mu    sync.RWMutex // guards term and ready
	term  uint64
	ready map[string]string  // bucket -> the node its copies died with, by a source's word (lost.go); usually ""
	pulls singleflight.Group // keyed by term and bucket
}

// isReady reports whether bucket was pulled in term t.
func (r *readiness) isReady(t uint64, bucket string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.ready[bucket]
	return ok && r.term == t
}

// lostWith returns the node that, by the word of a member pulled from in
// term t, bucket's copies died with; "" if none.
func (r *readiness) lostWith(t uint64, bucket string) string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.term != t {
		return ""
	}
	return r.ready[bucket]
}

// markReady records that bucket was pulled in term t, forgetting the
// buckets of earlier terms.
func (r *readiness) markReady(t uint64, bucket, lostWith string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t < r.term {
		return
	}
	if t > r.term || r.ready == nil || len(r.ready) >= maxReady {
		r.term, r.ready = t, make(map[string]string)
	}
	r.ready[bucket] = lostWith
}

// errTermChanged: the term changed during a pull, which must start again
// with the new view's members.
var errTermChanged = errors.New("node: the view changed during a pull")

// ensureReady returns once this node is ready for bucket in the current
// term, and returns that term.
func (n *Node) ensureReady(ctx context.Context, bucket string) (uint64, error) {
	for {
		t := n.term.Load()
		if n.ready.isReady(t, bucket) {
			return t, nil
		}
		ch := n.ready.pulls.DoChan(strconv.FormatUint(t, 10)+"\x00"+bucket, func() (any, error) {
			return n.pullUntilAgreed(bucket, t)
		})
		var res singleflight.Result
		select {
		case res = <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		if errors.Is(res.Err, errTermChanged) {
			continue
		}
		if res.Err != nil {
			return 0, res.Err
		}
		if n.term.Load() == t {
			n.ready.markReady(t, bucket, res.Val.(string))
			return t, nil
		}
	}
}

// pullUntilAgreed pulls bucket for term t, asking again while members do
// not agree yet or do not answer, for at most WriteTimeout: members agree
// within a probe or two, and one that died leaves the view within
// DeadAfter. It returns errTermChanged when the term moves on, and the
// node a source said the copies died with.
func (n *Node) pullUntilAgreed(bucket string, t uint64) (string, error) {
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.WriteTimeout)
	defer cancel()
	delay := backoff{next: 5 * time.Millisecond, most: 100 * time.Millisecond}
	for {
		v := n.ms.view()
		if n.term.Load() != t {
			return "", errTermChanged
		}
		var lostWith string
		err := n.awaitUsable(ctx, v)
		if err == nil {
			lostWith, err = n.pullBucket(ctx, v, bucket)
		}
		if err == nil || n.ctx.Err() != nil {
			if n.term.Load() != t {
				return "", errTermChanged
			}
			return lostWith, err
		}
		if !delay.wait(ctx) {
			if n.ctx.Err() != nil {
				return "", ErrClosed
			}
			return "", err
		}
	}
}

// pullBucket merges into this node's copy of bucket what every other
// member holds of it; each must agree to v. A member that left is asked
// too while it may be handing its copies off (syncSources): it must answer
// while it is still heard from, and may be silent after. It returns the
// node a source said the copies died with.
func (n *Node) pullBucket(ctx context.Context, v *view, bucket string) (string, error) {
	n.handoffMu.Lock()
	if n.cfg.Store.Retired(bucket) {
		// This node owns the bucket again before its hand-off ended.
		n.cfg.Store.Unretire(bucket)
	}
	n.handoffMu.Unlock()
	sources := n.ms.sources()
	errs := make([]error, len(sources))
	lost := make([]string, len(sources))
	var wg sync.WaitGroup
	for i, m := range sources {
		wg.Go(func() {
			if m.State == StateLeft {
				// A departed member's view no longer has itself in it.
				lost[i], errs[i] = n.pullFrom(ctx, m.Member, bucket, 0)
				if errs[i] != nil && !m.required {
					n.log.Debug("pull from a departed member failed", zap.String("peer", m.Name), zap.Error(errs[i]))
					errs[i] = nil
				}
				return
			}
			lost[i], errs[i] = n.pullFrom(ctx, m.Member, bucket, v.epoch)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	for _, name := range lost {
		if name != "" {
			return name, nil
		}
	}
	return "", nil
}

// pullFrom merges m's copy of bucket into this node's: the shards whose
// digests differ, page by page. With a non-zero epoch, m answers only if
// it has the same view (errViewsDiffer otherwise), and only once its own
// writes to the bucket as a primary have finished.
//
// It returns the name of the node that m believes the bucket's copies died
// with (lost.go), when m holds none for that reason.
func (n *Node) pullFrom(ctx context.Context, m Member, bucket string, epoch uint64) (lostWith string, err error) {
	reply, err := n.call(ctx, m, appendDigestRequest(nil, epoch, bucket), n.cfg.ForwardTimeout)
	if err != nil {
		return "", err
	}
	theirs, ok, err := decodeDigestReply(reply)
	var cl *copiesLost
	if errors.As(err, &cl) {
		return cl.node, nil
	}
	if err != nil || !ok {
		return "", err
	}
	s := n.cfg.Store
	if err := n.checkVersions(m.ID, theirs.Meta, nil); err != nil {
		return "", err
	}
	mine, _ := s.Digest(bucket)
	if theirs.Meta != mine.Meta {
		if _, err := s.Merge(bucket, theirs.Meta, nil); err != nil {
			return "", err
		}
	}
	for shard := range differingShards(&theirs, &mine) {
		after := ""
		for {
			req := pageRequest{bucket: bucket, shard: shard, after: after, maxBytes: pageBytes}.append(nil)
			reply, err := n.call(ctx, m, req, n.cfg.ForwardTimeout)
			if err != nil {
				return "", err
			}
			es, more, err := decodePageReply(reply)
			if err == nil {
				err = n.checkVersions(m.ID, store.BucketMeta{}, es)
			}
			if err != nil {
				return "", err
			}
			if _, err := s.Merge(bucket, store.BucketMeta{}, es); err != nil {
				return "", err
			}
			if !more || len(es) == 0 {
				break
			}
			after = es[len(es)-1].Key
		}
	}
	return "", nil
}
