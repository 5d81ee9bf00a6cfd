package node

import (
	"context"
	"fmt"

	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/node/wire"
	"github.com/dboutique/dboutique/ring"
)

// The messages between nodes, in one place: each type's number, encoding
// and handler. The transport carries opaque request and reply payloads; a
// request's first byte is its type. To add a message: a constant below,
// its encoding in the list, an entry in messages(), and its handler
// (beside the code it serves), with the encoder and decoder in msg.go,
// msg_sync.go or msg_scan.go. A change to an encoding gets a new p2p.ProtocolRPC.
//
//	msgPing:      cluster string, sender member, its incarnation (8 bytes,
//	              big endian), flags byte (pingLeaving, pingVouch,
//	              pingJoined), the sender's wall clock (Unix milliseconds, 8
//	              bytes), a fingerprint of its placement (8 bytes,
//	              Node.layout) (the gossip engine spreads the members);
//	              reply: the same fields for the replier,
//	              with pingVouch set when the replier sees the sender alive
//	              (handlePing, probe.go)
//	msgOp:        epoch (8 bytes), hops byte, an Op (store.Op.AppendBinary);
//	              reply: a reply (handleOp, route.go)
//	msgBuckets:   nothing; reply: a reply whose Result lists local buckets
//	              (handleBuckets, route.go)
//	msgLeave:     a flag, 0 (leaving) or 1 (left, every copy handed off),
//	              then the sender's incarnation (8 bytes); reply: empty
//	              (handleLeave, membership.go)
//	msgBatch:     epoch (8 bytes), hops byte, uvarint count, then each Op as
//	              a uvarint length and the Op; reply: uvarint count, then
//	              each reply as a uvarint length and the reply (handleBatch,
//	              route.go)
//	msgReplicate: bucket string, uvarint count, then writes; a write is a
//	              kind byte, a version (8 bytes) and, for PUT, DELETE and
//	              EVICT, the key string, then (PUT only) the value string and the
//	              expiry (uvarint ms since the Unix epoch, 0: none); for
//	              EXPIRE (the bucket's expiry) the expiry; reply: a reply
//	              (handleReplicate, replicate.go)
//	msgDigest:    epoch (8 bytes; 0: any), bucket string; reply: a digest
//	              status byte (digestNone, digestDiffer, digestLost and a node
//	              name string, or digestCopy and a digest: a meta, then
//	              store.NumShards shard digests of 8 bytes each)
//	              (handleDigest, sync.go)
//	msgPage:      bucket string, shard byte, after string, uvarint max bytes;
//	              reply: more flag, uvarint count, entries (handlePage,
//	              sync.go)
//	msgMerge:     bucket string, a meta, uvarint count, entries;
//	              reply: a reply (handleMerge, sync.go)
//	msgSums:      epoch (8 bytes), done flag, uvarint count, then a bucket
//	              string and a sum (8 bytes) each; reply: agree flag, uvarint
//	              count, then the bucket strings whose copy differs here (or
//	              is missing) (handleSums, sync.go)
//	msgGossip:    a packet of the gossip engine, memberlist's own encoding
//	              (at most gossip.MaxPacket bytes); reply: empty
//	              (handleGossip, gossip.go)
//	msgGossipStream: a stream of the gossip engine: everything the dialer
//	              wrote; reply: everything the other side wrote before it
//	              closed the stream (each at most gossip.MaxStream bytes)
//	              (handleGossipStream, gossip.go)
//	msgScan:      a mode byte, then for scanNames (this node's names) and
//	              scanKeys (a bucket's keys, on its primary; first epoch (8
//	              bytes), hops byte and bucket string): cursor (8 bytes),
//	              uvarint count, type byte, no-values flag, match string;
//	              for scanCount (how many names this node is the primary
//	              of) nothing more; reply: replyOK and a page (full flag,
//	              last hash (8 bytes), uvarint count, then for scanNames a
//	              type byte and a name string each, for scanKeys a key
//	              string and a value string each) or, for scanCount, a
//	              uvarint; or an error reply (handleScan, scan.go; the
//	              encodings in msg_scan.go)
//	msgReplicateBatch: uvarint count, then each message as a uvarint
//	              length and a msgReplicate body (after its type byte);
//	              reply: uvarint count, then each msgReplicate's reply as a
//	              uvarint length and the reply (handleReplicateBatch,
//	              replicate_batch.go)
//
// The parts, with package wire's primitives: a string is a uvarint length,
// then bytes; fixed-size integers are big-endian; a flag is a byte, 0 or 1.
// A member is id string, name string, address count uvarint, addresses; a
// member list is a uvarint count, then members. An entry is key string,
// value string, version (8 bytes), deleted flag, expiry (uvarint ms since
// the Unix epoch, 0: none). A meta is created and dropped (8 bytes each),
// then the version and time of the bucket's expiry (uvarints). A reply is a status byte:
// replyOK, then a store.Result; or replyError, an error code byte
// (replyErrors) and a message string.
const (
	msgPing           byte = 1
	msgOp             byte = 2
	msgBuckets        byte = 3
	msgLeave          byte = 4
	msgBatch          byte = 5
	msgReplicate      byte = 6
	msgDigest         byte = 7
	msgPage           byte = 8
	msgMerge          byte = 9
	msgSums           byte = 10
	msgGossip         byte = 11
	msgGossipStream   byte = 12
	msgScan           byte = 13
	msgReplicateBatch byte = 14

	msgTypes = 15 // one more than the largest type
)

// message is an entry of the table of messages.
type message struct {
	name string // for logs and tests
	// handle answers the message; body is the request after its type
	// byte. An error fails the call (the caller sees the transport's
	// remote error); an outcome the caller must tell apart travels in the
	// reply.
	handle func(n *Node, ctx context.Context, from string, body []byte) ([]byte, error)
}

// messages is the table of the messages between nodes, by type. New copies
// it into the Node.
func messages() [msgTypes]message {
	return [msgTypes]message{
		msgPing:           {"ping", (*Node).handlePing},
		msgOp:             {"op", (*Node).handleOp},
		msgBuckets:        {"buckets", (*Node).handleBuckets},
		msgLeave:          {"leave", (*Node).handleLeave},
		msgBatch:          {"batch", (*Node).handleBatch},
		msgReplicate:      {"replicate", (*Node).handleReplicate},
		msgDigest:         {"digest", (*Node).handleDigest},
		msgPage:           {"page", (*Node).handlePage},
		msgMerge:          {"merge", (*Node).handleMerge},
		msgSums:           {"sums", (*Node).handleSums},
		msgGossip:         {"gossip", (*Node).handleGossip},
		msgGossipStream:   {"gossip-stream", (*Node).handleGossipStream},
		msgScan:           {"scan", (*Node).handleScan},
		msgReplicateBatch: {"replicate-batch", (*Node).handleReplicateBatch},
	}
}

// handle answers a peer's request: the handler the Node gives its
// Transport.
func (n *Node) handle(ctx context.Context, from string, req []byte) ([]byte, error) {
	if len(req) == 0 {
		return nil, fmt.Errorf("%w: empty request", wire.ErrCorrupt)
	}
	if int(req[0]) < len(n.messages) {
		if m := n.messages[req[0]]; m.handle != nil {
			return m.handle(n, ctx, from, req[1:])
		}
	}
	return nil, fmt.Errorf("%w: unknown message type %d", wire.ErrCorrupt, req[0])
}

// Status bytes of a reply.
const (
	replyOK    byte = 0 // a store.Result follows
	replyError byte = 1 // an error code and a message follow
)

// Error codes in replies; the values are wire format.
const (
	codeOther       byte = 0 // no sentinel: the message is all there is
	codeBucket      byte = 1
	codeKey         byte = 2
	codeInvalid     byte = 3
	codeNoOwner     byte = 4
	codeUnreachable byte = 5 // *UnreachableError; the message is the node's name
	codeNoRoute     byte = 6
	codeUnavailable byte = 7
	codeRetired     byte = 8
	codeMemory      byte = 9
)

// replyErrors is the one table between the sentinel errors that cross the
// network and their codes: appendReply reads it one way, decodeReply the
// other. An error matching none is sent as codeOther with its message.
func replyErrors() [8]struct {
	code byte
	err  error
} {
	return [8]struct {
		code byte
		err  error
	}{
		{codeBucket, store.ErrBucketNotFound},
		{codeKey, store.ErrKeyNotFound},
		{codeInvalid, store.ErrInvalidOp},
		{codeNoOwner, ring.ErrNoOwner},
		{codeNoRoute, ErrNoRoute},
		{codeUnavailable, ErrUnavailable},
		{codeRetired, store.ErrRetired},
		{codeMemory, store.ErrOutOfMemory},
	}
}

// Status bytes of a msgDigest reply.
const (
	digestNone   byte = 0 // no copy here
	digestCopy   byte = 1 // a digest follows
	digestDiffer byte = 2 // the replier does not agree to the puller's view
	digestLost   byte = 3 // no copy here, and the copies died with a node: its name follows (lost.go)
)

// Values of msgLeave's flag.
const (
	leaveLeaving   = false // the sender is leaving and handing its copies off
	leaveHandedOff = true  // the sender has handed every copy off
)
