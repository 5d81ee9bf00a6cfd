// Package node owns a D-Boutique node in its cluster: the cluster's
// membership as the node sees it; the routing of every operation to the
// node that holds its bucket; and the copies of each bucket on its owners:
// replication, rebalancing and anti-entropy.
//
// # Data
//
// The buckets themselves live in a [store.Store] (package node/store): the
// versioned, sharded, in-memory maps, the operations on them ([store.Op])
// and their binary encoding. This package runs a Store inside a cluster.
// The messages between nodes are encoded with package node/wire.
//
// # Cluster
//
// A [Node] ([New], then [Node.Start]) serves as a textproto Executor. It
// talks to other nodes only through the small [Transport] interface it
// declares (package p2p implements it over libp2p; the tests use an
// in-memory one), and places buckets with a ring.Placement.
//
// Membership (membership.go, gossip.go, probe.go): a gossip engine
// (package node/gossip, on hashicorp/memberlist) finds the members and
// decides who is alive: each node probes one member per
// Config.ProbeInterval, so traffic per node does not grow with the cluster,
// and joining through any one node is enough to learn them all. A member
// is placed once the engine holds it alive and this node's own ping to it
// was answered; the engine's death of it, or DeadAfter of this node's own
// pings failing, takes it out of the ring; [Node.Leave] takes a stopping
// node out at once. A node
// restarted with a [PeerBook] finds the members it knew before it serves
// (join.go); members whose clocks are too far off are refused (skew.go).
//
// Routing: [Node.Execute] runs an operation here when this node is its
// bucket's primary, and otherwise forwards it to the primary with this
// node's ring epoch and a hop limit, so that nodes that disagree about
// ownership answer [ErrNoRoute] instead of bouncing a request forever. An
// owner that does not answer in time gives an [UnreachableError].
// [Node.ExecuteBatch] sends consecutive operations for one owner as one
// message, which is what makes a client's pipelined requests cheap to
// forward; and the requests of different clients that go to one owner at
// the same time share messages too (group commit, forward.go and
// sendqueue.go). messages.go lists the messages between nodes.
//
// Replication (primary.go): a bucket lives on its first Config.Replicas
// ring owners. The first, the primary, orders the bucket's writes: it
// versions them, sends them to the other owners and applies and
// acknowledges them once every owner of its view holds them. The writes
// waiting to go to one owner travel together, whatever their bucket
// (replicate_batch.go): about one message per round trip, not one per
// bucket of a pipeline; and a pipeline's plain writes to many buckets are
// ordered and replicated together (write_many.go), each bucket's group
// still acknowledged only once every owner of that bucket holds it.
//
// Who may serve a bucket when: the invariants, and why they keep an
// acknowledged write and make every read see it, are written down in
// docs/design.md, with the lock order. In short: views have a term that
// never repeats (view.go); a primary answers only while members vouch for
// it (a lease, lease.go), and only once it has pulled the bucket from every
// member of its view, each agreeing to that view (readiness.go); copies are
// retired only under the bucket's sequencer (seqlock.go) when the current
// view does not give them to the node, and removed only once owners with
// the same view confirm them (sync.go); a bucket whose copies all died
// answers unreachable, not NOT FOUND (lost.go).
//
// Rebalancing, repair and anti-entropy (sync.go) are one mechanism: after
// every change of the view, and every Config.SyncInterval, each node
// compares its copies with the other owners' and pushes the shards that
// differ; a copy it no longer owns is retired and removed once every owner
// has it. [Node.Leave] hands every copy off before the node stops.
//
// Listing (scan.go): [Node.Scan] lists the cluster's names (buckets and
// plain keys) a page at a time with one cursor any node understands, a
// position in an order of the names' hashes that no view decides; every
// member holding copies gives its page, and a page listed while copies
// moved is listed again. [Node.DBSize] counts the names, [Node.ScanBucket]
// lists one bucket's keys on its primary.
//
// Errors are the sentinel values declared in errors.go, and the store's in
// package store (such as store.ErrBucketNotFound), wrapped with %w where
// context is added; callers test them with errors.Is. They cross the
// network as the same sentinels.
package node
