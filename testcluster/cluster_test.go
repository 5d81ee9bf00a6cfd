package testcluster_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dboutique/dboutique/node"
	"github.com/dboutique/dboutique/p2p"
	"github.com/dboutique/dboutique/ring"
	"github.com/dboutique/dboutique/testcluster"
	"github.com/dboutique/dboutique/textproto"
	"github.com/dboutique/dboutique/textproto/prototest"
)

// original is the letter-range table of the original's distributed test.
const original = "a-g=a-g,h-n=h-n,o-u=o-u,v-z=v-z"

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testcluster.WaitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// holders returns the names of the nodes whose own store holds bucket.
func holders(c *testcluster.Cluster, bucket string) []string {
	var names []string
	for i := range c.Len() {
		if c.Up(i) && slices.Contains(c.Node(i).Store().Buckets(), bucket) {
			names = append(names, c.Name(i))
		}
	}
	return names
}

// TestOriginalDistributed rebuilds the original's distributed test: four
// nodes named after their letter ranges; "hello" lives on h-n and "world"
// on v-z, and both are reached through every node's client port. With two
// replicas, the next range's node holds a copy too.
func TestOriginalDistributed(t *testing.T) {
	c := testcluster.New(t, 4, testcluster.WithRanges(original))
	ctx := ctxT(t)

	first := c.Client(0)
	if err := first.Create(ctx, "hello"); err != nil {
		t.Fatal(err)
	}
	if err := c.Client(2).Create(ctx, "world"); err != nil {
		t.Fatal(err)
	}
	if got := holders(c, "hello"); !slices.Equal(got, []string{"h-n", "o-u"}) {
		t.Errorf("hello is held by %v, want [h-n o-u]", got)
	}
	if got := holders(c, "world"); !slices.Equal(got, []string{"a-g", "v-z"}) {
		t.Errorf("world is held by %v, want [a-g v-z]", got)
	}
	for i := range 4 {
		cl := c.Client(i)
		key := fmt.Sprintf("from-%s", c.Name(i))
		for _, b := range []string{"hello", "world"} {
			if err := cl.Put(ctx, b, key, c.Name(i)); err != nil {
				t.Fatalf("PUT %s through %s: %v", b, c.Name(i), err)
			}
		}
	}
	for i := range 4 {
		cl := c.Client(i)
		for j := range 4 {
			for _, b := range []string{"hello", "world"} {
				got, err := cl.Get(ctx, b, "from-"+c.Name(j))
				if err != nil || got != c.Name(j) {
					t.Errorf("GET %s from-%s through %s = %q, %v", b, c.Name(j), c.Name(i), got, err)
				}
			}
		}
		owner, err := cl.Owner(ctx, "hello")
		if err != nil || len(owner) != 2 || !strings.HasPrefix(owner[0], "h-n ") || !strings.HasPrefix(owner[1], "o-u ") {
			t.Errorf("OWNER hello through %s = %q, %v", c.Name(i), owner, err)
		}
	}
	// Raw bytes, as telnet sees them: a bucket no range covers.
	raw := prototest.Dial(t, c.Addr(3))
	raw.Send("CREATE Hello\r\n")
	raw.Expect("ERROR no node owns bucket Hello\r\n")
	raw.Send("GET world from-a-g\r\n")
	raw.Expect("a-g\r\nOK\r\n")
}

// TestTranscriptOnEveryNode plays PROTOCOL.md's transcript through every
// node's client port; "shopping" lives on o-u, with a copy on v-z.
func TestTranscriptOnEveryNode(t *testing.T) {
	c := testcluster.New(t, 4, testcluster.WithRanges(original))
	ctx := ctxT(t)
	for i := range 4 {
		prototest.RunTranscript(t, c.Addr(i))
		if got := holders(c, "shopping"); !slices.Equal(got, []string{"o-u", "v-z"}) {
			t.Errorf("after the transcript through %s, shopping is held by %v", c.Name(i), got)
		}
		if err := c.Client(i).Drop(ctx, "shopping"); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPipelinedTranscriptOnEveryNode sends the whole transcript in one
// write: through a node that does not hold "shopping", the requests travel
// to o-u together and the replies come back in order.
func TestPipelinedTranscriptOnEveryNode(t *testing.T) {
	c := testcluster.New(t, 4, testcluster.WithRanges(original))
	var req, want strings.Builder
	for _, st := range prototest.Transcript() {
		req.WriteString(st.Req + "\r\n")
		want.WriteString(st.Reply)
	}
	req.WriteString("PING\r\nCREATE hello\r\nPUT hello k v\r\nPUT shopping k w\r\nGET hello k\r\nGET shopping k\r\nOWNER hello\r\nDROP hello\r\nDROP shopping\r\n")
	want.WriteString("PONG\r\nOK\r\nOK\r\nOK\r\nv\r\nOK\r\nw\r\nOK\r\n")
	for i := range 4 {
		raw := prototest.Dial(t, c.Addr(i))
		raw.Send(req.String())
		raw.Expect(want.String())
		if line := raw.Line(); !strings.HasPrefix(line, "h-n ") {
			t.Fatalf("OWNER hello through %s = %q", c.Name(i), line)
		}
		if line := raw.Line(); !strings.HasPrefix(line, "o-u ") {
			t.Fatalf("OWNER hello through %s, second line = %q", c.Name(i), line)
		}
		raw.Expect("OK\r\nOK\r\nOK\r\n")
	}
}

// TestConsistentHashEveryBucketEverywhere: with the consistent-hash ring on
// eight nodes, each bucket lives on exactly the two nodes OWNER names, and
// is reachable through every node.
func TestConsistentHashEveryBucketEverywhere(t *testing.T) {
	const nodes, buckets = 8, 40
	c := testcluster.New(t, nodes)
	ctx := ctxT(t)
	clients := make([]*textproto.Client, nodes)
	for i := range clients {
		clients[i] = c.Client(i)
	}
	for b := range buckets {
		name := fmt.Sprintf("bucket-%d", b)
		cl := clients[b%nodes]
		if err := cl.Create(ctx, name); err != nil {
			t.Fatal(err)
		}
		if err := cl.Put(ctx, name, "k", name); err != nil {
			t.Fatal(err)
		}
	}
	used := map[string]bool{}
	for b := range buckets {
		name := fmt.Sprintf("bucket-%d", b)
		held := holders(c, name)
		if len(held) != 2 {
			t.Fatalf("%s is held by %v, want two nodes", name, held)
		}
		used[held[0]] = true
		for i, cl := range clients {
			got, err := cl.Get(ctx, name, "k")
			if err != nil || got != name {
				t.Fatalf("GET %s k through node %d = %q, %v", name, i, got, err)
			}
			owner, err := cl.Owner(ctx, name)
			var names []string
			for _, l := range owner {
				names = append(names, strings.Fields(l)[0])
			}
			slices.Sort(names)
			if err != nil || !slices.Equal(names, held) {
				t.Fatalf("OWNER %s through node %d = %q, %v; held by %v", name, i, owner, err, held)
			}
		}
	}
	if len(used) < nodes/2 {
		t.Errorf("%d buckets landed on only %d of %d nodes", buckets, len(used), nodes)
	}
	all, err := clients[5].Buckets(ctx)
	if err != nil || len(all) != buckets {
		t.Errorf("BUCKETS gathered %d names (%v), want %d", len(all), err, buckets)
	}
}

// TestJoinThroughAnyNode: a node that joins through the last node, not the
// first, still learns every member, and every member learns it.
func TestJoinThroughAnyNode(t *testing.T) {
	c := testcluster.New(t, 3)
	i := c.AddVia(2)
	c.WaitConverged()
	for j := range c.Len() {
		if n := len(c.Node(j).Members()); n != 4 {
			t.Errorf("%s knows %d members, want 4", c.Name(j), n)
		}
	}
	lines, err := c.Client(i).Nodes(ctxT(t))
	if err != nil || len(lines) != 4 {
		t.Fatalf("NODES = %q, %v", lines, err)
	}
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) != 4 || !strings.HasPrefix(f[3], "alive") || !strings.Contains(f[2], "/tcp/") {
			t.Errorf("NODES line %q: want name, peer ID, addresses, alive", l)
		}
	}
}

// TestKilledOwner: a killed owner first gives a clear error, then, once the
// others notice, its buckets are served, with their data, by the copy on
// the ring's next owner, and a new second copy is made.
func TestKilledOwner(t *testing.T) {
	c := testcluster.New(t, 4, testcluster.WithRanges(original))
	ctx := ctxT(t)
	cl := c.Client(0)
	if err := cl.Create(ctx, "hello"); err != nil {
		t.Fatal(err)
	}
	if err := cl.Put(ctx, "hello", "k", "v"); err != nil {
		t.Fatal(err)
	}
	c.Kill(1) // h-n
	raw := prototest.Dial(t, c.Addr(0))
	raw.Send("GET hello k\r\n")
	raw.Expect("ERROR node h-n unreachable\r\n")
	got, err := cl.Get(ctx, "hello", "k")
	if ue := (*node.UnreachableError)(nil); !errors.As(err, &ue) || ue.Node != "h-n" {
		// The failure detector may already have acted; then the next
		// owner answers.
		if err != nil || got != "v" {
			t.Fatalf("GET through the client after the kill: %q, %v", got, err)
		}
	}
	c.WaitReplicated()
	raw.Send("GET hello k\r\n")
	raw.Expect("v\r\nOK\r\n")
	if got := holders(c, "hello"); !slices.Equal(got, []string{"o-u", "v-z"}) {
		t.Errorf("with h-n gone, hello is held by %v, want [o-u v-z]", got)
	}

	// Back with the same identity, h-n owns its range again.
	id := c.Node(1).ID()
	c.Restart(1)
	if c.Node(1).ID() != id {
		t.Errorf("restarted node has peer ID %s, want %s", c.Node(1).ID(), id)
	}
	owner, err := c.Client(3).Owner(ctx, "hello")
	if err != nil || len(owner) != 2 || owner[0] != "h-n "+id {
		t.Errorf("OWNER hello after the restart = %q, %v", owner, err)
	}
	// ...and it has caught up: it serves hello's data, and o-u's copy is
	// the second one again (v-z's was handed back and removed).
	if got, err := c.Client(1).Get(ctx, "hello", "k"); err != nil || got != "v" {
		t.Errorf("GET hello k through the restarted h-n = %q, %v", got, err)
	}
	c.WaitReplicated()
	if got := holders(c, "hello"); !slices.Equal(got, []string{"h-n", "o-u"}) {
		t.Errorf("after the restart, hello is held by %v, want [h-n o-u]", got)
	}
}

// TestGracefulStop: a node that leaves is out of the ring at once.
func TestGracefulStop(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithFailureDetection(time.Second, time.Hour))
	c.Leave(2)
	// With an hour before a silent node is dead, only the goodbye can
	// have taken it out of the ring.
	c.WaitConverged()
}

// TestWrongClusterKeyCannotJoin: nodes with another cluster key, or none,
// cannot connect, and the error says why.
func TestWrongClusterKeyCannotJoin(t *testing.T) {
	key, err := p2p.GenerateClusterKey()
	if err != nil {
		t.Fatal(err)
	}
	c := testcluster.New(t, 2, testcluster.WithClusterKey(key))
	other, err := p2p.GenerateClusterKey()
	if err != nil {
		t.Fatal(err)
	}
	for name, psk := range map[string][]byte{"another key": other, "no key": nil} {
		t.Run(name, func(t *testing.T) {
			tr, err := p2p.NewTransport(p2p.TransportConfig{Host: p2p.HostConfig{PSK: psk}})
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err = tr.Connect(ctx, c.JoinAddr(0))
			if !errors.Is(err, p2p.ErrClusterKeyMismatch) {
				t.Fatalf("Connect with %s = %v, want ErrClusterKeyMismatch", name, err)
			}
		})
	}
	if n := len(c.Node(0).Members()); n != 2 {
		t.Errorf("node 0 knows %d members, want 2", n)
	}
}

// TestOwnerErrors checks the replies for buckets nobody can own.
func TestOwnerErrors(t *testing.T) {
	c := testcluster.New(t, 2, testcluster.WithRanges("a-m=left,n-z=right"))
	raw := prototest.Dial(t, c.Addr(0))
	raw.Send("OWNER 9lives\r\n")
	raw.Expect("ERROR no node owns bucket 9lives\r\n")
	raw.Send("OWNER\r\n")
	raw.Expect("ERROR usage: OWNER <bucket>\r\n")
	raw.Send("OWNER zoo\r\n")
	if line := raw.Line(); !strings.HasPrefix(line, "right ") {
		t.Errorf("OWNER zoo = %q", line)
	}
	if line := raw.Line(); !strings.HasPrefix(line, "left ") {
		t.Errorf("OWNER zoo, second line = %q", line)
	}
	raw.Expect("OK\r\n")
	_, err := c.Client(1).Owner(ctxT(t), "9lives")
	if !errors.Is(err, ring.ErrNoOwner) {
		t.Errorf("client OWNER 9lives: %v, want ring.ErrNoOwner", err)
	}
}
