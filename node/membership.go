package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/dboutique/dboutique/node/wire"
)

// Membership. Every node probes every member it knows each ProbeInterval
// with a ping that carries the members it sees alive; the reply carries the
// other side's list. Invariant: a member is alive only on evidence of this
// node's own probe answered within DeadAfter. A ping received proves
// nothing (the way back may be cut: a node would keep a member alive that
// it cannot reach), and gossip only ever introduces peers (as joining), so
// a dead node cannot be kept in the ring by members that have not noticed
// yet. A member whose probes go unanswered for DeadAfter is dead and
// leaves the ring; dead members are still probed, less often, so that one
// that comes back (a restart with the same identity) rejoins at once, and
// are forgotten after a while.
//
// A probe's reply also says whether the replier sees the prober alive (a
// vouch, lease.go), and carries the replier's wall clock: a member whose
// clock is further off than Config.MaxClockSkew is not let in.
//
// A node that stalls (a long pause of the process) blames nobody for the
// silence: the time its own loop was late is not counted against the
// members (tick).

// run is the membership loop: one tick per ProbeInterval, and immediate
// probes when asked.
func (n *Node) run() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.ProbeInterval)
	defer t.Stop()
	last := time.Now()
	n.tick(last, 0)
	for {
		select {
		case <-n.ctx.Done():
			return
		case now := <-t.C:
			// The loop ran late when the process was paused or starved:
			// that time is nobody's silence.
			late := now.Sub(last) - n.cfg.ProbeInterval
			last = now
			n.tick(now, max(late-n.cfg.ProbeInterval, 0))
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

// tick expires silent members and starts the probes that are due. stalled
// is how long this node's own loop was late: it extends every member's
// last contact rather than counting as their silence.
func (n *Node) tick(now time.Time, stalled time.Duration) {
	var due []string
	n.mu.Lock()
	changed := false
	for id, e := range n.members {
		if stalled > 0 && e.State == StateAlive {
			e.lastSeen = e.lastSeen.Add(stalled)
		}
		switch {
		case e.State == StateAlive && now.Sub(e.lastSeen) > n.cfg.DeadAfter:
			n.setStateLocked(e, StateDead, now)
			changed = true
		case e.State == StateJoining && now.Sub(e.since) > n.cfg.DeadAfter:
			// Never reached: a stale address or a node long gone.
			delete(n.members, id)
			continue
		case (e.State == StateDead || e.State == StateLeft) && now.Sub(e.since) > defaultForgetAfter:
			n.log.Info("forgetting member", zap.String("name", e.Name), zap.String("peer", id))
			delete(n.members, id)
			n.bookDirty = true
			continue
		}
		if !e.probing && !now.Before(e.nextProbe) {
			e.probing = true
			due = append(due, id)
		}
	}
	if changed {
		n.rebuildLocked()
	}
	n.updateLeaseLocked()
	n.mu.Unlock()
	n.kickBook(false)
	for _, id := range due {
		n.startProbe(id)
	}
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
		// A dead member is probed less often, until it answers: then it
		// is alive again (answered, below) and probed as often as any.
		wait := n.cfg.ProbeInterval
		if err != nil && (e.State == StateDead || e.State == StateLeft) {
			wait = max(n.cfg.DeadAfter, 2*time.Second)
		}
		e.nextProbe = now.Add(wait)
		if refused := errors.Is(err, errClockSkew) || errors.Is(err, ErrClusterMismatch); refused && now.Sub(e.refusedLogged) > time.Minute {
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
	e.lastSeen = now
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
	if newlyAlive {
		n.setStateLocked(e, StateAlive, now)
		changed = true
	}
	if p.vouch {
		e.vouchedAt = max(e.vouchedAt, sent)
	}
	learned := n.learnLocked(p.members, p.dead, p.deadFor)
	if changed {
		n.rebuildLocked()
	}
	n.updateLeaseLocked()
	n.mu.Unlock()
	n.cfg.Transport.AddAddrs(p.from.ID, p.from.Addrs)
	n.introduce(learned)
	switch {
	case !n.joined.Load() && p.joined:
		// A member of a cluster answered: this node is in it (join.go).
		// (Not any answer: a node that is itself looking for its cluster,
		// or one that joined through this one, is no cluster.)
		if n.open() {
			n.log.Info("joined the cluster", zap.Int("members", n.aliveCount()+1))
		}
	case newlyAlive:
		// The book lists every member the node may vouch for, at once:
		// it vouches once the save has ended (booked).
		n.kickBook(true)
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
	probeNow := e.State != StateAlive || e.Incarnation != p.from.Incarnation
	learned := n.learnLocked(p.members, p.dead, p.deadFor)
	reply := n.pingMsgLocked(vouch)
	n.mu.Unlock()
	n.cfg.Transport.AddAddrs(p.from.ID, p.from.Addrs)
	if probeNow {
		n.probeSoon(p.from.ID)
	}
	n.introduce(learned)
	return reply
}

// learnLocked adds the members of alive that this node does not know, as
// joining, and those of dead, as dead for as long as deadFor says (probed
// now and then, until they answer or are forgotten, at about the time the
// member that told of them forgets them), and returns them all. The caller
// holds n.mu.
func (n *Node) learnLocked(alive, dead []Member, deadFor []time.Duration) []Member {
	var learned []Member
	for _, m := range alive {
		if m.ID == n.self.ID || m.ID == "" {
			continue
		}
		if _, ok := n.members[m.ID]; !ok {
			n.addLocked(m)
			learned = append(learned, m)
		}
	}
	now := time.Now()
	for i, m := range dead {
		if _, ok := n.members[m.ID]; ok || m.ID == n.self.ID || m.ID == "" || len(m.Addrs) == 0 || deadFor[i] >= defaultForgetAfter {
			continue
		}
		e := n.addLocked(m)
		e.State, e.since = StateDead, now.Add(-deadFor[i])
		learned = append(learned, m)
	}
	return learned
}

// introduce records where newly learned members listen and probes them
// (the dead ones are probed when due).
func (n *Node) introduce(ms []Member) {
	for _, m := range ms {
		n.cfg.Transport.AddAddrs(m.ID, m.Addrs)
		n.probeSoon(m.ID)
	}
}

// left takes a member that announced its departure out of the ring;
// handedOff says it has handed every copy off, so that pulls need not
// ask it any more. m is the member that said so, with its incarnation
// (and, from a ping, its name and addresses).
//
// A member this node does not know is added, as left: it may still hold
// copies that this node, which joined while it was leaving, must pull
// (syncSources). A life other than the one this node knew is a restart:
// the life it knew died, copies and all (lost.go), even though the new
// one leaves.
func (n *Node) left(m Member, handedOff bool) {
	if m.ID == "" || m.ID == n.self.ID {
		return
	}
	n.mu.Lock()
	e := n.members[m.ID]
	if e == nil {
		e = n.addLocked(m)
		e.Incarnation = m.Incarnation
	}
	now := time.Now()
	changed := false
	if m.Incarnation != 0 && e.Incarnation != m.Incarnation {
		changed = e.State == StateAlive
		e.Incarnation = m.Incarnation
		e.vouchedAt, e.vouchedFor = 0, 0
	}
	if e.State != StateLeft {
		n.setStateLocked(e, StateLeft, now)
		e.handedOff = false
		changed = true
	}
	if changed {
		n.rebuildLocked()
		n.updateLeaseLocked()
	}
	e.leavingSeen = now
	e.handedOff = e.handedOff || handedOff
	n.mu.Unlock()
	if len(m.Addrs) > 0 {
		n.cfg.Transport.AddAddrs(m.ID, m.Addrs)
	}
}

// addLocked adds m as a joining member and returns its entry.
func (n *Node) addLocked(m Member) *entry {
	now := time.Now()
	e := &entry{Member: Member{ID: m.ID, Name: m.Name, Addrs: m.Addrs, State: StateJoining}, since: now}
	n.members[m.ID] = e
	return e
}

func (n *Node) setStateLocked(e *entry, s State, now time.Time) {
	log := n.log.Info
	if s == StateDead {
		log = n.log.Warn
	}
	log("member "+s.String(), zap.String("name", e.Name), zap.String("peer", e.ID), zap.Stringer("was", e.State))
	e.State = s
	e.since = now
	n.bookDirty = true
}

// rebuildLocked places buckets on the alive members and publishes the
// view. A new view is a new term (view.go), and may be served in only once
// the holds of the members it dropped have passed (lease.go).
func (n *Node) rebuildLocked() {
	var alive []Member
	if !n.leaving.Load() {
		alive = append(alive, n.self)
	}
	for _, e := range n.members {
		if e.State == StateAlive {
			alive = append(alive, e.Member)
		}
	}
	v := buildView(n.cfg.Placement, n.byName, alive)
	if v.err != nil {
		n.log.Error("cannot place buckets", zap.Error(v.err))
	}
	old := n.view.Load()
	if old != nil && old.epoch == v.epoch {
		return
	}
	// The view first, then its term: whoever reads a term finds its view
	// (or a newer one) installed. Every change of the term is under n.mu.
	v.term = n.term.Load() + 1
	v.usableAt = n.holdsLocked()
	n.recordDeathsLocked(old, v)
	n.view.Store(v)
	n.term.Store(v.term)
	n.checkMajorityLocked()
	if old != nil {
		old.markReplaced()
		n.log.Info("ring changed", zap.Int("members", len(v.byKey)), zap.Uint64("epoch", v.epoch), zap.Uint64("term", v.term))
	}
	n.syncSoon()
}

// checkMajorityLocked warns, once per size, when Config.MinMembers is no
// longer a majority of the members this node knows (alive or dead, itself
// included): two sides of a partition could then both serve. The caller
// holds n.mu.
func (n *Node) checkMajorityLocked() {
	if n.cfg.MinMembers == 0 {
		return
	}
	known := 1
	for _, e := range n.members {
		if e.State == StateAlive || e.State == StateDead {
			known++
		}
	}
	if known > 2*n.cfg.MinMembers-1 && known != n.warnedKnown {
		n.warnedKnown = known
		n.log.Warn("--min-members is not a majority of the cluster any more: both sides of a partition may take writes; raise it",
			zap.Int("min_members", n.cfg.MinMembers), zap.Int("members", known), zap.Int("majority", known/2+1))
	}
}

// pingMsg is this node's ping: itself and the members it sees alive.
func (n *Node) pingMsg() ping {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pingMsgLocked(false)
}

// pingMsgLocked is pingMsg, or with vouch the reply that vouches for the
// prober. The caller holds n.mu.
func (n *Node) pingMsgLocked(vouch bool) ping {
	p := ping{cluster: n.cfg.Cluster, from: n.self, leaving: n.leaving.Load(), vouch: vouch,
		joined: n.joined.Load(), clock: n.cfg.Now().UnixMilli(), layout: n.layout}
	now := time.Now()
	for _, e := range n.members {
		switch e.State {
		case StateAlive:
			p.members = append(p.members, e.Member)
		case StateDead:
			p.dead = append(p.dead, e.Member)
			p.deadFor = append(p.deadFor, now.Sub(e.since))
		}
	}
	return p
}

// aliveCount returns how many other members are alive.
func (n *Node) aliveCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, e := range n.members {
		if e.State == StateAlive {
			c++
		}
	}
	return c
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

// handleLeave answers msgLeave: a member says it is leaving, or has left.
func (n *Node) handleLeave(_ context.Context, from string, body []byte) ([]byte, error) {
	handedOff, inc, err := decodeLeave(body)
	if err != nil {
		return nil, err
	}
	n.left(Member{ID: from, Incarnation: inc}, handedOff)
	return nil, nil
}
