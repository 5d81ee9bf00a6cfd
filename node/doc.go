// Package node owns a D-Boutique node: its buckets, held in memory, each a
// map of key to value; the cluster's membership as the node sees it; and
// the routing of every operation to the node that holds its bucket.
//
// # Data
//
// An operation is a value ([Op]) rather than only a method call, so that it
// can be encoded ([Op.AppendBinary], [DecodeOp]), sent to the node that owns
// its bucket and applied there with [Store.Execute]; its outcome ([Result])
// travels back the same way. Every bucket of a [Store] has its own lock, so
// operations on different buckets never wait for each other and reads of
// one bucket run in parallel.
//
// # Cluster
//
// A [Node] ([New], then [Node.Start]) serves as a textproto Executor. It
// talks to other nodes only through the small [Transport] interface it
// declares (package p2p implements it over libp2p; the tests use an
// in-memory one), and places buckets with a ring.Placement.
//
// Membership: every member is probed each Config.ProbeInterval with a ping
// that carries the members the sender sees alive, and the reply carries the
// other side's list, so joining through any one node is enough to learn
// them all. Only direct contact makes a member alive; gossip only
// introduces it. A member silent for Config.DeadAfter is dead and leaves
// the ring; [Node.Leave] takes a stopping node out at once.
//
// Routing: [Node.Execute] runs an operation locally when the ring places its
// bucket here, and otherwise forwards it to the owner with this node's ring
// epoch and a hop limit, so that nodes that disagree about ownership answer
// [ErrNoRoute] instead of bouncing a request forever. An owner that does not
// answer in time gives an [UnreachableError]. [Node.ExecuteBatch] sends
// consecutive operations for one owner as one message, which is what makes
// a client's pipelined requests cheap to forward. msg.go describes the
// messages between nodes.
//
// Errors are the sentinel values declared in errors.go, wrapped with %w
// where context is added; callers test them with errors.Is. They cross the
// network as the same sentinels.
package node
