package p2p

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// gaterTestPeers returns n distinct peer IDs.
func gaterTestPeers(tb testing.TB, n int) []peer.ID {
	tb.Helper()
	ids := make([]peer.ID, n)
	for i := range ids {
		cfg, err := HostConfig{}.validate()
		if err != nil {
			tb.Fatal(err)
		}
		ids[i], err = peer.IDFromPrivateKey(cfg.identity)
		if err != nil {
			tb.Fatal(err)
		}
	}
	return ids
}

// gaterTestConn is the part of a connection the gater looks at.
type gaterTestConn struct {
	network.Conn // nil: only RemotePeer and the multiaddrs are called
	remote       peer.ID
}

func (c gaterTestConn) RemotePeer() peer.ID { return c.remote }

func (c gaterTestConn) LocalMultiaddr() ma.Multiaddr {
	return ma.StringCast("/ip4/127.0.0.1/tcp/1")
}

func (c gaterTestConn) RemoteMultiaddr() ma.Multiaddr {
	return ma.StringCast("/ip4/127.0.0.1/tcp/2")
}

func TestGaterIntercepts(t *testing.T) {
	ids := gaterTestPeers(t, 2)
	blocked, other := ids[0], ids[1]
	g := NewGater()
	g.Block(blocked)
	addr := ma.StringCast("/ip4/127.0.0.1/tcp/4001")

	tests := []struct {
		name      string
		intercept func(p peer.ID) bool
		refuses   bool // whether a blocked peer is refused
	}{
		{"PeerDial", g.InterceptPeerDial, true},
		{"AddrDial", func(p peer.ID) bool { return g.InterceptAddrDial(p, addr) }, false},
		{"Accept", func(p peer.ID) bool { return g.InterceptAccept(gaterTestConn{remote: p}) }, false},
		{"SecuredInbound", func(p peer.ID) bool {
			return g.InterceptSecured(network.DirInbound, p, gaterTestConn{remote: p})
		}, true},
		{"SecuredOutbound", func(p peer.ID) bool {
			return g.InterceptSecured(network.DirOutbound, p, gaterTestConn{remote: p})
		}, true},
		{"Upgraded", func(p peer.ID) bool {
			allow, reason := g.InterceptUpgraded(gaterTestConn{remote: p})
			if reason != 0 {
				t.Errorf("InterceptUpgraded(%s) reason = %d, want 0", p, reason)
			}
			return allow
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.intercept(other); !got {
				t.Errorf("peer not blocked: refused")
			}
			if got, want := tt.intercept(blocked), !tt.refuses; got != want {
				t.Errorf("blocked peer: allow = %v, want %v", got, want)
			}
		})
	}

	g.Unblock(blocked)
	for _, tt := range tests {
		if !tt.intercept(blocked) {
			t.Errorf("%s: unblocked peer refused", tt.name)
		}
	}
}

func TestGaterBlockUnblock(t *testing.T) {
	ids := gaterTestPeers(t, 3)
	a, b, c := ids[0], ids[1], ids[2]
	tests := []struct {
		name string
		do   func(g *Gater)
		want []peer.ID // blocked afterwards
	}{
		{"nothing", func(*Gater) {}, nil},
		{"block one", func(g *Gater) { g.Block(a) }, []peer.ID{a}},
		{"block several", func(g *Gater) { g.Block(a, b) }, []peer.ID{a, b}},
		{"block twice", func(g *Gater) { g.Block(a); g.Block(a) }, []peer.ID{a}},
		{"block none", func(g *Gater) { g.Block() }, nil},
		{"unblock one of two", func(g *Gater) { g.Block(a, b); g.Unblock(a) }, []peer.ID{b}},
		{"unblock unknown", func(g *Gater) { g.Block(a); g.Unblock(c) }, []peer.ID{a}},
		{"unblock all", func(g *Gater) { g.Block(a, b, c); g.UnblockAll() }, nil},
		{"block after unblock all", func(g *Gater) { g.Block(a); g.UnblockAll(); g.Block(c) }, []peer.ID{c}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewGater()
			tt.do(g)
			for _, id := range ids {
				want := false
				for _, w := range tt.want {
					want = want || w == id
				}
				if got := g.Blocked(id); got != want {
					t.Errorf("Blocked(%s) = %v, want %v", id, got, want)
				}
			}
		})
	}
}

func TestGaterUnblockAllReturnsBlocked(t *testing.T) {
	ids := gaterTestPeers(t, 2)
	g := NewGater()
	g.Block(ids...)
	got := g.unblockAll()
	if len(got) != 2 || !((got[0] == ids[0] && got[1] == ids[1]) || (got[0] == ids[1] && got[1] == ids[0])) {
		t.Fatalf("unblockAll = %v, want %v in any order", got, ids)
	}
	if got := g.unblockAll(); len(got) != 0 {
		t.Fatalf("second unblockAll = %v, want none", got)
	}
}

func TestGaterConcurrent(t *testing.T) {
	ids := gaterTestPeers(t, 4)
	g := NewGater()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := ids[i%len(ids)]
			for range 200 {
				g.Block(id)
				_ = g.InterceptPeerDial(id)
				_ = g.InterceptSecured(network.DirInbound, id, gaterTestConn{remote: id})
				g.Unblock(id)
				if i == 0 {
					g.UnblockAll()
				}
			}
		}()
	}
	wg.Wait()
	g.UnblockAll()
	for _, id := range ids {
		if g.Blocked(id) {
			t.Errorf("%s still blocked after UnblockAll", id)
		}
	}
}

// gaterEchoTimeout is the long-stop bound of one test call; calls that the
// tests expect to fail must fail for another reason than running out of it.
const gaterEchoTimeout = 30 * time.Second

// gaterHold is a request that the test handler holds until its stream
// breaks.
var gaterHold = []byte("hold")

// newGatedTransport returns a transport listening on listen (loopback), with
// gater g (nil: none), answering requests with their echo. A gaterHold
// request is reported on held and answered only when its context ends.
func newGatedTransport(t *testing.T, listen string, g *Gater, held chan<- struct{}) *Transport {
	t.Helper()
	tr, err := NewTransport(TransportConfig{
		Host:   HostConfig{ListenAddrs: []string{listen}},
		RPC:    RPCConfig{CallTimeout: gaterEchoTimeout},
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)),
		Gater:  g,
	})
	if err != nil {
		t.Fatalf("NewTransport: %v", err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	tr.Serve(func(ctx context.Context, _ string, req []byte) ([]byte, error) {
		if bytes.Equal(req, gaterHold) {
			held <- struct{}{}
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return req, nil
	})
	return tr
}

// gaterIntroduce tells every transport where the others listen.
func gaterIntroduce(trs ...*Transport) {
	for _, a := range trs {
		for _, b := range trs {
			if a != b {
				a.AddAddrs(b.ID(), b.Addrs())
			}
		}
	}
}

// gaterCall makes an echo call from one transport to another.
func gaterCall(from, to *Transport) error {
	ctx, cancel := context.WithTimeout(context.Background(), gaterEchoTimeout)
	defer cancel()
	msg := []byte("from " + from.ID())
	got, err := from.Call(ctx, to.ID(), msg)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo returned %q, want %q", got, msg)
	}
	return nil
}

// gaterRefused reports whether a call from one transport to another fails,
// failing the test if it failed only by running out of time.
func gaterRefused(t *testing.T, from, to *Transport) bool {
	t.Helper()
	err := gaterCall(from, to)
	if errors.Is(err, ErrTimeout) {
		t.Fatalf("call timed out instead of failing: %v", err)
	}
	return err != nil
}

// gaterConnected reports whether a has a connection to b.
func gaterConnected(a, b *Transport) bool {
	return len(a.Host().Network().ConnsToPeer(b.Host().ID())) > 0
}

// gaterMustWork fails the test unless calls work both ways between every pair.
func gaterMustWork(t *testing.T, pairs ...[2]*Transport) {
	t.Helper()
	for _, p := range pairs {
		for _, dir := range [][2]*Transport{{p[0], p[1]}, {p[1], p[0]}} {
			if err := gaterCall(dir[0], dir[1]); err != nil {
				t.Fatalf("call %s -> %s: %v", dir[0].ID(), dir[1].ID(), err)
			}
		}
	}
}

// gaterWaitWorks polls until a call from one transport to another works.
func gaterWaitWorks(t *testing.T, what string, from, to *Transport) {
	t.Helper()
	rpcWaitFor(t, what, func() bool { return gaterCall(from, to) == nil })
}

var gaterListenAddrs = []struct {
	name, addr string
}{
	{"tcp", tcpLoopbackAddr},
	{"quic", "/ip4/127.0.0.1/udp/0/quic-v1"},
}

func TestTransportBlockPartitions(t *testing.T) {
	for _, tl := range gaterListenAddrs {
		t.Run(tl.name, func(t *testing.T) {
			held := make(chan struct{}, 1)
			a := newGatedTransport(t, tl.addr, NewGater(), held)
			b := newGatedTransport(t, tl.addr, NewGater(), held)
			c := newGatedTransport(t, tl.addr, NewGater(), held)
			gaterIntroduce(a, b, c)
			gaterMustWork(t, [2]*Transport{a, b}, [2]*Transport{a, c}, [2]*Transport{b, c})

			// A call in flight when the link is cut fails because its
			// stream broke, long before its own deadline.
			inflight := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), gaterEchoTimeout)
				defer cancel()
				_, err := a.Call(ctx, b.ID(), gaterHold)
				inflight <- err
			}()
			<-held

			if err := a.Block([]string{b.ID()}); err != nil {
				t.Fatalf("Block: %v", err)
			}
			if !a.gater.Blocked(b.Host().ID()) {
				t.Fatal("B is not blocked in A's gater")
			}
			if err := <-inflight; !errors.Is(err, ErrStreamBroken) {
				t.Fatalf("call in flight: err = %v, want ErrStreamBroken", err)
			}
			rpcWaitFor(t, "the connection between A and B to close",
				func() bool { return !gaterConnected(a, b) && !gaterConnected(b, a) })

			// A refuses to dial B.
			err := gaterCall(a, b)
			if !errors.Is(err, swarm.ErrGaterDisallowedConnection) {
				t.Fatalf("call A -> B while blocked: err = %v, want the gater's refusal", err)
			}
			_, err = a.Connect(hostTestContext(t), b.FullAddrs()[0])
			if !errors.Is(err, swarm.ErrGaterDisallowedConnection) || errors.Is(err, ErrClusterKeyMismatch) {
				t.Fatalf("Connect A -> B while blocked: err = %v, want the gater's refusal", err)
			}
			// B's dials are refused by A after the handshake.
			rpcWaitFor(t, "calls B -> A to fail", func() bool { return gaterRefused(t, b, a) })
			rpcWaitFor(t, "calls A -> B to fail", func() bool { return gaterRefused(t, a, b) })
			rpcWaitFor(t, "the connection between A and B to stay closed",
				func() bool { return !gaterConnected(a, b) && !gaterConnected(b, a) })

			// C is not part of the partition.
			gaterMustWork(t, [2]*Transport{a, c}, [2]*Transport{b, c})

			if err := a.Unblock([]string{b.ID()}); err != nil {
				t.Fatalf("Unblock: %v", err)
			}
			if a.gater.Blocked(b.Host().ID()) {
				t.Fatal("B is still blocked in A's gater")
			}
			// B may hold a dial backoff for A from its refused dials; A's
			// connection clears it.
			gaterWaitWorks(t, "calls A -> B after Unblock", a, b)
			gaterWaitWorks(t, "calls B -> A after Unblock", b, a)
			gaterMustWork(t, [2]*Transport{a, c}, [2]*Transport{b, c})
		})
	}
}

func TestTransportBlockBothSides(t *testing.T) {
	a := newGatedTransport(t, tcpLoopbackAddr, NewGater(), nil)
	b := newGatedTransport(t, tcpLoopbackAddr, NewGater(), nil)
	gaterIntroduce(a, b)
	gaterMustWork(t, [2]*Transport{a, b})

	for _, p := range [][2]*Transport{{a, b}, {b, a}} {
		if err := p[0].Block([]string{p[1].ID()}); err != nil {
			t.Fatalf("Block: %v", err)
		}
	}
	rpcWaitFor(t, "calls A -> B to fail", func() bool { return gaterRefused(t, a, b) })
	rpcWaitFor(t, "calls B -> A to fail", func() bool { return gaterRefused(t, b, a) })

	for _, p := range [][2]*Transport{{a, b}, {b, a}} {
		if err := p[0].Unblock([]string{p[1].ID()}); err != nil {
			t.Fatalf("Unblock: %v", err)
		}
	}
	gaterWaitWorks(t, "calls B -> A after Unblock", b, a)
	gaterWaitWorks(t, "calls A -> B after Unblock", a, b)
}

// gaterBackoff is the swarm's dial backoff of tr.
func gaterBackoff(t *testing.T, tr *Transport) *swarm.DialBackoff {
	t.Helper()
	sw, ok := tr.Host().Network().(interface{ Backoff() *swarm.DialBackoff })
	if !ok {
		t.Fatalf("network %T has no dial backoff", tr.Host().Network())
	}
	return sw.Backoff()
}

func TestTransportUnblockClearsDialBackoff(t *testing.T) {
	tests := []struct {
		name    string
		unblock func(a, b *Transport) error
	}{
		{"Unblock", func(a, b *Transport) error { return a.Unblock([]string{b.ID()}) }},
		{"UnblockAll", func(a, _ *Transport) error { a.UnblockAll(); return nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newGatedTransport(t, tcpLoopbackAddr, NewGater(), nil)
			b := newGatedTransport(t, tcpLoopbackAddr, NewGater(), nil)
			gaterIntroduce(a, b)
			if err := a.Block([]string{b.ID()}); err != nil {
				t.Fatalf("Block: %v", err)
			}
			// A dial that failed while B was blocked left a backoff.
			bo := gaterBackoff(t, a)
			addr := b.Host().Addrs()[0]
			bo.AddBackoff(b.Host().ID(), addr)
			if !bo.Backoff(b.Host().ID(), addr) {
				t.Fatal("backoff not recorded")
			}
			if err := tt.unblock(a, b); err != nil {
				t.Fatalf("unblock: %v", err)
			}
			if bo.Backoff(b.Host().ID(), addr) {
				t.Fatal("dial backoff survived the unblock")
			}
			// So the first call dials at once.
			if err := gaterCall(a, b); err != nil {
				t.Fatalf("first call after unblock: %v", err)
			}
		})
	}
}

func TestTransportBlockCycles(t *testing.T) {
	a := newGatedTransport(t, tcpLoopbackAddr, NewGater(), nil)
	b := newGatedTransport(t, tcpLoopbackAddr, NewGater(), nil)
	c := newGatedTransport(t, tcpLoopbackAddr, NewGater(), nil)
	gaterIntroduce(a, b, c)
	for i := range 10 {
		if err := a.Block([]string{b.ID(), c.ID()}); err != nil {
			t.Fatalf("cycle %d: Block: %v", i, err)
		}
		rpcWaitFor(t, "calls A -> B to fail", func() bool { return gaterRefused(t, a, b) })
		rpcWaitFor(t, "calls C -> A to fail", func() bool { return gaterRefused(t, c, a) })
		gaterMustWork(t, [2]*Transport{b, c})
		a.UnblockAll()
		gaterWaitWorks(t, "calls A -> B after UnblockAll", a, b)
		gaterWaitWorks(t, "calls B -> A after UnblockAll", b, a)
		gaterWaitWorks(t, "calls A -> C after UnblockAll", a, c)
		gaterWaitWorks(t, "calls C -> A after UnblockAll", c, a)
	}
}

func TestTransportBlockMustFail(t *testing.T) {
	a := newGatedTransport(t, tcpLoopbackAddr, NewGater(), nil)
	goodID := gaterTestPeers(t, 1)[0]
	good := goodID.String()
	bad := []string{
		"",
		"not-a-peer-id",
		good[:len(good)-3],
		good + " ",
		" " + good,
		"/p2p/" + good,
		"/ip4/127.0.0.1/tcp/4001/p2p/" + good,
		"QmInvalid",
		"12D3KooW",
		"bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi", // a CID, but not of a peer ID
		"\x00\xff",
	}
	for _, s := range bad {
		for name, op := range map[string]func([]string) error{"Block": a.Block, "Unblock": a.Unblock} {
			if err := op([]string{good, s}); err == nil {
				t.Errorf("%s(%q) succeeded", name, s)
			} else if !errors.Is(err, ErrInvalidAddr) {
				t.Errorf("%s(%q): err = %v, want ErrInvalidAddr", name, s, err)
			}
		}
		if a.gater.Blocked(goodID) {
			t.Fatalf("Block(%q) with a bad ID blocked the good one", s)
		}
	}
}

func TestTransportNoGater(t *testing.T) {
	a := newGatedTransport(t, tcpLoopbackAddr, nil, nil)
	b := newGatedTransport(t, tcpLoopbackAddr, nil, nil)
	gaterIntroduce(a, b)
	if err := a.Block([]string{b.ID()}); !errors.Is(err, ErrNoGater) {
		t.Errorf("Block: err = %v, want ErrNoGater", err)
	}
	if err := a.Block([]string{"bad"}); !errors.Is(err, ErrNoGater) {
		t.Errorf("Block of a bad ID: err = %v, want ErrNoGater", err)
	}
	if err := a.Unblock([]string{b.ID()}); !errors.Is(err, ErrNoGater) {
		t.Errorf("Unblock: err = %v, want ErrNoGater", err)
	}
	a.UnblockAll() // does nothing
	gaterMustWork(t, [2]*Transport{a, b})
}

func TestNewTransportGaterConfig(t *testing.T) {
	g1, g2 := NewGater(), NewGater()
	tests := []struct {
		name      string
		gater     *Gater // TransportConfig.Gater
		hostGater *Gater // TransportConfig.Host.Gater
		want      *Gater // the transport's gater; nil with wantErr
		wantErr   bool
	}{
		{"none", nil, nil, nil, false},
		{"transport", g1, nil, g1, false},
		{"host", nil, g1, g1, false},
		{"same", g1, g1, g1, false},
		{"different", g1, g2, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := NewTransport(TransportConfig{
				Host:  HostConfig{ListenAddrs: []string{tcpLoopbackAddr}, Gater: tt.hostGater},
				Gater: tt.gater,
			})
			if tt.wantErr {
				if err == nil {
					_ = tr.Close()
					t.Fatal("NewTransport succeeded")
				}
				return
			}
			if err != nil {
				t.Fatalf("NewTransport: %v", err)
			}
			defer func() { _ = tr.Close() }()
			if tr.gater != tt.want {
				t.Fatalf("transport gater = %p, want %p", tr.gater, tt.want)
			}
		})
	}
}

// FuzzTransportBlock checks that Block and Unblock accept exactly the
// strings peer.Decode accepts, and block exactly that peer.
func FuzzTransportBlock(f *testing.F) {
	good := gaterTestPeers(f, 1)[0].String()
	for _, s := range []string{good, "", "not-a-peer-id", good[:20], "/p2p/" + good,
		"QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"} {
		f.Add(s)
	}
	tr, err := NewTransport(TransportConfig{
		Host:  HostConfig{ListenAddrs: []string{tcpLoopbackAddr}},
		Gater: NewGater(),
	})
	if err != nil {
		f.Fatalf("NewTransport: %v", err)
	}
	f.Cleanup(func() { _ = tr.Close() })
	f.Fuzz(func(t *testing.T, s string) {
		defer tr.UnblockAll()
		id, decodeErr := peer.Decode(s)
		err := tr.Block([]string{s})
		if (err == nil) != (decodeErr == nil) {
			t.Fatalf("Block(%q): err = %v, but peer.Decode err = %v", s, err, decodeErr)
		}
		if err != nil {
			return
		}
		if !tr.gater.Blocked(id) {
			t.Fatalf("Block(%q) did not block %s", s, id)
		}
		if err := tr.Unblock([]string{s}); err != nil {
			t.Fatalf("Unblock(%q): %v", s, err)
		}
		if tr.gater.Blocked(id) {
			t.Fatalf("Unblock(%q) did not unblock %s", s, id)
		}
	})
}

func BenchmarkGaterInterceptSecured(b *testing.B) {
	for _, n := range []int{0, 1, 16, 256} {
		b.Run(fmt.Sprintf("blocked=%d", n), func(b *testing.B) {
			g := NewGater()
			g.Block(gaterTestPeers(b, n)...)
			p := gaterTestPeers(b, 1)[0]
			conn := gaterTestConn{remote: p}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if !g.InterceptSecured(network.DirInbound, p, conn) {
					b.Fatal("refused")
				}
			}
		})
	}
}

func BenchmarkTransportBlockUnblock(b *testing.B) {
	tr, err := NewTransport(TransportConfig{
		Host:  HostConfig{ListenAddrs: []string{tcpLoopbackAddr}},
		Gater: NewGater(),
	})
	if err != nil {
		b.Fatalf("NewTransport: %v", err)
	}
	b.Cleanup(func() { _ = tr.Close() })
	ids := []string{gaterTestPeers(b, 1)[0].String()}
	b.ReportAllocs()
	for b.Loop() {
		if err := tr.Block(ids); err != nil {
			b.Fatal(err)
		}
		if err := tr.Unblock(ids); err != nil {
			b.Fatal(err)
		}
	}
}

func ExampleTransport_Block() {
	gater := NewGater()
	a, err := NewTransport(TransportConfig{Gater: gater})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer a.Close()
	b, err := NewTransport(TransportConfig{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Close()

	// Cut the link between a and b, in both directions.
	if err := a.Block([]string{b.ID()}); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("blocked:", gater.Blocked(b.Host().ID()))
	// b has no gater, so it cannot block anyone itself.
	fmt.Println(errors.Is(b.Block([]string{a.ID()}), ErrNoGater))
	a.UnblockAll()
	fmt.Println("blocked:", gater.Blocked(b.Host().ID()))
	// Output:
	// blocked: true
	// true
	// blocked: false
}
