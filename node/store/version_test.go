package store_test

import (
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dboutique/dboutique/node/store"
)

// fakeWall is a wall clock that tests set by hand, in milliseconds.
type fakeWall struct{ ms atomic.Int64 }

func (w *fakeWall) now() time.Time { return time.UnixMilli(w.ms.Load()) }

func TestVersionAtTimeRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		t    time.Time
		want time.Time // what Time() of VersionAt(t) gives
	}{
		{"epoch plus one ms", time.UnixMilli(1), time.UnixMilli(1)},
		{"whole ms", time.Date(2026, 11, 25, 8, 0, 0, 123e6, time.UTC), time.Date(2026, 11, 25, 8, 0, 0, 123e6, time.UTC)},
		{"sub-ms truncated", time.Date(2026, 11, 25, 8, 0, 0, 123456789, time.UTC), time.Date(2026, 11, 25, 8, 0, 0, 123e6, time.UTC)},
		{"other zone", time.Date(2030, 1, 2, 3, 4, 5, 6e6, time.FixedZone("x", 3600)), time.Date(2030, 1, 2, 2, 4, 5, 6e6, time.UTC)},
		{"far future", time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC)},
	} {
		v := store.VersionAt(tc.t)
		if got := v.Time(); !got.Equal(tc.want) || got.Location() != time.UTC {
			t.Errorf("%s: VersionAt(%v).Time() = %v, want %v in UTC", tc.name, tc.t, got, tc.want)
		}
		if uint64(v)&0xffff != 0 {
			t.Errorf("%s: VersionAt(%v) = %#x has a counter", tc.name, tc.t, uint64(v))
		}
		if uint64(v)>>16 != uint64(tc.want.UnixMilli()) {
			t.Errorf("%s: VersionAt(%v) = %#x, want milliseconds %d in the high bits", tc.name, tc.t, uint64(v), tc.want.UnixMilli())
		}
		// Every version of that millisecond maps back to it.
		if got := (v + 0xffff).Time(); !got.Equal(tc.want) {
			t.Errorf("%s: (VersionAt+0xffff).Time() = %v, want %v", tc.name, got, tc.want)
		}
	}
	// Before the epoch there are no versions.
	for _, tm := range []time.Time{time.Unix(0, 0), time.Unix(-1, 0), {}} {
		if v := store.VersionAt(tm); v != 0 {
			t.Errorf("VersionAt(%v) = %d, want 0", tm, v)
		}
	}
	// Ordering of times is ordering of versions.
	a := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if !(store.VersionAt(a) < store.VersionAt(a.Add(time.Millisecond))) {
		t.Error("VersionAt is not increasing")
	}
}

func TestVersionString(t *testing.T) {
	base := store.VersionAt(time.Date(2026, 11, 25, 8, 0, 0, 123e6, time.UTC))
	for _, tc := range []struct {
		v    store.Version
		want string
	}{
		{0, "never"},
		{base, "2026-11-25T08:00:00.123Z+0"},
		{base + 5, "2026-11-25T08:00:00.123Z+5"},
		{base + 0xffff, "2026-11-25T08:00:00.123Z+65535"},
		{base + 0x10000, "2026-11-25T08:00:00.124Z+0"},
		{1, "1970-01-01T00:00:00.000Z+1"},
	} {
		if got := tc.v.String(); got != tc.want {
			t.Errorf("Version(%#x).String() = %q, want %q", uint64(tc.v), got, tc.want)
		}
	}
}

// TestClockMonotonicConcurrent: versions from concurrent callers are all
// distinct and each caller's are increasing (run with -race).
func TestClockMonotonicConcurrent(t *testing.T) {
	const (
		goroutines = 8
		each       = 5000
	)
	var wall fakeWall
	wall.ms.Store(1_700_000_000_000)
	c := store.NewClock(wall.now)
	got := make([][]store.Version, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			vs := make([]store.Version, each)
			for i := range vs {
				if i%100 == 0 { // the wall clock moves, sometimes backwards
					wall.ms.Add(int64(i%300) - 100)
				}
				if i%7 == 0 {
					c.Observe(vs[max(i-1, 0)] + 3)
				}
				vs[i] = c.Now()
				if i > 0 && vs[i] <= vs[i-1] {
					t.Errorf("goroutine %d: Now() = %v after %v", g, vs[i], vs[i-1])
					return
				}
			}
			got[g] = vs
		})
	}
	wg.Wait()
	seen := make(map[store.Version]bool, goroutines*each)
	for _, vs := range got {
		for _, v := range vs {
			if seen[v] {
				t.Fatalf("version %v issued twice", v)
			}
			seen[v] = true
		}
	}
}

func TestClockWallGoesBackwards(t *testing.T) {
	var wall fakeWall
	wall.ms.Store(2_000_000)
	c := store.NewClock(wall.now)
	v1 := c.Now()
	if v1 != store.VersionAt(wall.now()) {
		t.Fatalf("first Now() = %v, want the wall clock %v", v1, store.VersionAt(wall.now()))
	}
	wall.ms.Store(1_000_000) // back by 1000 s
	v2 := c.Now()
	v3 := c.Now()
	if !(v1 < v2 && v2 < v3) {
		t.Fatalf("Now() after the wall clock went back: %v, %v after %v", v2, v3, v1)
	}
	if v2 != v1+1 {
		t.Errorf("Now() = %v, want last+1 = %v", v2, v1+1)
	}
	wall.ms.Store(3_000_000) // forward again: the wall clock wins
	if v := c.Now(); v != store.VersionAt(wall.now()) {
		t.Errorf("Now() = %v after the wall clock passed the counter, want %v", v, store.VersionAt(wall.now()))
	}
}

func TestClockObserve(t *testing.T) {
	var wall fakeWall
	wall.ms.Store(5_000_000)
	c := store.NewClock(wall.now)
	v0 := c.Now()

	// An older version changes nothing.
	c.Observe(v0 - 100)
	if v := c.Now(); v != v0+1 {
		t.Errorf("Now() after observing an old version = %v, want %v", v, v0+1)
	}

	// A far-future version (a peer's clock years ahead) is passed.
	future := store.VersionAt(time.Date(2999, 1, 1, 0, 0, 0, 0, time.UTC)) + 7
	c.Observe(future)
	if got := c.Last(); got != future {
		t.Errorf("Last() = %v, want %v", got, future)
	}
	v1, v2 := c.Now(), c.Now()
	if v1 != future+1 || v2 != future+2 {
		t.Errorf("Now() after observing %v = %v, %v; want +1, +2", future, v1, v2)
	}

	// The greatest version saturates instead of wrapping to 0.
	c.Observe(math.MaxUint64)
	if v := c.Now(); v != math.MaxUint64 {
		t.Errorf("Now() after observing MaxUint64 = %v", v)
	}
}

// TestClockNowN: NowN(k) hands out k versions at once, each above all
// before, and the next Now comes after the last of them.
func TestClockNowN(t *testing.T) {
	var wall fakeWall
	wall.ms.Store(5_000_000)
	c := store.NewClock(wall.now)
	v0 := c.Now()
	for _, k := range []int{0, 1, 2, 16, 70_000} {
		first := c.NowN(k)
		if first <= v0 {
			t.Fatalf("NowN(%d) = %v after %v; want later", k, first, v0)
		}
		last := first + store.Version(max(k, 1)-1)
		if got := c.Last(); got != last {
			t.Errorf("Last() after NowN(%d) = %v, want %v", k, got, last)
		}
		if v := c.Now(); v != last+1 {
			t.Errorf("Now() after NowN(%d) from %v = %v, want %v", k, first, v, last+1)
		}
		v0 = last + 1
	}
	// The wall clock ahead of the counter wins, as for Now.
	wall.ms.Store(6_000_000)
	if v := c.NowN(3); v != store.VersionAt(time.UnixMilli(6_000_000)) {
		t.Errorf("NowN(3) after the wall clock moved on = %v, want %v", v, store.VersionAt(time.UnixMilli(6_000_000)))
	}
}

// TestClockCounterCarries: more than 65536 versions in one millisecond
// carry into the millisecond part and stay increasing.
func TestClockCounterCarries(t *testing.T) {
	var wall fakeWall
	wall.ms.Store(7_000_000)
	c := store.NewClock(wall.now)
	prev := c.Now()
	for range 70000 {
		v := c.Now()
		if v <= prev {
			t.Fatalf("Now() = %v after %v", v, prev)
		}
		prev = v
	}
	if next := store.VersionAt(time.UnixMilli(7_000_001)); prev <= next {
		t.Errorf("after 70001 versions in one ms, Now() = %v, want past %v", prev, next)
	}
}

func TestNewClockNilIsWallClock(t *testing.T) {
	before := store.VersionAt(time.Now())
	v := store.NewClock(nil).Now()
	after := store.VersionAt(time.Now().Add(time.Millisecond))
	if v < before || v > after {
		t.Errorf("NewClock(nil).Now() = %v, want between %v and %v", v, before, after)
	}
}

func BenchmarkClockNow(b *testing.B) {
	b.Run("serial", func(b *testing.B) {
		c := store.NewClock(nil)
		b.ReportAllocs()
		for b.Loop() {
			c.Now()
		}
	})
	b.Run("parallel", func(b *testing.B) {
		c := store.NewClock(nil)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				c.Now()
			}
		})
	})
}
