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
// [EntryOverhead] (88 bytes); [BucketOverhead] (1270) per bucket and
// [MapOverhead] (320) per shard map in use ([Footprint.Estimate]). Nothing
// process-wide is read, so that nodes sharing a test process each count
// their own. The constants were measured on node/store with
// runtime.MemStats (the heap after two full collections, before and after
// filling a store; TestMeasureOverhead, Go 1.26, amd64), keys of 12 bytes:
//
//	layout                                   heap       per entry  Estimate
//	200k entries of 10 B, 256 buckets         21.7 MB    86.3       +27%
//	500k entries of 10 B, 256 buckets         54.2 MB    86.4       +12%
//	1M entries of 10 B, 256 buckets          109.5 MB    87.5        +6%
//	1.4M entries of 10 B, 256 buckets        134.8 MB    74.3       +18%
//	2M entries of 10 B, 256 buckets          226.8 MB    91.4        -1%
//	1M entries of 10 B, 1 bucket             132.6 MB   110.6       -17%
//	1M entries of 1 KiB, 256 buckets        1117.5 MB    81.5        +1%
//	1M entries of 1 KiB, 1 bucket           1140.5 MB   104.5        -1%
//	100k buckets of 1 key                    169.4 MB  1671.8        +0%
//	100k buckets of 3 keys                   253.9 MB   824.5        +0%
//	100k buckets of 10 keys                  531.2 MB   509.2        +1%
//	10k buckets of 100 keys                  247.4 MB   225.4       +15%
//
// ("per entry" is the heap beyond the bytes of keys and values.) An
// entry's share of a big map is its 40-byte slot and control byte over the
// map's load, which swings between 7/16 and 7/8 as the map doubles: 74 to
// 111 bytes measured, with the rounding of short keys and values to the
// allocator's size classes; EntryOverhead is the mean. A bucket costs its
// record (64 shard headers, the lock and counts: 1152 bytes) and its entry
// in the store's directory; and each of its shards in use a map of 8 slots
// at least (about 320 bytes), which makes a bucket of a few keys cost
// hundreds of bytes per key. BucketOverhead and MapOverhead are fitted to
// the buckets of 1 and 10 keys. The model overcharges entries in maps of
// 9 to 60 entries (those slots are in the map's first group already) and
// undercharges a map just after it doubled: from -17% to +27% over these
// layouts. TestOverheadConstants checks every run that the constants
// still hold (within -25% and +50%); run MEMLIMIT_MEASURE=1 go test -run
// MeasureOverhead -v ./node/memlimit when the store's layout changes.
//
// The binary, alone in its process, uses [ProcessMeter]: what the runtime
// measured at the last collection (the live heap, goroutine stacks, the
// runtime's own metadata) plus the store's growth since, by the same
// estimate. It counts everything the process holds (connections,
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
