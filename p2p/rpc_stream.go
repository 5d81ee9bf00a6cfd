package p2p

import (
	"bufio"
	"errors"
	"runtime"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"go.uber.org/zap"

	"github.com/dboutique/dboutique/p2p/deadline"
)

// outFrame is a frame waiting in a stream's queue.
type outFrame struct {
	typ     byte
	id      uint64
	payload []byte
	c       *call // set for requests: the writer tells the caller when it is done with the payload
}

// errIdle ends a stream that has been idle for IdleTimeout.
var errIdle = errors.New("p2p: stream idle")

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
