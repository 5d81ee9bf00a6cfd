package p2p

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// newTestHostRPC returns a libp2p host listening on loopback TCP only, closed
// when the test ends.
func newTestHostRPC(tb testing.TB) host.Host {
	tb.Helper()
	h, err := libp2p.New(
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.ConnectionManager(connmgr.NullConnMgr{}),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
		libp2p.ForceReachabilityPrivate(),
	)
	if err != nil {
		tb.Fatalf("new host: %v", err)
	}
	tb.Cleanup(func() { _ = h.Close() })
	return h
}

// rpcIntroduce tells a where b listens.
func rpcIntroduce(a, b host.Host) {
	a.Peerstore().AddAddrs(b.ID(), b.Addrs(), peerstore.PermanentAddrTTL)
}

// newTestRPC returns an RPC on h with cfg (Host and Logger filled in),
// closed when the test ends, before the host.
func newTestRPC(tb testing.TB, h host.Host, cfg RPCConfig) *RPC {
	tb.Helper()
	cfg.Host = h
	if cfg.Logger == nil {
		if t, ok := tb.(*testing.T); ok {
			cfg.Logger = zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
		}
	}
	r, err := NewRPC(cfg)
	if err != nil {
		tb.Fatalf("NewRPC: %v", err)
	}
	tb.Cleanup(func() { _ = r.Close() })
	return r
}

// rpcPair is a client RPC and a serving RPC on two hosts.
type rpcPair struct {
	clientHost, serverHost host.Host
	client, server         *RPC
}

func newRPCPair(tb testing.TB, clientCfg, serverCfg RPCConfig, h Handler) *rpcPair {
	tb.Helper()
	p := &rpcPair{clientHost: newTestHostRPC(tb), serverHost: newTestHostRPC(tb)}
	rpcIntroduce(p.clientHost, p.serverHost)
	p.client = newTestRPC(tb, p.clientHost, clientCfg)
	p.server = newTestRPC(tb, p.serverHost, serverCfg)
	p.server.Serve(h)
	return p
}

func (p *rpcPair) call(ctx context.Context, req []byte) ([]byte, error) {
	return p.client.Call(ctx, p.serverHost.ID(), req)
}

// rawStream opens a ProtocolRPC stream from the client host to the server,
// for tests that write bytes an RPC would never send.
func (p *rpcPair) rawStream(t *testing.T) network.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := p.clientHost.NewStream(ctx, p.serverHost.ID(), ProtocolRPC)
	if err != nil {
		t.Fatalf("open raw stream: %v", err)
	}
	t.Cleanup(func() { _ = s.Reset() })
	return s
}

// rpcWaitFor polls cond until it holds, failing the test after a long deadline.
func rpcWaitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// rpcWaitReset reads from s until it fails and checks that it failed because
// the other side reset it (not because of the test's own long deadline).
func rpcWaitReset(t *testing.T, s network.Stream) {
	t.Helper()
	_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	for {
		_, err := s.Read(buf)
		if err == nil {
			continue
		}
		if isTimeout(err) {
			t.Fatalf("stream was not reset: %v", err)
		}
		return
	}
}

func rpcEcho(_ context.Context, _ peer.ID, req []byte) ([]byte, error) {
	return req, nil
}

func TestRPCEcho(t *testing.T) {
	var gotFrom atomic.Value
	p := newRPCPair(t, RPCConfig{}, RPCConfig{}, func(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
		gotFrom.Store(from)
		return append([]byte("echo:"), req...), nil
	})
	tests := []struct {
		name string
		size int
	}{
		{"empty", 0},
		{"one byte", 1},
		{"16 bytes", 16},
		{"1 KiB", 1 << 10},
		{"larger than the stream buffer", 100 << 10},
		{"1 MiB", 1 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := bytes.Repeat([]byte{'x'}, tt.size)
			reply, err := p.call(context.Background(), req)
			if err != nil {
				t.Fatalf("Call: %v", err)
			}
			if want := append([]byte("echo:"), req...); !bytes.Equal(reply, want) {
				t.Fatalf("reply of %d bytes, want %d", len(reply), len(want))
			}
		})
	}
	if from, _ := gotFrom.Load().(peer.ID); from != p.clientHost.ID() {
		t.Errorf("handler saw peer %s, want %s", from, p.clientHost.ID())
	}
	if n := p.client.NumStreams(); n != 1 {
		t.Errorf("client has %d streams after sequential calls, want 1", n)
	}
}

func TestRPCConcurrentCallsShareStreams(t *testing.T) {
	const calls = 1000
	const perPeer = 2
	var server *RPC
	var maxServer atomic.Int64
	p := newRPCPair(t, RPCConfig{StreamsPerPeer: perPeer, CallTimeout: 30 * time.Second}, RPCConfig{},
		func(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
			rpcStoreMax(&maxServer, int64(server.NumStreams()))
			return req, nil
		})
	server = p.server

	var maxClient atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, calls)
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := fmt.Appendf(nil, "call %d", i)
			reply, err := p.call(context.Background(), req)
			rpcStoreMax(&maxClient, int64(p.client.NumStreams()))
			switch {
			case err != nil:
				errs <- fmt.Errorf("call %d: %w", i, err)
			case !bytes.Equal(reply, req):
				errs <- fmt.Errorf("call %d: reply %q", i, reply)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := maxClient.Load(); n < 1 || n > perPeer {
		t.Errorf("client had up to %d streams, want 1..%d", n, perPeer)
	}
	if n := maxServer.Load(); n < 1 || n > perPeer {
		t.Errorf("server had up to %d streams, want 1..%d", n, perPeer)
	}
}

func rpcStoreMax(m *atomic.Int64, v int64) {
	for {
		old := m.Load()
		if v <= old || m.CompareAndSwap(old, v) {
			return
		}
	}
}

func TestRPCRepliesOutOfOrder(t *testing.T) {
	const n = 8
	var gates [n]chan struct{}
	for i := range gates {
		gates[i] = make(chan struct{})
	}
	started := make(chan int, n)
	p := newRPCPair(t, RPCConfig{StreamsPerPeer: 1}, RPCConfig{},
		func(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
			var i int
			if _, err := fmt.Sscanf(string(req), "req %d", &i); err != nil {
				return nil, err
			}
			started <- i
			select {
			case <-gates[i]:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return fmt.Appendf(nil, "reply %d", i), nil
		})

	type result struct {
		i     int
		reply string
		err   error
	}
	results := make(chan result, n)
	for i := range n {
		go func() {
			reply, err := p.call(context.Background(), fmt.Appendf(nil, "req %d", i))
			results <- result{i, string(reply), err}
		}()
	}
	for range n {
		<-started // every request is in its handler, on the one stream
	}
	// Release the handlers last to first; each reply must reach its caller.
	for i := n - 1; i >= 0; i-- {
		close(gates[i])
		r := <-results
		if r.err != nil || r.i != i || r.reply != fmt.Sprintf("reply %d", i) {
			t.Fatalf("released %d, got call %d: %q, %v", i, r.i, r.reply, r.err)
		}
	}
	if got := p.client.NumStreams(); got != 1 {
		t.Errorf("client has %d streams, want 1", got)
	}
}

func TestRPCRemoteError(t *testing.T) {
	long := strings.Repeat("é", 600) // 1200 bytes: cut to 1024, on a character boundary
	p := newRPCPair(t, RPCConfig{}, RPCConfig{}, func(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
		switch string(req) {
		case "long":
			return []byte("ignored"), errors.New(long)
		case "empty":
			return nil, errors.New("")
		default:
			return nil, fmt.Errorf("no such key %q", req)
		}
	})
	tests := []struct {
		req     string
		wantMsg string
	}{
		{"k1", `no such key "k1"`},
		{"empty", ""},
		{"long", long[:1024]},
	}
	for _, tt := range tests {
		t.Run(tt.req, func(t *testing.T) {
			reply, err := p.call(context.Background(), []byte(tt.req))
			var re *RemoteError
			if !errors.As(err, &re) {
				t.Fatalf("Call = %q, %v; want a *RemoteError", reply, err)
			}
			if re.Msg != tt.wantMsg {
				t.Errorf("Msg = %q, want %q", re.Msg, tt.wantMsg)
			}
			if reply != nil {
				t.Errorf("reply %q with an error", reply)
			}
		})
	}
}

func TestRPCHandlerPanic(t *testing.T) {
	p := newRPCPair(t, RPCConfig{}, RPCConfig{Logger: zap.NewNop()}, func(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
		if string(req) == "panic" {
			panic("handler bug")
		}
		return req, nil
	})
	for range 3 {
		_, err := p.call(context.Background(), []byte("panic"))
		var re *RemoteError
		if !errors.As(err, &re) || !strings.Contains(re.Msg, "handler bug") {
			t.Fatalf("Call(panic) = %v, want a RemoteError about the panic", err)
		}
		reply, err := p.call(context.Background(), []byte("ok"))
		if err != nil || string(reply) != "ok" {
			t.Fatalf("Call(ok) after a panic = %q, %v", reply, err)
		}
	}
}

func TestRPCUnreachablePeer(t *testing.T) {
	client := newTestRPC(t, newTestHostRPC(t), RPCConfig{CallTimeout: 2 * time.Second})

	// A peer that answered once and whose host then closed.
	gone := newTestHostRPC(t)
	goneRPC := newTestRPC(t, gone, RPCConfig{})
	goneRPC.Serve(rpcEcho)
	rpcIntroduce(client.host, gone)
	if _, err := client.Call(context.Background(), gone.ID(), []byte("hi")); err != nil {
		t.Fatalf("first call: %v", err)
	}
	_ = goneRPC.Close()
	_ = gone.Close()

	// A peer nobody knows an address for.
	unknown := newTestHostRPC(t).ID()

	// A peer that is up but does not serve the protocol.
	mute := newTestHostRPC(t)
	rpcIntroduce(client.host, mute)

	for _, tt := range []struct {
		name string
		id   peer.ID
	}{{"host closed", gone.ID()}, {"no address", unknown}, {"protocol not served", mute.ID()}} {
		t.Run(tt.name, func(t *testing.T) {
			reply, err := client.Call(context.Background(), tt.id, []byte("hi"))
			if err == nil {
				t.Fatalf("Call = %q, want an error", reply)
			}
			t.Logf("error: %v", err)
		})
	}
	if n := client.NumStreams(); n != 0 {
		t.Errorf("client has %d streams, want 0", n)
	}
}

func TestRPCContextCancel(t *testing.T) {
	started := make(chan string, 4)
	release := make(chan struct{})
	p := newRPCPair(t, RPCConfig{StreamsPerPeer: 1, CallTimeout: 10 * time.Second}, RPCConfig{},
		func(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
			if string(req) == "slow" {
				started <- "slow"
				select {
				case <-release:
				case <-ctx.Done():
				}
			}
			return req, nil
		})
	if _, err := p.call(context.Background(), []byte("warm up")); err != nil {
		t.Fatal(err)
	}

	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := p.call(ctx, []byte("slow"))
			done <- err
		}()
		<-started
		cancel()
		err := <-done
		if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.Canceled) {
			t.Fatalf("Call = %v, want ErrTimeout wrapping context.Canceled", err)
		}
		release <- struct{}{} // the late reply arrives and is dropped
	})
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		done := make(chan error, 1)
		go func() {
			_, err := p.call(ctx, []byte("slow"))
			done <- err
		}()
		<-started
		err := <-done
		if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Call = %v, want ErrTimeout wrapping context.DeadlineExceeded", err)
		}
		release <- struct{}{}
	})
	t.Run("already done", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := p.call(ctx, []byte("x")); !errors.Is(err, ErrTimeout) {
			t.Fatalf("Call = %v, want ErrTimeout", err)
		}
	})

	// The stream survived: the next call uses it.
	reply, err := p.call(context.Background(), []byte("after"))
	if err != nil || string(reply) != "after" {
		t.Fatalf("Call after cancel = %q, %v", reply, err)
	}
	if n := p.client.NumStreams(); n != 1 {
		t.Errorf("client has %d streams, want the one it had", n)
	}
}

func TestRPCCallTimeout(t *testing.T) {
	p := newRPCPair(t, RPCConfig{CallTimeout: 50 * time.Millisecond}, RPCConfig{},
		func(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
			<-ctx.Done() // never answers on its own
			return nil, ctx.Err()
		})
	_, err := p.call(context.Background(), []byte("x"))
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Call = %v, want ErrTimeout", err)
	}
}

func TestRPCFrameTooLarge(t *testing.T) {
	const limit = 4096
	p := newRPCPair(t, RPCConfig{MaxFrameBytes: 1 << 20}, RPCConfig{MaxFrameBytes: limit},
		func(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
			if string(req) == "big reply" {
				return make([]byte, limit), nil
			}
			return req, nil
		})
	alive := func(t *testing.T) {
		t.Helper()
		reply, err := p.call(context.Background(), []byte("alive?"))
		if err != nil || string(reply) != "alive?" {
			t.Fatalf("server not serving: %q, %v", reply, err)
		}
	}

	t.Run("refused before sending", func(t *testing.T) {
		small := newTestRPC(t, p.clientHost, RPCConfig{MaxFrameBytes: limit})
		_, err := small.Call(context.Background(), p.serverHost.ID(), make([]byte, limit))
		if !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("Call = %v, want ErrFrameTooLarge", err)
		}
		if n := small.NumStreams(); n != 0 {
			t.Errorf("%d streams opened for a refused request", n)
		}
		if _, err := small.Call(context.Background(), p.serverHost.ID(), make([]byte, limit-frameOverhead)); err != nil {
			t.Errorf("request at the limit: %v", err)
		}
	})
	t.Run("over the server's limit", func(t *testing.T) {
		_, err := p.call(context.Background(), make([]byte, 2*limit))
		if !errors.Is(err, ErrStreamBroken) {
			t.Fatalf("Call = %v, want ErrStreamBroken", err)
		}
		alive(t)
	})
	t.Run("reply over the limit", func(t *testing.T) {
		_, err := p.call(context.Background(), []byte("big reply"))
		var re *RemoteError
		if !errors.As(err, &re) || !strings.Contains(re.Msg, ErrFrameTooLarge.Error()) {
			t.Fatalf("Call = %v, want a RemoteError saying the frame is too large", err)
		}
		alive(t)
	})
	t.Run("crafted frame", func(t *testing.T) {
		s := p.rawStream(t)
		var hdr []byte
		hdr = rpcAppendUvarint(hdr, 1<<30) // announces 1 GiB
		hdr = append(hdr, frameRequest, 1)
		if _, err := s.Write(hdr); err != nil {
			t.Fatal(err)
		}
		rpcWaitReset(t, s)
		alive(t)
	})
}

func TestRPCCorruptFrameOnStream(t *testing.T) {
	p := newRPCPair(t, RPCConfig{}, RPCConfig{}, rpcEcho)
	for _, tt := range []struct {
		name  string
		bytes []byte
	}{
		{"zero length", []byte{0}},
		{"unknown type", []byte{2, 9, 1}},
		{"reply sent to the server", []byte{2, frameReply, 1}},
		{"truncated id", []byte{2, frameRequest, 0x80}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := p.rawStream(t)
			if _, err := s.Write(tt.bytes); err != nil {
				t.Fatal(err)
			}
			rpcWaitReset(t, s)
		})
	}
	if reply, err := p.call(context.Background(), []byte("ok")); err != nil || string(reply) != "ok" {
		t.Fatalf("server not serving: %q, %v", reply, err)
	}
}

func TestRPCStalledFrame(t *testing.T) {
	p := newRPCPair(t, RPCConfig{}, RPCConfig{FrameTimeout: 100 * time.Millisecond}, rpcEcho)
	s := p.rawStream(t)
	// A request announcing 100 bytes, of which only 10 arrive.
	half := append(rpcAppendUvarint(nil, 100), frameRequest, 1)
	half = append(half, make([]byte, 8)...)
	if _, err := s.Write(half); err != nil {
		t.Fatal(err)
	}
	rpcWaitReset(t, s)
	rpcWaitFor(t, "the server to drop the stream", func() bool { return p.server.NumStreams() == 0 })
}

func TestRPCIdleTimeout(t *testing.T) {
	const idle = 100 * time.Millisecond
	p := newRPCPair(t, RPCConfig{IdleTimeout: idle}, RPCConfig{IdleTimeout: idle}, rpcEcho)
	for round := range 2 {
		if _, err := p.call(context.Background(), []byte("hi")); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if c, s := p.client.NumStreams(), p.server.NumStreams(); c != 1 || s > 1 {
			t.Fatalf("round %d: client %d, server %d streams; want 1 and at most 1", round, c, s)
		}
		rpcWaitFor(t, "both sides to close the idle stream", func() bool {
			return p.client.NumStreams() == 0 && p.server.NumStreams() == 0
		})
	}
}

func TestRPCIdleKeepsBusyStream(t *testing.T) {
	const idle = 20 * time.Millisecond
	release := make(chan struct{})
	started := make(chan struct{})
	p := newRPCPair(t, RPCConfig{IdleTimeout: idle, CallTimeout: time.Minute}, RPCConfig{IdleTimeout: idle},
		func(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
			close(started)
			<-release
			return req, nil
		})
	var clientChecks, serverChecks atomic.Int64
	p.client.testIdleCheck = func() { clientChecks.Add(1) }
	p.server.testIdleCheck = func() { serverChecks.Add(1) }
	done := make(chan error, 1)
	go func() {
		_, err := p.call(context.Background(), []byte("long"))
		done <- err
	}()
	<-started
	// Both sides find the stream idle for longer than IdleTimeout, several
	// times, but the call in flight keeps it open.
	rpcWaitFor(t, "idle checks on both sides", func() bool {
		return clientChecks.Load() >= 3 && serverChecks.Load() >= 2
	})
	if c, s := p.client.NumStreams(), p.server.NumStreams(); c != 1 || s != 1 {
		t.Fatalf("client %d, server %d streams with a call in flight; want 1 and 1", c, s)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("long call: %v", err)
	}
}

func TestRPCInboundIdleBackstop(t *testing.T) {
	const idle = 50 * time.Millisecond
	p := newRPCPair(t, RPCConfig{}, RPCConfig{IdleTimeout: idle}, rpcEcho)
	s := p.rawStream(t)
	// One request, its reply, then silence from a caller that never closes.
	bw := bufio.NewWriter(s)
	if err := writeFrame(bw, frameRequest, 7, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
	f, err := readFrame(bufio.NewReader(s), 1<<10)
	if err != nil || f.typ != frameReply || f.id != 7 || string(f.payload) != "hi" {
		t.Fatalf("reply = %+v, %v", f, err)
	}
	rpcWaitFor(t, "the server to close the silent stream", func() bool { return p.server.NumStreams() == 0 })
}

func TestRPCMaxInflight(t *testing.T) {
	const maxInflight = 2
	const calls = 6
	var running, maxRunning atomic.Int64
	started := make(chan struct{}, calls)
	release := make(chan struct{})
	p := newRPCPair(t, RPCConfig{StreamsPerPeer: 1}, RPCConfig{MaxInflight: maxInflight},
		func(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
			rpcStoreMax(&maxRunning, running.Add(1))
			defer running.Add(-1)
			started <- struct{}{}
			<-release
			return req, nil
		})
	errs := make(chan error, calls)
	for i := range calls {
		go func() {
			_, err := p.call(context.Background(), fmt.Appendf(nil, "%d", i))
			errs <- err
		}()
	}
	for range maxInflight {
		<-started
	}
	close(release)
	for range calls {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if n := maxRunning.Load(); n > maxInflight {
		t.Errorf("%d handlers ran at once on one stream, want at most %d", n, maxInflight)
	}
}

func TestRPCStreamBroken(t *testing.T) {
	started := make(chan struct{}, 1)
	slow := func(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
		if string(req) == "slow" {
			started <- struct{}{}
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return req, nil
	}
	p := newRPCPair(t, RPCConfig{}, RPCConfig{}, slow)
	done := make(chan error, 1)
	go func() {
		_, err := p.call(context.Background(), []byte("slow"))
		done <- err
	}()
	<-started
	_ = p.server.Close() // resets the stream under the pending call
	if err := <-done; !errors.Is(err, ErrStreamBroken) {
		t.Fatalf("Call = %v, want ErrStreamBroken", err)
	}
	rpcWaitFor(t, "the broken stream to leave the pool", func() bool { return p.client.NumStreams() == 0 })

	// A new server on the same host: the next call opens a fresh stream.
	newTestRPC(t, p.serverHost, RPCConfig{}).Serve(rpcEcho)
	reply, err := p.call(context.Background(), []byte("again"))
	if err != nil || string(reply) != "again" {
		t.Fatalf("Call on a fresh stream = %q, %v", reply, err)
	}
}

func TestRPCClose(t *testing.T) {
	const pending = 5
	started := make(chan struct{}, pending)
	p := newRPCPair(t, RPCConfig{}, RPCConfig{}, func(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
		started <- struct{}{}
		<-ctx.Done() // returns only when the server closes or the stream breaks
		return nil, ctx.Err()
	})
	errs := make(chan error, pending)
	for range pending {
		go func() {
			_, err := p.call(context.Background(), []byte("wait"))
			errs <- err
		}()
	}
	for range pending {
		<-started
	}
	if err := p.client.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for range pending {
		if err := <-errs; !errors.Is(err, ErrClosed) {
			t.Errorf("pending Call = %v, want ErrClosed", err)
		}
	}
	if err := p.client.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := p.call(context.Background(), []byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("Call after Close = %v, want ErrClosed", err)
	}
	if n := p.client.NumStreams(); n != 0 {
		t.Errorf("%d streams after Close", n)
	}
	// The server's handlers see the stream break and return; Close waits.
	rpcWaitFor(t, "the server to drop the reset stream", func() bool { return p.server.NumStreams() == 0 })
	if err := p.server.Close(); err != nil {
		t.Fatalf("server Close: %v", err)
	}
}

func TestRPCCloseConcurrentWithCalls(t *testing.T) {
	p := newRPCPair(t, RPCConfig{}, RPCConfig{}, rpcEcho)
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_, err := p.call(context.Background(), []byte("x"))
				if errors.Is(err, ErrClosed) {
					return
				}
			}
		}()
	}
	rpcWaitFor(t, "calls to flow", func() bool { return p.client.NumStreams() > 0 })
	_ = p.client.Close()
	wg.Wait()
}

func TestRPCServeTwiceAndAfterClose(t *testing.T) {
	p := newRPCPair(t, RPCConfig{}, RPCConfig{Logger: zap.NewNop()}, rpcEcho)
	p.server.Serve(func(context.Context, peer.ID, []byte) ([]byte, error) { return []byte("second"), nil })
	reply, err := p.call(context.Background(), []byte("first"))
	if err != nil || string(reply) != "first" {
		t.Fatalf("Call = %q, %v; the first handler must stay", reply, err)
	}
	closed := newTestRPC(t, newTestHostRPC(t), RPCConfig{Logger: zap.NewNop()})
	_ = closed.Close()
	closed.Serve(rpcEcho) // does nothing
}

func TestNewRPCConfig(t *testing.T) {
	h := newTestHostRPC(t)
	bad := []struct {
		name string
		cfg  RPCConfig
	}{
		{"no host", RPCConfig{}},
		{"negative streams", RPCConfig{Host: h, StreamsPerPeer: -1}},
		{"negative frame size", RPCConfig{Host: h, MaxFrameBytes: -1}},
		{"frame size too small", RPCConfig{Host: h, MaxFrameBytes: 100}},
		{"negative call timeout", RPCConfig{Host: h, CallTimeout: -time.Second}},
		{"negative frame timeout", RPCConfig{Host: h, FrameTimeout: -time.Second}},
		{"negative idle timeout", RPCConfig{Host: h, IdleTimeout: -time.Second}},
		{"negative inflight", RPCConfig{Host: h, MaxInflight: -1}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewRPC(tt.cfg); !errors.Is(err, ErrInvalidRPCConfig) {
				t.Fatalf("NewRPC = %v, want ErrInvalidRPCConfig", err)
			}
		})
	}
	r, err := NewRPC(RPCConfig{Host: h})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	want := RPCConfig{
		Host: h, Logger: r.cfg.Logger, StreamsPerPeer: 2, MaxFrameBytes: 64 << 20,
		CallTimeout: 5 * time.Second, FrameTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxInflight: 1024,
	}
	if r.cfg != want || r.cfg.Logger == nil {
		t.Errorf("defaults = %+v, want %+v", r.cfg, want)
	}
	if n := r.NumStreams(); n != 0 {
		t.Errorf("NumStreams = %d before anything", n)
	}
}

func rpcAppendUvarint(b []byte, x uint64) []byte {
	for x >= 0x80 {
		b = append(b, byte(x)|0x80)
		x >>= 7
	}
	return append(b, byte(x))
}

func ExampleRPC() {
	newHost := func() host.Host {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
		if err != nil {
			panic(err)
		}
		return h
	}
	serverHost, clientHost := newHost(), newHost()
	defer serverHost.Close()
	defer clientHost.Close()
	clientHost.Peerstore().AddAddrs(serverHost.ID(), serverHost.Addrs(), peerstore.PermanentAddrTTL)

	server, _ := NewRPC(RPCConfig{Host: serverHost})
	defer server.Close()
	server.Serve(func(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
		return append([]byte("hello, "), req...), nil
	})

	client, _ := NewRPC(RPCConfig{Host: clientHost})
	defer client.Close()
	reply, err := client.Call(context.Background(), serverHost.ID(), []byte("world"))
	fmt.Println(string(reply), err)
	// Output: hello, world <nil>
}

// gateWriter blocks in its first Write until released, and records when a
// Write returned.
type gateWriter struct {
	once     sync.Once
	entered  chan struct{}
	release  chan struct{}
	returned atomic.Bool
}

func (g *gateWriter) Write(p []byte) (int, error) {
	g.once.Do(func() {
		close(g.entered)
		<-g.release
	})
	g.returned.Store(true)
	return len(p), nil
}

func TestCallReleaseWaitsForWriter(t *testing.T) {
	g := &gateWriter{entered: make(chan struct{}), release: make(chan struct{})}
	bw := bufio.NewWriterSize(g, 64)
	c := &call{id: 1, done: make(chan callResult, 1)}
	payload := make([]byte, 1024) // larger than the buffer: written straight through
	wrote := make(chan error, 1)
	go func() { wrote <- writeQueued(bw, outFrame{typ: frameRequest, id: 1, payload: payload, c: c}) }()
	<-g.entered // the writer is inside Write with the payload

	released := make(chan bool, 1)
	go func() {
		c.release()
		released <- g.returned.Load()
	}()
	close(g.release)
	if writerDone := <-released; !writerDone {
		t.Fatal("release returned while the writer still held the payload")
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
}

func TestCallReleaseWithdrawsQueued(t *testing.T) {
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	c := &call{id: 1, done: make(chan callResult, 1)}
	c.release() // the caller leaves before the writer takes the frame
	if err := writeQueued(bw, outFrame{typ: frameRequest, id: 1, payload: []byte("x"), c: c}); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 0 {
		t.Fatalf("a withdrawn request was written: %x", buf.Bytes())
	}

	// A request written in full leaves nothing to wait for.
	c = &call{id: 2, done: make(chan callResult, 1)}
	if err := writeQueued(bw, outFrame{typ: frameRequest, id: 2, payload: []byte("y"), c: c}); err != nil {
		t.Fatal(err)
	}
	c.release()
	if got := c.state.Load(); got != callWritten {
		t.Fatalf("state %d after a full write, want callWritten", got)
	}
}
