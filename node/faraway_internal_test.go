package node

import (
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/dboutique/dboutique/node/gossip"
	"github.com/dboutique/dboutique/node/wire"
)

func TestPeerStateRoundTrip(t *testing.T) {
	peers := []Member{
		{ID: "id-2", Name: "n2", Addrs: []string{"/ip4/10.0.0.2/tcp/7000"}},
		{ID: "id-4", Name: "", Addrs: []string{"/ip4/10.0.0.4/tcp/7000", "/ip6/::1/tcp/7000"}},
	}
	cluster, layout, got, err := decodePeerState(appendPeerState(nil, "c", 42, peers))
	if err != nil || cluster != "c" || layout != 42 || !reflect.DeepEqual(got, peers) {
		t.Fatalf("round trip = %q %d %+v, %v; want c 42 %+v", cluster, layout, got, err, peers)
	}
	// Too many addresses: the first maxToldAddrs are told.
	many := Member{ID: "id-9", Name: "n9"}
	for i := range maxToldAddrs + 3 {
		many.Addrs = append(many.Addrs, fmt.Sprintf("/ip4/10.0.0.%d/tcp/7000", i))
	}
	_, _, got, err = decodePeerState(appendPeerState(nil, "c", 1, []Member{many}))
	if err != nil || len(got) != 1 || !reflect.DeepEqual(got[0].Addrs, many.Addrs[:maxToldAddrs]) {
		t.Fatalf("a member with %d addresses: %+v, %v", len(many.Addrs), got, err)
	}
	// Members that would take it over gossip.MaxState are left out.
	var big []Member
	for i := range maxToldPeers {
		big = append(big, Member{ID: fmt.Sprintf("id-%d", i), Name: strings.Repeat("x", 1000), Addrs: []string{"/a"}})
	}
	b := appendPeerState(nil, "c", 1, big)
	_, _, got, err = decodePeerState(b)
	if err != nil || len(b) > gossip.MaxState || len(got) == 0 || len(got) >= len(big) {
		t.Fatalf("%d members of 1 kB each: %d bytes, %d decoded, %v", len(big), len(b), len(got), err)
	}
}

// Peer states that must fail to decode.
func TestPeerStateMustFail(t *testing.T) {
	good := appendPeerState(nil, "c", 1, []Member{{ID: "id-2", Name: "n2", Addrs: []string{"/a"}}})
	header := func(count uint64) []byte {
		b := append([]byte{peersVersion}, wire.AppendString(nil, "c")...)
		b = wire.AppendU64(b, 1)
		return binary.AppendUvarint(b, count)
	}
	tooMany := header(maxToldPeers + 1)
	for range maxToldPeers + 1 {
		tooMany = append(tooMany, wire.AppendString(wire.AppendString(nil, "i"), "n")...)
		tooMany = append(tooMany, 0)
	}
	manyAddrs := append(header(1), wire.AppendString(wire.AppendString(nil, "i"), "n")...)
	manyAddrs = binary.AppendUvarint(manyAddrs, maxToldAddrs+1)
	for range maxToldAddrs + 1 {
		manyAddrs = append(manyAddrs, wire.AppendString(nil, "/a")...)
	}
	for name, b := range map[string][]byte{
		"empty":               nil,
		"other version":       append([]byte{peersVersion + 1}, good[1:]...),
		"truncated":           good[:len(good)-1],
		"trailing bytes":      append(append([]byte{}, good...), 0),
		"count over the rest": header(1000),
		"too many members":    tooMany,
		"too many addresses":  manyAddrs,
	} {
		if _, _, _, err := decodePeerState(b); !errors.Is(err, wire.ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
}
