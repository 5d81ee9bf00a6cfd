package mapstore

// What replication and anti-entropy use, on the shard maps: the versioned
// writes (ApplyCreate, ApplyDrop, ApplyEntry, Merge), the reads that
// compare two copies and page through one (Meta, Digest, Page), retiring a
// copy, and the collection of old tombstones.

import (
	"slices"
	"strings"

	"github.com/dboutique/dboutique/node/store"
)

// ApplyCreate records a create at v: Created = max(Created, v). Creates the
// record if missing.
func (s *Store) ApplyCreate(bucket string, v store.Version) error {
	return s.applyMeta(bucket, store.BucketMeta{Created: v})
}

// ApplyDrop records a drop at v: Dropped = max(Dropped, v) and removes every
// entry with Version <= Dropped (live keys and tombstones). Creates the
// record if missing (so a late create older than v stays dropped).
func (s *Store) ApplyDrop(bucket string, v store.Version) error {
	return s.applyMeta(bucket, store.BucketMeta{Dropped: v})
}

func (s *Store) applyMeta(bucket string, m store.BucketMeta) error {
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
		return store.ErrRetired
	}
	r.applyMeta(m)
	return nil
}

// ApplyEntry merges e: ignored when e.Version <= Dropped or when the present
// entry is not older (Newer). When the bucket does not exist (Created <=
// Dropped) and e is kept, the bucket comes to exist: a replica that missed
// the create still ends up with the bucket. Created becomes the greatest of
// itself and e.Version (see BucketMeta).
func (s *Store) ApplyEntry(bucket string, e store.Entry) error {
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
		return store.ErrRetired
	}
	r.applyEntry(e.Key, mkItem(e))
	return nil
}

// ApplyEntryLive is ApplyEntry, also reporting whether the key had a value just
// before and whether e was applied (not ignored as older).
func (s *Store) ApplyEntryLive(bucket string, e store.Entry) (wasLive, applied bool, err error) {
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
		return false, false, store.ErrRetired
	}
	sh := &r.shards[store.ShardOf(e.Key)]
	old, had := r.get(sh, e.Key)
	applied = r.applyFound(sh, e.Key, mkItem(e), old, had)
	return had && old.liveBy(s.clock), applied, nil
}

// Merge applies a peer's copy: meta first (as ApplyCreate/ApplyDrop with
// max), then each entry as ApplyEntry, under one lock acquisition. Returns
// ErrRetired if retired. Returns how many entries changed this copy: entries
// written plus entries that the meta's drop removed.
func (s *Store) Merge(bucket string, meta store.BucketMeta, entries []store.Entry) (changed int, err error) {
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
		return 0, store.ErrRetired
	}
	changed = r.applyMeta(meta)
	for i := range entries {
		e := &entries[i]
		if r.applyEntry(e.Key, mkItem(*e)) {
			changed++
		}
	}
	return changed, nil
}

// --- primary-side reads and anti-entropy ---

// Meta returns the bucket-level state of the bucket's copy; false when
// there is no record.
func (s *Store) Meta(bucket string) (store.BucketMeta, bool) {
	r := s.rlock(bucket)
	if r == nil {
		return store.BucketMeta{}, false
	}
	m := r.meta
	r.mu.RUnlock()
	return m, true
}

// Digest returns the digest of the bucket's copy; false when there is no
// record.
func (s *Store) Digest(bucket string) (store.Digest, bool) {
	var d store.Digest
	r := s.rlock(bucket)
	if r == nil {
		return d, false
	}
	d.Meta = r.meta
	for i := range r.shards {
		d.Shards[i] = r.shards[i].digest
	}
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
func (s *Store) Page(bucket string, shard int, after string, maxBytes int) (entries []store.Entry, more bool, ok bool) {
	r := s.rlock(bucket)
	if r == nil {
		return nil, false, false
	}
	if shard < 0 || shard >= store.NumShards {
		r.mu.RUnlock()
		return nil, false, true
	}
	sh := &r.shards[shard]
	all := make([]store.Entry, 0, len(sh.entries))
	for k := range sh.entries {
		if after == "" || k > after {
			it, _ := r.get(sh, k)
			all = append(all, it.entry(k))
		}
	}
	r.mu.RUnlock()
	slices.SortFunc(all, func(a, b store.Entry) int { return strings.Compare(a.Key, b.Key) })
	n, size := 0, 0
	for n < len(all) {
		size += len(all[n].Key) + len(all[n].Value) + store.PageEntryOverhead
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
	s.records.CompareAndDelete(bucket, r)
}

// Collect removes tombstones whose Version < before, and records that are
// dropped (not existing), hold no entries and whose Dropped < before. It
// leaves retired records alone (they are being handed off). Returns counts.
// It runs bucket by bucket and shard by shard, never holding one lock for
// long.
func (s *Store) Collect(before store.Version) (tombstones, records int) {
	s.records.Range(func(k, v any) bool {
		name, r := k.(string), v.(*record)
		for i := range r.shards {
			r.mu.Lock()
			if r.removed || r.retired || r.tombstones == 0 {
				r.mu.Unlock()
				break
			}
			sh := &r.shards[i]
			for key, c := range sh.entries {
				if c.deleted() && c.version() < before {
					r.remove(sh, key, item{cell: c})
					tombstones++
				}
			}
			r.mu.Unlock()
		}
		r.mu.Lock()
		if !r.removed && !r.retired && !r.meta.Exists() && r.live+r.tombstones == 0 && r.meta.Dropped < before {
			s.removeLocked(name, r)
			records++
		}
		r.mu.Unlock()
		return true
	})
	return tombstones, records
}
