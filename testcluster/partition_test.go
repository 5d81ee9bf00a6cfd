package testcluster_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dboutique/dboutique/node"
	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/testcluster"
)

// aliveSeen returns how many members node i sees alive, itself included.
func aliveSeen(c *testcluster.Cluster, i int) int {
	n := 0
	for _, m := range c.Node(i).Members() {
		if m.State == node.StateAlive {
			n++
		}
	}
	return n
}

// waitSplit waits until every node of each group sees exactly its group.
func waitSplit(c *testcluster.Cluster, groups ...[]int) {
	c.WaitFor("each side of the partition to see only itself", func() error {
		for _, g := range groups {
			for _, i := range g {
				if got := aliveSeen(c, i); got != len(g) {
					return fmt.Errorf("%s sees %d members alive, want %d", c.Name(i), got, len(g))
				}
			}
		}
		return nil
	})
}

func createBuckets(t *testing.T, c *testcluster.Cluster, prefix string, n int) []string {
	t.Helper()
	ctx := ctxT(t)
	var names []string
	for b := range n {
		name := fmt.Sprintf("%s-%d", prefix, b)
		if err := c.Client(b%c.Len()).Create(ctx, name); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	return names
}

// TestPartitionHealCycles splits five nodes into two sides, five times.
// Clients write unique keys through both sides while the network is cut
// (each side takes writes once it has declared the other dead); after each
// heal, the copies converge and every acknowledged write reads back.
func TestPartitionHealCycles(t *testing.T) {
	const minCycles = 5
	end := time.Now().Add(soakDuration(t, 0))
	c := testcluster.New(t, 5, testcluster.WithReplicas(2), testcluster.WithFailureDetection(100*time.Millisecond, time.Second))
	buckets := createBuckets(t, c, "split", 8)
	l := newLedger()
	rng := rand.New(rand.NewPCG(3, 4))
	splits := [][2][]int{{{0, 1, 2}, {3, 4}}, {{0, 3}, {1, 2, 4}}, {{4}, {0, 1, 2, 3}}, {{1, 3}, {0, 2, 4}}, {{0, 1, 2, 3}, {4}}}
	var total, lostTotal, cycles int
	for cycle := 0; cycle < minCycles || time.Now().Before(end); cycle++ {
		cycles++
		split := splits[cycle%len(splits)]
		c.Partition(split[0], split[1])
		waitSplit(c, split[0], split[1])

		load, stop := context.WithTimeout(context.Background(), 2*time.Second)
		var wg sync.WaitGroup
		for w := range 8 {
			wr := &writer{id: cycle*100 + w, c: c, buckets: buckets, l: l, rng: rand.New(rand.NewPCG(rng.Uint64(), 1)),
				nodes: split[w%2]}
			wg.Go(func() { wr.run(load) })
		}
		wg.Wait()
		stop()

		c.Heal()
		c.WaitReplicated()
		ctx, cancel := context.WithTimeout(context.Background(), testcluster.WaitTimeout)
		checked, lost, examples := l.verify(t, ctx, c)
		cancel()
		t.Logf("cycle %d: sides %v | %v; %d acknowledged keys checked after heal, %d lost", cycle+1, split[0], split[1], checked, lost)
		if lost > 0 {
			t.Errorf("cycle %d: %d acknowledged writes lost, for example:\n%s", cycle+1, lost, strings.Join(examples, "\n"))
		}
		total, lostTotal = checked, lostTotal+lost
	}
	t.Logf("after %d partition/heal cycles: %d acknowledged writes (%d failed), %d keys checked, %d lost",
		cycles, l.acked.Load(), l.unack.Load(), total, lostTotal)
	if l.acked.Load() < 100 {
		t.Errorf("only %d writes acknowledged across %d partitions", l.acked.Load(), cycles)
	}
}

// TestMinMembersMinorityRefusesWrites: with --min-members 3 of five nodes,
// the side of a partition with two nodes refuses writes, and reads too,
// with ERROR cluster unavailable (its nodes hold no lease: the majority may
// be serving their buckets), the side with three takes them, and after the
// heal everything written is everywhere.
func TestMinMembersMinorityRefusesWrites(t *testing.T) {
	c := testcluster.New(t, 5, testcluster.WithReplicas(2), testcluster.WithMinMembers(3),
		testcluster.WithFailureDetection(100*time.Millisecond, time.Second))
	buckets := createBuckets(t, c, "quorum", 6)
	ctx := ctxT(t)
	for _, b := range buckets {
		if err := c.Client(0).Put(ctx, b, "before", "1"); err != nil {
			t.Fatal(err)
		}
	}
	major, minor := []int{0, 1, 2}, []int{3, 4}
	c.Partition(major, minor)
	waitSplit(c, major, minor)

	for _, i := range minor {
		cl := c.Client(i)
		for _, b := range buckets {
			err := cl.Put(ctx, b, "minority", c.Name(i))
			if !errors.Is(err, node.ErrUnavailable) {
				t.Errorf("PUT %s through %s on the minority side: %v, want ERROR cluster unavailable", b, c.Name(i), err)
			}
		}
	}
	// Reads too: the minority cannot know whether the majority has
	// written since.
	for _, b := range buckets {
		if got, err := c.Client(3).Get(ctx, b, "before"); !errors.Is(err, node.ErrUnavailable) {
			t.Errorf("GET %s through %s on the minority side = %q, %v; want ERROR cluster unavailable", b, c.Name(3), got, err)
		}
	}
	// The majority side takes writes, except to buckets whose every copy
	// is on the other side: those are unreachable, never NOT FOUND.
	var written []string
	for _, b := range buckets {
		err := c.Client(1).Put(ctx, b, "majority", "2")
		var ue *node.UnreachableError
		switch {
		case err == nil:
			written = append(written, b)
		case errors.As(err, &ue) && (ue.Node == c.Name(3) || ue.Node == c.Name(4)):
		default:
			t.Errorf("PUT %s on the majority side: %v", b, err)
		}
	}
	if len(written) == 0 {
		t.Fatal("the majority side took no write")
	}

	c.Heal()
	c.WaitReplicated()
	for i := range c.Len() {
		cl := c.Client(i)
		for _, b := range written {
			if got, err := cl.Get(ctx, b, "majority"); err != nil || got != "2" {
				t.Errorf("after the heal, GET %s majority through %s = %q, %v", b, c.Name(i), got, err)
			}
		}
		for _, b := range buckets {
			if _, err := cl.Get(ctx, b, "minority"); !errors.Is(err, store.ErrKeyNotFound) {
				t.Errorf("after the heal, GET %s minority through %s: %v, want no such key", b, c.Name(i), err)
			}
		}
	}
	if err := c.Client(4).Put(ctx, buckets[0], "after", "3"); err != nil {
		t.Errorf("PUT through %s after the heal: %v", c.Name(4), err)
	}
}
