package p2p

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

// mdnsNetnsEnv marks the copy of the test binary that TestMDNS runs inside
// a network namespace of its own.
const mdnsNetnsEnv = "DBOUTIQUE_TEST_MDNS_NETNS"

// TestMDNS runs TestMDNSInNamespace in a fresh network namespace, so its
// multicast traffic never reaches the machine's real network.
func TestMDNS(t *testing.T) {
	if os.Getenv(mdnsNetnsEnv) != "" {
		t.Skip("inside the test namespace: TestMDNSInNamespace does the work")
	}
	if os.Geteuid() != 0 {
		t.Skip("skipping: the mDNS test needs root to create a network namespace, and never runs mDNS on the machine's own network")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("skipping: the mDNS test needs unshare(1) to create a network namespace, and never runs mDNS on the machine's own network")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, unshare, "-n", "true").CombinedOutput(); err != nil {
		t.Skipf("skipping: cannot create a network namespace (%v: %s); the mDNS test never runs on the machine's own network", err, out)
	}
	cmd := exec.CommandContext(ctx, unshare, "-n", os.Args[0],
		"-test.run=^TestMDNSInNamespace$", "-test.v", "-test.count=1", "-test.timeout=90s")
	cmd.Env = append(os.Environ(), mdnsNetnsEnv+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("in the namespace:\n%s", out)
	if err != nil {
		t.Fatalf("TestMDNSInNamespace failed: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: TestMDNSInNamespace") {
		t.Fatal("TestMDNSInNamespace did not run")
	}
}

// TestMDNSInNamespace is run by TestMDNS inside a network namespace whose
// only interface is loopback.
func TestMDNSInNamespace(t *testing.T) {
	if os.Getenv(mdnsNetnsEnv) != "1" {
		t.Skip("runs only inside the network namespace TestMDNS creates")
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	if len(ifaces) != 1 || ifaces[0].Flags&net.FlagLoopback == 0 {
		t.Fatalf("refusing to run mDNS: this does not look like a private network namespace (interfaces %v)", ifaces)
	}
	for _, args := range [][]string{{"link", "set", "lo", "up"}, {"link", "set", "lo", "multicast", "on"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}

	t.Run("same tag", func(t *testing.T) {
		tag := ServiceTag("mdns-test", nil)
		a := newMDNSNode(t, tag)
		b := newMDNSNode(t, tag)
		pollUntil(t, "the two hosts to find each other", func() bool {
			return a.hasFound(b.host.ID()) && b.hasFound(a.host.ID())
		})
		if a.hasFound(a.host.ID()) || b.hasFound(b.host.ID()) {
			t.Error("a host found itself")
		}
		// What was found is enough to connect.
		ctx := hostTestContext(t)
		if err := a.host.Connect(ctx, a.foundInfo(b.host.ID())); err != nil {
			t.Fatalf("connect to the address mDNS found: %v", err)
		}
	})

	t.Run("different tags", func(t *testing.T) {
		key, err := GenerateClusterKey()
		if err != nil {
			t.Fatal(err)
		}
		tagX := ServiceTag("mdns-test", key) // same cluster name, with a key
		tagY := ServiceTag("mdns-test", nil)
		x1 := newMDNSNode(t, tagX)
		y := newMDNSNode(t, tagY)
		x2 := newMDNSNode(t, tagX)
		// x1 and x2 finding each other shows the network carried
		// everyone's first rounds, including y's, started before x2's.
		pollUntil(t, "the hosts with tag X to find each other", func() bool {
			return x1.hasFound(x2.host.ID()) && x2.hasFound(x1.host.ID())
		})
		// Leave time for one more round before checking for strays.
		timer := time.NewTimer(1500 * time.Millisecond)
		defer timer.Stop()
		<-timer.C
		if x1.hasFound(y.host.ID()) || x2.hasFound(y.host.ID()) {
			t.Error("a host with tag X found the host with tag Y")
		}
		if n := y.count(); n != 0 {
			t.Errorf("the host with tag Y found %d hosts", n)
		}
	})

	t.Run("close", func(t *testing.T) {
		n := newMDNSNode(t, ServiceTag("mdns-close", nil))
		if err := n.mdns.Close(); err != nil {
			t.Fatal(err)
		}
		if err := n.mdns.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})
}

// mdnsNode is a host with mDNS discovery, recording what it finds.
type mdnsNode struct {
	host host.Host
	mdns *MDNS

	mu    sync.Mutex // guards found
	found map[peer.ID]peer.AddrInfo
}

func newMDNSNode(t *testing.T, tag string) *mdnsNode {
	t.Helper()
	n := &mdnsNode{
		host:  newHostForTest(t, HostConfig{}),
		found: make(map[peer.ID]peer.AddrInfo),
	}
	m, err := StartMDNS(n.host, tag, func(ai peer.AddrInfo) {
		n.mu.Lock()
		n.found[ai.ID] = ai
		n.mu.Unlock()
	}, nil)
	if err != nil {
		t.Fatalf("StartMDNS: %v", err)
	}
	n.mdns = m
	t.Cleanup(func() { _ = m.Close() }) // before the host closes
	return n
}

func (n *mdnsNode) hasFound(id peer.ID) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	_, ok := n.found[id]
	return ok
}

func (n *mdnsNode) foundInfo(id peer.ID) peer.AddrInfo {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.found[id]
}

func (n *mdnsNode) count() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.found)
}

func TestStartMDNSMustFail(t *testing.T) {
	h := newHostForTest(t, HostConfig{ListenAddrs: []string{tcpLoopbackAddr}})
	found := func(peer.AddrInfo) {}
	// All of these fail before any socket opens.
	for _, tag := range []string{"", "-x", "x-", "a.b", "a_b", "_p2p", "a b", strings.Repeat("a", 63)} {
		m, err := StartMDNS(h, tag, found, nil)
		if !errors.Is(err, ErrInvalidServiceTag) {
			if m != nil {
				_ = m.Close()
			}
			t.Errorf("StartMDNS(tag %q): %v, want an error wrapping ErrInvalidServiceTag", tag, err)
		}
	}
	if _, err := StartMDNS(nil, "x", found, nil); err == nil {
		t.Error("StartMDNS without a host succeeded")
	}
	if _, err := StartMDNS(h, "x", nil, nil); err == nil {
		t.Error("StartMDNS without a found function succeeded")
	}
}
