package store_test

import (
	"slices"
	"testing"

	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/node/store/storetest"
)

// decodeVops turns fuzz bytes into versioned writes, four bytes each: kind
// and bucket, key, version, value. Keys, values and versions come from small
// sets so that equal versions and overwrites are common; the empty key and
// binary bytes are among them.
func decodeVops(data []byte) []vop {
	keys := []string{"", "a", "b", "\x00", "\xff", "long-key-long-key"}
	values := []string{"", "x", "y", "\x00\xff", "zzz"}
	buckets := []string{"p", "q"}
	var ops []vop
	for len(data) >= 4 {
		o := vop{
			bucket: buckets[data[0]>>7],
			key:    keys[int(data[1])%len(keys)],
			v:      store.Version(data[2] % 64), // 0 included: "never"
			value:  values[int(data[3])%len(values)],
		}
		switch data[0] % 8 {
		case 0:
			o.kind, o.key, o.value = 'c', "", ""
		case 1:
			o.kind, o.key, o.value = 'd', "", ""
		case 2, 3:
			o.kind = 'x'
		default:
			o.kind = 'p'
		}
		ops = append(ops, o)
		data = data[4:]
	}
	return ops
}

// maxConvergeOps bounds FuzzStoreConverges's inputs: the fuzzing engine
// minimizes an input that adds coverage by trying up to about n²/2 shorter
// ones (a run each, reported only at the end), and a longer input adds
// coverage merely by running a line more often. With 500 writes (2,000
// bytes) minimizing one took the whole minute, at 0 execs/s; with 32 (a
// quarter of a millisecond a run) it takes a few seconds at most, and 32
// writes on 2 buckets of 6 keys hold every ordering worth trying.
const maxConvergeOps = 32

// FuzzStoreConverges applies the decoded writes in their order to one store
// and in another order (reversed, every second one duplicated, pages merged
// in) to another: both copies must be equal and equal to the model.
func FuzzStoreConverges(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 1, 0, 4, 1, 5, 1, 1, 0, 3, 0, 4, 1, 7, 2})         // create, put, drop, newer put
	f.Add([]byte{2, 1, 5, 0, 4, 1, 3, 1, 4, 1, 5, 2, 2, 1, 5, 3})         // tombstone and puts at equal versions
	f.Add([]byte{128, 0, 9, 0, 129, 0, 10, 0, 132, 2, 11, 3, 0, 0, 0, 0}) // bucket q, version 0
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4*maxConvergeOps {
			return
		}
		ops := decodeVops(data)
		a, b := store.NewStore(), store.NewStore()
		for _, o := range ops {
			storetest.MustNil(t, o.apply(a))
		}
		for i := len(ops) - 1; i >= 0; i-- {
			storetest.MustNil(t, ops[i].apply(b))
			if i%2 == 0 {
				storetest.MustNil(t, ops[i].apply(b))
			}
		}
		// A third copy gets a's pages merged in, with tiny pages.
		c := store.NewStore()
		for _, bucket := range a.Records() {
			copyVia(t, a, c, bucket, 1)
		}
		if !slices.Equal(a.Records(), b.Records()) || !slices.Equal(a.Records(), c.Records()) {
			t.Fatalf("records %q, %q, %q", a.Records(), b.Records(), c.Records())
		}
		for _, bucket := range a.Records() {
			want, _ := model(ops, bucket)
			for i, s := range []*store.Store{a, b, c} {
				got, ok := dump(t, s, bucket)
				if !ok || !got.equal(want) {
					t.Fatalf("store %d bucket %s: %+v, want %+v\nops %v", i, bucket, got, want, ops)
				}
			}
			da, _ := a.Digest(bucket)
			db, _ := b.Digest(bucket)
			dc, _ := c.Digest(bucket)
			if da != db || da != dc {
				t.Fatalf("bucket %s: digests differ", bucket)
			}
		}
	})
}
