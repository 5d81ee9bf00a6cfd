package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/dboutique/dboutique/node/memlimit"
	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/textproto"
	"github.com/dboutique/dboutique/textproto/prototest"
)

// testTimeout bounds every wait in these tests; a healthy run takes a small
// fraction of it. It is well under shutdownGrace, so a node that exits
// within it after a signal did not sit out the grace period.
const testTimeout = 10 * time.Second

// The binary under test, built once by the first test that needs it into a
// directory that TestMain removes.
var (
	binDir    string
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dboutique-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		os.RemoveAll(dir)
		os.Exit(code)
	}))
}

// binary returns the path of the dboutique binary, building it on first use.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		path := filepath.Join(binDir, "dboutique")
		out, err := exec.CommandContext(ctx, "go", "build", "-o", path, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		binPath = path
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// process is a running dboutique binary whose stderr is collected line by line.
type process struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdout bytes.Buffer // read only after exit

	mu      sync.Mutex    // guards lines
	lines   []string      // stderr so far
	newLine chan struct{} // signalled (without blocking) after a line is added

	exited chan struct{} // closed once the process has exited and stderr is drained
	err    error         // cmd.Wait's result, set before exited closes
}

// startNode starts the binary with args and, on top of this process's
// environment less every DBOUTIQUE_ variable, the variables in env
// ("NAME=value"). The test's cleanup kills it if it is still running.
func startNode(t *testing.T, env []string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Env = append(cleanEnv(), env...)
	return startProcess(t, cmd, "dboutique "+strings.Join(args, " "))
}

// startProcess starts cmd, a dboutique process described by what, and
// collects its stderr. The test's cleanup kills it if it is still running,
// and logs its stderr if the test failed.
func startProcess(t *testing.T, cmd *exec.Cmd, what string) *process {
	t.Helper()
	p := &process{t: t, cmd: cmd, newLine: make(chan struct{}, 1), exited: make(chan struct{})}
	p.cmd.Stdout = &p.stdout
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go p.collect(stderr) // ends when the process exits
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("stderr of %s:\n%s", what, p.stderr())
		}
	})
	return p
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envPrefix) {
			env = append(env, kv)
		}
	}
	return env
}

func (p *process) collect(r io.Reader) {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			p.mu.Lock()
			p.lines = append(p.lines, strings.TrimRight(line, "\r\n"))
			p.mu.Unlock()
			select {
			case p.newLine <- struct{}{}:
			default:
			}
		}
		if err != nil {
			break
		}
	}
	p.err = p.cmd.Wait()
	close(p.exited)
}

func (p *process) stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// waitLine waits for a stderr line containing s and returns it.
func (p *process) waitLine(s string) string {
	p.t.Helper()
	timer := time.NewTimer(testTimeout)
	defer timer.Stop()
	for i := 0; ; {
		p.mu.Lock()
		lines := p.lines[i:]
		i = len(p.lines)
		p.mu.Unlock()
		for _, l := range lines {
			if strings.Contains(l, s) {
				return l
			}
		}
		select {
		case <-p.newLine:
		case <-p.exited:
			if p.hasLine(s) {
				continue
			}
			p.t.Fatalf("dboutique exited (%v) before logging %q", p.err, s)
		case <-timer.C:
			p.t.Fatalf("timed out waiting for dboutique to log %q", s)
		}
	}
}

func (p *process) hasLine(s string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// addr waits for the node to log the address it accepts connections on.
func (p *process) addr() string {
	p.t.Helper()
	const msg = "Accepting connections on "
	line := p.waitLine(msg)
	_, rest, _ := strings.Cut(line, msg)
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		p.t.Fatalf("no address in %q", line)
	}
	return fields[0]
}

func (p *process) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
}

// exitCode waits for the process to exit and returns its exit code.
func (p *process) exitCode() int {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(testTimeout):
		p.t.Fatalf("dboutique still running after %v", testTimeout)
	}
	var ee *exec.ExitError
	if p.err != nil && !errors.As(p.err, &ee) {
		p.t.Fatalf("waiting for dboutique: %v", p.err)
	}
	return p.cmd.ProcessState.ExitCode()
}

// stopNode sends SIGTERM and checks that the node exits 0 after logging
// that it stopped.
func (p *process) stop() {
	p.t.Helper()
	p.signal(syscall.SIGTERM)
	if code := p.exitCode(); code != 0 {
		p.t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}
	if !p.hasLine("stopped") {
		p.t.Errorf("no \"stopped\" line in the log")
	}
}

func dialClient(t *testing.T, addr string, opts ...textproto.ClientOption) *textproto.Client {
	t.Helper()
	c, err := textproto.Dial(ctxT(t), addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func TestEndToEnd(t *testing.T) {
	t.Parallel()
	p := startNode(t, nil, "--listen", "127.0.0.1:0")
	addr := p.addr()
	if host, port, err := net.SplitHostPort(addr); err != nil || host != "127.0.0.1" || port == "0" {
		t.Fatalf("logged address %q, want 127.0.0.1 and the port bound", addr)
	}

	// The transcript byte for byte, then through the Go client on a
	// bucket of its own.
	prototest.RunTranscript(t, addr)

	ctx := ctxT(t)
	c := dialClient(t, addr)
	if _, err := c.Get(ctx, "pantry", "eggs"); !errors.Is(err, store.ErrBucketNotFound) {
		t.Fatalf("Get in a missing bucket: %v, want ErrBucketNotFound", err)
	}
	if err := c.Create(ctx, "pantry"); err != nil {
		t.Fatal(err)
	}
	if err := c.Put(ctx, "pantry", "eggs", "3"); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(ctx, "pantry", "eggs"); err != nil || v != "3" {
		t.Fatalf("Get = %q, %v; want 3", v, err)
	}
	if err := c.Delete(ctx, "pantry", "eggs"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "pantry", "eggs"); !errors.Is(err, store.ErrKeyNotFound) {
		t.Fatalf("Get of a deleted key: %v, want ErrKeyNotFound", err)
	}
	if b, err := c.Buckets(ctx); err != nil || strings.Join(b, ",") != "pantry,shopping" {
		t.Fatalf("Buckets = %q, %v", b, err)
	}

	p.stop()
}

// TestSignalWithIdleClient: a connected, idle client does not hold up the
// stop; the node closes its connection and exits 0 long before the grace
// period.
func TestSignalWithIdleClient(t *testing.T) {
	t.Parallel()
	for _, sig := range []os.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			p := startNode(t, nil, "--listen", "127.0.0.1:0")
			c := dialClient(t, p.addr())
			ctx := ctxT(t)
			if err := c.Ping(ctx); err != nil {
				t.Fatal(err)
			}
			p.signal(sig)
			if code := p.exitCode(); code != 0 {
				t.Fatalf("exit code = %d, want 0", code)
			}
			if err := c.Ping(ctx); err == nil {
				t.Fatal("Ping after the node stopped succeeded")
			}
			p.waitLine("stopped")
		})
	}
}

func TestEnvironment(t *testing.T) {
	t.Parallel()
	t.Run("honoured", func(t *testing.T) {
		t.Parallel()
		p := startNode(t, []string{"DBOUTIQUE_LISTEN=127.0.0.1:0", "DBOUTIQUE_MAX_CONNS=1"})
		addr := p.addr()
		if strings.HasSuffix(addr, ":4040") {
			t.Fatalf("listening on %s: DBOUTIQUE_LISTEN was ignored", addr)
		}
		first := prototest.Dial(t, addr)
		first.Send("PING\r\n")
		first.Expect("PONG\r\n")
		second := prototest.Dial(t, addr)
		second.Expect("ERROR too many connections\r\n")
		second.ExpectClosed()
		p.stop()
	})
	t.Run("flags win", func(t *testing.T) {
		t.Parallel()
		p := startNode(t, []string{"DBOUTIQUE_LISTEN=not-an-address", "DBOUTIQUE_MAX_CONNS=1"},
			"--listen", "127.0.0.1:0", "--max-conns", "2")
		addr := p.addr()
		first := prototest.Dial(t, addr)
		first.Send("PING\r\n")
		first.Expect("PONG\r\n")
		second := prototest.Dial(t, addr)
		second.Send("PING\r\n")
		second.Expect("PONG\r\n")
		p.stop()
	})
}

func TestPasswordFile(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(file, []byte("  s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startNode(t, nil, "--listen", "127.0.0.1:0", "--password-file", file)
	addr := p.addr()
	ctx := ctxT(t)

	anon := dialClient(t, addr)
	if err := anon.Create(ctx, "b"); !errors.Is(err, textproto.ErrAuthRequired) {
		t.Fatalf("Create without AUTH: %v, want ErrAuthRequired", err)
	}
	if _, err := textproto.Dial(ctx, addr, textproto.WithPassword("wrong")); !errors.Is(err, textproto.ErrInvalidPassword) {
		t.Fatalf("Dial with a wrong password: %v, want ErrInvalidPassword", err)
	}
	c := dialClient(t, addr, textproto.WithPassword("s3cret"))
	if err := c.Create(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if err := c.Put(ctx, "b", "k", "v"); err != nil {
		t.Fatal(err)
	}
	p.stop()
}

func TestHelp(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"--help", "-h"} {
		p := startNode(t, nil, arg)
		if code := p.exitCode(); code != 0 {
			t.Fatalf("%s: exit code %d, want 0", arg, code)
		}
		help := p.stdout.String()
		cfg := defaultConfig()
		for _, s := range flagSpecs(&cfg) {
			for _, want := range []string{"--" + s.name, envName(s.name)} {
				if !strings.Contains(help, want) {
					t.Errorf("%s does not mention %s:\n%s", arg, want, help)
				}
			}
		}
		for _, def := range []string{"127.0.0.1:4040", "64KiB", "10000", "5m0s", "info", "noeviction"} {
			if !strings.Contains(help, "default "+def) {
				t.Errorf("%s does not give the default %s:\n%s", arg, def, help)
			}
		}
		// How long a stop may take, from the defaults it is made of.
		for _, bound := range []string{"--leave-timeout (default " + cfg.leaveTimeout.String() + ")",
			"most " + shutdownGrace.String(), "exits within " + (cfg.leaveTimeout + shutdownGrace).String()} {
			if !strings.Contains(help, bound) {
				t.Errorf("%s does not state %q:\n%s", arg, bound, help)
			}
		}
	}
}

func TestBadFlagExitsNonZero(t *testing.T) {
	t.Parallel()
	p := startNode(t, nil, "--max-line", "1x")
	if code := p.exitCode(); code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
	if s := p.stderr(); !strings.Contains(s, "max-line") || !strings.Contains(s, `unknown unit "x"`) {
		t.Errorf("stderr does not explain the bad flag:\n%s", s)
	}
}

// TestBenchCommand runs "dboutique bench" through run, as the binary
// dispatches it: its help, a bad flag, and a short run against a client
// server in this process.
func TestBenchCommand(t *testing.T) {
	t.Parallel()
	noEnv := func(string) string { return "" }
	var stdout, stderr bytes.Buffer
	if code := run([]string{"bench", "--help"}, noEnv, &stdout, &stderr, nil); code != 0 || !strings.Contains(stdout.String(), "dboutique bench") {
		t.Errorf("run bench --help: exit code %d, stdout:\n%s", code, stdout.String())
	}
	stdout.Reset()
	if code := run([]string{"bench", "--clients=0"}, noEnv, &stdout, &stderr, nil); code != 2 || !strings.Contains(stderr.String(), "dboutique bench: --clients 0") {
		t.Errorf("run bench --clients=0: exit code %d, stderr:\n%s", code, stderr.String())
	}

	srv, err := textproto.NewServer(textproto.Config{Executor: store.NewStore()})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }() // ends after Close
	defer func() {
		srv.Close()
		if err := <-served; !errors.Is(err, textproto.ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	}()
	stdout.Reset()
	stderr.Reset()
	code := run([]string{"bench", "--addr=" + l.Addr().String(), "--proto=text", "--requests=50", "--format=json", "--progress=0"}, noEnv, &stdout, &stderr, nil)
	if code != 0 || !strings.Contains(stdout.String(), `"requests":50,`) {
		t.Errorf("exit code %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
}

// runInProcess calls run and returns its exit code and output. It is for
// configurations that must fail before serving; one that starts serving is
// stopped and fails the test.
func runInProcess(t *testing.T, args []string, env map[string]string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	sigs := make(chan os.Signal, 2)
	done := make(chan int, 1)
	go func() {
		done <- run(args, func(k string) string { return env[k] }, &out, &syncWriter{w: &errOut}, sigs)
	}()
	select {
	case code = <-done:
	case <-time.After(testTimeout):
		sigs <- syscall.SIGTERM
		sigs <- syscall.SIGTERM
		<-done
		t.Fatalf("run %q with %v did not fail; it served", args, env)
	}
	return code, out.String(), errOut.String()
}

type syncWriter struct {
	mu sync.Mutex // guards w
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string // in stderr
	}{
		{args: []string{"--max-line", "10"}, want: "max-line"},
		{args: []string{"--max-line", "2GiB"}, want: "out of range"},
		{args: []string{"--max-line=64x"}, want: "unknown unit"},
		{args: []string{"--max-conns=0"}, want: "max-conns"},
		{args: []string{"--max-conns=many"}, want: "whole number"},
		{args: []string{"--idle-timeout=-1s"}, want: "negative"},
		{args: []string{"--idle-timeout=5"}, want: "idle-timeout"},
		{args: []string{"--log-level=loud"}, want: "debug, info, warn or error"},
		{args: []string{"--listen=nonsense"}, want: "host:port"},
		{args: []string{"--nope"}, want: "nope"},
		{args: []string{"--listen"}, want: "needs an argument"},
		{args: []string{"serve"}, want: `unexpected argument "serve"`},
		{env: map[string]string{"DBOUTIQUE_MAX_CONNS": "0"}, want: "DBOUTIQUE_MAX_CONNS"},
		{env: map[string]string{"DBOUTIQUE_MAX_LINE": "huge"}, want: "DBOUTIQUE_MAX_LINE"},
		{env: map[string]string{"DBOUTIQUE_IDLE_TIMEOUT": "forever"}, want: "DBOUTIQUE_IDLE_TIMEOUT"},
		{env: map[string]string{"DBOUTIQUE_LOG_LEVEL": "verbose"}, want: "DBOUTIQUE_LOG_LEVEL"},
		{env: map[string]string{"DBOUTIQUE_LISTEN": "nonsense"}, want: "DBOUTIQUE_LISTEN"},
		{args: []string{"--name", "a b"}, want: "one word"},
		{args: []string{"--name=x,y"}, want: "one word"},
		{args: []string{"--cluster="}, want: "one word"},
		{args: []string{"--ranges", "a-z=one,m=two"}, want: "ranges"},
		{args: []string{"--mdns=maybe"}, want: "mdns"},
		{args: []string{"--join", "/ip4/127.0.0.1/tcp/7040"}, want: "join"},
		{args: []string{"--join="}, want: "want a value"},
		{args: []string{"--dead-after=100ms"}, want: "out of range"},
		{args: []string{"--dead-after=soon"}, want: "dead-after"},
		{args: []string{"--replicas=0"}, want: "replicas"},
		{args: []string{"--replicas=17"}, want: "replicas"},
		{args: []string{"--replicas=two"}, want: "replicas"},
		{args: []string{"--min-members=-1"}, want: "min-members"},
		{args: []string{"--leave-timeout=0s"}, want: "leave-timeout"},
		{args: []string{"--tombstone-grace=1s"}, want: "tombstone-grace"},
		{env: map[string]string{"DBOUTIQUE_REPLICAS": "many"}, want: "DBOUTIQUE_REPLICAS"},
		{env: map[string]string{"DBOUTIQUE_MDNS": "perhaps"}, want: "DBOUTIQUE_MDNS"},
		{env: map[string]string{"DBOUTIQUE_JOIN": "nonsense"}, want: "DBOUTIQUE_JOIN"},
		{args: []string{"--maxmemory=64 mb"}, want: "maxmemory"},
		{args: []string{"--maxmemory=64x"}, want: "unknown unit"},
		{args: []string{"--maxmemory=1000"}, want: "too small"},
		{args: []string{"--maxmemory=16mb"}, want: "at least 32mb"},
		{args: []string{"--maxmemory-policy=lru"}, want: "allkeys-lru"},
		{env: map[string]string{"DBOUTIQUE_MAXMEMORY": "-1"}, want: "DBOUTIQUE_MAXMEMORY"},
		{env: map[string]string{"DBOUTIQUE_MAXMEMORY_POLICY": "evict"}, want: "DBOUTIQUE_MAXMEMORY_POLICY"},
	} {
		code, _, stderr := runInProcess(t, tc.args, tc.env)
		if code != 2 {
			t.Errorf("run %q env %v: exit code %d, want 2", tc.args, tc.env, code)
		}
		if !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, "--help") {
			t.Errorf("run %q env %v: stderr does not mention %q and --help:\n%s", tc.args, tc.env, tc.want, stderr)
		}
	}
}

func TestStartErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, busyPort, _ := net.SplitHostPort(busy.Addr().String())

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing password file", []string{"--password-file", filepath.Join(dir, "nope")}, "password file"},
		{"empty password file", []string{"--password-file", write("empty", "")}, "is empty"},
		{"blank password file", []string{"--password-file", write("blank", " \r\n\t\n")}, "is empty"},
		{"two words", []string{"--password-file", write("two", "two words\n")}, "white space"},
		{"two lines", []string{"--password-file", write("lines", "one\ntwo\n")}, "white space"},
		{"address in use", []string{"--listen", busy.Addr().String()}, "cannot listen"},
		{"p2p address in use", []string{"--p2p-listen", "/ip4/127.0.0.1/tcp/" + busyPort}, "peer-to-peer"},
		{"p2p address not a multiaddr", []string{"--p2p-listen", "127.0.0.1:7040"}, "peer-to-peer"},
		{"missing cluster key", []string{"--psk-file", filepath.Join(dir, "nope")}, "cluster key"},
		{"bad cluster key", []string{"--psk-file", write("bad.key", "not a key\n")}, "cluster key"},
		{"corrupt identity", []string{"--identity", write("bad.id", "garbage")}, "identity"},
	} {
		args := append([]string{"--listen", "127.0.0.1:0"}, tc.args...)
		code, _, stderr := runInProcess(t, args, nil)
		if code != 1 {
			t.Errorf("%s: exit code %d, want 1", tc.name, code)
		}
		if !strings.Contains(stderr, tc.want) {
			t.Errorf("%s: stderr does not mention %q:\n%s", tc.name, tc.want, stderr)
		}
	}
}

func TestReadPassword(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for i, tc := range []struct{ content, want string }{
		{"s3cret", "s3cret"},
		{"s3cret\n", "s3cret"},
		{"s3cret\r\n", "s3cret"},
		{"  s3cret \n\n", "s3cret"},
		{"p@ss:w0rd!", "p@ss:w0rd!"},
	} {
		path := filepath.Join(dir, fmt.Sprint(i))
		if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := readPassword(path)
		if err != nil || string(got) != tc.want {
			t.Errorf("readPassword(%q) = %q, %v; want %q", tc.content, got, err, tc.want)
		}
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte("p"), maxPasswordFile+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readPassword(big); err == nil || !strings.Contains(err.Error(), "larger") {
		t.Errorf("readPassword of a huge file: %v", err)
	}
}

func TestParseSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"0", 0},
		{"64", 64},
		{"65536", 65536},
		{" 65536\n", 65536},
		{"64b", 64},
		{"64B", 64},
		{"64k", 64 << 10},
		{"64K", 64 << 10},
		{"64KB", 64 << 10},
		{"64kib", 64 << 10},
		{"64KiB", 64 << 10},
		{"1m", 1 << 20},
		{"1MiB", 1 << 20},
		{"1MB", 1 << 20},
		{"1g", 1 << 30},
		{"1GiB", 1 << 30},
		{"007k", 7 << 10},
		{"8589934591g", 8589934591 << 30}, // the largest count of GiB in an int64
		{"9223372036854775807", 1<<63 - 1},
	} {
		got, err := parseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{
		"", " ", "k", "KiB", "-1", "+64", "-64k", "1.5k", ".5k", "1e3", "0x40", "64 KiB", "64KiBs",
		"64kk", "64x", "64t", "64TiB", "64i", "64ib", "k64", "6 4", "64\x00",
		"9223372036854775808", "99999999999999999999", "8589934592g", "9007199254740992m",
	} {
		if got, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, got)
		}
	}
}

// TestMemoryFlags checks what --maxmemory and --maxmemory-policy accept,
// in Redis's units and names, and a list of values they must refuse.
func TestMemoryFlags(t *testing.T) {
	t.Parallel()
	parse := func(args ...string) (config, error) {
		return parseConfig(args, func(string) string { return "" })
	}
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"0", 0}, {"32mb", 32 << 20}, {"33554432", 32 << 20}, {"34m", 34_000_000}, {"64mb", 64 << 20},
		{"64MB", 64 << 20}, {"64MiB", 64 << 20}, {"100m", 100_000_000}, {"2gb", 2 << 30},
		{"2G", 2_000_000_000}, {"1000000kb", 1_024_000_000}, {" 1gb ", 1 << 30},
	} {
		cfg, err := parse("--maxmemory", tc.in)
		if err != nil || cfg.maxMemory != tc.want {
			t.Errorf("--maxmemory %q: %d, %v; want %d", tc.in, cfg.maxMemory, err, tc.want)
		}
	}
	for _, in := range []string{
		"", " ", "-1", "-64mb", "+64mb", "1.5gb", "64 mb", "64x", "64t", "64tb", "1e9", "0x100000",
		"mb", "64mbs", "1", "1k", "1mb", "32m", "33554431", "32767kb", // under 32mb
		"9223372036854775808", "9999999999gb",
	} {
		if cfg, err := parse("--maxmemory", in); err == nil {
			t.Errorf("--maxmemory %q accepted as %d", in, cfg.maxMemory)
		}
	}
	for _, p := range memlimit.Policies() {
		cfg, err := parse("--maxmemory-policy", p.String())
		if err != nil || cfg.maxMemoryPolicy != p {
			t.Errorf("--maxmemory-policy %s: %v, %v", p, cfg.maxMemoryPolicy, err)
		}
	}
	for _, in := range []string{"", "lru", "allkeys", "allkeys_lru", "no-eviction", "volatile", "allkeys-lru,allkeys-lfu", "1"} {
		if cfg, err := parse("--maxmemory-policy", in); err == nil {
			t.Errorf("--maxmemory-policy %q accepted as %v", in, cfg.maxMemoryPolicy)
		}
	}
	if def := defaultConfig(); def.maxMemory != 0 || def.maxMemoryPolicy != memlimit.NoEviction {
		t.Errorf("defaults: maxmemory %d, policy %v; want 0 and noeviction", def.maxMemory, def.maxMemoryPolicy)
	}
}

// TestMemoryLimit starts the binary with --maxmemory: it logs the Go
// memory limit it set, what remains once its own code is counted; and a
// --maxmemory that leaves too little to the runtime stops it.
func TestMemoryLimit(t *testing.T) {
	t.Parallel()
	p := startNode(t, nil, "--listen", "127.0.0.1:0", "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")
	line := p.waitLine("memory limit")
	for _, want := range []string{`"maxmemory": "64mb"`, "executable_reserve", "go_memory_limit", "eviction_from"} {
		if !strings.Contains(line, want) {
			t.Errorf("the memory limit line does not say %s: %s", want, line)
		}
	}
	if s := p.waitLine("starting node"); !strings.Contains(s, `"maxmemory_policy": "allkeys-lru"`) {
		t.Errorf("the start line does not name the policy: %s", s)
	}
	p.addr()
	p.stop()

	// 33mb passes the flag's own bound, but leaves the runtime less than
	// it needs once the code is counted.
	code, _, stderr := runInProcess(t, []string{"--listen", "127.0.0.1:0", "--maxmemory", "33mb"}, nil)
	if code != 1 || !strings.Contains(stderr, "--maxmemory 33mb is too small") {
		t.Errorf("--maxmemory 33mb: exit code %d, stderr:\n%s", code, stderr)
	}
}

// TestMemoryLimitFollowsTables: as the store's tables grow outside the Go
// heap, the binary lowers the Go runtime's memory limit by as much (within
// a step of the budget's 1/64), so that the heap cannot grow into the
// memory the tables hold.
func TestMemoryLimitFollowsTables(t *testing.T) {
	t.Parallel()
	p := startNode(t, nil, "--listen", "127.0.0.1:0", "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")
	addr := p.addr()
	before := infoMemory(t, addr)
	if before["go_memory_limit"] <= 0 || before["go_memory_limit"] > 64<<20 {
		t.Fatalf("go_memory_limit %d at start, want under --maxmemory", before["go_memory_limit"])
	}
	// 6 MB of 1 KiB values: under the eviction threshold (24 MiB of the
	// runtime's 41), so nothing is evicted, and the tables hold at least
	// as much.
	ctx := ctxT(t)
	c := dialClient(t, addr)
	if err := c.Create(ctx, "big"); err != nil {
		t.Fatal(err)
	}
	value := strings.Repeat("v", 1024)
	for i := range 6000 {
		if err := c.Put(ctx, "big", fmt.Sprintf("key:%05d", i), value); err != nil {
			t.Fatal(err)
		}
	}
	after := infoMemory(t, addr)
	off := after["used_memory_off_heap"]
	lowered := before["go_memory_limit"] - after["go_memory_limit"]
	if off == 0 { // where the tables are on the heap (not Linux), the limit stays
		if lowered != 0 {
			t.Errorf("tables on the heap, yet go_memory_limit moved from %d to %d", before["go_memory_limit"], after["go_memory_limit"])
		}
		return
	}
	if off < 6000*1024 {
		t.Fatalf("used_memory_off_heap %d after 6 MB of values", off)
	}
	// The limit was last set at a write: for the tables as they were then,
	// at most a step and a value from now. The step is 1/64 of the budget,
	// about 41 MiB (64 less the executable's pages): 48 bounds it.
	const step = 48 << 20 / memlimit.DefaultStepFraction
	if lowered < off-step-4096 || lowered > off+step {
		t.Errorf("go_memory_limit %d at start, %d with %d bytes off the heap: lowered by %d, want by those bytes, within a step",
			before["go_memory_limit"], after["go_memory_limit"], off, lowered)
	}
	p.stop()
}

// infoMemory returns the numeric fields of INFO memory, asked on the text
// protocol.
func infoMemory(t *testing.T, addr string) map[string]int64 {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(testTimeout))
	if _, err := io.WriteString(conn, "INFO memory\n"); err != nil {
		t.Fatal(err)
	}
	fields := make(map[string]int64)
	sc := bufio.NewScanner(conn)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "OK" {
			return fields
		}
		if name, v, ok := strings.Cut(line, ":"); ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				fields[name] = n
			}
		}
	}
	t.Fatalf("INFO memory: no OK at the end: %v", sc.Err())
	return nil
}

func TestResidentFileBytes(t *testing.T) {
	t.Parallel()
	n, ok := residentFileBytes()
	if _, err := os.Stat("/proc/self/status"); err != nil {
		if ok {
			t.Errorf("residentFileBytes = %d, true without /proc", n)
		}
		t.Skip("no /proc/self/status")
	}
	// The test binary's code, at least a few pages of it, is resident.
	if !ok || n < 1<<20 || n > 1<<30 {
		t.Errorf("residentFileBytes = %d, %v", n, ok)
	}
}

func TestFormatSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   int64
		want string
	}{
		{0, "0"}, {64, "64"}, {1000, "1000"}, {1024, "1KiB"}, {65536, "64KiB"},
		{1 << 20, "1MiB"}, {3 << 30, "3GiB"}, {1<<20 + 1024, "1025KiB"},
	} {
		if got := formatSize(tc.in); got != tc.want {
			t.Errorf("formatSize(%d) = %q, want %q", tc.in, got, tc.want)
		}
		if tc.in != 0 {
			if back, err := parseSize(formatSize(tc.in)); err != nil || back != tc.in {
				t.Errorf("parseSize(formatSize(%d)) = %d, %v", tc.in, back, err)
			}
		}
	}
}

func TestEnvName(t *testing.T) {
	t.Parallel()
	want := map[string]string{
		"listen":           "DBOUTIQUE_LISTEN",
		"password-file":    "DBOUTIQUE_PASSWORD_FILE",
		"max-line":         "DBOUTIQUE_MAX_LINE",
		"max-conns":        "DBOUTIQUE_MAX_CONNS",
		"idle-timeout":     "DBOUTIQUE_IDLE_TIMEOUT",
		"log-level":        "DBOUTIQUE_LOG_LEVEL",
		"metrics-addr":     "DBOUTIQUE_METRICS_ADDR",
		"max-bulk":         "DBOUTIQUE_MAX_BULK",
		"name":             "DBOUTIQUE_NAME",
		"cluster":          "DBOUTIQUE_CLUSTER",
		"p2p-listen":       "DBOUTIQUE_P2P_LISTEN",
		"join":             "DBOUTIQUE_JOIN",
		"mdns":             "DBOUTIQUE_MDNS",
		"ranges":           "DBOUTIQUE_RANGES",
		"identity":         "DBOUTIQUE_IDENTITY",
		"psk-file":         "DBOUTIQUE_PSK_FILE",
		"dead-after":       "DBOUTIQUE_DEAD_AFTER",
		"replicas":         "DBOUTIQUE_REPLICAS",
		"min-members":      "DBOUTIQUE_MIN_MEMBERS",
		"leave-timeout":    "DBOUTIQUE_LEAVE_TIMEOUT",
		"tombstone-grace":  "DBOUTIQUE_TOMBSTONE_GRACE",
		"max-clock-skew":   "DBOUTIQUE_MAX_CLOCK_SKEW",
		"rejoin-timeout":   "DBOUTIQUE_REJOIN_TIMEOUT",
		"maxmemory":        "DBOUTIQUE_MAXMEMORY",
		"maxmemory-policy": "DBOUTIQUE_MAXMEMORY_POLICY",
	}
	cfg := defaultConfig()
	specs := flagSpecs(&cfg)
	if len(specs) != len(want) {
		t.Errorf("%d flags, want %d", len(specs), len(want))
	}
	for _, s := range specs {
		if got := envName(s.name); got != want[s.name] {
			t.Errorf("envName(%q) = %q, want %q", s.name, got, want[s.name])
		}
	}
}

func TestConfigPrecedence(t *testing.T) {
	t.Parallel()
	def := defaultConfig()
	if def.listen != "127.0.0.1:4040" || def.maxLine != 64<<10 || def.maxConns != 10000 ||
		def.idleTimeout != 5*time.Minute || def.logLevel != zapcore.InfoLevel || def.passwordFile != "" {
		t.Fatalf("defaults = %+v", def)
	}
	with := func(f func(*config)) config {
		c := defaultConfig()
		f(&c)
		return c
	}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want config
	}{
		{"defaults", nil, nil, def},
		{"empty variables count as unset", nil, map[string]string{"DBOUTIQUE_LISTEN": "", "DBOUTIQUE_MAX_LINE": ""}, def},
		{"environment", nil, map[string]string{
			"DBOUTIQUE_LISTEN":        ":5050",
			"DBOUTIQUE_PASSWORD_FILE": "/etc/pw",
			"DBOUTIQUE_MAX_LINE":      "1MiB",
			"DBOUTIQUE_MAX_CONNS":     "7",
			"DBOUTIQUE_IDLE_TIMEOUT":  "0",
			"DBOUTIQUE_LOG_LEVEL":     "DEBUG",
		}, with(func(c *config) {
			c.listen, c.passwordFile, c.maxLine, c.maxConns, c.idleTimeout, c.logLevel = ":5050", "/etc/pw", 1<<20, 7, 0, zapcore.DebugLevel
		})},
		{"flags", []string{"--listen", ":6060", "--password-file=pw", "--max-line", "128", "-max-conns", "3",
			"--idle-timeout=1h", "--log-level", "warn"}, nil,
			with(func(c *config) {
				c.listen, c.passwordFile, c.maxLine, c.maxConns, c.idleTimeout, c.logLevel = ":6060", "pw", 128, 3, time.Hour, zapcore.WarnLevel
			})},
		{"cluster flags", []string{"--name", "h-n", "--cluster=prod", "--p2p-listen", "/ip4/10.0.0.1/tcp/7040",
			"--join", "/ip4/10.0.0.2/tcp/7040/p2p/12D3KooWExUaGRbBfhxxSptMwXM4nuSi6RBVLtC8z4TRva8uXwwd", "--join=/ip4/10.0.0.3/tcp/7040/p2p/12D3KooWFaozZTP5j2sUY88KAPs5f93iU7fr73rZ9DRAH7SUSaBM", "--mdns",
			"--ranges", "a-g = a-g, h-n=h-n", "--identity", "id.key", "--psk-file", "cluster.key"}, nil,
			with(func(c *config) {
				c.name, c.cluster, c.p2pListen = "h-n", "prod", []string{"/ip4/10.0.0.1/tcp/7040"}
				c.join = []string{"/ip4/10.0.0.2/tcp/7040/p2p/12D3KooWExUaGRbBfhxxSptMwXM4nuSi6RBVLtC8z4TRva8uXwwd", "/ip4/10.0.0.3/tcp/7040/p2p/12D3KooWFaozZTP5j2sUY88KAPs5f93iU7fr73rZ9DRAH7SUSaBM"}
				c.mdns, c.ranges, c.identity, c.pskFile = true, "a-g=a-g,h-n=h-n", "id.key", "cluster.key"
			})},
		{"dead-after", []string{"--dead-after", "10s"}, nil, with(func(c *config) { c.deadAfter = 10 * time.Second })},
		{"replication flags", []string{"--replicas", "3", "--min-members=2", "--leave-timeout", "10s", "--tombstone-grace=1h"}, nil,
			with(func(c *config) {
				c.replicas, c.minMembers, c.leaveTimeout, c.tombstoneGrace = 3, 2, 10*time.Second, time.Hour
			})},
		{"replication variables", nil, map[string]string{"DBOUTIQUE_REPLICAS": "1", "DBOUTIQUE_MIN_MEMBERS": "3"},
			with(func(c *config) { c.replicas, c.minMembers = 1, 3 })},
		{"cluster variables", nil, map[string]string{
			"DBOUTIQUE_JOIN": "/ip4/10.0.0.2/tcp/1/p2p/12D3KooWExUaGRbBfhxxSptMwXM4nuSi6RBVLtC8z4TRva8uXwwd, /ip4/10.0.0.3/tcp/1/p2p/12D3KooWFaozZTP5j2sUY88KAPs5f93iU7fr73rZ9DRAH7SUSaBM", "DBOUTIQUE_MDNS": "yes",
			"DBOUTIQUE_P2P_LISTEN": "/ip4/0.0.0.0/tcp/7040,/ip4/0.0.0.0/udp/7040/quic-v1", "DBOUTIQUE_NAME": "box"},
			with(func(c *config) {
				c.join = []string{"/ip4/10.0.0.2/tcp/1/p2p/12D3KooWExUaGRbBfhxxSptMwXM4nuSi6RBVLtC8z4TRva8uXwwd", "/ip4/10.0.0.3/tcp/1/p2p/12D3KooWFaozZTP5j2sUY88KAPs5f93iU7fr73rZ9DRAH7SUSaBM"}
				c.p2pListen = []string{"/ip4/0.0.0.0/tcp/7040", "/ip4/0.0.0.0/udp/7040/quic-v1"}
				c.mdns, c.name = true, "box"
			})},
		{"mdns switched off by a flag", []string{"--mdns=false"}, map[string]string{"DBOUTIQUE_MDNS": "1"}, def},
		{"flag beats environment", []string{"--max-conns", "3", "--log-level=error"},
			map[string]string{"DBOUTIQUE_MAX_CONNS": "7", "DBOUTIQUE_LOG_LEVEL": "debug", "DBOUTIQUE_MAX_LINE": "1k"},
			with(func(c *config) { c.maxConns, c.logLevel, c.maxLine = 3, zapcore.ErrorLevel, 1024 })},
		{"a bad variable under a flag is not read", []string{"--max-conns", "3"},
			map[string]string{"DBOUTIQUE_MAX_CONNS": "lots"},
			with(func(c *config) { c.maxConns = 3 })},
		{"last flag wins", []string{"--max-conns", "3", "--max-conns", "4"}, nil,
			with(func(c *config) { c.maxConns = 4 })},
		{"empty password file flag beats the variable", []string{"--password-file="},
			map[string]string{"DBOUTIQUE_PASSWORD_FILE": "/etc/pw"}, def},
		{"memory flags", []string{"--maxmemory", "64mb", "--maxmemory-policy=allkeys-lru"}, nil,
			with(func(c *config) { c.maxMemory, c.maxMemoryPolicy = 64<<20, memlimit.AllKeysLRU })},
		{"memory variables", nil, map[string]string{"DBOUTIQUE_MAXMEMORY": "2g", "DBOUTIQUE_MAXMEMORY_POLICY": "VOLATILE-TTL"},
			with(func(c *config) { c.maxMemory, c.maxMemoryPolicy = 2_000_000_000, memlimit.VolatileTTL })},
		{"no memory limit", []string{"--maxmemory=0", "--maxmemory-policy", "noeviction"},
			map[string]string{"DBOUTIQUE_MAXMEMORY": "1gb", "DBOUTIQUE_MAXMEMORY_POLICY": "allkeys-lfu"}, def},
	} {
		got, err := parseConfig(tc.args, func(k string) string { return tc.env[k] })
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: config = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// gateExecutor holds every operation until release is closed, or the
// server's context ends.
type gateExecutor struct {
	store   *store.Store
	entered chan store.Op // receives each operation as it starts
	release chan struct{}
}

func newGateExecutor() *gateExecutor {
	return &gateExecutor{store: store.NewStore(), entered: make(chan store.Op, 16), release: make(chan struct{})}
}

func (g *gateExecutor) Execute(ctx context.Context, op store.Op) (store.Result, error) {
	g.entered <- op
	select {
	case <-g.release:
	case <-ctx.Done():
		return store.Result{}, ctx.Err()
	}
	return g.store.Execute(ctx, op)
}

// inProcessNode is serve running on a loopback listener with a gate in
// front of its store, so a test can hold a request in flight.
type inProcessNode struct {
	t    *testing.T
	gate *gateExecutor
	addr string
	sigs chan os.Signal
	logs *observer.ObservedLogs
	done chan struct{} // closed when serve returns
	err  error         // serve's result, set before done closes
}

func startInProcess(t *testing.T, grace time.Duration) *inProcessNode {
	t.Helper()
	gate := newGateExecutor()
	core, logs := observer.New(zapcore.DebugLevel)
	srv, err := textproto.NewServer(textproto.Config{Executor: gate, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &inProcessNode{t: t, gate: gate, addr: l.Addr().String(), sigs: make(chan os.Signal, 2),
		logs: logs, done: make(chan struct{})}
	go func() { // ends when serve does, after the first signal at the latest
		n.err = serve(srv, l, zap.New(core), n.sigs, grace, nil)
		close(n.done)
	}()
	t.Cleanup(func() {
		select {
		case <-n.done:
		default:
			n.sigs <- syscall.SIGTERM
			n.sigs <- syscall.SIGTERM
			<-n.done
		}
	})
	n.waitLog("Accepting connections on " + n.addr)
	return n
}

// waitLog polls the logs until a message containing msg appears.
func (n *inProcessNode) waitLog(msg string) {
	n.t.Helper()
	deadline := time.Now().Add(testTimeout)
	for n.logs.FilterMessageSnippet(msg).Len() == 0 {
		if time.Now().After(deadline) {
			n.t.Fatalf("timed out waiting for the log message %q", msg)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitServed waits for serve to return and checks that it returned nil.
func (n *inProcessNode) waitServed() {
	n.t.Helper()
	select {
	case <-n.done:
		if n.err != nil {
			n.t.Fatalf("serve: %v", n.err)
		}
	case <-time.After(testTimeout):
		n.t.Fatal("serve did not return")
	}
}

// holdRequest sends req on a new connection and waits until the
// operation is held in the gate.
func (n *inProcessNode) holdRequest(req string) *prototest.Conn {
	n.t.Helper()
	c := prototest.Dial(n.t, n.addr)
	c.Send(req + "\r\n")
	select {
	case <-n.gate.entered:
	case <-time.After(testTimeout):
		n.t.Fatalf("%s never reached the store", req)
	}
	return c
}

// waitRefusing waits until the node no longer accepts connections.
func (n *inProcessNode) waitRefusing() {
	n.t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		nc, err := net.DialTimeout("tcp", n.addr, testTimeout)
		if err != nil {
			return
		}
		nc.Close()
		if time.Now().After(deadline) {
			n.t.Fatal("the node still accepts connections")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestShutdownFinishesRequestInFlight(t *testing.T) {
	t.Parallel()
	n := startInProcess(t, time.Minute)
	idle := prototest.Dial(t, n.addr)
	c := n.holdRequest("CREATE b")

	n.sigs <- syscall.SIGTERM
	n.waitLog("shutting down")
	n.waitRefusing()
	idle.ExpectClosed() // idle connections close at once

	close(n.gate.release)
	c.Expect("OK\r\n")
	c.ExpectClosed()
	n.waitServed()
	n.waitLog("stopped")
	if n.logs.FilterMessageSnippet("second signal").Len() != 0 || n.logs.FilterMessageSnippet("grace period over").Len() != 0 {
		t.Error("a graceful stop was logged as forced")
	}
}

func TestSecondSignalForcesClose(t *testing.T) {
	t.Parallel()
	n := startInProcess(t, time.Minute)
	c := n.holdRequest("CREATE b")

	n.sigs <- syscall.SIGTERM
	n.waitLog("shutting down")
	n.sigs <- syscall.SIGINT
	n.waitServed() // long before the minute of grace
	n.waitLog("second signal")
	n.waitLog("stopped")
	_ = c.NetConn().SetReadDeadline(time.Now().Add(testTimeout))
	if b, err := io.ReadAll(c.NetConn()); strings.Contains(string(b), "OK") {
		t.Errorf("the held request was answered %q (%v) after a forced close", b, err)
	}
}

func TestGracePeriodEnds(t *testing.T) {
	t.Parallel()
	n := startInProcess(t, 50*time.Millisecond)
	n.holdRequest("CREATE b")
	n.sigs <- syscall.SIGTERM
	n.waitServed()
	n.waitLog("grace period over")
	n.waitLog("stopped")
}

func TestGenkey(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "cluster.key")
	code, _, stderr := runInProcess(t, []string{"genkey", path}, nil)
	if code != 0 || !strings.Contains(stderr, "fingerprint") {
		t.Fatalf("genkey FILE: exit %d, stderr %q", code, stderr)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v; want 0600", err, fi.Mode())
	}
	key, err := readClusterKey(path)
	if err != nil || len(key) != 32 {
		t.Fatalf("reading the new key: %d bytes, %v", len(key), err)
	}
	if code, _, stderr := runInProcess(t, []string{"genkey", path}, nil); code != 1 || !strings.Contains(stderr, "never overwritten") {
		t.Errorf("genkey over an existing file: exit %d, stderr %q", code, stderr)
	}
	again, err := readClusterKey(path)
	if err != nil || !bytes.Equal(again, key) {
		t.Error("genkey changed an existing key file")
	}
	code, stdout, _ := runInProcess(t, []string{"genkey"}, nil)
	if code != 0 || !strings.HasPrefix(stdout, "/key/swarm/psk/1.0.0/") {
		t.Errorf("genkey to stdout: exit %d, %q", code, stdout)
	}
	if code, _, _ := runInProcess(t, []string{"genkey", "a", "b"}, nil); code != 2 {
		t.Errorf("genkey with two files: exit %d, want 2", code)
	}
	if code, _, stderr := runInProcess(t, []string{"genkey", "--help"}, nil); code != 0 || !strings.Contains(stderr, "Usage") {
		t.Errorf("genkey --help: exit %d, stderr %q", code, stderr)
	}
}
