package testcluster_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/dboutique/dboutique/ring"
	"github.com/dboutique/dboutique/testcluster"
)

// RESP through a cluster: a go-redis client per node, writes through one
// node and reads through the others, plain keys spread over the nodes,
// and every key still read back once a node is killed.

// redisClients returns a go-redis client of each node's client port,
// closed by t.Cleanup (before the cluster checks for leaked goroutines).
func redisClients(t *testing.T, c *testcluster.Cluster) []*redis.Client {
	t.Helper()
	var rcs []*redis.Client
	for i := range c.Len() {
		rc := redis.NewClient(&redis.Options{
			Addr:         c.Addr(i),
			DialTimeout:  testcluster.WaitTimeout,
			ReadTimeout:  testcluster.WaitTimeout,
			WriteTimeout: testcluster.WaitTimeout,
			PoolSize:     2,
			MaxRetries:   -1, // a failure is the test's to see, not the client's to hide
		})
		t.Cleanup(func() { rc.Close() })
		rcs = append(rcs, rc)
	}
	return rcs
}

// plainKey is the i-th plain key the tests write, and its value.
func plainKey(i int) (string, string) { return "key:" + strconv.Itoa(i), "value-" + strconv.Itoa(i) }

const plainKeys = 1000

// setPlainKeys sets the plain keys, key i through node i%len(rcs), one
// pipeline per node.
func setPlainKeys(t *testing.T, ctx context.Context, rcs []*redis.Client) {
	t.Helper()
	for n, rc := range rcs {
		pipe := rc.Pipeline()
		for i := n; i < plainKeys; i += len(rcs) {
			k, v := plainKey(i)
			pipe.Set(ctx, k, v, 0)
		}
		cmds, err := pipe.Exec(ctx)
		if err != nil {
			t.Fatalf("SET through node %d: %v", n, err)
		}
		for _, cmd := range cmds {
			if cmd.(*redis.StatusCmd).Val() != "OK" {
				t.Fatalf("SET through node %d: %v", n, cmd)
			}
		}
	}
}

// checkPlainKeys reads every plain key not in gone through rc, in one
// pipeline, and checks that the keys in gone are missing.
func checkPlainKeys(t *testing.T, ctx context.Context, rc *redis.Client, via string, gone func(i int) bool) {
	t.Helper()
	pipe := rc.Pipeline()
	gets := make([]*redis.StringCmd, plainKeys)
	for i := range plainKeys {
		k, _ := plainKey(i)
		gets[i] = pipe.Get(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		t.Fatalf("GET through %s: %v", via, err)
	}
	bad := 0
	for i, g := range gets {
		k, v := plainKey(i)
		got, err := g.Result()
		switch {
		case gone(i) && !errors.Is(err, redis.Nil):
			t.Errorf("GET %s through %s = %q, %v; want nil (deleted)", k, via, got, err)
			bad++
		case !gone(i) && (err != nil || got != v):
			t.Errorf("GET %s through %s = %q, %v; want %q", k, via, got, err, v)
			bad++
		}
		if bad > 10 {
			t.Fatalf("giving up after %d wrong keys", bad)
		}
	}
}

// TestRespThroughEveryNode: what is written through one node reads the
// same through every other, counts included.
func TestRespThroughEveryNode(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithReplicas(2))
	ctx := ctxT(t)
	rcs := redisClients(t, c)

	n, err := rcs[0].HSet(ctx, "shopping", "milk", "3", "eggs", "12").Result()
	if err != nil || n != 2 {
		t.Fatalf("HSET through node 0 = %d, %v; want 2", n, err)
	}
	// The counts come from the bucket's primary, wherever the command came in.
	for i, rc := range rcs {
		n, err := rc.HSet(ctx, "shopping", "milk", "3", "bread"+strconv.Itoa(i), "1").Result()
		if err != nil || n != 1 {
			t.Errorf("HSET through node %d = %d, %v; want 1", i, n, err)
		}
	}
	for i, rc := range rcs[1:] {
		via := c.Name(i + 1)
		if v, err := rc.HGet(ctx, "shopping", "milk").Result(); err != nil || v != "3" {
			t.Errorf("HGET through %s = %q, %v", via, v, err)
		}
		all, err := rc.HGetAll(ctx, "shopping").Result()
		want := map[string]string{"milk": "3", "eggs": "12", "bread0": "1", "bread1": "1", "bread2": "1"}
		if err != nil || fmt.Sprint(all) != fmt.Sprint(want) {
			t.Errorf("HGETALL through %s = %v, %v; want %v", via, all, err, want)
		}
		if keys, err := rc.HKeys(ctx, "shopping").Result(); err != nil || strings.Join(keys, ",") != "bread0,bread1,bread2,eggs,milk" {
			t.Errorf("HKEYS through %s = %q, %v", via, keys, err)
		}
		if vals, err := rc.HVals(ctx, "shopping").Result(); err != nil || strings.Join(vals, ",") != "1,1,1,12,3" {
			t.Errorf("HVALS through %s = %q, %v", via, vals, err)
		}
		if n, err := rc.HLen(ctx, "shopping").Result(); err != nil || n != 5 {
			t.Errorf("HLEN through %s = %d, %v", via, n, err)
		}
		if ok, err := rc.HExists(ctx, "shopping", "eggs").Result(); err != nil || !ok {
			t.Errorf("HEXISTS through %s = %v, %v", via, ok, err)
		}
		if _, err := rc.HGet(ctx, "shopping", "ham").Result(); !errors.Is(err, redis.Nil) {
			t.Errorf("HGET of a missing key through %s: %v, want redis.Nil", via, err)
		}
		if _, err := rc.HGet(ctx, "nowhere", "ham").Result(); !errors.Is(err, redis.Nil) {
			t.Errorf("HGET of a missing bucket through %s: %v, want redis.Nil", via, err)
		}
	}
	if n, err := rcs[2].HDel(ctx, "shopping", "eggs", "ham").Result(); err != nil || n != 1 {
		t.Errorf("HDEL through node 2 = %d, %v; want 1", n, err)
	}
	if _, err := rcs[0].HGet(ctx, "shopping", "eggs").Result(); !errors.Is(err, redis.Nil) {
		t.Errorf("HGET of a deleted key through node 0: %v, want redis.Nil", err)
	}

	// Plain keys, set through every node, read through the next.
	setPlainKeys(t, ctx, rcs)
	for i, rc := range rcs {
		checkPlainKeys(t, ctx, rc, c.Name(i), func(int) bool { return false })
	}
	// They are spread: every node holds buckets of plain keys.
	for i := range c.Len() {
		held := 0
		for _, b := range c.Node(i).Store().Buckets() {
			if strings.HasPrefix(b, ring.ReservedPrefix+"kv:") {
				held++
			}
		}
		if held == 0 {
			t.Errorf("%s holds none of the buckets of plain keys", c.Name(i))
		}
	}
	// The text protocol does not list them.
	names, err := c.Client(1).Buckets(ctx)
	if err != nil || strings.Join(names, ",") != "shopping" {
		t.Errorf("BUCKETS through the text protocol = %q, %v; want [shopping]", names, err)
	}

	// DEL and EXISTS count plain keys and buckets, through any node.
	var first100 []string
	for i := range 100 {
		k, _ := plainKey(i)
		first100 = append(first100, k)
	}
	if n, err := rcs[1].Exists(ctx, append(first100, "shopping", "nowhere")...).Result(); err != nil || n != 101 {
		t.Errorf("EXISTS of 100 keys and a bucket through node 1 = %d, %v; want 101", n, err)
	}
	if n, err := rcs[1].Del(ctx, first100...).Result(); err != nil || n != 100 {
		t.Errorf("DEL of 100 keys through node 1 = %d, %v; want 100", n, err)
	}
	if n, err := rcs[2].Del(ctx, "shopping", "key:0").Result(); err != nil || n != 1 {
		t.Errorf("DEL of a bucket and a deleted key through node 2 = %d, %v; want 1", n, err)
	}
	if n, err := rcs[0].Exists(ctx, "shopping", "key:0", "key:100").Result(); err != nil || n != 1 {
		t.Errorf("EXISTS after DEL through node 0 = %d, %v; want 1", n, err)
	}
	for i, rc := range rcs {
		checkPlainKeys(t, ctx, rc, c.Name(i), func(i int) bool { return i < 100 })
	}
}

// TestRespSurvivesKill: with two copies of every bucket, killing one node
// loses nothing: once the others have noticed, every plain key and every
// hash key reads back through each survivor.
func TestRespSurvivesKill(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithReplicas(2))
	ctx := ctxT(t)
	rcs := redisClients(t, c)
	setPlainKeys(t, ctx, rcs)
	const hashes = 30
	for h := range hashes {
		b := "hash" + strconv.Itoa(h)
		if n, err := rcs[h%3].HSet(ctx, b, "a", b, "b", b+"!").Result(); err != nil || n != 2 {
			t.Fatalf("HSET %s = %d, %v", b, n, err)
		}
	}

	const victim = 2
	c.Kill(victim)
	rcs[victim].Close()
	c.WaitConverged()
	for i := range victim {
		via := c.Name(i)
		checkPlainKeys(t, ctx, rcs[i], via, func(int) bool { return false })
		for h := range hashes {
			b := "hash" + strconv.Itoa(h)
			all, err := rcs[i].HGetAll(ctx, b).Result()
			if err != nil || all["a"] != b || all["b"] != b+"!" || len(all) != 2 {
				t.Errorf("HGETALL %s through %s = %v, %v", b, via, all, err)
			}
		}
	}
	// Writes go on, counted as before.
	if n, err := rcs[0].HSet(ctx, "hash0", "a", "new", "c", "new").Result(); err != nil || n != 1 {
		t.Errorf("HSET after the kill = %d, %v; want 1", n, err)
	}
	if v, err := rcs[1].HGet(ctx, "hash0", "c").Result(); err != nil || v != "new" {
		t.Errorf("HGET after the kill = %q, %v", v, err)
	}
}
