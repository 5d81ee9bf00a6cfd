package node

import (
	"errors"
	"slices"
	"testing"

	"github.com/dboutique/dboutique/ring"
)

func TestPingRoundTrip(t *testing.T) {
	p := ping{
		cluster: "prod",
		from:    Member{ID: "id-a", Name: "a", Addrs: []string{"/ip4/127.0.0.1/tcp/1"}},
		members: []Member{{ID: "id-b", Name: "b"}, {ID: "id-c", Name: "c", Addrs: []string{"x", "y"}}},
	}
	got, err := decodePing(p.append(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got.cluster != p.cluster || got.from.ID != "id-a" || !slices.Equal(got.from.Addrs, p.from.Addrs) ||
		len(got.members) != 2 || got.members[1].Name != "c" || !slices.Equal(got.members[1].Addrs, []string{"x", "y"}) {
		t.Fatalf("round trip = %+v", got)
	}
}

func TestBatchRoundTrip(t *testing.T) {
	r := batchRequest{epoch: 42, hops: 1, ops: []Op{
		{Kind: KindPut, Bucket: "b", Key: "k", Value: "v"},
		{Kind: KindGet, Bucket: "b", Key: ""},
	}}
	enc, err := r.append(nil)
	if err != nil || enc[0] != msgBatch {
		t.Fatalf("append: %x, %v", enc, err)
	}
	got, err := decodeBatchRequest(enc[1:], nil)
	if err != nil || got.epoch != 42 || got.hops != 1 || !slices.Equal(got.ops, r.ops) {
		t.Fatalf("round trip = %+v, %v", got, err)
	}
	res := []Result{{Value: "v"}, {}}
	errs := []error{nil, ErrKeyNotFound}
	enc = appendBatchReply(nil, res, errs)
	gres, gerrs := make([]Result, 2), make([]error, 2)
	if err := decodeBatchReply(enc, gres, gerrs); err != nil || gres[0].Value != "v" || !errors.Is(gerrs[1], ErrKeyNotFound) {
		t.Fatalf("reply round trip = %+v %v, %v", gres, gerrs, err)
	}
	if err := decodeBatchReply(enc, make([]Result, 3), make([]error, 3)); !errors.Is(err, ErrCorruptOp) {
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
		{ErrBucketNotFound, ErrBucketNotFound},
		{ErrKeyNotFound, ErrKeyNotFound},
		{ErrInvalidOp, ErrInvalidOp},
		{ring.ErrNoOwner, ring.ErrNoOwner},
		{ErrNoRoute, ErrNoRoute},
		{&UnreachableError{Node: "h-n"}, ErrUnreachable},
	} {
		_, err := decodeReply(appendReply(nil, Result{}, tc.err))
		if !errors.Is(err, tc.want) {
			t.Errorf("%v crossed the network as %v", tc.err, err)
		}
	}
	var ue *UnreachableError
	if _, err := decodeReply(appendReply(nil, Result{}, &UnreachableError{Node: "h-n"})); !errors.As(err, &ue) || ue.Node != "h-n" {
		t.Errorf("unreachable node name lost: %v", err)
	}
	_, err := decodeReply(appendReply(nil, Result{}, errors.New("disk on fire")))
	var re *RemoteError
	if !errors.As(err, &re) || re.Msg != "disk on fire" {
		t.Errorf("other error = %v", err)
	}
	res, err := decodeReply(appendReply(nil, Result{Value: "v", Names: []string{"a"}}, nil))
	if err != nil || res.Value != "v" || !slices.Equal(res.Names, []string{"a"}) {
		t.Errorf("result = %+v, %v", res, err)
	}
}

// Inputs that must fail to decode, never panic.
func TestMessagesMustFail(t *testing.T) {
	for _, b := range [][]byte{
		nil, {}, {0xff}, {1}, {1, 0}, {2, 5}, {0x80, 0x80},
		{0, 0, 0, 5}, // ping: empty cluster, empty id: no sender
		{1, 'x', 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}, // huge address count
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
}

func FuzzMessages(f *testing.F) {
	f.Add(ping{cluster: "c", from: Member{ID: "i", Name: "n", Addrs: []string{"a"}}}.append(nil))
	b, _ := opRequest{epoch: 7, hops: 1, op: Op{Kind: KindPut, Bucket: "b", Key: "k", Value: "v"}}.append(nil)
	f.Add(b[1:])
	f.Add(appendReply(nil, Result{Names: []string{"x"}}, nil))
	f.Add(appendReply(nil, Result{}, &UnreachableError{Node: "n"}))
	b, _ = batchRequest{epoch: 1, hops: 1, ops: []Op{{Kind: KindGet, Bucket: "b", Key: "k"}, {Kind: KindCreate, Bucket: "c"}}}.append(nil)
	f.Add(b[1:])
	f.Add(appendBatchReply(nil, []Result{{Value: "v"}, {}}, []error{nil, ErrKeyNotFound}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if p, err := decodePing(b); err == nil {
			if again, err := decodePing(p.append(nil)); err != nil || again.from.ID != p.from.ID || len(again.members) != len(p.members) {
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
			_ = decodeBatchReply(b, make([]Result, n), make([]error, n))
		}
	})
}
