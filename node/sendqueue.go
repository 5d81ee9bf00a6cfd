package node

import (
	"context"
	"slices"
	"sync"
)

// Group commit to other nodes. Callers that send to the same node at the
// same time share messages: a caller queues its items; if fewer than
// maxSends batches to that node are in flight, it sends at once whatever
// is queued then, its own items among it; otherwise it waits, and the
// sender that finishes first hands the turn to the oldest waiter, which
// sends everything queued by then. No goroutine is started: every batch is
// sent by one of the callers it carries, and so ends with what the flush
// function gives it (a deadline, the node's close), not with that caller's
// context, which the others do not share. A caller whose context ends (or
// whose quit context ends) stops waiting (its items may still be sent: the
// caller reports that they may have taken effect); if it held the turn,
// it passes it on.
//
// Replication (replicate_batch.go: msgReplicate messages as one
// msgReplicateBatch) and forwarding (forward.go: the operations of
// several requests for one primary, as one msgBatch) use it. An item is
// never split across batches; two batches in flight to a node may be
// handled in any order there, so a caller that needs an order sends its
// items one after the other, or in one item.

// sendQueues holds a queue per node, for items of type T whose replies
// are of type R.
type sendQueues[T, R any] struct {
	// Set once, before use:
	maxSends int         // batches in flight to one node
	maxItems int         // the count of one batch
	maxBytes int         // the size of one batch (a single larger item still goes, alone)
	size     func(T) int // an item's share of maxBytes
	count    func(T) int // an item's share of maxItems

	mu sync.Mutex // guards byID
	// byID: a queue per peer ID, dropped when it empties (a caller that
	// found it before then still works with it alone).
	byID map[string]*sendQueue[T, R]
}

// sendQueue holds the items waiting to go to one node.
type sendQueue[T, R any] struct {
	mu      sync.Mutex // guards every field below and the fields of its items and waiters marked so
	pending []*queued[T, R]
	sending int // turns taken: batches being built or in flight
}

// queueWaiter is one caller waiting for its items in a queue.
type queueWaiter struct {
	wake chan struct{} // buffered, 1: an item done or the turn changed
	turn bool          // guarded by the queue's mu: this caller is to send the next batch
}

// queued is one item of a caller's in a queue. Once the caller has
// returned, nobody reads it: a sender may still set its outcome.
type queued[T, R any] struct {
	item T
	w    *queueWaiter
	// Guarded by the queue's mu:
	done  bool // reply and err are set
	reply R
	err   error
}

func (qs *sendQueues[T, R]) get(id string) *sendQueue[T, R] {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	q := qs.byID[id]
	if q == nil {
		if qs.byID == nil {
			qs.byID = make(map[string]*sendQueue[T, R])
		}
		q = new(sendQueue[T, R])
		qs.byID[id] = q
	}
	return q
}

// drop forgets q if it is id's queue and holds nothing.
func (qs *sendQueues[T, R]) drop(id string, q *sendQueue[T, R]) {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	q.mu.Lock()
	idle := q.sending == 0 && len(q.pending) == 0
	q.mu.Unlock()
	if idle && qs.byID[id] == q {
		delete(qs.byID, id)
	}
}

func (w *queueWaiter) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// send sends items to the node id with the other items waiting for it,
// and sets replies[i] and errs[i] to the reply to items[i] or the failure
// to get it. flush sends one batch (items of any callers, oldest first)
// and returns a reply for each, or the error for all. send gives up when
// ctx ends, or quit (when not nil) does, with goneQuit.
func (qs *sendQueues[T, R]) send(ctx, quit context.Context, goneQuit error, id string, items []T, replies []R, errs []error,
	flush func(batch []T) ([]R, error)) {
	q := qs.get(id)
	defer qs.drop(id, q)
	w := &queueWaiter{wake: make(chan struct{}, 1)}
	parts := make([]queued[T, R], len(items))
	q.mu.Lock()
	defer q.mu.Unlock()
	for i := range parts {
		parts[i].item, parts[i].w = items[i], w
		q.pending = append(q.pending, &parts[i])
	}
	if q.sending < qs.maxSends {
		q.sending++
		w.turn = true
	}
	var quitDone <-chan struct{}
	if quit != nil {
		quitDone = quit.Done()
	}
	var gone error
	for !allSent(parts) {
		// Leaving: out of the queue, and the turn (if it was ours) to the
		// next in line. (An item in a batch already gets its outcome from
		// the sender, which nobody reads.)
		if ctx.Err() != nil {
			gone = ctx.Err()
		} else if quit != nil && quit.Err() != nil {
			gone = goneQuit
		}
		if gone != nil {
			q.pending = slices.DeleteFunc(q.pending, func(p *queued[T, R]) bool { return p.w == w })
			break
		}
		if w.turn {
			batch := qs.take(q) // may not hold ours: another sender took them
			q.mu.Unlock()
			qs.flushBatch(q, batch, flush)
			q.mu.Lock()
			w.turn = false
			q.sending--
			qs.handOn(q)
			continue
		}
		q.mu.Unlock()
		select {
		case <-w.wake:
		case <-ctx.Done():
		case <-quitDone:
		}
		q.mu.Lock()
	}
	if w.turn {
		// Handed the turn while another sender carried ours (or
		// leaving): not ours to keep.
		w.turn = false
		q.sending--
		qs.handOn(q)
	}
	for i := range parts {
		if p := &parts[i]; p.done {
			replies[i], errs[i] = p.reply, p.err
		} else {
			var zero R
			replies[i], errs[i] = zero, gone
		}
	}
}

// allSent reports whether every item has its outcome. The caller holds
// the queue's mu.
func allSent[T, R any](parts []queued[T, R]) bool {
	for i := range parts {
		if !parts[i].done {
			return false
		}
	}
	return true
}

// take removes the items a batch carries from q: the oldest, up to
// maxItems and maxBytes (at least one). The caller holds q.mu.
func (qs *sendQueues[T, R]) take(q *sendQueue[T, R]) []*queued[T, R] {
	size, count, k := 0, 0, 0
	for k < len(q.pending) {
		size += qs.size(q.pending[k].item)
		count += qs.count(q.pending[k].item)
		if k > 0 && (size > qs.maxBytes || count > qs.maxItems) {
			break
		}
		k++
	}
	batch := slices.Clone(q.pending[:k])
	q.pending = slices.Delete(q.pending, 0, k)
	return batch
}

// handOn gives a free turn to the callers of the oldest waiting items.
// The caller holds q.mu.
func (qs *sendQueues[T, R]) handOn(q *sendQueue[T, R]) {
	for _, p := range q.pending {
		if q.sending >= qs.maxSends {
			return
		}
		if !p.w.turn {
			p.w.turn = true
			q.sending++
			p.w.signal()
		}
	}
}

// flushBatch sends batch, items taken from q, with flush, and sets every
// item's outcome.
func (qs *sendQueues[T, R]) flushBatch(q *sendQueue[T, R], batch []*queued[T, R], flush func([]T) ([]R, error)) {
	if len(batch) == 0 {
		return
	}
	items := make([]T, len(batch))
	for i, p := range batch {
		items[i] = p.item
	}
	replies, err := flush(items)
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, p := range batch {
		p.done, p.err = true, err
		if err == nil {
			p.reply = replies[i]
		}
		p.w.signal()
	}
}
