package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/dboutique/dboutique/node/gossip"
	"github.com/dboutique/dboutique/node/wire"
)

// The gossip engine (package gossip, on hashicorp/memberlist) finds the
// members and tells which are alive, suspect, dead or gone. This file
// wires it to the member table: its metadata (who this node is, where it
// listens), its admission check (cluster and placement), and what its
// events do to the table. membership.go says what makes a member alive for
// placement.

// memberMeta is what a node tells the others about itself through the
// engine: enough to place buckets on it and to reach it.
type memberMeta struct {
	cluster     string
	layout      uint64 // Node.layout
	name        string
	incarnation uint64 // this life of the node (Member.Incarnation)
	addrs       []string
}

// metaVersion is the first byte of an encoded memberMeta.
const metaVersion = 1

// appendMemberMeta encodes m: metaVersion, cluster string, layout (8 bytes),
// name string, incarnation (8 bytes), a uvarint count of addresses, then
// each address string. Addresses that would take the encoding over
// gossip.MaxMeta are left out.
func appendMemberMeta(b []byte, m memberMeta) []byte {
	b = append(b, metaVersion)
	b = wire.AppendString(b, m.cluster)
	b = wire.AppendU64(b, m.layout)
	b = wire.AppendString(b, m.name)
	b = wire.AppendU64(b, m.incarnation)
	addrs := m.addrs
	for size := len(b) + 1; ; {
		total := size
		for _, a := range addrs {
			total += len(a) + 2
		}
		if total <= gossip.MaxMeta || len(addrs) == 0 {
			break
		}
		addrs = addrs[:len(addrs)-1]
	}
	b = append(b, byte(len(addrs)))
	for _, a := range addrs {
		b = wire.AppendString(b, a)
	}
	return b
}

func decodeMemberMeta(b []byte) (memberMeta, error) {
	d := wire.NewDecoder(b)
	var m memberMeta
	if v := d.Byte(); d.Err() == nil && v != metaVersion {
		d.Failf("member metadata version %d, want %d", v, metaVersion)
	}
	m.cluster = d.String()
	m.layout = d.U64()
	m.name = d.String()
	m.incarnation = d.U64()
	for range d.Count() {
		m.addrs = append(m.addrs, d.String())
	}
	return m, d.Finish()
}

// meta is this node's metadata, as the engine sends it.
func (n *Node) meta() []byte {
	return appendMemberMeta(nil, memberMeta{cluster: n.cfg.Cluster, layout: n.layout, name: n.self.Name,
		incarnation: n.self.Incarnation, addrs: n.self.Addrs})
}

// newEngine makes the node's gossip engine (started by Start).
func (n *Node) newEngine() (*gossip.Engine, error) {
	return gossip.New(gossip.Config{
		ID:            n.self.ID,
		Caller:        n.cfg.Transport,
		PacketType:    msgGossip,
		StreamType:    msgGossipStream,
		Events:        gossipEvents{n},
		Meta:          n.meta,
		Admit:         n.admit,
		State:         n.peerState,
		MergeState:    n.mergePeerState,
		ProbeInterval: n.cfg.ProbeInterval,
		DeadAfter:     n.cfg.DeadAfter,
		Log:           n.log.Named("gossip"),
	})
}

// admit keeps members of another cluster, and members that place buckets
// otherwise, out of the engine: they never form one view with this node
// (errPlacementMismatch). It runs under the engine's lock: it takes no lock
// of the node's.
func (n *Node) admit(id string, raw []byte) error {
	if id == n.self.ID {
		return nil
	}
	m, err := decodeMemberMeta(raw)
	switch {
	case err != nil:
		err = fmt.Errorf("unreadable metadata: %w", err)
	case m.cluster != n.cfg.Cluster:
		err = fmt.Errorf("%w: this node is in cluster %q, %s in %q", ErrClusterMismatch, n.cfg.Cluster, m.name, m.cluster)
	case m.layout != n.layout:
		err = errPlacementMismatch
	}
	if err != nil {
		now := time.Now().UnixNano()
		if last := n.admitLogged.Load(); now-last > int64(time.Minute) && n.admitLogged.CompareAndSwap(last, now) {
			msg := "refusing a member of another cluster"
			if errors.Is(err, errPlacementMismatch) {
				msg = "refusing a member that places buckets differently; give every node the same placement"
			}
			n.log.Warn(msg, zap.String("name", m.name), zap.String("peer", id), zap.Error(err))
		}
	}
	return err
}

// gossipEvents applies the engine's events to the member table.
type gossipEvents struct{ n *Node }

// Alive: the engine holds id alive. A member that is not alive in the
// table yet, or that came back as another life, is probed: it is placed
// once it answers (membership.go).
func (g gossipEvents) Alive(id string, raw []byte) {
	n := g.n
	if id == n.self.ID {
		return
	}
	m, err := decodeMemberMeta(raw)
	if err != nil {
		return // admit refused it already
	}
	n.mu.Lock()
	e := n.members[id]
	if e == nil {
		e = n.addLocked(Member{ID: id, Name: m.name, Addrs: m.addrs})
	}
	e.gossip = true
	e.metaLife = m.incarnation
	old := e.Addrs
	if len(m.addrs) > 0 && !slices.Equal(e.Addrs, m.addrs) {
		e.Addrs = slices.Clone(m.addrs)
		n.bookDirty = true
	}
	probe := e.State != StateAlive || e.Incarnation != m.incarnation || e.Name != m.name
	n.mu.Unlock()
	if len(m.addrs) > 0 {
		// Every time, not only when they moved: the transport may not
		// have them yet (a member first heard of now).
		n.replaceAddrs(id, old, m.addrs)
	}
	if probe {
		n.probeSoon(id)
	}
}

// Gone: the engine holds id dead, or it left. An alive member dies: it
// leaves the view. One that said it was leaving stays left.
func (g gossipEvents) Gone(id string) {
	n := g.n
	n.mu.Lock()
	defer n.mu.Unlock()
	e := n.members[id]
	if e == nil {
		return
	}
	e.gossip = false
	if e.State == StateAlive {
		n.setStateLocked(e, StateDead, time.Now())
		n.rebuildLocked()
		n.updateLeaseLocked()
	}
}

// addrReplacer is a Transport that can forget addresses of a peer, so that
// a member's old address is forgotten once it says where it listens now.
type addrReplacer interface {
	ReplaceAddrs(id string, old, addrs []string)
}

// replaceAddrs records that member id listens on addrs now, and no more on
// those of old (what it, or the book, said before) that addrs lacks.
// Addresses learned otherwise (--join, discovery, the connection) stay.
func (n *Node) replaceAddrs(id string, old, addrs []string) {
	if s, ok := n.cfg.Transport.(addrReplacer); ok {
		s.ReplaceAddrs(id, old, addrs)
		return
	}
	n.cfg.Transport.AddAddrs(id, addrs)
}

// joinSoon asks the engine to contact id (a push/pull of member lists), in
// a goroutine, unless a contact is already under way.
func (n *Node) joinSoon(id string) {
	if id == n.self.ID || n.ctx.Err() != nil {
		return
	}
	n.mu.Lock()
	e := n.members[id]
	if e == nil || e.contacting {
		n.mu.Unlock()
		return
	}
	e.contacting = true
	n.mu.Unlock()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		_, err := n.gossip.Join(id)
		if err != nil && n.ctx.Err() == nil {
			n.log.Debug("cannot contact member", zap.String("peer", id), zap.Error(err))
		}
		n.mu.Lock()
		if e := n.members[id]; e != nil {
			e.contacting = false
		}
		n.mu.Unlock()
	}()
}

// handleGossip answers msgGossip: a packet of the engine.
func (n *Node) handleGossip(_ context.Context, from string, body []byte) ([]byte, error) {
	return nil, n.gossip.HandlePacket(from, body)
}

// handleGossipStream answers msgGossipStream: a stream of the engine.
func (n *Node) handleGossipStream(ctx context.Context, from string, body []byte) ([]byte, error) {
	return n.gossip.HandleStream(ctx, from, body)
}
