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
	errBenchProtocol = errors.New("bench: malformed reply")
	errBenchTooLarge = errors.New("bench: reply too large")
	errBenchTooDeep  = errors.New("bench: reply nested too deeply")
)

// benchMaxDepth bounds how deeply RESP arrays may nest in one reply.
const benchMaxDepth = 32

// benchMaxHeaderLine bounds a RESP length line ("$123", "*4", ":42"): a longer
// one cannot hold a sane number.
const benchMaxHeaderLine = 32

// benchOp is what one request of a batch does.
type benchOp uint8

const (
	benchGet benchOp = iota
	benchPut
)

// benchRESPEncoder appends RESP requests: arrays of bulk strings.
type benchRESPEncoder struct {
	get, put []byte   // command prefix when there is no bucket ("GET", "SET")
	hget     [][]byte // per bucket: the array header, the command and the bucket
	hset     [][]byte
	value    []byte // the value's bulk string, with its header and CRLF
	num      []byte // scratch for the key's digits
}

func newBenchRESPEncoder(cfg *benchConfig) *benchRESPEncoder {
	e := &benchRESPEncoder{num: make([]byte, 0, 20)}
	e.value = benchAppendBulk(nil, bytes.Repeat([]byte{'x'}, cfg.valueSize))
	if cfg.typ == benchTypeString {
		e.get = benchAppendBulk([]byte("*2\r\n"), []byte("GET"))
		e.put = benchAppendBulk([]byte("*3\r\n"), []byte("SET"))
		return e
	}
	for _, b := range cfg.bucketNames() {
		e.hget = append(e.hget, benchAppendBulk(benchAppendBulk([]byte("*3\r\n"), []byte("HGET")), []byte(b)))
		e.hset = append(e.hset, benchAppendBulk(benchAppendBulk([]byte("*4\r\n"), []byte("HSET")), []byte(b)))
	}
	return e
}

// benchAppendBulk appends s as a RESP bulk string.
func benchAppendBulk(dst, s []byte) []byte {
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(len(s)), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, s...)
	return append(dst, '\r', '\n')
}

// appendKey appends the bulk string "key:<n>".
func (e *benchRESPEncoder) appendKey(dst []byte, n uint64) []byte {
	e.num = strconv.AppendUint(e.num[:0], n, 10)
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(len(benchKeyPrefix)+len(e.num)), 10)
	dst = append(dst, "\r\n"+benchKeyPrefix...)
	dst = append(dst, e.num...)
	return append(dst, '\r', '\n')
}

func (e *benchRESPEncoder) appendRequest(dst []byte, op benchOp, bucket int, key uint64) []byte {
	switch {
	case op == benchGet && e.hget == nil:
		return e.appendKey(append(dst, e.get...), key)
	case op == benchGet:
		return e.appendKey(append(dst, e.hget[bucket]...), key)
	case e.hset == nil:
		return append(e.appendKey(append(dst, e.put...), key), e.value...)
	default:
		return append(e.appendKey(append(dst, e.hset[bucket]...), key), e.value...)
	}
}

// benchTextEncoder appends text-protocol requests: "GET b key:n" and
// "PUT b key:n xxx".
type benchTextEncoder struct {
	get, put [][]byte // per bucket: "GET b key:" and "PUT b key:"
	value    []byte   // " xxx\r\n"
}

func newBenchTextEncoder(cfg *benchConfig) *benchTextEncoder {
	e := &benchTextEncoder{}
	for _, b := range cfg.bucketNames() {
		e.get = append(e.get, []byte("GET "+b+" "+benchKeyPrefix))
		e.put = append(e.put, []byte("PUT "+b+" "+benchKeyPrefix))
	}
	e.value = append(append([]byte{' '}, bytes.Repeat([]byte{'x'}, cfg.valueSize)...), '\r', '\n')
	return e
}

func (e *benchTextEncoder) appendRequest(dst []byte, op benchOp, bucket int, key uint64) []byte {
	if op == benchGet {
		dst = strconv.AppendUint(append(dst, e.get[bucket]...), key, 10)
		return append(dst, '\r', '\n')
	}
	dst = strconv.AppendUint(append(dst, e.put[bucket]...), key, 10)
	return append(dst, e.value...)
}

// benchReader reads replies from one connection. Its buffer is reused;
// a reply larger than max bytes is an error.
type benchReader struct {
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
func (rr *benchReader) line(budget int64) (line []byte, n int64, err error) {
	b, err := rr.r.ReadSlice('\n')
	n = int64(len(b))
	if err == nil {
		return benchTrimEOL(b), n, nil
	}
	if !errors.Is(err, bufio.ErrBufferFull) {
		return nil, n, benchUnexpectedEOF(err)
	}
	// Keep the head by copying it once; this path is for lines over the
	// buffer size, not for the usual reply.
	head := append([]byte(nil), b[:min(len(b), 256)]...)
	for errors.Is(err, bufio.ErrBufferFull) {
		if n > budget {
			return nil, n, fmt.Errorf("%w: a line over %d bytes", errBenchTooLarge, budget)
		}
		b, err = rr.r.ReadSlice('\n')
		n += int64(len(b))
	}
	if err != nil {
		return nil, n, benchUnexpectedEOF(err)
	}
	if n > budget {
		return nil, n, fmt.Errorf("%w: a line over %d bytes", errBenchTooLarge, budget)
	}
	return head, n, nil
}

// benchTrimEOL drops the LF and a CR before it.
func benchTrimEOL(b []byte) []byte {
	b = b[:len(b)-1]
	if len(b) > 0 && b[len(b)-1] == '\r' {
		b = b[:len(b)-1]
	}
	return b
}

// benchUnexpectedEOF turns io.EOF, met in the middle of a reply or while one
// is awaited, into io.ErrUnexpectedEOF.
func benchUnexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// keep records b as the last error reply if asked to.
func (rr *benchReader) keep(b []byte) {
	if rr.keepErr {
		rr.lastErr = string(b)
		rr.keepErr = false
	}
}

// benchParseLen parses the non-negative decimal number, or -1, of a RESP
// header line after its type byte.
func benchParseLen(b []byte) (int64, bool) {
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
func (rr *benchReader) readResp() (isErr bool, err error) {
	budget := rr.max
	return rr.skipResp(&budget, 0)
}

// skipResp skips one RESP value, taking its size from *budget.
func (rr *benchReader) skipResp(budget *int64, depth int) (isErr bool, err error) {
	line, n, err := rr.line(*budget)
	if err != nil {
		return false, err
	}
	if *budget -= n; *budget < 0 {
		return false, fmt.Errorf("%w: over %d bytes", errBenchTooLarge, rr.max)
	}
	if len(line) == 0 {
		return false, fmt.Errorf("%w: an empty line", errBenchProtocol)
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
		if len(line) > benchMaxHeaderLine {
			return false, fmt.Errorf("%w: %q", errBenchProtocol, line[:benchMaxHeaderLine])
		}
		return false, nil
	case '$':
		size, ok := benchParseLen(line[1:])
		if !ok || len(line) > benchMaxHeaderLine {
			return false, fmt.Errorf("%w: bad bulk length %q", errBenchProtocol, line[:min(len(line), benchMaxHeaderLine)])
		}
		if size < 0 {
			return false, nil // null: a missing key
		}
		if *budget -= size + 2; *budget < 0 {
			return false, fmt.Errorf("%w: a %d-byte bulk string, over %d bytes", errBenchTooLarge, size, rr.max)
		}
		return false, rr.skipBulk(int(size))
	case '*':
		count, ok := benchParseLen(line[1:])
		if !ok || len(line) > benchMaxHeaderLine {
			return false, fmt.Errorf("%w: bad array length %q", errBenchProtocol, line[:min(len(line), benchMaxHeaderLine)])
		}
		if count > 0 && depth >= benchMaxDepth {
			return false, errBenchTooDeep
		}
		for range count {
			if _, err := rr.skipResp(budget, depth+1); err != nil {
				return false, err
			}
		}
		return false, nil
	default:
		return false, fmt.Errorf("%w: unknown type byte %q", errBenchProtocol, line[0])
	}
}

// skipBulk skips a bulk string's size bytes and checks the CRLF after them.
func (rr *benchReader) skipBulk(size int) error {
	if size+2 <= rr.r.Size() {
		b, err := rr.r.Peek(size + 2)
		if err != nil {
			return benchUnexpectedEOF(err)
		}
		if b[size] != '\r' || b[size+1] != '\n' {
			return fmt.Errorf("%w: a bulk string not ended by CRLF", errBenchProtocol)
		}
		_, err = rr.r.Discard(size + 2)
		return err
	}
	if _, err := rr.r.Discard(size); err != nil {
		return benchUnexpectedEOF(err)
	}
	b, err := rr.r.Peek(2)
	if err != nil {
		return benchUnexpectedEOF(err)
	}
	if b[0] != '\r' || b[1] != '\n' {
		return fmt.Errorf("%w: a bulk string not ended by CRLF", errBenchProtocol)
	}
	_, err = rr.r.Discard(2)
	return err
}

// benchIsTextError reports whether a text-protocol reply line is an error.
// Every error reply holds a space and no value can, so no value is taken
// for one.
func benchIsTextError(line []byte) bool {
	return bytes.HasPrefix(line, []byte("ERROR ")) ||
		bytes.Equal(line, []byte("NOT FOUND")) ||
		bytes.Equal(line, []byte("COMMAND NOT IMPLEMENTED"))
}

// readText reads the text-protocol reply to a request of kind op and
// reports whether it is an error reply: "OK" for a PUT (CREATE, AUTH), a
// value line then "OK" for a GET.
func (rr *benchReader) readText(op benchOp) (isErr bool, err error) {
	line, n, err := rr.line(rr.max)
	if err != nil {
		return false, err
	}
	if benchIsTextError(line) {
		rr.keep(line)
		return true, nil
	}
	if op == benchGet {
		// line was the value (empty for a missing key); "OK" follows.
		if line, _, err = rr.line(rr.max - n); err != nil {
			return false, err
		}
	}
	if !bytes.Equal(line, []byte("OK")) {
		return false, fmt.Errorf("%w: %q where OK was expected", errBenchProtocol, line[:min(len(line), 64)])
	}
	return false, nil
}
