package memlimit_test

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dboutique/dboutique/node/memlimit"
)

// benchGovernor returns a Governor of the policy sized for a million
// entries, and the hashes of that many keys.
func benchGovernor(b *testing.B, p memlimit.Policy) (*memlimit.Governor, []uint64) {
	b.Helper()
	g := mustNew(b, memlimit.Config{Limit: 1 << 30, Policy: p, Meter: &fakeMeter{}, Capacity: 1 << 20})
	hashes := make([]uint64, 1<<20)
	for i := range hashes {
		hashes[i] = memlimit.KeyHash("bucket", "key:"+strconv.Itoa(i))
	}
	return g, hashes
}

// BenchmarkTouch touches keys from every processor at once: the cost a
// read or write pays for LRU or LFU tracking.
func BenchmarkTouch(b *testing.B) {
	for _, p := range []memlimit.Policy{memlimit.AllKeysLRU, memlimit.AllKeysLFU, memlimit.AllKeysRandom} {
		b.Run(p.String(), func(b *testing.B) {
			g, hashes := benchGovernor(b, p)
			var seed atomic.Uint64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := seed.Add(7919)
				for pb.Next() {
					g.Touch(hashes[i&(1<<20-1)])
					i += 104729
				}
			})
		})
	}
	// One hot key from every processor: the slots it shares.
	b.Run("allkeys-lru/hot", func(b *testing.B) {
		g, hashes := benchGovernor(b, memlimit.AllKeysLRU)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				g.Touch(hashes[0])
			}
		})
	})
}

// BenchmarkScore ranks a candidate: what the estimate costs a sampled
// eviction.
func BenchmarkScore(b *testing.B) {
	for _, p := range []memlimit.Policy{memlimit.AllKeysLRU, memlimit.AllKeysLFU, memlimit.VolatileTTL, memlimit.AllKeysRandom} {
		b.Run(p.String(), func(b *testing.B) {
			g, hashes := benchGovernor(b, p)
			for _, h := range hashes[:1<<16] {
				g.Touch(h)
			}
			now := time.Now().UnixMilli()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				g.Score(memlimit.Candidate{Hash: hashes[i&(1<<20-1)], WrittenAt: now - 1000, Expires: now + 60_000, Size: 100})
				i++
			}
		})
	}
}

// BenchmarkPick ranks a sample of 5, Redis's default.
func BenchmarkPick(b *testing.B) {
	g, hashes := benchGovernor(b, memlimit.AllKeysLRU)
	now := time.Now().UnixMilli()
	cands := make([]memlimit.Candidate, 5)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		for j := range cands {
			cands[j] = memlimit.Candidate{Hash: hashes[(i+j*7919)&(1<<20-1)], WrittenAt: now, Size: 100}
		}
		g.Pick(cands)
		i++
	}
}

// BenchmarkOver is the check a write makes, with each meter.
func BenchmarkOver(b *testing.B) {
	var bytes atomic.Int64
	fp := func() memlimit.Footprint { return memlimit.Footprint{Bytes: bytes.Load(), Entries: 1000} }
	for _, tc := range []struct {
		name  string
		meter memlimit.Meter
	}{{"store", memlimit.StoreMeter(fp)}, {"process", memlimit.ProcessMeter(fp, nil)}} {
		b.Run(tc.name, func(b *testing.B) {
			g := mustNew(b, memlimit.Config{Limit: 1 << 30, Meter: tc.meter})
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					g.Over()
				}
			})
		})
	}
}

func BenchmarkKeyHash(b *testing.B) {
	for _, n := range []int{8, 64, 200} {
		key := string(make([]byte, n))
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				memlimit.KeyHash("\x00kv:123", key)
			}
		})
	}
}
