package node

import (
	"testing"
	"time"
)

// TestHistogramBuckets: each observation lands in the first bucket whose
// bound it does not exceed (bounds are inclusive, as Prometheus's "le"),
// and the snapshot's counts are cumulative.
func TestHistogramBuckets(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name    string
		observe []time.Duration
		want    [LatencyBuckets]uint64 // cumulative, by bound
		count   uint64
	}{
		{name: "empty"},
		{name: "zero is in the first bucket", observe: []time.Duration{0},
			want: [LatencyBuckets]uint64{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, count: 1},
		{name: "a bound is in its own bucket", observe: []time.Duration{100 * time.Microsecond, ms, time.Second},
			want: [LatencyBuckets]uint64{1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3}, count: 3},
		{name: "just above a bound is in the next", observe: []time.Duration{100*time.Microsecond + 1, ms + 1},
			want: [LatencyBuckets]uint64{0, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2}, count: 2},
		{name: "above the last bound: only in +Inf", observe: []time.Duration{time.Second + 1, time.Hour},
			count: 2},
		{name: "one in every bucket", observe: []time.Duration{
			50 * time.Microsecond, 200 * time.Microsecond, 400 * time.Microsecond, 800 * time.Microsecond,
			2 * ms, 4 * ms, 8 * ms, 20 * ms, 40 * ms, 80 * ms, 200 * ms, 800 * ms, 2 * time.Second},
			want: [LatencyBuckets]uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, count: 13},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h histogram
			var sum time.Duration
			for _, d := range tc.observe {
				h.observe(d)
				sum += d
			}
			got := h.snapshot()
			if got.Counts != tc.want || got.Count != tc.count || got.Sum != sum || got.Bounds != latencyBounds() {
				t.Errorf("snapshot = %+v; want counts %v, count %d, sum %v", got, tc.want, tc.count, sum)
			}
			if tc.count > 0 && got.Mean() != sum/time.Duration(tc.count) {
				t.Errorf("mean %v, want %v", got.Mean(), sum/time.Duration(tc.count))
			}
		})
	}
}

// TestReplicateMeasuredWithoutAllocation: the counters on the write path
// cost no allocation.
func TestReplicateMeasuredWithoutAllocation(t *testing.T) {
	var s stats
	allocs := testing.AllocsPerRun(100, func() {
		r := s.replicateBegin()
		r.writes = 3
		s.replicateEnd(&r)
		s.forwarded(2)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per replicate measured", allocs)
	}
}
