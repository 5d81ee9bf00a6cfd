package node

import (
	"bytes"
	"cmp"
	"errors"
	"slices"
	"testing"

	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/node/wire"
)

// itemsFrom returns n items whose names hash from cursor on, sorted, the
// page ending at the last: a page a member could send.
func itemsFrom(cursor uint64, names ...string) (items []store.ScanItem, last uint64) {
	for _, n := range names {
		if h := store.NameHash(n); h >= cursor {
			items = append(items, store.ScanItem{Name: n, Type: store.TypeHash, Value: ""})
			last = max(last, h)
		}
	}
	return items, last
}

func TestScanMessagesRoundTrip(t *testing.T) {
	for _, r := range []scanRequest{
		{mode: scanNames, req: store.ScanRequest{Cursor: 12345, Count: 10, Match: "a*", Type: store.TypeString}},
		{mode: scanNames, req: store.ScanRequest{Cursor: 1<<64 - 1, Count: store.MaxScanCount}},
		{mode: scanKeys, epoch: 7, hops: 2, bucket: "b", req: store.ScanRequest{Count: 1, NoValues: true, Match: "[a-z]?"}},
		{mode: scanCount},
		{mode: scanBegin},
	} {
		enc := r.append(nil)
		if enc[0] != msgScan {
			t.Fatalf("%+v encoded with type %d", r, enc[0])
		}
		got, err := decodeScanRequest(enc[1:])
		if err != nil || got != r {
			t.Fatalf("%+v decoded as %+v, %v", r, got, err)
		}
	}

	items, last := itemsFrom(0, "x", "y", "z")
	for _, keys := range []bool{false, true} {
		p := store.Page{Items: items, Full: true, Last: last}
		if keys {
			p.Items = slices.Clone(items)
			for i := range p.Items {
				p.Items[i].Type, p.Items[i].Value = store.TypeAny, "value "+p.Items[i].Name
			}
		}
		var got store.Page
		var err error
		mark := scanMark{epoch: 1 << 63, removals: 7}
		if keys {
			got, err = decodeKeysReply(appendKeysReply(nil, p, nil), store.ScanRequest{Count: 3})
		} else {
			var m scanMark
			m, got, err = decodeNamesReply(appendNamesReply(nil, mark, p), store.ScanRequest{Count: 3})
			if m != mark {
				t.Fatalf("mark %+v decoded as %+v", mark, m)
			}
		}
		if err != nil || !slices.Equal(got.Items, p.Items) || got.Full != p.Full || got.Last != p.Last {
			t.Fatalf("keys %v: page %+v decoded as %+v, %v", keys, p, got, err)
		}
	}
	if m, err := decodeMarkReply(appendMarkReply(nil, scanMark{3, 4})); err != nil || m != (scanMark{3, 4}) {
		t.Fatalf("mark decoded as %+v, %v", m, err)
	}
	// Errors travel as the same sentinels.
	_, err := decodeKeysReply(appendKeysReply(nil, store.Page{}, store.ErrBucketNotFound), store.ScanRequest{Count: 1})
	if !errors.Is(err, store.ErrBucketNotFound) {
		t.Fatalf("a page's error decoded as %v", err)
	}
	_, err = decodeKeysReply(appendKeysReply(nil, store.Page{}, &UnreachableError{Node: "n2"}), store.ScanRequest{Count: 1})
	var ue *UnreachableError
	if !errors.As(err, &ue) || ue.Node != "n2" {
		t.Fatalf("an unreachable node decoded as %v", err)
	}
	if _, _, err := decodeNamesReply(appendReply(nil, store.Result{}, ErrUnavailable), store.ScanRequest{Count: 1}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a names reply's error decoded as %v", err)
	}
	if c, err := decodeCountReply(appendCountReply(nil, 123456, nil)); err != nil || c != 123456 {
		t.Fatalf("count decoded as %d, %v", c, err)
	}
	if _, err := decodeCountReply(appendCountReply(nil, 0, ErrUnavailable)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a count's error decoded as %v", err)
	}
}

// TestScanMessagesMustFail: encodings a node refuses, all as corrupt.
func TestScanMessagesMustFail(t *testing.T) {
	good := scanRequest{mode: scanNames, req: store.ScanRequest{Count: 5}}.append(nil)[1:]
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"empty", nil},
		{"unknown mode", []byte{9}},
		{"count with a body", []byte{scanCount, 0}},
		{"begin with a body", []byte{scanBegin, 0}},
		{"truncated", good[:len(good)-1]},
		{"trailing bytes", append(slices.Clone(good), 0)},
		{"count 0", scanRequest{mode: scanNames, req: store.ScanRequest{Count: 0}}.append(nil)[1:]},
		{"count over the cap", scanRequest{mode: scanNames, req: store.ScanRequest{Count: store.MaxScanCount + 1}}.append(nil)[1:]},
		{"unknown type", scanRequest{mode: scanNames, req: store.ScanRequest{Count: 1, Type: 9}}.append(nil)[1:]},
		{"bad flag", func() []byte {
			b := slices.Clone(good)
			b[len(b)-2] = 2 // the no-values flag, before the empty match
			return b
		}()},
		{"a bucket scan without a bucket", scanRequest{mode: scanKeys, req: store.ScanRequest{Count: 1}}.append(nil)[1:]},
	} {
		if r, err := decodeScanRequest(tc.body); !errors.Is(err, wire.ErrCorrupt) {
			t.Errorf("%s: decoded %+v, %v; want ErrCorrupt", tc.name, r, err)
		}
	}

	items, last := itemsFrom(0, "a", "b", "c")
	r := store.ScanRequest{Count: 3}
	names := func(p store.Page) []byte { return appendNamesReply(nil, scanMark{}, p) }
	low := slices.MinFunc(items, func(a, b store.ScanItem) int {
		return cmp.Compare(store.NameHash(a.Name), store.NameHash(b.Name))
	})
	for _, tc := range []struct {
		name  string
		reply []byte
		r     store.ScanRequest
	}{
		{"empty", nil, r},
		{"truncated", names(store.Page{Items: items, Full: true, Last: last})[:21], r},
		{"no mark", appendKeysReply(nil, store.Page{}, nil), r},
		{"a name before the cursor", names(store.Page{Items: items}), store.ScanRequest{Count: 3, Cursor: store.NameHash(low.Name) + 1}},
		{"a name after the end", names(store.Page{Items: items, Full: true, Last: store.NameHash(low.Name)}), r},
		{"a name of no type", names(store.Page{Items: []store.ScanItem{{Name: "a", Type: store.TypeAny}}}), r},
		{"a name of another type", names(store.Page{Items: []store.ScanItem{{Name: "a", Type: store.TypeOther}}}), r},
		{"a result instead of a page", appendReply(nil, store.Result{Count: 1}, nil), r},
		{"too many items", func() []byte {
			b := (scanMark{}).append([]byte{replyOK})
			b = append(b, 0)
			b = wire.AppendU64(b, 0)
			b = append(b, 0x81, 0xb5, 0x01) // 23169 items, over maxPageItems
			return append(b, bytes.Repeat([]byte{1, 0}, 23169)...)
		}(), r},
	} {
		if _, p, err := decodeNamesReply(tc.reply, tc.r); !errors.Is(err, wire.ErrCorrupt) {
			t.Errorf("%s: decoded %+v, %v; want ErrCorrupt", tc.name, p, err)
		}
	}
	for _, b := range [][]byte{nil, {replyOK}, {replyOK, 0x80}, append(appendCountReply(nil, 1, nil), 0), appendReply(nil, store.Result{}, nil)} {
		if c, err := decodeCountReply(b); !errors.Is(err, wire.ErrCorrupt) {
			t.Errorf("count reply %x: %d, %v; want ErrCorrupt", b, c, err)
		}
		if m, err := decodeMarkReply(b); !errors.Is(err, wire.ErrCorrupt) {
			t.Errorf("mark reply %x: %+v, %v; want ErrCorrupt", b, m, err)
		}
	}
	if _, err := decodeKeysReply([]byte{replyOK, 0, 0}, r); !errors.Is(err, wire.ErrCorrupt) {
		t.Errorf("a truncated keys page: %v; want ErrCorrupt", err)
	}
}

// FuzzScanMessages: whatever bytes a peer sends, decoding never panics,
// and what decodes encodes back to the same bytes.
func FuzzScanMessages(f *testing.F) {
	f.Add(scanRequest{mode: scanNames, req: store.ScanRequest{Cursor: 3, Count: 10, Match: "*"}}.append(nil)[1:])
	f.Add(scanRequest{mode: scanKeys, epoch: 1, hops: 1, bucket: "b", req: store.ScanRequest{Count: 1}}.append(nil)[1:])
	f.Add(scanRequest{mode: scanCount}.append(nil)[1:])
	items, last := itemsFrom(0, "a", "b")
	f.Add(appendNamesReply(nil, scanMark{1, 2}, store.Page{Items: items, Full: true, Last: last}))
	f.Add(appendKeysReply(nil, store.Page{Items: items}, nil))
	f.Add(appendCountReply(nil, 42, nil))
	f.Add(appendMarkReply(nil, scanMark{1, 2}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := decodeScanRequest(b); err == nil {
			if enc := r.append(nil)[1:]; !bytes.Equal(enc, b) {
				t.Fatalf("scan request %+v does not round-trip: %x became %x", r, b, enc)
			}
		}
		r := store.ScanRequest{Count: 1}
		if m, p, err := decodeNamesReply(b, r); err == nil {
			if enc := appendNamesReply(nil, m, p); !bytes.Equal(enc, b) {
				t.Fatalf("names reply does not round-trip: %x became %x", b, enc)
			}
		}
		if p, err := decodeKeysReply(b, r); err == nil {
			if enc := appendKeysReply(nil, p, nil); !bytes.Equal(enc, b) {
				t.Fatalf("keys reply does not round-trip: %x became %x", b, enc)
			}
		}
		if m, err := decodeMarkReply(b); err == nil {
			if enc := appendMarkReply(nil, m); !bytes.Equal(enc, b) {
				t.Fatalf("mark reply does not round-trip: %x became %x", b, enc)
			}
		}
		if c, err := decodeCountReply(b); err == nil {
			if enc := appendCountReply(nil, c, nil); !bytes.Equal(enc, b) {
				t.Fatalf("count does not round-trip: %x became %x", b, enc)
			}
		}
	})
}
