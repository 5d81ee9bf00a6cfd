package store

import (
	"encoding/binary"
	"fmt"
	"math/bits"

	"github.com/cespare/xxhash/v2"
)

// table holds a record's entries, packed into byte blocks from the store's
// arena (arena.go), with no pointer per entry: the collector neither scans
// nor counts what it holds.
//
// Entries: each is written at an 8-byte-aligned place of a chunk:
//
//	vd       8 bytes, little-endian: the version | tombstoneBit | expiresBit
//	         (the cell's word), | deadBit once the entry is replaced or deleted
//	expires  8 bytes, only when expiresBit is set
//	klen     uvarint
//	vlen     uvarint
//	key      klen bytes
//	value    vlen bytes
//	padding  to a multiple of 8
//
// A chunk's entries follow one another from its start to its used bytes,
// dead ones included, so that a chunk can be walked; an entry is referred
// to by a ref: (chunk<<refOffBits | offset/8) + 1, 0 meaning none.
//
// Index: open addressing with linear probing over slots of 8 bytes,
// uint64(tag)<<32 | ref, 0 for an empty slot, a power of two of them, at
// most 3/4 full; removal shifts the following slots back (no tombstones).
// tag is the low 32 bits of the key's hash (xxhash of the key, as ShardOf
// and NameHash hash it): its low bits are the key's shard, and its home
// slot is derived from it alone, so the index grows without reading the
// entries. Every hit compares the whole key, so keys whose hashes collide
// (in 32 bits or in 64) simply take two slots. vol is a second index of the
// same slots, of the entries with an expiry only (expiry.go walks it), nil
// while there are none.
//
// Space: an entry replaced by one of the same encoded size is written over
// in place; otherwise the old one is marked dead and the new one appended
// to the tail chunk. A chunk other than the tail whose dead bytes reach
// half its used bytes is compacted (its live entries moved to the tail, the
// chunk released) by the next put or tidy, never by a removal, so that
// removing entries while walking the index's slots (collected first) is
// safe. A table whose last entry goes releases everything.
type table struct {
	mem *arena
	// hash is the hash the callers give for a key, which compaction
	// computes again from the key's bytes to find its slot; nil for
	// hashBytes (keyHash), which the store uses. Tests set another to
	// make keys collide.
	hash   func(key []byte) uint64
	idx    index
	vol    index
	chunks []chunk
	spare  []uint32 // numbers of released chunks, for reuse
	tail   int32    // the chunk new entries are appended to, plus one; 0 for none
	// pending lists chunks that reached the compaction threshold; some may
	// have been released since.
	pending []uint32
	live    int // bytes of the live entries, padding included
}

type chunk struct {
	b    []byte // nil once released
	used int32
	dead int32
}

// index is a table's slots (see table).
type index struct {
	b     []byte // 8 bytes a slot; nil while empty
	shift uint8  // 64 - log2(slots)
	n     int    // slots in use
}

const (
	deadBit    = 1 << 61 // in a stored vd: the entry is no longer referred to
	refOffBits = 17      // offset/8 within a chunk: chunks up to 1 MiB
	maxChunks  = 1<<(32-refOffBits) - 1
	// chunkMax is the largest chunk (but for an entry of its own), and
	// ownChunk the size from which an entry gets a chunk of its own.
	chunkMax = maxBlock
	ownChunk = chunkMax / 4
	minChunk = 256
	minSlots = 8
	golden   = 0x9E3779B97F4A7C15
)

// view is an entry as the table holds it: its key and value alias the
// table's memory and are valid only until the table next changes.
type view struct {
	vd         uint64 // without deadBit
	expires    int64
	key, value []byte
	size       int // bytes it takes, padding included
}

func (v view) hdr() hdr { return hdr{vd: v.vd &^ deadBit, expires: v.expires} }

// strings returns copies of the key and the value, in one allocation (the
// value follows the key in the table).
func (v view) strings() (key, value string) {
	s := string(v.key[:len(v.key)+len(v.value)])
	return s[:len(v.key)], s[len(v.key):]
}

// --- index ---

func (x *index) slots() int { return len(x.b) >> 3 }

func (x *index) at(i int) uint64 { return binary.LittleEndian.Uint64(x.b[i<<3:]) }

func (x *index) put(i int, v uint64) { binary.LittleEndian.PutUint64(x.b[i<<3:], v) }

func (x *index) home(tag uint32) int { return int((uint64(tag) * golden) >> x.shift) }

func (x *index) mask() int { return x.slots() - 1 }

// insert puts v in the first empty slot from its home; there is one.
func (x *index) insert(v uint64) int {
	m := x.mask()
	i := x.home(uint32(v >> 32))
	for x.at(i) != 0 {
		i = (i + 1) & m
	}
	x.put(i, v)
	x.n++
	return i
}

// find returns the slot that holds v, or -1.
func (x *index) find(v uint64) int {
	if x.n == 0 {
		return -1
	}
	m := x.mask()
	for i := x.home(uint32(v >> 32)); ; i = (i + 1) & m {
		switch x.at(i) {
		case v:
			return i
		case 0:
			return -1
		}
	}
}

// remove empties slot i, shifting back the slots after it that would
// otherwise no longer be found.
func (x *index) remove(i int) {
	m := x.mask()
	for j := (i + 1) & m; ; j = (j + 1) & m {
		v := x.at(j)
		if v == 0 {
			break
		}
		// v may move back to i when its home is not after i (cyclically,
		// between i exclusive and j inclusive).
		if (j-x.home(uint32(v>>32)))&m >= (j-i)&m {
			x.put(i, v)
			i = j
		}
	}
	x.put(i, 0)
	x.n--
}

// resize makes x an index of slots slots (a power of two that holds its
// entries) with memory from mem, releasing the old.
func (x *index) resize(mem *arena, slots int) {
	old := *x
	*x = index{}
	if slots > 0 {
		x.b = mem.alloc(slots << 3)[:slots<<3]
		clear(x.b)
		x.shift = uint8(64 - bits.TrailingZeros(uint(slots)))
		for i := range old.slots() {
			if v := old.at(i); v != 0 {
				x.insert(v)
			}
		}
	}
	if old.b != nil {
		mem.release(old.b[:cap(old.b)])
	}
}

// slotsFor returns the slots an index of n entries takes.
func slotsFor(n int) int {
	s := minSlots
	for s*3 < n*4 {
		s *= 2
	}
	return s
}

// reserve makes room in x for one more entry.
func (x *index) reserve(mem *arena) {
	if (x.n+1)*4 > x.slots()*3 {
		x.resize(mem, slotsFor(x.n+1))
	}
}

// --- entries ---

func tagOf(h uint64) uint32 { return uint32(h) }

func refChunk(ref uint32) int { return int((ref - 1) >> refOffBits) }
func refOff(ref uint32) int   { return int((ref-1)&(1<<refOffBits-1)) << 3 }
func mkRef(c, off int) uint32 { return uint32(c<<refOffBits|off>>3) + 1 }

// encSize returns the bytes an entry takes.
func encSize(klen, vlen int, volatile bool) int {
	n := 8 + uvarintLen(klen) + uvarintLen(vlen) + klen + vlen
	if volatile {
		n += 8
	}
	return (n + 7) &^ 7
}

func uvarintLen(n int) int { return (bits.Len64(uint64(n)|1) + 6) / 7 }

// view returns the entry that ref refers to.
func (t *table) view(ref uint32) view {
	c := &t.chunks[refChunk(ref)]
	b := c.b[refOff(ref):]
	v := view{vd: binary.LittleEndian.Uint64(b)}
	p := 8
	if v.vd&expiresBit != 0 {
		v.expires = int64(binary.LittleEndian.Uint64(b[8:]))
		p = 16
	}
	klen, n := binary.Uvarint(b[p:])
	p += n
	vlen, n := binary.Uvarint(b[p:])
	p += n
	v.key = b[p : p+int(klen)]
	v.value = b[p+int(klen) : p+int(klen)+int(vlen)]
	v.size = (p + int(klen) + int(vlen) + 7) &^ 7
	return v
}

// write encodes an entry into b, which has room for it.
func write(b []byte, vd uint64, expires int64, key, value string) {
	binary.LittleEndian.PutUint64(b, vd)
	p := 8
	if vd&expiresBit != 0 {
		binary.LittleEndian.PutUint64(b[8:], uint64(expires))
		p = 16
	}
	p += binary.PutUvarint(b[p:], uint64(len(key)))
	p += binary.PutUvarint(b[p:], uint64(len(value)))
	p += copy(b[p:], key)
	copy(b[p:], value)
}

// keyEq reports whether b holds the bytes of s.
func keyEq(b []byte, s string) bool { return string(b) == s }

// len returns the number of entries.
func (t *table) len() int { return t.idx.n }

// find returns the slot of key, whose hash is h, and its entry; -1 when
// it has none.
func (t *table) find(h uint64, key string) (int, view) {
	x := &t.idx
	if x.n == 0 {
		return -1, view{}
	}
	tag := tagOf(h)
	m := x.mask()
	for i := x.home(tag); ; i = (i + 1) & m {
		v := x.at(i)
		if v == 0 {
			return -1, view{}
		}
		if uint32(v>>32) == tag {
			if e := t.view(uint32(v)); keyEq(e.key, key) {
				return i, e
			}
		}
	}
}

// slotView returns the entry of slot i.
func (t *table) slotView(i int) view { return t.view(uint32(t.idx.at(i))) }

// put makes key's entry (vd, expires, value): at slot, the key's slot
// from find, or a new one for slot -1. It may move entries (compaction,
// growth): slots and views found before are stale after.
func (t *table) put(h uint64, key string, slot int, vd uint64, expires int64, value string) {
	if vd&expiresBit == 0 {
		expires = 0
	}
	size := encSize(len(key), len(value), vd&expiresBit != 0)
	tag := tagOf(h)
	if slot >= 0 {
		old := t.idx.at(slot)
		ov := t.view(uint32(old))
		if ov.size == size {
			c := &t.chunks[refChunk(uint32(old))]
			write(c.b[refOff(uint32(old)):], vd, expires, key, value)
			t.setVolatile(old, old, ov.vd&expiresBit != 0, vd&expiresBit != 0)
			return
		}
		ref := t.append(size, vd, expires, key, value)
		// The append may have compacted chunks and moved the old entry:
		// its slot stays, its ref is read again.
		old = t.idx.at(slot)
		nv := uint64(tag)<<32 | uint64(ref)
		t.idx.put(slot, nv)
		wasVol := t.markDead(uint32(old))
		t.setVolatile(old, nv, wasVol, vd&expiresBit != 0)
		return
	}
	if t.mem == nil {
		panic("store: a table without an arena")
	}
	ref := t.append(size, vd, expires, key, value)
	t.idx.reserve(t.mem)
	nv := uint64(tag)<<32 | uint64(ref)
	t.idx.insert(nv)
	if vd&expiresBit != 0 {
		t.vol.reserve(t.mem)
		t.vol.insert(nv)
	}
}

// setVolatile keeps vol in step with an entry whose slot value went from
// old to nv, and its expiry from was to is.
func (t *table) setVolatile(old, nv uint64, was, is bool) {
	switch {
	case was && is:
		if old != nv {
			t.vol.put(t.vol.find(old), nv)
		}
	case was:
		t.vol.remove(t.vol.find(old))
		if t.vol.n == 0 {
			t.vol.resize(t.mem, 0)
		}
	case is:
		t.vol.reserve(t.mem)
		t.vol.insert(nv)
	}
}

// markDead marks the entry of ref dead and counts its bytes as dead in its
// chunk; it reports whether the entry had an expiry.
func (t *table) markDead(ref uint32) bool {
	ci := refChunk(ref)
	c := &t.chunks[ci]
	b := c.b[refOff(ref):]
	vd := binary.LittleEndian.Uint64(b)
	binary.LittleEndian.PutUint64(b, vd|deadBit)
	size := t.view(ref).size
	c.dead += int32(size)
	t.live -= size
	if int32(ci)+1 != t.tail {
		if c.dead == c.used {
			t.releaseChunk(ci)
		} else if c.dead*2 >= c.used && (c.dead-int32(size))*2 < c.used {
			t.pending = append(t.pending, uint32(ci))
		}
	}
	return vd&expiresBit != 0
}

// append writes an entry at the tail, compacting what is pending first,
// and returns its ref.
func (t *table) append(size int, vd uint64, expires int64, key, value string) uint32 {
	t.compactPending()
	ci := t.room(size)
	c := &t.chunks[ci]
	off := int(c.used)
	write(c.b[off:], vd, expires, key, value)
	c.used += int32(size)
	t.live += size
	return mkRef(ci, off)
}

// fits reports whether the table can take an entry of size bytes: its
// tail has room, a chunk index is free, or fewer than maxChunks-2 are in
// use (compaction may take one more for a moment: it moves a chunk's live
// entries to the tail before it frees that chunk).
func (t *table) fits(size int) bool {
	if len(t.chunks)+2 <= maxChunks || len(t.spare) > 0 {
		return true
	}
	if t.tail > 0 {
		c := &t.chunks[t.tail-1]
		return int(c.used)+size <= len(c.b)
	}
	return false
}

// room returns a chunk with room for size bytes at its end: the tail, or a
// new one (then the tail unless the entry takes one of its own).
func (t *table) room(size int) int {
	if t.tail > 0 {
		c := &t.chunks[t.tail-1]
		if int(c.used)+size <= len(c.b) {
			return int(t.tail - 1)
		}
	}
	// A new chunk of an eighth of the live bytes at most (a power of two,
	// chunkMax at most): the tail, which holds what the table does not
	// use yet, is at most an eighth more than the entries.
	n := minChunk
	for n*16 <= t.live && n < chunkMax {
		n *= 2
	}
	own := size > ownChunk
	if own {
		n = size
	} else {
		for n < size {
			n *= 2
		}
		// A chunk of a few entries wastes up to an entry at its end:
		// once the table holds as much, room for eight.
		for n < chunkMax && n < 8*size && n <= t.live {
			n *= 2
		}
	}
	b := t.mem.alloc(n)
	var ci int
	if k := len(t.spare); k > 0 {
		ci = int(t.spare[k-1])
		t.spare = t.spare[:k-1]
	} else {
		ci = len(t.chunks)
		if ci >= maxChunks {
			panic(fmt.Sprintf("store: a bucket's table holds %d chunks, the most it can (fits was not asked)", ci))
		}
		t.chunks = append(t.chunks, chunk{})
	}
	t.chunks[ci] = chunk{b: b}
	if !own {
		if t.tail > 0 {
			t.sealTail()
		}
		t.tail = int32(ci) + 1
	}
	return ci
}

// sealTail stops appending to the tail chunk, which may then be compacted
// or released as any other.
func (t *table) sealTail() {
	ci := int(t.tail - 1)
	t.tail = 0
	c := &t.chunks[ci]
	if c.dead == c.used {
		t.releaseChunk(ci)
	} else if c.dead*2 >= c.used {
		t.pending = append(t.pending, uint32(ci))
	}
}

func (t *table) releaseChunk(ci int) {
	c := &t.chunks[ci]
	t.mem.release(c.b[:cap(c.b)])
	*c = chunk{}
	t.spare = append(t.spare, uint32(ci))
}

// compactPending compacts the chunks that reached the threshold.
func (t *table) compactPending() {
	for len(t.pending) > 0 {
		ci := int(t.pending[len(t.pending)-1])
		t.pending = t.pending[:len(t.pending)-1]
		c := &t.chunks[ci]
		if c.b == nil || int32(ci)+1 == t.tail || c.dead*2 < c.used {
			continue
		}
		t.compact(ci)
	}
}

// compact moves the live entries of chunk ci to the tail and releases it.
func (t *table) compact(ci int) {
	for off := 0; off < int(t.chunks[ci].used); {
		ref := mkRef(ci, off)
		v := t.view(ref)
		off += v.size
		if v.vd&deadBit != 0 {
			continue
		}
		h := t.hashOf(v.key)
		old := uint64(tagOf(h))<<32 | uint64(ref)
		nc := t.room(v.size)
		// room may have allocated: read the entry again.
		v = t.view(ref)
		c := &t.chunks[nc]
		noff := int(c.used)
		copy(c.b[noff:noff+v.size], t.chunks[ci].b[refOff(ref):refOff(ref)+v.size])
		c.used += int32(v.size)
		nv := uint64(tagOf(h))<<32 | uint64(mkRef(nc, noff))
		t.idx.put(t.idx.find(old), nv)
		if v.vd&expiresBit != 0 {
			t.vol.put(t.vol.find(old), nv)
		}
	}
	t.releaseChunk(ci)
}

// remove removes the entry of slot i; it moves no entry.
func (t *table) remove(i int) {
	v := t.idx.at(i)
	t.idx.remove(i)
	if t.markDead(uint32(v)) {
		t.vol.remove(t.vol.find(v))
		if t.vol.n == 0 {
			t.vol.resize(t.mem, 0)
		}
	}
	if t.idx.n == 0 {
		t.free()
	}
}

// removeValue removes the entry whose slot holds v (from a walk).
func (t *table) removeValue(v uint64) { t.remove(t.idx.find(v)) }

// tidy compacts what is pending and shrinks an index much larger than its
// entries need; it moves entries, so callers walking the index do not.
func (t *table) tidy() {
	t.compactPending()
	if t.idx.n > 0 && t.idx.slots() > minSlots && t.idx.n*8 < t.idx.slots() {
		t.idx.resize(t.mem, slotsFor(t.idx.n))
	}
	if t.vol.n > 0 && t.vol.slots() > minSlots && t.vol.n*8 < t.vol.slots() {
		t.vol.resize(t.mem, slotsFor(t.vol.n))
	}
}

// free releases everything.
func (t *table) free() {
	for i := range t.chunks {
		if t.chunks[i].b != nil {
			t.mem.release(t.chunks[i].b[:cap(t.chunks[i].b)])
		}
	}
	t.idx.resize(t.mem, 0)
	t.vol.resize(t.mem, 0)
	*t = table{mem: t.mem, hash: t.hash}
}

// each calls f with the slots of x in use, from slot start on (wrapping),
// until f returns false. f must not change the table.
func (x *index) each(start int, f func(v uint64) bool) {
	b := x.b
	if len(b) == 0 {
		return
	}
	start = (start << 3) & (len(b) - 1)
	for _, part := range [2][]byte{b[start:], b[:start]} {
		for ; len(part) >= 8; part = part[8:] {
			if v := binary.LittleEndian.Uint64(part); v != 0 && !f(v) {
				return
			}
		}
	}
}

// bytes returns the memory the table holds from its arena.
func (t *table) bytes() int64 {
	n := int64(len(t.idx.b) + len(t.vol.b))
	for i := range t.chunks {
		n += int64(cap(t.chunks[i].b))
	}
	return n
}

func (t *table) hashOf(key []byte) uint64 {
	if t.hash != nil {
		return t.hash(key)
	}
	return hashBytes(key)
}

// hashBytes is the hash of a key held as bytes: xxhash, as keyHash.
func hashBytes(b []byte) uint64 { return xxhash.Sum64(b) }

// keyHash is the hash a table files key under; ShardOf(key) is its low
// bits modulo NumShards.
func keyHash(key string) uint64 { return xxhash.Sum64String(key) }
