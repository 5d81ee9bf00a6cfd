package testcluster

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/dboutique/dboutique/node"
	"github.com/dboutique/dboutique/node/memlimit"
	"github.com/dboutique/dboutique/p2p"
	"github.com/dboutique/dboutique/ring"
	"github.com/dboutique/dboutique/textproto"
)

// WaitTimeout bounds every wait of the harness: convergence, restarts.
const WaitTimeout = 30 * time.Second

// Option changes how New builds a cluster.
type Option func(*options)

type options struct {
	names         []string
	placement     ring.Placement
	psk           []byte
	probeInterval time.Duration
	deadAfter     time.Duration
	leakCheck     bool
	logLevel      zapcore.Level
	replicas      int
	minMembers    int
	maxMemory     int64
	policy        memlimit.Policy
	syncInterval  time.Duration
}

// WithRanges places buckets with the letter-range table spec (for example
// "a-g=a-g,h-n=h-n,o-u=o-u,v-z=v-z") and names the nodes after the table's
// names, in table order, unless WithNames names them.
func WithRanges(spec string) Option {
	return func(o *options) {
		r, err := ring.ParseRanges(spec)
		if err != nil {
			panic(fmt.Sprintf("testcluster: bad range spec %q: %v", spec, err))
		}
		o.placement = r
		if o.names == nil {
			o.names = r.Names()
		}
	}
}

// WithNames names the nodes, in order; nodes past the list are called
// node-<i>.
func WithNames(names ...string) Option { return func(o *options) { o.names = names } }

// WithClusterKey puts every node in a private network with key.
func WithClusterKey(key []byte) Option { return func(o *options) { o.psk = key } }

// WithFailureDetection sets how often members are probed and how long a
// silent one stays in the ring.
func WithFailureDetection(probe, deadAfter time.Duration) Option {
	return func(o *options) { o.probeInterval, o.deadAfter = probe, deadAfter }
}

// WithReplicas sets how many nodes hold each bucket (node.Config.Replicas;
// the default is node.DefaultReplicas).
func WithReplicas(n int) Option { return func(o *options) { o.replicas = n } }

// WithMinMembers makes nodes refuse writes while they see fewer than k
// members (node.Config.MinMembers).
func WithMinMembers(k int) Option { return func(o *options) { o.minMembers = k } }

// WithMaxMemory gives every node a memory limit of limit bytes, as the
// store counts them (memlimit.StoreMeter), with policy at the limit.
func WithMaxMemory(limit int64, policy memlimit.Policy) Option {
	return func(o *options) { o.maxMemory, o.policy = limit, policy }
}

// WithSyncInterval sets how often nodes compare their copies when nothing
// changes (node.Config.SyncInterval).
func WithSyncInterval(d time.Duration) Option { return func(o *options) { o.syncInterval = d } }

// WithoutLeakCheck skips the goroutine-leak check at cleanup, for tests
// that run in parallel with others (the check sees their goroutines too).
func WithoutLeakCheck() Option { return func(o *options) { o.leakCheck = false } }

// WithLogLevel sets the level of the nodes' logs, which go to the test log
// (default: warnings and errors).
func WithLogLevel(l zapcore.Level) Option { return func(o *options) { o.logLevel = l } }

// Cluster is a set of real nodes in this process: libp2p hosts on
// loopback, joined through bootstrap addresses, each with a text server on
// a 127.0.0.1:0 listener.
type Cluster struct {
	t    testing.TB
	opts options

	mu    sync.Mutex // guards nodes
	nodes []*instance
}

// instance is one node of the cluster and everything it runs.
type instance struct {
	name     string
	identity crypto.PrivKey

	tr      *p2p.Transport
	gater   *p2p.Gater
	node    *node.Node
	srv     *textproto.Server
	addr    string        // the text server's address
	served  chan struct{} // closed when Serve returns
	clients []*textproto.Client
	up      bool
	calls   atomic.Uint64 // requests sent to other nodes, over all runs
}

// countingTransport is the transport a node gets: its host's, counting the
// requests the node sends (Cluster.CallsSent).
type countingTransport struct {
	*p2p.Transport
	calls *atomic.Uint64
}

func (t countingTransport) Call(ctx context.Context, to string, req []byte) ([]byte, error) {
	t.calls.Add(1)
	return t.Transport.Call(ctx, to, req)
}

// New starts n nodes and waits until every node sees every other. Node 0
// starts alone; each other node joins through node 0. Everything stops at
// the test's cleanup, which then checks that no goroutine leaked.
func New(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	o := options{
		probeInterval: 200 * time.Millisecond,
		deadAfter:     2 * time.Second,
		leakCheck:     true,
		logLevel:      zapcore.WarnLevel,
	}
	for _, opt := range opts {
		opt(&o)
	}
	var ignore goleak.Option
	if o.leakCheck {
		ignore = goleak.IgnoreCurrent()
	}
	c := &Cluster{t: t, opts: o}
	t.Cleanup(func() {
		c.closeAll()
		if o.leakCheck {
			goleak.VerifyNone(t, ignore)
		}
	})
	for i := range n {
		via := -1
		if i > 0 {
			via = 0
		}
		c.add(via)
	}
	c.WaitConverged()
	return c
}

// Len returns how many nodes the cluster has had, killed ones included.
func (c *Cluster) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.nodes)
}

func (c *Cluster) inst(i int) *instance {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if i < 0 || i >= len(c.nodes) {
		c.t.Fatalf("testcluster: no node %d (the cluster has %d)", i, len(c.nodes))
	}
	return c.nodes[i]
}

// Node returns node i (its current run: Restart makes a new one).
func (c *Cluster) Node(i int) *node.Node {
	in := c.inst(i)
	c.mu.Lock()
	defer c.mu.Unlock()
	return in.node
}

// CallsSent returns how many requests node i has sent to other nodes
// (node.Transport.Call) over all its runs: probes and lease pings, gossip,
// forwarded operations, replication and sync alike.
func (c *Cluster) CallsSent(i int) uint64 { return c.inst(i).calls.Load() }

// Name returns node i's name.
func (c *Cluster) Name(i int) string { return c.inst(i).name }

// Addr returns the address of node i's text server.
func (c *Cluster) Addr(i int) string {
	in := c.inst(i)
	c.mu.Lock()
	defer c.mu.Unlock()
	return in.addr
}

// JoinAddr returns a full peer-to-peer address of node i, as --join takes.
func (c *Cluster) JoinAddr(i int) string {
	in := c.inst(i)
	c.mu.Lock()
	tr := in.tr
	c.mu.Unlock()
	return tr.FullAddrs()[0]
}

// Client returns a new client connected to node i's text server; it is
// closed when node i stops or at cleanup.
func (c *Cluster) Client(i int) *textproto.Client {
	c.t.Helper()
	in := c.inst(i)
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	cl, err := textproto.Dial(ctx, c.Addr(i))
	if err != nil {
		c.t.Fatalf("testcluster: dial node %d (%s): %v", i, in.name, err)
	}
	c.mu.Lock()
	in.clients = append(in.clients, cl)
	c.mu.Unlock()
	return cl
}

// Add starts one more node, joining through the first node that is up,
// waits until the cluster converges, and returns its index.
func (c *Cluster) Add() int {
	c.t.Helper()
	i := c.AddVia(c.firstUp())
	c.WaitConverged()
	return i
}

// AddVia starts one more node that joins through node via, and returns its
// index without waiting for convergence.
func (c *Cluster) AddVia(via int) int {
	c.t.Helper()
	return c.add(via)
}

func (c *Cluster) firstUp() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, in := range c.nodes {
		if in.up {
			return i
		}
	}
	c.t.Fatal("testcluster: no node is up")
	return -1
}

func (c *Cluster) add(via int) int {
	c.t.Helper()
	c.mu.Lock()
	i := len(c.nodes)
	name := fmt.Sprintf("node-%d", i)
	if i < len(c.opts.names) {
		name = c.opts.names[i]
	}
	c.mu.Unlock()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		c.t.Fatalf("testcluster: identity: %v", err)
	}
	in := &instance{name: name, identity: key}
	c.mu.Lock()
	c.nodes = append(c.nodes, in)
	c.mu.Unlock()
	var join []string
	if via >= 0 {
		join = []string{c.JoinAddr(via)}
	}
	c.start(in, join)
	return i
}

// start runs in's host, node and text server.
func (c *Cluster) start(in *instance, join []string) {
	c.t.Helper()
	log := zaptest.NewLogger(c.t, zaptest.Level(c.opts.logLevel)).Named(in.name)
	gater := p2p.NewGater()
	tr, err := p2p.NewTransport(p2p.TransportConfig{
		Host: p2p.HostConfig{Identity: in.identity, PSK: c.opts.psk},
		// The node bounds every call itself; a write may wait for a
		// dead replica to be declared dead.
		RPC:    p2p.RPCConfig{CallTimeout: time.Minute},
		Logger: log,
		Gater:  gater,
	})
	if err != nil {
		c.t.Fatalf("testcluster: host for %s: %v", in.name, err)
	}
	nd, err := node.New(node.Config{
		Name:            in.name,
		Transport:       countingTransport{tr, &in.calls},
		Placement:       c.opts.placement,
		Join:            join,
		ProbeInterval:   c.opts.probeInterval,
		DeadAfter:       c.opts.deadAfter,
		Replicas:        c.opts.replicas,
		MinMembers:      c.opts.minMembers,
		MaxMemory:       c.opts.maxMemory,
		MaxMemoryPolicy: c.opts.policy,
		SyncInterval:    c.opts.syncInterval,
		Logger:          log,
	})
	if err != nil {
		_ = tr.Close()
		c.t.Fatalf("testcluster: node %s: %v", in.name, err)
	}
	srv, err := textproto.NewServer(textproto.Config{Executor: nd, Logger: log})
	if err != nil {
		_ = tr.Close()
		c.t.Fatalf("testcluster: server for %s: %v", in.name, err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = tr.Close()
		c.t.Fatalf("testcluster: listen for %s: %v", in.name, err)
	}
	nd.Start()
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(l); !errors.Is(err, textproto.ErrServerClosed) {
			log.Error("text server stopped", zap.Error(err))
		}
	}()
	c.mu.Lock()
	in.tr, in.gater, in.node, in.srv, in.addr, in.served, in.up = tr, gater, nd, srv, l.Addr().String(), served, true
	c.mu.Unlock()
}

// Kill stops node i abruptly, as a crash would: no goodbye to the others,
// which notice through failed probes.
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	c.stop(c.inst(i), false)
}

// Leave stops node i gracefully, as SIGTERM does: it tells the others it
// is leaving and hands its buckets off before it stops. The test fails if
// the hand-off does not finish within WaitTimeout.
func (c *Cluster) Leave(i int) {
	c.t.Helper()
	c.stop(c.inst(i), true)
}

func (c *Cluster) stop(in *instance, leave bool) {
	c.mu.Lock()
	if !in.up {
		c.mu.Unlock()
		return
	}
	in.up = false
	clients := in.clients
	in.clients = nil
	c.mu.Unlock()
	for _, cl := range clients {
		_ = cl.Close()
	}
	if leave {
		ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
		err := in.node.Leave(ctx)
		cancel()
		if err != nil {
			c.t.Errorf("testcluster: %s leaving: %v", in.name, err)
		}
	}
	_ = in.srv.Close()
	<-in.served
	_ = in.tr.Close()
	_ = in.node.Close()
}

// Restart starts a stopped node again with the same name and identity (so
// the same peer ID and ring position); it joins through the first node that
// is up and the cluster converges. Its text server gets a new address.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	in := c.inst(i)
	c.mu.Lock()
	up := in.up
	c.mu.Unlock()
	if up {
		c.t.Fatalf("testcluster: node %d (%s) is running", i, in.name)
	}
	c.start(in, []string{c.JoinAddr(c.firstUp())})
	c.WaitConverged()
}

// Up reports whether node i is running.
func (c *Cluster) Up(i int) bool {
	in := c.inst(i)
	c.mu.Lock()
	defer c.mu.Unlock()
	return in.up
}

// WaitConverged waits until every running node sees exactly the running
// nodes alive and places buckets the same way (the same epoch).
func (c *Cluster) WaitConverged() {
	c.t.Helper()
	c.WaitFor("the cluster to converge", c.Converged)
}

// Converged reports the first running node that does not see exactly the
// running nodes alive, or places buckets differently from the first
// running node; nil when the cluster has converged. WaitConverged polls it;
// tests that time convergence poll it with their own deadline.
func (c *Cluster) Converged() error {
	c.mu.Lock()
	var up []*instance
	var nodes []*node.Node
	for _, in := range c.nodes {
		if in.up {
			up = append(up, in)
			nodes = append(nodes, in.node)
		}
	}
	c.mu.Unlock()
	want := make([]string, len(up))
	for i, nd := range nodes {
		want[i] = nd.ID()
	}
	slices.Sort(want)
	for i, in := range up {
		var alive []string
		for _, m := range nodes[i].Members() {
			if m.State == node.StateAlive {
				alive = append(alive, m.ID)
			}
		}
		slices.Sort(alive)
		if !slices.Equal(alive, want) {
			return fmt.Errorf("%s sees %d of %d nodes alive", in.name, len(alive), len(want))
		}
		if nodes[i].Epoch() != nodes[0].Epoch() {
			return fmt.Errorf("%s and %s place buckets differently", in.name, up[0].name)
		}
	}
	return nil
}

// WaitFor polls cond until it returns nil, failing the test with cond's
// last error after WaitTimeout.
func (c *Cluster) WaitFor(what string, cond func() error) {
	c.t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("testcluster: gave up waiting %v for %s: %v", WaitTimeout, what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *Cluster) closeAll() {
	c.mu.Lock()
	nodes := slices.Clone(c.nodes)
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, in := range nodes {
		wg.Go(func() { c.stop(in, false) })
	}
	wg.Wait()
}

// Partition cuts the network between groups of nodes: each node keeps
// talking to the nodes of its own group only, and a running node that no
// group lists is cut off from every other. It uses the real hosts: each
// node's connection gater refuses the peers outside its group, and the
// connections to them are closed. Clients still reach every node's text
// server. Heal undoes it.
func (c *Cluster) Partition(groups ...[]int) {
	c.t.Helper()
	c.mu.Lock()
	nodes := slices.Clone(c.nodes)
	c.mu.Unlock()
	group := make(map[int]int) // node -> its group
	for g, members := range groups {
		for _, i := range members {
			if i < 0 || i >= len(nodes) {
				c.t.Fatalf("testcluster: partition names node %d; the cluster has %d", i, len(nodes))
			}
			group[i] = g
		}
	}
	for i, in := range nodes {
		c.mu.Lock()
		up, tr := in.up, in.tr
		c.mu.Unlock()
		if !up {
			continue
		}
		gi, listed := group[i]
		var block []string
		for j, other := range nodes {
			if j == i {
				continue
			}
			if gj, ok := group[j]; !listed || !ok || gj != gi {
				block = append(block, c.peerID(other))
			}
		}
		if err := tr.Block(block); err != nil {
			c.t.Fatalf("testcluster: partition %s: %v", in.name, err)
		}
	}
}

// Heal restores the network between all nodes.
func (c *Cluster) Heal() {
	c.t.Helper()
	c.mu.Lock()
	nodes := slices.Clone(c.nodes)
	c.mu.Unlock()
	for _, in := range nodes {
		c.mu.Lock()
		up, tr := in.up, in.tr
		c.mu.Unlock()
		if up {
			tr.UnblockAll()
		}
	}
}

func (c *Cluster) peerID(in *instance) string {
	c.t.Helper()
	id, err := peer.IDFromPrivateKey(in.identity)
	if err != nil {
		c.t.Fatalf("testcluster: peer ID of %s: %v", in.name, err)
	}
	return id.String()
}

// WaitReplicated waits until the cluster has converged and every bucket
// copy is where the ring puts it: each running node holds only buckets it
// owns, and every owner of a bucket holds an identical copy.
func (c *Cluster) WaitReplicated() {
	c.t.Helper()
	c.WaitConverged()
	c.WaitFor("every bucket to have all its copies", c.Replicated)
}

// Replicated reports the first bucket copy that is not where the ring puts
// it, or differs from another owner's; nil when every copy is in place.
// WaitReplicated polls it; benchmarks that move much data poll it with
// their own deadline.
func (c *Cluster) Replicated() error {
	c.mu.Lock()
	byID := make(map[string]*node.Node)
	var nodes []*node.Node
	for _, in := range c.nodes {
		if in.up {
			byID[in.node.ID()] = in.node
			nodes = append(nodes, in.node)
		}
	}
	c.mu.Unlock()
	for _, nd := range nodes {
		s := nd.Store()
		for _, b := range s.Records() {
			owners, err := nd.Owners(b)
			if err != nil {
				return fmt.Errorf("%s: bucket %q: %v", nd.Name(), b, err)
			}
			mine, ok := s.Digest(b)
			if !ok {
				continue // removed meanwhile
			}
			own := false
			for _, m := range owners {
				if m.ID == nd.ID() {
					own = true
					continue
				}
				other := byID[m.ID]
				if other == nil {
					return fmt.Errorf("bucket %q: owner %s is not running", b, m.Name)
				}
				theirs, ok := other.Store().Digest(b)
				if !ok {
					return fmt.Errorf("bucket %q: owner %s has no copy (%s has)", b, m.Name, nd.Name())
				}
				if theirs.Sum() != mine.Sum() {
					shards := 0
					for k := range theirs.Shards {
						if theirs.Shards[k] != mine.Shards[k] {
							shards++
						}
					}
					return fmt.Errorf("bucket %q: copies on %s and %s differ (%d shards; meta %+v and %+v; settled %v %v)",
						b, nd.Name(), m.Name, shards, mine.Meta, theirs.Meta, nd.Settled(), other.Settled())
				}
			}
			if !own {
				return fmt.Errorf("%s still holds bucket %q, owned by others", nd.Name(), b)
			}
		}
	}
	return nil
}

// WaitSettled waits until the cluster has converged and every node has
// moved its copies where the current view wants them (node.Settled).
// Unlike WaitReplicated it does not compare copies, so it holds while
// clients keep writing.
func (c *Cluster) WaitSettled() {
	c.t.Helper()
	c.WaitConverged()
	c.WaitFor("every node to settle its copies", c.Settled)
}

// Settled reports which running node, if any, still has copies to move
// (node.Settled), or places buckets differently from the others.
func (c *Cluster) Settled() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var epoch uint64
	for _, in := range c.nodes {
		if !in.up {
			continue
		}
		if e := in.node.Epoch(); epoch == 0 {
			epoch = e
		} else if e != epoch {
			return fmt.Errorf("%s places buckets differently", in.name)
		}
		if !in.node.Settled() {
			return fmt.Errorf("%s has copies to move", in.name)
		}
	}
	return nil
}
