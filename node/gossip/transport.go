package gossip

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// transport is memberlist's Transport over the Caller (doc.go).
type transport struct {
	e       *Engine
	packets chan *memberlist.Packet
	streams chan net.Conn

	// sends bounds the packets in flight: a packet that finds it full is
	// dropped (packets may be lost; a stuck peer must not pile up calls).
	sends chan struct{}

	ctx    context.Context // ends at close
	cancel context.CancelFunc
	mu     sync.Mutex // guards closed, and wg.Add against close's wg.Wait
	closed bool
	wg     sync.WaitGroup // the packet senders
}

// maxSendsInFlight bounds the packets being sent at once.
const maxSendsInFlight = 256

func newTransport(e *Engine) *transport {
	ctx, cancel := context.WithCancel(context.Background())
	return &transport{
		e:       e,
		packets: make(chan *memberlist.Packet, 1024),
		streams: make(chan net.Conn, 64),
		sends:   make(chan struct{}, maxSendsInFlight),
		ctx:     ctx,
		cancel:  cancel,
	}
}

var _ memberlist.NodeAwareTransport = (*transport)(nil)

func (t *transport) FinalAdvertiseAddr(string, int) (net.IP, int, error) {
	return net.IPv4(127, 0, 0, 1), 1, nil
}

func (t *transport) PacketCh() <-chan *memberlist.Packet { return t.packets }
func (t *transport) StreamCh() <-chan net.Conn           { return t.streams }

// Shutdown is memberlist's; close (from Engine.Close) does the work, so
// that the senders are waited for after memberlist has stopped.
func (t *transport) Shutdown() error { return nil }

func (t *transport) close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.cancel()
	t.wg.Wait()
}

// errNoName: memberlist addressed a member without its name.
var errNoName = errors.New("gossip: a member addressed without its peer ID")

func (t *transport) WriteTo(b []byte, addr string) (time.Time, error) {
	return time.Time{}, fmt.Errorf("%w (%s)", errNoName, addr)
}

func (t *transport) DialTimeout(addr string, _ time.Duration) (net.Conn, error) {
	return nil, fmt.Errorf("%w (%s)", errNoName, addr)
}

// WriteToAddress sends a packet: a call whose reply is empty, in a
// goroutine, so that memberlist's probe timing is not the call's.
func (t *transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	now := time.Now()
	if a.Name == "" {
		return now, fmt.Errorf("%w (%s)", errNoName, a.Addr)
	}
	if len(b) > MaxPacket || t.ctx.Err() != nil {
		t.e.dropped.Add(1)
		return now, nil
	}
	select {
	case t.sends <- struct{}{}:
	default:
		t.e.dropped.Add(1)
		return now, nil
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		<-t.sends
		t.e.dropped.Add(1)
		return now, nil
	}
	t.wg.Add(1)
	t.mu.Unlock()
	t.e.countSent(b)
	req := make([]byte, 0, 1+len(b))
	req = append(append(req, t.e.cfg.PacketType), b...)
	go func() {
		defer t.wg.Done()
		defer func() { <-t.sends }()
		ctx, cancel := context.WithTimeout(t.ctx, t.e.cfg.DeadAfter)
		defer cancel()
		_, _ = t.e.cfg.Caller.Call(ctx, a.Name, req)
	}()
	return now, nil
}

// DialAddressTimeout opens a stream: a conn that calls the member when
// memberlist first reads from it.
func (t *transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if a.Name == "" {
		return nil, fmt.Errorf("%w (%s)", errNoName, a.Addr)
	}
	if t.ctx.Err() != nil {
		return nil, ErrClosed
	}
	return &callConn{t: t, to: a.Name, deadline: time.Now().Add(timeout)}, nil
}

// HandlePacket takes a packet a member sent (body: the request after its
// type byte). It never blocks: with the queue full, the packet is dropped.
func (e *Engine) HandlePacket(from string, body []byte) error {
	if len(body) > MaxPacket {
		e.dropped.Add(1)
		return fmt.Errorf("%w: a packet of %d bytes (at most %d)", ErrTooLarge, len(body), MaxPacket)
	}
	if e.tr.ctx.Err() != nil {
		return ErrClosed
	}
	e.received.Add(1)
	p := &memberlist.Packet{Buf: bytes.Clone(body), From: peerAddr(from), Timestamp: time.Now()}
	select {
	case e.tr.packets <- p:
	default:
		e.dropped.Add(1)
	}
	return nil
}

// HandleStream answers a stream a member opened (body: everything it
// wrote): memberlist reads it, and what memberlist writes until it closes
// the stream is the reply.
func (e *Engine) HandleStream(ctx context.Context, from string, body []byte) ([]byte, error) {
	if len(body) > MaxStream {
		return nil, fmt.Errorf("%w: a stream of %d bytes (at most %d)", ErrTooLarge, len(body), MaxStream)
	}
	t := e.tr
	ctx, cancel := context.WithTimeout(ctx, e.cfg.memberlistTCPTimeout())
	defer cancel()
	c := &servedConn{from: from, in: bytes.NewReader(bytes.Clone(body)), done: make(chan struct{})}
	e.received.Add(1)
	select {
	case t.streams <- c:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.ctx.Done():
		return nil, ErrClosed
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		_ = c.Close()
		return nil, ctx.Err()
	case <-t.ctx.Done():
		_ = c.Close()
		return nil, ErrClosed
	}
	return c.reply()
}

func (c *Config) memberlistTCPTimeout() time.Duration { return max(2*c.DeadAfter, time.Second) }

// countSent counts a packet, and the probes in it.
func (e *Engine) countSent(b []byte) {
	e.sent.Add(1)
	walkMessages(b, func(kind byte) {
		switch kind {
		case msgPing:
			e.probes.Add(1)
		case msgIndirectPing:
			e.indirect.Add(1)
		}
	})
}

// memberlist's message types (its wire format, stable across versions).
const (
	msgPing         = 0
	msgIndirectPing = 1
	msgCompound     = 7
	msgHasCRC       = 12
)

// walkMessages calls f with the type of each message in packet b: inside a
// checksummed packet and a compound of several.
func walkMessages(b []byte, f func(kind byte)) {
	if len(b) >= 5 && b[0] == msgHasCRC {
		b = b[5:]
	}
	if len(b) == 0 {
		return
	}
	if b[0] != msgCompound {
		f(b[0])
		return
	}
	if len(b) < 2 {
		return
	}
	parts := int(b[1])
	b = b[2:]
	if len(b) < 2*parts {
		return
	}
	lens := b[:2*parts]
	b = b[2*parts:]
	for i := range parts {
		l := int(binary.BigEndian.Uint16(lens[2*i:]))
		if l > len(b) {
			return
		}
		if l > 0 {
			walkMessages(b[:l], f)
		}
		b = b[l:]
	}
}

// callConn is the dialer's end of a stream: writes are gathered, the first
// read sends them and reads the reply.
type callConn struct {
	t  *transport
	to string

	mu       sync.Mutex // guards the rest
	deadline time.Time
	out      bytes.Buffer
	in       *bytes.Reader // the reply, once called
	err      error         // the call's error
	closed   bool
}

func (c *callConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return 0, net.ErrClosed
	case c.in != nil || c.err != nil:
		return 0, errWriteAfterRead
	case c.out.Len()+len(b) > MaxStream:
		return 0, fmt.Errorf("%w: a stream over %d bytes", ErrTooLarge, MaxStream)
	}
	return c.out.Write(b)
}

// call sends what was written and keeps the reply. The caller holds c.mu.
func (c *callConn) call() {
	ctx, cancel := context.WithDeadline(c.t.ctx, c.deadline)
	defer cancel()
	req := make([]byte, 0, 1+c.out.Len())
	req = append(append(req, c.t.e.cfg.StreamType), c.out.Bytes()...)
	c.t.e.sent.Add(1)
	reply, err := c.t.e.cfg.Caller.Call(ctx, c.to, req)
	switch {
	case err != nil && errors.Is(err, context.DeadlineExceeded):
		c.err = os.ErrDeadlineExceeded
	case err != nil:
		c.err = err
	case len(reply) > MaxStream:
		c.err = fmt.Errorf("%w: a reply of %d bytes (at most %d)", ErrTooLarge, len(reply), MaxStream)
	default:
		c.in = bytes.NewReader(reply)
	}
}

func (c *callConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	if c.in == nil && c.err == nil {
		c.call()
	}
	if c.err != nil {
		return 0, c.err
	}
	return c.in.Read(b)
}

// Close sends what was written when nothing was read (a one-way stream).
func (c *callConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	if c.in == nil && c.err == nil && c.out.Len() > 0 {
		c.call()
	}
	c.closed = true
	return nil
}

func (c *callConn) LocalAddr() net.Addr  { return peerAddr(c.t.e.cfg.ID) }
func (c *callConn) RemoteAddr() net.Addr { return peerAddr(c.to) }

func (c *callConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !t.IsZero() {
		c.deadline = t
	}
	return nil
}
func (c *callConn) SetReadDeadline(t time.Time) error  { return c.SetDeadline(t) }
func (c *callConn) SetWriteDeadline(t time.Time) error { return c.SetDeadline(t) }

// servedConn is the other end: it reads the request and gathers the reply
// until memberlist closes it.
type servedConn struct {
	from string
	in   *bytes.Reader
	done chan struct{}
	once sync.Once

	mu  sync.Mutex // guards out, err
	out bytes.Buffer
	err error
}

func (c *servedConn) Read(b []byte) (int, error) {
	select {
	case <-c.done:
		return 0, net.ErrClosed
	default:
	}
	n, err := c.in.Read(b)
	if err == io.EOF && n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

func (c *servedConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.done:
		return 0, net.ErrClosed
	default:
	}
	if c.out.Len()+len(b) > MaxStream {
		c.err = fmt.Errorf("%w: a reply over %d bytes", ErrTooLarge, MaxStream)
		return 0, c.err
	}
	return c.out.Write(b)
}

func (c *servedConn) reply() ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return nil, c.err
	}
	return bytes.Clone(c.out.Bytes()), nil
}

func (c *servedConn) Close() error {
	c.once.Do(func() { close(c.done) })
	return nil
}

func (c *servedConn) LocalAddr() net.Addr              { return peerAddr("") }
func (c *servedConn) RemoteAddr() net.Addr             { return peerAddr(c.from) }
func (c *servedConn) SetDeadline(time.Time) error      { return nil }
func (c *servedConn) SetReadDeadline(time.Time) error  { return nil }
func (c *servedConn) SetWriteDeadline(time.Time) error { return nil }
