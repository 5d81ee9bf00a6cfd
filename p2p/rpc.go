package p2p

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/zap"
)

// Errors returned by RPC. Returned errors wrap them with details; test with
// errors.Is.
var (
	// ErrClosed is returned by calls made on, or pending when, the RPC closes.
	ErrClosed = errors.New("p2p: rpc closed")
	// ErrFrameTooLarge reports a request or reply over the frame size cap.
	ErrFrameTooLarge = errors.New("p2p: frame too large")
	// ErrCorruptFrame reports bytes on a stream that do not follow the frame
	// format; the stream is reset.
	ErrCorruptFrame = errors.New("p2p: corrupt frame")
	// ErrStreamBroken means the stream carrying the call failed before the
	// reply arrived. The request may or may not have been handled.
	ErrStreamBroken = errors.New("p2p: stream broken")
	// ErrTimeout means no reply came within the call's deadline (or its
	// context was cancelled). The request may or may not have been handled.
	ErrTimeout = errors.New("p2p: request timed out")
	// ErrInvalidRPCConfig reports an RPCConfig that NewRPC cannot use.
	ErrInvalidRPCConfig = errors.New("p2p: invalid rpc config")
)

// RemoteError is the error Call returns when, and only when, the peer
// answered the request with an error reply. The peer's handler ran in
// every such case, and either returned an error (Msg is its text),
// panicked (Msg is "p2p: handler panicked: " and the panic value) or
// returned a reply over the peer's frame cap (Msg is the text of an
// ErrFrameTooLarge error). Msg is cut to 1 KiB. Only the text crosses the
// network, so errors.Is matches none of the peer's errors through a
// RemoteError.
type RemoteError struct{ Msg string }

func (e *RemoteError) Error() string { return "p2p: remote error: " + e.Msg }

// Handler answers one request from peer from. ctx is cancelled when the RPC
// closes or the stream the request came on breaks. The handler owns req; the
// RPC reads the returned reply after the handler returns, so the handler must
// not change it afterwards. Handlers run concurrently and may panic: the
// panic is logged and answered with an error reply. RPC.Close waits for
// running handlers, so a handler must return once ctx is done.
type Handler func(ctx context.Context, from peer.ID, req []byte) ([]byte, error)

// RPCConfig configures an RPC. Zero values mean the defaults.
type RPCConfig struct {
	Host   host.Host   // required
	Logger *zap.Logger // nil logs nothing

	// StreamsPerPeer is how many outbound streams are kept per peer (default
	// 2). They are opened lazily, a new one only while the open ones are busy,
	// and each call goes to the least loaded.
	StreamsPerPeer int
	// MaxFrameBytes caps a frame (default 64 MiB, at least 4 KiB): frames
	// announcing more are refused with ErrFrameTooLarge and the stream is
	// reset. Requests and replies may carry at most MaxFrameBytes-11 bytes;
	// a larger request fails before anything is sent, a larger reply is
	// answered with an error reply.
	MaxFrameBytes int
	// CallTimeout bounds a call, dialling included, when its context has a
	// later deadline or none (default 5 s).
	CallTimeout time.Duration
	// FrameTimeout is how long the rest of a frame may take once its first
	// byte has been read (default 10 s). It also bounds each write: a write
	// that makes no progress fails after between 15/8 and two FrameTimeouts.
	FrameTimeout time.Duration
	// IdleTimeout closes an outbound stream that has had nothing in flight and
	// no traffic for this long (default 2 min); the next call opens a new one.
	// The check runs once per IdleTimeout, so a stream is closed between one
	// and two IdleTimeouts after it fell quiet. The closing side is the
	// caller's; the accepting side closes in turn. As a backstop against
	// callers that vanish, an inbound stream closes itself after three to six
	// IdleTimeouts of silence, late enough not to race a caller that follows
	// the same rule.
	IdleTimeout time.Duration
	// MaxInflight is how many requests of one inbound stream may be in
	// progress at once (default 1024). At the cap the stream's reader stops
	// reading, which pushes back on the caller through flow control.
	MaxInflight int
}

// Defaults and fixed sizes.
const (
	defaultStreamsPerPeer = 2
	// spillInflight is how many calls may wait on a stream before the
	// pool sends new calls to another one.
	spillInflight        = 64
	defaultMaxFrameBytes = 64 << 20
	defaultCallTimeout   = 5 * time.Second
	defaultFrameTimeout  = 10 * time.Second
	defaultIdleTimeout   = 2 * time.Minute
	defaultMaxInflight   = 1024

	// minFrameBytes leaves room for any error reply.
	minFrameBytes = 4 << 10
	// inboundIdleFactor multiplies IdleTimeout for inbound streams.
	inboundIdleFactor = 3
	// writeTimeoutFrames multiplies FrameTimeout for the write deadline.
	// deadline.Writer gives each write 15/16 of its Timeout to all of it,
	// so two FrameTimeouts give every write at least one.
	writeTimeoutFrames = 2
	// streamQueueLen is the capacity of a stream's outgoing frame queue.
	streamQueueLen = 128
	// streamBufferSize is the size of each stream's read and write buffers.
	streamBufferSize = 32 << 10
)

func (c *RPCConfig) validate() error {
	if c.Host == nil {
		return fmt.Errorf("%w: Host is required", ErrInvalidRPCConfig)
	}
	if c.StreamsPerPeer < 0 || c.MaxFrameBytes < 0 || c.CallTimeout < 0 ||
		c.FrameTimeout < 0 || c.IdleTimeout < 0 || c.MaxInflight < 0 {
		return fmt.Errorf("%w: negative value", ErrInvalidRPCConfig)
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	c.StreamsPerPeer = cmp.Or(c.StreamsPerPeer, defaultStreamsPerPeer)
	c.MaxFrameBytes = cmp.Or(c.MaxFrameBytes, defaultMaxFrameBytes)
	if c.MaxFrameBytes < minFrameBytes {
		return fmt.Errorf("%w: MaxFrameBytes %d is below %d", ErrInvalidRPCConfig, c.MaxFrameBytes, minFrameBytes)
	}
	c.CallTimeout = cmp.Or(c.CallTimeout, defaultCallTimeout)
	c.FrameTimeout = cmp.Or(c.FrameTimeout, defaultFrameTimeout)
	c.IdleTimeout = cmp.Or(c.IdleTimeout, defaultIdleTimeout)
	c.MaxInflight = cmp.Or(c.MaxInflight, defaultMaxInflight)
	return nil
}

// RPC is the request/response protocol between nodes (ProtocolRPC). Calls to
// a peer share a small pool of long-lived streams; each stream carries many
// requests at once, matched to their replies by id. Each stream has one
// writer goroutine, which batches queued frames and flushes when the queue is
// empty, and one reader goroutine. Inbound requests run each in their own
// goroutine.
type RPC struct {
	cfg        RPCConfig
	host       host.Host
	log        *zap.Logger
	maxPayload int

	baseCtx    context.Context // parent of handler contexts and stream opens
	cancelBase context.CancelFunc
	closed     chan struct{} // closed by Close
	wg         sync.WaitGroup

	// testIdleCheck, if set before the first stream, is called at every idle
	// check; tests use it to wait for the checks instead of for time.
	testIdleCheck func()

	timers  sync.Pool // *time.Timer, stopped
	readers bufPool[*bufio.Reader, io.Reader]
	writers bufPool[*bufio.Writer, io.Writer]

	mu       sync.Mutex // guards the fields below and the pool fields of outStream
	isClosed bool
	serving  bool
	handler  Handler
	peers    map[peer.ID]*peerPool
	numOut   int // outbound streams not yet torn down
	inbound  map[*inStream]struct{}
}

// NewRPC validates cfg and fills in defaults. It starts nothing: call Serve
// to answer requests; Call works at once.
func NewRPC(cfg RPCConfig) (*RPC, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &RPC{
		cfg:        cfg,
		host:       cfg.Host,
		log:        cfg.Logger,
		maxPayload: maxPayload(cfg.MaxFrameBytes),
		baseCtx:    ctx,
		cancelBase: cancel,
		closed:     make(chan struct{}),
		readers:    bufPool[*bufio.Reader, io.Reader]{newSize: bufio.NewReaderSize},
		writers:    bufPool[*bufio.Writer, io.Writer]{newSize: bufio.NewWriterSize},
		peers:      make(map[peer.ID]*peerPool),
		inbound:    make(map[*inStream]struct{}),
	}, nil
}

// Serve registers h as the answer to peers' requests, by setting the host's
// stream handler for ProtocolRPC. Until Serve, inbound streams are refused.
// Call it at most once; later calls, and calls after Close, do nothing.
func (r *RPC) Serve(h Handler) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if h == nil || r.isClosed || r.serving {
		r.log.Error("p2p: rpc Serve ignored", zap.Bool("nilHandler", h == nil),
			zap.Bool("closed", r.isClosed), zap.Bool("alreadyServing", r.serving))
		return
	}
	r.serving = true
	r.handler = h
	r.host.SetStreamHandler(ProtocolRPC, r.handleStream)
}

// Close removes the stream handler, resets every stream, fails pending calls
// with ErrClosed and waits for every goroutine the RPC started, handlers
// included. It does not close the host. It is idempotent.
func (r *RPC) Close() error {
	r.mu.Lock()
	if r.isClosed {
		r.mu.Unlock()
		r.wg.Wait()
		return nil
	}
	r.isClosed = true
	close(r.closed)
	r.cancelBase()
	if r.serving {
		r.host.RemoveStreamHandler(ProtocolRPC)
	}
	var streams []network.Stream
	for _, p := range r.peers {
		for _, st := range p.streams {
			streams = append(streams, st.s)
		}
	}
	for in := range r.inbound {
		streams = append(streams, in.s)
	}
	r.mu.Unlock()

	// The readers see the resets, fail their pending calls and end; the
	// writers follow.
	for _, s := range streams {
		_ = s.Reset()
	}
	r.wg.Wait()
	return nil
}

// NumStreams returns the number of open outbound and inbound streams.
func (r *RPC) NumStreams() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.numOut + len(r.inbound)
}

// Call sends req to peer to and returns its reply. It fails with ErrTimeout
// when ctx is done or CallTimeout passes first, *RemoteError when the peer
// answered with an error reply, ErrStreamBroken when the stream failed before
// the reply, ErrClosed when the RPC is closed, ErrFrameTooLarge for a request
// over the cap, and the host's error (wrapped, text kept) when the peer
// cannot be reached or refuses the protocol.
//
// Call does not modify req and does not read it after returning.
func (r *RPC) Call(ctx context.Context, to peer.ID, req []byte) ([]byte, error) {
	if len(req) > r.maxPayload {
		return nil, fmt.Errorf("%w: request of %d bytes, limit %d", ErrFrameTooLarge, len(req), r.maxPayload)
	}
	cd := callDeadline{ctx: ctx}
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > r.cfg.CallTimeout {
		t := r.getTimer(r.cfg.CallTimeout)
		defer r.putTimer(t)
		cd.expired = t.C
		cd.deadline = time.Now().Add(r.cfg.CallTimeout)
	}
	for {
		st, err := r.acquire(&cd, to)
		if err != nil {
			return nil, err
		}
		reply, sent, err := st.call(&cd, req)
		st.inflight.Add(-1)
		if sent {
			return reply, err
		}
		// The stream broke between being picked and taking the request:
		// nothing was sent, so another stream may carry it.
	}
}
