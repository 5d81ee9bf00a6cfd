// Package store owns the buckets a node holds in memory: each a map of key
// to value, every key carrying a [Version]. It has no goroutines and does
// no I/O; package node runs it inside a cluster, and a Store alone serves a
// single node's requests just as well.
//
// An operation is a value ([Op]) rather than only a method call, so that it
// can be encoded ([Op.AppendBinary], [DecodeOp]), sent to the node that
// owns its bucket and applied there ([Store.Execute]); its outcome
// ([Result]) travels back the same way. The encodings are built from
// package wire's primitives.
//
// Invariants the store keeps:
//   - Every bucket has its own lock, so operations on different buckets never
//     wait for each other, and reads of one bucket run in parallel.
//   - Every key's state carries a Version, a hybrid logical clock reading
//     ([Clock]); a delete leaves a tombstone and a dropped bucket remembers
//     when. The versioned writes ([Store.ApplyEntry], [Store.ApplyDrop],
//     [Store.Merge]) may be applied in any order and any number of times:
//     the newest version of each key wins, so two copies merged either way
//     end equal and a deleted key does not come back. [Store.Collect]
//     removes tombstones older than the version it is given.
//   - Each bucket's keys sit in [NumShards] shards, each with an XOR digest
//     ([Store.Digest]), so two copies are compared in one number and
//     repaired shard by shard, a page at a time ([Store.Page]). A key's
//     shard is its xxhash modulo NumShards ([ShardOf]): part of what two
//     nodes agree on, never to change.
//
// Layout (table.go, arena.go): a bucket's entries, whatever their shard,
// are packed into one table: byte chunks holding each entry's version
// word (with the tombstone and has-expiry flags), its expiry only when it
// has one, the lengths, the key and the value; an open-addressing index of
// 8-byte slots (32 bits of the key's hash, whose low bits are its shard,
// and where the entry is); and a second index of the entries with an
// expiry. Nothing in a table is a Go pointer per entry, and its blocks
// come from the store's arena, memory mapped outside the Go heap: the
// collector neither scans nor counts the entries, so a store's memory is
// about its data once (not twice, as GOGC lets a heap grow), and a
// collection takes the same time with 10 entries or 10 million. Invariants
// of the layout:
//   - A value or key leaves a table only as a copy (a string); no slice of
//     a table's memory outlives the lock under which it was read, so
//     overwriting, compacting or releasing blocks never changes what a
//     caller holds.
//   - Every hit compares the whole key: keys whose hashes collide take two
//     slots. The shard digests are uint64s in the record, kept as before.
//   - Removing an entry moves no other (it marks the entry dead); only a
//     write or tidy compacts, so a walk over a table that removes what it
//     collected first is safe.
//   - A table that loses its last entry releases all its memory; the arena
//     unmaps its regions once the store is unreachable.
//   - A bucket's table holds at most about 32 GiB (32767 chunks).
//   - A retired copy ([Store.Retire], being handed off to another node)
//     refuses the versioned writes with [ErrRetired].
//
// Listing (scan.go): the keyspace as Redis sees it (buckets are hashes, the
// keys of the buckets named [PlainBucketPrefix]... are strings) is listed a
// page at a time in an order that does not depend on where names are held,
// by [NameHash]; a cursor is a position in that order, so the pages of
// several stores merge ([MergePages]) into one listing of a cluster
// ([Store.ScanCopies], [Store.ScanKeys], [Store.CountNames], [GlobMatch]).
//
// Errors are the sentinel values in errors.go, wrapped with %w where
// context is added; callers test them with errors.Is.
package store
