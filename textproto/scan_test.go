package textproto

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/ring"
)

// ordered returns names in listing order: by hash, then by bytes.
func ordered(names ...string) []string {
	out := slices.Clone(names)
	slices.SortFunc(out, func(a, b string) int {
		return cmp.Or(cmp.Compare(store.NameHash(a), store.NameHash(b)), strings.Compare(a, b))
	})
	return out
}

// cursorAfter is the cursor that continues after name.
func cursorAfter(name string) string { return strconv.FormatUint(store.NameHash(name)+1, 10) }

// scanReply is a SCAN or HSCAN reply.
func scanReply(cursor string, elems ...string) string { return rArr(rBulk(cursor), rBulks(elems...)) }

// TestPlainBucketsAreListed: the buckets that hold plain keys are the ones
// the store lists plain keys from.
func TestPlainBucketsAreListed(t *testing.T) {
	if ring.ReservedPrefix+"kv:" != store.PlainBucketPrefix {
		t.Fatalf("store.PlainBucketPrefix %q is not ring.ReservedPrefix + \"kv:\"", store.PlainBucketPrefix)
	}
	for _, b := range plainBuckets() {
		if !strings.HasPrefix(b, store.PlainBucketPrefix) {
			t.Fatalf("plain bucket %q does not begin with store.PlainBucketPrefix", b)
		}
	}
}

// TestRESPListing: SCAN, KEYS, DBSIZE, RANDOMKEY and HSCAN on one node,
// byte for byte, as Redis 7 answers them where it can.
func TestRESPListing(t *testing.T) {
	s := startServer(t, Config{})
	c := dialRESP(t, s.addr)
	runRespSteps(t, c, []respStep{
		{respReq("DBSIZE"), rInt(0)},
		{respReq("RANDOMKEY"), rNil},
		{respReq("SCAN", "0"), scanReply("0")},
		{respReq("KEYS", "*"), "*0\r\n"},
		{respReq("HSET", "fruit", "apple", "1", "pear", "2", "plum", "3"), rInt(3)},
		{respReq("HSET", "veg", "leek", "1"), rInt(1)},
		{respReq("SET", "k1", "v"), rOK},
		{respReq("SET", "k2", "v"), rOK},
		{respReq("SET", "fruit", "v"), rOK}, // a name of both types
	})
	all := ordered("fruit", "veg", "k1", "k2")
	runRespSteps(t, c, []respStep{
		// Every name once, in the order of hashes.
		{respReq("SCAN", "0"), scanReply("0", all...)},
		{respReq("scan", "0", "count", "100"), scanReply("0", all...)},
		{respReq("SCAN", "0", "COUNT", "99999999999"), scanReply("0", all...)}, // taken as 10000
		// Pages of COUNT names; the cursor is one past the last hash.
		{respReq("SCAN", "0", "COUNT", "1"), scanReply(cursorAfter(all[0]), all[0])},
		{respReq("SCAN", cursorAfter(all[0]), "COUNT", "2"), scanReply(cursorAfter(all[2]), all[1], all[2])},
		{respReq("SCAN", cursorAfter(all[2]), "COUNT", "2"), scanReply("0", all[3])},
		{respReq("SCAN", strconv.FormatUint(store.NameHash(all[2]), 10), "COUNT", "1"), scanReply(cursorAfter(all[2]), all[2])},
		{respReq("SCAN", "18446744073709551615"), scanReply("0")},
		// Filters.
		{respReq("SCAN", "0", "TYPE", "hash"), scanReply("0", ordered("fruit", "veg")...)},
		{respReq("SCAN", "0", "TYPE", "STRING"), scanReply("0", ordered("fruit", "k1", "k2")...)},
		{respReq("SCAN", "0", "TYPE", "list"), scanReply("0")},
		{respReq("SCAN", "0", "TYPE", "nonsense"), scanReply("0")}, // as Redis 7: matches nothing
		{respReq("SCAN", "0", "MATCH", "k?"), scanReply("0", ordered("k1", "k2")...)},
		{respReq("SCAN", "0", "MATCH", "*"), scanReply("0", all...)},
		{respReq("SCAN", "0", "MATCH", "f*", "TYPE", "string", "COUNT", "5"), scanReply("0", "fruit")},
		{respReq("SCAN", "0", "MATCH", ""), scanReply("0")}, // only the empty name matches
		{respReq("SET", "", "v"), rOK},
		{respReq("SCAN", "0", "MATCH", ""), scanReply("0", "")},
		{respReq("KEYS", ""), rBulks("")},
		{respReq("DEL", ""), rInt(1)},
		// Redis's errors.
		{respReq("SCAN"), wrongArgs("scan")},
		{respReq("SCAN", "x"), rErr("ERR invalid cursor")},
		{respReq("SCAN", "-1"), rErr("ERR invalid cursor")},
		{respReq("SCAN", "18446744073709551616"), rErr("ERR invalid cursor")},
		{respReq("SCAN", "0", "COUNT", "0"), rErr("ERR syntax error")},
		{respReq("SCAN", "0", "COUNT", "-5"), rErr("ERR syntax error")},
		{respReq("SCAN", "0", "COUNT", "x"), rErr("ERR value is not an integer or out of range")},
		{respReq("SCAN", "0", "COUNT"), rErr("ERR syntax error")},
		{respReq("SCAN", "0", "MATCH"), rErr("ERR syntax error")},
		{respReq("SCAN", "0", "FOO", "1"), rErr("ERR syntax error")},
		{respReq("SCAN", "0", "NOVALUES"), rErr("ERR NOVALUES option can only be used in HSCAN")},

		{respReq("KEYS", "*"), rBulks(all...)},
		{respReq("KEYS", "[fv]*"), rBulks(ordered("fruit", "veg")...)},
		{respReq("KEYS", "nothing"), "*0\r\n"},
		{respReq("KEYS"), wrongArgs("keys")},
		{respReq("KEYS", "a", "b"), wrongArgs("keys")},
		// Both types of fruit count, as EXISTS counts them.
		{respReq("DBSIZE"), rInt(5)},
		{respReq("DBSIZE", "x"), wrongArgs("dbsize")},
		{respReq("RANDOMKEY", "x"), wrongArgs("randomkey")},
	})
	for range 20 {
		c.Send(respReq("RANDOMKEY"))
		if got := c.Reply(); !slices.ContainsFunc(all, func(n string) bool { return rBulk(n) == got }) {
			t.Fatalf("RANDOMKEY = %q, not a name", got)
		}
	}

	keys := ordered("apple", "pear", "plum")
	withValues := func(ks ...string) []string {
		v := map[string]string{"apple": "1", "pear": "2", "plum": "3"}
		var out []string
		for _, k := range ks {
			out = append(out, k, v[k])
		}
		return out
	}
	runRespSteps(t, c, []respStep{
		{respReq("HSCAN", "fruit", "0"), scanReply("0", withValues(keys...)...)},
		{respReq("HSCAN", "fruit", "0", "NOVALUES"), scanReply("0", keys...)},
		{respReq("HSCAN", "fruit", "0", "COUNT", "2"), scanReply(cursorAfter(keys[1]), withValues(keys[:2]...)...)},
		{respReq("HSCAN", "fruit", cursorAfter(keys[1]), "COUNT", "2"), scanReply("0", withValues(keys[2])...)},
		{respReq("HSCAN", "fruit", "0", "MATCH", "p*", "novalues"), scanReply("0", ordered("pear", "plum")...)},
		{respReq("HSCAN", "nowhere", "0"), scanReply("0")},
		{respReq("HSCAN", "", "0"), scanReply("0")},
		{respReq("HSCAN", "\x00kv:1", "0"), reservedReply},
		{respReq("HSCAN", "fruit"), wrongArgs("hscan")},
		{respReq("HSCAN", "fruit", "x"), rErr("ERR invalid cursor")},
		{respReq("HSCAN", "fruit", "0", "TYPE", "hash"), rErr("ERR syntax error")},
		{respReq("HSCAN", "fruit", "0", "COUNT", "0"), rErr("ERR syntax error")},
	})
}

// TestRESPListingNeedsALister: an Executor that cannot list answers the
// listing commands with an error, and the rest as usual.
func TestRESPListingNeedsALister(t *testing.T) {
	s := startServer(t, Config{Executor: struct{ Executor }{store.NewStore()}})
	c := dialRESP(t, s.addr)
	runRespSteps(t, c, []respStep{
		{respReq("SCAN", "0"), rErr(errNoLister)},
		{respReq("KEYS", "*"), rErr(errNoLister)},
		{respReq("DBSIZE"), rErr(errNoLister)},
		{respReq("RANDOMKEY"), rErr(errNoLister)},
		{respReq("HSCAN", "b", "0"), rErr(errNoLister)},
		{respReq("PING"), rSimple("PONG")},
	})
	tc := dialRESP(t, s.addr)
	runTextSteps(t, tc, []respStep{{"SCAN 0\r\n", "ERROR this server cannot list its buckets\r\n"}})
}

// TestTextScan: the text protocol's SCAN lists bucket names (not plain
// keys) a page at a time: the next cursor, the names, OK; and its usage
// errors.
func TestTextScan(t *testing.T) {
	st := store.NewStore()
	s := startServer(t, Config{Executor: st})
	for _, b := range []string{"fruit", "veg", "nuts", "two words"} {
		if err := st.Create(b); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.Execute(context.Background(), store.Op{Kind: store.KindPutCreate, Bucket: plainBuckets()[0], Key: "plain", Value: "v"}); err != nil {
		t.Fatal(err)
	}
	all := ordered("fruit", "veg", "nuts")
	lines := func(ls ...string) string { return strings.Join(ls, "\r\n") + "\r\n" }
	usage := "ERROR usage: SCAN <cursor> [MATCH <pattern>] [COUNT <n>]\r\n"
	c := dialRESP(t, s.addr) // a text connection: the first byte is not '*'
	runTextSteps(t, c, []respStep{
		{"SCAN 0\r\n", lines(append(append([]string{"0"}, all...), "OK")...)},
		{"scan 0 count 1\r\n", lines(cursorAfter(all[0]), all[0], "OK")},
		{"SCAN " + cursorAfter(all[0]) + " COUNT 5\r\n", lines("0", all[1], all[2], "OK")},
		{"SCAN 0 MATCH [fv]* COUNT 10\r\n", lines(append([]string{"0"}, ordered("fruit", "veg")...)...) + "OK\r\n"},
		{"  SCAN\t0   MATCH n*  \r\n", lines("0", "nuts", "OK")},
		{"SCAN 0 COUNT 1 MATCH nuts\r\n", lines("0", "nuts", "OK")},
		{"SCAN 0 MATCH zzz\r\n", lines("0", "OK")},
		{"SCAN\r\n", usage},
		{"SCAN x\r\n", usage},
		{"SCAN -1\r\n", usage},
		{"SCAN 0 COUNT\r\n", usage},
		{"SCAN 0 COUNT 0\r\n", usage},
		{"SCAN 0 COUNT x\r\n", usage},
		{"SCAN 0 TYPE hash\r\n", usage},
		{"SCAN 0 MATCH a COUNT 1 x\r\n", usage},
		{"SCAN 0 MATCH a COUNT 1 MATCH b\r\n", usage},
		{"PING\r\n", "PONG\r\n"},
	})

	// The client pages through with Scan.
	cl := dialClient(t, s.addr)
	ctx := context.Background()
	var got []string
	var cursor uint64
	for pages := 0; ; pages++ {
		next, names, err := cl.Scan(ctx, cursor, "", 1)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, names...)
		if next == 0 {
			break
		}
		if pages > 10 {
			t.Fatal("the scan did not end")
		}
		cursor = next
	}
	if !slices.Equal(got, all) {
		t.Fatalf("Client.Scan listed %q, want %q", got, all)
	}
	if _, names, err := cl.Scan(ctx, 0, "v*", 0); err != nil || !slices.Equal(names, []string{"veg"}) {
		t.Fatalf("Client.Scan MATCH v*: %q, %v", names, err)
	}
}

// TestTextScanNameOK: a bucket named OK does not end a SCAN listing early
// for the client.
func TestTextScanNameOK(t *testing.T) {
	st := store.NewStore()
	s := startServer(t, Config{Executor: st})
	for i := range 5 {
		if err := st.Create(fmt.Sprint("b", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Create("OK"); err != nil {
		t.Fatal(err)
	}
	_, names, err := dialClient(t, s.addr).Scan(context.Background(), 0, "", 100)
	if err != nil || len(names) != 6 {
		t.Fatalf("Scan = %q, %v; want six names", names, err)
	}
}

// TestRedisCLIScan: redis-cli's --scan mode pages through SCAN to the end,
// and its KEYS, DBSIZE and HSCAN print as they do against Redis.
func TestRedisCLIScan(t *testing.T) {
	cli := redisCLI(t)
	st := store.NewStore()
	s := startServer(t, Config{Executor: st})
	var want []string
	for i := range 30 {
		k := fmt.Sprint("key:", i)
		runCLI(t, cli, s.addr, "", "SET", k, "v")
		want = append(want, k)
	}
	runCLI(t, cli, s.addr, "", "HSET", "bucket", "f", "v")
	got := strings.Fields(runCLI(t, cli, s.addr, "", "--scan", "--pattern", "key:*"))
	for i, g := range got {
		got[i] = strings.Trim(g, `"`)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("redis-cli --scan printed %q\nwant %q", got, want)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"DBSIZE"}, "(integer) 31\n"},
		{[]string{"KEYS", "b*"}, "1) \"bucket\"\n"},
		{[]string{"HSCAN", "bucket", "0"}, "1) \"0\"\n2) 1) \"f\"\n   2) \"v\"\n"},
		{[]string{"SCAN", "0", "MATCH", "b*", "COUNT", "100"}, "1) \"0\"\n2) 1) \"bucket\"\n"},
		{[]string{"SCAN", "x"}, "(error) ERR invalid cursor\n"},
	} {
		if got := runCLI(t, cli, s.addr, "", tt.args...); got != tt.want {
			t.Errorf("redis-cli %q:\n%q\nwant\n%q", tt.args, got, tt.want)
		}
	}
}

// TestTextScanDocExample: the example of SCAN in docs/protocol.md, byte
// for byte.
func TestTextScanDocExample(t *testing.T) {
	st := store.NewStore()
	for _, b := range []string{"fruit", "shopping", "veg"} {
		if err := st.Create(b); err != nil {
			t.Fatal(err)
		}
	}
	c := dialRESP(t, startServer(t, Config{Executor: st}).addr)
	runTextSteps(t, c, []respStep{
		{"SCAN 0 COUNT 2\r\n", "3336720271398322292\r\nfruit\r\nshopping\r\nOK\r\n"},
		{"SCAN 3336720271398322292 COUNT 2\r\n", "0\r\nveg\r\nOK\r\n"},
	})
}
