package p2p

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/zap"
)

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
