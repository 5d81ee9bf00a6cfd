package store

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// StoreStats counts a store's contents, for logs and tests.
type StoreStats struct {
	Buckets    int   // existing buckets
	Records    int   // records: existing, dropped and retired buckets
	Keys       int   // live keys
	Tombstones int   // deleted keys not yet collected
	Bytes      int64 // approximate: bytes of keys and values
}

// Store holds the copies of buckets that this node owns, in memory. It is
// safe for concurrent use; the zero value is not usable, call NewStore.
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
	clock   *Clock
	records sync.Map // bucket name (string) -> *record
	// removals counts the records taken out of the directory (Remove,
	// Collect), so that a listing can tell that a copy went meanwhile
	// (Removals, scan.go).
	removals atomic.Uint64
}

// record is one copy of a bucket.
type record struct {
	mu         sync.RWMutex // guards every field below
	meta       BucketMeta
	retired    bool // being handed off: versioned writes fail with ErrRetired
	removed    bool // set once when the record leaves the directory; nothing writes to it after
	live       int  // entries that are not tombstones
	tombstones int
	bytes      int64 // bytes of keys and values
	shards     [NumShards]shard
}

// shard holds the entries of the keys that ShardOf puts in it.
type shard struct {
	entries map[string]cell // nil until the first entry
	digest  uint64          // XOR over entries of entryHash
}

// cell is a key's state in a shard; the key is the map key. The version
// and the tombstone flag share a word (the flag is the top bit, which no
// version reaches), so that a map slot takes 40 bytes rather than 48: a
// store of small values is mostly map slots.
type cell struct {
	value string
	vd    uint64 // the version, | tombstoneBit for a tombstone
}

// tombstoneBit marks a cell as a tombstone. Versions stay well below it:
// versions applied must be under maxVersion (the clock's milliseconds
// reach it in the year 6429), so a clock that observed the largest one
// still has room to count up.
const (
	tombstoneBit = 1 << 63
	maxVersion   = 1 << 62
)

func mkCell(value string, v Version, deleted bool) cell {
	e := cell{value: value, vd: uint64(v)}
	if deleted {
		e.vd |= tombstoneBit
	}
	return e
}

func (e cell) version() Version { return Version(e.vd &^ tombstoneBit) }
func (e cell) deleted() bool    { return e.vd&tombstoneBit != 0 }

func (e cell) hash(key string) uint64 { return entryHash(key, e.version(), e.deleted(), e.value) }

// validVersion reports an error for a version the store cannot hold.
func validVersion(v Version) error {
	if v >= maxVersion {
		return fmt.Errorf("%w: version %#x out of range", ErrInvalidOp, uint64(v))
	}
	return nil
}

// NewStore returns an empty store with a clock of its own.
func NewStore() *Store { return NewStoreWithClock(nil) }

// NewStoreWithClock returns an empty store that versions its unversioned
// writes with c and advances c past every version it applies (nil makes a
// clock of its own). A node shares its clock with its store.
func NewStoreWithClock(c *Clock) *Store {
	if c == nil {
		c = NewClock(nil)
	}
	return &Store{clock: c}
}

// Clock returns the store's clock.
func (s *Store) Clock() *Clock { return s.clock }

// Execute applies op and returns its result. It is the single entry point
// through which routed operations reach the data of a node that is not
// replicated: writes are versioned with the store's own clock. The context
// is accepted for the Executor contract; a local operation never blocks on
// anything but a bucket's lock.
func (s *Store) Execute(_ context.Context, op Op) (Result, error) {
	if err := op.Validate(); err != nil {
		return Result{}, err
	}
	switch op.Kind {
	case KindGet:
		v, err := s.Get(op.Bucket, op.Key)
		return Result{Value: v}, err
	case KindPut:
		return Result{}, s.Put(op.Bucket, op.Key, op.Value)
	case KindPutCreate:
		added, err := s.putCreate(op.Bucket, op.Key, op.Value)
		return Result{Count: b2i(added)}, err
	case KindDelete:
		removed, err := s.delete(op.Bucket, op.Key)
		return Result{Count: b2i(removed)}, err
	case KindCreate:
		created, err := s.create(op.Bucket)
		return Result{Count: b2i(created)}, err
	case KindDrop:
		err := s.Drop(op.Bucket)
		return Result{Count: b2i(err == nil)}, err
	case KindBuckets:
		return Result{Names: s.Buckets()}, nil
	case KindKeys:
		keys, err := s.Keys(op.Bucket)
		return Result{Names: keys}, err
	case KindLen:
		n, err := s.Len(op.Bucket)
		return Result{Count: n}, err
	case KindGetAll:
		kvs, err := s.GetAll(op.Bucket)
		return Result{Names: kvs}, err
	case KindNodes, KindOwner:
		return Result{}, fmt.Errorf("%w: %v needs a clustered node", ErrInvalidOp, op.Kind)
	}
	return Result{}, fmt.Errorf("%w: unknown kind %v", ErrInvalidOp, op.Kind)
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

// lockExisting returns the record of the existing bucket called name,
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
	if !r.meta.Exists() {
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
	return fmt.Errorf("%w: %q", ErrBucketNotFound, name)
}

func emptyName() error {
	return fmt.Errorf("%w: empty bucket name", ErrInvalidOp)
}

// --- record internals; the caller holds r.mu for writing ---

// set makes e (already checked to be newer) the state of key, keeping the
// shard's digest and the record's counts.
func (r *record) set(sh *shard, key string, e cell, old cell, had bool) {
	if had {
		r.forget(sh, key, old)
	} else if sh.entries == nil {
		sh.entries = make(map[string]cell)
	}
	sh.entries[key] = e
	sh.digest ^= e.hash(key)
	if e.deleted() {
		r.tombstones++
	} else {
		r.live++
	}
	r.bytes += int64(len(key) + len(e.value))
}

// forget undoes the accounting of key's entry e (the caller replaces or
// deletes it from the map).
func (r *record) forget(sh *shard, key string, e cell) {
	sh.digest ^= e.hash(key)
	if e.deleted() {
		r.tombstones--
	} else {
		r.live--
	}
	r.bytes -= int64(len(key) + len(e.value))
}

// applyEntry merges e and reports whether it changed the copy.
func (r *record) applyEntry(key string, e cell) bool {
	if e.deleted() {
		e.value = ""
	}
	if e.version() <= r.meta.Dropped {
		return false
	}
	// Every entry written since the last drop counts as a create: a copy
	// that missed the create still has the bucket, and Created stays the
	// greatest version since the drop whatever the order of writes.
	r.meta.Created = max(r.meta.Created, e.version())
	sh := &r.shards[ShardOf(key)]
	old, had := sh.entries[key]
	if had && !newer(e.version(), e.deleted(), e.value, old.version(), old.deleted(), old.value) {
		return false
	}
	r.set(sh, key, e, old, had)
	return true
}

// applyMeta merges m: a later drop removes every entry of version up to
// it. It returns how many entries the drop removed.
func (r *record) applyMeta(m BucketMeta) int {
	dropped := r.meta.Dropped
	r.meta.merge(m)
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
		for k, e := range sh.entries {
			if e.version() <= r.meta.Dropped {
				r.forget(sh, k, e)
				delete(sh.entries, k)
			}
		}
		if len(sh.entries) == 0 {
			sh.entries = nil
		}
	}
	return n - (r.live + r.tombstones)
}

// clear removes every entry.
func (r *record) clear() {
	r.shards = [NumShards]shard{}
	r.live, r.tombstones, r.bytes = 0, 0, 0
}

// --- versioned writes ---

// Stats counts records, live keys, tombstones and approximate bytes. While
// the store changes it is not a snapshot of one instant.
func (s *Store) Stats() StoreStats {
	var st StoreStats
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
	if r.meta.Exists() {
		return false, nil
	}
	// The clock is past every version this store applied, Dropped
	// included, so the bucket exists afterwards.
	r.applyMeta(BucketMeta{Created: s.clock.Now()})
	return true, nil
}

// Drop removes the bucket called name and all its keys.
func (s *Store) Drop(name string) error {
	r, err := s.lockExisting(name, false)
	if err != nil {
		return err
	}
	defer r.mu.Unlock()
	r.applyMeta(BucketMeta{Dropped: s.clock.Now()})
	return nil
}

// Put sets key to value in the bucket called name.
func (s *Store) Put(name, key, value string) error {
	r, err := s.lockExisting(name, false)
	if err != nil {
		return err
	}
	defer r.mu.Unlock()
	r.applyEntry(key, mkCell(value, s.clock.Now(), false))
	return nil
}

// Get returns the value of key in the bucket called name. A missing or
// deleted key is ErrKeyNotFound; a missing bucket is ErrBucketNotFound.
func (s *Store) Get(name, key string) (string, error) {
	r, err := s.lockExisting(name, true)
	if err != nil {
		return "", err
	}
	e, ok := r.shards[ShardOf(key)].entries[key]
	r.mu.RUnlock()
	if !ok || e.deleted() {
		return "", ErrKeyNotFound
	}
	return e.value, nil
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
	if e, ok := r.shards[ShardOf(key)].entries[key]; !ok || e.deleted() {
		return false, nil
	}
	r.applyEntry(key, mkCell("", s.clock.Now(), true))
	return true, nil
}

// putCreate sets key to value, creating the bucket first if it does not
// exist, and reports whether the key had no value before.
func (s *Store) putCreate(name, key, value string) (bool, error) {
	if name == "" {
		return false, emptyName()
	}
	r := s.lock(name, true)
	defer r.mu.Unlock()
	if !r.meta.Exists() {
		r.applyMeta(BucketMeta{Created: s.clock.Now()})
	}
	e, ok := r.shards[ShardOf(key)].entries[key]
	r.applyEntry(key, mkCell(value, s.clock.Now(), false))
	return !ok || e.deleted(), nil
}

// Live reports whether key has a value in the existing bucket called name.
func (s *Store) Live(name, key string) bool {
	r, err := s.lockExisting(name, true)
	if err != nil {
		return false
	}
	e, ok := r.shards[ShardOf(key)].entries[key]
	r.mu.RUnlock()
	return ok && !e.deleted()
}

// Buckets returns the names of all existing buckets, sorted. While buckets
// are being created and dropped it is not a snapshot of one instant: a
// bucket created or dropped during the call may or may not be listed.
func (s *Store) Buckets() []string {
	var names []string
	s.records.Range(func(k, v any) bool {
		r := v.(*record)
		r.mu.RLock()
		exists := !r.removed && r.meta.Exists()
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
	r, err := s.lockExisting(name, true)
	if err != nil {
		return nil, err
	}
	keys := r.liveKeys()
	r.mu.RUnlock()
	return keys, nil
}

// liveKeys returns the record's live keys, sorted; the caller holds r.mu.
func (r *record) liveKeys() []string {
	keys := make([]string, 0, r.live)
	for i := range r.shards {
		for k, e := range r.shards[i].entries {
			if !e.deleted() {
				keys = append(keys, k)
			}
		}
	}
	slices.Sort(keys)
	return keys
}

// Len returns the number of live keys in the bucket called name.
func (s *Store) Len(name string) (int, error) {
	r, err := s.lockExisting(name, true)
	if err != nil {
		return 0, err
	}
	n := r.live
	r.mu.RUnlock()
	return n, nil
}

// GetAll returns the live keys of the bucket called name with their
// values, alternating (key, value, key, value, ...) in key order.
func (s *Store) GetAll(name string) ([]string, error) {
	r, err := s.lockExisting(name, true)
	if err != nil {
		return nil, err
	}
	keys := r.liveKeys()
	kvs := make([]string, 0, 2*len(keys))
	for _, k := range keys {
		kvs = append(kvs, k, r.shards[ShardOf(k)].entries[k].value)
	}
	r.mu.RUnlock()
	return kvs, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
