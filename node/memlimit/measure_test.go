package memlimit_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/dboutique/dboutique/node/memlimit"
	"github.com/dboutique/dboutique/node/store"
)

// The overhead constants of Footprint.Estimate are measured here, on the
// real store: fill one with entries, measure the heap it holds after a
// full collection (runtime.MemStats.HeapAlloc, before and after) and the
// memory its tables hold outside the heap (Store.OffHeap), and compare
// with the store's own count of key and value bytes.
//
// TestOverheadConstants checks at a moderate size, in every run, that
// the constants still describe the store. With MEMLIMIT_MEASURE=1,
// TestMeasureOverhead makes the full measurement that doc.go records (a
// few seconds and about 1.5 GB of memory):
//
//	MEMLIMIT_MEASURE=1 go test -run MeasureOverhead -v ./node/memlimit

// layout is a way to fill a store: n entries with values of valueLen
// bytes over the given number of buckets (entry i in bucket i%buckets).
type layout struct {
	name     string
	n        int
	valueLen int
	buckets  int
}

// measured is what filling a store as a layout took.
type measured struct {
	heap    int64              // heap growth after a full collection
	offHeap int64              // what the store's tables hold outside the heap
	fp      memlimit.Footprint // the store's footprint
}

// total is the memory the store holds, on the heap and off it.
func (m measured) total() int64 { return m.heap + m.offHeap }

// perEntry is the measured overhead per entry beyond the bytes of keys and
// values.
func (m measured) perEntry() float64 { return float64(m.total()-m.fp.Bytes) / float64(m.fp.Entries) }

// errorPct is how far Estimate is from the measured memory, in percent.
func (m measured) errorPct() float64 {
	return 100 * float64(m.fp.Estimate()-m.total()) / float64(m.total())
}

// liveHeap returns the heap in use after two full collections (the second
// frees what the first one's finalizers released).
func liveHeap() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// measure fills a new store as l says, with keys "key:%08d" (12 bytes),
// as RESP's SET and HSET would (KindPutCreate), and measures it.
func measure(t testing.TB, l layout) measured {
	t.Helper()
	names := make([]string, l.buckets)
	for i := range names {
		names[i] = "bucket:" + strconv.Itoa(i)
	}
	value := strings.Repeat("v", l.valueLen)
	before := liveHeap()
	s := store.NewStore()
	var fp memlimit.Footprint
	for i := range l.n {
		key := fmt.Sprintf("key:%08d", i)
		b := i % l.buckets
		op := store.Op{Kind: store.KindPutCreate, Bucket: names[b], Key: key, Value: string([]byte(value))} // a value of its own, as from the network
		if _, err := s.Execute(context.Background(), op); err != nil {
			t.Fatal(err)
		}
		fp.Bytes += int64(len(key) + len(value))
	}
	// Every bucket holds entries, so each has a table.
	fp.Entries, fp.Buckets, fp.Maps = int64(l.n), int64(l.buckets), int64(min(l.n, l.buckets))
	heap := liveHeap() - before
	off := s.OffHeap()
	runtime.KeepAlive(s)
	if st := s.Stats(); st.Bytes != fp.Bytes || st.Keys != l.n {
		t.Fatalf("%s: the store counts %d bytes and %d keys, want %d and %d", l.name, st.Bytes, st.Keys, fp.Bytes, l.n)
	}
	return measured{heap: heap, offHeap: off, fp: fp}
}

// TestOverheadConstants checks that Estimate stays near the memory a store
// really holds (heap and tables), for big buckets and for small ones:
// within 25% below and 50% above. Not parallel: it measures the heap.
func TestOverheadConstants(t *testing.T) {
	if testing.Short() {
		t.Skip("measures the heap of 100k entries")
	}
	for _, l := range []layout{
		{"60k short entries in the 256 buckets of plain keys", 60_000, 10, 256},
		{"5k one-key buckets", 5_000, 10, 5_000},
		{"5k buckets of 10 keys", 50_000, 10, 5_000},
	} {
		m := measure(t, l)
		t.Logf("%s: heap %d, tables %d, estimate %d (%+.1f%%), %.1f bytes per entry beyond keys and values",
			l.name, m.heap, m.offHeap, m.fp.Estimate(), m.errorPct(), m.perEntry())
		if e := m.errorPct(); e < -25 || e > 50 {
			t.Errorf("%s: Estimate %d is %+.1f%% off the measured %d: measure the constants again (MEMLIMIT_MEASURE=1)",
				l.name, m.fp.Estimate(), e, m.total())
		}
	}
}

// TestMeasureOverhead makes the measurement that doc.go records.
func TestMeasureOverhead(t *testing.T) {
	if os.Getenv("MEMLIMIT_MEASURE") == "" {
		t.Skip("set MEMLIMIT_MEASURE=1 to measure the overhead constants (1.5 GB, a few seconds)")
	}
	t.Logf("%-45s %12s %12s %9s %10s", "layout", "heap", "tables", "per entry", "estimate")
	show := func(l layout, m measured) {
		t.Logf("%-45s %12d %12d %9.1f %+9.1f%%", l.name, m.heap, m.offHeap, m.perEntry(), m.errorPct())
	}
	// Big buckets: an entry's bytes in its table beyond its key and
	// value. The share of the index and of the last chunk depends on how
	// full they are, which varies with the count: sweep it.
	var sum float64
	var n int
	for _, count := range []int{200_000, 300_000, 500_000, 700_000, 1_000_000, 1_400_000, 2_000_000} {
		l := layout{fmt.Sprintf("%d short entries, 256 buckets", count), count, 10, 256}
		m := measure(t, l)
		show(l, m)
		sum += float64(m.offHeap-m.fp.Bytes) / float64(m.fp.Entries)
		n++
	}
	for _, l := range []layout{
		{"1M short entries, 1 bucket", 1_000_000, 10, 1},
		{"1M entries of 1 KiB, 256 buckets", 1_000_000, 1024, 256},
		{"1M entries of 1 KiB, 1 bucket", 1_000_000, 1024, 1},
	} {
		m := measure(t, l)
		show(l, m)
		sum += float64(m.offHeap-m.fp.Bytes) / float64(m.fp.Entries)
		n++
	}
	t.Logf("mean table bytes per entry in big buckets beyond keys and values: %.1f (EntryOverhead %d)", sum/float64(n), memlimit.EntryOverhead)
	// Small buckets: each bucket's record is on the heap (BucketOverhead);
	// its table's least blocks are off it (MapOverhead, given
	// EntryOverhead).
	for _, l := range []layout{
		{"100k one-key buckets", 100_000, 10, 100_000},
		{"100k buckets of 10 keys", 1_000_000, 10, 100_000},
	} {
		m := measure(t, l)
		show(l, m)
		bucketCost := float64(m.heap) / float64(m.fp.Buckets)
		tableCost := float64(m.offHeap-m.fp.Bytes-m.fp.Entries*memlimit.EntryOverhead) / float64(m.fp.Maps)
		t.Logf("  %.0f bytes of heap per bucket (BucketOverhead %d), %.0f of table per bucket beyond its entries (MapOverhead %d)",
			bucketCost, memlimit.BucketOverhead, tableCost, memlimit.MapOverhead)
	}
	for _, l := range []layout{
		{"100k buckets of 3 keys", 300_000, 10, 100_000},
		{"10k buckets of 100 keys", 1_000_000, 10, 10_000},
		{"1k buckets of 1000 keys", 1_000_000, 10, 1_000},
		{"10k buckets of 100 keys of 1 KiB", 1_000_000, 1024, 10_000},
	} {
		show(l, measure(t, l))
	}
}
