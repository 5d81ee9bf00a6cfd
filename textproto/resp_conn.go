package textproto

import (
	"bytes"
	"errors"
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

// reserved reports whether a client named a bucket the node keeps for itself.
func reserved(name []byte) bool {
	return len(name) > 0 && name[0] == ring.ReservedPrefix[0]
}

// respReply says how a RESP command's operations become its reply.
type respReply uint8

const (
	replyStatusOK respReply = iota // +OK once every op succeeded
	replyCount                     // :<sum of the ops' counts>
	replyValue                     // the value, or nil when there is none
	replyValues                    // an array of values or nils, one per op
	replyLen                       // :<count>, 0 for a missing bucket
	replyNames                     // array of Names (empty for a missing bucket)
	replyOdd                       // array of every second Name (HVALS)
)

// respCmd is a RESP command whose operations are pending: ops[first:first+n].
type respCmd struct {
	reply    respReply
	first, n int
	metric   int // the command's index in the metrics
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
	name, arity := rc.name, rc.arity
	switch {
	case arity > 0 && len(args) != arity, arity < 0 && len(args) < -arity,
		(name == "HSET" || name == "HMSET") && len(args)%2 != 0:
		c.runRESP()
		c.countRESP(idx, true)
		c.rw.err("ERR wrong number of arguments for '" + strings.ToLower(name) + "' command")
		return true
	case !c.authed && name != "AUTH" && name != "HELLO" && name != "QUIT":
		c.runRESP()
		c.countRESP(idx, true)
		c.rw.err("NOAUTH Authentication required.")
		return true
	}
	if c.queueRESP(idx, name, args) {
		return true
	}
	// Anything that is not a store command is answered after the ones
	// before it.
	c.runRESP()
	nerr := c.rw.nerr
	more := c.controlRESP(name, args)
	c.countRESP(idx, c.rw.nerr > nerr)
	return more
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

// queueRESP adds the operations of a store command to the pending ones,
// and reports whether name was one.
func (c *conn) queueRESP(idx int, name string, args [][]byte) bool {
	bucketCmd := false
	switch name {
	case "HSET", "HMSET", "HGET", "HMGET", "HDEL", "HEXISTS", "HLEN", "HKEYS", "HVALS", "HGETALL":
		bucketCmd = true
	case "SET", "GET", "DEL", "EXISTS":
	default:
		return false
	}
	if bucketCmd && reserved(args[1]) {
		c.runRESP()
		c.countRESP(idx, true)
		c.rw.err(respErrorReply(ErrReservedName))
		return true
	}
	if bucketCmd && len(args[1]) == 0 {
		c.runRESP()
		c.emptyBucket(idx, name, args)
		return true
	}
	cmd := respCmd{first: len(c.pending), metric: idx}
	switch name {
	case "HSET", "HMSET":
		cmd.reply = replyCount
		if name == "HMSET" {
			cmd.reply = replyStatusOK
		}
		b := c.bucketName(args[1])
		for i := 2; i < len(args); i += 2 {
			c.queueOp(store.Op{Kind: store.KindPutCreate, Bucket: b, Key: string(args[i]), Value: string(args[i+1])})
		}
	case "HGET":
		cmd.reply = replyValue
		c.queueOp(store.Op{Kind: store.KindGet, Bucket: c.bucketName(args[1]), Key: string(args[2])})
	case "HMGET":
		cmd.reply = replyValues
		b := c.bucketName(args[1])
		for _, k := range args[2:] {
			c.queueOp(store.Op{Kind: store.KindGet, Bucket: b, Key: string(k)})
		}
	case "HDEL":
		cmd.reply = replyCount
		b := c.bucketName(args[1])
		for _, k := range args[2:] {
			c.queueOp(store.Op{Kind: store.KindDelete, Bucket: b, Key: string(k)})
		}
	case "HEXISTS":
		cmd.reply = replyCount
		c.queueOp(store.Op{Kind: store.KindGet, Bucket: c.bucketName(args[1]), Key: string(args[2])})
	case "HLEN":
		cmd.reply = replyLen
		c.queueOp(store.Op{Kind: store.KindLen, Bucket: c.bucketName(args[1])})
	case "HKEYS":
		cmd.reply = replyNames
		c.queueOp(store.Op{Kind: store.KindKeys, Bucket: c.bucketName(args[1])})
	case "HVALS", "HGETALL":
		cmd.reply = replyNames
		if name == "HVALS" {
			cmd.reply = replyOdd
		}
		c.queueOp(store.Op{Kind: store.KindGetAll, Bucket: c.bucketName(args[1])})
	case "SET":
		cmd.reply = replyStatusOK
		k := string(args[1])
		c.queueOp(store.Op{Kind: store.KindPutCreate, Bucket: c.srv.plainBucket(k), Key: k, Value: string(args[2])})
	case "GET":
		cmd.reply = replyValue
		k := string(args[1])
		c.queueOp(store.Op{Kind: store.KindGet, Bucket: c.srv.plainBucket(k), Key: k})
	case "DEL", "EXISTS":
		// Each name counts as a plain key and as a bucket.
		cmd.reply = replyCount
		for _, a := range args[1:] {
			k := string(a)
			if name == "DEL" {
				c.queueOp(store.Op{Kind: store.KindDelete, Bucket: c.srv.plainBucket(k), Key: k})
			} else {
				c.queueOp(store.Op{Kind: store.KindGet, Bucket: c.srv.plainBucket(k), Key: k})
			}
			if reserved(a) || len(a) == 0 {
				continue
			}
			if name == "DEL" {
				c.queueOp(store.Op{Kind: store.KindDrop, Bucket: k})
			} else {
				c.queueOp(store.Op{Kind: store.KindLen, Bucket: k})
			}
		}
	}
	cmd.n = len(c.pending) - cmd.first
	c.rcmds = append(c.rcmds, cmd)
	if len(c.pending) >= maxPending {
		c.runRESP()
	}
	return true
}

func (c *conn) queueOp(op store.Op) { c.pending = append(c.pending, op) }

// emptyBucket answers a hash command on the empty name, which Redis
// allows and a bucket cannot have: reads find nothing, writes fail.
func (c *conn) emptyBucket(idx int, name string, args [][]byte) {
	w := &c.rw
	switch name {
	case "HSET", "HMSET":
		c.countRESP(idx, true)
		w.err("ERR bucket names must not be empty")
		return
	case "HGET":
		w.nil()
	case "HMGET":
		w.array(len(args) - 2)
		for range args[2:] {
			w.nil()
		}
	case "HKEYS", "HVALS", "HGETALL":
		w.array(0)
	default: // HDEL, HEXISTS, HLEN
		w.int(0)
	}
	c.countRESP(idx, false)
}

// runRESP runs the pending operations and writes the replies of the
// commands they came from.
func (c *conn) runRESP() {
	if len(c.pending) == 0 {
		c.rcmds = c.rcmds[:0]
		return
	}
	c.execPending()
	for _, cmd := range c.rcmds {
		c.replyRESP(cmd, c.pending[cmd.first:cmd.first+cmd.n], c.res[cmd.first:cmd.first+cmd.n], c.errs[cmd.first:cmd.first+cmd.n])
	}
	c.rcmds = c.rcmds[:0]
	c.donePending()
}

// replyRESP writes the reply of one command from its operations' outcomes.
func (c *conn) replyRESP(cmd respCmd, ops []store.Op, res []store.Result, errs []error) {
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
	// other error is the command's reply.
	for _, err := range errs {
		if err != nil && !errors.Is(err, store.ErrBucketNotFound) && !errors.Is(err, store.ErrKeyNotFound) {
			w.err(respErrorReply(err))
			return
		}
	}
	switch cmd.reply {
	case replyStatusOK:
		w.simple("OK")
	case replyCount:
		sum := 0
		for i, op := range ops {
			switch {
			case errs[i] != nil:
			case op.Kind == store.KindGet || op.Kind == store.KindLen:
				sum++ // it exists
			default:
				sum += res[i].Count
			}
		}
		w.int(sum)
	case replyValue:
		if errs[0] != nil {
			w.nil()
		} else {
			w.bulk(res[0].Value)
		}
	case replyValues:
		w.array(len(ops))
		for i := range ops {
			if errs[i] != nil {
				w.nil()
			} else {
				w.bulk(res[i].Value)
			}
		}
	case replyLen:
		if errs[0] != nil {
			w.int(0)
		} else {
			w.int(res[0].Count)
		}
	case replyNames:
		w.bulks(res[0].Names) // nil for a missing bucket: an empty array
	case replyOdd:
		names := res[0].Names
		w.array(len(names) / 2)
		for i := 1; i < len(names); i += 2 {
			w.bulk(names[i])
		}
	}
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
	return "ERR " + msg
}

// controlRESP answers a command that does not touch the store, and reports
// whether to keep reading.
func (c *conn) controlRESP(name string, args [][]byte) bool {
	w := &c.rw
	switch name {
	case "PING":
		switch len(args) {
		case 1:
			w.simple("PONG")
		case 2:
			w.bulk(string(args[1]))
		default:
			w.err("ERR wrong number of arguments for 'ping' command")
		}
	case "ECHO":
		w.bulk(string(args[1]))
	case "QUIT":
		w.simple("OK")
		return false
	case "SELECT":
		if string(args[1]) == "0" {
			w.simple("OK")
		} else {
			w.err("ERR DB index is out of range")
		}
	case "AUTH":
		c.authRESP(args[1:])
	case "HELLO":
		c.hello(args[1:])
	case "INFO":
		section := ""
		if len(args) > 1 {
			section = string(args[1])
		}
		w.bulk(formatInfo(c.srv.info(section)))
	case "CLIENT":
		c.client(args[1:])
	case "CONFIG":
		c.config(args[1:])
	case "COMMAND":
		c.command(args[1:])
	}
	return true
}

// config answers CONFIG GET for the settings that clients such as
// redis-benchmark read at start: nothing is saved to disk. Other settings
// are not listed, and nothing can be set.
func (c *conn) config(args [][]byte) {
	if !strings.EqualFold(string(args[0]), "GET") || len(args) < 2 {
		c.rw.err("ERR CONFIG " + string(clip(args[0])) + " is not supported; only CONFIG GET is")
		return
	}
	var pairs []string
	for _, p := range args[1:] {
		switch strings.ToLower(string(p)) {
		case "save":
			pairs = append(pairs, "save", "")
		case "appendonly":
			pairs = append(pairs, "appendonly", "no")
		}
	}
	c.rw.bulks(pairs)
}

// authRESP answers AUTH <password> or AUTH <user> <password>; the only
// user is "default".
func (c *conn) authRESP(args [][]byte) {
	if len(args) > 2 {
		c.rw.err("ERR syntax error")
		return
	}
	if len(c.srv.cfg.Password) == 0 {
		c.rw.err("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
		return
	}
	password := args[len(args)-1]
	if len(args) == 2 && string(args[0]) != "default" || !c.checkPassword(password) {
		c.rw.err("WRONGPASS invalid username-password pair or user is disabled.")
		return
	}
	c.rw.simple("OK")
}

// hello answers HELLO [protover [AUTH user pass] [SETNAME name]]. Only
// RESP2 is spoken: a client asking for 3 gets NOPROTO and, as clients do,
// goes on in RESP2.
func (c *conn) hello(args [][]byte) {
	if len(args) > 0 {
		v, err := strconv.Atoi(string(args[0]))
		if err != nil {
			c.rw.err("ERR Protocol version is not an integer or out of range")
			return
		}
		if v != 2 {
			c.rw.err("NOPROTO this protocol version is not supported")
			return
		}
		for i := 1; i < len(args); i++ {
			switch {
			case bytes.EqualFold(args[i], []byte("AUTH")) && i+2 < len(args):
				if len(c.srv.cfg.Password) == 0 || string(args[i+1]) != "default" || !c.checkPassword(args[i+2]) {
					c.rw.err("WRONGPASS invalid username-password pair or user is disabled.")
					return
				}
				i += 2
			case bytes.EqualFold(args[i], []byte("SETNAME")) && i+1 < len(args):
				c.name = string(clip(args[i+1]))
				i++
			default:
				c.rw.err("ERR Syntax error in HELLO option '" + string(clip(args[i])) + "'")
				return
			}
		}
	}
	if !c.authed {
		c.rw.err("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")
		return
	}
	c.rw.array(14)
	for _, kv := range [][2]string{
		{"server", "dboutique"}, {"version", "7.0.0"}, {"proto", "2"},
		{"id", strconv.FormatUint(c.id, 10)}, {"mode", "standalone"}, {"role", "master"},
	} {
		c.rw.bulk(kv[0])
		if kv[0] == "proto" || kv[0] == "id" {
			n, _ := strconv.Atoi(kv[1])
			c.rw.int(n)
		} else {
			c.rw.bulk(kv[1])
		}
	}
	c.rw.bulk("modules")
	c.rw.array(0)
}

// client answers CLIENT SETNAME, GETNAME, ID and SETINFO.
func (c *conn) client(args [][]byte) {
	var buf [16]byte
	switch sub := string(upper(buf[:0], args[0])); {
	case sub == "SETNAME" && len(args) == 2:
		if bytes.ContainsAny(args[1], " \n") {
			c.rw.err("ERR Client names cannot contain spaces, newlines or special characters.")
			return
		}
		c.name = string(clip(args[1]))
		c.rw.simple("OK")
	case sub == "GETNAME" && len(args) == 1:
		if c.name == "" {
			c.rw.nil()
		} else {
			c.rw.bulk(c.name)
		}
	case sub == "ID" && len(args) == 1:
		c.rw.int(int(c.id))
	case sub == "SETINFO" && len(args) == 3:
		c.rw.simple("OK")
	default:
		c.rw.err("ERR unknown subcommand or wrong number of arguments for '" + string(clip(args[0])) + "'. Try CLIENT HELP.")
	}
}

// respCommand describes a RESP command: its name in upper case, its
// number of arguments with the command's own (n exactly, or at least -n
// when negative, as Redis's COMMAND gives it), and what COMMAND DOCS says.
type respCommand struct {
	name    string
	arity   int
	group   string
	summary string
}

// respCommands lists the commands the server knows. Their order is also
// that of the metrics' command labels. It is a function so that the table
// cannot be modified.
func respCommands() []respCommand {
	return []respCommand{
		{"HSET", -4, "hash", "Creates the bucket if needed and sets keys in it; returns how many keys were new."},
		{"HMSET", -4, "hash", "Like HSET; returns OK."},
		{"HGET", 3, "hash", "Returns the value of a key in a bucket, or nil."},
		{"HMGET", -3, "hash", "Returns the values of keys in a bucket."},
		{"HDEL", -3, "hash", "Deletes keys from a bucket; returns how many existed."},
		{"HEXISTS", 3, "hash", "Returns 1 if the key is in the bucket."},
		{"HLEN", 2, "hash", "Returns the number of keys in a bucket."},
		{"HKEYS", 2, "hash", "Returns the keys of a bucket."},
		{"HVALS", 2, "hash", "Returns the values of a bucket."},
		{"HGETALL", 2, "hash", "Returns the keys and values of a bucket."},
		{"SET", 3, "string", "Sets a plain key."},
		{"GET", 2, "string", "Returns a plain key's value, or nil."},
		{"DEL", -2, "generic", "Deletes plain keys and buckets of these names; returns how many existed."},
		{"EXISTS", -2, "generic", "Counts the plain keys and buckets of these names."},
		{"PING", -1, "connection", "Returns PONG, or its argument."},
		{"ECHO", 2, "connection", "Returns its argument."},
		{"QUIT", -1, "connection", "Closes the connection."},
		{"AUTH", -2, "connection", "Authenticates the connection."},
		{"HELLO", -1, "connection", "Handshake; only protocol 2 (RESP2) is spoken."},
		{"SELECT", 2, "connection", "Selects database 0, the only one."},
		{"CLIENT", -2, "connection", "CLIENT SETNAME, GETNAME, ID, SETINFO."},
		{"INFO", -1, "server", "Returns a readable summary of the node."},
		{"CONFIG", -2, "server", "CONFIG GET save and appendonly, for clients that ask at start."},
		{"COMMAND", -1, "server", "Describes the commands: COMMAND, COMMAND COUNT, COMMAND DOCS."},
	}
}

// command answers COMMAND, COMMAND COUNT and COMMAND DOCS [name ...]:
// enough for redis-cli to start and show help.
func (c *conn) command(args [][]byte) {
	w := &c.rw
	cmds := c.srv.respCmds
	if len(args) == 0 {
		w.array(len(cmds))
		for _, rc := range cmds {
			first, last, step := 0, 0, 0
			switch rc.group {
			case "hash", "string":
				first, last, step = 1, 1, 1
			case "generic":
				first, last, step = 1, -1, 1
			}
			w.array(6)
			w.bulk(strings.ToLower(rc.name))
			w.int(rc.arity)
			w.array(0) // flags
			w.int(first)
			w.int(last)
			w.int(step)
		}
		return
	}
	var buf [16]byte
	switch string(upper(buf[:0], args[0])) {
	case "COUNT":
		w.int(len(cmds))
	case "DOCS":
		var want []int
		for i, rc := range cmds {
			if len(args) == 1 || slicesContainsFold(args[1:], rc.name) {
				want = append(want, i)
			}
		}
		w.array(2 * len(want))
		for _, i := range want {
			w.bulk(strings.ToLower(cmds[i].name))
			w.array(6)
			w.bulk("summary")
			w.bulk(cmds[i].summary)
			w.bulk("since")
			w.bulk("1.0.0")
			w.bulk("group")
			w.bulk(cmds[i].group)
		}
	default:
		w.err("ERR unknown subcommand '" + string(clip(args[0])) + "'. Try COMMAND HELP.")
	}
}

func slicesContainsFold(args [][]byte, name string) bool {
	for _, a := range args {
		if strings.EqualFold(string(a), name) {
			return true
		}
	}
	return false
}
