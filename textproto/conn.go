package textproto

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"io"
	"net"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/p2p/deadline"
	"github.com/dboutique/dboutique/ring"
)

const bufSize = 4 << 10 // per-connection read and write buffers

// conn is one client connection, served by one goroutine.
type conn struct {
	srv    *Server
	nc     net.Conn
	lines  lineReader
	w      *bufio.Writer
	req    request
	authed bool

	lastBucket string // see bucketName
	id         uint64 // CLIENT ID
	name       string // CLIENT SETNAME

	// RESP: set once the first byte says the client speaks it.
	resp  bool
	rr    respReader
	rw    respWriter
	rcmds []respCmd // commands whose operations are pending
	// replyWith, when set by a command's queue, replaces the reply its
	// table entry gives (SET answers differently with GET).
	replyWith respReply

	// Store operations read from the buffer and not run yet; they run
	// together (see runPending) before anything else is answered.
	pending []store.Op
	// The keys of the pending lookups that lookupKey gathered, and where
	// each goes: one string made of keyBytes gives them all (resolveKeys).
	keyBytes []byte
	keyRefs  []keyRef
	res      []store.Result
	errs     []error
	took     time.Duration // how long the pending operations took, when measured

	// mu orders the connection's own read-deadline updates against
	// Server.beginClose waking it, so that a wake-up is never overwritten.
	mu           sync.Mutex
	idleDeadline time.Time // the read deadline armDeadline set last; guarded by mu
	idleArmed    bool      // whether idleDeadline is the socket's; guarded by mu
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{srv: s, nc: nc, authed: len(s.cfg.Password) == 0, id: s.accepted.Add(1)}
	c.lines = lineReader{r: bufio.NewReaderSize(nc, bufSize), max: s.cfg.MaxLineBytes}
	// The write deadline keeps a client that stops reading from holding
	// the goroutine for ever.
	c.w = bufio.NewWriterSize(&deadline.Writer{W: nc, Timeout: s.cfg.WriteTimeout}, bufSize)
	return c
}

// wake makes a connection blocked waiting for a request return from its
// read, so that it sees the server is closing.
func (c *conn) wake() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.idleArmed = false
	_ = c.nc.SetReadDeadline(time.Now())
}

// armDeadline sets the idle deadline for the reads to come. It reports
// false, leaving the deadline that wake set, when the server is closing.
// Like deadline.Writer, it moves the deadline only when it has come within
// a sixteenth of the idle timeout, which saves a timer update per request:
// a connection is closed after between 15/16 of the idle timeout and all
// of it without a request.
func (c *conn) armDeadline() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.srv.closing.Load() {
		return false
	}
	idle := c.srv.cfg.IdleTimeout
	if idle <= 0 {
		if !c.idleArmed {
			_ = c.nc.SetReadDeadline(time.Time{})
			c.idleArmed = true
		}
		return true
	}
	now := time.Now()
	if c.idleArmed && c.idleDeadline.Sub(now) >= idle-idle/16 {
		return true
	}
	c.idleDeadline = now.Add(idle)
	c.idleArmed = true
	_ = c.nc.SetReadDeadline(c.idleDeadline)
	return true
}

// rearmEvery is how many requests answered from the buffer, without a wait
// in between, renew the idle deadline, so that a client pipelining without
// pause for longer than the idle timeout is not taken for idle.
const rearmEvery = 1024

func (c *conn) serve() {
	defer c.srv.untrackConn(c)
	defer c.nc.Close()
	defer func() {
		if p := recover(); p != nil {
			c.srv.log.Error("panic serving connection; closing it",
				zap.String("remote", c.nc.RemoteAddr().String()),
				zap.Any("panic", p), zap.ByteString("stack", debug.Stack()))
			// Replies already buffered go out first, then the error.
			if c.resp {
				c.rw.err("ERR internal error")
			} else {
				c.writeLine(errorPrefix + "internal error")
			}
			_ = c.w.Flush()
		}
	}()
	c.srv.log.Debug("connection opened", zap.String("remote", c.nc.RemoteAddr().String()))

	// The first byte chooses the protocol: a RESP request starts with '*'.
	if !c.armDeadline() {
		return
	}
	first, err := c.lines.r.Peek(1)
	if err != nil {
		c.readFailed(err)
		return
	}
	if first[0] == '*' {
		c.serveRESP()
		return
	}
	busy := 0 // requests answered since the deadline was armed
	for {
		if !c.beforeRead(&busy, c.runPending) {
			return
		}
		line, err := c.lines.next()
		if err != nil {
			c.readFailed(err)
			return
		}
		if !c.handle(line) { // QUIT
			if c.w.Flush() == nil {
				c.lingerClose()
			}
			return
		}
	}
}

// beforeRead runs before each request is read. When no input is buffered,
// so that the read may block, it runs the pending requests (run), flushes
// the replies and arms the idle deadline; while requests are buffered they
// are answered without waiting, and every rearmEvery of them renew the
// deadline. busy counts them. It reports false when the connection should
// end (the client is gone, or the server is closing).
func (c *conn) beforeRead(busy *int, run func()) bool {
	if c.lines.r.Buffered() == 0 {
		run()
		if err := c.w.Flush(); err != nil {
			return false
		}
		*busy = 0
		return c.armDeadline()
	}
	if *busy++; *busy == rearmEvery {
		c.armDeadline()
		*busy = 0
	}
	return true
}

// readFailed answers, where the client should hear why, a read that ended
// the connection.
func (c *conn) readFailed(err error) {
	c.runPending() // the requests before the failure are answered first
	var ne net.Error
	switch {
	case errors.Is(err, errLineTooLong):
		c.writeLine(replyForError(ErrLineTooLong))
		if c.w.Flush() == nil {
			c.lingerClose()
		}
	case errors.As(err, &ne) && ne.Timeout() && !c.srv.closing.Load():
		c.writeLine(replyForError(ErrIdleTimeout))
		_ = c.w.Flush()
	}
	// Otherwise the client is done or went away, or the server is closing.
}

// Bounds of lingerClose.
const (
	lingerTime  = time.Second
	lingerBytes = 64 << 20
)

// lingerClose ends a connection whose client may still be sending (the
// rest of a line that was too long, requests after QUIT) so that the
// client gets the last reply.
// Closing a socket with unread input makes the kernel reset the
// connection, and a reset can discard the reply before the client reads
// it. So: send FIN, then read and discard input until the client closes,
// for at most lingerTime and lingerBytes, as net/http does after an
// oversized request.
func (c *conn) lingerClose() {
	cw, ok := c.nc.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	c.mu.Lock()
	c.idleArmed = false
	_ = c.nc.SetReadDeadline(time.Now().Add(lingerTime))
	c.mu.Unlock()
	_, _ = io.Copy(io.Discard, io.LimitReader(c.nc, lingerBytes))
}

// handle answers one request line and reports whether to keep reading.
func (c *conn) handle(line []byte) bool {
	r := &c.req
	parseLine(line, r)
	v := verbUnknown
	if r.n > 0 {
		v = parseVerb(r.words[0])
	}
	c.srv.commands.Add(1)
	cmd := &c.srv.verbs[v]
	isStore := cmd.words > 0
	arityOK := r.arity() == cmd.words || v == verbPut && r.arity() == 6 && bytes.EqualFold(r.words[4], []byte("EX"))
	if isStore && c.authed && arityOK && (r.n < 2 || !reserved(r.words[1])) {
		op, usage := c.op(cmd)
		if usage == "" {
			// Run later, together with the store requests around it.
			if op.Kind == store.KindGet { // GET <bucket> <key>
				c.lookupKey(op, r.words[2])
			} else {
				c.pending = append(c.pending, op)
			}
			if len(c.pending) == maxPending {
				c.runPending()
			}
			return true
		}
		c.runPending()
		c.usage(usage)
		return true
	}
	// Anything else is answered after the operations before it.
	c.runPending()
	if m := c.srv.cfg.Metrics; m != nil {
		// Requests that reach here and do not run an operation: count
		// them as answered, or as errors when they are not understood.
		result := resultOK
		if !c.authed && v != verbAuth && v != verbQuit || v == verbUnknown || isStore {
			result = resultError
		}
		m.request(protoText, int(v), result)
	}
	if !c.authed && v != verbAuth && v != verbQuit {
		c.writeLine(replyForError(ErrAuthRequired))
		return true
	}
	switch v {
	case verbPing:
		if r.arity() != 1 {
			c.usage("PING")
			return true
		}
		c.writeLine("PONG")
		return true
	case verbHelp:
		c.writeHelp()
		return true
	case verbInfo:
		if r.arity() > 2 {
			c.usage("INFO [section]")
			return true
		}
		section := ""
		if r.n == 2 {
			section = string(r.words[1])
		}
		for _, l := range strings.Split(strings.TrimSuffix(formatInfo(c.srv.info(section)), "\r\n"), "\r\n") {
			c.writeLine(l)
		}
		c.writeLine(replyOK)
		return true
	case verbQuit:
		c.writeLine(replyOK)
		return false
	case verbAuth:
		if r.arity() != 2 {
			c.usage("AUTH <password>")
			return true
		}
		c.auth(r.words[1])
		return true
	case verbScan:
		c.scanText(line) // the words again: SCAN takes more than maxWords
		return true
	}
	// Left: unknown verbs, store verbs with the wrong number of words, and
	// names the node keeps for itself.
	switch {
	case isStore && arityOK:
		c.writeLine(replyForError(ErrReservedName))
	case !isStore || cmd.usage == "":
		// The original answers its own verbs with the wrong number of
		// words as it answers unknown ones.
		c.writeLine(replyNotImplemented)
	default:
		c.usage(cmd.usage)
	}
	return true
}

// op builds the operation of the request just parsed, or returns the
// usage line to answer when its arguments are wrong.
func (c *conn) op(cmd *textCommand) (store.Op, string) {
	r := &c.req
	op := store.Op{Kind: cmd.kind}
	if r.n > 1 {
		op.Bucket = c.bucketName(r.words[1])
	}
	switch cmd.kind {
	case store.KindExpire: // EXPIRE <bucket> <seconds>
		n, ok := parseInt(r.words[2])
		if !ok || !(expiryUnit{}).fill(&op, n, c.srv.nowMillis()) {
			return op, cmd.usage
		}
		op.Flags |= store.FlagBucket
		return op, ""
	case store.KindTTL: // TTL <bucket>
		op.Flags = store.FlagBucket
		return op, ""
	}
	if r.n > 2 && cmd.kind != store.KindGet { // a lookup's key: see lookupKey
		op.Key = string(r.words[2])
	}
	if r.n > 3 {
		op.Value = string(r.words[3])
	}
	if r.n == 6 { // PUT <bucket> <key> <value> EX <seconds>
		n, ok := parseInt(r.words[5])
		if !ok || n <= 0 || !(expiryUnit{}).fill(&op, n, c.srv.nowMillis()) {
			return op, "PUT <bucket> <key> <value> [EX <seconds>]"
		}
	}
	return op, ""
}

// maxPending caps the operations run together.
const maxPending = 128

// runPending runs the pending operations (see execPending) and writes
// their replies.
func (c *conn) runPending() {
	if len(c.pending) == 0 {
		return
	}
	c.execPending()
	for i, op := range c.pending {
		c.reply(op, c.res[i], c.errs[i])
	}
	c.donePending()
}

// execPending runs the pending operations, in order, putting their
// outcomes in c.res and c.errs. With a BatchExecutor they run as one call,
// so that a clustered node can forward a client's pipelined requests for
// one bucket in one message.
func (c *conn) execPending() {
	c.resolveKeys()
	ops := c.pending
	c.res = slices.Grow(c.res[:0], len(ops))[:len(ops)]
	c.errs = slices.Grow(c.errs[:0], len(ops))[:len(ops)]
	ctx := c.srv.ctx
	var start time.Time
	if c.srv.cfg.Metrics != nil {
		start = time.Now()
	}
	if be, ok := c.srv.cfg.Executor.(BatchExecutor); ok && len(ops) > 1 {
		be.ExecuteBatch(ctx, ops, c.res, c.errs)
	} else {
		for i, op := range ops {
			c.res[i], c.errs[i] = c.srv.cfg.Executor.Execute(ctx, op)
		}
	}
	if c.srv.cfg.Metrics != nil {
		c.took = time.Since(start)
	}
}

// resultOf gives the metrics' result of an operation's outcome.
func resultOf(err error) int {
	switch {
	case err == nil:
		return resultOK
	case errors.Is(err, store.ErrBucketNotFound), errors.Is(err, store.ErrKeyNotFound):
		return resultNotFound
	}
	return resultError
}

// donePending forgets the operations run and their outcomes, dropping the
// strings they hold for the collector.
func (c *conn) donePending() {
	clear(c.pending)
	clear(c.res)
	clear(c.errs)
	c.pending = c.pending[:0]
	c.keyBytes, c.keyRefs = c.keyBytes[:0], c.keyRefs[:0]
}

// dropPending forgets the pending operations from the first-th on, queued
// by a request found wrong.
func (c *conn) dropPending(first int) {
	clear(c.pending[first:])
	c.pending = c.pending[:first]
	for len(c.keyRefs) > 0 && c.keyRefs[len(c.keyRefs)-1].op >= first {
		last := c.keyRefs[len(c.keyRefs)-1]
		c.keyBytes, c.keyRefs = c.keyBytes[:last.start], c.keyRefs[:len(c.keyRefs)-1]
	}
}

// keyRef says that pending[op] looks up the key keyBytes[start:end].
type keyRef struct{ op, start, end int }

// maxSharedKey is the longest key that lookupKey gathers; a longer one
// gets a string of its own.
const maxSharedKey = 64

// lookupKey queues op, an operation that only looks its key up (GET,
// HGET), with key as its key. A client pipelining lookups would cost a
// string allocation per request: instead, the keys of the lookups that
// run together are gathered and made one string when they run
// (resolveKeys), one allocation for all of them. The executor does not
// keep the key of a lookup, save to delete a key that it found expired
// (a tombstone); such a key then keeps the rest of that string alive,
// which maxSharedKey and maxPending bound to 8 KiB, until the tombstone
// goes.
func (c *conn) lookupKey(op store.Op, key []byte) {
	if len(key) > maxSharedKey {
		op.Key = string(key)
	} else {
		start := len(c.keyBytes)
		c.keyBytes = append(c.keyBytes, key...)
		c.keyRefs = append(c.keyRefs, keyRef{op: len(c.pending), start: start, end: len(c.keyBytes)})
	}
	c.pending = append(c.pending, op)
}

// resolveKeys gives the pending lookups their keys (see lookupKey).
func (c *conn) resolveKeys() {
	if len(c.keyRefs) == 0 {
		return
	}
	keys := string(c.keyBytes)
	for _, r := range c.keyRefs {
		c.pending[r.op].Key = keys[r.start:r.end]
	}
	c.keyBytes, c.keyRefs = c.keyBytes[:0], c.keyRefs[:0]
}

// bucketName returns name as a string, reusing the previous request's
// string when the name is the same: clients mostly work on one bucket at a
// time, and this saves an allocation per request.
func (c *conn) bucketName(name []byte) string {
	if string(name) != c.lastBucket {
		c.lastBucket = string(name)
	}
	return c.lastBucket
}

// reply writes the reply to op, whose outcome is res and err.
func (c *conn) reply(op store.Op, res store.Result, err error) {
	if m := c.srv.cfg.Metrics; m != nil {
		v := int(c.srv.verbOf(op.Kind))
		m.request(protoText, v, resultOf(err))
		m.took(protoText, v, c.took)
	}
	switch {
	case err == nil:
	case op.Kind == store.KindGet && errors.Is(err, store.ErrKeyNotFound):
		// The original answers a missing key with an empty value.
		c.writeLine("")
		c.writeLine(replyOK)
		return
	case errors.Is(err, ring.ErrNoOwner):
		c.writeLine(errorPrefix + "no node owns bucket " + op.Bucket)
		return
	default:
		c.writeLine(replyForError(err))
		return
	}
	switch op.Kind {
	case store.KindGet:
		c.writeLine(res.Value)
	case store.KindTTL:
		c.writeLine(strconv.FormatInt(ttlOf(res, nil, false), 10))
	case store.KindBuckets:
		for _, n := range res.Names {
			if !strings.HasPrefix(n, ring.ReservedPrefix) { // the buckets of RESP's plain keys
				c.writeLine(n)
			}
		}
	case store.KindKeys, store.KindNodes, store.KindOwner:
		for _, n := range res.Names {
			c.writeLine(n)
		}
	}
	c.writeLine(replyOK)
}

func (c *conn) auth(password []byte) {
	if len(c.srv.cfg.Password) == 0 {
		c.writeLine(errorPrefix + "no password is set")
		return
	}
	if !c.checkPassword(password) {
		c.writeLine(replyForError(ErrInvalidPassword))
		return
	}
	c.writeLine(replyOK)
}

// checkPassword compares password with the server's, authenticating the
// connection when they match.
func (c *conn) checkPassword(password []byte) bool {
	// Comparing fixed-size hashes hides the password's length too.
	sum := sha256.Sum256(password)
	if subtle.ConstantTimeCompare(sum[:], c.srv.password[:]) != 1 {
		c.srv.log.Warn("invalid password", zap.String("remote", c.nc.RemoteAddr().String()))
		return false
	}
	c.authed = true
	return true
}

func (c *conn) usage(u string) { c.writeLine(errorPrefix + "usage: " + u) }

func (c *conn) writeHelp() {
	for _, l := range helpLines() {
		c.writeLine(l)
	}
	c.writeLine(replyOK)
}

func helpLines() []string {
	return []string{
		"CREATE <bucket>             create a bucket (keeps an existing one)",
		"PUT <bucket> <key> <value>  set a key",
		"PUT <b> <k> <v> EX <secs>   set a key that expires in so many seconds",
		"GET <bucket> <key>          read a key (empty line if missing)",
		"DELETE <bucket> <key>       remove a key",
		"DROP <bucket>               remove a bucket and its keys",
		"BUCKETS                     list buckets, one a line, then OK",
		"KEYS <bucket>               list a bucket's keys, one a line, then OK",
		"NODES                       list the cluster's nodes: name, peer ID, addresses, state",
		"OWNER <bucket>              list the nodes that hold a bucket: name, peer ID",
		"EXPIRE <bucket> <seconds>   make a bucket expire in so many seconds (0 or less: drop it)",
		"TTL <bucket>                seconds a bucket has to live (-1: no expiry), then OK",
		"SCAN <cursor> [MATCH <pattern>] [COUNT <n>]  list buckets a page at a time: next cursor, names, then OK",
		"AUTH <password>             authenticate, when the server has a password",
		"PING                        answer PONG",
		"INFO [section]              a readable summary of the node, then OK",
		"HELP                        this list",
		"QUIT                        close the connection",
	}
}

// writeLine buffers one reply line; errors surface at the next Flush.
func (c *conn) writeLine(s string) {
	_, _ = c.w.WriteString(s)
	_, _ = c.w.WriteString("\r\n")
}
