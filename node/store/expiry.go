package store

// Expiry. A key's expiry is part of its entry (Entry.Expires) and a
// bucket's is part of its meta (BucketMeta.Expires): both are versioned
// state, replicated and merged like values, so every copy agrees on them,
// and a failover, a hand-off or anti-entropy carries them along.
//
// When an expiry is due, the key or bucket counts as missing for every
// operation, on every copy; the copies still hold it until the bucket's
// primary deletes it with a versioned write (KindReclaim), found either by
// an access or by sampling (as Redis does), so that the memory comes back
// and the digests of the copies stay equal. Time is judged by
// Clock.Millis: the wall clock, or the latest version seen when that is
// later. A key that expired can therefore not come back: every later
// write is versioned after it and either deletes it or writes it anew.
//
// The writes that depend on the state they find (SET NX, EXPIRE GT, GETEX,
// ...) are decided by Decide from that state, so that a node's primary
// (package node) and a bare Store decide them alike.

import (
	"fmt"
	"math/rand/v2"
	"strconv"
)

// Change is one versioned write an operation makes: a bucket's create
// (KindCreate), drop (KindDrop) or expiry (KindExpire, Entry.Expires and
// Entry.Version only), a key's new entry (KindPut, KindDelete), or the
// removal of a key's entry of Entry.Version or older, without a tombstone
// (KindEvict).
type Change struct {
	Kind  Kind
	Entry Entry
}

// Current is the state an operation decided by Decide finds: the bucket's
// meta and, for an operation on a key, the key's entry (Version 0 when it
// has none), with every write ordered before it applied.
type Current struct {
	Now    int64 // the time, ms since the Unix epoch (Clock.Millis)
	Bucket BucketMeta
	Entry  Entry
}

// bucketLive reports whether the bucket exists and has not expired.
func (c *Current) bucketLive() bool { return c.Bucket.LiveAt(c.Now) }

// keyLive reports whether the key has a value: its bucket is live, and the
// entry is neither a tombstone nor expired.
func (c *Current) keyLive() bool {
	e := &c.Entry
	return c.bucketLive() && e.Version != 0 && !e.Deleted && (e.Expires == 0 || e.Expires > c.Now)
}

// expiresOf returns the present expiry of op's target (0 for none); the
// caller checked that it is live.
func (c *Current) expiresOf(op Op) int64 {
	if op.Flags&FlagBucket != 0 {
		return c.Bucket.Expires
	}
	return c.Entry.Expires
}

// Decide works out what op, of a kind that reads first (Kind.ReadsFirst)
// or a KindPut or KindPutCreate with an expiry, writes given the state cur
// it finds, and its outcome. next issues the versions of the changes, in
// order. The changes are to be applied in order; none is applied yet.
func Decide(op Op, cur Current, next func() Version) (Result, []Change, error) {
	var ch []Change
	notFound := func() error {
		if op.Flags&FlagBucket != 0 || !cur.bucketLive() {
			return fmt.Errorf("%w: %q", ErrBucketNotFound, op.Bucket)
		}
		return ErrKeyNotFound
	}
	// put writes the key's value anew, creating its bucket first (after
	// dropping it if it expired) when it is not live.
	put := func(value string, expires int64) {
		if !cur.bucketLive() {
			if cur.Bucket.Exists() {
				ch = append(ch, Change{Kind: KindDrop, Entry: Entry{Version: next()}})
			}
			ch = append(ch, Change{Kind: KindCreate, Entry: Entry{Version: next()}})
		}
		if expires != 0 && expires <= cur.Now {
			ch = append(ch, Change{Kind: KindDelete, Entry: Entry{Key: op.Key, Deleted: true, Version: next()}})
			return
		}
		ch = append(ch, Change{Kind: KindPut, Entry: Entry{Key: op.Key, Value: value, Version: next(), Expires: expires}})
	}
	// remove deletes op's target: the key, or the bucket.
	remove := func() {
		if op.Flags&FlagBucket != 0 {
			ch = append(ch, Change{Kind: KindDrop, Entry: Entry{Version: next()}})
		} else {
			ch = append(ch, Change{Kind: KindDelete, Entry: Entry{Key: op.Key, Deleted: true, Version: next()}})
		}
	}
	// expire sets op's target's expiry, which is in the future.
	expire := func(at int64) {
		if op.Flags&FlagBucket != 0 {
			ch = append(ch, Change{Kind: KindExpire, Entry: Entry{Version: next(), Expires: at}})
		} else {
			ch = append(ch, Change{Kind: KindPut, Entry: Entry{Key: op.Key, Value: cur.Entry.Value, Version: next(), Expires: at}})
		}
	}
	// What it finds expired but still held, it deletes first (in the same
	// group of changes): once a client was told that something expired,
	// no copy may serve it again, whichever becomes the primary.
	if op.Kind != KindReclaim && op.Kind != KindEvict {
		if e := &cur.Entry; cur.Bucket.Exists() && cur.Bucket.ExpiredAt(cur.Now) {
			v := next()
			ch = append(ch, Change{Kind: KindDrop, Entry: Entry{Version: v}})
			cur.Bucket.Merge(BucketMeta{Dropped: v})
			cur.Entry = Entry{}
		} else if op.Flags&FlagBucket == 0 && e.Version != 0 && !e.Deleted && e.Expires != 0 && e.Expires <= cur.Now {
			cur.Entry = Entry{Key: op.Key, Deleted: true, Version: next()}
			ch = append(ch, Change{Kind: KindDelete, Entry: cur.Entry})
		}
	}
	live := cur.keyLive()
	if op.Flags&FlagBucket != 0 {
		live = cur.bucketLive()
	}
	switch op.Kind {
	case KindPut:
		if !cur.bucketLive() {
			return Result{}, ch, notFound()
		}
		put(op.Value, op.ExpiresAt(cur.Now))
		return Result{}, ch, nil
	case KindPutCreate:
		put(op.Value, op.ExpiresAt(cur.Now))
		return Result{Count: b2i(!live)}, ch, nil
	case KindSet:
		var res Result
		if live {
			res.Count = 2
			if op.Flags&FlagGet != 0 {
				res.Value = cur.Entry.Value
			}
		}
		if op.Flags&FlagNX != 0 && live || op.Flags&FlagXX != 0 && !live {
			return res, ch, nil
		}
		at := op.ExpiresAt(cur.Now)
		if op.Flags&FlagKeepTTL != 0 && live {
			at = cur.Entry.Expires
		}
		put(op.Value, at)
		res.Count |= 1
		return res, ch, nil
	case KindExpire:
		if !live {
			return Result{}, ch, notFound()
		}
		at, old := op.ExpiresAt(cur.Now), cur.expiresOf(op)
		f := op.Flags
		if f&FlagNX != 0 && old != 0 || f&FlagXX != 0 && old == 0 ||
			f&FlagGT != 0 && (old == 0 || at <= old) || f&FlagLT != 0 && old != 0 && at >= old {
			return Result{}, ch, nil
		}
		if at <= cur.Now {
			remove()
			return Result{Count: 2}, ch, nil
		}
		expire(at)
		return Result{Count: 1}, ch, nil
	case KindPersist:
		if !live {
			return Result{}, ch, notFound()
		}
		if cur.expiresOf(op) == 0 {
			return Result{}, ch, nil
		}
		if op.Flags&FlagBucket != 0 {
			ch = append(ch, Change{Kind: KindExpire, Entry: Entry{Version: next()}})
		} else {
			ch = append(ch, Change{Kind: KindPut, Entry: Entry{Key: op.Key, Value: cur.Entry.Value, Version: next()}})
		}
		return Result{Count: 1}, ch, nil
	case KindGetEx:
		if !live {
			return Result{}, ch, notFound()
		}
		res := Result{Value: cur.Entry.Value}
		switch at := op.ExpiresAt(cur.Now); {
		case op.Flags&FlagPersist != 0 && cur.Entry.Expires != 0:
			ch = append(ch, Change{Kind: KindPut, Entry: Entry{Key: op.Key, Value: cur.Entry.Value, Version: next()}})
		case at != 0 && at <= cur.Now:
			remove()
		case at != 0:
			expire(at)
		}
		return res, ch, nil
	case KindReclaim:
		// Found expired at op.Expires by a node whose clock may run ahead
		// of this one's: judged at that time at the latest.
		cur.Now = max(cur.Now, op.Expires)
		if op.Flags&FlagBucket != 0 {
			if cur.Bucket.Exists() && cur.Bucket.ExpiredAt(cur.Now) {
				remove()
			}
		} else if e := &cur.Entry; e.Version != 0 && !e.Deleted && e.Expires != 0 && e.Expires <= cur.Now {
			remove()
		}
		return Result{Count: len(ch)}, ch, nil
	case KindEvict:
		if e := &cur.Entry; cur.Bucket.Exists() && e.Version != 0 && !e.Deleted {
			ch = append(ch, Change{Kind: KindEvict, Entry: Entry{Key: op.Key, Version: e.Version}})
		}
		return Result{Count: len(ch)}, ch, nil
	}
	return Result{}, nil, fmt.Errorf("%w: %v is not decided from the state it finds", ErrInvalidOp, op.Kind)
}

// ttlResult is KindTTL's outcome for an expiry at (0 for none) at now.
func ttlResult(at, now int64) Result {
	if at == 0 {
		return Result{}
	}
	return Result{Value: strconv.FormatInt(max(at-now, 0), 10)}
}

// --- the store's side ---

// state returns what Decide needs about op's target in r, which the caller
// holds (for reading at least).
func (r *record) state(op Op, now int64) Current {
	cur := Current{Now: now, Bucket: r.meta}
	if op.Flags&FlagBucket == 0 {
		if it, ok := r.lookup(op.Key); ok {
			cur.Entry = it.entry(op.Key)
		}
	}
	return cur
}

// applyChange applies c to r, which the caller holds for writing.
func (r *record) applyChange(c Change) error {
	switch c.Kind {
	case KindCreate:
		r.applyMeta(BucketMeta{Created: c.Entry.Version})
	case KindDrop:
		r.applyMeta(BucketMeta{Dropped: c.Entry.Version})
	case KindExpire:
		r.applyMeta(BucketMeta{ExpiresV: c.Entry.Version, Expires: c.Entry.Expires})
	case KindEvict:
		r.evict(c.Entry.Key, c.Entry.Version)
	default:
		_, err := r.applyEntry(c.Entry.Key, mkItem(c.Entry))
		return err
	}
	return nil
}

// evict removes key's entry if it holds a value of version v or older,
// leaving no tombstone; the caller holds r for writing.
func (r *record) evict(key string, v Version) bool {
	f := r.find(key)
	if !f.ok() || f.deleted() || f.version() > v {
		return false
	}
	r.removeSlot(f.slot)
	r.tab.tidy()
	return true
}

// ApplyEvict removes key's entry from the bucket's copy if it holds a
// value of version v or older, leaving no tombstone: an eviction its
// primary decided (KindEvict). Evicting what is not there is not an error.
func (s *Store) ApplyEvict(bucket, key string, v Version) error {
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
		return ErrRetired
	}
	r.evict(key, v)
	return nil
}

// decide runs op, decided from the state it finds, on the store's own
// copy, versioned with the store's clock.
func (s *Store) decide(op Op) (Result, error) {
	r := s.lock(op.Bucket, true)
	defer r.mu.Unlock()
	res, ch, err := Decide(op, r.state(op, s.clock.Millis()), s.clock.Now)
	for _, c := range ch {
		if aerr := r.applyChange(c); aerr != nil {
			return Result{}, aerr
		}
	}
	return res, err
}

// ApplyExpiry records a bucket's expiry, set (or removed, expires 0) by a
// write of version v: as ApplyCreate, it creates the record if missing.
func (s *Store) ApplyExpiry(bucket string, v Version, expires int64) error {
	return s.applyMeta(bucket, BucketMeta{ExpiresV: v, Expires: expires})
}

// State returns what Decide needs about op's target: the bucket's meta and
// the key's entry, at the time now.
func (s *Store) State(op Op, now int64) Current {
	r := s.rlock(op.Bucket)
	if r == nil {
		return Current{Now: now}
	}
	defer r.mu.RUnlock()
	return r.state(op, now)
}

// Expired is a key, or with Bucket set a whole bucket, found expired.
type Expired struct {
	Bucket, Key string
	Whole       bool
}

// FindExpired appends to dst up to limit keys and buckets that have
// expired at now (ms since the Unix epoch), among the buckets for which
// want returns true, and returns it with the number of entries with an
// expiry it looked at. It looks at up to sample entries with an expiry in
// each bucket, starting at a random place of its index, so that
// repeated calls spread over a large store as Redis's sampling does; the
// caller looks again at once when most of what it looked at had expired.
// It holds one bucket's lock at a time, for reading.
func (s *Store) FindExpired(dst []Expired, now int64, limit, sample int, want func(bucket string) bool) ([]Expired, int) {
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
			dst = append(dst, Expired{Bucket: name, Whole: true})
			return true
		}
		// From a random slot of the index of entries with an expiry.
		n := 0
		r.tab.vol.each(rand.IntN(max(1, r.tab.vol.slots())), func(v uint64) bool {
			if n == sample {
				return false
			}
			n++
			if e := r.tab.view(uint32(v)); e.expires <= now {
				dst = append(dst, Expired{Bucket: name, Key: string(e.key)})
				if len(dst) >= limit {
					return false
				}
			}
			return true
		})
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
func (s *Store) ExpiredIn(dst []Expired, name string, now int64, limit int) []Expired {
	r := s.rlock(name)
	if r == nil {
		return dst
	}
	defer r.mu.RUnlock()
	r.tab.vol.each(0, func(v uint64) bool {
		if len(dst) >= limit {
			return false
		}
		if e := r.tab.view(uint32(v)); e.expires <= now {
			dst = append(dst, Expired{Bucket: name, Key: string(e.key)})
		}
		return true
	})
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

// Apply makes cur the state after ch, a change an earlier operation of the
// same group made to the bucket of op, cur's operation: so that operations
// decided one after another, before any of their changes is applied, see
// each other's.
func (cur *Current) Apply(op Op, ch Change) {
	switch ch.Kind {
	case KindCreate:
		cur.Bucket.Merge(BucketMeta{Created: ch.Entry.Version})
	case KindDrop:
		cur.Bucket.Merge(BucketMeta{Dropped: ch.Entry.Version})
		if cur.Entry.Version <= cur.Bucket.Dropped {
			cur.Entry = Entry{}
		}
	case KindExpire:
		cur.Bucket.Merge(BucketMeta{ExpiresV: ch.Entry.Version, Expires: ch.Entry.Expires})
	case KindEvict:
		if op.Flags&FlagBucket == 0 && ch.Entry.Key == op.Key && !cur.Entry.Deleted && cur.Entry.Version <= ch.Entry.Version {
			cur.Entry = Entry{}
		}
	case KindPut, KindDelete:
		if op.Flags&FlagBucket == 0 && ch.Entry.Key == op.Key && ch.Entry.Newer(cur.Entry) {
			cur.Entry = ch.Entry
			cur.Bucket.Merge(BucketMeta{Created: ch.Entry.Version})
		}
	}
}
