// Package p2p owns the libp2p side of a D-Boutique node: the host and its
// transports, the node's identity, the cluster key that makes a cluster a
// private network, discovery of other nodes on the local network, and the
// stream protocols nodes speak to each other.
//
// # Host
//
// NewHost builds a libp2p host for a cluster from a HostConfig: TCP always
// (with port reuse disabled, so two nodes dialing each other at once both
// succeed) and QUIC on a public network; Noise and TLS security; yamux
// multiplexing. Relay, NAT port mapping, hole punching, AutoNAT probing and
// Prometheus metrics are off, and connections are never pruned. Every host
// has its own resource manager (libp2p's limits scaled to the machine, with
// far higher stream limits for ProtocolRPC), so one process can run many
// hosts, as the tests do.
//
// # Identity
//
// A node's peer ID comes from its private key. LoadOrCreateIdentity keeps
// an Ed25519 key in a file, so the peer ID survives restarts; without one
// (HostConfig.Identity nil) every start gets a new peer ID. The file is
// created, never replaced; like the files ReplaceFile writes (the peer
// book, for one), it appears whole or not at all, its data synced to disk
// in a temporary file first.
//
// # Cluster key
//
// A cluster key is a 32-byte pre-shared key: hosts configured with one only
// complete connections with hosts holding the same key (libp2p private
// networks, TCP only). GenerateClusterKey, WriteClusterKey and
// ReadClusterKey handle libp2p's standard swarm.key file format;
// KeyFingerprint names a key in logs without revealing it. A key mismatch
// shows up as an obscure handshake failure; ExplainDialError recognises it
// and wraps ErrClusterKeyMismatch.
//
// # Addresses
//
// FullAddrs lists where a host can be reached as multiaddresses ending in
// /p2p/<peer ID>, the form ParseJoinAddr accepts for joining a cluster.
//
// # Discovery
//
// StartMDNS announces a host with multicast DNS service discovery and
// reports other hosts announcing the same service tag. ServiceTag derives
// the tag from the cluster name and the cluster key's fingerprint, so nodes
// of different clusters on one network never find each other. It wraps
// libp2p's own mDNS discovery (p2p/discovery/mdns), adding a Close that
// waits for the callback.
//
// # Stream protocols
//
// Protocol IDs are constants in protocols.go; a protocol whose wire format
// changes gets a new ID. ProtocolRPC, the request/response protocol between
// nodes, is implemented by RPC: its API in rpc.go, calls and the pool of
// outbound streams in rpc_client.go, inbound streams in rpc_server.go, the
// writer and reader both sides use in rpc_stream.go, and the wire format
// in rpc_frame.go.
//
// RPC keeps a small pool of long-lived streams to each peer (two by
// default), opened when first needed. Each stream carries many requests at
// once, and replies are matched to requests by id. Each stream has one
// writer, which sends queued frames together and flushes when nothing more
// is queued, and one reader. Every frame read has a size cap and
// deadlines, and every write a deadline (package deadline, which textproto
// shares). Incoming requests each run in their own goroutine, up to a
// per-stream limit; a handler panic becomes an error reply. Idle streams
// are closed.
//
// # Transport
//
// Transport ties a host and RPC together into what a node needs (package
// node's Transport interface), with peer IDs and addresses as strings.
//
// # Fault injection
//
// A Gater (HostConfig.Gater, TransportConfig.Gater) refuses chosen peers
// at dial and handshake. Transport.Block blocks peers and closes the
// connections to them, so calls in flight fail at once; Unblock and
// UnblockAll restore them and clear libp2p's dial backoff. testcluster
// partitions real hosts this way.
package p2p
