package p2p

import "github.com/libp2p/go-libp2p/core/protocol"

// Stream protocols spoken between D-Boutique nodes. The version is part of
// the ID: a change to a protocol's wire format gets a new ID, so nodes of
// different versions refuse each other's streams instead of misreading them.
const (
	// ProtocolRPC carries node-to-node requests (see rpc.go; the
	// messages themselves are node's, node/messages.go). The host's resource
	// manager gives it much higher stream limits than libp2p's defaults
	// for an unknown protocol. 2.0.0: pings carry vouches, wall clocks
	// and dead members, msgSums the sender's epoch, and msgDigest may
	// answer that the copies were lost. 2.1.0: pings carry a fingerprint
	// of the placement, and goodbyes the sender's incarnation. 3.0.0:
	// membership is gossiped (msgGossip, msgGossipStream carry
	// memberlist's packets and streams) and pings no longer list members.
	// 4.0.0: entries, metas and operations carry expiries. 5.0.0:
	// msgReplicateBatch carries the writes of several buckets at once.
	ProtocolRPC protocol.ID = "/dboutique/rpc/5.0.0"
)
