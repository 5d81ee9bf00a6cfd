package mapstore

import "math/rand/v2"

// Sampled is an entry picked at random, with what an eviction policy
// ranks it by.
type Sampled struct {
	Bucket, Key string
	Version     Version // its last write; Version.Time is when
	Expires     int64   // 0: none
	Size        int64   // bytes of its key and value
}

// Sample appends to dst about n live entries picked at random from the
// buckets for which want returns true (with volatile set, only entries
// with an expiry), and returns it. In each bucket it visits, starting at a
// random bucket, it takes the first entries of the shards from a random
// one on (Go randomises each map's order), as Redis's eviction
// samples a few keys rather than keeping an order of all of them. It holds
// one bucket's lock at a time, for reading.
func (s *Store) Sample(dst []Sampled, n int, volatile bool, want func(bucket string) bool) []Sampled {
	var names []string
	s.records.Range(func(k, _ any) bool {
		names = append(names, k.(string))
		return true
	})
	if len(names) == 0 {
		return dst
	}
	now := s.clock.Millis()
	start := rand.IntN(len(names))
	want0 := len(dst) + n
	// Each bucket gives at most its share, so that one large bucket does
	// not hide the others; up to two passes over the buckets.
	share := max(1, n/len(names))
	for i := 0; i < 2*len(names) && len(dst) < want0; i++ {
		name := names[(start+i)%len(names)]
		if !want(name) {
			continue
		}
		r := s.rlock(name)
		if r == nil {
			continue
		}
		if r.meta.LiveAt(now) && r.live > 0 && (!volatile || r.volatile > 0) {
			// Shards from a random one on, until the bucket's share is
			// taken: a bucket of a few entries is found as surely as a
			// large one.
			first, taken := rand.IntN(NumShards), 0
			for j := 0; j < NumShards && taken < share && len(dst) < want0; j++ {
				sh := &r.shards[(first+j)%NumShards]
				for key, c := range sh.entries {
					if taken == share || len(dst) >= want0 {
						break
					}
					if c.deleted() || volatile && !c.volatile() {
						continue
					}
					it, _ := r.get(sh, key)
					if !it.liveAt(now) {
						continue
					}
					dst = append(dst, Sampled{Bucket: name, Key: key, Version: it.version(), Expires: it.expires,
						Size: int64(len(key) + len(it.value))})
					taken++
				}
			}
		}
		r.mu.RUnlock()
	}
	return dst
}
