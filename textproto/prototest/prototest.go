// Package prototest helps tests speak the text protocol byte for byte: a
// raw connection whose every read and write has a deadline, and the
// original's end-to-end transcript, so that every layer (a single server,
// the dboutique binary, a cluster's nodes) is checked against the same
// bytes.
package prototest

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// Timeout bounds every read, write and dial; a healthy test uses a tiny
// fraction of it.
const Timeout = 10 * time.Second

// Step is one request line (without its line ending) and the exact reply.
type Step struct{ Req, Reply string }

// Transcript returns the original D-Boutique's end-to-end session, from
// PROTOCOL.md, on a node where bucket "shopping" does not exist yet.
func Transcript() []Step {
	return []Step{
		{"UNKNOWN shopping", "COMMAND NOT IMPLEMENTED\r\n"},
		{"GET shopping eggs", "NOT FOUND\r\n"},
		{"CREATE shopping", "OK\r\n"},
		{"PUT shopping eggs 3", "OK\r\n"},
		{"GET shopping eggs", "3\r\nOK\r\n"},
		{"DELETE shopping eggs", "OK\r\n"},
		{"GET shopping eggs", "\r\nOK\r\n"},
	}
}

// RunTranscript plays the transcript on a new connection to addr, one
// request at a time, comparing every reply byte for byte.
func RunTranscript(t testing.TB, addr string) {
	t.Helper()
	c := Dial(t, addr)
	for _, st := range Transcript() {
		c.Send(st.Req + "\r\n")
		c.Expect(st.Reply)
	}
}

// Conn is a raw client connection; it is closed by t.Cleanup.
type Conn struct {
	t  testing.TB
	nc net.Conn
	r  *bufio.Reader
}

// Dial connects to addr.
func Dial(t testing.TB, addr string) *Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, Timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &Conn{t: t, nc: nc, r: bufio.NewReader(nc)}
}

// NetConn returns the underlying connection.
func (c *Conn) NetConn() net.Conn { return c.nc }

// Send writes s as it is.
func (c *Conn) Send(s string) {
	c.t.Helper()
	_ = c.nc.SetWriteDeadline(time.Now().Add(Timeout))
	if _, err := io.WriteString(c.nc, s); err != nil {
		c.t.Fatalf("send %.60q: %v", s, err)
	}
}

// Expect reads exactly len(want) bytes and compares them with want.
func (c *Conn) Expect(want string) {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(Timeout))
	got := make([]byte, len(want))
	n, err := io.ReadFull(c.r, got)
	if err != nil || string(got) != want {
		c.t.Fatalf("read %q (err %v), want %q", got[:n], err, want)
	}
}

// Line reads one reply line and returns it without its "\r\n".
func (c *Conn) Line() string {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(Timeout))
	s, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read line: %v (got %q)", err, s)
	}
	if !strings.HasSuffix(s, "\r\n") {
		c.t.Fatalf("reply line %q does not end in CRLF", s)
	}
	return strings.TrimSuffix(s, "\r\n")
}

// ExpectClosed checks that the server closes the connection without
// sending anything more.
func (c *Conn) ExpectClosed() {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(Timeout))
	rest, err := io.ReadAll(io.LimitReader(c.r, 1<<20))
	if err != nil && !strings.Contains(err.Error(), "connection reset") {
		c.t.Fatalf("waiting for close: %v", err)
	}
	if len(rest) != 0 {
		c.t.Fatalf("unexpected bytes before close: %q", rest)
	}
}
