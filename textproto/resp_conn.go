package textproto

import (
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"

	"github.com/dboutique/dboutique/node"
	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/ring"
)

// How RESP commands map onto the store. A bucket is a Redis hash: HSET
// creates it, HGET reads a key of it, DEL drops it. Plain keys (SET, GET)
// live in numPlainBuckets buckets of the node's own, named by a hash of the
// key, so they are placed, forwarded and replicated like any bucket. A
// name can be a bucket and a plain key at once: DEL and EXISTS count both.

// numPlainBuckets is how many buckets hold plain keys.
const numPlainBuckets = 256

// plainBuckets returns the names of the buckets that hold plain keys.
func plainBuckets() []string {
	names := make([]string, numPlainBuckets)
	for i := range names {
		names[i] = ring.ReservedPrefix + "kv:" + strconv.Itoa(i)
	}
	return names
}

func (s *Server) plainBucket(key string) string {
	return s.plain[xxhash.Sum64String(key)%numPlainBuckets]
}

// plainBucketOf is plainBucket for a key not made a string yet.
func (s *Server) plainBucketOf(key []byte) string {
	return s.plain[xxhash.Sum64(key)%numPlainBuckets]
}

// reserved reports whether a client named a bucket the node keeps for itself.
func reserved(name []byte) bool {
	return len(name) > 0 && name[0] == ring.ReservedPrefix[0]
}

// respReply writes a store command's reply from the outcomes of its
// operations, once each of them succeeded or found its bucket or key
// missing.
type respReply func(w *respWriter, res []store.Result, errs []error)

// respCmd is a RESP command whose operations are pending: ops[first:first+n].
type respCmd struct {
	reply    respReply
	first, n int
	metric   int  // the command's index in the metrics
	named    bool // flagNamed
}

// serveRESP serves a connection that speaks RESP until it ends.
func (c *conn) serveRESP() {
	c.resp = true
	cfg := &c.srv.cfg
	c.rr = respReader{r: c.lines.r, maxBulk: cfg.MaxBulkBytes, maxArgs: cfg.MaxArgs, maxBytes: cfg.MaxRequestBytes}
	c.rw = respWriter{w: c.w}
	busy := 0
	for {
		if !c.beforeRead(&busy, c.runRESP) {
			return
		}
		err := c.rr.next()
		if err != nil {
			c.runRESP()
			var pe *respError
			if errors.As(err, &pe) {
				c.rw.err("ERR Protocol error: " + pe.msg)
				if c.w.Flush() == nil {
					c.lingerClose()
				}
				return
			}
			// The client went away, or was idle too long (Redis closes
			// such connections without a word), or the server is closing.
			_ = c.w.Flush()
			return
		}
		if len(c.rr.args) == 0 {
			continue
		}
		more := c.handleRESP(c.rr.args)
		c.rr.release()
		if !more { // QUIT
			c.runRESP()
			if c.w.Flush() == nil {
				c.lingerClose()
			}
			return
		}
	}
}

// handleRESP answers one request and reports whether to keep reading.
func (c *conn) handleRESP(args [][]byte) bool {
	c.srv.commands.Add(1)
	var buf [16]byte
	idx, known := c.srv.respIndex[string(upper(buf[:0], args[0]))] // looked up without a copy
	if !known {
		c.runRESP()
		c.countRESP(len(c.srv.respCmds), true) // "other"
		c.rw.err(unknownCommand(args))
		return true
	}
	rc := &c.srv.respCmds[idx]
	switch {
	case !rc.arityOK(len(args)):
		c.failRESP(idx, "ERR wrong number of arguments for '"+strings.ToLower(rc.name)+"' command")
		return true
	case !c.authed && rc.flags&flagNoAuth == 0:
		c.failRESP(idx, "NOAUTH Authentication required.")
		return true
	case rc.run.answer != nil:
		// Anything that is not a store command is answered after the ones
		// before it.
		c.runRESP()
		nerr := c.rw.nerr
		rc.run.answer(c, args)
		c.countRESP(idx, c.rw.nerr > nerr)
		return rc.flags&flagClose == 0
	case rc.flags&flagBucket != 0 && reserved(args[1]):
		c.failRESP(idx, respErrorReply(ErrReservedName))
		return true
	case rc.flags&flagBucket != 0 && len(args[1]) == 0:
		c.runRESP()
		c.emptyBucket(idx, rc, args)
		return true
	}
	first := len(c.pending)
	if msg := rc.run.queue(c, args); msg != "" {
		c.dropPending(first)
		c.replyWith = nil
		c.failRESP(idx, msg)
		return true
	}
	reply := rc.run.reply
	if c.replyWith != nil { // the options chose another reply (SET ... GET)
		reply, c.replyWith = c.replyWith, nil
	}
	c.rcmds = append(c.rcmds, respCmd{reply: reply, first: first, n: len(c.pending) - first, metric: idx, named: rc.flags&flagNamed != 0})
	if len(c.pending) >= maxPending {
		c.runRESP()
	}
	return true
}

// failRESP answers, after the commands before it, a command that fails
// before it runs.
func (c *conn) failRESP(idx int, msg string) {
	c.runRESP()
	c.countRESP(idx, true)
	c.rw.err(msg)
}

// countRESP counts, in the metrics, a command answered straight away; idx
// is its index in respCommands, or len(respCommands) for "other".
func (c *conn) countRESP(idx int, failed bool) {
	if m := c.srv.cfg.Metrics; m != nil {
		result := resultOK
		if failed {
			result = resultError
		}
		m.request(protoRESP, idx, result)
	}
}

// upper appends name in upper case (ASCII) to buf; a name longer than
// buf's capacity, which no command has, is left out.
func upper(buf []byte, name []byte) []byte {
	if len(name) > cap(buf) {
		return buf
	}
	for _, b := range name {
		if 'a' <= b && b <= 'z' {
			b -= 'a' - 'A'
		}
		buf = append(buf, b)
	}
	return buf
}

// unknownCommand is Redis's reply to a command it does not know.
func unknownCommand(args [][]byte) string {
	var b strings.Builder
	b.WriteString("ERR unknown command '")
	b.Write(clip(args[0]))
	b.WriteString("', with args beginning with: ")
	// As Redis: arguments until the list reaches 128 bytes.
	list := b.Len()
	for _, a := range args[1:] {
		left := 128 - (b.Len() - list)
		if left <= 0 {
			break
		}
		b.WriteString("'")
		b.Write(a[:min(len(a), left)])
		b.WriteString("' ")
	}
	return b.String()
}

// clip cuts a client's argument quoted back in an error to 128 bytes.
func clip(b []byte) []byte { return b[:min(len(b), 128)] }

func (c *conn) queueOp(op store.Op) { c.pending = append(c.pending, op) }

// emptyBucket answers a command on the empty bucket name, which Redis
// allows and a bucket cannot have: a command that would create the bucket
// fails, any other is answered as on a missing bucket, without running its
// operations.
func (c *conn) emptyBucket(idx int, rc *respCommand, args [][]byte) {
	if rc.flags&flagCreate != 0 {
		c.countRESP(idx, true)
		c.rw.err("ERR bucket names must not be empty")
		return
	}
	if msg := rc.run.queue(c, args); msg != "" {
		c.donePending()
		c.countRESP(idx, true)
		c.rw.err(msg)
		return
	}
	n := len(c.pending)
	c.res = slices.Grow(c.res[:0], n)[:n]
	c.errs = slices.Grow(c.errs[:0], n)[:n]
	for i := range n {
		c.res[i], c.errs[i] = store.Result{}, store.ErrBucketNotFound
	}
	rc.run.reply(&c.rw, c.res, c.errs)
	c.donePending()
	c.countRESP(idx, false)
}

// runRESP runs the pending operations and writes the replies of the
// commands they came from.
func (c *conn) runRESP() {
	if len(c.rcmds) == 0 {
		return
	}
	c.execPending()
	for _, cmd := range c.rcmds {
		c.replyRESP(cmd, c.res[cmd.first:cmd.first+cmd.n], c.errs[cmd.first:cmd.first+cmd.n])
	}
	c.rcmds = c.rcmds[:0]
	c.donePending()
}

// replyRESP writes the reply of one command from its operations' outcomes.
func (c *conn) replyRESP(cmd respCmd, res []store.Result, errs []error) {
	w := &c.rw
	if m := c.srv.cfg.Metrics; m != nil {
		nerr := w.nerr
		defer func() {
			result := resultOK
			if w.nerr > nerr {
				result = resultError
			}
			m.request(protoRESP, cmd.metric, result)
			m.took(protoRESP, cmd.metric, c.took)
		}()
	}
	// A missing bucket or key is an answer, not an error, in Redis; any
	// other error is the command's reply. For a command on a name whose
	// plain key answered, the bucket of that name does not matter: its
	// error (a bucket that cannot be told missing for lost copies, say)
	// is taken as "no such bucket".
	if cmd.named && len(errs) > 1 && errs[0] == nil {
		for i := 1; i < len(errs); i++ {
			if errs[i] != nil && !errors.Is(errs[i], store.ErrBucketNotFound) && !errors.Is(errs[i], store.ErrKeyNotFound) {
				errs[i] = store.ErrBucketNotFound
			}
		}
	}
	for _, err := range errs {
		if err != nil && !errors.Is(err, store.ErrBucketNotFound) && !errors.Is(err, store.ErrKeyNotFound) {
			w.err(respErrorReply(err))
			return
		}
	}
	cmd.reply(w, res, errs)
}

// respErrorReply returns the RESP error reply for err, with a Redis error
// code: TRYAGAIN where retrying will do, ERR otherwise.
func respErrorReply(err error) string {
	msg := strings.TrimPrefix(replyForError(err), errorPrefix)
	if errors.Is(err, ring.ErrNoOwner) {
		msg = "no node owns the bucket"
	}
	if errors.Is(err, node.ErrNoRoute) {
		return "TRYAGAIN " + msg
	}
	if errors.Is(err, store.ErrOutOfMemory) {
		return "OOM command not allowed when used memory > 'maxmemory'."
	}
	return "ERR " + msg
}
