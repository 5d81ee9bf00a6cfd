package textproto

import (
	"bytes"
	"math"
	"strconv"
	"strings"

	"github.com/dboutique/dboutique/node/store"
)

// The RESP commands of expiry (SET's options, SETEX, GETEX, EXPIRE and its
// kin, TTL, PERSIST, and Redis 7.4's per-field HEXPIRE, HTTL, HPERSIST)
// and the multi-key ones (MGET, MSET, TOUCH). Their replies and errors
// are Redis 7's. Relative expiries travel as such (store.FlagRelative), so
// that the bucket's primary, which judges expiry, counts them from its own
// clock.
//
// A name can be a plain key and a bucket at once (resp_conn.go): EXPIRE,
// PERSIST and TTL act on both, as DEL does.

// Replies of Redis to bad expiry arguments.
const (
	errNotInteger = "ERR value is not an integer or out of range"
	errSyntax     = "ERR syntax error"
)

func errInvalidExpire(cmd string) string { return "ERR invalid expire time in '" + cmd + "' command" }

// parseInt parses a whole argument as a decimal int64 as Redis does
// (string2ll): a minus sign or none, then 0 alone or digits that do not
// start with 0; no plus sign, no space, no "-0".
func parseInt(b []byte) (int64, bool) {
	digits := b
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || digits[0] == '0' && len(b) > 1 {
		return 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	return n, err == nil
}

// expiryUnit says what an expiry argument counts: seconds or milliseconds,
// from now or since the Unix epoch.
type expiryUnit struct {
	millis, absolute bool
}

// fill fills op's Expires and flags from n, an expiry in unit, at the
// time now (ms since the Unix epoch). It reports false when the time
// overflows int64 milliseconds, counted from now for a relative expiry, as
// Redis's "invalid expire time".
func (u expiryUnit) fill(op *store.Op, n, now int64) bool {
	if !u.millis {
		if n > math.MaxInt64/1000 || n < math.MinInt64/1000 {
			return false
		}
		n *= 1000
	}
	if !u.absolute && n > math.MaxInt64-now {
		return false
	}
	if u.absolute {
		op.Expires = max(n, 1) // a time before 1970 is long past
	} else {
		op.Expires = n
		op.Flags |= store.FlagRelative
	}
	return true
}

// --- SET and its kin ---

// expiryOption reports whether a, an option in upper case, is EX, PX,
// EXAT or PXAT, and what its number counts.
func expiryOption(a string) (expiryUnit, bool) {
	switch a {
	case "EX", "PX", "EXAT", "PXAT":
		return expiryUnit{millis: a[0] == 'P', absolute: len(a) == 4}, true
	}
	return expiryUnit{}, false
}

// setExpiry fills op's expiry from arg, the number of an EX, PX, EXAT or
// PXAT of SET, SETEX or GETEX (cmd), and returns Redis's error if it is
// wrong: not an integer, not positive, or a time that overflows.
func (c *conn) setExpiry(op *store.Op, arg []byte, u expiryUnit, cmd string) string {
	n, ok := parseInt(arg)
	if !ok {
		return errNotInteger
	}
	if n <= 0 || !u.fill(op, n, c.srv.nowMillis()) {
		return errInvalidExpire(cmd)
	}
	return ""
}

// queueSet: SET key value [NX|XX] [GET] [EX s|PX ms|EXAT ts|PXAT ms|KEEPTTL].
// As in Redis, an option may be repeated (the last expiry counts), and the
// expiry's number is read once all the options are known to be right.
func queueSet(c *conn, args [][]byte) string {
	key := string(args[1])
	op := store.Op{Kind: store.KindPutCreate, Bucket: c.srv.plainBucket(key), Key: key, Value: string(args[2])}
	var (
		expiry []byte // the number of EX, PX, EXAT or PXAT
		unit   expiryUnit
		given  bool // whether one of them was
	)
	for i := 3; i < len(args); i++ {
		var buf [8]byte
		a := string(upper(buf[:0], args[i]))
		u, isExpiry := expiryOption(a)
		switch {
		case a == "NX" && op.Flags&store.FlagXX == 0:
			op.Flags |= store.FlagNX
		case a == "XX" && op.Flags&store.FlagNX == 0:
			op.Flags |= store.FlagXX
		case a == "GET":
			op.Flags |= store.FlagGet
		case a == "KEEPTTL" && !given:
			op.Flags |= store.FlagKeepTTL
		case isExpiry && op.Flags&store.FlagKeepTTL == 0 && (!given || u == unit) && i+1 < len(args):
			i++
			expiry, unit, given = args[i], u, true
		default:
			return errSyntax
		}
	}
	if given {
		if msg := c.setExpiry(&op, expiry, unit, "set"); msg != "" {
			return msg
		}
	}
	// A plain SET, and SET with EX or PX only, write without reading
	// first; the others are decided from what the key holds.
	if op.Flags&^store.FlagRelative != 0 || op.Expires != 0 && op.Flags&store.FlagRelative == 0 {
		op.Kind = store.KindSet
		c.replyWith = setWritten
		if op.Flags&store.FlagGet != 0 {
			c.replyWith = setWithGet
		}
	}
	c.queueOp(op)
	return ""
}

// setWithGet answers SET ... GET: the old value, or nil.
func setWithGet(w *respWriter, res []store.Result, errs []error) {
	if errs[0] != nil || res[0].Count&2 == 0 {
		w.nil()
	} else {
		w.bulk(res[0].Value)
	}
}

// setWritten answers SET with NX, XX or KEEPTTL: OK when it wrote, nil
// when a condition kept the value.
func setWritten(w *respWriter, res []store.Result, errs []error) {
	if errs[0] == nil && res[0].Count&1 != 0 {
		w.simple("OK")
	} else {
		w.nil()
	}
}

// queueSetEx: SETEX key seconds value, PSETEX key milliseconds value.
func queueSetEx(millis bool) func(c *conn, args [][]byte) string {
	name := "setex"
	if millis {
		name = "psetex"
	}
	return func(c *conn, args [][]byte) string {
		key := string(args[1])
		op := store.Op{Kind: store.KindPutCreate, Bucket: c.srv.plainBucket(key), Key: key, Value: string(args[3])}
		if msg := c.setExpiry(&op, args[2], expiryUnit{millis: millis}, name); msg != "" {
			return msg
		}
		c.queueOp(op)
		return ""
	}
}

// queueSetNX: SETNX key value.
func queueSetNX(c *conn, args [][]byte) string {
	key := string(args[1])
	c.queueOp(store.Op{Kind: store.KindSet, Bucket: c.srv.plainBucket(key), Key: key, Value: string(args[2]), Flags: store.FlagNX})
	return ""
}

// replySetNX answers 1 when SETNX set the key.
func replySetNX(w *respWriter, res []store.Result, errs []error) {
	w.int(b2i(errs[0] == nil && res[0].Count&1 != 0))
}

// queueGetEx: GETEX key [EX s|PX ms|EXAT ts|PXAT ms|PERSIST]. As in
// Redis, an option may be repeated (the last expiry counts), and the
// expiry's number is read only once the key is found: a missing key is
// nil whatever the number.
func queueGetEx(c *conn, args [][]byte) string {
	key := string(args[1])
	op := store.Op{Kind: store.KindGet, Bucket: c.srv.plainBucket(key), Key: key}
	var (
		expiry []byte // the number of EX, PX, EXAT or PXAT
		unit   expiryUnit
		given  bool // whether one of them was
	)
	for i := 2; i < len(args); i++ {
		var buf [8]byte
		a := string(upper(buf[:0], args[i]))
		u, isExpiry := expiryOption(a)
		switch {
		case a == "PERSIST" && !given:
			op.Kind, op.Flags = store.KindGetEx, store.FlagPersist
		case isExpiry && op.Flags&store.FlagPersist == 0 && (!given || u == unit) && i+1 < len(args):
			i++
			expiry, unit, given = args[i], u, true
		default:
			return errSyntax
		}
	}
	if given {
		op.Kind = store.KindGetEx
		if msg := c.setExpiry(&op, expiry, unit, "getex"); msg != "" {
			c.queueOp(store.Op{Kind: store.KindGet, Bucket: op.Bucket, Key: key})
			c.replyWith = func(w *respWriter, _ []store.Result, errs []error) {
				if errs[0] != nil {
					w.nil()
				} else {
					w.err(msg)
				}
			}
			return ""
		}
	}
	c.queueOp(op)
	return ""
}

// --- EXPIRE and its kin, on plain keys and buckets ---

// expireFlags parses EXPIRE's NX, XX, GT and LT.
func expireFlags(args [][]byte) (store.Flags, string) {
	var f store.Flags
	for _, a := range args {
		var buf [8]byte
		switch string(upper(buf[:0], a)) {
		case "NX":
			f |= store.FlagNX
		case "XX":
			f |= store.FlagXX
		case "GT":
			f |= store.FlagGT
		case "LT":
			f |= store.FlagLT
		default:
			// Redis trims the line breaks that end the message.
			return 0, "ERR Unsupported option " + strings.TrimRight(string(clip(a)), "\r\n")
		}
	}
	switch {
	case f&store.FlagNX != 0 && f&(store.FlagXX|store.FlagGT|store.FlagLT) != 0:
		return 0, "ERR NX and XX, GT or LT options at the same time are not compatible"
	case f&store.FlagGT != 0 && f&store.FlagLT != 0:
		return 0, "ERR GT and LT options at the same time are not compatible"
	}
	return f, ""
}

// queueExpire: EXPIRE key seconds [NX|XX|GT|LT], and PEXPIRE, EXPIREAT,
// PEXPIREAT, on the plain key and the bucket of that name. As in Redis,
// the options are read before the number.
func queueExpire(name string, u expiryUnit) func(c *conn, args [][]byte) string {
	return func(c *conn, args [][]byte) string {
		f, msg := expireFlags(args[3:])
		if msg != "" {
			return msg
		}
		n, ok := parseInt(args[2])
		if !ok {
			return errNotInteger
		}
		op := store.Op{Kind: store.KindExpire, Flags: f}
		if !u.fill(&op, n, c.srv.nowMillis()) {
			return errInvalidExpire(name)
		}
		c.queueNamed(op, args[1])
		return ""
	}
}

// queueNamed queues op on the plain key named name and, when a bucket can
// have that name, on the bucket.
func (c *conn) queueNamed(op store.Op, name []byte) {
	k := string(name)
	key := op
	key.Bucket, key.Key = c.srv.plainBucket(k), k
	c.queueOp(key)
	if !reserved(name) && len(name) > 0 {
		op.Bucket, op.Flags = k, op.Flags|store.FlagBucket
		c.queueOp(op)
	}
}

// namedOp: one operation of kind k on the plain key and the bucket named
// args[1] (TTL, PERSIST).
func namedOp(k store.Kind) func(c *conn, args [][]byte) string {
	return func(c *conn, args [][]byte) string {
		c.queueNamed(store.Op{Kind: k}, args[1])
		return ""
	}
}

// replyAnyCount answers 1 when any operation counted something.
func replyAnyCount(w *respWriter, res []store.Result, errs []error) {
	for i := range res {
		if errs[i] == nil && res[i].Count > 0 {
			w.int(1)
			return
		}
	}
	w.int(0)
}

// ttlOf returns Redis's answer for a TTL operation's outcome: -2 missing,
// -1 no expiry, else the time left, in ms or in seconds (rounded, as Redis
// rounds).
func ttlOf(r store.Result, err error, millis bool) int64 {
	if err != nil {
		return -2
	}
	if r.Value == "" {
		return -1
	}
	ms, _ := strconv.ParseInt(r.Value, 10, 64)
	if millis {
		return ms
	}
	return (ms + 500) / 1000
}

// replyTTL answers TTL or PTTL of a name: the plain key's if there is one,
// else the bucket's.
func replyTTL(millis bool) respReply {
	return func(w *respWriter, res []store.Result, errs []error) {
		t := int64(-2)
		for i := range res {
			if t = ttlOf(res[i], errs[i], millis); t != -2 {
				break
			}
		}
		w.int64(t)
	}
}

// --- per-field expiry of a bucket's keys (Redis 7.4's HEXPIRE) ---

// fields parses "FIELDS numfields field ..." at args[i:], as Redis 7.4
// does; badCount is the error for a numfields that is not a positive
// integer, which Redis words differently for HEXPIRE and for HTTL and
// HPERSIST.
func fields(args [][]byte, i int, badCount string) ([][]byte, string) {
	if i >= len(args) || !bytes.EqualFold(args[i], []byte("FIELDS")) {
		return nil, "ERR Mandatory argument FIELDS is missing or not at the right position"
	}
	if i+1 >= len(args) {
		return nil, errSyntax
	}
	n, ok := parseInt(args[i+1])
	if !ok || n <= 0 {
		return nil, badCount
	}
	if n != int64(len(args)-i-2) {
		return nil, "ERR The `numfields` parameter must match the number of arguments"
	}
	return args[i+2:], ""
}

// hfeMaxMillis is the latest expiry a key of a bucket can have, as a hash
// field's in Redis 7.4 (HFE_MAX_ABS_TIME_MSEC, 2^46-1 ms since the Unix
// epoch: the year 4199).
const hfeMaxMillis = 1<<46 - 1

// queueHExpire: HEXPIRE key seconds [NX|XX|GT|LT] FIELDS numfields field
// ..., and HPEXPIRE, HEXPIREAT, HPEXPIREAT. As Redis 7.4, it reads the
// time first, then the condition, which can only be the fourth argument.
func queueHExpire(name string, u expiryUnit) func(c *conn, args [][]byte) string {
	return func(c *conn, args [][]byte) string {
		n, ok := parseInt(args[2])
		if !ok {
			return errNotInteger
		}
		if n < 0 {
			return "ERR invalid expire time, must be >= 0"
		}
		if !u.millis {
			if n > hfeMaxMillis/1000 {
				return errInvalidExpire(name)
			}
			n *= 1000
		}
		var now int64
		if !u.absolute {
			now = c.srv.nowMillis()
		}
		if n > hfeMaxMillis-now {
			return errInvalidExpire(name)
		}
		var f store.Flags
		at := 4
		var buf [8]byte
		switch string(upper(buf[:0], args[3])) {
		case "NX":
			f = store.FlagNX
		case "XX":
			f = store.FlagXX
		case "GT":
			f = store.FlagGT
		case "LT":
			f = store.FlagLT
		default:
			at = 3
		}
		keys, msg := fields(args, at, "ERR Parameter `numFields` should be greater than 0")
		if msg != "" {
			return msg
		}
		op := store.Op{Kind: store.KindExpire, Bucket: c.bucketName(args[1]), Flags: f}
		(expiryUnit{millis: true, absolute: u.absolute}).fill(&op, n, now)
		for _, k := range keys {
			op.Key = string(k)
			c.queueOp(op)
		}
		return ""
	}
}

// fieldOps: an operation of kind k on each field of "key FIELDS numfields
// field ..." (HTTL, HPTTL, HPERSIST).
func fieldOps(k store.Kind) func(c *conn, args [][]byte) string {
	return func(c *conn, args [][]byte) string {
		keys, msg := fields(args, 2, "ERR Number of fields must be a positive integer")
		if msg != "" {
			return msg
		}
		b := c.bucketName(args[1])
		for _, key := range keys {
			c.queueOp(store.Op{Kind: k, Bucket: b, Key: string(key)})
		}
		return ""
	}
}

// replyHExpire answers, per field: -2 no such field (or bucket), 0 a
// condition kept the expiry, 1 set, 2 deleted (the time had passed).
func replyHExpire(w *respWriter, res []store.Result, errs []error) {
	w.array(len(res))
	for i := range res {
		if errs[i] != nil {
			w.int(-2)
		} else {
			w.int(res[i].Count)
		}
	}
}

// replyHTTL answers, per field, its TTL as TTL would, but for seconds
// rounded up, as Redis 7.4 rounds HTTL's.
func replyHTTL(millis bool) respReply {
	return func(w *respWriter, res []store.Result, errs []error) {
		w.array(len(res))
		for i := range res {
			t := ttlOf(res[i], errs[i], true)
			if !millis && t > 0 {
				t = (t-1)/1000 + 1 // up, without overflow
			}
			w.int64(t)
		}
	}
}

// replyHPersist answers, per field: -2 no such field, -1 no expiry, 1
// removed.
func replyHPersist(w *respWriter, res []store.Result, errs []error) {
	w.array(len(res))
	for i := range res {
		switch {
		case errs[i] != nil:
			w.int(-2)
		case res[i].Count == 0:
			w.int(-1)
		default:
			w.int(1)
		}
	}
}

// --- multi-key commands ---

// queueMSet: MSET key value [key value ...]. Each key is set on its own
// bucket's primary: across nodes MSET is not atomic.
func queueMSet(c *conn, args [][]byte) string {
	if len(args)%2 == 0 {
		return "ERR wrong number of arguments for '" + strings.ToLower(string(args[0])) + "' command"
	}
	for i := 1; i < len(args); i += 2 {
		key := string(args[i])
		c.queueOp(store.Op{Kind: store.KindPutCreate, Bucket: c.srv.plainBucket(key), Key: key, Value: string(args[i+1])})
	}
	return ""
}

// plainKeys: an operation of kind k on each plain key after args[0]
// (MGET).
func plainKeys(k store.Kind) func(c *conn, args [][]byte) string {
	return func(c *conn, args [][]byte) string {
		for _, a := range args[1:] {
			if k == store.KindGet {
				c.lookupKey(store.Op{Kind: k, Bucket: c.srv.plainBucketOf(a)}, a)
			} else {
				key := string(a)
				c.queueOp(store.Op{Kind: k, Bucket: c.srv.plainBucket(key), Key: key})
			}
		}
		return ""
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
