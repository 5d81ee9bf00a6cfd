package node

// Lost copies. When every node that held a bucket's copies dies before
// the copies are re-made (more than Replicas-1 crashes in a row), or is
// across a partition, the bucket's data is gone or out of reach, and
// answering NOT FOUND would tell the client that the bucket does not
// exist. Rule: a primary, ready for a bucket (so it has asked every alive
// member for it), that finds no record of the bucket (no copy, no drop)
// answers an UnreachableError naming a dead node instead, when for some
// member that died (and is not forgotten yet) every owner of the bucket
// in the view where the copies were when it died is dead now.
//
// "Where the copies were" is the view of this node's last sync pass that
// left nothing undone (settledView) when the member died, or the view just
// before the death when that one did not include the member. Reading the
// ring over all the dead and alive members instead would place buckets on
// nodes that never held them once members have come and gone, and so name
// nodes dead for minutes for buckets that survivors hold. A node that
// joined after a member died knows nothing of it; it learns the verdict
// from the members it pulls the bucket from (msgDigest's digestLost).

// recordDeathsLocked notes, for each member that next leaves out while old
// had it, where the copies were: the last settled view, or old. The caller
// holds n.mu.
func (n *Node) recordDeathsLocked(old, next *view) {
	if old == nil {
		return
	}
	ref := n.settledView.Load()
	for _, e := range n.members {
		if e.State != StateDead || next.has(e.ID) || !old.has(e.ID) {
			continue
		}
		e.before = old
		if ref != nil && ref.has(e.ID) {
			e.before = ref
		}
	}
}

// lost returns an UnreachableError in place of NOT FOUND for a bucket this
// node holds no record of, when its copies died with their owners (see
// above).
func (n *Node) lost(bucket string) error {
	if _, ok := n.cfg.Store.Meta(bucket); ok {
		return nil
	}
	current := n.view.Load()
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, e := range n.members {
		if e.State != StateDead || e.before == nil {
			continue
		}
		owners, err := e.before.owners(bucket, n.cfg.Replicas)
		if err != nil || len(owners) == 0 {
			continue
		}
		gone := true
		for _, m := range owners {
			gone = gone && !m.Self && !current.has(m.ID)
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

// settledIn records that a pass in view v left nothing undone.
func (n *Node) settledIn(v *view) {
	n.settled.Store(v.term)
	n.settledView.Store(v)
}
