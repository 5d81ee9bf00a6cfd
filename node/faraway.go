package node

import (
	"encoding/binary"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/dboutique/dboutique/node/gossip"
	"github.com/dboutique/dboutique/node/wire"
)

// Members looked for. The member table holds the members this node has
// heard of through the engine (or a ping, --join, the book, discovery),
// and forgets a dead one after defaultForgetAfter. Some members this node
// must still find are in no table of its own:
//
//   - a member forgotten: it may be on the other side of a long
//     partition;
//   - a member the engine told of, alive, that this node never reached
//     before the engine gave up on it (it was cut off from this node);
//   - a member another member told of, dead (hearsay): memberlist drops a
//     dead member it has never heard of alive, so a node that joined
//     through a member cut off from the rest learns nothing of the rest
//     from the engine. Every push/pull carries the members its sender
//     holds dead (peerState), and a leaving node does one with each alive
//     member (Node.Leave), so that a node whose only contact left while
//     the rest were cut off from both still knows whom to look for.
//
// Invariant: a member this node has known (first hand, or from a member of
// its cluster) and does not hold now is looked for until it answers or
// for farawayFor: the engine contacts it (a push/pull, which also tells
// the member of this node), backing off from reconnectEvery (farawayEvery
// for one forgotten, contacted that often already) to farawayEvery; at
// most farawayInFlight at once. A node that sees no member alive looks
// for all of them at each round of its join loop (join.go). A member that
// answers is back in the table as any member first heard of, and is
// admitted by the same checks. Only members known first hand are told of,
// never hearsay, so no rumour outlives the members that knew it.
const (
	farawayEvery    = time.Minute
	farawayFor      = 24 * time.Hour
	farawayInFlight = 16
	maxFaraway      = 1024
)

// faraway is a member looked for.
type faraway struct {
	addrs      []string
	since      time.Time // when this node began to look for it
	next       time.Time // when it is contacted next
	delay      backoff   // the waits between contacts
	contacting bool      // a contact is under way
}

// lookForLocked looks for the member id from next on, waiting every (and
// then twice as long, up to farawayEvery) between contacts, unless this
// node holds it or looks for it already. The caller holds n.mu.
func (n *Node) lookForLocked(id string, addrs []string, next time.Time, every time.Duration) {
	if id == "" || id == n.self.ID || len(addrs) == 0 || n.members[id] != nil || n.faraway[id] != nil ||
		len(n.faraway) >= maxFaraway {
		return
	}
	n.faraway[id] = &faraway{addrs: slices.Clone(addrs), since: time.Now(), next: next,
		delay: backoff{next: every, most: farawayEvery}}
}

// farawayDueLocked returns the members looked for whose contact is due,
// marked as contacted, and drops those found (the engine holds them) or
// looked for long enough. A member that is in the table without the
// engine holding it (heard of again, not reached yet) is left to the
// table's own contacts. The caller holds n.mu.
func (n *Node) farawayDueLocked(now time.Time) []string {
	var due []string
	for id, f := range n.faraway {
		e := n.members[id]
		switch {
		case e != nil && e.gossip, now.Sub(f.since) > farawayFor:
			delete(n.faraway, id) // found, or gone for good
		case e != nil, f.contacting, now.Before(f.next), n.farawayBusy >= farawayInFlight:
		default:
			f.contacting = true
			f.next = now.Add(f.delay.step())
			n.farawayBusy++
			due = append(due, id)
		}
	}
	return due
}

// hurryFaraway makes every member looked for due now: this node sees no
// member alive, and has nothing better to do.
func (n *Node) hurryFaraway() {
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, f := range n.faraway {
		f.next = now
	}
}

// contactFaraway has the engine contact each member of ids, each in a
// goroutine (farawayDueLocked marked them and counted them in
// farawayBusy).
func (n *Node) contactFaraway(ids []string) {
	for _, id := range ids {
		n.mu.Lock()
		var addrs []string
		if f := n.faraway[id]; f != nil {
			addrs = f.addrs
		}
		n.mu.Unlock()
		n.cfg.Transport.AddAddrs(id, addrs)
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			if _, err := n.gossip.Join(id); err == nil {
				n.log.Info("a member looked for answered", zap.String("peer", id))
			}
			n.mu.Lock()
			if f := n.faraway[id]; f != nil {
				f.contacting = false
			}
			n.farawayBusy--
			n.mu.Unlock()
		}()
	}
}

// maxToldPeers caps the members a push/pull tells of, and maxToldAddrs
// the addresses of each.
const (
	maxToldPeers = 256
	maxToldAddrs = 8
)

// peersVersion is the first byte of an encoded peer state.
const peersVersion = 1

// peerState is what this node tells in a push/pull (gossip.Config.State):
// the members it holds dead, with where they listened; nil when none.
func (n *Node) peerState() []byte {
	n.mu.Lock()
	var dead []Member
	for _, e := range n.members {
		if e.State == StateDead && len(e.Addrs) > 0 && len(dead) < maxToldPeers {
			dead = append(dead, Member{ID: e.ID, Name: e.Name, Addrs: slices.Clone(e.Addrs)})
		}
	}
	n.mu.Unlock()
	if len(dead) == 0 {
		return nil
	}
	return appendPeerState(nil, n.cfg.Cluster, n.layout, dead)
}

// mergePeerState takes the peer state another node told in a push/pull:
// this node looks for the members it tells of that it does not know. A
// state from a node of another cluster, or one that places buckets
// otherwise, is ignored (memberlist hands it over before, and whatever,
// the engine's admission decides of its sender).
func (n *Node) mergePeerState(b []byte) {
	cluster, layout, peers, err := decodePeerState(b)
	if err != nil {
		n.log.Debug("unreadable peer state in a push/pull", zap.Error(err))
		return
	}
	if cluster != n.cfg.Cluster || layout != n.layout {
		return
	}
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.leaving.Load() {
		return
	}
	for _, m := range peers {
		n.lookForLocked(m.ID, m.Addrs, now, n.reconnectEvery())
	}
}

// appendPeerState encodes a peer state: peersVersion, cluster string,
// layout (8 bytes), a uvarint count of members, then each member's ID
// string, name string, a uvarint count of addresses and each address
// string. At most maxToldAddrs addresses each; members that would take
// the encoding over gossip.MaxState are left out.
func appendPeerState(b []byte, cluster string, layout uint64, peers []Member) []byte {
	var body []byte
	count := 0
	for _, m := range peers {
		var one []byte
		one = wire.AppendString(one, m.ID)
		one = wire.AppendString(one, m.Name)
		addrs := m.Addrs[:min(len(m.Addrs), maxToldAddrs)]
		one = binary.AppendUvarint(one, uint64(len(addrs)))
		for _, a := range addrs {
			one = wire.AppendString(one, a)
		}
		if len(body)+len(one)+len(cluster)+32 > gossip.MaxState {
			break
		}
		body = append(body, one...)
		count++
	}
	b = append(b, peersVersion)
	b = wire.AppendString(b, cluster)
	b = wire.AppendU64(b, layout)
	b = binary.AppendUvarint(b, uint64(count))
	return append(b, body...)
}

// decodePeerState decodes appendPeerState's encoding; more than
// maxToldPeers members, or maxToldAddrs addresses of one, are an error.
func decodePeerState(b []byte) (cluster string, layout uint64, peers []Member, err error) {
	d := wire.NewDecoder(b)
	if v := d.Byte(); d.Err() == nil && v != peersVersion {
		d.Failf("peer state version %d, want %d", v, peersVersion)
	}
	cluster = d.String()
	layout = d.U64()
	count := d.Count()
	if count > maxToldPeers {
		d.Failf("%d members told of, at most %d", count, maxToldPeers)
	}
	for i := uint64(0); i < count && d.Err() == nil; i++ {
		m := Member{ID: d.String(), Name: d.String()}
		addrs := d.Count()
		if addrs > maxToldAddrs {
			d.Failf("%d addresses of a member, at most %d", addrs, maxToldAddrs)
		}
		for j := uint64(0); j < addrs && d.Err() == nil; j++ {
			m.Addrs = append(m.Addrs, d.String())
		}
		peers = append(peers, m)
	}
	if err := d.Finish(); err != nil {
		return "", 0, nil, err
	}
	return cluster, layout, peers, nil
}
