package node

import (
	"context"

	"github.com/dboutique/dboutique/node/store"
)

// Forwarding by group commit. The requests that go from this node to one
// primary at the same time (the clients of this node whose buckets that
// node owns) share messages: each caller's chunk of operations (a
// pipeline's share, or one request) waits in a queue (sendqueue.go), and
// a batch carries the chunks queued by then as one msgBatch, which the
// primary runs as one pipeline (its writes to many buckets together,
// write_many.go). A chunk is never split, and a caller sends its chunks
// one after the other, so the operations of one client reach the primary
// in their order; chunks of different clients have no order between them
// to keep.

// maxForwardSends is how many batches may be in flight to one primary.
const maxForwardSends = 2

// forwardChunk is one caller's operations for a primary, with the view
// epoch and the hops left that a msgBatch carries.
type forwardChunk struct {
	epoch uint64
	hops  int // hops left once at the primary
	ops   []store.Op
}

// opOutcome is what became of a forwarded operation at its primary.
type opOutcome struct {
	res store.Result
	err error
}

// newForwardQueues returns the queues of chunks to primaries: a batch
// holds at most maxBatch operations and maxGroupBytes of keys and values,
// as a msgBatch may.
func newForwardQueues() *sendQueues[forwardChunk, []opOutcome] {
	return &sendQueues[forwardChunk, []opOutcome]{
		maxSends: maxForwardSends, maxItems: maxBatch, maxBytes: maxGroupBytes,
		size:  func(c forwardChunk) int { return opsBytes(c.ops) },
		count: func(c forwardChunk) int { return len(c.ops) },
	}
}

// opsBytes is the size of ops' keys and values.
func opsBytes(ops []store.Op) int {
	size := 0
	for i := range ops {
		size += len(ops[i].Key) + len(ops[i].Value)
	}
	return size
}

// forward runs ops (at most maxBatch, of at most maxGroupBytes) at m, their
// primary in the view of epoch, with other callers' operations for m.
// hops is how many more times they may be forwarded from here.
func (n *Node) forward(ctx context.Context, epoch uint64, m Member, ops []store.Op, res []store.Result, errs []error, hops int) {
	if hops <= 0 {
		n.stats.forwardErrors.Add(1)
		failAll(res, errs, ErrNoRoute)
		return
	}
	items := [1]forwardChunk{{epoch: epoch, hops: hops - 1, ops: ops}}
	var outs [1][]opOutcome
	var sendErrs [1]error
	n.forwardQueues.send(ctx, nil, nil, m.ID, items[:], outs[:], sendErrs[:], func(batch []forwardChunk) ([][]opOutcome, error) {
		return n.sendForwardBatch(m, batch)
	})
	if sendErrs[0] != nil {
		failAll(res, errs, sendErrs[0])
		return
	}
	for i := range ops {
		res[i], errs[i] = outs[0][i].res, outs[0][i].err
	}
}

// sendForwardBatch sends the chunks of batch to m as one msgBatch, and
// returns the outcomes of each chunk's operations. The batch carries other
// callers' chunks, so it ends with the forward timeout or the node's
// close, not with any caller's context.
func (n *Node) sendForwardBatch(m Member, batch []forwardChunk) ([][]opOutcome, error) {
	r := batchRequest{epoch: batch[0].epoch, hops: batch[0].hops, ops: batch[0].ops}
	if len(batch) > 1 {
		total := 0
		for _, c := range batch {
			total += len(c.ops)
		}
		r.ops = make([]store.Op, 0, total)
		for _, c := range batch {
			r.epoch, r.hops = max(r.epoch, c.epoch), min(r.hops, c.hops)
			r.ops = append(r.ops, c.ops...)
		}
	}
	req, err := r.append(nil)
	if err != nil {
		return nil, err
	}
	n.stats.forwarded(len(r.ops))
	reply, err := n.call(n.ctx, m, req, n.forwardTimeout())
	if err != nil {
		n.stats.forwardErrors.Add(1)
		return nil, err
	}
	res, errs := make([]store.Result, len(r.ops)), make([]error, len(r.ops))
	if err := decodeBatchReply(reply, res, errs); err != nil {
		return nil, err
	}
	all := make([]opOutcome, len(r.ops))
	for k := range all {
		all[k] = opOutcome{res[k], errs[k]}
	}
	outs := make([][]opOutcome, len(batch))
	for i, c := range batch {
		outs[i], all = all[:len(c.ops):len(c.ops)], all[len(c.ops):]
	}
	return outs, nil
}
