package store_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/node/store/storetest"
)

// Tests of what replication and anti-entropy use: pages, digests, retiring
// a copy, and collecting tombstones (copies.go).

// TestMergePagesReproducesDigest: merging a copy's pages into an empty store
// reproduces its digest exactly; merging again changes nothing.
func TestMergePagesReproducesDigest(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 2))
		src := store.NewStore()
		for _, o := range randomOps(r, 200, []string{"a", "b"}) {
			storetest.MustNil(t, o.apply(src))
		}
		// and a bigger bucket, with large values
		for i := range 500 {
			storetest.MustNil(t, src.ApplyEntry("big", live("key"+strconv.Itoa(i), strings.Repeat("x", r.IntN(3000)), store.Version(100+i))))
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
					storetest.MustNil(t, o.apply(s))
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
		storetest.MustNil(t, s.ApplyEntry("b", e))
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
	storetest.MustNil(t, s.ApplyEntry("b", live("k", "v", 5)))
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
	storetest.MustNil(t, s.ApplyEntry("other", live("k", "v", 5)))
	// The unversioned API ignores retirement.
	storetest.MustNil(t, s.Put("b", "k", "local"))

	s.Unretire("b")
	if s.Retired("b") {
		t.Fatal("still retired after Unretire")
	}
	storetest.MustNil(t, s.ApplyEntry("b", live("j", "v", 1<<60)))

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
	storetest.MustNil(t, s.ApplyEntry("b", live("new", "v", 3)))
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
		storetest.MustNil(t, o.apply(s))
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
		storetest.MustNil(t, fresh.ApplyEntry("a", e))
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
