package main

import (
	"bytes"
	"math"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/dboutique/dboutique/node"
	"github.com/dboutique/dboutique/node/memlimit"
	"github.com/dboutique/dboutique/textproto"
)

// The data behind INFO: sections in the manner of Redis's INFO, built from
// the node's Stats and the process at each call. textproto adds its own
// sections about clients and commands.

// infoEnv is what INFO reports beyond the node's own Stats.
type infoEnv struct {
	started   time.Time    // when the node started
	version   string       // the module version (buildVersion)
	cluster   string       // --cluster
	placement string       // how buckets are placed (placementName)
	tcpPort   atomic.Int64 // the client port, once listening
}

// newInfoEnv starts the clock of uptime_in_seconds.
func newInfoEnv(cfg config) *infoEnv {
	return &infoEnv{started: time.Now(), version: buildVersion(), cluster: cfg.cluster, placement: placementName(cfg.ranges)}
}

// listening records the client address (the listener is made after the
// server, so INFO learns the port late).
func (e *infoEnv) listening(a net.Addr) {
	if ta, ok := a.(*net.TCPAddr); ok {
		e.tcpPort.Store(int64(ta.Port))
	}
}

// nodeInfo returns the function INFO calls for the sections "Server",
// "Memory", "Cluster", "Replication", "Keyspace" and "Stats".
func nodeInfo(nd *node.Node, env *infoEnv) func() []textproto.InfoSection {
	return func() []textproto.InfoSection {
		st := nd.Stats()
		return []textproto.InfoSection{
			{Name: "Server", Fields: []textproto.InfoField{
				field("dboutique_version", env.version),
				field("go_version", runtime.Version()),
				field("os", runtime.GOOS+" "+runtime.GOARCH),
				field("process_id", os.Getpid()),
				field("uptime_in_seconds", int64(time.Since(env.started)/time.Second)),
				field("node_name", nd.Name()),
				field("peer_id", nd.ID()),
				field("tcp_port", env.tcpPort.Load()),
				field("placement", env.placement),
			}},
			{Name: "Memory", Fields: append(memoryInfo(uint64(max(st.OffHeap, 0))), limitInfo(st.Memory)...)},
			{Name: "Cluster", Fields: []textproto.InfoField{
				field("cluster_name", env.cluster),
				field("members_alive", st.MembersAlive),
				field("members_suspect", st.MembersSuspect),
				field("members_joining", st.MembersJoining),
				field("members_dead", st.MembersDead),
				field("members_left", st.MembersLeft),
				field("replicas", st.Replicas),
				field("settled", st.Settled),
				field("sync_in_progress", st.SyncInProgress),
				field("sync_passes", st.SyncPasses),
				field("sync_passes_incomplete", st.SyncPassesIncomplete),
				field("last_sync_pass_ms", st.LastSyncPass),
				field("view_epoch", st.Epoch),
				field("view_term", st.Term),
				field("view_changes", st.ViewChanges),
				field("gossip_probes", st.Probes),
				field("gossip_probes_indirect", st.ProbesIndirect),
				field("gossip_suspicions", st.Suspicions),
				field("gossip_refutations", st.Refutations),
				field("gossip_messages_sent", st.GossipSent),
				field("gossip_messages_received", st.GossipReceived),
				field("lease_pings", st.LeasePings),
				field("leased", st.Leased),
				field("joined", st.Joined),
			}},
			{Name: "Replication", Fields: []textproto.InfoField{
				field("replications", st.Replications),
				field("replicated_writes", st.ReplicatedWrites),
				field("replica_messages", st.ReplicaMessages),
				field("replications_in_flight", st.ReplicationsInFlight),
				field("replication_errors", st.ReplicationErrors),
				field("replication_avg_latency_ms", st.ReplicationLatency.Mean()),
			}},
			{Name: "Keyspace", Fields: []textproto.InfoField{
				field("buckets", st.Store.Buckets),
				field("keys", st.Store.Keys),
				field("tombstones", st.Store.Tombstones),
				field("expires", st.VolatileKeys),
				field("bytes", st.Store.Bytes),
			}},
			{Name: "Stats", Fields: []textproto.InfoField{
				field("forwarded_ops", st.ForwardedOps),
				field("forward_messages", st.ForwardMessages),
				field("forward_errors", st.ForwardErrors),
				field("rebalance_copies_sent", st.CopiesSent),
				field("rebalance_keys_sent", st.KeysSent),
				field("rebalance_bytes_sent", st.BytesSent),
				field("rebalance_copies_removed", st.CopiesRemoved),
				field("expired_keys", st.ExpiredKeys),
				field("evicted_keys", st.Memory.EvictedKeys),
			}},
		}
	}
}

// memoryInfo is the section about the process's memory, read at each call.
// used_memory is the live Go heap plus offHeap, what the store's tables
// hold outside it (mapped memory the runtime does not see);
// go_memory_limit is the Go runtime's memory limit now (0: none), which
// --maxmemory lowers as the tables grow.
func memoryInfo(offHeap uint64) []textproto.InfoField {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	live := heapLive()
	if ms.NumGC == 0 {
		live = ms.HeapAlloc // no collection has measured the live heap yet
	}
	rss := residentBytes()
	used := live + offHeap
	goLimit := debug.SetMemoryLimit(-1) // reads it
	if goLimit == math.MaxInt64 {
		goLimit = 0
	}
	return []textproto.InfoField{
		field("used_memory", used),
		field("used_memory_human", humanBytes(used)),
		field("used_memory_rss", rss),
		field("used_memory_rss_human", humanBytes(rss)),
		field("used_memory_off_heap", offHeap),
		field("heap_alloc", ms.HeapAlloc),
		field("heap_sys", ms.HeapSys),
		field("gc_cycles", ms.NumGC),
		field("go_memory_limit", goLimit),
	}
}

// limitInfo is the memory limit's part of the Memory section, named as
// Redis names it: maxmemory_used is what the limit compares (how it is
// counted: README, "Memory limit").
func limitInfo(m memlimit.Stats) []textproto.InfoField {
	policy := m.MaxMemoryPolicy.String()
	return []textproto.InfoField{
		field("maxmemory", m.MaxMemory),
		field("maxmemory_human", humanBytes(uint64(m.MaxMemory))),
		field("maxmemory_policy", policy),
		field("maxmemory_used", m.UsedMemory),
		field("maxmemory_eviction_at", m.EvictionAt),
		field("maxmemory_sketch_bytes", m.SketchBytes),
	}
}

// field is one INFO field. Its value is written by its type, as Redis
// writes its own: numbers in decimal, flags as 1 or 0, and durations in
// milliseconds with three decimals (the fields that hold one end in _ms).
func field[T string | int | int64 | uint32 | uint64 | bool | time.Duration](name string, v T) textproto.InfoField {
	var s string
	switch v := any(v).(type) {
	case string:
		s = v
	case int:
		s = strconv.Itoa(v)
	case int64:
		s = strconv.FormatInt(v, 10)
	case uint32:
		s = strconv.FormatUint(uint64(v), 10)
	case uint64:
		s = strconv.FormatUint(v, 10)
	case bool:
		s = "0"
		if v {
			s = "1"
		}
	case time.Duration:
		s = strconv.FormatFloat(float64(v)/float64(time.Millisecond), 'f', 3, 64)
	}
	return textproto.InfoField{Name: name, Value: s}
}

// placementName says how buckets are placed: by the --ranges table, or by
// consistent hashing when there is none.
func placementName(ranges string) string {
	if ranges == "" {
		return "consistent hashing"
	}
	return "ranges " + ranges
}

// buildVersion returns the module version the binary was built from, or
// "devel" for a build from a work tree.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok || bi.Main.Version == "" || bi.Main.Version == "(devel)" {
		return "devel"
	}
	return bi.Main.Version
}

// heapLive returns the bytes of heap the last garbage collection found
// live, or 0 when the runtime does not report it.
func heapLive() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// residentBytes returns the process's resident set size from
// /proc/self/statm (Linux), or 0 where that is unavailable.
func residentBytes() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	fields := bytes.Fields(b)
	if len(fields) < 2 {
		return 0
	}
	pages, err := strconv.ParseUint(string(fields[1]), 10, 64)
	if err != nil {
		return 0
	}
	return pages * uint64(os.Getpagesize())
}

// humanBytes formats n as Redis does its *_human fields: 1023B, 1.50K,
// 12.25M, 2.00G (powers of 1024).
func humanBytes(n uint64) string {
	const units = "KMGTPE"
	if n < 1024 {
		return strconv.FormatUint(n, 10) + "B"
	}
	v := float64(n) / 1024
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return strconv.FormatFloat(v, 'f', 2, 64) + units[i:i+1]
}
