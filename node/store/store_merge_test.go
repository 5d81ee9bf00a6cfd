package store_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/node/store/storetest"
)

// vop is one versioned write, as a replica receives it.
type vop struct {
	kind   byte // 'c' create, 'd' drop, 'p' put, 'x' delete (tombstone)
	bucket string
	key    string
	value  string
	v      store.Version
}

func (o vop) String() string {
	switch o.kind {
	case 'c', 'd':
		return fmt.Sprintf("%c(%s)@%d", o.kind, o.bucket, o.v)
	}
	return fmt.Sprintf("%c(%s,%q,%q)@%d", o.kind, o.bucket, o.key, o.value, o.v)
}

func (o vop) entry() store.Entry {
	return store.Entry{Key: o.key, Value: o.value, Version: o.v, Deleted: o.kind == 'x'}
}

func (o vop) apply(s *store.Store) error {
	switch o.kind {
	case 'c':
		return s.ApplyCreate(o.bucket, o.v)
	case 'd':
		return s.ApplyDrop(o.bucket, o.v)
	case 'p', 'x':
		return s.ApplyEntry(o.bucket, o.entry())
	}
	panic("vop: unknown kind " + string(o.kind))
}

func vc(v store.Version) vop { return vop{kind: 'c', bucket: "b", v: v} }
func vd(v store.Version) vop { return vop{kind: 'd', bucket: "b", v: v} }
func vp(k, val string, v store.Version) vop {
	return vop{kind: 'p', bucket: "b", key: k, value: val, v: v}
}
func vx(k string, v store.Version) vop { return vop{kind: 'x', bucket: "b", key: k, v: v} }
func live(k, val string, v store.Version) store.Entry {
	return store.Entry{Key: k, Value: val, Version: v}
}
func tomb(k string, v store.Version) store.Entry {
	return store.Entry{Key: k, Version: v, Deleted: true}
}

// copyState is everything a copy of a bucket holds.
type copyState struct {
	Meta    store.BucketMeta
	Entries []store.Entry // sorted by key
}

func (c copyState) equal(o copyState) bool {
	return c.Meta == o.Meta && slices.Equal(c.Entries, o.Entries)
}

// dump reads a copy of bucket through Page, one shard at a time, and checks
// that its Digest is what its entries hash to (recomputed from scratch) and
// that every entry sits in the shard of its key.
func dump(t testing.TB, s *store.Store, bucket string) (copyState, bool) {
	t.Helper()
	dg, ok := s.Digest(bucket)
	meta, mok := s.Meta(bucket)
	if ok != mok {
		t.Fatalf("%s: Digest ok = %v, Meta ok = %v", bucket, ok, mok)
	}
	if !ok {
		if _, _, pok := s.Page(bucket, 0, "", 1<<30); pok {
			t.Fatalf("%s: Page ok without a record", bucket)
		}
		return copyState{}, false
	}
	if dg.Meta != meta {
		t.Fatalf("%s: Digest.Meta = %+v, Meta = %+v", bucket, dg.Meta, meta)
	}
	c := copyState{Meta: meta}
	for sh := range store.NumShards {
		es, more, ok := s.Page(bucket, sh, "", 1<<30)
		if !ok || more {
			t.Fatalf("%s: Page(shard %d) = more %v, ok %v", bucket, sh, more, ok)
		}
		var h uint64
		for _, e := range es {
			if store.ShardOf(e.Key) != sh {
				t.Fatalf("%s: key %q in shard %d, ShardOf says %d", bucket, e.Key, sh, store.ShardOf(e.Key))
			}
			if e.Deleted && e.Value != "" {
				t.Fatalf("%s: tombstone %q holds value %q", bucket, e.Key, e.Value)
			}
			h ^= e.Hash()
		}
		if h != dg.Shards[sh] {
			t.Fatalf("%s: shard %d digest %#x, entries hash to %#x", bucket, sh, dg.Shards[sh], h)
		}
		c.Entries = append(c.Entries, es...)
	}
	slices.SortFunc(c.Entries, func(a, b store.Entry) int { return strings.Compare(a.Key, b.Key) })
	if len(c.Entries) > 0 && !meta.Exists() {
		t.Fatalf("%s: dropped copy %+v holds entries %v", bucket, meta, c.Entries)
	}
	// The unversioned reads agree with the entries.
	var liveKeys []string
	for _, e := range c.Entries {
		if !e.Deleted {
			liveKeys = append(liveKeys, e.Key)
		}
	}
	keys, err := s.Keys(bucket)
	switch {
	case meta.Exists() && (err != nil || !slices.Equal(keys, liveKeys)):
		t.Fatalf("%s: Keys = %q, %v; want %q", bucket, keys, err, liveKeys)
	case !meta.Exists() && !errors.Is(err, store.ErrBucketNotFound):
		t.Fatalf("%s: Keys of a dropped bucket: %v", bucket, err)
	}
	return c, true
}

// model computes what a copy holds after ops on bucket, in any order: the
// latest drop D; for each key the newest entry of version > D; Created the
// greatest create or entry version above D, or 0 when there is none.
func model(ops []vop, bucket string) (copyState, bool) {
	var c copyState
	seen := false
	for _, o := range ops {
		if o.bucket == bucket {
			seen = true
			if o.kind == 'd' {
				c.Meta.Dropped = max(c.Meta.Dropped, o.v)
			}
		}
	}
	best := make(map[string]store.Entry)
	for _, o := range ops {
		if o.bucket != bucket || o.kind == 'd' || o.v <= c.Meta.Dropped {
			continue
		}
		c.Meta.Created = max(c.Meta.Created, o.v)
		if o.kind == 'c' {
			continue
		}
		e := o.entry()
		if e.Deleted {
			e.Value = ""
		}
		if old, ok := best[e.Key]; !ok || e.Newer(old) {
			best[e.Key] = e
		}
	}
	for _, k := range slices.Sorted(maps.Keys(best)) {
		c.Entries = append(c.Entries, best[k])
	}
	return c, seen
}

func TestEntryNewer(t *testing.T) {
	for _, tc := range []struct {
		name string
		a, b store.Entry
		want bool // a.Newer(b)
	}{
		{"higher version wins", live("k", "a", 5), live("k", "z", 4), true},
		{"lower version loses", live("k", "z", 4), live("k", "a", 5), false},
		{"higher version put beats tombstone", live("k", "a", 5), tomb("k", 4), true},
		{"higher version tombstone beats put", tomb("k", 5), live("k", "a", 4), true},
		{"older tombstone loses", tomb("k", 4), live("k", "a", 5), false},
		{"equal versions: tombstone wins", tomb("k", 5), live("k", "zzz", 5), true},
		{"equal versions: put loses to tombstone", live("k", "zzz", 5), tomb("k", 5), false},
		{"equal versions: greater value wins", live("k", "b", 5), live("k", "a", 5), true},
		{"equal versions: smaller value loses", live("k", "a", 5), live("k", "b", 5), false},
		{"equal versions: empty value loses", live("k", "", 5), live("k", "\x00", 5), false},
		{"identical puts", live("k", "a", 5), live("k", "a", 5), false},
		{"identical tombstones", tomb("k", 5), tomb("k", 5), false},
		{"anything beats version 0", live("k", "", 1), store.Entry{Key: "k"}, true},
	} {
		if got := tc.a.Newer(tc.b); got != tc.want {
			t.Errorf("%s: %+v.Newer(%+v) = %v, want %v", tc.name, tc.a, tc.b, got, tc.want)
		}
	}
}

// TestEntryHashLayout pins what Entry.Hash hashes, since copies on nodes of
// different builds compare digests: key length (8 bytes, little endian),
// key, version (8 bytes), tombstone flag (1 byte), value. Small and large
// entries take different code paths.
func TestEntryHashLayout(t *testing.T) {
	layout := func(e store.Entry) []byte {
		b := binary.LittleEndian.AppendUint64(nil, uint64(len(e.Key)))
		b = append(b, e.Key...)
		b = binary.LittleEndian.AppendUint64(b, uint64(e.Version))
		if e.Deleted {
			return append(b, 1)
		}
		return append(append(b, 0), e.Value...)
	}
	seen := make(map[uint64]store.Entry)
	for _, e := range []store.Entry{
		{}, live("", "", 1), live("a", "", 1), live("", "a", 1), tomb("a", 1), live("a", "b", 1<<40),
		live("ab", "c", 1), live("a", "bc", 1), // same bytes, split differently
		live(strings.Repeat("k", 55), strings.Repeat("v", 56), 2), // 128 bytes hashed
		live(strings.Repeat("k", 55), strings.Repeat("v", 57), 2), // 129
		live(strings.Repeat("k", 300), strings.Repeat("v", 5000), 3),
		tomb(strings.Repeat("k", 200), 3),
	} {
		if got, want := e.Hash(), xxhash.Sum64(layout(e)); got != want {
			t.Errorf("Hash(%.20q %.20q %d %v) = %#x, want %#x", e.Key, e.Value, e.Version, e.Deleted, got, want)
		}
		if other, dup := seen[e.Hash()]; dup {
			t.Errorf("%+v and %+v hash alike", e, other)
		}
		seen[e.Hash()] = e
	}
}

// permutations calls f with every ordering of ops.
func permutations(ops []vop, f func([]vop)) {
	p := slices.Clone(ops)
	var gen func(n int)
	gen = func(n int) { // Heap's algorithm
		if n <= 1 {
			f(p)
			return
		}
		for i := range n - 1 {
			gen(n - 1)
			if n%2 == 0 {
				p[i], p[n-1] = p[n-1], p[i]
			} else {
				p[0], p[n-1] = p[n-1], p[0]
			}
		}
		gen(n - 1)
	}
	gen(len(p))
}

// TestApplyOrderings applies each scenario's versioned writes in every order
// and checks the one outcome they must all give.
func TestApplyOrderings(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ops     []vop
		meta    store.BucketMeta
		entries []store.Entry
	}{
		{"delete then older put never resurrects",
			[]vop{vc(1), vx("k", 5), vp("k", "old", 3)},
			store.BucketMeta{Created: 5}, []store.Entry{tomb("k", 5)}},
		{"drop then older put ignored",
			[]vop{vc(1), vd(5), vp("k", "v", 3)},
			store.BucketMeta{Dropped: 5}, nil},
		{"newer put after drop re-creates",
			[]vop{vc(1), vp("k", "a", 2), vd(5), vp("j", "b", 7)},
			store.BucketMeta{Created: 7, Dropped: 5}, []store.Entry{live("j", "b", 7)}},
		{"create older than drop stays dropped",
			[]vop{vc(3), vd(5)},
			store.BucketMeta{Dropped: 5}, nil},
		{"create newer than drop",
			[]vop{vd(5), vc(7)},
			store.BucketMeta{Created: 7, Dropped: 5}, nil},
		{"drop at the same version as a create wins",
			[]vop{vc(5), vd(5)},
			store.BucketMeta{Dropped: 5}, nil},
		{"drop at the same version as a put removes it",
			[]vop{vp("k", "v", 5), vd(5)},
			store.BucketMeta{Dropped: 5}, nil},
		{"drop removes only older entries, tombstones too",
			[]vop{vc(1), vp("k", "a", 3), vp("j", "b", 6), vx("i", 4), vd(5)},
			store.BucketMeta{Created: 6, Dropped: 5}, []store.Entry{live("j", "b", 6)}},
		{"put without a create makes the bucket",
			[]vop{vp("k", "v", 4)},
			store.BucketMeta{Created: 4}, []store.Entry{live("k", "v", 4)}},
		{"equal versions: tombstone wins",
			[]vop{vc(1), vp("k", "a", 4), vx("k", 4)},
			store.BucketMeta{Created: 4}, []store.Entry{tomb("k", 4)}},
		{"equal versions: greater value wins",
			[]vop{vp("k", "a", 4), vp("k", "b", 4), vp("k", "", 4)},
			store.BucketMeta{Created: 4}, []store.Entry{live("k", "b", 4)}},
		{"duplicates are harmless",
			[]vop{vp("k", "a", 3), vp("k", "a", 3), vx("k", 2), vx("k", 2), vc(1)},
			store.BucketMeta{Created: 3}, []store.Entry{live("k", "a", 3)}},
		{"tombstone value is dropped",
			[]vop{{kind: 'x', bucket: "b", key: "k", value: "junk", v: 3}, vx("k", 3)},
			store.BucketMeta{Created: 3}, []store.Entry{tomb("k", 3)}},
		{"empty key and binary bytes",
			[]vop{vc(1), vp("", "", 2), vp("\x00\xff", "\xff\x00", 3), vx("\n", 4)},
			store.BucketMeta{Created: 4}, []store.Entry{live("", "", 2), tomb("\n", 4), live("\x00\xff", "\xff\x00", 3)}},
		{"version 0 is never",
			[]vop{vp("k", "v", 0), vc(0)},
			store.BucketMeta{}, nil},
	} {
		want := copyState{Meta: tc.meta, Entries: tc.entries}
		slices.SortFunc(want.Entries, func(a, b store.Entry) int { return strings.Compare(a.Key, b.Key) })
		if m, _ := model(tc.ops, "b"); !m.equal(want) {
			t.Errorf("%s: the test's model gives %+v, the table %+v", tc.name, m, want)
		}
		permutations(tc.ops, func(ops []vop) {
			if t.Failed() {
				return
			}
			s := store.NewStore()
			for _, o := range ops {
				storetest.MustNil(t, o.apply(s))
			}
			got, ok := dump(t, s, "b")
			if !ok || !got.equal(want) {
				t.Errorf("%s: order %v gives %+v (record %v), want %+v", tc.name, ops, got, ok, want)
			}
			if s.Exists("b") != want.Meta.Exists() {
				t.Errorf("%s: order %v: Exists = %v", tc.name, ops, s.Exists("b"))
			}
			for _, e := range want.Entries {
				v, err := s.Get("b", e.Key)
				if e.Deleted {
					storetest.CheckErr(t, "Get of a deleted key", err, store.ErrKeyNotFound)
				} else if err != nil || v != e.Value {
					t.Errorf("%s: Get(%q) = %q, %v; want %q", tc.name, e.Key, v, err, e.Value)
				}
			}
		})
	}
}

func TestApplyErrors(t *testing.T) {
	s := store.NewStore()
	storetest.CheckErr(t, "ApplyCreate(\"\")", s.ApplyCreate("", 1), store.ErrInvalidOp)
	storetest.CheckErr(t, "ApplyDrop(\"\")", s.ApplyDrop("", 1), store.ErrInvalidOp)
	storetest.CheckErr(t, "ApplyEntry(\"\")", s.ApplyEntry("", live("k", "v", 1)), store.ErrInvalidOp)
	_, err := s.Merge("", store.BucketMeta{Created: 1}, nil)
	storetest.CheckErr(t, "Merge(\"\")", err, store.ErrInvalidOp)
	if rs := s.Records(); len(rs) != 0 {
		t.Errorf("Records() = %q after invalid writes", rs)
	}
}

// TestUnversionedAfterVersioned: the unversioned API versions its writes
// past everything the store applied, so a Create after a replicated drop
// from a clock far ahead still makes the bucket, and a Put wins.
func TestUnversionedAfterVersioned(t *testing.T) {
	c := store.NewClock(nil)
	s := store.NewStoreWithClock(c)
	if s.Clock() != c {
		t.Fatal("Clock() is not the clock passed to NewStoreWithClock")
	}
	future := c.Now() + 1<<40
	storetest.MustNil(t, s.ApplyEntry("b", live("k", "replicated", future)))
	if c.Last() < future {
		t.Errorf("clock at %v after applying %v", c.Last(), future)
	}
	storetest.MustNil(t, s.Put("b", "k", "local"))
	if v, err := s.Get("b", "k"); err != nil || v != "local" {
		t.Errorf("Get = %q, %v after a local Put; want local", v, err)
	}
	storetest.MustNil(t, s.ApplyDrop("b", future+1<<30))
	if s.Exists("b") {
		t.Fatal("bucket exists after a drop")
	}
	storetest.CheckErr(t, "Put to a dropped bucket", s.Put("b", "k", "v"), store.ErrBucketNotFound)
	storetest.MustNil(t, s.Create("b"))
	if !s.Exists("b") {
		t.Fatal("Create after a far-future drop did not make the bucket")
	}
	storetest.MustNil(t, s.Put("b", "k", "v"))
	storetest.MustNil(t, s.Delete("b", "k"))
	got, _ := dump(t, s, "b")
	if len(got.Entries) != 1 || !got.Entries[0].Deleted {
		t.Errorf("after Put and Delete the copy holds %+v, want one tombstone", got.Entries)
	}
	// Deleting a key that is not there writes nothing.
	before, _ := s.Digest("b")
	storetest.MustNil(t, s.Delete("b", "nope"))
	storetest.MustNil(t, s.Delete("b", "k"))
	if after, _ := s.Digest("b"); after != before {
		t.Error("Delete of a missing or deleted key changed the copy")
	}
}

// randomOps returns n versioned writes over the given buckets, with few keys
// and versions so that equal versions and overwrites are common.
func randomOps(r *rand.Rand, n int, buckets []string) []vop {
	ops := make([]vop, n)
	for i := range ops {
		o := vop{bucket: buckets[r.IntN(len(buckets))], v: store.Version(1 + r.IntN(60))}
		switch x := r.IntN(20); {
		case x == 0:
			o.kind = 'd'
		case x <= 2:
			o.kind = 'c'
		case x <= 6:
			o.kind, o.key = 'x', "k"+strconv.Itoa(r.IntN(12))
		default:
			o.kind, o.key, o.value = 'p', "k"+strconv.Itoa(r.IntN(12)), "v"+strconv.Itoa(r.IntN(3))
		}
		if o.key == "k11" {
			o.key = "" // the empty key too
		}
		ops[i] = o
	}
	return ops
}

// TestStoreConverges: the same random writes, applied to three stores in
// three random orders, one of them with duplicates, leave equal copies,
// equal to the model.
func TestStoreConverges(t *testing.T) {
	buckets := []string{"a", "b", "c"}
	for seed := range uint64(200) {
		r := rand.New(rand.NewPCG(seed, 1))
		ops := randomOps(r, 1+r.IntN(80), buckets)
		stores := make([]*store.Store, 3)
		for i := range stores {
			order := slices.Clone(ops)
			if i == 2 {
				for range r.IntN(len(ops) + 1) {
					order = append(order, ops[r.IntN(len(ops))])
				}
			}
			r.Shuffle(len(order), func(a, b int) { order[a], order[b] = order[b], order[a] })
			stores[i] = store.NewStore()
			for _, o := range order {
				storetest.MustNil(t, o.apply(stores[i]))
			}
		}
		for _, b := range buckets {
			want, wantRec := model(ops, b)
			var sums []uint64
			for i, s := range stores {
				got, ok := dump(t, s, b)
				if ok != wantRec || !got.equal(want) {
					t.Fatalf("seed %d bucket %s store %d: got %+v (record %v), want %+v (record %v)\nops %v",
						seed, b, i, got, ok, want, wantRec, ops)
				}
				dg, _ := s.Digest(b)
				sums = append(sums, dg.Sum())
			}
			if sums[0] != sums[1] || sums[0] != sums[2] {
				t.Fatalf("seed %d bucket %s: digest sums differ: %x", seed, b, sums)
			}
		}
		for i := 1; i < 3; i++ {
			if !slices.Equal(stores[i].Records(), stores[0].Records()) || stores[i].Stats() != stores[0].Stats() {
				t.Fatalf("seed %d: store %d has records %q %+v, store 0 %q %+v", seed, i,
					stores[i].Records(), stores[i].Stats(), stores[0].Records(), stores[0].Stats())
			}
		}
	}
}

// copyVia merges every entry of bucket from src into dst, page by page, as
// anti-entropy does, and returns how many entries changed dst.
func copyVia(t testing.TB, src, dst *store.Store, bucket string, maxBytes int) int {
	t.Helper()
	meta, ok := src.Meta(bucket)
	if !ok {
		return 0
	}
	changed, err := dst.Merge(bucket, meta, nil)
	storetest.MustNil(t, err)
	for sh := range store.NumShards {
		after := ""
		for {
			es, more, ok := src.Page(bucket, sh, after, maxBytes)
			if !ok {
				t.Fatalf("Page(%s, %d): no record", bucket, sh)
			}
			n, err := dst.Merge(bucket, store.BucketMeta{}, es)
			storetest.MustNil(t, err)
			changed += n
			if !more {
				break
			}
			after = es[len(es)-1].Key
		}
	}
	return changed
}

func bigStore(b *testing.B) (*store.Store, []string) {
	b.Helper()
	s := store.NewStore()
	keys := make([]string, bigBucketKeys)
	if err := s.Create("big"); err != nil {
		b.Fatal(err)
	}
	for i := range keys {
		keys[i] = "key-" + strconv.Itoa(i)
		if err := s.Put("big", keys[i], "value"); err != nil {
			b.Fatal(err)
		}
	}
	return s, keys
}

// BenchmarkStore100k measures the store's operations on a bucket of 100k
// keys: the unversioned Put and Get, a replica's ApplyEntry, a Digest and a
// Page of up to 1 MiB (a whole shard here).
func BenchmarkStore100k(b *testing.B) {
	b.Run("Put", func(b *testing.B) {
		s, keys := bigStore(b)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if err := s.Put("big", keys[i%len(keys)], "value"); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("Get", func(b *testing.B) {
		s, keys := bigStore(b)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := s.Get("big", keys[i%len(keys)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("ApplyEntry", func(b *testing.B) {
		s, keys := bigStore(b)
		v := s.Clock().Now()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			v++
			if err := s.ApplyEntry("big", store.Entry{Key: keys[i%len(keys)], Value: "value", Version: v}); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("Digest", func(b *testing.B) {
		s, _ := bigStore(b)
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := s.Digest("big"); !ok {
				b.Fatal("no record")
			}
		}
	})
	b.Run("Page1MiB", func(b *testing.B) {
		s, _ := bigStore(b)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if es, _, ok := s.Page("big", i%store.NumShards, "", 1<<20); !ok || len(es) == 0 {
				b.Fatal("empty page")
			}
			i++
		}
	})
}
