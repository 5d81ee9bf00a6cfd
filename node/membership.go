package node

import (
	"context"
	"errors"
	"slices"
	"time"

	"go.uber.org/zap"
)

// Membership. Every node probes every member it knows each ProbeInterval
// with a ping that carries the members it sees alive; the reply carries the
// other side's list. A ping answered, or received, is proof of life; gossip
// only ever introduces peers (as joining), it never makes one alive, so a
// dead node cannot be kept in the ring by members that have not noticed yet.
// A member silent for DeadAfter is dead and leaves the ring; dead members
// are still probed, less often, so that one that comes back (a restart with
// the same identity) rejoins at once, and are forgotten after a while.

// run is the membership loop: one tick per ProbeInterval, and immediate
// probes when asked.
func (n *Node) run() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.ProbeInterval)
	defer t.Stop()
	n.tick(time.Now())
	for {
		select {
		case <-n.ctx.Done():
			return
		case now := <-t.C:
			n.tick(now)
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

// tick expires silent members and starts the probes that are due.
func (n *Node) tick(now time.Time) {
	var due []string
	n.mu.Lock()
	changed := false
	for id, e := range n.members {
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
	n.mu.Unlock()
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

func (n *Node) probe(id string) {
	// A probe must end well before the member would be declared dead.
	ctx, cancel := context.WithTimeout(n.ctx, max(n.cfg.DeadAfter/3, n.cfg.ProbeInterval))
	reply, err := n.cfg.Transport.Call(ctx, id, n.pingMsg().append([]byte{msgPing}))
	cancel()
	var p ping
	if err == nil {
		p, err = decodePing(reply)
		if err == nil && p.cluster != n.cfg.Cluster {
			err = ErrClusterMismatch
		}
		if err == nil && p.from.ID != id {
			err = errors.New("node: reply from another peer")
		}
	}
	now := time.Now()
	n.mu.Lock()
	if e := n.members[id]; e != nil {
		e.probing = false
		wait := n.cfg.ProbeInterval
		if e.State == StateDead || e.State == StateLeft {
			wait = max(n.cfg.DeadAfter, 2*time.Second)
		}
		e.nextProbe = now.Add(wait)
	}
	n.mu.Unlock()
	if err != nil {
		if n.ctx.Err() == nil {
			n.log.Debug("probe failed", zap.String("peer", id), zap.Error(err))
		}
		return
	}
	n.heard(p)
}

// heard records a ping or a reply from p.from, direct proof that it is
// alive, and learns the members it lists.
func (n *Node) heard(p ping) {
	now := time.Now()
	var learned []Member
	n.mu.Lock()
	e := n.members[p.from.ID]
	if e == nil {
		e = n.addLocked(p.from)
	}
	if e.State == StateLeft && now.Sub(e.since) < n.cfg.DeadAfter {
		// A ping or reply that was on its way when the node said goodbye;
		// a node restarted with the same identity is welcomed back after
		// this window.
		n.mu.Unlock()
		return
	}
	e.lastSeen = now
	changed := false
	if e.Incarnation != p.from.Incarnation {
		// A new entry, or the node restarted: it holds nothing now, so
		// the view must change for its copies to come back.
		changed = changed || e.State == StateAlive
		e.Incarnation = p.from.Incarnation
	}
	if e.Name != p.from.Name {
		// A new entry, or a node restarted under another name: with a
		// range table the name decides placement.
		changed = e.State == StateAlive
		e.Name = p.from.Name
	}
	if len(p.from.Addrs) > 0 {
		e.Addrs = p.from.Addrs
	}
	if e.State != StateAlive {
		n.setStateLocked(e, StateAlive, now)
		changed = true
	}
	for _, m := range p.members {
		if m.ID == n.self.ID || m.ID == "" {
			continue
		}
		if _, ok := n.members[m.ID]; !ok {
			n.addLocked(m)
			learned = append(learned, m)
		}
	}
	if changed {
		n.rebuildLocked()
	}
	n.mu.Unlock()
	n.cfg.Transport.AddAddrs(p.from.ID, p.from.Addrs)
	for _, m := range learned {
		n.cfg.Transport.AddAddrs(m.ID, m.Addrs)
		n.probeSoon(m.ID)
	}
}

// left takes a member that announced its departure out of the ring;
// handedOff says it has handed every copy off, so that pulls need not
// ask it any more.
func (n *Node) left(id string, handedOff bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	e := n.members[id]
	if e == nil {
		return
	}
	if e.State != StateLeft {
		n.setStateLocked(e, StateLeft, time.Now())
		e.handedOff = false
		n.rebuildLocked()
	}
	e.handedOff = e.handedOff || handedOff
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
	if s == StateAlive {
		n.joined.Store(true)
	}
	log("member "+s.String(), zap.String("name", e.Name), zap.String("peer", e.ID), zap.Stringer("was", e.State))
	e.State = s
	e.since = now
}

// rebuildLocked places buckets on the alive members and publishes the view.
func (n *Node) rebuildLocked() {
	var alive, dead []Member
	if !n.leaving.Load() {
		alive = append(alive, n.self)
	}
	for _, e := range n.members {
		switch e.State {
		case StateAlive:
			alive = append(alive, e.Member)
		case StateDead:
			dead = append(dead, e.Member)
		}
	}
	var wide *view
	if len(dead) > 0 {
		wide = buildView(n.cfg.Placement, n.byName, append(slices.Clone(alive), dead...))
	}
	v := buildView(n.cfg.Placement, n.byName, alive)
	v.wide = wide
	if v.err != nil {
		n.log.Error("cannot place buckets", zap.Error(v.err))
	}
	old := n.view.Load()
	if old != nil && old.epoch == v.epoch {
		return
	}
	n.view.Store(v)
	if old != nil {
		old.markReplaced()
		n.log.Info("ring changed", zap.Int("members", len(v.byKey)), zap.Uint64("epoch", v.epoch))
	}
	n.syncSoon()
}

// pingMsg is this node's ping, and its reply to one: itself and the
// members it sees alive.
func (n *Node) pingMsg() ping {
	n.mu.Lock()
	defer n.mu.Unlock()
	p := ping{cluster: n.cfg.Cluster, from: n.self, leaving: n.leaving.Load()}
	for _, e := range n.members {
		if e.State == StateAlive {
			p.members = append(p.members, e.Member)
		}
	}
	return p
}

// join connects to the addresses in Config.Join until one answers a probe,
// backing off between rounds.
func (n *Node) join() {
	defer n.wg.Done()
	backoff := n.cfg.ProbeInterval
	lastErr := make(map[string]string) // per address, the last error logged
	for attempt := 1; ; attempt++ {
		for _, addr := range n.cfg.Join {
			ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ForwardTimeout)
			id, err := n.cfg.Transport.Connect(ctx, addr)
			cancel()
			if err != nil {
				if n.ctx.Err() != nil {
					return
				}
				// Say each new reason once, and again now and then.
				log := n.log.Debug
				if err.Error() != lastErr[addr] || attempt%10 == 0 {
					log = n.log.Warn
				}
				lastErr[addr] = err.Error()
				log("cannot join; retrying", zap.String("addr", addr), zap.Int("attempt", attempt), zap.Error(err))
				continue
			}
			if id == n.self.ID {
				continue
			}
			n.mu.Lock()
			if _, ok := n.members[id]; !ok {
				n.addLocked(Member{ID: id})
			}
			n.mu.Unlock()
			n.probeSoon(id)
		}
		// Joined once any member is alive; membership spreads from there.
		deadline := time.NewTimer(backoff)
		poll := time.NewTicker(n.cfg.ProbeInterval / 4)
	wait:
		for {
			select {
			case <-n.ctx.Done():
				deadline.Stop()
				poll.Stop()
				return
			case <-poll.C:
				if alive := n.aliveCount(); alive > 0 {
					deadline.Stop()
					poll.Stop()
					n.log.Info("joined the cluster", zap.Int("members", alive+1))
					return
				}
			case <-deadline.C:
				break wait
			}
		}
		poll.Stop()
		backoff = min(2*backoff, maxJoinBackoff)
	}
}

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
