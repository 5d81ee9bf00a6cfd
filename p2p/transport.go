package p2p

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"go.uber.org/zap"
)

// TransportConfig configures a Transport: the host to create and how its
// requests behave. RPC.Host is set by NewTransport.
type TransportConfig struct {
	Host   HostConfig
	RPC    RPCConfig
	Logger *zap.Logger // nil logs nothing
	// Gater, if set, is the host's connection gater, through which
	// Transport.Block and Unblock cut and restore links to peers. It is
	// installed as Host.Gater; setting both to different gaters is an
	// error, and a Host.Gater alone is used as if it were set here. Nil
	// (with Host.Gater nil) means no gater: Block returns ErrNoGater.
	Gater *Gater
}

// Transport is a node's connection to its peers: a libp2p host and the
// request protocol on it. It implements the node package's Transport
// interface with peer IDs and multiaddrs as strings. It owns the host.
type Transport struct {
	host      host.Host
	rpc       *RPC
	gater     *Gater       // nil: Block and Unblock return ErrNoGater
	ids       sync.Map     // peer ID string -> peer.ID: decoding base58 on every call is costly
	names     sync.Map     // peer.ID -> its string, for the same reason
	numIDs    atomic.Int64 // entries in ids and names, capped at maxCachedIDs
	private   bool
	log       *zap.Logger
	closeOnce sync.Once
	closeErr  error
}

// NewTransport creates the host (it listens at once) and the request
// protocol, which answers nothing until Serve.
func NewTransport(cfg TransportConfig) (*Transport, error) {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	switch {
	case cfg.Gater == nil:
		cfg.Gater = cfg.Host.Gater
	case cfg.Host.Gater == nil:
		cfg.Host.Gater = cfg.Gater
	case cfg.Host.Gater != cfg.Gater:
		return nil, errors.New("p2p: TransportConfig.Gater and TransportConfig.Host.Gater are different gaters")
	}
	h, err := NewHost(cfg.Host)
	if err != nil {
		return nil, err
	}
	cfg.RPC.Host = h
	if cfg.RPC.Logger == nil {
		cfg.RPC.Logger = cfg.Logger
	}
	rpc, err := NewRPC(cfg.RPC)
	if err != nil {
		_ = h.Close()
		return nil, err
	}
	return &Transport{host: h, rpc: rpc, gater: cfg.Gater, private: cfg.Host.PSK != nil, log: cfg.Logger}, nil
}

// Host returns the libp2p host.
func (t *Transport) Host() host.Host { return t.host }

// ID returns the host's peer ID.
func (t *Transport) ID() string { return t.host.ID().String() }

// Addrs returns the host's listen addresses, without the peer ID.
func (t *Transport) Addrs() []string {
	as := t.host.Addrs()
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

// FullAddrs returns the host's addresses with the peer ID, the form that
// --join takes.
func (t *Transport) FullAddrs() []string { return FullAddrs(t.host) }

// Serve answers peers' requests with h.
func (t *Transport) Serve(h func(ctx context.Context, from string, req []byte) ([]byte, error)) {
	t.rpc.Serve(func(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
		return h(ctx, t.idString(from), req)
	})
}

// Call sends req to the peer with ID to and returns its reply.
func (t *Transport) Call(ctx context.Context, to string, req []byte) ([]byte, error) {
	id, err := t.decodeID(to)
	if err != nil {
		return nil, err
	}
	reply, err := t.rpc.Call(ctx, id, req)
	if err != nil {
		var re *RemoteError
		if errors.As(err, &re) {
			return nil, err
		}
		return nil, ExplainDialError(err, t.private)
	}
	return reply, nil
}

// maxCachedIDs caps the decoded peer IDs a Transport remembers; a cluster
// has far fewer members.
const maxCachedIDs = 4096

// decodeID decodes a peer ID string, remembering the result.
func (t *Transport) decodeID(s string) (peer.ID, error) {
	if v, ok := t.ids.Load(s); ok {
		return v.(peer.ID), nil
	}
	id, err := peer.Decode(s)
	if err != nil {
		return "", fmt.Errorf("%w: peer ID %q: %v", ErrInvalidAddr, s, err)
	}
	if t.numIDs.Load() < maxCachedIDs {
		if _, loaded := t.ids.LoadOrStore(s, id); !loaded {
			t.numIDs.Add(1)
		}
	}
	return id, nil
}

// idString returns id's string form, remembering it for the peers that
// call often (base58 encoding shows in profiles of forwarded requests).
func (t *Transport) idString(id peer.ID) string {
	if v, ok := t.names.Load(id); ok {
		return v.(string)
	}
	s := id.String()
	if t.numIDs.Load() < maxCachedIDs {
		if _, loaded := t.names.LoadOrStore(id, s); !loaded {
			t.numIDs.Add(1)
		}
	}
	return s
}

// AddAddrs records where peer id listens. Addresses that do not parse are
// skipped.
func (t *Transport) AddAddrs(id string, addrs []string) {
	pid, err := t.decodeID(id)
	if err != nil || pid == t.host.ID() {
		return
	}
	mas := make([]ma.Multiaddr, 0, len(addrs))
	for _, a := range addrs {
		m, err := ma.NewMultiaddr(a)
		if err != nil {
			t.log.Debug("skipping a peer address", zap.String("addr", a), zap.Error(err))
			continue
		}
		mas = append(mas, m)
	}
	t.host.Peerstore().AddAddrs(pid, mas, peerstore.AddressTTL)
}

// ReplaceAddrs records that peer id listens on addrs, and no more on the
// addresses of old that addrs lacks: a peer that moved (same identity,
// another IP or port) is not dialled at its old address. Addresses in
// neither list (a join address, one a connection came from) stay.
func (t *Transport) ReplaceAddrs(id string, old, addrs []string) {
	pid, err := t.decodeID(id)
	if err != nil || pid == t.host.ID() || len(addrs) == 0 {
		return
	}
	keep := make(map[string]bool, len(addrs))
	for _, a := range addrs {
		keep[a] = true
	}
	var stale []ma.Multiaddr
	for _, a := range old {
		if keep[a] {
			continue
		}
		if m, err := ma.NewMultiaddr(a); err == nil {
			stale = append(stale, m)
		}
	}
	ps := t.host.Peerstore()
	if len(stale) > 0 {
		ps.SetAddrs(pid, stale, 0) // a TTL of 0 removes them
	}
	t.AddAddrs(id, addrs)
}

// Connect connects to a full address (with /p2p/<peer ID>) and returns the
// peer's ID.
func (t *Transport) Connect(ctx context.Context, addr string) (string, error) {
	ai, err := ParseJoinAddr(addr)
	if err != nil {
		return "", err
	}
	if ai.ID == t.host.ID() {
		return ai.ID.String(), nil
	}
	t.host.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.AddressTTL)
	// An address the user gave is worth a real dial each time: libp2p's
	// dial backoff would answer a retry with "dial backoff" and hide the
	// reason (such as a cluster key mismatch).
	if sw, ok := t.host.Network().(interface{ Backoff() *swarm.DialBackoff }); ok {
		sw.Backoff().Clear(ai.ID)
	}
	if err := t.host.Connect(ctx, ai); err != nil {
		if errors.Is(err, swarm.ErrGaterDisallowedConnection) {
			return "", fmt.Errorf("p2p: connect to %s: the peer is blocked: %w", ai.ID, err)
		}
		err = ExplainDialError(err, t.private)
		if !errors.Is(err, ErrClusterKeyMismatch) && anyPortOpen(ai.Addrs) {
			// A key mismatch often shows as a handshake that never
			// finishes: the keyed side reads garbage as a length and
			// waits. The port being open says someone is listening.
			err = fmt.Errorf("%w: the peer's port accepts connections but the handshake did not complete: %w", ErrClusterKeyMismatch, err)
		}
		return "", err
	}
	return ai.ID.String(), nil
}

// Block cuts the links to the peers with IDs ids, in both directions, until
// they are unblocked: the gater refuses new connections with them, dialled
// by either side, and every existing connection with them is closed, so
// calls in flight fail at once and later calls cannot dial. Blocking one
// side of a link is enough: the peers' dials to us are refused once their
// handshake has authenticated them. Block returns ErrNoGater when the transport has no gater, and
// an error, blocking nobody, when an ID does not parse.
func (t *Transport) Block(ids []string) error {
	pids, err := t.gate(ids, (*Gater).Block)
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range pids {
		if err := t.host.Network().ClosePeer(id); err != nil {
			errs = append(errs, fmt.Errorf("p2p: close connections to blocked peer %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

// Unblock restores the links to the peers with IDs ids, and forgets the dial
// backoff libp2p recorded for them while they were blocked, so the next call
// dials at once. The peers' own dial backoff for us is theirs: a peer that
// tried to dial us while blocked may wait for it to expire unless we connect
// first. Unblock returns ErrNoGater when the transport has no gater, and an
// error, unblocking nobody, when an ID does not parse.
func (t *Transport) Unblock(ids []string) error {
	pids, err := t.gate(ids, (*Gater).Unblock)
	if err != nil {
		return err
	}
	t.clearBackoff(pids)
	return nil
}

// UnblockAll unblocks every blocked peer, as Unblock does. Without a gater
// it does nothing.
func (t *Transport) UnblockAll() {
	if t.gater == nil {
		return
	}
	t.clearBackoff(t.gater.unblockAll())
}

// gate decodes the peer IDs ids and hands them to the gater's Block or
// Unblock (do), returning them. It returns ErrNoGater when the transport
// has no gater, and the error of the first ID that does not parse, having
// handed over none.
func (t *Transport) gate(ids []string, do func(*Gater, ...peer.ID)) ([]peer.ID, error) {
	if t.gater == nil {
		return nil, ErrNoGater
	}
	pids := make([]peer.ID, len(ids))
	for i, s := range ids {
		id, err := t.decodeID(s)
		if err != nil {
			return nil, err
		}
		pids[i] = id
	}
	do(t.gater, pids...)
	return pids, nil
}

// clearBackoff forgets libp2p's dial backoff for ids.
func (t *Transport) clearBackoff(ids []peer.ID) {
	sw, ok := t.host.Network().(interface{ Backoff() *swarm.DialBackoff })
	if !ok {
		return
	}
	for _, id := range ids {
		sw.Backoff().Clear(id)
	}
}

// portCheckTimeout bounds the TCP dial that anyPortOpen makes per address.
const portCheckTimeout = time.Second

// anyPortOpen reports whether a plain TCP connection to one of addrs
// succeeds (it is closed at once).
func anyPortOpen(addrs []ma.Multiaddr) bool {
	for _, a := range addrs {
		network, hostport, err := manet.DialArgs(a)
		if err != nil || !strings.HasPrefix(network, "tcp") {
			continue
		}
		c, err := net.DialTimeout(network, hostport, portCheckTimeout)
		if err == nil {
			_ = c.Close()
			return true
		}
	}
	return false
}

// Close stops the request protocol and closes the host. It is idempotent.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		t.closeErr = errors.Join(t.rpc.Close(), t.host.Close())
	})
	return t.closeErr
}
