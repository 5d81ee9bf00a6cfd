package deadline_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dboutique/dboutique/p2p/deadline"
)

// fakeConn records the deadlines set on it and what is written to it.
type fakeConn struct {
	deadlines []time.Time
	setErr    error // returned by SetWriteDeadline
	writeErr  error // returned by Write
	written   bytes.Buffer
}

func (c *fakeConn) SetWriteDeadline(t time.Time) error {
	if c.setErr != nil {
		return c.setErr
	}
	c.deadlines = append(c.deadlines, t)
	return nil
}

func (c *fakeConn) Write(p []byte) (int, error) {
	if c.writeErr != nil {
		return 0, c.writeErr
	}
	return c.written.Write(p)
}

// TestWriter: the deadline is set before the first write and moved only
// when it has come within Timeout/16; the conn's errors come back as they
// are. The steps run on synctest's fake clock, so the times are exact.
func TestWriter(t *testing.T) {
	const timeout = 16 * time.Second // Timeout/16 is one second
	errSet := errors.New("set failed")
	errWrite := errors.New("write failed")
	type step struct {
		at      time.Duration // when the write happens, from the start
		moved   time.Duration // the deadline it sets, from the start; 0 for none
		wantErr error
	}
	for _, tc := range []struct {
		name     string
		setErr   error
		writeErr error
		steps    []step
	}{
		{name: "the first write sets the deadline", steps: []step{{at: 0, moved: 16 * time.Second}}},
		{name: "more than 15/16 of Timeout left keeps it", steps: []step{
			{at: 0, moved: 16 * time.Second},
			{at: 500 * time.Millisecond},
			{at: time.Second},
		}},
		{name: "less than 15/16 of Timeout left moves it", steps: []step{
			{at: 0, moved: 16 * time.Second},
			{at: time.Second + time.Nanosecond, moved: 17*time.Second + time.Nanosecond},
			{at: 2 * time.Second},
			{at: 3 * time.Second, moved: 19 * time.Second},
		}},
		{name: "a passed deadline is moved", steps: []step{
			{at: 0, moved: 16 * time.Second},
			{at: 40 * time.Second, moved: 56 * time.Second},
		}},
		{name: "a deadline that cannot be set stops the write", setErr: errSet, steps: []step{
			{at: 0, wantErr: errSet},
		}},
		{name: "a write error comes back", writeErr: errWrite, steps: []step{
			{at: 0, moved: 16 * time.Second, wantErr: errWrite},
			{at: time.Second, wantErr: errWrite},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				c := &fakeConn{setErr: tc.setErr, writeErr: tc.writeErr}
				w := &deadline.Writer{W: c, Timeout: timeout}
				for i, s := range tc.steps {
					time.Sleep(time.Until(start.Add(s.at))) // the fake clock jumps there
					set := len(c.deadlines)
					n, err := w.Write([]byte("x"))
					if !errors.Is(err, s.wantErr) {
						t.Fatalf("write %d at %v: error %v, want %v", i, s.at, err, s.wantErr)
					}
					wantN := 1
					if s.wantErr != nil {
						wantN = 0
					}
					if n != wantN {
						t.Errorf("write %d at %v wrote %d bytes, want %d", i, s.at, n, wantN)
					}
					switch moved := len(c.deadlines) > set; {
					case s.moved == 0 && moved:
						t.Errorf("write %d at %v moved the deadline to %v, want it kept", i, s.at, c.deadlines[set].Sub(start))
					case s.moved != 0 && !moved:
						t.Errorf("write %d at %v kept the deadline, want it moved to %v", i, s.at, s.moved)
					case moved && c.deadlines[set].Sub(start) != s.moved:
						t.Errorf("write %d at %v moved the deadline to %v, want %v", i, s.at, c.deadlines[set].Sub(start), s.moved)
					}
					if len(c.deadlines) > 0 && tc.setErr == nil {
						left := time.Until(c.deadlines[len(c.deadlines)-1])
						if left < timeout-timeout/16 || left > timeout {
							t.Errorf("write %d at %v has %v left, want 15/16 of %v to all of it", i, s.at, left, timeout)
						}
					}
				}
			})
		})
	}
}

// TestWriterStuckPeer: a write to a peer that does not read fails once the
// deadline passes, with the conn's deadline error.
func TestWriterStuckPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, server := net.Pipe() // nobody reads server
		defer server.Close()
		defer client.Close()
		w := &deadline.Writer{W: client, Timeout: time.Minute}
		start := time.Now()
		if _, err := w.Write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("write to a peer that does not read: %v, want %v", err, os.ErrDeadlineExceeded)
		}
		if took := time.Since(start); took != time.Minute {
			t.Errorf("the write failed after %v, want %v", took, time.Minute)
		}
	})
}

// BenchmarkWriter measures what the deadline adds to a write: to a conn
// that only counts, and on TCP over loopback, where the deadline kept by a
// Writer is compared with one set before every write.
func BenchmarkWriter(b *testing.B) {
	payload := make([]byte, 1<<10)
	b.Run("discard", func(b *testing.B) {
		c := &fakeConn{}
		w := &deadline.Writer{W: c, Timeout: time.Minute}
		b.ReportAllocs()
		b.SetBytes(int64(len(payload)))
		for b.Loop() {
			c.written.Reset()
			if _, err := w.Write(payload); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("tcp", func(b *testing.B) {
		benchTCP(b, payload, func(c net.Conn) io.Writer { return &deadline.Writer{W: c, Timeout: time.Minute} })
	})
	b.Run("tcp-deadline-every-write", func(b *testing.B) {
		benchTCP(b, payload, func(c net.Conn) io.Writer { return everyWrite{c} })
	})
}

// everyWrite sets a deadline before every write, the cost a Writer saves.
type everyWrite struct{ c net.Conn }

func (e everyWrite) Write(p []byte) (int, error) {
	if err := e.c.SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
		return 0, err
	}
	return e.c.Write(p)
}

// benchTCP writes payload over a loopback TCP connection through the writer
// wrap makes, while the other end discards what it reads.
func benchTCP(b *testing.B, payload []byte, wrap func(net.Conn) io.Writer) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(io.Discard, c)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		c.Close()
		<-drained
	}()
	w := wrap(c)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		if _, err := w.Write(payload); err != nil {
			b.Fatal(err)
		}
	}
}
