package p2p

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"math/bits"
	"strconv"
)

// Wire format of ProtocolRPC.
//
// A stream carries a sequence of frames. The protocol version is part of the
// protocol ID, so a frame carries no version of its own:
//
//	uvarint(length of the rest) | type (1 byte) | uvarint(request id) | payload
//
// "The rest" is everything after the length: the type byte, the request id
// and the payload. Unsigned varints are the encoding/binary ones (7 bits per
// byte, least significant group first) and must be minimal: an encoding with
// needless trailing zero groups is rejected.
//
// The frame types are:
//
//	1 request:      sent by the stream's opener; the payload is the request.
//	2 reply:        sent by the stream's acceptor; the payload is the reply to
//	                the request with the same id.
//	3 error reply:  like a reply, but the payload is the text of the error
//	                the handler returned, at most maxErrorText bytes.
//
// A reader refuses, and resets the stream on, a frame whose length is zero or
// above its cap (ErrFrameTooLarge), whose type is unknown, whose id does not
// fit in the announced length, whose varints are not minimal or overflow 64
// bits, or whose error text is longer than maxErrorText (all ErrCorruptFrame).
// The ids are chosen by the opener; the acceptor only echoes them.
const (
	frameRequest    byte = 1
	frameReply      byte = 2
	frameErrorReply byte = 3
)

const (
	// maxErrorText caps the payload of an error reply. Longer error texts are
	// cut when sent and refused when read.
	maxErrorText = 1024
	// maxFrameHeader is the most bytes a frame header (length, type, id) takes.
	maxFrameHeader = 2*binary.MaxVarintLen64 + 1
	// frameOverhead is the most bytes a frame adds to its payload besides the
	// length itself: the type byte and the longest id.
	frameOverhead = 1 + binary.MaxVarintLen64
	// payloadChunk is how much payload memory readFrame allocates before it
	// has seen the bytes to fill it: a peer that announces a large frame and
	// then sends little makes the reader allocate little.
	payloadChunk = 64 << 10
)

// frame is one decoded frame. payload is owned by the receiver of the frame.
type frame struct {
	typ     byte
	id      uint64
	payload []byte
}

// errVarintTruncated reports a varint that runs past the end of the bytes
// that may hold it (the announced frame length).
var errVarintTruncated = errors.New("varint truncated")

// uvarintLen returns the number of bytes binary.AppendUvarint uses for x.
func uvarintLen(x uint64) int {
	return (bits.Len64(x|1) + 6) / 7
}

// readUvarint reads a minimal unsigned varint of at most limit bytes.
// It returns the value, the bytes read and an error:
// io.EOF if the reader was empty, io.ErrUnexpectedEOF if it ended inside the
// varint, errVarintTruncated if limit bytes were read without reaching the
// end of the varint, ErrCorruptFrame if the varint is not minimal or
// overflows 64 bits.
func readUvarint(br io.ByteReader, limit int) (uint64, int, error) {
	var x uint64
	var shift uint
	for i := 0; i < binary.MaxVarintLen64; i++ {
		if i >= limit {
			return 0, i, errVarintTruncated
		}
		b, err := br.ReadByte()
		if err != nil {
			if err == io.EOF && i > 0 {
				err = io.ErrUnexpectedEOF
			}
			return 0, i, err
		}
		if b < 0x80 {
			if i == binary.MaxVarintLen64-1 && b > 1 {
				return 0, i + 1, ErrCorruptFrame // overflows 64 bits
			}
			if b == 0 && i > 0 {
				return 0, i + 1, ErrCorruptFrame // not minimal
			}
			return x | uint64(b)<<shift, i + 1, nil
		}
		x |= uint64(b&0x7f) << shift
		shift += 7
	}
	return 0, binary.MaxVarintLen64, ErrCorruptFrame // longer than any 64-bit value
}

// readFrame reads one frame from br. maxRest caps the announced length (the
// bytes after the length varint); a frame announcing more is refused with
// ErrFrameTooLarge before any of it is read.
//
// It returns io.EOF if br ends cleanly before the frame's first byte,
// io.ErrUnexpectedEOF if it ends inside a frame, ErrFrameTooLarge or
// ErrCorruptFrame (wrapped) for a frame that breaks the format, and any other
// error from the underlying reader as is. After an error other than io.EOF
// the stream is out of step and must be dropped.
//
// The payload is freshly allocated (nil when empty) and grows with the bytes
// that really arrive, so a truncated frame never costs its announced size.
func readFrame(br *bufio.Reader, maxRest int) (frame, error) {
	n, _, err := readUvarint(br, binary.MaxVarintLen64)
	if err != nil {
		if err == ErrCorruptFrame {
			return frame{}, errCorrupt("bad length")
		}
		return frame{}, err
	}
	if n == 0 {
		return frame{}, errCorrupt("zero length")
	}
	if n > uint64(maxRest) {
		return frame{}, errTooLarge(n, maxRest)
	}
	rest := int(n)

	typ, err := br.ReadByte()
	if err != nil {
		return frame{}, unexpected(err)
	}
	rest--
	if typ < frameRequest || typ > frameErrorReply {
		return frame{}, errCorrupt("unknown frame type")
	}

	id, k, err := readUvarint(br, rest)
	switch {
	case err == errVarintTruncated:
		return frame{}, errCorrupt("request id longer than the frame")
	case err == ErrCorruptFrame:
		return frame{}, errCorrupt("bad request id")
	case err != nil:
		return frame{}, unexpected(err)
	}
	rest -= k

	if typ == frameErrorReply && rest > maxErrorText {
		return frame{}, errCorrupt("error text too long")
	}
	f := frame{typ: typ, id: id}
	if rest == 0 {
		return f, nil
	}
	f.payload, err = readPayload(br, rest)
	if err != nil {
		return frame{}, unexpected(err)
	}
	return f, nil
}

// readPayload reads exactly n bytes into a new slice. Up to payloadChunk it
// allocates n at once; beyond, it doubles the slice as bytes arrive.
func readPayload(r io.Reader, n int) ([]byte, error) {
	if n <= payloadChunk {
		p := make([]byte, n)
		_, err := io.ReadFull(r, p)
		return p, err
	}
	p := make([]byte, 0, payloadChunk)
	for len(p) < n {
		if len(p) == cap(p) {
			grown := make([]byte, len(p), min(n, 2*cap(p)))
			copy(grown, p)
			p = grown
		}
		m, err := io.ReadFull(r, p[len(p):cap(p)])
		p = p[:len(p)+m]
		if err != nil {
			return nil, err
		}
	}
	return p, nil
}

// frameBuffered reports whether br already holds a whole frame, so that
// reading it cannot block. A malformed header counts as buffered: readFrame
// rejects it without reading further.
func frameBuffered(br *bufio.Reader) bool {
	buffered := br.Buffered()
	if buffered == 0 {
		return false
	}
	hdr, _ := br.Peek(min(buffered, binary.MaxVarintLen64))
	n, k := binary.Uvarint(hdr)
	if k == 0 {
		// The length is incomplete, unless it is already too long.
		return len(hdr) == binary.MaxVarintLen64
	}
	if k < 0 {
		return true
	}
	return n <= uint64(buffered-k)
}

// writeFrame appends one frame to bw. It does not flush. payload must leave
// room for the header within the reader's cap: callers check it against
// maxPayload first.
func writeFrame(bw *bufio.Writer, typ byte, id uint64, payload []byte) error {
	if bw.Available() < maxFrameHeader {
		if err := bw.Flush(); err != nil {
			return err
		}
	}
	// The header is built in bw's own free space and handed back to it, which
	// bufio copies onto itself: no allocation.
	hdr := bw.AvailableBuffer()
	hdr = binary.AppendUvarint(hdr, uint64(1+uvarintLen(id)+len(payload)))
	hdr = append(hdr, typ)
	hdr = binary.AppendUvarint(hdr, id)
	if _, err := bw.Write(hdr); err != nil {
		return err
	}
	if len(payload) == 0 {
		return nil
	}
	_, err := bw.Write(payload)
	return err
}

// maxPayload returns the largest payload a frame can carry when the reader
// accepts frames of up to maxRest bytes after the length, whatever its id.
func maxPayload(maxRest int) int {
	return maxRest - frameOverhead
}

// unexpected turns an end of input inside a frame into io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// frameError is ErrCorruptFrame or ErrFrameTooLarge with details; the text
// is built only if someone asks for it.
type frameError struct {
	sentinel error
	detail   string
	n        uint64
	max      int
}

func errCorrupt(detail string) error {
	return &frameError{sentinel: ErrCorruptFrame, detail: detail}
}

func errTooLarge(n uint64, max int) error {
	return &frameError{sentinel: ErrFrameTooLarge, n: n, max: max}
}

func (e *frameError) Error() string {
	if e.sentinel == ErrFrameTooLarge {
		return e.sentinel.Error() + ": " + strconv.FormatUint(e.n, 10) + " bytes announced, limit " + strconv.Itoa(e.max)
	}
	return e.sentinel.Error() + ": " + e.detail
}

func (e *frameError) Unwrap() error { return e.sentinel }
