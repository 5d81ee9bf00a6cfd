package testcluster_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dboutique/dboutique/testcluster"
)

// Listing a real cluster with go-redis: SCAN iterated to the end through
// every node lists exactly what was written, as many names as DBSIZE
// counts; and a scan that runs while a node joins, or while one leaves,
// lists every name at least once.

const (
	scanBuckets = 100
	scanKeys    = 600
)

// writeNames writes scanBuckets buckets (hashes) and scanKeys plain keys
// through the clients in turn, and returns the names.
func writeNames(t *testing.T, ctx context.Context, rcs []*redis.Client) map[string]bool {
	t.Helper()
	want := map[string]bool{}
	for i := range scanBuckets {
		b := fmt.Sprintf("bucket:%d", i)
		if err := rcs[i%len(rcs)].HSet(ctx, b, "f", "v").Err(); err != nil {
			t.Fatalf("HSET %s: %v", b, err)
		}
		want[b] = true
	}
	for n, rc := range rcs {
		pipe := rc.Pipeline()
		for i := n; i < scanKeys; i += len(rcs) {
			k := fmt.Sprintf("key:%d", i)
			pipe.Set(ctx, k, "v", 0)
			want[k] = true
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatalf("SET through node %d: %v", n, err)
		}
	}
	return want
}

// scanPages iterates SCAN through rc from 0 to the end with count, and
// returns how many times each name came. A page that fails is asked again
// with the same cursor, as a client would, until a deadline. between runs
// before each page.
func scanPages(ctx context.Context, rc *redis.Client, count int64, between func(page int)) (map[string]int, error) {
	got := map[string]int{}
	var cursor uint64
	for page := 0; ; page++ {
		if between != nil {
			between(page)
		}
		var (
			keys []string
			next uint64
			err  error
		)
		deadline := time.Now().Add(testcluster.WaitTimeout)
		for {
			keys, next, err = rc.Scan(ctx, cursor, "", count).Result()
			if err == nil {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return nil, fmt.Errorf("SCAN %d (page %d): %w", cursor, page, err)
			}
			time.Sleep(20 * time.Millisecond) // retry: the membership is changing
		}
		for _, k := range keys {
			got[k]++
		}
		if next == 0 {
			return got, nil
		}
		if next <= cursor {
			return nil, fmt.Errorf("the cursor went back from %d to %d", cursor, next)
		}
		cursor = next
	}
}

// missingNames returns the names of want that got lacks, sorted.
func missingNames(want map[string]bool, got map[string]int) []string {
	var out []string
	for n := range want {
		if got[n] == 0 {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// TestRespScanEveryNode: on three nodes, SCAN 0 iterated to the end
// through each node lists exactly the names written, each once, and as
// many as DBSIZE counts through that node; KEYS, SCAN's filters, HSCAN and
// RANDOMKEY answer the same through every node.
func TestRespScanEveryNode(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithReplicas(2))
	ctx := ctxT(t)
	rcs := redisClients(t, c)
	want := writeNames(t, ctx, rcs)
	c.WaitReplicated()

	for i, rc := range rcs {
		via := c.Name(i)
		for _, count := range []int64{10, 1000} {
			got, err := scanPages(ctx, rc, count, nil)
			if err != nil {
				t.Fatalf("through %s: %v", via, err)
			}
			if !maps.Equal(got, func() map[string]int {
				m := map[string]int{}
				for n := range want {
					m[n] = 1
				}
				return m
			}()) {
				t.Fatalf("SCAN COUNT %d through %s listed %d names (%d missing: %.5q), want each of the %d once",
					count, via, len(got), len(missingNames(want, got)), missingNames(want, got), len(want))
			}
		}
		size, err := rc.DBSize(ctx).Result()
		if err != nil || size != int64(len(want)) {
			t.Errorf("DBSIZE through %s = %d, %v; want %d", via, size, err, len(want))
		}
		keys, err := rc.Keys(ctx, "bucket:1?").Result()
		slices.Sort(keys)
		if wantKeys := []string{"bucket:10", "bucket:11", "bucket:12", "bucket:13", "bucket:14", "bucket:15", "bucket:16", "bucket:17", "bucket:18", "bucket:19"}; err != nil || !slices.Equal(keys, wantKeys) {
			t.Errorf("KEYS bucket:1? through %s = %q, %v", via, keys, err)
		}
		if all, err := rc.Keys(ctx, "*").Result(); err != nil || len(all) != len(want) {
			t.Errorf("KEYS * through %s: %d names, %v; want %d", via, len(all), err, len(want))
		}
		hashes, _, err := rc.ScanType(ctx, 0, "", 10000, "hash").Result()
		if err != nil || len(hashes) != scanBuckets || !strings.HasPrefix(hashes[0], "bucket:") {
			t.Errorf("SCAN TYPE hash through %s: %d names, %v; want %d buckets", via, len(hashes), err, scanBuckets)
		}
		kv, next, err := rc.HScan(ctx, "bucket:7", 0, "", 10).Result()
		if err != nil || next != 0 || !slices.Equal(kv, []string{"f", "v"}) {
			t.Errorf("HSCAN bucket:7 through %s = %q, %d, %v", via, kv, next, err)
		}
		if k, err := rc.RandomKey(ctx).Result(); err != nil || !want[k] {
			t.Errorf("RANDOMKEY through %s = %q, %v", via, k, err)
		}
	}
}

// TestRespScanWhileNodeJoins: a scan through node 0, ten names a page,
// during which a fourth node joins and takes its share of the buckets
// (pages before it joins, while the nodes learn of it, while copies move,
// and after they have moved): every name, present all along, is listed at
// least once. Then a scan through the new node lists exactly the names.
func TestRespScanWhileNodeJoins(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithReplicas(2))
	ctx := ctxT(t)
	rcs := redisClients(t, c)
	want := writeNames(t, ctx, rcs)
	c.WaitReplicated()

	joined := -1
	got, err := scanPages(ctx, rcs[0], 10, func(page int) {
		switch page {
		case 3:
			joined = c.AddVia(0) // returns at once: it joins while the scan goes on
		case 20:
			c.WaitConverged()
		case 40:
			c.WaitSettled()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if joined < 0 {
		t.Fatal("the scan ended before the fourth node joined")
	}
	if m := missingNames(want, got); len(m) > 0 {
		t.Fatalf("a scan across the join missed %d names: %.10q", len(m), m)
	}
	c.WaitReplicated()
	rc := redisClients(t, c)[joined]
	got, err = scanPages(ctx, rc, 100, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m := missingNames(want, got); len(m) > 0 || len(got) != len(want) {
		t.Fatalf("through the new node: %d names, %d missing", len(got), len(m))
	}
	if size, err := rc.DBSize(ctx).Result(); err != nil || size != int64(len(want)) {
		t.Fatalf("DBSIZE through the new node = %d, %v; want %d", size, err, len(want))
	}
}

// TestRespScanWhileNodeLeaves: a scan through node 0 during which node 2
// leaves gracefully (pages while it hands its copies off, and after it
// has left): every name is listed at least once, and DBSIZE still counts
// them all once it has left.
func TestRespScanWhileNodeLeaves(t *testing.T) {
	c := testcluster.New(t, 4, testcluster.WithReplicas(2))
	ctx := ctxT(t)
	rcs := redisClients(t, c)
	want := writeNames(t, ctx, rcs[:2]) // not through the node that leaves
	c.WaitReplicated()

	var wg sync.WaitGroup
	defer wg.Wait()
	started := false
	got, err := scanPages(ctx, rcs[0], 10, func(page int) {
		switch page {
		case 3:
			started = true
			wg.Go(func() { c.Leave(2) })
		case 40:
			wg.Wait() // node 2 has handed everything off and stopped
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if !started {
		t.Fatal("the scan ended before node 2 left")
	}
	if m := missingNames(want, got); len(m) > 0 {
		t.Fatalf("a scan across the leave missed %d names: %.10q", len(m), m)
	}
	wg.Wait()
	c.WaitReplicated()
	if size, err := rcs[1].DBSize(ctx).Result(); err != nil || size != int64(len(want)) {
		t.Fatalf("DBSIZE once node 2 left = %d, %v; want %d", size, err, len(want))
	}
	got, err = scanPages(ctx, rcs[3], 1000, nil)
	if err != nil || len(got) != len(want) {
		t.Fatalf("a scan once node 2 left: %d names, %v; want %d", len(got), err, len(want))
	}
	var re redis.Error
	if _, err := rcs[0].Do(ctx, "SCAN", "x").Result(); !errors.As(err, &re) || err.Error() != "ERR invalid cursor" {
		t.Fatalf("SCAN x: %v", err)
	}
}
