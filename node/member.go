package node

import (
	"math/rand/v2"
	"strings"
	"time"
)

// State is what a node knows of a member's health.
type State uint8

// Member states. Only alive members (and the node itself) are in the ring.
const (
	// StateJoining: heard of (through --join, discovery or another member)
	// but not reached yet.
	StateJoining State = iota + 1
	// StateAlive: the gossip engine holds it alive (or suspect), and it
	// answered this node's ping (membership.go).
	StateAlive
	// StateDead: the gossip engine declared it dead (or its clock was
	// found too far off).
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
	// Suspect: alive, but the gossip engine suspects it now (it did not
	// answer a probe; it is declared dead unless it refutes in time).
	Suspect bool
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
	if m.Suspect {
		state += ",suspect"
	}
	if m.Self {
		state += ",self"
	}
	return name + " " + m.ID + " " + addrs + " " + state
}

// entry is the membership table's record of another node.
type entry struct {
	Member
	since     time.Time // when State was entered
	probing   bool      // a probe is in flight
	handedOff bool      // left, and said its copies are all handed off
	// leavingSeen is when the member, having left, was last heard from:
	// it goes on probing while it hands its copies off.
	leavingSeen time.Time
	nextProbe   time.Time
	// vouchedAt is when this node sent the latest probe that the member
	// answered with a vouch (Node.sinceStart); vouchedFor is when this
	// node last vouched for the member (lease.go).
	vouchedAt     time.Duration
	vouchedFor    time.Duration
	refusedLogged time.Time // when a refusal (clock skew, another cluster) was last logged
	// gossip: the gossip engine holds the member alive (or suspect). A
	// member is alive in the table only while it does (membership.go).
	gossip bool
	// failingSince is when this node's pings to the member began to fail
	// (zero while they are answered): one this node cannot reach for
	// twice DeadAfter is dead here, whatever the engine holds
	// (membership.go, unreachableAfter).
	failingSince time.Time
	// metaLife is the life (incarnation) the engine's metadata last gave:
	// while it differs from Incarnation, the member is pinged each tick.
	metaLife uint64
	// admitted: it answered this node's ping, and becomes alive with the
	// next view (placeAdmittedLocked).
	admitted bool
	// contacting: the engine is contacting the member (joinSoon).
	contacting bool
	// booked: the last save of the peer book listed the member. A node
	// vouches for a member only then (with a PeerBook), so that after a
	// restart it knows every member it may have vouched for.
	booked bool
}
