package node

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/node/wire"
	"github.com/dboutique/dboutique/ring"
)

func TestPingRoundTrip(t *testing.T) {
	for _, p := range []ping{{
		cluster: "prod",
		from:    Member{ID: "id-a", Name: "a", Addrs: []string{"/ip4/127.0.0.1/tcp/1"}, Incarnation: 7},
		joined:  true,
		clock:   1764662400123,
		layout:  0xfeedface,
	}, {
		cluster: "c", from: Member{ID: "i"}, leaving: true, clock: -1,
	}, {
		cluster: "c", from: Member{ID: "i"}, vouch: true,
	}} {
		got, err := decodePing(p.append(nil))
		if err != nil {
			t.Fatal(err)
		}
		if got.cluster != p.cluster || got.from.ID != p.from.ID || !slices.Equal(got.from.Addrs, p.from.Addrs) ||
			got.from.Incarnation != p.from.Incarnation || got.leaving != p.leaving || got.vouch != p.vouch ||
			got.clock != p.clock || got.layout != p.layout || got.joined != p.joined {
			t.Fatalf("round trip of %+v = %+v", p, got)
		}
	}
	// Flags this version does not know are refused.
	b := ping{cluster: "c", from: Member{ID: "i"}}.append(nil)
	flags := len(wire.AppendString(nil, "c")) + len(appendMember(nil, Member{ID: "i"})) + 8
	b[flags] = 0x80
	if _, err := decodePing(b); err == nil {
		t.Error("a ping with unknown flags decoded")
	}
}

func TestBatchRoundTrip(t *testing.T) {
	r := batchRequest{epoch: 42, hops: 1, ops: []store.Op{
		{Kind: store.KindPut, Bucket: "b", Key: "k", Value: "v"},
		{Kind: store.KindGet, Bucket: "b", Key: ""},
	}}
	enc, err := r.append(nil)
	if err != nil || enc[0] != msgBatch {
		t.Fatalf("append: %x, %v", enc, err)
	}
	got, err := decodeBatchRequest(enc[1:], nil)
	if err != nil || got.epoch != 42 || got.hops != 1 || !slices.Equal(got.ops, r.ops) {
		t.Fatalf("round trip = %+v, %v", got, err)
	}
	res := []store.Result{{Value: "v"}, {}}
	errs := []error{nil, store.ErrKeyNotFound}
	enc = appendBatchReply(nil, res, errs)
	gres, gerrs := make([]store.Result, 2), make([]error, 2)
	if err := decodeBatchReply(enc, gres, gerrs); err != nil || gres[0].Value != "v" || !errors.Is(gerrs[1], store.ErrKeyNotFound) {
		t.Fatalf("reply round trip = %+v %v, %v", gres, gerrs, err)
	}
	if err := decodeBatchReply(enc, make([]store.Result, 3), make([]error, 3)); !errors.Is(err, wire.ErrCorrupt) {
		t.Errorf("a reply of 2 for a batch of 3: %v", err)
	}
	// Must fail: truncated, too many operations, an invalid operation.
	for _, b := range [][]byte{
		enc[:1],
		append(make([]byte, 9), 0xff, 0x0f),
		append(make([]byte, 9), 1, 2, 0, 0),
	} {
		if _, err := decodeBatchRequest(b, nil); err == nil {
			t.Errorf("decodeBatchRequest(%x) succeeded", b)
		}
	}
}

func TestReplyRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want error
	}{
		{store.ErrBucketNotFound, store.ErrBucketNotFound},
		{store.ErrKeyNotFound, store.ErrKeyNotFound},
		{store.ErrInvalidOp, store.ErrInvalidOp},
		{ring.ErrNoOwner, ring.ErrNoOwner},
		{ErrNoRoute, ErrNoRoute},
		{&UnreachableError{Node: "h-n"}, ErrUnreachable},
	} {
		_, err := decodeReply(appendReply(nil, store.Result{}, tc.err))
		if !errors.Is(err, tc.want) {
			t.Errorf("%v crossed the network as %v", tc.err, err)
		}
	}
	var ue *UnreachableError
	if _, err := decodeReply(appendReply(nil, store.Result{}, &UnreachableError{Node: "h-n"})); !errors.As(err, &ue) || ue.Node != "h-n" {
		t.Errorf("unreachable node name lost: %v", err)
	}
	_, err := decodeReply(appendReply(nil, store.Result{}, errors.New("disk on fire")))
	var re *remoteError
	if !errors.As(err, &re) || re.Error() != "disk on fire" || errors.Unwrap(err) != nil {
		t.Errorf("other error = %v", err)
	}
	res, err := decodeReply(appendReply(nil, store.Result{Value: "v", Names: []string{"a"}}, nil))
	if err != nil || res.Value != "v" || !slices.Equal(res.Names, []string{"a"}) {
		t.Errorf("result = %+v, %v", res, err)
	}
}

// Leaves that must fail to decode.
func TestLeaveMustFail(t *testing.T) {
	for _, b := range [][]byte{
		nil, {0}, {1, 0, 0, 0, 0, 0, 0, 0}, // too short
		{2, 0, 0, 0, 0, 0, 0, 0, 1},    // flag 2
		{1, 0, 0, 0, 0, 0, 0, 0, 1, 0}, // a byte too many
	} {
		if _, _, err := decodeLeave(b); err == nil {
			t.Errorf("decodeLeave(%x) succeeded", b)
		}
	}
}

// Inputs that must fail to decode, never panic.
func TestMessagesMustFail(t *testing.T) {
	for _, b := range [][]byte{
		nil, {}, {0xff}, {1}, {1, 0}, {2, 5}, {0x80, 0x80},
		{0, 0, 0, 5}, // ping: empty cluster, empty id: no sender
		{1, 'x', 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}, // huge address count
		{2, 0, 0, 0, 0, 0, 0, 0, 1},                  // leave: flag 2
		{1, 0, 0, 0, 0, 0, 0, 0, 1, 0},               // leave: a byte too many
	} {
		if _, err := decodePing(b); err == nil {
			t.Errorf("decodePing(%x) succeeded", b)
		}
		if _, err := decodeOpRequest(b); err == nil {
			t.Errorf("decodeOpRequest(%x) succeeded", b)
		}
		if len(b) > 0 && b[0] <= 1 && len(b) < 3 {
			if _, err := decodeReply(b); err == nil {
				t.Errorf("decodeReply(%x) succeeded", b)
			}
		}
	}

	// The messages of replication and anti-entropy (bodies after the type
	// byte, and replies).
	str := func(s string) []byte { return wire.AppendString(nil, s) }
	uv := func(v uint64) []byte { return binary.AppendUvarint(nil, v) }
	u64 := func(v uint64) []byte { return wire.AppendU64(nil, v) }
	meta := appendMeta(nil, store.BucketMeta{Created: 2, Dropped: 1})
	badFlag := bytes.Join([][]byte{str("k"), str("v"), u64(1), {2}}, nil)
	noVersion := appendEntry(nil, store.Entry{Key: "k", Value: "v"})
	replicate := appendReplicate(nil, "b", syncWrites)[1:]
	digestReply := appendDigestReply(nil, store.Digest{Meta: store.BucketMeta{Created: 1}}, true)
	page := pageRequest{bucket: "b", shard: 1, after: "a", maxBytes: 10}.append(nil)[1:]
	pageReply := appendPageReply(nil, syncEntries, true)
	merge := appendMerge(nil, "b", store.BucketMeta{Created: 1}, syncEntries)[1:]
	sums := appendSums(nil, 7, false, []bucketSum{{"b", 1}})[1:]
	ep := make([]byte, 8) // an epoch
	names := appendNames(nil, []string{"a", "b"})
	for _, tc := range []struct {
		name   string
		decode func([]byte) error
		inputs [][]byte
	}{
		{"replicate", func(b []byte) error { _, _, err := decodeReplicate(b); return err }, [][]byte{
			nil, {0x80, 0}, replicate[:len(replicate)-1], append(slices.Clone(replicate), 0),
			bytes.Join([][]byte{str(""), uv(0)}, nil),                                           // no bucket
			bytes.Join([][]byte{str("b"), uv(maxWrites + 1), make([]byte, 2*maxWrites)}, nil),   // too many writes
			bytes.Join([][]byte{str("b"), uv(1), {byte(store.KindGet)}, u64(1)}, nil),           // not a write
			bytes.Join([][]byte{str("b"), uv(1), {0}, u64(1)}, nil),                             // no kind
			bytes.Join([][]byte{str("b"), uv(1), {byte(store.KindCreate)}, u64(0)}, nil),        // no version
			bytes.Join([][]byte{str("b"), uv(1), {byte(store.KindPut)}, u64(1), str("k")}, nil), // no value
		}},
		{"replicate batch", func(b []byte) error { _, err := decodeReplicateBatch(b); return err }, [][]byte{
			nil, uv(1), append(uv(1), 5, 'a'), append(uv(0), 0), // short, a byte too many
			append(uv(maxReplicaParts+1), make([]byte, maxReplicaParts+1)...), // too many messages
		}},
		{"replicate batch reply", func(b []byte) error { _, err := decodeReplicateBatchReply(b, 2); return err }, [][]byte{
			nil, uv(1), append(uv(3), 0, 0, 0), append(uv(2), 0), append(uv(2), 0, 0, 0), // wrong count, short, a byte too many
		}},
		{"digest request", func(b []byte) error { _, _, err := decodeDigestRequest(b); return err }, [][]byte{
			nil, make([]byte, 7), u64(1), append(u64(1), 5, 'b'), bytes.Join([][]byte{u64(1), str("b"), {0}}, nil),
		}},
		{"digest reply", func(b []byte) error { _, _, err := decodeDigestReply(b); return err }, [][]byte{
			nil, {3}, {2, 0}, {0, 0}, digestReply[:len(digestReply)-8], append(slices.Clone(digestReply), 0),
		}},
		{"page request", func(b []byte) error { _, err := decodePageRequest(b); return err }, [][]byte{
			nil, page[:len(page)-1], append(slices.Clone(page), 0),
			bytes.Join([][]byte{str(""), {0}, str(""), uv(1)}, nil),                // no bucket
			bytes.Join([][]byte{str("b"), {store.NumShards}, str(""), uv(1)}, nil), // no such shard
			bytes.Join([][]byte{str("b"), {0}, str(""), uv(0)}, nil),               // an empty page
		}},
		{"page reply", func(b []byte) error { _, _, err := decodePageReply(b); return err }, [][]byte{
			nil, {2, 0}, {0, 1}, pageReply[:len(pageReply)-1], append(slices.Clone(pageReply), 0),
			bytes.Join([][]byte{{0}, uv(1), noVersion}, nil), bytes.Join([][]byte{{0}, uv(1), badFlag}, nil),
		}},
		{"merge", func(b []byte) error { _, _, _, err := decodeMerge(b); return err }, [][]byte{
			nil, merge[:len(merge)-1], append(slices.Clone(merge), 0),
			bytes.Join([][]byte{str(""), meta, uv(0)}, nil),             // no bucket
			bytes.Join([][]byte{str("b"), meta[:8]}, nil),               // short meta
			bytes.Join([][]byte{str("b"), meta, uv(1), noVersion}, nil), // entry without a version
		}},
		{"sums", func(b []byte) error { _, _, _, err := decodeSums(b); return err }, [][]byte{
			nil, ep[:7], ep, append(slices.Clone(ep), 2, 0), append(slices.Clone(ep), 0, 0x80, 0), append(slices.Clone(ep), 0, 1),
			bytes.Join([][]byte{ep, {0}, uv(1), str("b"), {0, 0, 0, 0}}, nil), append(slices.Clone(sums), 0),
		}},
		{"sums reply", func(b []byte) error { _, _, err := decodeSumsReply(b); return err }, [][]byte{
			nil, {2}, {1}, {1, 1}, append(appendSumsReply(nil, true, []string{"a"}), 0),
		}},
		{"digest reply: lost", func(b []byte) error { _, _, err := decodeDigestReply(b); return err }, [][]byte{
			{digestLost}, {digestLost, 3, 'a'}, append(appendDigestLost(nil, "n1"), 0),
		}},
		{"names", func(b []byte) error { _, err := decodeNames(b); return err }, [][]byte{
			nil, uv(1), append(uv(1), 5, 'a'), append(slices.Clone(names), 0),
		}},
	} {
		for _, b := range tc.inputs {
			if err := tc.decode(b); !errors.Is(err, wire.ErrCorrupt) {
				t.Errorf("%s: decoding %x: %v, want wire.ErrCorrupt", tc.name, b, err)
			}
		}
	}
}

// syncWrites and syncEntries are sample contents of the messages of
// replication and anti-entropy: every kind of write, empty keys and values,
// tombstones.
var (
	syncWrites = []write{
		{kind: store.KindCreate, entry: store.Entry{Version: 1}},
		{kind: store.KindPut, entry: store.Entry{Key: "k", Value: "v", Version: 2}},
		{kind: store.KindPut, entry: store.Entry{Version: 3}},
		{kind: store.KindDelete, entry: store.Entry{Key: "k", Version: 4, Deleted: true}},
		{kind: store.KindDrop, entry: store.Entry{Version: 1 << 60}},
	}
	syncEntries = []store.Entry{
		{Key: "k", Value: "v", Version: 5},
		{Version: 1},
		{Key: "gone", Version: 9, Deleted: true},
	}
)

// TestSyncMessagesRoundTrip: each message of replication and anti-entropy
// decodes to what was encoded.
func TestSyncMessagesRoundTrip(t *testing.T) {
	dg := store.Digest{Meta: store.BucketMeta{Created: 7, Dropped: 3}}
	for i := range dg.Shards {
		dg.Shards[i] = uint64(i) * 0x9e3779b97f4a7c15
	}
	for _, tc := range []struct {
		name  string
		typ   byte // the request's type byte; 0 for a reply
		enc   []byte
		check func(body []byte) error // decodes body and compares
	}{
		{"replicate", msgReplicate, appendReplicate(nil, "b", syncWrites), func(b []byte) error {
			bucket, ws, err := decodeReplicate(b)
			return want(err == nil && bucket == "b" && slices.Equal(ws, syncWrites), bucket, ws, err)
		}},
		{"replicate batch", msgReplicateBatch, appendReplicateBatch(nil, [][]byte{appendReplicate(nil, "a", syncWrites), appendReplicate(nil, "b", nil)}), func(b []byte) error {
			parts, err := decodeReplicateBatch(b)
			if err != nil || len(parts) != 2 {
				return want(false, parts, err)
			}
			a, wa, err1 := decodeReplicate(parts[0])
			bb, wb, err2 := decodeReplicate(parts[1])
			return want(err1 == nil && err2 == nil && a == "a" && slices.Equal(wa, syncWrites) && bb == "b" && len(wb) == 0, a, wa, bb, wb)
		}},
		{"replicate batch reply", 0, appendReplicateBatchReply(nil, [][]byte{{1, 2}, nil, {3}}), func(b []byte) error {
			replies, err := decodeReplicateBatchReply(b, 3)
			return want(err == nil && len(replies) == 3 && bytes.Equal(replies[0], []byte{1, 2}) && len(replies[1]) == 0 && bytes.Equal(replies[2], []byte{3}), replies, err)
		}},
		{"replicate nothing", msgReplicate, appendReplicate(nil, "b", nil), func(b []byte) error {
			bucket, ws, err := decodeReplicate(b)
			return want(err == nil && bucket == "b" && len(ws) == 0, bucket, ws, err)
		}},
		{"digest request", msgDigest, appendDigestRequest(nil, 1<<63+5, "b"), func(b []byte) error {
			epoch, bucket, err := decodeDigestRequest(b)
			return want(err == nil && epoch == 1<<63+5 && bucket == "b", epoch, bucket, err)
		}},
		{"digest reply", 0, appendDigestReply(nil, dg, true), func(b []byte) error {
			got, ok, err := decodeDigestReply(b)
			return want(err == nil && ok && got == dg, got, ok, err)
		}},
		{"digest reply: no copy", 0, appendDigestReply(nil, dg, false), func(b []byte) error {
			got, ok, err := decodeDigestReply(b)
			return want(err == nil && !ok && got == store.Digest{}, got, ok, err)
		}},
		{"digest reply: views differ", 0, []byte{2}, func(b []byte) error {
			_, ok, err := decodeDigestReply(b)
			return want(!ok && errors.Is(err, errViewsDiffer) && errors.Is(err, ErrNoRoute), ok, err)
		}},
		{"page request", msgPage, pageRequest{bucket: "b", shard: store.NumShards - 1, after: "k", maxBytes: 100}.append(nil), func(b []byte) error {
			r, err := decodePageRequest(b)
			return want(err == nil && r == pageRequest{bucket: "b", shard: store.NumShards - 1, after: "k", maxBytes: 100}, r, err)
		}},
		{"page request over the cap", msgPage, pageRequest{bucket: "b", maxBytes: 2 * maxPageBytes}.append(nil), func(b []byte) error {
			r, err := decodePageRequest(b)
			return want(err == nil && r == pageRequest{bucket: "b", maxBytes: maxPageBytes}, r, err)
		}},
		{"page reply", 0, appendPageReply(nil, syncEntries, true), func(b []byte) error {
			es, more, err := decodePageReply(b)
			return want(err == nil && more && slices.Equal(es, syncEntries), es, more, err)
		}},
		{"last page reply", 0, appendPageReply(nil, nil, false), func(b []byte) error {
			es, more, err := decodePageReply(b)
			return want(err == nil && !more && len(es) == 0, es, more, err)
		}},
		{"merge", msgMerge, appendMerge(nil, "b", dg.Meta, syncEntries), func(b []byte) error {
			bucket, m, es, err := decodeMerge(b)
			return want(err == nil && bucket == "b" && m == dg.Meta && slices.Equal(es, syncEntries), bucket, m, es, err)
		}},
		{"sums", msgSums, appendSums(nil, 42, false, []bucketSum{{"a", 1}, {"b", 1 << 63}, {"", 0}}), func(b []byte) error {
			epoch, done, sums, err := decodeSums(b)
			return want(err == nil && epoch == 42 && !done && slices.Equal(sums, []bucketSum{{"a", 1}, {"b", 1 << 63}, {"", 0}}), epoch, sums, err)
		}},
		{"sums: done", msgSums, appendSums(nil, 42, true, nil), func(b []byte) error {
			epoch, done, sums, err := decodeSums(b)
			return want(err == nil && epoch == 42 && done && len(sums) == 0, epoch, done, sums, err)
		}},
		{"sums reply", 0, appendSumsReply(nil, true, []string{"a", "b"}), func(b []byte) error {
			agree, differ, err := decodeSumsReply(b)
			return want(err == nil && agree && slices.Equal(differ, []string{"a", "b"}), agree, differ, err)
		}},
		{"sums reply: other view", 0, appendSumsReply(nil, false, nil), func(b []byte) error {
			agree, differ, err := decodeSumsReply(b)
			return want(err == nil && !agree && len(differ) == 0, agree, differ, err)
		}},
		{"digest reply: lost", 0, appendDigestLost(nil, "n1"), func(b []byte) error {
			_, ok, err := decodeDigestReply(b)
			var cl *copiesLost
			return want(!ok && errors.As(err, &cl) && cl.node == "n1", ok, err)
		}},
		{"leaving", msgLeave, appendLeave(nil, false, 7), func(b []byte) error {
			handedOff, inc, err := decodeLeave(b)
			return want(err == nil && !handedOff && inc == 7, handedOff, inc, err)
		}},
		{"left", msgLeave, appendLeave(nil, true, 1<<63|5), func(b []byte) error {
			handedOff, inc, err := decodeLeave(b)
			return want(err == nil && handedOff && inc == 1<<63|5, handedOff, inc, err)
		}},
		{"names", 0, appendNames(nil, []string{"a", "", "b"}), func(b []byte) error {
			names, err := decodeNames(b)
			return want(err == nil && slices.Equal(names, []string{"a", "", "b"}), names, err)
		}},
		{"no names", 0, appendNames(nil, nil), func(b []byte) error {
			names, err := decodeNames(b)
			return want(err == nil && len(names) == 0, names, err)
		}},
	} {
		body := tc.enc
		if tc.typ != 0 {
			if len(body) == 0 || body[0] != tc.typ {
				t.Errorf("%s: encoded as %x, want type %d first", tc.name, body, tc.typ)
				continue
			}
			body = body[1:]
		}
		if err := tc.check(body); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// want returns nil when ok, and otherwise an error showing got.
func want(ok bool, got ...any) error {
	if ok {
		return nil
	}
	return fmt.Errorf("decoded %+v", got)
}

func FuzzMessages(f *testing.F) {
	f.Add(ping{cluster: "c", from: Member{ID: "i", Name: "n", Addrs: []string{"a"}}}.append(nil))
	b, _ := opRequest{epoch: 7, hops: 1, op: store.Op{Kind: store.KindPut, Bucket: "b", Key: "k", Value: "v"}}.append(nil)
	f.Add(b[1:])
	f.Add(appendReply(nil, store.Result{Names: []string{"x"}}, nil))
	f.Add(appendReply(nil, store.Result{}, &UnreachableError{Node: "n"}))
	b, _ = batchRequest{epoch: 1, hops: 1, ops: []store.Op{{Kind: store.KindGet, Bucket: "b", Key: "k"}, {Kind: store.KindCreate, Bucket: "c"}}}.append(nil)
	f.Add(b[1:])
	f.Add(appendBatchReply(nil, []store.Result{{Value: "v"}, {}}, []error{nil, store.ErrKeyNotFound}))
	f.Add(appendReplicate(nil, "b", syncWrites)[1:])
	f.Add(appendReplicateBatch(nil, [][]byte{appendReplicate(nil, "a", syncWrites), appendReplicate(nil, "b", nil)})[1:])
	f.Add(appendReplicateBatchReply(nil, [][]byte{{0}, {1, 2}}))
	f.Add(appendDigestRequest(nil, 7, "b")[1:])
	f.Add(appendDigestReply(nil, store.Digest{Meta: store.BucketMeta{Created: 2, Dropped: 1}, Shards: [store.NumShards]uint64{3: 4}}, true))
	f.Add(pageRequest{bucket: "b", shard: 3, after: "k", maxBytes: 1 << 20}.append(nil)[1:])
	f.Add(appendPageReply(nil, syncEntries, true))
	f.Add(appendMerge(nil, "b", store.BucketMeta{Created: 5}, syncEntries)[1:])
	f.Add(appendSums(nil, 3, false, []bucketSum{{"a", 1}, {"b", 2}})[1:])
	f.Add(appendSumsReply(nil, true, []string{"a"}))
	f.Add(appendDigestLost(nil, "n2"))
	f.Add(appendNames(nil, []string{"a", "b"}))
	f.Add(appendLeave(nil, true, 9)[1:])
	f.Fuzz(func(t *testing.T, b []byte) {
		if p, err := decodePing(b); err == nil {
			if again, err := decodePing(p.append(nil)); err != nil || again.from.ID != p.from.ID || again.layout != p.layout {
				t.Fatalf("ping does not round-trip: %v", err)
			}
		}
		if r, err := decodeOpRequest(b); err == nil {
			enc, _ := r.append(nil)
			if again, err := decodeOpRequest(enc[1:]); err != nil || again != r {
				t.Fatalf("op request does not round-trip: %v", err)
			}
		}
		_, _ = decodeReply(b)
		if r, err := decodeBatchRequest(b, nil); err == nil {
			enc, _ := r.append(nil)
			again, err := decodeBatchRequest(enc[1:], nil)
			if err != nil || !slices.Equal(again.ops, r.ops) || again.epoch != r.epoch || again.hops != r.hops {
				t.Fatalf("batch request does not round-trip: %v", err)
			}
		}
		for _, n := range []int{0, 1, 2, 3} {
			_ = decodeBatchReply(b, make([]store.Result, n), make([]error, n))
		}
		// The messages of replication and anti-entropy: what decodes
		// encodes back to the same bytes (the page request caps its size,
		// so it round-trips as a value).
		same := func(what string, enc []byte) {
			if !bytes.Equal(enc, b) {
				t.Fatalf("%s does not round-trip: %x became %x", what, b, enc)
			}
		}
		if handedOff, inc, err := decodeLeave(b); err == nil {
			same("leave", appendLeave(nil, handedOff, inc)[1:])
		}
		if bucket, ws, err := decodeReplicate(b); err == nil {
			same("replicate", appendReplicate(nil, bucket, ws)[1:])
		}
		if parts, err := decodeReplicateBatch(b); err == nil {
			msgs := make([][]byte, len(parts))
			for i, p := range parts {
				msgs[i] = append([]byte{msgReplicate}, p...)
			}
			same("replicate batch", appendReplicateBatch(nil, msgs)[1:])
		}
		if replies, err := decodeReplicateBatchReply(b, 2); err == nil {
			same("replicate batch reply", appendReplicateBatchReply(nil, replies))
		}
		if epoch, bucket, err := decodeDigestRequest(b); err == nil {
			same("digest request", appendDigestRequest(nil, epoch, bucket)[1:])
		}
		if dg, ok, err := decodeDigestReply(b); err == nil {
			same("digest reply", appendDigestReply(nil, dg, ok))
		}
		if r, err := decodePageRequest(b); err == nil {
			if again, err := decodePageRequest(r.append(nil)[1:]); err != nil || again != r {
				t.Fatalf("page request %+v does not round-trip: %+v, %v", r, again, err)
			}
		}
		if es, more, err := decodePageReply(b); err == nil {
			same("page reply", appendPageReply(nil, es, more))
		}
		if bucket, m, es, err := decodeMerge(b); err == nil {
			same("merge", appendMerge(nil, bucket, m, es)[1:])
		}
		if epoch, done, sums, err := decodeSums(b); err == nil {
			same("sums", appendSums(nil, epoch, done, sums)[1:])
		}
		if agree, differ, err := decodeSumsReply(b); err == nil {
			same("sums reply", appendSumsReply(nil, agree, differ))
		}
		if names, err := decodeNames(b); err == nil {
			same("names", appendNames(nil, names))
		}
	})
}
