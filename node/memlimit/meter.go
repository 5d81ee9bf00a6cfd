package memlimit

import (
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// A Meter says how many bytes of memory a node uses.
type Meter interface {
	// Used returns the bytes in use now. It is called on every write that
	// adds memory, from many goroutines at once, so it must be cheap and
	// safe for concurrent use.
	Used() int64
}

// MeterFunc is a Meter made of a function.
type MeterFunc func() int64

// Used returns f().
func (f MeterFunc) Used() int64 { return f() }

// Footprint is what a store counts of what it holds; Estimate turns it
// into bytes of heap.
type Footprint struct {
	// Bytes of keys and values: the sum of len(key)+len(value) over the
	// entries held, as the store's records count them.
	Bytes int64
	// Entries held, tombstones included: a tombstone keeps its key and
	// its map slot.
	Entries int64
	// Buckets: the store's records, dropped ones not yet collected
	// included.
	Buckets int64
	// Maps: the buckets whose table holds entries (node/store packs a
	// bucket's entries into one table, which holds memory while it holds
	// an entry). A store that does not count them leaves 0, and then a
	// small bucket's cost is underestimated (see MapOverhead).
	Maps int64
	// OffHeap is the memory the store holds outside the Go heap
	// (node/store's Store.OffHeap: its tables, and the freed blocks it
	// keeps), as it is, not estimated: what ProcessMeter counts of the
	// tables at each collection, and what a RuntimeLimit takes from the
	// runtime's limit. 0 for a store whose tables are on the heap (race
	// builds; where mapping memory failed), or that does not say.
	OffHeap int64
}

// The per-item costs that Footprint.Estimate adds to the bytes of keys
// and values: measured on node/store with runtime.MemStats and
// Store.OffHeap (see doc.go and TestOverheadConstants; make the
// measurement again with MEMLIMIT_MEASURE=1 when the store's layout
// changes).
const (
	// EntryOverhead is an entry's bytes in its bucket's table beyond its
	// key and value (its version word, lengths and padding to 8 bytes),
	// its share of the table's index (an 8-byte slot, between 3/8 and 3/4
	// of the slots full) and of the chunk being filled. Off the Go heap.
	EntryOverhead = 32
	// BucketOverhead is a bucket's record (64 shard digests, the lock,
	// the counts, the table's header) and its entry in the store's
	// directory, with its name. On the Go heap.
	BucketOverhead = 1040
	// MapOverhead is the least a bucket's table holds beyond its entries'
	// share (an index of 8 slots and a chunk of 256 bytes): a bucket of a
	// few keys pays it. Off the Go heap.
	MapOverhead = 180
)

// Estimate returns the bytes a store with this footprint holds: the keys
// and values, and EntryOverhead, BucketOverhead and MapOverhead for each
// entry, bucket and table.
func (f Footprint) Estimate() int64 {
	return f.Bytes + f.Entries*EntryOverhead + f.Buckets*BucketOverhead + f.Maps*MapOverhead
}

// EntryCost returns what one entry with a key and a value of these
// lengths adds to Footprint.Estimate in a large bucket: what evicting it
// frees, for Candidate.Size.
func EntryCost(keyLen, valueLen int) int64 {
	return int64(keyLen) + int64(valueLen) + EntryOverhead
}

// StoreMeter returns the Meter that counts the store's own memory only:
// footprint().Estimate(). It is the meter of a node that shares its
// process, as the nodes of a test cluster do: it does not read anything
// process-wide. footprint is called on every Used, so it must be cheap
// (atomic counters, not a walk over the buckets). A Governor adds its own
// sketch to what this meter says.
func StoreMeter(footprint func() Footprint) Meter {
	return storeMeter(footprint)
}

type storeMeter func() Footprint

func (m storeMeter) Used() int64 { return m().Estimate() }

// refreshEvery is how many calls of a process meter's Used share one
// look at the garbage collector's cycle count.
const refreshEvery = 32

// ProcessMeter returns the Meter of a node alone in its process (the
// dboutique binary): what the Go runtime holds for the whole process and
// the memory the store holds outside the Go heap, both as they were at
// the last garbage collection, plus what the store's estimate grew since.
// Precisely, Used returns
//
//	live heap at the last GC  (/gc/heap/live:bytes)
//	+ goroutine stacks and the runtime's own memory, at the last GC
//	  (/memory/classes/heap/stacks, os-stacks, metadata/other,
//	  metadata/mcache/inuse, metadata/mspan/inuse, profiling/buckets,
//	  other)
//	+ footprint().OffHeap when that GC was seen
//	+ footprint().Estimate() now − footprint().Estimate() when it was seen
//
// so that at each collection it counts what the process holds, its
// tables as they are (their entries, the dead entries they have not
// compacted yet, their indexes and the freed blocks the store keeps), and
// in between it moves with the store's estimate: it falls at once when
// entries are deleted (their memory is freed when the table compacts, or
// by the next collection for the records on the heap) and grows with
// every write, while reading runtime metrics only once a collection
// happened. It notices one by reading the cycle count every refreshEvery
// calls; until then the previous collection's numbers stand. Before the
// first collection, the heap's allocated bytes stand for the live heap.
// Where the store's tables are on the heap (OffHeap 0), the live heap
// counts them.
//
// With limit not nil, Used passes footprint().OffHeap to limit.Follow at
// every call, so that the Go runtime's memory limit follows the tables.
//
// It does not count freed memory that the runtime has not returned to the
// operating system yet, nor garbage: that is what the headroom of
// DefaultThreshold is for. Two nodes in one process would each count the
// other's memory; use StoreMeter there.
func ProcessMeter(footprint func() Footprint, limit *RuntimeLimit) Meter {
	m := &processMeter{footprint: footprint, limit: limit}
	for i, name := range [...]string{
		"/gc/cycles/total:gc-cycles",
		"/gc/heap/live:bytes",
		"/memory/classes/heap/objects:bytes",
		"/memory/classes/heap/stacks:bytes",
		"/memory/classes/os-stacks:bytes",
		"/memory/classes/metadata/other:bytes",
		"/memory/classes/metadata/mcache/inuse:bytes",
		"/memory/classes/metadata/mspan/inuse:bytes",
		"/memory/classes/profiling/buckets:bytes",
		"/memory/classes/other:bytes",
	} {
		m.samples[i].Name = name
	}
	return m
}

// The samples a process meter reads, by index.
const (
	sampleCycles = iota
	sampleLive
	sampleObjects
	sampleFirstOther // the rest are summed: stacks and runtime memory
	numSamples       = 10
)

type processMeter struct {
	footprint func() Footprint
	limit     *RuntimeLimit // or nil
	calls     atomic.Uint64
	// offset is the runtime's bytes at the last GC seen, plus the store's
	// memory off the heap less its estimate when it was seen: one word,
	// so that Used never pairs one collection's numbers with another's.
	offset atomic.Int64

	mu      sync.Mutex // guards the fields below; refresh only TryLocks it
	cycles  uint64     // the GC cycle count at the last refresh
	read    bool       // refresh has read the samples once
	samples [numSamples]metrics.Sample
}

func (m *processMeter) Used() int64 {
	if m.calls.Add(1)%refreshEvery == 1 {
		m.refresh()
	}
	fp := m.footprint()
	if m.limit != nil {
		m.limit.Follow(fp.OffHeap)
	}
	return m.offset.Load() + fp.Estimate()
}

// wholeProcess marks a meter that sees the Governor's sketch already.
func (m *processMeter) wholeProcess() {}

// refresh reads the GC's cycle count and, when a collection happened
// since the last look (or before any collection at all), the runtime's
// numbers and the store's footprint. A caller that finds another refresh
// running leaves it to that one.
func (m *processMeter) refresh() {
	if !m.mu.TryLock() {
		return
	}
	defer m.mu.Unlock()
	metrics.Read(m.samples[:sampleCycles+1])
	cycles := sampleUint(m.samples[sampleCycles])
	if m.read && cycles == m.cycles && cycles != 0 {
		return
	}
	m.read, m.cycles = true, cycles
	metrics.Read(m.samples[:])
	base := sampleUint(m.samples[sampleLive])
	if cycles == 0 {
		base = sampleUint(m.samples[sampleObjects])
	}
	for _, s := range m.samples[sampleFirstOther:] {
		base += sampleUint(s)
	}
	fp := m.footprint()
	m.offset.Store(int64(base) + fp.OffHeap - fp.Estimate())
}

// sampleUint returns a sample's value, or 0 for a metric this runtime
// does not have.
func sampleUint(s metrics.Sample) uint64 {
	if s.Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s.Value.Uint64()
}
