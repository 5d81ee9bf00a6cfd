package textproto

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// RESP2, the protocol of Redis, on the client port: a connection whose
// first byte is '*' speaks it (a text-protocol request never starts with
// '*'). A request is an array of bulk strings:
//
//	*<count>\r\n  then, count times,  $<length>\r\n<bytes>\r\n
//
// Replies are simple strings (+OK), errors (-ERR ...), integers (:1), bulk
// strings ($3\r\nabc, $-1 for nil) and arrays (*2 ...).

// Limits of a RESP request, in the manner of Redis's proto-max-bulk-len
// and its cap on a multibulk's count.
const (
	DefaultMaxBulkBytes    = 8 << 20
	DefaultMaxArgs         = 1 << 16
	DefaultMaxRequestBytes = 64 << 20

	MinMaxBulkBytes = 64
	MaxMaxBulkBytes = 1 << 30

	// maxHeaderLine caps a "*<count>" or "$<length>" line, with its
	// "\r\n": counts fit in 20 digits.
	maxHeaderLine = 32
	// keepArena is the most argument space a connection keeps between
	// requests; a larger arena, grown for one big request, is dropped.
	keepArena = 64 << 10
)

// respError is a malformed RESP request: the connection gets
// "-ERR Protocol error: <msg>" and closes, as Redis does.
type respError struct{ msg string }

func (e *respError) Error() string { return "textproto: RESP protocol error: " + e.msg }

// respReader reads RESP requests of bounded size. The arguments of the
// last request alias an arena of the reader's own and are valid until the
// next call of next.
type respReader struct {
	r        *bufio.Reader
	maxBulk  int // longest argument
	maxArgs  int // most arguments in one request
	maxBytes int // most argument bytes in one request

	arena []byte
	ends  []int    // end offsets of the arguments in arena
	args  [][]byte // the last request's arguments
}

// next reads one request. An empty array ("*0") gives no arguments; the
// caller skips it, as Redis does.
func (rr *respReader) next() error {
	if rr.nextBuffered() {
		return nil
	}
	n, err := rr.header('*', rr.maxArgs, "invalid multibulk length")
	if err != nil {
		return err
	}
	rr.release() // in case the caller did not
	rr.arena, rr.ends = rr.arena[:0], rr.ends[:0]
	for range n {
		size, err := rr.header('$', rr.maxBulk, "invalid bulk length")
		if err != nil {
			return err
		}
		if len(rr.arena)+size > rr.maxBytes {
			return &respError{fmt.Sprintf("request larger than %d bytes", rr.maxBytes)}
		}
		start := len(rr.arena)
		rr.arena = grow(rr.arena, size+2)
		if _, err := io.ReadFull(rr.r, rr.arena[start:start+size+2]); err != nil {
			return noEOF(err)
		}
		if rr.arena[start+size] != '\r' || rr.arena[start+size+1] != '\n' {
			return &respError{"bulk string not followed by CRLF"}
		}
		rr.arena = rr.arena[:start+size]
		rr.ends = append(rr.ends, start+size)
	}
	rr.args = rr.args[:0]
	start := 0
	for _, end := range rr.ends {
		rr.args = append(rr.args, rr.arena[start:end:end])
		start = end
	}
	return nil
}

// nextBuffered reads a request that is already whole in r's buffer, as a
// pipelining client's requests mostly are, without copying: the arguments
// are views of r's buffer, valid until r is read again (by the next call
// of next). It takes only requests in the canonical form, within the
// limits: a count and lengths of at most maxDigits digits, none with a
// leading zero, the count not 0. For anything else, a request cut by the
// end of the buffer included, it reads nothing and reports false, and
// next reads the request the slow way, which also reports what is wrong
// with it: both ways read a request alike.
func (rr *respReader) nextBuffered() bool {
	buf, _ := rr.r.Peek(rr.r.Buffered())
	if len(buf) == 0 || buf[0] != '*' {
		return false
	}
	n, p := bufferedNumber(buf, 1)
	if n <= 0 || n > rr.maxArgs {
		return false
	}
	// The last request's arguments are dead from here: their slice is
	// reused.
	rr.args = rr.args[:0]
	args, total := rr.args, 0
	for range n {
		if p >= len(buf) || buf[p] != '$' {
			return false
		}
		size, start := bufferedNumber(buf, p+1)
		if size < 0 || size > rr.maxBulk {
			return false
		}
		if total += size; total > rr.maxBytes {
			return false
		}
		end := start + size
		if end+2 > len(buf) || buf[end] != '\r' || buf[end+1] != '\n' {
			return false
		}
		args = append(args, buf[start:end:end])
		p = end + 2
	}
	rr.release()
	rr.args = args
	_, _ = rr.r.Discard(p) // buffered, so it cannot fail
	return true
}

// maxDigits bounds the numbers nextBuffered reads: 10 digits cannot
// overflow an int, and any count or length over the limits has fewer.
const maxDigits = 10

// bufferedNumber reads the decimal number at buf[i:], ended by "\r\n",
// and returns it with the index after the "\n"; it returns -1 unless the
// number has 1 to maxDigits digits and no leading zero (bar 0 itself) and
// its line is whole in buf.
func bufferedNumber(buf []byte, i int) (n, next int) {
	start := i
	for ; i < len(buf) && i-start <= maxDigits; i++ {
		c := buf[i]
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	digits := i - start
	if digits == 0 || digits > maxDigits || digits > 1 && buf[start] == '0' ||
		i+1 >= len(buf) || buf[i] != '\r' || buf[i+1] != '\n' {
		return -1, 0
	}
	return n, i + 2
}

// release drops an arena grown past keepArena for one big request, once
// its arguments are no longer needed, so that an idle connection does
// not hold it.
func (rr *respReader) release() {
	if cap(rr.arena) > keepArena {
		rr.arena, rr.args = nil, rr.args[:0]
	}
}

// grow extends b by n bytes, reallocating when its capacity is short.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), 2*cap(b)+n)
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}

// header reads a "<prefix><number>\r\n" line and returns the number, which
// must be in [0, max]; for '*' a negative count (the null array) is read
// as 0, and empty lines before it are skipped.
func (rr *respReader) header(prefix byte, max int, what string) (int, error) {
	line, err := rr.r.ReadSlice('\n')
	for prefix == '*' && err == nil && (len(line) == 1 || len(line) == 2 && line[0] == '\r') {
		// An empty line between requests is skipped, as Redis skips an
		// empty inline command (redis-cli --pipe sends one).
		line, err = rr.r.ReadSlice('\n')
	}
	if errors.Is(err, bufio.ErrBufferFull) || len(line) > maxHeaderLine {
		return 0, &respError{"too big count string"}
	}
	if err != nil {
		if prefix == '$' || len(line) > 0 {
			return 0, noEOF(err)
		}
		return 0, err // a clean end between requests
	}
	if len(line) < 4 || line[len(line)-2] != '\r' {
		return 0, &respError{what}
	}
	if line[0] != prefix {
		return 0, &respError{fmt.Sprintf("expected '%c', got '%c'", prefix, line[0])}
	}
	digits := line[1 : len(line)-2]
	if prefix == '*' && bytes.Equal(digits, []byte("-1")) {
		return 0, nil
	}
	n, err := strconv.Atoi(string(digits))
	if err != nil || n < 0 || len(digits) > 1 && digits[0] == '0' || digits[0] == '+' || digits[0] == '-' {
		return 0, &respError{what}
	}
	if n > max {
		return 0, &respError{fmt.Sprintf("%s: %d, at most %d", what, n, max)}
	}
	return n, nil
}

// noEOF turns an end of input inside a request into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// respWriter writes RESP replies to a buffered writer; errors surface at
// the next Flush.
type respWriter struct {
	w    *bufio.Writer
	num  [24]byte
	nerr int // error replies written, for the metrics
}

func (w *respWriter) simple(s string) {
	_ = w.w.WriteByte('+')
	_, _ = w.w.WriteString(s)
	_, _ = w.w.WriteString("\r\n")
}

// err writes an error reply; msg starts with its code ("ERR ...").
func (w *respWriter) err(msg string) {
	w.nerr++
	_ = w.w.WriteByte('-')
	_, _ = w.w.WriteString(oneLine(msg))
	_, _ = w.w.WriteString("\r\n")
}

func (w *respWriter) header(prefix byte, n int) {
	_ = w.w.WriteByte(prefix)
	_, _ = w.w.Write(strconv.AppendInt(w.num[:0], int64(n), 10))
	_, _ = w.w.WriteString("\r\n")
}

func (w *respWriter) int(n int) { w.header(':', n) }

func (w *respWriter) int64(n int64) {
	_ = w.w.WriteByte(':')
	_, _ = w.w.Write(strconv.AppendInt(w.num[:0], n, 10))
	_, _ = w.w.WriteString("\r\n")
}

func (w *respWriter) array(n int) { w.header('*', n) }

func (w *respWriter) bulk(s string) {
	w.header('$', len(s))
	_, _ = w.w.WriteString(s)
	_, _ = w.w.WriteString("\r\n")
}

func (w *respWriter) nil() { _, _ = w.w.WriteString("$-1\r\n") }

func (w *respWriter) bulks(ss []string) {
	w.array(len(ss))
	for _, s := range ss {
		w.bulk(s)
	}
}
