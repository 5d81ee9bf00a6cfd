package store_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dboutique/dboutique/node/store"
)

// The store's memory per entry, measured as table C of `make bench` loads
// a node (16-byte keys, 8-byte values, written as RESP's HSET and SET
// would): the live heap after a full collection and the growth of the
// process's resident size, per entry. Gated, as they take seconds and
// gigabytes:
//
//	STORE_MEASURE=1 go test -run 'TestMeasureMemory/hash' -v ./node/store
//	STORE_MEASURE=1 go test -run 'TestMeasureMemory/plain' -v ./node/store
//	STORE_MEASURE_BIG=1 go test -run TestMeasureGCPauses -v -timeout 30m ./node/store
//
// Run one shape per process: freed memory is not all given back to the
// system at once, so a second shape would start from a larger resident
// size.

// memShape is a way to load a store: n entries over buckets named by
// bucket(i).
type memShape struct {
	name   string
	n      int
	bucket func(i int, key string) string
}

func hashShape(n, buckets int) memShape {
	names := make([]string, buckets)
	for i := range names {
		names[i] = "bucket:" + strconv.Itoa(i)
	}
	per := n / buckets
	return memShape{fmt.Sprintf("hash %d buckets of %d", buckets, per), n,
		func(i int, _ string) string { return names[i/per] }}
}

func plainShape(n int) memShape {
	names := make([]string, 256)
	for i := range names {
		names[i] = store.PlainBucketPrefix + strconv.Itoa(i)
	}
	return memShape{fmt.Sprintf("plain %d keys in 256 buckets", n), n,
		func(_ int, key string) string { return names[store.NameHash(key)%256] }}
}

// vmRSS returns the process's resident size in bytes (VmRSS), or 0.
func vmRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// heapInUse returns the heap in use after two full collections.
func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// load fills s as sh says, each value a string of its own, as from the
// network.
func load(t testing.TB, s *store.Store, sh memShape) {
	t.Helper()
	ctx := context.Background()
	var buf [32]byte
	for i := range sh.n {
		key := string(fmt.Appendf(buf[:0], "key:%012d", i))
		value := string(fmt.Appendf(buf[:0], "v%07d", i%10_000_000))
		op := store.Op{Kind: store.KindPutCreate, Bucket: sh.bucket(i, key), Key: key, Value: value}
		if _, err := s.Execute(ctx, op); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMeasureMemory(t *testing.T) {
	if os.Getenv("STORE_MEASURE") == "" {
		t.Skip("set STORE_MEASURE=1 to measure memory per entry (1M entries, seconds)")
	}
	for _, sh := range []memShape{hashShape(1_000_000, 1000), plainShape(1_000_000)} {
		name, _, _ := strings.Cut(sh.name, " ")
		t.Run(name, func(t *testing.T) {
			debug.FreeOSMemory()
			heap0, rss0 := heapInUse(), vmRSS()
			s := store.NewStore()
			start := time.Now()
			load(t, s, sh)
			took := time.Since(start)
			rss1 := vmRSS() // before the collections below, as a server's RSS
			heap1 := heapInUse()
			gcStart := time.Now()
			runtime.GC()
			gcTook := time.Since(gcStart)
			st := s.Stats()
			if st.Keys != sh.n {
				t.Fatalf("%d keys, want %d", st.Keys, sh.n)
			}
			n := float64(sh.n)
			t.Logf("%s: loaded in %v; heap in use %.1f B/entry, RSS growth %.1f B/entry; a forced GC took %v",
				sh.name, took.Round(time.Millisecond), float64(heap1-heap0)/n, float64(rss1-rss0)/n, gcTook)
			runtime.KeepAlive(s)
		})
	}
}

// TestMeasureGCPauses loads 10M plain entries and reports the collector's
// pauses while loading and the time of a forced collection after.
func TestMeasureGCPauses(t *testing.T) {
	if os.Getenv("STORE_MEASURE_BIG") == "" {
		t.Skip("set STORE_MEASURE_BIG=1 to measure GC pauses at 10M entries (minutes, ~3 GB)")
	}
	for _, sh := range []memShape{hashShape(10_000_000, 10_000), plainShape(10_000_000)} {
		name, _, _ := strings.Cut(sh.name, " ")
		t.Run(name, func(t *testing.T) {
			debug.FreeOSMemory()
			heap0, rss0 := heapInUse(), vmRSS()
			before := readPauses()
			s := store.NewStore()
			load(t, s, sh)
			rss1 := vmRSS()
			after := readPauses()
			heap1 := heapInUse()
			var gcs []time.Duration
			for range 3 {
				start := time.Now()
				runtime.GC()
				gcs = append(gcs, time.Since(start))
			}
			n := float64(sh.n)
			t.Logf("%s: heap %.1f B/entry, RSS growth %.1f B/entry; forced GCs %v", sh.name,
				float64(heap1-heap0)/n, float64(rss1-rss0)/n, gcs)
			for i, name := range pauseMetrics {
				h := diffHist(before[i], after[i])
				t.Logf("  %s while loading: p50 %v p90 %v p99 %v max %v (%d pauses)", name,
					h.quantile(0.5), h.quantile(0.9), h.quantile(0.99), h.quantile(1), h.total())
			}
			runtime.KeepAlive(s)
		})
	}
}

var pauseMetrics = []string{"/sched/pauses/stopping/gc:seconds", "/sched/pauses/total/gc:seconds"}

type hist struct {
	counts  []uint64
	buckets []float64
}

func readPauses() []hist {
	samples := make([]metrics.Sample, len(pauseMetrics))
	for i, n := range pauseMetrics {
		samples[i].Name = n
	}
	metrics.Read(samples)
	out := make([]hist, len(samples))
	for i, s := range samples {
		h := s.Value.Float64Histogram()
		out[i] = hist{counts: append([]uint64(nil), h.Counts...), buckets: h.Buckets}
	}
	return out
}

func diffHist(a, b hist) hist {
	d := hist{counts: make([]uint64, len(b.counts)), buckets: b.buckets}
	for i := range b.counts {
		d.counts[i] = b.counts[i] - a.counts[i]
	}
	return d
}

func (h hist) total() uint64 {
	var n uint64
	for _, c := range h.counts {
		n += c
	}
	return n
}

// quantile returns the upper bound of the bucket holding quantile q.
func (h hist) quantile(q float64) time.Duration {
	tot := h.total()
	if tot == 0 {
		return 0
	}
	want := uint64(q * float64(tot))
	if want == 0 {
		want = 1
	}
	var n uint64
	for i, c := range h.counts {
		n += c
		if n >= want {
			return time.Duration(h.buckets[i+1] * 1e9)
		}
	}
	return 0
}
