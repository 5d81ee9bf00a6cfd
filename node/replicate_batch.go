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
// How a group is sent (replicaQueue): a caller queues its message. If
// fewer than maxReplicaSends batches to that node are in flight, it sends
// at once whatever is queued then, its own message among it; otherwise it
// waits, and the sender that finishes first hands the turn to the oldest
// waiter, which sends everything queued by then. No goroutine is started:
// every batch is sent by one of the callers it carries. A caller whose
// context ends stops waiting (its message may still be sent: replicated
// writes are idempotent, and the caller reports that the write may have
// taken effect); if it held the turn, it passes it on.

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
	mu      sync.Mutex // guards every field below and the fields of its parts marked so
	pending []*replicaPart
	sending int // turns taken: batches being built or in flight
}

// replicaPart is one caller's msgReplicate in a queue.
type replicaPart struct {
	msg  []byte        // an encoded msgReplicate, type byte first
	wake chan struct{} // buffered, 1: done or turn changed
	// Guarded by the queue's mu:
	turn  bool // this caller is to send the next batch
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

func (p *replicaPart) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// sendReplicate sends msg, an encoded msgReplicate, to m with the other
// messages waiting for m, and returns m's reply to msg. It gives up when
// ctx ends or v is replaced (errViewReplaced); a batch it sends ends by
// deadline, or when v is replaced.
func (n *Node) sendReplicate(ctx context.Context, v *view, deadline time.Time, m Member, msg []byte) ([]byte, error) {
	q := n.replicaQueues.get(m.ID)
	defer n.replicaQueues.drop(m.ID, q)
	p := &replicaPart{msg: msg, wake: make(chan struct{}, 1)}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.pending = append(q.pending, p)
	if q.sending < maxReplicaSends {
		q.sending++
		p.turn = true
	}
	for !p.done {
		// Leaving: out of the queue, and the turn (if it was ours) to the
		// next in line. (If the part is in a batch already, the sender
		// sets its outcome, which nobody reads.)
		var gone error
		if ctx.Err() != nil {
			gone = ctx.Err()
		} else if v.replaced.Err() != nil {
			gone = errViewReplaced
		}
		if gone != nil {
			if i := slices.Index(q.pending, p); i >= 0 {
				q.pending = slices.Delete(q.pending, i, i+1)
			}
			if p.turn {
				p.turn = false
				q.sending--
				q.handOn()
			}
			return nil, gone
		}
		if p.turn {
			batch := q.take() // may not hold p: another sender took it
			q.mu.Unlock()
			n.sendReplicaBatch(ctx, v, deadline, m, q, batch)
			q.mu.Lock()
			p.turn = false
			q.sending--
			q.handOn()
			continue
		}
		q.mu.Unlock()
		select {
		case <-p.wake:
		case <-ctx.Done():
		case <-v.replaced.Done():
		}
		q.mu.Lock()
	}
	if p.turn {
		// Handed the turn while another sender carried p: not ours to
		// keep.
		p.turn = false
		q.sending--
		q.handOn()
	}
	return p.reply, p.err
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

// handOn gives a free turn to the oldest waiting message. The caller
// holds q.mu.
func (q *replicaQueue) handOn() {
	for _, p := range q.pending {
		if q.sending >= maxReplicaSends {
			return
		}
		if !p.turn {
			p.turn = true
			q.sending++
			p.signal()
		}
	}
}

// sendReplicaBatch sends batch, messages taken from q, to m (one message
// alone as itself) by deadline, unless v is replaced first, and sets every
// part's outcome.
func (n *Node) sendReplicaBatch(ctx context.Context, v *view, deadline time.Time, m Member, q *replicaQueue, batch []*replicaPart) {
	if len(batch) == 0 {
		return
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
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
		p.signal()
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
