package node

import (
	"context"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/dboutique/dboutique/node/store"
)

// Execute runs op: locally when this node owns its bucket, otherwise on
// the owner. NODES and OWNER are answered from the membership, and BUCKETS
// gathers the names from every alive member.
func (n *Node) Execute(ctx context.Context, op store.Op) (store.Result, error) {
	if err := op.Validate(); err != nil {
		return store.Result{}, err
	}
	switch op.Kind {
	case store.KindNodes:
		ms := n.ms.members()
		lines := make([]string, len(ms))
		for i, m := range ms {
			lines[i] = m.line()
		}
		return store.Result{Names: lines}, nil
	case store.KindOwner:
		ms, err := n.Owners(op.Bucket)
		if err != nil {
			return store.Result{}, err
		}
		lines := make([]string, len(ms))
		for i, m := range ms {
			lines[i] = m.Name + " " + m.ID
		}
		return store.Result{Names: lines}, nil
	case store.KindBuckets:
		return n.gatherBuckets(ctx)
	}
	return n.route(ctx, op, n.cfg.MaxHops)
}

// ExecuteBatch runs ops in order, as Execute would one after another, and
// puts each outcome in res[i] and errs[i] (both as long as ops).
// Consecutive operations whose buckets have the same owner travel to it as
// one message, so that a client's pipelined requests cost one round trip
// rather than one each; the owner runs them in order.
func (n *Node) ExecuteBatch(ctx context.Context, ops []store.Op, res []store.Result, errs []error) {
	n.executeBatch(ctx, ops, res, errs, n.cfg.MaxHops)
}

// batchScratch holds the slices used to answer one batch, kept in a pool
// between batches.
type batchScratch struct {
	ops  []store.Op
	res  []store.Result
	errs []error
}

// outcomes returns result and error slices of length n.
func (sc *batchScratch) outcomes(n int) ([]store.Result, []error) {
	sc.res = slices.Grow(sc.res[:0], n)[:n]
	sc.errs = slices.Grow(sc.errs[:0], n)[:n]
	return sc.res, sc.errs
}

// clear drops what the slices refer to, so that a pooled scratch keeps no
// keys or values alive.
func (sc *batchScratch) clear() {
	clear(sc.ops)
	clear(sc.res)
	clear(sc.errs)
	sc.ops, sc.res, sc.errs = sc.ops[:0], sc.res[:0], sc.errs[:0]
}

// routed reports whether operations of kind k go to their bucket's owner.
func routed(k store.Kind) bool {
	switch k {
	case store.KindCreate, store.KindPut, store.KindGet, store.KindDelete, store.KindDrop, store.KindKeys,
		store.KindPutCreate, store.KindLen, store.KindGetAll, store.KindSet, store.KindExpire,
		store.KindPersist, store.KindTTL, store.KindGetEx, store.KindReclaim, store.KindEvict:
		return true
	}
	return false
}

func (n *Node) executeBatch(ctx context.Context, ops []store.Op, res []store.Result, errs []error, hops int) {
	v := n.ms.view()
	// Each operation's first owner, as an index into owners (notRouted:
	// run in its place). A pipeline names few owners, mostly one, so
	// neither list allocates for one of up to stackOps operations.
	var (
		ownerBuf [4]Member
		ofBuf    [stackOps]uint16
	)
	owners, of := ownerBuf[:0], ofBuf[:0]
	if len(ops) > stackOps {
		of = make([]uint16, 0, len(ops))
	}
	// Pipelined requests mostly name one bucket, so the last answer is kept.
	var lastBucket string
	lastOwner := notRouted
	for i := range ops {
		of = append(of, notRouted)
		if !routed(ops[i].Kind) || ops[i].Validate() != nil {
			continue
		}
		if ops[i].Bucket != lastBucket || lastBucket == "" {
			m, err := v.primary(ops[i].Bucket)
			if err != nil {
				continue
			}
			k := slices.IndexFunc(owners, func(o Member) bool { return o.ID == m.ID })
			if k < 0 {
				owners = append(owners, m)
				k = len(owners) - 1
			}
			lastBucket, lastOwner = ops[i].Bucket, uint16(k)
		}
		of[i] = lastOwner
	}
	// Operations that are not routed (BUCKETS, NODES, or not valid) run
	// in their place; the runs of routed ones between them go to their
	// owners at once (see executeRouted).
	for i := 0; i < len(ops); {
		if of[i] == notRouted {
			res[i], errs[i] = n.Execute(ctx, ops[i]) // gives the error, or runs a non-routed kind
			i++
			continue
		}
		j := i + 1
		for j < len(ops) && of[j] != notRouted {
			j++
		}
		n.executeRouted(ctx, v, owners, of[i:j], ops[i:j], res[i:j], errs[i:j], hops)
		i = j
	}
}

// stackOps is how many operations of a batch executeBatch and
// executeRouted handle without allocating: a deep pipeline.
const stackOps = 64

// notRouted marks an operation that executeBatch runs in its place.
const notRouted uint16 = math.MaxUint16

// executeRouted runs routed operations, the i-th of whose first owner is
// owners[of[i]]. The operations of each owner run in order, and the
// owners' shares run at the same time: a client's pipelined requests to
// buckets on three nodes cost one round trip, not one per change of node.
// Requests of one pipeline on different buckets are concurrent to the
// client anyway (it has not seen the reply of one before sending the
// next), so running them at once keeps each linearizable; requests on one
// bucket keep their order.
func (n *Node) executeRouted(ctx context.Context, v *view, owners []Member, of []uint16, ops []store.Op, res []store.Result, errs []error, hops int) {
	if !slices.ContainsFunc(of, func(k uint16) bool { return k != of[0] }) {
		// The common case: one owner.
		n.executeShare(ctx, v, owners[of[0]], ops, res, errs, hops)
		return
	}
	// Copies for the goroutines, so that the caller's lists stay on its
	// stack.
	shareOwners, shareOf := slices.Clone(owners), slices.Clone(of)
	run := func(k uint16) {
		var idx []int
		for i := range shareOf {
			if shareOf[i] == k {
				idx = append(idx, i)
			}
		}
		if len(idx) == 0 {
			return
		}
		sops := make([]store.Op, len(idx))
		sres := make([]store.Result, len(idx))
		serrs := make([]error, len(idx))
		for j, i := range idx {
			sops[j] = ops[i]
		}
		n.executeShare(ctx, v, shareOwners[k], sops, sres, serrs, hops)
		for j, i := range idx {
			res[i], errs[i] = sres[j], serrs[j]
		}
	}
	var wg sync.WaitGroup
	for k, m := range shareOwners {
		if !m.Self {
			wg.Go(func() { run(uint16(k)) })
		}
	}
	// This node's share runs here, while the others are on their way.
	for k, m := range shareOwners {
		if m.Self {
			run(uint16(k))
		}
	}
	wg.Wait()
}

// executeShare runs ops, all of whose first owner is m, in order: here
// when m is this node, else forwarded to m in messages of at most
// maxBatch operations and maxGroupBytes.
func (n *Node) executeShare(ctx context.Context, v *view, m Member, ops []store.Op, res []store.Result, errs []error, hops int) {
	if m.Self {
		n.executeOwned(ctx, ops, res, errs, hops)
		return
	}
	for i := 0; i < len(ops); {
		j, size := i+1, len(ops[i].Key)+len(ops[i].Value)
		for j < len(ops) && j-i < maxBatch && size+len(ops[j].Key)+len(ops[j].Value) <= maxGroupBytes {
			size += len(ops[j].Key) + len(ops[j].Value)
			j++
		}
		n.forward(ctx, v.epoch, m, ops[i:j], res[i:j], errs[i:j], hops)
		i = j
	}
}

// route runs op where the current view places it; hops is how many more
// times it may be forwarded.
func (n *Node) route(ctx context.Context, op store.Op, hops int) (store.Result, error) {
	v := n.ms.view()
	owner, err := v.primary(op.Bucket)
	if err != nil {
		return store.Result{}, err
	}
	if owner.Self {
		return n.executeOne(ctx, op, hops)
	}
	ops := [1]store.Op{op}
	var res [1]store.Result
	var errs [1]error
	n.forward(ctx, v.epoch, owner, ops[:], res[:], errs[:], hops)
	return res[0], errs[0]
}

// forwardTimeout bounds a request forwarded to its primary, which may
// have to pull the bucket and replicate a write first.
func (n *Node) forwardTimeout() time.Duration {
	return n.cfg.ForwardTimeout + n.cfg.WriteTimeout
}

// call sends req to m within timeout; a failure is an UnreachableError
// naming m.
func (n *Node) call(ctx context.Context, m Member, req []byte, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	reply, err := n.cfg.Transport.Call(ctx, m.ID, req)
	if err != nil {
		if n.ctx.Err() != nil {
			return nil, ErrClosed
		}
		name := m.Name
		if name == "" {
			name = m.ID
		}
		n.ms.probeSoon(m.ID)
		return nil, &UnreachableError{Node: name, Err: err}
	}
	return reply, nil
}

// gatherBuckets lists the buckets of every alive member.
func (n *Node) gatherBuckets(ctx context.Context) (store.Result, error) {
	var (
		mu    sync.Mutex
		names = n.cfg.Store.Buckets()
		errs  []error
		wg    sync.WaitGroup
	)
	for _, m := range n.ms.members() {
		if m.Self || m.State != StateAlive {
			continue
		}
		wg.Go(func() {
			reply, err := n.call(ctx, m, []byte{msgBuckets}, n.cfg.ForwardTimeout)
			var res store.Result
			if err == nil {
				res, err = decodeReply(reply)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			names = append(names, res.Names...)
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return store.Result{}, errs[0]
	}
	slices.Sort(names)
	return store.Result{Names: slices.Compact(names)}, nil
}

// handleOp answers msgOp: an operation forwarded by another node.
func (n *Node) handleOp(ctx context.Context, from string, body []byte) ([]byte, error) {
	r, err := decodeOpRequest(body)
	if err != nil {
		return appendReply(nil, store.Result{}, err), nil
	}
	if r.epoch != n.Epoch() {
		// The sender sees another membership: exchange member
		// lists with it now rather than at the next probe.
		n.ms.probeSoon(from)
	}
	res, err := n.route(ctx, r.op, r.hops)
	return appendReply(nil, res, err), nil
}

// handleBatch answers msgBatch: operations forwarded together.
func (n *Node) handleBatch(ctx context.Context, from string, body []byte) ([]byte, error) {
	sc := n.scratch.Get().(*batchScratch)
	defer func() {
		sc.clear()
		n.scratch.Put(sc)
	}()
	r, err := decodeBatchRequest(body, sc.ops)
	sc.ops = r.ops
	if err != nil {
		return nil, err
	}
	if r.epoch != n.Epoch() {
		n.ms.probeSoon(from)
	}
	res, errs := sc.outcomes(len(r.ops))
	n.executeBatch(ctx, r.ops, res, errs, r.hops)
	return appendBatchReply(nil, res, errs), nil
}

// handleBuckets answers msgBuckets: the buckets this node holds.
func (n *Node) handleBuckets(context.Context, string, []byte) ([]byte, error) {
	return appendReply(nil, store.Result{Names: n.cfg.Store.Buckets()}, nil), nil
}
