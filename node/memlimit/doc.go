// Package memlimit owns the memory limit of a node (--maxmemory and
// --maxmemory-policy, with Redis's names and meanings): reading sizes and
// policies ([ParseSize], [ParsePolicy]); saying how much memory the node
// uses ([Meter]); keeping the Go runtime's memory limit clear of what
// the store holds outside the heap ([RuntimeLimit]); deciding when to
// evict, or to refuse writes
// ([Governor.Over], [Governor.Full]); remembering which entries were used
// when and how often without a byte per entry ([Governor.Touch]); and
// ranking the entries a caller sampled for eviction ([Governor.Score],
// [Governor.Pick]).
//
// It evicts nothing itself. The node evicts at a bucket's primary, as
// replicated deletes, so that copies never disagree; the unit of eviction
// is one entry, a plain key or one key of a bucket.
//
// The package starts no goroutine, does no I/O and has no package-level
// state, so that many nodes run in one process. The one thing it reads
// that is process-wide, the Go runtime's metrics, only [ProcessMeter]
// reads, for the binary. Setting the runtime's memory limit
// (debug.SetMemoryLimit) is process-wide too: [RuntimeLimit] decides it,
// through the function it is given; only cmd/dboutique gives it
// debug.SetMemoryLimit.
//
// # Invariants
//
//   - The access sketches only ever overestimate: a collision can make an
//     entry look more recently or more frequently used than it was, never
//     less. An entry in use is never evicted because of a collision; a
//     cold entry may escape a round of eviction.
//   - Used falls as soon as entries are deleted: meters count the store's
//     footprint, not the heap, between two collections, so that an evictor
//     does not go on evicting while the garbage waits for the collector.
//   - Without a limit, Over is 0, Full is false and Touch does nothing; a
//     policy that ranks by use (LRU, LFU) is the only one that gets a
//     sketch.
//   - Touch, Over, Score and Pick never wait for a lock and do not
//     allocate; a Governor is safe for concurrent use and needs no Close.
//
// # How memory is counted
//
// By default ([StoreMeter]) the node counts its store: for each entry the
// bytes of its key and value (what the store's records count), plus
// [EntryOverhead] (32 bytes); [BucketOverhead] (1040) per bucket and
// [MapOverhead] (180) per bucket whose table holds entries
// ([Footprint.Estimate]). Nothing process-wide is read, so that nodes
// sharing a test process each count their own. node/store packs each
// bucket's entries into a table of byte blocks mapped outside the Go heap
// (its doc.go); the records are on the heap. The constants were measured
// on node/store (TestMeasureOverhead, Go 1.26, amd64): the heap after two
// full collections, before and after filling a store
// (runtime.MemStats.HeapAlloc), plus what its tables hold outside it
// (Store.OffHeap, the freed blocks under a page included), keys of 12
// bytes:
//
//	layout                                   heap      tables   per entry  Estimate
//	200k entries of 10 B, 256 buckets         0.9 MB    11.1 MB   37.8      -7%
//	500k entries of 10 B, 256 buckets         0.9 MB    25.2 MB   30.3      +5%
//	700k entries of 10 B, 256 buckets         0.9 MB    31.5 MB   24.3     +18%
//	1M entries of 10 B, 256 buckets           0.9 MB    50.4 MB   29.3      +6%
//	1.4M entries of 10 B, 256 buckets         0.9 MB    63.0 MB   23.6     +19%
//	2M entries of 10 B, 256 buckets           0.9 MB   100.7 MB   28.8      +7%
//	1M entries of 10 B, 1 bucket              0.0 MB    49.3 MB   27.3     +10%
//	1M entries of 1 KiB, 256 buckets          0.9 MB  1104.1 MB   69.1      -3%
//	1M entries of 1 KiB, 1 bucket             0.1 MB  1065.4 MB   29.5      +0%
//	100k buckets of 1 key                   103.8 MB    32.0 MB 1335.9      -6%
//	100k buckets of 3 keys                  103.8 MB    32.0 MB  430.7      +2%
//	100k buckets of 10 keys                 109.7 MB    70.4 MB  158.1      -2%
//	10k buckets of 100 keys                  16.2 MB    71.0 MB   65.3     -24%
//	1k buckets of 1000 keys                   3.5 MB    49.3 MB   30.8      +5%
//	10k buckets of 100 keys of 1 KiB         16.5 MB  1187.2 MB  167.7     -10%
//
// (Before the freed blocks under a page were counted, the tables of 100k
// buckets of 10 keys took 64.0 MB, of 10k buckets of 100 keys 53.8 MB
// (-5%), of 10k buckets of 100 keys of 1 KiB 1167.4 MB: the small
// indexes and chunks those tables outgrew. The estimate now falls short
// by up to a quarter there; ProcessMeter corrects it at every
// collection, StoreMeter does not.)
//
// ("per entry" is the memory beyond the bytes of keys and values.) An
// entry takes its key and value, an 8-byte version word and two length
// bytes, padded to 8 bytes, in a chunk of its table, and its share of the
// index (8-byte slots, between 3/8 and 3/4 full); the chunk being filled
// is counted whole. A bucket costs its record (64 shard digests, the lock,
// counts and the table's header: about 900 bytes) and its entry in the
// store's directory, on the heap; its table at least an index of 8 slots
// and a chunk of 256 bytes. TestOverheadConstants checks every run that
// the constants still hold (within -25% and +50%); run MEMLIMIT_MEASURE=1
// go test -run MeasureOverhead -v ./node/memlimit when the store's layout
// changes. A table's blocks are counted whole, though a page of one never
// written takes no memory; and memory of deleted entries that a table has
// not compacted yet is not counted (nor was garbage on the heap before).
//
// The binary, alone in its process, uses [ProcessMeter]: what the runtime
// measured at the last collection (the live heap, goroutine stacks, the
// runtime's own metadata) plus what the store holds outside the heap
// (Footprint.OffHeap: its tables' blocks as they are, the memory of
// entries deleted but not compacted yet included, and the freed blocks
// under a page that stay resident), both as they were when that
// collection was seen, plus the growth of the store's estimate since. It
// counts everything the process holds (connections, replication, the
// sketch), corrects itself at every collection, and errs high when the
// collector runs back to back (objects allocated while it marks count as
// live), which evicts a little early. The runtime's memory limit is set
// by cmd/dboutique from --maxmemory, less the resident pages of the
// executable itself, which the system counts and the runtime does not
// (Config.Reserve): 20.4 MB for an idle node; 16.6 MB at start, 20.9 MB
// after a replicated load, hence a margin of 6 MiB over what is measured
// at start. Of that budget the runtime gets what the store's tables leave
// ([RuntimeLimit]: the budget less OffHeap less a step of 1/64 of the
// budget, set again whenever OffHeap moved by a step; ProcessMeter tells
// it at every Used), so that the heap cannot grow into the memory the
// tables hold. The idle node's resident size is 24.3 MB, of which 3.9 MB
// anonymous (the Go heap: 2.2 MB); under load (20 clients writing 1 KiB
// values) the runtime holds about 19 MB, of which 5.5 MB of live heap and
// 5 MB of its own metadata.
//
// Freed table blocks under a page (4 KiB) cannot be given back to the
// system (they share their page) and wait on the store's free lists, so
// they are counted: 1.3 MB with 15,000 entries of 1 KiB in 256 buckets
// (6% of the tables), 17 MB in 10k buckets of 100 short keys (24%), mostly
// the small indexes and chunks of tables that grew. Giving them back would
// need the store to gather free blocks into whole free pages.
//
// # Headroom
//
// Eviction starts at [DefaultThreshold], 0.6 of the limit less the
// reserve. The rest is the heap's room for garbage: the runtime's limit
// is what the tables leave of the same budget, so with the node at its
// threshold the collector has 40% of the budget (less the step) for what
// the heap holds beyond its live data, and collects when it is full. The
// higher the threshold, the more often it collects, until it falls behind
// a fast writer (the runtime's limit is soft: it lets the heap grow rather
// than spend more than half the CPU collecting) or takes the CPU the
// evictor needs. A writer waits, up to half a second, halfway between the
// threshold and the budget; past that it is refused.
//
// Measured on the binary, as in README: --maxmemory 64mb
// --maxmemory-policy allkeys-lru, redis-benchmark -t set -d 1024 -n
// 1000000 -r 100000000 -P 16 -c 20 (1 GB of 1 KiB values under fresh
// keys), on two cores loaded by other work (load average 6 to 13); peak
// resident size (VmHWM), and runs in which a write was refused (OOM):
//
//	threshold   runs   VmHWM              refused   entries held (loaded, at rest)
//	0.5          5     58.1 to 59.6 MiB   none      13,900   3,300
//	0.6          9     59.8 to 60.9 MiB   none      15,400   6,300
//	0.7          6     59.9 to 61.2 MiB   2 runs    17,200   9,900
//	0.75         2     60.3 to 60.6 MiB   2 runs    18,100  12,900
//	0.8          4     60.5 to 60.9 MiB   1 run     19,900  14,200
//	0.9          1     60.6 MiB           1 run     22,700  18,900
//	before       3     67.8 to 68.4 MiB   none      20,800  10,200
//
// ("before": the runtime's limit fixed at the whole budget, the tables
// counted by their estimate.) The resident size no longer depends much on
// the threshold: the runtime's limit holds it. What does is whether
// eviction keeps up: from 0.7 on, writers were refused in some runs.
//
// And with cmd/dboutique/internal/headroom (node/store holding plain keys
// in 256 buckets, deletes leaving tombstones collected every 4096,
// ProcessMeter and a RuntimeLimit as the binary, the whole 64 MiB the
// budget; one writer deleting the oldest keys whenever the meter is above
// the threshold; load average 5 to 7), peak resident size as a fraction
// of the limit, one run without garbage, worst of n with 4 KiB of
// short-lived garbage per write (a server's request buffers):
//
//	threshold   no garbage   4 KiB garbage/write
//	0.5          64%          74% (n=5)
//	0.6          68%          91% (n=8)
//	0.65          -          122% (n=3; 91% and 86% in the others)
//	0.7          80%          99% (n=4)
//	0.75          -           98% (n=3)
//	0.8          88%         117% (n=1)
//	0.9          99%         161% (n=1)
//	1           114%         112% (n=1)
//
// The one spike at 0.65 (the collector fell behind) says that spikes are
// possible below too; 0.6 kept every run of both under the limit and
// refused no write. Counting the tables as they are evicts more than the
// estimate did: the memory of an evicted entry returns only when its
// chunk is compacted (at half dead), so the evictor, seeing it still held
// at the next collection, evicts more (at rest, an allkeys-lru node at
// 64mb holds about 6,000 entries of 1 KiB where a noeviction one refuses
// writes at 13,500).
//
// Before node/store moved its tables off the Go heap (the store's data
// most of the heap, doubled by GOGC between collections; runtime limit
// fixed), the same tool gave, worst of 1 to 6 runs:
//
//	threshold   no garbage   4 KiB garbage/write
//	0.4          77%          96%
//	0.5          95%         101%
//	0.6          96%         110%
//	0.75        100%         110%
//	0.9         104%         114%
//	1           110%         122%
//
// and a bare map[string]string, one run each, no garbage: 98%, 104% and
// 103% of the limit at 0.5, 0.6 and 0.75 with StoreMeter; 94%, 99% and
// 128% with ProcessMeter. StoreMeter, blind to the heap, lets spikes
// through when the collector falls behind (226% once at 0.75 with
// garbage); the process meter sees them and evicts.
//
// # Access tracking
//
// LRU: an array of 32-bit timestamps (tenths of a second since the
// Governor started), a power of two of them sized for twice the expected
// entries (Config.Capacity, at least [MinSlots], at most Config.MaxSlots).
// A touch raises the two slots that the two halves of the entry's mixed
// hash choose to now; the entry's last access is at or before the older of
// its two slots. Picking from samples of 5 among 100k entries, 87% of the
// picks are exact LRU's with the sketch sized for them (2.6 slots an
// entry), 95% with 5.2 slots an entry, 49% with 0.65
// (TestLRUSampledEvictionKeepsHotKeys).
//
// LFU: Redis's logarithmic 8-bit counter (lfu-log-factor 10, decaying by
// one per minute without access), kept in a count-min sketch of four rows
// of 64-bit words, each word five counters and the decay period in which
// they were last decayed. A touch decays the entry's four words and
// raises its counters to the count after the access (conservative
// update); its count is the smallest. Decay per word equals Redis's per
// key, since subtracting with a floor at 0 composes. A write counts as a
// new key does in Redis: LFUInitVal, decaying from the write.
//
// Sketch sizes: 4 bytes a slot for LRU, 8 for LFU; 256 KiB and 512 KiB at
// the least, 16 MiB and 32 MiB at DefaultMaxSlots. StoreMeter does not see
// the sketch, so the Governor adds it to Used.
//
// Errors are the sentinel values in errors.go, wrapped with %w where
// context is added; callers test them with errors.Is.
package memlimit
