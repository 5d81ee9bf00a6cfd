package node

import "errors"

// Sentinel errors returned by the store. Callers compare with errors.Is; the
// client-facing servers map each one to a wire reply.
var (
	// ErrBucketNotFound: the operation names a bucket that does not exist.
	ErrBucketNotFound = errors.New("node: bucket not found")
	// ErrKeyNotFound: a GET names a key the bucket does not hold.
	ErrKeyNotFound = errors.New("node: key not found")
	// ErrInvalidOp: the operation is malformed (unknown kind, empty bucket
	// name, or fields that its kind does not take).
	ErrInvalidOp = errors.New("node: invalid operation")
	// ErrCorruptOp: bytes handed to DecodeOp or DecodeResult are not a
	// well-formed encoding, or exceed the decoder's size limits.
	ErrCorruptOp = errors.New("node: corrupt encoding")
)
