package textproto

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dboutique/dboutique/node"
)

// testTimeout bounds every wait in these tests; a healthy run takes a tiny
// fraction of it.
const testTimeout = 10 * time.Second

// testServer is a Server on a loopback listener, closed by t.Cleanup.
type testServer struct {
	*Server
	addr   string
	served chan error // Serve's result
}

func startServer(t testing.TB, cfg Config) *testServer {
	t.Helper()
	if cfg.Executor == nil {
		cfg.Executor = node.NewStore()
	}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{Server: s, addr: l.Addr().String(), served: make(chan error, 1)}
	go func() { ts.served <- s.Serve(l) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-ts.served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return ts
}

// rawConn speaks to a server byte by byte, every read under a deadline.
type rawConn struct {
	t  testing.TB
	nc net.Conn
	r  *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawConn{t: t, nc: nc, r: bufio.NewReader(nc)}
}

func (c *rawConn) send(s string) {
	c.t.Helper()
	c.nc.SetWriteDeadline(time.Now().Add(testTimeout))
	if _, err := io.WriteString(c.nc, s); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// expect reads exactly len(want) bytes and compares them with want.
func (c *rawConn) expect(want string) {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(testTimeout))
	got := make([]byte, len(want))
	n, err := io.ReadFull(c.r, got)
	if err != nil || string(got) != want {
		c.t.Fatalf("read %q (err %v), want %q", got[:n], err, want)
	}
}

// line reads one reply line, with its "\r\n" removed.
func (c *rawConn) line() string {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(testTimeout))
	s, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read line: %v (got %q)", err, s)
	}
	if !strings.HasSuffix(s, "\r\n") {
		c.t.Fatalf("reply line %q does not end in CRLF", s)
	}
	return strings.TrimSuffix(s, "\r\n")
}

// expectClosed checks that the server closes the connection, reading at most
// a little more data.
func (c *rawConn) expectClosed() {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(testTimeout))
	rest, err := io.ReadAll(io.LimitReader(c.r, 1<<20))
	if err != nil && !isConnReset(err) {
		c.t.Fatalf("waiting for close: %v", err)
	}
	if len(rest) != 0 {
		c.t.Fatalf("unexpected bytes before close: %q", rest)
	}
}

func isConnReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset")
}

func dialClient(t testing.TB, addr string, opts ...ClientOption) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, err := Dial(ctx, addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitFor polls cond until it holds or the test deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}
