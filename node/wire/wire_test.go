package wire_test

import (
	"bytes"
	"errors"
	"math"
	"testing"

	"github.com/dboutique/dboutique/node/wire"
)

// fields is an encoding of one field of each kind, and what reads it back.
func fields() []byte {
	b := wire.AppendString(nil, "bucket")
	b = wire.AppendString(b, "")
	b = wire.AppendU64(b, math.MaxUint64)
	b = wire.AppendBool(b, true)
	b = wire.AppendBool(b, false)
	b = append(b, 7)
	return wire.AppendString(b, "x")
}

func TestRoundTrip(t *testing.T) {
	d := wire.NewDecoder(fields())
	s1, s2, u, t1, f1, c, bs := d.String(), d.String(), d.U64(), d.Bool(), d.Bool(), d.Byte(), d.Bytes()
	if err := d.Finish(); err != nil {
		t.Fatal(err)
	}
	if s1 != "bucket" || s2 != "" || u != math.MaxUint64 || !t1 || f1 || c != 7 || string(bs) != "x" {
		t.Errorf("read %q %q %d %v %v %d %q", s1, s2, u, t1, f1, c, bs)
	}
}

// TestMustFail lists encodings that must be refused, with ErrCorrupt, and
// checks that every read after the first failure returns zero values.
func TestMustFail(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		read func(d *wire.Decoder)
	}{
		{"empty uvarint", nil, func(d *wire.Decoder) { d.Uvarint() }},
		{"unterminated uvarint", []byte{0x80}, func(d *wire.Decoder) { d.Uvarint() }},
		{"non-minimal uvarint", []byte{0x81, 0x00}, func(d *wire.Decoder) { d.Uvarint() }},
		{"uvarint over 64 bits", bytes.Repeat([]byte{0xff}, 11), func(d *wire.Decoder) { d.Uvarint() }},
		{"string longer than input", []byte{5, 'a'}, func(d *wire.Decoder) { _ = d.String() }},
		{"bytes longer than input", []byte{2}, func(d *wire.Decoder) { d.Bytes() }},
		{"count over bytes left", []byte{3, 1, 1}, func(d *wire.Decoder) { d.Count() }},
		{"short u64", []byte{1, 2, 3}, func(d *wire.Decoder) { d.U64() }},
		{"no byte", nil, func(d *wire.Decoder) { d.Byte() }},
		{"flag 2", []byte{2}, func(d *wire.Decoder) { d.Bool() }},
		{"trailing byte", []byte{0, 9}, func(d *wire.Decoder) { _ = d.String() }},
		{"caller's check", []byte{0}, func(d *wire.Decoder) { d.Byte(); d.Failf("kind %d", 0) }},
	} {
		d := wire.NewDecoder(tc.in)
		tc.read(&d)
		if s, u, b := d.String(), d.U64(), d.Bool(); d.Err() != nil && (s != "" || u != 0 || b) {
			t.Errorf("%s: reads after an error gave %q %d %v", tc.name, s, u, b)
		}
		if err := d.Finish(); !errors.Is(err, wire.ErrCorrupt) {
			t.Errorf("%s: Finish = %v, want ErrCorrupt", tc.name, err)
		}
	}
}

// TestFailfKeepsTheFirstError: a decoder reports where it first went wrong.
func TestFailfKeepsTheFirstError(t *testing.T) {
	d := wire.NewDecoder(nil)
	d.Failf("first")
	d.Failf("second")
	if err := d.Err(); err == nil || err.Error() != "wire: corrupt encoding: first" {
		t.Errorf("Err = %v, want the first failure", err)
	}
}

// FuzzDecoder: any input read as any sequence of fields decodes or fails
// with ErrCorrupt, never panics, and a string read re-encodes to its bytes.
func FuzzDecoder(f *testing.F) {
	f.Add(fields(), []byte{0, 0, 1, 2, 2, 3, 0})
	f.Add([]byte{0x81, 0x00}, []byte{4})
	f.Fuzz(func(t *testing.T, in, reads []byte) {
		d := wire.NewDecoder(in)
		for _, r := range reads {
			before := d.Rest()
			switch r % 7 {
			case 0:
				if s := d.String(); d.Err() == nil && !bytes.HasPrefix(before, wire.AppendString(nil, s)) {
					t.Fatalf("String %q does not re-encode to the bytes it read", s)
				}
			case 1:
				d.Bytes()
			case 2:
				d.Uvarint()
			case 3:
				if n := d.Count(); n > uint64(len(before)) {
					t.Fatalf("Count %d over %d bytes", n, len(before))
				}
			case 4:
				d.U64()
			case 5:
				d.Byte()
			case 6:
				d.Bool()
			}
		}
		if err := d.Finish(); err != nil && !errors.Is(err, wire.ErrCorrupt) {
			t.Fatalf("Finish = %v, want nil or ErrCorrupt", err)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	in := fields()
	b.ReportAllocs()
	for b.Loop() {
		d := wire.NewDecoder(in)
		d.Bytes()
		d.Bytes()
		d.U64()
		d.Bool()
		d.Bool()
		d.Byte()
		d.Bytes()
		if d.Finish() != nil {
			b.Fatal("corrupt")
		}
	}
}
