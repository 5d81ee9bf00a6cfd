package store_test

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/node/store/internal/mapstore"
)

// FuzzLayoutMatchesMaps applies the same operations to a store and to
// mapstore, the store as it was before its entries were packed into tables
// (Go maps of strings): versioned writes, drops, expiries, evictions,
// merges, collections, removals, retirements and every kind of Execute,
// with a shared fake clock. Every outcome must be equal, and so must the
// digests after every operation and, at the end, all that the two hold:
// records, metas, digests, pages of every shard, keys, values, counts,
// expired keys and listings. (Every prefix of an input is an input too, so
// the end is enough.)
func FuzzLayoutMatchesMaps(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 1, 2, 3, 0, 0, 0, 1, 5, 3, 0, 8, 0, 1, 2, 3, 4})
	f.Add([]byte{8, 1, 2, 3, 4, 5, 8, 1, 2, 9, 40, 5, 6, 0, 0, 0, 60, 0, 1, 1, 2, 0, 30, 0})
	f.Add([]byte{0, 0, 0, 7, 9, 0, 0, 0, 0, 6, 9, 0, 0, 0, 0, 7, 10, 0, 4, 0, 0, 0, 20, 0, 6, 0, 0, 0, 63, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 6*maxLayoutOps {
			return
		}
		h := newLayoutHarness()
		for ; len(data) >= 6; data = data[6:] {
			h.step(t, data[:6])
		}
		h.compare(t)
	})
}

// maxLayoutOps bounds FuzzLayoutMatchesMaps's inputs (TestLayoutMatchesMapsRandom
// runs long sequences). The fuzzing engine minimizes every input that adds
// coverage, and running a line more times than before does (counts go by
// powers of two): it tries up to about n²/2 shorter inputs of an n-byte one,
// a run each, for up to -fuzzminimizetime (a minute by default), and reports
// none of those runs until it is done. With 400 operations (2,400 bytes, 20
// to 90 ms a run, everything compared every 16) one such input took the
// whole minute, at 0 execs/s; with 32 and one comparison at the end (half a
// millisecond a run) the longest took 14 s, and a minute ran 322,000 inputs
// rather than 1,000.
const maxLayoutOps = 32

// TestLayoutMatchesMapsRandom runs FuzzLayoutMatchesMaps's comparison on
// long random sequences, in every run.
func TestLayoutMatchesMapsRandom(t *testing.T) {
	for seed := range 20 {
		h := newLayoutHarness()
		b := make([]byte, 6)
		x := uint64(seed)*0x9E3779B97F4A7C15 + 1
		for i := range 3000 {
			for j := range b {
				x ^= x << 13
				x ^= x >> 7
				x ^= x << 17
				b[j] = byte(x)
			}
			h.step(t, b)
			if i%200 == 199 {
				h.compare(t)
			}
		}
		h.compare(t)
	}
}

const layoutBase = 1_700_000_000_000 // ms: the fake clock's start

type layoutHarness struct {
	now     int64 // ms
	s       *store.Store
	m       *mapstore.Store
	buckets []string
	keys    []string
	values  []string
	log     []string
}

func newLayoutHarness() *layoutHarness {
	h := &layoutHarness{now: layoutBase + 32}
	clock := func() time.Time { return time.UnixMilli(h.now) }
	h.s = store.NewStoreWithClock(store.NewClock(clock))
	h.m = mapstore.NewStoreWithClock(store.NewClock(clock))
	h.buckets, h.keys, h.values = layoutBuckets, layoutKeys, layoutValues
	return h
}

// The bucket names, keys and values the operations draw from, made once
// (a harness only reads them).
var (
	layoutBuckets = []string{"a", "b", store.PlainBucketPrefix + "0"}
	layoutKeys    = func() []string {
		keys := []string{"", "k", "key-1", "key-2", "\x00", "\xff\xfe", strings.Repeat("long", 20), "k3", "k4", "k5"}
		for i := range 150 {
			keys = append(keys, fmt.Sprintf("many-%d", i))
		}
		return keys
	}()
	layoutValues = []string{"", "v", "w", "value-8!", "value-9!", strings.Repeat("x", 200), strings.Repeat("y", 3000),
		"\x00\x01", "zz", strings.Repeat("q", 300<<10)}
)

// version returns a version near the clock's time: up to 32 ms before it
// and 31 after, with a counter of 0 to 3.
func (h *layoutHarness) version(b byte) store.Version {
	return store.VersionAt(time.UnixMilli(h.now-32+int64(b%64))) + store.Version(b>>6)
}

// expiry returns no expiry, or one from 16 ms before the clock's time to
// 47 after.
func (h *layoutHarness) expiry(b byte) int64 {
	if b%4 == 0 {
		return 0
	}
	return h.now - 16 + int64(b%64)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// same fails t when got and want (the store's and the model's) differ;
// what and args (as for fmt.Sprintf) name the comparison.
func (h *layoutHarness) same(t *testing.T, got, want any, what string, args ...any) {
	if !reflect.DeepEqual(got, want) {
		t.Helper()
		h.differ(t, got, want, what, args...)
	}
}

// differ fails t: got and want differ. The comparisons made thousands of
// times a run (digests after every operation, every key of every bucket,
// pages) test their values themselves and call differ only then, so that
// they cost neither reflection nor formatting.
func (h *layoutHarness) differ(t *testing.T, got, want any, what string, args ...any) {
	t.Helper()
	t.Fatalf("%s: store %+v, maps %+v\nops:\n%s", fmt.Sprintf(what, args...), got, want, strings.Join(h.log, "\n"))
}

// step applies one operation, decoded from six bytes, to both.
func (h *layoutHarness) step(t *testing.T, b []byte) {
	t.Helper()
	bucket := h.buckets[int(b[1])%len(h.buckets)]
	key := h.keys[int(b[2])%len(h.keys)]
	if b[1]&0x80 != 0 {
		key = h.keys[int(b[2])%10] // the special keys more often
	}
	value := h.values[int(b[3])%len(h.values)]
	if b[3] == 255 {
		value = h.values[len(h.values)-1] // a value of its own chunk, seldom
	} else if int(b[3])%len(h.values) == len(h.values)-1 {
		value = "big"
	}
	v, exp := h.version(b[4]), h.expiry(b[5])
	name := fmt.Sprintf("%d", b[0]%16)
	op := b[0] % 16
	if op == 2 && b[5]%8 != 0 || op == 4 && b[5]%4 != 0 {
		op = 0 // drops and bucket expiries seldom, so that buckets fill
	}
	switch op {
	case 0, 1, 13, 14, 15:
		e := store.Entry{Key: key, Value: value, Version: v, Expires: exp}
		if b[0]&0x40 != 0 { // ties: one version, few values, of a few keys
			e.Key, e.Value, e.Version = h.keys[b[2]%3], h.values[b[3]%2], h.version(32)
		}
		if b[0]&0x80 != 0 {
			e = store.Entry{Key: key, Version: v, Deleted: true}
		}
		name = fmt.Sprintf("ApplyEntry(%s, %q, %.10q, %v, del=%v, exp=%d)", bucket, e.Key, e.Value, e.Version, e.Deleted, e.Expires)
		h.same(t, errString(h.s.ApplyEntry(bucket, e)), errString(h.m.ApplyEntry(bucket, e)), "%s", name)
	case 2:
		name = fmt.Sprintf("ApplyDrop(%s, %v)", bucket, v)
		h.same(t, errString(h.s.ApplyDrop(bucket, v)), errString(h.m.ApplyDrop(bucket, v)), "%s", name)
	case 3:
		name = fmt.Sprintf("ApplyCreate(%s, %v)", bucket, v)
		h.same(t, errString(h.s.ApplyCreate(bucket, v)), errString(h.m.ApplyCreate(bucket, v)), "%s", name)
	case 4:
		name = fmt.Sprintf("ApplyExpiry(%s, %v, %d)", bucket, v, exp)
		h.same(t, errString(h.s.ApplyExpiry(bucket, v, exp)), errString(h.m.ApplyExpiry(bucket, v, exp)), "%s", name)
	case 5:
		name = fmt.Sprintf("ApplyEvict(%s, %q, %v)", bucket, key, v)
		h.same(t, errString(h.s.ApplyEvict(bucket, key, v)), errString(h.m.ApplyEvict(bucket, key, v)), "%s", name)
	case 6:
		meta := store.BucketMeta{Created: v}
		if b[5]&1 != 0 {
			meta = store.BucketMeta{Dropped: v - 1}
		}
		es := []store.Entry{{Key: key, Value: value, Version: v, Expires: exp},
			{Key: h.keys[int(b[5])%len(h.keys)], Version: h.version(b[5]), Deleted: true}}
		name = fmt.Sprintf("Merge(%s, %+v, %q/%v, %q/%v del)", bucket, meta, key, v, es[1].Key, es[1].Version)
		n1, err1 := h.s.Merge(bucket, meta, es)
		n2, err2 := h.m.Merge(bucket, meta, es)
		h.same(t, []any{n1, errString(err1)}, []any{n2, errString(err2)}, "%s", name)
	case 7:
		name = fmt.Sprintf("Collect(%v)", v)
		t1, r1 := h.s.Collect(v)
		t2, r2 := h.m.Collect(v)
		h.same(t, []int{t1, r1}, []int{t2, r2}, "%s", name)
	case 8:
		if b[4]%32 == 0 {
			name = "Remove(" + bucket + ")"
			h.s.Remove(bucket)
			h.m.Remove(bucket)
		} else {
			name = "advance"
			h.now += int64(b[4] % 5)
		}
	case 9:
		e := store.Entry{Key: key, Value: value, Version: v, Expires: exp}
		name = fmt.Sprintf("ApplyEntryLive(%s, %q, %v)", bucket, key, v)
		l1, a1, err1 := h.s.ApplyEntryLive(bucket, e)
		l2, a2, err2 := h.m.ApplyEntryLive(bucket, e)
		h.same(t, []any{l1, a1, errString(err1)}, []any{l2, a2, errString(err2)}, "%s", name)
	case 10:
		switch b[4] % 4 {
		case 0:
			name = "Retire(" + bucket + ")"
			h.same(t, h.s.Retire(bucket), h.m.Retire(bucket), "%s", name)
		case 1:
			name = "Unretire(" + bucket + ")"
			h.s.Unretire(bucket)
			h.m.Unretire(bucket)
		default:
			name = "Live(" + bucket + ", " + key + ")"
			h.same(t, h.s.Live(bucket, key), h.m.Live(bucket, key), "%s", name)
		}
	default:
		kinds := []store.Kind{store.KindGet, store.KindPut, store.KindPutCreate, store.KindSet, store.KindExpire,
			store.KindPersist, store.KindGetEx, store.KindReclaim, store.KindEvict, store.KindTTL, store.KindDelete,
			store.KindCreate, store.KindDrop, store.KindKeys, store.KindLen, store.KindGetAll}
		op := store.Op{Kind: kinds[int(b[4])%len(kinds)], Bucket: bucket, Key: key, Value: value,
			Flags: store.Flags(b[5]>>2) & (store.FlagNX | store.FlagXX | store.FlagKeepTTL | store.FlagGet | store.FlagPersist | store.FlagRelative | store.FlagBucket)}
		if b[5]&3 != 0 {
			op.Expires = exp
			if op.Flags&store.FlagRelative != 0 {
				op.Expires = int64(b[5]%8) - 2
			}
		}
		name = fmt.Sprintf("Execute(%+.40v)", op)
		r1, err1 := h.s.Execute(context.Background(), op)
		r2, err2 := h.m.Execute(context.Background(), op)
		h.same(t, []any{r1.Value, r1.Names, r1.Count, errString(err1)}, []any{r2.Value, r2.Names, r2.Count, errString(err2)}, "%s", name)
	}
	h.log = append(h.log, name)
	for _, bucket := range h.buckets {
		d1, ok1 := h.s.Digest(bucket)
		d2, ok2 := h.m.Digest(bucket)
		if d1 != d2 || ok1 != ok2 {
			h.differ(t, []any{d1, ok1}, []any{d2, ok2}, "after %s: Digest(%s)", name, bucket)
		}
	}
}

// compare compares everything the two hold.
func (h *layoutHarness) compare(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	h.same(t, h.s.Records(), h.m.Records(), "Records")
	h.same(t, h.s.Buckets(), h.m.Buckets(), "Buckets")
	h.same(t, h.s.Stats(), h.m.Stats(), "Stats")
	k1, b1 := h.s.Volatile()
	k2, b2 := h.m.Volatile()
	h.same(t, []int{k1, b1}, []int{k2, b2}, "Volatile")
	n1, _ := h.s.DBSize(ctx)
	n2, _ := h.m.DBSize(ctx)
	h.same(t, n1, n2, "DBSize")
	for _, bucket := range h.s.Records() {
		m1, _ := h.s.Meta(bucket)
		m2, _ := h.m.Meta(bucket)
		h.same(t, m1, m2, "Meta(%s)", bucket)
		for shard := -1; shard <= store.NumShards; shard++ {
			for _, maxBytes := range []int{0, 100, 1 << 20} {
				var got, want []store.Entry
				after := ""
				for range 1000 {
					p1, more1, ok1 := h.s.Page(bucket, shard, after, maxBytes)
					p2, more2, ok2 := h.m.Page(bucket, shard, after, maxBytes)
					if more1 != more2 || ok1 != ok2 {
						h.differ(t, []bool{more1, ok1}, []bool{more2, ok2}, "Page(%s, %d, %q, %d) more, ok", bucket, shard, after, maxBytes)
					}
					got = append(got, p1...)
					want = append(want, p2...)
					if !more1 || len(p1) == 0 {
						break
					}
					after = p1[len(p1)-1].Key
				}
				if !slices.Equal(got, want) {
					h.differ(t, got, want, "Page(%s, %d, %d)", bucket, shard, maxBytes)
				}
			}
		}
		keys1, err1 := h.s.Keys(bucket)
		keys2, err2 := h.m.Keys(bucket)
		h.same(t, []any{keys1, errString(err1)}, []any{keys2, errString(err2)}, "Keys(%s)", bucket)
		all1, err1 := h.s.GetAll(bucket)
		all2, err2 := h.m.GetAll(bucket)
		h.same(t, []any{all1, errString(err1)}, []any{all2, errString(err2)}, "GetAll(%s)", bucket)
		l1, err1 := h.s.Len(bucket)
		l2, err2 := h.m.Len(bucket)
		h.same(t, []any{l1, errString(err1)}, []any{l2, errString(err2)}, "Len(%s)", bucket)
		for _, key := range h.keys {
			g1, err1 := h.s.Get(bucket, key)
			g2, err2 := h.m.Get(bucket, key)
			if g1 != g2 || errString(err1) != errString(err2) {
				h.differ(t, []any{g1, errString(err1)}, []any{g2, errString(err2)}, "Get(%s, %q)", bucket, key)
			}
			op := store.Op{Bucket: bucket, Key: key}
			if c1, c2 := h.s.State(op, h.now), h.m.State(op, h.now); c1 != c2 {
				h.differ(t, c1, c2, "State(%s, %q)", bucket, key)
			}
		}
		for _, now := range []int64{h.now - 20, h.now, h.now + 20, h.now + 70} {
			e1 := h.s.ExpiredIn(nil, bucket, now, 1000)
			e2 := h.m.ExpiredIn(nil, bucket, now, 1000)
			var k1, k2 []string
			for _, e := range e1 {
				k1 = append(k1, e.Key)
			}
			for _, e := range e2 {
				k2 = append(k2, e.Key)
			}
			slices.Sort(k1)
			slices.Sort(k2)
			h.same(t, k1, k2, "ExpiredIn(%s, %d)", bucket, now)
		}
		r := store.ScanRequest{Count: 3}
		for range 100 {
			p1, err1 := h.s.ScanBucket(ctx, bucket, r)
			p2, err2 := h.m.ScanBucket(ctx, bucket, r)
			var i1, i2 []string
			for _, it := range p1.Items {
				i1 = append(i1, it.Name, it.Value)
			}
			for _, it := range p2.Items {
				i2 = append(i2, it.Name, it.Value)
			}
			h.same(t, []any{i1, p1.Next, errString(err1)}, []any{i2, p2.Next, errString(err2)}, "ScanBucket(%s, %d)", bucket, r.Cursor)
			if err1 != nil || p1.Next == 0 {
				break
			}
			r.Cursor = p1.Next
		}
	}
	var f1, f2 []string
	e1, n1x := h.s.FindExpired(nil, h.now, 1000, 1000, func(string) bool { return true })
	e2, n2x := h.m.FindExpired(nil, h.now, 1000, 1000, func(string) bool { return true })
	for _, e := range e1 {
		f1 = append(f1, fmt.Sprint(e.Bucket, e.Key, e.Whole))
	}
	for _, e := range e2 {
		f2 = append(f2, fmt.Sprint(e.Bucket, e.Key, e.Whole))
	}
	slices.Sort(f1)
	slices.Sort(f2)
	h.same(t, []any{f1, n1x}, []any{f2, n2x}, "FindExpired")
}
