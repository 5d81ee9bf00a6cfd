package node

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"go.uber.org/zap"
)

// Leases. A node answers for a bucket as its primary (a read, or the
// acknowledgement of a write) only while it holds a lease: within the last
// leaseDuration, at least leaseQuorum members answered its probes saying
// that they see it alive. Such an answer is a vouch, and a vouch is a
// promise: the member that gave it (the voucher) will not serve, nor let
// another node serve, in a view without the node it vouched for until
// holdDuration after the vouch (view.usableAt; a readiness pull needs every
// member's agreement, msgDigest). holdDuration is longer than
// leaseDuration by a margin for the two monotonic clocks' drift.
//
// So when the others take a node out of their views while it still runs
// (it was paused, overloaded, or cut off in one direction only), nobody
// serves its buckets before its lease has run out, and it has stopped
// answering for them by then: no stale read, and no write acknowledged
// by two primaries at once.
//
// Quorum: a node alone in its view needs no vouch. Otherwise it needs one,
// or Config.MinMembers-1 when that is more, so that with --min-members a
// majority the vouchers of an old primary and the members of any view that
// may serve after it always share a member.
//
// Terms (view.go): a node whose lease ran out may have missed writes that
// another primary acknowledged meanwhile, so regaining a lease starts a
// new term, and every bucket is pulled again before it is served.
//
// Times here are durations since the node was made (Node.sinceStart): the
// monotonic clock, which wall-clock skew and steps do not move.

// leaseDuration is how long a vouch keeps a node's lease.
func (n *Node) leaseDuration() time.Duration { return n.cfg.DeadAfter / 2 }

// holdDuration is how long a voucher keeps its promise.
func (n *Node) holdDuration() time.Duration {
	return n.leaseDuration() + n.leaseDuration()/4
}

// noLimit is a lease that does not run out (a node alone).
const noLimit = time.Duration(math.MaxInt64)

// sinceStart reads the node's monotonic clock.
func (n *Node) sinceStart() time.Duration { return time.Since(n.base) }

// leaseQuorum is how many vouchers a node with view v needs.
func (n *Node) leaseQuorum(v *view) int {
	q := max(n.cfg.MinMembers-1, 0)
	if len(v.byKey) > 1 {
		q = max(q, 1)
	}
	return q
}

// updateLeaseLocked recomputes the lease from the vouches of the members
// alive in the current view. A lease regained after it ran out starts a
// new term. The caller holds n.mu.
func (n *Node) updateLeaseLocked() {
	v := n.view.Load()
	until := noLimit
	if q := n.leaseQuorum(v); q > 0 {
		var at []time.Duration
		for _, e := range n.members {
			if e.State == StateAlive && e.vouchedAt > 0 && v.has(e.ID) {
				at = append(at, e.vouchedAt)
			}
		}
		until = 0
		if len(at) >= q {
			slices.Sort(at)
			until = at[len(at)-q] + n.leaseDuration()
		}
	}
	now := n.sinceStart()
	old := time.Duration(n.lease.Swap(int64(until)))
	if old <= now && until > now {
		// Out of lease from old until now: another node may have served
		// this node's buckets meanwhile.
		n.leaseGen.Add(1)
		t := n.term.Add(1)
		if old > 0 {
			n.log.Info("lease regained; pulling buckets again before serving them",
				zap.Duration("without", (now-old).Round(time.Millisecond)), zap.Uint64("term", t))
		}
	}
}

// leased reports whether the node holds a lease now.
func (n *Node) leased() bool {
	return n.sinceStart() < time.Duration(n.lease.Load())
}

// errNoLease: the node has no lease, so it cannot answer as a primary.
var errNoLease = fmt.Errorf("%w: no member has confirmed in time that this node is still in the cluster", ErrUnavailable)

// awaitLease returns once the node holds a lease, or ErrUnavailable when
// ctx ends or ForwardTimeout passes first. While it waits it probes every
// alive member, whose answers renew the lease.
func (n *Node) awaitLease(ctx context.Context) error {
	if n.leased() {
		return nil
	}
	for _, m := range n.Members() {
		if !m.Self && m.State == StateAlive {
			n.probeSoon(m.ID)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ForwardTimeout)
	defer cancel()
	for !n.leased() {
		if err := n.pause(ctx, max(n.cfg.ProbeInterval/8, time.Millisecond)); errors.Is(err, ErrClosed) {
			return err
		} else if err != nil {
			return errNoLease
		}
	}
	return nil
}

// stillLeased reports whether the node has held its lease without a break
// since gen was read from n.leaseGen. Checked after a read of the store or
// the local apply of a write, so that what the node answers is what held
// while it was the primary.
func (n *Node) stillLeased(gen uint64) error {
	if !n.leased() || n.leaseGen.Load() != gen {
		return errNoLease
	}
	return nil
}

// usableAt is when this node may serve in view v, or agree to another
// node serving in it: once the holds of the members v dropped have passed,
// and, when v lacks a member this node knew before it restarted, the hold
// of a restart (join.go). A view with every such member needs no restart
// hold: those members take part in any hand-over of their buckets.
func (n *Node) usableAt(v *view) time.Duration {
	if n.restartHold > 0 && slices.ContainsFunc(n.restartBook, func(id string) bool { return !v.has(id) }) {
		return max(v.usableAt, n.restartHold)
	}
	return v.usableAt
}

// awaitUsable waits until this node may serve in view v (usableAt).
func (n *Node) awaitUsable(ctx context.Context, v *view) error {
	wait := n.usableAt(v) - n.sinceStart()
	if wait <= 0 {
		return nil
	}
	return n.pause(ctx, wait)
}

// holdsLocked returns when this node may serve in a view without the
// members it has stopped seeing alive: the latest of their holds. The
// caller holds n.mu.
func (n *Node) holdsLocked() time.Duration {
	var at time.Duration
	for _, e := range n.members {
		if e.State != StateAlive && e.State != StateLeft && e.vouchedFor > 0 {
			at = max(at, e.vouchedFor+n.holdDuration())
		}
	}
	return at
}
