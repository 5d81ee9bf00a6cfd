package p2p

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/zap"
)

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
