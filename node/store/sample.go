package store

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
// random bucket, it takes the first entries of its index from a random
// slot on, as Redis's eviction
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
			// From a random slot of the index (of the entries with an
			// expiry, for volatile) on, until the bucket's share is
			// taken: a bucket of a few entries is found as surely as a
			// large one.
			x, taken := &r.tab.idx, 0
			if volatile {
				x = &r.tab.vol
			}
			x.each(rand.IntN(max(1, x.slots())), func(v uint64) bool {
				if taken == share || len(dst) >= want0 {
					return false
				}
				e := r.tab.view(uint32(v))
				if h := e.hdr(); h.liveAt(now) {
					dst = append(dst, Sampled{Bucket: name, Key: string(e.key), Version: h.version(), Expires: h.expires,
						Size: int64(len(e.key) + len(e.value))})
					taken++
				}
				return true
			})
		}
		r.mu.RUnlock()
	}
	return dst
}
