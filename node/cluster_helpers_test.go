package node_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dboutique/dboutique/node"
	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/node/store/storetest"
	"github.com/dboutique/dboutique/ring"
)

// Helpers of the replicated-cluster tests: starting nodes on memNet,
// waiting for them to converge and settle, and reading and writing through
// them.

// replicas returns a startMemNodeWith tweak that sets Config.Replicas to r
// and then applies more.
func replicas(r int, more ...func(*node.Config)) func(*node.Config) {
	return func(c *node.Config) {
		c.Replicas = r
		for _, f := range more {
			f(c)
		}
	}
}

// startReplicated starts one node per name on net, each configured by tweak
// and joining through the first, and waits until they agree on the
// membership.
func startReplicated(t *testing.T, net *memNet, tweak func(*node.Config), names ...string) []*node.Node {
	t.Helper()
	return startPlaced(t, net, nil, tweak, names...)
}

// startPlaced is startReplicated with placement p.
func startPlaced(t *testing.T, net *memNet, p ring.Placement, tweak func(*node.Config), names ...string) []*node.Node {
	t.Helper()
	var nodes []*node.Node
	for i, name := range names {
		var join []string
		if i > 0 {
			join = []string{"/mem/id-" + names[0]}
		}
		nodes = append(nodes, startMemNodeWith(t, net, name, p, tweak, join...))
	}
	waitConverged(t, nodes)
	return nodes
}

// converged reports whether every node sees exactly the nodes alive and
// all place buckets alike.
func converged(nodes []*node.Node) bool {
	for _, n := range nodes {
		if alive(n) != len(nodes) || n.Epoch() != nodes[0].Epoch() {
			return false
		}
	}
	return true
}

func waitConverged(t *testing.T, nodes []*node.Node) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d nodes to agree on the membership", len(nodes)), func() bool { return converged(nodes) })
}

// eventually polls check until it returns nil, and fails the test with its
// last error after a deadline.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s: %v", what, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// settled is nil once the nodes agree on the membership, every one has
// settled, and every bucket is exactly where checkPlacement wants it.
func settled(nodes []*node.Node, buckets ...string) error {
	if !converged(nodes) {
		return errors.New("the nodes do not agree on the membership")
	}
	for _, n := range nodes {
		if !n.Settled() {
			return fmt.Errorf("%s has not settled", n.Name())
		}
	}
	for _, b := range buckets {
		if err := checkPlacement(nodes, b); err != nil {
			return err
		}
	}
	return nil
}

// checkPlacement returns an error unless bucket's copies are exactly on
// the owners nodes[0] names, all of them among nodes, and equal.
func checkPlacement(nodes []*node.Node, bucket string) error {
	owners, err := nodes[0].Owners(bucket)
	if err != nil {
		return err
	}
	want := make(map[string]bool)
	for _, m := range owners {
		if find(nodes, m.ID) == nil {
			return fmt.Errorf("%s: owner %s is not among the nodes", bucket, m.Name)
		}
		want[m.ID] = true
	}
	var first store.Digest
	firstName := ""
	for _, n := range nodes {
		dg, ok := n.Store().Digest(bucket)
		switch {
		case ok && !want[n.ID()]:
			return fmt.Errorf("%s holds a copy of %s; its owners are %v", n.Name(), bucket, memberNames(owners))
		case !ok && want[n.ID()]:
			return fmt.Errorf("%s, an owner of %s, holds no copy", n.Name(), bucket)
		case !ok:
		case firstName == "":
			first, firstName = dg, n.Name()
		case dg != first:
			return fmt.Errorf("the copies of %s on %s and %s differ", bucket, firstName, n.Name())
		}
	}
	return nil
}

func memberNames(ms []node.Member) []string {
	var names []string
	for _, m := range ms {
		names = append(names, m.Name)
	}
	return names
}

// find returns the node of nodes with peer ID id, or nil.
func find(nodes []*node.Node, id string) *node.Node {
	for _, n := range nodes {
		if n.ID() == id {
			return n
		}
	}
	return nil
}

// without returns nodes without x.
func without(nodes []*node.Node, x *node.Node) []*node.Node {
	var out []*node.Node
	for _, n := range nodes {
		if n != x {
			out = append(out, n)
		}
	}
	return out
}

func mustOwners(t *testing.T, n *node.Node, bucket string, want int) []node.Member {
	t.Helper()
	owners, err := n.Owners(bucket)
	if err != nil || len(owners) != want {
		t.Fatalf("%s: owners of %s = %v, %v; want %d", n.Name(), bucket, memberNames(owners), err, want)
	}
	return owners
}

func mustExec(t *testing.T, n *node.Node, op store.Op) store.Result {
	t.Helper()
	res, err := n.Execute(context.Background(), op)
	if err != nil {
		t.Fatalf("%v %s %q via %s: %v", op.Kind, op.Bucket, op.Key, n.Name(), err)
	}
	return res
}

// mustRead checks that GET bucket key through n gives value.
func mustRead(t *testing.T, n *node.Node, bucket, key, value string) {
	t.Helper()
	res, err := n.Execute(context.Background(), storetest.Get(bucket, key))
	if err != nil || res.Value != value {
		t.Fatalf("GET %s %s via %s = %q, %v; want %q", bucket, key, n.Name(), res.Value, err, value)
	}
}

// mustMiss checks that GET bucket key through n gives ErrKeyNotFound.
func mustMiss(t *testing.T, n *node.Node, bucket, key string) {
	t.Helper()
	res, err := n.Execute(context.Background(), storetest.Get(bucket, key))
	if !errors.Is(err, store.ErrKeyNotFound) {
		t.Fatalf("GET %s %s via %s = %q, %v; want ErrKeyNotFound", bucket, key, n.Name(), res.Value, err)
	}
}

func bucketName(i int) string { return fmt.Sprintf("bucket%02d", i) }
func keyName(k int) string    { return fmt.Sprintf("k%02d", k) }
func valueOf(i, k int) string { return fmt.Sprintf("v%d-%d", i, k) }

// fill creates nb buckets of nk keys each, bucket i through nodes[i%len],
// one batch per bucket, and returns the bucket names.
func fill(t *testing.T, nodes []*node.Node, nb, nk int) []string {
	t.Helper()
	var names []string
	for i := range nb {
		b := bucketName(i)
		names = append(names, b)
		ops := []store.Op{storetest.Create(b)}
		for k := range nk {
			ops = append(ops, storetest.Put(b, keyName(k), valueOf(i, k)))
		}
		res := make([]store.Result, len(ops))
		errs := make([]error, len(ops))
		nodes[i%len(nodes)].ExecuteBatch(context.Background(), ops, res, errs)
		for j, err := range errs {
			if err != nil {
				t.Fatalf("%v %s %q: %v", ops[j].Kind, b, ops[j].Key, err)
			}
		}
	}
	return names
}

// readAll checks every key fill wrote through every node.
func readAll(t *testing.T, nodes []*node.Node, nb, nk int) {
	t.Helper()
	for _, n := range nodes {
		for i := range nb {
			for k := range nk {
				mustRead(t, n, bucketName(i), keyName(k), valueOf(i, k))
			}
		}
	}
}

// startSkewed starts nodes p, r, c, ... on net (ids id-p, id-r, id-c, ...,
// each joining the first), the i-th with its wall clock offsets[i] from
// the bubble's, failure detection fast enough for synctest schedules, and
// every Config tweak applies; they close with the test.
func startSkewed(t *testing.T, net *simNet, offsets []time.Duration, tweak func(*node.Config)) []*node.Node {
	t.Helper()
	names := []string{"p", "r", "c", "d", "e"}
	var nodes []*node.Node
	for i, ahead := range offsets {
		cfg := skewedConfig(net, names[i], ahead)
		if i > 0 {
			cfg.Join = []string{"/sim/id-p"}
		}
		if tweak != nil {
			tweak(&cfg)
		}
		nodes = append(nodes, startConfigured(t, cfg))
	}
	return nodes
}

// skewedConfig is the config startSkewed gives the node called name, on
// net, whose clock runs ahead by ahead.
func skewedConfig(net *simNet, name string, ahead time.Duration) node.Config {
	return node.Config{
		Name: name, Transport: net.transport("id-" + name), Replicas: 3,
		ProbeInterval: 50 * time.Millisecond, DeadAfter: 300 * time.Millisecond, ForwardTimeout: 200 * time.Millisecond,
		SyncInterval: time.Second, MaxClockSkew: 10 * time.Second,
		Now: func() time.Time { return time.Now().Add(ahead) },
	}
}

// startConfigured starts a node with cfg; it closes with the test.
func startConfigured(t *testing.T, cfg node.Config) *node.Node {
	t.Helper()
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.Start()
	t.Cleanup(func() { n.Close() })
	return n
}
