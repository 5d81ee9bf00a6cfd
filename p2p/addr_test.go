package p2p

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

const testPeerID = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"

func TestFullAddrs(t *testing.T) {
	h := newHostForTest(t, HostConfig{})
	addrs := FullAddrs(h)
	if len(addrs) != len(h.Network().ListenAddresses()) {
		t.Fatalf("FullAddrs = %v, want one per listen address %v", addrs, h.Network().ListenAddresses())
	}
	if !slices.IsSorted(addrs) {
		t.Errorf("FullAddrs = %v, not sorted", addrs)
	}
	var tcp, quic bool
	for _, a := range addrs {
		if !strings.HasPrefix(a, "/ip4/127.0.0.1/") {
			t.Errorf("%s: not the loopback listen address", a)
		}
		info, err := ParseJoinAddr(a)
		if err != nil {
			t.Fatalf("ParseJoinAddr(%s): %v", a, err)
		}
		if info.ID != h.ID() {
			t.Errorf("%s: peer ID %s, want %s", a, info.ID, h.ID())
		}
		tcp = tcp || strings.Contains(a, "/tcp/")
		quic = quic || strings.Contains(a, "/quic-v1/")
	}
	if !tcp || !quic {
		t.Errorf("FullAddrs = %v, want a TCP and a QUIC address", addrs)
	}

	// Each address works for joining.
	ctx := hostTestContext(t)
	for _, a := range addrs {
		other := newHostForTest(t, HostConfig{})
		info, err := ParseJoinAddr(a)
		if err != nil {
			t.Fatal(err)
		}
		if err := other.Connect(ctx, info); err != nil {
			t.Errorf("Connect(%s): %v", a, err)
		}
	}
}

func TestParseJoinAddr(t *testing.T) {
	tests := []struct {
		in   string
		want string // the transport address
	}{
		{"/ip4/127.0.0.1/tcp/4001/p2p/" + testPeerID, "/ip4/127.0.0.1/tcp/4001"},
		{"  /ip4/10.0.0.7/tcp/65535/p2p/" + testPeerID + "\n", "/ip4/10.0.0.7/tcp/65535"},
		{"/ip4/192.168.1.2/udp/4001/quic-v1/p2p/" + testPeerID, "/ip4/192.168.1.2/udp/4001/quic-v1"},
		{"/ip6/::1/tcp/4001/p2p/" + testPeerID, "/ip6/::1/tcp/4001"},
		{"/ip6/fe80::1/udp/1/quic-v1/p2p/" + testPeerID, "/ip6/fe80::1/udp/1/quic-v1"},
		{"/ip4/127.0.0.1/tcp/4001/ipfs/" + testPeerID, "/ip4/127.0.0.1/tcp/4001"},
	}
	want, err := peer.Decode(testPeerID)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			info, err := ParseJoinAddr(tt.in)
			if err != nil {
				t.Fatalf("ParseJoinAddr: %v", err)
			}
			if info.ID != want {
				t.Errorf("ID %s, want %s", info.ID, want)
			}
			if len(info.Addrs) != 1 || info.Addrs[0].String() != tt.want {
				t.Errorf("Addrs %v, want [%s]", info.Addrs, tt.want)
			}
		})
	}
}

func TestParseJoinAddrMustFail(t *testing.T) {
	inputs := []string{
		"",
		"   ",
		"garbage",
		"127.0.0.1:4001",
		testPeerID,
		"/p2p/" + testPeerID,
		"/ip4/127.0.0.1/tcp/4001",
		"/ip4/127.0.0.1/tcp/4001/",
		"/ip4/127.0.0.1/tcp/4001/p2p/",
		"/ip4/127.0.0.1/tcp/4001/p2p/notapeerid",
		"/ip4/127.0.0.1/tcp/4001/p2p/" + testPeerID + "x",
		"/ip4/127.0.0.1/tcp/0/p2p/" + testPeerID,
		"/ip4/127.0.0.1/udp/0/quic-v1/p2p/" + testPeerID,
		"/ip4/127.0.0.1/tcp/65536/p2p/" + testPeerID,
		"/ip4/256.0.0.1/tcp/4001/p2p/" + testPeerID,
		"/ip4/127.0.0.1/p2p/" + testPeerID,
		"/ip4/127.0.0.1/udp/4001/p2p/" + testPeerID,
		"/ip4/127.0.0.1/udp/4001/quic/p2p/" + testPeerID,
		"/ip4/127.0.0.1/tcp/4001/ws/p2p/" + testPeerID,
		"/dns4/example.com/tcp/4001/p2p/" + testPeerID,
		"/ip4/127.0.0.1/tcp/4001/p2p/" + testPeerID + "/p2p-circuit/p2p/" + testPeerID,
		"/ip4/127.0.0.1/tcp/4001/p2p/" + testPeerID + "/p2p/" + testPeerID,
		"/tcp/4001/p2p/" + testPeerID,
		"/ip4/127.0.0.1/tcp/4001/p2p/" + testPeerID + " extra",
		"/ip4/127.0.0.1/tcp/4001/p2p/" + testPeerID + strings.Repeat("/", 2000),
	}
	for _, in := range inputs {
		t.Run(in, func(t *testing.T) {
			info, err := ParseJoinAddr(in)
			if !errors.Is(err, ErrInvalidAddr) {
				t.Fatalf("ParseJoinAddr = %v, %v; want an error wrapping ErrInvalidAddr", info, err)
			}
		})
	}
}

func FuzzParseJoinAddr(f *testing.F) {
	f.Add("/ip4/127.0.0.1/tcp/4001/p2p/" + testPeerID)
	f.Add("/ip6/::1/udp/4001/quic-v1/p2p/" + testPeerID)
	f.Add("/ip4/127.0.0.1/tcp/4001")
	f.Fuzz(func(t *testing.T, s string) {
		info, err := ParseJoinAddr(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidAddr) {
				t.Fatalf("error %v does not wrap ErrInvalidAddr", err)
			}
			return
		}
		if len(info.Addrs) != 1 || transportOf(info.Addrs[0]) == transportNone {
			t.Fatalf("accepted %q as %v", s, info)
		}
		// The accepted address prints as one that parses to the same peer.
		again, err := ParseJoinAddr(fmt.Sprintf("%s/p2p/%s", info.Addrs[0], info.ID))
		if err != nil || again.ID != info.ID || !again.Addrs[0].Equal(info.Addrs[0]) {
			t.Fatalf("round trip of %q: %v, %v", s, again, err)
		}
	})
}

func ExampleParseJoinAddr() {
	info, err := ParseJoinAddr("/ip4/192.168.1.20/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN")
	if err != nil {
		panic(err)
	}
	fmt.Println(info.ID)
	fmt.Println(info.Addrs)
	// Output:
	// 12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN
	// [/ip4/192.168.1.20/tcp/4001]
}

func BenchmarkParseJoinAddr(b *testing.B) {
	s := "/ip4/192.168.1.20/tcp/4001/p2p/" + testPeerID
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseJoinAddr(s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFullAddrs(b *testing.B) {
	h := newHostForTest(b, HostConfig{})
	b.ReportAllocs()
	for b.Loop() {
		_ = FullAddrs(h)
	}
}
