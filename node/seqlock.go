package node

import (
	"context"

	"github.com/cespare/xxhash/v2"
	"golang.org/x/sync/semaphore"
)

// Sequencers. A primary orders a bucket's writes under the bucket's
// sequencer: writes take it shared, and CREATE and DROP (which change
// whether the bucket exists), the retiring of a copy and the barrier a
// new primary asks for (msgDigest) take it alone. The sequencer is held
// while a write is replicated, so a wait for it can be long: every wait
// ends with its context (a weighted semaphore, first come first served, so
// a waiting exclusive holder is not starved by a stream of shared ones).

// seqStripes is the number of sequencers; buckets share them by hash.
const seqStripes = 256

// seqWeight is a sequencer's capacity: a shared holder takes 1, an
// exclusive one all of it.
const seqWeight = 1 << 30

// sequencer is one stripe's lock.
type sequencer struct{ sem *semaphore.Weighted }

// newSequencers makes the stripes.
func newSequencers() *[seqStripes]sequencer {
	var s [seqStripes]sequencer
	for i := range s {
		s[i].sem = semaphore.NewWeighted(seqWeight)
	}
	return &s
}

// seqLock returns bucket's sequencer.
func (n *Node) seqLock(bucket string) sequencer {
	return n.seq[stripeOf(bucket)]
}

// stripeOf returns the stripe of bucket's sequencer.
func stripeOf(bucket string) int {
	return int(xxhash.Sum64String(bucket) % seqStripes)
}

// lock takes the sequencer, alone when exclusive, or returns ctx's error.
func (s sequencer) lock(ctx context.Context, exclusive bool) error {
	w := int64(1)
	if exclusive {
		w = seqWeight
	}
	return s.sem.Acquire(ctx, w)
}

// unlock lets go of what lock took.
func (s sequencer) unlock(exclusive bool) {
	w := int64(1)
	if exclusive {
		w = seqWeight
	}
	s.sem.Release(w)
}
