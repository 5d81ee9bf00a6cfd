package textproto

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/dboutique/dboutique/node/store"
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

// respModel is the store as RESP commands see it.
type respModel struct {
	plain   map[string]string
	buckets map[string]map[string]string
}

func newRespModel() *respModel {
	return &respModel{plain: map[string]string{}, buckets: map[string]map[string]string{}}
}

// modelArity is the arity of each command, as in Redis's COMMAND.
func modelArity() map[string]int {
	return map[string]int{
		"PING": -1, "ECHO": 2, "QUIT": -1, "SELECT": 2, "AUTH": -2, "HELLO": -1, "INFO": -1,
		"CLIENT": -2, "CONFIG": -2, "COMMAND": -1,
		"HSET": -4, "HMSET": -4, "HGET": 3, "HMGET": -3, "HDEL": -3, "HEXISTS": 3, "HSTRLEN": 3,
		"HLEN": 2, "HKEYS": 2, "HVALS": 2, "HGETALL": 2,
		"SET": 3, "GET": 2, "DEL": -2, "EXISTS": -2,
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
				delete(b, k)
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
	case "SET":
		m.plain[args[1]] = args[2]
		return exact(rOK), false
	case "GET":
		if v, ok := m.plain[args[1]]; ok {
			return exact(rBulk(v)), false
		}
		return exact(rNil), false
	case "DEL", "EXISTS":
		n := 0
		for _, a := range args[1:] {
			if _, ok := m.plain[a]; ok {
				n++
				if name == "DEL" {
					delete(m.plain, a)
				}
			}
			if a == "" || a[0] == 0 {
				continue
			}
			if _, ok := m.buckets[a]; ok {
				n++
				if name == "DEL" {
					delete(m.buckets, a)
				}
			}
		}
		return exact(rInt(n)), false
	}
	panic("respModel: command without a model: " + name)
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
	m := newRespModel()
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
	return []string{
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
		var exec Executor = store.NewStore()
		if len(cuts)%2 == 1 {
			exec = &batchStore{Store: store.NewStore()}
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
