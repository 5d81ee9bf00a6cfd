package main

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dboutique/dboutique/textproto"
)

// Limits of TestLANDiscovery. A healthy run takes a few seconds.
const (
	// lanDiscoveryTimeout bounds the wait for every node to see every
	// other one alive.
	lanDiscoveryTimeout = 30 * time.Second
	// lanTestTimeout bounds the whole test: the nodes are killed after it.
	lanTestTimeout = 2 * time.Minute
	// lanPoll is how often a condition is checked again while waiting.
	lanPoll = 50 * time.Millisecond
)

// TestLANDiscovery runs three nodes, each in a network namespace of its
// own on a private bridged LAN, with --mdns and no --join: they must find
// each other by multicast DNS alone, then serve each other's buckets.
// Nothing runs in the machine's own network namespace; the test process
// reaches each node's client port by dialing from inside its namespace.
func TestLANDiscovery(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three nodes in network namespaces; skipped in -short mode")
	}
	requireNetns(t)
	binary(t) // build first: the deadlines below are for the nodes, not the compiler

	const n = 3
	world := newLANWorld(t, n, "201.7")
	ctx, cancel := context.WithTimeout(context.Background(), lanTestTimeout)
	t.Cleanup(cancel)

	names := make([]string, n)
	procs := make([]*process, n)
	for i, h := range world.hosts {
		names[i] = fmt.Sprintf("n%d", i+1)
		procs[i] = startInNetns(t, ctx, h.ns,
			"--mdns",
			"--name", names[i],
			"--p2p-listen", "/ip4/"+h.ip+"/tcp/4041",
			"--listen", net.JoinHostPort(h.ip, "4040"),
		)
	}

	// Each node's client port, dialed from inside its namespace.
	clients := make([]*textproto.Client, n)
	for i, p := range procs {
		h := world.hosts[i]
		want := net.JoinHostPort(h.ip, "4040")
		if addr := p.addr(); addr != want {
			t.Fatalf("%s accepts connections on %s, want %s", names[i], addr, want)
		}
		p.waitLine("Peer address /ip4/" + h.ip + "/tcp/4041/p2p/")
		// Each call is bounded by the client's timeout.
		c, err := textproto.NewClient(t.Context(), dialInNetns(t, h.ns, want), textproto.WithTimeout(testTimeout))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		clients[i] = c
	}

	// Discovery: every node lists all three, alive, at their LAN addresses.
	started := time.Now()
	waitUntil(t, lanDiscoveryTimeout, "every node to list all three nodes alive", func() (bool, string) {
		var report []string
		for i, c := range clients {
			lines, err := c.Nodes(t.Context())
			if err != nil {
				return false, fmt.Sprintf("NODES on %s: %v", names[i], err)
			}
			if problem := checkNodes(lines, names, world.hosts, i); problem != "" {
				report = append(report, fmt.Sprintf("%s: %s; NODES:\n\t%s", names[i], problem, strings.Join(lines, "\n\t")))
			}
		}
		return len(report) == 0, strings.Join(report, "\n")
	})
	t.Logf("every node saw all %d alive %v after the last one was ready", n, time.Since(started).Round(time.Millisecond))

	// Each node creates a bucket and puts a key in it ...
	bucket := func(i int) string { return fmt.Sprintf("b%d", i+1) }
	key := func(i int) string { return fmt.Sprintf("k%d", i+1) }
	value := func(i int) string { return fmt.Sprintf("v%d", i+1) }
	for i, c := range clients {
		if err := c.Create(t.Context(), bucket(i)); err != nil {
			t.Fatalf("CREATE %s on %s: %v", bucket(i), names[i], err)
		}
		if err := c.Put(t.Context(), bucket(i), key(i), value(i)); err != nil {
			t.Fatalf("PUT %s %s on %s: %v", bucket(i), key(i), names[i], err)
		}
	}
	// ... and every node reads every bucket's key back.
	for j, c := range clients {
		for i := range clients {
			v, err := c.Get(t.Context(), bucket(i), key(i))
			if err != nil || v != value(i) {
				t.Errorf("GET %s %s on %s = %q, %v; want %q", bucket(i), key(i), names[j], v, err, value(i))
			}
		}
	}

	// OWNER gives the same answer through every node, and names one of
	// them; every other node served the bucket by forwarding to it.
	for i := range clients {
		var first []string
		for j, c := range clients {
			owners, err := c.Owner(t.Context(), bucket(i))
			if err != nil {
				t.Fatalf("OWNER %s on %s: %v", bucket(i), names[j], err)
			}
			if len(owners) == 0 {
				t.Fatalf("OWNER %s on %s: no owner", bucket(i), names[j])
			}
			if j == 0 {
				first = owners
				continue
			}
			if !slices.Equal(owners, first) {
				t.Errorf("OWNER %s: %s answers %q, %s answers %q", bucket(i), names[0], first, names[j], owners)
			}
		}
		owner := strings.Fields(first[0])[0]
		if !slices.Contains(names, owner) {
			t.Errorf("OWNER %s = %q: not one of the nodes %q", bucket(i), first, names)
		}
		t.Logf("%s, created on %s, is held by %s", bucket(i), names[i], owner)
	}

	// Every node stops cleanly on SIGTERM. They are told together, so
	// each leaves a cluster whose other members are leaving too.
	for _, p := range procs {
		p.signal(syscall.SIGTERM)
	}
	for i, p := range procs {
		if code := p.exitCode(); code != 0 {
			t.Errorf("%s: exit code after SIGTERM = %d, want 0", names[i], code)
		} else if !p.hasLine("stopped") {
			t.Errorf("%s: no \"stopped\" line in the log", names[i])
		}
	}
}

// checkNodes checks the NODES reply of node self: it lists exactly the
// nodes called names, each alive at its LAN address, with only self marked
// as itself. It returns what is wrong, or "" when nothing is.
func checkNodes(lines, names []string, hosts []lanHost, self int) string {
	if len(lines) != len(names) {
		return fmt.Sprintf("%d members, want %d", len(lines), len(names))
	}
	seen := make(map[string]bool)
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) != 4 {
			return fmt.Sprintf("malformed line %q", line)
		}
		name, addrs, state := f[0], f[2], f[3]
		i := slices.Index(names, name)
		if i < 0 || seen[name] {
			return fmt.Sprintf("unexpected member %q", line)
		}
		seen[name] = true
		wantState := "alive"
		if i == self {
			wantState = "alive,self"
		}
		if state != wantState {
			return fmt.Sprintf("%s is %s, want %s", name, state, wantState)
		}
		wantAddr := "/ip4/" + hosts[i].ip + "/tcp/4041"
		if !slices.Contains(strings.Split(addrs, ","), wantAddr) {
			return fmt.Sprintf("%s at %s, want %s among its addresses", name, addrs, wantAddr)
		}
	}
	return ""
}

// waitUntil polls cond until it reports true, and fails the test with
// cond's last report if that takes longer than timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() (ok bool, report string)) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(lanPoll)
	defer tick.Stop()
	for {
		ok, report := cond()
		if ok {
			return
		}
		select {
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s:\n%s", timeout, what, report)
		case <-tick.C:
		}
	}
}
