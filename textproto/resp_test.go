package textproto

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/dboutique/dboutique/node"
	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/ring"
)

// Tests of RESP on the client port: the request reader on its own, then
// whole connections over loopback TCP (raw bytes, then the go-redis
// client), then the metrics. Replies are compared byte for byte with what
// Redis 7 sends for the same request, except where a comment says that
// D-Boutique differs on purpose.

// --- RESP encoding helpers, for requests and expected replies ---

// respReq encodes a request: an array of bulk strings.
func respReq(args ...string) string {
	var b strings.Builder
	b.WriteString("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		b.WriteString("$" + strconv.Itoa(len(a)) + "\r\n" + a + "\r\n")
	}
	return b.String()
}

func rInt(n int) string       { return ":" + strconv.Itoa(n) + "\r\n" }
func rBulk(s string) string   { return "$" + strconv.Itoa(len(s)) + "\r\n" + s + "\r\n" }
func rErr(msg string) string  { return "-" + msg + "\r\n" }
func rSimple(s string) string { return "+" + s + "\r\n" }

const (
	rOK  = "+OK\r\n"
	rNil = "$-1\r\n"
)

// rArr encodes an array of already encoded elements.
func rArr(elems ...string) string {
	return "*" + strconv.Itoa(len(elems)) + "\r\n" + strings.Join(elems, "")
}

// rBulks encodes an array of bulk strings.
func rBulks(ss ...string) string {
	elems := make([]string, len(ss))
	for i, s := range ss {
		elems[i] = rBulk(s)
	}
	return rArr(elems...)
}

func wrongArgs(cmd string) string {
	return rErr("ERR wrong number of arguments for '" + cmd + "' command")
}

// --- respReader ---

// Limits of the readers in these tests, small enough to cross.
const (
	testMaxBulk  = 64
	testMaxArgs  = 8
	testMaxBytes = 256
)

func newTestRespReader(r io.Reader, bufSize int) *respReader {
	return &respReader{r: bufio.NewReaderSize(r, bufSize), maxBulk: testMaxBulk, maxArgs: testMaxArgs, maxBytes: testMaxBytes}
}

// readRequests reads requests until the reader fails, skipping empty ones
// as the server does; it returns the requests, how many were empty, and
// the error that ended the reading (io.EOF at a clean end).
func readRequests(rr *respReader) (reqs [][]string, empty int, err error) {
	for {
		if err := rr.next(); err != nil {
			return reqs, empty, err
		}
		if len(rr.args) == 0 {
			empty++
			continue
		}
		req := make([]string, len(rr.args))
		for i, a := range rr.args {
			req[i] = string(a)
		}
		reqs = append(reqs, req)
	}
}

// splitReaders returns readers that deliver s in different pieces: whole,
// a byte at a time, half of each read, with the last data and io.EOF
// together, and cut in two at every offset.
func splitReaders(s string) map[string]func() io.Reader {
	rs := map[string]func() io.Reader{
		"whole":    func() io.Reader { return strings.NewReader(s) },
		"one byte": func() io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
		"half":     func() io.Reader { return iotest.HalfReader(strings.NewReader(s)) },
		"data+EOF": func() io.Reader { return iotest.DataErrReader(iotest.HalfReader(strings.NewReader(s))) },
	}
	for i := 1; i < len(s); i++ {
		rs[fmt.Sprintf("cut at %d", i)] = func() io.Reader {
			return io.MultiReader(strings.NewReader(s[:i]), strings.NewReader(s[i:]))
		}
	}
	return rs
}

func TestRespReaderGood(t *testing.T) {
	big := strings.Repeat("b", testMaxBulk)
	var allBytes strings.Builder
	for i := range 64 {
		allBytes.WriteByte(byte(i * 4))
	}
	tests := []struct {
		name  string
		in    string
		want  [][]string
		empty int
	}{
		{"ping", "*1\r\n$4\r\nPING\r\n", [][]string{{"PING"}}, 0},
		{"two requests", respReq("SET", "k", "v") + respReq("GET", "k"), [][]string{{"SET", "k", "v"}, {"GET", "k"}}, 0},
		{"empty arrays skipped", "*0\r\n*-1\r\n" + respReq("PING") + "*0\r\n", [][]string{{"PING"}}, 3},
		{"only empty", "*0\r\n", nil, 1},
		{"null array", "*-1\r\n", nil, 1},
		{"zero-length bulk", "*3\r\n$3\r\nSET\r\n$0\r\n\r\n$0\r\n\r\n", [][]string{{"SET", "", ""}}, 0},
		{"NUL CR LF inside", respReq("ECHO", "a\x00b\r\nc\r\n\r\n", "\n", "\r", "\x00"), [][]string{{"ECHO", "a\x00b\r\nc\r\n\r\n", "\n", "\r", "\x00"}}, 0},
		{"CRLF-looking bulk", respReq("ECHO", "\r\n$4\r\nPING\r\n"), [][]string{{"ECHO", "\r\n$4\r\nPING\r\n"}}, 0},
		{"byte values", respReq("ECHO", allBytes.String()), [][]string{{"ECHO", allBytes.String()}}, 0},
		{"at the bulk limit", respReq("ECHO", big), [][]string{{"ECHO", big}}, 0},
		{"at the argument limit", respReq("A", "B", "C", "D", "E", "F", "G", "H"), [][]string{{"A", "B", "C", "D", "E", "F", "G", "H"}}, 0},
		{"at the size limit", respReq(big, big, big, big), [][]string{{big, big, big, big}}, 0},
		{"big then small", respReq("ECHO", big) + respReq("ECHO", "x"), [][]string{{"ECHO", big}, {"ECHO", "x"}}, 0},
		{"lower case", respReq("hset", "b", "k", "v"), [][]string{{"hset", "b", "k", "v"}}, 0},
		// redis-cli --pipe sends an empty line before its last ECHO.
		{"empty lines skipped", respReq("PING") + "\r\n\n" + respReq("ECHO", "x") + "\r\n", [][]string{{"PING"}, {"ECHO", "x"}}, 0},
	}
	for _, tt := range tests {
		for _, bufSize := range []int{16, 4096} {
			for how, r := range splitReaders(tt.in) {
				rr := newTestRespReader(r(), bufSize)
				reqs, empty, err := readRequests(rr)
				if err != io.EOF || empty != tt.empty || !slices.EqualFunc(reqs, tt.want, slices.Equal) {
					t.Errorf("%s (%s, buffer %d): %q, %d empty, err %v; want %q, %d empty, io.EOF",
						tt.name, how, bufSize, reqs, empty, err, tt.want, tt.empty)
				}
			}
		}
	}
}

// TestRespReaderMustFail: malformed and oversized requests give a
// *respError (the connection is told "Protocol error" and closed) or,
// when the input ends inside a request, io.ErrUnexpectedEOF; never a
// panic, never a request.
func TestRespReaderMustFail(t *testing.T) {
	over := strings.Repeat("o", testMaxBulk+1)
	big := strings.Repeat("b", testMaxBulk)
	tests := []struct {
		in  string
		msg string // the respError's message; "" for io.ErrUnexpectedEOF
	}{
		{"*x\r\n", "invalid multibulk length"},
		{"*-2\r\n", "invalid multibulk length"},
		{"*01\r\n", "invalid multibulk length"},
		{"*+1\r\n", "invalid multibulk length"},
		{"*\r\n", "invalid multibulk length"},
		{"* 1\r\n", "invalid multibulk length"},
		{"*1 \r\n", "invalid multibulk length"},
		{"*1\n", "invalid multibulk length"},
		{"*1\r\r\n", "invalid multibulk length"},
		{"*0x1\r\n", "invalid multibulk length"},
		{"*9999999999999\r\n", "invalid multibulk length: 9999999999999, at most 8"},
		{"*99999999999999999999\r\n", "invalid multibulk length"}, // overflows an int
		{"*-99999999999\r\n", "invalid multibulk length"},
		{"*9\r\n", "invalid multibulk length: 9, at most 8"},
		{"*1\r\n:1\r\n", "expected '$', got ':'"},
		{"*1\r\n44\r\nPING\r\n", "expected '$', got '4'"},
		{"*1\r\n4\r\nPING\r\n", "invalid bulk length"},
		{"*1\r\n*1\r\n$4\r\nPING\r\n", "expected '$', got '*'"},
		{"+PING\r\n", "expected '*', got '+'"},
		{"PING\r\n", "expected '*', got 'P'"},
		{"\r\n\r\nPING\r\n", "expected '*', got 'P'"}, // empty lines skipped, not what follows
		{"\r\r\n", "invalid multibulk length"},
		{"*1\r\n\r\n$4\r\nPING\r\n", "invalid bulk length"}, // not inside a request
		{"*1\r\n$\r\n", "invalid bulk length"},
		{"*1\r\n$-1\r\n", "invalid bulk length"},
		{"*1\r\n$-5\r\nhello\r\n", "invalid bulk length"},
		{"*1\r\n$+4\r\nPING\r\n", "invalid bulk length"},
		{"*1\r\n$04\r\nPING\r\n", "invalid bulk length"},
		{"*1\r\n$4\n", "invalid bulk length"},
		{"*1\r\n$1e1\r\n", "invalid bulk length"},
		{"*1\r\n$999999999999\r\n", "invalid bulk length: 999999999999, at most 64"},
		{"*1\r\n$99999999999999999999\r\n", "invalid bulk length"},
		{"*1\r\n$65\r\n" + over + "\r\n", "invalid bulk length: 65, at most 64"},
		{"*5\r\n" + strings.Repeat("$64\r\n"+big+"\r\n", 5), "request larger than 256 bytes"},
		{"*1\r\n$4\r\nPINGxx", "bulk string not followed by CRLF"},
		{"*1\r\n$4\r\nPING\n\r", "bulk string not followed by CRLF"},
		{"*1\r\n$4\r\nPIN\r\n\r\n", "bulk string not followed by CRLF"},
		{"*1\r\n$3\r\nPING\r\n", "bulk string not followed by CRLF"},
		{"*00000000000000000000000000000001\r\n", "too big count string"},
		{"*1\r\n$00000000000000000000000000000004\r\nPING\r\n", "too big count string"},
		{"*1" + strings.Repeat(" ", 40), "too big count string"},
		// The input ends inside a request.
		{"*", ""},
		{"*1", ""},
		{"*1\r", ""},
		{"*1\r\n", ""},
		{"*1\r\n$4", ""},
		{"*1\r\n$4\r\n", ""},
		{"*1\r\n$4\r\nPI", ""},
		{"*1\r\n$4\r\nPING", ""},
		{"*1\r\n$4\r\nPING\r", ""},
		{"*2\r\n$4\r\nPING\r\n", ""},
		{respReq("PING") + "*2\r\n$4\r\nECHO\r\n", ""},
	}
	for _, tt := range tests {
		for _, bufSize := range []int{16, 4096} {
			if bufSize == 16 && longestLine(tt.in) > 16 && tt.msg != "too big count string" {
				continue // a line longer than the buffer is too big whatever it says
			}
			for how, r := range splitReaders(tt.in) {
				rr := newTestRespReader(r(), bufSize)
				var reqs [][]string
				var err error
				func() {
					defer func() {
						if p := recover(); p != nil {
							err = fmt.Errorf("panic: %v", p)
						}
					}()
					reqs, _, err = readRequests(rr)
				}()
				var pe *respError
				switch {
				case tt.msg == "" && !errors.Is(err, io.ErrUnexpectedEOF):
					t.Errorf("%q (%s, buffer %d): err %v, want io.ErrUnexpectedEOF", tt.in, how, bufSize, err)
				case tt.msg != "" && (!errors.As(err, &pe) || pe.msg != tt.msg):
					t.Errorf("%q (%s, buffer %d): err %v, want a protocol error %q", tt.in, how, bufSize, err, tt.msg)
				case len(reqs) > 0 && !strings.HasPrefix(tt.in, respReq("PING")):
					t.Errorf("%q (%s, buffer %d): read %q before failing", tt.in, how, bufSize, reqs)
				}
			}
		}
	}
}

// longestLine returns the length of the longest line of s, "\n" included.
func longestLine(s string) int {
	n := 0
	for _, l := range strings.SplitAfter(s, "\n") {
		n = max(n, len(l))
	}
	return n
}

// TestRespReaderRedisNumbers: Redis reads counts and lengths with
// string2ll, which refuses a leading zero and "-0"; a reader that accepts
// them reads requests Redis calls malformed.
func TestRespReaderRedisNumbers(t *testing.T) {
	for _, in := range []string{
		"*00\r\n" + respReq("PING"),
		"*-0\r\n" + respReq("PING"),
		"*1\r\n$00\r\n\r\n",
		"*1\r\n$-0\r\n\r\n",
	} {
		rr := newTestRespReader(strings.NewReader(in), 4096)
		reqs, empty, err := readRequests(rr)
		var pe *respError
		if !errors.As(err, &pe) {
			t.Errorf("%q: read %q (%d empty), err %v; Redis answers \"Protocol error\"", in, reqs, empty, err)
		}
	}
}

// TestRespReaderReuse: a request's arguments stay as read until the next
// one, and a big request's arena is not kept once a small one follows.
func TestRespReaderReuse(t *testing.T) {
	huge := strings.Repeat("h", keepArena)
	in := respReq("ECHO", huge, huge) + respReq("ECHO", "small")
	rr := &respReader{r: bufio.NewReader(strings.NewReader(in)), maxBulk: 2 * keepArena, maxArgs: 4, maxBytes: 4 * keepArena}
	if err := rr.next(); err != nil || len(rr.args) != 3 || string(rr.args[1]) != huge || string(rr.args[2]) != huge {
		t.Fatalf("first request: %d args, err %v", len(rr.args), err)
	}
	if err := rr.next(); err != nil || len(rr.args) != 2 || string(rr.args[1]) != "small" {
		t.Fatalf("second request: %q, err %v", rr.args, err)
	}
	if cap(rr.arena) > keepArena {
		t.Errorf("the reader kept a %d-byte arena after a small request", cap(rr.arena))
	}
	// Appending to an argument must not overwrite the next one.
	in = respReq("A", "B", "C")
	rr = newTestRespReader(strings.NewReader(in), 4096)
	if err := rr.next(); err != nil {
		t.Fatal(err)
	}
	_ = append(rr.args[0], 'x', 'y')
	if string(rr.args[1]) != "B" {
		t.Errorf("appending to argument 0 changed argument 1 to %q", rr.args[1])
	}
}

// --- whole connections, raw bytes ---

// respConn is a raw client connection whose every read and write has a
// deadline; it is closed by t.Cleanup.
type respConn struct {
	t  testing.TB
	nc net.Conn
	r  *bufio.Reader
}

func dialRESP(t testing.TB, addr string) *respConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &respConn{t: t, nc: nc, r: bufio.NewReader(nc)}
}

// Send writes s as it is.
func (c *respConn) Send(s string) {
	c.t.Helper()
	_ = c.nc.SetWriteDeadline(time.Now().Add(testTimeout))
	if _, err := io.WriteString(c.nc, s); err != nil {
		c.t.Fatalf("send %.60q: %v", s, err)
	}
}

// Expect reads exactly len(want) bytes and compares them with want.
func (c *respConn) Expect(want string) {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(testTimeout))
	got := make([]byte, len(want))
	n, err := io.ReadFull(c.r, got)
	if err != nil || string(got) != want {
		c.t.Fatalf("read %q (err %v), want %q", got[:n], err, want)
	}
}

// Reply reads one whole reply, of any type, and returns its bytes.
func (c *respConn) Reply() string {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(testTimeout))
	var b strings.Builder
	if err := readReply(c.r, &b); err != nil {
		c.t.Fatalf("reading a reply: %v (got %q)", err, b.String())
	}
	return b.String()
}

// Line reads one text-protocol reply line and returns it without "\r\n".
func (c *respConn) Line() string {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(testTimeout))
	s, err := c.r.ReadString('\n')
	if err != nil || !strings.HasSuffix(s, "\r\n") {
		c.t.Fatalf("read line: %q, %v", s, err)
	}
	return strings.TrimSuffix(s, "\r\n")
}

// ExpectClosed checks that the server closes the connection without
// sending anything more.
func (c *respConn) ExpectClosed() {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(testTimeout))
	rest, err := io.ReadAll(io.LimitReader(c.r, 1<<20))
	if err != nil && !strings.Contains(err.Error(), "connection reset") {
		c.t.Fatalf("waiting for close: %v", err)
	}
	if len(rest) != 0 {
		c.t.Fatalf("unexpected bytes before close: %q", rest)
	}
}

// readReply copies one RESP reply from r to b, checking its framing.
func readReply(r *bufio.Reader, b *strings.Builder) error {
	line, err := r.ReadString('\n')
	b.WriteString(line)
	if err != nil {
		return err
	}
	if len(line) < 3 || !strings.HasSuffix(line, "\r\n") {
		return fmt.Errorf("malformed reply line %q", line)
	}
	body := line[1 : len(line)-2]
	switch line[0] {
	case '+', '-':
		if strings.ContainsAny(body, "\r\n") {
			return fmt.Errorf("line break inside %q", line)
		}
		return nil
	case ':':
		_, err := strconv.Atoi(body)
		return err
	case '$', '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 {
			return fmt.Errorf("malformed length in %q", line)
		}
		if line[0] == '*' {
			for range n {
				if err := readReply(r, b); err != nil {
					return err
				}
			}
			return nil
		}
		if n < 0 {
			return nil
		}
		data := make([]byte, n+2)
		k, err := io.ReadFull(r, data)
		b.Write(data[:k])
		if err != nil {
			return err
		}
		if string(data[n:]) != "\r\n" {
			return fmt.Errorf("bulk string of %d bytes not followed by CRLF", n)
		}
		return nil
	}
	return fmt.Errorf("unknown reply type in %q", line)
}

// respStep is one request (or several, pipelined) and the exact reply.
type respStep struct{ req, reply string }

// runRespSteps sends each step's requests and reads as many replies as
// the step expects, comparing them byte for byte.
func runRespSteps(t *testing.T, c *respConn, steps []respStep) {
	t.Helper()
	for _, st := range steps {
		c.Send(st.req)
		want := bufio.NewReader(strings.NewReader(st.reply))
		for {
			var w strings.Builder
			if err := readReply(want, &w); err == io.EOF && w.Len() == 0 {
				break
			} else if err != nil {
				t.Fatalf("bad expected reply %q: %v", st.reply, err)
			}
			if got := c.Reply(); got != w.String() {
				t.Fatalf("after %.200q: got %.200q, want %.200q", st.req, got, w.String())
			}
		}
	}
}

// runTextSteps sends each step's text-protocol requests and reads the
// exact reply.
func runTextSteps(t *testing.T, c *respConn, steps []respStep) {
	t.Helper()
	for _, st := range steps {
		c.Send(st.req)
		c.Expect(st.reply)
	}
}

// reservedReply is the answer to a client naming a bucket that begins
// with a NUL byte.
var reservedReply = rErr("ERR bucket names beginning with a NUL byte are reserved")

// TestRESPCommands runs every command on one connection to a fresh
// single-node server and checks every reply byte for byte.
func TestRESPCommands(t *testing.T) {
	s := startServer(t, Config{})
	c := dialRESP(t, s.addr)
	runRespSteps(t, c, []respStep{
		{respReq("PING"), rSimple("PONG")},
		{respReq("ping", "hi"), rBulk("hi")},
		{respReq("PING", "a", "b"), wrongArgs("ping")},
		{respReq("ECHO", "a\x00\r\nb"), rBulk("a\x00\r\nb")},
		{respReq("echo", ""), rBulk("")},
		{respReq("ECHO"), wrongArgs("echo")},

		// HSET creates the bucket and counts the keys that were new.
		{respReq("HSET", "shopping", "milk", "3"), rInt(1)},
		{respReq("HSET", "shopping", "milk", "4", "eggs", "12"), rInt(1)},
		{respReq("HSET", "shopping", "milk", "4"), rInt(0)},
		{respReq("HSET", "shopping", "bread", "1", "bread", "2"), rInt(1)},
		{respReq("hset", "shopping", "", ""), rInt(1)},
		{respReq("HGET", "shopping", "bread"), rBulk("2")},
		{respReq("HGET", "shopping", "milk"), rBulk("4")},
		{respReq("HGET", "shopping", ""), rBulk("")},
		{respReq("HGET", "shopping", "nope"), rNil},
		{respReq("HGET", "nowhere", "milk"), rNil},
		{respReq("HGET", "Shopping", "milk"), rNil},
		{respReq("HSET", "shopping", "milk"), wrongArgs("hset")},
		{respReq("HSET", "shopping", "milk", "1", "eggs"), wrongArgs("hset")},
		{respReq("HSET", "shopping"), wrongArgs("hset")},
		{respReq("HGET", "shopping"), wrongArgs("hget")},
		{respReq("HGET", "shopping", "milk", "eggs"), wrongArgs("hget")},
		{respReq("HMSET", "fruit", "b", "2", "a", "1", "c", ""), rOK},
		{respReq("HMSET", "fruit", "x"), wrongArgs("hmset")},
		{respReq("HMGET", "fruit", "a", "zz", "c"), rArr(rBulk("1"), rNil, rBulk(""))},
		{respReq("HMGET", "nowhere", "a", "b"), rArr(rNil, rNil)},
		{respReq("HMGET", "fruit"), wrongArgs("hmget")},
		{respReq("HLEN", "fruit"), rInt(3)},
		{respReq("HLEN", "nowhere"), rInt(0)},
		{respReq("HLEN"), wrongArgs("hlen")},
		// HKEYS, HVALS and HGETALL list in key order, HVALS as HGETALL does.
		{respReq("HKEYS", "fruit"), rBulks("a", "b", "c")},
		{respReq("HVALS", "fruit"), rBulks("1", "2", "")},
		{respReq("HGETALL", "fruit"), rBulks("a", "1", "b", "2", "c", "")},
		{respReq("HKEYS", "nowhere"), "*0\r\n"},
		{respReq("HVALS", "nowhere"), "*0\r\n"},
		{respReq("HGETALL", "nowhere"), "*0\r\n"},
		{respReq("HGETALL", "fruit", "x"), wrongArgs("hgetall")},
		{respReq("HEXISTS", "fruit", "a"), rInt(1)},
		{respReq("HEXISTS", "fruit", "zz"), rInt(0)},
		{respReq("HEXISTS", "nowhere", "a"), rInt(0)},
		{respReq("HEXISTS", "fruit"), wrongArgs("hexists")},
		{respReq("HSTRLEN", "fruit", "a"), rInt(1)},
		{respReq("hstrlen", "fruit", "c"), rInt(0)}, // an empty value
		{respReq("HSTRLEN", "fruit", "zz"), rInt(0)},
		{respReq("HSTRLEN", "nowhere", "a"), rInt(0)},
		{respReq("HSTRLEN", "fruit"), wrongArgs("hstrlen")},
		{respReq("HSTRLEN", "fruit", "a", "b"), wrongArgs("hstrlen")},
		// HDEL counts the keys that existed, a key named twice once.
		{respReq("HDEL", "fruit", "a", "zz", "a", "b"), rInt(2)},
		{respReq("HDEL", "fruit", "a"), rInt(0)},
		{respReq("HDEL", "nowhere", "a"), rInt(0)},
		{respReq("HDEL", "fruit"), wrongArgs("hdel")},
		{respReq("HGETALL", "fruit"), rBulks("c", "")},
		{respReq("HSET", "fruit", "a", "again"), rInt(1)},
		{respReq("HGETALL", "fruit"), rBulks("a", "again", "c", "")},

		// Plain keys.
		{respReq("SET", "k", "v"), rOK},
		{respReq("GET", "k"), rBulk("v")},
		{respReq("SET", "k", "w"), rOK},
		{respReq("get", "k"), rBulk("w")},
		{respReq("GET", "nope"), rNil},
		{respReq("SET", "k"), wrongArgs("set")},
		{respReq("SET", "k", "v", "EX"), "-ERR syntax error\r\n"},
		{respReq("GET"), wrongArgs("get")},
		{respReq("SET", "", "empty key"), rOK},
		{respReq("GET", ""), rBulk("empty key")},
		{respReq("SET", "bin\x00\r\n", "\x00\xff"), rOK},
		{respReq("GET", "bin\x00\r\n"), rBulk("\x00\xff")},

		// A plain key and a bucket of one name count twice.
		{respReq("SET", "both", "1"), rOK},
		{respReq("HSET", "both", "f", "1"), rInt(1)},
		{respReq("EXISTS", "both"), rInt(2)},
		{respReq("EXISTS", "both", "k", "nope", "both", "shopping"), rInt(6)},
		{respReq("GET", "both"), rBulk("1")},
		{respReq("HGET", "both", "f"), rBulk("1")},
		{respReq("DEL", "both", "nope"), rInt(2)},
		{respReq("EXISTS", "both"), rInt(0)},
		{respReq("DEL", "both"), rInt(0)},
		{respReq("GET", "both"), rNil},
		{respReq("HGET", "both", "f"), rNil},
		{respReq("DEL", "k", "fruit", "k"), rInt(2)},
		{respReq("GET", "k"), rNil},
		{respReq("HLEN", "fruit"), rInt(0)},
		{respReq("DEL"), wrongArgs("del")},
		{respReq("EXISTS"), wrongArgs("exists")},

		// Bucket names that begin with a NUL byte are the node's own;
		// plain keys may begin with one.
		{respReq("HSET", "\x00x", "k", "v"), reservedReply},
		{respReq("HGET", "\x00kv:0", "k"), reservedReply},
		{respReq("HGETALL", "\x00kv:1"), reservedReply},
		{respReq("HDEL", "\x00kv:2", "k"), reservedReply},
		{respReq("HLEN", "\x00"), reservedReply},
		{respReq("HSTRLEN", "\x00kv:3", "k"), reservedReply},
		{respReq("SET", "\x00x", "v"), rOK},
		{respReq("GET", "\x00x"), rBulk("v")},
		{respReq("EXISTS", "\x00x"), rInt(1)},
		{respReq("DEL", "\x00x"), rInt(1)},
		{respReq("EXISTS", "\x00x"), rInt(0)},

		// The empty name: Redis allows it for a hash, a bucket cannot have
		// it. Reads find nothing, writes are refused; a plain key may be
		// empty (above).
		{respReq("HSET", "", "f", "v"), rErr("ERR bucket names must not be empty")},
		{respReq("HMSET", "", "f", "v"), rErr("ERR bucket names must not be empty")},
		{respReq("HGET", "", "f"), rNil},
		{respReq("HMGET", "", "f", "g"), rArr(rNil, rNil)},
		{respReq("HGETALL", ""), "*0\r\n"},
		{respReq("HKEYS", ""), "*0\r\n"},
		{respReq("HVALS", ""), "*0\r\n"},
		{respReq("HLEN", ""), rInt(0)},
		{respReq("HDEL", "", "f"), rInt(0)},
		{respReq("HEXISTS", "", "f"), rInt(0)},
		{respReq("HSTRLEN", "", "f"), rInt(0)},
		{respReq("HSET", ""), wrongArgs("hset")},
		{respReq("EXISTS", ""), rInt(1)}, // the plain key "" set above
		{respReq("DEL", ""), rInt(1)},
		{respReq("EXISTS", ""), rInt(0)},

		// Connection and server commands.
		{respReq("SELECT", "0"), rOK},
		{respReq("SELECT", "1"), rErr("ERR DB index is out of range")},
		{respReq("SELECT"), wrongArgs("select")},
		{respReq("CLIENT", "GETNAME"), rNil},
		{respReq("CLIENT", "SETNAME", "me"), rOK},
		{respReq("client", "getname"), rBulk("me")},
		{respReq("CLIENT", "SETNAME", "a b"), rErr("ERR Client names cannot contain spaces, newlines or special characters.")},
		{respReq("CLIENT", "SETINFO", "LIB-NAME", "test"), rOK},
		{respReq("CLIENT", "SETINFO", "LIB-VER", "1.0"), rOK},
		{respReq("CLIENT", "KILL"), rErr("ERR unknown subcommand or wrong number of arguments for 'KILL'. Try CLIENT HELP.")},
		{respReq("CLIENT"), wrongArgs("client")},
		{respReq("CONFIG", "GET", "save"), rBulks("save", "")},
		{respReq("CONFIG", "GET", "appendonly", "maxmemory"), rBulks("appendonly", "no")},
		{respReq("CONFIG", "GET", "nothing"), "*0\r\n"},
		{respReq("CONFIG", "SET", "x", "y"), rErr("ERR CONFIG SET is not supported; only CONFIG GET is")},
		{respReq("COMMAND", "COUNT"), rInt(len(respCommands()))},
		{respReq("COMMAND", "DOCS", "get"), rArr(rBulk("get"), rArr(rBulk("summary"), rBulk("Returns a plain key's value, or nil."),
			rBulk("since"), rBulk("1.0.0"), rBulk("group"), rBulk("string")))},
		{respReq("COMMAND", "DOCS", "nope"), "*0\r\n"},
		{respReq("COMMAND", "NOPE"), rErr("ERR unknown subcommand 'NOPE'. Try COMMAND HELP.")},
		{respReq("AUTH", "x"), rErr("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")},
		{respReq("AUTH", "a", "b", "c"), rErr("ERR syntax error")},
		{respReq("AUTH"), wrongArgs("auth")},
		{respReq("HELLO", "3"), rErr("NOPROTO this protocol version is not supported")},
		{respReq("HELLO", "x"), rErr("ERR Protocol version is not an integer or out of range")},
		{respReq("HELLO", "2", "NOPE"), rErr("ERR Syntax error in HELLO option 'NOPE'")},

		// Unknown commands, quoting up to three arguments.
		{respReq("FOO"), rErr("ERR unknown command 'FOO', with args beginning with: ")},
		{respReq("foo", "a", "b"), rErr("ERR unknown command 'foo', with args beginning with: 'a' 'b' ")},
		{respReq("foo", "a\r\nb"), rErr("ERR unknown command 'foo', with args beginning with: 'a  b' ")},
		{respReq("LPUSH", "*"), rErr("ERR unknown command 'LPUSH', with args beginning with: '*' ")},
		{respReq(strings.Repeat("X", 17)), rErr("ERR unknown command '" + strings.Repeat("X", 17) + "', with args beginning with: ")},
		{respReq(strings.Repeat("Y", 200)), rErr("ERR unknown command '" + strings.Repeat("Y", 128) + "', with args beginning with: ")},

		// Empty requests are skipped.
		{"*0\r\n*-1\r\n" + respReq("PING"), rSimple("PONG")},
	})

	// COMMAND lists every command with its arity.
	c.Send(respReq("COMMAND"))
	c.Expect("*" + strconv.Itoa(len(respCommands())) + "\r\n")
	for _, rc := range respCommands() {
		c.Expect("*6\r\n" + rBulk(strings.ToLower(rc.name)) + rInt(rc.arity) + "*0\r\n")
		for range 3 { // first key, last key, step
			if r := c.Reply(); r[0] != ':' {
				t.Fatalf("COMMAND entry of %s: %q, want an integer", rc.name, r)
			}
		}
	}
	c.Send(respReq("PING"))
	c.Expect(rSimple("PONG"))
}

// TestRESPCommandTable checks what respCommands promises of each entry.
func TestRESPCommandTable(t *testing.T) {
	seen := map[string]bool{}
	for _, rc := range respCommands() {
		if rc.name != strings.ToUpper(rc.name) || len(rc.name) > 16 || seen[rc.name] {
			t.Errorf("%q: names are upper case, at most 16 bytes and unique", rc.name)
		}
		seen[rc.name] = true
		if (rc.run.queue == nil) != (rc.run.reply == nil) || (rc.run.queue == nil) == (rc.run.answer == nil) {
			t.Errorf("%s: queue and reply, or answer alone, must be set", rc.name)
		}
		if rc.arity == 0 || rc.summary == "" || rc.group == "" {
			t.Errorf("%s: arity, group and summary are required", rc.name)
		}
		if rc.flags&flagBucket != 0 && (rc.run.queue == nil || rc.arity > 0 && rc.arity < 2 || rc.arity < 0 && rc.arity > -2) {
			t.Errorf("%s: flagBucket is for store commands that take a bucket", rc.name)
		}
		if rc.flags&(flagCreate|flagPairs) != 0 && rc.flags&flagBucket == 0 {
			t.Errorf("%s: flagCreate and flagPairs go with flagBucket", rc.name)
		}
	}
}

// TestRESPRedisCompatibility: requests where D-Boutique should answer as
// Redis 7 does, each on a fresh server.
func TestRESPRedisCompatibility(t *testing.T) {
	tests := []struct {
		name  string
		steps []respStep
	}{
		// Redis quotes the arguments of an unknown command up to 128
		// bytes in all, not the first three.
		{"unknown command with four arguments", []respStep{
			{respReq("foo", "a", "b", "c", "d"), rErr("ERR unknown command 'foo', with args beginning with: 'a' 'b' 'c' 'd' ")},
		}},
		// Redis quotes the bytes of an argument as they are, UTF-8 or
		// not, but for line breaks.
		{"unknown command with bytes that are not UTF-8", []respStep{
			{respReq("foo", "a\xff\xfe\r\nb"), rErr("ERR unknown command 'foo', with args beginning with: 'a\xff\xfe  b' ")},
			{respReq("EXPIRE", "k", "10", "\xc3("), rErr("ERR Unsupported option \xc3(")},
		}},
		// Redis clips each quoted argument to what is left of 128 bytes.
		{"unknown command with long arguments", []respStep{
			{respReq("foo", strings.Repeat("a", 100), strings.Repeat("b", 100)),
				rErr("ERR unknown command 'foo', with args beginning with: '" + strings.Repeat("a", 100) + "' '" + strings.Repeat("b", 25) + "' ")},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, Config{})
			c := dialRESP(t, s.addr)
			runRespSteps(t, c, tt.steps)
		})
	}
}

// TestRESPAndTextShareTheStore: both protocols see the same buckets; the
// buckets that hold plain keys are hidden from the text protocol, which
// refuses names that begin with a NUL byte.
func TestRESPAndTextShareTheStore(t *testing.T) {
	s := startServer(t, Config{})
	r := dialRESP(t, s.addr)
	var req, want strings.Builder
	for i := range 300 { // enough keys to fill most of the plain buckets
		req.WriteString(respReq("SET", "key"+strconv.Itoa(i), strconv.Itoa(i)))
		want.WriteString(rOK)
	}
	req.WriteString(respReq("HSET", "fruit", "apple", "1"))
	want.WriteString(rInt(1))
	r.Send(req.String())
	r.Expect(want.String())

	x := dialRESP(t, s.addr)
	runTextSteps(t, x, []respStep{
		{"BUCKETS\r\n", "fruit\r\nOK\r\n"},
		{"GET fruit apple\r\n", "1\r\nOK\r\n"},
		{"CREATE \x00x\r\n", "ERROR bucket names beginning with a NUL byte are reserved\r\n"},
		{"KEYS \x00kv:0\r\n", "ERROR bucket names beginning with a NUL byte are reserved\r\n"},
		{"GET \x00kv:0 key1\r\n", "ERROR bucket names beginning with a NUL byte are reserved\r\n"},
		{"PUT \x00kv:0 key1 v\r\n", "ERROR bucket names beginning with a NUL byte are reserved\r\n"},
		{"DROP \x00kv:0\r\n", "ERROR bucket names beginning with a NUL byte are reserved\r\n"},
		{"CREATE shopping\r\nPUT shopping eggs 3\r\n", "OK\r\nOK\r\n"},
		{"BUCKETS\r\n", "fruit\r\nshopping\r\nOK\r\n"},
	})
	runRespSteps(t, r, []respStep{
		{respReq("HGETALL", "shopping"), rBulks("eggs", "3")},
		{respReq("GET", "key7"), rBulk("7")},
		{respReq("EXISTS", "shopping", "key299"), rInt(2)},
	})
}

// TestRESPInfo: INFO on both protocols gives Config.Info's sections, then
// the server's own.
func TestRESPInfo(t *testing.T) {
	s := startServer(t, Config{Info: func() []InfoSection {
		return []InfoSection{{Name: "Server", Fields: []InfoField{{"dboutique_version", "test"}, {"odd", "a\r\nb"}}}}
	}})
	r := dialRESP(t, s.addr)
	r.Send(respReq("INFO"))
	info := r.Reply()
	if !strings.HasPrefix(info, "$") {
		t.Fatalf("INFO reply %q, want a bulk string", info)
	}
	for _, want := range []string{
		"# Server\r\ndboutique_version:test\r\nodd:a  b\r\n\r\n# Clients\r\nconnected_clients:1\r\nmaxclients:10000\r\n\r\n# Stats\r\n",
		"total_connections_received:1\r\n",
		"total_commands_processed:1\r\n",
	} {
		if !strings.Contains(info, want) {
			t.Errorf("RESP INFO lacks %q:\n%s", want, info)
		}
	}
	runRespSteps(t, r, []respStep{
		{respReq("INFO", "clients"), rBulk("# Clients\r\nconnected_clients:1\r\nmaxclients:10000\r\n")},
		{respReq("INFO", "nosuchsection"), rBulk("")},
	})

	x := dialRESP(t, s.addr)
	x.Send("INFO\r\n")
	var lines []string
	for l := x.Line(); l != "OK"; l = x.Line() {
		lines = append(lines, l)
	}
	want := []string{"# Server", "dboutique_version:test", "odd:a  b", "", "# Clients", "connected_clients:2", "maxclients:10000",
		"", "# Stats", "total_connections_received:2", "total_commands_processed:4"}
	if !slices.Equal(lines, want) {
		t.Errorf("text INFO:\n%q\nwant\n%q", lines, want)
	}
	runTextSteps(t, x, []respStep{{"INFO stats\r\n", "# Stats\r\ntotal_connections_received:2\r\ntotal_commands_processed:5\r\nOK\r\n"}})
}

// helloReply is HELLO 2's answer to the connection whose CLIENT ID is id.
func helloReply(id int) string {
	return rArr(rBulk("server"), rBulk("dboutique"), rBulk("version"), rBulk("7.0.0"), rBulk("proto"), rInt(2),
		rBulk("id"), rInt(id), rBulk("mode"), rBulk("standalone"), rBulk("role"), rBulk("master"), rBulk("modules"), "*0\r\n")
}

// clientID asks the connection's CLIENT ID.
func clientID(t *testing.T, c *respConn) int {
	t.Helper()
	c.Send(respReq("CLIENT", "ID"))
	r := c.Reply()
	id, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(r, ":"), "\r\n"))
	if r[0] != ':' || err != nil {
		t.Fatalf("CLIENT ID: %q", r)
	}
	return id
}

func TestRESPHello(t *testing.T) {
	s := startServer(t, Config{})
	c := dialRESP(t, s.addr)
	id := clientID(t, c)
	runRespSteps(t, c, []respStep{
		// A client asking for RESP3 is refused and goes on in RESP2.
		{respReq("HELLO", "3"), rErr("NOPROTO this protocol version is not supported")},
		{respReq("HELLO", "2"), helloReply(id)},
		{respReq("HELLO"), helloReply(id)},
		{respReq("HELLO", "2", "SETNAME", "app"), helloReply(id)},
		{respReq("CLIENT", "GETNAME"), rBulk("app")},
		{respReq("HELLO", "2", "AUTH", "default", "x"), rErr("WRONGPASS invalid username-password pair or user is disabled.")},
		{respReq("HELLO", "2", "AUTH", "default"), rErr("ERR Syntax error in HELLO option 'AUTH'")},
		{respReq("HSET", "b", "k", "v"), rInt(1)},
	})
	// Every connection has its own ID.
	if other := clientID(t, dialRESP(t, s.addr)); other == id {
		t.Errorf("two connections have CLIENT ID %d", id)
	}
}

func TestRESPAuth(t *testing.T) {
	s := startServer(t, Config{Password: []byte("s3cret")})
	c := dialRESP(t, s.addr)
	noauth := rErr("NOAUTH Authentication required.")
	wrongpass := rErr("WRONGPASS invalid username-password pair or user is disabled.")
	runRespSteps(t, c, []respStep{
		{respReq("PING"), noauth},
		{respReq("HSET", "b", "k", "v"), noauth},
		{respReq("GET", "k"), noauth},
		{respReq("INFO"), noauth},
		{respReq("CLIENT", "SETINFO", "LIB-NAME", "x"), noauth},
		// Redis checks the command and its arity before authentication.
		{respReq("FOO"), rErr("ERR unknown command 'FOO', with args beginning with: ")},
		{respReq("HGET", "b"), wrongArgs("hget")},
		{respReq("HELLO", "3"), rErr("NOPROTO this protocol version is not supported")},
		{respReq("HELLO", "2"), rErr("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")},
		{respReq("AUTH", "wrong"), wrongpass},
		{respReq("AUTH", "s3cre"), wrongpass},
		{respReq("AUTH", "s3cret!"), wrongpass},
		{respReq("AUTH", "nobody", "s3cret"), wrongpass},
		{respReq("PING"), noauth},
		// Requests pipelined after a good AUTH run authenticated.
		{respReq("AUTH", "s3cret") + respReq("PING") + respReq("HSET", "b", "k", "v"), rOK + rSimple("PONG") + rInt(1)},
		{respReq("AUTH", "wrong"), wrongpass},
		{respReq("HGET", "b", "k"), rBulk("v")}, // a failed AUTH keeps the connection authenticated, as in Redis
	})

	// AUTH with the user name.
	c = dialRESP(t, s.addr)
	runRespSteps(t, c, []respStep{{respReq("AUTH", "default", "s3cret") + respReq("PING"), rOK + rSimple("PONG")}})

	// HELLO 2 AUTH authenticates; HELLO 3 AUTH is refused for its
	// version before the password is looked at.
	c = dialRESP(t, s.addr)
	runRespSteps(t, c, []respStep{
		{respReq("HELLO", "3", "AUTH", "default", "s3cret"), rErr("NOPROTO this protocol version is not supported")},
		{respReq("PING"), noauth},
		{respReq("HELLO", "2", "AUTH", "other", "s3cret"), wrongpass},
		{respReq("PING"), noauth},
	})
	c.Send(respReq("HELLO", "2", "AUTH", "default", "s3cret", "SETNAME", "app"))
	hello := c.Reply()
	if want := helloReply(clientID(t, c)); hello != want {
		t.Errorf("HELLO 2 AUTH: %q, want %q", hello, want)
	}
	runRespSteps(t, c, []respStep{{respReq("CLIENT", "GETNAME"), rBulk("app")}})
}

func TestRESPQuit(t *testing.T) {
	s := startServer(t, Config{})
	c := dialRESP(t, s.addr)
	// QUIT answers after the requests before it, then closes; requests
	// after it are not answered.
	c.Send(respReq("HSET", "b", "k", "v") + respReq("PING") + respReq("QUIT") + respReq("PING") + respReq("HSET", "b", "k2", "v"))
	c.Expect(rInt(1) + rSimple("PONG") + rOK)
	c.ExpectClosed()
	c = dialRESP(t, s.addr)
	runRespSteps(t, c, []respStep{{respReq("HKEYS", "b"), rBulks("k")}})
	c.Send(respReq("quit"))
	c.Expect(rOK)
	c.ExpectClosed()
	waitFor(t, "the connections to close", func() bool { return s.NumConns() == 0 })
}

// TestRESPPipelining: 1000 commands of every kind in one write are
// answered in order, with a plain Executor and with a BatchExecutor (the
// store commands between two others run as one batch).
func TestRESPPipelining(t *testing.T) {
	t.Run("Executor", func(t *testing.T) { testRESPPipelining(t, store.NewStore()) })
	bs := &batchStore{Store: store.NewStore()}
	t.Run("BatchExecutor", func(t *testing.T) { testRESPPipelining(t, bs) })
	if sizes := bs.sizes(); !slices.ContainsFunc(sizes, func(n int) bool { return n > 1 }) {
		t.Errorf("the pipelined requests ran in batches of %v, never more than one", sizes)
	}
}

func testRESPPipelining(t *testing.T, exec Executor) {
	s := startServer(t, Config{Executor: exec})
	c := dialRESP(t, s.addr)
	var req, want strings.Builder
	add := func(r, w string) { req.WriteString(r); want.WriteString(w) }
	n := 0
	for i := 0; n < 1000; i++ {
		k, v := "k"+strconv.Itoa(i), "v"+strconv.Itoa(i)
		steps := []respStep{
			{respReq("HSET", "b", k, v), rInt(1)},
			{respReq("HGET", "b", k), rBulk(v)},
			{respReq("HSET", "b", k, v+"!", "x"+k, v), rInt(1)},
			{respReq("HLEN", "b"), rInt(2 * (i + 1))},
			{respReq("SET", k, v), rOK},
			{respReq("PING"), rSimple("PONG")},
			{respReq("GET", k), rBulk(v)},
			{respReq("NOPE", k), rErr("ERR unknown command 'NOPE', with args beginning with: '" + k + "' ")},
			{respReq("HMGET", "b", k, "missing"), rArr(rBulk(v+"!"), rNil)},
			{respReq("ECHO", v), rBulk(v)},
			{respReq("HDEL", "b", "x"+k, "x"+k), rInt(1)},
			{respReq("HEXISTS", "b", "x"+k), rInt(0)},
			{respReq("HSET", "b", "x"+k, v), rInt(1)},
			{respReq("EXISTS", k, "b"), rInt(2)},
			{respReq("HGET", "b"), wrongArgs("hget")},
			{"*0\r\n", ""},
			{respReq("DEL", k), rInt(1)},
			{respReq("GET", k), rNil},
			{respReq("HSET", "\x00b", "k", "v"), reservedReply},
			{respReq("SELECT", "0"), rOK},
		}
		for _, st := range steps {
			if n == 1000 {
				break
			}
			add(st.req, st.reply)
			n++
		}
	}
	go c.Send(req.String()) // replies are read while requests are written
	c.Expect(want.String())
	runRespSteps(t, c, []respStep{{respReq("HLEN", "b"), rInt(2 * 50)}})
}

// TestRESPProtocolErrors: a malformed request is answered with
// "-ERR Protocol error: ..." after the requests before it, and the
// connection closes.
func TestRESPProtocolErrors(t *testing.T) {
	s := startServer(t, Config{MaxBulkBytes: 64, MaxArgs: 6, MaxRequestBytes: 100})
	big := strings.Repeat("x", 64)
	tests := []struct{ req, reply string }{
		{respReq("PING") + "*x\r\n", rSimple("PONG") + rErr("ERR Protocol error: invalid multibulk length")},
		{respReq("HSET", "b", "k", "v") + "*1\r\n:1\r\n", rInt(1) + rErr("ERR Protocol error: expected '$', got ':'")},
		{respReq("PING") + "PING\r\n", rSimple("PONG") + rErr("ERR Protocol error: expected '*', got 'P'")},
		{"*1\r\n$-1\r\n", rErr("ERR Protocol error: invalid bulk length")},
		{"*1\r\n$4\r\nPINGxx" + respReq("PING"), rErr("ERR Protocol error: bulk string not followed by CRLF")},
		{"*1\r\n$00000000000000000000000000000004\r\nPING\r\n", rErr("ERR Protocol error: too big count string")},
		// Past Config's caps.
		{respReq("SET", "k", big) + respReq("GET", "k") + respReq("SET", "k", big+"y") + respReq("GET", "k"),
			rOK + rBulk(big) + rErr("ERR Protocol error: invalid bulk length: 65, at most 64")},
		{respReq("HSET", "b", "k1", "v", "k2", "v") + respReq("HSET", "b", "k1", "v", "k2", "v", "k3"),
			rInt(2) + rErr("ERR Protocol error: invalid multibulk length: 7, at most 6")},
		{respReq("HSET", "b", "k1", "v", "k2", "v", "k3", "v"), rErr("ERR Protocol error: invalid multibulk length: 8, at most 6")},
		{respReq("HSET", big, "k", big), rErr("ERR Protocol error: request larger than 100 bytes")},
	}
	for _, tt := range tests {
		c := dialRESP(t, s.addr)
		c.Send(tt.req)
		c.Expect(tt.reply)
		c.ExpectClosed()
	}
	// A bulk over the cap is refused from its header, without waiting
	// for its bytes.
	c := dialRESP(t, s.addr)
	c.Send("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000000\r\n")
	c.Expect(rErr("ERR Protocol error: invalid bulk length: 1000000, at most 64"))
	c.ExpectClosed()
	waitFor(t, "the connections to close", func() bool { return s.NumConns() == 0 })
}

// TestRESPProtocolErrorDefaultLimit: with the default MaxBulkBytes, a
// value of MaxBulkBytes is taken and one byte more is refused.
func TestRESPProtocolErrorDefaultLimit(t *testing.T) {
	s := startServer(t, Config{})
	c := dialRESP(t, s.addr)
	v := strings.Repeat("v", DefaultMaxBulkBytes)
	go c.Send(respReq("HSET", "b", "k", v) + respReq("HSTRLEN", "b", "k"))
	c.Expect(rInt(1) + rInt(DefaultMaxBulkBytes))
	c.Send(respReq("HGET", "b", "k"))
	c.Expect(rBulk(v))
	c.Send("*4\r\n$4\r\nHSET\r\n$1\r\nb\r\n$1\r\nk\r\n$" + strconv.Itoa(DefaultMaxBulkBytes+1) + "\r\n")
	c.Expect(rErr(fmt.Sprintf("ERR Protocol error: invalid bulk length: %d, at most %d", DefaultMaxBulkBytes+1, DefaultMaxBulkBytes)))
	c.ExpectClosed()
}

// TestRESPIdleTimeout: an idle RESP connection is closed without a word,
// as Redis does; a text-protocol message would break a RESP client.
func TestRESPIdleTimeout(t *testing.T) {
	s := startServer(t, Config{IdleTimeout: 50 * time.Millisecond})
	c := dialRESP(t, s.addr)
	c.Send(respReq("PING"))
	c.Expect(rSimple("PONG"))
	c.ExpectClosed()
	// A partial request does not hold the connection open either.
	c = dialRESP(t, s.addr)
	c.Send(respReq("PING") + "*2\r\n$4\r\nECHO\r\n$3\r\nab")
	c.Expect(rSimple("PONG"))
	c.ExpectClosed()
}

// --- the go-redis client ---

// newRedisClient returns a go-redis client of addr, closed by t.Cleanup.
// It speaks as go-redis does by default: HELLO 3 first, then RESP2.
func newRedisClient(t testing.TB, addr string, password string) *redis.Client {
	t.Helper()
	rc := redis.NewClient(&redis.Options{
		Addr:         addr,
		Password:     password,
		DialTimeout:  testTimeout,
		ReadTimeout:  testTimeout,
		WriteTimeout: testTimeout,
		PoolSize:     2,
	})
	t.Cleanup(func() { rc.Close() })
	return rc
}

func TestRESPGoRedis(t *testing.T) {
	m := NewMetrics()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	s := startServer(t, Config{Metrics: m})
	rc := newRedisClient(t, s.addr, "")
	ctx := ctxT(t)
	check := func(what string, err error, got, want any) {
		t.Helper()
		if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %v, %v; want %v", what, got, err, want)
		}
	}
	pong, err := rc.Ping(ctx).Result()
	check("PING", err, pong, "PONG")
	// The client's handshake: HELLO 3, refused, then CLIENT SETINFO for
	// its name and version, in RESP2.
	for _, tt := range []struct {
		command, result string
		want            float64
	}{{"hello", "error", 1}, {"client", "ok", 2}, {"ping", "ok", 1}} {
		l := map[string]string{"proto": "resp", "command": tt.command, "result": tt.result}
		if got := metricValue(t, reg, "dboutique_client_requests_total", l); got != tt.want {
			t.Errorf("go-redis handshake: %v counted %v times, want %v", l, got, tt.want)
		}
	}
	echo, err := rc.Echo(ctx, "a\x00b").Result()
	check("ECHO", err, echo, "a\x00b")

	n, err := rc.HSet(ctx, "shopping", "milk", "3", "eggs", "12").Result()
	check("HSET new", err, n, 2)
	n, err = rc.HSet(ctx, "shopping", map[string]any{"milk": "4", "bread": "1"}).Result()
	check("HSET one new", err, n, 1)
	v, err := rc.HGet(ctx, "shopping", "milk").Result()
	check("HGET", err, v, "4")
	if _, err := rc.HGet(ctx, "shopping", "nope").Result(); err != redis.Nil {
		t.Errorf("HGET of a missing key: %v, want redis.Nil", err)
	}
	if _, err := rc.HGet(ctx, "nowhere", "milk").Result(); err != redis.Nil {
		t.Errorf("HGET of a missing bucket: %v, want redis.Nil", err)
	}
	all, err := rc.HGetAll(ctx, "shopping").Result()
	check("HGETALL", err, all, map[string]string{"bread": "1", "eggs": "12", "milk": "4"})
	all, err = rc.HGetAll(ctx, "nowhere").Result()
	check("HGETALL of a missing bucket", err, all, map[string]string{})
	keys, err := rc.HKeys(ctx, "shopping").Result()
	check("HKEYS", err, keys, []string{"bread", "eggs", "milk"})
	vals, err := rc.HVals(ctx, "shopping").Result()
	check("HVALS", err, vals, []string{"1", "12", "4"})
	n, err = rc.HLen(ctx, "shopping").Result()
	check("HLEN", err, n, 3)
	ok, err := rc.HExists(ctx, "shopping", "eggs").Result()
	check("HEXISTS", err, ok, true)
	ok, err = rc.HExists(ctx, "shopping", "ham").Result()
	check("HEXISTS missing", err, ok, false)
	mv, err := rc.HMGet(ctx, "shopping", "milk", "ham").Result()
	check("HMGET", err, mv, []any{"4", nil})
	st, err := rc.HMSet(ctx, "fruit", "a", "1").Result()
	check("HMSET", err, st, true)
	n, err = rc.HDel(ctx, "shopping", "eggs", "ham").Result()
	check("HDEL", err, n, 1)

	st2, err := rc.Set(ctx, "k", "v", 0).Result()
	check("SET", err, st2, "OK")
	v, err = rc.Get(ctx, "k").Result()
	check("GET", err, v, "v")
	if _, err := rc.Get(ctx, "nope").Result(); err != redis.Nil {
		t.Errorf("GET of a missing key: %v, want redis.Nil", err)
	}
	n, err = rc.Exists(ctx, "k", "shopping", "nope").Result()
	check("EXISTS", err, n, 2)
	n, err = rc.Del(ctx, "k", "fruit", "nope").Result()
	check("DEL", err, n, 2)
	n, err = rc.Exists(ctx, "k", "fruit").Result()
	check("EXISTS after DEL", err, n, 0)

	info, err := rc.Info(ctx).Result()
	if err != nil || !strings.Contains(info, "# Clients\r\nconnected_clients:") {
		t.Errorf("INFO = %q, %v", info, err)
	}
	info, err = rc.Info(ctx, "stats").Result()
	if err != nil || !strings.HasPrefix(info, "# Stats\r\n") {
		t.Errorf("INFO stats = %q, %v", info, err)
	}
	if err := rc.Do(ctx, "NOPE").Err(); err == nil || err.Error() != "ERR unknown command 'NOPE', with args beginning with: " {
		t.Errorf("an unknown command: %v", err)
	}
	if err := rc.HSet(ctx, "\x00b", "k", "v").Err(); err == nil || err.Error() != "ERR bucket names beginning with a NUL byte are reserved" {
		t.Errorf("HSET of a reserved bucket: %v", err)
	}
	// The connection survives error replies.
	pong, err = rc.Ping(ctx).Result()
	check("PING after errors", err, pong, "PONG")
}

// TestRESPGoRedisBinaryAndBig: keys and values of every byte, and a 1 MiB
// value, come back unchanged.
func TestRESPGoRedisBinaryAndBig(t *testing.T) {
	s := startServer(t, Config{})
	rc := newRedisClient(t, s.addr, "")
	ctx := ctxT(t)
	every := make([]byte, 256)
	for i := range every {
		every[i] = byte(i)
	}
	bin := string(every)
	bucket := "bin" + bin // not reserved: it does not begin with NUL
	if err := rc.HSet(ctx, bucket, bin, bin).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := rc.HGet(ctx, bucket, bin).Result(); err != nil || v != bin {
		t.Errorf("HGET of every byte: %q, %v", v, err)
	}
	for i := range 256 {
		k, v := string(every[i:i+1]), string(every[255-i:256-i])
		if err := rc.HSet(ctx, bucket, k, v).Err(); err != nil {
			t.Fatal(err)
		}
		if err := rc.Set(ctx, k, v, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	all, err := rc.HGetAll(ctx, bucket).Result()
	if err != nil || len(all) != 257 {
		t.Fatalf("HGETALL: %d keys, %v", len(all), err)
	}
	for i := range 256 {
		k, v := string(every[i:i+1]), string(every[255-i:256-i])
		if all[k] != v {
			t.Errorf("HGETALL[%q] = %q, want %q", k, all[k], v)
		}
		if got, err := rc.Get(ctx, k).Result(); err != nil || got != v {
			t.Errorf("GET %q = %q, %v; want %q", k, got, err, v)
		}
	}
	keys, err := rc.HKeys(ctx, bucket).Result()
	if err != nil || !slices.IsSorted(keys) || len(keys) != 257 {
		t.Errorf("HKEYS: %d keys, sorted %v, %v", len(keys), slices.IsSorted(keys), err)
	}

	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	if err := rc.HSet(ctx, "big", "v", big).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := rc.HGet(ctx, "big", "v").Result(); err != nil || v != string(big) {
		t.Errorf("HGET of 1 MiB: %d bytes, %v", len(v), err)
	}
	if err := rc.Set(ctx, "big", big, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := rc.Get(ctx, "big").Result(); err != nil || v != string(big) {
		t.Errorf("GET of 1 MiB: %d bytes, %v", len(v), err)
	}
}

// TestRESPGoRedisPipeline: 500 commands in one pipeline.
func TestRESPGoRedisPipeline(t *testing.T) {
	s := startServer(t, Config{})
	rc := newRedisClient(t, s.addr, "")
	ctx := ctxT(t)
	pipe := rc.Pipeline()
	type check func() error
	var checks []check
	for i := range 100 {
		k, v := "k"+strconv.Itoa(i), "v"+strconv.Itoa(i)
		hset := pipe.HSet(ctx, "b", k, v)
		hget := pipe.HGet(ctx, "b", k)
		set := pipe.Set(ctx, k, v, 0)
		get := pipe.Get(ctx, "missing"+k)
		hlen := pipe.HLen(ctx, "b")
		checks = append(checks, func() error {
			if hset.Val() != 1 || hget.Val() != v || set.Val() != "OK" || get.Err() != redis.Nil || hlen.Val() != int64(i+1) {
				return fmt.Errorf("command %d: HSET %v, HGET %v, SET %v, GET %v, HLEN %v", i, hset, hget, set, get, hlen)
			}
			return nil
		})
	}
	cmds, err := pipe.Exec(ctx)
	if len(cmds) != 500 || (err != nil && err != redis.Nil) {
		t.Fatalf("pipeline: %d replies, %v", len(cmds), err)
	}
	for _, c := range checks {
		if err := c(); err != nil {
			t.Error(err)
		}
	}
}

func TestRESPGoRedisAuth(t *testing.T) {
	s := startServer(t, Config{Password: []byte("s3cret")})
	ctx := ctxT(t)
	// HELLO 3 AUTH is refused for its version, then AUTH is sent alone.
	if pong, err := newRedisClient(t, s.addr, "s3cret").Ping(ctx).Result(); err != nil || pong != "PONG" {
		t.Errorf("PING with the password: %q, %v", pong, err)
	}
	if err := newRedisClient(t, s.addr, "wrong").Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Errorf("PING with a wrong password: %v, want WRONGPASS", err)
	}
	if err := newRedisClient(t, s.addr, "").Ping(ctx).Err(); err == nil || !strings.HasPrefix(err.Error(), "NOAUTH") {
		t.Errorf("PING without the password: %v, want NOAUTH", err)
	}
}

// --- metrics ---

// metricValue returns the value of the counter or the sample count of the
// histogram called name whose labels include labels; -1 if none.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !hasLabels(m, labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return -1
}

func hasLabels(m *dto.Metric, labels map[string]string) bool {
	found := 0
	for _, lp := range m.GetLabel() {
		if v, ok := labels[lp.GetName()]; ok {
			if v != lp.GetValue() {
				return false
			}
			found++
		}
	}
	return found == len(labels)
}

func TestRESPMetrics(t *testing.T) {
	m := NewMetrics()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	s := startServer(t, Config{Metrics: m})

	r := dialRESP(t, s.addr)
	runRespSteps(t, r, []respStep{
		{respReq("HSET", "b", "k", "v"), rInt(1)},
		{respReq("HSET", "b", "k2", "v") + respReq("HGET", "b", "k") + respReq("HGET", "b", "nope"), rInt(1) + rBulk("v") + rNil},
		{respReq("HSET", "b", "k"), wrongArgs("hset")},
		{respReq("HSET", "\x00b", "k", "v"), reservedReply},
		{respReq("PING") + respReq("PING"), rSimple("PONG") + rSimple("PONG")},
		{respReq("SELECT", "9"), rErr("ERR DB index is out of range")},
		{respReq("NOPE"), rErr("ERR unknown command 'NOPE', with args beginning with: ")},
		{respReq("SET", "k", "v") + respReq("GET", "k") + respReq("DEL", "k"), rOK + rBulk("v") + rInt(1)},
	})
	x := dialRESP(t, s.addr)
	runTextSteps(t, x, []respStep{
		{"CREATE c\r\nPUT c k v\r\nGET c k\r\nGET nowhere k\r\n", "OK\r\nOK\r\nv\r\nOK\r\nNOT FOUND\r\n"},
		{"PING\r\nNOPE\r\nKEYS\r\n", "PONG\r\nCOMMAND NOT IMPLEMENTED\r\nERROR usage: KEYS <bucket>\r\n"},
	})

	const requests = "dboutique_client_requests_total"
	for _, tt := range []struct {
		proto, command, result string
		want                   float64
	}{
		{"resp", "hset", "ok", 2},
		{"resp", "hset", "error", 2}, // wrong arity, reserved name
		{"resp", "hset", "not_found", 0},
		{"resp", "hget", "ok", 2},
		{"resp", "ping", "ok", 2},
		{"resp", "select", "error", 1},
		{"resp", "other", "error", 1},
		{"resp", "set", "ok", 1},
		{"resp", "get", "ok", 1},
		{"resp", "del", "ok", 1},
		{"resp", "hlen", "ok", 0},
		{"text", "create", "ok", 1},
		{"text", "put", "ok", 1},
		{"text", "get", "ok", 1},
		{"text", "get", "not_found", 1},
		{"text", "ping", "ok", 1},
		{"text", "other", "error", 1},
		{"text", "keys", "error", 1},
	} {
		labels := map[string]string{"proto": tt.proto, "command": tt.command, "result": tt.result}
		if got := metricValue(t, reg, requests, labels); got != tt.want {
			t.Errorf("%s%v = %v, want %v", requests, labels, got, tt.want)
		}
	}
	const latency = "dboutique_client_request_seconds"
	for _, l := range []map[string]string{
		{"proto": "resp", "command": "hset"}, {"proto": "resp", "command": "hget"},
		{"proto": "text", "command": "put"}, {"proto": "text", "command": "get"},
	} {
		if got := metricValue(t, reg, latency, l); got < 1 {
			t.Errorf("%s%v has %v observations, want at least 1", latency, l, got)
		}
	}
	if got := metricValue(t, reg, "dboutique_client_connections_total", nil); got != 2 {
		t.Errorf("connections accepted: %v, want 2", got)
	}
	if got := metricValue(t, reg, "dboutique_client_connections", nil); got != 2 {
		t.Errorf("connections open: %v, want 2", got)
	}
	r.nc.Close()
	x.nc.Close()
	waitFor(t, "the connections gauge to reach 0", func() bool {
		return metricValue(t, reg, "dboutique_client_connections", nil) == 0
	})
}

// TestRESPMetricsShared: one Metrics shared by two servers counts
// both, and a request counted once per command however it is pipelined.
func TestRESPMetricsShared(t *testing.T) {
	m := NewMetrics()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	for range 2 {
		s := startServer(t, Config{Metrics: m})
		c := dialRESP(t, s.addr)
		var req, want strings.Builder
		for i := range 300 {
			req.WriteString(respReq("HSET", "b", "k"+strconv.Itoa(i), "v"))
			want.WriteString(rInt(1))
		}
		c.Send(req.String())
		c.Expect(want.String())
	}
	if got := metricValue(t, reg, "dboutique_client_requests_total", map[string]string{"proto": "resp", "command": "hset", "result": "ok"}); got != 600 {
		t.Errorf("HSET counted %v times, want 600", got)
	}
	if got := metricValue(t, reg, "dboutique_client_request_seconds", map[string]string{"proto": "resp", "command": "hset"}); got != 600 {
		t.Errorf("HSET latency observed %v times, want 600", got)
	}
}

// errExecutor fails the operations on some buckets with the errors a
// clustered node returns; the others run on a Store.
type errExecutor struct{ *store.Store }

func (e errExecutor) Execute(ctx context.Context, op store.Op) (store.Result, error) {
	switch op.Bucket {
	case "noroute":
		return store.Result{}, fmt.Errorf("%w: view changed", node.ErrNoRoute)
	case "unavailable":
		return store.Result{}, fmt.Errorf("%w: 1 member reachable, 2 needed", node.ErrUnavailable)
	case "noowner":
		return store.Result{}, fmt.Errorf("%w: %s", ring.ErrNoOwner, op.Bucket)
	case "unreachable":
		return store.Result{}, &node.UnreachableError{Node: "n2"}
	case "odd":
		return store.Result{}, errors.New("first line\r\nsecond line")
	}
	return e.Store.Execute(ctx, op)
}

// TestRESPExecutorErrors: the errors of a clustered node become Redis
// error replies, TRYAGAIN where retrying will do; one failed operation
// fails its whole command and no other.
func TestRESPExecutorErrors(t *testing.T) {
	s := startServer(t, Config{Executor: errExecutor{store.NewStore()}})
	c := dialRESP(t, s.addr)
	runRespSteps(t, c, []respStep{
		{respReq("HGET", "noroute", "k"), rErr("TRYAGAIN cluster membership is changing, retry")},
		{respReq("HSET", "noroute", "k", "v"), rErr("TRYAGAIN cluster membership is changing, retry")},
		{respReq("HGET", "unavailable", "k"), rErr("ERR cluster unavailable")},
		{respReq("HLEN", "noowner"), rErr("ERR no node owns the bucket")},
		{respReq("HGETALL", "unreachable"), rErr("ERR node n2 unreachable")},
		{respReq("HKEYS", "odd"), rErr("ERR first line  second line")},
		// A command's operations are not atomic: DEL answers TRYAGAIN for
		// the bucket it could not drop, yet the plain key is gone.
		{respReq("SET", "k", "v") + respReq("DEL", "k", "noroute") + respReq("GET", "k") + respReq("EXISTS", "unreachable"),
			rOK + rErr("TRYAGAIN cluster membership is changing, retry") + rNil + rErr("ERR node n2 unreachable")},
		{respReq("HSET", "b", "k", "v") + respReq("HGET", "noroute", "k") + respReq("HGET", "b", "k"),
			rInt(1) + rErr("TRYAGAIN cluster membership is changing, retry") + rBulk("v")},
	})
}

// TestRESPPanicClosesOnlyThatConnection: a panic while serving a RESP
// connection answers "-ERR internal error" after the replies before it and
// closes that connection only.
func TestRESPPanicClosesOnlyThatConnection(t *testing.T) {
	g := newGateExecutor()
	s := startServer(t, Config{Executor: g})
	other := dialRESP(t, s.addr)
	runRespSteps(t, other, []respStep{{respReq("HSET", "b", "k", "v"), rInt(1)}})
	c := dialRESP(t, s.addr)
	c.Send(respReq("PING") + respReq("HSET", "boom", "k", "v") + respReq("PING"))
	c.Expect(rSimple("PONG") + rErr("ERR internal error"))
	c.ExpectClosed()
	runRespSteps(t, other, []respStep{{respReq("HGET", "b", "k"), rBulk("v")}})
}

// TestRESPShutdownFinishesRequestsInFlight: Shutdown lets a RESP request
// being run finish and answer, then closes the connection.
func TestRESPShutdownFinishesRequestsInFlight(t *testing.T) {
	g := newGateExecutor()
	s := startServer(t, Config{Executor: g})
	c := dialRESP(t, s.addr)
	c.Send(respReq("HSET", "slow", "k", "v"))
	<-g.entered
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(ctxT(t)) }()
	waitFor(t, "the listener to close", func() bool {
		nc, err := net.Dial("tcp", s.addr)
		if err == nil {
			nc.Close()
		}
		return err != nil
	})
	close(g.release)
	c.Expect(rInt(1))
	c.ExpectClosed()
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// TestRESPBigCommands: commands with more operations than are run
// together (maxPending) are answered whole and in order.
func TestRESPBigCommands(t *testing.T) {
	for name, exec := range map[string]Executor{"Executor": store.NewStore(), "BatchExecutor": &batchStore{Store: store.NewStore()}} {
		t.Run(name, func(t *testing.T) {
			s := startServer(t, Config{Executor: exec})
			c := dialRESP(t, s.addr)
			const n = 3*maxPending + 7
			hset := []string{"HSET", "b"}
			hmget := []string{"HMGET", "b"}
			del := []string{"DEL"}
			var values, keys []string
			for i := range n {
				k := fmt.Sprintf("k%04d", i)
				hset = append(hset, k, "v"+k)
				hmget = append(hmget, k, "missing"+k)
				values = append(values, rBulk("v"+k), rNil)
				keys = append(keys, k)
				del = append(del, k, "b")
			}
			runRespSteps(t, c, []respStep{
				{respReq("SET", "k0000", "x") + respReq(hset...) + respReq("PING") + respReq(hmget...) + respReq("HLEN", "b"),
					rOK + rInt(n) + rSimple("PONG") + rArr(values...) + rInt(n)},
				{respReq("HKEYS", "b"), rBulks(keys...)},
				// k0000 is a plain key; b is a bucket, dropped at the first mention.
				{respReq(del...), rInt(2)},
				{respReq("HLEN", "b") + respReq("GET", "k0000"), rInt(0) + rNil},
			})
		})
	}
}

// TestRESPTooManyConnections: a connection over MaxConns is refused
// before the server knows its protocol; a RESP client gets an error, not
// a hang.
func TestRESPTooManyConnections(t *testing.T) {
	s := startServer(t, Config{MaxConns: 1})
	first := dialRESP(t, s.addr)
	runRespSteps(t, first, []respStep{{respReq("PING"), rSimple("PONG")}})
	rc := newRedisClient(t, s.addr, "")
	err := rc.Ping(ctxT(t)).Err()
	if err == nil {
		t.Fatal("PING over MaxConns succeeded")
	}
	t.Logf("go-redis over MaxConns: %v", err)
}

// TestRESPPipelinedLookups: lookups pipelined together get their keys
// from one string (lookupKey); each still reads its own key, long keys
// (which get strings of their own) and short ones mixed, around
// commands that fail before they run and commands on the empty bucket.
func TestRESPPipelinedLookups(t *testing.T) {
	for _, exec := range []Executor{store.NewStore(), &batchStore{Store: store.NewStore()}} {
		s := startServer(t, Config{Executor: exec})
		c := dialRESP(t, s.addr)
		key := func(i int) string {
			if i%3 == 0 {
				return strings.Repeat("long", 20) + strconv.Itoa(i) // over maxSharedKey
			}
			return "k" + strconv.Itoa(i)
		}
		var fill, req, want strings.Builder
		for i := range 300 {
			fill.WriteString(respReq("HSET", "b", key(i), "h"+strconv.Itoa(i)) + respReq("SET", key(i), "s"+strconv.Itoa(i)))
		}
		go c.Send(fill.String())
		c.Expect(strings.Repeat(rInt(1)+rOK, 300))
		for i := range 300 {
			k, next := key(i), key((i+1)%300)
			req.WriteString(respReq("HGET", "b", k) + respReq("GET", k) + respReq("SET", k, "v", "BOGUS") +
				respReq("MGET", k, "missing", next) + respReq("HGET", "", k) + respReq("HMGET", "b", next, k))
			want.WriteString(rBulk("h"+strconv.Itoa(i)) + rBulk("s"+strconv.Itoa(i)) + rErr("ERR syntax error") +
				rArr(rBulk("s"+strconv.Itoa(i)), rNil, rBulk("s"+strconv.Itoa((i+1)%300))) + rNil +
				rArr(rBulk("h"+strconv.Itoa((i+1)%300)), rBulk("h"+strconv.Itoa(i))))
		}
		go c.Send(req.String())
		c.Expect(want.String())
	}
}
