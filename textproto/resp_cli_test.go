package textproto

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Tests that drive the real redis-cli (Debian's redis-tools) against a
// server on loopback: one command per run, and an interactive session fed
// through a pipe, which makes redis-cli ask COMMAND DOCS first.

// redisCLI returns the path of redis-cli, skipping the test when it is
// not installed unless DBOUTIQUE_REQUIRE_REDIS_CLI=1 asks for it.
func redisCLI(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("redis-cli")
	if err != nil {
		if os.Getenv("DBOUTIQUE_REQUIRE_REDIS_CLI") == "1" {
			t.Fatal("redis-cli not installed: apt-get install redis-tools")
		}
		t.Skip("redis-cli not installed (apt-get install redis-tools); set DBOUTIQUE_REQUIRE_REDIS_CLI=1 to fail instead")
	}
	return path
}

// runCLI runs redis-cli against the server at addr with args, feeding it
// stdin, and returns what it printed. --no-raw makes it print as it does
// on a terminal: (integer) 1, "quoted" strings, (nil).
func runCLI(t *testing.T, cli, addr, stdin string, args ...string) string {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, cli, append([]string{"-h", host, "-p", port, "--no-raw"}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %q: %v\n%s", args, err, out)
	}
	return string(out)
}

func TestRedisCLICommands(t *testing.T) {
	cli := redisCLI(t)
	s := startServer(t, Config{Info: func() []InfoSection {
		return []InfoSection{{Name: "Server", Fields: []InfoField{{"dboutique_version", "test"}}}}
	}})
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"PING"}, "PONG\n"},
		{[]string{"HSET", "shopping", "milk", "3"}, "(integer) 1\n"},
		{[]string{"HSET", "shopping", "milk", "4", "eggs", "12"}, "(integer) 1\n"},
		{[]string{"HGET", "shopping", "milk"}, "\"4\"\n"},
		{[]string{"HGET", "shopping", "ham"}, "(nil)\n"},
		{[]string{"HGETALL", "shopping"}, "1) \"eggs\"\n2) \"12\"\n3) \"milk\"\n4) \"4\"\n"},
		{[]string{"HKEYS", "nowhere"}, "(empty array)\n"},
		{[]string{"HLEN", "shopping"}, "(integer) 2\n"},
		{[]string{"HDEL", "shopping", "eggs", "ham"}, "(integer) 1\n"},
		{[]string{"SET", "greeting", "hello world"}, "OK\n"},
		{[]string{"GET", "greeting"}, "\"hello world\"\n"},
		{[]string{"SET", "bin", "a\x01b"}, "OK\n"},
		{[]string{"GET", "bin"}, "\"a\\x01b\"\n"},
		{[]string{"EXISTS", "greeting", "shopping", "nope"}, "(integer) 2\n"},
		{[]string{"DEL", "greeting", "shopping"}, "(integer) 2\n"},
		{[]string{"GET", "greeting"}, "(nil)\n"},
		{[]string{"HSET", "shopping", "milk"}, "(error) ERR wrong number of arguments for 'hset' command\n"},
		{[]string{"NOPE", "x"}, "(error) ERR unknown command 'NOPE', with args beginning with: 'x' \n"},
	} {
		if got := runCLI(t, cli, s.addr, "", tt.args...); got != tt.want {
			t.Errorf("redis-cli %q:\n%q\nwant\n%q", tt.args, got, tt.want)
		}
	}
	info := runCLI(t, cli, s.addr, "", "INFO")
	for _, want := range []string{"# Server\r\ndboutique_version:test\r\n", "# Clients\r\nconnected_clients:1\r\n", "# Stats\r\n"} {
		if !strings.Contains(info, want) {
			t.Errorf("redis-cli INFO lacks %q:\n%s", want, info)
		}
	}
	if got := runCLI(t, cli, s.addr, "", "INFO", "stats"); !strings.HasPrefix(got, "# Stats\r\ntotal_connections_received:") {
		t.Errorf("redis-cli INFO stats:\n%s", got)
	}
}

// TestRedisCLIInteractive: redis-cli with no command reads commands from
// its standard input, after asking COMMAND DOCS for its hints and help.
func TestRedisCLIInteractive(t *testing.T) {
	cli := redisCLI(t)
	m := NewMetrics()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	s := startServer(t, Config{Metrics: m})
	session := strings.Join([]string{
		"HSET shopping milk 3",
		"HSET shopping milk 4 bread 1",
		"HGET shopping milk",
		"HGETALL shopping",
		"hvals shopping",
		"SET k \"two words\"",
		"GET k",
		"GET nope",
		"PING",
		"HELP HSET",
		"HGET shopping",
		"DEL k shopping",
		"EXISTS k shopping",
	}, "\n") + "\n"
	// Help is printed in colour, its lines ending in CRLF; neither is the
	// point.
	got := regexp.MustCompile("\x1b\\[[0-9;]*m").ReplaceAllString(runCLI(t, cli, s.addr, session), "")
	got = strings.ReplaceAll(got, "\r\n", "\n")
	want := []string{
		"(integer) 1",
		"(integer) 1",
		"\"4\"",
		"1) \"bread\"\n2) \"1\"\n3) \"milk\"\n4) \"4\"",
		"1) \"1\"\n2) \"4\"",
		"OK",
		"\"two words\"",
		"(nil)",
		"PONG",
		"", // HELP: checked below
		"(error) ERR wrong number of arguments for 'hget' command",
		"(integer) 2",
		"(integer) 0",
	}
	// Each reply ends in a newline; HELP prints a block of its own.
	helpAt := strings.Index(got, "\n\n  HSET")
	if helpAt < 0 {
		t.Fatalf("redis-cli printed no help for HSET (from COMMAND DOCS):\n%s", got)
	}
	helpEnd := strings.Index(got[helpAt+2:], "\n\n")
	if helpEnd < 0 {
		t.Fatalf("the help block does not end:\n%s", got)
	}
	help := got[helpAt : helpAt+2+helpEnd+2]
	for _, w := range []string{"HSET", "summary: Creates the bucket if needed and sets keys in it; returns how many keys were new.", "group: hash"} {
		if !strings.Contains(help, w) {
			t.Errorf("help for HSET lacks %q:\n%s", w, help)
		}
	}
	rest := strings.Replace(got, help, "\n", 1)
	var wantOut strings.Builder
	for _, w := range want {
		if w != "" {
			wantOut.WriteString(w + "\n")
		}
	}
	if rest != wantOut.String() {
		t.Errorf("redis-cli session printed:\n%s\nwant:\n%s", rest, wantOut.String())
	}
	docs := metricValue(t, reg, "dboutique_client_requests_total", map[string]string{"proto": "resp", "command": "command", "result": "ok"})
	if docs < 1 {
		t.Errorf("redis-cli sent no COMMAND (DOCS) at start: counted %v", docs)
	}
}

// pollCLI runs redis-cli with args every 50 ms until it prints want, and
// returns how long after start it did; it fails the test after
// testTimeout.
func pollCLI(t *testing.T, cli, addr string, start time.Time, want string, args ...string) time.Duration {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		got := runCLI(t, cli, addr, "", args...)
		if got == want {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-cli %q still prints %q after %v, want %q", args, got, testTimeout, want)
		}
		<-tick.C
	}
}

// TestRedisCLIExpiry runs the sequence by which issue 14 is done, with
// redis-cli against one node on the wall clock: SET s v EX 2, then TTL s
// is 2 or 1, and GET s is nil 2 s after; HSET h a 1 b 2, HEXPIRE h 1
// FIELDS 1 a answers 1, and HGETALL h has only b 1 s after.
func TestRedisCLIExpiry(t *testing.T) {
	cli := redisCLI(t)
	s := startServer(t, Config{})
	run := func(args ...string) string { return runCLI(t, cli, s.addr, "", args...) }

	start := time.Now()
	if got := run("SET", "s", "v", "EX", "2"); got != "OK\n" {
		t.Fatalf("SET s v EX 2: %q", got)
	}
	if got := run("TTL", "s"); got != "(integer) 2\n" && got != "(integer) 1\n" {
		t.Errorf("TTL s: %q, want 2 or 1", got)
	}
	if got := run("GET", "s"); got != "\"v\"\n" {
		t.Errorf("GET s before it expired: %q", got)
	}
	if took := pollCLI(t, cli, s.addr, start, "(nil)\n", "GET", "s"); took < 1900*time.Millisecond {
		t.Errorf("GET s was nil %v after SET s v EX 2, too soon", took)
	}
	if got := run("TTL", "s"); got != "(integer) -2\n" {
		t.Errorf("TTL s once expired: %q, want -2", got)
	}

	if got := run("HSET", "h", "a", "1", "b", "2"); got != "(integer) 2\n" {
		t.Fatalf("HSET h a 1 b 2: %q", got)
	}
	start = time.Now()
	if got := run("HEXPIRE", "h", "1", "FIELDS", "1", "a"); got != "1) (integer) 1\n" {
		t.Fatalf("HEXPIRE h 1 FIELDS 1 a: %q", got)
	}
	if got := run("HTTL", "h", "FIELDS", "2", "a", "b"); got != "1) (integer) 1\n2) (integer) -1\n" && got != "1) (integer) -2\n2) (integer) -1\n" {
		t.Errorf("HTTL h FIELDS 2 a b: %q", got)
	}
	if took := pollCLI(t, cli, s.addr, start, "1) \"b\"\n2) \"2\"\n", "HGETALL", "h"); took < 900*time.Millisecond {
		t.Errorf("HGETALL h had only b %v after HEXPIRE h 1, too soon", took)
	}
	if got := run("HTTL", "h", "FIELDS", "2", "a", "b"); got != "1) (integer) -2\n2) (integer) -1\n" {
		t.Errorf("HTTL h FIELDS 2 a b once a expired: %q", got)
	}
}

// TestRedisCLIPipe: redis-cli --pipe, the mass-insertion mode, sends its
// input as is and then an ECHO it waits for (after an empty line); every
// request lands and it reports no errors.
func TestRedisCLIPipe(t *testing.T) {
	cli := redisCLI(t)
	s := startServer(t, Config{})
	var in strings.Builder
	for i := range 1000 {
		in.WriteString(respReq("HSET", "mass", fmt.Sprintf("k%d", i), "v"))
	}
	out := runCLI(t, cli, s.addr, in.String(), "--pipe")
	if !strings.Contains(out, "errors: 0, replies: 1000") {
		t.Errorf("redis-cli --pipe:\n%s\nwant errors: 0, replies: 1000", out)
	}
	if got := runCLI(t, cli, s.addr, "", "HLEN", "mass"); got != "(integer) 1000\n" {
		t.Errorf("HLEN mass after --pipe: %q, want (integer) 1000", got)
	}
}
