package p2p

import (
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/pnet"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
)

// Errors returned by this package. Callers test for them with errors.Is; the
// returned errors wrap them with details.
var (
	// ErrClusterKeyMismatch is wrapped by ExplainDialError when a failed
	// connection looks like the two nodes use different cluster keys (or one
	// uses a key and the other does not).
	ErrClusterKeyMismatch = errors.New("p2p: handshake failed (cluster key mismatch?)")
	// ErrInvalidKey reports a malformed cluster key or cluster key file.
	ErrInvalidKey = errors.New("p2p: invalid cluster key file")
	// ErrInvalidIdentity reports a node identity file that cannot be used.
	ErrInvalidIdentity = errors.New("p2p: invalid identity file")
	// ErrInvalidAddr reports a malformed or unusable multiaddress.
	ErrInvalidAddr = errors.New("p2p: invalid address")
)

// userAgent is what the host announces to its peers in the identify
// protocol.
const userAgent = "dboutique"

// ClusterKeySize is the length in bytes of a cluster key (a libp2p private
// network pre-shared key).
const ClusterKeySize = 32

// Default listen addresses: loopback only, on ports chosen by the kernel.
// Listening on other interfaces must be asked for explicitly.
const (
	defaultTCPListenAddr  = "/ip4/127.0.0.1/tcp/0"
	defaultQUICListenAddr = "/ip4/127.0.0.1/udp/0/quic-v1"
)

// Stream limits for ProtocolRPC. libp2p's defaults are made for public
// networks full of strangers and cap one protocol at about 75 inbound streams
// per peer; cluster members are trusted and multiplex many concurrent
// requests over one connection, so they get much more room. The per-peer and
// system stream limits are raised to match, or they would cap the protocol
// limits first.
const (
	rpcStreamsPerPeer  = 4096  // in each direction, per peer, ProtocolRPC
	rpcStreamsTotal    = 32768 // in each direction, all peers, ProtocolRPC
	peerStreamsMin     = 8192  // in each direction, per peer, all protocols
	systemStreamsMin   = 65536 // in each direction, all peers, all protocols
	transientStreamMin = 2048  // streams not yet tagged with a protocol
	rpcMemoryPerPeer   = 256 << 20
	rpcMemoryTotal     = 1 << 30
)

// HostConfig configures NewHost. The zero value is usable: an ephemeral
// identity, a public network, and TCP and QUIC on loopback.
type HostConfig struct {
	// ListenAddrs are multiaddresses to listen on. Empty means
	// "/ip4/127.0.0.1/tcp/0", plus "/ip4/127.0.0.1/udp/0/quic-v1" when PSK
	// is nil.
	ListenAddrs []string
	// Identity is the host's private key, which fixes its peer ID. Nil means
	// a new Ed25519 key: a different peer ID on every start.
	Identity crypto.PrivKey
	// PSK is the cluster key. Nil means a public network: any libp2p node
	// may connect (and is then subject to the application's own checks).
	// Otherwise it must be exactly ClusterKeySize bytes, and the host only
	// talks to hosts with the same key. libp2p's private networks work over
	// TCP only, so QUIC listen addresses are refused when PSK is set.
	PSK []byte
	// Gater, if set, is the host's connection gater: the host refuses
	// connections with the peers it blocks. Nil means no gater.
	Gater *Gater
}

// hostSettings is a validated HostConfig with its defaults filled in.
type hostSettings struct {
	listen   []ma.Multiaddr
	identity crypto.PrivKey
	psk      pnet.PSK // nil: public network
}

// validate checks c and returns the settings NewHost uses.
func (c HostConfig) validate() (hostSettings, error) {
	var hs hostSettings
	if c.PSK != nil {
		if len(c.PSK) != ClusterKeySize {
			return hs, fmt.Errorf("%w: cluster key is %d bytes, want %d", ErrInvalidKey, len(c.PSK), ClusterKeySize)
		}
		hs.psk = append(pnet.PSK(nil), c.PSK...)
	}
	listen := c.ListenAddrs
	if len(listen) == 0 {
		listen = []string{defaultTCPListenAddr}
		if hs.psk == nil {
			listen = append(listen, defaultQUICListenAddr)
		}
	}
	for _, s := range listen {
		addr, err := ma.NewMultiaddr(s)
		if err != nil {
			return hs, fmt.Errorf("%w: listen address %q: %w", ErrInvalidAddr, s, err)
		}
		switch transportOf(addr) {
		case transportTCP:
		case transportQUIC:
			if hs.psk != nil {
				return hs, fmt.Errorf("%w: listen address %q: a node with a cluster key can only use TCP (libp2p private networks do not support QUIC)", ErrInvalidAddr, s)
			}
		default:
			return hs, fmt.Errorf("%w: listen address %q: want /ip4|ip6/<ip>/tcp/<port> or /ip4|ip6/<ip>/udp/<port>/quic-v1", ErrInvalidAddr, s)
		}
		hs.listen = append(hs.listen, addr)
	}
	hs.identity = c.Identity
	if hs.identity == nil {
		key, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			return hs, fmt.Errorf("p2p: generate identity: %w", err)
		}
		hs.identity = key
	}
	return hs, nil
}

// NewHost creates a libp2p host configured for a D-Boutique cluster and
// starts listening. The caller owns the host and must Close it.
//
// The host speaks TCP (with port reuse disabled, so two nodes dialing each
// other at the same instant both succeed) and, on a public network, QUIC. It
// has no relay, NAT port mapping, hole punching, AutoNAT probing or
// Prometheus metrics, and its connection manager never prunes connections:
// a cluster is small and every member talks to every other. Each host has its
// own resource manager, with high stream limits for ProtocolRPC.
func NewHost(cfg HostConfig) (host.Host, error) {
	hs, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	rm, err := newResourceManager()
	if err != nil {
		return nil, fmt.Errorf("p2p: resource manager: %w", err)
	}
	opts := []libp2p.Option{
		libp2p.Identity(hs.identity),
		// Listen below, one address at a time: libp2p only fails when no
		// address at all works, and we want every failure reported.
		libp2p.NoListenAddrs,
		// Reuseport makes outgoing TCP connections use the listen port as
		// their source port. Two nodes dialing each other at the same
		// instant then create one TCP connection by simultaneous open, and
		// both sides start the security handshake as initiator: it fails.
		libp2p.Transport(tcp.NewTCPTransport, tcp.DisableReuseport()),
		// Noise is preferred; TLS is offered to peers that want it. QUIC
		// has TLS built in.
		libp2p.Security(noise.ID, noise.New),
		libp2p.Security(libp2ptls.ID, libp2ptls.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.ResourceManager(rm),
		libp2p.ConnectionManager(connmgr.NullConnMgr{}),
		libp2p.DisableRelay(),
		// The default registers metrics on Prometheus' process-wide
		// registry, which breaks running several hosts in one process.
		libp2p.DisableMetrics(),
		// A static reachability turns AutoNAT into a no-op: a cluster on a
		// LAN has nothing to learn from probing strangers.
		libp2p.ForceReachabilityPrivate(),
		libp2p.UserAgent(userAgent),
	}
	if cfg.Gater != nil {
		opts = append(opts, libp2p.ConnectionGater(cfg.Gater))
	}
	if hs.psk != nil {
		opts = append(opts, libp2p.PrivateNetwork(hs.psk))
	} else {
		opts = append(opts, libp2p.Transport(quic.NewTransport))
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		// libp2p closes the resource manager on some failures but not
		// all; closing it twice is harmless.
		_ = rm.Close()
		return nil, fmt.Errorf("p2p: new host: %w", err)
	}
	for _, addr := range hs.listen {
		if err := h.Network().Listen(addr); err != nil {
			_ = h.Close()
			return nil, fmt.Errorf("p2p: listen on %s: %w", addr, err)
		}
	}
	return h, nil
}

// newResourceManager returns a resource manager with libp2p's default limits
// scaled to this machine's memory and file descriptors, and much higher
// stream limits for ProtocolRPC. The host closes it when it closes.
func newResourceManager() (network.ResourceManager, error) {
	limits := rcmgr.DefaultLimits // a copy; its maps are nil, so nothing is shared
	libp2p.SetDefaultServiceLimits(&limits)

	raiseStreams(&limits.SystemBaseLimit, systemStreamsMin)
	raiseStreams(&limits.AllowlistedSystemBaseLimit, systemStreamsMin)
	raiseStreams(&limits.PeerBaseLimit, peerStreamsMin)
	raiseStreams(&limits.TransientBaseLimit, transientStreamMin)
	raiseStreams(&limits.AllowlistedTransientBaseLimit, transientStreamMin)

	limits.AddProtocolLimit(ProtocolRPC,
		rcmgr.BaseLimit{
			StreamsInbound:  rpcStreamsTotal,
			StreamsOutbound: rpcStreamsTotal,
			Streams:         2 * rpcStreamsTotal,
			Memory:          rpcMemoryTotal,
		},
		rcmgr.BaseLimitIncrease{},
	)
	limits.AddProtocolPeerLimit(ProtocolRPC,
		rcmgr.BaseLimit{
			StreamsInbound:  rpcStreamsPerPeer,
			StreamsOutbound: rpcStreamsPerPeer,
			Streams:         2 * rpcStreamsPerPeer,
			Memory:          rpcMemoryPerPeer,
		},
		rcmgr.BaseLimitIncrease{},
	)
	return rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits.AutoScale()))
}

// raiseStreams raises l's stream limits to at least n in each direction.
func raiseStreams(l *rcmgr.BaseLimit, n int) {
	l.StreamsInbound = max(l.StreamsInbound, n)
	l.StreamsOutbound = max(l.StreamsOutbound, n)
	l.Streams = max(l.Streams, 2*n)
}
