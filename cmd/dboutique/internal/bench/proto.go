package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// The wire side of "dboutique bench": request encoders that append to a
// reusable buffer, and reply readers that skip replies without keeping
// them. Nothing here allocates per request; a reply reader only allocates
// to copy the text of an error reply it is asked to keep.

// Errors of the reply readers. Any of them leaves the connection out of
// step with the server, so the run stops.
var (
	errProtocol = errors.New("bench: malformed reply")
	errTooLarge = errors.New("bench: reply too large")
	errTooDeep  = errors.New("bench: reply nested too deeply")
)

// maxDepth bounds how deeply RESP arrays may nest in one reply.
const maxDepth = 32

// maxHeaderLine bounds a RESP length line ("$123", "*4", ":42"): a longer
// one cannot hold a sane number.
const maxHeaderLine = 32

// opKind is what one request of a batch does.
type opKind uint8

const (
	opGet opKind = iota
	opPut
)

// respEncoder appends RESP requests: arrays of bulk strings.
type respEncoder struct {
	get, put []byte   // command prefix when there is no bucket ("GET", "SET")
	hget     [][]byte // per bucket: the array header, the command and the bucket
	hset     [][]byte
	value    []byte // the value's bulk string, with its header and CRLF
	num      []byte // scratch for the key's digits
}

func newRESPEncoder(cfg *config) *respEncoder {
	e := &respEncoder{num: make([]byte, 0, 20)}
	e.value = appendBulk(nil, bytes.Repeat([]byte{'x'}, cfg.valueSize))
	if cfg.typ == typeString {
		e.get = appendBulk([]byte("*2\r\n"), []byte("GET"))
		e.put = appendBulk([]byte("*3\r\n"), []byte("SET"))
		return e
	}
	for _, b := range cfg.bucketNames() {
		e.hget = append(e.hget, appendBulk(appendBulk([]byte("*3\r\n"), []byte("HGET")), []byte(b)))
		e.hset = append(e.hset, appendBulk(appendBulk([]byte("*4\r\n"), []byte("HSET")), []byte(b)))
	}
	return e
}

// appendBulk appends s as a RESP bulk string.
func appendBulk(dst, s []byte) []byte {
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(len(s)), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, s...)
	return append(dst, '\r', '\n')
}

// appendKey appends the bulk string "key:<n>".
func (e *respEncoder) appendKey(dst []byte, n uint64) []byte {
	e.num = strconv.AppendUint(e.num[:0], n, 10)
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(len(keyPrefix)+len(e.num)), 10)
	dst = append(dst, "\r\n"+keyPrefix...)
	dst = append(dst, e.num...)
	return append(dst, '\r', '\n')
}

func (e *respEncoder) appendRequest(dst []byte, op opKind, bucket int, key uint64) []byte {
	switch {
	case op == opGet && e.hget == nil:
		return e.appendKey(append(dst, e.get...), key)
	case op == opGet:
		return e.appendKey(append(dst, e.hget[bucket]...), key)
	case e.hset == nil:
		return append(e.appendKey(append(dst, e.put...), key), e.value...)
	default:
		return append(e.appendKey(append(dst, e.hset[bucket]...), key), e.value...)
	}
}

// textEncoder appends text-protocol requests: "GET b key:n" and
// "PUT b key:n xxx".
type textEncoder struct {
	get, put [][]byte // per bucket: "GET b key:" and "PUT b key:"
	value    []byte   // " xxx\r\n"
}

func newTextEncoder(cfg *config) *textEncoder {
	e := &textEncoder{}
	for _, b := range cfg.bucketNames() {
		e.get = append(e.get, []byte("GET "+b+" "+keyPrefix))
		e.put = append(e.put, []byte("PUT "+b+" "+keyPrefix))
	}
	e.value = append(append([]byte{' '}, bytes.Repeat([]byte{'x'}, cfg.valueSize)...), '\r', '\n')
	return e
}

func (e *textEncoder) appendRequest(dst []byte, op opKind, bucket int, key uint64) []byte {
	if op == opGet {
		dst = strconv.AppendUint(append(dst, e.get[bucket]...), key, 10)
		return append(dst, '\r', '\n')
	}
	dst = strconv.AppendUint(append(dst, e.put[bucket]...), key, 10)
	return append(dst, e.value...)
}

// replyReader reads replies from one connection. Its buffer is reused;
// a reply larger than max bytes is an error.
type replyReader struct {
	r   *bufio.Reader
	max int64
	// lastErr is the text of the last error reply, kept only while keepErr
	// is set (the first error of each client is reported).
	keepErr bool
	lastErr string
}

// line returns the next line without its CRLF (or LF), and the number of
// bytes it took on the wire. A line longer than the buffer is consumed up
// to its end (within the size cap) and its first buffer-full returned: the
// callers only look at a line's start.
func (rr *replyReader) line(budget int64) (line []byte, n int64, err error) {
	b, err := rr.r.ReadSlice('\n')
	n = int64(len(b))
	if err == nil {
		return trimEOL(b), n, nil
	}
	if !errors.Is(err, bufio.ErrBufferFull) {
		return nil, n, unexpectedEOF(err)
	}
	// Keep the head by copying it once; this path is for lines over the
	// buffer size, not for the usual reply.
	head := append([]byte(nil), b[:min(len(b), 256)]...)
	for errors.Is(err, bufio.ErrBufferFull) {
		if n > budget {
			return nil, n, fmt.Errorf("%w: a line over %d bytes", errTooLarge, budget)
		}
		b, err = rr.r.ReadSlice('\n')
		n += int64(len(b))
	}
	if err != nil {
		return nil, n, unexpectedEOF(err)
	}
	if n > budget {
		return nil, n, fmt.Errorf("%w: a line over %d bytes", errTooLarge, budget)
	}
	return head, n, nil
}

// trimEOL drops the LF and a CR before it.
func trimEOL(b []byte) []byte {
	b = b[:len(b)-1]
	if len(b) > 0 && b[len(b)-1] == '\r' {
		b = b[:len(b)-1]
	}
	return b
}

// unexpectedEOF turns io.EOF, met in the middle of a reply or while one
// is awaited, into io.ErrUnexpectedEOF.
func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// keep records b as the last error reply if asked to.
func (rr *replyReader) keep(b []byte) {
	if rr.keepErr {
		rr.lastErr = string(b)
		rr.keepErr = false
	}
}

// parseLen parses the non-negative decimal number, or -1, of a RESP
// header line after its type byte.
func parseLen(b []byte) (int64, bool) {
	if len(b) == 2 && b[0] == '-' && b[1] == '1' {
		return -1, true
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// readResp reads one RESP2 reply and reports whether it is an error reply.
func (rr *replyReader) readResp() (isErr bool, err error) {
	budget := rr.max
	return rr.skipResp(&budget, 0)
}

// skipResp skips one RESP value, taking its size from *budget.
func (rr *replyReader) skipResp(budget *int64, depth int) (isErr bool, err error) {
	line, n, err := rr.line(*budget)
	if err != nil {
		return false, err
	}
	if *budget -= n; *budget < 0 {
		return false, fmt.Errorf("%w: over %d bytes", errTooLarge, rr.max)
	}
	if len(line) == 0 {
		return false, fmt.Errorf("%w: an empty line", errProtocol)
	}
	switch line[0] {
	case '+':
		return false, nil
	case '-':
		if depth == 0 { // an error inside an array is data
			rr.keep(line)
		}
		return depth == 0, nil
	case ':':
		if len(line) > maxHeaderLine {
			return false, fmt.Errorf("%w: %q", errProtocol, line[:maxHeaderLine])
		}
		return false, nil
	case '$':
		size, ok := parseLen(line[1:])
		if !ok || len(line) > maxHeaderLine {
			return false, fmt.Errorf("%w: bad bulk length %q", errProtocol, line[:min(len(line), maxHeaderLine)])
		}
		if size < 0 {
			return false, nil // null: a missing key
		}
		if *budget -= size + 2; *budget < 0 {
			return false, fmt.Errorf("%w: a %d-byte bulk string, over %d bytes", errTooLarge, size, rr.max)
		}
		return false, rr.skipBulk(int(size))
	case '*':
		count, ok := parseLen(line[1:])
		if !ok || len(line) > maxHeaderLine {
			return false, fmt.Errorf("%w: bad array length %q", errProtocol, line[:min(len(line), maxHeaderLine)])
		}
		if count > 0 && depth >= maxDepth {
			return false, errTooDeep
		}
		for range count {
			if _, err := rr.skipResp(budget, depth+1); err != nil {
				return false, err
			}
		}
		return false, nil
	default:
		return false, fmt.Errorf("%w: unknown type byte %q", errProtocol, line[0])
	}
}

// skipBulk skips a bulk string's size bytes and checks the CRLF after them.
func (rr *replyReader) skipBulk(size int) error {
	if size+2 <= rr.r.Size() {
		b, err := rr.r.Peek(size + 2)
		if err != nil {
			return unexpectedEOF(err)
		}
		if b[size] != '\r' || b[size+1] != '\n' {
			return fmt.Errorf("%w: a bulk string not ended by CRLF", errProtocol)
		}
		_, err = rr.r.Discard(size + 2)
		return err
	}
	if _, err := rr.r.Discard(size); err != nil {
		return unexpectedEOF(err)
	}
	b, err := rr.r.Peek(2)
	if err != nil {
		return unexpectedEOF(err)
	}
	if b[0] != '\r' || b[1] != '\n' {
		return fmt.Errorf("%w: a bulk string not ended by CRLF", errProtocol)
	}
	_, err = rr.r.Discard(2)
	return err
}

// isTextError reports whether a text-protocol reply line is an error.
// Every error reply holds a space and no value can, so no value is taken
// for one.
func isTextError(line []byte) bool {
	return bytes.HasPrefix(line, []byte("ERROR ")) ||
		bytes.Equal(line, []byte("NOT FOUND")) ||
		bytes.Equal(line, []byte("COMMAND NOT IMPLEMENTED"))
}

// readText reads the text-protocol reply to a request of kind op and
// reports whether it is an error reply: "OK" for a PUT (CREATE, AUTH), a
// value line then "OK" for a GET.
func (rr *replyReader) readText(op opKind) (isErr bool, err error) {
	line, n, err := rr.line(rr.max)
	if err != nil {
		return false, err
	}
	if isTextError(line) {
		rr.keep(line)
		return true, nil
	}
	if op == opGet {
		// line was the value (empty for a missing key); "OK" follows.
		if line, _, err = rr.line(rr.max - n); err != nil {
			return false, err
		}
	}
	if !bytes.Equal(line, []byte("OK")) {
		return false, fmt.Errorf("%w: %q where OK was expected", errProtocol, line[:min(len(line), 64)])
	}
	return false, nil
}
