package memlimit

// This file holds the two access sketches: fixed-size arrays of atomic
// words, indexed by a key's hash, that remember when (recency, for LRU)
// and how often (frequency, for LFU) keys were used, in no bytes per
// entry. Both only ever overestimate: a collision with another key can make
// a key look more recent or more frequent, never older or rarer, so a key
// in use is never evicted for a collision, while a cold key may escape an
// eviction round. Neither takes a lock or allocates.

import (
	"sync/atomic"
	"unsafe"
)

// mix is the finalizer of SplitMix64: it spreads every bit of x over the
// result, so that the caller's hash, whatever its quality, gives
// independent indexes in its two halves.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// golden is 2⁶⁴/φ, odd: added to a hash once per row, it gives each row of
// the frequency sketch its own independent index.
const golden = 0x9e3779b97f4a7c15

// recency is the LRU sketch: a power-of-two array of coarse timestamps
// (ticks). A touch raises the two slots that the two halves of the mixed
// hash choose to the current tick; a key's last access is at or before the
// smaller of its two slots. 0 means never.
type recency struct {
	slots []atomic.Uint32
	mask  uint64
}

func newRecency(slots int) *recency {
	return &recency{slots: make([]atomic.Uint32, slots), mask: uint64(slots - 1)}
}

// touch records an access at tick t (at least 1) of the key hashed h.
func (r *recency) touch(h uint64, t uint32) {
	x := mix(h)
	raise(&r.slots[x&r.mask], t)
	raise(&r.slots[(x>>32)&r.mask], t)
}

// raise sets *s to t unless it holds t or more already: slots only move
// forward, even when touches with different ticks race.
func raise(s *atomic.Uint32, t uint32) {
	for {
		old := s.Load()
		if old >= t || s.CompareAndSwap(old, t) {
			return
		}
	}
}

// last returns a tick at or after the last access of the key hashed h
// (the last touch's tick when nothing collided), or 0 if neither of its
// slots was ever touched.
func (r *recency) last(h uint64) uint32 {
	x := mix(h)
	return min(r.slots[x&r.mask].Load(), r.slots[(x>>32)&r.mask].Load())
}

func (r *recency) bytes() int64 { return int64(len(r.slots)) * int64(unsafe.Sizeof(atomic.Uint32{})) }

// The frequency sketch's layout: a count-min sketch of lfuRows rows of
// words; a word packs counterPerWord 8-bit counters and the decay period
// (stampBits bits) in which they were last decayed.
const (
	lfuRows        = 4
	counterPerWord = 5
	stampShift     = 8 * counterPerWord
	stampBits      = 64 - stampShift // 24: periods of a minute last 31 years
	maxStamp       = 1<<stampBits - 1
)

// Redis's LFU constants: a new key's counter (LFU_INIT_VAL), and the
// defaults of lfu-log-factor and lfu-decay-time.
const (
	LFUInitVal          = 5
	DefaultLFULogFactor = 10
	DefaultLFUDecayTime = 60_000 // milliseconds: a minute
)

// frequency is the LFU sketch: Redis's logarithmic 8-bit access counter,
// kept for every key at once in a count-min sketch. A key has one counter
// in each row; its count is the smallest of them. A touch decays the four
// words to the current period, then raises each of the key's counters to
// the count after the access (conservative update): the key's count
// evolves as Redis's per-key counter would, and other keys' counters move
// only up.
//
// Decay is per word: every counter of a word loses one per decay period
// elapsed since the word's stamp. Subtracting with a floor at 0 composes
// (decaying by a then b equals decaying by a+b), so a counter decays by
// the periods since its own last access, as Redis's does, although its
// word is stamped at other keys' accesses too.
type frequency struct {
	words []atomic.Uint64 // lfuRows rows of mask+1 words, one after another
	mask  uint64
}

func newFrequency(slots int) *frequency {
	perRow := max(slots/lfuRows, 1)
	return &frequency{words: make([]atomic.Uint64, lfuRows*perRow), mask: uint64(perRow - 1)}
}

func (f *frequency) bytes() int64 { return int64(len(f.words)) * int64(unsafe.Sizeof(atomic.Uint64{})) }

// slot returns the word of row r that holds the counter of the key hashed
// h, and the counter's place in it.
func (f *frequency) slot(h uint64, r int) (*atomic.Uint64, uint) {
	x := mix(h + uint64(r+1)*golden)
	w := (x >> 32) & f.mask
	c := uint(uint64(uint32(x)) * counterPerWord >> 32)
	return &f.words[uint64(r)*(f.mask+1)+w], c
}

func counterOf(w uint64, i uint) uint8 { return uint8(w >> (8 * i)) }

func withCounter(w uint64, i uint, c uint8) uint64 {
	return w&^(0xff<<(8*i)) | uint64(c)<<(8*i)
}

// decayed returns word w decayed to period p: each counter less the
// periods since w's stamp (at least 0), stamped p. A word stamped p or
// later (a touch that read the clock later won a race) is returned as it
// is.
func decayed(w uint64, p uint32) uint64 {
	stamp := uint32(w >> stampShift)
	if stamp >= p {
		return w
	}
	out := uint64(p) << stampShift
	if d := p - stamp; d < 255 {
		for i := range uint(counterPerWord) {
			if c := counterOf(w, i); uint32(c) > d {
				out |= uint64(c-uint8(d)) << (8 * i)
			}
		}
	}
	return out
}

// count returns the key's counter at period p: the smallest of its
// decayed counters.
func (f *frequency) count(h uint64, p uint32) uint8 {
	c := uint8(255)
	for r := range lfuRows {
		w, i := f.slot(h, r)
		c = min(c, counterOf(decayed(w.Load(), p), i))
	}
	return c
}

// touch records an access at period p of the key hashed h; rnd is the
// random draw (uniform over 64 bits) that decides a logarithmic
// increment.
func (f *frequency) touch(h uint64, p uint32, rnd uint64, logFactor uint64) {
	var (
		words [lfuRows]*atomic.Uint64
		at    [lfuRows]uint
		seen  [lfuRows]uint64
	)
	c := uint8(255)
	for r := range lfuRows {
		words[r], at[r] = f.slot(h, r)
		seen[r] = words[r].Load()
		c = min(c, counterOf(decayed(seen[r], p), at[r]))
	}
	c = logIncr(c, rnd, logFactor)
	for r := range lfuRows {
		w := seen[r]
		for {
			nw := decayed(w, p)
			if counterOf(nw, at[r]) < c {
				nw = withCounter(nw, at[r], c)
			}
			if nw == w || words[r].CompareAndSwap(w, nw) {
				break
			}
			w = words[r].Load()
		}
	}
}

// logIncr is Redis's LFULogIncr: counter c grows by one with probability
// 1/((c-LFUInitVal)·factor+1), certainly while c is at most LFUInitVal,
// and never past 255. rnd is a uniform random draw.
func logIncr(c uint8, rnd uint64, factor uint64) uint8 {
	if c == 255 {
		return c
	}
	if c <= LFUInitVal {
		return c + 1
	}
	// p = 1/(base·factor+1): with r uniform in [0, 2³²), increment when
	// r·(base·factor+1) < 2³². factor is capped (MaxLFULogFactor) so that
	// this cannot overflow.
	base := uint64(c - LFUInitVal)
	if (rnd>>32)*(base*factor+1) < 1<<32 {
		return c + 1
	}
	return c
}
