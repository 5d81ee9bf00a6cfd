// Package storetest holds what the tests of code that runs store
// operations share: operations built by kind, and checks that an error is
// exactly the sentinel a test expects. The store's own tests and the
// cluster's (package node) use it, so the two agree on what an outcome is.
package storetest

import (
	"errors"
	"testing"

	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/node/wire"
)

// Operations by kind.
func Create(b string) store.Op    { return store.Op{Kind: store.KindCreate, Bucket: b} }
func Drop(b string) store.Op      { return store.Op{Kind: store.KindDrop, Bucket: b} }
func Keys(b string) store.Op      { return store.Op{Kind: store.KindKeys, Bucket: b} }
func Put(b, k, v string) store.Op { return store.Op{Kind: store.KindPut, Bucket: b, Key: k, Value: v} }
func Get(b, k string) store.Op    { return store.Op{Kind: store.KindGet, Bucket: b, Key: k} }
func Del(b, k string) store.Op    { return store.Op{Kind: store.KindDelete, Bucket: b, Key: k} }
func Buckets() store.Op           { return store.Op{Kind: store.KindBuckets} }

// Sentinels lists the sentinel errors an operation can end with on a
// store, or in decoding one.
func Sentinels() []error {
	return []error{store.ErrBucketNotFound, store.ErrKeyNotFound, store.ErrInvalidOp, wire.ErrCorrupt}
}

// CheckErr reports an error unless err matches want exactly: nil when want
// is nil, otherwise errors.Is(err, want) and no other of Sentinels.
func CheckErr(t testing.TB, what string, err, want error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Errorf("%s: unexpected error %v", what, err)
		}
		return
	}
	if err == nil {
		t.Errorf("%s: got nil error, want %v", what, want)
		return
	}
	for _, s := range Sentinels() {
		if got, exp := errors.Is(err, s), s == want; got != exp {
			t.Errorf("%s: errors.Is(%v, %v) = %v, want %v", what, err, s, got, exp)
		}
	}
}

// MustNil stops the test when err is not nil.
func MustNil(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}
