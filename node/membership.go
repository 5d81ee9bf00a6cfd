package node

import (
	"cmp"
	"context"
	"slices"
	"time"

	"go.uber.org/zap"
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
	// another view, or its answer is awaited.
	probeSoon(id string)
	// leave takes this node out of its own view for good; its pings say
	// it is leaving from then on.
	leave()
}

// probes is the probe loop's membership. It is the Node's own member table
// and shares the Node's lock: leases ride on its probes (lease.go) and a
// new view's holds and deaths are decided under the same lock as the
// member states (docs/design.md, lock order).
type probes struct{ n *Node }

func (p probes) view() *view         { return p.n.view.Load() }
func (p probes) members() []Member   { return p.n.memberList() }
func (p probes) sources() []source   { return p.n.syncSources() }
func (p probes) probeSoon(id string) { p.n.probeSoon(id) }

func (p probes) leave() {
	n := p.n
	n.leaving.Store(true)
	n.mu.Lock()
	n.rebuildLocked()
	n.updateLeaseLocked()
	n.mu.Unlock()
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
