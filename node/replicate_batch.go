package node

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/dboutique/dboutique/node/wire"
)

// Replication to one owner is batched across buckets and requests: the
// writes that wait to go to the same node travel as one msgReplicateBatch
// (group commit). Each primary's group still holds its bucket's sequencer
// while it waits, so what a replica applies, and when the primary may
// acknowledge, are unchanged; only the number of messages falls, from one
// per bucket per pipeline to about one per round trip.
//
// How a group is sent (replicaQueue): a caller queues its messages (one
// per bucket it writes to). If fewer than maxReplicaSends batches to that
// node are in flight, it sends at once whatever is queued then, its own
// messages among it; otherwise it waits, and the sender that finishes
// first hands the turn to the oldest waiter, which sends everything queued
// by then. No goroutine is started: every batch is sent by one of the
// callers it carries, and ends by that caller's deadline, when the view
// changes or when the node closes, not with that caller's context (which
// the others do not share). A caller whose context ends stops waiting
// (its messages may still be sent: replicated writes are idempotent, and
// the caller reports that the write may have taken effect); if it held
// the turn, it passes it on.

// maxReplicaSends is how many batches may be in flight to one node at
// once: two, so that one is built and sent while the other's reply comes
// back.
const maxReplicaSends = 2

// maxReplicaBatchBytes bounds a batch: well under the transport's frame
// cap (a single message larger than this still goes, alone).
const maxReplicaBatchBytes = 2 * maxGroupBytes

// maxReplicaParts caps the messages of one batch a peer may send.
const maxReplicaParts = 4096

// replicaQueue holds the messages waiting to go to one node.
type replicaQueue struct {
	mu      sync.Mutex // guards every field below and the fields of its parts and waiters marked so
	pending []*replicaPart
	sending int // turns taken: batches being built or in flight
}

// replicaWaiter is one caller waiting for its messages in a queue.
type replicaWaiter struct {
	wake chan struct{} // buffered, 1: a part done or the turn changed
	turn bool          // guarded by the queue's mu: this caller is to send the next batch
}

// replicaPart is one msgReplicate of a caller's in a queue. Once the
// caller has returned, nobody reads it: a sender may still set its
// outcome.
type replicaPart struct {
	msg []byte // an encoded msgReplicate, type byte first
	w   *replicaWaiter
	// Guarded by the queue's mu:
	done  bool // reply and err are set
	reply []byte
	err   error
}

// replicaQueues holds a queue per node that messages wait for.
type replicaQueues struct {
	mu sync.Mutex // guards byID
	// byID: a queue per peer ID, dropped when it empties (a caller that
	// found it before then still works with it alone).
	byID map[string]*replicaQueue
}

func (qs *replicaQueues) get(id string) *replicaQueue {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	q := qs.byID[id]
	if q == nil {
		if qs.byID == nil {
			qs.byID = make(map[string]*replicaQueue)
		}
		q = new(replicaQueue)
		qs.byID[id] = q
	}
	return q
}

// drop forgets q if it is id's queue and holds nothing.
func (qs *replicaQueues) drop(id string, q *replicaQueue) {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	q.mu.Lock()
	idle := q.sending == 0 && len(q.pending) == 0
	q.mu.Unlock()
	if idle && qs.byID[id] == q {
		delete(qs.byID, id)
	}
}

func (w *replicaWaiter) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// sendReplicate sends msgs, encoded msgReplicates, to m with the other
// messages waiting for m, and sets replies[i] and errs[i] to m's reply to
// msgs[i] or the failure to get it. It gives up when ctx ends or v is
// replaced (errViewReplaced); a batch it sends ends by deadline, or when
// v is replaced.
func (n *Node) sendReplicate(ctx context.Context, v *view, deadline time.Time, m Member, msgs, replies [][]byte, errs []error) {
	q := n.replicaQueues.get(m.ID)
	defer n.replicaQueues.drop(m.ID, q)
	w := &replicaWaiter{wake: make(chan struct{}, 1)}
	parts := make([]replicaPart, len(msgs))
	q.mu.Lock()
	defer q.mu.Unlock()
	for i := range parts {
		parts[i].msg, parts[i].w = msgs[i], w
		q.pending = append(q.pending, &parts[i])
	}
	if q.sending < maxReplicaSends {
		q.sending++
		w.turn = true
	}
	var gone error
	for !allSent(parts) {
		// Leaving: out of the queue, and the turn (if it was ours) to the
		// next in line. (A part in a batch already gets its outcome from
		// the sender, which nobody reads.)
		if ctx.Err() != nil {
			gone = ctx.Err()
		} else if v.replaced.Err() != nil {
			gone = errViewReplaced
		}
		if gone != nil {
			q.pending = slices.DeleteFunc(q.pending, func(p *replicaPart) bool { return p.w == w })
			break
		}
		if w.turn {
			batch := q.take() // may not hold ours: another sender took them
			q.mu.Unlock()
			n.sendReplicaBatch(deadline, v, m, q, batch)
			q.mu.Lock()
			w.turn = false
			q.sending--
			q.handOn()
			continue
		}
		q.mu.Unlock()
		select {
		case <-w.wake:
		case <-ctx.Done():
		case <-v.replaced.Done():
		}
		q.mu.Lock()
	}
	if w.turn {
		// Handed the turn while another sender carried ours (or
		// leaving): not ours to keep.
		w.turn = false
		q.sending--
		q.handOn()
	}
	for i := range parts {
		if p := &parts[i]; p.done {
			replies[i], errs[i] = p.reply, p.err
		} else {
			replies[i], errs[i] = nil, gone
		}
	}
}

// allSent reports whether every part has its outcome. The caller holds
// the queue's mu.
func allSent(parts []replicaPart) bool {
	for i := range parts {
		if !parts[i].done {
			return false
		}
	}
	return true
}

// errViewReplaced: a write group stopped waiting for an owner because the
// view changed; replicate sends it again to the owners of the new view.
var errViewReplaced = fmt.Errorf("%w: the view changed while a write was being replicated", ErrNoRoute)

// take removes the messages a batch carries from the queue: the oldest,
// up to maxReplicaBatchBytes (at least one). The caller holds q.mu.
func (q *replicaQueue) take() []*replicaPart {
	size, k := 0, 0
	for k < len(q.pending) && k < maxReplicaParts {
		size += len(q.pending[k].msg)
		if k > 0 && size > maxReplicaBatchBytes {
			break
		}
		k++
	}
	batch := slices.Clone(q.pending[:k])
	q.pending = slices.Delete(q.pending, 0, k)
	return batch
}

// handOn gives a free turn to the callers of the oldest waiting
// messages. The caller holds q.mu.
func (q *replicaQueue) handOn() {
	for _, p := range q.pending {
		if q.sending >= maxReplicaSends {
			return
		}
		if !p.w.turn {
			p.w.turn = true
			q.sending++
			p.w.signal()
		}
	}
}

// sendReplicaBatch sends batch, messages taken from q, to m (one message
// alone as itself) by deadline, unless v is replaced or the node closes
// first, and sets every part's outcome. The batch carries other callers'
// messages, so it does not end with the sending caller's context.
func (n *Node) sendReplicaBatch(deadline time.Time, v *view, m Member, q *replicaQueue, batch []*replicaPart) {
	if len(batch) == 0 {
		return
	}
	ctx, cancel := context.WithDeadline(n.ctx, deadline)
	defer cancel()
	stop := context.AfterFunc(v.replaced, cancel)
	defer stop()
	n.stats.replicaMessages.Add(1)
	var (
		replies [][]byte
		reply   []byte
		err     error
	)
	if len(batch) == 1 {
		reply, err = n.call(ctx, m, batch[0].msg, n.cfg.ForwardTimeout)
		replies = [][]byte{reply}
	} else {
		msgs := make([][]byte, len(batch))
		for i, p := range batch {
			msgs[i] = p.msg
		}
		reply, err = n.call(ctx, m, appendReplicateBatch(nil, msgs), n.cfg.ForwardTimeout)
		if err == nil {
			replies, err = decodeReplicateBatchReply(reply, len(batch))
		}
	}
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

// appendReplicateBatch encodes msgs, each an encoded msgReplicate, as one
// msgReplicateBatch.
func appendReplicateBatch(b []byte, msgs [][]byte) []byte {
	size := 8
	for _, m := range msgs {
		size += len(m) + 4
	}
	b = slices.Grow(b, size)
	b = append(b, msgReplicateBatch)
	b = binary.AppendUvarint(b, uint64(len(msgs)))
	for _, m := range msgs {
		b = binary.AppendUvarint(b, uint64(len(m)-1))
		b = append(b, m[1:]...)
	}
	return b
}

// decodeReplicateBatchReply splits a msgReplicateBatch's reply into the
// replies to its k messages.
func decodeReplicateBatchReply(b []byte, k int) ([][]byte, error) {
	d := decoder{wire.NewDecoder(b)}
	if c := d.Uvarint(); d.Err() == nil && c != uint64(k) {
		return nil, fmt.Errorf("%w: %d replies to %d replicated messages", wire.ErrCorrupt, c, k)
	}
	replies := make([][]byte, k)
	for i := range replies {
		replies[i] = d.Bytes()
	}
	if err := d.Finish(); err != nil {
		return nil, err
	}
	return replies, nil
}

// decodeReplicateBatch decodes a msgReplicateBatch body (after the type
// byte) into its msgReplicate bodies (each after its type byte).
func decodeReplicateBatch(b []byte) ([][]byte, error) {
	d := decoder{wire.NewDecoder(b)}
	c := d.Count()
	if d.Err() == nil && c > maxReplicaParts {
		return nil, fmt.Errorf("%w: %d replicated messages in a batch, at most %d", wire.ErrCorrupt, c, maxReplicaParts)
	}
	parts := make([][]byte, 0, c)
	for range c {
		if parts = append(parts, d.Bytes()); d.Err() != nil {
			break
		}
	}
	if err := d.Finish(); err != nil {
		return nil, err
	}
	return parts, nil
}

// appendReplicateBatchReply encodes the replies to a batch's messages.
func appendReplicateBatchReply(b []byte, replies [][]byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(replies)))
	for _, r := range replies {
		b = binary.AppendUvarint(b, uint64(len(r)))
		b = append(b, r...)
	}
	return b
}

// handleReplicateBatch answers msgReplicateBatch: each message as
// handleReplicate would, in order.
func (n *Node) handleReplicateBatch(ctx context.Context, from string, body []byte) ([]byte, error) {
	parts, err := decodeReplicateBatch(body)
	if err != nil {
		return nil, err
	}
	replies := make([][]byte, len(parts))
	for i, part := range parts {
		if replies[i], err = n.handleReplicate(ctx, from, part); err != nil {
			return nil, err
		}
	}
	return appendReplicateBatchReply(nil, replies), nil
}
