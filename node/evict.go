package node

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/dboutique/dboutique/node/memlimit"
	"github.com/dboutique/dboutique/node/store"
)

// The memory limit (Config.MaxMemory). Package memlimit counts the
// memory and ranks entries; this file refuses writes and evicts.
//
//   - With noeviction, a write that adds memory (a value, a bucket) is
//     refused with store.ErrOutOfMemory, before it runs, at the bucket's
//     primary, once the node is over its eviction threshold. Deletes,
//     expiries and reads still run.
//   - With a policy that evicts, the node evicts as the primary of the
//     buckets it samples from: it picks entries by the policy (Redis's
//     sampling: the best of every five) and removes them with a
//     replicated write (store.KindEvict), so that every copy drops the
//     same entries and copies never disagree. An eviction leaves no
//     tombstone, which would hold memory: an owner that was down while an
//     entry was evicted can bring that entry back when it returns, as a
//     cache may. Writers that outrun eviction wait for it, and are
//     refused only when it has not caught up after evictWait.
//   - A replica never refuses or evicts on its own: it holds what its
//     primaries decide, and their evictions free its memory too.

// evictInterval is how often the node checks its memory between writes;
// a write over the threshold wakes the evictor at once.
const evictInterval = 50 * time.Millisecond

const (
	// A step of eviction samples evictPool entries for each it evicts
	// (Redis's maxmemory-samples), and evicts from evictMin to evictMax
	// entries: about what brings the node under its threshold.
	evictPool = 5
	evictMin  = 16
	evictMax  = 1024
	// evictSteps bounds the steps of one round.
	evictSteps = 64
	// evictWait is how long a write waits for eviction to bring the node
	// back under its limit before it is refused.
	evictWait = 500 * time.Millisecond
)

// newGovernor makes the node's memory governor, or nil without a limit.
func newGovernor(cfg *Config, s *store.Store) (*memlimit.Governor, error) {
	if cfg.MaxMemory == 0 {
		return nil, nil
	}
	s.TrackFootprint()
	footprint := func() memlimit.Footprint {
		b, e, r, m := s.Footprint()
		return memlimit.Footprint{Bytes: b, Entries: e, Buckets: r, Maps: m, OffHeap: s.OffHeap()}
	}
	meter := memlimit.StoreMeter(footprint)
	if cfg.MemoryMeter != nil {
		meter = cfg.MemoryMeter(footprint)
	}
	g, err := memlimit.New(memlimit.Config{Limit: cfg.MaxMemory, Policy: cfg.MaxMemoryPolicy, Meter: meter,
		Reserve: cfg.MaxMemoryReserve, Now: cfg.Now})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	return g, nil
}

// addsMemory reports whether ops may add to what the store holds.
func addsMemory(ops []store.Op) bool {
	return slices.ContainsFunc(ops, func(op store.Op) bool {
		switch op.Kind {
		case store.KindCreate, store.KindPut, store.KindPutCreate, store.KindSet:
			return true
		}
		return false
	})
}

// admitWrite returns store.ErrOutOfMemory when ops, writes this node is
// the primary of, must be refused for the memory limit; it wakes the
// evictor when the node is over its threshold, and, over the limit
// itself, waits up to evictWait for eviction to catch up: writers slow
// down to the pace of eviction before any is refused.
func (n *Node) admitWrite(ctx context.Context, ops []store.Op) error {
	g := n.mem
	if g == nil || !addsMemory(ops) {
		return nil
	}
	over := g.Over()
	if over == 0 {
		return nil
	}
	if !g.Policy().Evicts() {
		return store.ErrOutOfMemory
	}
	n.wakeEvictor()
	// The line writers wait at lies halfway from where eviction starts to
	// the memory the Go runtime may use, so that the collector keeps room
	// for garbage while eviction catches up with a fast writer.
	hard := g.Threshold() + (g.Limit()-n.cfg.MaxMemoryReserve-g.Threshold())/2
	if g.Used() <= hard {
		return nil
	}
	t := time.NewTimer(evictWait)
	defer t.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for g.Used() > hard {
		select {
		case <-t.C:
			return store.ErrOutOfMemory
		case <-ctx.Done():
			return store.ErrOutOfMemory
		case <-tick.C:
			n.wakeEvictor()
		}
	}
	return nil
}

// wakeEvictor asks the evictor for a round now.
func (n *Node) wakeEvictor() {
	select {
	case n.evictNow <- struct{}{}:
	default:
	}
}

// touch tells the governor of an access to key of bucket, for the LRU and
// LFU policies.
func (n *Node) touch(bucket, key string) {
	if n.touches {
		n.mem.Touch(memlimit.KeyHash(bucket, key))
	}
}

// evictRound evicts, as the primary of the buckets it samples from, until
// the node is under its threshold or finds nothing more to evict.
func (n *Node) evictRound() {
	g, s := n.mem, n.cfg.Store
	var sampled []store.Sampled
	for range evictSteps {
		over := g.Over()
		if over == 0 || n.ctx.Err() != nil {
			return
		}
		v := n.ms.view()
		b, e, _, _ := s.Footprint()
		want := int64(evictMin)
		if e > 0 {
			want = min(max(over/memlimit.EntryCost(0, int(b/e)), evictMin), evictMax)
		}
		sampled = s.Sample(sampled[:0], evictPool*int(want), g.Policy().Volatile(), func(bucket string) bool {
			m, err := v.primary(bucket)
			return err == nil && m.Self
		})
		cands := make([]memlimit.Candidate, len(sampled))
		for i, e := range sampled {
			cands[i] = memlimit.Candidate{Hash: memlimit.KeyHash(e.Bucket, e.Key), WrittenAt: e.Version.Time().UnixMilli(),
				Expires: e.Expires, Size: memlimit.EntryCost(len(e.Key), int(e.Size)-len(e.Key))}
		}
		var victims []int
		freed := int64(0)
		for i := 0; i < len(cands) && freed < over+over/8; i += evictPool {
			if j := g.Pick(cands[i:min(i+evictPool, len(cands))]); j >= 0 {
				victims = append(victims, i+j)
				freed += cands[i+j].Size
			}
		}
		if len(victims) == 0 {
			return
		}
		// One replicated group per bucket.
		slices.SortFunc(victims, func(a, b int) int { return cmp.Compare(sampled[a].Bucket, sampled[b].Bucket) })
		ops := make([]store.Op, len(victims))
		for i, k := range victims {
			ops[i] = store.Op{Kind: store.KindEvict, Bucket: sampled[k].Bucket, Key: sampled[k].Key}
		}
		evicted := n.runOwn(ops)
		g.Evicted(evicted)
		if evicted == 0 {
			return
		}
	}
}
