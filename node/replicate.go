package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
	if n.alone() {
		return nil
	}
	gs := []replicaGroup{newReplicaGroup(bucket, ws)}
	n.replicateGroups(ctx, gs, beforeSend, nil)
	return gs[0].err
}

// alone reports whether nobody else holds any bucket: replicas 1, or a
// view of one member (the common case of a node alone, checked without
// allocating). A node that joins meanwhile pulls a bucket before serving
// it.
func (n *Node) alone() bool {
	v := n.ms.view()
	return n.cfg.Replicas == 1 || v.ring != nil && len(v.byKey) == 1
}

// replicaGroup is one bucket's writes that replicateGroups sends, and
// what became of them.
type replicaGroup struct {
	bucket string
	msg    []byte // the writes, encoded as a msgReplicate
	writes int    // how many
	err    error  // the outcome, once finished

	sent     bool          // counted as sent (stats)
	done     []incarnation // owners that hold the writes
	finished bool
	failed   error // the last round's failure, if any
}

// newReplicaGroup returns the group of ws, writes to bucket. The group
// holds them encoded, not ws itself: so a caller's ws can stay on its
// stack (escape analysis sees a group's contents leave with the messages;
// TestWritePipelinesAllocateNothing).
func newReplicaGroup(bucket string, ws []write) replicaGroup {
	return replicaGroup{bucket: bucket, msg: appendReplicate(nil, bucket, ws), writes: len(ws)}
}

// replicateGroups replicates every group as replicate does one, at once:
// the groups to one owner travel together (one sendReplicate), and they
// share one deadline and one wait before a retry. Each group's err is its
// outcome. finished, when not nil, is called with a group's index as soon
// as that group is finished (every owner of the current view holds it, or
// it failed), so that the caller can let go of what the group alone holds
// while the others still wait.
func (n *Node) replicateGroups(ctx context.Context, gs []replicaGroup, beforeSend func(), finished func(int)) {
	var (
		delay    = backoff{next: 5 * time.Millisecond, most: 200 * time.Millisecond}
		measured replication
		started  bool
		// From the first send on, the writes wait for others within the
		// write timeout. The groups do not derive a context for it
		// (contexts cost more than the rest of a small write): the
		// deadline travels to the batches that carry them, and a context
		// is made only to wait before a retry.
		deadline time.Time
		cancel   context.CancelFunc
		sends    []ownerSend
	)
	finish := func(gi int, err error) {
		g := &gs[gi]
		if err != nil {
			n.stats.replicationErrors.Add(1)
		}
		g.err, g.finished = err, true
		if g.sent {
			n.stats.groupDone(&measured)
		}
		if finished != nil {
			finished(gi)
		}
	}
	// settle finishes the groups that every owner of v holds; with
	// sends, it lists the owners that lack the others.
	settle := func(v *view, sends *[]ownerSend) {
		for gi := range gs {
			g := &gs[gi]
			if g.finished {
				continue
			}
			owners, err := v.owners(g.bucket, n.cfg.Replicas)
			if err != nil {
				finish(gi, err)
				continue
			}
			pending := false
			for _, m := range owners {
				if m.Self || slices.Contains(g.done, incarnationOf(m)) {
					continue
				}
				pending = true
				if sends == nil {
					break
				}
				k := slices.IndexFunc(*sends, func(s ownerSend) bool { return s.to.ID == m.ID })
				if k < 0 {
					k = len(*sends)
					*sends = append(*sends, ownerSend{to: m})
				}
				(*sends)[k].groups = append((*sends)[k].groups, gi)
			}
			if !pending {
				finish(gi, nil)
			}
		}
	}
	for {
		v := n.ms.view()
		sends = sends[:0]
		settle(v, &sends)
		if len(sends) == 0 {
			return
		}
		if !started {
			// The first round.
			started = true
			measured = n.stats.replicateBegin()
			defer n.stats.replicateEnd(&measured)
			deadline = time.Now().Add(n.cfg.WriteTimeout)
			if beforeSend != nil {
				beforeSend()
			}
		}
		for gi := range gs {
			if g := &gs[gi]; !g.finished && !g.sent {
				g.sent = true
				n.stats.groupSent(&measured, g.writes)
			}
		}
		for gi := range gs {
			gs[gi].failed = nil
		}
		retry := false
		n.replicateRound(ctx, v, deadline, gs, sends, func(i int) {
			s := &sends[i]
			for k, gi := range s.groups {
				g := &gs[gi]
				if err := s.errs[k]; err == nil {
					g.done = append(g.done, incarnationOf(s.to))
				} else if !g.finished && g.failed == nil {
					g.failed, retry = err, true
				}
			}
			// The groups that every owner now holds are done, without
			// waiting for the other owners' replies.
			settle(n.ms.view(), nil)
		})
		if !retry {
			continue // check that the view has not changed meanwhile
		}
		if cancel == nil {
			ctx, cancel = context.WithDeadline(ctx, deadline)
			defer cancel()
		}
		if !delay.wait(ctx) {
			// Out of time: the groups that failed in the last round fail
			// (the others find out in the next round whether they are
			// done).
			for gi := range gs {
				if g := &gs[gi]; !g.finished && g.failed != nil {
					err := g.failed
					if n.ctx.Err() != nil {
						err = ErrClosed
					}
					finish(gi, err)
				}
			}
		}
	}
}

// ownerSend is what one round of replicateGroups sends to one owner: the
// messages of some groups, and the outcome for each.
type ownerSend struct {
	to      Member
	groups  []int // indices of the groups
	msgs    [][]byte
	replies [][]byte
	errs    []error
}

// replicateRound sends each owner its groups' messages, to every owner at
// once, by deadline, and calls sent(i), on the caller's goroutine, as the
// outcome of sends[i] comes in. The calls end when the view changes: an
// owner may be dead, and a call to it hang (a dial over a silent network)
// until the view drops it, when the caller no longer needs it.
func (n *Node) replicateRound(ctx context.Context, v *view, deadline time.Time, gs []replicaGroup, sends []ownerSend, sent func(int)) {
	for i := range sends {
		s := &sends[i]
		s.msgs, s.replies, s.errs = s.msgs[:0], make([][]byte, len(s.groups)), make([]error, len(s.groups))
		for _, gi := range s.groups {
			s.msgs = append(s.msgs, gs[gi].msg)
		}
	}
	if len(sends) == 1 {
		n.replicateTo(ctx, v, deadline, &sends[0])
		sent(0)
		return
	}
	out := make(chan int, len(sends))
	for i := range sends {
		go func() {
			n.replicateTo(ctx, v, deadline, &sends[i])
			out <- i
		}()
	}
	for range sends {
		sent(<-out)
	}
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

// replicateTo sends s's messages to its owner, by deadline, unless v is
// replaced first, and sets the outcome of each.
func (n *Node) replicateTo(ctx context.Context, v *view, deadline time.Time, s *ownerSend) {
	n.sendReplicate(ctx, v, deadline, s.to, s.msgs, s.replies, s.errs)
	for k, reply := range s.replies {
		if s.errs[k] != nil {
			continue
		}
		_, err := decodeReply(reply)
		if errors.Is(err, store.ErrRetired) {
			// The replica no longer thinks it owns the bucket: our views
			// differ. Compare member lists now; the client, if it comes
			// to that, may retry.
			n.ms.probeSoon(s.to.ID)
			err = fmt.Errorf("%w: %s is handing the bucket off", ErrNoRoute, s.to.Name)
		}
		s.errs[k] = err
	}
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
