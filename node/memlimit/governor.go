package memlimit

import (
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// Defaults and bounds of Config.
const (
	// DefaultThreshold is the fraction of the limit (less Config.Reserve)
	// at which eviction starts, and noeviction refuses writes. The rest is
	// the Go heap's room for garbage: the runtime's limit is what the
	// store's tables leave of the same budget (RuntimeLimit), so that the
	// higher the threshold, the more often the collector runs, until it
	// falls behind a fast writer: measured (doc.go), 0.6 kept the binary
	// under its limit and refused no write of an evicting node in every
	// run; from 0.7 on, writers outran eviction in some runs (OOM), and
	// with 4 KiB of garbage per write the resident size passed the limit
	// from 0.8.
	DefaultThreshold = 0.6
	// MinSlots and DefaultMaxSlots bound the size of the access sketch,
	// in slots: 4 bytes each for LRU, 8 for LFU.
	MinSlots        = 1 << 16
	DefaultMaxSlots = 1 << 22
	// MaxSlots is the largest Config.MaxSlots.
	MaxSlots = 1 << 30
	// DefaultBytesPerEntry sizes the sketch when Config.Capacity is 0: the
	// limit divided by this is the number of entries expected.
	DefaultBytesPerEntry = 512
	// MaxLFULogFactor is the largest Config.LFULogFactor.
	MaxLFULogFactor = 1 << 20
	// lruTick is the resolution of the LRU sketch's timestamps: 32 bits of
	// them last 13 years.
	lruTick = 100 * time.Millisecond
)

// Config configures a Governor. The zero value is a node without a memory
// limit.
type Config struct {
	// Limit is maxmemory, in bytes; 0 means no limit: Over is always 0
	// and Touch does nothing.
	Limit int64
	// Policy is maxmemory-policy; the zero value is NoEviction.
	Policy Policy
	// Meter says how much memory the node uses; required with a Limit.
	// StoreMeter for a node that shares its process, ProcessMeter for the
	// binary. Without a Limit it may be nil (Used is then 0).
	Meter Meter
	// Reserve is the part of Limit that the Meter does not see and
	// eviction cannot free: for the binary with ProcessMeter, the pages of
	// its own executable that the system counts in its resident size
	// (about 20 MB for dboutique). From 0 to less than Limit.
	Reserve int64
	// Threshold is the fraction of Limit less Reserve at which eviction
	// starts, in (0, 1]; 0 means DefaultThreshold.
	Threshold float64
	// Capacity is the number of entries the node is expected to hold at
	// its limit, which sizes the access sketch; 0 means
	// Limit/DefaultBytesPerEntry.
	Capacity int64
	// MaxSlots caps the access sketch, a power of two from MinSlots to
	// MaxSlots; 0 means DefaultMaxSlots.
	MaxSlots int
	// LFULogFactor is Redis's lfu-log-factor, from 1 to MaxLFULogFactor;
	// 0 means DefaultLFULogFactor. The higher, the more accesses a
	// counter needs to grow: with 10, 255 takes about a million.
	LFULogFactor int
	// LFUDecayTime is Redis's lfu-decay-time: an LFU counter loses one per
	// period of this length without access. 0 means a minute (Redis's
	// default); at least a second.
	LFUDecayTime time.Duration
	// Now reads the clock; nil is time.Now. Tests pass a fake clock.
	Now func() time.Time
	// Rand returns uniform random numbers, for LFU's logarithmic
	// increments and the random policies; it must be safe for concurrent
	// use. nil is math/rand/v2's Uint64.
	Rand func() uint64
}

func (c *Config) validate() error {
	if c.Limit < 0 {
		return fmt.Errorf("%w: negative limit %d", ErrInvalidConfig, c.Limit)
	}
	if !c.Policy.Valid() {
		return fmt.Errorf("%w: %v", ErrInvalidConfig, c.Policy)
	}
	if c.Limit > 0 && c.Meter == nil {
		return fmt.Errorf("%w: a limit needs a Meter", ErrInvalidConfig)
	}
	if c.Reserve < 0 || c.Reserve > 0 && c.Reserve >= c.Limit {
		return fmt.Errorf("%w: reserve %d is not from 0 to less than the limit %d", ErrInvalidConfig, c.Reserve, c.Limit)
	}
	if c.Threshold == 0 {
		c.Threshold = DefaultThreshold
	}
	if !(c.Threshold > 0 && c.Threshold <= 1) { // also refuses NaN
		return fmt.Errorf("%w: threshold %v is not in (0, 1]", ErrInvalidConfig, c.Threshold)
	}
	if c.Capacity < 0 {
		return fmt.Errorf("%w: negative capacity %d", ErrInvalidConfig, c.Capacity)
	}
	if c.Capacity == 0 {
		c.Capacity = c.Limit / DefaultBytesPerEntry
	}
	if c.MaxSlots == 0 {
		c.MaxSlots = DefaultMaxSlots
	}
	if c.MaxSlots < MinSlots || c.MaxSlots > MaxSlots || c.MaxSlots&(c.MaxSlots-1) != 0 {
		return fmt.Errorf("%w: MaxSlots %d is not a power of two from %d to %d", ErrInvalidConfig, c.MaxSlots, MinSlots, MaxSlots)
	}
	if c.LFULogFactor == 0 {
		c.LFULogFactor = DefaultLFULogFactor
	}
	if c.LFULogFactor < 1 || c.LFULogFactor > MaxLFULogFactor {
		return fmt.Errorf("%w: LFULogFactor %d is not from 1 to %d", ErrInvalidConfig, c.LFULogFactor, MaxLFULogFactor)
	}
	if c.LFUDecayTime == 0 {
		c.LFUDecayTime = DefaultLFUDecayTime * time.Millisecond
	}
	if c.LFUDecayTime < time.Second {
		return fmt.Errorf("%w: LFUDecayTime %v is under a second", ErrInvalidConfig, c.LFUDecayTime)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Rand == nil {
		c.Rand = rand.Uint64
	}
	return nil
}

// sketchSlots returns the size of the access sketch for capacity
// entries: the power of two at or above twice as many, within [MinSlots,
// maxSlots].
func sketchSlots(capacity int64, maxSlots int) int {
	if capacity >= int64(maxSlots)/2 {
		return maxSlots
	}
	n := 1 << bits.Len64(uint64(max(2*capacity, 1))-1)
	return min(max(n, MinSlots), maxSlots)
}

// A Governor keeps a node under its memory limit: it says how much memory
// the node uses and how much must be freed (Over), refuses writes for
// noeviction (Full), tracks accesses for LRU and LFU (Touch) and ranks the
// entries to evict (Score, Pick). It evicts nothing itself: its caller
// samples entries, asks Pick which to evict, deletes them and reports them
// (Evicted). New starts nothing; a Governor is safe for concurrent use and
// needs no Close.
type Governor struct {
	cfg         Config
	trigger     int64     // used bytes above which Over is positive; MaxInt64 without a limit
	start       time.Time // the sketches' time 0
	startMs     int64     // start in Unix milliseconds
	decayMs     int64     // cfg.LFUDecayTime in milliseconds
	logFactor   uint64
	rec         *recency   // the LRU sketch, or nil
	freq        *frequency // the LFU sketch, or nil
	sketchBytes int64
	addSketch   bool // the meter does not see the sketch: Used adds it
	evicted     atomic.Uint64
}

// New returns a Governor for cfg, after filling its defaults; its
// sketch, if the policy needs one, is allocated here. It starts nothing.
func New(cfg Config) (*Governor, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	g := &Governor{cfg: cfg, trigger: math.MaxInt64, start: cfg.Now()}
	g.startMs = g.start.UnixMilli()
	g.decayMs = cfg.LFUDecayTime.Milliseconds()
	g.logFactor = uint64(cfg.LFULogFactor)
	if cfg.Limit > 0 {
		g.trigger = int64(float64(cfg.Limit-cfg.Reserve) * cfg.Threshold)
		slots := sketchSlots(cfg.Capacity, cfg.MaxSlots)
		switch {
		case cfg.Policy.LRU():
			g.rec = newRecency(slots)
			g.sketchBytes = g.rec.bytes()
		case cfg.Policy.LFU():
			g.freq = newFrequency(slots)
			g.sketchBytes = g.freq.bytes()
		}
	}
	_, whole := cfg.Meter.(interface{ wholeProcess() })
	g.addSketch = !whole
	return g, nil
}

// Limit returns maxmemory in bytes; 0 means none.
func (g *Governor) Limit() int64 { return g.cfg.Limit }

// Policy returns maxmemory-policy.
func (g *Governor) Policy() Policy { return g.cfg.Policy }

// Threshold returns the used bytes above which Over is positive: the
// limit less Config.Reserve, times Config.Threshold; math.MaxInt64
// without a limit.
func (g *Governor) Threshold() int64 { return g.trigger }

// Used returns the bytes the node uses: the meter's reading, plus the
// access sketch when the meter does not see it. It is 0 without a meter.
func (g *Governor) Used() int64 {
	if g.cfg.Meter == nil {
		return 0
	}
	used := g.cfg.Meter.Used()
	if g.addSketch {
		used += g.sketchBytes
	}
	return used
}

// Over returns how many bytes must be freed now: how far Used is above
// the threshold, or 0 when it is not (or there is no limit). The caller
// evicts entries whose Candidate.Size add up to at least this much.
func (g *Governor) Over() int64 {
	if g.cfg.Limit == 0 {
		return 0
	}
	return max(g.Used()-g.trigger, 0)
}

// Full reports whether writes that add memory must be refused with
// store.ErrOutOfMemory: the node is over its threshold (Over is positive). A
// noeviction node checks it before every such write; a node that evicts
// checks it after evicting what it could.
func (g *Governor) Full() bool { return g.Over() > 0 }

// Touch records an access (a read or a write) to the entry whose
// KeyHash is hash, for the LRU and LFU policies; for the others, and
// without a limit, it does nothing. It takes no lock and does not
// allocate.
func (g *Governor) Touch(hash uint64) {
	switch {
	case g.rec != nil:
		g.rec.touch(hash, g.tick(g.cfg.Now()))
	case g.freq != nil:
		g.freq.touch(hash, g.period(g.cfg.Now()), g.cfg.Rand(), g.logFactor)
	}
}

// tick returns the LRU sketch's timestamp of t: 1 + tenths of a second
// since start, so that 0 means never.
func (g *Governor) tick(t time.Time) uint32 {
	d := t.Sub(g.start)
	if d < 0 {
		return 1
	}
	return uint32(min(int64(d/lruTick)+1, math.MaxUint32))
}

// period returns the LFU sketch's decay period of t, counted from start.
func (g *Governor) period(t time.Time) uint32 {
	d := t.Sub(g.start)
	if d < 0 {
		return 0
	}
	return uint32(min(int64(d/g.cfg.LFUDecayTime), maxStamp))
}

// Evicted counts n entries evicted, for INFO's evicted_keys.
func (g *Governor) Evicted(n int) {
	if n > 0 {
		g.evicted.Add(uint64(n))
	}
}

// Stats is what INFO reports of the memory limit, in the names of Redis's
// INFO fields.
type Stats struct {
	UsedMemory      int64  // used_memory: Used
	MaxMemory       int64  // maxmemory: the limit; 0 for none
	MaxMemoryPolicy Policy // maxmemory_policy
	EvictionAt      int64  // the bytes above which eviction starts (0 without a limit)
	EvictedKeys     uint64 // evicted_keys: the sum of Evicted's n
	SketchBytes     int64  // the access sketch's size; 0 when the policy needs none
}

// Stats returns the numbers for INFO.
func (g *Governor) Stats() Stats {
	st := Stats{
		UsedMemory:      g.Used(),
		MaxMemory:       g.cfg.Limit,
		MaxMemoryPolicy: g.cfg.Policy,
		EvictedKeys:     g.evicted.Load(),
		SketchBytes:     g.sketchBytes,
	}
	if g.cfg.Limit > 0 {
		st.EvictionAt = g.trigger
	}
	return st
}
