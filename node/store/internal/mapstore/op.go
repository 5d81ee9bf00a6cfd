package mapstore

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
	// KindSet sets a key's value as Redis's SET with options does (NX, XX,
	// GET, KEEPTTL, an expiry), creating the bucket if needed.
	KindSet
	// KindExpire sets the expiry of a key, or of the bucket with
	// FlagBucket (EXPIRE, HEXPIRE, with NX, XX, GT, LT); an expiry not in
	// the future deletes.
	KindExpire
	// KindPersist removes the expiry of a key, or of the bucket with
	// FlagBucket.
	KindPersist
	// KindTTL reads how long a key, or the bucket with FlagBucket, has to
	// live.
	KindTTL
	// KindGetEx reads a key's value and sets or, with FlagPersist,
	// removes its expiry (GETEX).
	KindGetEx
	// KindReclaim deletes a key, or drops the bucket with FlagBucket, if
	// it has expired: how the primary gives expired entries' memory back.
	// Expires, when set, is when it was found expired (ms since the Unix
	// epoch): it is judged expired at that time at the latest, whatever
	// the clock of the primary that runs it says.
	KindReclaim
	// KindEvict removes a key to bring a node under its memory limit, as
	// its primary decided: from every copy, without a tombstone (which
	// would hold memory).
	KindEvict
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
	case KindSet:
		return "SET"
	case KindExpire:
		return "EXPIRE"
	case KindPersist:
		return "PERSIST"
	case KindTTL:
		return "TTL"
	case KindGetEx:
		return "GETEX"
	case KindReclaim:
		return "RECLAIM"
	case KindEvict:
		return "EVICT"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// IsWrite reports whether operations of this kind change the store.
func (k Kind) IsWrite() bool {
	switch k {
	case KindCreate, KindPut, KindDelete, KindDrop, KindPutCreate,
		KindSet, KindExpire, KindPersist, KindGetEx, KindReclaim, KindEvict:
		return true
	}
	return false
}

// ReadsFirst reports whether a write of this kind decides what it writes
// from the state it finds (SET NX, EXPIRE GT, ...): such writes are
// ordered alone, so that nothing changes that state meanwhile.
func (k Kind) ReadsFirst() bool {
	switch k {
	case KindSet, KindExpire, KindPersist, KindGetEx, KindReclaim, KindEvict:
		return true
	}
	return false
}

// Flags modify an operation: the options of Redis's SET, EXPIRE and GETEX,
// and whether it is about a bucket rather than a key.
type Flags uint16

const (
	// FlagNX: only when the key does not exist (SET), or has no expiry
	// (EXPIRE).
	FlagNX Flags = 1 << iota
	// FlagXX: only when the key exists (SET), or has an expiry (EXPIRE).
	FlagXX
	// FlagGT: only when the new expiry is later than the present one (no
	// expiry counts as infinitely late).
	FlagGT
	// FlagLT: only when the new expiry is earlier than the present one.
	FlagLT
	// FlagKeepTTL: SET keeps the key's expiry.
	FlagKeepTTL
	// FlagGet: SET answers the key's old value.
	FlagGet
	// FlagPersist: GETEX removes the key's expiry.
	FlagPersist
	// FlagRelative: Expires counts milliseconds from when the bucket's
	// primary runs the operation, not from the Unix epoch.
	FlagRelative
	// FlagBucket: EXPIRE, PERSIST, TTL and RECLAIM act on the bucket
	// itself, not on a key of it.
	FlagBucket
	flagsEnd // one past the last flag
)

// ExpiresAt returns when op makes its key expire, given the time now (ms
// since the Unix epoch): 0 for no expiry. An expiry that would be 0 or
// negative (a time before 1970) is 1, long past.
func (op Op) ExpiresAt(now int64) int64 {
	if op.Expires == 0 && op.Flags&FlagRelative == 0 {
		return 0
	}
	at := op.Expires
	if op.Flags&FlagRelative != 0 {
		at = now + op.Expires
		if op.Expires > 0 && at < now { // overflow
			at = maxExpires
		}
	}
	return min(max(at, 1), maxExpires)
}

// maxExpires is the latest expiry the store holds (about the year 292278994
// in milliseconds; anything later is as good as never, but stays an expiry).
const maxExpires = 1<<63 - 1

// Op is one operation on the store. Which fields are used depends on Kind:
//
//	KindCreate, KindDrop, KindKeys, KindOwner,
//	KindLen, KindGetAll:                        Bucket
//	KindPut, KindPutCreate:                     Bucket, Key, Value
//	KindGet, KindDelete:                        Bucket, Key
//	KindBuckets, KindNodes:                     none
//	KindSet:                                    Bucket, Key, Value, Expires, Flags
//	KindExpire:                                 Bucket, Key, Expires, Flags
//	KindPersist, KindTTL:                       Bucket, Key, Flags (FlagBucket)
//	KindReclaim:                                Bucket, Key, Flags (FlagBucket), Expires
//	KindGetEx:                                  Bucket, Key, Expires, Flags
//	KindEvict:                                  Bucket, Key
//
// KindPut and KindPutCreate take Expires and FlagRelative too: the value
// expires then (0: it has no expiry, and loses one it had).
//
// Keys and values may be empty and may hold any bytes; bucket names may not
// be empty.
type Op struct {
	Kind   Kind
	Bucket string
	Key    string
	Value  string
	// Expires is an expiry: milliseconds since the Unix epoch, or from
	// when the primary runs the operation with FlagRelative. 0: none.
	Expires int64
	Flags   Flags
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
		KindPutCreate, KindLen, KindGetAll, KindSet, KindExpire, KindPersist, KindTTL,
		KindGetEx, KindReclaim, KindEvict:
	default:
		return fmt.Errorf("%w: unknown kind %v", ErrInvalidOp, op.Kind)
	}
	if op.Bucket == "" {
		return fmt.Errorf("%w: %v needs a bucket name", ErrInvalidOp, op.Kind)
	}
	if err := op.validateExpiry(); err != nil {
		return err
	}
	switch op.Kind {
	case KindCreate, KindDrop, KindKeys, KindOwner, KindLen, KindGetAll:
		if op.Key != "" || op.Value != "" {
			return fmt.Errorf("%w: %v takes only a bucket name", ErrInvalidOp, op.Kind)
		}
	case KindGet, KindDelete, KindExpire, KindPersist, KindTTL, KindGetEx, KindReclaim, KindEvict:
		if op.Value != "" {
			return fmt.Errorf("%w: %v takes no value", ErrInvalidOp, op.Kind)
		}
	}
	return nil
}

// validateExpiry checks op's expiry and flags against its kind.
func (op Op) validateExpiry() error {
	var allowed Flags
	switch op.Kind {
	case KindPut, KindPutCreate:
		allowed = FlagRelative
	case KindSet:
		allowed = FlagNX | FlagXX | FlagKeepTTL | FlagGet | FlagRelative
	case KindExpire:
		allowed = FlagNX | FlagXX | FlagGT | FlagLT | FlagRelative | FlagBucket
	case KindPersist, KindTTL, KindReclaim:
		allowed = FlagBucket
	case KindGetEx:
		allowed = FlagPersist | FlagRelative
	}
	if op.Flags&^allowed != 0 {
		return fmt.Errorf("%w: %v does not take flags %#x", ErrInvalidOp, op.Kind, uint16(op.Flags&^allowed))
	}
	if op.Expires != 0 && op.Kind != KindPut && op.Kind != KindPutCreate && op.Kind != KindSet &&
		op.Kind != KindExpire && op.Kind != KindGetEx && op.Kind != KindReclaim {
		return fmt.Errorf("%w: %v takes no expiry", ErrInvalidOp, op.Kind)
	}
	f := op.Flags
	switch {
	case f&FlagNX != 0 && f&(FlagXX|FlagGT|FlagLT) != 0, f&FlagGT != 0 && f&FlagLT != 0:
		return fmt.Errorf("%w: NX and XX, GT or LT options at the same time are not compatible", ErrInvalidOp)
	case f&FlagKeepTTL != 0 && (op.Expires != 0 || f&FlagRelative != 0):
		return fmt.Errorf("%w: KEEPTTL with an expiry", ErrInvalidOp)
	case f&FlagPersist != 0 && (op.Expires != 0 || f&FlagRelative != 0):
		return fmt.Errorf("%w: PERSIST with an expiry", ErrInvalidOp)
	case f&FlagBucket != 0 && op.Key != "":
		return fmt.Errorf("%w: %v of a bucket takes no key", ErrInvalidOp, op.Kind)
	case op.Expires < 0 && f&FlagRelative == 0:
		return fmt.Errorf("%w: expiry %d before 1970", ErrInvalidOp, op.Expires)
	case op.Kind == KindExpire && op.Expires == 0 && f&FlagRelative == 0:
		return fmt.Errorf("%w: EXPIRE without an expiry", ErrInvalidOp)
	}
	return nil
}

// Result is the outcome of a successful operation: Value for KindGet, Names
// (sorted) for KindBuckets and KindKeys, one line per node for KindNodes and
// KindOwner, keys and values alternating in key order for KindGetAll.
//
// KindSet: Count has bit 0 set when the value was written and bit 1 when
// the key had a value before; Value is the old value with FlagGet. KindExpire:
// Count is 0 when a condition (NX, XX, GT, LT) kept the expiry, 1 when it
// was set, 2 when it was not in the future and the key or bucket was
// deleted. KindPersist: Count is 1 when an expiry was removed. KindTTL:
// Value is the milliseconds left, in decimal, or "" when there is no
// expiry. KindGetEx: Value is the value. KindReclaim: Count is 1 when
// something expired was deleted.
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
