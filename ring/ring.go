package ring

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
)

var (
	// ErrNoOwner means that no member of the ring holds the bucket. It is
	// wrapped with %w and the bucket name.
	ErrNoOwner = errors.New("ring: no node owns the bucket")
	// ErrInvalidConfig means a bad placement setting, or a bad argument to
	// Owners (an owner count below 1).
	ErrInvalidConfig = errors.New("ring: invalid configuration")
	// ErrInvalidSpec means a letter-range table that does not parse.
	ErrInvalidSpec = errors.New("ring: invalid range spec")
	// ErrInvalidMember means a member name that a ring cannot hold (the
	// empty string).
	ErrInvalidMember = errors.New("ring: invalid member")
	// ErrInvalidBucket means a bucket name that cannot be placed (the empty
	// string).
	ErrInvalidBucket = errors.New("ring: invalid bucket name")
)

// Ring is one placement for one membership. Immutable, safe for concurrent use.
type Ring interface {
	// Owners returns up to n distinct members that hold bucket, the first
	// owner first. It returns fewer than n when the ring has fewer members
	// (or, for a letter-range table, fewer members that the table names).
	// n < 1 is an error (ErrInvalidConfig). An empty bucket name is an
	// error (ErrInvalidBucket). A bucket that no member holds gives
	// ErrNoOwner. The caller owns the returned slice.
	Owners(bucket string, n int) ([]string, error)
	// Members returns the ring's members, sorted and deduplicated. The
	// caller owns the returned slice.
	Members() []string
}

// Placement builds the Ring for a membership.
type Placement interface {
	// Place returns the ring for members. The order of members does not
	// matter and duplicates count once; an empty member name is an error
	// (ErrInvalidMember). No members is not an error: the ring then owns
	// nothing and Owners returns ErrNoOwner.
	Place(members []string) (Ring, error)
	// String describes the placement in a few words, for logs.
	String() string
}

// normalizeMembers returns a sorted, deduplicated copy of members. The input
// slice is not modified.
func normalizeMembers(members []string) ([]string, error) {
	out := slices.Clone(members)
	for i, m := range out {
		if m == "" {
			return nil, fmt.Errorf("%w: member %d of %d is empty", ErrInvalidMember, i+1, len(members))
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// ReservedPrefix begins the names of buckets that a node keeps for its own
// use, such as those holding plain keys; clients cannot name them. The
// letter-range table places them by hash (see Ranges).
const ReservedPrefix = "\x00"

// checkQuery validates the arguments of Ring.Owners.
func checkQuery(bucket string, n int) error {
	if n < 1 {
		return fmt.Errorf("%w: owner count %d, want at least 1", ErrInvalidConfig, n)
	}
	if bucket == "" {
		return fmt.Errorf("%w: empty name", ErrInvalidBucket)
	}
	return nil
}

// maxQuotedBucket is how many bytes of a bucket name an error message shows.
const maxQuotedBucket = 64

// quoteBucket quotes a bucket name for an error message, cutting long names
// so that a client cannot make the node log megabytes.
func quoteBucket(bucket string) string {
	if len(bucket) <= maxQuotedBucket {
		return strconv.Quote(bucket)
	}
	return strconv.Quote(bucket[:maxQuotedBucket]) + "..."
}
