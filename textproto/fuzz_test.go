package textproto

import (
	"bytes"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/textproto/prototest"
)

// pipeConn is one end of an in-memory connection that, unlike net.Pipe,
// can be half-closed, so a client can send everything and still read the
// replies. Deadlines are accepted and ignored.
type pipeConn struct {
	r *io.PipeReader
	w *io.PipeWriter
}

func newPipe() (client, server *pipeConn) {
	c2sR, c2sW := io.Pipe()
	s2cR, s2cW := io.Pipe()
	return &pipeConn{r: s2cR, w: c2sW}, &pipeConn{r: c2sR, w: s2cW}
}

func (p *pipeConn) Read(b []byte) (int, error)  { return p.r.Read(b) }
func (p *pipeConn) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p *pipeConn) CloseWrite() error           { return p.w.Close() }
func (p *pipeConn) Close() error {
	p.r.CloseWithError(net.ErrClosed)
	return p.w.Close()
}
func (p *pipeConn) LocalAddr() net.Addr              { return pipeAddr{} }
func (p *pipeConn) RemoteAddr() net.Addr             { return pipeAddr{} }
func (p *pipeConn) SetDeadline(time.Time) error      { return nil }
func (p *pipeConn) SetReadDeadline(time.Time) error  { return nil }
func (p *pipeConn) SetWriteDeadline(time.Time) error { return nil }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// pipeListener hands out the server ends of pipes.
type pipeListener struct {
	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

// dial returns the client end of a new connection to the listener.
func (l *pipeListener) dial() *pipeConn {
	c, s := newPipe()
	l.conns <- s
	return c
}

// model is a deliberately plain re-statement of the protocol, used as the
// oracle for the server: it returns the bytes a new server with the given
// line limit and no password sends in answer to input.
func model(input []byte, maxLine int) []byte {
	buckets := map[string]map[string]string{}
	var out bytes.Buffer
	reply := func(lines ...string) {
		for _, l := range lines {
			out.WriteString(l + "\r\n")
		}
	}
	for len(input) > 0 {
		var line []byte
		if i := bytes.IndexByte(input, '\n'); i >= 0 {
			line, input = input[:i], input[i+1:]
		} else {
			line, input = input, nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) > maxLine {
			reply("ERROR line too long")
			break
		}
		w := strings.FieldsFunc(string(line), func(r rune) bool { return r == ' ' || r == '\t' })
		verb := ""
		if len(w) > 0 {
			verb = asciiUpper(w[0])
		}
		usage := func(u string) { reply("ERROR usage: " + u) }
		words := map[string]int{"CREATE": 2, "PUT": 4, "GET": 3, "DELETE": 3, "DROP": 2, "KEYS": 2, "OWNER": 2}
		if n, ok := words[verb]; ok && len(w) == n && strings.HasPrefix(w[1], "\x00") {
			reply("ERROR bucket names beginning with a NUL byte are reserved")
			continue
		}
		switch {
		case verb == "CREATE" && len(w) == 2:
			if buckets[w[1]] == nil {
				buckets[w[1]] = map[string]string{}
			}
			reply("OK")
		case verb == "PUT" && len(w) == 4:
			if b := buckets[w[1]]; b == nil {
				reply("NOT FOUND")
			} else {
				b[w[2]] = w[3]
				reply("OK")
			}
		case verb == "GET" && len(w) == 3:
			if b := buckets[w[1]]; b == nil {
				reply("NOT FOUND")
			} else {
				reply(b[w[2]], "OK")
			}
		case verb == "DELETE" && len(w) == 3:
			if b := buckets[w[1]]; b == nil {
				reply("NOT FOUND")
			} else {
				delete(b, w[2])
				reply("OK")
			}
		case verb == "DROP":
			if len(w) != 2 {
				usage("DROP <bucket>")
			} else if buckets[w[1]] == nil {
				reply("NOT FOUND")
			} else {
				delete(buckets, w[1])
				reply("OK")
			}
		case verb == "KEYS":
			if len(w) != 2 {
				usage("KEYS <bucket>")
			} else if b := buckets[w[1]]; b == nil {
				reply("NOT FOUND")
			} else {
				keys := make([]string, 0, len(b))
				for k := range b {
					keys = append(keys, k)
				}
				slices.Sort(keys)
				reply(keys...)
				reply("OK")
			}
		case verb == "BUCKETS":
			if len(w) != 1 {
				usage("BUCKETS")
				break
			}
			names := make([]string, 0, len(buckets))
			for n := range buckets {
				names = append(names, n)
			}
			slices.Sort(names)
			reply(names...)
			reply("OK")
		case verb == "NODES":
			if len(w) != 1 {
				usage("NODES")
			} else {
				reply("ERROR store: invalid operation: NODES needs a clustered node")
			}
		case verb == "OWNER":
			if len(w) != 2 {
				usage("OWNER <bucket>")
			} else {
				reply("ERROR store: invalid operation: OWNER needs a clustered node")
			}
		case verb == "PING":
			if len(w) != 1 {
				usage("PING")
			} else {
				reply("PONG")
			}
		case verb == "AUTH":
			if len(w) != 2 {
				usage("AUTH <password>")
			} else {
				reply("ERROR no password is set")
			}
		case verb == "HELP":
			reply(helpLines()...)
			reply("OK")
		case verb == "SCAN":
			cursor, count, match, ok := modelScanText(w)
			if !ok {
				usage("SCAN <cursor> [MATCH <pattern>] [COUNT <n>]")
				break
			}
			var names []modelName
			for n := range buckets {
				names = append(names, modelName{n, store.TypeHash})
			}
			page, next := modelPage(names, cursor, count, match)
			reply(strconv.FormatUint(next, 10))
			for _, n := range page {
				reply(n.name)
			}
			reply("OK")
		case verb == "QUIT":
			reply("OK")
			return out.Bytes()
		default:
			reply("COMMAND NOT IMPLEMENTED")
		}
	}
	return out.Bytes()
}

func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - ('a' - 'A')
		}
	}
	return string(b)
}

// fuzzExchange serves one connection with a server of cfg, sends input
// on it in pieces cut by cuts (each piece at most cuts[i]+1 bytes), closes
// its side, and returns everything the server answered until it closed.
// A server that does not finish within testTimeout crashes the test, so
// that the fuzzer keeps the input.
func fuzzExchange(t *testing.T, cfg Config, input, cuts []byte) []byte {
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l := newPipeListener()
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	defer func() { s.Close(); <-served }()

	watchdog := time.AfterFunc(testTimeout, func() { panic("server did not finish within the test timeout") })
	defer watchdog.Stop()

	c := l.dial()
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		rest := input
		for i := 0; len(rest) > 0; i++ {
			n := len(rest)
			if len(cuts) > 0 {
				n = min(n, int(cuts[i%len(cuts)])+1)
			}
			if _, err := c.Write(rest[:n]); err != nil {
				return // the server closed: QUIT, a line too long, a protocol error
			}
			rest = rest[n:]
		}
		c.CloseWrite()
	}()
	got, err := io.ReadAll(c)
	c.Close()
	<-sent
	if err != nil {
		t.Fatalf("reading replies: %v", err)
	}
	return got
}

// FuzzServer sends any bytes, split into reads anywhere, and checks that
// the server answers exactly as the model does: no panic, no lost or
// malformed reply, the connection closed exactly where the protocol says.
func FuzzServer(f *testing.F) {
	var tr strings.Builder
	for _, st := range prototest.Transcript() {
		tr.WriteString(st.Req + "\r\n")
	}
	seeds := []string{
		tr.String(),
		"CREATE b\nPUT b k v\nget B k\nGET b k\nKEYS b\nBUCKETS\nDROP b\nKEYS b\n",
		"create a\r\nPUT a k1 v1\r\nPUT a k2 v2\r\nDELETE a k1\r\nKEYS a\r\nQUIT\r\nPING\r\n",
		"PING\r\nHELP\r\n\r\n \t \r\nAUTH x\r\nAUTH\r\nDROP\r\nKEYS\r\nBUCKETS x\r\nPING x\r\n",
		"NODES\r\nnodes x\r\nOWNER b\r\nowner\r\nOWNER a b\r\n",
		"CREATE a\r\nCREATE b\r\nCREATE c\r\nSCAN 0\r\nscan 0 count 1\r\nSCAN 0 MATCH [ab] COUNT 5\r\nSCAN 123 match *\r\n" +
			"SCAN\r\nSCAN x\r\nSCAN -1\r\nSCAN 0 COUNT 0\r\nSCAN 0 COUNT\r\nSCAN 0 FOO 1\r\nSCAN 0 MATCH a COUNT 1 MATCH b\r\n",
		"PUT b k " + strings.Repeat("v", 100) + "\r\nPING\r\n",
		"CREATE b\r\nPUT b k " + strings.Repeat("v", 50) + "\r\nGET b k",
		"\x00\xff\r\r\n\rGET\ta\tb\r\n\xc3\x28 \xe2\x82\r\n",
		strings.Repeat("PING\r\n", 300),
	}
	for i, s := range seeds {
		f.Add([]byte(s), []byte{byte(i), 1, 7, 200})
		f.Add([]byte(s), []byte{byte(i), 1, 255})
	}
	const maxLine = 64
	f.Fuzz(func(t *testing.T, input, cuts []byte) {
		// A first byte '*' makes the connection RESP, which FuzzRESP
		// covers; this model is the text protocol's.
		if len(input) > 0 && input[0] == '*' {
			input = append([]byte{' '}, input[1:]...)
		}
		// INFO's reply holds counters the model does not keep.
		if bytes.Contains(bytes.ToUpper(input), []byte("INFO")) {
			t.Skip("INFO")
		}
		// Half the inputs go through the batch path.
		var exec Executor = store.NewStore()
		if len(cuts)%2 == 1 {
			exec = &batchStore{Store: store.NewStore()}
		}
		got := fuzzExchange(t, Config{Executor: exec, MaxLineBytes: maxLine}, input, cuts)
		if want := model(input, maxLine); !bytes.Equal(got, want) {
			t.Fatalf("input %q\nserver: %q\nmodel:  %q", input, got, want)
		}
	})
}
