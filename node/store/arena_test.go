package store

import "testing"

// TestArenaCountsMappedBlocks checks the arena's two counts: inUse is
// every block handed out, mapped only those in mapped memory (what
// Store.OffHeap reports, since the runtime does not see it). Blocks
// handed out before and after a mapping failed are told apart when they
// come back.
func TestArenaCountsMappedBlocks(t *testing.T) {
	a := newArena()
	_, mapErr := mapMem(pageSize)
	canMap := mapErr == nil
	check := func(step string, inUse, mapped int64) {
		t.Helper()
		if !canMap {
			mapped = 0
		}
		if got := a.inUse.Load(); got != inUse {
			t.Fatalf("%s: inUse %d, want %d", step, got, inUse)
		}
		if got := a.mapped.Load(); got != mapped {
			t.Fatalf("%s: mapped %d, want %d", step, got, mapped)
		}
	}
	small := a.alloc(100)     // 128
	page := a.alloc(pageSize) // 4096
	huge := a.alloc(maxBlock + 1)
	hugeSize := int64(blockSize(maxBlock + 1))
	check("three blocks", 128+4096+hugeSize, 128+4096+hugeSize)

	a.release(page)
	check("a page back", 128+hugeSize, 128+hugeSize)
	again := a.alloc(pageSize) // the freed page again, from the free list
	check("the page again", 128+4096+hugeSize, 128+4096+hugeSize)

	// From here on blocks come from the heap, as after a failed mapping.
	a.mu.Lock()
	a.onHeap = true
	a.mu.Unlock()
	heapBlock := a.alloc(3000) // 4096, from the heap: the free list is empty
	check("a heap block", 128+2*4096+hugeSize, 128+4096+hugeSize)
	a.release(heapBlock)
	check("the heap block back", 128+4096+hugeSize, 128+4096+hugeSize)
	a.release(again)
	a.release(small)
	a.release(huge)
	check("all back", 0, 0)
}
