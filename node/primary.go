package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"go.uber.org/zap"

	"github.com/dboutique/dboutique/node/store"
)

// Replication. A bucket lives on its first Config.Replicas ring owners.
// The first owner, the primary, orders the bucket's writes: it gives each
// a version from its clock, sends the writes to the other owners, and
// applies and acknowledges them only once every owner of its current view
// holds them. A write is therefore visible (to reads, which the primary
// serves) only once it is on every live owner, and it survives the loss of
// any Replicas-1 of them.
//
// Invariant (who may answer for a bucket): a node answers a read, or
// acknowledges a write, as a bucket's primary only when
//
//  1. it is the bucket's first owner in its current view (a write checks
//     again under the bucket's sequencer);
//  2. it has joined its cluster (join.go);
//  3. it holds a lease (lease.go), checked before and again after it reads
//     the store or applies the write, with no break in between;
//  4. it is ready for the bucket in the current term (readiness.go);
//  5. for a write: every owner of its current view holds the write, its own
//     copy applied it, and it still sees Config.MinMembers members.
//
// serve checks 2 to 4; writeGroup and commit check 1 and 5.

// executeOwned runs ops, valid routed operations whose buckets this node
// is the primary of, in order. Consecutive writes to one bucket are
// replicated as one message.
func (n *Node) executeOwned(ctx context.Context, ops []store.Op, res []store.Result, errs []error, hops int) {
	// Writes to several buckets that each wait for a replica's round trip
	// wait for them at the same time. Buckets whose operations are plain
	// writes are written together (writeMany); each other bucket's
	// operations run in order on a goroutine of their own (as
	// executeRouted does for owners). Alone, or with replicas 1, there is
	// nothing to wait for.
	if v := n.ms.view(); n.cfg.Replicas > 1 && len(v.byKey) > 1 {
		if buckets := splitByBucket(ops); len(buckets) > 1 {
			var together, apart [][]int
			for _, idx := range buckets {
				if n.groupable(ops, idx) {
					together = append(together, idx)
				} else {
					apart = append(apart, idx)
				}
			}
			if len(together) < 2 {
				apart, together = append(apart, together...), nil
			}
			var wg sync.WaitGroup
			for _, idx := range apart {
				wg.Go(func() {
					bops := make([]store.Op, len(idx))
					bres := make([]store.Result, len(idx))
					berrs := make([]error, len(idx))
					for k, i := range idx {
						bops[k] = ops[i]
					}
					n.executeInOrder(ctx, bops, bres, berrs, hops)
					for k, i := range idx {
						res[i], errs[i] = bres[k], berrs[k]
					}
				})
			}
			if len(together) > 0 {
				n.writeMany(ctx, ops, res, errs, together, hops)
			}
			wg.Wait()
			return
		}
	}
	n.executeInOrder(ctx, ops, res, errs, hops)
}

// splitByBucket returns the indices of ops by bucket, each bucket's in
// order, when ops write to anything and name more than one bucket; nil
// otherwise.
func splitByBucket(ops []store.Op) [][]int {
	if !slices.ContainsFunc(ops, func(op store.Op) bool { return op.Kind.IsWrite() }) {
		return nil // reads do not wait for replicas
	}
	if !slices.ContainsFunc(ops, func(op store.Op) bool { return op.Bucket != ops[0].Bucket }) {
		return nil // the common case: one bucket, no map
	}
	var idx [][]int
	pos := make(map[string]int)
	for i := range ops {
		k, ok := pos[ops[i].Bucket]
		if !ok {
			k = len(idx)
			pos[ops[i].Bucket] = k
			idx = append(idx, nil)
		}
		idx[k] = append(idx[k], i)
	}
	if len(idx) < 2 {
		return nil
	}
	return idx
}

// executeInOrder runs ops one after the other, consecutive writes to one
// bucket as one replicated group.
func (n *Node) executeInOrder(ctx context.Context, ops []store.Op, res []store.Result, errs []error, hops int) {
	for i := 0; i < len(ops); {
		op := ops[i]
		if !op.Kind.IsWrite() {
			res[i], errs[i] = n.read(ctx, op, hops)
			i++
			continue
		}
		// A group is replicated as one message: keep it well under the
		// transport's frame cap.
		j, size := i+1, len(op.Key)+len(op.Value)
		for j < len(ops) && j-i < maxWrites && ops[j].Kind.IsWrite() && ops[j].Bucket == op.Bucket &&
			size+len(ops[j].Key)+len(ops[j].Value) <= maxGroupBytes {
			size += len(ops[j].Key) + len(ops[j].Value)
			j++
		}
		n.writeGroup(ctx, op.Bucket, ops[i:j], res[i:j], errs[i:j], hops)
		i = j
	}
}

// executeOne runs one operation whose bucket this node is the primary of.
func (n *Node) executeOne(ctx context.Context, op store.Op, hops int) (store.Result, error) {
	if !op.Kind.IsWrite() {
		return n.read(ctx, op, hops)
	}
	ops := [1]store.Op{op}
	var res [1]store.Result
	var errs [1]error
	n.writeGroup(ctx, op.Bucket, ops[:], res[:], errs[:], hops)
	return res[0], errs[0]
}

// read serves GET, KEYS, LEN and GETALL.
func (n *Node) read(ctx context.Context, op store.Op, hops int) (store.Result, error) {
	g, err := n.serve(ctx, op.Bucket)
	if err == nil {
		var res store.Result
		res, err = n.cfg.Store.Execute(ctx, op)
		if n.touches && op.Kind == store.KindGet && err == nil {
			n.touch(op.Bucket, op.Key)
		}
		if err == nil && (op.Kind == store.KindKeys || op.Kind == store.KindLen || op.Kind == store.KindGetAll) {
			// A listing left out what expired: delete it before
			// answering, as a read of one key does.
			if rerr := n.reclaimListed(ctx, op.Bucket, hops); rerr != nil {
				res, err = store.Result{}, rerr
			}
		}
		// What was read holds only if this node was the primary, with
		// its lease, all along: the view may have changed meanwhile, and
		// the copy been handed off.
		if gerr := n.stillServing(g); gerr != nil {
			res, err = store.Result{}, gerr
		}
		if errors.Is(err, store.ErrKeyExpired) || errors.Is(err, store.ErrBucketExpired) {
			// Found expired but still held: delete it before answering,
			// so that no copy serves it again once a client saw it gone
			// (a new primary's clock may run behind this one's).
			if rerr := n.reclaimRead(ctx, op, err, hops); rerr != nil {
				return store.Result{}, rerr
			}
			return store.Result{}, err
		}
		if errors.Is(err, store.ErrBucketNotFound) {
			if lost := n.lost(op.Bucket); lost != nil {
				err = lost
			}
		}
		if !errors.Is(err, errNotPrimary) {
			return res, err
		}
	}
	if errors.Is(err, errNotPrimary) {
		var res [1]store.Result
		var errs [1]error
		n.reroute(ctx, []store.Op{op}, res[:], errs[:], hops)
		return res[0], errs[0]
	}
	return store.Result{}, err
}

// reclaimRead deletes what a read of op found expired (found is the
// read's error) with a replicated write, as active expiry would. The
// write carries the time by which the read judged, so that a primary
// whose clock runs behind, should the bucket move meanwhile, deletes it
// all the same.
func (n *Node) reclaimRead(ctx context.Context, op store.Op, found error, hops int) error {
	rop := store.Op{Kind: store.KindReclaim, Bucket: op.Bucket, Expires: n.cfg.Store.Clock().Millis()}
	if errors.Is(found, store.ErrBucketExpired) {
		rop.Flags = store.FlagBucket
	} else {
		rop.Key = op.Key
	}
	res, err := n.executeOne(ctx, rop, hops)
	if err == nil {
		n.stats.expired.Add(uint64(res.Count))
	}
	return err
}

// reclaimListed deletes the keys of bucket that expired, with replicated
// writes judged by this node's time now: those a listing just left out,
// and any that expired since.
func (n *Node) reclaimListed(ctx context.Context, bucket string, hops int) error {
	s := n.cfg.Store
	now := s.Clock().Millis()
	found := s.ExpiredIn(nil, bucket, now, maxBatch)
	for len(found) > 0 {
		ops := reclaimOps(found, now)
		res := make([]store.Result, len(ops))
		errs := make([]error, len(ops))
		n.executeBatch(ctx, ops, res, errs, hops)
		for i := range errs {
			if errs[i] != nil {
				return errs[i]
			}
			n.stats.expired.Add(uint64(res[i].Count))
		}
		found = s.ExpiredIn(found[:0], bucket, now, maxBatch)
	}
	return nil
}

// grant is what serve grants: the term in which this node is ready to
// answer for a bucket as its primary, and the generation of the lease it
// holds. A read or a write checks both again once it has done its work
// (stillServing).
type grant struct {
	term, gen uint64
}

// serve returns once this node may answer for bucket as its primary
// (conditions 1 to 4 above), or errNotPrimary when the view no longer
// gives it the bucket.
func (n *Node) serve(ctx context.Context, bucket string) (grant, error) {
	if err := n.serving(); err != nil {
		return grant{}, err
	}
	// The common case, every request but the first of a term: ready, and
	// nothing changed.
	if g := (grant{term: n.term.Load(), gen: n.leaseGen.Load()}); n.ready.isReady(g.term, bucket) &&
		n.primaryHere(bucket) == nil && n.stillServing(g) == nil {
		return g, nil
	}
	for {
		if err := n.primaryHere(bucket); err != nil {
			return grant{}, err // pull nothing for a bucket it does not own
		}
		if err := n.awaitLease(ctx); err != nil {
			return grant{}, err
		}
		gen := n.leaseGen.Load()
		t, err := n.ensureReady(ctx, bucket)
		if err != nil {
			return grant{}, err
		}
		// Ready in the term the lease belongs to (a lease regained
		// during the pull is a new term, whose pull comes next), and
		// still the primary in it.
		g := grant{term: t, gen: gen}
		err = n.primaryHere(bucket)
		if err == nil {
			err = n.stillServing(g)
		}
		if !errors.Is(err, errNoLease) {
			return g, err
		}
	}
}

// stillServing reports whether this node still answers as the primary
// it was granted to be: in term g.term (so in the same view: a new view is
// a new term, rebuildLocked), with no break in its lease since g.gen.
// errNotPrimary when the term moved on (the caller may run the request
// again where it now belongs), errNoLease when the lease ran out.
func (n *Node) stillServing(g grant) error {
	if err := n.stillLeased(g.gen); err != nil {
		return err
	}
	if n.term.Load() != g.term {
		return errNotPrimary
	}
	return nil
}

// primaryHere returns errNotPrimary unless this node is bucket's first
// owner in its current view.
func (n *Node) primaryHere(bucket string) error {
	if first, err := n.ms.view().primary(bucket); err != nil || !first.Self {
		return errNotPrimary
	}
	return nil
}

// errNotPrimary: the view changed after a request was routed here, and
// this node is no longer its bucket's primary; nothing of it has run.
var errNotPrimary = fmt.Errorf("%w: this node is no longer the bucket's primary", ErrNoRoute)

// reroute runs ops, which were routed here and found this node no longer
// their primary, where the current view places them, one by one, in
// order: each hop spends one of hops.
func (n *Node) reroute(ctx context.Context, ops []store.Op, res []store.Result, errs []error, hops int) {
	for i := range ops {
		if hops <= 0 {
			res[i], errs[i] = store.Result{}, errNotPrimary
			continue
		}
		res[i], errs[i] = n.route(ctx, ops[i], hops-1)
	}
}

// serving reports whether the node may answer for buckets at all: a node
// that must find its cluster first answers nothing until it has, or it
// would answer NOT FOUND for buckets that exist (join.go).
func (n *Node) serving() error {
	if !n.joined.Load() {
		return fmt.Errorf("%w: not joined yet", ErrUnavailable)
	}
	return nil
}

// enoughMembers reports whether the node sees at least Config.MinMembers
// members, itself included: checked before a write starts and again before
// it is acknowledged.
func (n *Node) enoughMembers() error {
	if n.cfg.MinMembers > 0 {
		if alive := len(n.ms.view().byKey); alive < n.cfg.MinMembers {
			return fmt.Errorf("%w: %d members reachable, %d needed", ErrUnavailable, alive, n.cfg.MinMembers)
		}
	}
	return nil
}

// writeGroup runs ops, writes to bucket, in order: it decides each one's
// outcome, versions those that change the bucket, replicates them, and
// applies them here once every owner holds them.
func (n *Node) writeGroup(ctx context.Context, bucket string, ops []store.Op, res []store.Result, errs []error, hops int) {
	if err := n.enoughMembers(); err != nil {
		failAll(res, errs, err)
		return
	}
	g, err := n.serve(ctx, bucket)
	if errors.Is(err, errNotPrimary) {
		n.reroute(ctx, ops, res, errs, hops)
		return
	}
	if err == nil {
		err = n.admitWrite(ctx, ops)
	}
	if err != nil {
		failAll(res, errs, err)
		return
	}
	if n.touches {
		for _, op := range ops {
			n.touch(bucket, op.Key)
		}
	}
	// CREATE and DROP change whether the bucket exists, and so does a
	// PUTCREATE of a bucket that does not: those take the sequencer alone.
	// So do the writes that decide what they write from the state they
	// find (SET NX, EXPIRE GT, ...): nothing else changes the bucket while
	// they are ordered and replicated.
	exclusive, creates := false, false
	for _, op := range ops {
		switch {
		case op.Kind == store.KindCreate, op.Kind == store.KindDrop, op.Kind.ReadsFirst():
			exclusive = true
		case op.Kind == store.KindPutCreate:
			creates = true
		}
	}
	if creates && !exclusive {
		exclusive = !n.cfg.Store.BucketLive(bucket)
	}
	if !n.sequence(ctx, g, bucket, ops, res, errs, exclusive) {
		// Dropped between the look and the lock: order the group alone.
		n.sequence(ctx, g, bucket, ops, res, errs, true)
	}
	if errors.Is(errs[0], errNotPrimary) {
		// No longer the primary by the time the sequencer was ours:
		// nothing was ordered.
		n.reroute(ctx, ops, res, errs, hops)
	}
}

// sequence orders ops under the bucket's sequencer, taken alone when
// exclusive, then replicates and applies them. Holding it shared, it
// returns false, having done nothing, when a PUTCREATE finds that it must
// create the bucket.
func (n *Node) sequence(ctx context.Context, g grant, bucket string, ops []store.Op, res []store.Result, errs []error, exclusive bool) bool {
	seq := n.seqLock(bucket)
	if err := seq.lock(ctx, exclusive); err != nil {
		failAll(res, errs, err)
		return true
	}
	defer seq.unlock(exclusive)
	// Under the sequencer, this node must still be the primary, in the
	// term it is ready in: a node getting ready to replace it waits for
	// the sequencer (see msgDigest), so no write is ordered here once that
	// node serves the bucket; and a view that came back is a new term,
	// in which the bucket must be pulled again before a write is ordered.
	if err := n.stillServing(g); err != nil {
		failAll(res, errs, err)
		return true
	}
	exists := n.cfg.Store.BucketLive(bucket)
	if !exists && !exclusive && slices.ContainsFunc(ops, func(op store.Op) bool { return op.Kind == store.KindPutCreate }) {
		return false
	}
	var buf [16]write // a pipeline of 16 without allocating; small, for the goroutines of executeOwned
	ws := n.order(buf[:0], bucket, exists, ops, res, errs)
	n.commit(ctx, g, bucket, ws, res, errs)
	return true
}

// commit replicates ws, the writes ordered for a group, and applies them
// here once every owner holds them; if that fails, the group's operations
// that had no error get the failure.
//
// It also settles the counts of the writes marked countFor. A count must
// be decided before the write leaves this node: once a replica holds it,
// anti-entropy may bring it back here before it is applied, and applying
// it would then change nothing. So counts are read from the store just
// before the first send; a write that is never sent (a node alone, or
// replicas 1) is counted as it is applied, which saves a lookup.
func (n *Node) commit(ctx context.Context, g grant, bucket string, ws []write, res []store.Result, errs []error) {
	if len(ws) == 0 {
		n.settleUnwritten(g, bucket, res, errs)
		return
	}
	if err := n.replicate(ctx, bucket, ws, func() { countWrites(n.cfg.Store, bucket, ws, res) }); err != nil {
		failUnset(res, errs, err)
		return
	}
	n.applyGroup(g, bucket, ws, res, errs)
}

// settleUnwritten answers a group that had nothing to write (every
// operation failed, NOT FOUND say): what this node answers must still be
// what held while it served.
func (n *Node) settleUnwritten(g grant, bucket string, res []store.Result, errs []error) {
	if err := n.stillServing(g); err != nil {
		failUnset(res, errs, err)
	} else if lost := n.lost(bucket); lost != nil {
		for k := range errs {
			if errors.Is(errs[k], store.ErrBucketNotFound) {
				errs[k] = lost
			}
		}
	}
}

// countWrites settles the counts of the writes of ws marked countFor,
// from the store before any of ws is applied (see commit).
func countWrites(s *store.Store, bucket string, ws []write, res []store.Result) {
	for i := range ws {
		if w := &ws[i]; w.countFor > 0 {
			res[w.countFor-1].Count = b2i(live(s, bucket, ws[:i], w.entry.Key) == w.entry.Deleted)
			w.countFor = 0
		}
	}
}

// applyGroup applies ws, a group's writes that every owner holds, here,
// and acknowledges them if what the group was granted still holds.
func (n *Node) applyGroup(g grant, bucket string, ws []write, res []store.Result, errs []error) {
	s := n.cfg.Store
	for _, w := range ws {
		var err error
		if w.countFor > 0 {
			var wasLive, applied bool
			wasLive, applied, err = s.ApplyEntryLive(bucket, w.entry)
			res[w.countFor-1].Count = b2i(applied && wasLive == w.entry.Deleted)
		} else {
			err = w.apply(s, bucket)
		}
		if err != nil {
			// Never acknowledge what this copy did not apply. (A copy
			// is retired only under the sequencer this write holds, and
			// only when the current view does not give it to this node,
			// so ErrRetired here would be a broken invariant.)
			n.log.Error("cannot apply a replicated write", zap.String("bucket", bucket), zap.Error(err))
			failUnset(res, errs, fmt.Errorf("%w: this node could not apply the write: %v", ErrNoRoute, err))
			return
		}
	}
	// Acknowledge only what held until now: the lease, and the members.
	// The write has left this node by now, so the client must hear that
	// it may have taken effect: not ErrUnavailable, which promises it did
	// not.
	if err := cmp.Or(n.stillLeased(g.gen), n.enoughMembers()); err != nil {
		failUnset(res, errs, fmt.Errorf("%w: %v while the write was being replicated; it may have taken effect", ErrNoRoute, err))
	}
}

// failUnset gives err to the operations that have no error yet.
func failUnset(res []store.Result, errs []error, err error) {
	for k := range errs {
		if errs[k] == nil {
			res[k], errs[k] = store.Result{}, err
		}
	}
}

// failAll gives err to every operation.
func failAll(res []store.Result, errs []error, err error) {
	for k := range errs {
		res[k], errs[k] = store.Result{}, err
	}
}

// order decides the outcome of each of ops, writes to bucket, given
// whether the bucket exists (and has not expired) now, and appends the
// writes to replicate to ws. The caller holds the bucket's sequencer
// (alone when ops may change whether the bucket exists, or decide what
// they write from what they find).
func (n *Node) order(ws []write, bucket string, exists bool, ops []store.Op, res []store.Result, errs []error) []write {
	s := n.cfg.Store
	return n.orderAt(ws, &versions{clock: s.Clock(), want: len(ops)}, s.Clock().Millis(), bucket, exists, ops, res, errs)
}

// orderAt is order with the versions to take and the time to judge by
// given: writeMany orders many groups with one reading of the clock.
func (n *Node) orderAt(ws []write, clock *versions, now int64, bucket string, exists bool, ops []store.Op, res []store.Result, errs []error) []write {
	s := n.cfg.Store
	// An expired bucket that its primary has not dropped yet is dropped
	// before it is created again, so that none of its keys come back.
	stale := !exists && s.Exists(bucket)
	create := func() {
		if stale {
			ws = append(ws, write{kind: store.KindDrop, entry: store.Entry{Version: clock.take()}})
			stale = false
		}
		ws = append(ws, write{kind: store.KindCreate, entry: store.Entry{Version: clock.take()}})
		exists = true
	}
	for k, op := range ops {
		res[k], errs[k] = store.Result{}, nil
		if op.Kind.ReadsFirst() {
			ws = n.decide(ws, op, now, clock.take, &res[k], &errs[k])
			m := n.currentBucket(ws, bucket, now)
			exists, stale = m.LiveAt(now), !m.LiveAt(now) && m.Exists()
			continue
		}
		if !exists && op.Kind != store.KindCreate && op.Kind != store.KindPutCreate {
			if stale {
				// Found expired: dropped before the client hears that it
				// is missing, so that no copy serves it again.
				ws = append(ws, write{kind: store.KindDrop, entry: store.Entry{Version: clock.take()}})
				stale = false
			}
			errs[k] = fmt.Errorf("%w: %q", store.ErrBucketNotFound, bucket)
			continue
		}
		switch op.Kind {
		case store.KindCreate:
			// Written even when the bucket exists: a copy that missed
			// its creation learns of it.
			res[k].Count = b2i(!exists)
			if exists {
				ws = append(ws, write{kind: store.KindCreate, entry: store.Entry{Version: clock.take()}})
			} else {
				create()
			}
		case store.KindDrop:
			ws = append(ws, write{kind: store.KindDrop, entry: store.Entry{Version: clock.take()}})
			res[k].Count = 1
			exists = false
		case store.KindPutCreate, store.KindPut:
			if !exists {
				create()
			}
			w := write{kind: store.KindPut, entry: store.Entry{Key: op.Key, Value: op.Value, Version: clock.take(), Expires: op.ExpiresAt(now)}}
			if op.Kind == store.KindPutCreate {
				w.countFor = k + 1
			}
			if w.entry.Expires != 0 && w.entry.Expires <= now {
				w.kind, w.entry.Value, w.entry.Expires, w.entry.Deleted = store.KindDelete, "", 0, true
			}
			ws = append(ws, w)
		case store.KindDelete:
			ws = append(ws, write{kind: store.KindDelete, entry: store.Entry{Key: op.Key, Deleted: true, Version: clock.take()}, countFor: k + 1})
		}
	}
	return ws
}

// versions hands out the versions of a group's writes from the store's
// clock, several at a time (Clock.NowN): one reading of the wall clock
// for a pipeline's writes rather than one each.
type versions struct {
	clock     *store.Clock
	next, end store.Version
	want      int // how many to take when those taken run out
}

func (vs *versions) take() store.Version {
	if vs.next == vs.end {
		vs.next = vs.clock.NowN(vs.want)
		vs.end = vs.next + store.Version(max(vs.want, 1))
	}
	v := vs.next
	vs.next++
	return v
}

// decide orders op, a write that decides what it writes from the state it
// finds (store.Decide): the state of the store once ws, the writes ordered
// before it, are applied.
func (n *Node) decide(ws []write, op store.Op, now int64, version func() store.Version, res *store.Result, err *error) []write {
	cur := n.cfg.Store.State(op, now)
	for _, w := range ws {
		cur.Apply(op, store.Change{Kind: w.kind, Entry: w.entry})
	}
	r, changes, e := store.Decide(op, cur, version)
	*res, *err = r, e
	for _, c := range changes {
		ws = append(ws, write{kind: c.Kind, entry: c.Entry})
	}
	return ws
}

// currentBucket returns the bucket's meta once ws are applied.
func (n *Node) currentBucket(ws []write, bucket string, now int64) store.BucketMeta {
	op := store.Op{Bucket: bucket, Flags: store.FlagBucket}
	cur := n.cfg.Store.State(op, now)
	for _, w := range ws {
		cur.Apply(op, store.Change{Kind: w.kind, Entry: w.entry})
	}
	return cur.Bucket
}

// live reports whether key has a value once ws, writes not applied yet,
// are: the last of them that writes key decides, or else the store.
func live(s *store.Store, bucket string, ws []write, key string) bool {
	for i := len(ws) - 1; i >= 0; i-- {
		switch w := &ws[i]; {
		case w.kind == store.KindCreate, w.kind == store.KindExpire:
			continue
		case w.kind == store.KindDrop:
			return false
		case w.entry.Key == key:
			return !w.entry.Deleted && w.kind != store.KindEvict
		}
	}
	return s.Live(bucket, key)
}
