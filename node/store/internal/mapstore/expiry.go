package mapstore

// Expiry on the shard maps: the state Decide reads and the changes it
// makes (store.Decide decides them, as for store), evictions, and finding
// expired keys through a bucket's map of expiries.

import (
	"strconv"

	"github.com/dboutique/dboutique/node/store"
)

// state returns what Decide needs about op's target in r, which the caller
// holds (for reading at least).
func (r *record) state(op store.Op, now int64) store.Current {
	cur := store.Current{Now: now, Bucket: r.meta}
	if op.Flags&store.FlagBucket == 0 {
		if it, ok := r.lookup(op.Key); ok {
			cur.Entry = it.entry(op.Key)
		}
	}
	return cur
}

// applyChange applies c to r, which the caller holds for writing.
func (r *record) applyChange(c store.Change) {
	switch c.Kind {
	case store.KindCreate:
		r.applyMeta(store.BucketMeta{Created: c.Entry.Version})
	case store.KindDrop:
		r.applyMeta(store.BucketMeta{Dropped: c.Entry.Version})
	case store.KindExpire:
		r.applyMeta(store.BucketMeta{ExpiresV: c.Entry.Version, Expires: c.Entry.Expires})
	case store.KindEvict:
		r.evict(c.Entry.Key, c.Entry.Version)
	default:
		r.applyEntry(c.Entry.Key, mkItem(c.Entry))
	}
}

// evict removes key's entry if it holds a value of version v or older,
// leaving no tombstone; the caller holds r for writing.
func (r *record) evict(key string, v store.Version) bool {
	sh := &r.shards[store.ShardOf(key)]
	it, ok := r.get(sh, key)
	if !ok || it.deleted() || it.version() > v {
		return false
	}
	r.remove(sh, key, it)
	return true
}

// ApplyEvict removes key's entry from the bucket's copy if it holds a
// value of version v or older, leaving no tombstone: an eviction its
// primary decided (KindEvict). Evicting what is not there is not an error.
func (s *Store) ApplyEvict(bucket, key string, v store.Version) error {
	if bucket == "" {
		return emptyName()
	}
	if err := validVersion(v); err != nil {
		return err
	}
	r := s.lock(bucket, false)
	if r == nil {
		return nil
	}
	defer r.mu.Unlock()
	if r.retired {
		return store.ErrRetired
	}
	r.evict(key, v)
	return nil
}

// decide runs op, decided from the state it finds, on the store's own
// copy, versioned with the store's clock.
func (s *Store) decide(op store.Op) (store.Result, error) {
	r := s.lock(op.Bucket, true)
	defer r.mu.Unlock()
	res, ch, err := store.Decide(op, r.state(op, s.clock.Millis()), s.clock.Now)
	for _, c := range ch {
		r.applyChange(c)
	}
	return res, err
}

// ApplyExpiry records a bucket's expiry, set (or removed, expires 0) by a
// write of version v: as ApplyCreate, it creates the record if missing.
func (s *Store) ApplyExpiry(bucket string, v store.Version, expires int64) error {
	return s.applyMeta(bucket, store.BucketMeta{ExpiresV: v, Expires: expires})
}

// State returns what Decide needs about op's target: the bucket's meta and
// the key's entry, at the time now.
func (s *Store) State(op store.Op, now int64) store.Current {
	r := s.rlock(op.Bucket)
	if r == nil {
		return store.Current{Now: now}
	}
	defer r.mu.RUnlock()
	return r.state(op, now)
}

// FindExpired appends to dst up to limit keys and buckets that have
// expired at now (ms since the Unix epoch), among the buckets for which
// want returns true, and returns it with the number of entries with an
// expiry it looked at. It looks at up to sample entries with an expiry in
// each bucket, starting at a random place (Go's map order), so that
// repeated calls spread over a large store as Redis's sampling does; the
// caller looks again at once when most of what it looked at had expired.
// It holds one bucket's lock at a time, for reading.
func (s *Store) FindExpired(dst []store.Expired, now int64, limit, sample int, want func(bucket string) bool) ([]store.Expired, int) {
	looked := 0
	s.records.Range(func(k, v any) bool {
		if len(dst) >= limit {
			return false
		}
		name, r := k.(string), v.(*record)
		r.mu.RLock()
		defer r.mu.RUnlock()
		if r.removed || r.retired || !r.meta.Exists() || r.volatile == 0 && r.meta.Expires == 0 || !want(name) {
			return true
		}
		if r.meta.ExpiredAt(now) {
			dst = append(dst, store.Expired{Bucket: name, Whole: true})
			return true
		}
		// Go's map order starts at a random place.
		n := 0
		for key, at := range r.expires {
			if n == sample {
				break
			}
			n++
			if at <= now {
				dst = append(dst, store.Expired{Bucket: name, Key: key})
				if len(dst) >= limit {
					break
				}
			}
		}
		looked += n
		if len(dst) >= limit {
			return false
		}
		return true
	})
	return dst, looked
}

// ExpiredIn appends to dst up to limit keys of the bucket called name that
// have expired at now, and returns it: every one, unlike FindExpired's
// sample. It costs nothing for a bucket without expiring keys.
func (s *Store) ExpiredIn(dst []store.Expired, name string, now int64, limit int) []store.Expired {
	r := s.rlock(name)
	if r == nil {
		return dst
	}
	defer r.mu.RUnlock()
	for key, at := range r.expires {
		if len(dst) >= limit {
			break
		}
		if at <= now {
			dst = append(dst, store.Expired{Bucket: name, Key: key})
		}
	}
	return dst
}

// Volatile returns how many entries of the store have an expiry (expired
// or not), and how many buckets.
func (s *Store) Volatile() (keys, buckets int) {
	s.records.Range(func(_, v any) bool {
		r := v.(*record)
		r.mu.RLock()
		if !r.removed {
			keys += r.volatile
			if r.meta.Expires != 0 {
				buckets++
			}
		}
		r.mu.RUnlock()
		return true
	})
	return keys, buckets
}

// ttlResult is KindTTL's outcome for an expiry at (0 for none) at now.
func ttlResult(at, now int64) store.Result {
	if at == 0 {
		return store.Result{}
	}
	return store.Result{Value: strconv.FormatInt(max(at-now, 0), 10)}
}
