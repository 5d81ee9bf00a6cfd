package mapstore

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/dboutique/dboutique/node/wire"
)

// The binary encoding of an Op, used to send it to another node:
//
//	kind   byte
//	bucket uvarint length, bytes
//	key    uvarint length, bytes
//	value  uvarint length, bytes
//	flags  uvarint, then expires varint: only when either is not 0
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
	b = wire.AppendString(b, op.Bucket)
	b = wire.AppendString(b, op.Key)
	b = wire.AppendString(b, op.Value)
	if op.Flags != 0 || op.Expires != 0 {
		b = binary.AppendUvarint(b, uint64(op.Flags))
		b = binary.AppendVarint(b, op.Expires)
	}
	return b, nil
}

// DecodeOp decodes an Op encoded by AppendBinary. The Op is validated; a
// malformed or trailing-garbage input gives wire.ErrCorrupt, a well-formed
// encoding of an invalid Op gives ErrInvalidOp.
func DecodeOp(b []byte) (Op, error) { return DecodeOpAfter(b, "") }

// DecodeOpAfter is DecodeOp for an operation decoded after one on bucket
// prev: when it names the same bucket, it reuses the string prev instead of
// allocating one. Operations decoded together mostly name one bucket.
func DecodeOpAfter(b []byte, prev string) (Op, error) {
	if len(b) == 0 {
		return Op{}, fmt.Errorf("%w: empty op", wire.ErrCorrupt)
	}
	d := wire.NewDecoder(b[1:])
	op := Op{Kind: Kind(b[0])}
	if bucket := d.Bytes(); string(bucket) == prev {
		op.Bucket = prev
	} else {
		op.Bucket = string(bucket)
	}
	op.Key = d.String()
	op.Value = d.String()
	if d.Err() == nil && len(d.Rest()) > 0 {
		f := d.Uvarint()
		op.Expires = d.Varint()
		switch {
		case d.Err() != nil:
		case f >= uint64(flagsEnd):
			d.Failf("flags %#x", f)
		case f == 0 && op.Expires == 0:
			d.Failf("flags and expiry written though both are 0")
		default:
			op.Flags = Flags(f)
		}
	}
	if err := d.Finish(); err != nil {
		return Op{}, err
	}
	if err := op.Validate(); err != nil {
		return Op{}, err
	}
	return op, nil
}

// AppendBinary appends the encoding of r to b and returns the result.
func (r Result) AppendBinary(b []byte) ([]byte, error) {
	b = wire.AppendString(b, r.Value)
	b = binary.AppendUvarint(b, uint64(len(r.Names)))
	for _, n := range r.Names {
		b = wire.AppendString(b, n)
	}
	if r.Count > 0 { // and never negative
		b = binary.AppendUvarint(b, uint64(r.Count))
	}
	return b, nil
}

// DecodeResult decodes a Result encoded by Result.AppendBinary.
func DecodeResult(b []byte) (Result, error) {
	d := wire.NewDecoder(b)
	var r Result
	r.Value = d.String()
	n := d.Count() // every name takes at least one byte
	if n > 0 {
		r.Names = make([]string, n)
		for i := range r.Names {
			r.Names[i] = d.String()
		}
	}
	if d.Err() == nil && len(d.Rest()) > 0 {
		// A count of 0 is not written, so that each Result has one encoding.
		if c := d.Uvarint(); d.Err() == nil && (c == 0 || c > math.MaxInt32) {
			d.Failf("count %d", c)
		} else {
			r.Count = int(c)
		}
	}
	if err := d.Finish(); err != nil {
		return Result{}, err
	}
	return r, nil
}
