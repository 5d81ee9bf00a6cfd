package store_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/node/store/storetest"
)

// fakeClock is a wall clock that tests move by hand.
type fakeClock struct{ ms atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ms.Store(1_800_000_000_000)
	return c
}
func (c *fakeClock) now() time.Time          { return time.UnixMilli(c.ms.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ms.Add(d.Milliseconds()) }

func exec(t *testing.T, s *store.Store, op store.Op) (store.Result, error) {
	t.Helper()
	return s.Execute(context.Background(), op)
}

// TestExpiredIsMissing: once its expiry passes, a key or a bucket is
// missing for every read and write, before anything deleted it.
func TestExpiredIsMissing(t *testing.T) {
	clk := newFakeClock()
	s := store.NewStoreWithClock(store.NewClock(clk.now))
	put := func(b, k, v string, ttl time.Duration) {
		t.Helper()
		op := store.Op{Kind: store.KindPutCreate, Bucket: b, Key: k, Value: v}
		if ttl != 0 {
			op.Expires, op.Flags = ttl.Milliseconds(), store.FlagRelative
		}
		_, err := exec(t, s, op)
		storetest.MustNil(t, err)
	}
	put("b", "short", "1", time.Second)
	put("b", "long", "2", time.Hour)
	put("b", "never", "3", 0)
	put("h", "f", "v", 0)
	res, err := exec(t, s, store.Op{Kind: store.KindExpire, Bucket: "h", Flags: store.FlagBucket | store.FlagRelative, Expires: 2000})
	if err != nil || res.Count != 1 {
		t.Fatalf("EXPIRE of a bucket = %+v, %v; want 1", res, err)
	}
	if n, _ := s.Len("b"); n != 3 {
		t.Fatalf("Len before expiry = %d, want 3", n)
	}
	clk.advance(1500 * time.Millisecond)
	if _, err := s.Get("b", "short"); !errors.Is(err, store.ErrKeyNotFound) {
		t.Errorf("Get of an expired key: %v, want ErrKeyNotFound", err)
	}
	if s.Live("b", "short") {
		t.Error("an expired key is live")
	}
	if keys, _ := s.Keys("b"); !slices.Equal(keys, []string{"long", "never"}) {
		t.Errorf("Keys = %q, want long, never", keys)
	}
	if n, _ := s.Len("b"); n != 2 {
		t.Errorf("Len = %d, want 2", n)
	}
	if kvs, _ := s.GetAll("b"); len(kvs) != 4 {
		t.Errorf("GetAll = %q, want two keys", kvs)
	}
	if res, err := exec(t, s, store.Op{Kind: store.KindTTL, Bucket: "b", Key: "long"}); err != nil || res.Value != "3598500" {
		t.Errorf("TTL of long = %+v, %v; want 3598500 ms", res, err)
	}
	if res, err := exec(t, s, store.Op{Kind: store.KindTTL, Bucket: "b", Key: "never"}); err != nil || res.Value != "" {
		t.Errorf("TTL of never = %+v, %v; want no expiry", res, err)
	}
	if _, err := exec(t, s, store.Op{Kind: store.KindTTL, Bucket: "b", Key: "short"}); !errors.Is(err, store.ErrKeyNotFound) {
		t.Errorf("TTL of an expired key: %v, want ErrKeyNotFound", err)
	}
	// A write finds the expired key missing.
	if res, err := exec(t, s, store.Op{Kind: store.KindSet, Bucket: "b", Key: "short", Value: "new", Flags: store.FlagNX}); err != nil || res.Count != 1 {
		t.Errorf("SET NX over an expired key = %+v, %v; want written", res, err)
	}
	clk.advance(time.Second)
	// The bucket expired: gone for reads, and a create starts it empty.
	if _, err := s.Get("h", "f"); !errors.Is(err, store.ErrBucketNotFound) {
		t.Errorf("Get in an expired bucket: %v, want ErrBucketNotFound", err)
	}
	if slices.Contains(s.Buckets(), "h") {
		t.Error("an expired bucket is listed")
	}
	if res, err := exec(t, s, store.Op{Kind: store.KindPutCreate, Bucket: "h", Key: "g", Value: "w"}); err != nil || res.Count != 1 {
		t.Errorf("HSET in an expired bucket = %+v, %v", res, err)
	}
	if kvs, _ := s.GetAll("h"); !slices.Equal(kvs, []string{"g", "w"}) {
		t.Errorf("the bucket made again holds %q, want only g", kvs)
	}
	if res, _ := exec(t, s, store.Op{Kind: store.KindTTL, Bucket: "h", Flags: store.FlagBucket}); res.Value != "" {
		t.Errorf("the bucket made again has TTL %q, want none", res.Value)
	}
}

// TestDecide: the writes decided from what they find, as Redis answers
// them.
func TestDecide(t *testing.T) {
	const now = 1_000_000
	live := store.Entry{Key: "k", Value: "old", Version: 10}
	withTTL := store.Entry{Key: "k", Value: "old", Version: 10, Expires: now + 5000}
	expired := store.Entry{Key: "k", Value: "old", Version: 10, Expires: now}
	bucket := store.BucketMeta{Created: 5}
	cur := func(e store.Entry) store.Current { return store.Current{Now: now, Bucket: bucket, Entry: e} }
	rel := func(ms int64) (int64, store.Flags) { return ms, store.FlagRelative }
	op := func(k store.Kind, f store.Flags, expires int64) store.Op {
		return store.Op{Kind: k, Bucket: "b", Key: "k", Value: "new", Flags: f, Expires: expires}
	}
	ms, r := rel(3000)
	for _, tc := range []struct {
		name    string
		op      store.Op
		cur     store.Current
		count   int
		value   string
		changes string // kinds and expiries of the changes
		err     error
	}{
		{"SET NX on a live key", op(store.KindSet, store.FlagNX, 0), cur(live), 2, "", "", nil},
		{"SET NX on a missing key", op(store.KindSet, store.FlagNX, 0), cur(store.Entry{}), 1, "", "PUT:0", nil},
		{"SET NX on an expired key deletes it first", op(store.KindSet, store.FlagNX, 0), cur(expired), 1, "", "DELETE:0 PUT:0", nil},
		{"SET XX on a missing key", op(store.KindSet, store.FlagXX, 0), cur(store.Entry{}), 0, "", "", nil},
		{"SET XX GET", op(store.KindSet, store.FlagXX|store.FlagGet, 0), cur(live), 3, "old", "PUT:0", nil},
		{"SET KEEPTTL", op(store.KindSet, store.FlagKeepTTL, 0), cur(withTTL), 3, "", fmt.Sprintf("PUT:%d", now+5000), nil},
		{"SET PX", op(store.KindSet, r|store.FlagNX, ms), cur(store.Entry{}), 1, "", fmt.Sprintf("PUT:%d", now+3000), nil},
		{"SET PXAT in the past deletes", op(store.KindSet, 0, now-1), cur(live), 3, "", "DELETE:0", nil},
		{"SET creates a missing bucket", op(store.KindSet, 0, 0), store.Current{Now: now}, 1, "", "CREATE:0 PUT:0", nil},
		{"SET drops an expired bucket first", op(store.KindSet, 0, 0), store.Current{Now: now, Bucket: store.BucketMeta{Created: 5, ExpiresV: 5, Expires: now}}, 1, "", "DROP:0 CREATE:0 PUT:0", nil},
		{"EXPIRE", op(store.KindExpire, r, ms), cur(live), 1, "", fmt.Sprintf("PUT:%d", now+3000), nil},
		{"EXPIRE of a missing key", op(store.KindExpire, r, ms), cur(store.Entry{}), 0, "", "", store.ErrKeyNotFound},
		{"EXPIRE NX with a TTL", op(store.KindExpire, r|store.FlagNX, ms), cur(withTTL), 0, "", "", nil},
		{"EXPIRE XX without", op(store.KindExpire, r|store.FlagXX, ms), cur(live), 0, "", "", nil},
		{"EXPIRE GT without: infinite", op(store.KindExpire, r|store.FlagGT, ms), cur(live), 0, "", "", nil},
		{"EXPIRE GT earlier", op(store.KindExpire, r|store.FlagGT, ms), cur(withTTL), 0, "", "", nil},
		{"EXPIRE LT earlier", op(store.KindExpire, r|store.FlagLT, ms), cur(withTTL), 1, "", fmt.Sprintf("PUT:%d", now+3000), nil},
		{"EXPIRE LT without", op(store.KindExpire, r|store.FlagLT, ms), cur(live), 1, "", fmt.Sprintf("PUT:%d", now+3000), nil},
		{"EXPIRE 0 deletes", op(store.KindExpire, store.FlagRelative, 0), cur(live), 2, "", "DELETE:0", nil},
		{"EXPIRE a bucket", store.Op{Kind: store.KindExpire, Bucket: "b", Flags: store.FlagBucket | r, Expires: ms}, cur(live), 1, "", fmt.Sprintf("EXPIRE:%d", now+3000), nil},
		{"EXPIRE a bucket in the past drops it", store.Op{Kind: store.KindExpire, Bucket: "b", Flags: store.FlagBucket, Expires: 1}, cur(live), 2, "", "DROP:0", nil},
		{"EXPIRE a missing bucket", store.Op{Kind: store.KindExpire, Bucket: "b", Flags: store.FlagBucket | r, Expires: ms}, store.Current{Now: now}, 0, "", "", store.ErrBucketNotFound},
		{"PERSIST", op(store.KindPersist, 0, 0), cur(withTTL), 1, "", "PUT:0", nil},
		{"PERSIST without a TTL", op(store.KindPersist, 0, 0), cur(live), 0, "", "", nil},
		{"GETEX PERSIST", op(store.KindGetEx, store.FlagPersist, 0), cur(withTTL), 0, "old", "PUT:0", nil},
		{"GETEX EX", op(store.KindGetEx, r, ms), cur(live), 0, "old", fmt.Sprintf("PUT:%d", now+3000), nil},
		{"GETEX of an expired key deletes it", op(store.KindGetEx, r, ms), cur(expired), 0, "", "DELETE:0", store.ErrKeyNotFound},
		{"EXPIRE in an expired bucket drops it", op(store.KindExpire, r, ms), store.Current{Now: now, Bucket: store.BucketMeta{Created: 5, ExpiresV: 5, Expires: now}, Entry: live}, 0, "", "DROP:0", store.ErrBucketNotFound},
		{"RECLAIM an expired key", op(store.KindReclaim, 0, 0), cur(expired), 1, "", "DELETE:0", nil},
		{"RECLAIM a live key", op(store.KindReclaim, 0, 0), cur(withTTL), 0, "", "", nil},
		{"RECLAIM an expired bucket", store.Op{Kind: store.KindReclaim, Bucket: "b", Flags: store.FlagBucket}, store.Current{Now: now, Bucket: store.BucketMeta{Created: 5, ExpiresV: 5, Expires: now - 1}}, 1, "", "DROP:0", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.op.Value = map[bool]string{true: "new"}[tc.op.Kind == store.KindSet]
			if err := tc.op.Validate(); err != nil {
				t.Fatalf("invalid op %+v: %v", tc.op, err)
			}
			v := store.Version(100)
			res, ch, err := store.Decide(tc.op, tc.cur, func() store.Version { v++; return v })
			storetest.CheckErr(t, tc.name, err, tc.err)
			var got []string
			for _, c := range ch {
				got = append(got, fmt.Sprintf("%v:%d", c.Kind, c.Entry.Expires))
			}
			if res.Count != tc.count || res.Value != tc.value || fmt.Sprint(got) != fmt.Sprint(splitWords(tc.changes)) {
				t.Errorf("= count %d value %q changes %v; want %d %q %v", res.Count, res.Value, got, tc.count, tc.value, splitWords(tc.changes))
			}
		})
	}
}

func splitWords(s string) []string { return splitSpace(s) }

func splitSpace(s string) []string {
	var out []string
	start := -1
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ' ' {
			if start >= 0 {
				out = append(out, s[start:i])
				start = -1
			}
		} else if start < 0 {
			start = i
		}
	}
	return out
}

// TestExpiryMergesInAnyOrder: copies that receive the same versioned
// writes, expiries of keys and of the bucket among them, in any order end
// equal, digests included.
func TestExpiryMergesInAnyOrder(t *testing.T) {
	type w struct {
		kind store.Kind
		e    store.Entry
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 300 {
		var ws []w
		for i := range 12 {
			v := store.Version(i + 1)
			key := fmt.Sprint("k", rng.IntN(3))
			switch rng.IntN(6) {
			case 0:
				ws = append(ws, w{store.KindCreate, store.Entry{Version: v}})
			case 1:
				ws = append(ws, w{store.KindDrop, store.Entry{Version: v}})
			case 2:
				ws = append(ws, w{store.KindExpire, store.Entry{Version: v, Expires: int64(rng.IntN(3)) * 1000}})
			case 3:
				ws = append(ws, w{store.KindDelete, store.Entry{Key: key, Version: v, Deleted: true}})
			default:
				ws = append(ws, w{store.KindPut, store.Entry{Key: key, Value: fmt.Sprint(rng.IntN(2)), Version: v, Expires: int64(rng.IntN(3)) * 1000}})
			}
		}
		var want uint64
		for copyNo := range 4 {
			s := store.NewStore()
			order := rng.Perm(len(ws))
			for _, i := range order {
				x := ws[i]
				var err error
				switch x.kind {
				case store.KindCreate:
					err = s.ApplyCreate("b", x.e.Version)
				case store.KindDrop:
					err = s.ApplyDrop("b", x.e.Version)
				case store.KindExpire:
					err = s.ApplyExpiry("b", x.e.Version, x.e.Expires)
				default:
					err = s.ApplyEntry("b", x.e)
				}
				storetest.MustNil(t, err)
			}
			d, _ := s.Digest("b")
			if copyNo == 0 {
				want = d.Sum()
			} else if d.Sum() != want {
				t.Fatalf("round %d: copies differ after the writes %+v in another order", round, ws)
			}
			// A copy merged from this one's pages is equal too.
			m, _ := s.Meta("b")
			var all []store.Entry
			for sh := range store.NumShards {
				es, _, _ := s.Page("b", sh, "", 1<<20)
				all = append(all, es...)
			}
			o := store.NewStore()
			if _, err := o.Merge("b", m, all); err != nil {
				t.Fatal(err)
			}
			if od, _ := o.Digest("b"); od.Sum() != want {
				t.Fatalf("round %d: a copy merged from pages differs: %+v vs %+v", round, od.Meta, d.Meta)
			}
		}
	}
}

// TestBucketExpiryForgottenByDrop: an expiry set before a drop does not
// outlive it, whatever the order.
func TestBucketExpiryForgottenByDrop(t *testing.T) {
	s := store.NewStore()
	storetest.MustNil(t, s.ApplyExpiry("b", 5, 1))
	storetest.MustNil(t, s.ApplyDrop("b", 7))
	storetest.MustNil(t, s.ApplyCreate("b", 9))
	m, _ := s.Meta("b")
	if m.Expires != 0 || m.ExpiresV != 0 || !m.Exists() {
		t.Errorf("meta = %+v, want the bucket without expiry", m)
	}
	if !s.BucketLive("b") {
		t.Error("the bucket made after the drop is not live")
	}
}

// TestFindExpired: the sampling finds what expired, only in the buckets
// asked for, and a reclaim deletes it.
func TestFindExpired(t *testing.T) {
	clk := newFakeClock()
	s := store.NewStoreWithClock(store.NewClock(clk.now))
	for i := range 100 {
		_, err := exec(t, s, store.Op{Kind: store.KindPutCreate, Bucket: fmt.Sprint("b", i%2), Key: fmt.Sprint(i), Value: "v", Expires: 1000, Flags: store.FlagRelative})
		storetest.MustNil(t, err)
	}
	if found, _ := s.FindExpired(nil, clk.ms.Load(), 1000, 20, func(string) bool { return true }); len(found) != 0 {
		t.Fatalf("found %d expired before the time", len(found))
	}
	clk.advance(2 * time.Second)
	found, looked := s.FindExpired(nil, clk.ms.Load(), 1000, 1000, func(b string) bool { return b == "b0" })
	if len(found) != 50 || looked != 50 {
		t.Fatalf("found %d of 50, looked at %d", len(found), looked)
	}
	for _, e := range found {
		res, err := exec(t, s, store.Op{Kind: store.KindReclaim, Bucket: e.Bucket, Key: e.Key})
		if err != nil || res.Count != 1 {
			t.Fatalf("reclaim %+v = %+v, %v", e, res, err)
		}
	}
	if keys, _ := s.Volatile(); keys != 50 {
		t.Errorf("%d entries with an expiry left, want 50 (b1's)", keys)
	}
	if st := s.Stats(); st.Tombstones != 50 {
		t.Errorf("%d tombstones, want 50", st.Tombstones)
	}
}
