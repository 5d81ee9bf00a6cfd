package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
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
	mem     *arena   // the memory of the records' tables
	// fp counts what the store holds once TrackFootprint was called
	// (records then point at it); nil before, so that a store without a
	// memory limit pays nothing for it.
	fp *footprint
	// removals counts the records taken out of the directory (Remove,
	// Collect), so that a listing can tell that a copy went meanwhile
	// (Removals, scan.go).
	removals atomic.Uint64
}

// footprint counts what the store holds, for a memory limit to read at
// every write without walking the buckets.
type footprint struct {
	bytes   atomic.Int64 // bytes of keys and values
	entries atomic.Int64 // entries, tombstones included
	records atomic.Int64 // records in the directory
	maps    atomic.Int64 // records whose table holds entries
}

// TrackFootprint makes the store count what it holds, for Footprint. Call
// it before the store holds anything (a node does, when it has a memory
// limit); counting costs a few atomic additions per write.
func (s *Store) TrackFootprint() {
	if s.fp == nil {
		s.fp = new(footprint)
	}
}

// Footprint returns what the store holds: bytes of keys and values,
// entries (tombstones included), records and records whose table holds
// entries (it holds memory then: at least an index and a chunk); zeros unless
// TrackFootprint was called.
func (s *Store) Footprint() (bytes, entries, records, maps int64) {
	if s.fp == nil {
		return 0, 0, 0, 0
	}
	return s.fp.bytes.Load(), s.fp.entries.Load(), s.fp.records.Load(), s.fp.maps.Load()
}

// OffHeap returns the bytes of memory mapped outside the Go heap, which
// the runtime's statistics do not count, that the store holds: the blocks
// its tables hold (their entries and indexes), and freed blocks smaller
// than a page, which stay resident on the arena's free lists until used
// again. Blocks taken from the heap (where mapping failed, and in race
// builds) are not in it: the runtime counts those. A page of a block that
// was never written takes no memory, so the process's resident size may
// be less.
func (s *Store) OffHeap() int64 { return s.mem.mapped.Load() + s.mem.idle.Load() }

// record is one copy of a bucket.
type record struct {
	fp         *footprint   // the store's, or nil; set once
	mu         sync.RWMutex // guards every field below
	meta       BucketMeta
	retired    bool // being handed off: versioned writes fail with ErrRetired
	removed    bool // set once when the record leaves the directory; nothing writes to it after
	live       int  // entries that are not tombstones (expired ones included, until reclaimed)
	tombstones int
	volatile   int   // entries with an expiry
	bytes      int64 // bytes of keys and values
	// digests holds each shard's XOR over its entries of entryHash: the
	// entries of shard i are those whose key's hash is i modulo
	// NumShards (ShardOf).
	digests [NumShards]uint64
	tab     table // the entries, packed (table.go)
}

// tombstoneBit marks an entry as a tombstone, expiresBit one that has an
// expiry. Versions stay well below them: versions applied must be under
// maxVersion (the clock's milliseconds reach it in the year 3085), so a
// clock that observed the largest one still has room to count up. The
// table marks the entries it no longer refers to with deadBit (table.go),
// which is maxVersion: no version reaches it either.
const (
	tombstoneBit = 1 << 63
	expiresBit   = 1 << 62
	maxVersion   = 1 << 61
	flagBits     = tombstoneBit | expiresBit
)

// hdr is a key's state but its value: the version and the flags in one
// word, and the expiry.
type hdr struct {
	vd      uint64 // the version, | tombstoneBit for a tombstone, | expiresBit when it has an expiry
	expires int64  // 0 for none
}

func (h hdr) version() Version { return Version(h.vd &^ flagBits) }
func (h hdr) deleted() bool    { return h.vd&tombstoneBit != 0 }
func (h hdr) volatile() bool   { return h.vd&expiresBit != 0 }

// liveAt reports whether it holds a value at now: not a tombstone, and not
// expired.
func (h hdr) liveAt(now int64) bool {
	return !h.deleted() && (h.expires == 0 || h.expires > now)
}

// liveBy is liveAt with the time read from c only when it has an expiry:
// most entries have none, and reading the clock costs more than the rest.
func (h hdr) liveBy(c *Clock) bool {
	return !h.deleted() && (h.expires == 0 || h.expires > c.Millis())
}

// item is a key's full state.
type item struct {
	value string
	hdr
}

// valueItem is a key's value written at v, without an expiry.
func valueItem(value string, v Version) item { return item{value: value, hdr: hdr{vd: uint64(v)}} }

// tombstoneItem is a key's delete at v.
func tombstoneItem(v Version) item { return item{hdr: hdr{vd: uint64(v) | tombstoneBit}} }

func mkItem(e Entry) item {
	if e.Deleted {
		return tombstoneItem(e.Version)
	}
	it := valueItem(e.Value, e.Version)
	if e.Expires != 0 {
		it.expires = e.Expires
		it.vd |= expiresBit
	}
	return it
}

// entry returns it as the Entry of key.
func (it item) entry(key string) Entry {
	return Entry{Key: key, Value: it.value, Version: it.version(), Deleted: it.deleted(), Expires: it.expires}
}

func (it item) hash(key string) uint64 {
	return entryHash(key, it.version(), it.deleted(), it.expires, it.value)
}

// liveBy is LiveAt with the time read from c only when the bucket has an
// expiry.
func (m BucketMeta) liveBy(c *Clock) bool {
	return m.Exists() && (m.Expires == 0 || m.Expires > c.Millis())
}

// found is what find found of a key in a record: its hash, its slot in the
// table (-1 when it has no entry) and its state but the value. It is valid
// until the record next changes.
type found struct {
	h    uint64
	slot int
	hdr
}

func (f found) ok() bool { return f.slot >= 0 }

// find looks key up in r.
func (r *record) find(key string) found {
	h := keyHash(key)
	slot, v := r.tab.find(h, key)
	f := found{h: h, slot: slot}
	if slot >= 0 {
		f.hdr = v.hdr()
	}
	return f
}

// value returns a copy of the value of the entry f found.
func (r *record) value(f found) string {
	if !f.ok() {
		return ""
	}
	return string(r.tab.slotView(f.slot).value)
}

// lookup returns key's state in r, its value copied.
func (r *record) lookup(key string) (item, bool) {
	f := r.find(key)
	if !f.ok() {
		return item{}, false
	}
	return item{value: r.value(f), hdr: f.hdr}, true
}

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
	return &Store{clock: c, mem: newArena()}
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
		if op.Expires != 0 || op.Flags != 0 {
			return s.decide(op)
		}
		return Result{}, s.Put(op.Bucket, op.Key, op.Value)
	case KindPutCreate:
		added, err := s.putCreate(op)
		return Result{Count: b2i(added)}, err
	case KindSet, KindExpire, KindPersist, KindGetEx, KindReclaim, KindEvict:
		return s.decide(op)
	case KindTTL:
		return s.ttl(op)
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
			v, loaded := s.records.LoadOrStore(name, &record{fp: s.fp, tab: table{mem: s.mem}})
			r = v.(*record)
			if !loaded && s.fp != nil {
				s.fp.records.Add(1)
			}
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
	if !r.meta.liveBy(s.clock) {
		exists := r.meta.Exists()
		r.mu.RUnlock()
		if exists {
			return nil, fmt.Errorf("%w: %q", ErrBucketExpired, name)
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
	if !r.meta.liveBy(s.clock) {
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

// set makes it (already checked to be newer) the state of key, which find
// found as f, keeping the shard's digest and the record's counts.
func (r *record) set(key string, f found, it item) {
	sh := f.h % NumShards
	if f.ok() {
		r.forget(sh, r.tab.slotView(f.slot))
	} else if r.tab.len() == 0 && r.fp != nil {
		r.fp.maps.Add(1)
	}
	r.tab.put(f.h, key, f.slot, it.vd, it.expires, it.value)
	if it.volatile() {
		r.volatile++
	}
	r.digests[sh] ^= it.hash(key)
	if it.deleted() {
		r.tombstones++
	} else {
		r.live++
	}
	n := int64(len(key) + len(it.value))
	r.bytes += n
	if r.fp != nil {
		r.fp.bytes.Add(n)
		r.fp.entries.Add(1)
	}
}

// forget undoes the accounting of the entry v of shard sh (the caller
// replaces or removes it from the table).
func (r *record) forget(sh uint64, v view) {
	h := v.hdr()
	r.digests[sh] ^= entryHash(v.key, h.version(), h.deleted(), h.expires, v.value)
	if h.volatile() {
		r.volatile--
	}
	if h.deleted() {
		r.tombstones--
	} else {
		r.live--
	}
	n := int64(len(v.key) + len(v.value))
	r.bytes -= n
	if r.fp != nil {
		r.fp.bytes.Add(-n)
		r.fp.entries.Add(-1)
	}
}

// removeSlot removes the entry of slot i of the table. It moves no other
// entry: a caller removing several calls tidy after.
func (r *record) removeSlot(i int) {
	r.forget(uint64(r.tab.idx.at(i)>>32)%NumShards, r.tab.slotView(i))
	r.tab.remove(i)
	if r.tab.len() == 0 && r.fp != nil {
		r.fp.maps.Add(-1)
	}
}

// removeWhere removes the entries for which drop returns true, and
// returns how many.
func (r *record) removeWhere(drop func(h hdr) bool) int {
	var gone []uint64
	r.tab.idx.each(0, func(v uint64) bool {
		if drop(r.tab.view(uint32(v)).hdr()) {
			gone = append(gone, v)
		}
		return true
	})
	for _, v := range gone {
		r.removeSlot(r.tab.idx.find(v))
	}
	r.tab.tidy()
	return len(gone)
}

// applyEntry merges it and reports whether it changed the copy; or
// ErrBucketFull, having changed nothing, when the table has no room.
func (r *record) applyEntry(key string, it item) (bool, error) {
	return r.applyFound(key, it, r.find(key))
}

// applyFound is applyEntry for key, which the caller has just looked up
// (f): one lookup less.
func (r *record) applyFound(key string, it item, f found) (bool, error) {
	if it.version() <= r.meta.Dropped {
		return false, nil
	}
	newer := !f.ok() || r.newerThan(it, f)
	if newer && !r.tab.fits(encSize(len(key), len(it.value), it.volatile())) {
		return false, fmt.Errorf("%w: %d entries in its table", ErrBucketFull, r.tab.len())
	}
	// Every entry written since the last drop counts as a create, newer
	// or not: a copy that missed the create still has the bucket, and
	// Created stays the greatest version since the drop whatever the
	// order of writes.
	r.meta.Created = max(r.meta.Created, it.version())
	if !newer {
		return false, nil
	}
	r.set(key, f, it)
	return true, nil
}

// newerThan is newer(it, the entry f found): without copying its value.
func (r *record) newerThan(it item, f found) bool {
	if it.version() != f.version() {
		return it.version() > f.version()
	}
	if it.deleted() != f.deleted() {
		return it.deleted()
	}
	if old := r.tab.slotView(f.slot).value; it.value != string(old) {
		return it.value > string(old)
	}
	return it.expires > f.expires
}

// applyMeta merges m: a later drop removes every entry of version up to
// it. It returns how many entries the drop removed.
func (r *record) applyMeta(m BucketMeta) int {
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
	return r.removeWhere(func(h hdr) bool { return h.version() <= r.meta.Dropped })
}

// clear removes every entry.
func (r *record) clear() {
	if r.fp != nil {
		if r.tab.len() > 0 {
			r.fp.maps.Add(-1)
		}
		r.fp.bytes.Add(-r.bytes)
		r.fp.entries.Add(-int64(r.live + r.tombstones))
	}
	r.tab.free()
	r.digests = [NumShards]uint64{}
	r.live, r.tombstones, r.volatile, r.bytes = 0, 0, 0, 0
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
		r.applyMeta(BucketMeta{Dropped: s.clock.Now()})
	}
	// The clock is past every version this store applied, Dropped
	// included, so the bucket exists afterwards.
	r.applyMeta(BucketMeta{Created: s.clock.Now()})
	return true
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
	_, err = r.applyEntry(key, valueItem(value, s.clock.Now()))
	return err
}

// Get returns the value of key in the bucket called name. A missing,
// deleted or expired key is ErrKeyNotFound; a missing bucket is
// ErrBucketNotFound.
func (s *Store) Get(name, key string) (string, error) {
	r, err := s.lockLive(name)
	if err != nil {
		return "", err
	}
	f := r.find(key)
	if !f.ok() || !f.liveBy(s.clock) {
		r.mu.RUnlock()
		return "", keyMissing(f.hdr, f.ok())
	}
	v := r.value(f)
	r.mu.RUnlock()
	return v, nil
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
	f := r.find(key)
	if !f.ok() || f.deleted() {
		return false, nil
	}
	live := f.liveAt(s.clock.Millis())
	if _, err := r.applyFound(key, tombstoneItem(s.clock.Now()), f); err != nil {
		return false, err
	}
	return live, nil
}

// putCreate sets key to value, with the expiry op gives, creating the
// bucket first if it does not exist, and reports whether the key had no
// value before.
func (s *Store) putCreate(op Op) (bool, error) {
	if op.Bucket == "" {
		return false, emptyName()
	}
	r := s.lock(op.Bucket, true)
	defer r.mu.Unlock()
	s.createLocked(r)
	now := s.clock.Millis()
	f := r.find(op.Key)
	added := !f.ok() || !f.liveAt(now)
	at := op.ExpiresAt(now)
	var it item
	if at != 0 && at <= now {
		it = tombstoneItem(s.clock.Now())
	} else {
		it = mkItem(Entry{Value: op.Value, Version: s.clock.Now(), Expires: at})
	}
	if _, err := r.applyFound(op.Key, it, f); err != nil {
		return false, err
	}
	return added, nil
}

// Live reports whether key has a value in the bucket called name, which
// exists and has not expired.
func (s *Store) Live(name, key string) bool {
	r, err := s.lockLive(name)
	if err != nil {
		return false
	}
	f := r.find(key)
	r.mu.RUnlock()
	return f.ok() && f.liveBy(s.clock)
}

// BucketLive reports whether the bucket called name exists and has not
// expired.
func (s *Store) BucketLive(name string) bool {
	m, _ := s.Meta(name)
	return m.liveBy(s.clock)
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
	r.tab.idx.each(0, func(v uint64) bool {
		if e := r.tab.view(uint32(v)); e.hdr().liveAt(now) {
			keys = append(keys, string(e.key))
		}
		return true
	})
	slices.Sort(keys)
	return keys
}

// liveCount returns how many keys of the record are live at now: its live
// entries but those that expired. The caller holds r.mu.
func (r *record) liveCount(now int64) int {
	n := r.live
	r.tab.vol.each(0, func(v uint64) bool {
		if r.tab.view(uint32(v)).expires <= now {
			n--
		}
		return true
	})
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
	type kv struct{ k, v string }
	pairs := make([]kv, 0, r.live)
	r.tab.idx.each(0, func(v uint64) bool {
		if e := r.tab.view(uint32(v)); e.hdr().liveAt(now) {
			k, val := e.strings()
			pairs = append(pairs, kv{k, val})
		}
		return true
	})
	r.mu.RUnlock()
	slices.SortFunc(pairs, func(a, b kv) int { return strings.Compare(a.k, b.k) })
	kvs := make([]string, 0, 2*len(pairs))
	for _, p := range pairs {
		kvs = append(kvs, p.k, p.v)
	}
	return kvs, nil
}

// TTL returns op's (KindTTL) outcome: how long its key, or its bucket, has
// to live.
func (s *Store) ttl(op Op) (Result, error) {
	r, err := s.lockLive(op.Bucket)
	now := s.clock.Millis()
	if err != nil {
		return Result{}, err
	}
	defer r.mu.RUnlock()
	if op.Flags&FlagBucket != 0 {
		return ttlResult(r.meta.Expires, now), nil
	}
	f := r.find(op.Key)
	if !f.ok() || !f.liveAt(now) {
		return Result{}, keyMissing(f.hdr, f.ok())
	}
	return ttlResult(f.expires, now), nil
}

// keyMissing is the error of a read that found key's state it (ok: there
// was one) not live: ErrKeyExpired when it holds a value that expired.
func keyMissing(it hdr, ok bool) error {
	if ok && !it.deleted() {
		return ErrKeyExpired
	}
	return ErrKeyNotFound
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
