package node_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dboutique/dboutique/node"
	"github.com/dboutique/dboutique/node/store"
)

// Listing the cluster through any node: SCAN, DBSIZE and HSCAN on the
// in-memory network, while the cluster is still and while nodes join and
// leave.

// plainOp sets the plain key k, as RESP's SET does.
func plainOp(k string) store.Op {
	return store.Op{Kind: store.KindPutCreate, Bucket: fmt.Sprintf("%s%d", store.PlainBucketPrefix, store.NameHash(k)%256), Key: k, Value: "v"}
}

// scanTweak sets Replicas to r and a forward timeout that a loaded
// machine meets (the fan-outs of a listing wait for every member), then
// applies more.
func scanTweak(r int, more ...func(*node.Config)) func(*node.Config) {
	return replicas(r, append([]func(*node.Config){func(c *node.Config) { c.ForwardTimeout = time.Second }}, more...)...)
}

// mustWrite runs op through n, again while it fails (as a client would:
// writes here are idempotent), until a deadline.
func mustWrite(t *testing.T, n *node.Node, op store.Op) {
	t.Helper()
	eventually(t, fmt.Sprintf("%v %q %q through %s", op.Kind, op.Bucket, op.Key, n.Name()), func() error {
		_, err := n.Execute(context.Background(), op)
		return err
	})
}

// mustDBSize checks, again while it fails, that DBSize through n is want.
func mustDBSize(t *testing.T, n *node.Node, want int) {
	t.Helper()
	eventually(t, "DBSize through "+n.Name(), func() error {
		size, err := n.DBSize(context.Background())
		if err == nil && size != want {
			err = fmt.Errorf("%d names, want %d", size, want)
		}
		return err
	})
}

// name is a name of the keyspace with its type.
type name struct {
	name string
	typ  store.NameType
}

// fillNames writes nb buckets (of two keys each) and np plain keys through
// the nodes in turn, and returns the names.
func fillNames(t *testing.T, nodes []*node.Node, nb, np int) map[name]bool {
	t.Helper()
	want := map[name]bool{}
	for i := range nb {
		b := fmt.Sprintf("bucket-%d", i)
		for k := range 2 {
			mustWrite(t, nodes[i%len(nodes)], store.Op{Kind: store.KindPutCreate, Bucket: b, Key: keyName(k), Value: "v"})
		}
		want[name{b, store.TypeHash}] = true
	}
	for i := range np {
		k := fmt.Sprintf("key-%d", i)
		mustWrite(t, nodes[i%len(nodes)], plainOp(k))
		want[name{k, store.TypeString}] = true
	}
	return want
}

// scanThrough iterates Scan through n from cursor 0 to the end, count
// names a page, and returns how many times each name was listed. A page
// that fails is asked again (a client would), for up to ten seconds.
// between runs before each page, so a test can change the cluster
// mid-scan. It may run on a goroutine of its own: it reports failures as
// errors.
func scanThrough(n func() *node.Node, r store.ScanRequest, between func(page int)) (map[name]int, error) {
	got := map[name]int{}
	r.Cursor = 0
	for page := 0; ; page++ {
		if between != nil {
			between(page)
		}
		deadline := time.Now().Add(10 * time.Second)
		p, err := n().Scan(context.Background(), r)
		for err != nil {
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("page %d from cursor %d: %w", page, r.Cursor, err)
			}
			time.Sleep(5 * time.Millisecond)
			p, err = n().Scan(context.Background(), r)
		}
		for _, it := range p.Items {
			got[name{it.Name, it.Type}]++
		}
		if p.Next == 0 {
			return got, nil
		}
		if p.Next <= r.Cursor {
			return nil, fmt.Errorf("the cursor went back from %d to %d", r.Cursor, p.Next)
		}
		r.Cursor = p.Next
	}
}

// mustScan is scanThrough on the test's goroutine.
func mustScan(t *testing.T, n func() *node.Node, r store.ScanRequest, between func(page int)) map[name]int {
	t.Helper()
	got, err := scanThrough(n, r, between)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// missing returns the names of want that got lacks.
func missing(want map[name]bool, got map[name]int) []name {
	var out []name
	for n := range want {
		if got[n] == 0 {
			out = append(out, n)
		}
	}
	return out
}

// TestScanCluster: through every node, a full scan lists exactly the
// names of the cluster, each once, whatever the count, and as many as
// DBSize counts; MATCH and TYPE filter on the members; HSCAN lists a
// bucket's keys from its primary through any node.
func TestScanCluster(t *testing.T) {
	nodes := startReplicated(t, newMemNet(), scanTweak(2), "a", "b", "c")
	want := fillNames(t, nodes, 40, 200)
	mustWrite(t, nodes[0], plainOp("bucket-1")) // a name of both types
	want[name{"bucket-1", store.TypeString}] = true
	eventually(t, "the copies to settle", func() error { return settled(nodes) })
	ctx := context.Background()
	for _, n := range nodes {
		for _, count := range []int{1, 7, 1000} {
			got := mustScan(t, func() *node.Node { return n }, store.ScanRequest{Count: count}, nil)
			for nm, c := range got {
				if c != 1 || !want[nm] {
					t.Fatalf("through %s, count %d: %v listed %d times (want %v)", n.Name(), count, nm, c, want[nm])
				}
			}
			if m := missing(want, got); len(m) > 0 {
				t.Fatalf("through %s, count %d: %d names missing: %v", n.Name(), count, len(m), m)
			}
		}
		mustDBSize(t, n, len(want))
		got := mustScan(t, func() *node.Node { return n }, store.ScanRequest{Count: 10, Match: "key-1?", Type: store.TypeString}, nil)
		if len(got) != 10 {
			t.Fatalf("MATCH key-1? TYPE string through %s: %v", n.Name(), got)
		}
		got = mustScan(t, func() *node.Node { return n }, store.ScanRequest{Count: 10, Match: "bucket-1", Type: store.TypeHash}, nil)
		if !maps.Equal(got, map[name]int{{"bucket-1", store.TypeHash}: 1}) {
			t.Fatalf("MATCH bucket-1 TYPE hash through %s: %v", n.Name(), got)
		}

		// HSCAN, forwarded to the primary when need be.
		var keys []string
		r := store.ScanRequest{Count: 1}
		for {
			p, err := n.ScanBucket(ctx, "bucket-3", r)
			if err != nil {
				t.Fatalf("ScanBucket through %s: %v", n.Name(), err)
			}
			for _, it := range p.Items {
				if it.Value != "v" {
					t.Fatalf("ScanBucket through %s: %+v", n.Name(), it)
				}
				keys = append(keys, it.Name)
			}
			if p.Next == 0 {
				break
			}
			r.Cursor = p.Next
		}
		slices.Sort(keys)
		if !slices.Equal(keys, []string{keyName(0), keyName(1)}) {
			t.Fatalf("ScanBucket through %s listed %v", n.Name(), keys)
		}
		if _, err := n.ScanBucket(ctx, "no-such-bucket", store.ScanRequest{Count: 10}); !errors.Is(err, store.ErrBucketNotFound) {
			t.Fatalf("ScanBucket of a missing bucket through %s: %v", n.Name(), err)
		}
	}
	for _, r := range []store.ScanRequest{{}, {Count: store.MaxScanCount + 1}, {Count: 1, Type: 9}} {
		if _, err := nodes[0].Scan(ctx, r); !errors.Is(err, store.ErrInvalidOp) {
			t.Errorf("Scan(%+v): %v, want ErrInvalidOp", r, err)
		}
	}
	if _, err := nodes[0].ScanBucket(ctx, "", store.ScanRequest{Count: 1}); !errors.Is(err, store.ErrInvalidOp) {
		t.Errorf("ScanBucket of no bucket: %v, want ErrInvalidOp", err)
	}
}

// TestScanMemberUnreachable: a member that does not answer fails the scan
// and DBSize, with an error that names it, rather than leave its names out.
func TestScanMemberUnreachable(t *testing.T) {
	net := newMemNet()
	nodes := startReplicated(t, net, scanTweak(2), "a", "b", "c")
	fillNames(t, nodes, 5, 5)
	net.setHung(nodes[2].ID(), ofType(node.MsgScan))
	ctx := context.Background()
	_, err := nodes[0].Scan(ctx, store.ScanRequest{Count: 10})
	var ue *node.UnreachableError
	if !errors.As(err, &ue) || ue.Node != "c" {
		t.Fatalf("Scan with c hung: %v, want c unreachable", err)
	}
	if _, err := nodes[1].DBSize(ctx); !errors.As(err, &ue) || ue.Node != "c" {
		t.Fatalf("DBSize with c hung: %v, want c unreachable", err)
	}
	net.setHung(nodes[2].ID(), nil)
	eventually(t, "a scan once c answers again", func() error {
		_, err := nodes[0].Scan(ctx, store.ScanRequest{Count: 10})
		return err
	})
}

// TestScanWhileNodesJoinAndLeave: full scans run one after the other
// through a node that stays, while a node joins, another leaves, and a
// third joins; each lists every name of the cluster (all present
// throughout) at least once, with two copies of every bucket.
func TestScanWhileNodesJoinAndLeave(t *testing.T) {
	net := newMemNet()
	nodes := startReplicated(t, net, scanTweak(2), "a", "b", "c")
	want := fillNames(t, nodes, 30, 300)
	eventually(t, "the copies to settle", func() error { return settled(nodes) })

	stop := make(chan struct{})
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		scans int
	)
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			got, err := scanThrough(func() *node.Node { return nodes[i%2] }, store.ScanRequest{Count: 10 + i%30}, nil)
			if err != nil {
				t.Errorf("scan %d through %s: %v", i, nodes[i%2].Name(), err)
				return
			}
			if m := missing(want, got); len(m) > 0 {
				t.Errorf("scan %d through %s missed %d names: %v", i, nodes[i%2].Name(), len(m), m[:min(len(m), 5)])
				return
			}
			mu.Lock()
			scans++
			mu.Unlock()
		}
	})
	scansSoFar := func() int {
		mu.Lock()
		defer mu.Unlock()
		return scans
	}
	// Each change waits for scans to run across it.
	step := func(what string, change func() []*node.Node) {
		before := scansSoFar()
		all := change()
		eventually(t, what, func() error { return settled(all) })
		eventually(t, "scans after "+what, func() error {
			if scansSoFar() < before+2 {
				return fmt.Errorf("%d scans", scansSoFar()-before)
			}
			return nil
		})
	}
	d := nodes[2]
	step("d to join", func() []*node.Node {
		d = startMemNodeWith(t, net, "d", nil, scanTweak(2), "/mem/id-a")
		return append(slices.Clone(nodes), d)
	})
	step("c to leave", func() []*node.Node {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := nodes[2].Leave(ctx); err != nil {
			t.Errorf("c leaving: %v", err)
		}
		nodes[2].Close()
		return []*node.Node{nodes[0], nodes[1], d}
	})
	var final []*node.Node
	step("e to join", func() []*node.Node {
		e := startMemNodeWith(t, net, "e", nil, scanTweak(2), "/mem/id-b")
		final = []*node.Node{nodes[0], nodes[1], d, e}
		return final
	})
	close(stop)
	wg.Wait()
	t.Logf("%d full scans across the changes", scansSoFar())
	for _, n := range final {
		mustDBSize(t, n, len(want))
	}
}

// gatedTransport holds back the calls that match until gate is closed.
type gatedTransport struct {
	node.Transport
	match func(to string, req []byte) bool
	gate  chan struct{}
}

func (t *gatedTransport) Call(ctx context.Context, to string, req []byte) ([]byte, error) {
	if t.match(to, req) {
		select {
		case <-t.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return t.Transport.Call(ctx, to, req)
}

// refusingTransport fails the requests it receives that refuse matches,
// and tells on answered when it has answered one that answered matches.
type refusingTransport struct {
	node.Transport
	refuse, answer func(req []byte) bool
	answered       chan struct{} // buffered
}

func (t *refusingTransport) Serve(h func(ctx context.Context, from string, req []byte) ([]byte, error)) {
	t.Transport.Serve(func(ctx context.Context, from string, req []byte) ([]byte, error) {
		if t.refuse(req) {
			return nil, errors.New("refused by the test")
		}
		reply, err := h(ctx, from, req)
		if t.answer(req) {
			select {
			case t.answered <- struct{}{}:
			default:
			}
		}
		return reply, err
	})
}

// isScanNames matches the requests for a page of names.
func isScanNames(req []byte) bool {
	return len(req) > 1 && req[0] == node.MsgScan && req[1] == node.ScanNames
}

// TestScanCopiesMoveMidPage: a page is asked of a bucket's new holder
// before its copy arrives, and of its old holder after it handed the copy
// off and removed it. The names are in neither answer; the page sees that
// a member removed copies while it listed, and lists again. With one copy
// a bucket, d joins and takes buckets, whose copies cannot reach it until
// the page has asked it; the page's calls to the other nodes wait until
// every copy has moved.
func TestScanCopiesMoveMidPage(t *testing.T) {
	net := newMemNet()
	gate := make(chan struct{})
	var gateOn sync.Mutex
	gating := false
	coordinator := func(c *node.Config) {
		c.Replicas = 1
		c.ForwardTimeout = 10 * time.Second // the gated calls wait
		c.Transport = &gatedTransport{Transport: c.Transport, gate: gate, match: func(to string, req []byte) bool {
			gateOn.Lock()
			defer gateOn.Unlock()
			return gating && to != "id-d" && isScanNames(req)
		}}
	}
	a := startMemNodeWith(t, net, "a", nil, coordinator)
	nodes := []*node.Node{a}
	for _, nm := range []string{"b", "c"} {
		nodes = append(nodes, startMemNodeWith(t, net, nm, nil, scanTweak(1), "/mem/id-a"))
	}
	waitFor(t, "a, b and c to see each other", func() bool { return converged(nodes) })
	want := fillNames(t, nodes, 30, 300)
	eventually(t, "the copies to settle", func() error { return settled(nodes) })

	var refusing sync.Mutex
	refuse := true
	answered := make(chan struct{}, 1)
	d := startMemNodeWith(t, net, "d", nil, func(c *node.Config) {
		scanTweak(1)(c)
		c.Transport = &refusingTransport{Transport: c.Transport, answer: isScanNames, answered: answered, refuse: func(req []byte) bool {
			refusing.Lock()
			defer refusing.Unlock()
			return refuse && len(req) > 0 && req[0] == node.MsgMerge
		}}
	}, "/mem/id-a")
	all := append(slices.Clone(nodes), d)
	waitFor(t, "d to join", func() bool { return converged(all) })
	moving := 0
	for _, n := range nodes {
		for _, b := range n.Store().Records() {
			if owners, _ := n.Owners(b); owners[0].ID == d.ID() {
				moving++
			}
		}
	}
	if moving == 0 {
		t.Fatal("d takes no bucket")
	}

	gateOn.Lock()
	gating = true
	gateOn.Unlock()
	type result struct {
		page store.ScanPage
		err  error
	}
	done := make(chan result, 1)
	go func() {
		p, err := a.Scan(context.Background(), store.ScanRequest{Count: store.MaxScanCount})
		done <- result{p, err}
	}()
	// Once d has answered (with none of the moving copies), let them move.
	select {
	case <-answered:
	case <-time.After(10 * time.Second):
		t.Fatal("d was not asked for its page")
	}
	refusing.Lock()
	refuse = false
	refusing.Unlock()
	eventually(t, "the copies to move to d", func() error { return settled(all) })
	gateOn.Lock()
	gating = false
	gateOn.Unlock()
	close(gate)
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	got := map[name]int{}
	for _, it := range res.page.Items {
		got[name{it.Name, it.Type}]++
	}
	if m := missing(want, got); len(m) > 0 {
		t.Fatalf("the page missed %d names (%d buckets moved to d): %v", len(m), moving, m[:min(len(m), 5)])
	}
}

// TestScanListsCopiesInFlight: with one copy a bucket, the copies a node
// no longer owns are listed until their new owners hold them: those of
// the buckets a joining node takes, and every copy of a node that leaves,
// while their hand-off cannot go through.
func TestScanListsCopiesInFlight(t *testing.T) {
	var mu sync.Mutex
	refuse := true
	refusing := func(c *node.Config) {
		scanTweak(1)(c)
		c.Transport = &refusingTransport{Transport: c.Transport, answer: func([]byte) bool { return false }, refuse: func(req []byte) bool {
			mu.Lock()
			defer mu.Unlock()
			return refuse && len(req) > 0 && req[0] == node.MsgMerge
		}}
	}
	set := func(v bool) {
		mu.Lock()
		refuse = v
		mu.Unlock()
	}
	allow := func() { set(false) }
	mustList := func(t *testing.T, via *node.Node, want map[name]bool) {
		t.Helper()
		got := mustScan(t, func() *node.Node { return via }, store.ScanRequest{Count: 50}, nil)
		if m := missing(want, got); len(m) > 0 {
			t.Fatalf("through %s: %d names missing: %v", via.Name(), len(m), m[:min(len(m), 5)])
		}
	}

	t.Run("join", func(t *testing.T) {
		net := newMemNet()
		nodes := startReplicated(t, net, scanTweak(1), "a", "b", "c")
		want := fillNames(t, nodes, 30, 300)
		set(true)
		d := startMemNodeWith(t, net, "d", nil, refusing, "/mem/id-a")
		all := append(slices.Clone(nodes), d)
		waitFor(t, "d to join", func() bool { return converged(all) })
		if d.Store().Stats().Records != 0 {
			t.Fatal("a copy reached d")
		}
		for _, n := range all {
			mustList(t, n, want)
		}
		allow()
		eventually(t, "the copies to move to d", func() error { return settled(all) })
		mustList(t, d, want)
	})

	t.Run("leave", func(t *testing.T) {
		net := newMemNet()
		set(true)
		a := startMemNodeWith(t, net, "a", nil, refusing)
		b := startMemNodeWith(t, net, "b", nil, refusing, "/mem/id-a")
		c := startMemNodeWith(t, net, "c", nil, scanTweak(1), "/mem/id-a")
		nodes := []*node.Node{a, b, c}
		waitFor(t, "a, b and c to see each other", func() bool { return converged(nodes) })
		allow()
		want := fillNames(t, nodes, 30, 300)
		eventually(t, "the copies to settle", func() error { return settled(nodes) })
		if c.Store().Stats().Records == 0 {
			t.Fatal("c holds no copy")
		}
		set(true)
		left := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			left <- c.Leave(ctx)
		}()
		waitFor(t, "a and b to see c leave", func() bool {
			return stateOf(a, c.ID()) == node.StateLeft && stateOf(b, c.ID()) == node.StateLeft
		})
		mustList(t, a, want)
		mustList(t, c, want)
		allow()
		if err := <-left; err != nil {
			t.Fatalf("c leaving: %v", err)
		}
		c.Close()
		mustList(t, b, want)
		mustDBSize(t, a, len(want))
	})
}
