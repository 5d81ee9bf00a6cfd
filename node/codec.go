package node

import (
	"encoding/binary"
	"fmt"
	"math"
)

// The binary encoding of an Op, used to send it to another node:
//
//	kind   byte
//	bucket uvarint length, bytes
//	key    uvarint length, bytes
//	value  uvarint length, bytes
//
// and of a Result:
//
//	value  uvarint length, bytes
//	names  uvarint count, then each name as uvarint length, bytes
//	count  uvarint, only when Result.Count is not 0
//
// Lengths must be written minimally, so every value has exactly one
// encoding. Decoding checks every length against the bytes that remain, so
// it allocates at most a small constant times the input's size; the
// transport caps that size.

// AppendBinary appends the encoding of op to b and returns the result.
func (op Op) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, byte(op.Kind))
	b = appendString(b, op.Bucket)
	b = appendString(b, op.Key)
	b = appendString(b, op.Value)
	return b, nil
}

// DecodeOp decodes an Op encoded by AppendBinary. The Op is validated; a
// malformed or trailing-garbage input gives ErrCorruptOp, a well-formed
// encoding of an invalid Op gives ErrInvalidOp.
func DecodeOp(b []byte) (Op, error) { return decodeOp(b, "") }

// decodeOp is DecodeOp, reusing the string sameBucket when the bucket name
// is the same: operations decoded together mostly name one bucket.
func decodeOp(b []byte, sameBucket string) (Op, error) {
	if len(b) == 0 {
		return Op{}, fmt.Errorf("%w: empty op", ErrCorruptOp)
	}
	d := decoder{buf: b[1:]}
	op := Op{Kind: Kind(b[0])}
	if bucket := d.bytes(); string(bucket) == sameBucket {
		op.Bucket = sameBucket
	} else {
		op.Bucket = string(bucket)
	}
	op.Key = d.string()
	op.Value = d.string()
	if err := d.finish(); err != nil {
		return Op{}, err
	}
	if err := op.Validate(); err != nil {
		return Op{}, err
	}
	return op, nil
}

// AppendBinary appends the encoding of r to b and returns the result.
func (r Result) AppendBinary(b []byte) ([]byte, error) {
	b = appendString(b, r.Value)
	b = binary.AppendUvarint(b, uint64(len(r.Names)))
	for _, n := range r.Names {
		b = appendString(b, n)
	}
	if r.Count > 0 { // and never negative
		b = binary.AppendUvarint(b, uint64(r.Count))
	}
	return b, nil
}

// DecodeResult decodes a Result encoded by Result.AppendBinary.
func DecodeResult(b []byte) (Result, error) {
	d := decoder{buf: b}
	var r Result
	r.Value = d.string()
	n := d.uvarint()
	// Every name takes at least one byte, which bounds the allocation.
	if d.err == nil && n > uint64(len(d.buf)) {
		d.err = fmt.Errorf("%w: %d names in %d bytes", ErrCorruptOp, n, len(d.buf))
	}
	if d.err == nil && n > 0 {
		r.Names = make([]string, n)
		for i := range r.Names {
			r.Names[i] = d.string()
		}
	}
	if d.err == nil && len(d.buf) > 0 {
		// A count of 0 is not written, so that each Result has one encoding.
		if c := d.uvarint(); d.err == nil && (c == 0 || c > math.MaxInt32) {
			d.err = fmt.Errorf("%w: count %d", ErrCorruptOp, c)
		} else {
			r.Count = int(c)
		}
	}
	if err := d.finish(); err != nil {
		return Result{}, err
	}
	return r, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads from buf, recording the first error and returning zero
// values after it.
type decoder struct {
	buf []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf)
	if n <= 0 || n > 1 && d.buf[n-1] == 0 { // malformed, or not minimal
		d.err = fmt.Errorf("%w: bad length", ErrCorruptOp)
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.buf)) {
		d.err = fmt.Errorf("%w: length %d exceeds the %d bytes left", ErrCorruptOp, n, len(d.buf))
		return ""
	}
	s := string(d.buf[:n])
	d.buf = d.buf[n:]
	return s
}

// bytes reads a length-prefixed byte string without copying it.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.buf)) {
		d.err = fmt.Errorf("%w: length %d exceeds the %d bytes left", ErrCorruptOp, n, len(d.buf))
		return nil
	}
	b := d.buf[:n]
	d.buf = d.buf[n:]
	return b
}

func (d *decoder) finish() error {
	if d.err == nil && len(d.buf) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", ErrCorruptOp, len(d.buf))
	}
	return d.err
}
