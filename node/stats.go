package node

import (
	"sync/atomic"
	"time"

	"github.com/dboutique/dboutique/node/memlimit"
	"github.com/dboutique/dboutique/node/store"
)

// Statistics. A node keeps cheap counters of what it forwards, replicates
// and rebalances, in atomics only, so that the hot paths (route,
// replicate) take no lock and allocate nothing for them. Stats reads them,
// together with the membership and the store, into one snapshot; the
// binary exports the snapshot to Prometheus and to INFO.

// LatencyBuckets is the number of finite buckets of a Histogram.
const LatencyBuckets = 12

// latencyBounds returns the upper bounds (inclusive) of the replication
// latency buckets, from a fast loopback round trip to a write waiting for
// a slow replica. (A function, so that no package state can change.)
func latencyBounds() [LatencyBuckets]time.Duration {
	return [LatencyBuckets]time.Duration{
		100 * time.Microsecond,
		250 * time.Microsecond,
		500 * time.Microsecond,
		time.Millisecond,
		2500 * time.Microsecond,
		5 * time.Millisecond,
		10 * time.Millisecond,
		25 * time.Millisecond,
		50 * time.Millisecond,
		100 * time.Millisecond,
		250 * time.Millisecond,
		time.Second,
	}
}

// Histogram is a snapshot of a latency histogram in Prometheus's form:
// Counts[i] is the number of observations at most Bounds[i] (cumulative),
// and Count, the total, is the +Inf bucket.
type Histogram struct {
	Bounds [LatencyBuckets]time.Duration
	Counts [LatencyBuckets]uint64
	Count  uint64
	Sum    time.Duration
}

// Mean returns the average observation, or 0 without any.
func (h Histogram) Mean() time.Duration {
	if h.Count == 0 {
		return 0
	}
	return h.Sum / time.Duration(h.Count)
}

// histogram is a fixed-bucket latency histogram kept with atomics. Each
// bucket counts only its own observations; the snapshot accumulates them.
type histogram struct {
	buckets [LatencyBuckets + 1]atomic.Uint64 // the last one is +Inf
	sum     atomic.Int64                      // nanoseconds
}

func (h *histogram) observe(d time.Duration) {
	bounds := latencyBounds()
	i := 0
	for i < LatencyBuckets && d > bounds[i] {
		i++
	}
	h.buckets[i].Add(1)
	h.sum.Add(int64(d))
}

func (h *histogram) snapshot() Histogram {
	s := Histogram{Bounds: latencyBounds()}
	var total uint64
	for i := range h.buckets {
		total += h.buckets[i].Load()
		if i < LatencyBuckets {
			s.Counts[i] = total
		}
	}
	// The count is the sum of the buckets, so that the snapshot is
	// consistent with itself even while observations come in.
	s.Count = total
	s.Sum = time.Duration(h.sum.Load())
	return s
}

// stats are the counters a Node keeps; one field of Node.
type stats struct {
	forwardedOps  atomic.Uint64 // operations sent to another node
	forwardMsgs   atomic.Uint64 // messages (single operations or batches) that carried them
	forwardErrors atomic.Uint64 // messages not delivered (no hops left, owner unreachable)

	expired atomic.Uint64 // keys and buckets deleted by active expiry, as their primary

	replications      atomic.Uint64 // write groups sent to replicas
	replicatedWrites  atomic.Uint64 // writes in those calls
	replicationErrors atomic.Uint64 // replicate calls that failed
	replicaMessages   atomic.Uint64 // messages that carried write groups to replicas (batched)
	replicating       atomic.Int64  // replicate calls in flight
	replLatency       histogram     // duration of the replicate calls that sent writes

	syncPasses     atomic.Uint64 // sync passes run (anti-entropy, rebalancing, hand-off)
	syncIncomplete atomic.Uint64 // passes that left work undone
	copiesSent     atomic.Uint64 // bucket copies pushed to an owner
	keysSent       atomic.Uint64 // entries pushed
	bytesSent      atomic.Uint64 // bytes of their keys and values
	copiesRemoved  atomic.Uint64 // copies handed off and removed here
	lastPass       atomic.Int64  // duration of the last pass, in nanoseconds
	syncing        atomic.Bool   // a pass is running

	viewChanges atomic.Uint64 // views installed
	leasePings  atomic.Uint64 // pings sent for the lease
}

// forwarded counts a message carrying ops operations to another node.
func (s *stats) forwarded(ops int) {
	s.forwardedOps.Add(uint64(ops))
	s.forwardMsgs.Add(1)
}

// replication is one replicate call being measured; it lives on the
// caller's stack.
type replication struct {
	start  time.Time
	groups int // write groups sent to a replica
	writes int // the writes in them
}

// replicateBegin counts a replicate call in flight and starts its clock.
func (s *stats) replicateBegin() replication {
	s.replicating.Add(1)
	return replication{start: time.Now()}
}

// replicateEnd ends what replicateBegin started; a call that sent writes
// to a replica is counted, and its duration observed.
func (s *stats) replicateEnd(r *replication) {
	s.replicating.Add(-1)
	if r.writes == 0 {
		return // no other owner: nothing was replicated
	}
	s.replications.Add(uint64(r.groups))
	s.replicatedWrites.Add(uint64(r.writes))
	s.replLatency.observe(time.Since(r.start))
}

// passDone counts a finished sync pass that did st and took took.
func (s *stats) passDone(st *passStats, took time.Duration) {
	s.syncPasses.Add(1)
	if st.pending > 0 {
		s.syncIncomplete.Add(1)
	}
	s.copiesSent.Add(uint64(st.buckets))
	s.keysSent.Add(uint64(st.entries))
	s.bytesSent.Add(uint64(st.bytes))
	s.copiesRemoved.Add(uint64(st.removed))
	s.lastPass.Store(int64(took))
	s.syncing.Store(false)
}

// Stats is a snapshot of a node's counters, membership and store. Every
// uint64 field but Epoch is a counter: it only grows while the node runs.
// (Term only grows too, but counts changes, not events of one kind.)
type Stats struct {
	// Forwarding: operations this node sent to their bucket's primary.
	ForwardedOps    uint64 // operations forwarded
	ForwardMessages uint64 // messages that carried them (a batch is one)
	ForwardErrors   uint64 // messages that failed: owner unreachable, or no hops left

	// Expiry: keys and buckets deleted by this node's active expiry, as
	// their primary, and the entries with an expiry it holds.
	ExpiredKeys  uint64
	VolatileKeys int

	// The memory limit (evict.go): zero values without one.
	Memory memlimit.Stats

	// Replication, as the primary of buckets.
	Replications         uint64    // write groups sent to the other owners
	ReplicatedWrites     uint64    // writes in them
	ReplicationErrors    uint64    // write groups that could not be replicated
	ReplicaMessages      uint64    // messages that carried them, one per replica each: groups to one replica travel together
	ReplicationsInFlight int64     // write groups being replicated now
	ReplicationLatency   Histogram // time to replicate a write group to every owner

	// Rebalancing, repair and anti-entropy (sync passes).
	SyncPasses           uint64        // passes run
	SyncPassesIncomplete uint64        // passes that left work undone (retried soon)
	CopiesSent           uint64        // bucket copies pushed to an owner that lacked part of them
	KeysSent             uint64        // entries pushed
	BytesSent            uint64        // bytes of their keys and values
	CopiesRemoved        uint64        // copies handed off to their owners and removed here
	LastSyncPass         time.Duration // duration of the last pass
	SyncInProgress       bool          // a pass is running now
	Settled              bool          // see Node.Settled

	// Membership, as this node sees it (itself included, as alive unless
	// it is leaving). A suspect member is still alive for placement
	// (MembersAlive counts it); MembersSuspect says how many of them the
	// gossip engine suspects right now.
	MembersAlive   int
	MembersSuspect int
	MembersJoining int // heard of, not reached yet
	MembersDead    int
	MembersLeft    int
	Epoch          uint64 // fingerprint of the view (see Node.Epoch)
	Term           uint64 // this node's number for its view and lease (see Node.Term)
	Leased         bool   // the node holds a lease: it may answer as a primary (lease.go)
	Joined         bool   // the node has found its cluster (join.go)
	Replicas       int    // Config.Replicas
	ViewChanges    uint64 // views installed since the node started (the first included)

	// The gossip engine's work since the node started (membership.go).
	Probes         uint64 // direct probes sent (one per probe interval)
	ProbesIndirect uint64 // indirect probe requests sent, after a direct probe failed
	Suspicions     uint64 // times this node began to suspect a member
	Refutations    uint64 // times this node refuted a suspicion or a death of itself
	GossipSent     uint64 // membership packets and streams sent
	GossipReceived uint64 // membership packets and streams received
	LeasePings     uint64 // lease pings sent (lease.go)

	// Store is this node's store (computed now: it visits every bucket).
	Store store.StoreStats
	// OffHeap is what the store's tables hold outside the Go heap, in
	// bytes (store.Store.OffHeap).
	OffHeap int64
}

// Stats returns a snapshot of the node's statistics. It costs one pass
// over the store's buckets and one over the members, under their locks
// for a moment each; call it for monitoring, not per request.
func (n *Node) Stats() Stats {
	s := &n.stats
	volatile, _ := n.cfg.Store.Volatile()
	st := Stats{
		ForwardedOps:    s.forwardedOps.Load(),
		ForwardMessages: s.forwardMsgs.Load(),
		ForwardErrors:   s.forwardErrors.Load(),

		ExpiredKeys:  s.expired.Load(),
		VolatileKeys: volatile,
		Memory:       memStats(n.mem),

		Replications:         s.replications.Load(),
		ReplicatedWrites:     s.replicatedWrites.Load(),
		ReplicationErrors:    s.replicationErrors.Load(),
		ReplicaMessages:      s.replicaMessages.Load(),
		ReplicationsInFlight: s.replicating.Load(),
		ReplicationLatency:   s.replLatency.snapshot(),

		SyncPasses:           s.syncPasses.Load(),
		SyncPassesIncomplete: s.syncIncomplete.Load(),
		CopiesSent:           s.copiesSent.Load(),
		KeysSent:             s.keysSent.Load(),
		BytesSent:            s.bytesSent.Load(),
		CopiesRemoved:        s.copiesRemoved.Load(),
		LastSyncPass:         time.Duration(s.lastPass.Load()),
		SyncInProgress:       s.syncing.Load(),
		Settled:              n.Settled(),

		Epoch:    n.Epoch(),
		Term:     n.Term(),
		Leased:   n.leased(),
		Joined:   n.Joined(),
		Replicas: n.cfg.Replicas,
		Store:    n.cfg.Store.Stats(),
		OffHeap:  n.cfg.Store.OffHeap(),

		ViewChanges: s.viewChanges.Load(),
		LeasePings:  s.leasePings.Load(),
	}
	g := n.gossip.Stats()
	st.Probes, st.ProbesIndirect = g.Probes, g.ProbesIndirect
	st.Suspicions, st.Refutations = g.Suspicions, g.Refutations
	st.GossipSent, st.GossipReceived = g.Sent, g.Received
	suspects := n.gossip.Suspects()
	count := func(s State) {
		switch s {
		case StateAlive:
			st.MembersAlive++
		case StateJoining:
			st.MembersJoining++
		case StateDead:
			st.MembersDead++
		case StateLeft:
			st.MembersLeft++
		}
	}
	if n.leaving.Load() {
		count(StateLeft)
	} else {
		count(StateAlive)
	}
	n.mu.Lock()
	for id, e := range n.members {
		count(e.State)
		if e.State == StateAlive && suspects[id] {
			st.MembersSuspect++
		}
	}
	n.mu.Unlock()
	return st
}

// memStats returns the memory limit's numbers, or zeros without one.
func memStats(g *memlimit.Governor) memlimit.Stats {
	if g == nil {
		return memlimit.Stats{}
	}
	return g.Stats()
}
