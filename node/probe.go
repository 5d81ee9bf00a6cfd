package node

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/dboutique/dboutique/node/wire"
)

// The probe loop: pings of this node's own, which the gossip engine does
// not send. Each tick (ProbeInterval) it pings
//
//   - a few alive members of the view, at random, for the lease (lease.go):
//     one more than the vouches the lease needs;
//   - the members the engine holds alive that are not alive in the table
//     yet (or came back as another life): their answer admits them
//     (membership.go);
//   - while this node is leaving, every member: its pings are goodbyes.
//
// and it asks the engine to contact the dead members now and then, and
// the members looked for (faraway.go), so that two sides of a healed
// partition find each other again.

// run is the probe loop: one tick per ProbeInterval, and immediate probes
// when asked.
func (n *Node) run() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.ProbeInterval)
	defer t.Stop()
	admit := time.NewTimer(time.Hour)
	admit.Stop()
	defer admit.Stop()
	n.tick(time.Now())
	for {
		select {
		case <-n.ctx.Done():
			return
		case now := <-t.C:
			n.tick(now)
		case <-n.admitKick:
			admit.Reset(n.admitDelay())
		case <-admit.C:
			n.mu.Lock()
			if n.admitPending {
				n.rebuildLocked()
				n.updateLeaseLocked()
			}
			n.mu.Unlock()
		case id := <-n.poke:
			n.mu.Lock()
			e := n.members[id]
			start := e != nil && !e.probing
			if start {
				e.probing = true
			}
			n.mu.Unlock()
			if start {
				n.startProbe(id)
			}
		}
	}
}

// probeSoon asks the loop to probe id now. It never blocks: when the loop
// is busy the id waits for the next tick.
func (n *Node) probeSoon(id string) {
	select {
	case n.poke <- id:
	default:
	}
}

// admitDelay is how long the members admitted in a row wait to be placed
// together: when many join at once (a cluster starting), each node builds
// a view per batch rather than one per member (a view costs a ring and a
// pull of every bucket that moved).
func (n *Node) admitDelay() time.Duration { return min(n.cfg.ProbeInterval/4, 100*time.Millisecond) }

// admitSoonLocked asks for a new view with the members admitted since the
// last one, after admitDelay (the run loop builds it; any view built
// before then has them too): rebuildLocked makes them alive. The caller
// holds n.mu.
func (n *Node) admitSoonLocked() {
	if n.admitPending {
		return
	}
	n.admitPending = true
	select {
	case n.admitKick <- struct{}{}:
	default:
	}
}

// unreachableAfter is how long this node's pings to an alive member must
// fail before the member is dead here (membership.go): longer than the
// engine takes to declare a dead member dead, so that it decides every
// case but a one-way cut, and a busy moment is not taken for one.
func (n *Node) unreachableAfter() time.Duration { return 2 * n.cfg.DeadAfter }

// reconnectEvery is how often the engine is asked to contact a dead
// member, and how often a dead or refused member is pinged.
func (n *Node) reconnectEvery() time.Duration { return max(n.cfg.DeadAfter, 2*time.Second) }

// tick forgets members long gone and starts the pings that are due.
func (n *Node) tick(now time.Time) {
	var due, contact []string
	changed := false
	// A node that is slow itself (the engine's awareness of missed acks
	// and late answers) blames nobody for pings that failed.
	healthy := n.gossip.Health() == 0
	n.mu.Lock()
	leaving := n.leaving.Load()
	for id, e := range n.members {
		failing := e.State == StateAlive && !e.failingSince.IsZero()
		if failing && healthy && now.Sub(e.failingSince) > n.unreachableAfter() {
			n.log.Warn("member unreachable from this node; out of its view until it answers",
				zap.String("name", e.Name), zap.String("peer", id))
			n.setStateLocked(e, StateDead, now)
			changed, failing = true, false
		}
		switch {
		case e.State == StateJoining && !e.gossip && !e.contacting && now.Sub(e.since) > n.cfg.DeadAfter:
			// Never reached: a stale address or a node long gone. But one
			// the engine held alive (metaLife) exists, and may only be cut
			// off from this node: it is looked for (faraway.go).
			delete(n.members, id)
			if e.metaLife != 0 {
				n.lookForLocked(id, e.Addrs, now, n.reconnectEvery())
			}
			continue
		case (e.State == StateDead || e.State == StateLeft) && !e.gossip && now.Sub(e.since) > defaultForgetAfter:
			// (One the engine holds alive, dead here for a one-way cut or
			// a refused clock, is kept: it is pinged until it answers.)
			n.log.Info("forgetting member", zap.String("name", e.Name), zap.String("peer", id))
			delete(n.members, id)
			n.bookDirty = true
			if e.State == StateDead {
				// Contacted every reconnectEvery so far: once a minute now.
				n.lookForLocked(id, e.Addrs, now.Add(farawayEvery), farawayEvery)
			}
			continue
		}
		if e.probing || now.Before(e.nextProbe) {
			continue
		}
		switch {
		case leaving, failing, e.gossip && (e.State != StateAlive || e.metaLife != e.Incarnation):
			e.probing = true
			due = append(due, id)
		case e.State == StateDead && len(e.Addrs) > 0:
			e.nextProbe = now.Add(n.reconnectEvery())
			contact = append(contact, id)
		}
	}
	if changed {
		n.rebuildLocked()
	}
	var far []string
	if !leaving {
		far = n.farawayDueLocked(now)
	}
	if !leaving {
		for _, id := range n.leaseTargetsLocked() {
			if e := n.members[id]; !e.probing {
				e.probing = true
				due = append(due, id)
				n.stats.leasePings.Add(1)
			}
		}
	}
	n.updateLeaseLocked()
	n.mu.Unlock()
	n.kickBook(false)
	for _, id := range due {
		n.startProbe(id)
	}
	for _, id := range contact {
		n.joinSoon(id)
	}
	if len(far) > 0 {
		n.contactFaraway(far)
	}
}

// leaseTargetsLocked picks the members a tick pings for the lease: one
// more than the lease needs, at random among the alive members of the
// view. The caller holds n.mu.
func (n *Node) leaseTargetsLocked() []string {
	v := n.view.Load()
	q := n.leaseQuorum(v)
	if q == 0 {
		return nil
	}
	var alive []string
	for id, e := range n.members {
		if e.State == StateAlive && v.has(id) {
			alive = append(alive, id)
		}
	}
	rand.Shuffle(len(alive), func(i, j int) { alive[i], alive[j] = alive[j], alive[i] })
	return alive[:min(q+1, len(alive))]
}

// startProbe pings id in a goroutine; the caller has set its probing flag.
func (n *Node) startProbe(id string) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.probe(id)
	}()
}

// errClockSkew: a member's wall clock is too far from this node's.
var errClockSkew = errors.New("node: clock skew")

// errPlacementMismatch: a member places buckets otherwise than this node
// (Node.layout). Members that disagree on placement would each take
// themselves for a bucket's primary in views of one epoch, so they never
// form one view.
var errPlacementMismatch = fmt.Errorf("%w: it places buckets differently (another --ranges table, or a ring and a table)", ErrClusterMismatch)

func (n *Node) probe(id string) {
	// A probe must end well before the member would be declared dead.
	ctx, cancel := context.WithTimeout(n.ctx, max(n.cfg.DeadAfter/3, n.cfg.ProbeInterval))
	sent, wallSent := n.sinceStart(), n.cfg.Now()
	reply, err := n.cfg.Transport.Call(ctx, id, n.pingMsg().append([]byte{msgPing}))
	cancel()
	wallBack := n.cfg.Now()
	var p ping
	if err == nil {
		p, err = decodePing(reply)
		if err == nil && p.cluster != n.cfg.Cluster {
			err = fmt.Errorf("%w: this node is in cluster %q, %s in %q", ErrClusterMismatch, n.cfg.Cluster, p.from.Name, p.cluster)
		}
		if err == nil && p.layout != n.layout {
			err = errPlacementMismatch
		}
		if err == nil && p.from.ID != id {
			err = errors.New("node: reply from another peer")
		}
	}
	var skew time.Duration
	if err == nil {
		// The reply's clock was read between our two readings: measure
		// from their middle, and forgive half the round trip.
		rtt := wallBack.Sub(wallSent)
		skew = time.UnixMilli(p.clock).Sub(wallSent.Add(rtt / 2))
		if abs(skew)-rtt/2-time.Millisecond > n.cfg.MaxClockSkew {
			err = fmt.Errorf("%w: %s's clock is %v off this node's, more than %v", errClockSkew, p.from.Name, skew.Round(time.Millisecond), n.cfg.MaxClockSkew)
		}
	}
	now := time.Now()
	n.mu.Lock()
	e := n.members[id]
	if e != nil {
		e.probing = false
		// A dead or refused member is probed less often, until it
		// answers: then it is alive again (answered, below) and probed
		// as often as any.
		refused := errors.Is(err, errClockSkew) || errors.Is(err, ErrClusterMismatch)
		wait := n.cfg.ProbeInterval
		if refused || err != nil && (e.State == StateDead || e.State == StateLeft) {
			wait = n.reconnectEvery()
		}
		e.nextProbe = now.Add(wait)
		switch {
		case refused:
			e.admitted = false
			if e.State == StateAlive {
				// Admitted before, refused now (its clock stepped): out
				// of the view until an answer admits it again.
				n.setStateLocked(e, StateDead, now)
				n.rebuildLocked()
				n.updateLeaseLocked()
			}
		case err != nil && e.State == StateAlive && e.failingSince.IsZero():
			e.failingSince = now
		}
		if refused && now.Sub(e.refusedLogged) > time.Minute {
			e.refusedLogged = now
			switch {
			case errors.Is(err, errClockSkew):
				n.log.Warn("refusing a member whose clock is off; fix its clock (NTP)",
					zap.String("name", p.from.Name), zap.String("peer", id),
					zap.Duration("skew", skew.Round(time.Millisecond)), zap.Duration("max", n.cfg.MaxClockSkew))
			case errors.Is(err, errPlacementMismatch):
				n.log.Warn("refusing a member that places buckets differently; give every node the same placement",
					zap.String("name", p.from.Name), zap.String("peer", id), zap.Stringer("placement", n.cfg.Placement))
			default:
				n.log.Warn("refusing a member of another cluster", zap.String("peer", id), zap.Error(err))
			}
		}
	}
	n.mu.Unlock()
	if err != nil {
		if n.ctx.Err() == nil {
			n.log.Debug("probe failed", zap.String("peer", id), zap.Error(err))
		}
		return
	}
	n.answered(p, sent)
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// answered records p, the reply to a probe sent at sent (sinceStart): proof
// that p.from is alive, perhaps a vouch for this node, and the members it
// lists.
func (n *Node) answered(p ping, sent time.Duration) {
	now := time.Now()
	n.mu.Lock()
	e := n.members[p.from.ID]
	if e == nil {
		e = n.addLocked(p.from)
	}
	if e.State == StateLeft && now.Sub(e.since) < n.cfg.DeadAfter {
		// A reply that was on its way when the node said goodbye; a node
		// restarted with the same identity is welcomed back after this
		// window.
		n.mu.Unlock()
		return
	}
	e.failingSince = time.Time{}
	if !e.gossip {
		// The engine does not hold it alive (not yet, or no more): an
		// answer alone places nothing (membership.go).
		n.mu.Unlock()
		return
	}
	changed := false
	if e.Incarnation != p.from.Incarnation {
		// A new entry, or the node restarted: it holds nothing now, so
		// the view must change for its copies to come back. What it
		// promised in its last life is void.
		changed = changed || e.State == StateAlive
		e.Incarnation = p.from.Incarnation
		e.vouchedAt, e.vouchedFor = 0, 0
	}
	if e.Name != p.from.Name {
		// A new entry, or a node restarted under another name: with a
		// range table the name decides placement.
		changed = e.State == StateAlive
		e.Name = p.from.Name
	}
	if len(p.from.Addrs) > 0 && !slices.Equal(e.Addrs, p.from.Addrs) {
		e.Addrs = p.from.Addrs
		n.bookDirty = true
	}
	newlyAlive := e.State != StateAlive
	opening := !n.joined.Load() && p.joined
	if newlyAlive {
		e.admitted = true
	}
	if p.vouch {
		e.vouchedAt = max(e.vouchedAt, sent)
	}
	switch {
	case changed, newlyAlive && opening:
		n.rebuildLocked()
	case newlyAlive:
		// Only an addition: alive and placed with the others admitted
		// about now (admitSoonLocked), not in a view of its own.
		n.admitSoonLocked()
	}
	n.updateLeaseLocked()
	n.mu.Unlock()
	if opening {
		// A member of a cluster answered: this node is in it (join.go).
		// (Not any answer: a node that is itself looking for its cluster,
		// or one that joined through this one, is no cluster.)
		if n.open() {
			n.log.Info("joined the cluster", zap.Int("members", n.aliveCount()+1))
		}
	}
}

// pinged handles a ping from p.from and returns the reply. A ping is not
// proof of life: an unknown sender is only introduced, and probed soon,
// and a dead one is probed soon so that it comes back at once if it can be
// reached. The reply vouches for the sender when this node sees it alive.
func (n *Node) pinged(p ping) ping {
	n.mu.Lock()
	e := n.members[p.from.ID]
	if e == nil {
		e = n.addLocked(p.from)
	}
	// A vouch only once the book lists the member (saveBook), so that
	// this node keeps its promise if it restarts (lease.go).
	vouch := e.State == StateAlive && !n.leaving.Load() && e.Incarnation == p.from.Incarnation &&
		(e.booked || n.cfg.PeerBook == nil)
	if vouch {
		e.vouchedFor = n.sinceStart()
	}
	probeNow := e.gossip && (e.State != StateAlive || e.Incarnation != p.from.Incarnation)
	unknown := !e.gossip && !n.leaving.Load()
	reply := n.pingMsgLocked(vouch)
	n.mu.Unlock()
	if probeNow {
		n.probeSoon(p.from.ID)
	}
	if unknown {
		// Its engine knows this node and this node's does not know it
		// (it restarted without a book, or the two were cut apart):
		// exchange member lists now rather than at the next push/pull.
		n.joinSoon(p.from.ID)
	}
	return reply
}

// pingMsg is this node's ping.
func (n *Node) pingMsg() ping {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pingMsgLocked(false)
}

// pingMsgLocked is pingMsg, or with vouch the reply that vouches for the
// prober. The caller holds n.mu.
func (n *Node) pingMsgLocked(vouch bool) ping {
	return ping{cluster: n.cfg.Cluster, from: n.self, leaving: n.leaving.Load(), vouch: vouch,
		joined: n.joined.Load(), clock: n.cfg.Now().UnixMilli(), layout: n.layout}
}

// handlePing answers msgPing: a probe, answered with this node's own ping.
func (n *Node) handlePing(_ context.Context, from string, body []byte) ([]byte, error) {
	p, err := decodePing(body)
	if err != nil {
		return nil, err
	}
	if p.leaving {
		// A leaving node still probes, to know whom to hand its
		// buckets to; its pings are goodbyes, never proof of life.
		if p.from.ID != from {
			return nil, fmt.Errorf("%w: ping from %s claims to be %s", wire.ErrCorrupt, from, p.from.ID)
		}
		n.left(p.from, false)
		return n.pingMsg().append(nil), nil
	}
	if n.leaving.Load() {
		return nil, errors.New("node: leaving the cluster")
	}
	if p.cluster != n.cfg.Cluster || p.layout != n.layout {
		// Refused. The reply says only which cluster this node is in
		// and how it places buckets, so that the caller's probe finds
		// the mismatch and logs it; this node learns nothing of it.
		return ping{cluster: n.cfg.Cluster, from: n.self, clock: n.cfg.Now().UnixMilli(), layout: n.layout}.append(nil), nil
	}
	if p.from.ID != from {
		return nil, fmt.Errorf("%w: ping from %s claims to be %s", wire.ErrCorrupt, from, p.from.ID)
	}
	return n.pinged(p).append(nil), nil // the reply: no type byte
}
