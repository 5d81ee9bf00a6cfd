package node

// Adversarial review of expiry (i14): the encodings of replicated writes,
// merges and pages keep every expiry, and refuse a tombstone with one. (An
// attack that held.)

import (
	"errors"
	"reflect"
	"testing"

	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/node/wire"
)

func TestReviewEncodingsKeepExpiries(t *testing.T) {
	ws := []write{
		{kind: store.KindPut, entry: store.Entry{Key: "k", Value: "v", Version: 7 << 16, Expires: 1_800_000_000_123}},
		{kind: store.KindExpire, entry: store.Entry{Version: 8 << 16, Expires: 1_800_000_000_456}},
		{kind: store.KindExpire, entry: store.Entry{Version: 9 << 16}}, // PERSIST of the bucket
		{kind: store.KindDelete, entry: store.Entry{Key: "k", Deleted: true, Version: 10 << 16}},
		{kind: store.KindEvict, entry: store.Entry{Key: "e", Version: 3 << 16}},
		{kind: store.KindDrop, entry: store.Entry{Version: 11 << 16}},
	}
	msg := appendReplicate(nil, "b", ws)
	bucket, got, err := decodeReplicate(msg[1:])
	if err != nil || bucket != "b" || !reflect.DeepEqual(got, ws) {
		t.Fatalf("replicate round trip = %q %+v, %v; want %+v", bucket, got, err, ws)
	}
	meta := store.BucketMeta{Created: 5 << 16, Dropped: 2 << 16, ExpiresV: 5 << 16, Expires: 1_800_000_000_789}
	es := []store.Entry{
		{Key: "a", Value: "1", Version: 4 << 16, Expires: 1_800_000_001_000},
		{Key: "t", Deleted: true, Version: 4 << 16},
	}
	m := appendMerge(nil, "b", meta, es)
	b2, meta2, es2, err := decodeMerge(m[1:])
	if err != nil || b2 != "b" || meta2 != meta || !reflect.DeepEqual(es2, es) {
		t.Fatalf("merge round trip = %q %+v %+v, %v", b2, meta2, es2, err)
	}
	page := appendPageReply(nil, es, true)
	es3, more, err := decodePageReply(page)
	if err != nil || !more || !reflect.DeepEqual(es3, es) {
		t.Fatalf("page round trip = %+v %v, %v", es3, more, err)
	}
	bad := appendEntries(nil, []store.Entry{{Key: "t", Deleted: true, Version: 4 << 16, Expires: 5}})
	if _, _, err := decodePageReply(append([]byte{0}, bad...)); !errors.Is(err, wire.ErrCorrupt) {
		t.Errorf("a page with a tombstone that has an expiry decodes: %v", err)
	}
	// A hand-off: a copy paged out and merged into an empty store is
	// equal, expiries and all.
	src, dst := store.NewStore(), store.NewStore()
	if _, err := src.Merge("b", meta, es); err != nil {
		t.Fatal(err)
	}
	if err := src.ApplyExpiry("b", 6<<16, 1_800_000_002_000); err != nil {
		t.Fatal(err)
	}
	sd, _ := src.Digest("b")
	if _, err := dst.Merge("b", sd.Meta, nil); err != nil {
		t.Fatal(err)
	}
	for shard := range store.NumShards {
		page, _, _ := src.Page("b", shard, "", 1<<20)
		if _, err := dst.Merge("b", store.BucketMeta{}, page); err != nil {
			t.Fatal(err)
		}
	}
	if dd, _ := dst.Digest("b"); dd != sd {
		t.Errorf("a copy paged and merged differs: meta %+v, want %+v", dd.Meta, sd.Meta)
	}
}
