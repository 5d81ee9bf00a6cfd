package textproto

import (
	"bytes"
	"strconv"
	"strings"

	"github.com/dboutique/dboutique/node/store"
)

// The RESP commands: one table, respCommands, says what each command is
// and how it runs. Adding a command takes an entry there and, unless the
// functions below already do what it needs, one function.

// respCommand describes a RESP command.
type respCommand struct {
	name string // in upper case
	// arity counts the arguments with the command's name: n exactly, or
	// at least -n when negative, as Redis's COMMAND gives it.
	arity int
	flags respFlags
	// group and summary are what COMMAND DOCS says; group also gives the
	// positions of the keys that COMMAND lists.
	group, summary string
	run            respRun
}

// respRun is how a command runs: a command on the store queues its
// operations with queue and, once they have run, writes its reply with
// reply; any other command has only answer, which writes its reply at
// once, after the replies of the commands before it. A queue that finds
// its arguments wrong queues nothing and returns the error reply.
type respRun struct {
	queue  func(c *conn, args [][]byte) string
	reply  respReply
	answer func(c *conn, args [][]byte)
}

// respFlags say how the server treats a command before running it.
type respFlags uint8

const (
	// flagNoAuth: the command runs before AUTH on a server with a password.
	flagNoAuth respFlags = 1 << iota
	// flagBucket: the first argument names a bucket. A name the node keeps
	// for itself is refused; the empty name, which no bucket has, is
	// answered as a missing bucket without running anything.
	flagBucket
	// flagCreate: the command creates its bucket, so the empty name is an
	// error.
	flagCreate
	// flagPairs: the arguments after the bucket come in pairs.
	flagPairs
	// flagClose: the connection closes after the reply.
	flagClose
	// flagNamed: the command runs on the plain key of a name and then on
	// the bucket of that name (queueNamed), and a plain key found settles
	// the reply: an error of the bucket's operation then does not fail it.
	flagNamed
)

// respCommands lists the commands the server knows. Their order is also
// that of the metrics' command labels. It is a function so that the table
// cannot be modified.
func respCommands() []respCommand {
	const newBucket = flagBucket | flagCreate | flagPairs
	return []respCommand{
		{"HSET", -4, newBucket, "hash", "Creates the bucket if needed and sets keys in it; returns how many keys were new.", pairOps(store.KindPutCreate, replyCount)},
		{"HMSET", -4, newBucket, "hash", "Like HSET; returns OK.", pairOps(store.KindPutCreate, replyStatusOK)},
		{"HGET", 3, flagBucket, "hash", "Returns the value of a key in a bucket, or nil.", keyOps(store.KindGet, replyValue)},
		{"HMGET", -3, flagBucket, "hash", "Returns the values of keys in a bucket.", keyOps(store.KindGet, replyValues)},
		{"HDEL", -3, flagBucket, "hash", "Deletes keys from a bucket; returns how many existed.", keyOps(store.KindDelete, replyCount)},
		{"HEXISTS", 3, flagBucket, "hash", "Returns 1 if the key is in the bucket.", keyOps(store.KindGet, replyFound)},
		{"HSTRLEN", 3, flagBucket, "hash", "Returns the length of a key's value in a bucket, or 0.", keyOps(store.KindGet, replyValueLen)},
		{"HLEN", 2, flagBucket, "hash", "Returns the number of keys in a bucket.", bucketOp(store.KindLen, replyCount)},
		{"HKEYS", 2, flagBucket, "hash", "Returns the keys of a bucket.", bucketOp(store.KindKeys, replyNames)},
		{"HVALS", 2, flagBucket, "hash", "Returns the values of a bucket.", bucketOp(store.KindGetAll, replyPairValues)},
		{"HGETALL", 2, flagBucket, "hash", "Returns the keys and values of a bucket.", bucketOp(store.KindGetAll, replyNames)},
		{"SET", -3, 0, "string", "Sets a plain key: SET key value [NX|XX] [GET] [EX s|PX ms|EXAT ts|PXAT ms|KEEPTTL].", respRun{queue: queueSet, reply: replyStatusOK}},
		{"GET", 2, 0, "string", "Returns a plain key's value, or nil.", plainOp(store.KindGet, replyValue)},
		{"SETEX", 4, 0, "string", "Sets a plain key that expires in so many seconds.", respRun{queue: queueSetEx(false), reply: replyStatusOK}},
		{"PSETEX", 4, 0, "string", "Sets a plain key that expires in so many milliseconds.", respRun{queue: queueSetEx(true), reply: replyStatusOK}},
		{"SETNX", 3, 0, "string", "Sets a plain key that does not exist; returns 1 if it did.", respRun{queue: queueSetNX, reply: replySetNX}},
		{"GETEX", -2, 0, "string", "Returns a plain key's value and sets or removes its expiry: GETEX key [EX s|PX ms|EXAT ts|PXAT ms|PERSIST].", respRun{queue: queueGetEx, reply: replyValue}},
		{"MGET", -2, 0, "string", "Returns the values of plain keys, in order, wherever they live.", respRun{queue: plainKeys(store.KindGet), reply: replyValues}},
		{"MSET", -3, 0, "string", "Sets plain keys; each on its own node, so not atomic across nodes.", respRun{queue: queueMSet, reply: replyStatusOK}},
		{"DEL", -2, 0, "generic", "Deletes plain keys and buckets of these names; returns how many existed.", nameOps(store.KindDelete, store.KindDrop, replyCount)},
		{"UNLINK", -2, 0, "generic", "As DEL.", nameOps(store.KindDelete, store.KindDrop, replyCount)},
		{"EXISTS", -2, 0, "generic", "Counts the plain keys and buckets of these names.", nameOps(store.KindGet, store.KindLen, replyFound)},
		{"TOUCH", -2, 0, "generic", "As EXISTS.", nameOps(store.KindGet, store.KindLen, replyFound)},
		{"EXPIRE", -3, flagNamed, "generic", "Sets a time to live in seconds on the plain key and bucket of a name: EXPIRE key seconds [NX|XX|GT|LT].", respRun{queue: queueExpire("expire", expiryUnit{}), reply: replyAnyCount}},
		{"PEXPIRE", -3, flagNamed, "generic", "As EXPIRE, in milliseconds.", respRun{queue: queueExpire("pexpire", expiryUnit{millis: true}), reply: replyAnyCount}},
		{"EXPIREAT", -3, flagNamed, "generic", "As EXPIRE, at a Unix time in seconds.", respRun{queue: queueExpire("expireat", expiryUnit{absolute: true}), reply: replyAnyCount}},
		{"PEXPIREAT", -3, flagNamed, "generic", "As EXPIRE, at a Unix time in milliseconds.", respRun{queue: queueExpire("pexpireat", expiryUnit{millis: true, absolute: true}), reply: replyAnyCount}},
		{"TTL", 2, flagNamed, "generic", "Returns the seconds a name has to live: -1 without expiry, -2 missing.", respRun{queue: namedOp(store.KindTTL), reply: replyTTL(false)}},
		{"PTTL", 2, flagNamed, "generic", "As TTL, in milliseconds.", respRun{queue: namedOp(store.KindTTL), reply: replyTTL(true)}},
		{"PERSIST", 2, flagNamed, "generic", "Removes a name's expiry; returns 1 if it had one.", respRun{queue: namedOp(store.KindPersist), reply: replyAnyCount}},
		{"HEXPIRE", -6, flagBucket, "hash", "Sets a time to live in seconds on keys of a bucket: HEXPIRE bucket seconds [NX|XX|GT|LT] FIELDS n key ....", respRun{queue: queueHExpire("hexpire", expiryUnit{}), reply: replyHExpire}},
		{"HPEXPIRE", -6, flagBucket, "hash", "As HEXPIRE, in milliseconds.", respRun{queue: queueHExpire("hpexpire", expiryUnit{millis: true}), reply: replyHExpire}},
		{"HEXPIREAT", -6, flagBucket, "hash", "As HEXPIRE, at a Unix time in seconds.", respRun{queue: queueHExpire("hexpireat", expiryUnit{absolute: true}), reply: replyHExpire}},
		{"HPEXPIREAT", -6, flagBucket, "hash", "As HEXPIRE, at a Unix time in milliseconds.", respRun{queue: queueHExpire("hpexpireat", expiryUnit{millis: true, absolute: true}), reply: replyHExpire}},
		{"HTTL", -5, flagBucket, "hash", "Returns the seconds keys of a bucket have to live: HTTL bucket FIELDS n key ....", respRun{queue: fieldOps(store.KindTTL), reply: replyHTTL(false)}},
		{"HPTTL", -5, flagBucket, "hash", "As HTTL, in milliseconds.", respRun{queue: fieldOps(store.KindTTL), reply: replyHTTL(true)}},
		{"HPERSIST", -5, flagBucket, "hash", "Removes the expiry of keys of a bucket: HPERSIST bucket FIELDS n key ....", respRun{queue: fieldOps(store.KindPersist), reply: replyHPersist}},
		// Listing the keyspace (scan.go).
		{"SCAN", -2, 0, "generic", "Iterates the names of the buckets and plain keys of the cluster: SCAN cursor [MATCH pattern] [COUNT count] [TYPE type].", answer((*conn).scan)},
		{"KEYS", 2, 0, "generic", "Returns every name matching a pattern; reads every name of the cluster (slow).", answer((*conn).keysRESP)},
		{"DBSIZE", 1, 0, "server", "Returns the number of names: buckets and plain keys.", answer((*conn).dbsize)},
		{"RANDOMKEY", 1, 0, "generic", "Returns a random name, or nil.", answer((*conn).randomKey)},
		{"HSCAN", -3, 0, "hash", "Iterates the keys and values of a bucket: HSCAN bucket cursor [MATCH pattern] [COUNT count] [NOVALUES].", answer((*conn).hscan)},
		{"PING", -1, 0, "connection", "Returns PONG, or its argument.", answer((*conn).ping)},
		{"ECHO", 2, 0, "connection", "Returns its argument.", answer((*conn).echo)},
		{"QUIT", -1, flagNoAuth | flagClose, "connection", "Closes the connection.", answer((*conn).quit)},
		{"AUTH", -2, flagNoAuth, "connection", "Authenticates the connection.", answer((*conn).authRESP)},
		{"HELLO", -1, flagNoAuth, "connection", "Handshake; only protocol 2 (RESP2) is spoken.", answer((*conn).hello)},
		{"SELECT", 2, 0, "connection", "Selects database 0, the only one.", answer((*conn).selectDB)},
		{"CLIENT", -2, 0, "connection", "CLIENT SETNAME, GETNAME, ID, SETINFO.", answer((*conn).client)},
		{"INFO", -1, 0, "server", "Returns a readable summary of the node.", answer((*conn).infoRESP)},
		{"CONFIG", -2, 0, "server", "CONFIG GET save and appendonly, for clients that ask at start.", answer((*conn).config)},
		{"COMMAND", -1, 0, "server", "Describes the commands: COMMAND, COMMAND COUNT, COMMAND DOCS.", answer((*conn).command)},
	}
}

// arityOK reports whether a request of n arguments, the name included,
// has a number the command takes.
func (rc *respCommand) arityOK(n int) bool {
	switch {
	case rc.arity > 0 && n != rc.arity, rc.arity < 0 && n < -rc.arity:
		return false
	case rc.flags&flagPairs != 0:
		return n%2 == 0 // the name, the bucket, then pairs
	}
	return true
}

// --- Commands on the store: their operations, by the shape of their
// arguments. A bucket is a Redis hash (see resp_conn.go).

// pairOps: an operation of kind k on the bucket args[1] for each key and
// value after it (HSET).
func pairOps(k store.Kind, reply respReply) respRun {
	queue := func(c *conn, args [][]byte) string {
		b := c.bucketName(args[1])
		for i := 2; i < len(args); i += 2 {
			c.queueOp(store.Op{Kind: k, Bucket: b, Key: string(args[i]), Value: string(args[i+1])})
		}
		return ""
	}
	return respRun{queue: queue, reply: reply}
}

// keyOps: an operation of kind k on the bucket args[1] for each key after
// it (HGET, HDEL).
func keyOps(k store.Kind, reply respReply) respRun {
	queue := func(c *conn, args [][]byte) string {
		b := c.bucketName(args[1])
		for _, key := range args[2:] {
			if k == store.KindGet {
				c.lookupKey(store.Op{Kind: k, Bucket: b}, key)
			} else {
				c.queueOp(store.Op{Kind: k, Bucket: b, Key: string(key)})
			}
		}
		return ""
	}
	return respRun{queue: queue, reply: reply}
}

// bucketOp: one operation of kind k on the bucket args[1] (HLEN).
func bucketOp(k store.Kind, reply respReply) respRun {
	queue := func(c *conn, args [][]byte) string {
		c.queueOp(store.Op{Kind: k, Bucket: c.bucketName(args[1])})
		return ""
	}
	return respRun{queue: queue, reply: reply}
}

// plainOp: one operation of kind k on the plain key args[1], with the
// value args[2] if there is one (SET, GET).
func plainOp(k store.Kind, reply respReply) respRun {
	queue := func(c *conn, args [][]byte) string {
		if k == store.KindGet {
			c.lookupKey(store.Op{Kind: k, Bucket: c.srv.plainBucketOf(args[1])}, args[1])
			return ""
		}
		key := string(args[1])
		op := store.Op{Kind: k, Bucket: c.srv.plainBucket(key), Key: key}
		if len(args) > 2 {
			op.Value = string(args[2])
		}
		c.queueOp(op)
		return ""
	}
	return respRun{queue: queue, reply: reply}
}

// nameOps: for each name after args[0], an operation of kind onKey on the
// plain key of that name and one of kind onBucket on the bucket of that
// name, when a bucket can have it (DEL, EXISTS).
func nameOps(onKey, onBucket store.Kind, reply respReply) respRun {
	queue := func(c *conn, args [][]byte) string {
		for _, a := range args[1:] {
			k := string(a)
			c.queueOp(store.Op{Kind: onKey, Bucket: c.srv.plainBucket(k), Key: k})
			if !reserved(a) && len(a) > 0 {
				c.queueOp(store.Op{Kind: onBucket, Bucket: k})
			}
		}
		return ""
	}
	return respRun{queue: queue, reply: reply}
}

// --- Replies of the commands on the store, from their operations'
// outcomes: each operation succeeded or found its bucket or key missing.

func replyStatusOK(w *respWriter, _ []store.Result, _ []error) { w.simple("OK") }

// replyCount answers the sum of the operations' counts.
func replyCount(w *respWriter, res []store.Result, errs []error) {
	sum := 0
	for i := range res {
		if errs[i] == nil {
			sum += res[i].Count
		}
	}
	w.int(sum)
}

// replyFound answers how many operations found what they looked for.
func replyFound(w *respWriter, _ []store.Result, errs []error) {
	n := 0
	for _, err := range errs {
		if err == nil {
			n++
		}
	}
	w.int(n)
}

// replyValue answers the value of a key, or nil.
func replyValue(w *respWriter, res []store.Result, errs []error) {
	if errs[0] != nil {
		w.nil()
	} else {
		w.bulk(res[0].Value)
	}
}

// replyValueLen answers the length of a key's value, 0 when there is none.
func replyValueLen(w *respWriter, res []store.Result, errs []error) {
	if errs[0] != nil {
		w.int(0)
	} else {
		w.int(len(res[0].Value))
	}
}

// replyValues answers an array of values or nils, one per operation.
func replyValues(w *respWriter, res []store.Result, errs []error) {
	w.array(len(res))
	for i := range res {
		replyValue(w, res[i:], errs[i:])
	}
}

// replyNames answers the names of a listing; a missing bucket has none.
func replyNames(w *respWriter, res []store.Result, _ []error) { w.bulks(res[0].Names) }

// replyPairValues answers every second name of a listing of keys and
// values: the values.
func replyPairValues(w *respWriter, res []store.Result, _ []error) {
	names := res[0].Names
	w.array(len(names) / 2)
	for i := 1; i < len(names); i += 2 {
		w.bulk(names[i])
	}
}

// --- Commands that do not touch the store.

// answer runs a command that does not touch the store.
func answer(f func(c *conn, args [][]byte)) respRun { return respRun{answer: f} }

func (c *conn) ping(args [][]byte) {
	switch len(args) {
	case 1:
		c.rw.simple("PONG")
	case 2:
		c.rw.bulk(string(args[1]))
	default:
		c.rw.err("ERR wrong number of arguments for 'ping' command")
	}
}

func (c *conn) echo(args [][]byte) { c.rw.bulk(string(args[1])) }

func (c *conn) quit([][]byte) { c.rw.simple("OK") }

func (c *conn) selectDB(args [][]byte) {
	if string(args[1]) == "0" {
		c.rw.simple("OK")
	} else {
		c.rw.err("ERR DB index is out of range")
	}
}

func (c *conn) infoRESP(args [][]byte) {
	section := ""
	if len(args) > 1 {
		section = string(args[1])
	}
	c.rw.bulk(formatInfo(c.srv.info(section)))
}

// config answers CONFIG GET for the settings that clients such as
// redis-benchmark read at start: nothing is saved to disk. Other settings
// are not listed, and nothing can be set.
func (c *conn) config(args [][]byte) {
	if !strings.EqualFold(string(args[1]), "GET") || len(args) < 3 {
		c.rw.err("ERR CONFIG " + string(clip(args[1])) + " is not supported; only CONFIG GET is")
		return
	}
	var pairs []string
	for _, p := range args[2:] {
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
	if len(args) > 3 {
		c.rw.err("ERR syntax error")
		return
	}
	if len(c.srv.cfg.Password) == 0 {
		c.rw.err("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
		return
	}
	password := args[len(args)-1]
	if len(args) == 3 && string(args[1]) != "default" || !c.checkPassword(password) {
		c.rw.err("WRONGPASS invalid username-password pair or user is disabled.")
		return
	}
	c.rw.simple("OK")
}

// hello answers HELLO [protover [AUTH user pass] [SETNAME name]]. Only
// RESP2 is spoken: a client asking for 3 gets NOPROTO and, as clients do,
// goes on in RESP2.
func (c *conn) hello(args [][]byte) {
	if len(args) > 1 {
		v, err := strconv.Atoi(string(args[1]))
		if err != nil {
			c.rw.err("ERR Protocol version is not an integer or out of range")
			return
		}
		if v != 2 {
			c.rw.err("NOPROTO this protocol version is not supported")
			return
		}
		for i := 2; i < len(args); i++ {
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
	switch sub, n := string(upper(buf[:0], args[1])), len(args)-1; {
	case sub == "SETNAME" && n == 2:
		if bytes.ContainsAny(args[2], " \n") {
			c.rw.err("ERR Client names cannot contain spaces, newlines or special characters.")
			return
		}
		c.name = string(clip(args[2]))
		c.rw.simple("OK")
	case sub == "GETNAME" && n == 1:
		if c.name == "" {
			c.rw.nil()
		} else {
			c.rw.bulk(c.name)
		}
	case sub == "ID" && n == 1:
		c.rw.int(int(c.id))
	case sub == "SETINFO" && n == 3:
		c.rw.simple("OK")
	default:
		c.rw.err("ERR unknown subcommand or wrong number of arguments for '" + string(clip(args[1])) + "'. Try CLIENT HELP.")
	}
}

// command answers COMMAND, COMMAND COUNT and COMMAND DOCS [name ...]:
// enough for redis-cli to start and show help.
func (c *conn) command(args [][]byte) {
	w := &c.rw
	cmds := c.srv.respCmds
	if len(args) == 1 {
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
	switch string(upper(buf[:0], args[1])) {
	case "COUNT":
		w.int(len(cmds))
	case "DOCS":
		var want []int
		for i, rc := range cmds {
			if len(args) == 2 || slicesContainsFold(args[2:], rc.name) {
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
		w.err("ERR unknown subcommand '" + string(clip(args[1])) + "'. Try COMMAND HELP.")
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
