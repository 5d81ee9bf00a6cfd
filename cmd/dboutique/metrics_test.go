package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/dboutique/dboutique/node"
	"github.com/dboutique/dboutique/node/store"
)

// soloTransport is a Transport for a node alone: it knows no peer.
type soloTransport struct{ id string }

func (t soloTransport) ID() string      { return t.id }
func (t soloTransport) Addrs() []string { return nil }
func (t soloTransport) Serve(func(context.Context, string, []byte) ([]byte, error)) {
}
func (t soloTransport) AddAddrs(string, []string) {}
func (t soloTransport) Call(context.Context, string, []byte) ([]byte, error) {
	return nil, errors.New("solo: no peers")
}
func (t soloTransport) Connect(context.Context, string) (string, error) {
	return "", errors.New("solo: no peers")
}

// soloNode starts a node alone holding nb buckets of nk keys each.
func soloNode(t testing.TB, nb, nk int) *node.Node {
	t.Helper()
	nd, err := node.New(node.Config{Name: "solo", Transport: soloTransport{id: "id-solo"}})
	if err != nil {
		t.Fatal(err)
	}
	nd.Start()
	t.Cleanup(func() { nd.Close() })
	ctx := context.Background()
	for i := range nb {
		b := fmt.Sprintf("bucket%04d", i)
		if _, err := nd.Execute(ctx, store.Op{Kind: store.KindCreate, Bucket: b}); err != nil {
			t.Fatal(err)
		}
		for k := range nk {
			op := store.Op{Kind: store.KindPut, Bucket: b, Key: fmt.Sprintf("k%d", k), Value: "value"}
			if _, err := nd.Execute(ctx, op); err != nil {
				t.Fatal(err)
			}
		}
	}
	return nd
}

// httpGet fetches url with a client that keeps no connection open (the
// package's TestMain checks that no goroutine outlives the tests).
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: testTimeout}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestMetricsServer(t *testing.T) {
	t.Parallel()
	nd := soloNode(t, 2, 3)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	log := zap.New(core)
	ms := serveMetrics(l, newMetricsHandler(newMetricsRegistry(nd), log), log)
	defer ms.Close()
	if got := logs.FilterMessage("Serving metrics and pprof on " + l.Addr().String()).Len(); got != 1 {
		t.Errorf("logged the address %d times, want once: %v", got, logs.All())
	}
	base := "http://" + ms.Addr().String()

	for _, tc := range []struct {
		path   string
		status int
		want   []string // in the body
	}{
		{"/metrics", 200, []string{
			"dboutique_keys 6\n", "dboutique_buckets 2\n", "dboutique_tombstones 0\n",
			`dboutique_members{state="alive"} 1` + "\n", `dboutique_members{state="dead"} 0` + "\n",
			"dboutique_replicas 2\n", "dboutique_forwarded_ops_total 0\n", "dboutique_replications_in_flight 0\n",
			`dboutique_replication_seconds_bucket{le="0.001"} 0` + "\n", `dboutique_replication_seconds_bucket{le="+Inf"} 0` + "\n",
			"dboutique_sync_passes_total", "dboutique_rebalance_keys_sent_total 0\n", "dboutique_rebalance_bytes_sent_total 0\n",
			"dboutique_settled", "dboutique_sync_in_progress", "dboutique_view_epoch", "dboutique_term ", "dboutique_leased 1\n",
			"dboutique_members_suspect 0\n", "dboutique_view_changes_total ", `dboutique_gossip_probes_total{kind="direct"} `,
			`dboutique_gossip_probes_total{kind="indirect"} `, "dboutique_gossip_suspicions_total 0\n", "dboutique_gossip_refutations_total ",
			`dboutique_gossip_messages_total{direction="sent"} `, `dboutique_gossip_messages_total{direction="received"} `, "dboutique_lease_pings_total 0\n",
			"# HELP dboutique_forward_errors_total ", "# TYPE dboutique_replication_seconds histogram",
			"go_goroutines", "go_memstats_heap_alloc_bytes", "process_resident_memory_bytes",
		}},
		{"/debug/pprof/", 200, []string{"goroutine", "heap", "allocs"}},
		{"/debug/pprof/heap?gc=1", 200, nil},
		{"/debug/pprof/goroutine?debug=1", 200, []string{"goroutine profile"}},
		{"/debug/pprof/cmdline", 200, nil},
		{"/debug/pprof/symbol", 200, []string{"num_symbols"}},
		{"/debug/pprof/nonesuch", 404, nil},
		{"/", 200, []string{"/metrics"}},
		{"/elsewhere", 404, nil},
	} {
		status, body := httpGet(t, base+tc.path)
		if status != tc.status {
			t.Errorf("GET %s: status %d, want %d\n%.500s", tc.path, status, tc.status, body)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(body, w) {
				t.Errorf("GET %s: no %q in\n%s", tc.path, w, body)
			}
		}
	}

	// The node's metrics follow Prometheus's naming conventions.
	_, body := httpGet(t, base+"/metrics")
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "dboutique_") {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}

	ms.Close()
	ms.Close() // idempotent
	if _, err := net.DialTimeout("tcp", l.Addr().String(), testTimeout); err == nil {
		t.Error("the metrics server still accepts connections after Close")
	}
}

// TestMetricsNodeCollector checks the collector alone: every metric it
// describes is collected, and the registry gathers them without error.
func TestMetricsNodeCollector(t *testing.T) {
	t.Parallel()
	nd := soloNode(t, 1, 1)
	reg := newMetricsRegistry(nd)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[string]bool)
	for _, mf := range mfs {
		got[mf.GetName()] = true
	}
	c := newNodeCollector(nd)
	re := regexp.MustCompile(`fqName: "([^"]+)"`)
	for _, d := range c.all {
		m := re.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read the name of %v", d)
		}
		if !got[m[1]] {
			t.Errorf("%s described but not gathered", m[1])
		}
	}
}

func TestMetricsAddrFlag(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{nil, nil, ""},
		{[]string{"--metrics-addr", "127.0.0.1:9090"}, nil, "127.0.0.1:9090"},
		{[]string{"--metrics-addr=:0"}, nil, ":0"},
		{[]string{"--metrics-addr", "[::1]:9090"}, nil, "[::1]:9090"},
		{nil, map[string]string{"DBOUTIQUE_METRICS_ADDR": "localhost:9100"}, "localhost:9100"},
		{[]string{"--metrics-addr="}, map[string]string{"DBOUTIQUE_METRICS_ADDR": "localhost:9100"}, ""},
	} {
		cfg, err := parseConfig(tc.args, func(k string) string { return tc.env[k] })
		if err != nil || cfg.metricsAddr != tc.want {
			t.Errorf("%q env %v: metrics address %q, %v; want %q", tc.args, tc.env, cfg.metricsAddr, err, tc.want)
		}
	}

	// Inputs that must fail: exit code 2 and a message naming the flag.
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{args: []string{"--metrics-addr=9090"}, want: "host:port"},
		{args: []string{"--metrics-addr=localhost"}, want: "host:port"},
		{args: []string{"--metrics-addr=http://127.0.0.1:9090"}, want: "host:port"},
		{args: []string{"--metrics-addr=127.0.0.1:99999"}, want: "0 to 65535"},
		{args: []string{"--metrics-addr=127.0.0.1:-1"}, want: "0 to 65535"},
		{args: []string{"--metrics-addr=127.0.0.1:http"}, want: "0 to 65535"},
		{args: []string{"--metrics-addr=127.0.0.1:"}, want: "0 to 65535"},
		{args: []string{"--metrics-addr=a b:80"}, want: "host:port"},
		{args: []string{"--metrics-addr"}, want: "needs an argument"},
		{env: map[string]string{"DBOUTIQUE_METRICS_ADDR": "nonsense"}, want: "DBOUTIQUE_METRICS_ADDR"},
	} {
		code, _, stderr := runInProcess(t, tc.args, tc.env)
		if code != 2 {
			t.Errorf("run %q env %v: exit code %d, want 2", tc.args, tc.env, code)
		}
		if !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, "metrics-addr") && !strings.Contains(stderr, "METRICS_ADDR") {
			t.Errorf("run %q env %v: stderr does not mention %q and the flag:\n%s", tc.args, tc.env, tc.want, stderr)
		}
	}
}

func TestMetricsLoopbackHost(t *testing.T) {
	t.Parallel()
	for host, want := range map[string]bool{
		"127.0.0.1": true, "127.1.2.3": true, "::1": true, "localhost": true, "LocalHost": true,
		"": false, "0.0.0.0": false, "::": false, "192.168.1.10": false, "example.org": false,
	} {
		if got := loopbackHost(host); got != want {
			t.Errorf("loopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestMetricsAddrInUse(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	code, _, stderr := runInProcess(t, []string{"--listen", "127.0.0.1:0", "--metrics-addr", busy.Addr().String()}, nil)
	if code != 1 || !strings.Contains(stderr, "cannot listen for metrics") {
		t.Errorf("exit code %d, want 1, and stderr:\n%s", code, stderr)
	}
}

// lockedBuffer is a bytes.Buffer safe for one writer and one reader.
type lockedBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestMetricsInProcess runs the whole program with --metrics-addr
// 127.0.0.1:0, reads the bound address from its log as a script would,
// scrapes it (node and client-request metrics), and stops the program
// with a signal.
func TestMetricsInProcess(t *testing.T) {
	t.Parallel()
	var stderr lockedBuffer
	sigs := make(chan os.Signal, 2)
	done := make(chan int, 1)
	args := []string{"--listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--name", "scraped"}
	go func() { done <- run(args, func(string) string { return "" }, io.Discard, &stderr, sigs) }()
	stop := func() int {
		sigs <- syscall.SIGTERM
		select {
		case code := <-done:
			return code
		case <-time.After(testTimeout):
			sigs <- syscall.SIGTERM
			return <-done
		}
	}

	re := regexp.MustCompile(`Serving metrics and pprof on (127\.0\.0\.1:\d+)`)
	var addr string
	deadline := time.Now().Add(testTimeout)
	for addr == "" {
		if m := re.FindStringSubmatch(stderr.String()); m != nil {
			addr = m[1]
			break
		}
		select {
		case code := <-done:
			t.Fatalf("run exited with %d:\n%s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("no metrics address logged:\n%s", stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	status, body := httpGet(t, "http://"+addr+"/metrics")
	for _, want := range []string{`dboutique_members{state="alive"} 1`, "dboutique_keys 0", "dboutique_client_connections_total "} {
		if status != 200 || !strings.Contains(body, want) {
			t.Errorf("GET /metrics: %d, no %q in\n%s", status, want, body)
		}
	}
	if strings.Contains(stderr.String(), "not loopback") {
		t.Errorf("warned about a loopback address:\n%s", stderr.String())
	}
	if code := stop(); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0:\n%s", code, stderr.String())
	}
	if _, err := net.DialTimeout("tcp", addr, testTimeout); err == nil {
		t.Error("the metrics server outlived the program")
	}
}

func TestInfoSections(t *testing.T) {
	t.Parallel()
	nd := soloNode(t, 2, 3)
	env := newInfoEnv(config{cluster: "prod", ranges: "a-z=solo"})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	env.listening(l.Addr())
	secs := nodeInfo(nd, env)()

	snake := regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	got := make(map[string]map[string]string)
	var names []string
	for _, sec := range secs {
		names = append(names, sec.Name)
		got[sec.Name] = make(map[string]string)
		for _, f := range sec.Fields {
			if !snake.MatchString(f.Name) {
				t.Errorf("%s: field name %q is not lower_snake", sec.Name, f.Name)
			}
			if f.Value == "" || strings.ContainsAny(f.Value, "\r\n") {
				t.Errorf("%s: field %s has the value %q", sec.Name, f.Name, f.Value)
			}
			got[sec.Name][f.Name] = f.Value
		}
	}
	if want := "Server Memory Cluster Replication Keyspace Stats"; strings.Join(names, " ") != want {
		t.Errorf("sections %v, want %s", names, want)
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	for _, w := range []struct{ sec, field, value string }{
		{"Server", "node_name", "solo"},
		{"Server", "peer_id", "id-solo"},
		{"Server", "tcp_port", port},
		{"Server", "placement", "ranges a-z=solo"},
		{"Server", "dboutique_version", "devel"},
		{"Server", "process_id", fmt.Sprint(os.Getpid())},
		{"Cluster", "cluster_name", "prod"},
		{"Cluster", "members_alive", "1"},
		{"Cluster", "members_dead", "0"},
		{"Cluster", "members_suspect", "0"},
		{"Cluster", "gossip_suspicions", "0"},
		{"Cluster", "lease_pings", "0"},
		{"Cluster", "replicas", "2"},
		{"Replication", "replications", "0"},
		{"Replication", "replication_avg_latency_ms", "0.000"},
		{"Keyspace", "buckets", "2"},
		{"Keyspace", "keys", "6"},
		{"Keyspace", "tombstones", "0"},
		{"Keyspace", "bytes", "42"}, // 6 × ("kN" + "value")
		{"Stats", "forwarded_ops", "0"},
	} {
		if v := got[w.sec][w.field]; v != w.value {
			t.Errorf("%s %s = %q, want %q", w.sec, w.field, v, w.value)
		}
	}
	for _, f := range []string{"used_memory", "used_memory_rss", "heap_alloc", "heap_sys"} {
		if v := got["Memory"][f]; v == "0" || v == "" {
			t.Errorf("Memory %s = %q, want a size", f, v)
		}
	}
}

func TestInfoHumanBytes(t *testing.T) {
	t.Parallel()
	for n, want := range map[uint64]string{
		0: "0B", 1023: "1023B", 1024: "1.00K", 1536: "1.50K", 5 << 20: "5.00M", 3 << 30: "3.00G", 1 << 62: "4.00E",
	} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// BenchmarkMetricsScrape measures one /metrics request, served in process
// (no network), for a node of 1,000 buckets of 10 keys; "node-only" is the
// registry with the node's collector alone.
func BenchmarkMetricsScrape(b *testing.B) {
	nd := soloNode(b, 1000, 10)
	for _, tc := range []struct {
		name string
		h    http.Handler
	}{
		{"full", newMetricsHandler(newMetricsRegistry(nd), zap.NewNop())},
		{"node-only", nodeOnlyHandler(nd)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", "/metrics", nil)
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				tc.h.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}

func nodeOnlyHandler(nd *node.Node) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newNodeCollector(nd))
	return newMetricsHandler(reg, zap.NewNop())
}
