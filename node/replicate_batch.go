package node

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
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
// How a group is sent: by group commit (sendqueue.go). A batch ends by
// its sender's deadline, when the view changes or when the node closes.

// maxReplicaSends is how many batches may be in flight to one node at
// once: two, so that one is built and sent while the other's reply comes
// back.
const maxReplicaSends = 2

// maxReplicaBatchBytes bounds a batch: well under the transport's frame
// cap (a single message larger than this still goes, alone).
const maxReplicaBatchBytes = 2 * maxGroupBytes

// maxReplicaParts caps the messages of one batch a peer may send.
const maxReplicaParts = 4096

// newReplicaQueues returns the queues of msgReplicate messages to the
// other owners.
func newReplicaQueues() *sendQueues[[]byte, []byte] {
	return &sendQueues[[]byte, []byte]{maxSends: maxReplicaSends, maxItems: maxReplicaParts,
		maxBytes: maxReplicaBatchBytes, size: func(msg []byte) int { return len(msg) }, count: func([]byte) int { return 1 }}
}

// sendReplicate sends msgs, encoded msgReplicates, to m with the other
// messages waiting for m, and sets replies[i] and errs[i] to m's reply to
// msgs[i] or the failure to get it. It gives up when ctx ends or v is
// replaced (errViewReplaced); a batch it sends ends by deadline, when v
// is replaced or when the node closes.
func (n *Node) sendReplicate(ctx context.Context, v *view, deadline time.Time, m Member, msgs, replies [][]byte, errs []error) {
	n.replicaQueues.send(ctx, v.replaced, errViewReplaced, m.ID, msgs, replies, errs, func(batch [][]byte) ([][]byte, error) {
		return n.sendReplicaBatch(deadline, v, m, batch)
	})
}

// errViewReplaced: a write group stopped waiting for an owner because the
// view changed; replicate sends it again to the owners of the new view.
var errViewReplaced = fmt.Errorf("%w: the view changed while a write was being replicated", ErrNoRoute)

// sendReplicaBatch sends batch, encoded msgReplicates, to m (one message
// alone as itself) by deadline, unless v is replaced or the node closes
// first, and returns m's reply to each. The batch carries other callers'
// messages, so it does not end with the sending caller's context.
func (n *Node) sendReplicaBatch(deadline time.Time, v *view, m Member, batch [][]byte) ([][]byte, error) {
	ctx, cancel := context.WithDeadline(n.ctx, deadline)
	defer cancel()
	stop := context.AfterFunc(v.replaced, cancel)
	defer stop()
	n.stats.replicaMessages.Add(1)
	if len(batch) == 1 {
		reply, err := n.call(ctx, m, batch[0], n.cfg.ForwardTimeout)
		return [][]byte{reply}, err
	}
	reply, err := n.call(ctx, m, appendReplicateBatch(nil, batch), n.cfg.ForwardTimeout)
	if err != nil {
		return nil, err
	}
	return decodeReplicateBatchReply(reply, len(batch))
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
