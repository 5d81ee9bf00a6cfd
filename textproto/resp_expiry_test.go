package textproto

import (
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/dboutique/dboutique/node/store"
)

// Tests of the RESP commands of expiry and the multi-key commands
// (resp_expiry.go), one table per family of commands, each on a fresh
// server whose store runs on a frozen clock, so that TTLs are exact. Every
// reply is compared byte for byte with what Redis 7.4 sends, except where
// a comment says that D-Boutique differs on purpose.

// frozenNow is the time of the frozen clock: whole seconds, so that
// EXAT and PXAT times line up.
var frozenNow = time.Date(2026, 12, 2, 14, 0, 0, 0, time.UTC)

// frozenStore returns a store whose clock always reads frozenNow: relative
// expiries never pass, and absolute ones at or before frozenNow delete.
func frozenStore() *store.Store {
	return store.NewStoreWithClock(store.NewClock(func() time.Time { return frozenNow }))
}

// Times around frozenNow, as EXAT (seconds) and PXAT (milliseconds) take
// them.
var (
	nowSec = frozenNow.Unix()
	nowMs  = frozenNow.UnixMilli()
	// fromNowMax is the longest relative expiry, in ms, that does not
	// overflow int64 milliseconds from frozenNow: Redis refuses a longer
	// one.
	fromNowMax = math.MaxInt64 - nowMs
)

func atSec(d int64) string { return strconv.FormatInt(nowSec+d, 10) }
func itoa(n int64) string  { return strconv.FormatInt(n, 10) }
func atMs(d int64) string  { return strconv.FormatInt(nowMs+d, 10) }

// rInts encodes an array of integers.
func rInts(ns ...int) string {
	elems := make([]string, len(ns))
	for i, n := range ns {
		elems[i] = rInt(n)
	}
	return rArr(elems...)
}

const (
	errNotInt      = "-ERR value is not an integer or out of range\r\n"
	errSyntaxReply = "-ERR syntax error\r\n"
)

func invalidExpire(cmd string) string {
	return rErr("ERR invalid expire time in '" + cmd + "' command")
}

// respFamily is the table of one family of commands: steps run in order
// on one connection to a fresh server.
type respFamily struct {
	name  string
	steps []respStep
}

// respExpiryTests are the tables of TestRESPExpiryCommands.
func respExpiryTests() []respFamily {
	return []respFamily{
		{"SET options", []respStep{
			{respReq("SET", "k", "v", "EX", "100"), rOK},
			{respReq("TTL", "k"), rInt(100)},
			{respReq("PTTL", "k"), rInt(100000)},
			// TTL rounds to the nearest second, as Redis does.
			{respReq("SET", "k", "v", "PX", "1500"), rOK},
			{respReq("TTL", "k"), rInt(2)},
			{respReq("PTTL", "k"), rInt(1500)},
			{respReq("SET", "k", "v", "px", "1499"), rOK},
			{respReq("TTL", "k"), rInt(1)},
			{respReq("SET", "k", "v", "EXAT", atSec(50)), rOK},
			{respReq("TTL", "k"), rInt(50)},
			{respReq("SET", "k", "v", "PXAT", atMs(1234)), rOK},
			{respReq("PTTL", "k"), rInt(1234)},
			// KEEPTTL keeps the expiry; a SET without it drops it.
			{respReq("SET", "k", "w", "KEEPTTL"), rOK},
			{respReq("PTTL", "k"), rInt(1234)},
			{respReq("GET", "k"), rBulk("w")},
			{respReq("SET", "k", "x"), rOK},
			{respReq("TTL", "k"), rInt(-1)},
			// A time at or before now writes a key that is gone at once.
			{respReq("SET", "k", "v", "PXAT", atMs(0)), rOK},
			{respReq("GET", "k"), rNil},
			{respReq("SET", "k", "v", "EXAT", "1"), rOK},
			{respReq("EXISTS", "k"), rInt(0)},
			{respReq("TTL", "k"), rInt(-2)},
			// NX and XX.
			{respReq("SET", "n", "v", "XX"), rNil},
			{respReq("GET", "n"), rNil},
			{respReq("SET", "n", "v", "NX"), rOK},
			{respReq("SET", "n", "w", "nx"), rNil},
			{respReq("SET", "n", "w", "XX"), rOK},
			{respReq("GET", "n"), rBulk("w")},
			{respReq("SET", "n", "y", "XX", "EX", "10"), rOK},
			{respReq("TTL", "n"), rInt(10)},
			{respReq("SET", "n", "z", "NX", "EX", "20"), rNil},
			{respReq("TTL", "n"), rInt(10)},
			// GET answers the old value, whether or not NX or XX let the
			// value be written.
			{respReq("SET", "g", "v", "GET"), rNil},
			{respReq("SET", "g", "w", "GET"), rBulk("v")},
			{respReq("SET", "g", "x", "NX", "GET"), rBulk("w")},
			{respReq("GET", "g"), rBulk("w")},
			{respReq("SET", "g", "x", "XX", "GET", "EX", "30"), rBulk("w")},
			{respReq("TTL", "g"), rInt(30)},
			{respReq("SET", "g", "y", "GET", "KEEPTTL"), rBulk("x")},
			{respReq("TTL", "g"), rInt(30)},
			{respReq("SET", "g", "z", "PXAT", "1", "GET"), rBulk("y")},
			{respReq("GET", "g"), rNil},
			{respReq("SET", "none", "v", "XX", "GET"), rNil},
			{respReq("EXISTS", "none"), rInt(0)},
			// As in Redis, an option may be repeated: the last expiry
			// counts, and its number is read once all the options are
			// known to be right.
			{respReq("SET", "r", "v", "NX", "NX"), rOK},
			{respReq("SET", "r", "w", "NX", "GET", "nx", "GET"), rBulk("v")},
			{respReq("SET", "r", "w", "XX", "XX", "KEEPTTL", "KEEPTTL"), rOK},
			{respReq("SET", "r", "x", "EX", "abc", "EX", "20"), rOK},
			{respReq("TTL", "r"), rInt(20)},
			{respReq("SET", "r", "y", "PX", "1", "px", "2500"), rOK},
			{respReq("PTTL", "r"), rInt(2500)},
			{respReq("SET", "r", "z", "EX", "abc", "FOO"), errSyntaxReply},
			{respReq("SET", "r", "z", "EX", "0", "NX", "XX"), errSyntaxReply},
			{respReq("SET", "r", "z", "EX", "10", "EX", "abc"), errNotInt},
			{respReq("SET", "r", "z", "EX", "10", "EX", "0"), invalidExpire("set")},
			{respReq("GET", "r"), rBulk("y")},
			// Must fail, writing nothing.
			{respReq("SET", "k", "v", "EX"), errSyntaxReply},
			{respReq("SET", "k", "v", "EX", "0"), invalidExpire("set")},
			{respReq("SET", "k", "v", "EX", "-1"), invalidExpire("set")},
			{respReq("SET", "k", "v", "PX", "0"), invalidExpire("set")},
			{respReq("SET", "k", "v", "EXAT", "0"), invalidExpire("set")},
			{respReq("SET", "k", "v", "PXAT", "-5"), invalidExpire("set")},
			{respReq("SET", "k", "v", "EX", "abc"), errNotInt},
			{respReq("SET", "k", "v", "EX", "1.5"), errNotInt},
			{respReq("SET", "k", "v", "EX", ""), errNotInt},
			{respReq("SET", "k", "v", "EX", "9223372036854775808"), errNotInt},
			{respReq("SET", "k", "v", "EX", "9223372036854776"), invalidExpire("set")}, // overflows as milliseconds
			{respReq("SET", "k", "v", "NX", "XX"), errSyntaxReply},
			{respReq("SET", "k", "v", "XX", "NX"), errSyntaxReply},
			{respReq("SET", "k", "v", "EX", "1", "PX", "1"), errSyntaxReply},
			{respReq("SET", "k", "v", "PXAT", "1", "EXAT", "1"), errSyntaxReply},
			{respReq("SET", "k", "v", "KEEPTTL", "EX", "1"), errSyntaxReply},
			{respReq("SET", "k", "v", "EX", "1", "KEEPTTL"), errSyntaxReply},
			{respReq("SET", "k", "v", "PERSIST"), errSyntaxReply},
			{respReq("SET", "k", "v", "FOO"), errSyntaxReply},
			{respReq("SET", "k", "v", "NXX"), errSyntaxReply},
			{respReq("SET", "k"), wrongArgs("set")},
			// A relative time that overflows from now.
			{respReq("SET", "k", "v", "PX", itoa(fromNowMax+1)), invalidExpire("set")},
			{respReq("SET", "k", "v", "EX", itoa(fromNowMax/1000+1)), invalidExpire("set")},
			{respReq("EXISTS", "k"), rInt(0)},
			{respReq("SET", "k", "v", "PX", itoa(fromNowMax)), rOK},
			{respReq("PTTL", "k"), rInt(int(fromNowMax))},
			{respReq("SET", "k", "v", "PXAT", "9223372036854775807"), rOK},
			{respReq("PTTL", "k"), rInt(int(fromNowMax))},
		}},
		{"SETEX PSETEX SETNX", []respStep{
			{respReq("SETEX", "k", "10", "v"), rOK},
			{respReq("TTL", "k"), rInt(10)},
			{respReq("GET", "k"), rBulk("v")},
			{respReq("PSETEX", "k", "1500", "w"), rOK},
			{respReq("PTTL", "k"), rInt(1500)},
			{respReq("GET", "k"), rBulk("w")},
			{respReq("SETEX", "k", "0", "v"), invalidExpire("setex")},
			{respReq("SETEX", "k", "-1", "v"), invalidExpire("setex")},
			{respReq("SETEX", "k", "9223372036854776", "v"), invalidExpire("setex")},
			{respReq("PSETEX", "k", "0", "v"), invalidExpire("psetex")},
			{respReq("PSETEX", "k", itoa(fromNowMax+1), "v"), invalidExpire("psetex")},
			{respReq("SETEX", "k", itoa(fromNowMax/1000+1), "v"), invalidExpire("setex")},
			{respReq("SETEX", "k", "abc", "v"), errNotInt},
			{respReq("PSETEX", "k", "1e3", "v"), errNotInt},
			{respReq("SETEX", "k", "10"), wrongArgs("setex")},
			{respReq("PSETEX", "k", "10", "v", "x"), wrongArgs("psetex")},
			{respReq("GET", "k"), rBulk("w")},
			// SETNX sets a key that has no value, and drops no expiry.
			{respReq("SETNX", "k", "x"), rInt(0)},
			{respReq("PTTL", "k"), rInt(1500)},
			{respReq("SETNX", "n", "x"), rInt(1)},
			{respReq("SETNX", "n", "y"), rInt(0)},
			{respReq("GET", "n"), rBulk("x")},
			{respReq("TTL", "n"), rInt(-1)},
			{respReq("SET", "n", "y", "PXAT", "1"), rOK},
			{respReq("SETNX", "n", "z"), rInt(1)},
			{respReq("GET", "n"), rBulk("z")},
			{respReq("SETNX", "n"), wrongArgs("setnx")},
		}},
		{"GETEX", []respStep{
			{respReq("GETEX", "nope"), rNil},
			{respReq("GETEX", "nope", "EX", "10"), rNil},
			{respReq("SET", "k", "v", "EX", "50"), rOK},
			{respReq("GETEX", "k"), rBulk("v")},
			{respReq("TTL", "k"), rInt(50)},
			{respReq("GETEX", "k", "EX", "100"), rBulk("v")},
			{respReq("TTL", "k"), rInt(100)},
			{respReq("GETEX", "k", "px", "1500"), rBulk("v")},
			{respReq("PTTL", "k"), rInt(1500)},
			{respReq("GETEX", "k", "EXAT", atSec(10)), rBulk("v")},
			{respReq("TTL", "k"), rInt(10)},
			{respReq("GETEX", "k", "PXAT", atMs(7)), rBulk("v")},
			{respReq("PTTL", "k"), rInt(7)},
			{respReq("GETEX", "k", "PERSIST"), rBulk("v")},
			{respReq("TTL", "k"), rInt(-1)},
			{respReq("GETEX", "k", "PERSIST"), rBulk("v")},
			{respReq("TTL", "k"), rInt(-1)},
			// As in Redis, an option may be repeated, the last expiry
			// counts, and its number is read only if the key is there.
			{respReq("GETEX", "k", "EX", "10", "ex", "20"), rBulk("v")},
			{respReq("TTL", "k"), rInt(20)},
			{respReq("GETEX", "k", "PERSIST", "PERSIST"), rBulk("v")},
			{respReq("TTL", "k"), rInt(-1)},
			{respReq("GETEX", "k", "EX", "abc", "FOO"), errSyntaxReply},
			{respReq("GETEX", "k", "EX", "abc", "EX", "30"), rBulk("v")},
			{respReq("TTL", "k"), rInt(30)},
			{respReq("GETEX", "k", "PERSIST"), rBulk("v")},
			{respReq("GETEX", "nope", "EX", "abc"), rNil},
			{respReq("GETEX", "nope", "EX", "0"), rNil},
			{respReq("GETEX", "nope", "PXAT", "-1"), rNil},
			{respReq("GETEX", "nope", "EX", "10", "FOO"), errSyntaxReply},
			// A time at or before now deletes the key, after reading it.
			{respReq("GETEX", "k", "PXAT", atMs(0)), rBulk("v")},
			{respReq("GET", "k"), rNil},
			{respReq("SET", "k", "v"), rOK},
			{respReq("GETEX", "k", "EXAT", "1"), rBulk("v")},
			{respReq("EXISTS", "k"), rInt(0)},
			// Must fail, changing nothing.
			{respReq("SET", "k", "v", "EX", "60"), rOK},
			{respReq("GETEX", "k", "EX", "0"), invalidExpire("getex")},
			{respReq("GETEX", "k", "PXAT", "-1"), invalidExpire("getex")},
			{respReq("GETEX", "k", "PX", "9223372036854775807"), invalidExpire("getex")},
			{respReq("GETEX", "k", "EX", itoa(fromNowMax/1000+1)), invalidExpire("getex")},
			{respReq("GETEX", "k", "EX", "abc"), errNotInt},
			{respReq("GETEX", "k", "EX"), errSyntaxReply},
			{respReq("GETEX", "k", "PERSIST", "EX", "10"), errSyntaxReply},
			{respReq("GETEX", "k", "EX", "10", "PERSIST"), errSyntaxReply},
			{respReq("GETEX", "k", "EX", "10", "PX", "10"), errSyntaxReply},
			{respReq("GETEX", "k", "KEEPTTL"), errSyntaxReply},
			{respReq("GETEX", "k", "NX"), errSyntaxReply},
			{respReq("GETEX", "k", "GET"), errSyntaxReply},
			{respReq("GETEX", "k", "FOO"), errSyntaxReply},
			{respReq("GETEX"), wrongArgs("getex")},
			{respReq("TTL", "k"), rInt(60)},
		}},
		{"EXPIRE TTL PERSIST on plain keys", []respStep{
			{respReq("EXPIRE", "k", "10"), rInt(0)},
			{respReq("TTL", "k"), rInt(-2)},
			{respReq("PTTL", "k"), rInt(-2)},
			{respReq("PERSIST", "k"), rInt(0)},
			{respReq("SET", "k", "v"), rOK},
			{respReq("TTL", "k"), rInt(-1)},
			{respReq("PTTL", "k"), rInt(-1)},
			{respReq("PERSIST", "k"), rInt(0)},
			{respReq("EXPIRE", "k", "100"), rInt(1)},
			{respReq("TTL", "k"), rInt(100)},
			{respReq("PEXPIRE", "k", "1500"), rInt(1)},
			{respReq("PTTL", "k"), rInt(1500)},
			{respReq("TTL", "k"), rInt(2)},
			{respReq("EXPIREAT", "k", atSec(30)), rInt(1)},
			{respReq("TTL", "k"), rInt(30)},
			{respReq("PEXPIREAT", "k", atMs(10)), rInt(1)},
			{respReq("PTTL", "k"), rInt(10)},
			{respReq("TTL", "k"), rInt(0)},
			{respReq("PERSIST", "k"), rInt(1)},
			{respReq("TTL", "k"), rInt(-1)},
			// NX: only without an expiry; XX: only with one.
			{respReq("EXPIRE", "k", "20", "XX"), rInt(0)},
			{respReq("EXPIRE", "k", "20", "NX"), rInt(1)},
			{respReq("EXPIRE", "k", "30", "nx"), rInt(0)},
			{respReq("EXPIRE", "k", "30", "XX"), rInt(1)},
			{respReq("TTL", "k"), rInt(30)},
			// GT and LT: no expiry counts as forever.
			{respReq("EXPIRE", "k", "10", "GT"), rInt(0)},
			{respReq("EXPIRE", "k", "40", "GT"), rInt(1)},
			{respReq("EXPIRE", "k", "50", "LT"), rInt(0)},
			{respReq("EXPIRE", "k", "5", "LT", "XX"), rInt(1)},
			{respReq("TTL", "k"), rInt(5)},
			{respReq("PERSIST", "k"), rInt(1)},
			{respReq("EXPIRE", "k", "5", "GT"), rInt(0)},
			{respReq("EXPIRE", "k", "5", "LT"), rInt(1)},
			{respReq("EXPIRE", "k", "6", "NX", "NX"), rInt(0)}, // an option may repeat
			// A time not in the future deletes, once the options allow it.
			{respReq("EXPIRE", "k", "0", "NX"), rInt(0)},
			{respReq("EXPIRE", "k", "0"), rInt(1)},
			{respReq("EXISTS", "k"), rInt(0)},
			{respReq("SET", "k", "v"), rOK},
			{respReq("EXPIRE", "k", "-1", "GT"), rInt(0)},
			{respReq("EXPIRE", "k", "-1"), rInt(1)},
			{respReq("GET", "k"), rNil},
			{respReq("SET", "k", "v"), rOK},
			{respReq("PEXPIREAT", "k", atMs(0)), rInt(1)},
			{respReq("GET", "k"), rNil},
			{respReq("SET", "k", "v"), rOK},
			{respReq("EXPIREAT", "k", "1"), rInt(1)},
			{respReq("SET", "k", "v"), rOK},
			{respReq("PEXPIRE", "k", "-9223372036854775808"), rInt(1)},
			{respReq("TTL", "k"), rInt(-2)},
			// Must fail, changing nothing.
			{respReq("SET", "k", "v"), rOK},
			{respReq("EXPIRE", "k", "abc"), errNotInt},
			// Numbers are read as Redis reads them: no sign but a minus,
			// no leading zero.
			{respReq("EXPIRE", "k", "010"), errNotInt},
			{respReq("EXPIRE", "k", "+10"), errNotInt},
			{respReq("EXPIRE", "k", "-0"), errNotInt},
			{respReq("EXPIRE", "k", "00"), errNotInt},
			{respReq("EXPIRE", "k", "-"), errNotInt},
			{respReq("EXPIRE", "k", " 10"), errNotInt},
			{respReq("SET", "k", "v", "EX", "010"), errNotInt},
			{respReq("SETEX", "k", "+10", "v"), errNotInt},
			{respReq("PEXPIRE", "k", "-9223372036854775809"), errNotInt},
			{respReq("EXPIRE", "k", "9223372036854775808"), errNotInt},
			{respReq("EXPIRE", "k", "9223372036854776"), invalidExpire("expire")},
			{respReq("EXPIRE", "k", "-9223372036854776"), invalidExpire("expire")},
			{respReq("EXPIREAT", "k", "9223372036854776"), invalidExpire("expireat")},
			{respReq("PEXPIRE", "k", itoa(fromNowMax+1)), invalidExpire("pexpire")},
			{respReq("EXPIRE", "k", itoa(fromNowMax/1000+1)), invalidExpire("expire")},
			{respReq("EXPIRE", "k", "10", "FOO"), rErr("ERR Unsupported option FOO")},
			{respReq("EXPIRE", "k", "10", "NX", "XX"), rErr("ERR NX and XX, GT or LT options at the same time are not compatible")},
			{respReq("EXPIRE", "k", "10", "GT", "NX"), rErr("ERR NX and XX, GT or LT options at the same time are not compatible")},
			{respReq("PEXPIRE", "k", "10", "LT", "NX"), rErr("ERR NX and XX, GT or LT options at the same time are not compatible")},
			{respReq("EXPIRE", "k", "10", "GT", "LT"), rErr("ERR GT and LT options at the same time are not compatible")},
			// As in Redis, the options are read before the number, and the
			// line breaks that end an error are trimmed.
			{respReq("EXPIRE", "k", "abc", "FOO"), rErr("ERR Unsupported option FOO")},
			{respReq("EXPIRE", "k", "abc", "NX", "XX"), rErr("ERR NX and XX, GT or LT options at the same time are not compatible")},
			{respReq("PEXPIREAT", "k", "abc", "lt", "gt"), rErr("ERR GT and LT options at the same time are not compatible")},
			{respReq("EXPIRE", "k", "10", "x\r\n"), rErr("ERR Unsupported option x")},
			{respReq("EXPIRE", "k", "10", "\r\nx\n"), rErr("ERR Unsupported option   x")},
			{respReq("EXPIRE", "k", "10", "\n"), rErr("ERR Unsupported option ")},
			{respReq("EXPIRE", "k"), wrongArgs("expire")},
			{respReq("PEXPIREAT", "k"), wrongArgs("pexpireat")},
			{respReq("TTL"), wrongArgs("ttl")},
			{respReq("TTL", "k", "k"), wrongArgs("ttl")},
			{respReq("PTTL"), wrongArgs("pttl")},
			{respReq("PERSIST"), wrongArgs("persist")},
			{respReq("PERSIST", "k", "k"), wrongArgs("persist")},
			{respReq("TTL", "k"), rInt(-1)},
			{respReq("PEXPIRE", "k", itoa(fromNowMax)), rInt(1)},
			{respReq("PTTL", "k"), rInt(int(fromNowMax))},
			{respReq("EXPIRE", "k", itoa(fromNowMax/1000)), rInt(1)},
			{respReq("TTL", "k"), rInt(int(fromNowMax / 1000))},
			{respReq("PEXPIREAT", "k", "9223372036854775807"), rInt(1)},
			{respReq("PTTL", "k"), rInt(int(fromNowMax))},
		}},
		{"EXPIRE TTL PERSIST on buckets", []respStep{
			{respReq("HSET", "h", "f", "v"), rInt(1)},
			{respReq("TTL", "h"), rInt(-1)},
			{respReq("EXPIRE", "h", "100"), rInt(1)},
			{respReq("TTL", "h"), rInt(100)},
			{respReq("PEXPIRE", "h", "1500", "GT"), rInt(0)},
			{respReq("PEXPIRE", "h", "1500", "LT"), rInt(1)},
			{respReq("PTTL", "h"), rInt(1500)},
			{respReq("HGET", "h", "f"), rBulk("v")},
			{respReq("PERSIST", "h"), rInt(1)},
			{respReq("TTL", "h"), rInt(-1)},
			{respReq("EXPIREAT", "h", atSec(20)), rInt(1)},
			{respReq("TTL", "h"), rInt(20)},
			{respReq("EXPIRE", "h", "0"), rInt(1)},
			{respReq("HGET", "h", "f"), rNil},
			{respReq("HLEN", "h"), rInt(0)},
			{respReq("EXISTS", "h"), rInt(0)},
			{respReq("TTL", "h"), rInt(-2)},
			{respReq("EXPIRE", "h", "10"), rInt(0)},
			// A bucket created anew has no expiry.
			{respReq("HSET", "h", "f", "w"), rInt(1)},
			{respReq("TTL", "h"), rInt(-1)},
			// A name that is a plain key and a bucket: EXPIRE and PERSIST
			// act on both, TTL answers the plain key's if there is one.
			{respReq("SET", "h", "plain", "EX", "50"), rOK},
			{respReq("TTL", "h"), rInt(50)},
			{respReq("EXPIRE", "h", "10", "NX"), rInt(1)}, // the bucket's
			{respReq("TTL", "h"), rInt(50)},
			{respReq("GETEX", "h", "PXAT", "1"), rBulk("plain")}, // deletes the plain key only
			{respReq("TTL", "h"), rInt(10)},
			{respReq("SET", "h", "plain", "PX", "2500"), rOK},
			{respReq("PERSIST", "h"), rInt(1)},
			{respReq("TTL", "h"), rInt(-1)},
			{respReq("DEL", "h"), rInt(2)},
			{respReq("TTL", "h"), rInt(-2)},
			{respReq("PERSIST", "h"), rInt(0)},
			// A reserved name is a plain key only.
			{respReq("SET", "\x00x", "v"), rOK},
			{respReq("EXPIRE", "\x00x", "9"), rInt(1)},
			{respReq("TTL", "\x00x"), rInt(9)},
			{respReq("PERSIST", "\x00x"), rInt(1)},
			{respReq("EXPIRE", "", "9"), rInt(0)},
		}},
		{"HEXPIRE HTTL HPERSIST", []respStep{
			{respReq("HSET", "h", "a", "1", "b", "2", "c", "3"), rInt(3)},
			{respReq("HEXPIRE", "h", "100", "FIELDS", "2", "a", "nope"), rInts(1, -2)},
			{respReq("HTTL", "h", "FIELDS", "3", "a", "b", "nope"), rInts(100, -1, -2)},
			{respReq("HPTTL", "h", "FIELDS", "1", "a"), rInts(100000)},
			{respReq("HEXPIRE", "nowhere", "10", "FIELDS", "2", "a", "b"), rInts(-2, -2)},
			{respReq("HTTL", "nowhere", "FIELDS", "1", "a"), rInts(-2)},
			{respReq("HPTTL", "nowhere", "FIELDS", "1", "a"), rInts(-2)},
			{respReq("HPERSIST", "nowhere", "FIELDS", "1", "a"), rInts(-2)},
			// NX, XX, GT and LT, field by field.
			{respReq("HEXPIRE", "h", "50", "NX", "FIELDS", "2", "a", "b"), rInts(0, 1)},
			{respReq("HEXPIRE", "h", "60", "XX", "FIELDS", "2", "a", "c"), rInts(1, 0)},
			{respReq("HEXPIRE", "h", "55", "gt", "FIELDS", "3", "a", "b", "c"), rInts(0, 1, 0)},
			{respReq("HEXPIRE", "h", "52", "LT", "fields", "3", "a", "b", "c"), rInts(1, 1, 1)},
			{respReq("HTTL", "h", "FIELDS", "3", "a", "b", "c"), rInts(52, 52, 52)},
			{respReq("HPEXPIRE", "h", "1500", "FIELDS", "1", "a"), rInts(1)},
			{respReq("HPTTL", "h", "FIELDS", "1", "a"), rInts(1500)},
			// HTTL rounds up (TTL rounds to the nearest second).
			{respReq("HTTL", "h", "FIELDS", "1", "a"), rInts(2)},
			{respReq("HPEXPIRE", "h", "1001", "FIELDS", "1", "a"), rInts(1)},
			{respReq("HTTL", "h", "FIELDS", "1", "a"), rInts(2)},
			{respReq("HPEXPIRE", "h", "1", "FIELDS", "1", "a"), rInts(1)},
			{respReq("HTTL", "h", "FIELDS", "1", "a"), rInts(1)},
			{respReq("HPEXPIRE", "h", "2000", "FIELDS", "1", "a"), rInts(1)},
			{respReq("HTTL", "h", "FIELDS", "1", "a"), rInts(2)},
			{respReq("HPEXPIRE", "h", "1500", "FIELDS", "1", "a"), rInts(1)},
			{respReq("HEXPIREAT", "h", atSec(20), "FIELDS", "1", "b"), rInts(1)},
			{respReq("HTTL", "h", "FIELDS", "1", "b"), rInts(20)},
			{respReq("HPEXPIREAT", "h", atMs(7), "FIELDS", "1", "c"), rInts(1)},
			{respReq("HPTTL", "h", "FIELDS", "1", "c"), rInts(7)},
			{respReq("HPERSIST", "h", "FIELDS", "3", "a", "nope", "c"), rInts(1, -2, 1)},
			{respReq("HPERSIST", "h", "FIELDS", "2", "a", "c"), rInts(-1, -1)},
			{respReq("HTTL", "h", "FIELDS", "3", "a", "b", "c"), rInts(-1, 20, -1)},
			// HSET drops a field's expiry.
			{respReq("HSET", "h", "b", "22"), rInt(0)},
			{respReq("HTTL", "h", "FIELDS", "1", "b"), rInts(-1)},
			// A time not in the future deletes the field, once the
			// condition allows it.
			{respReq("HEXPIRE", "h", "0", "GT", "FIELDS", "1", "a"), rInts(0)},
			{respReq("HEXPIRE", "h", "0", "FIELDS", "2", "a", "nope"), rInts(2, -2)},
			{respReq("HEXPIREAT", "h", "1", "FIELDS", "1", "b"), rInts(2)},
			{respReq("HPEXPIREAT", "h", atMs(0), "FIELDS", "1", "c"), rInts(2)},
			{respReq("HGETALL", "h"), "*0\r\n"},
			{respReq("HTTL", "h", "FIELDS", "1", "a"), rInts(-2)},
			// Unlike Redis, which deletes a hash whose last field goes,
			// D-Boutique keeps the empty bucket, as after HDEL.
			{respReq("EXISTS", "h"), rInt(1)},
			// An expired field is gone for every command.
			{respReq("HSET", "h", "a", "1", "b", "2"), rInt(2)},
			{respReq("HEXPIRE", "h", "0", "FIELDS", "1", "a"), rInts(2)},
			{respReq("HGET", "h", "a"), rNil},
			{respReq("HEXISTS", "h", "a"), rInt(0)},
			{respReq("HLEN", "h"), rInt(1)},
			{respReq("HKEYS", "h"), rBulks("b")},
			{respReq("HSET", "h", "a", "again"), rInt(1)},
			// Must fail, changing nothing.
			{respReq("HEXPIRE", "h", "abc", "FIELDS", "1", "a"), errNotInt},
			{respReq("HEXPIRE", "h", "10", "NX", "XX", "FIELDS", "1", "a"), rErr("ERR Mandatory argument FIELDS is missing or not at the right position")},
			// As Redis 7.4: the time is read first; the condition can only
			// be the fourth argument; a key of a bucket expires at the
			// latest at 2^46-1 ms.
			{respReq("HEXPIRE", "h", "10", "FIELD", "1", "a"), rErr("ERR Mandatory argument FIELDS is missing or not at the right position")},
			{respReq("HEXPIRE", "h", "10", "FOO", "FIELDS", "1", "a"), rErr("ERR Mandatory argument FIELDS is missing or not at the right position")},
			{respReq("HEXPIRE", "h", "10", "FIELDS", "1", "NX", "a"), rErr("ERR The `numfields` parameter must match the number of arguments")},
			{respReq("HEXPIRE", "h", "-1", "FIELDS", "1", "a"), rErr("ERR invalid expire time, must be >= 0")},
			{respReq("HPEXPIREAT", "h", "-5", "FIELDS", "1", "a"), rErr("ERR invalid expire time, must be >= 0")},
			{respReq("HEXPIRE", "h", "-1", "FOO", "1", "a"), rErr("ERR invalid expire time, must be >= 0")},
			{respReq("HEXPIRE", "h", "abc", "FOO", "1", "a"), errNotInt},
			{respReq("HEXPIREAT", "h", "70368744178", "FIELDS", "1", "a"), invalidExpire("hexpireat")},
			{respReq("HPEXPIREAT", "h", "70368744177664", "FIELDS", "1", "a"), invalidExpire("hpexpireat")},
			{respReq("HEXPIRE", "h", "9223372036854775807", "FIELDS", "1", "a"), invalidExpire("hexpire")},
			{respReq("HEXPIRE", "h", itoa((1<<46-1-nowMs)/1000+1), "FIELDS", "1", "a"), invalidExpire("hexpire")},
			{respReq("HPEXPIRE", "h", itoa(1<<46-1-nowMs+1), "FIELDS", "1", "a"), invalidExpire("hpexpire")},
			{respReq("HEXPIRE", "h", "10", "FIELDS", "0", "a"), rErr("ERR Parameter `numFields` should be greater than 0")},
			{respReq("HEXPIRE", "h", "10", "FIELDS", "-1", "a"), rErr("ERR Parameter `numFields` should be greater than 0")},
			{respReq("HEXPIRE", "h", "10", "FIELDS", "x", "a"), rErr("ERR Parameter `numFields` should be greater than 0")},
			{respReq("HEXPIRE", "h", "10", "FIELDS", "01", "a"), rErr("ERR Parameter `numFields` should be greater than 0")},
			{respReq("HEXPIRE", "h", "+10", "FIELDS", "1", "a"), errNotInt},
			{respReq("HEXPIRE", "h", "10", "FIELDS", "2", "a"), rErr("ERR The `numfields` parameter must match the number of arguments")},
			{respReq("HEXPIRE", "h", "10", "NX", "FIELDS", "1", "a", "b"), rErr("ERR The `numfields` parameter must match the number of arguments")},
			{respReq("HTTL", "h", "FIELD", "1", "a"), rErr("ERR Mandatory argument FIELDS is missing or not at the right position")},
			{respReq("HPERSIST", "h", "FIELDS", "2", "a"), rErr("ERR The `numfields` parameter must match the number of arguments")},
			// Redis 7.4 words a bad count differently for HTTL and
			// HPERSIST than for HEXPIRE.
			{respReq("HTTL", "h", "FIELDS", "0", "a"), rErr("ERR Number of fields must be a positive integer")},
			{respReq("HPTTL", "h", "FIELDS", "x", "a"), rErr("ERR Number of fields must be a positive integer")},
			{respReq("HPERSIST", "h", "FIELDS", "-1", "a"), rErr("ERR Number of fields must be a positive integer")},
			{respReq("HTTL", "nowhere", "FIELDS", "0", "a"), rErr("ERR Number of fields must be a positive integer")},
			{respReq("HEXPIRE", "h", "10", "FIELDS", "1"), wrongArgs("hexpire")},
			{respReq("HPEXPIREAT", "h", "10"), wrongArgs("hpexpireat")},
			{respReq("HTTL", "h", "FIELDS", "1"), wrongArgs("httl")},
			{respReq("HPTTL", "h"), wrongArgs("hpttl")},
			{respReq("HPERSIST", "h", "FIELDS", "1"), wrongArgs("hpersist")},
			{respReq("HEXPIRE", "\x00kv:1", "10", "FIELDS", "1", "a"), reservedReply},
			{respReq("HTTL", "\x00kv:1", "FIELDS", "1", "a"), reservedReply},
			{respReq("HEXPIRE", "", "10", "FIELDS", "1", "a"), rInts(-2)},
			{respReq("HTTL", "", "FIELDS", "1", "a"), rInts(-2)},
			{respReq("HPERSIST", "", "FIELDS", "1", "a"), rInts(-2)},
			{respReq("HGETALL", "h"), rBulks("a", "again", "b", "2")},
			{respReq("HTTL", "h", "FIELDS", "2", "a", "b"), rInts(-1, -1)},
			{respReq("HPEXPIREAT", "h", "70368744177663", "FIELDS", "1", "a"), rInts(1)},
			{respReq("HPTTL", "h", "FIELDS", "1", "a"), rInts(int(1<<46 - 1 - nowMs))},
			{respReq("HPEXPIRE", "h", itoa(1<<46-1-nowMs), "FIELDS", "1", "b"), rInts(1)},
			{respReq("HPTTL", "h", "FIELDS", "1", "b"), rInts(int(1<<46 - 1 - nowMs))},
		}},
		{"MGET MSET UNLINK TOUCH", []respStep{
			{respReq("MSET", "a", "1", "b", "2", "c", "3"), rOK},
			{respReq("MGET", "a", "nope", "c", "b", "a"), rArr(rBulk("1"), rNil, rBulk("3"), rBulk("2"), rBulk("1"))},
			{respReq("MSET", "a", "one", "a", "uno"), rOK},
			{respReq("GET", "a"), rBulk("uno")},
			// MSET drops expiries; MGET does not read buckets.
			{respReq("SET", "b", "2", "EX", "100"), rOK},
			{respReq("MSET", "b", "two"), rOK},
			{respReq("TTL", "b"), rInt(-1)},
			{respReq("HSET", "h", "f", "v"), rInt(1)},
			{respReq("MGET", "h", "b"), rArr(rNil, rBulk("two"))},
			{respReq("SET", "c", "3", "PXAT", "1"), rOK},
			{respReq("MGET", "c"), rArr(rNil)},
			// TOUCH counts as EXISTS, a name twice twice; UNLINK deletes
			// as DEL.
			{respReq("TOUCH", "a", "b", "nope", "a", "h"), rInt(4)},
			{respReq("UNLINK", "a", "nope", "a", "h"), rInt(2)},
			{respReq("TOUCH", "a", "h", "b"), rInt(1)},
			{respReq("MSET", "a"), wrongArgs("mset")},
			{respReq("MSET", "a", "1", "b"), wrongArgs("mset")},
			{respReq("MGET"), wrongArgs("mget")},
			{respReq("TOUCH"), wrongArgs("touch")},
			{respReq("UNLINK"), wrongArgs("unlink")},
			{respReq("MGET", "a", "b"), rArr(rNil, rBulk("two"))},
		}},
	}
}

// TestRESPExpiryCommands runs each family's table on a fresh server whose
// store's clock is frozen.
func TestRESPExpiryCommands(t *testing.T) {
	for _, tt := range respExpiryTests() {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, Config{Executor: frozenStore()})
			runRespSteps(t, dialRESP(t, s.addr), tt.steps)
		})
	}
}
