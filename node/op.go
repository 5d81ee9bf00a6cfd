package node

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
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// IsWrite reports whether operations of this kind change the store.
func (k Kind) IsWrite() bool {
	switch k {
	case KindCreate, KindPut, KindDelete, KindDrop:
		return true
	}
	return false
}

// Op is one operation on the store. Which fields are used depends on Kind:
//
//	KindCreate, KindDrop, KindKeys, KindOwner:  Bucket
//	KindPut:                                    Bucket, Key, Value
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
	case KindCreate, KindDrop, KindKeys, KindOwner, KindGet, KindDelete, KindPut:
	default:
		return fmt.Errorf("%w: unknown kind %v", ErrInvalidOp, op.Kind)
	}
	if op.Bucket == "" {
		return fmt.Errorf("%w: %v needs a bucket name", ErrInvalidOp, op.Kind)
	}
	switch op.Kind {
	case KindCreate, KindDrop, KindKeys, KindOwner:
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
// KindOwner, nothing for the others.
type Result struct {
	Value string
	Names []string
}
