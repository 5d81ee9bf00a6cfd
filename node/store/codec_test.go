package store_test

import (
	"bytes"
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/node/store/storetest"
	"github.com/dboutique/dboutique/node/wire"
)

var (
	_ encoding.BinaryAppender = store.Op{}
	_ encoding.BinaryAppender = store.Result{}
)

// bs builds a byte slice from pieces: byte, int (one byte), string or []byte.
func bs(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch p := p.(type) {
		case byte:
			b = append(b, p)
		case int:
			b = append(b, byte(p))
		case string:
			b = append(b, p...)
		case []byte:
			b = append(b, p...)
		default:
			panic(fmt.Sprintf("bs: %T", p))
		}
	}
	return b
}

func uv(v uint64) []byte { return binary.AppendUvarint(nil, v) }

// overflow is a uvarint that does not fit in 64 bits.
var overflow = bytes.Repeat([]byte{0xff}, 10)

func appendOp(t testing.TB, op store.Op) []byte {
	t.Helper()
	b, err := op.AppendBinary(nil)
	if err != nil {
		t.Fatalf("AppendBinary(%+v): %v", op, err)
	}
	return b
}

func appendResult(t testing.TB, r store.Result) []byte {
	t.Helper()
	b, err := r.AppendBinary(nil)
	if err != nil {
		t.Fatalf("AppendBinary(%+v): %v", r, err)
	}
	return b
}

// TestOpEncodingGolden pins the wire format: kind byte, then bucket, key and
// value each as uvarint length and bytes.
func TestOpEncodingGolden(t *testing.T) {
	for _, tc := range []struct {
		op   store.Op
		want []byte
	}{
		{storetest.Buckets(), bs(6, 0, 0, 0)},
		{storetest.Create("b"), bs(1, 1, "b", 0, 0)},
		{storetest.Drop("bk"), bs(5, 2, "bk", 0, 0)},
		{storetest.Keys("b"), bs(7, 1, "b", 0, 0)},
		{storetest.Put("b", "k", "v"), bs(2, 1, "b", 1, "k", 1, "v")},
		{storetest.Get("b", "key"), bs(3, 1, "b", 3, "key", 0)},
		{storetest.Del("b", ""), bs(4, 1, "b", 0, 0)},
		{storetest.Put("b", "k", strings.Repeat("v", 300)), bs(2, 1, "b", 1, "k", 0xac, 0x02, strings.Repeat("v", 300))},
	} {
		if got := appendOp(t, tc.op); !bytes.Equal(got, tc.want) {
			t.Errorf("AppendBinary(%v %q %q %.10q) = % x, want % x", tc.op.Kind, tc.op.Bucket, tc.op.Key, tc.op.Value, got, tc.want)
		}
	}
}

func TestResultEncodingGolden(t *testing.T) {
	for _, tc := range []struct {
		r    store.Result
		want []byte
	}{
		{store.Result{}, bs(0, 0)},
		{store.Result{Names: []string{}}, bs(0, 0)},
		{store.Result{Value: "v"}, bs(1, "v", 0)},
		{store.Result{Names: []string{"a", "bc"}}, bs(0, 2, 1, "a", 2, "bc")},
		{store.Result{Names: []string{""}}, bs(0, 1, 0)},
		{store.Result{Count: 1}, bs(0, 0, 1)},
		{store.Result{Value: "v", Count: 300}, bs(1, "v", 0, 0xac, 0x02)},
	} {
		if got := appendResult(t, tc.r); !bytes.Equal(got, tc.want) {
			t.Errorf("AppendBinary(%+v) = % x, want % x", tc.r, got, tc.want)
		}
	}
}

func TestAppendBinaryAppends(t *testing.T) {
	prefix := []byte("prefix")
	op := storetest.Put("b", "k", "v")
	got, err := op.AppendBinary(slices.Clone(prefix))
	if err != nil {
		t.Fatal(err)
	}
	if want := append(slices.Clone(prefix), appendOp(t, op)...); !bytes.Equal(got, want) {
		t.Errorf("Op.AppendBinary(prefix) = %q, want %q", got, want)
	}

	r := store.Result{Value: "v", Names: []string{"a"}}
	got, err = r.AppendBinary(slices.Clone(prefix))
	if err != nil {
		t.Fatal(err)
	}
	if want := append(slices.Clone(prefix), appendResult(t, r)...); !bytes.Equal(got, want) {
		t.Errorf("Result.AppendBinary(prefix) = %q, want %q", got, want)
	}
}

// flaggedOps are valid ops whose encoding ends with flags and an expiry.
var flaggedOps = []store.Op{
	{Kind: store.KindSet, Bucket: "b", Key: "k", Value: "v", Expires: 1_700_000_000_000, Flags: store.FlagNX | store.FlagGet},
	{Kind: store.KindExpire, Bucket: "b", Expires: -5, Flags: store.FlagRelative | store.FlagBucket},
	{Kind: store.KindTTL, Bucket: "b", Flags: store.FlagBucket},
	{Kind: store.KindGetEx, Bucket: "b", Key: "k", Flags: store.FlagPersist},
	{Kind: store.KindPut, Bucket: "b", Key: "k", Value: "v", Expires: 1},
}

func TestOpRoundTrip(t *testing.T) {
	for _, op := range append(slices.Clone(validOps), flaggedOps...) {
		b := appendOp(t, op)
		got, err := store.DecodeOp(b)
		if err != nil {
			t.Errorf("DecodeOp(AppendBinary(%v %.20q)): %v", op.Kind, op.Bucket, err)
			continue
		}
		if got != op {
			t.Errorf("round trip of %v %.20q %.20q %.20q gave %v %.20q %.20q %.20q",
				op.Kind, op.Bucket, op.Key, op.Value, got.Kind, got.Bucket, got.Key, got.Value)
		}
	}
}

// flaggedInvalidOps are ops with flags or an expiry that their kind does not
// take.
var flaggedInvalidOps = []store.Op{
	{Kind: store.KindGet, Bucket: "b", Key: "k", Expires: 5},
	{Kind: store.KindSet, Bucket: "b", Key: "k", Value: "v", Flags: store.FlagBucket},
	{Kind: 48, Bucket: "b", Flags: store.FlagNX},
}

// TestDecodeOpInvalid: a well-formed encoding of an op that fails Validate
// is ErrInvalidOp, not ErrCorruptOp.
func TestDecodeOpInvalid(t *testing.T) {
	for _, op := range append(slices.Clone(invalidOps), flaggedInvalidOps...) {
		_, err := store.DecodeOp(appendOp(t, op))
		storetest.CheckErr(t, fmt.Sprintf("DecodeOp(AppendBinary(%+v))", op), err, store.ErrInvalidOp)
	}
}

// TestDecodeOpCopies: the decoded op does not alias the input buffer, which
// the transport reuses.
func TestDecodeOpCopies(t *testing.T) {
	b := appendOp(t, storetest.Put("bucket", "key", "value"))
	op, err := store.DecodeOp(b)
	storetest.MustNil(t, err)
	for i := range b {
		b[i] = 'X'
	}
	if want := storetest.Put("bucket", "key", "value"); op != want {
		t.Errorf("op changed with its input buffer: %+v", op)
	}

	b = appendResult(t, store.Result{Value: "value", Names: []string{"name"}})
	r, err := store.DecodeResult(b)
	storetest.MustNil(t, err)
	for i := range b {
		b[i] = 'X'
	}
	if r.Value != "value" || !slices.Equal(r.Names, []string{"name"}) {
		t.Errorf("result changed with its input buffer: %+v", r)
	}
}

// TestResultRoundTrip: DecodeResult(AppendBinary(r)) gives back r, except
// that zero names always decode as nil Names, whether r.Names was nil or
// empty.
func TestResultRoundTrip(t *testing.T) {
	many := make([]string, 1000)
	for i := range many {
		many[i] = fmt.Sprint(i)
	}
	for _, r := range []store.Result{
		{},
		{Names: []string{}},
		{Value: "v"},
		{Value: "", Names: []string{""}},
		{Value: "\x00\xff", Names: []string{"", "", ""}},
		{Names: []string{"a", "b", "c"}},
		{Value: "v", Names: []string{"a"}},
		{Names: []string{"\x00", "\xff", "ключ"}},
		{Value: strings.Repeat("v", 70000)},
		{Names: many},
		{Names: []string{strings.Repeat("n", 200), ""}},
		{Count: 1},
		{Value: "v", Names: []string{"k", "v"}, Count: 1 << 20},
	} {
		b := appendResult(t, r)
		got, err := store.DecodeResult(b)
		if err != nil {
			t.Errorf("DecodeResult(AppendBinary(%.40v)): %v", r, err)
			continue
		}
		if got.Value != r.Value || !slices.Equal(got.Names, r.Names) || got.Count != r.Count {
			t.Errorf("round trip of %.40v gave %.40v", r, got)
		}
		if len(r.Names) == 0 && got.Names != nil {
			t.Errorf("round trip of %.40v: zero names decoded as %#v, want nil", r, got.Names)
		}
		if len(r.Names) > 0 && got.Names == nil {
			t.Errorf("round trip of %.40v: names decoded as nil", r)
		}
	}
}

// TestDecodeOpCorrupt: inputs that are not a well-formed encoding.
func TestDecodeOpCorrupt(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"kind only", bs(2)},
		{"bucket length over remaining", bs(2, 1)},
		{"bucket length over remaining by one", bs(2, 3, "bk", 0, 0)},
		{"no key length", bs(2, 1, "b")},
		{"key length over remaining", bs(2, 1, "b", 5, "k")},
		{"no value length", bs(2, 1, "b", 1, "k")},
		{"value length over remaining", bs(2, 1, "b", 1, "k", 2, "v")},
		{"truncated bucket length", bs(2, 0x80)},
		{"truncated value length", bs(2, 1, "b", 1, "k", 0x80)},
		{"truncated long length", bs(2, 0xff, 0xff, 0xff)},
		{"huge bucket length", bs(2, uv(1<<62), "b", 0, 0)},
		{"max uint64 bucket length", bs(2, uv(1<<64-1), "b", 0, 0)},
		{"huge value length", bs(2, 1, "b", 1, "k", uv(1<<40), "v")},
		{"overflowing varint", bs(2, overflow, 0, 0)},
		{"11-byte varint", bs(2, bytes.Repeat([]byte{0x80}, 10), 0, 0, 0)},
		{"trailing zero", bs(2, 1, "b", 1, "k", 1, "v", 0)},
		{"trailing garbage", bs(2, 1, "b", 1, "k", 1, "v", "garbage")},
		{"trailing bytes after buckets", bs(6, 0, 0, 0, 6, 0, 0, 0)},
		{"invalid kind and truncated", bs(0)},
		{"invalid kind and trailing bytes", bs(99, 0, 0, 0, 0)},
	} {
		op, err := store.DecodeOp(tc.in)
		storetest.CheckErr(t, fmt.Sprintf("%s: DecodeOp(% x)", tc.name, tc.in), err, wire.ErrCorrupt)
		if op != (store.Op{}) {
			t.Errorf("%s: DecodeOp returned %+v with its error, want the zero Op", tc.name, op)
		}
	}
}

// TestDecodeResultCorrupt: inputs that are not a well-formed encoding.
func TestDecodeResultCorrupt(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"no name count", bs(0)},
		{"value length over remaining", bs(1)},
		{"value length over remaining by one", bs(5, "abcd", 0)},
		{"truncated value length", bs(0x80)},
		{"truncated name count", bs(0, 0x80)},
		{"overflowing value length", bs(overflow, 0)},
		{"overflowing name count", bs(0, overflow)},
		{"huge value length", bs(uv(1<<60), 0)},
		{"one name, no bytes", bs(0, 1)},
		{"two names, one byte", bs(0, 2, 0)},
		{"2^60 names in 10 bytes", bs(0, uv(1<<60))},
		{"max uint64 names", bs(0, uv(1<<64-1), 0, 0, 0)},
		{"name count just over bytes left", bs(0, 4, 0, 0, 0)},
		{"name length over remaining", bs(0, 1, 5, "a")},
		{"second name missing", bs(0, 2, 1, "a")},
		{"truncated name length", bs(0, 1, 0x80)},
		{"huge name length", bs(0, 1, uv(1<<62), "a")},
		{"trailing zero (a count of 0 is not written)", bs(0, 0, 0)},
		{"trailing after names", bs(0, 1, 1, "a", "x", 1)},
		{"trailing after count", bs(0, 0, 1, 1)},
		{"count over 2^31", bs(0, 0, uv(1<<40))},
		{"truncated count", bs(0, 0, 0x80)},
	} {
		r, err := store.DecodeResult(tc.in)
		storetest.CheckErr(t, fmt.Sprintf("%s: DecodeResult(% x)", tc.name, tc.in), err, wire.ErrCorrupt)
		if r.Value != "" || r.Names != nil {
			t.Errorf("%s: DecodeResult returned %+v with its error, want the zero Result", tc.name, r)
		}
	}
}

// TestDecodeNonMinimalVarint: a length written with more bytes than needed
// (0x80 0x00 for 0) either is rejected as corrupt or decodes to the same
// value as the minimal form; it never changes the meaning. See the fuzz
// targets for the general property.
func TestDecodeNonMinimalVarint(t *testing.T) {
	for _, tc := range []struct {
		in, minimal []byte
	}{
		{bs(2, 0x81, 0x00, "b", 0, 0), bs(2, 1, "b", 0, 0)},
		{bs(2, 1, "b", 0x80, 0x80, 0x00, 0x80, 0x00), bs(2, 1, "b", 0, 0)},
	} {
		want, err := store.DecodeOp(tc.minimal)
		storetest.MustNil(t, err)
		got, err := store.DecodeOp(tc.in)
		if err != nil {
			storetest.CheckErr(t, fmt.Sprintf("DecodeOp(% x)", tc.in), err, wire.ErrCorrupt)
		} else if got != want {
			t.Errorf("DecodeOp(% x) = %+v, want %+v", tc.in, got, want)
		}
	}
	for _, tc := range []struct {
		in, minimal []byte
	}{
		{bs(0x80, 0x00, 0x80, 0x00), bs(0, 0)},
		{bs(1, "v", 0x81, 0x00, 0x81, 0x00, "a"), bs(1, "v", 1, 1, "a")},
	} {
		want, err := store.DecodeResult(tc.minimal)
		storetest.MustNil(t, err)
		got, err := store.DecodeResult(tc.in)
		if err != nil {
			storetest.CheckErr(t, fmt.Sprintf("DecodeResult(% x)", tc.in), err, wire.ErrCorrupt)
		} else if got.Value != want.Value || !slices.Equal(got.Names, want.Names) || (got.Names == nil) != (want.Names == nil) {
			t.Errorf("DecodeResult(% x) = %+v, want %+v", tc.in, got, want)
		}
	}
}

// TestDecodeAllocationBounded: decoding allocates in proportion to its input,
// whatever lengths and counts the input claims.
func TestDecodeAllocationBounded(t *testing.T) {
	manyEmptyNames := bs(0, uv(4096), bytes.Repeat([]byte{0}, 4096))
	for _, tc := range []struct {
		name   string
		in     []byte
		decode func([]byte) error
	}{
		{"op claiming a 2^62-byte bucket", bs(2, uv(1<<62), "b", 0, 0), decodeOp},
		{"op claiming a 2^40-byte value", bs(2, 1, "b", 1, "k", uv(1<<40)), decodeOp},
		{"result claiming 2^60 names", bs(0, uv(1<<60)), decodeResult},
		{"result claiming 2^64-1 names", bs(0, uv(1<<64-1)), decodeResult},
		{"result claiming a 2^60-byte value", bs(uv(1<<60), 0), decodeResult},
		{"result of 4096 empty names", manyEmptyNames, decodeResult},
	} {
		// A string header is 16 bytes and each name costs at least one input
		// byte; allow for that, the error's text, and the result itself.
		limit := 24*uint64(len(tc.in)) + 1024
		got := bytesPerRun(100, func() { _ = tc.decode(tc.in) })
		if got > limit {
			t.Errorf("%s: decoding %d bytes allocated %d bytes, want at most %d", tc.name, len(tc.in), got, limit)
		}
	}
}

func decodeOp(b []byte) error {
	_, err := store.DecodeOp(b)
	return err
}

func decodeResult(b []byte) error {
	_, err := store.DecodeResult(b)
	return err
}

// bytesPerRun returns the average number of heap bytes f allocates.
func bytesPerRun(runs int, f func()) uint64 {
	f() // warm up
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / uint64(runs)
}

// refUvarint reads a uvarint, also reporting whether it was written in the
// fewest bytes possible.
func refUvarint(b []byte) (v uint64, n int, minimal, ok bool) {
	v, n = binary.Uvarint(b)
	if n <= 0 {
		return 0, 0, false, false
	}
	return v, n, n == 1 || b[n-1] != 0, true
}

// refReader is an independent reading of the documented format, the oracle
// for the fuzz targets. It allocates nothing in proportion to claimed sizes.
type refReader struct {
	buf     []byte
	ok      bool // no structural error so far
	minimal bool // every uvarint so far was minimal
}

func (r *refReader) uvarint() uint64 {
	if !r.ok {
		return 0
	}
	v, n, min, ok := refUvarint(r.buf)
	if !ok {
		r.ok = false
		return 0
	}
	r.minimal = r.minimal && min
	r.buf = r.buf[n:]
	return v
}

func (r *refReader) string() string {
	n := r.uvarint()
	if !r.ok || n > uint64(len(r.buf)) {
		r.ok = false
		return ""
	}
	s := string(r.buf[:n])
	r.buf = r.buf[n:]
	return s
}

// refFlags is every flag an encoded op may carry: another bit set is
// corrupt, whatever the op's kind takes (that is Validate's concern).
const refFlags = store.FlagNX | store.FlagXX | store.FlagGT | store.FlagLT | store.FlagKeepTTL |
	store.FlagGet | store.FlagPersist | store.FlagRelative | store.FlagBucket

// refDecodeOp reports whether b is structurally well formed, the op it holds
// (not validated), and whether its varints were minimal. After the value
// come the flags and the expiry (zig-zag), both or neither: written only
// when one is not 0.
func refDecodeOp(b []byte) (op store.Op, ok, minimal bool) {
	if len(b) == 0 {
		return store.Op{}, false, false
	}
	r := refReader{buf: b[1:], ok: true, minimal: true}
	op = store.Op{Kind: store.Kind(b[0]), Bucket: r.string(), Key: r.string(), Value: r.string()}
	if r.ok && len(r.buf) > 0 {
		f := r.uvarint()
		z := r.uvarint()
		op.Flags, op.Expires = store.Flags(f), int64(z>>1)^-int64(z&1)
		r.ok = r.ok && f&^uint64(refFlags) == 0 && (f != 0 || z != 0)
	}
	return op, r.ok && len(r.buf) == 0, r.minimal
}

func refDecodeResult(b []byte) (res store.Result, ok, minimal bool) {
	r := refReader{buf: b, ok: true, minimal: true}
	res.Value = r.string()
	n := r.uvarint()
	for i := uint64(0); i < n && r.ok; i++ {
		res.Names = append(res.Names, r.string())
	}
	if r.ok && len(r.buf) > 0 {
		c := r.uvarint()
		r.ok = r.ok && c > 0 && c <= math.MaxInt32
		res.Count = int(c)
	}
	return res, r.ok && len(r.buf) == 0, r.minimal
}

func seedCorpus(f *testing.F, ops []store.Op, results []store.Result, extra ...[]byte) {
	for _, op := range ops {
		b, _ := op.AppendBinary(nil)
		f.Add(b)
	}
	for _, r := range results {
		b, _ := r.AppendBinary(nil)
		f.Add(b)
	}
	for _, b := range extra {
		f.Add(b)
	}
}

var fuzzResults = []store.Result{
	{}, {Value: "v"}, {Names: []string{"a", "bc"}}, {Value: "x", Names: []string{"", ""}}, {Count: 7},
}

var fuzzExtra = [][]byte{
	nil, bs(0), bs(2, 0x80), bs(0, uv(1<<60)), bs(2, overflow), bs(2, 0x81, 0x00, "b", 0, 0), bs(0x80, 0x00, 0x80, 0x00),
}

// maxDecodeInput bounds the decoders' fuzz inputs. The fuzzing engine
// minimizes an input that adds coverage by trying up to about n²/2 shorter
// ones (a run each, reported only at the end), and a longer input adds
// coverage merely by running a loop more often: a result of 2,429 bytes with
// over 64 names took FuzzDecodeResult's whole minute, 756,000 tries at 0
// execs/s. 256 bytes hold every structure, lengths of two bytes included.
const maxDecodeInput = 256

// FuzzDecodeOp: any input decodes or fails with ErrCorruptOp/ErrInvalidOp,
// never panics, and agrees with the reference reading of the format. What
// decodes re-encodes to an input that decodes to the same op, and to the very
// same bytes when the input's lengths were minimal varints. An input with a
// non-minimal length (0x80 0x00 for 0) may decode or be rejected as corrupt:
// the codec is canonical on what it writes, and either choice keeps
// decode(encode(decode(b))) == decode(b).
func FuzzDecodeOp(f *testing.F) {
	ops := slices.Concat(validOps[:len(validOps)-1], flaggedOps, invalidOps, flaggedInvalidOps)
	seedCorpus(f, ops, fuzzResults, fuzzExtra...)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > maxDecodeInput {
			return
		}
		in := slices.Clone(b)
		op, err := store.DecodeOp(b)
		if !bytes.Equal(in, b) {
			t.Fatalf("DecodeOp modified its input")
		}
		ref, wellFormed, minimal := refDecodeOp(b)
		switch {
		case !wellFormed:
			if !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("DecodeOp(% x) = %+v, %v; want ErrCorruptOp", b, op, err)
			}
			return
		case !minimal && errors.Is(err, wire.ErrCorrupt):
			return // a decoder may reject lengths that are not minimal varints
		case ref.Validate() != nil:
			if !errors.Is(err, store.ErrInvalidOp) || errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("DecodeOp(% x) = %+v, %v; want ErrInvalidOp", b, op, err)
			}
			return
		case err != nil:
			t.Fatalf("DecodeOp(% x): %v; want %+v", b, err, ref)
		case op != ref:
			t.Fatalf("DecodeOp(% x) = %+v, want %+v", b, op, ref)
		}
		enc, err := op.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		if minimal && !bytes.Equal(enc, b) {
			t.Fatalf("DecodeOp(% x) re-encodes as % x", b, enc)
		}
		if len(enc) > len(b) {
			t.Fatalf("DecodeOp(% x) re-encodes longer: % x", b, enc)
		}
		again, err := store.DecodeOp(enc)
		if err != nil || again != op {
			t.Fatalf("decode(encode(decode(% x))) = %+v, %v; want %+v", b, again, err, op)
		}
	})
}

// FuzzDecodeResult: as FuzzDecodeOp, for results. Zero names decode as nil.
func FuzzDecodeResult(f *testing.F) {
	seedCorpus(f, validOps[:len(validOps)-1], fuzzResults, fuzzExtra...)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > maxDecodeInput {
			return
		}
		in := slices.Clone(b)
		r, err := store.DecodeResult(b)
		if !bytes.Equal(in, b) {
			t.Fatalf("DecodeResult modified its input")
		}
		ref, wellFormed, minimal := refDecodeResult(b)
		if !wellFormed {
			if !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("DecodeResult(% x) = %+v, %v; want ErrCorruptOp", b, r, err)
			}
			return
		}
		if !minimal && errors.Is(err, wire.ErrCorrupt) {
			return // a decoder may reject lengths that are not minimal varints
		}
		if err != nil {
			t.Fatalf("DecodeResult(% x): %v; want %+v", b, err, ref)
		}
		if r.Value != ref.Value || !slices.Equal(r.Names, ref.Names) || r.Count != ref.Count {
			t.Fatalf("DecodeResult(% x) = %+v, want %+v", b, r, ref)
		}
		if len(r.Names) == 0 && r.Names != nil {
			t.Fatalf("DecodeResult(% x): zero names as %#v, want nil", b, r.Names)
		}
		enc, err := r.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		if minimal && !bytes.Equal(enc, b) {
			t.Fatalf("DecodeResult(% x) re-encodes as % x", b, enc)
		}
		if len(enc) > len(b) {
			t.Fatalf("DecodeResult(% x) re-encodes longer: % x", b, enc)
		}
		again, err := store.DecodeResult(enc)
		if err != nil || again.Value != r.Value || !slices.Equal(again.Names, r.Names) || (again.Names == nil) != (r.Names == nil) {
			t.Fatalf("decode(encode(decode(% x))) = %+v, %v; want %+v", b, again, err, r)
		}
	})
}
