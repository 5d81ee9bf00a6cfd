package main

import (
	"bytes"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/dboutique/dboutique/node"
	"github.com/dboutique/dboutique/textproto"
)

// The data behind INFO: sections in the manner of Redis's INFO, built from
// the node's Stats and the process at each call. textproto adds its own
// sections about clients and commands.

// infoEnv is what INFO reports beyond the node's own Stats.
type infoEnv struct {
	started time.Time    // when the node started
	cluster string       // --cluster
	ranges  string       // --ranges; empty: consistent hashing
	tcpPort atomic.Int64 // the client port, once listening
}

// newInfoEnv starts the clock of uptime_in_seconds.
func newInfoEnv(cfg config) *infoEnv {
	return &infoEnv{started: time.Now(), cluster: cfg.cluster, ranges: cfg.ranges}
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
	version := buildVersion()
	placement := placementName(env.ranges)
	return func() []textproto.InfoSection {
		st := nd.Stats()
		port := env.tcpPort.Load()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		live := heapLive()
		if ms.NumGC == 0 {
			live = ms.HeapAlloc // no collection has measured the live heap yet
		}
		rss := residentBytes()
		return []textproto.InfoSection{
			{Name: "Server", Fields: []textproto.InfoField{
				{Name: "dboutique_version", Value: version},
				{Name: "go_version", Value: runtime.Version()},
				{Name: "os", Value: runtime.GOOS + " " + runtime.GOARCH},
				{Name: "process_id", Value: strconv.Itoa(os.Getpid())},
				{Name: "uptime_in_seconds", Value: strconv.FormatInt(int64(time.Since(env.started)/time.Second), 10)},
				{Name: "node_name", Value: nd.Name()},
				{Name: "peer_id", Value: nd.ID()},
				{Name: "tcp_port", Value: strconv.FormatInt(port, 10)},
				{Name: "placement", Value: placement},
			}},
			{Name: "Memory", Fields: []textproto.InfoField{
				{Name: "used_memory", Value: u64(live)},
				{Name: "used_memory_human", Value: humanBytes(live)},
				{Name: "used_memory_rss", Value: u64(rss)},
				{Name: "used_memory_rss_human", Value: humanBytes(rss)},
				{Name: "heap_alloc", Value: u64(ms.HeapAlloc)},
				{Name: "heap_sys", Value: u64(ms.HeapSys)},
				{Name: "gc_cycles", Value: strconv.FormatUint(uint64(ms.NumGC), 10)},
			}},
			{Name: "Cluster", Fields: []textproto.InfoField{
				{Name: "cluster_name", Value: env.cluster},
				{Name: "members_alive", Value: strconv.Itoa(st.MembersAlive)},
				{Name: "members_joining", Value: strconv.Itoa(st.MembersJoining)},
				{Name: "members_dead", Value: strconv.Itoa(st.MembersDead)},
				{Name: "members_left", Value: strconv.Itoa(st.MembersLeft)},
				{Name: "replicas", Value: strconv.Itoa(st.Replicas)},
				{Name: "settled", Value: flag01(st.Settled)},
				{Name: "sync_in_progress", Value: flag01(st.SyncInProgress)},
				{Name: "sync_passes", Value: u64(st.SyncPasses)},
				{Name: "sync_passes_incomplete", Value: u64(st.SyncPassesIncomplete)},
				{Name: "last_sync_pass_ms", Value: millis(st.LastSyncPass)},
				{Name: "view_epoch", Value: u64(st.Epoch)},
				{Name: "view_term", Value: u64(st.Term)},
				{Name: "leased", Value: flag01(st.Leased)},
				{Name: "joined", Value: flag01(st.Joined)},
			}},
			{Name: "Replication", Fields: []textproto.InfoField{
				{Name: "replications", Value: u64(st.Replications)},
				{Name: "replicated_writes", Value: u64(st.ReplicatedWrites)},
				{Name: "replications_in_flight", Value: strconv.FormatInt(st.ReplicationsInFlight, 10)},
				{Name: "replication_errors", Value: u64(st.ReplicationErrors)},
				{Name: "replication_avg_latency_ms", Value: millis(st.ReplicationLatency.Mean())},
			}},
			{Name: "Keyspace", Fields: []textproto.InfoField{
				{Name: "buckets", Value: strconv.Itoa(st.Store.Buckets)},
				{Name: "keys", Value: strconv.Itoa(st.Store.Keys)},
				{Name: "tombstones", Value: strconv.Itoa(st.Store.Tombstones)},
				{Name: "bytes", Value: strconv.FormatInt(st.Store.Bytes, 10)},
			}},
			{Name: "Stats", Fields: []textproto.InfoField{
				{Name: "forwarded_ops", Value: u64(st.ForwardedOps)},
				{Name: "forward_messages", Value: u64(st.ForwardMessages)},
				{Name: "forward_errors", Value: u64(st.ForwardErrors)},
				{Name: "rebalance_copies_sent", Value: u64(st.CopiesSent)},
				{Name: "rebalance_keys_sent", Value: u64(st.KeysSent)},
				{Name: "rebalance_bytes_sent", Value: u64(st.BytesSent)},
				{Name: "rebalance_copies_removed", Value: u64(st.CopiesRemoved)},
			}},
		}
	}
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

func u64(n uint64) string { return strconv.FormatUint(n, 10) }

// millis formats d in milliseconds with three decimals.
func millis(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 3, 64)
}

// flag01 formats b as Redis does its flags: 1 or 0.
func flag01(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
