package textproto

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/dboutique/dboutique/node/store"
)

// Listing the keyspace: RESP's SCAN, KEYS, DBSIZE, RANDOMKEY and HSCAN, and
// the text protocol's SCAN. They need an Executor that is also a Lister.
//
// A cursor is a position in the order of the names' hashes
// (store.NameHash): "every name whose hash is at least this", written in
// decimal; 0 starts, and a reply's cursor of 0 says the listing is done.
// Any node of a cluster continues a cursor another gave (node/scan.go).

// Lister is an Executor that can also list the keyspace a page at a time
// (store.Store for one node, node.Node for a cluster).
type Lister interface {
	// Scan lists a page of the names (buckets, of type hash, and plain
	// keys, of type string) from r.Cursor on.
	Scan(ctx context.Context, r store.ScanRequest) (store.ScanPage, error)
	// ScanBucket lists a page of a bucket's keys, with their values
	// unless r.NoValues; store.ErrBucketNotFound for a missing bucket.
	ScanBucket(ctx context.Context, bucket string, r store.ScanRequest) (store.ScanPage, error)
	// DBSize counts the names, as Scan lists them.
	DBSize(ctx context.Context) (int, error)
}

// errNoLister is the reply when the Executor cannot list.
const errNoLister = "ERR this server cannot list its keys"

// lister returns the server's Lister, or nil.
func (c *conn) lister() Lister {
	l, _ := c.srv.cfg.Executor.(Lister)
	return l
}

// scanArgs is what SCAN and HSCAN were asked, once parsed.
type scanArgs struct {
	req store.ScanRequest
	// onlyEmpty: MATCH with the empty pattern, which (as in Redis)
	// matches only the empty name; store.ScanRequest takes it for "every
	// name", so the names are filtered here.
	onlyEmpty bool
}

// parseScanArgs parses "cursor [MATCH pattern] [COUNT count] [TYPE type]"
// (with hscan, NOVALUES instead of TYPE) as Redis does, and returns
// Redis's error reply for what it refuses. COUNT above
// store.MaxScanCount is taken as store.MaxScanCount (COUNT is a hint).
func parseScanArgs(args [][]byte, hscan bool) (scanArgs, string) {
	cursor, err := strconv.ParseUint(string(args[0]), 10, 64)
	if err != nil {
		return scanArgs{}, "ERR invalid cursor"
	}
	a := scanArgs{req: store.ScanRequest{Cursor: cursor, Count: store.DefaultScanCount}}
	var buf [16]byte
	for i := 1; i < len(args); {
		opt, more := string(upper(buf[:0], args[i])), len(args)-i-1
		switch {
		case opt == "COUNT" && more >= 1:
			n, err := strconv.ParseInt(string(args[i+1]), 10, 64)
			if err != nil {
				return scanArgs{}, "ERR value is not an integer or out of range"
			}
			if n < 1 {
				return scanArgs{}, "ERR syntax error"
			}
			a.req.Count = int(min(n, store.MaxScanCount))
			i += 2
		case opt == "MATCH" && more >= 1:
			a.req.Match = string(args[i+1])
			a.onlyEmpty = len(args[i+1]) == 0
			i += 2
		case opt == "TYPE" && more >= 1 && !hscan:
			a.req.Type = store.ParseNameType(string(args[i+1]))
			i += 2
		case opt == "NOVALUES":
			if !hscan {
				return scanArgs{}, "ERR NOVALUES option can only be used in HSCAN"
			}
			a.req.NoValues = true
			i++
		default:
			return scanArgs{}, "ERR syntax error"
		}
	}
	return a, ""
}

// names returns the names of a page of the keyspace, each once (a name
// of both types is listed once), keeping only the empty name when the
// pattern was empty.
func (a scanArgs) names(items []store.ScanItem) []string {
	names := make([]string, 0, len(items))
	for i, it := range items {
		if i > 0 && items[i-1].Name == it.Name || a.onlyEmpty && it.Name != "" {
			continue // the types of one name are next to each other
		}
		names = append(names, it.Name)
	}
	return names
}

// scan answers SCAN cursor [MATCH pattern] [COUNT count] [TYPE type].
func (c *conn) scan(args [][]byte) {
	l := c.lister()
	if l == nil {
		c.rw.err(errNoLister)
		return
	}
	a, msg := parseScanArgs(args[1:], false)
	if msg != "" {
		c.rw.err(msg)
		return
	}
	p, err := l.Scan(c.srv.ctx, a.req)
	if err != nil {
		c.rw.err(respErrorReply(err))
		return
	}
	c.rw.array(2)
	c.rw.bulk(strconv.FormatUint(p.Next, 10))
	c.rw.bulks(a.names(p.Items))
}

// keysRESP answers KEYS pattern: every matching name, read by scanning
// the whole keyspace (slow: it reads every name of every node).
func (c *conn) keysRESP(args [][]byte) {
	l := c.lister()
	if l == nil {
		c.rw.err(errNoLister)
		return
	}
	a := scanArgs{req: store.ScanRequest{Count: store.MaxScanCount, Match: string(args[1])}, onlyEmpty: len(args[1]) == 0}
	var names []string
	for {
		p, err := l.Scan(c.srv.ctx, a.req)
		if err != nil {
			c.rw.err(respErrorReply(err))
			return
		}
		names = append(names, a.names(p.Items)...)
		if p.Next == 0 {
			break
		}
		if p.Next <= a.req.Cursor {
			c.rw.err("ERR internal error: the listing went backwards")
			return
		}
		a.req.Cursor = p.Next
	}
	c.rw.bulks(names)
}

// dbsize answers DBSIZE.
func (c *conn) dbsize([][]byte) {
	l := c.lister()
	if l == nil {
		c.rw.err(errNoLister)
		return
	}
	n, err := l.DBSize(c.srv.ctx)
	if err != nil {
		c.rw.err(respErrorReply(err))
		return
	}
	c.rw.int(n)
}

// randomKey answers RANDOMKEY: the first name from a random place in the
// order of names (so a name is chosen more often the larger the gap of
// hashes before it; Redis's choice is not uniform either), or nil.
func (c *conn) randomKey([][]byte) {
	l := c.lister()
	if l == nil {
		c.rw.err(errNoLister)
		return
	}
	for _, cursor := range []uint64{rand.Uint64(), 0} {
		p, err := l.Scan(c.srv.ctx, store.ScanRequest{Cursor: cursor, Count: 1})
		if err != nil {
			c.rw.err(respErrorReply(err))
			return
		}
		if len(p.Items) > 0 {
			c.rw.bulk(p.Items[0].Name)
			return
		}
	}
	c.rw.nil()
}

// hscan answers HSCAN bucket cursor [MATCH pattern] [COUNT count]
// [NOVALUES]: a page of the bucket's keys and values, from its primary.
func (c *conn) hscan(args [][]byte) {
	if reserved(args[1]) {
		c.rw.err(respErrorReply(ErrReservedName))
		return
	}
	l := c.lister()
	if l == nil {
		c.rw.err(errNoLister)
		return
	}
	a, msg := parseScanArgs(args[2:], true)
	if msg != "" {
		c.rw.err(msg)
		return
	}
	var p store.ScanPage
	if len(args[1]) > 0 { // no bucket has the empty name
		var err error
		p, err = l.ScanBucket(c.srv.ctx, string(args[1]), a.req)
		if err != nil && !errors.Is(err, store.ErrBucketNotFound) {
			c.rw.err(respErrorReply(err))
			return
		}
	}
	var out []string
	for _, it := range p.Items {
		if a.onlyEmpty && it.Name != "" {
			continue
		}
		out = append(out, it.Name)
		if !a.req.NoValues {
			out = append(out, it.Value)
		}
	}
	c.rw.array(2)
	c.rw.bulk(strconv.FormatUint(p.Next, 10))
	c.rw.bulks(out)
}

// --- The text protocol's SCAN.

// scanUsage is the text protocol's SCAN syntax.
const scanUsage = "SCAN <cursor> [MATCH <pattern>] [COUNT <n>]"

// maxScanWords is the most words a text SCAN takes.
const maxScanWords = 6

// scanText answers SCAN <cursor> [MATCH <pattern>] [COUNT <n>] on the
// text protocol: the next cursor on a line, then the names of the buckets
// of the page, one a line, then OK. Buckets whose names are not one word
// (RESP can make them) are left out, and so are plain keys: the text
// protocol has no way to name them.
func (c *conn) scanText(line []byte) {
	l := c.lister()
	if l == nil {
		c.writeLine(errorPrefix + "this server cannot list its buckets")
		return
	}
	r, ok := parseScanText(line)
	if !ok {
		c.usage(scanUsage)
		return
	}
	p, err := l.Scan(c.srv.ctx, r)
	if err != nil {
		c.writeLine(replyForError(err))
		return
	}
	c.writeLine(strconv.FormatUint(p.Next, 10))
	for _, it := range p.Items {
		if it.Name != "" && !strings.ContainsAny(it.Name, " \t\r\n") {
			c.writeLine(it.Name)
		}
	}
	c.writeLine(replyOK)
}

// parseScanText parses a text SCAN line: a cursor (decimal, unsigned),
// then MATCH and COUNT (any case, each with a value; the last one given
// counts). COUNT is a positive decimal, taken as store.MaxScanCount above
// it.
func parseScanText(line []byte) (store.ScanRequest, bool) {
	var words [maxScanWords][]byte
	n := 0
	for i := 0; i < len(line); { // split as parseLine does
		for i < len(line) && isSpace(line[i]) {
			i++
		}
		if i == len(line) {
			break
		}
		start := i
		for i < len(line) && !isSpace(line[i]) {
			i++
		}
		if n == len(words) {
			return store.ScanRequest{}, false
		}
		words[n] = line[start:i]
		n++
	}
	if n < 2 || n%2 != 0 {
		return store.ScanRequest{}, false
	}
	cursor, err := strconv.ParseUint(string(words[1]), 10, 64)
	if err != nil {
		return store.ScanRequest{}, false
	}
	r := store.ScanRequest{Cursor: cursor, Count: store.DefaultScanCount, Type: store.TypeHash}
	for i := 2; i < n; i += 2 {
		switch strings.ToUpper(string(words[i])) {
		case "MATCH":
			r.Match = string(words[i+1])
		case "COUNT":
			count, err := strconv.ParseUint(string(words[i+1]), 10, 64)
			if err != nil || count == 0 {
				return store.ScanRequest{}, false
			}
			r.Count = int(min(count, store.MaxScanCount))
		default:
			return store.ScanRequest{}, false
		}
	}
	return r, true
}
