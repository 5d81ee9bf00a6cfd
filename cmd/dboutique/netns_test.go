package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// This file builds a private LAN out of Linux network namespaces, so that
// a test can run real nodes with LAN discovery (mDNS multicast) without
// sending a single packet on the machine's own network:
//
//	bridge namespace:  br0 ── vN1 ── vN2 ── vN3 ...   (veth ends, enslaved to br0)
//	                          │      │      │
//	node namespaces:        eth0   eth0   eth0         (10.x.y.N/24)
//
// Every link is made from inside a namespace of the test's own making
// ("ip -n NS link add ... peer ... netns OTHER"), so nothing is ever
// created in, or moved through, the machine's own namespace. The test's
// cleanup deletes every namespace it made, even when the test fails. If
// the test binary is killed before its cleanup runs (go test -timeout), the
// namespaces stay behind: "ip netns list | grep dbt" finds them and
// "ip netns del NAME" removes them.

// netnsTimeout bounds each ip(8) command.
const netnsTimeout = 10 * time.Second

// netnsSkipReason is why the namespace tests skip where they cannot run.
const netnsSkipReason = "needs root and iproute2 to create network namespaces"

// requireNetns skips the test unless it can build network namespaces: it
// runs as root on Linux, with ip(8) installed.
func requireNetns(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skipf("%s (Linux only)", netnsSkipReason)
	}
	if os.Geteuid() != 0 {
		t.Skipf("%s (not running as root)", netnsSkipReason)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skipf("%s (ip not found: %v)", netnsSkipReason, err)
	}
}

// lanHost is one node's namespace on the private LAN.
type lanHost struct {
	ns string // the namespace's name, as "ip netns" knows it
	ip string // the address of its eth0, on the LAN
}

// lanWorld is a private LAN: a bridge namespace and one namespace per
// host, each joined to the bridge by a veth pair.
type lanWorld struct {
	bridgeNS string
	hosts    []lanHost
}

// newLANWorld builds a LAN of n hosts, with addresses 10.<subnet>.1 to
// 10.<subnet>.n, and registers its removal with t.Cleanup. Namespace names
// hold the test process's PID and a random suffix, so concurrent runs
// never clash. It skips the test if the first namespace cannot be made
// (root without CAP_SYS_ADMIN, as in many containers).
func newLANWorld(t *testing.T, n int, subnet string) *lanWorld {
	t.Helper()
	var suffix [3]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("dbt%d%s", os.Getpid(), hex.EncodeToString(suffix[:]))
	w := &lanWorld{bridgeNS: prefix + "-br"}

	var made []string // namespaces to delete, in order of creation
	t.Cleanup(func() {
		for _, ns := range made {
			if out, err := runIP("netns", "del", ns); err != nil {
				t.Errorf("cannot delete network namespace %s: %v\n%s", ns, err, out)
			}
		}
	})
	addNS := func(ns string) {
		t.Helper()
		if out, err := runIP("netns", "add", ns); err != nil {
			if len(made) == 0 {
				t.Skipf("%s (ip netns add: %v: %s)", netnsSkipReason, err, strings.TrimSpace(string(out)))
			}
			t.Fatalf("ip netns add %s: %v\n%s", ns, err, out)
		}
		made = append(made, ns)
		// Loopback up and multicast on it: the mDNS library sends on every
		// up, multicast-capable interface.
		mustIP(t, "-n", ns, "link", "set", "lo", "up", "multicast", "on")
	}

	addNS(w.bridgeNS)
	// Multicast snooping off: the bridge floods every multicast frame to
	// every port, whatever IGMP it has (or has not yet) seen.
	mustIP(t, "-n", w.bridgeNS, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	mustIP(t, "-n", w.bridgeNS, "link", "set", "br0", "up", "multicast", "on")

	for i := 1; i <= n; i++ {
		h := lanHost{ns: fmt.Sprintf("%s-n%d", prefix, i), ip: fmt.Sprintf("10.%s.%d", subnet, i)}
		addNS(h.ns)
		port := fmt.Sprintf("v%d", i) // the bridge's end of the pair
		// Made inside the host's namespace, with the peer end created
		// straight in the bridge namespace.
		mustIP(t, "-n", h.ns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", w.bridgeNS)
		mustIP(t, "-n", w.bridgeNS, "link", "set", port, "master", "br0")
		mustIP(t, "-n", w.bridgeNS, "link", "set", port, "up", "multicast", "on")
		mustIP(t, "-n", h.ns, "addr", "add", h.ip+"/24", "dev", "eth0")
		mustIP(t, "-n", h.ns, "link", "set", "eth0", "up", "multicast", "on")
		w.hosts = append(w.hosts, h)
	}
	return w
}

// runIP runs ip(8) with args and returns its combined output.
func runIP(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), netnsTimeout)
	defer cancel()
	return exec.CommandContext(ctx, "ip", args...).CombinedOutput()
}

// mustIP runs ip(8) with args and fails the test if it fails.
func mustIP(t *testing.T, args ...string) {
	t.Helper()
	if out, err := runIP(args...); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// startInNetns starts the dboutique binary with args inside the network
// namespace ns ("ip netns exec", which execs the binary in place, so a
// signal to the process reaches dboutique itself). ctx bounds its life.
// The test's cleanup kills it if it is still running, and logs its stderr
// if the test failed.
func startInNetns(t *testing.T, ctx context.Context, ns string, args ...string) *process {
	t.Helper()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, binary(t)}, args...)...)
	cmd.WaitDelay = netnsTimeout
	cmd.Env = cleanEnv()
	// Should the test binary die without running its cleanup, the node
	// dies with it rather than live on in an orphaned namespace. (Linux
	// sends the signal when the thread that started the child ends; Go
	// ends threads only when a goroutine exits while locked to one, which
	// this package does only on a failed namespace switch.)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return startProcess(t, cmd, "dboutique "+strings.Join(args, " ")+" in "+ns)
}

// dialInNetns connects to addr from inside the network namespace ns and
// returns the connection, which the test's cleanup closes. A socket stays
// in the namespace it was made in, so the connection can be used from any
// goroutine once made.
//
// The dial runs on a goroutine of its own, locked to its OS thread, which
// enters ns, dials, and goes back to the test's namespace. If going back
// fails, the goroutine exits still locked, and the Go runtime ends the
// thread rather than let it run other goroutines in the wrong namespace.
func dialInNetns(t *testing.T, ns, addr string) net.Conn {
	t.Helper()
	nc, err := dialNetns(ns, addr)
	if err != nil {
		t.Fatalf("dial %s in network namespace %s: %v", addr, ns, err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

// dialNetns is dialInNetns for any goroutine: it returns the error, and
// the caller closes the connection.
func dialNetns(ns, addr string) (net.Conn, error) {
	type result struct {
		nc  net.Conn
		err error
	}
	done := make(chan result, 1)
	go func() { // ends after one dial
		nc, err := dialFromNetns(ns, addr)
		done <- result{nc, err}
	}()
	r := <-done
	return r.nc, r.err
}

// dialFromNetns is dialInNetns's goroutine. It returns with the calling
// goroutine unlocked from its thread, unless the thread could not be
// brought back to its namespace.
func dialFromNetns(ns, addr string) (net.Conn, error) {
	runtime.LockOSThread()
	// Opened after locking: the namespace of this very thread.
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer orig.Close()
	target, err := os.Open(filepath.Join("/run/netns", ns))
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread() // still in the original namespace
		return nil, fmt.Errorf("setns: %w", err)
	}
	// An IP literal: no name resolution, which could run on another thread.
	nc, dialErr := net.DialTimeout("tcp", addr, netnsTimeout)
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// Stay locked: this thread dies with the goroutine.
		if nc != nil {
			nc.Close()
		}
		return nil, errors.Join(dialErr, fmt.Errorf("cannot return to the original network namespace: %w", err))
	}
	runtime.UnlockOSThread()
	return nc, dialErr
}
