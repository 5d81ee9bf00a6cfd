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
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/dboutique/dboutique/node/store"
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
				mustNil(t, o.apply(s))
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
					checkErr(t, "Get of a deleted key", err, store.ErrKeyNotFound)
				} else if err != nil || v != e.Value {
					t.Errorf("%s: Get(%q) = %q, %v; want %q", tc.name, e.Key, v, err, e.Value)
				}
			}
		})
	}
}

func TestApplyErrors(t *testing.T) {
	s := store.NewStore()
	checkErr(t, "ApplyCreate(\"\")", s.ApplyCreate("", 1), store.ErrInvalidOp)
	checkErr(t, "ApplyDrop(\"\")", s.ApplyDrop("", 1), store.ErrInvalidOp)
	checkErr(t, "ApplyEntry(\"\")", s.ApplyEntry("", live("k", "v", 1)), store.ErrInvalidOp)
	_, err := s.Merge("", store.BucketMeta{Created: 1}, nil)
	checkErr(t, "Merge(\"\")", err, store.ErrInvalidOp)
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
	mustNil(t, s.ApplyEntry("b", live("k", "replicated", future)))
	if c.Last() < future {
		t.Errorf("clock at %v after applying %v", c.Last(), future)
	}
	mustNil(t, s.Put("b", "k", "local"))
	if v, err := s.Get("b", "k"); err != nil || v != "local" {
		t.Errorf("Get = %q, %v after a local Put; want local", v, err)
	}
	mustNil(t, s.ApplyDrop("b", future+1<<30))
	if s.Exists("b") {
		t.Fatal("bucket exists after a drop")
	}
	checkErr(t, "Put to a dropped bucket", s.Put("b", "k", "v"), store.ErrBucketNotFound)
	mustNil(t, s.Create("b"))
	if !s.Exists("b") {
		t.Fatal("Create after a far-future drop did not make the bucket")
	}
	mustNil(t, s.Put("b", "k", "v"))
	mustNil(t, s.Delete("b", "k"))
	got, _ := dump(t, s, "b")
	if len(got.Entries) != 1 || !got.Entries[0].Deleted {
		t.Errorf("after Put and Delete the copy holds %+v, want one tombstone", got.Entries)
	}
	// Deleting a key that is not there writes nothing.
	before, _ := s.Digest("b")
	mustNil(t, s.Delete("b", "nope"))
	mustNil(t, s.Delete("b", "k"))
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
				mustNil(t, o.apply(stores[i]))
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
	mustNil(t, err)
	for sh := range store.NumShards {
		after := ""
		for {
			es, more, ok := src.Page(bucket, sh, after, maxBytes)
			if !ok {
				t.Fatalf("Page(%s, %d): no record", bucket, sh)
			}
			n, err := dst.Merge(bucket, store.BucketMeta{}, es)
			mustNil(t, err)
			changed += n
			if !more {
				break
			}
			after = es[len(es)-1].Key
		}
	}
	return changed
}

// TestMergePagesReproducesDigest: merging a copy's pages into an empty store
// reproduces its digest exactly; merging again changes nothing.
func TestMergePagesReproducesDigest(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 2))
		src := store.NewStore()
		for _, o := range randomOps(r, 200, []string{"a", "b"}) {
			mustNil(t, o.apply(src))
		}
		// and a bigger bucket, with large values
		for i := range 500 {
			mustNil(t, src.ApplyEntry("big", live("key"+strconv.Itoa(i), strings.Repeat("x", r.IntN(3000)), store.Version(100+i))))
		}
		for _, maxBytes := range []int{1, 100, 4096, 1 << 20} {
			dst := store.NewStore()
			for _, b := range src.Records() {
				want, _ := dump(t, src, b)
				n := copyVia(t, src, dst, b, maxBytes)
				if n != len(want.Entries) {
					t.Errorf("seed %d %s: Merge into an empty copy changed %d entries, want %d", seed, b, n, len(want.Entries))
				}
				sd, _ := src.Digest(b)
				dd, _ := dst.Digest(b)
				if sd != dd {
					t.Fatalf("seed %d %s maxBytes %d: digests differ after Merge:\n%+v\n%+v", seed, b, maxBytes, sd, dd)
				}
				if got, _ := dump(t, dst, b); !got.equal(want) {
					t.Fatalf("seed %d %s: merged copy %+v, want %+v", seed, b, got, want)
				}
				if n := copyVia(t, src, dst, b, maxBytes); n != 0 {
					t.Errorf("seed %d %s: merging the same copy again changed %d entries", seed, b, n)
				}
			}
		}
	}
}

// TestAntiEntropyConverges: writes scattered over three copies (each reaches
// a random subset) converge, once every copy merged every other, to the
// model of all writes.
func TestAntiEntropyConverges(t *testing.T) {
	buckets := []string{"a", "b"}
	for seed := range uint64(50) {
		r := rand.New(rand.NewPCG(seed, 3))
		ops := randomOps(r, 150, buckets)
		stores := []*store.Store{store.NewStore(), store.NewStore(), store.NewStore()}
		for _, o := range ops {
			mask := 1 + r.IntN(7)
			for i, s := range stores {
				if mask&(1<<i) != 0 {
					mustNil(t, o.apply(s))
				}
			}
		}
		for _, dst := range stores {
			for _, src := range stores {
				for _, b := range buckets {
					copyVia(t, src, dst, b, 64)
				}
			}
		}
		for _, b := range buckets {
			want, _ := model(ops, b)
			for i, s := range stores {
				if got, _ := dump(t, s, b); !got.equal(want) {
					t.Fatalf("seed %d bucket %s store %d: %+v, want %+v", seed, b, i, got, want)
				}
			}
		}
	}
}

// TestPage: paging through a shard with any maxBytes yields every entry
// exactly once, in key order, within the budget.
func TestPage(t *testing.T) {
	s := store.NewStore()
	r := rand.New(rand.NewPCG(4, 4))
	want := make(map[string]store.Entry)
	add := func(e store.Entry) {
		mustNil(t, s.ApplyEntry("b", e))
		want[e.Key] = e
	}
	add(live("", "empty key", 10))
	add(tomb("\x00", 11))
	add(live("\xff\xff", "", 12))
	for i := range 3000 {
		k := fmt.Sprintf("k%05d", i)
		if i%7 == 0 {
			add(tomb(k, store.Version(20+i)))
		} else {
			add(live(k, strings.Repeat("v", r.IntN(200)), store.Version(20+i)))
		}
	}
	size := func(e store.Entry) int { return len(e.Key) + len(e.Value) + store.PageEntryOverhead }
	for _, maxBytes := range []int{-1, 0, 1, 30, 100, 1000, 1 << 20} {
		seen := make(map[string]bool)
		pages := 0
		for sh := range store.NumShards {
			after, first := "", true
			for {
				es, more, ok := s.Page("b", sh, after, maxBytes)
				pages++
				if !ok {
					t.Fatal("Page: no record")
				}
				if len(es) == 0 && (more || !first) {
					t.Fatalf("maxBytes %d shard %d after %q: empty page, more %v", maxBytes, sh, after, more)
				}
				total := 0
				for i, e := range es {
					if !first || i > 0 {
						if e.Key <= after {
							t.Fatalf("maxBytes %d shard %d: key %q not after %q", maxBytes, sh, e.Key, after)
						}
					}
					if seen[e.Key] {
						t.Fatalf("maxBytes %d: key %q paged twice", maxBytes, e.Key)
					}
					seen[e.Key] = true
					if w := want[e.Key]; w != e {
						t.Fatalf("maxBytes %d: paged %+v, want %+v", maxBytes, e, w)
					}
					if store.ShardOf(e.Key) != sh {
						t.Fatalf("key %q paged from shard %d", e.Key, sh)
					}
					after = e.Key
					total += size(e)
				}
				// Over budget only with one entry, or two when the first is the empty key.
				if total > maxBytes && len(es) > 1 && !(len(es) == 2 && es[0].Key == "") {
					t.Fatalf("maxBytes %d: page of %d entries holds %d bytes", maxBytes, len(es), total)
				}
				if more && len(es) > 0 && es[len(es)-1].Key == "" {
					t.Fatalf("maxBytes %d: page ends on the empty key with more to follow", maxBytes)
				}
				first = false
				if !more {
					break
				}
			}
		}
		if len(seen) != len(want) {
			t.Errorf("maxBytes %d: paged %d keys in %d pages, want %d", maxBytes, len(seen), pages, len(want))
		}
	}
	// Out-of-range shards hold nothing; a missing bucket has no record.
	for _, sh := range []int{-1, store.NumShards, 1 << 30} {
		if es, more, ok := s.Page("b", sh, "", 100); len(es) != 0 || more || !ok {
			t.Errorf("Page(shard %d) = %v, %v, %v; want nothing, ok", sh, es, more, ok)
		}
	}
	if es, more, ok := s.Page("nope", 0, "", 100); es != nil || more || ok {
		t.Errorf("Page of a missing bucket = %v, %v, %v", es, more, ok)
	}
}

func TestRetireUnretireRemove(t *testing.T) {
	s := store.NewStore()
	if s.Retire("b") || s.Retired("b") {
		t.Fatal("Retire of a missing record succeeded")
	}
	s.Unretire("b") // no record: nothing happens
	mustNil(t, s.ApplyEntry("b", live("k", "v", 5)))
	if !s.Retire("b") || !s.Retired("b") {
		t.Fatal("Retire failed")
	}
	before, _ := dump(t, s, "b")
	for what, err := range map[string]error{
		"ApplyCreate": s.ApplyCreate("b", 9),
		"ApplyDrop":   s.ApplyDrop("b", 9),
		"ApplyEntry":  s.ApplyEntry("b", live("j", "v", 9)),
	} {
		if !errors.Is(err, store.ErrRetired) {
			t.Errorf("%s on a retired copy: %v, want ErrRetired", what, err)
		}
	}
	if n, err := s.Merge("b", store.BucketMeta{Dropped: 9}, []store.Entry{live("j", "v", 9)}); !errors.Is(err, store.ErrRetired) || n != 0 {
		t.Errorf("Merge on a retired copy = %d, %v; want 0, ErrRetired", n, err)
	}
	// Reads still work and nothing changed.
	if after, ok := dump(t, s, "b"); !ok || !after.equal(before) {
		t.Errorf("retired copy changed: %+v, want %+v", after, before)
	}
	// Other buckets are not retired.
	mustNil(t, s.ApplyEntry("other", live("k", "v", 5)))
	// The unversioned API ignores retirement.
	mustNil(t, s.Put("b", "k", "local"))

	s.Unretire("b")
	if s.Retired("b") {
		t.Fatal("still retired after Unretire")
	}
	mustNil(t, s.ApplyEntry("b", live("j", "v", 1<<61)))

	s.Retire("b")
	s.Remove("b")
	if _, ok := s.Meta("b"); ok || s.Retired("b") || s.Exists("b") {
		t.Fatal("record still there after Remove")
	}
	if _, ok := s.Digest("b"); ok {
		t.Fatal("Digest of a removed record")
	}
	if got := s.Records(); !slices.Equal(got, []string{"other"}) {
		t.Errorf("Records() = %q, want [other]", got)
	}
	s.Remove("b") // again: nothing happens
	// A new write makes a fresh record, not retired, without the old keys.
	mustNil(t, s.ApplyEntry("b", live("new", "v", 3)))
	got, _ := dump(t, s, "b")
	if want := (copyState{Meta: store.BucketMeta{Created: 3}, Entries: []store.Entry{live("new", "v", 3)}}); !got.equal(want) || s.Retired("b") {
		t.Errorf("after Remove and a write: %+v (retired %v), want %+v", got, s.Retired("b"), want)
	}
}

func TestCollect(t *testing.T) {
	s := store.NewStore()
	for _, o := range []vop{
		// a: tombstones on both sides of the cut-off
		{kind: 'p', bucket: "a", key: "live-old", value: "v", v: 10},
		{kind: 'x', bucket: "a", key: "tomb-old", v: 20},
		{kind: 'x', bucket: "a", key: "tomb-at", v: 30},
		{kind: 'x', bucket: "a", key: "tomb-new", v: 40},
		{kind: 'p', bucket: "a", key: "live-new", value: "v", v: 50},
		// b: dropped before the cut-off: collected
		{kind: 'c', bucket: "b", v: 5}, {kind: 'p', bucket: "b", key: "k", v: 6}, {kind: 'd', bucket: "b", v: 25},
		// c: dropped after the cut-off: kept
		{kind: 'd', bucket: "c", v: 35},
		// d: exists and empty: kept
		{kind: 'c', bucket: "d", v: 5},
		// e: dropped long ago but retired: kept
		{kind: 'd', bucket: "e", v: 1},
		// f: a bucket whose only entries are old tombstones: they go, the bucket stays
		{kind: 'x', bucket: "f", key: "k", v: 2},
	} {
		mustNil(t, o.apply(s))
	}
	s.Retire("e")
	if st := s.Stats(); st != (store.StoreStats{Buckets: 3, Records: 6, Keys: 2, Tombstones: 4, Bytes: int64(len("live-oldvtomb-oldtomb-attomb-newlive-newvk"))}) {
		t.Errorf("Stats before Collect = %+v", st)
	}
	tombs, recs := s.Collect(30)
	if tombs != 2 || recs != 1 {
		t.Errorf("Collect(30) = %d tombstones, %d records; want 2, 1", tombs, recs)
	}
	if got := s.Records(); !slices.Equal(got, []string{"a", "c", "d", "e", "f"}) {
		t.Errorf("Records() = %q after Collect", got)
	}
	a, _ := dump(t, s, "a") // checks the digest against the entries
	if want := []store.Entry{live("live-new", "v", 50), live("live-old", "v", 10), tomb("tomb-at", 30), tomb("tomb-new", 40)}; !slices.Equal(a.Entries, want) {
		t.Errorf("a after Collect: %+v, want %+v", a.Entries, want)
	}
	if f, _ := dump(t, s, "f"); len(f.Entries) != 0 || !f.Meta.Exists() {
		t.Errorf("f after Collect: %+v", f)
	}
	if st := s.Stats(); st != (store.StoreStats{Buckets: 3, Records: 5, Keys: 2, Tombstones: 2, Bytes: int64(len("live-oldvtomb-attomb-newlive-newv"))}) {
		t.Errorf("Stats after Collect = %+v", st)
	}
	// A copy built from the same writes minus the collected ones has the same digest.
	fresh := store.NewStore()
	for _, e := range a.Entries {
		mustNil(t, fresh.ApplyEntry("a", e))
	}
	if d1, d2 := digestOf(s, "a"), digestOf(fresh, "a"); d1 != d2 {
		t.Error("collected copy's digest differs from a fresh copy of its entries")
	}
	if tombs, recs := s.Collect(30); tombs != 0 || recs != 0 {
		t.Errorf("second Collect(30) = %d, %d; want 0, 0", tombs, recs)
	}
	s.Unretire("e")
	if tombs, recs := s.Collect(1 << 20); tombs != 2 || recs != 2 {
		t.Errorf("Collect(all) = %d, %d; want 2 (a's), 2 (c, e)", tombs, recs)
	}
	if got := s.Records(); !slices.Equal(got, []string{"a", "d", "f"}) {
		t.Errorf("Records() = %q after Collect(all)", got)
	}
	dump(t, s, "a")
}

func digestOf(s *store.Store, b string) uint64 {
	d, _ := s.Digest(b)
	return d.Sum()
}

func TestDigestSum(t *testing.T) {
	var d store.Digest
	base := d.Sum()
	seen := map[uint64]string{base: "zero"}
	for name, f := range map[string]func(*store.Digest){
		"created":  func(d *store.Digest) { d.Meta.Created = 1 },
		"dropped":  func(d *store.Digest) { d.Meta.Dropped = 1 },
		"shard 0":  func(d *store.Digest) { d.Shards[0] = 1 },
		"shard 63": func(d *store.Digest) { d.Shards[store.NumShards-1] = 1 },
	} {
		d := store.Digest{}
		f(&d)
		sum := d.Sum()
		if other, dup := seen[sum]; dup {
			t.Errorf("Sum of %s equals Sum of %s", name, other)
		}
		seen[sum] = name
	}
}

// TestConcurrentVersioned races ApplyEntry, ApplyDrop, Merge, Page, Digest
// and Collect on one bucket (for -race). Whatever the interleaving, the copy
// ends equal to the model of all writes, and its digest matches its entries.
func TestConcurrentVersioned(t *testing.T) {
	const (
		writers = 4
		passes  = 3 // every writer applies its share this often: duplicates are harmless
	)
	r := rand.New(rand.NewPCG(5, 5))
	ops := randomOps(r, 5999, []string{"hot"}) // not a multiple of writers: passes mix shares
	for i := range ops {
		ops[i].v += 1000 // above Collect's cut-off below
	}
	s := store.NewStore()
	// A bucket whose tombstones Collect does remove meanwhile.
	for i := range 500 {
		mustNil(t, s.ApplyEntry("gc", tomb("k"+strconv.Itoa(i), store.Version(1+i%10))))
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			var batch []store.Entry
			for i := w; i < passes*len(ops); i += writers {
				o := ops[i%len(ops)]
				switch {
				case w == 0 && (o.kind == 'p' || o.kind == 'x'):
					// Writer 0 sends its entries in Merge batches.
					batch = append(batch, o.entry())
					if len(batch) == 16 {
						_, err := s.Merge("hot", store.BucketMeta{}, batch)
						mustNilAsync(t, err)
						batch = batch[:0]
					}
				case o.kind == 'd' && w == 1:
					_, err := s.Merge("hot", store.BucketMeta{Dropped: o.v}, nil)
					mustNilAsync(t, err)
				default:
					mustNilAsync(t, o.apply(s))
				}
			}
			_, err := s.Merge("hot", store.BucketMeta{}, batch)
			mustNilAsync(t, err)
		})
	}
	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Go(func() { // pager
		for {
			select {
			case <-stop:
				return
			default:
			}
			for sh := range store.NumShards {
				after := ""
				for {
					es, more, _ := s.Page("hot", sh, after, 200)
					if !slices.IsSortedFunc(es, func(a, b store.Entry) int { return strings.Compare(a.Key, b.Key) }) {
						t.Errorf("page not sorted: %v", es)
						return
					}
					if !more {
						break
					}
					after = es[len(es)-1].Key
				}
			}
		}
	})
	bg.Go(func() { // digests, stats and garbage collection
		for {
			select {
			case <-stop:
				return
			default:
			}
			s.Digest("hot")
			s.Stats()
			s.Collect(500)
		}
	})
	wg.Wait()
	close(stop)
	bg.Wait()
	want, _ := model(ops, "hot")
	if got, _ := dump(t, s, "hot"); !got.equal(want) {
		t.Errorf("after concurrent writes: %+v\nwant %+v", got, want)
	}
	s.Collect(500)
	if gc, _ := dump(t, s, "gc"); len(gc.Entries) != 0 {
		t.Errorf("gc bucket still holds %d tombstones", len(gc.Entries))
	}
}

func mustNilAsync(t testing.TB, err error) {
	if err != nil {
		t.Errorf("unexpected error: %v", err)
	}
}

// TestConcurrentApplyRemove races versioned writes, Retire and Unretire
// against Remove of the same record (for -race). A write that returned is
// readable unless a Remove overlapped it, and the record left at the end is
// consistent.
func TestConcurrentApplyRemove(t *testing.T) {
	const (
		goroutines = 6
		iterations = 2000
	)
	s := store.NewStore()
	var removesStarted, removesFinished, vanished atomic.Int64
	var next atomic.Uint64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range iterations {
				if (i+g)%5 == 0 {
					removesStarted.Add(1)
					s.Remove("x")
					removesFinished.Add(1)
					continue
				}
				if (i+g)%5 == 1 {
					s.Retire("x")
					s.Unretire("x")
				}
				key := fmt.Sprintf("g%d-%d", g, i)
				f0 := removesFinished.Load()
				err := s.ApplyEntry("x", live(key, "v", store.Version(next.Add(1))))
				if err != nil && !errors.Is(err, store.ErrRetired) {
					t.Errorf("ApplyEntry: %v", err)
					return
				}
				if err != nil {
					continue // retired by another goroutine meanwhile
				}
				if _, err := s.Get("x", key); err != nil {
					if removesStarted.Load() <= f0 {
						t.Errorf("write of %q lost with no Remove overlapping: %v", key, err)
						return
					}
					vanished.Add(1)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d writes removed by an overlapping Remove", vanished.Load())
	if _, ok := s.Meta("x"); ok {
		dump(t, s, "x")
	}
}

// --- benchmarks on one bucket of 100k keys ---

const bigBucketKeys = 100_000

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
