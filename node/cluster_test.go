package node_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/dboutique/dboutique/node"
	"github.com/dboutique/dboutique/node/memlimit"
	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/ring"
)

// memNet is an in-memory network for nodes: calls are direct function
// calls, and a node can be cut off.
type memNet struct {
	mu       sync.Mutex
	handlers map[string]func(ctx context.Context, from string, req []byte) ([]byte, error)
	down     map[string]bool
	hung     map[string]func(req []byte) bool // requests to these nodes that match wait until the caller gives up
	// cut and hungLinks act on one direction of a link (from, to): a call
	// from one node to the other fails, or hangs when it matches, while
	// calls the other way work.
	cut       map[[2]string]bool
	hungLinks map[[2]string]func(req []byte) bool
}

func newMemNet() *memNet {
	return &memNet{
		handlers:  make(map[string]func(context.Context, string, []byte) ([]byte, error)),
		down:      make(map[string]bool),
		hung:      make(map[string]func([]byte) bool),
		cut:       make(map[[2]string]bool),
		hungLinks: make(map[[2]string]func([]byte) bool),
	}
}

// setHung makes requests to id that match never get an answer.
func (m *memNet) setHung(id string, match func(req []byte) bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hung[id] = match
}

func (m *memNet) setDown(id string, down bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.down[id] = down
}

// setLink brings the one-way link from -> to (peer IDs) down or up: while
// it is down, every call from `from` to `to` fails at once, and calls from
// `to` to `from` still work.
func (m *memNet) setLink(from, to string, up bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cut[[2]string{from, to}] = !up
}

// setLinkHung makes the requests from `from` to `to` that match never get
// an answer (nil match: answer them again); other callers of `to` are
// answered.
func (m *memNet) setLinkHung(from, to string, match func(req []byte) bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hungLinks[[2]string{from, to}] = match
}

var errMemUnreachable = errors.New("memnet: unreachable")

type memTransport struct {
	net *memNet
	id  string
}

func (t *memTransport) ID() string      { return t.id }
func (t *memTransport) Addrs() []string { return []string{"/mem/" + t.id} }
func (t *memTransport) Serve(h func(ctx context.Context, from string, req []byte) ([]byte, error)) {
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	t.net.handlers[t.id] = h
}
func (t *memTransport) AddAddrs(string, []string) {}

func (t *memTransport) Call(ctx context.Context, to string, req []byte) ([]byte, error) {
	t.net.mu.Lock()
	h := t.net.handlers[to]
	down := t.net.down[to] || t.net.down[t.id] || t.net.cut[[2]string{t.id, to}]
	hung := t.net.hung[to]
	hungLink := t.net.hungLinks[[2]string{t.id, to}]
	t.net.mu.Unlock()
	if h == nil || down {
		return nil, errMemUnreachable
	}
	if hung != nil && hung(req) || hungLink != nil && hungLink(req) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return h(ctx, t.id, slices.Clone(req))
}

func (t *memTransport) Connect(ctx context.Context, addr string) (string, error) {
	id, ok := strings.CutPrefix(addr, "/mem/")
	if !ok {
		return "", fmt.Errorf("memnet: bad address %q", addr)
	}
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	if t.net.handlers[id] == nil || t.net.down[id] || t.net.cut[[2]string{t.id, id}] {
		return "", errMemUnreachable
	}
	return id, nil
}

// startMemNode starts a node called name on net, joining through join.
func startMemNode(t *testing.T, net *memNet, name string, p ring.Placement, join ...string) *node.Node {
	t.Helper()
	return startMemNodeWith(t, net, name, p, nil, join...)
}

// startMemNodeWith is startMemNode with tweak, when not nil, applied to the
// node's Config before New (replication_test.go sets Replicas and timeouts).
func startMemNodeWith(t *testing.T, net *memNet, name string, p ring.Placement, tweak func(*node.Config), join ...string) *node.Node {
	t.Helper()
	cfg := node.Config{
		Name:           name,
		Transport:      &memTransport{net: net, id: "id-" + name},
		Placement:      p,
		Join:           join,
		ProbeInterval:  20 * time.Millisecond,
		DeadAfter:      200 * time.Millisecond,
		ForwardTimeout: 100 * time.Millisecond,
		Replicas:       1, // these tests check routing; replication_test.go checks copies
	}
	if tweak != nil {
		tweak(&cfg)
	}
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.Start()
	t.Cleanup(func() { n.Close() })
	return n
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func alive(n *node.Node) int {
	c := 0
	for _, m := range n.Members() {
		if m.State == node.StateAlive {
			c++
		}
	}
	return c
}

func mustRanges(t *testing.T, spec string) *ring.Ranges {
	t.Helper()
	r, err := ring.ParseRanges(spec)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestNodeRoutesAndDetectsDeath(t *testing.T) {
	net := newMemNet()
	table := mustRanges(t, "a-m=left,n-z=right")
	left := startMemNode(t, net, "left", table)
	right := startMemNode(t, net, "right", table, "/mem/id-left")
	waitFor(t, "both nodes to see each other", func() bool { return alive(left) == 2 && alive(right) == 2 })
	if left.Epoch() != right.Epoch() {
		t.Fatal("converged nodes have different epochs")
	}
	ctx := context.Background()
	if _, err := left.Execute(ctx, store.Op{Kind: store.KindCreate, Bucket: "zoo"}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(right.Store().Buckets(), []string{"zoo"}) || len(left.Store().Buckets()) != 0 {
		t.Fatalf("zoo is on left %v / right %v, want right only", left.Store().Buckets(), right.Store().Buckets())
	}
	if _, err := left.Execute(ctx, store.Op{Kind: store.KindPut, Bucket: "zoo", Key: "k", Value: "v"}); err != nil {
		t.Fatal(err)
	}
	res, err := left.Execute(ctx, store.Op{Kind: store.KindGet, Bucket: "zoo", Key: "k"})
	if err != nil || res.Value != "v" {
		t.Fatalf("forwarded GET = %q, %v", res.Value, err)
	}
	// Errors cross the network as the same sentinels.
	for _, tc := range []struct {
		op   store.Op
		want error
	}{
		{store.Op{Kind: store.KindGet, Bucket: "zoo", Key: "nope"}, store.ErrKeyNotFound},
		{store.Op{Kind: store.KindGet, Bucket: "zzz", Key: "k"}, store.ErrBucketNotFound},
		{store.Op{Kind: store.KindCreate, Bucket: "Zoo"}, ring.ErrNoOwner},
	} {
		if _, err := left.Execute(ctx, tc.op); !errors.Is(err, tc.want) {
			t.Errorf("%v %s: %v, want %v", tc.op.Kind, tc.op.Bucket, err, tc.want)
		}
	}
	if _, err := left.Execute(ctx, store.Op{Kind: store.KindCreate, Bucket: "apple"}); err != nil {
		t.Fatal(err)
	}
	res, err = right.Execute(ctx, store.Op{Kind: store.KindBuckets})
	if err != nil || !slices.Equal(res.Names, []string{"apple", "zoo"}) {
		t.Fatalf("BUCKETS = %v, %v", res.Names, err)
	}

	net.setDown("id-right", true)
	_, err = left.Execute(ctx, store.Op{Kind: store.KindGet, Bucket: "zoo", Key: "k"})
	var ue *node.UnreachableError
	if !errors.As(err, &ue) || ue.Node != "right" {
		// The failure detector may have been quicker.
		if !errors.Is(err, store.ErrBucketNotFound) {
			t.Fatalf("GET on a cut-off owner: %v", err)
		}
	}
	waitFor(t, "left to see right dead", func() bool { return alive(left) == 1 })
	// With one replica, right held zoo's only copy: left says so rather
	// than answer NOT FOUND for a bucket that exists.
	if _, err := left.Execute(ctx, store.Op{Kind: store.KindGet, Bucket: "zoo", Key: "k"}); !errors.As(err, &ue) || ue.Node != "right" {
		t.Fatalf("GET after right died: %v, want right unreachable", err)
	}
	net.setDown("id-right", false)
	waitFor(t, "right to come back", func() bool { return alive(left) == 2 && alive(right) == 2 })
}

// TestHungOwnerIsUnreachable: an owner that accepts requests and never
// answers (a stopped process) gives an UnreachableError once the forward
// timeout passes, never a hang.
func TestHungOwnerIsUnreachable(t *testing.T) {
	net := newMemNet()
	table := mustRanges(t, "a-m=left,n-z=right")
	left := startMemNode(t, net, "left", table)
	right := startMemNode(t, net, "right", table, "/mem/id-left")
	waitFor(t, "both nodes to see each other", func() bool { return alive(left) == 2 && alive(right) == 2 })
	// Pings (message type 1) still get answers, so right stays in the
	// ring whatever the timing; everything else hangs.
	net.setHung("id-right", func(req []byte) bool { return len(req) > 0 && req[0] != 1 })
	_, err := left.Execute(context.Background(), store.Op{Kind: store.KindCreate, Bucket: "zoo"})
	var ue *node.UnreachableError
	if !errors.As(err, &ue) || ue.Node != "right" || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("CREATE on a hung owner: %v, want right unreachable after the timeout", err)
	}
	res := make([]store.Result, 2)
	errs := make([]error, 2)
	left.ExecuteBatch(context.Background(), []store.Op{{Kind: store.KindCreate, Bucket: "zoo"}, {Kind: store.KindGet, Bucket: "zoo", Key: "k"}}, res, errs)
	for i, err := range errs {
		if !errors.As(err, &ue) {
			t.Errorf("batched op %d on a hung owner: %v", i, err)
		}
	}
}

// disguised is a placement that passes itself off as another: nodes
// refuse members whose placement differs (Node's layout), so a test that
// needs two nodes to disagree on owners has them lie about it.
type disguised struct{ ring.Placement }

func (disguised) String() string { return "disguised" }

// TestNodesDisagreeingDoNotLoop: two nodes that each think the other owns
// a bucket (here their placements differ and claim not to; views that
// differ for a moment do the same); a request bounces only MaxHops times.
func TestNodesDisagreeingDoNotLoop(t *testing.T) {
	net := newMemNet()
	a := startMemNode(t, net, "a", disguised{mustRanges(t, "a-z=id-b")})
	b := startMemNode(t, net, "b", disguised{mustRanges(t, "a-z=id-a")}, "/mem/id-a")
	waitFor(t, "both nodes to see each other", func() bool { return alive(a) == 2 && alive(b) == 2 })
	_, err := a.Execute(context.Background(), store.Op{Kind: store.KindCreate, Bucket: "x"})
	if !errors.Is(err, node.ErrNoRoute) {
		t.Fatalf("CREATE on disagreeing nodes: %v, want ErrNoRoute", err)
	}
}

func TestMembershipSpreads(t *testing.T) {
	net := newMemNet()
	first := startMemNode(t, net, "n0", nil)
	nodes := []*node.Node{first}
	// Each node joins through the one before it; all learn all.
	for i := 1; i < 5; i++ {
		nodes = append(nodes, startMemNode(t, net, fmt.Sprintf("n%d", i), nil, "/mem/id-"+nodes[i-1].Name()))
	}
	waitFor(t, "every node to see every other", func() bool {
		for _, n := range nodes {
			if alive(n) != len(nodes) || n.Epoch() != first.Epoch() {
				return false
			}
		}
		return true
	})
	// A graceful leave takes the node out at once.
	nodes[4].Leave(context.Background())
	waitFor(t, "the others to see n4 leave", func() bool {
		for _, n := range nodes[:4] {
			if alive(n) != 4 {
				return false
			}
		}
		return true
	})
	for _, m := range first.Members() {
		if m.Name == "n4" && m.State != node.StateLeft {
			t.Errorf("n4 is %v, want left", m.State)
		}
	}
}

func TestClusterMismatchRefused(t *testing.T) {
	net := newMemNet()
	a := startMemNode(t, net, "a", nil)
	core, logs := observer.New(zapcore.WarnLevel)
	other, err := node.New(node.Config{
		Name: "b", Cluster: "other", Transport: &memTransport{net: net, id: "id-b"},
		Join: []string{"/mem/id-a"}, ProbeInterval: 20 * time.Millisecond, DeadAfter: 200 * time.Millisecond,
		Logger: zap.New(core),
	})
	if err != nil {
		t.Fatal(err)
	}
	other.Start()
	defer other.Close()
	// b's probe of a is answered, and refused: b says so.
	waitFor(t, "b to refuse a", func() bool {
		return logs.FilterMessageSnippet("another cluster").FilterField(zap.String("peer", a.ID())).Len() > 0
	})
	if alive(a) != 1 || alive(other) != 1 {
		t.Fatalf("nodes of different clusters joined: a sees %d, b sees %d", alive(a), alive(other))
	}
}

func TestConfigValidation(t *testing.T) {
	tr := &memTransport{net: newMemNet(), id: "x"}
	for _, tc := range []struct {
		name string
		cfg  node.Config
	}{
		{"no name", node.Config{Transport: tr}},
		{"two-word name", node.Config{Name: "a b", Transport: tr}},
		{"no transport", node.Config{Name: "a"}},
		{"dead-after too short", node.Config{Name: "a", Transport: tr, ProbeInterval: time.Second, DeadAfter: time.Second}},
		{"negative probe", node.Config{Name: "a", Transport: tr, ProbeInterval: -1}},
		{"too many hops", node.Config{Name: "a", Transport: tr, MaxHops: 17}},
		{"negative max memory", node.Config{Name: "a", Transport: tr, MaxMemory: -1}},
		{"unknown max memory policy", node.Config{Name: "a", Transport: tr, MaxMemoryPolicy: memlimit.Policy(100)}},
		{"reserve over max memory", node.Config{Name: "a", Transport: tr, MaxMemory: 1 << 20, MaxMemoryReserve: 2 << 20}},
		{"reserve without max memory", node.Config{Name: "a", Transport: tr, MaxMemoryReserve: 1}},
	} {
		if _, err := node.New(tc.cfg); !errors.Is(err, node.ErrInvalidConfig) {
			t.Errorf("%s: %v, want ErrInvalidConfig", tc.name, err)
		}
	}
	n, err := node.New(node.Config{Name: "a", Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(n.Close(), n.Close()); err != nil {
		t.Fatal(err)
	}
}

// TestExecuteBatch: a batch mixing local and remote buckets runs in order,
// with each operation's own outcome, remote errors included.
func TestExecuteBatch(t *testing.T) {
	net := newMemNet()
	table := mustRanges(t, "a-m=left,n-z=right")
	left := startMemNode(t, net, "left", table)
	right := startMemNode(t, net, "right", table, "/mem/id-left")
	waitFor(t, "both nodes to see each other", func() bool { return alive(left) == 2 && alive(right) == 2 })
	ops := []store.Op{
		{Kind: store.KindCreate, Bucket: "apple"},
		{Kind: store.KindCreate, Bucket: "zoo"},
		{Kind: store.KindPut, Bucket: "zoo", Key: "k", Value: "v"},
		{Kind: store.KindGet, Bucket: "zoo", Key: "k"},
		{Kind: store.KindGet, Bucket: "zoo", Key: "nope"},
		{Kind: store.KindGet, Bucket: "nest", Key: "k"},
		{Kind: store.KindPut, Bucket: "Zoo", Key: "k", Value: "v"},
		{Kind: store.KindPut, Bucket: "apple", Key: "k", Value: "w"},
		{Kind: store.KindBuckets},
		{Kind: store.KindGet, Bucket: "apple", Key: "k"},
		{Kind: store.KindGet, Bucket: ""},
	}
	want := []struct {
		value string
		names []string
		err   error
	}{
		{}, {}, {}, {value: "v"}, {err: store.ErrKeyNotFound}, {err: store.ErrBucketNotFound},
		{err: ring.ErrNoOwner}, {}, {names: []string{"apple", "zoo"}}, {value: "w"}, {err: store.ErrInvalidOp},
	}
	res := make([]store.Result, len(ops))
	errs := make([]error, len(ops))
	left.ExecuteBatch(context.Background(), ops, res, errs)
	for i, w := range want {
		if !errors.Is(errs[i], w.err) || (w.err == nil && errs[i] != nil) || res[i].Value != w.value || !slices.Equal(res[i].Names, w.names) {
			t.Errorf("op %d (%v %s): %+v, %v; want %+v", i, ops[i].Kind, ops[i].Bucket, res[i], errs[i], w)
		}
	}

	// The owner of some operations is cut off: only those fail.
	net.setDown("id-right", true)
	ops = []store.Op{
		{Kind: store.KindGet, Bucket: "zoo", Key: "k"},
		{Kind: store.KindGet, Bucket: "zoo", Key: "k"},
		{Kind: store.KindGet, Bucket: "apple", Key: "k"},
	}
	left.ExecuteBatch(context.Background(), ops, res[:3], errs[:3])
	var ue *node.UnreachableError
	for i := range 2 {
		if !errors.As(errs[i], &ue) && !errors.Is(errs[i], store.ErrBucketNotFound) {
			t.Errorf("op %d on the cut-off owner: %v", i, errs[i])
		}
	}
	if errs[2] != nil || res[2].Value != "w" {
		t.Errorf("local op next to unreachable ones: %+v, %v", res[2], errs[2])
	}
}
