package p2p

import "github.com/libp2p/go-libp2p/core/protocol"

// Stream protocols spoken between D-Boutique nodes. The version is part of
// the ID: a change to a protocol's wire format gets a new ID, so nodes of
// different versions refuse each other's streams instead of misreading them.
const (
	// ProtocolRPC carries node-to-node requests (see rpc.go). The host's
	// resource manager gives it much higher stream limits than libp2p's
	// defaults for an unknown protocol.
	ProtocolRPC protocol.ID = "/dboutique/rpc/1.0.0"
)
