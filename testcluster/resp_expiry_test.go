package testcluster_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dboutique/dboutique/ring"
	"github.com/dboutique/dboutique/testcluster"
)

// The RESP commands of expiry and the multi-key ones through a 3-node
// cluster with two copies of every bucket, with go-redis, one test per
// family of commands. Each command is sent through a different node from
// the one before, so that its answer comes from the key's primary wherever
// the command came in. Times that must pass are short (1 or 2 s) and
// waited for with deadlines (Cluster.WaitFor), never slept.

// newRespCluster starts a 3-node cluster with two copies of every bucket
// and returns it with a context and a go-redis client of each node.
func newRespCluster(t *testing.T) (*testcluster.Cluster, context.Context, []*redis.Client) {
	t.Helper()
	c := testcluster.New(t, 3, testcluster.WithReplicas(2))
	return c, ctxT(t), redisClients(t, c)
}

// within reports an error unless lo <= d <= hi.
func within(what string, d time.Duration, err error, lo, hi time.Duration) error {
	if err != nil || d < lo || d > hi {
		return fmt.Errorf("%s = %v, %v; want %v to %v", what, d, err, lo, hi)
	}
	return nil
}

// check fails the test, naming the node, when err is not nil.
func check(t *testing.T, c *testcluster.Cluster, i int, err error) {
	t.Helper()
	if err != nil {
		t.Errorf("through %s: %v", c.Name(i), err)
	}
}

// gone reports an error unless, through rc, none of names exists as a
// plain key or a bucket.
func gone(ctx context.Context, rc *redis.Client, names ...string) error {
	if n, err := rc.Exists(ctx, names...).Result(); err != nil || n != 0 {
		return fmt.Errorf("EXISTS %q = %d, %v; want 0", names, n, err)
	}
	return nil
}

// TestRespSetOptions: SET with EX, PX, EXAT, PXAT, NX, XX, GET and
// KEEPTTL, SETEX, PSETEX, SETNX and GETEX.
func TestRespSetOptions(t *testing.T) {
	c, ctx, rcs := newRespCluster(t)

	// SET s v EX 2: TTL 2 or 1 through every node.
	if err := rcs[0].Set(ctx, "s", "v", 2*time.Second).Err(); err != nil {
		t.Fatalf("SET s v EX 2: %v", err)
	}
	for i, rc := range rcs {
		ttl, err := rc.TTL(ctx, "s").Result()
		check(t, c, i, within("TTL s", ttl, err, time.Second, 2*time.Second))
	}

	// NX, XX, GET and KEEPTTL.
	if ok, err := rcs[1].SetNX(ctx, "s", "w", 0).Result(); err != nil || ok {
		t.Errorf("SETNX of a key that exists = %v, %v; want false", ok, err)
	}
	if old, err := rcs[2].SetArgs(ctx, "s", "w", redis.SetArgs{Mode: "XX", Get: true, KeepTTL: true}).Result(); err != nil || old != "v" {
		t.Errorf("SET s w XX GET KEEPTTL = %q, %v; want v", old, err)
	}
	if v, err := rcs[0].Get(ctx, "s").Result(); err != nil || v != "w" {
		t.Errorf("GET s = %q, %v; want w", v, err)
	}
	ttl, err := rcs[1].TTL(ctx, "s").Result()
	check(t, c, 1, within("TTL s after KEEPTTL", ttl, err, 0, 2*time.Second))
	if err := rcs[2].SetArgs(ctx, "n", "x", redis.SetArgs{Mode: "XX"}).Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("SET n x XX of a missing key: %v, want nil", err)
	}
	if err := rcs[0].SetArgs(ctx, "n", "x", redis.SetArgs{Mode: "NX", Get: true}).Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("SET n x NX GET of a missing key: %v, want nil", err)
	}
	if err := rcs[1].SetArgs(ctx, "n", "y", redis.SetArgs{Mode: "NX"}).Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("SET n y NX of a key that exists: %v, want nil", err)
	}
	if v, err := rcs[2].Get(ctx, "n").Result(); err != nil || v != "x" {
		t.Errorf("GET n = %q, %v; want x", v, err)
	}

	// EXAT and PXAT: in an hour, and in the past.
	if err := rcs[2].SetArgs(ctx, "n", "y", redis.SetArgs{ExpireAt: time.Now().Add(time.Hour)}).Err(); err != nil {
		t.Errorf("SET n y EXAT: %v", err)
	}
	for i, rc := range rcs {
		ttl, err := rc.TTL(ctx, "n").Result()
		check(t, c, i, within("TTL n", ttl, err, time.Hour-5*time.Second, time.Hour))
	}
	if err := rcs[0].SetArgs(ctx, "n", "z", redis.SetArgs{ExpireAt: time.UnixMilli(1500)}).Err(); err != nil {
		t.Errorf("SET n z PXAT 1500: %v", err)
	}
	for i, rc := range rcs {
		check(t, c, i, gone(ctx, rc, "n"))
	}

	// SETEX, PSETEX, SETNX.
	if err := rcs[1].SetEx(ctx, "e", "v", 100*time.Second).Err(); err != nil {
		t.Errorf("SETEX e 100 v: %v", err)
	}
	ttl, err = rcs[2].TTL(ctx, "e").Result()
	check(t, c, 2, within("TTL e", ttl, err, 95*time.Second, 100*time.Second))
	if err := rcs[2].Do(ctx, "PSETEX", "p", 1500, "v").Err(); err != nil {
		t.Errorf("PSETEX p 1500 v: %v", err)
	}
	ttl, err = rcs[0].PTTL(ctx, "p").Result()
	check(t, c, 0, within("PTTL p", ttl, err, time.Millisecond, 1500*time.Millisecond))
	if ok, err := rcs[0].SetNX(ctx, "nx", "1", 0).Result(); err != nil || !ok {
		t.Errorf("SETNX nx 1 = %v, %v; want true", ok, err)
	}
	if ok, err := rcs[1].SetNX(ctx, "nx", "2", 0).Result(); err != nil || ok {
		t.Errorf("SETNX nx 2 = %v, %v; want false", ok, err)
	}
	if v, err := rcs[2].Get(ctx, "nx").Result(); err != nil || v != "1" {
		t.Errorf("GET nx = %q, %v; want 1", v, err)
	}

	// GETEX: PERSIST, EX, PX, and EXAT in the past.
	if v, err := rcs[1].GetEx(ctx, "e", 0).Result(); err != nil || v != "v" {
		t.Errorf("GETEX e PERSIST = %q, %v", v, err)
	}
	if ttl, err := rcs[2].TTL(ctx, "e").Result(); err != nil || ttl != -1 {
		t.Errorf("TTL e after PERSIST = %v, %v; want -1", ttl, err)
	}
	if v, err := rcs[2].GetEx(ctx, "e", 50*time.Second).Result(); err != nil || v != "v" {
		t.Errorf("GETEX e EX 50 = %q, %v", v, err)
	}
	ttl, err = rcs[0].TTL(ctx, "e").Result()
	check(t, c, 0, within("TTL e", ttl, err, 45*time.Second, 50*time.Second))
	if v, err := rcs[0].GetEx(ctx, "e", 1500*time.Millisecond).Result(); err != nil || v != "v" {
		t.Errorf("GETEX e PX 1500 = %q, %v", v, err)
	}
	ttl, err = rcs[1].PTTL(ctx, "e").Result()
	check(t, c, 1, within("PTTL e", ttl, err, time.Millisecond, 1500*time.Millisecond))
	if err := rcs[1].Do(ctx, "GETEX", "nope", "EX", "10").Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("GETEX of a missing key: %v, want nil", err)
	}
	if v, err := rcs[2].Do(ctx, "GETEX", "nx", "EXAT", "1").Text(); err != nil || v != "1" {
		t.Errorf("GETEX nx EXAT 1 = %q, %v; want 1", v, err)
	}
	for i, rc := range rcs {
		check(t, c, i, gone(ctx, rc, "nx"))
	}

	// Wrong arguments, refused wherever they come in.
	for i, rc := range rcs {
		if err := rc.Do(ctx, "SET", "s", "v", "EX", "0").Err(); err == nil || err.Error() != "ERR invalid expire time in 'set' command" {
			t.Errorf("SET s v EX 0 through %s: %v", c.Name(i), err)
		}
		if err := rc.Do(ctx, "GETEX", "s", "PERSIST", "EX", "1").Err(); err == nil || err.Error() != "ERR syntax error" {
			t.Errorf("GETEX s PERSIST EX 1 through %s: %v", c.Name(i), err)
		}
	}

	// s, p and e expire, on every node.
	for i, rc := range rcs {
		c.WaitFor("s, p and e to expire through "+c.Name(i), func() error { return gone(ctx, rc, "s", "p", "e") })
	}
}

// TestRespExpireFamily: EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT with NX, XX,
// GT and LT, TTL, PTTL and PERSIST, on plain keys, on buckets (hashes),
// and on a name that is both.
func TestRespExpireFamily(t *testing.T) {
	c, ctx, rcs := newRespCluster(t)
	if err := rcs[0].Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if ok, err := rcs[1].Expire(ctx, "k", 100*time.Second).Result(); err != nil || !ok {
		t.Errorf("EXPIRE k 100 = %v, %v", ok, err)
	}
	for i, rc := range rcs {
		ttl, err := rc.TTL(ctx, "k").Result()
		check(t, c, i, within("TTL k", ttl, err, 95*time.Second, 100*time.Second))
	}
	for _, st := range []struct {
		what string
		cmd  *redis.BoolCmd
		want bool
	}{
		{"EXPIRE k 10 NX", rcs[2].ExpireNX(ctx, "k", 10*time.Second), false},
		{"EXPIRE k 200 XX", rcs[0].ExpireXX(ctx, "k", 200*time.Second), true},
		{"EXPIRE k 150 GT", rcs[1].ExpireGT(ctx, "k", 150*time.Second), false},
		{"EXPIRE k 50 LT", rcs[2].ExpireLT(ctx, "k", 50*time.Second), true},
	} {
		if ok, err := st.cmd.Result(); err != nil || ok != st.want {
			t.Errorf("%s = %v, %v; want %v", st.what, ok, err, st.want)
		}
	}
	ttl, err := rcs[0].TTL(ctx, "k").Result()
	check(t, c, 0, within("TTL k", ttl, err, 45*time.Second, 50*time.Second))
	if ok, err := rcs[0].PExpire(ctx, "k", 1500*time.Millisecond).Result(); err != nil || !ok {
		t.Errorf("PEXPIRE k 1500 = %v, %v", ok, err)
	}
	ttl, err = rcs[1].PTTL(ctx, "k").Result()
	check(t, c, 1, within("PTTL k", ttl, err, time.Millisecond, 1500*time.Millisecond))
	if ok, err := rcs[2].ExpireAt(ctx, "k", time.Now().Add(time.Hour)).Result(); err != nil || !ok {
		t.Errorf("EXPIREAT k = %v, %v", ok, err)
	}
	ttl, err = rcs[0].TTL(ctx, "k").Result()
	check(t, c, 0, within("TTL k", ttl, err, time.Hour-5*time.Second, time.Hour))
	if ok, err := rcs[0].PExpireAt(ctx, "k", time.Now().Add(30*time.Second)).Result(); err != nil || !ok {
		t.Errorf("PEXPIREAT k = %v, %v", ok, err)
	}
	ttl, err = rcs[1].PTTL(ctx, "k").Result()
	check(t, c, 1, within("PTTL k", ttl, err, 25*time.Second, 30*time.Second))
	if ok, err := rcs[1].Persist(ctx, "k").Result(); err != nil || !ok {
		t.Errorf("PERSIST k = %v, %v; want true", ok, err)
	}
	if ok, err := rcs[2].Persist(ctx, "k").Result(); err != nil || ok {
		t.Errorf("PERSIST k again = %v, %v; want false", ok, err)
	}
	for i, rc := range rcs {
		if ttl, err := rc.TTL(ctx, "k").Result(); err != nil || ttl != -1 {
			t.Errorf("TTL k through %s = %v, %v; want -1", c.Name(i), ttl, err)
		}
		if ttl, err := rc.PTTL(ctx, "nope").Result(); err != nil || ttl != -2 {
			t.Errorf("PTTL of a missing key through %s = %v, %v; want -2", c.Name(i), ttl, err)
		}
	}
	if ok, err := rcs[0].Expire(ctx, "nope", 10*time.Second).Result(); err != nil || ok {
		t.Errorf("EXPIRE of a missing key = %v, %v; want false", ok, err)
	}
	if err := rcs[1].Do(ctx, "EXPIRE", "k", "10", "NX", "XX").Err(); err == nil ||
		err.Error() != "ERR NX and XX, GT or LT options at the same time are not compatible" {
		t.Errorf("EXPIRE k 10 NX XX: %v", err)
	}

	// A time not in the future deletes, everywhere.
	for _, k := range []string{"past", "negative"} {
		if err := rcs[2].Set(ctx, k, "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := rcs[0].ExpireAt(ctx, "past", time.Unix(1, 0)).Result(); err != nil || !ok {
		t.Errorf("EXPIREAT past 1 = %v, %v", ok, err)
	}
	if n, err := rcs[1].Do(ctx, "EXPIRE", "negative", "-1").Int(); err != nil || n != 1 {
		t.Errorf("EXPIRE negative -1 = %d, %v", n, err)
	}
	for i, rc := range rcs {
		check(t, c, i, gone(ctx, rc, "past", "negative"))
	}

	// A bucket.
	if err := rcs[0].HSet(ctx, "h", "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	if ok, err := rcs[1].Expire(ctx, "h", 100*time.Second).Result(); err != nil || !ok {
		t.Errorf("EXPIRE h 100 = %v, %v", ok, err)
	}
	for i, rc := range rcs {
		ttl, err := rc.TTL(ctx, "h").Result()
		check(t, c, i, within("TTL h", ttl, err, 95*time.Second, 100*time.Second))
	}
	if ok, err := rcs[2].Persist(ctx, "h").Result(); err != nil || !ok {
		t.Errorf("PERSIST h = %v, %v", ok, err)
	}
	if ttl, err := rcs[0].TTL(ctx, "h").Result(); err != nil || ttl != -1 {
		t.Errorf("TTL h after PERSIST = %v, %v; want -1", ttl, err)
	}

	// A name that is a plain key and a bucket: TTL is the plain key's
	// while there is one.
	if err := rcs[0].Set(ctx, "both", "plain", 100*time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rcs[1].HSet(ctx, "both", "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	if ok, err := rcs[2].ExpireNX(ctx, "both", 2*time.Second).Result(); err != nil || !ok {
		t.Errorf("EXPIRE both 2 NX = %v, %v; want true (the bucket's)", ok, err)
	}
	ttl, err = rcs[0].TTL(ctx, "both").Result()
	check(t, c, 0, within("TTL both", ttl, err, 95*time.Second, 100*time.Second))
	if err := rcs[1].Do(ctx, "GETEX", "both", "PXAT", "1").Err(); err != nil {
		t.Errorf("GETEX both PXAT 1: %v", err)
	}
	ttl, err = rcs[2].TTL(ctx, "both").Result()
	if err != nil || ttl > 2*time.Second || ttl == -1 {
		t.Errorf("TTL both, the bucket's = %v, %v; want 2s or less", ttl, err)
	}

	// Short expiries pass on every node: a plain key, a bucket, and both.
	if ok, err := rcs[0].PExpire(ctx, "k", 1500*time.Millisecond).Result(); err != nil || !ok {
		t.Errorf("PEXPIRE k 1500 = %v, %v", ok, err)
	}
	if ok, err := rcs[1].Expire(ctx, "h", time.Second).Result(); err != nil || !ok {
		t.Errorf("EXPIRE h 1 = %v, %v", ok, err)
	}
	for i, rc := range rcs {
		c.WaitFor("k, h and both to expire through "+c.Name(i), func() error {
			if _, err := rc.Get(ctx, "k").Result(); !errors.Is(err, redis.Nil) {
				return fmt.Errorf("GET k: %v", err)
			}
			if all, err := rc.HGetAll(ctx, "h").Result(); err != nil || len(all) != 0 {
				return fmt.Errorf("HGETALL h = %v, %v", all, err)
			}
			return gone(ctx, rc, "k", "h", "both")
		})
	}
}

// TestRespHExpire: HEXPIRE, HPEXPIRE, HEXPIREAT, HPEXPIREAT with NX, XX, GT
// and LT, HTTL, HPTTL and HPERSIST.
func TestRespHExpire(t *testing.T) {
	c, ctx, rcs := newRespCluster(t)
	if n, err := rcs[0].HSet(ctx, "h", "a", "1", "b", "2", "c", "3", "d", "4").Result(); err != nil || n != 4 {
		t.Fatalf("HSET = %d, %v", n, err)
	}
	ints := func(cmd *redis.IntSliceCmd) string {
		v, err := cmd.Result()
		if err != nil {
			return err.Error()
		}
		return fmt.Sprint(v)
	}
	if got := ints(rcs[1].HExpire(ctx, "h", 100*time.Second, "a", "nope")); got != "[1 -2]" {
		t.Errorf("HEXPIRE h 100 FIELDS 2 a nope = %s, want [1 -2]", got)
	}
	for i, rc := range rcs {
		ttls, err := rc.HTTL(ctx, "h", "a", "b", "nope").Result()
		if err != nil || len(ttls) != 3 || ttls[0] < 95 || ttls[0] > 100 || ttls[1] != -1 || ttls[2] != -2 {
			t.Errorf("HTTL h a b nope through %s = %v, %v; want [100 -1 -2]", c.Name(i), ttls, err)
		}
		ms, err := rc.HPTTL(ctx, "h", "a").Result()
		if err != nil || len(ms) != 1 || ms[0] < 95000 || ms[0] > 100000 {
			t.Errorf("HPTTL h a through %s = %v, %v", c.Name(i), ms, err)
		}
	}
	for _, st := range []struct {
		what string
		cmd  *redis.IntSliceCmd
		want string
	}{
		{"HEXPIRE h 50 NX FIELDS 2 a b", rcs[2].HExpireWithArgs(ctx, "h", 50*time.Second, redis.HExpireArgs{NX: true}, "a", "b"), "[0 1]"},
		{"HEXPIRE h 60 XX FIELDS 2 a c", rcs[0].HExpireWithArgs(ctx, "h", 60*time.Second, redis.HExpireArgs{XX: true}, "a", "c"), "[1 0]"},
		{"HEXPIRE h 55 GT FIELDS 2 a b", rcs[1].HExpireWithArgs(ctx, "h", 55*time.Second, redis.HExpireArgs{GT: true}, "a", "b"), "[0 1]"},
		{"HPEXPIRE h 52000 LT FIELDS 3 a b c", rcs[2].HPExpireWithArgs(ctx, "h", 52*time.Second, redis.HExpireArgs{LT: true}, "a", "b", "c"), "[1 1 1]"},
		{"HEXPIREAT h in an hour FIELDS 1 c", rcs[0].HExpireAt(ctx, "h", time.Now().Add(time.Hour), "c"), "[1]"},
		{"HPERSIST h FIELDS 3 a nope d", rcs[1].HPersist(ctx, "h", "a", "nope", "d"), "[1 -2 -1]"},
		{"HEXPIRE nowhere 10 FIELDS 1 a", rcs[2].HExpire(ctx, "nowhere", 10*time.Second, "a"), "[-2]"},
		{"HTTL nowhere FIELDS 1 a", rcs[0].HTTL(ctx, "nowhere", "a"), "[-2]"},
		{"HPERSIST nowhere FIELDS 1 a", rcs[1].HPersist(ctx, "nowhere", "a"), "[-2]"},
		{"HPEXPIREAT h 1 FIELDS 2 d nope", rcs[2].HPExpireAt(ctx, "h", time.UnixMilli(1), "d", "nope"), "[2 -2]"},
	} {
		if got := ints(st.cmd); got != st.want {
			t.Errorf("%s = %s, want %s", st.what, got, st.want)
		}
	}
	for i, rc := range rcs {
		ttls, err := rc.HTTL(ctx, "h", "a", "b", "c", "d").Result()
		if err != nil || len(ttls) != 4 || ttls[0] != -1 || ttls[1] < 47 || ttls[1] > 52 || ttls[2] < 3595 || ttls[2] > 3600 || ttls[3] != -2 {
			t.Errorf("HTTL h a b c d through %s = %v, %v; want [-1 52 3600 -2]", c.Name(i), ttls, err)
		}
		if _, err := rc.HGet(ctx, "h", "d").Result(); !errors.Is(err, redis.Nil) {
			t.Errorf("HGET h d through %s: %v, want nil (expired)", c.Name(i), err)
		}
	}
	if err := rcs[0].Do(ctx, "HEXPIRE", "h", "-1", "FIELDS", "1", "a").Err(); err == nil || err.Error() != "ERR invalid expire time, must be >= 0" {
		t.Errorf("HEXPIRE h -1 FIELDS 1 a: %v", err)
	}

	// HEXPIRE h 1 FIELDS 1 a: a expires on every node, the others stay.
	if got := ints(rcs[1].HExpire(ctx, "h", time.Second, "a")); got != "[1]" {
		t.Errorf("HEXPIRE h 1 FIELDS 1 a = %s, want [1]", got)
	}
	if got := ints(rcs[2].HPExpire(ctx, "h", 1500*time.Millisecond, "b")); got != "[1]" {
		t.Errorf("HPEXPIRE h 1500 FIELDS 1 b = %s, want [1]", got)
	}
	for i, rc := range rcs {
		c.WaitFor("a and b of h to expire through "+c.Name(i), func() error {
			all, err := rc.HGetAll(ctx, "h").Result()
			if err != nil || len(all) != 1 || all["c"] != "3" {
				return fmt.Errorf("HGETALL h = %v, %v; want only c", all, err)
			}
			return nil
		})
	}
}

// plainBucketOf returns the bucket that holds the plain key k, found in
// the nodes' stores (the name comes from a hash of the key, textproto's).
func plainBucketOf(t *testing.T, c *testcluster.Cluster, k string) string {
	t.Helper()
	for i := range c.Len() {
		st := c.Node(i).Store()
		for _, b := range st.Buckets() {
			if strings.HasPrefix(b, ring.ReservedPrefix+"kv:") && st.Live(b, k) {
				return b
			}
		}
	}
	t.Fatalf("no node holds the plain key %q", k)
	return ""
}

// TestRespMGetAcrossNodes: MGET of keys whose primaries are three
// different nodes answers in order through every node; MSET through one
// node, then MGET through another.
func TestRespMGetAcrossNodes(t *testing.T) {
	c, ctx, rcs := newRespCluster(t)

	// Keys until three of them have three different primaries.
	byPrimary := map[string]string{} // primary's name -> key
	for i := 0; len(byPrimary) < 3; i++ {
		if i == 200 {
			t.Fatalf("200 keys have primaries on only %d nodes: %v", len(byPrimary), byPrimary)
		}
		k := "mget:" + strconv.Itoa(i)
		if err := rcs[i%3].Set(ctx, k, "value of "+k, 0).Err(); err != nil {
			t.Fatal(err)
		}
		owners, err := c.Node(0).Owners(plainBucketOf(t, c, k))
		if err != nil || len(owners) != 2 {
			t.Fatalf("owners of %s's bucket = %v, %v", k, owners, err)
		}
		if _, ok := byPrimary[owners[0].Name]; !ok {
			byPrimary[owners[0].Name] = k
		}
	}
	var keys []string
	for i := range c.Len() {
		k, ok := byPrimary[c.Name(i)]
		if !ok {
			t.Fatalf("no key has %s as its primary: %v", c.Name(i), byPrimary)
		}
		keys = append(keys, k)
	}
	t.Logf("primaries: %v", byPrimary)

	// In order, with a missing key between, through every node, both ways.
	ask := []string{keys[0], "missing", keys[1], keys[2]}
	reversed := slices.Clone(ask)
	slices.Reverse(reversed)
	for i, rc := range rcs {
		for _, order := range [][]string{ask, reversed} {
			vals, err := rc.MGet(ctx, order...).Result()
			if err != nil || len(vals) != len(order) {
				t.Fatalf("MGET %q through %s = %v, %v", order, c.Name(i), vals, err)
			}
			for j, k := range order {
				want := any("value of " + k)
				if k == "missing" {
					want = nil
				}
				if vals[j] != want {
					t.Errorf("MGET %q through %s: [%d] = %v, want %v", order, c.Name(i), j, vals[j], want)
				}
			}
		}
	}

	// MSET through one node, MGET through the next.
	for n := range c.Len() {
		var pairs []any
		var names []string
		for j, k := range append(keys, "mset:a:"+strconv.Itoa(n), "mset:b:"+strconv.Itoa(n)) {
			pairs = append(pairs, k, fmt.Sprint("set through ", c.Name(n), " #", j))
			names = append(names, k)
		}
		if err := rcs[n].MSet(ctx, pairs...).Err(); err != nil {
			t.Fatalf("MSET through %s: %v", c.Name(n), err)
		}
		next := (n + 1) % c.Len()
		vals, err := rcs[next].MGet(ctx, names...).Result()
		if err != nil || len(vals) != len(names) {
			t.Fatalf("MGET through %s = %v, %v", c.Name(next), vals, err)
		}
		for j := range names {
			if want := pairs[2*j+1]; vals[j] != want {
				t.Errorf("MGET through %s after MSET through %s: %s = %v, want %v", c.Name(next), c.Name(n), names[j], vals[j], want)
			}
		}
	}
}

// TestRespManyKeys: DEL, UNLINK, EXISTS and TOUCH with hundreds of names,
// spread over every node, some of them both a plain key and a bucket.
func TestRespManyKeys(t *testing.T) {
	c, ctx, rcs := newRespCluster(t)
	const n, buckets = 300, 10
	names := make([]string, n)
	var pairs []any
	for i := range names {
		names[i] = "many:" + strconv.Itoa(i)
		pairs = append(pairs, names[i], i)
	}
	if err := rcs[0].MSet(ctx, pairs...).Err(); err != nil {
		t.Fatalf("MSET of %d keys: %v", n, err)
	}
	for i := range buckets { // names[0:10] are buckets too
		if err := rcs[i%3].HSet(ctx, names[i], "f", "v").Err(); err != nil {
			t.Fatal(err)
		}
	}
	missing := []string{"none:1", "none:2"}
	all := append(slices.Clone(names), missing...)
	if got, err := rcs[1].Exists(ctx, all...).Result(); err != nil || got != n+buckets {
		t.Errorf("EXISTS of %d names = %d, %v; want %d", len(all), got, err, n+buckets)
	}
	if got, err := rcs[2].Touch(ctx, all...).Result(); err != nil || got != n+buckets {
		t.Errorf("TOUCH of %d names = %d, %v; want %d", len(all), got, err, n+buckets)
	}
	// A name given twice counts twice.
	if got, err := rcs[0].Touch(ctx, names[0], names[0], names[n-1], missing[0]).Result(); err != nil || got != 5 {
		t.Errorf("TOUCH with a name twice = %d, %v; want 5", got, err)
	}
	// UNLINK the first half through one node, DEL from the middle through
	// another: each name counts once, where it still existed.
	if got, err := rcs[0].Unlink(ctx, append(slices.Clone(names[:n/2]), missing...)...).Result(); err != nil || got != n/2+buckets {
		t.Errorf("UNLINK of %d names = %d, %v; want %d", n/2+2, got, err, n/2+buckets)
	}
	if got, err := rcs[1].Del(ctx, names[n/4:]...).Result(); err != nil || got != n/2 {
		t.Errorf("DEL of %d names = %d, %v; want %d", n-n/4, got, err, n/2)
	}
	for i, rc := range rcs {
		if got, err := rc.Exists(ctx, all...).Result(); err != nil || got != 0 {
			t.Errorf("EXISTS after DEL through %s = %d, %v; want 0", c.Name(i), got, err)
		}
		vals, err := rc.MGet(ctx, names[0], names[n-1]).Result()
		if err != nil || vals[0] != nil || vals[1] != nil {
			t.Errorf("MGET after DEL through %s = %v, %v", c.Name(i), vals, err)
		}
	}
}
