package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dboutique/dboutique/node"
	"github.com/dboutique/dboutique/textproto"
)

// Shape and limits of TestKillJoinKillWalkthrough. A repetition in which
// every key reads back takes a few seconds.
const (
	walkRuns    = 5  // repetitions, each with fresh processes
	walkBuckets = 60 // buckets written before the first kill
	walkKeys    = 50 // keys in each bucket
	// walkDeadAfter is every node's --dead-after, short so that a crash is
	// noticed quickly.
	walkDeadAfter = time.Second
	// walkClients is how many clients write at once, and how many read at
	// once through each node.
	walkClients = 6
	// walkSettleTimeout bounds the wait for a new view to settle.
	walkSettleTimeout = 20 * time.Second
	// walkReadTimeout bounds the wait, after a kill, for every acknowledged
	// key to read back: the dead node is declared dead after walkDeadAfter,
	// and a request already forwarded to it fails within one forward
	// timeout. A pass of reads that starts by then must read everything.
	walkReadTimeout = walkDeadAfter + node.DefaultForwardTimeout
	// walkPassTimeout bounds one pass of GETs through one node.
	walkPassTimeout = 2 * node.DefaultForwardTimeout
)

// TestKillJoinKillWalkthrough reproduces, with real processes, a crash
// then a join then a second crash: three nodes with two replicas hold 60
// buckets; one is killed with SIGKILL and everything reads back through
// the other two; a fourth node joins and the cluster settles; then a second
// of the original nodes is killed. Each bucket had two copies on the three
// nodes alive before the second kill, so one of them survives, and every
// acknowledged key must read back through both survivors once the second
// dead node is declared dead. No request may name the first dead node,
// which had long left every view.
//
// Each repetition kills a different pair of nodes, in a different order.
func TestKillJoinKillWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("runs five clusters of real processes one after another; skipped in -short mode")
	}
	binary(t) // build first: the deadlines below are for the nodes, not the compiler
	// Which of n1, n2, n3 dies first and which second, by repetition.
	orders := [][2]int{{0, 1}, {1, 2}, {2, 0}, {0, 2}, {1, 0}, {2, 1}}
	for r := range walkRuns {
		order := orders[r%len(orders)]
		t.Run(fmt.Sprintf("run-%d", r+1), func(t *testing.T) {
			started := time.Now()
			killJoinKill(t, order[0], order[1])
			t.Logf("n%d then n%d killed; the repetition took %v", order[0]+1, order[1]+1, time.Since(started).Round(time.Millisecond))
		})
	}
}

// walkNode is one dboutique process of the walk-through.
type walkNode struct {
	name string
	p    *process
	addr string // the client address
	peer string // the peer-to-peer address other nodes can --join
}

// killJoinKill runs one repetition: start n1, n2, n3; fill; kill the
// first-th original node; start n4; kill the second-th.
func killJoinKill(t *testing.T, first, second int) {
	dir := t.TempDir()
	start := func(name, join string) *walkNode {
		args := []string{"--name", name, "--listen", "127.0.0.1:0", "--replicas", "2",
			"--dead-after", walkDeadAfter.String(), "--identity", filepath.Join(dir, name+".key")}
		if join != "" {
			args = append(args, "--join", join)
		}
		n := &walkNode{name: name, p: startNode(t, nil, args...)}
		n.addr = n.p.addr()
		line := n.p.waitLine("Peer address ")
		_, rest, _ := strings.Cut(line, "Peer address ")
		n.peer = strings.Fields(rest)[0]
		return n
	}
	n1 := start("n1", "")
	nodes := []*walkNode{n1, start("n2", n1.peer), start("n3", n1.peer)}
	waitView(t, nodes, false)

	filled := time.Now()
	acked := fill(t, nodes)
	t.Logf("%d buckets of %d keys written in %v", walkBuckets, walkKeys, time.Since(filled).Round(time.Millisecond))

	// The first kill: everything reads back through the two others.
	killed := nodes[first]
	killed.p.signal(syscall.SIGKILL)
	at := time.Now()
	survivors := without(nodes, killed)
	if !waitReadBack(t, fmt.Sprintf("%s killed", killed.name), at, survivors, acked) {
		return // the test's cleanup kills the nodes
	}

	// A fourth node joins one of the survivors, and the cluster settles:
	// each bucket again has two copies, on the three nodes alive.
	n4 := start("n4", survivors[0].peer)
	survivors = append(survivors, n4)
	waitView(t, survivors, true)

	// The second kill: each bucket had a copy on at least one of the two
	// nodes left, which must now serve it.
	killed = nodes[second]
	killed.p.signal(syscall.SIGKILL)
	at = time.Now()
	survivors = without(survivors, killed)
	if !waitReadBack(t, fmt.Sprintf("%s killed", killed.name), at, survivors, acked) {
		return
	}
	for _, n := range survivors {
		n.p.stop()
	}
}

// without returns nodes less n, in order.
func without(nodes []*walkNode, n *walkNode) []*walkNode {
	return slices.DeleteFunc(slices.Clone(nodes), func(m *walkNode) bool { return m == n })
}

// waitView waits until each of nodes lists exactly nodes as alive in
// NODES, and, when settled is set, also says settled:1 in INFO.
func waitView(t *testing.T, nodes []*walkNode, settled bool) {
	t.Helper()
	var want []string
	for _, n := range nodes {
		want = append(want, n.name)
	}
	slices.Sort(want)
	what := fmt.Sprintf("%s to see each other alive", strings.Join(want, ", "))
	if settled {
		what += " and settled"
	}
	waitUntil(t, walkSettleTimeout, what, func() (bool, string) {
		ok := true
		var report []string
		for _, n := range nodes {
			alive, err := aliveMembers(t.Context(), n.addr)
			state := ""
			if err == nil && settled {
				var fields map[string]string
				fields, err = infoSection(t.Context(), n.addr, "cluster")
				state = " settled:" + fields["settled"]
				if fields["settled"] != "1" {
					ok = false
				}
			}
			if err != nil || !slices.Equal(alive, want) {
				ok = false
			}
			report = append(report, fmt.Sprintf("%s: alive %v%s (%v)", n.name, alive, state, err))
		}
		return ok, strings.Join(report, "\n")
	})
}

// aliveMembers returns the sorted names that NODES, asked through addr,
// lists as alive (the node itself included).
func aliveMembers(ctx context.Context, addr string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, testTimeout)
	defer cancel()
	c, err := textproto.Dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	lines, err := c.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	var alive []string
	for _, l := range lines {
		// name, peer ID, addresses, state ("alive" or "alive,self", ...)
		f := strings.Fields(l)
		if len(f) != 4 {
			return nil, fmt.Errorf("NODES line %q", l)
		}
		if state, _, _ := strings.Cut(f[3], ","); state == "alive" {
			alive = append(alive, f[0])
		}
	}
	slices.Sort(alive)
	return alive, nil
}

// infoSection sends INFO section to addr and returns its "name:value"
// fields. textproto.Client has no INFO call, so it speaks the protocol
// itself: the reply is Redis-style lines, then OK.
func infoSection(ctx context.Context, addr, section string) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, testTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	return infoOn(ctx, nc, section)
}

// infoOn sends INFO section on nc, a connection to a node with no other
// request in flight, and returns its "name:value" fields. The exchange
// ends by ctx's deadline, if it has one.
func infoOn(ctx context.Context, nc net.Conn, section string) (map[string]string, error) {
	deadline, _ := ctx.Deadline()
	if err := nc.SetDeadline(deadline); err != nil {
		return nil, err
	}
	if _, err := fmt.Fprintf(nc, "INFO %s\r\n", section); err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(nc, 4096) // a longer line fails with bufio.ErrBufferFull
	fields := make(map[string]string)
	for {
		b, err := br.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		line := strings.TrimRight(string(b), "\r\n")
		if line == "OK" {
			return fields, nil
		}
		if strings.HasPrefix(line, "ERROR ") {
			return nil, errors.New(line)
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = v
		}
	}
}

// fill creates walkBuckets buckets of walkKeys keys through the nodes,
// walkClients clients at once, and returns the acknowledged values:
// acked[b][k] is the value of key k in bucket b, "" if its PUT was never
// acknowledged. The view may still be changing at one of the nodes, so a
// refused request is tried again (a PUT of the same value, or a CREATE,
// can be repeated).
func fill(t *testing.T, nodes []*walkNode) [][]string {
	t.Helper()
	acked := make([][]string, walkBuckets)
	for b := range acked {
		acked[b] = make([]string, walkKeys)
	}
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex // guards errs
		errs []error
	)
	for w := range walkClients {
		wg.Go(func() {
			err := fillSome(ctx, nodes[w%len(nodes)].addr, w, acked)
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("writing the buckets: %v", err)
	}
	return acked
}

// fillSome writes, through addr, the buckets b with b%walkClients == w,
// recording each acknowledged value in acked.
func fillSome(ctx context.Context, addr string, w int, acked [][]string) error {
	c, err := textproto.Dial(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	retry := func(op func() error) error {
		for {
			err := op()
			if err == nil || ctx.Err() != nil || errors.Is(err, textproto.ErrClientClosed) {
				return err
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for b := w; b < walkBuckets; b += walkClients {
		bucket := fmt.Sprintf("bucket%d", b)
		if err := retry(func() error { return c.Create(ctx, bucket) }); err != nil {
			return fmt.Errorf("CREATE %s through %s: %w", bucket, addr, err)
		}
		for k := range walkKeys {
			key, value := fmt.Sprintf("k%d", k), fmt.Sprintf("v%d-%d", b, k)
			if err := retry(func() error { return c.Put(ctx, bucket, key, value) }); err != nil {
				return fmt.Errorf("PUT %s %s through %s: %w", bucket, key, addr, err)
			}
			acked[b][k] = value
		}
	}
	return nil
}

// waitReadBack reads every acknowledged key through each of nodes, pass
// after pass, until a pass reads them all with their acknowledged values.
// A pass that starts walkReadTimeout after started or later and still
// finds a key that does not read back is a test error: it returns false.
func waitReadBack(t *testing.T, what string, started time.Time, nodes []*walkNode, acked [][]string) bool {
	t.Helper()
	deadline := started.Add(walkReadTimeout)
	for {
		pass := time.Now()
		var bad []string
		for _, n := range nodes {
			if r := readBack(t.Context(), n.addr, acked); r.badKeys > 0 {
				bad = append(bad, fmt.Sprintf("through %s: %s", n.name, r))
			}
		}
		if len(bad) == 0 {
			t.Logf("%s: every key read back in a pass that began %v after the kill", what, pass.Sub(started).Round(time.Millisecond))
			return true
		}
		if pass.After(deadline) {
			t.Errorf("%v after the kill, beyond %v, keys still did not read back (%s):\n%s",
				pass.Sub(started).Round(time.Millisecond), walkReadTimeout, what, strings.Join(bad, "\n"))
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readReport says which acknowledged keys did not read back through one node.
type readReport struct {
	keys, badKeys int
	badBuckets    int
	byError       map[string]int // keys that failed, by error (or wrong value)
	first         []string       // the first few failures
}

func (r readReport) String() string {
	var errs []string
	for e, n := range r.byError {
		errs = append(errs, fmt.Sprintf("%d× %s", n, e))
	}
	slices.Sort(errs)
	return fmt.Sprintf("%d of %d buckets and %d of %d keys wrong; by error: %s; first: %s",
		r.badBuckets, walkBuckets, r.badKeys, r.keys, strings.Join(errs, ", "), strings.Join(r.first, "; "))
}

// readBack GETs every acknowledged key through addr, walkClients clients
// at once, and reports those that did not read back.
func readBack(ctx context.Context, addr string, acked [][]string) readReport {
	ctx, cancel := context.WithTimeout(ctx, walkPassTimeout)
	defer cancel()
	// failures[b] lists what went wrong in bucket b; each bucket is read
	// by one client only.
	failures := make([][]string, walkBuckets)
	var wg sync.WaitGroup
	for w := range walkClients {
		wg.Go(func() {
			c, err := textproto.Dial(ctx, addr)
			if err == nil {
				defer c.Close()
			}
			for b := w; b < walkBuckets; b += walkClients {
				bucket := fmt.Sprintf("bucket%d", b)
				for k, want := range acked[b] {
					if want == "" {
						continue
					}
					got, gerr := "", err
					if c != nil {
						got, gerr = c.Get(ctx, bucket, fmt.Sprintf("k%d", k))
					}
					switch {
					case gerr != nil:
						failures[b] = append(failures[b], fmt.Sprintf("GET %s k%d: %s", bucket, k, reply(gerr)))
					case got != want:
						failures[b] = append(failures[b], fmt.Sprintf("GET %s k%d: %q, want %q", bucket, k, got, want))
					}
				}
			}
		})
	}
	wg.Wait()
	r := readReport{byError: make(map[string]int)}
	for b := range acked {
		for _, v := range acked[b] {
			if v != "" {
				r.keys++
			}
		}
		if len(failures[b]) > 0 {
			r.badBuckets++
		}
		for _, f := range failures[b] {
			r.badKeys++
			_, e, _ := strings.Cut(f, ": ")
			if strings.HasPrefix(e, `"`) {
				e = "wrong value"
			}
			r.byError[e]++
			if len(r.first) < 5 {
				r.first = append(r.first, f)
			}
		}
	}
	return r
}

// reply returns the wire reply an error from the client stands for where
// that is known ("ERROR node n1 unreachable"), else the error's text.
func reply(err error) string {
	var ue *node.UnreachableError
	if errors.As(err, &ue) {
		return "ERROR node " + ue.Node + " unreachable"
	}
	return err.Error()
}
