package store

// This file holds what replication and anti-entropy use: the versioned
// writes, which merge in any order (ApplyCreate, ApplyDrop, ApplyEntry,
// Merge), the reads that compare two copies and page through one (Meta,
// Digest, Page), retiring a copy that is being handed off, and the
// collection of old tombstones.

import (
	"slices"
	"strings"
)

// ApplyCreate records a create at v: Created = max(Created, v). Creates the
// record if missing.
func (s *Store) ApplyCreate(bucket string, v Version) error {
	return s.applyMeta(bucket, BucketMeta{Created: v})
}

// ApplyDrop records a drop at v: Dropped = max(Dropped, v) and removes every
// entry with Version <= Dropped (live keys and tombstones). Creates the
// record if missing (so a late create older than v stays dropped).
func (s *Store) ApplyDrop(bucket string, v Version) error {
	return s.applyMeta(bucket, BucketMeta{Dropped: v})
}

func (s *Store) applyMeta(bucket string, m BucketMeta) error {
	if bucket == "" {
		return emptyName()
	}
	top := max(m.Created, m.Dropped, m.ExpiresV)
	if err := validVersion(top); err != nil {
		return err
	}
	s.clock.Observe(top)
	r := s.lock(bucket, true)
	defer r.mu.Unlock()
	if r.retired {
		return ErrRetired
	}
	r.applyMeta(m)
	return nil
}

// ApplyEntry merges e: ignored when e.Version <= Dropped or when the present
// entry is not older (Newer). When the bucket does not exist (Created <=
// Dropped) and e is kept, the bucket comes to exist: a replica that missed
// the create still ends up with the bucket. Created becomes the greatest of
// itself and e.Version (see BucketMeta).
func (s *Store) ApplyEntry(bucket string, e Entry) error {
	if bucket == "" {
		return emptyName()
	}
	if err := validVersion(e.Version); err != nil {
		return err
	}
	s.clock.Observe(e.Version)
	r := s.lock(bucket, true)
	defer r.mu.Unlock()
	if r.retired {
		return ErrRetired
	}
	_, err := r.applyEntry(e.Key, mkItem(e))
	return err
}

// ApplyEntryLive is ApplyEntry, also reporting whether the key had a value just
// before and whether e was applied (not ignored as older).
func (s *Store) ApplyEntryLive(bucket string, e Entry) (wasLive, applied bool, err error) {
	if bucket == "" {
		return false, false, emptyName()
	}
	if err := validVersion(e.Version); err != nil {
		return false, false, err
	}
	s.clock.Observe(e.Version)
	r := s.lock(bucket, true)
	defer r.mu.Unlock()
	if r.retired {
		return false, false, ErrRetired
	}
	f := r.find(e.Key)
	wasLive = f.ok() && f.liveBy(s.clock)
	applied, err = r.applyFound(e.Key, mkItem(e), f)
	return wasLive, applied, err
}

// Merge applies a peer's copy: meta first (as ApplyCreate/ApplyDrop with
// max), then each entry as ApplyEntry, under one lock acquisition. Returns
// ErrRetired if retired. Returns how many entries changed this copy: entries
// written plus entries that the meta's drop removed.
func (s *Store) Merge(bucket string, meta BucketMeta, entries []Entry) (changed int, err error) {
	if bucket == "" {
		return 0, emptyName()
	}
	top := max(meta.Created, meta.Dropped, meta.ExpiresV)
	for i := range entries {
		top = max(top, entries[i].Version)
	}
	if err := validVersion(top); err != nil {
		return 0, err
	}
	s.clock.Observe(top)
	r := s.lock(bucket, true)
	defer r.mu.Unlock()
	if r.retired {
		return 0, ErrRetired
	}
	changed = r.applyMeta(meta)
	for i := range entries {
		e := &entries[i]
		ok, err := r.applyEntry(e.Key, mkItem(*e))
		if err != nil {
			return changed, err
		}
		if ok {
			changed++
		}
	}
	return changed, nil
}

// --- primary-side reads and anti-entropy ---

// Meta returns the bucket-level state of the bucket's copy; false when
// there is no record.
func (s *Store) Meta(bucket string) (BucketMeta, bool) {
	r := s.rlock(bucket)
	if r == nil {
		return BucketMeta{}, false
	}
	m := r.meta
	r.mu.RUnlock()
	return m, true
}

// Exists reports whether the bucket exists in this copy, expired or not
// (BucketLive judges expiry).
func (s *Store) Exists(bucket string) bool {
	m, _ := s.Meta(bucket)
	return m.Exists()
}

// Digest returns the digest of the bucket's copy; false when there is no
// record.
func (s *Store) Digest(bucket string) (Digest, bool) {
	var d Digest
	r := s.rlock(bucket)
	if r == nil {
		return d, false
	}
	d.Meta = r.meta
	d.Shards = r.digests
	r.mu.RUnlock()
	return d, true
}

// Page returns up to maxBytes (at least one entry if any) of shard `shard`'s
// entries whose key is greater than `after`, sorted by key, tombstones
// included, and whether more follow. An entry counts as the bytes of its key
// and value plus PageEntryOverhead. It copies the shard's entries under the
// read lock and sorts outside it (bounded by one shard). ok=false when there
// is no record; a shard out of range holds nothing.
//
// The empty key is the smallest key, so after = "" starts at the first key,
// the empty key included. To keep the last key of a page a valid `after` for
// the next one, a page never ends on the empty key while more follow.
func (s *Store) Page(bucket string, shard int, after string, maxBytes int) (entries []Entry, more bool, ok bool) {
	r := s.rlock(bucket)
	if r == nil {
		return nil, false, false
	}
	if shard < 0 || shard >= NumShards {
		r.mu.RUnlock()
		return nil, false, true
	}
	// The shard's entries are about one NumShards-th of the record's.
	// Their keys and values are copied into one string (ends holds where
	// each entry's key and value end in it), so that a page costs a few
	// allocations rather than one per entry.
	n := (r.live+r.tombstones)/NumShards*5/4 + 1
	all := make([]Entry, 0, n)
	ends := make([]int, 0, 2*n)
	var buf strings.Builder
	x := &r.tab.idx
	for i := range x.slots() {
		v := x.at(i)
		if v == 0 || uint32(v>>32)%NumShards != uint32(shard) {
			continue
		}
		e := r.tab.view(uint32(v))
		if after == "" || string(e.key) > after {
			h := e.hdr()
			buf.Write(e.key)
			ends = append(ends, buf.Len())
			buf.Write(e.value)
			ends = append(ends, buf.Len())
			all = append(all, Entry{Version: h.version(), Deleted: h.deleted(), Expires: h.expires})
		}
	}
	r.mu.RUnlock()
	kvs, start := buf.String(), 0
	for i := range all {
		all[i].Key, all[i].Value = kvs[start:ends[2*i]], kvs[ends[2*i]:ends[2*i+1]]
		start = ends[2*i+1]
	}
	slices.SortFunc(all, func(a, b Entry) int { return strings.Compare(a.Key, b.Key) })
	n, size := 0, 0
	for n < len(all) {
		size += len(all[n].Key) + len(all[n].Value) + PageEntryOverhead
		if n > 0 && size > maxBytes && all[n-1].Key != "" {
			break
		}
		n++
	}
	return all[:n:n], n < len(all), true
}

// Records lists every record's bucket name (existing, dropped and retired),
// sorted.
func (s *Store) Records() []string {
	var names []string
	s.records.Range(func(k, _ any) bool {
		names = append(names, k.(string))
		return true
	})
	slices.Sort(names)
	return names
}

// Retire marks the copy as being handed off: from now on ApplyCreate,
// ApplyDrop, ApplyEntry and Merge return ErrRetired. Digest, Page, Meta and
// the unversioned API still work. Returns false if there is no record.
func (s *Store) Retire(bucket string) bool {
	r := s.lock(bucket, false)
	if r == nil {
		return false
	}
	r.retired = true
	r.mu.Unlock()
	return true
}

// Unretire lets the versioned writes reach the copy again (a hand-off that
// did not happen).
func (s *Store) Unretire(bucket string) {
	if r := s.lock(bucket, false); r != nil {
		r.retired = false
		r.mu.Unlock()
	}
}

// Retired reports whether the copy is being handed off.
func (s *Store) Retired(bucket string) bool {
	r := s.rlock(bucket)
	if r == nil {
		return false
	}
	defer r.mu.RUnlock()
	return r.retired
}

// Remove deletes the record (after its hand-off); a new write later creates
// a fresh record.
func (s *Store) Remove(bucket string) {
	if r := s.lock(bucket, false); r != nil {
		s.removeLocked(bucket, r)
		r.mu.Unlock()
	}
}

// removeLocked takes r, locked for writing, out of the directory.
func (s *Store) removeLocked(bucket string, r *record) {
	r.removed = true
	r.clear()
	if s.records.CompareAndDelete(bucket, r) && s.fp != nil {
		s.fp.records.Add(-1)
	}
	s.removals.Add(1)
}

// Collect removes tombstones whose Version < before, and records that are
// dropped (not existing), hold no entries and whose Dropped < before. It
// leaves retired records alone (they are being handed off). Returns counts.
// It runs bucket by bucket, never holding one lock for long: it finds a
// bucket's old tombstones a part of its index at a time under the read
// lock, then removes them collectRemoveBatch at a time under the write
// lock, checking each again. A tombstone that a write moved meanwhile is
// left to the next Collect.
func (s *Store) Collect(before Version) (tombstones, records int) {
	var found []uint64
	s.records.Range(func(k, v any) bool {
		name, r := k.(string), v.(*record)
		found = r.oldTombstones(found[:0], before)
		for len(found) > 0 {
			batch := found[:min(len(found), collectRemoveBatch)]
			found = found[len(batch):]
			r.mu.Lock()
			if r.removed || r.retired {
				r.mu.Unlock()
				break
			}
			for _, v := range batch {
				if i := r.tab.idx.find(v); i >= 0 {
					if h := r.tab.slotView(i).hdr(); h.deleted() && h.version() < before {
						r.removeSlot(i)
						tombstones++
					}
				}
			}
			r.mu.Unlock()
		}
		r.mu.Lock()
		// Compacted once every batch is out: compacting between batches
		// would move the tombstones found but not yet removed.
		if !r.removed {
			r.tab.tidy()
		}
		if !r.removed && !r.retired && !r.meta.Exists() && r.live+r.tombstones == 0 && r.meta.Dropped < before {
			s.removeLocked(name, r)
			records++
		}
		r.mu.Unlock()
		return true
	})
	return tombstones, records
}

// collectRemoveBatch is how many tombstones Collect removes under one
// lock; collectScanSlots how many slots of an index it looks at under one.
const (
	collectRemoveBatch = 1024
	collectScanSlots   = 1 << 14
)

// oldTombstones appends to dst the index slots of r's tombstones older
// than before, reading collectScanSlots slots at a time under the read
// lock. While writes change the index, a tombstone may be missed.
func (r *record) oldTombstones(dst []uint64, before Version) []uint64 {
	for start := 0; ; start += collectScanSlots {
		r.mu.RLock()
		if r.removed || r.retired || r.tombstones == 0 || start >= r.tab.idx.slots() {
			r.mu.RUnlock()
			return dst
		}
		end := min(start+collectScanSlots, r.tab.idx.slots())
		for i := start; i < end; i++ {
			if v := r.tab.idx.at(i); v != 0 {
				if h := r.tab.view(uint32(v)).hdr(); h.deleted() && h.version() < before {
					dst = append(dst, v)
				}
			}
		}
		r.mu.RUnlock()
	}
}
