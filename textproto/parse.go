package textproto

import (
	"bufio"
	"errors"
	"io"

	"github.com/dboutique/dboutique/node/store"
)

// maxWords is one more than the most words any request takes (PUT with
// an expiry has six), so that a request with too many words is recognised
// without splitting the rest of the line.
const maxWords = 7

// request is one parsed request line. Its words alias the line they were
// split from and are valid until the next line is read.
type request struct {
	words [maxWords][]byte
	n     int  // number of words, at most maxWords
	more  bool // the line had more than maxWords words
}

// arity returns the number of words, or maxWords+1 when there were more.
func (r *request) arity() int {
	if r.more {
		return maxWords + 1
	}
	return r.n
}

// parseLine splits a request line (without its line ending) into words
// separated by runs of spaces and tabs. It never allocates.
func parseLine(line []byte, r *request) {
	r.n, r.more = 0, false
	i := 0
	for {
		for i < len(line) && isSpace(line[i]) {
			i++
		}
		if i == len(line) {
			return
		}
		start := i
		for i < len(line) && !isSpace(line[i]) {
			i++
		}
		if r.n == maxWords {
			r.more = true
			return
		}
		r.words[r.n] = line[start:i]
		r.n++
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' }

// verb identifies a request's first word.
type verb uint8

const (
	verbUnknown verb = iota
	verbCreate
	verbPut
	verbGet
	verbDelete
	verbDrop
	verbBuckets
	verbKeys
	verbPing
	verbQuit
	verbHelp
	verbAuth
	verbNodes
	verbOwner
	verbInfo
	verbExpire
	verbTTL
	verbScan
	numVerbs
)

// parseVerb matches a request's first word in any case, without allocating.
func parseVerb(w []byte) verb {
	var up [7]byte
	if len(w) > len(up) {
		return verbUnknown
	}
	for i, c := range w {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		up[i] = c
	}
	switch string(up[:len(w)]) {
	case "CREATE":
		return verbCreate
	case "PUT":
		return verbPut
	case "GET":
		return verbGet
	case "DELETE":
		return verbDelete
	case "DROP":
		return verbDrop
	case "BUCKETS":
		return verbBuckets
	case "KEYS":
		return verbKeys
	case "PING":
		return verbPing
	case "QUIT":
		return verbQuit
	case "HELP":
		return verbHelp
	case "AUTH":
		return verbAuth
	case "NODES":
		return verbNodes
	case "OWNER":
		return verbOwner
	case "INFO":
		return verbInfo
	case "EXPIRE":
		return verbExpire
	case "TTL":
		return verbTTL
	case "SCAN":
		return verbScan
	}
	return verbUnknown
}

// textCommand describes a verb. The verbs that run an operation on the
// store have its kind, the number of words the request takes (the verb
// included) and, for the extensions, the usage line sent when the count is
// wrong; words is zero for the other verbs.
type textCommand struct {
	name  string // in upper case, as parseVerb matches it
	kind  store.Kind
	words int
	usage string // empty for the original's verbs
}

// textCommands describes the verbs, indexed by verb: the one table between
// verbs and the kinds of operation they run, read both ways. It is a
// function so that the table cannot be modified.
func textCommands() [numVerbs]textCommand {
	return [numVerbs]textCommand{
		verbCreate:  {"CREATE", store.KindCreate, 2, ""},
		verbPut:     {"PUT", store.KindPut, 4, ""},
		verbGet:     {"GET", store.KindGet, 3, ""},
		verbDelete:  {"DELETE", store.KindDelete, 3, ""},
		verbDrop:    {"DROP", store.KindDrop, 2, "DROP <bucket>"},
		verbBuckets: {"BUCKETS", store.KindBuckets, 1, "BUCKETS"},
		verbKeys:    {"KEYS", store.KindKeys, 2, "KEYS <bucket>"},
		verbPing:    {name: "PING"},
		verbQuit:    {name: "QUIT"},
		verbHelp:    {name: "HELP"},
		verbAuth:    {name: "AUTH"},
		verbNodes:   {"NODES", store.KindNodes, 1, "NODES"},
		verbOwner:   {"OWNER", store.KindOwner, 2, "OWNER <bucket>"},
		verbInfo:    {name: "INFO"},
		verbExpire:  {"EXPIRE", store.KindExpire, 3, "EXPIRE <bucket> <seconds>"},
		verbTTL:     {"TTL", store.KindTTL, 2, "TTL <bucket>"},
		verbScan:    {name: "SCAN"},
	}
}

// lineReader reads request lines of bounded length. Lines that fit in the
// bufio.Reader's buffer are returned without copying; longer ones, up to the
// limit, are gathered in a buffer of the lineReader's own.
type lineReader struct {
	r    *bufio.Reader
	max  int    // longest line accepted, without its line ending
	long []byte // gathers a line longer than r's buffer
}

// errLineTooLong is returned by lineReader.next for a line over the limit;
// the rest of that line has not been read.
var errLineTooLong = errors.New("textproto: line too long")

// next returns the next line without its line ending ("\n" or "\r\n"). The
// slice is valid until the following call. At the end of the input, a last
// line without a line ending is returned like any other, and the call after
// it returns io.EOF. On any error no line is returned.
func (lr *lineReader) next() ([]byte, error) {
	line, err := lr.r.ReadSlice('\n')
	if err == nil {
		return lr.finish(line)
	}
	if err != bufio.ErrBufferFull {
		if err == io.EOF && len(line) > 0 {
			return lr.check(trimCR(line))
		}
		return nil, err
	}
	if cap(lr.long) > 4*lr.r.Size() {
		lr.long = nil // do not keep a large buffer from an earlier long line
	}
	lr.long = append(lr.long[:0], line...)
	for {
		// Content plus an optional '\r'; the '\n' has not been seen yet.
		if len(lr.long) > lr.max+1 {
			return nil, errLineTooLong
		}
		line, err = lr.r.ReadSlice('\n')
		lr.long = append(lr.long, line...)
		switch err {
		case nil:
			return lr.finish(lr.long)
		case bufio.ErrBufferFull:
			continue
		case io.EOF:
			return lr.check(trimCR(lr.long))
		default:
			return nil, err
		}
	}
}

// finish strips the line ending from a line that has one and checks its length.
func (lr *lineReader) finish(line []byte) ([]byte, error) {
	return lr.check(trimCR(line[:len(line)-1]))
}

// check enforces the length limit on a line without its line ending.
func (lr *lineReader) check(line []byte) ([]byte, error) {
	if len(line) > lr.max {
		return nil, errLineTooLong
	}
	return line, nil
}

func trimCR(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\r' {
		return b[:n-1]
	}
	return b
}
