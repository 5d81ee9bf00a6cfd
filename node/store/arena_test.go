package store

import "testing"

// TestArenaCountsMappedBlocks checks the arena's counts: inUse is every
// block handed out, mapped only those in mapped memory, idle the mapped
// blocks too small to give back that wait on the free lists (mapped plus
// idle is what Store.OffHeap reports, since the runtime does not see
// it). Blocks handed out before and after a mapping failed are told apart
// when they come back.
func TestArenaCountsMappedBlocks(t *testing.T) {
	a := newArena()
	_, mapErr := mapMem(pageSize)
	canMap := mapErr == nil
	idle := int64(0) // what check expects of a.idle
	check := func(step string, inUse, mapped int64) {
		t.Helper()
		wantIdle := idle
		if !canMap {
			mapped, wantIdle = 0, 0
		}
		if got := a.inUse.Load(); got != inUse {
			t.Fatalf("%s: inUse %d, want %d", step, got, inUse)
		}
		if got := a.mapped.Load(); got != mapped {
			t.Fatalf("%s: mapped %d, want %d", step, got, mapped)
		}
		if got := a.idle.Load(); got != wantIdle {
			t.Fatalf("%s: idle %d, want %d", step, got, wantIdle)
		}
	}
	small := a.alloc(100)     // 128
	page := a.alloc(pageSize) // 4096
	huge := a.alloc(maxBlock + 1)
	hugeSize := int64(blockSize(maxBlock + 1))
	check("three blocks", 128+4096+hugeSize, 128+4096+hugeSize)

	a.release(page) // given back to the system: not idle
	check("a page back", 128+hugeSize, 128+hugeSize)
	again := a.alloc(pageSize) // the freed page again, from the free list
	check("the page again", 128+4096+hugeSize, 128+4096+hugeSize)

	// A block under a page stays resident when freed: idle until reused.
	small2 := a.alloc(2000) // 2048
	check("a small block", 128+4096+2048+hugeSize, 128+4096+2048+hugeSize)
	a.release(small2)
	idle = 2048
	check("the small block back", 128+4096+hugeSize, 128+4096+hugeSize)
	small2 = a.alloc(1500) // the same block, from the free list
	idle = 0
	check("the small block again", 128+4096+2048+hugeSize, 128+4096+2048+hugeSize)
	a.release(small2)
	idle = 2048

	// From here on blocks come from the heap, as after a failed mapping.
	a.mu.Lock()
	a.onHeap = true
	a.mu.Unlock()
	heapBlock := a.alloc(3000) // 4096, from the heap: the free list is empty
	check("a heap block", 128+2*4096+hugeSize, 128+4096+hugeSize)
	a.release(heapBlock)
	check("the heap block back", 128+4096+hugeSize, 128+4096+hugeSize)
	heapSmall := a.alloc(200) // 256, from the heap: not idle when freed
	a.release(heapSmall)
	check("a small heap block back", 128+4096+hugeSize, 128+4096+hugeSize)
	a.release(again)
	a.release(small)
	idle += 128
	a.release(huge)
	check("all back", 0, 0)
}
