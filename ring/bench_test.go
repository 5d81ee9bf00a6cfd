package ring

import (
	"fmt"
	"strings"
	"testing"
)

// rangesFor returns a letter-range table that names all members: one entry
// per member over the printable bytes that may be bounds (at most 92).
func rangesFor(tb testing.TB, members []string) *Ranges {
	var bounds []byte
	for b := byte('!'); b <= '~'; b++ {
		if validBound(b) {
			bounds = append(bounds, b)
		}
	}
	if len(members) > len(bounds) {
		tb.Fatalf("%d members, at most %d", len(members), len(bounds))
	}
	per := len(bounds) / len(members)
	entries := make([]string, len(members))
	for i, m := range members {
		from, to := bounds[i*per], bounds[i*per+per-1]
		if i == len(members)-1 {
			to = bounds[len(bounds)-1]
		}
		entries[i] = fmt.Sprintf("%c-%c=%s", from, to, m)
	}
	r, err := ParseRanges(strings.Join(entries, ","))
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

func benchPlacements(b *testing.B, members []string) map[string]Placement {
	cp, err := NewConsistent(ConsistentConfig{})
	if err != nil {
		b.Fatal(err)
	}
	return map[string]Placement{"consistent": cp, "ranges": rangesFor(b, members)}
}

func BenchmarkPlace(b *testing.B) {
	for _, impl := range []string{"consistent", "ranges"} {
		for _, size := range []int{4, 16, 64} {
			members := names("12D3KooWPeerIdentity", size)
			p := benchPlacements(b, members)[impl]
			b.Run(fmt.Sprintf("%s/members=%d", impl, size), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := p.Place(members); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkOwners(b *testing.B) {
	buckets := bucketNames(1024)
	for _, impl := range []string{"consistent", "ranges"} {
		for _, size := range []int{4, 16, 64} {
			members := names("12D3KooWPeerIdentity", size)
			r, err := benchPlacements(b, members)[impl].Place(members)
			if err != nil {
				b.Fatal(err)
			}
			for _, n := range []int{1, 3} {
				b.Run(fmt.Sprintf("%s/members=%d/n=%d", impl, size, n), func(b *testing.B) {
					b.ReportAllocs()
					i := 0
					for b.Loop() {
						if _, err := r.Owners(buckets[i%len(buckets)], n); err != nil {
							b.Fatal(err)
						}
						i++
					}
				})
			}
		}
	}
}
