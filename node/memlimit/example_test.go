package memlimit_test

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/dboutique/dboutique/node/memlimit"
)

// A node with --maxmemory 64mb --maxmemory-policy allkeys-lru: the store
// counts its bytes and entries, the Governor says when to evict and
// which of a sample of entries goes first.
func Example() {
	limit, _ := memlimit.ParseSize("64mb")
	policy, _ := memlimit.ParsePolicy("allkeys-lru")

	// The store's counters (in a node, atomics kept by the store).
	var bytes, entries atomic.Int64
	meter := memlimit.StoreMeter(func() memlimit.Footprint {
		return memlimit.Footprint{Bytes: bytes.Load(), Entries: entries.Load()}
	})
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	g, err := memlimit.New(memlimit.Config{Limit: limit, Policy: policy, Meter: meter,
		Now: func() time.Time { return now }})
	if err != nil {
		panic(err)
	}

	// 40,000 entries of 1 KiB, and the 1 MiB LRU sketch: over the threshold,
	// 60% of the limit.
	bytes.Store(40_000 * (10 + 1024))
	entries.Store(40_000)
	fmt.Printf("used %s of %s, evict from %s: %d bytes over\n",
		memlimit.FormatSize(g.Used()), memlimit.FormatSize(limit), memlimit.FormatSize(g.Threshold()), g.Over())

	// Reads touch entries; a sample of three, written at the same time,
	// of which "b" was read last and "c" never.
	written := now.UnixMilli()
	sample := []memlimit.Candidate{
		{Hash: memlimit.KeyHash("shop", "a"), WrittenAt: written, Size: memlimit.EntryCost(1, 1024)},
		{Hash: memlimit.KeyHash("shop", "b"), WrittenAt: written, Size: memlimit.EntryCost(1, 1024)},
		{Hash: memlimit.KeyHash("shop", "c"), WrittenAt: written - 5000, Size: memlimit.EntryCost(1, 1024)},
	}
	now = now.Add(time.Second)
	g.Touch(sample[0].Hash)
	now = now.Add(time.Second)
	g.Touch(sample[1].Hash)
	victim := g.Pick(sample)
	fmt.Println("evict entry", victim)
	g.Evicted(1)
	fmt.Println("evicted keys:", g.Stats().EvictedKeys)
	// Output:
	// used 43688576 of 64mb, evict from 40265318: 3423258 bytes over
	// evict entry 2
	// evicted keys: 1
}
