package node

import (
	"cmp"
	"context"
	"encoding/binary"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/dboutique/dboutique/ring"
)

// Views. A view is one immutable placement: the ring built from the
// members this node sees alive (itself included unless it is leaving). It
// has two names, for two different questions:
//
//   - its epoch, a fingerprint of the member set (IDs, names,
//     incarnations), answers "do two nodes place buckets the same way right
//     now?". Two nodes compare epochs at one moment (a pull asks its
//     source to share the puller's epoch); an epoch can recur (a member
//     joins then dies, a partition heals), so nothing is ever remembered
//     by epoch.
//   - its term, a counter of this node's own that grows with every view it
//     installs and every lease it regains (lease.go), answers "is this
//     still the view I checked?". Everything a node remembers about a view
//     (which buckets it pulled, whether its copies are settled) is keyed by
//     term, so a view that comes back is a new term and starts from
//     nothing. Invariant: terms never repeat.

// view is one placement. Readers load it atomically (Node.view).
type view struct {
	epoch  uint64            // fingerprint of the membership the ring was built from
	term   uint64            // this node's number for the view; never repeats
	ring   ring.Ring         // nil if placement failed
	err    error             // why the ring is nil
	byKey  map[string]Member // ring member key -> member
	ids    map[string]uint64 // peer ID -> incarnation of the members in the ring
	byName bool              // ring keys are node names, not peer IDs
	// usableAt is the earliest time (on the node's monotonic clock, see
	// Node.sinceStart) at which this node may serve in the view, or agree
	// to another node serving in it: the holds of the members it has just
	// dropped (lease.go). Zero when nothing is held.
	usableAt time.Duration
	// replaced is done when a newer view replaces this one (a context, so
	// that calls can end with it through context.AfterFunc).
	replaced     context.Context
	markReplaced context.CancelFunc

	// firsts caches primary's answers (bucket name -> Member), for up to
	// maxCachedPrimaries buckets: every request asks, and the ring's
	// answer costs a search and two allocations.
	firsts sync.Map
	cached atomic.Int64
}

// maxCachedPrimaries bounds a view's cache of primaries.
const maxCachedPrimaries = 1 << 16

// primary returns the first owner of bucket.
func (v *view) primary(bucket string) (Member, error) {
	if m, ok := v.firsts.Load(bucket); ok {
		return m.(Member), nil
	}
	owners, err := v.owners(bucket, 1)
	if err != nil {
		return Member{}, err
	}
	if v.cached.Load() < maxCachedPrimaries {
		if _, loaded := v.firsts.LoadOrStore(bucket, owners[0]); !loaded {
			v.cached.Add(1)
		}
	}
	return owners[0], nil
}

// owners returns the first n owners of bucket.
func (v *view) owners(bucket string, n int) ([]Member, error) {
	if v.ring == nil {
		return nil, v.err
	}
	keys, err := v.ring.Owners(bucket, n)
	if err != nil {
		return nil, err
	}
	ms := make([]Member, len(keys))
	for i, k := range keys {
		ms[i] = v.byKey[k]
	}
	return ms, nil
}

// owns reports whether this node is one of bucket's first n owners.
func (v *view) owns(bucket string, n int) bool {
	owners, err := v.owners(bucket, n)
	return err == nil && slices.ContainsFunc(owners, func(m Member) bool { return m.Self })
}

// has reports whether the member with peer ID id is in the view.
func (v *view) has(id string) bool {
	_, ok := v.ids[id]
	return ok
}

// placement returns a copy of v that only places buckets (owners, has,
// hasLife): without its cache of primaries, for keeping long (lost.go).
func (v *view) placement() *view {
	return &view{epoch: v.epoch, term: v.term, ring: v.ring, err: v.err, byKey: v.byKey, ids: v.ids, byName: v.byName}
}

// hasLife reports whether m's life (its peer ID and incarnation) is in the
// view: a member that restarted since m was seen is another life, which
// holds nothing of what m held.
func (v *view) hasLife(m Member) bool {
	inc, ok := v.ids[m.ID]
	return ok && inc == m.Incarnation
}

// buildView places the given members (self included, all alive). With
// byName the ring works on names; when two members share a name, the one
// with the lower peer ID takes it.
func buildView(p ring.Placement, byName bool, alive []Member) *view {
	slices.SortFunc(alive, func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
	v := &view{byKey: make(map[string]Member, len(alive)), ids: make(map[string]uint64, len(alive)), byName: byName}
	v.replaced, v.markReplaced = context.WithCancel(context.Background())
	keys := make([]string, 0, len(alive))
	h := xxhash.New()
	for _, m := range alive {
		k := m.ID
		if byName {
			k = m.Name
		}
		if _, dup := v.byKey[k]; dup || k == "" {
			continue
		}
		v.byKey[k] = m
		v.ids[m.ID] = m.Incarnation
		keys = append(keys, k)
		_, _ = h.WriteString(k)
		_, _ = h.WriteString("\x00")
		_, _ = h.WriteString(m.ID)
		_, _ = h.WriteString("\x00")
		_, _ = h.Write(binary.BigEndian.AppendUint64(nil, m.Incarnation))
	}
	v.epoch = h.Sum64()
	v.ring, v.err = p.Place(keys)
	return v
}
