// Package memlimit owns the memory limit of a node (--maxmemory and
// --maxmemory-policy, with Redis's names and meanings): reading sizes and
// policies ([ParseSize], [ParsePolicy]); saying how much memory the node
// uses ([Meter]); deciding when to evict, or to refuse writes
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
// (debug.SetMemoryLimit) is process-wide too: only cmd/dboutique does it.
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
// (runtime.MemStats.HeapAlloc), plus the blocks its tables hold
// (Store.OffHeap), keys of 12 bytes:
//
//	layout                                   heap      tables   per entry  Estimate
//	200k entries of 10 B, 256 buckets         0.9 MB    11.0 MB   37.6      -7%
//	500k entries of 10 B, 256 buckets         0.9 MB    25.2 MB   30.2      +5%
//	700k entries of 10 B, 256 buckets         0.9 MB    31.5 MB   24.2     +18%
//	1M entries of 10 B, 256 buckets           0.9 MB    50.3 MB   29.3      +6%
//	1.4M entries of 10 B, 256 buckets         0.9 MB    62.9 MB   23.6     +19%
//	2M entries of 10 B, 256 buckets           0.9 MB   100.7 MB   28.8      +7%
//	1M entries of 10 B, 1 bucket              0.0 MB    49.3 MB   27.3     +10%
//	1M entries of 1 KiB, 256 buckets          0.9 MB  1103.1 MB   68.0      -3%
//	1M entries of 1 KiB, 1 bucket             0.1 MB  1065.4 MB   29.5      +0%
//	100k buckets of 1 key                   103.8 MB    32.0 MB 1335.7      -6%
//	100k buckets of 3 keys                  103.8 MB    32.0 MB  430.7      +2%
//	100k buckets of 10 keys                 109.7 MB    64.0 MB  151.7      +1%
//	10k buckets of 100 keys                  16.2 MB    53.8 MB   48.0      -5%
//	1k buckets of 1000 keys                   3.5 MB    49.2 MB   30.6      +5%
//	10k buckets of 100 keys of 1 KiB         16.5 MB  1167.4 MB  147.9      -9%
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
// runtime's own metadata) plus the store's tables, which the runtime does
// not see, and the growth of its records since, by the same estimate. It counts everything the process holds (connections,
// replication, the sketch), corrects the estimate at every collection, and
// errs high when the collector runs back to back (objects allocated while
// it marks count as live), which evicts a little early. The runtime's
// memory limit is set from --maxmemory by cmd/dboutique, less the resident
// pages of the executable itself, which the system counts and the runtime
// does not (Config.Reserve): 20.4 MB for an idle node; 16.6 MB at start,
// 20.9 MB after a replicated load, hence a margin of 6 MiB over what is
// measured at start. The idle node's resident size is 24.3 MB, of which
// 3.9 MB anonymous (the Go heap: 2.2 MB).
//
// # Headroom
//
// (Measured before node/store moved its tables off the Go heap, when the
// store's data was most of the heap: the data no longer makes the heap
// grow to twice its size, so half the limit may now be more headroom than
// needed. Not measured again yet.)
//
// Eviction starts at [DefaultThreshold], half of the limit less the
// reserve. Between two collections the heap holds garbage as well as live
// data; with GOGC=100 the collector lets it grow to twice the live heap,
// and the memory limit makes it collect sooner near the limit. With the
// live data at half the limit, the two goals meet at the limit; above,
// the collector runs ever more often, falls behind a fast writer, and the
// resident size passes the limit (the runtime's limit is soft: it lets the
// heap grow rather than spend more than half the CPU collecting).
//
// Measured with cmd/dboutique/internal/headroom: 1 GB written as 1 KiB
// values under fresh keys, the runtime's limit at 64 MiB, the oldest keys
// deleted whenever the meter is above the threshold; peak resident size
// (VmHWM) as a fraction of the limit; on two cores loaded by other work
// (load average 4 to 10), which makes the collector fall behind as it
// would on a busy server. As the binary does (node/store holding plain
// keys in 256 buckets, deletes leaving tombstones collected every 4096,
// ProcessMeter), worst of 1 to 6 runs, without and with 4 KiB of
// short-lived garbage per write (a server's request buffers):
//
//	threshold   no garbage   4 KiB garbage/write
//	0.4          77%          96%
//	0.5          95%         101%
//	0.6          96%         110%
//	0.75        100%         110%
//	0.9         104%         114%
//	1           110%         122%
//
// A bare map[string]string, one run each, no garbage: 98%, 104% and 103%
// of the limit at 0.5, 0.6 and 0.75 with StoreMeter; 94%, 99% and 128%
// with ProcessMeter. StoreMeter, blind to the heap, lets spikes through
// when the collector falls behind (226% once at 0.75 with garbage); the
// process meter sees them and evicts. At 0.5 the peak stayed within 1% of
// the limit in every run, which the binary's reserve margin (about 2 MB
// above the pages measured under load) covers.
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
