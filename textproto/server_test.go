package textproto

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/textproto/prototest"
)

func TestTranscriptOneByOne(t *testing.T) {
	prototest.RunTranscript(t, startServer(t, Config{}).addr)
}

func TestTranscriptPipelined(t *testing.T) {
	for _, eol := range []string{"\r\n", "\n"} {
		s := startServer(t, Config{})
		c := prototest.Dial(t, s.addr)
		var req, want strings.Builder
		for _, step := range prototest.Transcript() {
			req.WriteString(step.Req + eol)
			want.WriteString(step.Reply)
		}
		c.Send(req.String())
		c.Expect(want.String())
	}
}

// TestReplies runs request lines in order on one connection to a fresh
// server and checks every reply byte for byte.
func TestReplies(t *testing.T) {
	steps := []struct{ req, reply string }{
		// Framing: white space, case, empty lines.
		{"", "COMMAND NOT IMPLEMENTED\r\n"},
		{" \t ", "COMMAND NOT IMPLEMENTED\r\n"},
		{"CREATE shopping ", "OK\r\n"},
		{"  create\tshopping", "OK\r\n"},
		{"put shopping eggs 3", "OK\r\n"},
		{"Get  shopping\t\teggs  ", "3\r\nOK\r\n"},
		{"GET Shopping eggs", "NOT FOUND\r\n"},
		{"GET shopping Eggs", "\r\nOK\r\n"},
		// Creating an existing bucket keeps its contents.
		{"CREATE shopping", "OK\r\n"},
		{"GET shopping eggs", "3\r\nOK\r\n"},
		{"PUT shopping eggs 4", "OK\r\n"},
		{"GET shopping eggs", "4\r\nOK\r\n"},
		// Missing bucket and missing key.
		{"PUT nowhere k v", "NOT FOUND\r\n"},
		{"DELETE nowhere k", "NOT FOUND\r\n"},
		{"DELETE shopping missing", "OK\r\n"},
		// The original's verbs with the wrong number of words.
		{"CREATE", "COMMAND NOT IMPLEMENTED\r\n"},
		{"CREATE a b", "COMMAND NOT IMPLEMENTED\r\n"},
		{"PUT shopping eggs", "COMMAND NOT IMPLEMENTED\r\n"},
		{"PUT a b c d", "COMMAND NOT IMPLEMENTED\r\n"},
		{"PUT a b c d e f g", "COMMAND NOT IMPLEMENTED\r\n"},
		{"GET shopping", "COMMAND NOT IMPLEMENTED\r\n"},
		{"GET shopping eggs x", "COMMAND NOT IMPLEMENTED\r\n"},
		{"DELETE shopping", "COMMAND NOT IMPLEMENTED\r\n"},
		{"DELETE shopping eggs x", "COMMAND NOT IMPLEMENTED\r\n"},
		{"CREATEX shopping", "COMMAND NOT IMPLEMENTED\r\n"},
		{"GETT shopping eggs", "COMMAND NOT IMPLEMENTED\r\n"},
		{"\x00\xff\x01", "COMMAND NOT IMPLEMENTED\r\n"},
		// Extensions.
		{"PING", "PONG\r\n"},
		{"ping", "PONG\r\n"},
		{"PING x", "ERROR usage: PING\r\n"},
		{"CREATE fruit", "OK\r\n"},
		{"PUT fruit b 2", "OK\r\n"},
		{"PUT fruit a 1", "OK\r\n"},
		{"BUCKETS", "fruit\r\nshopping\r\nOK\r\n"},
		{"BUCKETS x", "ERROR usage: BUCKETS\r\n"},
		{"KEYS fruit", "a\r\nb\r\nOK\r\n"},
		{"KEYS nowhere", "NOT FOUND\r\n"},
		{"KEYS", "ERROR usage: KEYS <bucket>\r\n"},
		{"DROP fruit", "OK\r\n"},
		{"DROP fruit", "NOT FOUND\r\n"},
		{"GET fruit a", "NOT FOUND\r\n"},
		{"DROP", "ERROR usage: DROP <bucket>\r\n"},
		{"DROP a b", "ERROR usage: DROP <bucket>\r\n"},
		{"CREATE fruit", "OK\r\n"},
		{"KEYS fruit", "OK\r\n"},
		{"AUTH secret", "ERROR no password is set\r\n"},
		{"AUTH", "ERROR usage: AUTH <password>\r\n"},
		// Values are single words of any bytes but white space.
		{"PUT shopping k \x00\x01\xfe\r", "OK\r\n"}, // a CR inside the line is a byte like any other
		{"GET shopping k", "\x00\x01\xfe\r\r\nOK\r\n"},
		{"PUT shopping k \x00\x01\xfe", "OK\r\n"},
		{"GET shopping k", "\x00\x01\xfe\r\nOK\r\n"},
	}
	s := startServer(t, Config{})
	c := prototest.Dial(t, s.addr)
	for _, st := range steps {
		c.Send(st.req + "\r\n")
		c.Expect(st.reply)
	}
}

func TestHelpAndQuit(t *testing.T) {
	s := startServer(t, Config{})
	c := prototest.Dial(t, s.addr)
	c.Send("HELP\r\n")
	var lines []string
	for l := c.Line(); l != "OK"; l = c.Line() {
		lines = append(lines, l)
	}
	help := strings.Join(lines, "\n")
	for _, verb := range []string{"CREATE", "PUT", "GET", "DELETE", "DROP", "BUCKETS", "KEYS", "AUTH", "PING", "HELP", "QUIT"} {
		if !strings.Contains(help, verb) {
			t.Errorf("HELP does not mention %s:\n%s", verb, help)
		}
	}
	// QUIT answers, then closes; requests after it are not answered.
	c.Send("QUIT\r\nPING\r\n")
	c.Expect("OK\r\n")
	c.ExpectClosed()
}

// countingListener counts the writes made to the connections it accepts.
type countingListener struct {
	net.Listener
	writes atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: nc, writes: &l.writes}, nil
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

func TestPipeliningAnswersInOrderAndFlushesOnce(t *testing.T) {
	s, err := NewServer(Config{Executor: store.NewStore()})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: l}
	served := make(chan error, 1)
	go func() { served <- s.Serve(cl) }()
	defer func() { s.Close(); <-served }()

	c := prototest.Dial(t, l.Addr().String())
	c.Send("CREATE b\r\n")
	c.Expect("OK\r\n")
	before := cl.writes.Load()

	// 150 requests, about 3 KiB: one segment on loopback, read at once.
	var req, want strings.Builder
	for i := range 50 {
		fmt.Fprintf(&req, "PUT b k%d %d\r\nGET b k%d\r\nDELETE b k%d\n", i, i, i, i)
		fmt.Fprintf(&want, "OK\r\n%d\r\nOK\r\nOK\r\n", i)
	}
	c.Send(req.String())
	c.Expect(want.String())
	if w := cl.writes.Load() - before; w > 2 {
		t.Errorf("150 pipelined requests answered in %d writes, want 1 (2 at most if the read was split)", w)
	}

	// Many more requests than fit in one read buffer.
	req.Reset()
	want.Reset()
	for i := range 2000 {
		fmt.Fprintf(&req, "PUT b k %d\r\nGET b k\r\n", i)
		fmt.Fprintf(&want, "OK\r\n%d\r\nOK\r\n", i)
	}
	go c.Send(req.String()) // replies are read while requests are written
	c.Expect(want.String())
}

func TestLineTooLong(t *testing.T) {
	s := startServer(t, Config{MaxLineBytes: 100})
	ok := prototest.Dial(t, s.addr)
	ok.Send("CREATE b\r\n")
	ok.Expect("OK\r\n")

	// Exactly at the limit, with either line ending, is accepted.
	exact := "PUT b k " + strings.Repeat("v", 100-len("PUT b k "))
	ok.Send(exact + "\r\n" + exact + "\n")
	ok.Expect("OK\r\nOK\r\n")

	for _, tc := range []struct{ name, line string }{
		{"one over", exact + "v\r\n"},
		{"one over at end of input", exact + "v"},
		{"longer than the read buffer", strings.Repeat("x", 3*bufSize) + "\r\n"},
		{"never ends", strings.Repeat("x", 3*bufSize)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := prototest.Dial(t, s.addr)
			c.Send("PING\r\n" + tc.line)
			if !strings.HasSuffix(tc.line, "\n") {
				c.NetConn().(*net.TCPConn).CloseWrite()
			}
			c.Expect("PONG\r\nERROR line too long\r\n")
			c.ExpectClosed()
		})
	}
	ok.Send("PING\r\n")
	ok.Expect("PONG\r\n")
}

func TestHugeLineWithDefaultLimit(t *testing.T) {
	s := startServer(t, Config{})
	c := prototest.Dial(t, s.addr)
	// The client sends the whole 4 MiB line before it reads: the server
	// answers at 64 KiB, then drains the rest, so that closing the socket
	// with unread input does not reset the connection and lose the reply.
	c.Send("PING\r\nPUT b k " + strings.Repeat("x", 4<<20) + "\r\n")
	c.Expect("PONG\r\nERROR line too long\r\n")
	c.ExpectClosed()

	other := prototest.Dial(t, s.addr)
	other.Send("CREATE b\r\nPUT b k v\r\nGET b k\r\n")
	other.Expect("OK\r\nOK\r\nv\r\nOK\r\n")
}

func TestTooManyConnections(t *testing.T) {
	s := startServer(t, Config{MaxConns: 3})
	var open []*prototest.Conn
	for range 3 {
		c := prototest.Dial(t, s.addr)
		c.Send("PING\r\n")
		c.Expect("PONG\r\n")
		open = append(open, c)
	}
	over := prototest.Dial(t, s.addr)
	over.Expect("ERROR too many connections\r\n")
	over.ExpectClosed()

	// Existing connections are unaffected; closing one makes room.
	open[0].Send("PING\r\n")
	open[0].Expect("PONG\r\n")
	open[1].NetConn().Close()
	waitFor(t, "a connection slot to free up", func() bool { return s.NumConns() == 2 })
	c := prototest.Dial(t, s.addr)
	c.Send("PING\r\n")
	c.Expect("PONG\r\n")
}

func TestThousandIdleConnectionsLeaveTheNodeServing(t *testing.T) {
	s := startServer(t, Config{})
	for range 1000 {
		nc, err := net.DialTimeout("tcp", s.addr, testTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
	}
	waitFor(t, "1000 idle connections", func() bool { return s.NumConns() == 1000 })
	c := dialClient(t, s.addr)
	ctx := ctxT(t)
	if err := c.Create(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if err := c.Put(ctx, "b", "k", "v"); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(ctx, "b", "k"); err != nil || v != "v" {
		t.Fatalf("Get = %q, %v", v, err)
	}
}

func TestIdleTimeout(t *testing.T) {
	s := startServer(t, Config{IdleTimeout: 50 * time.Millisecond})
	c := prototest.Dial(t, s.addr)
	c.Send("PING\r\n")
	c.Expect("PONG\r\n")
	c.Expect("ERROR idle timeout\r\n")
	c.ExpectClosed()

	// A partial line does not hold the connection open either.
	c = prototest.Dial(t, s.addr)
	c.Send("PIN")
	c.Expect("ERROR idle timeout\r\n")
	c.ExpectClosed()
}

func TestAuth(t *testing.T) {
	s := startServer(t, Config{Password: []byte("s3cret")})
	c := prototest.Dial(t, s.addr)
	for _, req := range []string{"PING", "CREATE b", "GET b k", "HELP", "", "NOPE"} {
		c.Send(req + "\r\n")
		c.Expect("ERROR authentication required\r\n")
	}
	c.Send("AUTH wrong\r\nAUTH s3cre\r\nAUTH s3cret!\r\nAUTH\r\nPING\r\n")
	c.Expect("ERROR invalid password\r\nERROR invalid password\r\nERROR invalid password\r\nERROR usage: AUTH <password>\r\nERROR authentication required\r\n")
	c.Send("auth s3cret\r\nPING\r\nCREATE b\r\n")
	c.Expect("OK\r\nPONG\r\nOK\r\n")

	// QUIT works before AUTH.
	q := prototest.Dial(t, s.addr)
	q.Send("QUIT\r\n")
	q.Expect("OK\r\n")
	q.ExpectClosed()

	// The Go client.
	ctx := ctxT(t)
	if _, err := Dial(ctx, s.addr, WithPassword("nope")); !errors.Is(err, ErrInvalidPassword) {
		t.Fatalf("Dial with a wrong password: %v, want ErrInvalidPassword", err)
	}
	cl := dialClient(t, s.addr)
	if err := cl.Ping(ctx); !errors.Is(err, ErrAuthRequired) {
		t.Fatalf("Ping before AUTH: %v, want ErrAuthRequired", err)
	}
	cl = dialClient(t, s.addr, WithPassword("s3cret"))
	if err := cl.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidation(t *testing.T) {
	st := store.NewStore()
	bad := []Config{
		{},
		{Executor: st, MaxLineBytes: 10},
		{Executor: st, MaxLineBytes: -1},
		{Executor: st, MaxLineBytes: 2 << 30},
		{Executor: st, MaxConns: -1},
		{Executor: st, WriteTimeout: -time.Second},
		{Executor: st, Password: []byte("two words")},
		{Executor: st, Password: []byte("tab\there")},
		{Executor: st, Password: []byte("line\n")},
		{Executor: st, Password: []byte(strings.Repeat("p", maxPasswordLen+1))},
	}
	for i, cfg := range bad {
		if _, err := NewServer(cfg); err == nil {
			t.Errorf("config %d %+v: NewServer accepted it", i, cfg)
		}
	}
	s, err := NewServer(Config{Executor: st, IdleTimeout: -5})
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.MaxLineBytes != DefaultMaxLineBytes || s.cfg.MaxConns != DefaultMaxConns ||
		s.cfg.IdleTimeout != NoTimeout || s.cfg.WriteTimeout != DefaultWriteTimeout {
		t.Errorf("defaults not filled: %+v", s.cfg)
	}
}

func TestManyConcurrentClients(t *testing.T) {
	s := startServer(t, Config{})
	setup := dialClient(t, s.addr)
	// 20,000 requests and 500 listings of up to 5,000 keys: seconds under
	// the race detector on a busy machine, so more than testTimeout.
	ctx, cancel := context.WithTimeout(context.Background(), 6*testTimeout)
	defer cancel()
	if err := setup.Create(ctx, "shared"); err != nil {
		t.Fatal(err)
	}
	const clients, ops = 50, 100
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Go(func() {
			c, err := Dial(ctx, s.addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			own := fmt.Sprintf("own%d", i)
			if err := c.Create(ctx, own); err != nil {
				errs <- err
				return
			}
			for j := range ops {
				k, v := fmt.Sprintf("k%d", j), fmt.Sprintf("v%d-%d", i, j)
				for _, b := range []string{own, "shared"} {
					if err := c.Put(ctx, b, k+"-"+own, v); err != nil {
						errs <- err
						return
					}
					if got, err := c.Get(ctx, b, k+"-"+own); err != nil || got != v {
						errs <- fmt.Errorf("client %d: Get %s = %q, %v; want %q", i, b, got, err, v)
						return
					}
				}
				if j%10 == 0 {
					if _, err := c.Keys(ctx, "shared"); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	keys, err := setup.Keys(ctx, "shared")
	if err != nil || len(keys) != clients*ops {
		t.Fatalf("shared bucket has %d keys (%v), want %d", len(keys), err, clients*ops)
	}
}

// gateExecutor blocks operations on bucket "slow" until released, or until
// their context ends; it panics on bucket "boom".
type gateExecutor struct {
	*store.Store
	entered chan struct{}
	release chan struct{}
}

func newGateExecutor() *gateExecutor {
	return &gateExecutor{Store: store.NewStore(), entered: make(chan struct{}, 16), release: make(chan struct{})}
}

func (g *gateExecutor) Execute(ctx context.Context, op store.Op) (store.Result, error) {
	switch op.Bucket {
	case "slow":
		g.entered <- struct{}{}
		select {
		case <-g.release:
		case <-ctx.Done():
			return store.Result{}, ctx.Err()
		}
	case "boom":
		panic("boom")
	}
	return g.Store.Execute(ctx, op)
}

func TestShutdownFinishesRequestsInFlight(t *testing.T) {
	g := newGateExecutor()
	s := startServer(t, Config{Executor: g})
	busy := prototest.Dial(t, s.addr)
	idle := prototest.Dial(t, s.addr)
	idle.Send("PING\r\n")
	idle.Expect("PONG\r\n")

	// One request in flight and two more buffered behind it.
	busy.Send("CREATE slow\r\nPING\r\nCREATE other\r\n")
	<-g.entered

	shutdown := make(chan error, 1)
	go func() { shutdown <- s.Shutdown(ctxT(t)) }()

	idle.ExpectClosed()
	waitFor(t, "the listener to close", func() bool {
		nc, err := net.DialTimeout("tcp", s.addr, testTimeout)
		if err == nil {
			nc.Close()
		}
		return err != nil
	})
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	default:
	}

	close(g.release)
	busy.Expect("OK\r\nPONG\r\nOK\r\n")
	busy.ExpectClosed()
	if err := <-shutdown; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := s.Close(); err != nil { // idempotent after Shutdown
		t.Fatal(err)
	}
}

func TestShutdownDeadlineClosesStuckConnections(t *testing.T) {
	g := newGateExecutor()
	s := startServer(t, Config{Executor: g})
	c := prototest.Dial(t, s.addr)
	c.Send("CREATE slow\r\n")
	<-g.entered

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown with an ended context: %v, want context.Canceled", err)
	}
	c.ExpectClosed()
}

func TestServeAfterClose(t *testing.T) {
	s, err := NewServer(Config{Executor: store.NewStore()})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(l); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Close: %v", err)
	}
	if _, err := l.Accept(); err == nil {
		t.Fatal("Serve left the listener open")
	}
}

func TestPanicClosesOnlyThatConnection(t *testing.T) {
	g := newGateExecutor()
	core, logs := observer.New(zap.ErrorLevel)
	s := startServer(t, Config{Executor: g, Logger: zap.New(core)})
	other := prototest.Dial(t, s.addr)
	other.Send("CREATE b\r\n")
	other.Expect("OK\r\n")

	c := prototest.Dial(t, s.addr)
	c.Send("PING\r\nCREATE boom\r\nPING\r\n")
	c.Expect("PONG\r\nERROR internal error\r\n")
	c.ExpectClosed()

	other.Send("PUT b k v\r\nGET b k\r\n")
	other.Expect("OK\r\nv\r\nOK\r\n")
	waitFor(t, "the panicked connection to be released", func() bool { return s.NumConns() == 1 })
	entries := logs.FilterMessageSnippet("panic").All()
	if len(entries) != 1 || entries[0].ContextMap()["panic"] != "boom" {
		t.Fatalf("panic log entries: %+v, want one with panic=boom", entries)
	}
	if stack, _ := entries[0].ContextMap()["stack"].(string); !strings.Contains(stack, "gateExecutor") {
		t.Errorf("the logged stack does not show where the panic happened:\n%s", stack)
	}
}
