package node

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// Joining. A node answers for buckets only once it is part of its
// cluster, or it would answer NOT FOUND for buckets that exist and take
// writes with a single copy. Invariant: a node told to join (Config.Join),
// or one that remembers members from an earlier run (Config.PeerBook),
// answers ErrUnavailable until a member that is itself part of a cluster
// (its pings say joined) has answered its probe, and until the members it
// then knows are saved in its book. After Config.RejoinTimeout it stops
// waiting for a joined member: it serves with the members that answered
// (the whole cluster is starting again), or, when none did and it was not
// told to join, on its own (they may all be gone for good); a node told to
// join that found nobody keeps trying.
//
// A node that restarts may have vouched for members in its last life
// (lease.go): it does not remember to whom, so it keeps every promise it
// may have made, holding every view for holdDuration after it starts
// (Node.restartHold).
//
// Whenever the node finds itself without any alive member, it goes on
// looking for the addresses it was told to join, the members of its book
// and every member it looks for (faraway.go: forgotten, or told of by
// others), so that a node whose only contact died or left finds the
// others again.

// PeerBook keeps the members a node has known across its restarts, so
// that a node restarted without --join (the first node of a cluster, or
// one found by mDNS) finds its cluster again before it serves.
type PeerBook interface {
	// Load returns the members saved last (ID and addresses matter),
	// or none.
	Load() ([]Member, error)
	// Save replaces the saved members.
	Save([]Member) error
}

// bookSaveGap is the least time between two saves of the peer book, once
// it is first saved.
const bookSaveGap = time.Second

// join looks for the cluster for the node's whole life: through the
// addresses in Config.Join and the members of the peer book, probing them
// again and again, backing off between rounds, whenever no member is alive.
// The first time a member that is itself joined answers, the node opens
// (open, from answered); with the book alone it opens after RejoinTimeout
// even if none did.
func (n *Node) join(book []Member) {
	defer n.wg.Done()
	start := time.Now()
	delay := backoff{next: n.cfg.ProbeInterval, most: n.cfg.ProbeInterval}
	lastErr := make(map[string]string) // per address, the last error logged
	for attempt := 1; ; attempt++ {
		// The first round always: a member that reached this node first
		// (it joined through this one) is not the cluster it was told to
		// join.
		if attempt == 1 || n.aliveCount() == 0 {
			n.introduceAll(book, lastErr, attempt)
		}
		// A member that answers opens the node (answered, open); this
		// loop only waits for the next round.
		if !delay.wait(n.ctx) {
			return
		}
		if !n.joined.Load() && time.Since(start) >= n.cfg.RejoinTimeout {
			switch alive := n.aliveCount(); {
			case alive > 0:
				// Members answered, none of them joined: the whole
				// cluster is starting again at once.
				n.log.Warn("the members found are all looking for their cluster too; serving with them",
					zap.Int("members", alive+1), zap.Duration("waited", time.Since(start).Round(time.Millisecond)))
				n.open()
			case len(n.cfg.Join) == 0:
				n.log.Warn("no member this node knew answered; serving on its own",
					zap.Int("known", len(book)), zap.Duration("waited", time.Since(start).Round(time.Millisecond)))
				n.open()
			}
		}
		switch {
		case n.aliveCount() > 0:
			delay = backoff{next: maxJoinBackoff, most: maxJoinBackoff} // nothing to do but watch
		case !n.joined.Load() && len(n.cfg.Join) == 0:
			// Not past RejoinTimeout by much.
			delay.most = max(n.cfg.RejoinTimeout-time.Since(start), n.cfg.ProbeInterval)
		default:
			delay.most = maxJoinBackoff
		}
	}
}

// introduceAll introduces the book's members and the join addresses
// (connecting to each), to be contacted now, and makes the members looked
// for due (faraway.go). The book first: its members are found by peer ID
// wherever they listen now, while a join address may name an address its
// node has left (and a failed dial takes ForwardTimeout).
func (n *Node) introduceAll(book []Member, lastErr map[string]string, attempt int) {
	n.hurryFaraway()
	for _, m := range book {
		n.Introduce(m.ID, m.Addrs)
	}
	// And those the book learned since the start.
	for _, m := range n.loadBook() {
		n.Introduce(m.ID, m.Addrs)
	}
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
		n.Introduce(id, nil)
	}
}

// open lets the node serve, once the members it knows are in its book: a
// crash right after it has would otherwise leave a book without them.
// It reports whether it was this call that opened it.
func (n *Node) open() bool {
	n.mu.Lock()
	n.bookDirty = true
	n.mu.Unlock()
	n.saveBook(time.Time{}, true)
	return !n.joined.Swap(true)
}

// loadBook returns the members of the peer book other than this node.
func (n *Node) loadBook() []Member {
	if n.cfg.PeerBook == nil {
		return nil
	}
	ms, err := n.cfg.PeerBook.Load()
	if err != nil {
		n.log.Warn("cannot read the members known before; starting without them", zap.Error(err))
		return nil
	}
	var peers []Member
	for _, m := range ms {
		if m.ID != "" && m.ID != n.self.ID {
			peers = append(peers, Member{ID: m.ID, Name: m.Name, Addrs: m.Addrs})
		}
	}
	return peers
}

// kickBook asks bookLoop for a save of the peer book: at once when now,
// else once bookSaveGap has passed since the last. It never blocks, so a
// slow disk holds up neither failure detection nor probes.
func (n *Node) kickBook(now bool) {
	if n.cfg.PeerBook == nil {
		return
	}
	if now {
		n.bookNow.Store(true)
	}
	select {
	case n.bookKick <- struct{}{}:
	default:
	}
}

// bookLoop saves the peer book when asked (kickBook).
func (n *Node) bookLoop() {
	defer n.wg.Done()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.bookKick:
			n.saveBook(time.Now(), n.bookNow.Swap(false))
		}
	}
}

// saveBook saves the alive and dead members to the peer book when they
// changed, at most once per bookSaveGap unless now. Saves are one at a time
// (bookMu). Once a save has ended, exactly the members it listed are
// booked: this node vouches for those only.
func (n *Node) saveBook(at time.Time, now bool) {
	if n.cfg.PeerBook == nil {
		return
	}
	n.bookMu.Lock()
	defer n.bookMu.Unlock()
	if !now && at.Sub(n.bookSaved) < bookSaveGap {
		return
	}
	n.mu.Lock()
	if !n.bookDirty {
		n.mu.Unlock()
		return
	}
	n.bookDirty = false
	var ms []Member
	for _, e := range n.members {
		if (e.State == StateAlive || e.State == StateDead) && len(e.Addrs) > 0 {
			ms = append(ms, Member{ID: e.ID, Name: e.Name, Addrs: e.Addrs})
		}
	}
	n.mu.Unlock()
	n.bookSaved = time.Now()
	if err := n.cfg.PeerBook.Save(ms); err != nil {
		// Vouch all the same: refusing would take the leases of the
		// others, for a promise that matters only if this node
		// restarts within a hold (lease.go).
		n.log.Warn("cannot save the members known; if this node restarts at once, it may break a promise it made to them",
			zap.Error(err))
	}
	listed := make(map[string]bool, len(ms))
	for _, m := range ms {
		listed[m.ID] = true
	}
	n.mu.Lock()
	for id, e := range n.members {
		e.booked = listed[id]
	}
	n.mu.Unlock()
}
