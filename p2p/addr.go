package p2p

import (
	"fmt"
	"slices"
	"strings"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// maxAddrLen caps the length of an address given to ParseJoinAddr. A full
// IPv6 QUIC address with an Ed25519 peer ID is well under 150 bytes.
const maxAddrLen = 1024

// FullAddrs returns the addresses h listens on, each ending in /p2p/<peer ID>,
// sorted and without duplicates: the form another node passes to
// ParseJoinAddr. A wildcard listen address (0.0.0.0, ::) is expanded to the
// addresses of every interface; loopback addresses are included.
func FullAddrs(h host.Host) []string {
	addrs, err := h.Network().InterfaceListenAddresses()
	if err != nil {
		addrs = h.Network().ListenAddresses()
	}
	id, err := ma.NewComponent("p2p", h.ID().String())
	if err != nil {
		return nil // h.ID() is always a valid peer ID
	}
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		if _, last := ma.SplitLast(a); last != nil && last.Code() == ma.P_P2P {
			out = append(out, a.String())
			continue
		}
		out = append(out, a.Encapsulate(id).String())
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ParseJoinAddr parses the full address of a node to join, as printed by
// FullAddrs: an IP address, then tcp or udp+quic-v1 with a non-zero port,
// then /p2p/<peer ID>. Anything else, including DNS names and relay
// addresses, is an error wrapping ErrInvalidAddr.
func ParseJoinAddr(s string) (peer.AddrInfo, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return peer.AddrInfo{}, fmt.Errorf("%w: empty", ErrInvalidAddr)
	}
	if len(s) > maxAddrLen {
		return peer.AddrInfo{}, fmt.Errorf("%w: longer than %d bytes", ErrInvalidAddr, maxAddrLen)
	}
	addr, err := ma.NewMultiaddr(s)
	if err != nil {
		return peer.AddrInfo{}, fmt.Errorf("%w: %q: %w", ErrInvalidAddr, s, err)
	}
	transport, last := ma.SplitLast(addr)
	if last == nil || last.Code() != ma.P_P2P {
		return peer.AddrInfo{}, fmt.Errorf("%w: %q: must end with /p2p/<peer ID>", ErrInvalidAddr, s)
	}
	id, err := peer.Decode(last.Value())
	if err != nil {
		return peer.AddrInfo{}, fmt.Errorf("%w: %q: peer ID: %w", ErrInvalidAddr, s, err)
	}
	if transportOf(transport) == transportNone {
		return peer.AddrInfo{}, fmt.Errorf("%w: %q: want /ip4|ip6/<ip>/tcp/<port>/p2p/<peer ID> or /ip4|ip6/<ip>/udp/<port>/quic-v1/p2p/<peer ID>", ErrInvalidAddr, s)
	}
	if port := portOf(transport); port == "0" {
		return peer.AddrInfo{}, fmt.Errorf("%w: %q: port 0 cannot be dialed", ErrInvalidAddr, s)
	}
	return peer.AddrInfo{ID: id, Addrs: []ma.Multiaddr{transport}}, nil
}

// portOf returns the TCP or UDP port of addr, or "" if it has none.
func portOf(addr ma.Multiaddr) string {
	for _, c := range addr {
		if c.Code() == ma.P_TCP || c.Code() == ma.P_UDP {
			return c.Value()
		}
	}
	return ""
}

type transportKind int

const (
	transportNone transportKind = iota
	transportTCP
	transportQUIC
)

// transportOf reports which of the host's transports handles addr: an IP
// address followed by tcp, or by udp and quic-v1, and nothing else. DNS names
// are not accepted: a listen address needs an IP, and a join address should
// not depend on a resolver.
func transportOf(addr ma.Multiaddr) transportKind {
	if len(addr) < 2 {
		return transportNone
	}
	if c := addr[0].Code(); c != ma.P_IP4 && c != ma.P_IP6 {
		return transportNone
	}
	switch {
	case len(addr) == 2 && addr[1].Code() == ma.P_TCP:
		return transportTCP
	case len(addr) == 3 && addr[1].Code() == ma.P_UDP && addr[2].Code() == ma.P_QUIC_V1:
		return transportQUIC
	}
	return transportNone
}
