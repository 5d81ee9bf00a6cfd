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
//     repaired shard by shard, a page at a time ([Store.Page]).
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
