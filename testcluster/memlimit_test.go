package testcluster_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/dboutique/dboutique/node/memlimit"
	"github.com/dboutique/dboutique/testcluster"
)

// The memory limit through a cluster: with a policy that evicts, writing
// far more than the limit succeeds, each node stays under it, and the
// copies of every bucket still agree (evictions are replicated); with
// noeviction, writes are refused with Redis's OOM error while reads and
// deletes go on.

// memLimit is each node's limit in these tests, as the store counts.
const memLimit = 4 << 20

// TestEvictionKeepsCopiesEqual: 3 nodes, replicas 2, allkeys-lru; 20 MB
// of values through every node.
func TestEvictionKeepsCopiesEqual(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithReplicas(2), testcluster.WithMaxMemory(memLimit, memlimit.AllKeysLRU))
	ctx := ctxT(t)
	rcs := redisClients(t, c)
	value := strings.Repeat("v", 1024)
	const writes = 20_000
	for n, rc := range rcs {
		for start := n; start < writes; start += 3 * 500 {
			pipe := rc.Pipeline()
			for i := start; i < min(start+3*500, writes); i += 3 {
				pipe.Set(ctx, fmt.Sprint("evict:", i), value, 0)
			}
			if _, err := pipe.Exec(ctx); err != nil {
				t.Fatalf("SET through %s: %v", c.Name(n), err)
			}
		}
	}
	evicted := uint64(0)
	for i := range c.Len() {
		st := c.Node(i).Stats()
		evicted += st.Memory.EvictedKeys
		if st.Memory.UsedMemory > memLimit {
			t.Errorf("%s uses %d bytes, over its limit %d", c.Name(i), st.Memory.UsedMemory, memLimit)
		}
	}
	if evicted == 0 {
		t.Fatal("nothing was evicted")
	}
	// Every copy dropped the same entries.
	c.WaitReplicated()
	t.Logf("evicted %d of %d keys", evicted, writes)
}

// TestNoEvictionRefusesWrites: with noeviction, a node over its limit
// answers OOM to writes that add memory, still reads, and takes writes
// again once deletes made room.
func TestNoEvictionRefusesWrites(t *testing.T) {
	c := testcluster.New(t, 1, testcluster.WithMaxMemory(memLimit, memlimit.NoEviction))
	ctx := ctxT(t)
	rc := redisClients(t, c)[0]
	value := strings.Repeat("v", 1024)
	var refused error
	n := 0
	for ; n < 20_000 && refused == nil; n++ {
		refused = rc.Set(ctx, fmt.Sprint("full:", n), value, 0).Err()
	}
	if refused == nil || !strings.HasPrefix(refused.Error(), "OOM command not allowed when used memory > 'maxmemory'") {
		t.Fatalf("after %d writes of 1 KiB under a %d-byte limit: %v, want OOM", n, memLimit, refused)
	}
	if v, err := rc.Get(ctx, "full:0").Result(); err != nil || v != value {
		t.Errorf("GET after OOM: %v", err)
	}
	var keys []string
	for i := range n / 2 {
		keys = append(keys, fmt.Sprint("full:", i))
	}
	if _, err := rc.Del(ctx, keys...).Result(); err != nil {
		t.Fatalf("DEL at the limit: %v", err)
	}
	// Tombstones keep their keys, not their values: there is room again.
	if err := rc.Set(ctx, "after", "x", 0).Err(); err != nil && !errors.Is(err, redis.Nil) {
		t.Errorf("SET after deletes made room: %v", err)
	}
}
