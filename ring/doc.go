// Package ring decides which cluster members hold a bucket.
//
// A [Placement] turns a membership (a list of member names: libp2p peer IDs
// or node names, in any order) into a [Ring], and a Ring answers
// [Ring.Owners]: the members that hold a bucket, its first owner first. The
// package is pure: no I/O, no goroutines, no logging. A Ring is immutable and
// safe for concurrent use, and the same members give the same placement
// whatever their order; when the membership changes, build a new Ring.
//
// There are two placements:
//
//   - [ConsistentPlacement] ([NewConsistent]) hashes bucket names into
//     partitions and spreads the partitions over the members with consistent
//     hashing with bounded loads (github.com/buraksezer/consistent, with
//     xxhash). Owners answers as the library's GetClosestN: the partition's
//     owner, then the members that follow it on a ring ordered by the hash of
//     their names. Lookups read tables built once by Place: they take no lock
//     and allocate only the result. The library's panics and nil results
//     never reach a caller: settings it cannot handle are rejected by
//     NewConsistent, and Place turns any panic into an error.
//
//   - [Ranges] ([ParseRanges]) is the original D-Boutique's letter-range
//     table, such as "a-g=a-g,h-n=h-n,o-u=o-u,v-z=v-z": the first byte of a
//     bucket name picks the node, and when that node is not a member the
//     following entries of the table take over.
//
// Joins and leaves: with consistent hashing, about 1/(N+1) of the buckets
// change first owner when an N-member ring gains a member, most of them to
// the new member. Because of the load bound, a join can also move a few
// partitions between old members (the bound shrinks as members are added);
// a higher Load makes that rarer.
//
// Errors are the sentinel values declared in ring.go, wrapped with %w where
// context is added; callers test them with errors.Is.
package ring
