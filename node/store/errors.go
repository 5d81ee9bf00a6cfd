package store

import (
	"errors"
	"fmt"
)

// Sentinel errors returned by the store. Callers compare with errors.Is; the
// client-facing servers map each one to a wire reply.
var (
	// ErrBucketNotFound: the operation names a bucket that does not exist.
	ErrBucketNotFound = errors.New("store: bucket not found")
	// ErrKeyNotFound: a GET names a key the bucket does not hold.
	ErrKeyNotFound = errors.New("store: key not found")
	// ErrInvalidOp: the operation is malformed (unknown kind, empty bucket
	// name, or fields that its kind does not take).
	ErrInvalidOp = errors.New("store: invalid operation")
	// ErrRetired is returned by the versioned writes (ApplyCreate, ApplyDrop,
	// ApplyEntry, Merge) to a copy of a bucket that is being handed off to
	// another node.
	ErrRetired = errors.New("store: bucket copy is being handed off")
	// ErrOutOfMemory: the node is at its memory limit and refuses writes
	// that would add to it (maxmemory-policy noeviction, or eviction
	// cannot keep up).
	ErrOutOfMemory = errors.New("store: out of memory")
	// ErrBucketFull: a bucket's table has no room for another chunk (about
	// 32k of them: 8 GiB of values over 256 KiB, or 32 GiB of small
	// entries, in one bucket); the write is refused and nothing changed.
	ErrBucketFull = errors.New("store: bucket full")
)

// Errors of reads that found their key or bucket expired but still held:
// they are ErrKeyNotFound and ErrBucketNotFound to everyone, and tell a
// bucket's primary to delete what expired before it answers (node's
// reads), so that what a client saw expire stays expired.
var (
	ErrKeyExpired    = fmt.Errorf("%w (expired)", ErrKeyNotFound)
	ErrBucketExpired = fmt.Errorf("%w (expired)", ErrBucketNotFound)
)
