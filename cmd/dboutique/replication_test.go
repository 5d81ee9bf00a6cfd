package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dboutique/dboutique/textproto"
)

// TestKill9OneOfThree follows the README: three processes with two
// replicas, each with an identity file; kill -9 one of them and everything
// written reads back through the other two, and the killed node, started
// again with its identity, catches up.
func TestKill9OneOfThree(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	start := func(name string, join ...string) *process {
		args := []string{"--name", name, "--listen", "127.0.0.1:0", "--replicas", "2",
			"--dead-after", "1s", "--identity", filepath.Join(dir, name+".key")}
		for _, j := range join {
			args = append(args, "--join", j)
		}
		return startNode(t, nil, args...)
	}
	peerAddr := func(p *process) string {
		line := p.waitLine("Peer address ")
		_, rest, _ := strings.Cut(line, "Peer address ")
		return strings.Fields(rest)[0]
	}
	n1 := start("n1")
	j := peerAddr(n1)
	procs := []*process{n1, start("n2", j), start("n3", j)}
	addrs := make([]string, 3)
	for i, p := range procs {
		addrs[i] = p.addr()
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	dial := func(i int) *textproto.Client {
		cl, err := textproto.Dial(ctx, addrs[i])
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		return cl
	}
	first := dial(0)
	poll(t, "the three nodes to see each other", func() error {
		lines, err := first.Nodes(ctx)
		if err == nil && len(lines) != 3 {
			err = fmt.Errorf("%d members", len(lines))
		}
		for _, l := range lines {
			if !strings.Contains(l, "alive") {
				err = fmt.Errorf("member %q", l)
			}
		}
		return err
	})
	const buckets, keys = 6, 20
	for b := range buckets {
		bucket := fmt.Sprintf("bucket%d", b)
		if err := first.Create(ctx, bucket); err != nil {
			t.Fatal(err)
		}
		for k := range keys {
			if err := first.Put(ctx, bucket, fmt.Sprintf("k%d", k), fmt.Sprintf("%d-%d", b, k)); err != nil {
				t.Fatal(err)
			}
		}
	}

	procs[1].signal(syscall.SIGKILL) // kill -9 n2
	readAll := func(i int) {
		cl := dial(i)
		poll(t, "every key to read back through "+addrs[i], func() error {
			for b := range buckets {
				for k := range keys {
					got, err := cl.Get(ctx, fmt.Sprintf("bucket%d", b), fmt.Sprintf("k%d", k))
					if want := fmt.Sprintf("%d-%d", b, k); err != nil || got != want {
						return fmt.Errorf("GET bucket%d k%d = %q, %v; want %q", b, k, got, err, want)
					}
				}
			}
			return nil
		})
	}
	readAll(0)
	readAll(2)

	// n2 comes back with its identity and catches up.
	procs[1] = start("n2", j)
	addrs[1] = procs[1].addr()
	readAll(1)
	for _, p := range procs {
		p.stop()
	}
}

// poll calls cond until it returns nil, failing the test with its last
// error after testTimeout.
func poll(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
