package p2p

import (
	"errors"
	"sync"

	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// ErrNoGater is returned by Transport.Block and Transport.Unblock when the
// transport was created without a connection gater.
var ErrNoGater = errors.New("p2p: no connection gater")

// Gater is a libp2p connection gater holding a set of blocked peers. It
// exists for fault injection (tests cut the links between real hosts to
// simulate network partitions) and for access control (keeping a peer out).
//
// A blocked peer is refused when we dial it (InterceptPeerDial), when a
// connection with it, in either direction, has completed its security
// handshake (InterceptSecured) and when a connection with it is fully
// upgraded (InterceptUpgraded); everything else is allowed. Blocking does
// not close connections that already exist: Transport.Block does that.
//
// Install a Gater with HostConfig.Gater. It is safe for concurrent use; make
// one with NewGater (the zero value is not usable).
type Gater struct {
	mu      sync.RWMutex
	blocked map[peer.ID]struct{} // guarded by mu
}

var _ connmgr.ConnectionGater = (*Gater)(nil)

// NewGater returns a Gater that blocks nobody.
func NewGater() *Gater {
	return &Gater{blocked: make(map[peer.ID]struct{})}
}

// Block adds ids to the blocked peers. Blocking a blocked peer does nothing.
func (g *Gater) Block(ids ...peer.ID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, id := range ids {
		g.blocked[id] = struct{}{}
	}
}

// Unblock removes ids from the blocked peers. Unblocking a peer that is not
// blocked does nothing.
func (g *Gater) Unblock(ids ...peer.ID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, id := range ids {
		delete(g.blocked, id)
	}
}

// UnblockAll unblocks every peer.
func (g *Gater) UnblockAll() { g.unblockAll() }

// unblockAll unblocks every peer and returns the peers that were blocked.
func (g *Gater) unblockAll() []peer.ID {
	g.mu.Lock()
	defer g.mu.Unlock()
	ids := make([]peer.ID, 0, len(g.blocked))
	for id := range g.blocked {
		ids = append(ids, id)
	}
	clear(g.blocked)
	return ids
}

// Blocked reports whether id is blocked.
func (g *Gater) Blocked(id peer.ID) bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	_, ok := g.blocked[id]
	return ok
}

// InterceptPeerDial refuses to dial a blocked peer.
func (g *Gater) InterceptPeerDial(p peer.ID) (allow bool) {
	return !g.Blocked(p)
}

// InterceptAddrDial allows every address: the peer was checked by
// InterceptPeerDial.
func (g *Gater) InterceptAddrDial(peer.ID, ma.Multiaddr) (allow bool) {
	return true
}

// InterceptAccept allows every inbound connection: the remote peer is not
// known before the security handshake, so InterceptSecured decides.
func (g *Gater) InterceptAccept(network.ConnMultiaddrs) (allow bool) {
	return true
}

// InterceptSecured refuses a connection with a blocked peer, inbound or
// outbound, once the handshake has authenticated it.
func (g *Gater) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) (allow bool) {
	return !g.Blocked(p)
}

// InterceptUpgraded refuses a fully upgraded connection with a blocked peer
// (a peer blocked while the connection was being upgraded).
func (g *Gater) InterceptUpgraded(c network.Conn) (allow bool, reason control.DisconnectReason) {
	return !g.Blocked(c.RemotePeer()), 0
}
