package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/dboutique/dboutique/node/store"
)

// Writes to many buckets at once. A pipeline that writes to many buckets
// (HSETs spread over 64 hashes, SETs over the plain-key buckets) used to
// run a group per bucket, each on a goroutine of its own, each waiting for
// its own replication. writeMany runs the plain writes of all of them on
// one goroutine: it orders every bucket's group under that bucket's
// sequencer, replicates all the groups at once (replicateGroups: one
// message to each owner for all of them), and applies and answers each
// once every owner of its bucket holds it, letting go of each sequencer
// as soon as the groups under it are done (not when the last group is).
// What each group does, and what it waits for before it is acknowledged,
// is what writeGroup would do (rules 1 to 5 in primary.go); only the
// waiting is shared.
//
// Holding several sequencers at once must not deadlock: writeMany takes
// them shared, one stripe at a time in increasing stripe order, each
// stripe once; every other holder holds one stripe at a time. A cycle of
// waits would need someone to wait for a lower stripe while holding a
// higher one.

// bucketWrites is one bucket's group in writeMany.
type bucketWrites struct {
	bucket string
	ops    []store.Op
	res    []store.Result
	errs   []error
	stripe int
	g      grant
	err    error // why the group did not run (errNotPrimary: it runs elsewhere)
	alone  bool  // it must take its sequencer alone: run by writeGroup after
	ws     []write
}

// groupable reports whether the operations of ops at idx, all of one
// bucket, can be written together with other buckets' by writeMany: plain
// writes (none that changes whether the bucket exists or decides what it
// writes from what it finds) that fit one replicated group.
func (n *Node) groupable(ops []store.Op, idx []int) bool {
	if len(idx) > maxWrites {
		return false
	}
	size, creates := 0, false
	for _, i := range idx {
		op := &ops[i]
		switch {
		case !op.Kind.IsWrite(), op.Kind == store.KindCreate, op.Kind == store.KindDrop, op.Kind.ReadsFirst():
			return false
		case op.Kind == store.KindPutCreate:
			creates = true
		}
		if size += len(op.Key) + len(op.Value); size > maxGroupBytes {
			return false
		}
	}
	return !creates || n.cfg.Store.BucketLive(ops[idx[0]].Bucket)
}

// writeMany runs the groups of ops at each of groups' index lists (each a
// bucket's operations, groupable), and sets their results.
func (n *Node) writeMany(ctx context.Context, ops []store.Op, res []store.Result, errs []error, groups [][]int, hops int) {
	total := 0
	for _, idx := range groups {
		total += len(idx)
	}
	bops, bres, berrs := make([]store.Op, 0, total), make([]store.Result, total), make([]error, total)
	bs := make([]bucketWrites, len(groups))
	for k, idx := range groups {
		start := len(bops)
		for _, i := range idx {
			bops = append(bops, ops[i])
		}
		b := &bs[k]
		b.bucket, b.ops, b.res, b.errs = ops[idx[0]].Bucket, bops[start:], bres[start:len(bops)], berrs[start:len(bops)]
		b.stripe = stripeOf(b.bucket)
	}
	n.writeBuckets(ctx, bs, hops) // reorders bs; bres and berrs stay in the order of groups
	k := 0
	for _, idx := range groups {
		for _, i := range idx {
			res[i], errs[i] = bres[k], berrs[k]
			k++
		}
	}
}

// writeBuckets runs every group of bs.
func (n *Node) writeBuckets(ctx context.Context, bs []bucketWrites, hops int) {
	if err := n.enoughMembers(); err != nil {
		for i := range bs {
			failAll(bs[i].res, bs[i].errs, err)
		}
		return
	}
	n.serveBuckets(ctx, bs)
	slices.SortStableFunc(bs, func(a, b bucketWrites) int { return a.stripe - b.stripe })
	held := n.lockStripes(ctx, bs)
	n.orderBuckets(bs)
	n.commitBuckets(ctx, bs, held) // lets go of held
	for i := range bs {
		switch b := &bs[i]; {
		case b.alone:
			n.writeGroup(ctx, b.bucket, b.ops, b.res, b.errs, hops)
		case errors.Is(b.err, errNotPrimary):
			n.reroute(ctx, b.ops, b.res, b.errs, hops)
		case b.err != nil:
			failAll(b.res, b.errs, b.err)
		}
	}
}

// serveBuckets grants each group of bs (serve), and admits its writes
// (admitWrite), holding nothing. What may wait (a pull after a view
// change, a lease to regain, eviction to catch up) is waited for once for
// the pipeline, not once per bucket in turn: the groups that are not
// ready are served at once, each on a goroutine of its own, as writeGroup
// would serve them; and the memory limit, the node's, is checked once.
func (n *Node) serveBuckets(ctx context.Context, bs []bucketWrites) {
	t := n.term.Load()
	if n.leased() && !slices.ContainsFunc(bs, func(b bucketWrites) bool { return !n.ready.isReady(t, b.bucket) }) {
		for i := range bs {
			bs[i].g, bs[i].err = n.serve(ctx, bs[i].bucket) // ready: no wait
		}
	} else {
		var wg sync.WaitGroup
		for i := range bs {
			wg.Go(func() { bs[i].g, bs[i].err = n.serve(ctx, bs[i].bucket) })
		}
		wg.Wait()
	}
	var (
		admitted bool
		refusal  error
	)
	for i := range bs {
		b := &bs[i]
		if b.err != nil {
			continue
		}
		if addsMemory(b.ops) {
			if !admitted {
				admitted = true
				refusal = n.admitWrite(ctx, b.ops)
			}
			if b.err = refusal; b.err != nil {
				continue
			}
		}
		if n.touches {
			for _, op := range b.ops {
				n.touch(b.bucket, op.Key)
			}
		}
	}
}

// lockStripes takes the sequencers of the groups of bs that are to run
// (err nil), shared, each stripe once, in the order of bs (sorted by
// stripe); a group whose sequencer could not be had gets the failure. It
// returns the stripes it holds.
func (n *Node) lockStripes(ctx context.Context, bs []bucketWrites) []int {
	var held []int
	for i := range bs {
		b := &bs[i]
		if b.err != nil || len(held) > 0 && held[len(held)-1] == b.stripe {
			continue
		}
		if err := n.seq[b.stripe].lock(ctx, false); err != nil {
			// The groups from here on are on stripes not held.
			for j := i; j < len(bs); j++ {
				if bs[j].err == nil {
					bs[j].err = err
				}
			}
			return held
		}
		held = append(held, b.stripe)
	}
	return held
}

// orderBuckets orders the writes of each group of bs that is to run, as
// sequence does, under the sequencers lockStripes took.
func (n *Node) orderBuckets(bs []bucketWrites) {
	s := n.cfg.Store
	total := 0
	for i := range bs {
		total += len(bs[i].ops)
	}
	// One reading of the clock for all the groups: their versions are
	// all new, so ordered after everything before in every bucket.
	clock := &versions{clock: s.Clock(), want: total}
	now := s.Clock().Millis()
	var free []write
	for i := range bs {
		b := &bs[i]
		if b.err != nil {
			continue
		}
		if b.err = n.stillServing(b.g); b.err != nil {
			continue
		}
		exists := s.BucketLive(b.bucket)
		if !exists && slices.ContainsFunc(b.ops, func(op store.Op) bool { return op.Kind == store.KindPutCreate }) {
			b.alone = true // dropped since groupable looked: it creates the bucket
			continue
		}
		if free == nil {
			free = make([]write, 0, 2*len(bs))
		}
		b.ws = n.orderAt(free, clock, now, b.bucket, exists, b.ops, b.res, b.errs)
		free = b.ws[len(b.ws):]
	}
}

// commitBuckets replicates the writes of the groups of bs that were
// ordered, all at once, and applies and answers each group as commit
// would, as soon as that group is done. It lets go of each stripe of held
// once the groups on it are done: a group that is done does not keep its
// sequencer for the others (a write that takes it alone, or a new
// primary's barrier, would wait for buckets it has nothing to do with).
func (n *Node) commitBuckets(ctx context.Context, bs []bucketWrites, held []int) {
	s := n.cfg.Store
	left := make([]int, len(held)) // groups still to finish on each stripe of held
	var (
		rgs []replicaGroup
		of  []int // the index in bs of each of rgs
	)
	for i := range bs {
		b := &bs[i]
		switch {
		case b.err != nil || b.alone:
		case len(b.ws) == 0:
			n.settleUnwritten(b.g, b.bucket, b.res, b.errs)
		default:
			k, _ := slices.BinarySearch(held, b.stripe) // a group that was ordered holds its stripe
			left[k]++
			rgs = append(rgs, newReplicaGroup(b.bucket, b.ws))
			of = append(of, i)
		}
	}
	for k, stripe := range held {
		if left[k] == 0 {
			n.seq[stripe].unlock(false)
		}
	}
	done := func(rg int) {
		b := &bs[of[rg]]
		if err := rgs[rg].err; err != nil {
			failUnset(b.res, b.errs, err)
		} else {
			n.applyGroup(b.g, b.bucket, b.ws, b.res, b.errs)
		}
		k, _ := slices.BinarySearch(held, b.stripe)
		if left[k]--; left[k] == 0 {
			n.seq[held[k]].unlock(false)
		}
	}
	if len(rgs) == 0 {
		return
	}
	if n.alone() {
		for rg := range rgs {
			done(rg)
		}
		return
	}
	n.replicateGroups(ctx, rgs, func() {
		for _, i := range of {
			countWrites(s, bs[i].bucket, bs[i].ws, bs[i].res)
		}
	}, done)
	for rg := range rgs {
		if !rgs[rg].finished {
			// Never: replicateGroups returns once every group is.
			rgs[rg].err = fmt.Errorf("%w: replication ended unfinished", ErrNoRoute)
			done(rg)
		}
	}
}
