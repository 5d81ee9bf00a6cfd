package textproto

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// FuzzRESP feeds any bytes, split into reads anywhere, to a RESP
// connection and checks the replies against respModel, a plain
// re-statement of the commands: the server never panics or hangs, every
// request that parses runs and gets exactly its reply, in order, and the
// connection ends where the protocol says (QUIT, a protocol error, or the
// end of the input).

// Limits of the fuzzed server, small so that inputs cross them.
const (
	fuzzMaxBulk  = 64
	fuzzMaxArgs  = 16
	fuzzMaxBytes = 256
)

// respEnd says how a stream of requests ended.
type respEnd int

const (
	endClean      respEnd = iota // at a request boundary
	endProtoError                // a malformed request
	endTruncated                 // inside a request
)

// refParseRESP splits input into requests as the server's reader should,
// written independently of it after Redis's rules: counts and lengths are
// decimal without sign or leading zero, "*-1" is an empty request. It
// stops at the first malformed request.
func refParseRESP(input []byte) (reqs [][]string, end respEnd) {
	// header reads "<prefix><number>\r\n" from input; ok false with end
	// set when it cannot.
	header := func(prefix byte, limit int) (n int, rest []byte, end respEnd, ok bool) {
		i := bytes.IndexByte(input, '\n')
		if i < 0 {
			if len(input) > maxHeaderLine {
				return 0, nil, endProtoError, false
			}
			return 0, nil, endTruncated, false
		}
		line := input[:i+1]
		if len(line) > maxHeaderLine || len(line) < 4 || line[len(line)-2] != '\r' || line[0] != prefix {
			return 0, nil, endProtoError, false
		}
		digits := string(line[1 : len(line)-2])
		if prefix == '*' && digits == "-1" {
			return 0, input[i+1:], 0, true
		}
		if digits == "0" {
			return 0, input[i+1:], 0, true
		}
		if digits == "" || strings.Trim(digits, "0123456789") != "" || digits[0] == '0' || len(digits) > 18 {
			return 0, nil, endProtoError, false
		}
		if v, _ := strconv.Atoi(digits); v <= limit {
			return v, input[i+1:], 0, true
		}
		return 0, nil, endProtoError, false
	}
	for len(input) > 0 {
		n, rest, e, ok := header('*', fuzzMaxArgs)
		if !ok {
			return reqs, e
		}
		input = rest
		var args []string
		total := 0
		for range n {
			if len(input) == 0 {
				return reqs, endTruncated
			}
			size, rest, e, ok := header('$', fuzzMaxBulk)
			if !ok {
				return reqs, e
			}
			if total+size > fuzzMaxBytes {
				return reqs, endProtoError
			}
			input = rest
			if len(input) < size+2 {
				return reqs, endTruncated
			}
			if input[size] != '\r' || input[size+1] != '\n' {
				return reqs, endProtoError
			}
			args = append(args, string(input[:size]))
			total += size
			input = input[size+2:]
		}
		if n > 0 {
			reqs = append(reqs, args)
		}
	}
	return reqs, endClean
}

// Kinds of expected replies.
const (
	replyExact = iota // exactly this reply
	replyAnyError
	replyAny   // any one well-formed reply
	replyOneOf // one of alts
)

type expectedReply struct {
	kind  int
	reply string
	alts  []string // replyOneOf
}

// respModel is the store as RESP commands see it, on a clock frozen at
// now: an expiry after now never passes, one at or before it deletes at
// once, so the model keeps only the expiries still to come.
//
// It follows Redis 7.4 but where D-Boutique differs on purpose:
//   - a name can be a plain key and a bucket (a hash) at once: DEL,
//     EXISTS, TOUCH, UNLINK, EXPIRE and PERSIST act on both, TTL answers
//     the plain key's if there is one, else the bucket's;
//   - a bucket stays, empty, when its last key goes (HDEL, HEXPIRE), where
//     Redis deletes the hash;
//   - a bucket name beginning with a NUL byte is refused, and the empty
//     name is no bucket (HSET refuses it);
//   - arguments are compared as whole byte strings, where Redis reads some
//     options as C strings ("NX\x00junk" is NX in Redis, a syntax error
//     here; "Unsupported option" quotes the whole argument, Redis stops
//     at a NUL byte);
//   - an error quotes at most 128 bytes of an argument (the fuzzed server
//     takes no longer one).
type respModel struct {
	now       int64 // ms since the Unix epoch
	plain     map[string]string
	buckets   map[string]map[string]string
	plainExp  map[string]int64            // when plain keys expire, those that do
	bucketExp map[string]int64            // when buckets expire, those that do
	fieldExp  map[string]map[string]int64 // when keys of buckets expire, those that do
}

func newRespModel(now time.Time) *respModel {
	return &respModel{now: now.UnixMilli(), plain: map[string]string{}, buckets: map[string]map[string]string{},
		plainExp: map[string]int64{}, bucketExp: map[string]int64{}, fieldExp: map[string]map[string]int64{}}
}

// Removing things, with their expiries.

func (m *respModel) delPlain(k string) { delete(m.plain, k); delete(m.plainExp, k) }

func (m *respModel) dropBucket(b string) {
	delete(m.buckets, b)
	delete(m.bucketExp, b)
	delete(m.fieldExp, b)
}

func (m *respModel) delField(b, f string) {
	delete(m.buckets[b], f)
	delete(m.fieldExp[b], f)
}

func (m *respModel) setFieldExp(b, f string, at int64) {
	if m.fieldExp[b] == nil {
		m.fieldExp[b] = map[string]int64{}
	}
	m.fieldExp[b][f] = at
}

// hasBucketName reports whether a can name a bucket: not empty, not
// beginning with a NUL byte.
func hasBucketName(a string) bool { return a != "" && a[0] != 0 }

// redisInt reads s as Redis's string2ll does: an optional minus, then 0
// alone or digits without a leading zero, within int64.
func redisInt(s string) (int64, bool) {
	digits := strings.TrimPrefix(s, "-")
	if digits == "" || strings.Trim(digits, "0123456789") != "" || digits[0] == '0' && s != "0" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// Errors of the expiry commands, as Redis words them.
var (
	errNotIntR      = rErr("ERR value is not an integer or out of range")
	errSyntaxR      = rErr("ERR syntax error")
	errNoFieldsR    = rErr("ERR Mandatory argument FIELDS is missing or not at the right position")
	errFieldsMatchR = rErr("ERR The `numfields` parameter must match the number of arguments")
)

func errExpireTimeR(cmd string) string {
	return rErr("ERR invalid expire time in '" + strings.ToLower(cmd) + "' command")
}

// stringExpiry is when SET, SETEX or GETEX's expiry option opt (EX, PX,
// EXAT or PXAT) with number arg makes a key expire (ms since the epoch),
// or the error reply (Redis's getExpireMillisecondsOrReply).
func (m *respModel) stringExpiry(cmd, opt, arg string) (int64, string) {
	n, ok := redisInt(arg)
	if !ok {
		return 0, errNotIntR
	}
	seconds := opt == "EX" || opt == "EXAT"
	if n <= 0 || seconds && n > math.MaxInt64/1000 {
		return 0, errExpireTimeR(cmd)
	}
	if seconds {
		n *= 1000
	}
	if opt == "EX" || opt == "PX" {
		if n > math.MaxInt64-m.now {
			return 0, errExpireTimeR(cmd)
		}
		n += m.now
	}
	return n, ""
}

// ttlReply is TTL's or PTTL's answer for an expiry at (0: none): seconds
// rounded to the nearest, as Redis rounds.
func (m *respModel) ttlReply(at int64, millis bool) string {
	switch {
	case at == 0:
		return rInt(-1)
	case millis:
		return rInt(int(at - m.now))
	}
	return rInt(int((at - m.now + 500) / 1000))
}

// expireCondition reports whether EXPIRE's or HEXPIRE's condition (NX,
// XX, GT, LT, or none) lets an expiry at replace cur (0: none, which
// counts as forever).
func expireCondition(cond string, cur, at int64) bool {
	switch cond {
	case "NX":
		return cur == 0
	case "XX":
		return cur != 0
	case "GT":
		return cur != 0 && at > cur
	case "LT":
		return cur == 0 || at < cur
	}
	return true
}

// modelArity is the arity of each command, as in Redis's COMMAND.
func modelArity() map[string]int {
	return map[string]int{
		"PING": -1, "ECHO": 2, "QUIT": -1, "SELECT": 2, "AUTH": -2, "HELLO": -1, "INFO": -1,
		"CLIENT": -2, "CONFIG": -2, "COMMAND": -1,
		"HSET": -4, "HMSET": -4, "HGET": 3, "HMGET": -3, "HDEL": -3, "HEXISTS": 3, "HSTRLEN": 3,
		"HLEN": 2, "HKEYS": 2, "HVALS": 2, "HGETALL": 2,
		"SET": -3, "GET": 2, "DEL": -2, "EXISTS": -2,
		"SETEX": 4, "PSETEX": 4, "SETNX": 3, "GETEX": -2, "MGET": -2, "MSET": -3, "UNLINK": -2, "TOUCH": -2,
		"EXPIRE": -3, "PEXPIRE": -3, "EXPIREAT": -3, "PEXPIREAT": -3, "TTL": 2, "PTTL": 2, "PERSIST": 2,
		"HEXPIRE": -6, "HPEXPIRE": -6, "HEXPIREAT": -6, "HPEXPIREAT": -6, "HTTL": -5, "HPTTL": -5, "HPERSIST": -5,
		"SCAN": -2, "KEYS": 2, "DBSIZE": 1, "RANDOMKEY": 1, "HSCAN": -3,
	}
}

// sortedKeys returns the keys of a bucket in key order.
func sortedKeys(b map[string]string) []string {
	ks := make([]string, 0, len(b))
	for k := range b {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// reply runs one request and returns its expected reply, and whether the
// connection ends after it.
func (m *respModel) reply(args []string) (expectedReply, bool) {
	exact := func(s string) expectedReply { return expectedReply{replyExact, s, nil} }
	name := ""
	if len(args[0]) <= 16 {
		name = asciiUpper(args[0])
	}
	arity, known := modelArity()[name]
	switch {
	case !known:
		return expectedReply{replyAnyError, "", nil}, false
	case arity > 0 && len(args) != arity, arity < 0 && len(args) < -arity,
		(name == "HSET" || name == "HMSET") && len(args)%2 != 0:
		return exact(wrongArgs(strings.ToLower(name))), false
	}
	if strings.HasPrefix(name, "H") && name != "HELLO" {
		switch {
		case args[1] != "" && args[1][0] == 0:
			return exact(reservedReply), false
		case args[1] == "" && (name == "HSET" || name == "HMSET"):
			return exact(rErr("ERR bucket names must not be empty")), false
		}
		// Other commands on the empty name read a bucket that never exists.
	}
	b := m.buckets[args[1%len(args)]]
	switch name {
	case "PING":
		if len(args) == 1 {
			return exact(rSimple("PONG")), false
		}
		if len(args) == 2 {
			return exact(rBulk(args[1])), false
		}
		return exact(wrongArgs("ping")), false
	case "ECHO":
		return exact(rBulk(args[1])), false
	case "QUIT":
		return exact(rOK), true
	case "SELECT":
		if args[1] == "0" {
			return exact(rOK), false
		}
		return exact(rErr("ERR DB index is out of range")), false
	case "AUTH":
		if len(args) > 3 {
			return exact(rErr("ERR syntax error")), false
		}
		return exact(rErr("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")), false
	case "HELLO", "INFO", "CLIENT", "CONFIG", "COMMAND":
		return expectedReply{replyAny, "", nil}, false
	case "SCAN", "KEYS", "DBSIZE", "RANDOMKEY", "HSCAN":
		r, _ := m.listing(name, args)
		return r, false
	case "HSET", "HMSET":
		if b == nil {
			b = map[string]string{}
			m.buckets[args[1]] = b
		}
		added := 0
		for i := 2; i < len(args); i += 2 {
			if _, ok := b[args[i]]; !ok {
				added++
			}
			b[args[i]] = args[i+1]
			delete(m.fieldExp[args[1]], args[i])
		}
		if name == "HMSET" {
			return exact(rOK), false
		}
		return exact(rInt(added)), false
	case "HGET":
		if v, ok := b[args[2]]; ok {
			return exact(rBulk(v)), false
		}
		return exact(rNil), false
	case "HMGET":
		var elems []string
		for _, k := range args[2:] {
			if v, ok := b[k]; ok {
				elems = append(elems, rBulk(v))
			} else {
				elems = append(elems, rNil)
			}
		}
		return exact(rArr(elems...)), false
	case "HDEL":
		n := 0
		for _, k := range args[2:] {
			if _, ok := b[k]; ok {
				m.delField(args[1], k)
				n++
			}
		}
		return exact(rInt(n)), false
	case "HEXISTS":
		_, ok := b[args[2]]
		return exact(rInt(b2int(ok))), false
	case "HSTRLEN":
		return exact(rInt(len(b[args[2]]))), false
	case "HLEN":
		return exact(rInt(len(b))), false
	case "HKEYS", "HVALS", "HGETALL":
		var out []string
		for _, k := range sortedKeys(b) {
			switch name {
			case "HKEYS":
				out = append(out, k)
			case "HVALS":
				out = append(out, b[k])
			default:
				out = append(out, k, b[k])
			}
		}
		return exact(rBulks(out...)), false
	case "GET":
		if v, ok := m.plain[args[1]]; ok {
			return exact(rBulk(v)), false
		}
		return exact(rNil), false
	case "DEL", "UNLINK", "EXISTS", "TOUCH":
		n := 0
		for _, a := range args[1:] {
			if _, ok := m.plain[a]; ok {
				n++
				if name == "DEL" || name == "UNLINK" {
					m.delPlain(a)
				}
			}
			if !hasBucketName(a) {
				continue
			}
			if _, ok := m.buckets[a]; ok {
				n++
				if name == "DEL" || name == "UNLINK" {
					m.dropBucket(a)
				}
			}
		}
		return exact(rInt(n)), false
	case "SET":
		return exact(m.set(args)), false
	case "SETEX", "PSETEX":
		opt := map[string]string{"SETEX": "EX", "PSETEX": "PX"}[name]
		at, msg := m.stringExpiry(name, opt, args[2])
		if msg != "" {
			return exact(msg), false
		}
		m.plain[args[1]], m.plainExp[args[1]] = args[3], at
		return exact(rOK), false
	case "SETNX":
		if _, ok := m.plain[args[1]]; ok {
			return exact(rInt(0)), false
		}
		m.plain[args[1]] = args[2]
		return exact(rInt(1)), false
	case "GETEX":
		return exact(m.getex(args)), false
	case "MGET":
		var elems []string
		for _, k := range args[1:] {
			if v, ok := m.plain[k]; ok {
				elems = append(elems, rBulk(v))
			} else {
				elems = append(elems, rNil)
			}
		}
		return exact(rArr(elems...)), false
	case "MSET":
		if len(args)%2 == 0 {
			return exact(wrongArgs("mset")), false
		}
		for i := 1; i < len(args); i += 2 {
			m.plain[args[i]] = args[i+1]
			delete(m.plainExp, args[i])
		}
		return exact(rOK), false
	case "EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT":
		return exact(m.expire(name, args)), false
	case "TTL", "PTTL":
		k := args[1]
		if _, ok := m.plain[k]; ok {
			return exact(m.ttlReply(m.plainExp[k], name == "PTTL")), false
		}
		if _, ok := m.buckets[k]; ok && hasBucketName(k) {
			return exact(m.ttlReply(m.bucketExp[k], name == "PTTL")), false
		}
		return exact(rInt(-2)), false
	case "PERSIST":
		k, n := args[1], 0
		if _, ok := m.plainExp[k]; ok {
			delete(m.plainExp, k)
			n = 1
		}
		if _, ok := m.bucketExp[k]; ok && hasBucketName(k) {
			delete(m.bucketExp, k)
			n = 1
		}
		return exact(rInt(n)), false
	case "HEXPIRE", "HPEXPIRE", "HEXPIREAT", "HPEXPIREAT":
		return exact(m.hexpire(name, args)), false
	case "HTTL", "HPTTL", "HPERSIST":
		return exact(m.httl(name, args)), false
	}
	panic("respModel: command without a model: " + name)
}

// set runs SET key value [NX|XX] [GET] [EX|PX|EXAT|PXAT n|KEEPTTL] as
// Redis 7.4 does: options may repeat, the last expiry counts, and its
// number is read once every option is known to be right.
func (m *respModel) set(args []string) string {
	var nx, xx, get, keep bool
	opt, arg := "", ""
	for i := 3; i < len(args); i++ {
		switch a := asciiUpper(args[i]); {
		case a == "NX" && !xx:
			nx = true
		case a == "XX" && !nx:
			xx = true
		case a == "GET":
			get = true
		case a == "KEEPTTL" && opt == "":
			keep = true
		case (a == "EX" || a == "PX" || a == "EXAT" || a == "PXAT") && !keep && (opt == "" || opt == a) && i+1 < len(args):
			opt, arg = a, args[i+1]
			i++
		default:
			return errSyntaxR
		}
	}
	var at int64
	if opt != "" {
		var msg string
		if at, msg = m.stringExpiry("SET", opt, arg); msg != "" {
			return msg
		}
	}
	k := args[1]
	old, found := m.plain[k]
	reply := rOK
	if get {
		reply = rNil
		if found {
			reply = rBulk(old)
		}
	}
	if nx && found || xx && !found {
		if get {
			return reply
		}
		return rNil
	}
	m.plain[k] = args[2]
	switch {
	case keep && found:
	case at != 0 && at <= m.now:
		m.delPlain(k)
	case at != 0:
		m.plainExp[k] = at
	default:
		delete(m.plainExp, k)
	}
	return reply
}

// getex runs GETEX key [EX|PX|EXAT|PXAT n|PERSIST]: options may repeat,
// and the number is read only once the key is found.
func (m *respModel) getex(args []string) string {
	persist := false
	opt, arg := "", ""
	for i := 2; i < len(args); i++ {
		switch a := asciiUpper(args[i]); {
		case a == "PERSIST" && opt == "":
			persist = true
		case (a == "EX" || a == "PX" || a == "EXAT" || a == "PXAT") && !persist && (opt == "" || opt == a) && i+1 < len(args):
			opt, arg = a, args[i+1]
			i++
		default:
			return errSyntaxR
		}
	}
	k := args[1]
	v, ok := m.plain[k]
	if !ok {
		return rNil
	}
	switch {
	case opt != "":
		at, msg := m.stringExpiry("GETEX", opt, arg)
		if msg != "" {
			return msg
		}
		if at <= m.now {
			m.delPlain(k)
		} else {
			m.plainExp[k] = at
		}
	case persist:
		delete(m.plainExp, k)
	}
	return rBulk(v)
}

// expire runs EXPIRE, PEXPIRE, EXPIREAT or PEXPIREAT key n [NX|XX|GT|LT
// ...] on the plain key and the bucket of that name: options first, then
// the number (Redis's expireGenericCommand).
func (m *respModel) expire(cmd string, args []string) string {
	var nx, xx, gt, lt bool
	for _, o := range args[3:] {
		switch a := asciiUpper(o); a {
		case "NX":
			nx = true
		case "XX":
			xx = true
		case "GT":
			gt = true
		case "LT":
			lt = true
		default:
			if len(o) > 128 {
				o = o[:128]
			}
			return rErr("ERR Unsupported option " + strings.TrimRight(o, "\r\n"))
		}
	}
	switch {
	case nx && (xx || gt || lt):
		return rErr("ERR NX and XX, GT or LT options at the same time are not compatible")
	case gt && lt:
		return rErr("ERR GT and LT options at the same time are not compatible")
	}
	n, ok := redisInt(args[2])
	if !ok {
		return errNotIntR
	}
	if cmd == "EXPIRE" || cmd == "EXPIREAT" {
		if n > math.MaxInt64/1000 || n < math.MinInt64/1000 {
			return errExpireTimeR(cmd)
		}
		n *= 1000
	}
	if cmd == "EXPIRE" || cmd == "PEXPIRE" {
		if n > math.MaxInt64-m.now {
			return errExpireTimeR(cmd)
		}
		n += m.now
	}
	// Each condition must hold; none means any expiry.
	allows := func(cur int64) bool {
		return (!nx || expireCondition("NX", cur, n)) && (!xx || expireCondition("XX", cur, n)) &&
			(!gt || expireCondition("GT", cur, n)) && (!lt || expireCondition("LT", cur, n))
	}
	k, set := args[1], 0
	if _, ok := m.plain[k]; ok && allows(m.plainExp[k]) {
		set = 1
		if n <= m.now {
			m.delPlain(k)
		} else {
			m.plainExp[k] = n
		}
	}
	if _, ok := m.buckets[k]; ok && hasBucketName(k) && allows(m.bucketExp[k]) {
		set = 1
		if n <= m.now {
			m.dropBucket(k)
		} else {
			m.bucketExp[k] = n
		}
	}
	return rInt(set)
}

// hfeMax is the latest expiry of a hash field in Redis 7.4
// (HFE_MAX_ABS_TIME_MSEC).
const hfeMax = 1<<46 - 1

// fieldsArg reads "FIELDS numfields field ..." at args[at:], as Redis 7.4;
// badCount is the error for a count that is not a positive integer.
func fieldsArg(args []string, at int, badCount string) ([]string, string) {
	if asciiUpper(args[at]) != "FIELDS" {
		return nil, errNoFieldsR
	}
	n, ok := redisInt(args[at+1])
	if !ok || n <= 0 {
		return nil, badCount
	}
	if n != int64(len(args)-at-2) {
		return nil, errFieldsMatchR
	}
	return args[at+2:], ""
}

// hexpire runs HEXPIRE, HPEXPIRE, HEXPIREAT or HPEXPIREAT key n
// [NX|XX|GT|LT] FIELDS numfields field ...: the time first, then the
// condition, only as the fourth argument (Redis's hexpireGenericCommand).
func (m *respModel) hexpire(cmd string, args []string) string {
	n, ok := redisInt(args[2])
	if !ok {
		return errNotIntR
	}
	if n < 0 {
		return rErr("ERR invalid expire time, must be >= 0")
	}
	if cmd == "HEXPIRE" || cmd == "HEXPIREAT" {
		if n > hfeMax/1000 {
			return errExpireTimeR(cmd)
		}
		n *= 1000
	}
	var base int64
	if cmd == "HEXPIRE" || cmd == "HPEXPIRE" {
		base = m.now
	}
	if n > hfeMax-base {
		return errExpireTimeR(cmd)
	}
	at := n + base
	cond, pos := asciiUpper(args[3]), 4
	if cond != "NX" && cond != "XX" && cond != "GT" && cond != "LT" {
		cond, pos = "", 3
	}
	fields, msg := fieldsArg(args, pos, rErr("ERR Parameter `numFields` should be greater than 0"))
	if msg != "" {
		return msg
	}
	b := args[1]
	var out []string
	for _, f := range fields {
		if _, ok := m.buckets[b][f]; !ok {
			out = append(out, rInt(-2))
			continue
		}
		switch {
		case !expireCondition(cond, m.fieldExp[b][f], at):
			out = append(out, rInt(0))
		case at <= m.now:
			m.delField(b, f)
			out = append(out, rInt(2))
		default:
			m.setFieldExp(b, f, at)
			out = append(out, rInt(1))
		}
	}
	return rArr(out...)
}

// httl runs HTTL, HPTTL or HPERSIST key FIELDS numfields field ...; HTTL
// rounds the seconds up (Redis's httlGenericCommand, hpersistCommand).
func (m *respModel) httl(cmd string, args []string) string {
	fields, msg := fieldsArg(args, 2, rErr("ERR Number of fields must be a positive integer"))
	if msg != "" {
		return msg
	}
	b := args[1]
	var out []string
	for _, f := range fields {
		at, hasExp := m.fieldExp[b][f]
		_, ok := m.buckets[b][f]
		switch {
		case !ok:
			out = append(out, rInt(-2))
		case !hasExp:
			out = append(out, rInt(-1))
		case cmd == "HPERSIST":
			delete(m.fieldExp[b], f)
			out = append(out, rInt(1))
		case cmd == "HPTTL":
			out = append(out, rInt(int(at-m.now)))
		default:
			out = append(out, rInt(int((at-m.now+999)/1000)))
		}
	}
	return rArr(out...)
}

func b2int(b bool) int {
	if b {
		return 1
	}
	return 0
}

// expectRESP returns the replies a new server sends in answer to input
// (which starts with '*'), the protocol error last if there is one.
func expectRESP(input []byte) (want []expectedReply, protoErr bool) {
	reqs, end := refParseRESP(input)
	m := newRespModel(frozenNow)
	for _, args := range reqs {
		r, quit := m.reply(args)
		want = append(want, r)
		if quit {
			return want, false
		}
	}
	return want, end == endProtoError
}

func fuzzSeeds() []string {
	big := strings.Repeat("x", fuzzMaxBulk)
	seeds := []string{
		respReq("PING"),
		respReq("HSET", "b", "k", "v", "k2", "v2") + respReq("HGET", "b", "k") + respReq("HGETALL", "b") + respReq("HDEL", "b", "k", "k") +
			respReq("HLEN", "b") + respReq("HKEYS", "b") + respReq("HVALS", "b") + respReq("HEXISTS", "b", "k2") + respReq("HMGET", "b", "k", "k2") +
			respReq("HSTRLEN", "b", "k2") + respReq("HSTRLEN", "b", "k"),
		respReq("SET", "k", "v") + respReq("GET", "k") + respReq("HSET", "k", "f", "v") + respReq("EXISTS", "k", "k", "x") + respReq("DEL", "k", "k") + respReq("GET", "k"),
		respReq("hmset", "b", "a", "1") + respReq("hset", "\x00kv:1", "a", "1") + respReq("hget", "", "a") + respReq("set", "", "") + respReq("get", ""),
		respReq("ECHO", "\x00\r\n") + respReq("PING", "x") + respReq("SELECT", "1") + respReq("AUTH", "x") + respReq("NOPE", "a", "b", "c", "d"),
		respReq("HELLO", "3") + respReq("HELLO", "2") + respReq("CLIENT", "SETINFO", "LIB-NAME", "x") + respReq("CONFIG", "GET", "save") +
			respReq("COMMAND", "DOCS") + respReq("COMMAND") + respReq("INFO"),
		respReq("PING") + respReq("QUIT") + respReq("PING"),
		respReq("SET", "a", "1") + respReq("SET", "", "2") + respReq("HSET", "a", "f", "v", "g", "w") + respReq("HSET", "h", "x", "y") +
			respReq("SCAN", "0") + respReq("SCAN", "0", "COUNT", "1") + respReq("SCAN", "0", "MATCH", "a", "TYPE", "hash") +
			respReq("scan", "0", "match", "") + respReq("SCAN", "0", "TYPE", "list") + respReq("KEYS", "*") + respReq("KEYS", "[a-h]") +
			respReq("KEYS", "") + respReq("DBSIZE") + respReq("RANDOMKEY") + respReq("HSCAN", "a", "0") +
			respReq("HSCAN", "a", "0", "COUNT", "1", "NOVALUES") + respReq("HSCAN", "nope", "0") + respReq("HSCAN", "", "0"),
		respReq("SCAN", "x") + respReq("SCAN", "-1") + respReq("SCAN", "0", "COUNT") + respReq("SCAN", "0", "COUNT", "0") +
			respReq("SCAN", "0", "COUNT", "x") + respReq("SCAN", "0", "NOVALUES") + respReq("SCAN", "0", "FOO", "1") +
			respReq("HSCAN", "a", "0", "TYPE", "hash") + respReq("HSCAN", "\x00kv:1", "0") + respReq("RANDOMKEY") + respReq("DBSIZE", "x"),
		"*0\r\n*-1\r\n" + respReq("PING") + "*00\r\n*-0\r\n",
		respReq("SET", "k", big) + respReq("GET", "k"),
		respReq("SET", "k", big+"x"),
		respReq("HSET", big, big, big, big) + respReq("PING"),
		respReq("PING") + "*x\r\n",
		"*1\r\n:1\r\n",
		"*2\r\n$4\r\nECHO\r\n$3\r\nabcde\r\n",
		"*1\r\n$4\r\nPING",
		"*1\r\n$-1\r\n",
		"*17\r\n",
		"*" + strings.Repeat("1", 40),
		"PING\r\n",
		strings.Repeat(respReq("HSET", "b", "k", "v")+respReq("HDEL", "b", "k"), 100),
	}
	return append(seeds, expirySeeds()...)
}

// expirySeeds are inputs with the commands of expiry and the multi-key
// ones: their options, their errors, and times in the past.
func expirySeeds() []string {
	r := respReq
	cat := func(reqs ...string) string { return strings.Join(reqs, "") }
	sec, ms := strconv.FormatInt(frozenNow.Unix(), 10), strconv.FormatInt(frozenNow.UnixMilli(), 10)
	in := func(d int64) string { return strconv.FormatInt(frozenNow.Unix()+d, 10) }
	inMs := func(d int64) string { return strconv.FormatInt(frozenNow.UnixMilli()+d, 10) }
	return []string{
		cat(r("SET", "k", "v", "EX", "100"), r("TTL", "k"), r("PTTL", "k"), r("SET", "k", "v", "PX", "1500"), r("TTL", "k"),
			r("SET", "k", "w", "KEEPTTL"), r("PTTL", "k"), r("SET", "k", "x"), r("TTL", "k"), r("SET", "k", "v", "NX"),
			r("SET", "k", "v", "XX", "GET"), r("SET", "n", "v", "XX"), r("SET", "n", "v", "NX", "GET"), r("SET", "k", "v", "EXAT", in(50)),
			r("SET", "k", "v", "PXAT", ms), r("GET", "k"), r("SET", "k", "v", "NX", "NX", "GET", "GET"), r("SET", "k", "v", "EX", "abc", "ex", "20"),
			r("TTL", "k"), r("SET", "k", "v", "EXAT", sec, "GET"), r("EXISTS", "k")),
		cat(r("SET", "k", "v", "EX"), r("SET", "k", "v", "EX", "0"), r("SET", "k", "v", "EX", "-1"), r("SET", "k", "v", "EX", "abc"),
			r("SET", "k", "v", "EX", "010"), r("SET", "k", "v", "NX", "XX"), r("SET", "k", "v", "EX", "1", "PX", "1"),
			r("SET", "k", "v", "KEEPTTL", "EX", "1"), r("SET", "k", "v", "EX", "abc", "FOO"), r("SET", "k", "v", "PX", "9223372036854775807"),
			r("SET", "k", "v", "EX", "9223372036854776"), r("SET", "k", "v", "FOO"), r("SET", "k", "v", "PXAT", "9223372036854775807"), r("PTTL", "k")),
		cat(r("SETEX", "k", "10", "v"), r("TTL", "k"), r("PSETEX", "k", "1500", "v"), r("PTTL", "k"), r("SETEX", "k", "0", "v"),
			r("SETEX", "k", "abc", "v"), r("PSETEX", "k", "9223372036854775807", "v"), r("SETNX", "k", "x"), r("SETNX", "n", "x"), r("GET", "n"),
			r("SETEX", "k", "1"), r("SETNX", "k")),
		cat(r("GETEX", "nope"), r("GETEX", "nope", "EX", "abc"), r("SET", "k", "v"), r("GETEX", "k", "EX", "100"), r("TTL", "k"),
			r("GETEX", "k", "PERSIST"), r("TTL", "k"), r("GETEX", "k", "PX", "1500", "px", "2500"), r("PTTL", "k"), r("GETEX", "k", "PERSIST", "EX", "1"),
			r("GETEX", "k", "EX", "0"), r("GETEX", "k", "FOO"), r("GETEX", "k", "PXAT", "1"), r("GET", "k"), r("GETEX", "k")),
		cat(r("SET", "k", "v"), r("EXPIRE", "k", "100"), r("TTL", "k"), r("EXPIRE", "k", "10", "GT"), r("EXPIRE", "k", "200", "GT"),
			r("EXPIRE", "k", "50", "LT"), r("EXPIRE", "k", "60", "NX"), r("PERSIST", "k"), r("EXPIRE", "k", "60", "XX"), r("EXPIRE", "k", "5", "LT"),
			r("PEXPIRE", "k", "1500"), r("PTTL", "k"), r("EXPIREAT", "k", in(30)), r("PEXPIREAT", "k", inMs(7)), r("TTL", "k"),
			r("EXPIRE", "k", "0", "NX"), r("EXPIRE", "k", "-1"), r("GET", "k"), r("TTL", "k"), r("PERSIST", "k")),
		cat(r("SET", "k", "v"), r("EXPIRE", "k", "abc"), r("EXPIRE", "k", "abc", "FOO"), r("EXPIRE", "k", "10", "NX", "XX"),
			r("EXPIRE", "k", "10", "GT", "LT"), r("EXPIRE", "k", "10", "NX", "GT"), r("EXPIRE", "k", "9223372036854776"),
			r("PEXPIRE", "k", "9223372036854775807"), r("EXPIRE", "k", "10", "x\r\n"), r("EXPIRE", "k", "10", "\xff"), r("EXPIRE", "k", "010"),
			r("EXPIREAT", "k", "9223372036854776"), r("PEXPIREAT", "k", "9223372036854775807"), r("PTTL", "k"), r("TTL"), r("EXPIRE", "k")),
		cat(r("HSET", "h", "f", "v"), r("EXPIRE", "h", "100"), r("TTL", "h"), r("SET", "h", "p", "EX", "50"), r("TTL", "h"),
			r("EXPIRE", "h", "10", "NX"), r("PTTL", "h"), r("GETEX", "h", "PXAT", "1"), r("TTL", "h"), r("PERSIST", "h"), r("TTL", "h"),
			r("EXPIRE", "h", "0"), r("HGETALL", "h"), r("EXISTS", "h"), r("EXPIRE", "", "5"), r("SET", "\x00x", "v"),
			r("EXPIRE", "\x00x", "5"), r("TTL", "\x00x")),
		cat(r("HSET", "h", "a", "1", "b", "2", "c", "3"), r("HEXPIRE", "h", "100", "FIELDS", "2", "a", "nope"),
			r("HTTL", "h", "FIELDS", "3", "a", "b", "nope"), r("HPTTL", "h", "FIELDS", "1", "a"), r("HEXPIRE", "h", "50", "NX", "FIELDS", "2", "a", "b"),
			r("HEXPIRE", "h", "60", "XX", "FIELDS", "2", "a", "c"), r("HEXPIRE", "h", "55", "GT", "FIELDS", "3", "a", "b", "c"),
			r("HEXPIRE", "h", "52", "LT", "FIELDS", "3", "a", "b", "c"), r("HPEXPIRE", "h", "1001", "FIELDS", "1", "a"), r("HTTL", "h", "FIELDS", "1", "a"),
			r("HPERSIST", "h", "FIELDS", "3", "a", "nope", "c"), r("HSET", "h", "b", "22"), r("HTTL", "h", "FIELDS", "1", "b"),
			r("HEXPIRE", "h", "0", "GT", "FIELDS", "1", "a"), r("HEXPIRE", "h", "0", "FIELDS", "2", "a", "a"), r("HEXPIREAT", "h", "1", "FIELDS", "1", "b"),
			r("HPEXPIREAT", "h", ms, "FIELDS", "1", "c"), r("HGETALL", "h"), r("EXISTS", "h"), r("HLEN", "h")),
		cat(r("HSET", "h", "a", "1"), r("HEXPIRE", "h", "abc", "FIELDS", "1", "a"), r("HEXPIRE", "h", "-1", "FIELDS", "1", "a"),
			r("HEXPIRE", "h", "10", "FIELD", "1", "a"), r("HEXPIRE", "h", "10", "FOO", "FIELDS", "1", "a"), r("HEXPIRE", "h", "10", "NX", "XX", "FIELDS", "1", "a"),
			r("HEXPIRE", "h", "10", "FIELDS", "0", "a"), r("HEXPIRE", "h", "10", "FIELDS", "2", "a"), r("HEXPIRE", "h", "10", "FIELDS", "1", "a", "b"),
			r("HEXPIREAT", "h", "70368744178", "FIELDS", "1", "a"), r("HPEXPIRE", "h", "70368744177663", "FIELDS", "1", "a"),
			r("HPEXPIREAT", "h", "70368744177663", "FIELDS", "1", "a"), r("HTTL", "h", "FIELDS", "1", "a"), r("HTTL", "h", "FIELDS", "0", "a"),
			r("HTTL", "h", "FIELD", "1", "a"), r("HPERSIST", "h", "FIELDS", "2", "a"), r("HEXPIRE", "", "10", "FIELDS", "1", "a"),
			r("HTTL", "\x00x", "FIELDS", "1", "a"), r("HEXPIRE", "nowhere", "10", "FIELDS", "1", "a"), r("HEXPIRE", "h", "10", "FIELDS")),
		cat(r("MSET", "a", "1", "b", "2", "c", "3"), r("MGET", "a", "nope", "c", "b"), r("SET", "b", "2", "EX", "100"), r("MSET", "b", "two"),
			r("TTL", "b"), r("MSET", "a"), r("MSET", "a", "1", "b"), r("HSET", "h", "f", "v"), r("TOUCH", "a", "b", "nope", "a", "h"),
			r("UNLINK", "a", "nope", "a", "h"), r("MGET", "a", "b", "h"), r("DEL", "b"), r("MGET"), r("TOUCH"), r("UNLINK")),
	}
}

func FuzzRESP(f *testing.F) {
	for i, s := range fuzzSeeds() {
		f.Add([]byte(s), []byte{byte(i), 1, 7, 200})
		f.Add([]byte(s), []byte{byte(i), 255})
	}
	f.Fuzz(func(t *testing.T, input, cuts []byte) {
		if len(input) == 0 || input[0] != '*' {
			input = append([]byte(respReq("PING")), input...)
		}
		// Past this size, the store's clock could move: its hybrid
		// clock's 16-bit counter carries into the milliseconds after
		// 65536 versioned writes, and a write takes more than 3 bytes.
		if len(input) > 1<<16 {
			return
		}
		// The server's store runs on a frozen clock, as the model does.
		var exec Executor = frozenStore()
		if len(cuts)%2 == 1 {
			exec = &batchStore{Store: frozenStore()}
		}
		core, logs := observer.New(zapcore.ErrorLevel)
		got := fuzzExchange(t, Config{Executor: exec, MaxBulkBytes: fuzzMaxBulk, MaxArgs: fuzzMaxArgs,
			MaxRequestBytes: fuzzMaxBytes, Logger: zap.New(core)}, input, cuts)
		if n := logs.Len(); n > 0 {
			t.Fatalf("input %q: the server logged %d errors, first %q %v", input, n, logs.All()[0].Message, logs.All()[0].ContextMap())
		}

		want, protoErr := expectRESP(input)
		r := bufio.NewReader(bytes.NewReader(got))
		for i, w := range want {
			var b strings.Builder
			if err := readReply(r, &b); err != nil {
				t.Fatalf("input %q\nreply %d of %d: %v; replies %q", input, i+1, len(want), err, got)
			}
			g := b.String()
			switch {
			case w.kind == replyExact && g != w.reply,
				w.kind == replyAnyError && g[0] != '-',
				w.kind == replyOneOf && !slices.Contains(w.alts, g):
				t.Fatalf("input %q\nreply %d: %q, want %q (kind %d)\nall replies %q", input, i+1, g, w.reply, w.kind, got)
			}
		}
		rest, _ := io.ReadAll(r)
		switch {
		case protoErr && !(bytes.HasPrefix(rest, []byte("-ERR Protocol error: ")) && bytes.IndexByte(rest, '\n') == len(rest)-1):
			t.Fatalf("input %q\nafter %d replies: %q, want one protocol error", input, len(want), rest)
		case !protoErr && len(rest) > 0:
			t.Fatalf("input %q\nafter %d replies, more: %q", input, len(want), rest)
		}
	})
}

// TestRefParseRESPAgreesWithReader: the fuzz test's parser and the
// server's reader split the seeds alike, so that the fuzz test checks the
// server, not a misreading of its own.
func TestRefParseRESPAgreesWithReader(t *testing.T) {
	for _, s := range fuzzSeeds() {
		rr := &respReader{r: bufio.NewReaderSize(strings.NewReader(s), bufSize), maxBulk: fuzzMaxBulk, maxArgs: fuzzMaxArgs, maxBytes: fuzzMaxBytes}
		reqs, _, err := readRequests(rr)
		want, end := refParseRESP([]byte(s))
		var pe *respError
		wantEnd := endClean
		switch {
		case errors.As(err, &pe):
			wantEnd = endProtoError
		case err == io.ErrUnexpectedEOF:
			wantEnd = endTruncated
		}
		if !slices.EqualFunc(reqs, want, slices.Equal) || end != wantEnd {
			t.Errorf("%q: reader %q, %v; model %q, end %d", s, reqs, err, want, end)
		}
	}
}

// FuzzRESPReaderBuffered: the reader's two ways agree. Read whole from
// its buffer, requests take nextBuffered's way; read a byte at a time,
// every request takes next's slow way. Both must read the same requests
// and end with the same error.
func FuzzRESPReaderBuffered(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add([]byte(s))
	}
	for _, s := range []string{
		"*1\r\n$4\r\nPING\r\n", "*2\r\n$0\r\n\r\n$1\r\nx\r\n", "*0\r\n*1\r\n$1\r\na\r\n", "*-1\r\n",
		"*1\r\n$4\r\nPINGxx", "*01\r\n$1\r\na\r\n", "*1\r\n$01\r\na\r\n", "*1\r\n$9999999999\r\n",
		"*99999999999\r\n", "*9\r\n", "*1\r\n$65\r\n", "*2\r\n$1\r\na\r\n", "*1\r\n$1\r\na\r\r",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		whole := newTestRespReader(bytes.NewReader(input), 4096)
		oneByte := newTestRespReader(iotest.OneByteReader(bytes.NewReader(input)), 4096)
		wantReqs, wantEmpty, wantErr := readRequests(oneByte)
		gotReqs, gotEmpty, gotErr := readRequests(whole)
		if !slices.EqualFunc(gotReqs, wantReqs, slices.Equal) || gotEmpty != wantEmpty {
			t.Fatalf("input %q: buffered read %q (%d empty), byte by byte %q (%d empty)", input, gotReqs, gotEmpty, wantReqs, wantEmpty)
		}
		var gotPE, wantPE *respError
		switch {
		case errors.As(gotErr, &gotPE) != errors.As(wantErr, &wantPE),
			gotPE != nil && gotPE.msg != wantPE.msg,
			gotPE == nil && gotErr != wantErr:
			t.Fatalf("input %q: buffered read ended with %v, byte by byte with %v", input, gotErr, wantErr)
		}
	})
}
