// Package gossip runs the cluster's membership on hashicorp/memberlist
// (SWIM with Lifeguard's suspicion and self-awareness), carried over the
// node's own peer-to-peer transport: no second port, and the transport's
// encryption and cluster key apply to membership traffic as to the rest.
//
// What it owns:
//
//   - the memberlist instance, configured from the node's two knobs
//     (Config.ProbeInterval and Config.DeadAfter, see Config.memberlist);
//   - a memberlist Transport over Caller: a packet is one call whose reply
//     is empty, a stream is one call whose request is everything the
//     dialer wrote before it first read, and whose reply is everything
//     the other side wrote before it closed (memberlist's streams are
//     exactly that: push/pull, a fallback ping, each a write then a read);
//   - a seam for the node's own state in every push/pull (Config.State,
//     MergeState): the node tells what memberlist cannot, such as the
//     members it holds dead (memberlist drops a dead member it has never
//     heard of alive);
//   - the order of events: memberlist reports joins, updates and deaths
//     under its own lock, so the engine queues them and one goroutine of
//     its own hands them to Events, in order; Events may call back into
//     the engine;
//   - counters of its work (probes, suspicions, refutations, packets).
//
// Invariants:
//
//   - Members are named by peer ID. The address memberlist keeps for a
//     member is a placeholder (Placeholder); the transport reaches a
//     member by its name alone, so a member that comes back on another
//     IP or port is the same member, and nobody keeps its old address.
//   - Every read from a peer is capped (MaxPacket, MaxStream, MaxState)
//     and every call has a deadline.
//   - Close is idempotent and returns once every goroutine the engine
//     started has stopped. memberlist does not wait for its own, so Close
//     waits as long as the longest of them can run on (a probe waiting
//     for its ack: one probe interval, scaled by the node's awareness).
//
// The engine decides nothing about placement: a member it reports alive
// is a candidate, which the node admits with its own checks (cluster,
// placement, clock) before it places buckets on it.
package gossip
