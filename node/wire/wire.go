package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrCorrupt: bytes handed to a decoder are not a well-formed encoding, or
// exceed its size limits.
var ErrCorrupt = errors.New("wire: corrupt encoding")

// AppendString appends s as a uvarint length and its bytes.
func AppendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// AppendU64 appends v as 8 big-endian bytes.
func AppendU64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

// AppendBool appends v as one byte, 0 or 1.
func AppendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// Decoder reads the fields of an encoding in order. It records the first
// error and returns zero values after it, so a caller reads every field and
// checks once, with Finish.
type Decoder struct {
	buf []byte
	err error
}

// NewDecoder returns a Decoder reading b. It does not copy b; Bytes returns
// slices of it.
func NewDecoder(b []byte) Decoder { return Decoder{buf: b} }

// Err returns the first error met, or nil.
func (d *Decoder) Err() error { return d.err }

// Rest returns the bytes not read yet.
func (d *Decoder) Rest() []byte { return d.buf }

// Failf records an error wrapping ErrCorrupt, unless one is recorded
// already: a caller's own check of a field it has read.
func (d *Decoder) Failf(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
	}
}

// Uvarint reads a minimally written unsigned varint.
func (d *Decoder) Uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf)
	if n <= 0 || n > 1 && d.buf[n-1] == 0 { // malformed, or not minimal
		d.err = fmt.Errorf("%w: bad length", ErrCorrupt)
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

// Varint reads a minimally written signed (zig-zag) varint.
func (d *Decoder) Varint() int64 {
	u := d.Uvarint()
	return int64(u>>1) ^ -int64(u&1)
}

// AppendVarint appends v as a signed (zig-zag) varint, as Varint reads it.
func AppendVarint(b []byte, v int64) []byte { return binary.AppendVarint(b, v) }

// Count reads a count of items that each take at least one byte, and
// checks it against the bytes left, which bounds what the caller allocates.
func (d *Decoder) Count() uint64 {
	n := d.Uvarint()
	if d.err == nil && n > uint64(len(d.buf)) {
		d.err = fmt.Errorf("%w: %d items in %d bytes", ErrCorrupt, n, len(d.buf))
		return 0
	}
	return n
}

// String reads a length-prefixed string.
func (d *Decoder) String() string {
	b := d.Bytes()
	if d.err != nil {
		return ""
	}
	return string(b)
}

// Bytes reads a length-prefixed byte string without copying it.
func (d *Decoder) Bytes() []byte {
	n := d.Uvarint()
	if d.err == nil && n > uint64(len(d.buf)) {
		d.err = fmt.Errorf("%w: length %d exceeds the %d bytes left", ErrCorrupt, n, len(d.buf))
	}
	return d.take(n, "")
}

// U64 reads 8 big-endian bytes.
func (d *Decoder) U64() uint64 {
	if b := d.take(8, "short integer"); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

// Byte reads one byte.
func (d *Decoder) Byte() byte {
	if b := d.take(1, "short message"); b != nil {
		return b[0]
	}
	return 0
}

// take reads the next n bytes; when fewer are left it records short, or
// reads nothing after an earlier error.
func (d *Decoder) take(n uint64, short string) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.buf)) {
		d.err = fmt.Errorf("%w: %s", ErrCorrupt, short)
		return nil
	}
	b := d.buf[:n:n]
	d.buf = d.buf[n:]
	return b
}

// Bool reads a byte that must be 0 or 1.
func (d *Decoder) Bool() bool {
	c := d.Byte()
	if c > 1 {
		d.Failf("bad flag %d", c)
	}
	return c == 1
}

// Finish returns the first error met, or one for bytes left unread.
func (d *Decoder) Finish() error {
	if d.err == nil && len(d.buf) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(d.buf))
	}
	return d.err
}
