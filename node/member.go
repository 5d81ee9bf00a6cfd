package node

import (
	"cmp"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/dboutique/dboutique/ring"
)

// State is what a node knows of a member's health.
type State uint8

// Member states. Only alive members (and the node itself) are in the ring.
const (
	// StateJoining: heard of (through --join, discovery or another member)
	// but not reached yet.
	StateJoining State = iota + 1
	// StateAlive: answered a probe, or sent one, within Config.DeadAfter.
	StateAlive
	// StateDead: silent for longer than Config.DeadAfter.
	StateDead
	// StateLeft: said it was leaving.
	StateLeft
)

func (s State) String() string {
	switch s {
	case StateJoining:
		return "joining"
	case StateAlive:
		return "alive"
	case StateDead:
		return "dead"
	case StateLeft:
		return "left"
	}
	return "unknown"
}

// Member is one node of the cluster as this node sees it.
type Member struct {
	ID    string   // the libp2p peer ID
	Name  string   // the node's name (--name)
	Addrs []string // where its peer-to-peer port listens (multiaddrs)
	State State
	Self  bool // this node
	// Incarnation is chosen at random each time the node starts, so that a
	// node restarted with the same identity (and an empty store) changes
	// the view and gets its copies back.
	Incarnation uint64
}

func newIncarnation() uint64 { return rand.Uint64() | 1 }

// line formats m for NODES: name, peer ID, addresses, state.
func (m Member) line() string {
	addrs := strings.Join(m.Addrs, ",")
	if addrs == "" {
		addrs = "-"
	}
	name := m.Name
	if name == "" {
		name = "?"
	}
	state := m.State.String()
	if m.Self {
		state += ",self"
	}
	return name + " " + m.ID + " " + addrs + " " + state
}

// entry is the membership table's record of another node.
type entry struct {
	Member
	lastSeen  time.Time // last direct contact: a probe answered or a probe received
	since     time.Time // when State was entered
	probing   bool      // a probe is in flight
	handedOff bool      // left, and said its copies are all handed off
	nextProbe time.Time
}

// view is one immutable placement: the ring built from the alive members,
// and how ring members map back to nodes. Readers load it atomically.
type view struct {
	epoch  uint64            // fingerprint of the membership the ring was built from
	ring   ring.Ring         // nil if placement failed
	err    error             // why the ring is nil
	byKey  map[string]Member // ring member key -> member
	byName bool              // ring keys are node names, not peer IDs
	// wide places buckets on the alive and the dead members: the ring as
	// it was before the deaths. Nil when no member is dead.
	wide *view
	// replaced is done when a newer view replaces this one (a context, so
	// that calls can end with it through context.AfterFunc).
	replaced     context.Context
	markReplaced context.CancelFunc

	// firsts caches primary's answers (bucket name -> Member), for up to
	// maxCachedPrimaries buckets: every request asks, and the ring's
	// answer costs a search and two allocations.
	firsts sync.Map
	cached atomic.Int64
}

// maxCachedPrimaries bounds a view's cache of primaries.
const maxCachedPrimaries = 1 << 16

// primary returns the first owner of bucket.
func (v *view) primary(bucket string) (Member, error) {
	if m, ok := v.firsts.Load(bucket); ok {
		return m.(Member), nil
	}
	owners, err := v.owners(bucket, 1)
	if err != nil {
		return Member{}, err
	}
	if v.cached.Load() < maxCachedPrimaries {
		if _, loaded := v.firsts.LoadOrStore(bucket, owners[0]); !loaded {
			v.cached.Add(1)
		}
	}
	return owners[0], nil
}

// owners returns the first n owners of bucket.
func (v *view) owners(bucket string, n int) ([]Member, error) {
	if v.ring == nil {
		return nil, v.err
	}
	keys, err := v.ring.Owners(bucket, n)
	if err != nil {
		return nil, err
	}
	ms := make([]Member, len(keys))
	for i, k := range keys {
		ms[i] = v.byKey[k]
	}
	return ms, nil
}

// copiesDown returns an UnreachableError when every node that held bucket
// before the latest deaths is dead: its data is lost, or on the other side
// of a partition, and answering NOT FOUND would be wrong.
func (v *view) copiesDown(bucket string, replicas int) error {
	if v.wide == nil {
		return nil
	}
	owners, err := v.wide.owners(bucket, replicas)
	if err != nil || len(owners) == 0 {
		return nil
	}
	for _, m := range owners {
		if m.Self {
			return nil
		}
		for _, a := range v.byKey {
			if a.ID == m.ID {
				return nil
			}
		}
	}
	return &UnreachableError{Node: owners[0].Name}
}

// buildView places the given members (self included, all alive). With
// byName the ring works on names; when two members share a name, the one
// with the lower peer ID takes it.
func buildView(p ring.Placement, byName bool, alive []Member) *view {
	slices.SortFunc(alive, func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
	v := &view{byKey: make(map[string]Member, len(alive)), byName: byName}
	v.replaced, v.markReplaced = context.WithCancel(context.Background())
	keys := make([]string, 0, len(alive))
	h := xxhash.New()
	for _, m := range alive {
		k := m.ID
		if byName {
			k = m.Name
		}
		if _, dup := v.byKey[k]; dup || k == "" {
			continue
		}
		v.byKey[k] = m
		keys = append(keys, k)
		_, _ = h.WriteString(k)
		_, _ = h.WriteString("\x00")
		_, _ = h.WriteString(m.ID)
		_, _ = h.WriteString("\x00")
		_, _ = h.Write(binary.BigEndian.AppendUint64(nil, m.Incarnation))
	}
	v.epoch = h.Sum64()
	v.ring, v.err = p.Place(keys)
	return v
}
