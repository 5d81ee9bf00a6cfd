package memlimit_test

import (
	"errors"
	"math"
	"sync"
	"testing"

	"github.com/dboutique/dboutique/node/memlimit"
)

// fakeSet stands for debug.SetMemoryLimit: it records the limits set.
type fakeSet struct {
	mu     sync.Mutex
	limits []int64
	cur    int64
}

func (f *fakeSet) set(n int64) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	prev := f.cur
	if prev == 0 {
		prev = math.MaxInt64 // the runtime's default: no limit
	}
	f.cur = n
	f.limits = append(f.limits, n)
	return prev
}

func (f *fakeSet) last() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cur
}

func (f *fakeSet) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.limits)
}

func TestRuntimeLimitConfigMustFail(t *testing.T) {
	t.Parallel()
	var f fakeSet
	for _, tc := range []struct {
		name string
		cfg  memlimit.RuntimeLimitConfig
	}{
		{"no budget", memlimit.RuntimeLimitConfig{Set: f.set}},
		{"negative budget", memlimit.RuntimeLimitConfig{Budget: -1, Set: f.set}},
		{"no set", memlimit.RuntimeLimitConfig{Budget: 64 << 20}},
		{"negative step", memlimit.RuntimeLimitConfig{Budget: 64 << 20, Step: -1, Set: f.set}},
		{"step of the budget", memlimit.RuntimeLimitConfig{Budget: 64 << 20, Step: 64 << 20, Set: f.set}},
		{"negative floor", memlimit.RuntimeLimitConfig{Budget: 64 << 20, Floor: -1, Set: f.set}},
		{"floor above budget less step", memlimit.RuntimeLimitConfig{Budget: 64 << 20, Step: 1 << 20, Floor: 63<<20 + 1, Set: f.set}},
	} {
		if _, _, err := memlimit.NewRuntimeLimit(tc.cfg); !errors.Is(err, memlimit.ErrInvalidConfig) {
			t.Errorf("%s: err = %v, want ErrInvalidConfig", tc.name, err)
		}
	}
	if f.count() != 0 {
		t.Errorf("an invalid config set the limit %d times", f.count())
	}
}

func TestRuntimeLimitDefaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		budget, step int64
	}{
		{41 << 20, 41 << 20 / 64}, // --maxmemory 64mb: 656 KiB
		{8 << 20, memlimit.MinStep},
		{1 << 30, 16 << 20},
		{300 << 10, 150 << 10}, // at most half the budget
	} {
		var f fakeSet
		l, prev, err := memlimit.NewRuntimeLimit(memlimit.RuntimeLimitConfig{Budget: tc.budget, Set: f.set})
		if err != nil {
			t.Fatal(err)
		}
		if prev != math.MaxInt64 {
			t.Errorf("budget %d: previous limit %d, want the runtime's", tc.budget, prev)
		}
		if l.Step() != tc.step {
			t.Errorf("budget %d: step %d, want %d", tc.budget, l.Step(), tc.step)
		}
		if want := tc.budget - tc.step; f.last() != want || l.Limit() != want {
			t.Errorf("budget %d: limit at start %d (Limit %d), want the budget less the step, %d", tc.budget, f.last(), l.Limit(), want)
		}
	}
}

// TestRuntimeLimitFollows walks the off-heap bytes up and down and checks
// each limit set, and that none is set for moves under a step.
func TestRuntimeLimitFollows(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	var f fakeSet
	l, _, err := memlimit.NewRuntimeLimit(memlimit.RuntimeLimitConfig{Budget: 40 * mib, Step: mib, Floor: 8 * mib, Set: f.set})
	if err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		offHeap int64
		limit   int64 // the runtime's limit after Follow
		sets    int   // limits set so far
	}{
		{0, 39 * mib, 1},           // NewRuntimeLimit's
		{mib - 1, 39 * mib, 1},     // under a step: the slack covers it
		{mib, 38 * mib, 2},         // a step: 40 − 1 − 1
		{mib + mib/2, 38 * mib, 2}, // half a step more
		{3 * mib, 36 * mib, 3},
		{2*mib + 1, 36 * mib, 3}, // down, by less than a step
		{2 * mib, 37 * mib, 4},   // down by a step: the heap gets it back
		{20 * mib, 19 * mib, 5},
		{31 * mib, 8 * mib, 6},       // the floor: 40 − 31 − 1 = 8
		{35 * mib, 8 * mib, 7},       // the floor still
		{35*mib + 1, 8 * mib, 7},     // nothing set
		{0, 39 * mib, 8},             // all freed
		{40 * mib, 8 * mib, 9},       // all of the budget
		{40*mib + mib/2, 8 * mib, 9}, // beyond it
	} {
		l.Follow(tc.offHeap)
		if got := f.last(); got != tc.limit || l.Limit() != tc.limit {
			t.Errorf("step %d: off heap %d: limit %d (Limit %d), want %d", i, tc.offHeap, got, l.Limit(), tc.limit)
		}
		if f.count() != tc.sets || l.Sets() != uint64(tc.sets) {
			t.Errorf("step %d: off heap %d: %d limits set (Sets %d), want %d", i, tc.offHeap, f.count(), l.Sets(), tc.sets)
		}
	}
}

// TestRuntimeLimitConcurrent: many goroutines following the same readings
// set the limit once per step moved, and the last limit is the last
// reading's.
func TestRuntimeLimitConcurrent(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	var f fakeSet
	l, _, err := memlimit.NewRuntimeLimit(memlimit.RuntimeLimitConfig{Budget: 64 * mib, Step: mib, Set: f.set})
	if err != nil {
		t.Fatal(err)
	}
	for off := int64(0); off <= 40*mib; off += mib {
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() { l.Follow(off) })
		}
		wg.Wait()
		// One of the eight set it (the others found it set, or the lock
		// taken by the one setting it, and left it).
		if want := 64*mib - off - mib; f.last() != want {
			t.Fatalf("off heap %d: limit %d, want %d", off, f.last(), want)
		}
	}
	if f.count() != 41 {
		t.Errorf("%d limits set for 40 steps (and the first), want 41", f.count())
	}
}
