package p2p

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/zap"

	"github.com/dboutique/dboutique/p2p/deadline"
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

// peerPool is the set of outbound streams to one peer. Guarded by RPC.mu.
type peerPool struct {
	streams []*outStream
	opens   []*openAttempt // opens in progress; they count against StreamsPerPeer
}

// openAttempt is a stream being opened. Callers that find no room for
// another stream wait for it.
type openAttempt struct {
	done  chan struct{} // closed when the open finished
	err   error         // set before done is closed
	byCtx bool          // err came from the opener's own context: others retry
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

// callDeadline is a call's context and its CallTimeout bound. When the
// context's own deadline is later or absent, a pooled timer enforces the
// bound: a derived context would cost several allocations per call.
type callDeadline struct {
	ctx      context.Context
	expired  <-chan time.Time // fires at the CallTimeout bound; nil if ctx's deadline comes first
	deadline time.Time        // the CallTimeout bound; zero if ctx's deadline comes first
}

// over reports whether the call's time is up.
func (cd *callDeadline) over() bool {
	return cd.ctx.Err() != nil || (!cd.deadline.IsZero() && !time.Now().Before(cd.deadline))
}

// err is what a call returns when its time is up.
func (cd *callDeadline) err() error {
	if err := cd.ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return fmt.Errorf("%w: %w", ErrTimeout, context.DeadlineExceeded)
}

// openContext returns the context for opening a stream within the call's
// time.
func (cd *callDeadline) openContext() (context.Context, context.CancelFunc) {
	if cd.deadline.IsZero() {
		return context.WithCancel(cd.ctx)
	}
	return context.WithDeadline(cd.ctx, cd.deadline)
}

// acquire returns one of to's streams for a call, opening one if there is
// room and every open stream is busy. The stream's inflight count includes
// the call; the caller decrements it.
func (r *RPC) acquire(cd *callDeadline, to peer.ID) (*outStream, error) {
	r.mu.Lock()
	for {
		if r.isClosed {
			r.mu.Unlock()
			return nil, ErrClosed
		}
		if cd.over() {
			r.mu.Unlock()
			return nil, cd.err()
		}
		p := r.peers[to]
		if p == nil {
			p = &peerPool{}
			r.peers[to] = p
		}
		// Fill the first stream before spreading calls over others: all
		// the calls on one stream share its writes (one frame, one Noise
		// message, one syscall for many), which matters more than
		// parallel streams on a few cores. Another stream opens only when
		// every stream is busy, and then the least loaded one is used.
		var best *outStream
		var bestLoad int32
		for _, st := range p.streams {
			load := st.inflight.Load()
			if load < spillInflight {
				best, bestLoad = st, 0
				break
			}
			if best == nil || load < bestLoad {
				best, bestLoad = st, load
			}
		}
		room := len(p.streams)+len(p.opens) < r.cfg.StreamsPerPeer
		if best != nil && (bestLoad == 0 || !room) {
			best.inflight.Add(1)
			best.uses++
			r.mu.Unlock()
			return best, nil
		}
		if room {
			return r.openLocked(cd, to, p)
		}
		// Every slot is taken by a stream being opened: wait for one.
		a := p.opens[0]
		r.mu.Unlock()
		select {
		case <-a.done:
		case <-cd.ctx.Done():
			return nil, cd.err()
		case <-cd.expired:
			return nil, cd.err()
		case <-r.closed:
			return nil, ErrClosed
		}
		if a.err != nil && !a.byCtx {
			return nil, a.err // the peer is unreachable for us too
		}
		r.mu.Lock()
	}
}

// openLocked opens a stream to to for pool p and starts its goroutines. It is
// called with r.mu held and returns with it released.
func (r *RPC) openLocked(cd *callDeadline, to peer.ID, p *peerPool) (*outStream, error) {
	a := &openAttempt{done: make(chan struct{})}
	p.opens = append(p.opens, a)
	r.mu.Unlock()

	ctx, cancel := cd.openContext()
	defer cancel()
	s, err := r.openStream(ctx, to)

	r.mu.Lock()
	for i, o := range p.opens {
		if o == a {
			p.opens = append(p.opens[:i], p.opens[i+1:]...)
			break
		}
	}
	a.err, a.byCtx = err, err != nil && ctx.Err() != nil
	close(a.done)
	if err == nil && r.isClosed {
		err = ErrClosed
		defer func() { _ = s.Reset() }()
	}
	if err != nil {
		r.dropPoolIfEmpty(to, p)
		r.mu.Unlock()
		return nil, err
	}
	st := &outStream{
		r:       r,
		s:       s,
		to:      to,
		queue:   make(chan outFrame, streamQueueLen),
		dead:    make(chan struct{}),
		pending: make(map[uint64]*call),
	}
	st.inflight.Add(1)
	st.uses++
	p.streams = append(p.streams, st)
	r.numOut++
	r.wg.Add(2)
	go r.writeLoop(s, st.queue, st.dead, nil)
	go st.readLoop()
	r.mu.Unlock()
	return st, nil
}

// openStream opens a ProtocolRPC stream to to. It gives up when ctx is done
// or the RPC closes. Errors keep the host's text, which says why the peer
// could not be reached.
func (r *RPC) openStream(ctx context.Context, to peer.ID) (network.Stream, error) {
	openCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(r.baseCtx, cancel)
	defer stop()
	s, err := r.host.NewStream(openCtx, to, ProtocolRPC)
	switch {
	case err == nil:
		return s, nil
	case r.baseCtx.Err() != nil:
		return nil, fmt.Errorf("%w: opening stream to %s: %w", ErrClosed, to, err)
	case ctx.Err() != nil:
		return nil, fmt.Errorf("%w: opening stream to %s: %w", ErrTimeout, to, err)
	default:
		return nil, fmt.Errorf("p2p: opening stream to %s: %w", to, err)
	}
}

// dropPoolIfEmpty forgets to's pool when it holds nothing. r.mu must be held.
func (r *RPC) dropPoolIfEmpty(to peer.ID, p *peerPool) {
	if len(p.streams) == 0 && len(p.opens) == 0 && r.peers[to] == p {
		delete(r.peers, to)
	}
}

// outFrame is a frame waiting in a stream's queue.
type outFrame struct {
	typ     byte
	id      uint64
	payload []byte
	c       *call // set for requests: the writer tells the caller when it is done with the payload
}

// Call states: who may read the request payload.
const (
	callQueued    int32 = iota // waiting in the queue
	callWriting                // the writer is copying req
	callWritten                // the writer is done with req
	callWithdrawn              // the caller left before the writer took it; the writer skips it
	callAbandoned              // the caller left while the writer held req; the writer signals done when finished
)

// call is one outgoing request.
type call struct {
	id    uint64
	state atomic.Int32
	// done receives exactly one result from whoever removes the call from
	// the stream's pending map (the reader on a reply or failure). If the
	// caller removed it itself, it may instead receive the writer's signal
	// that req has been let go (see release).
	done chan callResult
}

type callResult struct {
	payload []byte
	err     error
}

// release makes sure the writer no longer reads the request payload, so
// that Call can return and the caller reuse it. It waits only if the writer
// is copying the payload at this moment. c.done must be empty.
func (c *call) release() {
	if c.state.CompareAndSwap(callQueued, callWithdrawn) {
		return
	}
	if c.state.CompareAndSwap(callWriting, callAbandoned) {
		<-c.done
	}
}

// outStream is a stream this side opened. Its reader delivers replies; its
// writer sends requests.
type outStream struct {
	r     *RPC
	s     network.Stream
	to    peer.ID
	queue chan outFrame
	dead  chan struct{} // closed by the reader when the stream is done

	inflight atomic.Int32 // calls using the stream; raised only under RPC.mu

	// Guarded by RPC.mu.
	uses     uint64 // calls ever assigned
	usesSeen uint64 // uses at the last idle check
	dropped  bool   // removed from the peer's pool

	mu      sync.Mutex // guards the fields below
	pending map[uint64]*call
	nextID  uint64
	broken  bool // the reader has ended; no more calls may be registered
}

// call sends req on the stream and waits for the reply. sent is false when
// the stream had already broken and nothing was sent.
func (st *outStream) call(cd *callDeadline, req []byte) (reply []byte, sent bool, err error) {
	c := &call{done: make(chan callResult, 1)}
	st.mu.Lock()
	if st.broken {
		st.mu.Unlock()
		return nil, false, nil
	}
	st.nextID++
	c.id = st.nextID
	st.pending[c.id] = c
	st.mu.Unlock()

	var res callResult
	select {
	case st.queue <- outFrame{typ: frameRequest, id: c.id, payload: req, c: c}:
		select {
		case res = <-c.done:
		case <-cd.ctx.Done():
			res = st.abandon(cd, c)
		case <-cd.expired:
			res = st.abandon(cd, c)
		}
	case <-st.dead:
		res = <-c.done // the reader fails every pending call
	case <-cd.ctx.Done():
		res = st.abandon(cd, c)
	case <-cd.expired:
		res = st.abandon(cd, c)
	}
	c.release()
	return res.payload, true, res.err
}

// abandon gives up waiting for c's reply. A reply arriving later is dropped.
func (st *outStream) abandon(cd *callDeadline, c *call) callResult {
	st.mu.Lock()
	_, mine := st.pending[c.id]
	if mine {
		delete(st.pending, c.id)
	}
	st.mu.Unlock()
	if !mine {
		return <-c.done // the reply or a failure is being delivered: take it
	}
	return callResult{err: cd.err()}
}

// errIdle ends a stream that has been idle for IdleTimeout.
var errIdle = errors.New("p2p: stream idle")

// readLoop reads replies until the stream fails, goes idle or the RPC closes,
// then tears the stream down.
func (st *outStream) readLoop() {
	r := st.r
	defer r.wg.Done()
	fr := r.newFrameReader(st.s, r.cfg.IdleTimeout)
	defer r.readers.put(fr.br)
	var err error
	for {
		var f frame
		f, err = fr.next(st.idleCheck)
		if err != nil {
			break
		}
		if f.typ == frameRequest {
			err = errCorrupt("request frame on an outbound stream")
			break
		}
		st.deliver(f)
	}
	st.teardown(err)
}

// deliver hands a reply to its call; a reply nobody waits for is dropped.
func (st *outStream) deliver(f frame) {
	st.mu.Lock()
	c := st.pending[f.id]
	if c != nil {
		delete(st.pending, f.id)
	}
	st.mu.Unlock()
	if c == nil {
		return // the caller gave up
	}
	if f.typ == frameErrorReply {
		c.done <- callResult{err: &RemoteError{Msg: string(f.payload)}}
		return
	}
	c.done <- callResult{payload: f.payload}
}

// idleCheck runs when the reader has waited IdleTimeout for a frame. It
// reports whether the stream should close: nothing read (quiet), nothing in
// flight and no call since the last check. If so, the stream leaves the pool
// first so that no call picks it any more.
func (st *outStream) idleCheck(quiet bool) bool {
	r := st.r
	if r.testIdleCheck != nil {
		r.testIdleCheck()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if quiet && st.inflight.Load() == 0 && st.uses == st.usesSeen {
		r.dropStreamLocked(st)
		return true
	}
	st.usesSeen = st.uses
	return false
}

// dropStreamLocked removes st from its peer's pool. r.mu must be held.
func (r *RPC) dropStreamLocked(st *outStream) {
	if st.dropped {
		return
	}
	st.dropped = true
	p := r.peers[st.to]
	if p == nil {
		return
	}
	for i, o := range p.streams {
		if o == st {
			p.streams = append(p.streams[:i], p.streams[i+1:]...)
			break
		}
	}
	r.dropPoolIfEmpty(st.to, p)
}

// teardown ends the stream after its reader stopped with err: it leaves the
// pool, its pending calls fail, its writer stops, and the stream is closed
// (idle, or ended by the peer) or reset (anything else).
func (st *outStream) teardown(err error) {
	r := st.r
	r.mu.Lock()
	r.dropStreamLocked(st)
	r.numOut--
	r.mu.Unlock()

	st.mu.Lock()
	pending := st.pending
	st.pending = nil
	st.broken = true
	st.mu.Unlock()
	close(st.dead)

	orderly := err == io.EOF || err == errIdle
	if len(pending) > 0 {
		var callErr error
		select {
		case <-r.closed:
			callErr = ErrClosed
		default:
			if orderly {
				err = io.ErrUnexpectedEOF // the peer closed with calls in flight
			}
			callErr = fmt.Errorf("%w: %w", ErrStreamBroken, err)
		}
		for _, c := range pending {
			c.done <- callResult{err: callErr}
		}
	}
	if orderly {
		_ = st.s.Close()
		return
	}
	select {
	case <-r.closed:
	default:
		r.log.Debug("p2p: rpc stream to peer failed", zap.Stringer("peer", st.to), zap.Error(err))
	}
	_ = st.s.Reset()
}

// inStream is a stream a peer opened to send us requests.
type inStream struct {
	s       network.Stream
	from    peer.ID
	handler Handler
	// testIdleCheck is RPC.testIdleCheck.
	testIdleCheck func()
	// ctx is the handlers' context. It is cancelled when the reader or the
	// writer ends, or the RPC closes; its Done channel stops the writer.
	ctx    context.Context
	cancel context.CancelFunc
	queue  chan outFrame
	slots  chan struct{} // one token per request in progress, MaxInflight at most

	answered     atomic.Uint64 // requests answered, activity for the idle check
	answeredSeen uint64        // answered at the last idle check; reader only
}

// handleStream serves one inbound stream. It runs on the host's goroutine
// for the stream and reads requests until the stream ends.
func (r *RPC) handleStream(s network.Stream) {
	r.mu.Lock()
	if r.isClosed {
		r.mu.Unlock()
		_ = s.Reset()
		return
	}
	ctx, cancel := context.WithCancel(r.baseCtx)
	in := &inStream{
		s:             s,
		from:          s.Conn().RemotePeer(),
		handler:       r.handler,
		ctx:           ctx,
		testIdleCheck: r.testIdleCheck,
		cancel:        cancel,
		queue:         make(chan outFrame, streamQueueLen),
		slots:         make(chan struct{}, r.cfg.MaxInflight),
	}
	r.inbound[in] = struct{}{}
	r.wg.Add(2)
	r.mu.Unlock()
	defer r.wg.Done()

	go r.writeLoop(s, in.queue, ctx.Done(), cancel)
	err := r.readRequests(in)
	cancel()

	r.mu.Lock()
	delete(r.inbound, in)
	r.mu.Unlock()
	if err == io.EOF || err == errIdle {
		_ = s.Close()
		return
	}
	if r.baseCtx.Err() == nil {
		r.log.Debug("p2p: rpc stream from peer failed", zap.Stringer("peer", in.from), zap.Error(err))
	}
	_ = s.Reset()
}

// readRequests reads request frames and starts a handler for each, at most
// MaxInflight at once.
func (r *RPC) readRequests(in *inStream) error {
	fr := r.newFrameReader(in.s, inboundIdleFactor*r.cfg.IdleTimeout)
	defer r.readers.put(fr.br)
	for {
		f, err := fr.next(in.idleCheck)
		if err != nil {
			return err
		}
		if f.typ != frameRequest {
			return errCorrupt("reply frame on an inbound stream")
		}
		select {
		case in.slots <- struct{}{}:
		case <-in.ctx.Done():
			return in.ctx.Err()
		}
		r.wg.Add(1)
		go r.runHandler(in, f.id, f.payload)
	}
}

// idleCheck reports whether an inbound stream has been idle since the last
// check: nothing read (quiet), no request in progress and none answered.
func (in *inStream) idleCheck(quiet bool) bool {
	if in.testIdleCheck != nil {
		in.testIdleCheck()
	}
	answered := in.answered.Load()
	busy := len(in.slots) > 0 || answered != in.answeredSeen
	in.answeredSeen = answered
	return quiet && !busy
}

// runHandler answers one request.
func (r *RPC) runHandler(in *inStream, id uint64, req []byte) {
	defer r.wg.Done()
	reply, err := r.invoke(in, req)
	f := outFrame{typ: frameReply, id: id, payload: reply}
	switch {
	case err != nil:
		f = outFrame{typ: frameErrorReply, id: id, payload: errorText(err)}
	case len(reply) > r.maxPayload:
		err = fmt.Errorf("%w: reply of %d bytes, limit %d", ErrFrameTooLarge, len(reply), r.maxPayload)
		r.log.Warn("p2p: rpc reply refused", zap.Stringer("peer", in.from), zap.Error(err))
		f = outFrame{typ: frameErrorReply, id: id, payload: errorText(err)}
	}
	select {
	case in.queue <- f:
	case <-in.ctx.Done():
	}
	in.answered.Add(1)
	<-in.slots
}

// invoke runs the handler, turning a panic into an error.
func (r *RPC) invoke(in *inStream, req []byte) (reply []byte, err error) {
	defer func() {
		if v := recover(); v != nil {
			r.log.Error("p2p: rpc handler panicked", zap.Stringer("peer", in.from),
				zap.Any("panic", v), zap.Stack("stack"))
			reply, err = nil, fmt.Errorf("p2p: handler panicked: %v", v)
		}
	}()
	return in.handler(in.ctx, in.from, req)
}

// errorText returns err's text cut to maxErrorText bytes, on a UTF-8
// character boundary.
func errorText(err error) []byte {
	s := err.Error()
	if len(s) > maxErrorText {
		cut := maxErrorText
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return []byte(s)
}

// writeLoop is a stream's writer: it writes queued frames into a buffer and
// flushes when the queue is empty, so frames queued together leave in one
// write. It ends when stop is closed or a write fails; then it resets the
// stream and calls onFail, if set.
func (r *RPC) writeLoop(s network.Stream, queue <-chan outFrame, stop <-chan struct{}, onFail func()) {
	defer r.wg.Done()
	bw := r.writers.get(&deadline.Writer{W: s, Timeout: writeTimeoutFrames * r.cfg.FrameTimeout})
	defer r.writers.put(bw)
	for {
		var f outFrame
		select {
		case f = <-queue:
		case <-stop:
			return
		}
		err := writeQueued(bw, f)
		// Take everything queued; when the queue runs dry, yield once so
		// that callers about to enqueue can join this write: every flush
		// is a yamux frame, a Noise message and a syscall.
		yielded := false
		for err == nil {
			select {
			case f = <-queue:
				err = writeQueued(bw, f)
				continue
			default:
			}
			if yielded {
				break
			}
			yielded = true
			runtime.Gosched()
		}
		if err == nil {
			err = bw.Flush()
		}
		if err != nil {
			select {
			case <-stop:
			default:
				r.log.Debug("p2p: rpc stream write failed", zap.Stringer("peer", s.Conn().RemotePeer()), zap.Error(err))
			}
			_ = s.Reset()
			if onFail != nil {
				onFail()
			}
			return
		}
	}
}

// writeQueued writes one queued frame, skipping requests whose caller has
// left, and tells a caller that left meanwhile when its payload is let go.
func writeQueued(bw *bufio.Writer, f outFrame) error {
	if f.c == nil {
		return writeFrame(bw, f.typ, f.id, f.payload)
	}
	if !f.c.state.CompareAndSwap(callQueued, callWriting) {
		return nil // withdrawn
	}
	err := writeFrame(bw, f.typ, f.id, f.payload)
	if !f.c.state.CompareAndSwap(callWriting, callWritten) {
		f.c.done <- callResult{} // abandoned: the caller waits in release
	}
	return err
}

// frameReader reads frames from a stream with the idle and frame deadlines.
//
// While it waits for a frame's first byte the read deadline is IdleTimeout
// away. It is not renewed after every frame (that costs a timer each time):
// when it passes, the reader asks whether the stream really was idle, and if
// not sets it again. A frame that is not already buffered in full gets a
// deadline of FrameTimeout for the rest of it.
type frameReader struct {
	s            network.Stream
	br           *bufio.Reader
	max          int
	idle         time.Duration
	frameTimeout time.Duration

	deadline   time.Time // the read deadline set on s
	rearm      bool      // set an idle deadline before waiting for the next frame
	frames     uint64    // frames read
	framesSeen uint64    // frames at the last idle check
}

// newFrameReader returns a frameReader for s that waits idle for a frame
// before asking idleCheck. Its buffer is pooled: the caller puts fr.br
// back in r.readers when done.
func (r *RPC) newFrameReader(s network.Stream, idle time.Duration) frameReader {
	return frameReader{
		s:            s,
		br:           r.readers.get(s),
		max:          r.cfg.MaxFrameBytes,
		idle:         idle,
		frameTimeout: r.cfg.FrameTimeout,
		rearm:        true,
	}
}

func (fr *frameReader) setDeadline(t time.Time) {
	fr.deadline = t
	_ = fr.s.SetReadDeadline(t)
}

// next returns the next frame. When the idle deadline passes, it calls
// idleCheck with whether no frame arrived since the last check; if that
// returns true, next returns errIdle.
func (fr *frameReader) next(idleCheck func(quiet bool) bool) (frame, error) {
	for fr.br.Buffered() == 0 {
		if fr.rearm {
			fr.setDeadline(time.Now().Add(fr.idle))
			fr.rearm = false
			fr.framesSeen = fr.frames
		}
		_, err := fr.br.Peek(1)
		if err == nil {
			break
		}
		if !isTimeout(err) {
			return frame{}, err
		}
		now := time.Now()
		if now.Before(fr.deadline) {
			// A timeout before the deadline: the stream keeps failing
			// (multistream's lazy handshake remembers a timeout for good).
			return frame{}, err
		}
		quiet := fr.frames == fr.framesSeen
		fr.framesSeen = fr.frames
		if idleCheck(quiet) {
			return frame{}, errIdle
		}
		fr.setDeadline(now.Add(fr.idle))
	}
	if !frameBuffered(fr.br) {
		fr.setDeadline(time.Now().Add(fr.frameTimeout))
		fr.rearm = true
	}
	f, err := readFrame(fr.br, fr.max)
	if err != nil {
		return frame{}, err
	}
	fr.frames++
	return f, nil
}

// isTimeout reports whether err is a deadline error.
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// getTimer returns a timer that fires after d. Since Go 1.23 a stopped
// timer's channel holds no stale value, so timers can be reused.
func (r *RPC) getTimer(d time.Duration) *time.Timer {
	if t, ok := r.timers.Get().(*time.Timer); ok {
		t.Reset(d)
		return t
	}
	return time.NewTimer(d)
}

func (r *RPC) putTimer(t *time.Timer) {
	t.Stop()
	r.timers.Put(t)
}

// bufPool recycles the streamBufferSize buffers of streams: B is
// *bufio.Reader with S io.Reader, or *bufio.Writer with S io.Writer.
type bufPool[B interface{ Reset(S) }, S any] struct {
	pool    sync.Pool
	newSize func(S, int) B // bufio.NewReaderSize or bufio.NewWriterSize
}

// get returns a buffer on s.
func (p *bufPool[B, S]) get(s S) B {
	if b, ok := p.pool.Get().(B); ok {
		b.Reset(s)
		return b
	}
	return p.newSize(s, streamBufferSize)
}

// put takes b back, letting go of its stream.
func (p *bufPool[B, S]) put(b B) {
	var none S
	b.Reset(none)
	p.pool.Put(b)
}
