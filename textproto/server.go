package textproto

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/dboutique/dboutique/node/store"
)

// Executor runs operations on the store. store.Store implements it for a
// single node; a routing node implements it by forwarding to the owner.
type Executor interface {
	Execute(ctx context.Context, op store.Op) (store.Result, error)
}

// BatchExecutor is an Executor that can also run several operations as one
// call. The server uses it for requests a client pipelines: ExecuteBatch
// must run ops in order, as Execute would one after another, putting each
// outcome in res[i] and errs[i] (both as long as ops).
type BatchExecutor interface {
	Executor
	ExecuteBatch(ctx context.Context, ops []store.Op, res []store.Result, errs []error)
}

// Defaults for Config fields left zero.
const (
	DefaultMaxLineBytes = 64 << 10
	DefaultMaxConns     = 10_000
	DefaultIdleTimeout  = 5 * time.Minute
	DefaultWriteTimeout = 30 * time.Second

	// NoTimeout, as Config.IdleTimeout, lets a connection wait for its next
	// request for ever.
	NoTimeout time.Duration = -1

	maxPasswordLen = 1024
)

// The range Config.MaxLineBytes accepts.
const (
	MinMaxLineBytes = 64
	MaxMaxLineBytes = 1 << 30
)

// Config configures a Server. Zero fields take the defaults above.
type Config struct {
	// Executor runs every operation. Required.
	Executor Executor
	// Password, when not empty, must be sent with AUTH before any other
	// request. It is one word: no spaces, tabs or line breaks.
	Password []byte
	// MaxLineBytes caps a request line, without its line ending. A longer
	// line is answered with "ERROR line too long" and the connection closes.
	MaxLineBytes int
	// MaxConns caps simultaneous client connections; one more is answered
	// with "ERROR too many connections" and closed.
	MaxConns int
	// IdleTimeout closes a connection that sends no complete request for
	// this long. NoTimeout disables it.
	IdleTimeout time.Duration
	// WriteTimeout bounds each write of replies to a client that does not read.
	WriteTimeout time.Duration
	// MaxBulkBytes caps one argument of a RESP request (a key or value);
	// MaxArgs caps a RESP request's arguments, and MaxRequestBytes their
	// total size. Past a cap the client gets "-ERR Protocol error" and the
	// connection closes, as with Redis.
	MaxBulkBytes    int
	MaxArgs         int
	MaxRequestBytes int
	// Metrics, when set, counts requests and connections (see Metrics).
	Metrics *Metrics
	// Info, when set, gives the sections that INFO starts with (on both
	// protocols); the server adds "Clients" and "Stats" of its own.
	Info func() []InfoSection
	// Logger receives the server's logs; nil discards them.
	Logger *zap.Logger
}

func (c *Config) validate() error {
	if c.Executor == nil {
		return errors.New("textproto: Config.Executor is required")
	}
	if len(c.Password) > maxPasswordLen {
		return fmt.Errorf("textproto: password longer than %d bytes", maxPasswordLen)
	}
	for _, b := range c.Password {
		if isSpace(b) || b == '\r' || b == '\n' {
			return errors.New("textproto: password must be one word (no spaces, tabs or line breaks)")
		}
	}
	c.MaxLineBytes = cmp.Or(c.MaxLineBytes, DefaultMaxLineBytes)
	c.MaxConns = cmp.Or(c.MaxConns, DefaultMaxConns)
	c.IdleTimeout = cmp.Or(c.IdleTimeout, DefaultIdleTimeout)
	c.WriteTimeout = cmp.Or(c.WriteTimeout, DefaultWriteTimeout)
	c.MaxBulkBytes = cmp.Or(c.MaxBulkBytes, DefaultMaxBulkBytes)
	c.MaxArgs = cmp.Or(c.MaxArgs, DefaultMaxArgs)
	c.MaxRequestBytes = cmp.Or(c.MaxRequestBytes, max(DefaultMaxRequestBytes, c.MaxBulkBytes))
	if c.IdleTimeout < 0 {
		c.IdleTimeout = NoTimeout
	}
	switch {
	case c.MaxLineBytes < MinMaxLineBytes || c.MaxLineBytes > MaxMaxLineBytes:
		return fmt.Errorf("textproto: MaxLineBytes %d out of range [%d, %d]", c.MaxLineBytes, MinMaxLineBytes, MaxMaxLineBytes)
	case c.MaxConns < 0:
		return fmt.Errorf("textproto: MaxConns %d is negative", c.MaxConns)
	case c.WriteTimeout < 0:
		return fmt.Errorf("textproto: WriteTimeout %v is negative", c.WriteTimeout)
	case c.MaxBulkBytes < MinMaxBulkBytes || c.MaxBulkBytes > MaxMaxBulkBytes:
		return fmt.Errorf("textproto: MaxBulkBytes %d out of range [%d, %d]", c.MaxBulkBytes, MinMaxBulkBytes, MaxMaxBulkBytes)
	case c.MaxArgs < 4:
		return fmt.Errorf("textproto: MaxArgs %d below 4 (HSET takes four)", c.MaxArgs)
	case c.MaxRequestBytes < c.MaxBulkBytes:
		return fmt.Errorf("textproto: MaxRequestBytes %d below MaxBulkBytes %d", c.MaxRequestBytes, c.MaxBulkBytes)
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return nil
}

// Server serves the text protocol, in the manner of net/http's Server:
// Serve accepts connections on a listener until Shutdown or Close.
type Server struct {
	cfg      Config
	log      *zap.Logger
	password [sha256.Size]byte // hash of cfg.Password, compared in constant time

	ctx    context.Context // passed to Executor; cancelled by Close
	cancel context.CancelFunc

	closing  atomic.Bool   // set once by Shutdown or Close
	numConns atomic.Int64  // open connections, for MaxConns
	accepted atomic.Uint64 // connections served so far; also gives CLIENT ID
	commands atomic.Uint64 // requests answered, for INFO

	verbs     [numVerbs]textCommand // the text protocol's verbs (textCommands)
	plain     []string              // names of the buckets that hold RESP's plain keys
	respCmds  []respCommand         // the RESP commands (respCommands)
	respIndex map[string]int        // upper-case name -> index in respCmds
	clock     *store.Clock          // the Executor's, if it has one (see nowMillis)

	mu        sync.Mutex // guards listeners, conns and wg.Add
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	wg        sync.WaitGroup // one per connection goroutine
}

// NewServer validates cfg and returns a Server. It starts nothing.
func NewServer(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		password:  sha256.Sum256(cfg.Password),
		ctx:       ctx,
		cancel:    cancel,
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*conn]struct{}),
		verbs:     textCommands(),
		plain:     plainBuckets(),
		respCmds:  respCommands(),
		respIndex: make(map[string]int),
	}
	for i, rc := range srv.respCmds {
		srv.respIndex[rc.name] = i
	}
	if ck, ok := cfg.Executor.(clocked); ok {
		srv.clock = ck.Clock()
	}
	return srv, nil
}

// clocked is an Executor with the clock by which it judges expiry (a
// store.Store).
type clocked interface{ Clock() *store.Clock }

// nowMillis returns the time, in ms since the Unix epoch, from which a
// relative expiry is checked for overflow, as Redis checks it: by the
// Executor's clock if it has one, else by the wall clock. (The bucket's
// primary counts the expiry from its own clock.)
func (s *Server) nowMillis() int64 {
	if s.clock != nil {
		return s.clock.Millis()
	}
	return time.Now().UnixMilli()
}

// verbOf gives the text verb that runs operations of kind k.
func (s *Server) verbOf(k store.Kind) verb {
	for v := range s.verbs {
		if s.verbs[v].words > 0 && s.verbs[v].kind == k {
			return verb(v)
		}
	}
	return verbUnknown
}

// Serve accepts connections on l and serves each on its own goroutine. It
// returns ErrServerClosed after Shutdown or Close, or the listener's error.
// Serve closes l when it returns.
func (s *Server) Serve(l net.Listener) error {
	if !s.trackListener(l) {
		l.Close()
		return ErrServerClosed
	}
	defer s.untrackListener(l)

	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.closing.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Out of file descriptors and the like: wait and retry,
				// as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", zap.Error(err), zap.Duration("delay", backoff))
				select {
				case <-time.After(backoff):
				case <-s.ctx.Done():
					return ErrServerClosed
				}
				continue
			}
			return err
		}
		backoff = 0
		if s.numConns.Add(1) > int64(s.cfg.MaxConns) {
			s.numConns.Add(-1)
			s.refuse(nc, "too many connections")
			continue
		}
		c := newConn(s, nc)
		if !s.trackConn(c) {
			s.numConns.Add(-1)
			nc.Close()
			return ErrServerClosed
		}
		go c.serve()
	}
}

// isTemporary reports accept errors worth retrying (EMFILE, ENFILE,
// ECONNABORTED and the like), which net marks as temporary.
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// refuse answers a connection that will not be served with an error line
// and closes it. A new socket's send buffer is empty, so the write does not
// block; the deadline guards it anyway.
func (s *Server) refuse(nc net.Conn, msg string) {
	s.log.Warn("connection refused", zap.String("remote", nc.RemoteAddr().String()), zap.String("reason", msg))
	_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = nc.Write([]byte("ERROR " + msg + "\r\n"))
	_ = nc.Close()
}

func (s *Server) trackListener(l net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return false
	}
	s.listeners[l] = struct{}{}
	return true
}

func (s *Server) untrackListener(l net.Listener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.listeners[l]; ok {
		delete(s.listeners, l)
		l.Close()
	}
}

// trackConn registers c and counts its goroutine, unless the server is closing.
func (s *Server) trackConn(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.cfg.Metrics.opened()
	return true
}

func (s *Server) untrackConn(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.numConns.Add(-1)
	s.cfg.Metrics.closed()
	s.wg.Done()
}

// NumConns returns the number of open client connections.
func (s *Server) NumConns() int { return int(s.numConns.Load()) }

// Shutdown stops the server gracefully: it closes the listeners, closes
// idle connections, lets connections finish the requests they have already
// received, and waits for them to close. If ctx ends first, it closes the
// remaining connections, waits for their goroutines and returns ctx.Err().
func (s *Server) Shutdown(ctx context.Context) error {
	s.beginClose()
	done := make(chan struct{})
	go func() { // ends when the last connection goroutine does
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.forceClose()
		<-done
		return ctx.Err()
	}
}

// Close closes the listeners and every connection at once, without
// finishing requests, and waits for the connection goroutines. It is
// idempotent, and safe to call after or during Shutdown.
func (s *Server) Close() error {
	s.beginClose()
	s.forceClose()
	s.wg.Wait()
	return nil
}

// beginClose stops accepting and wakes every connection waiting for a
// request, so that it closes once its buffered requests are answered.
func (s *Server) beginClose() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing.Store(true)
	for l := range s.listeners {
		l.Close()
		delete(s.listeners, l)
	}
	for c := range s.conns {
		c.wake()
	}
}

// forceClose closes every connection, then cancels the requests in
// flight: in that order, the error a cancelled request returns finds its
// connection closed and never reaches the client.
func (s *Server) forceClose() {
	s.mu.Lock()
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	s.cancel()
}
