package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/textproto"
)

// Shape and limits of TestAddressChangeRejoin. A healthy run takes well
// under a minute.
const (
	readdressBuckets = 8                     // buckets the clients write to
	readdressWriters = 3                     // clients writing at once
	readdressPace    = 20 * time.Millisecond // between two writes of one client
	// readdressOpTimeout bounds each request of the clients: a write held
	// up by a node that was killed ends, unacknowledged, within it.
	readdressOpTimeout = 5 * time.Second
	// readdressSettleTimeout bounds each wait for the cluster to take a
	// restarted node back.
	readdressSettleTimeout = 30 * time.Second
	// readdressReadTimeout bounds the final read-back through each node.
	readdressReadTimeout = time.Minute
	// readdressTestTimeout bounds the whole test: the nodes are killed
	// after it.
	readdressTestTimeout = 3 * time.Minute
	// readdressDeadAfter is the nodes' --dead-after: how long a killed
	// node holds up the writes to its buckets.
	readdressDeadAfter = 2 * time.Second
)

// TestAddressChangeRejoin: a node's identity is its peer ID, not its
// address. Three nodes, each in a network namespace of its own on a
// private bridged LAN, each with an --identity file and no mDNS (n2 and n3
// --join n1), are restarted one at a time, each time on a new address:
// first each in turn on a new IP, then each again on another IP and port
// (n2 on another port of the same IP). Three of the six restarts are
// crashes (kill -9), three graceful (SIGTERM). A node always gets the
// command line it was first started with, but for its addresses: so after
// n1's first restart the --join of n2 and n3 names an address that nobody
// has any more. Nobody else is restarted or told anything: a restarted
// node must find the others through its peer book, and they must learn
// its new address from it.
//
// Clients write throughout, through every node that is up. After each
// restart the test waits until every node lists the three, alive, each
// at its current address and at no other (an old address is forgotten),
// has found its cluster and has its copies where the view wants them
// (settled); until every peer book lists the other two at their current
// addresses only; and until a write through the restarted node has been
// acknowledged. At the end, every acknowledged write reads back through
// every node, and every bucket is held by the same nodes, in the same
// order, as before the first restart: placement follows the peer IDs.
//
// All traffic is inside the namespaces the test makes; the test process
// reaches each node's client port by dialing from inside its namespace.
func TestAddressChangeRejoin(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three nodes in network namespaces and restarts each twice; skipped in -short mode")
	}
	requireNetns(t)
	binary(t) // build first: the deadlines below are for the nodes, not the compiler
	began := time.Now()

	world := newLANWorld(t, 3, "201.9")
	ctx, cancel := context.WithTimeout(context.Background(), readdressTestTimeout)
	t.Cleanup(cancel)
	dir := t.TempDir()
	nodes := make([]*raNode, len(world.hosts))
	for i, h := range world.hosts {
		name := fmt.Sprintf("n%d", i+1)
		nodes[i] = &raNode{name: name, ns: h.ns, identity: filepath.Join(dir, name+".key"),
			ip: h.ip, clientPort: 4040, p2pPort: 4041}
	}
	nodes[0].start(t, ctx)
	for _, n := range nodes[1:] {
		n.join = []string{nodes[0].p2pAddr() + "/p2p/" + nodes[0].id}
		n.start(t, ctx)
	}
	waitReaddressed(t, nodes, nil, nil)

	// The buckets, and who holds each, before any node moves.
	c1 := raClient(t, nodes[0])
	buckets := make([]string, readdressBuckets)
	for b := range buckets {
		buckets[b] = fmt.Sprintf("bucket%d", b)
		cctx, done := context.WithTimeout(t.Context(), testTimeout)
		err := retryRefused(cctx, func() error { return c1.Create(cctx, buckets[b]) })
		done()
		if err != nil {
			t.Fatalf("CREATE %s through n1: %s", buckets[b], wireReply(err))
		}
	}
	holders := make(map[string][]string, len(buckets))
	for _, b := range buckets {
		owners, err := c1.Owner(t.Context(), b)
		if err != nil || len(owners) != 2 {
			t.Fatalf("OWNER %s through n1 = %q, %s; want two holders", b, owners, wireReply(err))
		}
		holders[b] = owners
	}
	c1.Close()

	load := newRALoad(ctx, nodes, buckets)
	for w := range readdressWriters {
		load.wg.Go(func() { load.write(w) })
	}
	t.Cleanup(load.stop) // before the nodes are killed, should the test fail
	waitUntil(t, readdressSettleTimeout, "writes through every node to be acknowledged", func() (bool, string) {
		var report []string
		for _, n := range nodes {
			if acks := load.acksVia(n.clientAddr()); acks < readdressBuckets {
				report = append(report, fmt.Sprintf("%d writes through %s acknowledged", acks, n.name))
			}
		}
		return len(report) == 0, strings.Join(report, "\n")
	})

	// Each node in turn on a new IP, then each again on another IP (n2 on
	// another port only) and another port.
	steps := []struct {
		node  int
		crash bool // kill -9; else SIGTERM
		ip    string
		ports int // client port; the peer-to-peer port is the next one
	}{
		{0, true, "10.201.9.11", 4040},
		{1, false, "10.201.9.12", 4040},
		{2, true, "10.201.9.13", 4040},
		{0, false, "10.201.9.21", 5040},
		{1, true, "10.201.9.12", 5040},
		{2, false, "10.201.9.23", 5040},
	}
	for _, s := range steps {
		n := nodes[s.node]
		how := "SIGTERM"
		if s.crash {
			how = "kill -9"
		}
		from := n.p2pAddr()
		at := time.Now()
		load.setAddr(s.node, "")
		if s.crash {
			n.p.signal(syscall.SIGKILL)
			n.p.exitCode() // wait until it is gone
		} else {
			n.p.stop()
		}
		n.old = append(n.old, from)
		if s.ip != n.ip {
			mustIP(t, "-n", n.ns, "addr", "del", n.ip+"/24", "dev", "eth0")
			mustIP(t, "-n", n.ns, "addr", "add", s.ip+"/24", "dev", "eth0")
		}
		n.ip, n.clientPort, n.p2pPort = s.ip, s.ports, s.ports+1
		n.start(t, ctx)
		load.setAddr(s.node, n.clientAddr())
		waitReaddressed(t, nodes, n, load)
		if n.p.hasLine("serving on its own") {
			t.Errorf("%s, restarted at %s, served on its own although the other two were alive", n.name, n.p2pAddr())
		}
		t.Logf("%s stopped by %s, restarted at %s (was %s): back, and the cluster settled, %v later",
			n.name, how, n.p2pAddr(), from, time.Since(at).Round(time.Millisecond))
	}

	load.stop()
	acked, answers, notFound := load.results()
	t.Logf("%d writes acknowledged; answers: %v", len(acked), answers)
	if len(notFound) > 0 {
		t.Errorf("%d writes answered NOT FOUND, for buckets that exist; the first: %s",
			len(notFound), strings.Join(notFound, "; "))
	}
	// The end state, checked again now that the writes have stopped: each
	// node lists each peer once, at its current address and at no old one.
	waitReaddressed(t, nodes, nil, nil)

	// Every acknowledged write, through every node.
	read := time.Now()
	var wg sync.WaitGroup
	problems := make([]string, len(nodes))
	for i, n := range nodes {
		c := raClient(t, n)
		wg.Go(func() { problems[i] = readBackAll(t.Context(), c, acked) })
	}
	wg.Wait()
	for i, p := range problems {
		if p != "" {
			t.Errorf("through %s: %s", nodes[i].name, p)
		}
	}
	t.Logf("%d acknowledged writes read through each of the %d nodes in %v",
		len(acked), len(nodes), time.Since(read).Round(time.Millisecond))

	// The buckets are held where they were before anyone moved.
	for _, n := range nodes {
		c := raClient(t, n)
		for _, b := range buckets {
			owners, err := c.Owner(t.Context(), b)
			if err != nil || !slices.Equal(owners, holders[b]) {
				t.Errorf("OWNER %s through %s = %q, %s; before the restarts: %q", b, n.name, owners, wireReply(err), holders[b])
			}
		}
	}
	t.Logf("the test took %v", time.Since(began).Round(time.Millisecond))
}

// raNode is one node of TestAddressChangeRejoin: its namespace, the
// command line it keeps across restarts, and where it listens now and
// listened before.
type raNode struct {
	name     string
	ns       string   // its network namespace
	identity string   // its --identity file
	join     []string // its --join addresses, the same at every start
	id       string   // its peer ID, once it has started

	ip         string   // the address of its eth0
	clientPort int      // --listen's port
	p2pPort    int      // --p2p-listen's port
	old        []string // the peer-to-peer addresses it has left
	p          *process // the running process
}

func (n *raNode) clientAddr() string { return net.JoinHostPort(n.ip, strconv.Itoa(n.clientPort)) }
func (n *raNode) p2pAddr() string    { return fmt.Sprintf("/ip4/%s/tcp/%d", n.ip, n.p2pPort) }

// start starts the node in its namespace at its current addresses, and
// waits until it accepts connections. Its peer ID must be the one it had
// before, if it ran before.
func (n *raNode) start(t *testing.T, ctx context.Context) {
	t.Helper()
	args := []string{"--name", n.name, "--listen", n.clientAddr(), "--p2p-listen", n.p2pAddr(),
		"--identity", n.identity, "--replicas", "2", "--dead-after", readdressDeadAfter.String(),
		"--leave-timeout", "5s"}
	for _, j := range n.join {
		args = append(args, "--join", j)
	}
	n.p = startInNetns(t, ctx, n.ns, args...)
	if addr := n.p.addr(); addr != n.clientAddr() {
		t.Fatalf("%s accepts connections on %s, want %s", n.name, addr, n.clientAddr())
	}
	line := n.p.waitLine("Peer address " + n.p2pAddr() + "/p2p/")
	_, rest, _ := strings.Cut(line, "Peer address ")
	id := peerIDOf(t, strings.Fields(rest)[0])
	switch {
	case n.id == "":
		n.id = id
	case id != n.id:
		t.Fatalf("%s restarted with --identity %s as peer %s, want %s", n.name, n.identity, id, n.id)
	}
}

// raClient returns a client of n, dialed from inside its namespace, which
// the test's cleanup closes.
func raClient(t *testing.T, n *raNode) *textproto.Client {
	t.Helper()
	c, err := textproto.NewClient(t.Context(), dialInNetns(t, n.ns, n.clientAddr()), textproto.WithTimeout(testTimeout))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitReaddressed waits until the cluster has taken back restarted (nil:
// no node was restarted): every node answers NODES with the three nodes,
// each once, alive, at its current address and no other; says in INFO
// that it has joined its cluster and is settled; and has a peer book
// listing the other two at their current addresses only. With load, a
// write through the restarted node must also have been acknowledged.
func waitReaddressed(t *testing.T, nodes []*raNode, restarted *raNode, load *raLoad) {
	t.Helper()
	what := "the three nodes to list each other alive at their current addresses, and to settle"
	if restarted != nil {
		what = fmt.Sprintf("the cluster to take %s back at %s", restarted.name, restarted.p2pAddr())
	}
	waitUntil(t, readdressSettleTimeout, what, func() (bool, string) {
		var report []string
		for i, n := range nodes {
			if problem := raNodeState(t.Context(), nodes, i); problem != "" {
				report = append(report, n.name+": "+problem)
			}
		}
		if load != nil {
			if acks := load.acksVia(restarted.clientAddr()); acks == 0 {
				report = append(report, fmt.Sprintf("no write through %s at %s acknowledged yet", restarted.name, restarted.clientAddr()))
			}
		}
		return len(report) == 0, strings.Join(report, "\n")
	})
}

// raNodeState checks nodes[i] as waitReaddressed does, and returns what
// is wrong ("" if nothing), with what the node said.
func raNodeState(ctx context.Context, nodes []*raNode, i int) string {
	n := nodes[i]
	ctx, cancel := context.WithTimeout(ctx, testTimeout)
	defer cancel()
	var problems []string
	nc, err := dialNetns(n.ns, n.clientAddr())
	if err != nil {
		return err.Error()
	}
	c, err := textproto.NewClient(ctx, nc)
	if err != nil {
		nc.Close()
		return err.Error()
	}
	lines, err := c.Nodes(ctx)
	c.Close()
	if err != nil {
		return "NODES: " + wireReply(err)
	}
	if p := checkReaddressedNodes(lines, nodes, i); p != "" {
		problems = append(problems, fmt.Sprintf("%s; NODES:\n\t%s", p, strings.Join(lines, "\n\t")))
	}

	nc, err = dialNetns(n.ns, n.clientAddr())
	if err != nil {
		return err.Error()
	}
	fields, err := infoOn(ctx, nc, "cluster")
	nc.Close()
	if err != nil {
		return "INFO cluster: " + err.Error()
	}
	if fields["joined"] != "1" || fields["settled"] != "1" {
		problems = append(problems, fmt.Sprintf("INFO cluster says joined:%s settled:%s (members alive:%s joining:%s dead:%s left:%s)",
			fields["joined"], fields["settled"], fields["members_alive"], fields["members_joining"], fields["members_dead"], fields["members_left"]))
	}

	if p := checkReaddressedBook(nodes, i); p != "" {
		problems = append(problems, p)
	}
	return strings.Join(problems, "\n")
}

// checkReaddressedNodes checks the NODES reply of nodes[self]: it lists
// every node once, by its peer ID and name, alive (only self marked as
// itself), at its current peer-to-peer address and no other. It returns
// what is wrong, or "" when nothing is.
func checkReaddressedNodes(lines []string, nodes []*raNode, self int) string {
	if len(lines) != len(nodes) {
		return fmt.Sprintf("%d members, want %d", len(lines), len(nodes))
	}
	seen := make(map[string]bool)
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) != 4 {
			return fmt.Sprintf("malformed line %q", line)
		}
		name, id, addrs, state := f[0], f[1], f[2], f[3]
		i := slices.IndexFunc(nodes, func(n *raNode) bool { return n.id == id })
		if i < 0 {
			return fmt.Sprintf("unknown peer %s in %q", id, line)
		}
		if seen[id] {
			return fmt.Sprintf("%s listed twice", id)
		}
		seen[id] = true
		n := nodes[i]
		if name != n.name {
			return fmt.Sprintf("%s (%s) is called %s", n.name, id, name)
		}
		wantState := "alive"
		if i == self {
			wantState = "alive,self"
		}
		if state != wantState {
			return fmt.Sprintf("%s is %s, want %s", n.name, state, wantState)
		}
		if p := checkAddrs(n, strings.Split(addrs, ",")); p != "" {
			return p
		}
	}
	return ""
}

// checkAddrs checks that addrs, n's addresses as some node knows them, are
// its current one alone: none it has left, none other.
func checkAddrs(n *raNode, addrs []string) string {
	for _, a := range addrs {
		if slices.Contains(n.old, a) {
			return fmt.Sprintf("%s still at %s, which it has left (it is at %s)", n.name, strings.Join(addrs, ","), n.p2pAddr())
		}
	}
	if !slices.Equal(addrs, []string{n.p2pAddr()}) {
		return fmt.Sprintf("%s at %s, want %s alone", n.name, strings.Join(addrs, ","), n.p2pAddr())
	}
	return ""
}

// checkReaddressedBook checks the peer book of nodes[self]: it lists the
// other nodes, each once, at its current address alone.
func checkReaddressedBook(nodes []*raNode, self int) string {
	path := nodes[self].identity + ".peers"
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	problem := func(p string) string {
		return fmt.Sprintf("peer book %s: %s:\n\t%s", path, p, strings.ReplaceAll(strings.TrimSpace(string(b)), "\n", "\n\t"))
	}
	ms, err := parsePeers(string(b))
	if err != nil {
		return problem(err.Error())
	}
	if len(ms) != len(nodes)-1 {
		return problem(fmt.Sprintf("%d members, want %d", len(ms), len(nodes)-1))
	}
	seen := make(map[string]bool)
	for _, m := range ms {
		i := slices.IndexFunc(nodes, func(n *raNode) bool { return n.id == m.ID })
		if i < 0 || i == self || seen[m.ID] {
			return problem(fmt.Sprintf("unexpected member %s", m.ID))
		}
		seen[m.ID] = true
		if p := checkAddrs(nodes[i], m.Addrs); p != "" {
			return problem(p)
		}
	}
	return ""
}

// raWrite is an acknowledged write.
type raWrite struct{ bucket, key, value string }

// raLoad is the clients of TestAddressChangeRejoin: each writes a new key
// at every turn, through each node that is up in turn, and records the
// writes acknowledged.
type raLoad struct {
	buckets []string
	ns      []string        // each node's namespace
	ctx     context.Context // the writers' life
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu       sync.Mutex     // guards the fields below
	addrs    []string       // each node's client address; "" while it restarts
	acked    []raWrite      // the writes acknowledged ("OK")
	acks     map[string]int // acknowledged writes, by the client address they went through
	answers  map[string]int // every answer, by kind
	notFound []string       // the first few writes answered NOT FOUND
}

// newRALoad returns the load on nodes, to buckets, whose writers stop
// when ctx ends, or at stop.
func newRALoad(ctx context.Context, nodes []*raNode, buckets []string) *raLoad {
	l := &raLoad{buckets: buckets, acks: make(map[string]int), answers: make(map[string]int)}
	l.ctx, l.cancel = context.WithCancel(ctx)
	for _, n := range nodes {
		l.ns = append(l.ns, n.ns)
		l.addrs = append(l.addrs, n.clientAddr())
	}
	return l
}

// setAddr sets where node i accepts clients; "" while it is down.
func (l *raLoad) setAddr(i int, addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.addrs[i] = addr
}

func (l *raLoad) addr(i int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.addrs[i]
}

// acksVia returns how many writes through addr were acknowledged.
func (l *raLoad) acksVia(addr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.acks[addr]
}

// write is writer w: it writes key w<w>-<seq> through each node that is up
// in turn, every readdressPace, until the load stops. Anything but OK is
// an unacknowledged write; a client whose connection failed is dialed
// again.
func (l *raLoad) write(w int) {
	ctx := l.ctx
	clients := make([]*textproto.Client, len(l.ns))
	dialed := make([]string, len(l.ns)) // the address each client is connected to
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	}()
	tick := time.NewTicker(readdressPace)
	defer tick.Stop()
	for seq := 0; ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		i := (w + seq) % len(l.ns)
		addr := l.addr(i)
		if addr == "" {
			continue // restarting
		}
		if clients[i] != nil && dialed[i] != addr {
			clients[i].Close()
			clients[i] = nil
		}
		if clients[i] == nil {
			nc, err := dialNetns(l.ns[i], addr)
			if err != nil {
				l.answer("dial failed")
				continue
			}
			c, err := textproto.NewClient(ctx, nc, textproto.WithTimeout(readdressOpTimeout))
			if err != nil {
				nc.Close()
				continue
			}
			clients[i], dialed[i] = c, addr
		}
		bucket := l.buckets[seq%len(l.buckets)]
		key := fmt.Sprintf("w%d-%d", w, seq)
		value := key + "@" + addr
		opCtx, cancel := context.WithTimeout(ctx, readdressOpTimeout)
		err := clients[i].Put(opCtx, bucket, key, value)
		cancel()
		var serverErr *textproto.ServerError
		switch {
		case ctx.Err() != nil:
			return
		case err == nil:
			l.mu.Lock()
			l.acked = append(l.acked, raWrite{bucket, key, value})
			l.acks[addr]++
			l.answers["OK"]++
			l.mu.Unlock()
		case errors.Is(err, store.ErrBucketNotFound):
			l.mu.Lock()
			l.answers["NOT FOUND"]++
			if len(l.notFound) < 5 {
				l.notFound = append(l.notFound, fmt.Sprintf("PUT %s %s through %s", bucket, key, addr))
			}
			l.mu.Unlock()
		case refused(err):
			l.answer(wireReply(err))
		case errors.As(err, &serverErr):
			l.answer("ERROR " + serverErr.Msg)
		default:
			// The connection failed (the node died, or took too long): a
			// new one next time.
			l.answer("no answer")
			clients[i].Close()
			clients[i] = nil
		}
	}
}

func (l *raLoad) answer(kind string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.answers[kind]++
}

// stop stops the writers and waits for them to end. It may be called again.
func (l *raLoad) stop() {
	l.cancel()
	l.wg.Wait()
}

// results returns the acknowledged writes, the answers by kind, and the
// first few writes answered NOT FOUND.
func (l *raLoad) results() ([]raWrite, map[string]int, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.acked), l.answers, slices.Clone(l.notFound)
}

// readBackAll GETs every write of acked through c, trying a refused
// request again, and returns what did not read back ("" if everything did).
func readBackAll(ctx context.Context, c *textproto.Client, acked []raWrite) string {
	ctx, cancel := context.WithTimeout(ctx, readdressReadTimeout)
	defer cancel()
	var bad []string
	n := 0
	for _, w := range acked {
		var got string
		err := retryRefused(ctx, func() error {
			var err error
			got, err = c.Get(ctx, w.bucket, w.key)
			return err
		})
		if err == nil && got == w.value {
			continue
		}
		n++
		if len(bad) < 10 {
			bad = append(bad, fmt.Sprintf("GET %s %s = %q, %s; want %q", w.bucket, w.key, got, wireReply(err), w.value))
		}
		if ctx.Err() != nil {
			break
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("%d of %d acknowledged writes did not read back; the first: %s", n, len(acked), strings.Join(bad, "; "))
}
