package store

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestPageBuilderAgainstSort: the page builder, which keeps count items in
// a heap whatever it is offered, gives the page a full sort would: the
// count smallest items from the cursor, every item of the hash they end
// at, cut at the end of a hash past the byte budget. Hashes are drawn
// from a small range so that many items share one, which real names do
// only by being a bucket and a plain key at once (or by a collision).
func TestPageBuilderAgainstSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 3000 {
		n := rng.IntN(40)
		all := make([]hashedItem, n)
		for i := range all {
			all[i] = hashedItem{uint64(rng.IntN(12)), ScanItem{Name: fmt.Sprintf("n%d", i), Type: NameType(1 + rng.IntN(2))}}
		}
		r := ScanRequest{Cursor: uint64(rng.IntN(6)), Count: 1 + rng.IntN(8)}
		maxBytes := 1 << 20
		if rng.IntN(3) == 0 {
			maxBytes = rng.IntN(60)
		}
		b := NewPageBuilder(r)
		for _, it := range all {
			b.offer(it.h, it.ScanItem)
		}
		got := b.Page(maxBytes)

		// The reference: sort everything.
		var want Page
		var from []hashedItem
		for _, it := range all {
			if it.h >= r.Cursor {
				from = append(from, it)
			}
		}
		slices.SortFunc(from, compareItems)
		end := min(r.Count, len(from))
		for end > 0 && end < len(from) && from[end].h == from[end-1].h {
			end++
		}
		size := 0
		for i := 0; i < end; i++ {
			if i > 0 && size > maxBytes && from[i].h != from[i-1].h {
				end = i
				break
			}
			size += len(from[i].Name) + scanItemOverhead
		}
		for _, it := range from[:end] {
			want.Items = append(want.Items, it.ScanItem)
		}
		if end < len(from) {
			want.Full, want.Last = true, from[end-1].h
		}
		if !slices.Equal(got.Items, want.Items) || got.Full != want.Full || got.Last != want.Last {
			t.Fatalf("round %d, %+v, budget %d, items %v:\ngot  %+v\nwant %+v", round, r, maxBytes, all, got, want)
		}
	}
}
