package node_test

import (
	"errors"
	"testing"

	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/node/wire"
)

// Operations the cluster tests send, by kind.
func create(b string) store.Op    { return store.Op{Kind: store.KindCreate, Bucket: b} }
func drop(b string) store.Op      { return store.Op{Kind: store.KindDrop, Bucket: b} }
func keys(b string) store.Op      { return store.Op{Kind: store.KindKeys, Bucket: b} }
func put(b, k, v string) store.Op { return store.Op{Kind: store.KindPut, Bucket: b, Key: k, Value: v} }
func get(b, k string) store.Op    { return store.Op{Kind: store.KindGet, Bucket: b, Key: k} }
func del(b, k string) store.Op    { return store.Op{Kind: store.KindDelete, Bucket: b, Key: k} }

// sentinels lists the sentinel errors an operation can end with, so a test
// can check that an error matches the one it expects and none of the others.
var sentinels = []error{store.ErrBucketNotFound, store.ErrKeyNotFound, store.ErrInvalidOp, wire.ErrCorrupt}

// checkErr reports an error unless err matches want exactly: nil when want
// is nil, otherwise errors.Is(err, want) and no other sentinel.
func checkErr(t testing.TB, what string, err, want error) {
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
	for _, s := range sentinels {
		if got, exp := errors.Is(err, s), s == want; got != exp {
			t.Errorf("%s: errors.Is(%v, %v) = %v, want %v", what, err, s, got, exp)
		}
	}
}

func mustNil(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}
