package store

import "fmt"

// Kind says what an operation does.
type Kind uint8

// The operations a store executes. The numeric values are part of the
// encoding (see codec.go): append new kinds, never renumber.
const (
	KindInvalid Kind = iota
	// KindCreate creates a bucket; creating an existing bucket keeps its contents.
	KindCreate
	// KindPut sets a key's value in an existing bucket.
	KindPut
	// KindGet reads a key's value.
	KindGet
	// KindDelete removes a key; removing a missing key is not an error.
	KindDelete
	// KindDrop removes a bucket and everything in it.
	KindDrop
	// KindBuckets lists the names of all buckets.
	KindBuckets
	// KindKeys lists the keys of one bucket.
	KindKeys
	// KindNodes lists the cluster's members, one line each (a Node answers
	// it; a bare Store does not).
	KindNodes
	// KindOwner lists the nodes that hold a bucket, first owner first.
	KindOwner
	// KindPutCreate sets a key's value, creating the bucket first if it
	// does not exist (Redis's HSET and SET).
	KindPutCreate
	// KindLen counts the live keys of a bucket.
	KindLen
	// KindGetAll reads every live key of a bucket with its value.
	KindGetAll
	kindEnd // one past the last valid kind
)

func (k Kind) String() string {
	switch k {
	case KindCreate:
		return "CREATE"
	case KindPut:
		return "PUT"
	case KindGet:
		return "GET"
	case KindDelete:
		return "DELETE"
	case KindDrop:
		return "DROP"
	case KindBuckets:
		return "BUCKETS"
	case KindKeys:
		return "KEYS"
	case KindNodes:
		return "NODES"
	case KindOwner:
		return "OWNER"
	case KindPutCreate:
		return "PUTCREATE"
	case KindLen:
		return "LEN"
	case KindGetAll:
		return "GETALL"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// IsWrite reports whether operations of this kind change the store.
func (k Kind) IsWrite() bool {
	switch k {
	case KindCreate, KindPut, KindDelete, KindDrop, KindPutCreate:
		return true
	}
	return false
}

// Op is one operation on the store. Which fields are used depends on Kind:
//
//	KindCreate, KindDrop, KindKeys, KindOwner,
//	KindLen, KindGetAll:                        Bucket
//	KindPut, KindPutCreate:                     Bucket, Key, Value
//	KindGet, KindDelete:                        Bucket, Key
//	KindBuckets, KindNodes:                     none
//
// Keys and values may be empty and may hold any bytes; bucket names may not
// be empty.
type Op struct {
	Kind   Kind
	Bucket string
	Key    string
	Value  string
}

// Validate reports whether op is well formed, wrapping ErrInvalidOp if not.
func (op Op) Validate() error {
	switch op.Kind {
	case KindBuckets, KindNodes:
		if op.Bucket != "" || op.Key != "" || op.Value != "" {
			return fmt.Errorf("%w: %v takes no arguments", ErrInvalidOp, op.Kind)
		}
		return nil
	case KindCreate, KindDrop, KindKeys, KindOwner, KindGet, KindDelete, KindPut,
		KindPutCreate, KindLen, KindGetAll:
	default:
		return fmt.Errorf("%w: unknown kind %v", ErrInvalidOp, op.Kind)
	}
	if op.Bucket == "" {
		return fmt.Errorf("%w: %v needs a bucket name", ErrInvalidOp, op.Kind)
	}
	switch op.Kind {
	case KindCreate, KindDrop, KindKeys, KindOwner, KindLen, KindGetAll:
		if op.Key != "" || op.Value != "" {
			return fmt.Errorf("%w: %v takes only a bucket name", ErrInvalidOp, op.Kind)
		}
	case KindGet, KindDelete:
		if op.Value != "" {
			return fmt.Errorf("%w: %v takes no value", ErrInvalidOp, op.Kind)
		}
	}
	return nil
}

// Result is the outcome of a successful operation: Value for KindGet, Names
// (sorted) for KindBuckets and KindKeys, one line per node for KindNodes and
// KindOwner, keys and values alternating in key order for KindGetAll.
//
// Count says how much a write changed, as Redis counts it: 1 when
// KindCreate made a new bucket, KindPutCreate set a key that had no value,
// KindDelete removed a live key, or KindDrop removed a bucket; 0 otherwise.
// For KindLen it is the number of live keys. KindPut leaves it 0 (counting
// costs a lookup that the text protocol never needs). Writes to one key
// from several clients at once may each count 1: a count is decided when
// the write is ordered, not when the copies apply it.
type Result struct {
	Value string
	Names []string
	Count int
}
