// Package node owns a D-Boutique node's data: named buckets held in memory,
// each a map of key to value, and the operations on them.
//
// An operation is a value ([Op]) rather than only a method call, so that it
// can be encoded ([Op.AppendBinary], [DecodeOp]), sent to the node that owns
// its bucket and applied there with [Store.Execute]; its outcome ([Result])
// travels back the same way. Errors are the sentinel values declared in
// errors.go, wrapped with %w where context is added; callers test them with
// errors.Is.
//
// Concurrency: every bucket has its own lock, so operations on different
// buckets never wait for each other and reads of one bucket run in parallel.
package node
