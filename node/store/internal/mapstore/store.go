package mapstore

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/dboutique/dboutique/node/store"
)

// Store is store.Store with the old layout: it holds copies of buckets, in
// memory, and answers the same calls with the same results. It is safe for
// concurrent use; the zero value is not usable, call NewStore.
//
// Each bucket has a record in a directory (a sync.Map, read without locks).
// A record has its own RWMutex, so operations on different buckets never
// wait for each other and reads of one bucket run in parallel. A record
// stays after its bucket is dropped (remembering when, so that older writes
// arriving late stay dropped) until Collect or Remove deletes it.
//
// Every key's state carries a Version. The versioned writes (ApplyCreate,
// ApplyDrop, ApplyEntry, Merge) are last-writer-wins merges: idempotent and
// commutative, so copies that saw the same writes in any order are equal.
// The unversioned API (Execute, Create, Put, ...) versions its writes with
// the store's own Clock.
type Store struct {
	clock   *store.Clock
	records sync.Map // bucket name (string) -> *record
}

// record is one copy of a bucket.
type record struct {
	mu         sync.RWMutex // guards every field below
	meta       store.BucketMeta
	retired    bool // being handed off: versioned writes fail with ErrRetired
	removed    bool // set once when the record leaves the directory; nothing writes to it after
	live       int  // entries that are not tombstones (expired ones included, until reclaimed)
	tombstones int
	volatile   int // entries with an expiry
	// expires holds the expiry of each entry that has one (the cell's
	// expiresBit says so), so that entries without one pay nothing for
	// it, as Redis keeps its expires dictionary beside its keys; one map
	// per bucket, not per shard, so that a bucket pays 8 bytes for it.
	// Nil while empty.
	expires map[string]int64
	bytes   int64 // bytes of keys and values
	shards  [store.NumShards]shard
}

// shard holds the entries of the keys that ShardOf puts in it.
type shard struct {
	entries map[string]cell // nil until the first entry
	digest  uint64          // XOR over entries of Entry.Hash
}

// cell is a key's state in a shard; the key is the map key. The version
// and the flags share a word (the top two bits, which no version reaches),
// so that a map slot takes 40 bytes rather than 48: a store of small values
// is mostly map slots.
type cell struct {
	value string
	vd    uint64 // the version, | tombstoneBit for a tombstone, | expiresBit when it has an expiry
}

// tombstoneBit marks a cell as a tombstone, expiresBit one whose expiry is
// in its shard's expires. Versions stay well below them: versions applied
// must be under maxVersion (the clock's milliseconds reach it in the year
// 3085), so a clock that observed the largest one still has room to count
// up.
const (
	tombstoneBit = 1 << 63
	expiresBit   = 1 << 62
	maxVersion   = 1 << 61
	flagBits     = tombstoneBit | expiresBit
)

func mkCell(value string, v store.Version, deleted bool) cell {
	e := cell{value: value, vd: uint64(v)}
	if deleted {
		e.vd |= tombstoneBit
	}
	return e
}

func (e cell) version() store.Version { return store.Version(e.vd &^ flagBits) }
func (e cell) deleted() bool          { return e.vd&tombstoneBit != 0 }
func (e cell) volatile() bool         { return e.vd&expiresBit != 0 }

// item is a key's full state: its cell and its expiry (0 for none).
type item struct {
	cell
	expires int64
}

func mkItem(e store.Entry) item {
	it := item{cell: mkCell(e.Value, e.Version, e.Deleted)}
	if !e.Deleted && e.Expires != 0 {
		it.expires = e.Expires
		it.vd |= expiresBit
	}
	if e.Deleted {
		it.value = ""
	}
	return it
}

// entry returns it as the Entry of key.
func (it item) entry(key string) store.Entry {
	return store.Entry{Key: key, Value: it.value, Version: it.version(), Deleted: it.deleted(), Expires: it.expires}
}

func (it item) hash(key string) uint64 { return it.entry(key).Hash() }

// liveAt reports whether it holds a value at now: not a tombstone, and not
// expired.
func (it item) liveAt(now int64) bool {
	return !it.deleted() && (it.expires == 0 || it.expires > now)
}

// liveBy is liveAt with the time read from c only when it has an expiry:
// most entries have none, and reading the clock costs more than the rest.
func (it item) liveBy(c *store.Clock) bool {
	return !it.deleted() && (it.expires == 0 || it.expires > c.Millis())
}

// metaLiveBy is m.LiveAt with the time read from c only when the bucket
// has an expiry.
func metaLiveBy(m store.BucketMeta, c *store.Clock) bool {
	return m.Exists() && (m.Expires == 0 || m.Expires > c.Millis())
}

// get returns key's state in sh, a shard of r.
func (r *record) get(sh *shard, key string) (item, bool) {
	c, ok := sh.entries[key]
	it := item{cell: c}
	if c.volatile() {
		it.expires = r.expires[key]
	}
	return it, ok
}

// lookup returns key's state in r.
func (r *record) lookup(key string) (item, bool) { return r.get(&r.shards[store.ShardOf(key)], key) }

// validVersion reports an error for a version the store cannot hold.
func validVersion(v store.Version) error {
	if v >= maxVersion {
		return fmt.Errorf("%w: version %#x out of range", store.ErrInvalidOp, uint64(v))
	}
	return nil
}

// NewStore returns an empty store with a clock of its own.
func NewStore() *Store { return NewStoreWithClock(nil) }

// NewStoreWithClock returns an empty store that versions its unversioned
// writes with c and advances c past every version it applies (nil makes a
// clock of its own). A test that compares it with a store.Store gives each
// a clock that reads the same fake time.
func NewStoreWithClock(c *store.Clock) *Store {
	if c == nil {
		c = store.NewClock(nil)
	}
	return &Store{clock: c}
}

// Execute applies op and returns its result, as store's Execute: writes
// are versioned with the store's own clock, and the writes that read first
// are decided by store.Decide.
func (s *Store) Execute(_ context.Context, op store.Op) (store.Result, error) {
	if err := op.Validate(); err != nil {
		return store.Result{}, err
	}
	switch op.Kind {
	case store.KindGet:
		v, err := s.Get(op.Bucket, op.Key)
		return store.Result{Value: v}, err
	case store.KindPut:
		if op.Expires != 0 || op.Flags != 0 {
			return s.decide(op)
		}
		return store.Result{}, s.Put(op.Bucket, op.Key, op.Value)
	case store.KindPutCreate:
		added, err := s.putCreate(op)
		return store.Result{Count: b2i(added)}, err
	case store.KindSet, store.KindExpire, store.KindPersist, store.KindGetEx, store.KindReclaim, store.KindEvict:
		return s.decide(op)
	case store.KindTTL:
		return s.ttl(op)
	case store.KindDelete:
		removed, err := s.delete(op.Bucket, op.Key)
		return store.Result{Count: b2i(removed)}, err
	case store.KindCreate:
		created, err := s.create(op.Bucket)
		return store.Result{Count: b2i(created)}, err
	case store.KindDrop:
		err := s.Drop(op.Bucket)
		return store.Result{Count: b2i(err == nil)}, err
	case store.KindBuckets:
		return store.Result{Names: s.Buckets()}, nil
	case store.KindKeys:
		keys, err := s.Keys(op.Bucket)
		return store.Result{Names: keys}, err
	case store.KindLen:
		n, err := s.Len(op.Bucket)
		return store.Result{Count: n}, err
	case store.KindGetAll:
		kvs, err := s.GetAll(op.Bucket)
		return store.Result{Names: kvs}, err
	case store.KindNodes, store.KindOwner:
		return store.Result{}, fmt.Errorf("%w: %v needs a clustered node", store.ErrInvalidOp, op.Kind)
	}
	return store.Result{}, fmt.Errorf("%w: unknown kind %v", store.ErrInvalidOp, op.Kind)
}

// load returns the record of the bucket called name, or nil.
func (s *Store) load(name string) *record {
	v, ok := s.records.Load(name)
	if !ok {
		return nil
	}
	return v.(*record)
}

// lock returns the record of the bucket called name, locked for writing; nil
// if there is none and create is false. A record that Remove or Collect took
// out of the directory while we waited for its lock is never returned: the
// lookup starts again, so no write lands in a removed record.
func (s *Store) lock(name string, create bool) *record {
	for {
		r := s.load(name)
		if r == nil {
			if !create {
				return nil
			}
			v, _ := s.records.LoadOrStore(name, new(record))
			r = v.(*record)
		}
		r.mu.Lock()
		if !r.removed {
			return r
		}
		r.mu.Unlock()
	}
}

// rlock is lock for reading, never creating.
func (s *Store) rlock(name string) *record {
	for {
		r := s.load(name)
		if r == nil {
			return nil
		}
		r.mu.RLock()
		if !r.removed {
			return r
		}
		r.mu.RUnlock()
	}
}

// lockLive is lockExisting for reading, judging expiry by the clock.
func (s *Store) lockLive(name string) (*record, error) {
	r := s.rlock(name)
	if r == nil {
		return nil, notFound(name)
	}
	if !metaLiveBy(r.meta, s.clock) {
		exists := r.meta.Exists()
		r.mu.RUnlock()
		if exists {
			return nil, fmt.Errorf("%w: %q", store.ErrBucketExpired, name)
		}
		return nil, notFound(name)
	}
	return r, nil
}

// lockExisting returns the record of the existing (and not expired) bucket called name,
// locked for writing, or for reading when read is set; or ErrBucketNotFound
// and nothing held.
func (s *Store) lockExisting(name string, read bool) (*record, error) {
	var r *record
	if read {
		r = s.rlock(name)
	} else {
		r = s.lock(name, false)
	}
	if r == nil {
		return nil, notFound(name)
	}
	if !metaLiveBy(r.meta, s.clock) {
		if read {
			r.mu.RUnlock()
		} else {
			r.mu.Unlock()
		}
		return nil, notFound(name)
	}
	return r, nil
}

func notFound(name string) error {
	return fmt.Errorf("%w: %q", store.ErrBucketNotFound, name)
}

func emptyName() error {
	return fmt.Errorf("%w: empty bucket name", store.ErrInvalidOp)
}

// --- record internals; the caller holds r.mu for writing ---

// set makes it (already checked to be newer) the state of key, keeping the
// shard's digest and the record's counts.
func (r *record) set(sh *shard, key string, it item, old item, had bool) {
	if had {
		r.forget(sh, key, old)
	} else if sh.entries == nil {
		sh.entries = make(map[string]cell)
	}
	sh.entries[key] = it.cell
	if it.volatile() {
		if r.expires == nil {
			r.expires = make(map[string]int64)
		}
		r.expires[key] = it.expires
		r.volatile++
	}
	sh.digest ^= it.hash(key)
	if it.deleted() {
		r.tombstones++
	} else {
		r.live++
	}
	n := int64(len(key) + len(it.value))
	r.bytes += n
}

// forget undoes the accounting of key's state it (the caller replaces or
// deletes it from the map).
func (r *record) forget(sh *shard, key string, it item) {
	sh.digest ^= it.hash(key)
	if it.volatile() {
		delete(r.expires, key)
		if len(r.expires) == 0 {
			r.expires = nil
		}
		r.volatile--
	}
	if it.deleted() {
		r.tombstones--
	} else {
		r.live--
	}
	n := int64(len(key) + len(it.value))
	r.bytes -= n
}

// remove deletes key, whose state is it, from sh.
func (r *record) remove(sh *shard, key string, it item) {
	r.forget(sh, key, it)
	delete(sh.entries, key)
	if len(sh.entries) == 0 {
		sh.entries = nil
	}
}

// applyEntry merges it and reports whether it changed the copy.
func (r *record) applyEntry(key string, it item) bool {
	sh := &r.shards[store.ShardOf(key)]
	old, had := r.get(sh, key)
	return r.applyFound(sh, key, it, old, had)
}

// applyFound is applyEntry for key of shard sh, whose state (old, had)
// the caller has just looked up: one map lookup less.
func (r *record) applyFound(sh *shard, key string, it item, old item, had bool) bool {
	if it.version() <= r.meta.Dropped {
		return false
	}
	// Every entry written since the last drop counts as a create: a copy
	// that missed the create still has the bucket, and Created stays the
	// greatest version since the drop whatever the order of writes.
	r.meta.Created = max(r.meta.Created, it.version())
	if had && !it.entry(key).Newer(old.entry(key)) {
		return false
	}
	r.set(sh, key, it, old, had)
	return true
}

// applyMeta merges m: a later drop removes every entry of version up to
// it. It returns how many entries the drop removed.
func (r *record) applyMeta(m store.BucketMeta) int {
	dropped := r.meta.Dropped
	r.meta.Merge(m)
	if r.meta.Dropped == dropped {
		return 0
	}
	n := r.live + r.tombstones
	if r.meta.Created == 0 {
		// Every entry has a version at most the old Created, so at most
		// the new Dropped: all go.
		r.clear()
		return n
	}
	for i := range r.shards {
		sh := &r.shards[i]
		for k, c := range sh.entries {
			if c.version() <= r.meta.Dropped {
				it, _ := r.get(sh, k)
				r.remove(sh, k, it)
			}
		}
	}
	return n - (r.live + r.tombstones)
}

// clear removes every entry.
func (r *record) clear() {
	r.shards = [store.NumShards]shard{}
	r.expires = nil
	r.live, r.tombstones, r.volatile, r.bytes = 0, 0, 0, 0
}

// Stats counts records, live keys, tombstones and approximate bytes. While
// the store changes it is not a snapshot of one instant.
func (s *Store) Stats() store.StoreStats {
	var st store.StoreStats
	s.records.Range(func(_, v any) bool {
		r := v.(*record)
		r.mu.RLock()
		if !r.removed {
			st.Records++
			if r.meta.Exists() {
				st.Buckets++
			}
			st.Keys += r.live
			st.Tombstones += r.tombstones
			st.Bytes += r.bytes
		}
		r.mu.RUnlock()
		return true
	})
	return st
}

// --- unversioned API ---
//
// Reads judge expiry by the clock's Millis: an expired key or bucket is
// missing. Writes to a bucket that expired find it missing; a create drops
// what it held first.

// Create makes an empty bucket called name. Creating a bucket that exists
// is not an error and keeps its contents. It ignores retirement.
func (s *Store) Create(name string) error {
	_, err := s.create(name)
	return err
}

// create is Create, reporting whether the bucket is new.
func (s *Store) create(name string) (bool, error) {
	if name == "" {
		return false, emptyName()
	}
	r := s.lock(name, true)
	defer r.mu.Unlock()
	return s.createLocked(r), nil
}

// createLocked makes r's bucket exist, dropping it first when it expired,
// and reports whether it is new; the caller holds r for writing.
func (s *Store) createLocked(r *record) bool {
	if r.meta.LiveAt(s.clock.Millis()) {
		return false
	}
	if r.meta.Exists() {
		r.applyMeta(store.BucketMeta{Dropped: s.clock.Now()})
	}
	// The clock is past every version this store applied, Dropped
	// included, so the bucket exists afterwards.
	r.applyMeta(store.BucketMeta{Created: s.clock.Now()})
	return true
}

// Drop removes the bucket called name and all its keys.
func (s *Store) Drop(name string) error {
	r, err := s.lockExisting(name, false)
	if err != nil {
		return err
	}
	defer r.mu.Unlock()
	r.applyMeta(store.BucketMeta{Dropped: s.clock.Now()})
	return nil
}

// Put sets key to value in the bucket called name.
func (s *Store) Put(name, key, value string) error {
	r, err := s.lockExisting(name, false)
	if err != nil {
		return err
	}
	defer r.mu.Unlock()
	r.applyEntry(key, item{cell: mkCell(value, s.clock.Now(), false)})
	return nil
}

// Get returns the value of key in the bucket called name. A missing,
// deleted or expired key is ErrKeyNotFound; a missing bucket is
// ErrBucketNotFound.
func (s *Store) Get(name, key string) (string, error) {
	r, err := s.lockLive(name)
	if err != nil {
		return "", err
	}
	it, ok := r.lookup(key)
	r.mu.RUnlock()
	if !ok || !it.liveBy(s.clock) {
		return "", keyMissing(it, ok)
	}
	return it.value, nil
}

// Delete removes key from the bucket called name, leaving a tombstone.
// Removing a missing key is not an error (and writes nothing).
func (s *Store) Delete(name, key string) error {
	_, err := s.delete(name, key)
	return err
}

// delete is Delete, reporting whether the key was live.
func (s *Store) delete(name, key string) (bool, error) {
	r, err := s.lockExisting(name, false)
	if err != nil {
		return false, err
	}
	defer r.mu.Unlock()
	if it, ok := r.lookup(key); !ok || it.deleted() {
		return false, nil
	} else if !it.liveAt(s.clock.Millis()) {
		r.applyEntry(key, item{cell: mkCell("", s.clock.Now(), true)})
		return false, nil
	}
	r.applyEntry(key, item{cell: mkCell("", s.clock.Now(), true)})
	return true, nil
}

// putCreate sets key to value, with the expiry op gives, creating the
// bucket first if it does not exist, and reports whether the key had no
// value before.
func (s *Store) putCreate(op store.Op) (bool, error) {
	if op.Bucket == "" {
		return false, emptyName()
	}
	r := s.lock(op.Bucket, true)
	defer r.mu.Unlock()
	s.createLocked(r)
	now := s.clock.Millis()
	sh := &r.shards[store.ShardOf(op.Key)]
	old, ok := r.get(sh, op.Key)
	at := op.ExpiresAt(now)
	if at != 0 && at <= now {
		r.applyEntry(op.Key, item{cell: mkCell("", s.clock.Now(), true)})
	} else {
		r.applyEntry(op.Key, mkItem(store.Entry{Value: op.Value, Version: s.clock.Now(), Expires: at}))
	}
	return !ok || !old.liveAt(now), nil
}

// Live reports whether key has a value in the bucket called name, which
// exists and has not expired.
func (s *Store) Live(name, key string) bool {
	r, err := s.lockLive(name)
	if err != nil {
		return false
	}
	it, ok := r.lookup(key)
	r.mu.RUnlock()
	return ok && it.liveBy(s.clock)
}

// Buckets returns the names of all existing buckets, sorted. While buckets
// are being created and dropped it is not a snapshot of one instant: a
// bucket created or dropped during the call may or may not be listed.
func (s *Store) Buckets() []string {
	now := s.clock.Millis()
	var names []string
	s.records.Range(func(k, v any) bool {
		r := v.(*record)
		r.mu.RLock()
		exists := !r.removed && r.meta.LiveAt(now)
		r.mu.RUnlock()
		if exists {
			names = append(names, k.(string))
		}
		return true
	})
	slices.Sort(names)
	return names
}

// Keys returns the live keys of the bucket called name, sorted.
func (s *Store) Keys(name string) ([]string, error) {
	r, err := s.lockLive(name)
	now := s.clock.Millis()
	if err != nil {
		return nil, err
	}
	keys := r.liveKeys(now)
	r.mu.RUnlock()
	return keys, nil
}

// liveKeys returns the record's live keys at now, sorted; the caller holds
// r.mu.
func (r *record) liveKeys(now int64) []string {
	keys := make([]string, 0, r.live)
	for i := range r.shards {
		sh := &r.shards[i]
		for k, c := range sh.entries {
			if !c.deleted() && (!c.volatile() || r.expires[k] > now) {
				keys = append(keys, k)
			}
		}
	}
	slices.Sort(keys)
	return keys
}

// liveCount returns how many keys of the record are live at now: its live
// entries but those that expired. The caller holds r.mu.
func (r *record) liveCount(now int64) int {
	n := r.live
	for _, at := range r.expires {
		if at <= now {
			n--
		}
	}
	return n
}

// Len returns the number of live keys in the bucket called name.
func (s *Store) Len(name string) (int, error) {
	r, err := s.lockLive(name)
	now := s.clock.Millis()
	if err != nil {
		return 0, err
	}
	n := r.liveCount(now)
	r.mu.RUnlock()
	return n, nil
}

// GetAll returns the live keys of the bucket called name with their
// values, alternating (key, value, key, value, ...) in key order.
func (s *Store) GetAll(name string) ([]string, error) {
	r, err := s.lockLive(name)
	now := s.clock.Millis()
	if err != nil {
		return nil, err
	}
	keys := r.liveKeys(now)
	kvs := make([]string, 0, 2*len(keys))
	for _, k := range keys {
		kvs = append(kvs, k, r.shards[store.ShardOf(k)].entries[k].value)
	}
	r.mu.RUnlock()
	return kvs, nil
}

// TTL returns op's (KindTTL) outcome: how long its key, or its bucket, has
// to live.
func (s *Store) ttl(op store.Op) (store.Result, error) {
	r, err := s.lockLive(op.Bucket)
	now := s.clock.Millis()
	if err != nil {
		return store.Result{}, err
	}
	defer r.mu.RUnlock()
	if op.Flags&store.FlagBucket != 0 {
		return ttlResult(r.meta.Expires, now), nil
	}
	it, ok := r.lookup(op.Key)
	if !ok || !it.liveAt(now) {
		return store.Result{}, keyMissing(it, ok)
	}
	return ttlResult(it.expires, now), nil
}

// keyMissing is the error of a read that found key's state it (ok: there
// was one) not live: ErrKeyExpired when it holds a value that expired.
func keyMissing(it item, ok bool) error {
	if ok && !it.deleted() {
		return store.ErrKeyExpired
	}
	return store.ErrKeyNotFound
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
