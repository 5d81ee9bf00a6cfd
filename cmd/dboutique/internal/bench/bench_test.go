package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/textproto"
)

// Tests of "dboutique bench": its flags, its reply readers, and runs
// against an in-process text-protocol server, a fake RESP server and, when
// installed, a real redis-server.

// testTimeout bounds every wait in these tests; a healthy run takes a
// small fraction of it.
const testTimeout = 10 * time.Second

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testConfig is a configuration for tests: quiet, small and against
// addr.
func testConfig(addr, proto string) config {
	cfg := defaultConfig()
	cfg.addr = addr
	cfg.proto = proto
	cfg.clients = 4
	cfg.requests = 1000
	cfg.keyspace = 1000
	cfg.progress = 0
	cfg.readTimeout = testTimeout
	return cfg
}

// mustRunLoad runs cfg and fails the test if the run fails or does not
// account for every request it made.
func mustRunLoad(t *testing.T, cfg config) *result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	res, err := runLoad(ctx, cfg)
	if err != nil {
		t.Fatalf("runLoad: %v", err)
	}
	if res.gets+res.puts != res.requests || res.latency.TotalCount() != res.requests {
		t.Fatalf("%d requests, but %d gets + %d puts and %d latencies", res.requests, res.gets, res.puts, res.latency.TotalCount())
	}
	return res
}

// countingExecutor wraps a store, counts the operations it runs and fails
// those whose key is in fail.
type countingExecutor struct {
	store *store.Store
	fail  func(op store.Op) error // nil: fail nothing

	mu   sync.Mutex // guards ops and puts
	ops  map[store.Kind]int
	puts map[string]int // bucket/key -> PUTs
}

func newCountingExecutor() *countingExecutor {
	return &countingExecutor{store: store.NewStore(), ops: map[store.Kind]int{}, puts: map[string]int{}}
}

func (e *countingExecutor) Execute(ctx context.Context, op store.Op) (store.Result, error) {
	e.mu.Lock()
	e.ops[op.Kind]++
	if op.Kind == store.KindPut {
		e.puts[op.Bucket+"/"+op.Key]++
	}
	e.mu.Unlock()
	if e.fail != nil {
		if err := e.fail(op); err != nil {
			return store.Result{}, err
		}
	}
	return e.store.Execute(ctx, op)
}

func (e *countingExecutor) count(k store.Kind) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ops[k]
}

// startTextServer serves the text protocol from exec on a loopback
// listener until the test ends, and returns its address.
func startTextServer(t *testing.T, cfg textproto.Config) string {
	t.Helper()
	s, err := textproto.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-served; !errors.Is(err, textproto.ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	return l.Addr().String()
}

func TestBenchFlagsMustFail(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string // in stderr
	}{
		{[]string{"--proto=http"}, "resp or text"},
		{[]string{"--type=list"}, "hash or string"},
		{[]string{"--proto=text", "--type=string"}, "text protocol has no plain keys"},
		{[]string{"--workload=scan"}, "get, put or mixed"},
		{[]string{"--get-ratio=1.5"}, "get-ratio"},
		{[]string{"--get-ratio=-0.1"}, "get-ratio"},
		{[]string{"--get-ratio=NaN"}, "get-ratio"},
		{[]string{"--get-ratio=most"}, "get-ratio"},
		{[]string{"--clients=0"}, "clients"},
		{[]string{"--clients=5001"}, "clients"},
		{[]string{"--clients=many"}, "clients"},
		{[]string{"--clients"}, "clients"},
		{[]string{"--requests=0"}, "requests"},
		{[]string{"--requests=-5"}, "requests"},
		{[]string{"--duration=-1s"}, "duration"},
		{[]string{"--duration=5"}, "duration"},
		{[]string{"--pipeline=0"}, "pipeline"},
		{[]string{"--pipeline=100001"}, "pipeline"},
		{[]string{"--keyspace=0"}, "keyspace"},
		{[]string{"--value-size=0"}, "value-size"},
		{[]string{"--value-size=33554433"}, "value-size"},
		{[]string{"--buckets=0"}, "buckets"},
		{[]string{"--type=string", "--buckets=2"}, "buckets"},
		{[]string{"--bucket=a b"}, "bucket"},
		{[]string{"--bucket="}, "bucket"},
		{[]string{"--proto=text", "--password=two words"}, "password"},
		{[]string{"--progress=-1s"}, "progress"},
		{[]string{"--format=xml"}, "text or json"},
		{[]string{"--addr=nonsense"}, "host:port"},
		{[]string{"--sequential=maybe"}, "sequential"},
		{[]string{"--nope"}, "nope"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	} {
		var stdout, stderr bytes.Buffer
		code := Main(tc.args, &stdout, &stderr, nil)
		if code != 2 {
			t.Errorf("bench %q: exit code %d, want 2", tc.args, code)
		}
		if !strings.Contains(stderr.String(), tc.want) || !strings.Contains(stderr.String(), "--help") {
			t.Errorf("bench %q: stderr does not mention %q and --help:\n%s", tc.args, tc.want, stderr.String())
		}
		if stdout.Len() != 0 {
			t.Errorf("bench %q wrote to stdout:\n%s", tc.args, stdout.String())
		}
	}
}

func TestBenchHelp(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"-h", "--help"} {
		var stdout, stderr bytes.Buffer
		if code := Main([]string{arg}, &stdout, &stderr, nil); code != 0 {
			t.Fatalf("bench %s: exit code %d, want 0", arg, code)
		}
		cfg := defaultConfig()
		format := "text"
		newFlags(&cfg, &format).VisitAll(func(f *flag.Flag) {
			if !strings.Contains(stdout.String(), "--"+f.Name) {
				t.Errorf("bench %s does not mention --%s:\n%s", arg, f.Name, stdout.String())
			}
		})
		if !strings.Contains(stdout.String(), "(default 127.0.0.1:4040)") {
			t.Errorf("bench %s does not give the defaults:\n%s", arg, stdout.String())
		}
	}
}

func TestBenchText(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		edit func(*config)
	}{
		{"put", func(c *config) { c.workload = workloadPut }},
		{"get of missing keys is no error", func(c *config) { c.workload = workloadGet }},
		{"mixed", func(c *config) {}},
		{"pipelined, a last short batch", func(c *config) { c.pipeline = 7; c.requests = 1001 }},
		{"three buckets", func(c *config) { c.buckets = 3; c.pipeline = 16 }},
		{"fewer requests than clients", func(c *config) { c.clients = 8; c.requests = 3 }},
		{"values longer than a read buffer", func(c *config) { c.valueSize = 100 << 10; c.requests = 60; c.keyspace = 5 }},
		{"one client", func(c *config) { c.clients = 1; c.requests = 300; c.pipeline = 5 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			exec := newCountingExecutor()
			addr := startTextServer(t, textproto.Config{Executor: exec, MaxLineBytes: 1 << 20})
			cfg := testConfig(addr, protoText)
			tc.edit(&cfg)
			res := mustRunLoad(t, cfg)
			if res.requests != cfg.requests || res.errors != 0 {
				t.Errorf("%d requests, %d errors; want %d, 0 (first error %q)", res.requests, res.errors, cfg.requests, res.firstErr)
			}
			if got := exec.count(store.KindGet); got != int(res.gets) {
				t.Errorf("the server ran %d GETs, the tool counted %d", got, res.gets)
			}
			if got := exec.count(store.KindPut); got != int(res.puts) {
				t.Errorf("the server ran %d PUTs, the tool counted %d", got, res.puts)
			}
			if got := exec.count(store.KindCreate); got != cfg.buckets {
				t.Errorf("the server ran %d CREATEs, want one per bucket, %d", got, cfg.buckets)
			}
			switch cfg.workload {
			case workloadGet:
				if res.puts != 0 {
					t.Errorf("%d puts in a get workload", res.puts)
				}
			case workloadPut:
				if res.gets != 0 {
					t.Errorf("%d gets in a put workload", res.gets)
				}
			case workloadMixed:
				if cfg.requests >= 1000 && (res.puts == 0 || res.gets < 5*res.puts) {
					t.Errorf("%d gets and %d puts with get ratio %v", res.gets, res.puts, cfg.getRatio)
				}
			}
			if res.elapsed <= 0 || res.rps() <= 0 || res.percentileMs(50) <= 0 || res.maxMs() < res.percentileMs(99) {
				t.Errorf("implausible figures: %v, %v req/s, p50 %v ms, p99 %v ms, max %v ms",
					res.elapsed, res.rps(), res.percentileMs(50), res.percentileMs(99), res.maxMs())
			}
		})
	}
}

// TestBenchRandomKeysRepeatable checks that random keys come from the
// client's seed: two runs with one client write the same keys.
func TestBenchRandomKeysRepeatable(t *testing.T) {
	t.Parallel()
	var runs [2]map[string]int
	for i := range runs {
		exec := newCountingExecutor()
		cfg := testConfig(startTextServer(t, textproto.Config{Executor: exec}), protoText)
		cfg.clients, cfg.workload, cfg.requests = 1, workloadPut, 200
		mustRunLoad(t, cfg)
		runs[i] = exec.puts
	}
	if fmt.Sprint(runs[0]) != fmt.Sprint(runs[1]) {
		t.Errorf("two runs wrote different keys:\n%v\n%v", runs[0], runs[1])
	}
	if len(runs[0]) < 150 {
		t.Errorf("200 random keys out of 1000 gave only %d distinct keys", len(runs[0]))
	}
}

func TestBenchSequentialWritesEveryKeyOnce(t *testing.T) {
	t.Parallel()
	exec := newCountingExecutor()
	addr := startTextServer(t, textproto.Config{Executor: exec})
	cfg := testConfig(addr, protoText)
	cfg.sequential, cfg.workload, cfg.keyspace, cfg.requests = true, workloadPut, 997, 997
	cfg.clients, cfg.pipeline, cfg.valueSize = 7, 3, 5
	mustRunLoad(t, cfg)
	if len(exec.puts) != 997 {
		t.Errorf("%d keys written, want 997", len(exec.puts))
	}
	for k, n := range exec.puts {
		if n != 1 {
			t.Errorf("%s written %d times", k, n)
		}
	}
	// Read every key back from the store.
	for i := range 997 {
		res, err := exec.store.Execute(context.Background(), store.Op{Kind: store.KindGet, Bucket: "bench", Key: "key:" + strconv.Itoa(i)})
		if err != nil || res.Value != "xxxxx" {
			t.Fatalf("key:%d: %q, %v; want xxxxx", i, res.Value, err)
		}
	}
	// A sequential read of the same keys finds them all, without errors.
	cfg.workload = workloadGet
	if res := mustRunLoad(t, cfg); res.errors != 0 || res.gets != 997 {
		t.Errorf("reading back: %d gets, %d errors", res.gets, res.errors)
	}
}

func TestBenchErrorsCounted(t *testing.T) {
	t.Parallel()
	exec := newCountingExecutor()
	// Every key whose number ends in 3 fails: GETs as a missing bucket
	// (NOT FOUND), PUTs with an error of their own (ERROR ...).
	exec.fail = func(op store.Op) error {
		if op.Kind != store.KindGet && op.Kind != store.KindPut || !strings.HasSuffix(op.Key, "3") {
			return nil
		}
		if op.Kind == store.KindGet {
			return store.ErrBucketNotFound
		}
		return errors.New("disk on fire")
	}
	addr := startTextServer(t, textproto.Config{Executor: exec})
	cfg := testConfig(addr, protoText)
	cfg.sequential, cfg.pipeline = true, 4
	res := mustRunLoad(t, cfg)
	if res.requests != 1000 || res.errors != 100 {
		t.Errorf("%d requests, %d errors; want 1000, 100", res.requests, res.errors)
	}
	if res.firstErr != "NOT FOUND" && res.firstErr != "ERROR disk on fire" {
		t.Errorf("first error %q", res.firstErr)
	}
}

func TestBenchTextPassword(t *testing.T) {
	t.Parallel()
	addr := startTextServer(t, textproto.Config{Executor: store.NewStore(), Password: []byte("s3cret")})
	cfg := testConfig(addr, protoText)
	cfg.password = "s3cret"
	if res := mustRunLoad(t, cfg); res.errors != 0 {
		t.Errorf("%d errors with the right password", res.errors)
	}
	cfg.password = "wrong"
	if _, err := runLoad(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "AUTH refused: ERROR invalid password") {
		t.Errorf("wrong password: %v", err)
	}
}

func TestBenchJSON(t *testing.T) {
	t.Parallel()
	addr := startTextServer(t, textproto.Config{Executor: store.NewStore()})
	var stdout, stderr bytes.Buffer
	code := Main([]string{"--addr", addr, "--proto", "text", "--requests", "300", "--clients", "3",
		"--pipeline", "4", "--format", "json", "--progress", "0"}, &stdout, &stderr, nil)
	if code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", code, stderr.String())
	}
	out := stdout.String()
	if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "}\n") {
		t.Fatalf("not one JSON line:\n%s", out)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k, v := range got {
		keys = append(keys, k)
		_, isNum := v.(float64)
		if isNum != !slices.Contains([]string{"proto", "type", "workload"}, k) {
			t.Errorf("%s is %T", k, v)
		}
	}
	slices.Sort(keys)
	want := []string{"clients", "errors", "max_ms", "p50_ms", "p90_ms", "p999_ms", "p99_ms", "pipeline",
		"proto", "requests", "rps", "seconds", "type", "workload"}
	if !slices.Equal(keys, want) {
		t.Errorf("keys %v, want %v", keys, want)
	}
	if got["proto"] != "text" || got["type"] != "hash" || got["workload"] != "mixed" ||
		got["requests"] != 300.0 || got["clients"] != 3.0 || got["pipeline"] != 4.0 || got["errors"] != 0.0 {
		t.Errorf("wrong values: %v", got)
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr with --progress 0:\n%s", stderr.String())
	}

	// The text report.
	stdout.Reset()
	if code := Main([]string{"--addr", addr, "--proto=text", "--requests=100", "--progress=0"}, &stdout, &stderr, nil); code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", code, stderr.String())
	}
	for _, want := range []string{"requests  100 (", "req/s", "errors    0", "p99.9", "max"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("the text report lacks %q:\n%s", want, stdout.String())
		}
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestBenchProgress(t *testing.T) {
	t.Parallel()
	for _, tty := range []bool{false, true} {
		var out syncBuffer
		// The server holds its replies until the first progress line is
		// out, so the run cannot end before it.
		gate := make(chan struct{})
		srv := startFakeRESP(t, func(cmd []string) string {
			<-gate
			return fakeRedis(nil)(cmd)
		})
		go func() { // opens the gate
			defer close(gate)
			deadline := time.Now().Add(testTimeout)
			for !strings.Contains(out.String(), "requests") && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
		}()
		cfg := testConfig(srv.addr, protoRESP)
		cfg.progress, cfg.progressOut, cfg.progressTTY = time.Millisecond, &out, tty
		mustRunLoad(t, cfg)
		s := out.String()
		if !tty && !strings.HasPrefix(s, "bench: 0 requests, 0 req/s, 0 errors\n") {
			t.Errorf("no plain progress line:\n%q", s)
		}
		if tty && (!strings.HasPrefix(s, "\r\033[Kbench: 0 requests, 0 req/s, 0 errors") || !strings.HasSuffix(s, "\r\033[K")) {
			t.Errorf("no overwritten progress line ended by a cleared line:\n%q", s)
		}
	}
}

func TestBenchDuration(t *testing.T) {
	t.Parallel()
	srv := startFakeRESP(t, fakeRedis(nil))
	cfg := testConfig(srv.addr, protoRESP)
	cfg.duration, cfg.requests = 20*time.Millisecond, 0
	if res := mustRunLoad(t, cfg); res.requests == 0 {
		t.Errorf("no requests in the run")
	}
}

func TestBenchCancel(t *testing.T) {
	t.Parallel()
	srv := startFakeRESP(t, fakeRedis(nil))
	cfg := testConfig(srv.addr, protoRESP)
	cfg.requests = 1 << 40
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // cancels once the run is under way
		deadline := time.Now().Add(testTimeout)
		for srv.served.Load() < 500 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	res, err := runLoad(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.requests < 500 || res.requests >= cfg.requests || res.requests != srv.served.Load() {
		t.Errorf("%d requests done, %d served", res.requests, srv.served.Load())
	}
}

func TestBenchConnectionFailure(t *testing.T) {
	t.Parallel()
	// A server that hangs up at once.
	srv := startFakeRESP(t, func([]string) string { return fakeHangUp })
	var stdout, stderr bytes.Buffer
	code := Main([]string{"--addr=" + srv.addr, "--requests=100", "--progress=0"}, &stdout, &stderr, nil)
	if code != 1 || !strings.Contains(stderr.String(), "the server closed the connection") {
		t.Errorf("exit code %d, stderr:\n%s", code, stderr.String())
	}
	if stdout.Len() != 0 {
		t.Errorf("a report after a failure:\n%s", stdout.String())
	}

	// A server that hangs up in the middle of the run, after error replies.
	var n atomic.Int64
	srv = startFakeRESP(t, func(cmd []string) string {
		switch i := n.Add(1); {
		case i == 300:
			return fakeHangUp
		case i%10 == 0:
			return "-ERR no\r\n"
		}
		return "+OK\r\n"
	})
	cfg := testConfig(srv.addr, protoRESP)
	cfg.clients, cfg.pipeline = 3, 2
	_, err := runLoad(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "closed the connection") {
		t.Errorf("runLoad: %v", err)
	}

	// A server that stops answering: the read deadline ends the run.
	stuck := make(chan struct{})
	defer close(stuck)
	srv = startFakeRESP(t, func(cmd []string) string {
		if cmd[0] == "AUTH" {
			return "+OK\r\n"
		}
		<-stuck
		return fakeHangUp
	})
	cfg = testConfig(srv.addr, protoRESP)
	cfg.readTimeout, cfg.password = 50*time.Millisecond, "pw"
	if _, err := runLoad(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "no reply within 50ms") {
		t.Errorf("runLoad: %v", err)
	}

	// A malformed reply.
	srv = startFakeRESP(t, func(cmd []string) string { return "?what\r\n" })
	if _, err := runLoad(context.Background(), testConfig(srv.addr, protoRESP)); !errors.Is(err, errProtocol) {
		t.Errorf("runLoad: %v", err)
	}
}

func TestBenchRESPFake(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		edit func(*config)
	}{
		{"hash", func(c *config) {}},
		{"string", func(c *config) { c.typ = typeString }},
		{"hash, buckets, pipelined", func(c *config) { c.buckets = 5; c.pipeline = 16; c.clients = 3 }},
		{"string, pipelined, put", func(c *config) {
			c.typ, c.pipeline, c.workload, c.valueSize = typeString, 9, workloadPut, 300
		}},
		{"auth", func(c *config) { c.password = "a password with spaces" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake := &fakeStore{password: "a password with spaces"}
			srv := startFakeRESP(t, fakeRedis(fake))
			cfg := testConfig(srv.addr, protoRESP)
			tc.edit(&cfg)
			if cfg.password == "" {
				fake.password = ""
			}
			res := mustRunLoad(t, cfg)
			if res.requests != cfg.requests || res.errors != 0 {
				t.Fatalf("%d requests, %d errors; want %d, 0 (first error %q)", res.requests, res.errors, cfg.requests, res.firstErr)
			}
			get, put := "HGET", "HSET"
			if cfg.typ == typeString {
				get, put = "GET", "SET"
			}
			fake.mu.Lock()
			defer fake.mu.Unlock()
			if fake.calls[get] != int(res.gets) || fake.calls[put] != int(res.puts) {
				t.Errorf("server saw %v; tool counted %d gets, %d puts", fake.calls, res.gets, res.puts)
			}
			if cfg.password != "" && fake.calls["AUTH"] != cfg.clients {
				t.Errorf("%d AUTHs for %d clients", fake.calls["AUTH"], cfg.clients)
			}
			for name, vals := range fake.data {
				if cfg.typ == typeHash && cfg.buckets > 1 && !strings.HasPrefix(name, "bench:") ||
					cfg.typ == typeHash && cfg.buckets == 1 && name != "bench" ||
					cfg.typ == typeString && name != "" {
					t.Errorf("wrote to %q", name)
				}
				for k, v := range vals {
					if !strings.HasPrefix(k, "key:") || v != strings.Repeat("x", cfg.valueSize) {
						t.Fatalf("%s %s = %q", name, k, v)
					}
				}
			}
		})
	}
}

// TestBenchRESPReplyShapes runs against a server whose replies to GET are
// of every RESP type: none is an error except the error reply.
func TestBenchRESPReplyShapes(t *testing.T) {
	t.Parallel()
	replies := []string{"+OK\r\n", ":42\r\n", "$-1\r\n", "$0\r\n\r\n", "$5\r\nhe\r\no\r\n", "*-1\r\n", "*0\r\n",
		"*3\r\n$1\r\na\r\n*2\r\n:1\r\n*1\r\n+x\r\n-ERR inside\r\n", "-ERR outside\r\n"}
	var n atomic.Int64
	srv := startFakeRESP(t, func([]string) string { return replies[(n.Add(1)-1)%int64(len(replies))] })
	cfg := testConfig(srv.addr, protoRESP)
	cfg.clients, cfg.requests, cfg.pipeline = 1, 90, 8
	res := mustRunLoad(t, cfg)
	if res.errors != 10 || res.firstErr != "-ERR outside" {
		t.Errorf("%d errors, first %q; want 10, -ERR outside", res.errors, res.firstErr)
	}
}

func TestBenchReaders(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("y", 100<<10)
	for _, tc := range []struct {
		in      string
		text    bool   // a text-protocol reply
		op      opKind // for text
		isErr   bool
		wantErr error // nil: a valid reply
	}{
		{in: "+OK\r\n"},
		{in: "+" + long + "\r\n"},
		{in: "-" + long + "\r\n", isErr: true},
		{in: "-ERR x\r\n", isErr: true},
		{in: ":-3\r\n"},
		{in: "$3\r\nabc\r\n"},
		{in: "$" + strconv.Itoa(len(long)) + "\r\n" + long + "\r\n"},
		{in: "$-1\r\n"},
		{in: "*-1\r\n"},
		{in: "*2\r\n*2\r\n$1\r\na\r\n$-1\r\n:1\r\n"},
		{in: "+OK\n"},
		{in: "OK\r\n", text: true, op: opPut},
		{in: "NOT FOUND\r\n", text: true, op: opPut, isErr: true},
		{in: "NOT FOUND\r\n", text: true, op: opGet, isErr: true},
		{in: "COMMAND NOT IMPLEMENTED\r\n", text: true, op: opGet, isErr: true},
		{in: "ERROR node a unreachable\r\n", text: true, op: opGet, isErr: true},
		{in: "v\r\nOK\r\n", text: true, op: opGet},
		{in: "\r\nOK\r\n", text: true, op: opGet},
		{in: "ERROR\r\nOK\r\n", text: true, op: opGet}, // a value, not an error
		{in: long + "\r\nOK\r\n", text: true, op: opGet},
		{in: "OK\r\nOK\r\n", text: true, op: opGet},

		// Must fail.
		{in: "", wantErr: io.ErrUnexpectedEOF},
		{in: "+OK", wantErr: io.ErrUnexpectedEOF},
		{in: "\r\n", wantErr: errProtocol},
		{in: "?\r\n", wantErr: errProtocol},
		{in: "_\r\n", wantErr: errProtocol},
		{in: "$\r\n", wantErr: errProtocol},
		{in: "$-2\r\n", wantErr: errProtocol},
		{in: "$x\r\n", wantErr: errProtocol},
		{in: "$+3\r\nabc\r\n", wantErr: errProtocol},
		{in: "$99999999999999999999\r\n", wantErr: errProtocol},
		{in: "$3\r\nabcd\r\n", wantErr: errProtocol},
		{in: "$3\r\nab", wantErr: io.ErrUnexpectedEOF},
		{in: "*x\r\n", wantErr: errProtocol},
		{in: "*2\r\n:1\r\n", wantErr: io.ErrUnexpectedEOF},
		{in: ":" + strings.Repeat("1", 40) + "\r\n", wantErr: errProtocol},
		{in: "$" + strconv.Itoa(2<<20) + "\r\n", wantErr: errTooLarge},
		{in: "*3\r\n$" + strconv.Itoa(600<<10) + "\r\n" + strings.Repeat("z", 600<<10) + "\r\n$" + strconv.Itoa(600<<10) + "\r\n", wantErr: errTooLarge},
		{in: "+" + strings.Repeat("z", 2<<20) + "\r\n", wantErr: errTooLarge},
		{in: strings.Repeat("*1\r\n", maxDepth+1) + ":1\r\n", wantErr: errTooDeep},
		{in: "*100000000\r\n" + strings.Repeat(":1\r\n", 1000), wantErr: io.ErrUnexpectedEOF},
		{in: "v\r\n", text: true, op: opGet, wantErr: io.ErrUnexpectedEOF},
		{in: "v\r\nNOT OK\r\n", text: true, op: opGet, wantErr: errProtocol},
		{in: "PONG\r\n", text: true, op: opPut, wantErr: errProtocol},
		{in: strings.Repeat("z", 2<<20) + "\r\nOK\r\n", text: true, op: opGet, wantErr: errTooLarge},
	} {
		rr := replyReader{r: bufio.NewReaderSize(strings.NewReader(tc.in), 64<<10), max: 1 << 20}
		var isErr bool
		var err error
		if tc.text {
			isErr, err = rr.readText(tc.op)
		} else {
			isErr, err = rr.readResp()
		}
		name := tc.in[:min(len(tc.in), 40)]
		switch {
		case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
			t.Errorf("%q: error %v, want %v", name, err, tc.wantErr)
		case tc.wantErr == nil && err != nil:
			t.Errorf("%q: error %v", name, err)
		case tc.wantErr == nil && isErr != tc.isErr:
			t.Errorf("%q: isErr %v, want %v", name, isErr, tc.isErr)
		case tc.wantErr == nil && rr.r.Buffered() != 0:
			t.Errorf("%q: %d bytes left unread", name, rr.r.Buffered())
		}
	}
}

// TestBenchReadersSplit feeds the replies to a reader a few bytes at a
// time: a reply split across reads is still read whole.
func TestBenchReadersSplit(t *testing.T) {
	t.Parallel()
	in := "+OK\r\n$5\r\nhello\r\n*2\r\n$1\r\na\r\n:7\r\n-ERR e\r\n$-1\r\n"
	for seed := range uint64(20) {
		rr := replyReader{r: bufio.NewReaderSize(&choppyReader{s: in, rng: rand.New(rand.NewPCG(seed, 1))}, 16), max: 1 << 20}
		var errs int
		for range 5 {
			isErr, err := rr.readResp()
			if err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			if isErr {
				errs++
			}
		}
		if _, err := rr.readResp(); !errors.Is(err, io.ErrUnexpectedEOF) || errs != 1 {
			t.Fatalf("seed %d: %d errors, then %v", seed, errs, err)
		}
	}
}

// choppyReader returns s a few bytes per Read.
type choppyReader struct {
	s   string
	rng *rand.Rand
}

func (c *choppyReader) Read(p []byte) (int, error) {
	if c.s == "" {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 1+c.rng.IntN(4))], c.s)
	c.s = c.s[n:]
	return n, nil
}

// TestBenchEncoders is not parallel: it counts allocations.
func TestBenchEncoders(t *testing.T) {
	cfg := defaultConfig()
	cfg.valueSize = 2
	e := newRESPEncoder(&cfg)
	if got := string(e.appendRequest(nil, opGet, 0, 42)); got != "*3\r\n$4\r\nHGET\r\n$5\r\nbench\r\n$6\r\nkey:42\r\n" {
		t.Errorf("HGET: %q", got)
	}
	if got := string(e.appendRequest(nil, opPut, 0, 7)); got != "*4\r\n$4\r\nHSET\r\n$5\r\nbench\r\n$5\r\nkey:7\r\n$2\r\nxx\r\n" {
		t.Errorf("HSET: %q", got)
	}
	cfg.buckets = 12
	e = newRESPEncoder(&cfg)
	if got := string(e.appendRequest(nil, opGet, 11, 0)); got != "*3\r\n$4\r\nHGET\r\n$8\r\nbench:11\r\n$5\r\nkey:0\r\n" {
		t.Errorf("HGET in bucket 11: %q", got)
	}
	cfg.buckets, cfg.typ = 1, typeString
	e = newRESPEncoder(&cfg)
	if got := string(e.appendRequest(nil, opGet, 0, 1234567890)); got != "*2\r\n$3\r\nGET\r\n$14\r\nkey:1234567890\r\n" {
		t.Errorf("GET: %q", got)
	}
	if got := string(e.appendRequest([]byte("A"), opPut, 0, 1)); got != "A*3\r\n$3\r\nSET\r\n$5\r\nkey:1\r\n$2\r\nxx\r\n" {
		t.Errorf("SET: %q", got)
	}
	cfg.typ, cfg.buckets = typeHash, 2
	te := newTextEncoder(&cfg)
	if got := string(te.appendRequest(te.appendRequest(nil, opGet, 1, 5), opPut, 0, 6)); got != "GET bench:1 key:5\r\nPUT bench:0 key:6 xx\r\n" {
		t.Errorf("text: %q", got)
	}
	// Building a request allocates nothing once the buffer has grown.
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() { buf = e.appendRequest(buf[:0], opPut, 0, 99999) }); n != 0 {
		t.Errorf("%v allocations per request", n)
	}
}

// TestBenchReaderAllocations is not parallel: it counts allocations.
func TestBenchReaderAllocations(t *testing.T) {
	reply := strings.Repeat("$3\r\nabc\r\n+OK\r\n*2\r\n:1\r\n$-1\r\n-ERR e\r\n", 200)
	r := strings.NewReader(reply)
	rr := replyReader{r: bufio.NewReaderSize(r, 64<<10), max: 1 << 20}
	if n := testing.AllocsPerRun(100, func() {
		r.Reset(reply)
		rr.r.Reset(r)
		for range 800 { // four replies per repetition
			if _, err := rr.readResp(); err != nil {
				t.Fatal(err)
			}
		}
	}); n != 0 {
		t.Errorf("%v allocations per 800 replies", n)
	}
}

// The redis-server tests.

// startRedis starts redis-server on a free loopback port until the test
// ends, and returns its address; it skips the test when redis-server is
// not installed.
func startRedis(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed")
	}
	for range 20 {
		port := strconv.Itoa(20000 + rand.IntN(30000))
		cmd := exec.Command(path, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }() // ends when the server is killed
		t.Cleanup(func() { cmd.Process.Kill(); <-exited })
		addr := net.JoinHostPort("127.0.0.1", port)
		// Up when it answers with its own process ID; a failure to bind
		// makes it exit.
		want := "process_id:" + strconv.Itoa(cmd.Process.Pid) + "\r\n"
		deadline := time.Now().Add(testTimeout)
		for time.Now().Before(deadline) {
			select {
			case <-exited:
				deadline = time.Time{} // try another port
				continue
			default:
			}
			if info, err := respDo(addr, "INFO", "server"); err == nil && strings.Contains(info, want) {
				return addr
			}
			time.Sleep(5 * time.Millisecond)
		}
		select {
		case <-exited:
		default:
			t.Fatalf("redis-server on port %s did not start", port)
		}
	}
	t.Fatal("redis-server did not start on any of 20 ports")
	return ""
}

// respDo sends one command to the RESP server at addr and returns its
// reply: the text of a simple string, bulk string or integer, "-..." for
// an error.
func respDo(addr string, args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	req := []byte("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		req = appendBulk(req, []byte(a))
	}
	if _, err := c.Write(req); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", errors.New("empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return line, nil
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("reply %q", line)
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(r, b); err != nil {
			return "", err
		}
		return string(b[:n]), nil
	}
	return "", fmt.Errorf("reply %q", line)
}

func mustRespDo(t *testing.T, addr string, args ...string) string {
	t.Helper()
	s, err := respDo(addr, args...)
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return s
}

// redisCalls returns how often redis ran cmd since the last CONFIG
// RESETSTAT.
func redisCalls(t *testing.T, addr, cmd string) int {
	t.Helper()
	info := mustRespDo(t, addr, "INFO", "commandstats")
	for line := range strings.SplitSeq(info, "\r\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_"+cmd+":calls="); ok {
			n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
			return n
		}
	}
	return 0
}

func TestBenchRedis(t *testing.T) {
	t.Parallel()
	addr := startRedis(t)

	// Strings, filled sequentially: every key written exactly once.
	cfg := testConfig(addr, protoRESP)
	cfg.typ, cfg.sequential, cfg.workload, cfg.requests, cfg.keyspace = typeString, true, workloadPut, 2000, 2000
	cfg.clients, cfg.pipeline = 10, 3
	mustRespDo(t, addr, "CONFIG", "RESETSTAT")
	if res := mustRunLoad(t, cfg); res.errors != 0 {
		t.Fatalf("%d errors: %s", res.errors, res.firstErr)
	}
	if n := mustRespDo(t, addr, "DBSIZE"); n != "2000" {
		t.Errorf("DBSIZE %s, want 2000", n)
	}
	if n := redisCalls(t, addr, "set"); n != 2000 {
		t.Errorf("%d SETs, want 2000", n)
	}
	for _, k := range []string{"key:0", "key:1999"} {
		if v := mustRespDo(t, addr, "GET", k); v != "xxx" {
			t.Errorf("GET %s: %q", k, v)
		}
	}
	cfg.workload, cfg.pipeline = workloadMixed, 16
	if res := mustRunLoad(t, cfg); res.errors != 0 || res.requests != 2000 {
		t.Errorf("mixed: %d requests, %d errors: %s", res.requests, res.errors, res.firstErr)
	}

	// Hashes in four buckets, filled sequentially: each key lands in one
	// bucket once.
	cfg = testConfig(addr, protoRESP)
	cfg.sequential, cfg.workload, cfg.requests, cfg.keyspace, cfg.buckets = true, workloadPut, 1500, 1500, 4
	mustRespDo(t, addr, "CONFIG", "RESETSTAT")
	mustRunLoad(t, cfg)
	total := 0
	for i := range 4 {
		n, _ := strconv.Atoi(mustRespDo(t, addr, "HLEN", "bench:"+strconv.Itoa(i)))
		if n == 0 {
			t.Errorf("bucket bench:%d is empty", i)
		}
		total += n
	}
	if total != 1500 || redisCalls(t, addr, "hset") != 1500 {
		t.Errorf("%d keys in the buckets after %d HSETs, want 1500", total, redisCalls(t, addr, "hset"))
	}

	// Hash commands on a string key: every request is an error reply.
	mustRespDo(t, addr, "SET", "notahash", "v")
	cfg = testConfig(addr, protoRESP)
	cfg.bucket, cfg.pipeline = "notahash", 5
	res := mustRunLoad(t, cfg)
	if res.errors != cfg.requests || !strings.HasPrefix(res.firstErr, "-WRONGTYPE") {
		t.Errorf("%d errors of %d requests, first %q", res.errors, cfg.requests, res.firstErr)
	}

	// AUTH with the wrong password stops the run.
	cfg.password = "nope"
	if _, err := runLoad(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "AUTH refused: -") {
		t.Errorf("AUTH without a password set: %v", err)
	}
}

// The fake RESP server.

// fakeHangUp, returned by a fake server's handler, closes the connection.
const fakeHangUp = "\x00hang up"

// fakeRESP serves RESP commands with a handler on a loopback listener.
type fakeRESP struct {
	addr   string
	served atomic.Int64 // replies sent
}

// startFakeRESP serves until the test ends. handle gets each command's
// words and returns the reply's bytes; it is called from one goroutine per
// connection.
func startFakeRESP(t *testing.T, handle func(cmd []string) string) *fakeRESP {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeRESP{addr: l.Addr().String()}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex // guards conns
		conns = map[net.Conn]bool{}
	)
	wg.Add(1)
	go func() { // accepts until the listener is closed
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() { // serves c until it breaks or is closed
				defer wg.Done()
				defer c.Close()
				r, w := bufio.NewReader(c), bufio.NewWriter(c)
				for {
					cmd, err := readFakeCommand(r)
					if err != nil {
						return
					}
					reply := handle(cmd)
					if reply == fakeHangUp {
						return
					}
					w.WriteString(reply)
					f.served.Add(1)
					if r.Buffered() == 0 && w.Flush() != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return f
}

// readFakeCommand reads one RESP array of bulk strings.
func readFakeCommand(r *bufio.Reader) ([]string, error) {
	header := func(prefix byte) (int, error) {
		line, err := r.ReadString('\n')
		if err != nil {
			return 0, err
		}
		if len(line) < 4 || line[0] != prefix || !strings.HasSuffix(line, "\r\n") {
			return 0, fmt.Errorf("bad header %q", line)
		}
		n, err := strconv.Atoi(line[1 : len(line)-2])
		if err != nil || n < 0 || n > 1<<20 {
			return 0, fmt.Errorf("bad header %q", line)
		}
		return n, nil
	}
	n, err := header('*')
	if err != nil {
		return nil, err
	}
	cmd := make([]string, n)
	for i := range cmd {
		size, err := header('$')
		if err != nil {
			return nil, err
		}
		b := make([]byte, size+2)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, err
		}
		if string(b[size:]) != "\r\n" {
			return nil, errors.New("bulk string without CRLF")
		}
		cmd[i] = string(b[:size])
	}
	if n == 0 {
		return nil, errors.New("empty command")
	}
	return cmd, nil
}

// fakeStore is the data of a fake Redis: hashes by name, plain keys
// under the name "".
type fakeStore struct {
	password string // required by AUTH when not empty

	mu    sync.Mutex // guards data and calls
	data  map[string]map[string]string
	calls map[string]int
}

// fakeRedis returns a handler for GET, SET, HGET, HSET and AUTH on s (a
// new store when nil).
func fakeRedis(s *fakeStore) func(cmd []string) string {
	if s == nil {
		s = &fakeStore{}
	}
	return func(cmd []string) string {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.data == nil {
			s.data, s.calls = map[string]map[string]string{}, map[string]int{}
		}
		s.calls[cmd[0]]++
		bulk := func(v string, ok bool) string {
			if !ok {
				return "$-1\r\n"
			}
			return "$" + strconv.Itoa(len(v)) + "\r\n" + v + "\r\n"
		}
		set := func(name, k, v string) {
			if s.data[name] == nil {
				s.data[name] = map[string]string{}
			}
			s.data[name][k] = v
		}
		switch {
		case cmd[0] == "AUTH" && len(cmd) == 2:
			if s.password == "" || cmd[1] != s.password {
				return "-WRONGPASS invalid password\r\n"
			}
			return "+OK\r\n"
		case cmd[0] == "GET" && len(cmd) == 2:
			v, ok := s.data[""][cmd[1]]
			return bulk(v, ok)
		case cmd[0] == "SET" && len(cmd) == 3:
			set("", cmd[1], cmd[2])
			return "+OK\r\n"
		case cmd[0] == "HGET" && len(cmd) == 3:
			v, ok := s.data[cmd[1]][cmd[2]]
			return bulk(v, ok)
		case cmd[0] == "HSET" && len(cmd) == 4:
			set(cmd[1], cmd[2], cmd[3])
			return ":1\r\n"
		}
		return "-ERR unknown command\r\n"
	}
}
