package node

import (
	"slices"
	"time"

	"github.com/dboutique/dboutique/node/store"
)

// Lost copies. When every node that held a bucket's copies dies before
// the copies are re-made (more than Replicas-1 crashes in a row), or is
// across a partition, the bucket's data is gone or out of reach, and
// answering NOT FOUND would tell the client that the bucket does not
// exist. Rule: a primary, ready for a bucket (so it has asked every alive
// member for it), that finds no record of the bucket (no copy, no drop)
// answers an UnreachableError naming a dead node instead, when for some
// life of a member that died (within defaultForgetAfter) every owner of
// the bucket in the view where the copies were when it died is gone now:
// dead, or restarted (a new life holds nothing of the old one's copies).
//
// "Where the copies were" is the last view in which this node held its
// share of every bucket (settledView: its own pass left nothing undone,
// every other member confirmed that it lacked nothing of theirs, and it
// has handed no copy off since) when the life ended, or the view just
// before the death when that one did not include the life; this node
// counts as holding its share of the copies only in the first case. Reading the
// ring over all the dead and alive members instead would place buckets on
// nodes that never held them once members have come and gone, and so name
// nodes dead for minutes for buckets that survivors hold. A node that
// joined after a member died knows nothing of it; it learns the verdict
// from the members it pulls the bucket from (msgDigest's digestLost).

// death records one life of a member that died: its peer ID and
// incarnation, when this node saw it go, and the view where the copies were
// then. A member that restarted (a new incarnation, an empty store) is a
// death too, even when the new life is alive before anyone saw the old one
// dead: the old life's copies are gone all the same.
type death struct {
	life Member
	at   time.Time
	// before is the view where the copies were when the life died, and
	// beforeSettled whether this node's own copies were settled in it.
	before        *view
	beforeSettled bool
}

// maxDeaths bounds the deaths a node remembers: a churn of restarts
// must not grow it without end. The oldest go first.
const maxDeaths = 1024

// recordDeathsLocked notes, for each life that old had and next has not,
// and that did not leave (a member that left handed its copies off), where
// the copies were: the last settled view, when it had that life, or old.
// The caller holds n.mu.
func (n *Node) recordDeathsLocked(old, next *view) {
	if old == nil {
		return
	}
	now := time.Now()
	ref := n.settledView.Load()
	var oldCopy, refCopy *view // made once, shared by the deaths of this change
	for _, m := range old.byKey {
		if m.Self || next.hasLife(m) {
			continue
		}
		if e := n.members[m.ID]; e != nil && e.Incarnation == m.Incarnation && e.State != StateDead {
			continue // it left, or is leaving: it hands its copies off
		}
		d := death{life: m, at: now}
		if ref != nil && ref.hasLife(m) {
			if refCopy == nil {
				refCopy = ref.placement()
			}
			d.before, d.beforeSettled = refCopy, true
		} else {
			if oldCopy == nil {
				oldCopy = old.placement()
			}
			d.before = oldCopy
		}
		n.deaths = append(n.deaths, d)
	}
	n.forgetDeathsLocked(now)
}

// forgetDeathsLocked drops the deaths older than defaultForgetAfter (when
// the dead member is forgotten too) and all but the latest maxDeaths. The
// caller holds n.mu.
func (n *Node) forgetDeathsLocked(now time.Time) {
	i := 0
	for i < len(n.deaths) && (now.Sub(n.deaths[i].at) > defaultForgetAfter || len(n.deaths)-i > maxDeaths) {
		i++
	}
	if i > 0 {
		n.deaths = slices.Delete(n.deaths, 0, i)
	}
}

// lost returns an UnreachableError in place of NOT FOUND for a bucket this
// node holds no record of, when its copies died with their owners (see
// above).
func (n *Node) lost(bucket string) error {
	// A record counts if the bucket ever existed here, or was dropped: a
	// write ignored, or an empty page merged (the copy it came from was
	// removed meanwhile), leaves an empty record that says nothing.
	if m, ok := n.cfg.Store.Meta(bucket); ok && m != (store.BucketMeta{}) {
		return nil
	}
	current := n.view.Load()
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, d := range n.deaths {
		if now.Sub(d.at) > defaultForgetAfter {
			continue
		}
		owners, err := d.before.owners(bucket, n.cfg.Replicas)
		if err != nil || len(owners) == 0 {
			continue
		}
		// Gone, unless an owner is still here: the same life of another
		// node in the view (a pull asked it; a life that restarted since
		// holds nothing of it), or this node if its copies were settled
		// in that view (else it may never have had them: it had just
		// restarted, say).
		gone := true
		for _, m := range owners {
			if m.Self {
				gone = gone && !d.beforeSettled
			} else {
				gone = gone && !current.hasLife(m)
			}
		}
		if gone {
			return &UnreachableError{Node: owners[0].Name}
		}
	}
	// A member pulled from may know of deaths this node does not (this
	// node joined after them).
	if name := n.ready.lostWith(n.term.Load(), bucket); name != "" {
		return &UnreachableError{Node: name}
	}
	return nil
}

// settledIn records that a pass in view v left nothing undone: v is where
// the copies are, once every other member of v has also confirmed that
// this node lacks nothing of theirs (caughtUpWith).
func (n *Node) settledIn(v *view) {
	n.settled.Store(v.term)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.holderLocked(v)
}

// caughtUpWith records that member from, in the view of epoch, found that
// this node lacks nothing of its copies.
func (n *Node) caughtUpWith(from string, epoch uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	v := n.view.Load()
	if v.epoch != epoch {
		return
	}
	if n.caughtTerm != v.term {
		n.caughtTerm, n.caughtFrom = v.term, make(map[string]bool)
	}
	n.caughtFrom[from] = true
	n.holderLocked(v)
}

// holderLocked makes v the view where the copies are (settledView) when
// this node's pass in v left nothing undone and every other member of v
// confirmed that this node lacks nothing of theirs: only then does it hold
// its share of every bucket v gives it. (A node that has just joined or
// restarted settles at once, having nothing to hand anyone; its share is
// still on its way.) The caller holds n.mu.
func (n *Node) holderLocked(v *view) {
	if n.settled.Load() != v.term || n.view.Load() != v {
		return
	}
	for id := range v.ids {
		if id != n.self.ID && (n.caughtTerm != v.term || !n.caughtFrom[id]) {
			return
		}
	}
	n.settledView.Store(v)
}
