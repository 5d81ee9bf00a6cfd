package memlimit

import (
	"math/rand/v2"
	"sync"
	"testing"
)

func TestRecencyNeverOlder(t *testing.T) {
	t.Parallel()
	r := newRecency(MinSlots)
	rng := rand.New(rand.NewPCG(1, 2))
	// As many keys as slots, each writing two: collisions are common. Each key's
	// estimate must still be at or after its own last touch.
	const keys = MinSlots
	last := make(map[uint64]uint32, keys)
	for tick := uint32(1); tick <= 2*keys; tick++ {
		h := rng.Uint64N(keys) * golden // a poor hash: mix must spread it
		r.touch(h, tick/16+1)
		last[h] = tick/16 + 1
	}
	exact := 0
	for h, want := range last {
		got := r.last(h)
		if got < want {
			t.Fatalf("key %#x touched at %d looks last touched at %d", h, want, got)
		}
		if got == want {
			exact++
		}
	}
	if exact == 0 {
		t.Errorf("no key's estimate is exact")
	}
	if got := r.last(12345); got != 0 && len(last) == 0 {
		t.Errorf("untouched sketch says %d", got)
	}
}

func TestRecencyExactWithoutCollisions(t *testing.T) {
	t.Parallel()
	r := newRecency(MinSlots)
	// Few keys in many slots: most estimates are exact.
	exact := 0
	for i := range uint64(1000) {
		r.touch(i, uint32(i+1))
	}
	for i := range uint64(1000) {
		if r.last(i) == uint32(i+1) {
			exact++
		}
	}
	if exact < 990 {
		t.Errorf("%d of 1000 estimates exact, want at least 990", exact)
	}
	if got := r.last(1 << 40); got != 0 {
		// Possible only if both slots collided: with 1000 keys in 65536
		// slots, about 1 in 4000.
		t.Logf("untouched key reads %d (both slots collided)", got)
	}
}

func TestRecencyRacesOnlyMoveForward(t *testing.T) {
	t.Parallel()
	r := newRecency(MinSlots)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for tick := uint32(1); tick <= 10000; tick++ {
				r.touch(42, tick+uint32(g)) // the goroutines' clocks disagree slightly
			}
		})
	}
	wg.Wait()
	if got := r.last(42); got != 10003 {
		t.Errorf("last = %d, want the greatest tick 10003", got)
	}
}

func TestDecayed(t *testing.T) {
	t.Parallel()
	word := func(stamp uint32, cs ...uint8) uint64 {
		w := uint64(stamp) << stampShift
		for i, c := range cs {
			w = withCounter(w, uint(i), c)
		}
		return w
	}
	for _, tc := range []struct {
		name string
		w    uint64
		p    uint32
		want uint64
	}{
		{"same period", word(7, 1, 2, 3, 4, 255), 7, word(7, 1, 2, 3, 4, 255)},
		{"later stamp stays", word(9, 1, 2, 3, 4, 5), 7, word(9, 1, 2, 3, 4, 5)},
		{"one period", word(7, 0, 1, 2, 10, 255), 8, word(8, 0, 0, 1, 9, 254)},
		{"ten periods", word(7, 5, 10, 11, 100, 255), 17, word(17, 0, 0, 1, 90, 245)},
		{"254 periods", word(0, 255, 254, 1, 0, 200), 254, word(254, 1, 0, 0, 0, 0)},
		{"255 periods", word(0, 255, 255, 255, 255, 255), 255, word(255)},
		{"many periods", word(3, 255, 255, 255, 255, 255), maxStamp, word(maxStamp)},
		{"zero word", 0, 1000, word(1000)},
	} {
		if got := decayed(tc.w, tc.p); got != tc.want {
			t.Errorf("%s: decayed(%#x, %d) = %#x, want %#x", tc.name, tc.w, tc.p, got, tc.want)
		}
	}
	// Decay composes: a then b equals a+b, so a counter decays by the
	// periods since its own last access whoever stamps its word.
	rng := rand.New(rand.NewPCG(3, 4))
	for range 10000 {
		w := rng.Uint64() &^ (maxStamp << stampShift)
		a, b := rng.Uint32N(300), rng.Uint32N(300)
		if x, y := decayed(decayed(w, a), a+b), decayed(w, a+b); x != y {
			t.Fatalf("decayed(decayed(%#x, %d), %d) = %#x, decayed(%#x, %d) = %#x", w, a, a+b, x, w, a+b, y)
		}
	}
}

func TestLogIncr(t *testing.T) {
	t.Parallel()
	// Up to LFUInitVal every access counts.
	for c := range uint8(LFUInitVal + 1) {
		if got := logIncr(c, ^uint64(0), DefaultLFULogFactor); got != c+1 {
			t.Errorf("logIncr(%d, max draw) = %d, want %d", c, got, c+1)
		}
	}
	if got := logIncr(255, 0, DefaultLFULogFactor); got != 255 {
		t.Errorf("logIncr(255) = %d", got)
	}
	// Above it, with probability 1/((c-5)·10+1): estimate it.
	rng := rand.New(rand.NewPCG(5, 6))
	for _, c := range []uint8{6, 10, 50} {
		const n = 200000
		inc := 0
		for range n {
			if logIncr(c, rng.Uint64(), DefaultLFULogFactor) == c+1 {
				inc++
			}
		}
		want := 1 / (float64(c-LFUInitVal)*DefaultLFULogFactor + 1)
		if got := float64(inc) / n; got < want*0.9 || got > want*1.1 {
			t.Errorf("logIncr(%d) increments with probability %.5f, want %.5f", c, got, want)
		}
	}
	// Redis's table for lfu-log-factor 10: about 100 accesses reach 10,
	// 1000 reach 18, 100000 reach 142 (redis.conf).
	for _, tc := range []struct {
		hits   int
		lo, hi uint8
	}{{100, 9, 12}, {1000, 16, 21}, {100000, 130, 155}} {
		c := uint8(0)
		for range tc.hits {
			c = logIncr(c, rng.Uint64(), DefaultLFULogFactor)
		}
		if c < tc.lo || c > tc.hi {
			t.Errorf("%d accesses: counter %d, want %d to %d", tc.hits, c, tc.lo, tc.hi)
		}
	}
}

func TestFrequencyNeverRarer(t *testing.T) {
	t.Parallel()
	f := newFrequency(MinSlots)
	// Key i is touched i times; many keys share words.
	const keys = 20000
	for i := range uint64(keys) {
		for range i % 40 {
			f.touch(i, 0, 0, DefaultLFULogFactor) // draw 0: every access increments
		}
	}
	for i := range uint64(keys) {
		want := uint8(min(i%40, 255))
		if got := f.count(i, 0); got < want {
			t.Fatalf("key %d touched %d times counts %d", i, want, got)
		}
	}
	// Decay: ten periods later, every counter is ten less.
	for i := range uint64(100) {
		want := uint8(max(int(i%40)-10, 0))
		if got := f.count(i, 10); got < want || got > f.count(i, 0) {
			t.Fatalf("key %d after 10 periods counts %d, want at least %d", i, got, want)
		}
	}
}

func TestFrequencyConservativeUpdate(t *testing.T) {
	t.Parallel()
	f := newFrequency(MinSlots)
	// A hot key shares a word with few others; a cold key touched once
	// must not inherit the hot key's count in all four rows.
	for range 50 {
		f.touch(1, 0, 0, DefaultLFULogFactor)
	}
	if got := f.count(1, 0); got != 50 {
		t.Errorf("hot key counts %d, want 50", got)
	}
	f.touch(2, 0, 0, DefaultLFULogFactor)
	if got := f.count(2, 0); got != 1 {
		t.Errorf("cold key counts %d, want 1", got)
	}
	if got := f.count(3, 0); got != 0 {
		t.Errorf("untouched key counts %d, want 0", got)
	}
}

func TestSketchSlots(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		capacity int64
		max      int
		want     int
	}{
		{0, DefaultMaxSlots, MinSlots},
		{1, DefaultMaxSlots, MinSlots},
		{MinSlots / 2, DefaultMaxSlots, MinSlots},
		{MinSlots/2 + 1, DefaultMaxSlots, 2 * MinSlots},
		{1_000_000, DefaultMaxSlots, 1 << 21},
		{1 << 40, DefaultMaxSlots, DefaultMaxSlots},
		{1 << 62, MaxSlots, MaxSlots},
		{1 << 20, MinSlots, MinSlots},
	} {
		if got := sketchSlots(tc.capacity, tc.max); got != tc.want {
			t.Errorf("sketchSlots(%d, %d) = %d, want %d", tc.capacity, tc.max, got, tc.want)
		}
	}
}
