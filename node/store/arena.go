package store

import (
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// arena hands out the blocks that a store's tables keep their entries and
// indexes in (table.go). The blocks come from memory mapped outside the Go
// heap (arena_linux.go), so that the collector neither scans nor counts
// them: the store's data then costs the process its size once, not twice
// as a heap that GOGC lets grow to twice its live size would, and the
// collector's work does not grow with the number of entries.
//
// Blocks are powers of two from minBlock to maxBlock bytes, carved from
// regions of regionSize mapped once each, and kept on a free list per size
// when freed; a freed block of adviseMin bytes or more gives its pages back
// to the system (they read as zeros when used again). A smaller one cannot
// (it shares its page with others) and stays resident on its free list:
// counted apart (idle), so that what the process holds is counted whole.
// Larger blocks (huge) are mapped and unmapped one by one.
//
// Invariants:
//   - A block is handed out to one table at a time, and its memory is only
//     read or written by that table, under its record's lock; nothing
//     outside table.go holds a slice of a block, so values leave a table
//     as copies (strings) that stay valid whatever happens to the block.
//   - The regions are unmapped only when the arena is unreachable (a
//     cleanup attached to it): every table holds the arena, so no table
//     that may still be read outlives its memory.
//   - When mapping fails (or on a system without mmap), blocks come from
//     the Go heap instead, for good: the store works the same, only its
//     memory is on the heap.
type arena struct {
	mu     sync.Mutex           // guards every field below but the counters
	free   [numClasses][][]byte // freed blocks by class
	cur    []byte               // the region being carved
	off    int                  // the next free byte of cur
	onHeap bool                 // mapping failed once: blocks come from the heap
	maps   *mappings            // what the cleanup unmaps
	inUse  atomic.Int64         // bytes of the blocks handed out
	mapped atomic.Int64         // bytes of those blocks that are mapped memory, not heap
	idle   atomic.Int64         // bytes of mapped blocks on the free lists still resident (under adviseMin)
}

// mappings is what an arena mapped: all of it is unmapped when the arena
// is unreachable.
type mappings struct {
	regions [][]byte
	huge    map[*byte][]byte // the huge blocks handed out, by first byte
}

const (
	minBlockShift = 6  // the smallest block: 64 bytes
	maxBlockShift = 20 // the largest block of a class: 1 MiB
	numClasses    = maxBlockShift - minBlockShift + 1
	minBlock      = 1 << minBlockShift
	maxBlock      = 1 << maxBlockShift
	regionSize    = 64 << 20
	pageSize      = 4096
	// adviseMin is the smallest freed block whose pages go back to the
	// system: a page (blocks of a page or more are page-aligned; smaller
	// ones share pages, and stay resident while free: arena.idle). Measured
	// on 1M plain keys (256 buckets): 73.5 bytes of RSS an entry with 64
	// KiB, 65.2 with a page (the indexes a table outgrew).
	adviseMin = pageSize
)

func newArena() *arena {
	a := &arena{maps: &mappings{huge: make(map[*byte][]byte)}}
	runtime.AddCleanup(a, (*mappings).unmapAll, a.maps)
	return a
}

// unmapAll unmaps everything; the arena that mapped it is unreachable.
func (m *mappings) unmapAll() {
	for _, r := range m.regions {
		unmap(r)
	}
	for _, b := range m.huge {
		unmap(b)
	}
	m.regions, m.huge = nil, nil
}

// class returns the class of a block of at least n bytes (n <= maxBlock).
func class(n int) int {
	c := 0
	for minBlock<<c < n {
		c++
	}
	return c
}

// blockSize returns the size of the block alloc(n) returns.
func blockSize(n int) int {
	if n > maxBlock {
		return (n + pageSize - 1) &^ (pageSize - 1)
	}
	return minBlock << class(n)
}

// alloc returns a block of blockSize(n) bytes. Its contents are not
// zeroed: a block used again holds what it held.
func (a *arena) alloc(n int) []byte {
	size := blockSize(n)
	a.inUse.Add(int64(size))
	a.mu.Lock()
	defer a.mu.Unlock()
	if size > maxBlock {
		if !a.onHeap {
			if b, err := mapMem(size); err == nil {
				a.maps.huge[&b[0]] = b
				a.mapped.Add(int64(size))
				return b
			}
			a.onHeap = true
		}
		return make([]byte, size)
	}
	c := class(size)
	if l := a.free[c]; len(l) > 0 {
		b := l[len(l)-1]
		l[len(l)-1] = nil
		a.free[c] = l[:len(l)-1]
		if a.isMapped(b) {
			a.mapped.Add(int64(size))
			if size < adviseMin {
				a.idle.Add(-int64(size))
			}
		}
		return b
	}
	if !a.onHeap {
		align := min(size, pageSize)
		off := (a.off + align - 1) &^ (align - 1)
		if a.cur == nil || off+size > len(a.cur) {
			r, err := mapMem(regionSize)
			if err != nil {
				a.onHeap = true
				return make([]byte, size)
			}
			a.maps.regions = append(a.maps.regions, r)
			a.cur, off = r, 0
		}
		a.off = off + size
		a.mapped.Add(int64(size))
		return a.cur[off : off+size : off+size]
	}
	return make([]byte, size)
}

// release takes back a block that alloc returned; the caller no longer
// touches it.
func (a *arena) release(b []byte) {
	a.inUse.Add(-int64(len(b)))
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(b) > maxBlock {
		if _, ok := a.maps.huge[&b[0]]; ok {
			delete(a.maps.huge, &b[0])
			a.mapped.Add(-int64(len(b)))
			unmap(b)
		}
		return // a huge block from the heap: the collector frees it
	}
	if a.isMapped(b) {
		a.mapped.Add(-int64(len(b)))
		if len(b) >= adviseMin {
			adviseFree(b)
		} else {
			a.idle.Add(int64(len(b)))
		}
	}
	c := class(len(b))
	a.free[c] = append(a.free[c], b)
}

// isMapped says whether a block of a class lies in one of the regions;
// until a mapping has failed, every block does. a.mu is held.
func (a *arena) isMapped(b []byte) bool {
	if !a.onHeap {
		return true
	}
	p := uintptr(unsafe.Pointer(&b[0]))
	for _, r := range a.maps.regions {
		if start := uintptr(unsafe.Pointer(&r[0])); p >= start && p < start+uintptr(len(r)) {
			return true
		}
	}
	return false
}
