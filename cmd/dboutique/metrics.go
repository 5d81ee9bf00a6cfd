package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/dboutique/dboutique/node"
)

// The metrics server (--metrics-addr): Prometheus metrics on /metrics and
// the runtime profiles of net/http/pprof on /debug/pprof/, on their own
// HTTP listener, apart from the client port. Both expose the node's
// internals (pprof even its command line), so the address should be
// loopback or otherwise private; the node warns when it is not.

const (
	// metricsReadHeaderTimeout bounds how long a client may take to send
	// its request headers.
	metricsReadHeaderTimeout = 10 * time.Second
	// metricsWriteTimeout bounds a whole response. pprof refuses a CPU
	// profile or trace longer than it, so it leaves room for the usual
	// 30-second profile (and up to a minute).
	metricsWriteTimeout = 75 * time.Second
	// metricsIdleTimeout closes a scraper's idle keep-alive connection.
	metricsIdleTimeout = 2 * time.Minute
	// metricsShutdownGrace is how long a stop waits for responses in
	// flight (a profile being taken) before it closes their connections.
	metricsShutdownGrace = 5 * time.Second
	// metricsMaxScrapes caps concurrent /metrics requests; more get 503.
	metricsMaxScrapes = 8
)

// parseMetricsAddr reads the --metrics-addr flag: host:port with a
// numeric port (0 picks a free one), or empty for no metrics server.
func parseMetricsAddr(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || strings.ContainsFunc(host, unicode.IsSpace) {
		return "", errors.New("want host:port, such as 127.0.0.1:9090, or nothing for no metrics server")
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return s, nil
}

// loopbackHost reports whether host (of a host:port) names only the
// loopback interface. An empty host is every interface.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// newMetricsRegistry returns a registry with the Go runtime's and the
// process's metrics, the node's own (nodeCollector) and extra. Each node
// has its own registry, never the process-wide default one.
func newMetricsRegistry(nd *node.Node, extra ...prometheus.Collector) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newNodeCollector(nd),
	)
	reg.MustRegister(extra...)
	return reg
}

// newMetricsHandler serves /metrics from reg and the pprof pages under
// /debug/pprof/, on a mux of its own (net/http/pprof also registers itself
// on http.DefaultServeMux, which nothing here serves).
func newMetricsHandler(reg *prometheus.Registry, log *zap.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            zap.NewStdLog(log),
		Registry:            reg, // counts its own errors: promhttp_metric_handler_errors_total
		MaxRequestsInFlight: metricsMaxScrapes,
	}))
	// Index also serves every named profile: /debug/pprof/heap,
	// /debug/pprof/goroutine, /debug/pprof/allocs, ...
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "dboutique: Prometheus metrics on /metrics, profiles on /debug/pprof/\n")
	})
	return mux
}

// metricsServer is the HTTP server behind --metrics-addr. It owns the
// goroutine that serves; Close stops it and waits for it.
type metricsServer struct {
	srv       *http.Server
	addr      net.Addr
	log       *zap.Logger
	done      chan struct{} // closed when Serve has returned
	closeOnce sync.Once
}

// startMetrics listens on addr and serves there the node's metrics, those
// of extra (the client-facing server's, say) and the pprof pages.
func startMetrics(addr string, nd *node.Node, log *zap.Logger, extra ...prometheus.Collector) (*metricsServer, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("metrics address: %w", err)
	}
	if !loopbackHost(host) {
		log.Warn("the metrics address is not loopback: whoever can reach it can read the node's metrics "+
			"and profiles (pprof shows its command line and memory); keep it on a private network",
			zap.String("metrics_addr", addr))
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cannot listen for metrics: %w", err)
	}
	reg := newMetricsRegistry(nd, extra...)
	return serveMetrics(l, newMetricsHandler(reg, log), log), nil
}

// serveMetrics serves h on l until Close.
func serveMetrics(l net.Listener, h http.Handler, log *zap.Logger) *metricsServer {
	m := &metricsServer{
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: metricsReadHeaderTimeout,
			WriteTimeout:      metricsWriteTimeout,
			IdleTimeout:       metricsIdleTimeout,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          zap.NewStdLog(log),
		},
		addr: l.Addr(),
		log:  log,
		done: make(chan struct{}),
	}
	go func() { // ends when Close shuts the server down
		defer close(m.done)
		if err := m.srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			log.Error("the metrics server stopped", zap.Error(err))
		}
	}()
	log.Info("Serving metrics and pprof on " + l.Addr().String())
	return m
}

// Addr returns the address the server listens on.
func (m *metricsServer) Addr() net.Addr { return m.addr }

// Close stops the server: it stops listening, lets responses in flight
// finish for up to metricsShutdownGrace, closes the connections left and
// waits for the serving goroutine. It is idempotent, and returns nil: a
// stop that had to close busy connections is logged.
func (m *metricsServer) Close() error {
	m.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), metricsShutdownGrace)
		defer cancel()
		if err := m.srv.Shutdown(ctx); err != nil {
			m.log.Warn("closing the metrics connections still busy", zap.Error(err))
			_ = m.srv.Close()
		}
		<-m.done
	})
	return nil
}

// nodeCollector exports a node's Stats as dboutique_* metrics. Collect
// takes one snapshot per scrape and turns it into constant metrics, so
// the node keeps no Prometheus types on its hot paths.
type nodeCollector struct {
	nd *node.Node

	forwardedOps, forwardMessages, forwardErrors                                 *prometheus.Desc
	replications, replicatedWrites, replicaMessages, replicationErrors, inFlight *prometheus.Desc
	latency                                                                      *prometheus.Desc
	syncPasses, syncIncomplete, lastPass, inProgress, settled                    *prometheus.Desc
	copiesSent, keysSent, bytesSent, copiesRemoved                               *prometheus.Desc
	expiredKeys, volatileKeys                                                    *prometheus.Desc
	evictedKeys, memoryUsed, memoryLimit                                         *prometheus.Desc
	members, epoch, term, leased, joined, replicas                               *prometheus.Desc
	suspects, viewChanges, probes, suspicions, refutations                       *prometheus.Desc
	gossipMsgs, leasePings                                                       *prometheus.Desc
	buckets, records, keys, tombstones, dataBytes                                *prometheus.Desc
	all                                                                          []*prometheus.Desc
}

func newNodeCollector(nd *node.Node) *nodeCollector {
	c := &nodeCollector{nd: nd}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		desc := prometheus.NewDesc("dboutique_"+name, help, labels, nil)
		c.all = append(c.all, desc)
		return desc
	}
	c.forwardedOps = d("forwarded_ops_total", "Operations this node forwarded to their bucket's primary on another node.")
	c.forwardMessages = d("forward_messages_total", "Messages that carried forwarded operations (a batch of pipelined operations is one).")
	c.forwardErrors = d("forward_errors_total", "Forwards that failed: the primary did not answer, or the hop limit was reached (nodes disagreeing about ownership).")

	c.replications = d("replications_total", "Write groups this node, as a bucket's primary, sent to the bucket's other owners, failed ones included.")
	c.replicatedWrites = d("replicated_writes_total", "Writes in the write groups sent to the other owners.")
	c.replicaMessages = d("replica_messages_total", "Messages that carried the write groups to the other owners: the groups waiting for one owner travel together.")
	c.replicationErrors = d("replication_errors_total", "Write groups that could not be replicated to every owner in time; their writes failed.")
	c.inFlight = d("replications_in_flight", "Write groups being replicated now.")
	c.latency = d("replication_seconds", "Time to replicate a write group to every other owner of its bucket, until all acknowledged it or it failed.")

	c.syncPasses = d("sync_passes_total", "Sync passes run: anti-entropy, rebalancing after a membership change, and hand-off when leaving.")
	c.syncIncomplete = d("sync_passes_incomplete_total", "Sync passes that left work undone (an owner unreachable, a copy not confirmed); a pass is retried soon.")
	c.lastPass = d("sync_last_pass_seconds", "Duration of the last sync pass.")
	c.inProgress = d("sync_in_progress", "1 while a sync pass is running, else 0.")
	c.settled = d("settled", "1 when this node's copies are where the current view wants them (its last sync pass, in this view, left nothing undone), else 0.")
	c.copiesSent = d("rebalance_copies_sent_total", "Bucket copies pushed to an owner that lacked part of them.")
	c.keysSent = d("rebalance_keys_sent_total", "Keys (tombstones included) pushed to other owners by sync passes.")
	c.bytesSent = d("rebalance_bytes_sent_total", "Bytes of keys and values pushed to other owners by sync passes.")
	c.copiesRemoved = d("rebalance_copies_removed_total", "Bucket copies this node handed off to their owners and removed.")
	c.expiredKeys = d("expired_keys_total", "Keys and buckets this node deleted because their expiry passed, as their primary.")
	c.volatileKeys = d("volatile_keys", "Entries with an expiry this node holds (every copy).")
	c.evictedKeys = d("evicted_keys_total", "Entries this node evicted, as their primary, to stay under --maxmemory.")
	c.memoryUsed = d("maxmemory_used_bytes", "Memory as --maxmemory counts it (0 without a limit).")
	c.memoryLimit = d("maxmemory_bytes", "--maxmemory (0: no limit).")

	c.members = d("members", "Members of the cluster as this node sees them, itself included, by state.", "state")
	c.suspects = d("members_suspect", "Alive members the gossip engine suspects now: they missed a probe and are declared dead unless they refute in time.")
	c.viewChanges = d("view_changes_total", "Views this node installed (each change of the members it places buckets on).")
	c.probes = d("gossip_probes_total", "Probes the gossip engine sent: direct, and indirect (asking another member to probe one that did not answer).", "kind")
	c.suspicions = d("gossip_suspicions_total", "Times this node began to suspect a member.")
	c.refutations = d("gossip_refutations_total", "Times this node refuted a suspicion or death of itself that others spread.")
	c.gossipMsgs = d("gossip_messages_total", "Membership packets and streams sent and received.", "direction")
	c.leasePings = d("lease_pings_total", "Pings this node sent to renew its lease (a few members each probe interval).")
	c.epoch = d("view_epoch", "Fingerprint of the membership view this node places buckets with; nodes that agree show the same value. Compare, do not add.")
	c.term = d("term", "This node's number for its current view and lease: it grows with every view installed and every lease regained, and never repeats.")
	c.leased = d("leased", "1 while other members confirm that this node is in the cluster (its lease), so that it may answer as a bucket's primary, else 0.")
	c.joined = d("joined", "1 once this node has found its cluster (a restarted node looks for the nodes it knew first), else 0.")
	c.replicas = d("replicas", "How many nodes hold each bucket (--replicas).")

	c.buckets = d("buckets", "Buckets held on this node (its copies of them).")
	c.records = d("bucket_records", "Bucket records held: existing, dropped (remembered until collected) and retired ones.")
	c.keys = d("keys", "Live keys held on this node.")
	c.tombstones = d("tombstones", "Deleted keys remembered until the tombstone grace period ends.")
	c.dataBytes = d("data_bytes", "Approximate bytes of the keys and values held on this node.")
	return c
}

// Describe sends every metric's description.
func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.all {
		ch <- d
	}
}

// Collect sends the metrics of one Stats snapshot.
func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.nd.Stats()
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	flag := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	counter(c.forwardedOps, st.ForwardedOps)
	counter(c.forwardMessages, st.ForwardMessages)
	counter(c.forwardErrors, st.ForwardErrors)

	counter(c.replications, st.Replications)
	counter(c.replicatedWrites, st.ReplicatedWrites)
	counter(c.replicaMessages, st.ReplicaMessages)
	counter(c.replicationErrors, st.ReplicationErrors)
	gauge(c.inFlight, float64(st.ReplicationsInFlight))
	h := st.ReplicationLatency
	buckets := make(map[float64]uint64, len(h.Bounds))
	for i, b := range h.Bounds {
		buckets[b.Seconds()] = h.Counts[i]
	}
	ch <- prometheus.MustNewConstHistogram(c.latency, h.Count, h.Sum.Seconds(), buckets)

	counter(c.syncPasses, st.SyncPasses)
	counter(c.syncIncomplete, st.SyncPassesIncomplete)
	gauge(c.lastPass, st.LastSyncPass.Seconds())
	gauge(c.inProgress, flag(st.SyncInProgress))
	gauge(c.settled, flag(st.Settled))
	counter(c.copiesSent, st.CopiesSent)
	counter(c.keysSent, st.KeysSent)
	counter(c.bytesSent, st.BytesSent)
	counter(c.copiesRemoved, st.CopiesRemoved)
	counter(c.expiredKeys, st.ExpiredKeys)
	gauge(c.volatileKeys, float64(st.VolatileKeys))
	counter(c.evictedKeys, st.Memory.EvictedKeys)
	gauge(c.memoryUsed, float64(st.Memory.UsedMemory))
	gauge(c.memoryLimit, float64(st.Memory.MaxMemory))

	gauge(c.members, float64(st.MembersAlive), node.StateAlive.String())
	gauge(c.members, float64(st.MembersJoining), node.StateJoining.String())
	gauge(c.members, float64(st.MembersDead), node.StateDead.String())
	gauge(c.members, float64(st.MembersLeft), node.StateLeft.String())
	gauge(c.suspects, float64(st.MembersSuspect))
	counter(c.viewChanges, st.ViewChanges)
	ch <- prometheus.MustNewConstMetric(c.probes, prometheus.CounterValue, float64(st.Probes), "direct")
	ch <- prometheus.MustNewConstMetric(c.probes, prometheus.CounterValue, float64(st.ProbesIndirect), "indirect")
	counter(c.suspicions, st.Suspicions)
	counter(c.refutations, st.Refutations)
	ch <- prometheus.MustNewConstMetric(c.gossipMsgs, prometheus.CounterValue, float64(st.GossipSent), "sent")
	ch <- prometheus.MustNewConstMetric(c.gossipMsgs, prometheus.CounterValue, float64(st.GossipReceived), "received")
	counter(c.leasePings, st.LeasePings)
	gauge(c.epoch, float64(st.Epoch))
	gauge(c.term, float64(st.Term))
	gauge(c.leased, flag(st.Leased))
	gauge(c.joined, flag(st.Joined))
	gauge(c.replicas, float64(st.Replicas))

	gauge(c.buckets, float64(st.Store.Buckets))
	gauge(c.records, float64(st.Store.Records))
	gauge(c.keys, float64(st.Store.Keys))
	gauge(c.tombstones, float64(st.Store.Tombstones))
	gauge(c.dataBytes, float64(st.Store.Bytes))
}
