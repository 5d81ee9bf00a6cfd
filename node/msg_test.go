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
	})
}
