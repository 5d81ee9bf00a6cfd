package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/dboutique/dboutique/node/store"
)

// Replication: a primary sends the writes it orders to the other owners
// of the bucket (primary.go decides what to send and when).

// replicate sends ws to every owner of bucket other than this node and
// returns once all hold them. When the view changes meanwhile, the owners
// of the new view get them too. An owner that does not answer is retried
// until it answers or leaves the view (its death is detected), within
// Config.WriteTimeout.
//
// beforeSend, when not nil, runs once before the writes first leave this
// node.
func (n *Node) replicate(ctx context.Context, bucket string, ws []write, beforeSend func()) error {
	if v := n.ms.view(); n.cfg.Replicas == 1 || v.ring != nil && len(v.byKey) == 1 {
		// Nobody else holds the bucket (this view has one member): the
		// common case of a node alone, checked without allocating. A
		// node that joins meanwhile pulls the bucket before serving it.
		return nil
	}
	var (
		msg      []byte
		done     []incarnation // owners that hold the writes
		delay    = backoff{next: 5 * time.Millisecond, most: 200 * time.Millisecond}
		measured replication
		// From the first send on, the write waits for others within the
		// write timeout. A group does not derive a context for it (a
		// pipeline over many buckets replicates a group per bucket, and
		// contexts cost more than the rest): the deadline travels to the
		// batch that carries the group, and a context is made only to
		// wait before a retry.
		deadline time.Time
		cancel   context.CancelFunc
	)
	for {
		v := n.ms.view()
		owners, err := v.owners(bucket, n.cfg.Replicas)
		if err != nil {
			n.stats.replicationErrors.Add(1)
			return err
		}
		var targets []Member
		for _, m := range owners {
			if !m.Self && !slices.Contains(done, incarnationOf(m)) {
				targets = append(targets, m)
			}
		}
		if len(targets) == 0 {
			return nil
		}
		if msg == nil {
			// The first round (msg is set once, so this defer runs once).
			measured = n.stats.replicateBegin()
			defer n.stats.replicateEnd(&measured)
			deadline = time.Now().Add(n.cfg.WriteTimeout)
			if beforeSend != nil {
				beforeSend()
			}
			msg = appendReplicate(nil, bucket, ws)
			measured.writes = len(ws)
		}
		errs := n.replicateRound(ctx, v, deadline, targets, msg)
		var failed error
		for i, err := range errs {
			if err == nil {
				done = append(done, incarnationOf(targets[i]))
			} else if failed == nil {
				failed = err
			}
		}
		if failed == nil {
			continue // check that the view has not changed meanwhile
		}
		if cancel == nil {
			ctx, cancel = context.WithDeadline(ctx, deadline)
			defer cancel()
		}
		if !delay.wait(ctx) {
			n.stats.replicationErrors.Add(1)
			if n.ctx.Err() != nil {
				return ErrClosed
			}
			return failed
		}
	}
}

// replicateRound sends msg to every target at once, by deadline. The
// calls end when the view changes: an owner may be dead, and a call to it
// hang (a dial over a silent network) until the view drops it, when the
// caller no longer needs it.
func (n *Node) replicateRound(ctx context.Context, v *view, deadline time.Time, targets []Member, msg []byte) []error {
	errs := make([]error, len(targets))
	if len(targets) == 1 {
		errs[0] = n.replicateTo(ctx, v, deadline, targets[0], msg)
		return errs
	}
	var wg sync.WaitGroup
	for i, m := range targets {
		wg.Go(func() { errs[i] = n.replicateTo(ctx, v, deadline, m, msg) })
	}
	wg.Wait()
	return errs
}

// incarnation names one life of a member. An owner that held a write and
// then restarted (same peer ID, empty store) no longer holds it: when the
// view gives the bucket to its new life, that one must get the write too,
// or the write is acknowledged with a copy short.
type incarnation struct {
	id  string
	inc uint64
}

func incarnationOf(m Member) incarnation { return incarnation{m.ID, m.Incarnation} }

// replicateTo sends an encoded msgReplicate to m, by deadline, unless v
// is replaced first.
func (n *Node) replicateTo(ctx context.Context, v *view, deadline time.Time, m Member, msg []byte) error {
	reply, err := n.sendReplicate(ctx, v, deadline, m, msg)
	if err != nil {
		return err
	}
	_, err = decodeReply(reply)
	if errors.Is(err, store.ErrRetired) {
		// The replica no longer thinks it owns the bucket: our views
		// differ. Compare member lists now; the client, if it comes to
		// that, may retry.
		n.ms.probeSoon(m.ID)
		return fmt.Errorf("%w: %s is handing the bucket off", ErrNoRoute, m.Name)
	}
	return err
}

// applyReplicated applies a primary's writes to this node's copy.
func (n *Node) applyReplicated(bucket string, ws []write) error {
	for _, w := range ws {
		if err := w.apply(n.cfg.Store, bucket); err != nil {
			return err
		}
	}
	return nil
}

// handleReplicate answers msgReplicate: it applies a primary's writes to
// this node's copy.
func (n *Node) handleReplicate(_ context.Context, from string, body []byte) ([]byte, error) {
	bucket, ws, err := decodeReplicate(body)
	if err != nil {
		return nil, err
	}
	for _, w := range ws {
		if err := n.checkVersions(from, store.BucketMeta{}, []store.Entry{w.entry}); err != nil {
			return appendReply(nil, store.Result{}, err), nil
		}
	}
	err = n.applyReplicated(bucket, ws)
	if err == nil {
		n.strayCopy(bucket)
	}
	return appendReply(nil, store.Result{}, err), nil
}
