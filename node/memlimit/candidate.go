package memlimit

import (
	"encoding/binary"
	"math"
	"time"

	"github.com/cespare/xxhash/v2"
)

// KeyHash returns the hash that names the entry key of bucket to the
// Governor (Touch, Candidate.Hash): xxhash over the bucket name's length,
// the bucket name and the key, so that no two (bucket, key) pairs share
// their input. Every caller must hash entries with it, or touches and
// candidates will not meet.
func KeyHash(bucket, key string) uint64 {
	const small = 128
	if n := 8 + len(bucket) + len(key); n <= small {
		var buf [small]byte // one-shot hashing from the stack for the usual short names
		b := binary.LittleEndian.AppendUint64(buf[:0], uint64(len(bucket)))
		b = append(b, bucket...)
		b = append(b, key...)
		return xxhash.Sum64(b)
	}
	var d xxhash.Digest
	d.Reset()
	var l [8]byte
	binary.LittleEndian.PutUint64(l[:], uint64(len(bucket)))
	_, _ = d.Write(l[:])
	_, _ = d.WriteString(bucket)
	_, _ = d.WriteString(key)
	return d.Sum64()
}

// A Candidate is an entry that may be evicted, as its caller sampled it.
type Candidate struct {
	Hash      uint64 // KeyHash(bucket, key)
	WrittenAt int64  // Unix milliseconds of the entry's last write, which counts as an access
	Expires   int64  // Unix milliseconds at which it expires; 0 for never
	Size      int64  // the bytes evicting it frees (EntryCost)
}

// Score ranks c for eviction under the Governor's policy: the higher the
// score, the sooner c should go. ok is false when the policy may not
// evict c at all: NoEviction, or a volatile policy and an entry without
// expiry. Scores are comparable between candidates scored at about the
// same time:
//
//   - an entry already expired scores the most, under every policy: it
//     is gone for every reader anyway;
//   - LRU: milliseconds since the last access, the later of WrittenAt and
//     what the sketch remembers of the last Touch;
//   - LFU: 255 less the access counter (Redis's, decayed by the minutes
//     since the last access; a write counts as LFUInitVal accesses, as a
//     new key does in Redis), then milliseconds since the last write;
//   - TTL: the sooner the expiry, the higher;
//   - random: a random number, so that the highest of a sample is a
//     uniform choice.
func (g *Governor) Score(c Candidate) (score uint64, ok bool) {
	return g.score(c, g.cfg.Now())
}

func (g *Governor) score(c Candidate, now time.Time) (uint64, bool) {
	p := g.cfg.Policy
	if !p.Evicts() || p.Volatile() && c.Expires == 0 {
		return 0, false
	}
	nowMs := now.UnixMilli()
	if c.Expires != 0 && c.Expires <= nowMs {
		return math.MaxUint64, true
	}
	switch {
	case p.LRU():
		last := c.WrittenAt
		if g.rec != nil {
			if t := g.rec.last(c.Hash); t > 0 {
				last = max(last, g.startMs+int64(t-1)*lruTick.Milliseconds())
			}
		}
		return uint64(max(nowMs-last, 0)), true
	case p.LFU():
		idle := max(nowMs-c.WrittenAt, 0)
		n := max(LFUInitVal-idle/g.decayMs, 0)
		if g.freq != nil {
			n = max(n, int64(g.freq.count(c.Hash, g.period(now))))
		}
		return uint64(255-n)<<40 | uint64(min(idle, 1<<40-1)), true
	case p.TTL():
		return math.MaxUint64 - 1 - uint64(max(c.Expires, 0)), true
	}
	return g.cfg.Rand() >> 1, true // random: below an expired entry's score
}

// Pick returns the index of the candidate to evict first: the highest
// Score, and among equal scores the largest Size (the first of those). It
// returns -1 when the policy may evict none of them. The caller samples
// the candidates (Redis samples 5 by default; more is closer to exact LRU)
// from the entries it may evict: at a bucket's primary, so that the
// eviction is replicated as a delete.
func (g *Governor) Pick(cs []Candidate) int {
	now := g.cfg.Now()
	best, bestScore := -1, uint64(0)
	for i, c := range cs {
		s, ok := g.score(c, now)
		if !ok {
			continue
		}
		if best < 0 || s > bestScore || s == bestScore && c.Size > cs[best].Size {
			best, bestScore = i, s
		}
	}
	return best
}
