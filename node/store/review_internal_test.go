package store

// Adversarial review of expiry and eviction (i14): attacks on the store's
// side. Each test names the claim it attacks.

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// TestReviewApplyExpiryObservesItsVersion attacks "an expiry is part of
// the versioned state": a replica applies a bucket's EXPIRE (KindExpire,
// ApplyExpiry) from a primary whose clock is ahead. Every other versioned
// write advances the replica's clock past its version, so that the
// replica, once it is the primary, versions its own writes after it. If
// ApplyExpiry does not, a DROP or PERSIST the replica then orders is
// older than the expiry, and the merge ignores it: the bucket survives an
// acknowledged DROP, and keeps an expiry an acknowledged PERSIST removed.
func TestReviewApplyExpiryObservesItsVersion(t *testing.T) {
	s := NewStore()                                     // the replica; its clock is the wall clock
	ahead := VersionAt(time.Now().Add(5 * time.Second)) // the primary's clock, within a skew
	if err := s.ApplyCreate("b", VersionAt(time.Now())); err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyEntry("b", Entry{Key: "k", Value: "v", Version: VersionAt(time.Now()) + 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyExpiry("b", ahead, time.Now().Add(time.Hour).UnixMilli()); err != nil {
		t.Fatal(err)
	}
	if last := s.Clock().Last(); last < ahead {
		t.Errorf("after ApplyExpiry at %v the clock's last version is %v: later writes are versioned before the expiry", ahead, last)
	}
	// The consequence, through the store's own API: a DROP of the bucket.
	if err := s.Drop("b"); err != nil {
		t.Fatal(err)
	}
	if m, _ := s.Meta("b"); m.Exists() {
		t.Errorf("the bucket exists after DROP: meta %+v (the drop is older than the expiry's version)", m)
	}
}

// TestReviewMergeRefusesExpiryVersionFromTheFuture attacks the bounds on
// versions: ApplyExpiry and Merge validate and observe max(Created,
// Dropped), and the node's checkVersions the same, but merge() makes
// Created = max(Created, ExpiresV): a meta whose ExpiresV is out of range
// (a peer's corrupt or future meta) becomes a Created that no later DROP
// can pass.
func TestReviewMergeRefusesExpiryVersionFromTheFuture(t *testing.T) {
	s := NewStore()
	bad := Version(maxVersion + 5)
	err := s.ApplyExpiry("b", bad, 1)
	m, _ := s.Meta("b")
	if err == nil && m.Created >= maxVersion {
		t.Errorf("ApplyExpiry accepted version %#x: meta %+v, Created out of range", uint64(bad), m)
	}
	s2 := NewStore()
	_, err = s2.Merge("b", BucketMeta{ExpiresV: bad, Expires: 1}, nil)
	m, _ = s2.Meta("b")
	if err == nil && m.Created >= maxVersion {
		t.Errorf("Merge accepted a meta with ExpiresV %#x: meta %+v, Created out of range", uint64(bad), m)
	}
}

// TestReviewSampleFindsTheEntriesOfASmallBucket attacks the fairness of
// Sample, which eviction depends on: it visits each bucket at most twice
// and looks in one random shard of it each time. A bucket of a few large
// values (the store over its limit, every entry evictable) then yields no
// candidate at all most of the time, so eviction finds nothing, and
// writers are refused with OOM although allkeys-* could evict.
func TestReviewSampleFindsTheEntriesOfASmallBucket(t *testing.T) {
	s := NewStore()
	for i := range 3 {
		if err := s.ApplyEntry("b", Entry{Key: fmt.Sprint("k", i), Value: "v", Version: Version(i+1) << 16}); err != nil {
			t.Fatal(err)
		}
	}
	empty := 0
	const rounds = 200
	for range rounds {
		// What evictRound asks for: evictPool * evictMin entries.
		if got := s.Sample(nil, 5*16, false, func(string) bool { return true }); len(got) == 0 {
			empty++
		}
	}
	if empty > 0 {
		t.Errorf("Sample found none of a bucket's 3 entries in %d of %d rounds", empty, rounds)
	}
}

// TestReviewFootprintMatchesContents attacks the footprint counters a
// memory limit reads: after random versioned writes, drops, evictions,
// merges, collections and removals, they must equal what the store holds
// (and never go negative).
func TestReviewFootprintMatchesContents(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	s := NewStore()
	s.TrackFootprint()
	v := Version(1 << 16)
	next := func() Version { v += Version(1 + rng.IntN(3)); return v }
	buckets := []string{"a", "b", "c"}
	for step := range 20000 {
		b := buckets[rng.IntN(len(buckets))]
		key := fmt.Sprint("k", rng.IntN(20))
		var err error
		switch rng.IntN(12) {
		case 0, 1, 2, 3:
			e := Entry{Key: key, Value: fmt.Sprint("value", rng.IntN(100)), Version: next()}
			if rng.IntN(3) == 0 {
				e.Expires = int64(rng.IntN(1000) + 1)
			}
			err = s.ApplyEntry(b, e)
		case 4:
			err = s.ApplyEntry(b, Entry{Key: key, Deleted: true, Version: next()})
		case 5:
			err = s.ApplyEvict(b, key, Version(rng.Int64N(int64(v))+1))
		case 6:
			if rng.IntN(4) == 0 {
				err = s.ApplyDrop(b, Version(rng.Int64N(int64(v))+1))
			}
		case 7:
			err = s.ApplyCreate(b, next())
		case 8:
			err = s.ApplyExpiry(b, next(), int64(rng.IntN(1000)))
		case 9:
			_, err = s.Merge(b, BucketMeta{Created: next()}, []Entry{
				{Key: key, Value: "m", Version: Version(rng.Int64N(int64(v)) + 1), Expires: int64(rng.IntN(2))},
				{Key: key + "x", Deleted: true, Version: next()}})
		case 10:
			if rng.IntN(10) == 0 {
				s.Collect(Version(rng.Int64N(int64(v)) + 1))
			}
		case 11:
			if rng.IntN(20) == 0 {
				s.Remove(b)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		if msg := footprintMismatch(s); msg != "" {
			t.Fatalf("step %d: %s", step, msg)
		}
	}
}

// footprintMismatch compares the store's footprint with a count of what it
// holds.
func footprintMismatch(s *Store) string {
	var bytes, entries, records, maps int64
	s.records.Range(func(_, v any) bool {
		r := v.(*record)
		r.mu.RLock()
		defer r.mu.RUnlock()
		records++
		if r.tab.len() > 0 {
			maps++
		}
		r.tab.idx.each(0, func(v uint64) bool {
			e := r.tab.view(uint32(v))
			entries++
			bytes += int64(len(e.key) + len(e.value))
			return true
		})
		return true
	})
	b, e, rc, m := s.Footprint()
	if b != bytes || e != entries || rc != records || m != maps {
		return fmt.Sprintf("footprint (bytes %d, entries %d, records %d, maps %d), held (%d, %d, %d, %d)",
			b, e, rc, m, bytes, entries, records, maps)
	}
	return ""
}

// TestReviewMergeOrderWithExpiriesAndTombstones attacks "merged either
// way, copies end equal" with entries of one key at few versions, with and
// without expiries, tombstones among them, and bucket metas with expiries:
// every order of application gives the same digest.
func TestReviewMergeOrderWithExpiriesAndTombstones(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	type w struct {
		meta  *BucketMeta
		entry Entry
	}
	for round := range 3000 {
		var ws []w
		for range 2 + rng.IntN(5) {
			ver := Version(1+rng.IntN(4)) << 16
			switch rng.IntN(4) {
			case 0:
				m := BucketMeta{}
				switch rng.IntN(3) {
				case 0:
					m.Created = ver
				case 1:
					m.Dropped = ver
				case 2:
					m.ExpiresV, m.Expires = ver, int64(rng.IntN(3))
				}
				ws = append(ws, w{meta: &m})
			default:
				e := Entry{Key: "k", Version: ver}
				if rng.IntN(3) == 0 {
					e.Deleted = true
				} else {
					e.Value = fmt.Sprint(rng.IntN(2))
					e.Expires = int64(rng.IntN(3))
				}
				ws = append(ws, w{entry: e})
			}
		}
		var want Digest
		for perm := range 6 {
			s := NewStore()
			order := rng.Perm(len(ws))
			if perm == 0 {
				for i := range order {
					order[i] = i
				}
			}
			for _, i := range order {
				x := ws[i]
				var err error
				if x.meta != nil {
					_, err = s.Merge("b", *x.meta, nil)
				} else {
					err = s.ApplyEntry("b", x.entry)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			d, _ := s.Digest("b")
			if perm == 0 {
				want = d
			} else if d != want {
				t.Fatalf("round %d: writes %+v in order %v give meta %+v, in order 0.. give %+v", round, ws, order, d.Meta, want.Meta)
			}
		}
	}
}

// TestReviewClockMillisNeverGoesBack attacks Clock.Millis's promise "it
// never goes backwards", which the judgement of expiry relies on (a key a
// read found expired must not be live to the next read): when the wall
// clock steps back and no version was issued since the last reading,
// Millis follows it back.
func TestReviewClockMillisNeverGoesBack(t *testing.T) {
	wall := int64(1_800_000_000_000)
	c := NewClock(func() time.Time { return time.UnixMilli(wall) })
	c.Now()
	wall += 5000
	first := c.Millis()
	wall -= 1000 // an NTP step back, well within any max clock skew
	if again := c.Millis(); again < first {
		t.Errorf("Millis went back from %d to %d when the wall clock stepped back", first, again)
	}
	// The consequence in a store: a key found expired is live again.
	s := NewStoreWithClock(NewClock(func() time.Time { return time.UnixMilli(wall) }))
	if _, err := s.Execute(t.Context(), Op{Kind: KindPutCreate, Bucket: "b", Key: "k", Value: "v", Expires: 500, Flags: FlagRelative}); err != nil {
		t.Fatal(err)
	}
	wall += 600
	if keys, _ := s.Keys("b"); len(keys) != 0 {
		t.Fatalf("Keys after the expiry = %v", keys)
	}
	wall -= 200
	if keys, _ := s.Keys("b"); len(keys) != 0 {
		t.Errorf("Keys after the wall clock stepped back 200ms = %v: a key read as expired is back", keys)
	}
}

// TestReviewEvictAndReclaimSpareNewerWrites checks (an attack that held)
// that KindEvict removes only the version its primary decided, on a copy
// that holds a newer one or a tombstone, and that KindReclaim decided
// after a write without an expiry deletes nothing.
func TestReviewEvictAndReclaimSpareNewerWrites(t *testing.T) {
	s := NewStore()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.ApplyEntry("b", Entry{Key: "k", Value: "new", Version: 20 << 16}))
	must(s.ApplyEvict("b", "k", 10<<16))
	if it, ok := s.records.Load("b"); !ok || it.(*record).live != 1 {
		t.Fatal("an eviction of version 10 removed version 20")
	}
	must(s.ApplyEntry("b", Entry{Key: "t", Deleted: true, Version: 5 << 16}))
	must(s.ApplyEvict("b", "t", 10<<16))
	if r, _ := s.records.Load("b"); r.(*record).tombstones != 1 {
		t.Fatal("an eviction removed a tombstone")
	}
	// A reclaim decided from a state whose entry has no expiry.
	cur := Current{Now: 1 << 40, Bucket: BucketMeta{Created: 1 << 16}, Entry: Entry{Key: "k", Value: "new", Version: 20 << 16}}
	v := Version(30 << 16)
	if _, ch, _ := Decide(Op{Kind: KindReclaim, Bucket: "b", Key: "k"}, cur, func() Version { v++; return v }); len(ch) != 0 {
		t.Fatalf("a reclaim of a key without an expiry writes %+v", ch)
	}
}

// TestCollectRemovesEveryOldTombstone: one Collect removes every tombstone
// older than its version, even when removing them leaves chunks to compact
// (found by review: compacting between batches moved the rest).
func TestCollectRemovesEveryOldTombstone(t *testing.T) {
	s := NewStore()
	if err := s.Create("b"); err != nil {
		t.Fatal(err)
	}
	const n = 100_000
	for i := range n {
		if err := s.Put("b", fmt.Sprintf("key-%07d", i), "value-of-some-length"); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		if i%5 != 0 {
			if err := s.Delete("b", fmt.Sprintf("key-%07d", i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if tombs, _ := s.Collect(s.Clock().Now() + 1); tombs != n*4/5 {
		t.Fatalf("Collect removed %d of %d tombstones", tombs, n*4/5)
	}
}
