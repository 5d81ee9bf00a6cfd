package mapstore

import (
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Version is a hybrid logical clock reading: milliseconds since the Unix
// epoch in the high 48 bits, a logical counter in the low 16. Zero means
// "never". Versions order writes: a greater Version is a later write.
type Version uint64

const (
	// versionCounterBits is the width of the logical counter.
	versionCounterBits = 16
	// maxVersionMillis is the greatest wall-clock part a Version can hold.
	maxVersionMillis = 1<<(64-versionCounterBits) - 1
)

// Time returns the wall-clock part of v, in UTC.
func (v Version) Time() time.Time {
	return time.UnixMilli(int64(v >> versionCounterBits)).UTC()
}

// counter returns the logical part of v.
func (v Version) counter() uint64 { return uint64(v) & (1<<versionCounterBits - 1) }

// String returns v readably, the wall-clock part then the counter, e.g.
// "2026-11-25T08:00:00.123Z+5"; zero is "never".
func (v Version) String() string {
	if v == 0 {
		return "never"
	}
	b := make([]byte, 0, 40)
	b = v.Time().AppendFormat(b, "2006-01-02T15:04:05.000Z")
	b = append(b, '+')
	b = strconv.AppendUint(b, v.counter(), 10)
	return string(b)
}

// VersionAt returns the version of t's millisecond with counter 0: every
// version issued during that millisecond or later is at least VersionAt(t).
// It is the cut-off to use for garbage collection. Times before the epoch
// give 0; times past the year 10889 give the greatest millisecond.
func VersionAt(t time.Time) Version {
	ms := t.UnixMilli()
	if ms <= 0 {
		return 0
	}
	if ms > maxVersionMillis {
		ms = maxVersionMillis
	}
	return Version(uint64(ms) << versionCounterBits)
}

// Clock issues versions: every Now is greater than every earlier Now and
// every version passed to Observe. It is safe for concurrent use.
//
// When the wall clock goes backwards, or a peer's clock runs ahead of ours,
// Now keeps counting up from the greatest version seen; the counter carrying
// into the millisecond part is harmless (it is just +1).
type Clock struct {
	now func() time.Time // the wall clock; set once by NewClock

	mu   sync.Mutex // guards last
	last Version    // the greatest version issued by Now or passed to Observe
	// lastMillis is last's milliseconds, for Millis to read without the
	// lock; millis is the greatest Millis returned.
	lastMillis, millis atomic.Int64
}

// NewClock returns a clock that reads the wall clock with now (nil means
// time.Now). It starts nothing.
func NewClock(now func() time.Time) *Clock {
	if now == nil {
		now = time.Now
	}
	return &Clock{now: now}
}

// Now returns a new version: max(VersionAt(wall clock), last+1). After the
// greatest possible version (only reachable by observing a corrupt one) it
// keeps returning that version.
func (c *Clock) Now() Version {
	wall := VersionAt(c.now())
	c.mu.Lock()
	v := c.last
	if v != math.MaxUint64 {
		v++
	}
	v = max(v, wall)
	c.last = v
	c.lastMillis.Store(int64(v >> versionCounterBits))
	c.mu.Unlock()
	return v
}

// Observe records a version seen elsewhere (a peer's write), so that every
// later Now is greater.
func (c *Clock) Observe(v Version) {
	c.mu.Lock()
	c.last = max(c.last, v)
	c.lastMillis.Store(int64(c.last >> versionCounterBits))
	c.mu.Unlock()
}

// Millis returns the time, in milliseconds since the Unix epoch, by which
// expiries are judged: the wall clock, or the time of the greatest version
// issued or observed when that is later. So once a node has seen a write
// of a node whose clock is ahead, it judges expiry no earlier than that one
// did; and it never goes backwards.
func (c *Clock) Millis() int64 {
	m := max(c.now().UnixMilli(), c.lastMillis.Load())
	for {
		prev := c.millis.Load()
		if m <= prev {
			return prev
		}
		if c.millis.CompareAndSwap(prev, m) {
			return m
		}
	}
}

// Last returns the greatest version issued or observed so far, without
// issuing a new one.
func (c *Clock) Last() Version {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}
