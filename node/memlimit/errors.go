package memlimit

import "errors"

// Sentinel errors of the package; errors that add context wrap them with
// %w, so callers test them with errors.Is.
var (
	// ErrInvalidSize: a size such as "64mb" could not be read.
	ErrInvalidSize = errors.New("memlimit: invalid size")
	// ErrUnknownPolicy: a policy name that is not one of Redis's.
	ErrUnknownPolicy = errors.New("memlimit: unknown policy")
	// ErrInvalidConfig: a Config field is out of range.
	ErrInvalidConfig = errors.New("memlimit: invalid configuration")
)
