package node

import (
	"cmp"
	"context"
	"slices"
	"time"

	"go.uber.org/zap"
)

// Membership. The gossip engine (gossip.go, on hashicorp/memberlist: SWIM
// with Lifeguard) finds the members and decides who is alive: each node
// probes one member per ProbeInterval, asks others to probe it indirectly
// when it does not answer, suspects it, and declares it dead once the
// suspicion times out unrefuted. So the traffic per node does not grow
// with the cluster, and a node that is slow itself probes less and blames
// nobody.
//
// Invariant: a member is alive in the table (and placed in the view) only
// while the engine holds it alive (or suspect), and once this node's own
// ping to that life of it was answered (probe.go): the answer shows that
// it places buckets as this node does, is in the same cluster, and that
// its clock is within MaxClockSkew. The engine's death of a member ends
// it at once (gossipEvents.Gone). So does this node's own evidence: a
// member whose pings from this node have failed for twice DeadAfter while
// this node was healthy itself (pinged every tick once one failed, as any
// failed call to it asks) is dead here
// even when the engine holds it alive, as a one-way cut makes it (its
// indirect probes succeed); and a refusal (its clock stepped) takes it out
// at once. Either is admitted again by an answer. A ping received proves
// nothing.
//
// Pings of this node's own carry the lease (lease.go): each tick pings a
// few alive members, and their replies vouch for this node. Dead members
// are contacted now and then through the engine, and the members looked
// for (forgotten, never reached, or told of by another member:
// faraway.go) with a backoff up to once a minute, for a day, so that a
// member that comes back, or the other side of a healed partition, is
// found again.

// membership is what routing, replication, readiness, sync and leaving
// ask of the part that keeps the member list: they go through it and
// nothing else, so that the part can be replaced without touching them.
// probes, below, implements it; it tells of a change by calling
// Node.syncSoon after installing a new view.
type membership interface {
	// view returns the view in force. A view is never changed, only
	// replaced (its replaced context ends then); it is never nil once New
	// has returned.
	view() *view
	// members returns every member known, this node included, with its
	// state, sorted by name and then peer ID.
	members() []Member
	// sources returns the members a pull asks for a bucket.
	sources() []source
	// probeSoon asks for news of peer id now: it has shown this node
	// another view, or its answer is awaited. It pings the member, and
	// has the engine contact it when the engine does not hold it alive.
	probeSoon(id string)
	// leave takes this node out of its own view for good; its pings say
	// it is leaving from then on.
	leave()
}

// probes is the membership of the gossip engine and the probe loop. It is
// the Node's own member table and shares the Node's lock: leases ride on
// its pings (lease.go) and a new view's holds and deaths are decided under
// the same lock as the member states (docs/design.md, lock order).
type probes struct{ n *Node }

func (p probes) view() *view { return p.n.view.Load() }
func (p probes) members() []Member {
	ms := p.n.memberList()
	suspects := p.n.gossip.Suspects()
	for i := range ms {
		ms[i].Suspect = ms[i].State == StateAlive && suspects[ms[i].ID]
	}
	return ms
}
func (p probes) sources() []source { return p.n.syncSources() }
func (p probes) probeSoon(id string) {
	n := p.n
	n.probeSoon(id)
	n.mu.Lock()
	e := n.members[id]
	unknown := e == nil || !e.gossip
	n.mu.Unlock()
	if unknown {
		// Another view, from a member the engine does not hold alive:
		// exchange member lists (the pings carry none).
		n.joinSoon(id)
	}
}

func (p probes) leave() {
	n := p.n
	n.leaving.Store(true)
	n.mu.Lock()
	n.rebuildLocked()
	n.updateLeaseLocked()
	n.mu.Unlock()
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
	n.placeAdmittedLocked()
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
	n.stats.viewChanges.Add(1)
	n.checkMajorityLocked()
	if old != nil {
		old.markReplaced()
		n.log.Info("ring changed", zap.Int("members", len(v.byKey)), zap.Uint64("epoch", v.epoch), zap.Uint64("term", v.term))
	}
	n.syncSoon()
}

// placeAdmittedLocked makes alive the members admitted since the last
// view (answered; still held alive by the engine), and has the book list
// them at once: this node vouches only for the members its book lists
// (join.go). The caller holds n.mu.
func (n *Node) placeAdmittedLocked() {
	n.admitPending = false
	now := time.Now()
	placed := false
	for _, e := range n.members {
		if !e.admitted {
			continue
		}
		e.admitted = false
		if e.gossip && e.State != StateAlive {
			n.setStateLocked(e, StateAlive, now)
			placed = true
		}
	}
	if placed {
		n.kickBook(true)
	}
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

// handleLeave answers msgLeave: a member says it is leaving, or has left.
func (n *Node) handleLeave(_ context.Context, from string, body []byte) ([]byte, error) {
	handedOff, inc, err := decodeLeave(body)
	if err != nil {
		return nil, err
	}
	n.left(Member{ID: from, Incarnation: inc}, handedOff)
	return nil, nil
}

// source is a member a pull asks for a bucket; one that is not required
// may stay silent.
type source struct {
	Member
	required bool
}

// syncSources lists the members a pull asks: the alive ones, and those
// that left but have not handed every copy off yet. A member that left is
// required while it is still heard from (within DeadAfter: it may hold the
// only copy, and it answers), and asked, its silence no error, until
// leftSourceWindow after it was last heard from (it may have crashed
// while it was leaving).
func (n *Node) syncSources() []source {
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	var ms []source
	for _, e := range n.members {
		switch {
		case e.State == StateAlive:
			ms = append(ms, source{e.Member, true})
		case e.State == StateLeft && !e.handedOff && now.Sub(e.leavingSeen) < leftSourceWindow:
			ms = append(ms, source{e.Member, now.Sub(e.leavingSeen) < n.cfg.DeadAfter})
		}
	}
	return ms
}

// memberList returns every member this node knows, itself included, sorted by
// name and then peer ID.
func (n *Node) memberList() []Member {
	n.mu.Lock()
	ms := make([]Member, 0, len(n.members)+1)
	ms = append(ms, n.self)
	for _, e := range n.members {
		m := e.Member
		m.Addrs = slices.Clone(m.Addrs)
		ms = append(ms, m)
	}
	n.mu.Unlock()
	slices.SortFunc(ms, func(a, b Member) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
	return ms
}
