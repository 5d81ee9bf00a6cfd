package node

import (
	"context"
	"errors"
	"iter"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/dboutique/dboutique/node/store"
)

// Rebalancing, repair and anti-entropy. After every change of the view,
// and every Config.SyncInterval, each node runs a pass over the bucket
// copies it holds: it compares each copy with the copies of the bucket's
// other owners (one message per owner with a digest sum per bucket), and
// pushes the shards that differ, page by page, so memory stays bounded by
// a page. A copy this node no longer owns is retired (it takes no more
// writes), pushed to every owner, and removed only once all of them have
// confirmed it. The same pass moves buckets to nodes that join, re-makes
// copies lost with a dead node, hands a leaving node's buckets off, and
// makes the copies on two sides of a healed partition converge: merging
// keeps the newest version of every key.

// retryInterval is how soon a pass that left work undone runs again.
const retryInterval = time.Second

// minPassGap is the least time between two passes.
const minPassGap = 50 * time.Millisecond

// syncSoon asks for a pass; it never blocks.
func (n *Node) syncSoon() {
	select {
	case n.syncNow <- struct{}{}:
	default:
	}
}

// strayCopy asks for a pass when this node holds a copy of bucket that
// the current view does not give it: a peer with an older view sent it.
// The pass hands it to the owners.
func (n *Node) strayCopy(bucket string) {
	owners, err := n.ms.view().owners(bucket, n.cfg.Replicas)
	if err != nil {
		return
	}
	for _, m := range owners {
		if m.Self {
			return
		}
	}
	n.syncSoon()
}

// maxSumsPerMessage caps the buckets compared in one msgSums.
const maxSumsPerMessage = 4096

// passStats counts what one pass did.
type passStats struct {
	buckets int   // copies pushed (to one owner each)
	entries int   // entries sent
	bytes   int64 // their keys and values
	removed int   // copies handed off and removed
	pending int   // copies not handed off or not confirmed by every owner
}

// syncLoop runs passes when the view changes and every SyncInterval, and
// collects old tombstones.
func (n *Node) syncLoop() {
	defer n.wg.Done()
	t := time.NewTimer(n.cfg.SyncInterval)
	defer t.Stop()
	var collected time.Time
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.syncNow:
		case <-t.C:
		}
		st := n.syncPass(n.ctx)
		if time.Since(collected) >= n.cfg.SyncInterval {
			// Collecting scans every bucket that has tombstones: not
			// after each of the many passes of a rebalancing.
			n.collect()
			collected = time.Now()
		}
		next := n.cfg.SyncInterval
		if st.pending > 0 {
			next = min(next, retryInterval)
		}
		t.Reset(next)
		// Passes asked for in a burst (a stream of stray copies) run
		// one every minPassGap at most.
		if !sleep(n.ctx, minPassGap) {
			return
		}
	}
}

// collect removes tombstones and dropped buckets older than the grace
// period.
func (n *Node) collect() {
	cut := store.VersionAt(n.cfg.Now().Add(-n.cfg.TombstoneGrace))
	if tomb, recs := n.cfg.Store.Collect(cut); tomb+recs > 0 {
		n.log.Debug("collected tombstones", zap.Int("keys", tomb), zap.Int("buckets", recs))
	}
}

// syncPass pushes this node's copies to the owners that lack them and hands
// off the copies it no longer owns. Passes run one at a time.
func (n *Node) syncPass(ctx context.Context) passStats {
	select {
	case n.passMu <- struct{}{}:
	case <-ctx.Done():
		return passStats{pending: 1}
	}
	defer func() { <-n.passMu }()
	start := time.Now()
	n.stats.syncing.Store(true)
	s := n.cfg.Store
	v := n.ms.view()
	// A pass works for one view: when it is replaced, calls to members
	// that left it (a dead node's dial may hang) end, and the next pass,
	// already asked for, starts from the new view. What was sent stays.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(v.replaced, cancel)
	defer stop()
	var (
		st       passStats
		byPeer   = make(map[string][]bucketSum)
		peers    = make(map[string]Member)
		notOwned []string
	)
	for _, b := range s.Records() {
		owners, err := v.owners(b, n.cfg.Replicas)
		if err != nil || len(owners) == 0 {
			st.pending++ // no owner now (for example no range covers it): keep it
			continue
		}
		own := slices.ContainsFunc(owners, func(m Member) bool { return m.Self })
		if !own && n.retire(ctx, b) {
			notOwned = append(notOwned, b)
		} else if own && s.Retired(b) {
			// Owned again before its hand-off finished (a partition
			// healed, a node came back): it takes writes again.
			n.handoffMu.Lock()
			if n.ms.view().owns(b, n.cfg.Replicas) {
				s.Unretire(b)
			}
			n.handoffMu.Unlock()
		}
		dg, ok := s.Digest(b)
		if !ok {
			continue
		}
		sum := dg.Sum()
		for _, m := range owners {
			if !m.Self {
				byPeer[m.ID] = append(byPeer[m.ID], bucketSum{bucket: b, sum: sum})
				peers[m.ID] = m
			}
		}
	}
	// Every other member of the view hears from this pass, even when it
	// shares no bucket with this node: it learns that it lacks nothing.
	for _, m := range v.byKey {
		if !m.Self {
			if _, ok := peers[m.ID]; !ok {
				byPeer[m.ID], peers[m.ID] = nil, m
			}
		}
	}
	defer func() {
		// Settled: this pass saw the current view and left nothing undone.
		if st.pending == 0 {
			n.settledIn(v)
		} else {
			n.settled.Store(0)
		}
		n.stats.passDone(&st, time.Since(start))
	}()
	if len(byPeer) == 0 && len(notOwned) == 0 {
		return st
	}
	var (
		mu     sync.Mutex // guards failed and st
		failed = make(map[string]bool)
		wg     sync.WaitGroup
	)
	for id, sums := range byPeer {
		wg.Go(func() {
			ps, bad := n.pushTo(ctx, v.epoch, peers[id], sums)
			mu.Lock()
			defer mu.Unlock()
			st.buckets += ps.buckets
			st.entries += ps.entries
			st.bytes += ps.bytes
			st.pending += ps.pending // an unconfirmed peer
			for _, b := range bad {
				failed[b] = true
			}
		})
	}
	wg.Wait()
	st.pending += len(failed)
	for _, b := range notOwned {
		if failed[b] {
			continue // counted above
		}
		if !n.removeHandedOff(b) {
			st.pending++
			continue
		}
		st.removed++
	}
	if st.buckets > 0 || st.removed > 0 {
		n.log.Info("rebalanced",
			zap.Int("copies_sent", st.buckets), zap.Int("keys_sent", st.entries),
			zap.Int64("bytes_sent", st.bytes), zap.Int("copies_removed", st.removed),
			zap.Int("pending", st.pending), zap.Duration("took", time.Since(start)))
	}
	return st
}

// Settled reports whether this node's copies are where the current view
// wants them: its last sync pass ran with the current view, confirmed
// every copy with the other owners, and handed off every copy it does not
// own. Writes since are replicated to every owner as they happen.
func (n *Node) Settled() bool {
	t := n.settled.Load()
	return t != 0 && t == n.ms.view().term
}

// retire retires this node's copy of b, which a pass found it does not own,
// unless the current view gives it to this node after all (the view may
// have changed since the pass began). Invariant: a copy is retired only
// under the bucket's sequencer, held alone, when the current view does not
// give it to this node; so the writes it ordered as the primary are applied
// first (and are in the copy handed off), and a primary's own copy is
// never retired under it.
func (n *Node) retire(ctx context.Context, b string) bool {
	seq := n.seqLock(b)
	if err := seq.lock(ctx, true); err != nil {
		return false
	}
	defer seq.unlock(true)
	n.handoffMu.Lock()
	defer n.handoffMu.Unlock()
	if v := n.ms.view(); v.ring == nil {
		return false // nowhere to hand it to: keep it
	} else if v.owns(b, n.cfg.Replicas) {
		n.cfg.Store.Unretire(b)
		return false
	}
	n.cfg.Store.Retire(b)
	return true
}

// removeHandedOff removes the copy of b once it is handed off, unless this
// node owns b again meanwhile.
func (n *Node) removeHandedOff(b string) bool {
	n.handoffMu.Lock()
	defer n.handoffMu.Unlock()
	if !n.cfg.Store.Retired(b) {
		return false // pulled back into service
	}
	v := n.ms.view()
	if v.ring == nil {
		return false
	}
	if v.owns(b, n.cfg.Replicas) {
		n.cfg.Store.Unretire(b)
		return false
	}
	n.cfg.Store.Remove(b)
	// This node no longer holds all it held in the view where its copies
	// were: until it settles again, it claims none (lost.go).
	n.settledView.Store(nil)
	return true
}

// pushTo compares this node's copies with m's and pushes those that
// differ. It returns what it sent and the buckets it could not push. When
// all went well, it tells m that it lacks nothing of this node's copies in
// the view of epoch (a msgSums marked done).
func (n *Node) pushTo(ctx context.Context, epoch uint64, m Member, sums []bucketSum) (passStats, []string) {
	var st passStats
	var bad []string
	progress := time.Now()
	for len(sums) > 0 {
		k, size := 1, len(sums[0].bucket)
		for k < len(sums) && k < maxSumsPerMessage && size+len(sums[k].bucket) <= maxSumsBytes {
			size += len(sums[k].bucket)
			k++
		}
		chunk := sums[:k]
		sums = sums[k:]
		reply, err := n.call(ctx, m, appendSums(nil, epoch, false, chunk), n.cfg.ForwardTimeout)
		var differ []string
		agree := false
		if err == nil {
			agree, differ, err = decodeSumsReply(reply)
		}
		if err == nil && !agree {
			// Copies go to m all the same, but what m confirms does not
			// count towards a hand-off until it has this node's view:
			// otherwise two nodes that each think the other owns a
			// bucket could both hand it off, to each other.
			for _, s := range chunk {
				bad = append(bad, s.bucket)
			}
		}
		if err != nil {
			n.log.Debug("cannot compare copies", zap.String("peer", m.Name), zap.Error(err))
			for _, s := range chunk {
				bad = append(bad, s.bucket)
			}
			continue
		}
		for _, b := range differ {
			if err := n.pushBucket(ctx, m, b, &st); err != nil {
				n.log.Debug("cannot push a copy", zap.String("peer", m.Name), zap.String("bucket", b), zap.Error(err))
				bad = append(bad, b)
			}
			if time.Since(progress) > 5*time.Second {
				progress = time.Now()
				n.log.Info("rebalancing", zap.String("to", m.Name), zap.Int("copies_sent", st.buckets),
					zap.Int("keys_sent", st.entries), zap.Int64("bytes_sent", st.bytes))
			}
		}
	}
	if len(bad) == 0 {
		// m lacks nothing of this node's now: say so (lost.go); the pass
		// is not done until m has heard it in the same view (m ignores a
		// confirmation for a view it does not have yet: the pass is then
		// run again soon, and confirms again).
		reply, err := n.call(ctx, m, appendSums(nil, epoch, true, nil), n.cfg.ForwardTimeout)
		agree := false
		if err == nil {
			agree, _, err = decodeSumsReply(reply)
		}
		if err != nil || !agree {
			n.log.Debug("cannot confirm copies", zap.String("peer", m.Name), zap.Bool("same_view", agree), zap.Error(err))
			st.pending++
		}
	}
	return st, bad
}

// pushBucket sends m the shards of bucket b whose digests differ from m's.
func (n *Node) pushBucket(ctx context.Context, m Member, b string, st *passStats) error {
	reply, err := n.call(ctx, m, appendDigestRequest(nil, 0, b), n.cfg.ForwardTimeout)
	if err != nil {
		return err
	}
	theirs, _, err := decodeDigestReply(reply)
	var cl *copiesLost
	if err != nil && !errors.As(err, &cl) { // copiesLost: no copy there
		return err
	}
	s := n.cfg.Store
	mine, ok := s.Digest(b)
	if !ok {
		return nil // removed meanwhile
	}
	// Entries of the differing shards travel in messages of about
	// pageBytes, several small shards to a message.
	var (
		batch []store.Entry
		size  int
		sent  bool
	)
	flush := func() error {
		reply, err := n.call(ctx, m, appendMerge(nil, b, mine.Meta, batch), n.cfg.ForwardTimeout)
		if err == nil {
			_, err = decodeReply(reply)
		}
		if err != nil {
			return err
		}
		sent = true
		st.entries += len(batch)
		for _, e := range batch {
			st.bytes += int64(len(e.Key) + len(e.Value))
		}
		batch, size = batch[:0], 0
		return nil
	}
	for shard := range differingShards(&theirs, &mine) {
		after := ""
		for {
			es, more, ok := s.Page(b, shard, after, max(pageBytes-size, 1))
			if !ok {
				return nil // removed meanwhile
			}
			batch = append(batch, es...)
			for _, e := range es {
				size += len(e.Key) + len(e.Value) + store.PageEntryOverhead
			}
			if size >= pageBytes {
				if err := flush(); err != nil {
					return err
				}
			}
			if !more || len(es) == 0 {
				break
			}
			after = es[len(es)-1].Key
		}
	}
	if len(batch) > 0 || !sent && theirs.Meta != mine.Meta {
		if err := flush(); err != nil {
			return err
		}
	}
	if sent {
		st.buckets++
	}
	return nil
}

// differingShards yields the shards whose digests differ between two
// copies: what a pull fetches and a push sends.
func differingShards(a, b *store.Digest) iter.Seq[int] {
	return func(yield func(int) bool) {
		for shard := range store.NumShards {
			if a.Shards[shard] != b.Shards[shard] && !yield(shard) {
				return
			}
		}
	}
}

// sumsReply answers msgSums: whether this node has the sender's view, and
// the buckets whose copy here differs.
func (n *Node) sumsReply(epoch uint64, sums []bucketSum) []byte {
	var differ []string
	for _, s := range sums {
		dg, ok := n.cfg.Store.Digest(s.bucket)
		if !ok || dg.Sum() != s.sum {
			differ = append(differ, s.bucket)
		}
	}
	return appendSumsReply(nil, epoch == n.Epoch(), differ)
}

// handleDigest answers msgDigest: the digest of this node's copy of a
// bucket, once the writes it was ordering for the bucket are done.
func (n *Node) handleDigest(ctx context.Context, from string, body []byte) ([]byte, error) {
	epoch, bucket, err := decodeDigestRequest(body)
	if err != nil {
		return nil, err
	}
	if epoch != 0 {
		// A primary getting ready (readiness.go): this node agrees
		// only with the same view, whose holds have passed here
		// (lease.go). Then it forwards the bucket's writes to the
		// puller rather than ordering them itself.
		if v := n.ms.view(); epoch != v.epoch || n.sinceStart() < n.usableAt(v) {
			n.ms.probeSoon(from)
			return appendDigestDiffer(nil), nil
		}
	}
	// The writes this node was ordering as the bucket's primary
	// finish first, so the copy sent holds every write it
	// acknowledged. (A member that has left is pulled without an
	// epoch, and waited for all the same.)
	seq := n.seqLock(bucket)
	if err := seq.lock(ctx, true); err != nil {
		return nil, err
	}
	seq.unlock(true)
	dg, ok := n.cfg.Store.Digest(bucket)
	if !ok {
		var ue *UnreachableError
		if errors.As(n.lost(bucket), &ue) {
			return appendDigestLost(nil, ue.Node), nil
		}
	}
	return appendDigestReply(nil, dg, ok), nil
}

// handlePage answers msgPage: a page of one shard of this node's copy.
func (n *Node) handlePage(_ context.Context, _ string, body []byte) ([]byte, error) {
	r, err := decodePageRequest(body)
	if err != nil {
		return nil, err
	}
	es, more, _ := n.cfg.Store.Page(r.bucket, r.shard, r.after, r.maxBytes)
	return appendPageReply(nil, es, more), nil
}

// handleMerge answers msgMerge: it merges a peer's shard into this node's
// copy.
func (n *Node) handleMerge(_ context.Context, from string, body []byte) ([]byte, error) {
	bucket, meta, es, err := decodeMerge(body)
	if err != nil {
		return nil, err
	}
	if err := n.checkVersions(from, meta, es); err != nil {
		return appendReply(nil, store.Result{}, err), nil
	}
	s := n.cfg.Store
	_, existed := s.Meta(bucket)
	changed, err := s.Merge(bucket, meta, es)
	if err == nil && (changed > 0 || !existed) {
		// What came in may be news to the bucket's other owners too
		// (or this copy is a stray to hand on): compare again now
		// rather than at the next interval.
		n.syncSoon()
	}
	return appendReply(nil, store.Result{}, err), nil
}

// handleSums answers msgSums: which of the sender's buckets differ here.
func (n *Node) handleSums(_ context.Context, from string, body []byte) ([]byte, error) {
	epoch, done, sums, err := decodeSums(body)
	if err != nil {
		return nil, err
	}
	if done {
		n.caughtUpWith(from, epoch)
	}
	return n.sumsReply(epoch, sums), nil
}
