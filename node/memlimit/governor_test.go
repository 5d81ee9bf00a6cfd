package memlimit_test

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/dboutique/dboutique/node/memlimit"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
func (c *fakeClock) Ms() int64               { return c.Now().UnixMilli() }

// fakeMeter reports what the test sets.
type fakeMeter struct{ used atomic.Int64 }

func (m *fakeMeter) Used() int64 { return m.used.Load() }

func mustNew(t testing.TB, cfg memlimit.Config) *memlimit.Governor {
	t.Helper()
	g, err := memlimit.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestConfigMustFail(t *testing.T) {
	t.Parallel()
	m := &fakeMeter{}
	for _, tc := range []struct {
		name string
		cfg  memlimit.Config
	}{
		{"negative limit", memlimit.Config{Limit: -1, Meter: m}},
		{"limit without meter", memlimit.Config{Limit: 1 << 20}},
		{"unknown policy", memlimit.Config{Policy: memlimit.Policy(99)}},
		{"negative threshold", memlimit.Config{Limit: 1 << 20, Meter: m, Threshold: -0.5}},
		{"threshold over 1", memlimit.Config{Limit: 1 << 20, Meter: m, Threshold: 1.01}},
		{"NaN threshold", memlimit.Config{Limit: 1 << 20, Meter: m, Threshold: math.NaN()}},
		{"infinite threshold", memlimit.Config{Limit: 1 << 20, Meter: m, Threshold: math.Inf(1)}},
		{"negative capacity", memlimit.Config{Limit: 1 << 20, Meter: m, Capacity: -1}},
		{"negative reserve", memlimit.Config{Limit: 1 << 20, Meter: m, Reserve: -1}},
		{"reserve is the limit", memlimit.Config{Limit: 1 << 20, Meter: m, Reserve: 1 << 20}},
		{"reserve without limit", memlimit.Config{Reserve: 1}},
		{"max slots below min", memlimit.Config{MaxSlots: memlimit.MinSlots / 2}},
		{"max slots not a power of two", memlimit.Config{MaxSlots: memlimit.MinSlots * 3}},
		{"max slots too many", memlimit.Config{MaxSlots: memlimit.MaxSlots * 2}},
		{"negative max slots", memlimit.Config{MaxSlots: -1}},
		{"negative log factor", memlimit.Config{LFULogFactor: -1}},
		{"huge log factor", memlimit.Config{LFULogFactor: memlimit.MaxLFULogFactor + 1}},
		{"decay under a second", memlimit.Config{LFUDecayTime: time.Millisecond}},
		{"negative decay", memlimit.Config{LFUDecayTime: -time.Minute}},
	} {
		g, err := memlimit.New(tc.cfg)
		if err == nil || !errors.Is(err, memlimit.ErrInvalidConfig) {
			t.Errorf("%s: New = %v, %v; want ErrInvalidConfig", tc.name, g, err)
		}
	}
}

func TestNoLimit(t *testing.T) {
	t.Parallel()
	g := mustNew(t, memlimit.Config{Policy: memlimit.AllKeysLRU})
	g.Touch(1)
	if g.Over() != 0 || g.Full() || g.Used() != 0 || g.Limit() != 0 || g.Threshold() != math.MaxInt64 {
		t.Errorf("no limit: Over %d Full %v Used %d Limit %d Threshold %d", g.Over(), g.Full(), g.Used(), g.Limit(), g.Threshold())
	}
	st := g.Stats()
	if st != (memlimit.Stats{MaxMemoryPolicy: memlimit.AllKeysLRU}) {
		t.Errorf("Stats = %+v", st)
	}
	// A meter without a limit still reports used memory for INFO.
	m := &fakeMeter{}
	m.used.Store(12345)
	g = mustNew(t, memlimit.Config{Meter: m})
	if g.Used() != 12345 || g.Over() != 0 || g.Full() {
		t.Errorf("meter without limit: Used %d Over %d Full %v", g.Used(), g.Over(), g.Full())
	}
}

func TestOverAndFull(t *testing.T) {
	t.Parallel()
	m := &fakeMeter{}
	g := mustNew(t, memlimit.Config{Limit: 1000, Meter: m})
	if g.Threshold() != 600 || g.Policy() != memlimit.NoEviction {
		t.Fatalf("Threshold %d Policy %v, want 600 noeviction", g.Threshold(), g.Policy())
	}
	for _, tc := range []struct {
		used, over int64
	}{{0, 0}, {500, 0}, {600, 0}, {601, 1}, {1000, 400}, {5000, 4400}} {
		m.used.Store(tc.used)
		if got := g.Over(); got != tc.over {
			t.Errorf("used %d: Over = %d, want %d", tc.used, got, tc.over)
		}
		if got := g.Full(); got != (tc.over > 0) {
			t.Errorf("used %d: Full = %v", tc.used, got)
		}
	}
	// The reserve is taken off the limit first.
	g = mustNew(t, memlimit.Config{Limit: 1000, Meter: m, Reserve: 200, Threshold: 0.5})
	m.used.Store(450)
	if g.Threshold() != 400 || g.Over() != 50 {
		t.Errorf("limit 1000, reserve 200, threshold 0.5: Threshold %d, Over %d at 450; want 400 and 50", g.Threshold(), g.Over())
	}
	g = mustNew(t, memlimit.Config{Limit: 1000, Meter: m, Threshold: 1})
	m.used.Store(1000)
	if g.Over() != 0 {
		t.Errorf("threshold 1, used = limit: Over = %d", g.Over())
	}
	m.used.Store(1001)
	if g.Over() != 1 {
		t.Errorf("threshold 1, used = limit+1: Over = %d", g.Over())
	}
}

func TestSketchCounted(t *testing.T) {
	t.Parallel()
	fp := func() memlimit.Footprint { return memlimit.Footprint{Bytes: 1000, Entries: 10} }
	for _, tc := range []struct {
		policy memlimit.Policy
		bytes  int64 // of the sketch, at MinSlots
	}{
		{memlimit.NoEviction, 0},
		{memlimit.AllKeysRandom, 0},
		{memlimit.VolatileTTL, 0},
		{memlimit.AllKeysLRU, 4 * memlimit.MinSlots},
		{memlimit.VolatileLRU, 4 * memlimit.MinSlots},
		{memlimit.AllKeysLFU, 8 * memlimit.MinSlots},
		{memlimit.VolatileLFU, 8 * memlimit.MinSlots},
	} {
		g := mustNew(t, memlimit.Config{Limit: 64 << 20, Policy: tc.policy, Meter: memlimit.StoreMeter(fp), Capacity: 1000})
		if st := g.Stats(); st.SketchBytes != tc.bytes {
			t.Errorf("%v: sketch of %d bytes, want %d", tc.policy, st.SketchBytes, tc.bytes)
		}
		if want := fp().Estimate() + tc.bytes; g.Used() != want {
			t.Errorf("%v with a store meter: Used = %d, want the estimate and the sketch, %d", tc.policy, g.Used(), want)
		}
		// A process meter sees the sketch in the heap already.
		pm := memlimit.ProcessMeter(fp, nil)
		g = mustNew(t, memlimit.Config{Limit: 64 << 20, Policy: tc.policy, Meter: pm, Capacity: 1000})
		if d := g.Used() - pm.Used(); d < -1<<20 || d > 1<<20 {
			t.Errorf("%v with a process meter: Used %d, the meter %d", tc.policy, g.Used(), pm.Used())
		}
	}
	// The sketch grows with the capacity.
	g := mustNew(t, memlimit.Config{Limit: 1 << 30, Policy: memlimit.AllKeysLRU, Meter: memlimit.StoreMeter(fp), Capacity: 1_000_000})
	if st := g.Stats(); st.SketchBytes != 4<<21 {
		t.Errorf("LRU for a million entries: %d bytes, want %d", st.SketchBytes, 4<<21)
	}
	// By default, the capacity follows the limit.
	g = mustNew(t, memlimit.Config{Limit: 1 << 30, Policy: memlimit.AllKeysLFU, Meter: memlimit.StoreMeter(fp)})
	if st := g.Stats(); st.SketchBytes != 8*(2<<30/memlimit.DefaultBytesPerEntry) {
		t.Errorf("LFU at 1gb: %d bytes", st.SketchBytes)
	}
}

func TestLRUPicksLeastRecentlyUsed(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	g := mustNew(t, memlimit.Config{Limit: 1 << 30, Policy: memlimit.AllKeysLRU, Meter: &fakeMeter{}, Now: clk.Now})
	written := clk.Ms()
	keys := []string{"a", "b", "c", "d", "e"}
	cands := make([]memlimit.Candidate, len(keys))
	for i, k := range keys {
		cands[i] = memlimit.Candidate{Hash: memlimit.KeyHash("bucket", k), WrittenAt: written, Size: 100}
	}
	// Touch them in order, a second apart: a is the least recent.
	for i := range keys {
		clk.Advance(time.Second)
		g.Touch(cands[i].Hash)
	}
	clk.Advance(time.Second)
	if got := g.Pick(cands); got != 0 {
		t.Errorf("Pick = %d (%s), want 0 (a)", got, keys[max(got, 0)])
	}
	// a read now: b is the least recent.
	g.Touch(cands[0].Hash)
	if got := g.Pick(cands); got != 1 {
		t.Errorf("after touching a: Pick = %d, want 1 (b)", got)
	}
	// A write counts as an access: b written now, c is the least recent.
	clk.Advance(time.Second)
	cands[1].WrittenAt = clk.Ms()
	if got := g.Pick(cands); got != 2 {
		t.Errorf("after writing b: Pick = %d, want 2 (c)", got)
	}
	// Scores are idle times in milliseconds.
	s, ok := g.Score(cands[4]) // e, touched 2s ago
	if !ok || s < 2000 || s > 2100 {
		t.Errorf("Score(e) = %d, %v; want 2000 ms, or up to the sketch's 100 ms resolution more", s, ok)
	}
	// A key never touched counts from its write.
	old := memlimit.Candidate{Hash: memlimit.KeyHash("bucket", "old"), WrittenAt: written - 60_000}
	if got := g.Pick(append(cands, old)); got != len(cands) {
		t.Errorf("Pick = %d, want the untouched old key", got)
	}
	if got := g.Pick(nil); got != -1 {
		t.Errorf("Pick(nil) = %d", got)
	}
}

func TestLRUSampledEvictionKeepsHotKeys(t *testing.T) {
	t.Parallel()
	// Collisions only make keys look more recent, so a key touched in the
	// last second is never the pick of a sample, even when the sketch is
	// far too small; and with a sketch sized for the keys, the picks are
	// nearly those of exact LRU.
	for _, tc := range []struct {
		capacity int64   // sizes the sketch
		minAgree float64 // fraction of picks that exact LRU makes too
	}{
		{200_000, 0.9},  // 512Ki slots for 100k keys
		{100_000, 0.85}, // 256Ki slots: as sized for them
		{10_000, 0.4},   // the smallest sketch, 64Ki slots, overloaded
	} {
		agree, old, exactOld := lruPicks(t, tc.capacity, 100_000)
		t.Logf("capacity %d: %.1f%% of picks as exact LRU's; %.1f%% from the older half (exact LRU: %.1f%%)",
			tc.capacity, 100*agree, 100*old, 100*exactOld)
		if agree < tc.minAgree {
			t.Errorf("capacity %d: %.1f%% of picks as exact LRU's, want %.0f%%", tc.capacity, 100*agree, 100*tc.minAgree)
		}
	}
}

// lruPicks touches keys one after another, a thousand a second, then
// picks from random samples of 5 (one of them among the last 1000
// touched). It returns the fraction of picks exact LRU would make, and
// the fractions of picks from the older half of the keys by the sketch and
// by exact LRU.
func lruPicks(t *testing.T, capacity int64, keys int) (agree, old, exactOld float64) {
	clk := newFakeClock()
	g := mustNew(t, memlimit.Config{Limit: 1 << 30, Policy: memlimit.AllKeysLRU, Meter: &fakeMeter{}, Now: clk.Now, Capacity: capacity})
	start := clk.Ms()
	hash := func(i int) uint64 { return memlimit.KeyHash("b", string(binary.AppendUvarint(nil, uint64(i)))) }
	for i := range keys {
		if i%1000 == 0 {
			clk.Advance(time.Second)
		}
		g.Touch(hash(i))
	}
	clk.Advance(time.Second)
	rng := rand.New(rand.NewPCG(uint64(capacity), 1))
	const samples = 5000
	var nAgree, nOld, nExactOld int
	for range samples {
		cands := []memlimit.Candidate{{Hash: 0, Size: int64(keys - 1 - rng.IntN(1000))}} // a hot key
		for range 4 {
			cands = append(cands, memlimit.Candidate{Size: int64(rng.IntN(keys))})
		}
		exact := 0
		for j := range cands {
			cands[j].Hash, cands[j].WrittenAt = hash(int(cands[j].Size)), start
			if cands[j].Size/1000 < cands[exact].Size/1000 { // keys of the same second tie
				exact = j
			}
		}
		p := g.Pick(cands)
		if p == 0 {
			t.Fatalf("capacity %d: picked hot key %d", capacity, cands[p].Size)
		}
		if cands[p].Size/1000 == cands[exact].Size/1000 {
			nAgree++
		}
		if cands[p].Size < int64(keys/2) {
			nOld++
		}
		if cands[exact].Size < int64(keys/2) {
			nExactOld++
		}
	}
	return float64(nAgree) / samples, float64(nOld) / samples, float64(nExactOld) / samples
}

func TestLFUPicksLeastFrequentlyUsed(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	var draws atomic.Uint64
	g := mustNew(t, memlimit.Config{Limit: 1 << 30, Policy: memlimit.AllKeysLFU, Meter: &fakeMeter{}, Now: clk.Now,
		Rand: func() uint64 { return draws.Add(0x9e3779b97f4a7c15) }}) // a fixed, well-spread sequence
	written := clk.Ms() - int64(time.Hour/time.Millisecond) // long ago: the write's initial count has decayed
	hits := []int{3, 50, 1000, 0, 200}
	cands := make([]memlimit.Candidate, len(hits))
	for i, n := range hits {
		cands[i] = memlimit.Candidate{Hash: memlimit.KeyHash("b", string(rune('a'+i))), WrittenAt: written}
		for range n {
			g.Touch(cands[i].Hash)
		}
	}
	if got := g.Pick(cands); got != 3 {
		t.Errorf("Pick = %d, want 3 (never used)", got)
	}
	if got := g.Pick(cands[:3]); got != 0 {
		t.Errorf("Pick of the first three = %d, want 0 (3 hits)", got)
	}
	// Counters decay by one a minute: after 20 minutes, 3 hits and 50
	// hits (counter about 10) are both 0, and the older write goes first.
	clk.Advance(20 * time.Minute)
	cands[1].WrittenAt = written + 1
	if got := g.Pick(cands[:3]); got != 0 {
		t.Errorf("after 20 minutes: Pick = %d, want 0", got)
	}
	s0, _ := g.Score(cands[0])
	s1, _ := g.Score(cands[1])
	if s0>>40 != 255 || s1>>40 != 255 {
		t.Errorf("after 20 minutes, counters of 3 and 50 hits are %d and %d, want 0", 255-s0>>40, 255-s1>>40)
	}
	// A fresh write counts as a new key in Redis: LFUInitVal, which a
	// key touched a few times in its first minute passes.
	fresh := memlimit.Candidate{Hash: memlimit.KeyHash("b", "fresh"), WrittenAt: clk.Ms()}
	used := memlimit.Candidate{Hash: memlimit.KeyHash("b", "used"), WrittenAt: clk.Ms()}
	for range 8 {
		g.Touch(used.Hash)
	}
	if s, _ := g.Score(fresh); 255-s>>40 != memlimit.LFUInitVal {
		t.Errorf("fresh key counts %d, want %d", 255-s>>40, memlimit.LFUInitVal)
	}
	if got := g.Pick([]memlimit.Candidate{used, fresh}); got != 1 {
		t.Errorf("Pick(used, fresh) = %d, want 1 (fresh)", got)
	}
	// 1000 hits reach about 18, which 20 minutes decayed to 0: such a key
	// goes before a fresh one.
	if got := g.Pick([]memlimit.Candidate{used, fresh, cands[2]}); got != 2 {
		t.Errorf("Pick(used, fresh, 1000 hits 20 minutes ago) = %d, want 2", got)
	}
}

func TestVolatileAndTTL(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	now := clk.Ms()
	cands := []memlimit.Candidate{
		{Hash: 1, WrittenAt: now - 100_000, Size: 10},                    // no expiry, oldest
		{Hash: 2, WrittenAt: now - 10, Expires: now + 60_000, Size: 10},  // expires in a minute
		{Hash: 3, WrittenAt: now - 20, Expires: now + 5_000, Size: 10},   // expires in 5 s
		{Hash: 4, WrittenAt: now - 30, Expires: now + 600_000, Size: 10}, // in 10 minutes
	}
	for _, tc := range []struct {
		policy memlimit.Policy
		want   int
	}{
		{memlimit.NoEviction, -1},
		{memlimit.AllKeysLRU, 0},
		{memlimit.AllKeysLFU, 0},
		{memlimit.VolatileLRU, 3},
		{memlimit.VolatileLFU, 3},
		{memlimit.VolatileTTL, 2},
	} {
		g := mustNew(t, memlimit.Config{Limit: 1 << 30, Policy: tc.policy, Meter: &fakeMeter{}, Now: clk.Now})
		if got := g.Pick(cands); got != tc.want {
			t.Errorf("%v: Pick = %d, want %d", tc.policy, got, tc.want)
		}
		if _, ok := g.Score(cands[0]); ok != (tc.policy.Evicts() && !tc.policy.Volatile()) {
			t.Errorf("%v: a key without expiry is eligible: %v", tc.policy, ok)
		}
		// Only keys without expiry: a volatile policy can evict nothing.
		if got := g.Pick(cands[:1]); got != map[bool]int{true: -1, false: 0}[tc.policy.Volatile() || !tc.policy.Evicts()] {
			t.Errorf("%v: Pick of a key without expiry = %d", tc.policy, got)
		}
		// An expired key goes first under every evicting policy.
		expired := memlimit.Candidate{Hash: 5, WrittenAt: now, Expires: now - 1, Size: 1}
		want := len(cands)
		if !tc.policy.Evicts() {
			want = -1
		}
		if got := g.Pick(append(cands[:len(cands):len(cands)], expired)); got != want {
			t.Errorf("%v: with an expired key, Pick = %d, want %d", tc.policy, got, want)
		}
	}
	for _, p := range []memlimit.Policy{memlimit.AllKeysRandom, memlimit.VolatileRandom} {
		g := mustNew(t, memlimit.Config{Limit: 1 << 30, Policy: p, Meter: &fakeMeter{}, Now: clk.Now})
		if got := g.Pick(cands[:1]); (got == -1) != p.Volatile() {
			t.Errorf("%v: Pick of a key without expiry = %d", p, got)
		}
	}
}

func TestRandomIsUniform(t *testing.T) {
	t.Parallel()
	for _, p := range []memlimit.Policy{memlimit.AllKeysRandom, memlimit.VolatileRandom} {
		g := mustNew(t, memlimit.Config{Limit: 1 << 30, Policy: p, Meter: &fakeMeter{}})
		cands := make([]memlimit.Candidate, 4)
		for i := range cands {
			cands[i] = memlimit.Candidate{Hash: uint64(i), WrittenAt: int64(i), Expires: math.MaxInt64, Size: 1}
		}
		var n [4]int
		const rounds = 40000
		for range rounds {
			n[g.Pick(cands)]++
		}
		for i, c := range n {
			if c < rounds/4*9/10 || c > rounds/4*11/10 {
				t.Errorf("%v: candidate %d picked %d times of %d, want about a quarter", p, i, c, rounds)
			}
		}
	}
}

func TestPickPrefersLargerOnTies(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	g := mustNew(t, memlimit.Config{Limit: 1 << 30, Policy: memlimit.VolatileTTL, Meter: &fakeMeter{}, Now: clk.Now})
	exp := clk.Ms() + 1000
	cands := []memlimit.Candidate{{Hash: 1, Expires: exp, Size: 10}, {Hash: 2, Expires: exp, Size: 30}, {Hash: 3, Expires: exp, Size: 30}}
	if got := g.Pick(cands); got != 1 {
		t.Errorf("Pick = %d, want 1 (larger, first)", got)
	}
}

func TestEvictedAndStats(t *testing.T) {
	t.Parallel()
	m := &fakeMeter{}
	m.used.Store(5 << 20)
	g := mustNew(t, memlimit.Config{Limit: 8 << 20, Policy: memlimit.AllKeysRandom, Meter: m, Threshold: 0.5})
	g.Evicted(3)
	g.Evicted(0)
	g.Evicted(-2)
	g.Evicted(4)
	want := memlimit.Stats{UsedMemory: 5 << 20, MaxMemory: 8 << 20, MaxMemoryPolicy: memlimit.AllKeysRandom, EvictionAt: 4 << 20, EvictedKeys: 7}
	if st := g.Stats(); st != want {
		t.Errorf("Stats = %+v, want %+v", st, want)
	}
}

func TestKeyHash(t *testing.T) {
	t.Parallel()
	ref := func(bucket, key string) uint64 {
		b := binary.LittleEndian.AppendUint64(nil, uint64(len(bucket)))
		return xxhash.Sum64(append(append(b, bucket...), key...))
	}
	long := strings.Repeat("x", 200)
	for _, tc := range [][2]string{{"", ""}, {"b", "k"}, {"\x00kv:12", "user:1"}, {long, "k"}, {"b", long}, {strings.Repeat("y", 60), strings.Repeat("z", 60)}, {strings.Repeat("y", 60), strings.Repeat("z", 61)}} {
		if got, want := memlimit.KeyHash(tc[0], tc[1]), ref(tc[0], tc[1]); got != want {
			t.Errorf("KeyHash(%.10q, %.10q) = %#x, want %#x", tc[0], tc[1], got, want)
		}
	}
	if memlimit.KeyHash("ab", "c") == memlimit.KeyHash("a", "bc") {
		t.Error("KeyHash(ab, c) = KeyHash(a, bc)")
	}
}

func TestStoreMeter(t *testing.T) {
	t.Parallel()
	var fp memlimit.Footprint
	var mu sync.Mutex
	m := memlimit.StoreMeter(func() memlimit.Footprint { mu.Lock(); defer mu.Unlock(); return fp })
	mu.Lock()
	fp = memlimit.Footprint{Bytes: 1000, Entries: 10, Buckets: 2, Maps: 3}
	mu.Unlock()
	want := int64(1000 + 10*memlimit.EntryOverhead + 2*memlimit.BucketOverhead + 3*memlimit.MapOverhead)
	if got := m.Used(); got != want {
		t.Errorf("Used = %d, want %d", got, want)
	}
	if got := memlimit.EntryCost(10, 1024); got != 1034+memlimit.EntryOverhead {
		t.Errorf("EntryCost(10, 1024) = %d", got)
	}
}

// TestProcessMeter checks that the process meter follows the store's
// estimate between collections and, at each, starts again from the
// runtime's numbers and the store's memory off the heap as it is.
// Not parallel: other tests' allocations would move the heap.
func TestProcessMeter(t *testing.T) {
	var est, buckets, offHeap atomic.Int64
	fp := func() memlimit.Footprint {
		return memlimit.Footprint{Bytes: est.Load(), Buckets: buckets.Load(), OffHeap: offHeap.Load()}
	}
	var set fakeSet
	lim, _, err := memlimit.NewRuntimeLimit(memlimit.RuntimeLimitConfig{Budget: 64 << 20, Step: 1 << 20, Floor: 8 << 20, Set: set.set})
	if err != nil {
		t.Fatal(err)
	}
	m := memlimit.ProcessMeter(fp, lim)
	runtime.GC()
	u0 := m.Used()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if u0 < int64(ms.HeapAlloc)/2 || u0 > int64(ms.Sys) {
		t.Errorf("Used = %d; heap alloc %d, sys %d", u0, ms.HeapAlloc, ms.Sys)
	}
	// The store grows by 10 MB: Used follows at once, without a
	// collection, by the estimate; so does the runtime's limit, by the
	// memory the tables took (OffHeap, here a little more).
	est.Store(10 << 20)
	offHeap.Store(12 << 20)
	if d := m.Used() - u0; d != 10<<20 {
		t.Errorf("store grew 10 MiB, Used grew %d", d)
	}
	if got, want := set.last(), int64(64<<20-12<<20-1<<20); got != want {
		t.Errorf("runtime limit %d with 12 MiB off the heap, want %d", got, want)
	}
	// Entries deleted: Used falls at once, although the tables free them
	// only when they compact.
	est.Store(4 << 20)
	if d := m.Used() - u0; d != 4<<20 {
		t.Errorf("store at 4 MiB, Used grew %d", d)
	}
	// 1000 records (on the heap, by the estimate): counted at once too.
	buckets.Store(1000)
	if d := m.Used() - u0; d != 4<<20+1000*memlimit.BucketOverhead {
		t.Errorf("store at 4 MiB and 1000 records, Used grew %d", d)
	}
	// After a collection (seen within refreshEvery calls), the runtime's
	// live heap counts again, and the tables as they are (12 MiB, the
	// memory of deleted entries included), not as estimated: the
	// records' estimate is replaced by the heap, which does not hold the
	// 1000 records this test never allocated.
	runtime.GC()
	for range 64 {
		m.Used()
	}
	u1 := m.Used()
	if d := u1 - u0 - 12<<20; d < -2<<20 || d > 2<<20 {
		t.Errorf("after a GC: Used %d, before %d: want 12 MiB more (the tables), not the records never allocated", u1, u0)
	}
	// Between collections, a change off the heap that the estimate does
	// not see (a table compacted) waits for the next one; the estimate
	// moves Used at once.
	offHeap.Store(5 << 20)
	est.Store(5 << 20)
	if d := m.Used() - u1; d != 1<<20 {
		t.Errorf("estimate 1 MiB up, tables 7 MiB down: Used moved %d before a GC, want the estimate's 1 MiB", d)
	}
	if got, want := set.last(), int64(64<<20-5<<20-1<<20); got != want {
		t.Errorf("runtime limit %d with 5 MiB off the heap, want %d", got, want)
	}
}

// TestProcessMeterHeapTables: a store whose tables are on the heap (race
// builds) says OffHeap 0; its tables count once, in the live heap, and
// its estimate's growth between collections.
func TestProcessMeterHeapTables(t *testing.T) {
	var tables [][]byte
	var est atomic.Int64
	m := memlimit.ProcessMeter(func() memlimit.Footprint { return memlimit.Footprint{Bytes: est.Load()} }, nil)
	runtime.GC()
	for range 64 {
		m.Used()
	}
	u0 := m.Used()
	for range 16 {
		tables = append(tables, make([]byte, 1<<20))
	}
	est.Store(16 << 20)
	if d := m.Used() - u0; d != 16<<20 {
		t.Errorf("16 MiB written, Used grew %d before a GC", d)
	}
	runtime.GC()
	for range 64 {
		m.Used()
	}
	if d := m.Used() - u0; d < 14<<20 || d > 20<<20 {
		t.Errorf("16 MiB on the heap after a GC: Used grew %d, want about 16 MiB (not twice)", d)
	}
	runtime.KeepAlive(tables)
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	for _, p := range []memlimit.Policy{memlimit.AllKeysLRU, memlimit.AllKeysLFU, memlimit.AllKeysRandom} {
		m := &fakeMeter{}
		g := mustNew(t, memlimit.Config{Limit: 1 << 20, Policy: p, Meter: memlimit.ProcessMeter(func() memlimit.Footprint {
			return memlimit.Footprint{Bytes: m.used.Load()}
		}, nil)})
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for i := range 2000 {
					h := uint64(i*4 + w)
					g.Touch(h)
					m.used.Add(10)
					if g.Over() > 0 {
						g.Pick([]memlimit.Candidate{{Hash: h}, {Hash: h + 1}})
						g.Evicted(1)
					}
					_ = g.Stats()
				}
			})
		}
		wg.Wait()
	}
}
