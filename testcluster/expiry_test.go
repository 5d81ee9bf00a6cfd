package testcluster_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dboutique/dboutique/testcluster"
)

// Expiry through a cluster: a key set with a time to live reads the same
// TTL through every node, is gone through every node once it expires,
// also when its primary was killed meanwhile, and does not come back when
// that node returns.

// expiring is how many keys of each kind the tests set with a TTL.
const expiring = 200

// ttlKey is the i-th key that expires.
func ttlKey(i int) string { return fmt.Sprint("ttl:", i) }

// setExpiring sets the expiring keys and, as a control, keys that do not
// expire, through rc, and a bucket with one expiring field.
func setExpiring(t *testing.T, ctx context.Context, rc *redis.Client, ttl time.Duration) {
	t.Helper()
	pipe := rc.Pipeline()
	for i := range expiring {
		pipe.Set(ctx, ttlKey(i), "v", ttl)
		pipe.Set(ctx, fmt.Sprint("keep:", i), "v", 0)
	}
	pipe.HSet(ctx, "fields", "short", "1", "long", "2")
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatalf("SET EX: %v", err)
	}
	got, err := rc.HExpire(ctx, "fields", ttl, "short", "missing").Result()
	if err != nil || fmt.Sprint(got) != "[1 -2]" {
		t.Fatalf("HEXPIRE = %v, %v; want [1 -2]", got, err)
	}
}

// expiredEverywhere reports an error unless, through rc, every expiring key
// is missing and every other key is there.
func expiredEverywhere(ctx context.Context, rc *redis.Client) error {
	pipe := rc.Pipeline()
	gone := make([]*redis.StringCmd, expiring)
	kept := make([]*redis.StringCmd, expiring)
	for i := range expiring {
		gone[i] = pipe.Get(ctx, ttlKey(i))
		kept[i] = pipe.Get(ctx, fmt.Sprint("keep:", i))
	}
	fields := pipe.HGetAll(ctx, "fields")
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	for i := range expiring {
		if v, err := gone[i].Result(); !errors.Is(err, redis.Nil) {
			return fmt.Errorf("GET %s = %q, %v after it expired", ttlKey(i), v, err)
		}
		if _, err := kept[i].Result(); err != nil {
			return fmt.Errorf("GET keep:%d: %v", i, err)
		}
	}
	if f := fields.Val(); len(f) != 1 || f["long"] != "2" {
		return fmt.Errorf("HGETALL fields = %v, want only long", f)
	}
	return nil
}

// TestExpiryThroughEveryNode: SET s v EX 2, then TTL through every node is
// 2 or 1, and GET is nil through every node once it expired; the entries
// are deleted on every copy, not only hidden.
func TestExpiryThroughEveryNode(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithReplicas(2))
	ctx := ctxT(t)
	rcs := redisClients(t, c)
	setExpiring(t, ctx, rcs[0], 2*time.Second)
	for i, rc := range rcs {
		for k := range 5 {
			if ttl, err := rc.TTL(ctx, ttlKey(k)).Result(); err != nil || ttl < time.Second || ttl > 2*time.Second {
				t.Errorf("TTL %s through %s = %v, %v; want 1s or 2s", ttlKey(k), c.Name(i), ttl, err)
			}
		}
		if ttl, err := rc.TTL(ctx, "keep:0").Result(); err != nil || ttl != -1 {
			t.Errorf("TTL of a key without expiry through %s = %v, %v; want -1", c.Name(i), ttl, err)
		}
		if ttls, err := rc.HTTL(ctx, "fields", "short", "long", "none").Result(); err != nil || len(ttls) != 3 || ttls[0] < 1 || ttls[0] > 2 || ttls[1] != -1 || ttls[2] != -2 {
			t.Errorf("HTTL through %s = %v, %v", c.Name(i), ttls, err)
		}
	}
	for i, rc := range rcs {
		c.WaitFor("expired keys gone through "+c.Name(i), func() error { return expiredEverywhere(ctx, rc) })
	}
	// Active expiry deletes them on every copy: the memory comes back.
	c.WaitFor("expired entries deleted on every copy", func() error {
		for i := range c.Len() {
			if st := c.Node(i).Stats(); st.VolatileKeys != 0 {
				return fmt.Errorf("%s still holds %d entries with an expiry", c.Name(i), st.VolatileKeys)
			}
		}
		return nil
	})
	c.WaitReplicated()
}

// TestExpirySurvivesPrimaryKill: the primary of some of the expiring keys
// is killed before they expire; the others still count the same TTL and
// find them gone on time, and when the killed node comes back (empty, as
// after a crash) they stay gone.
func TestExpirySurvivesPrimaryKill(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithReplicas(2))
	ctx := ctxT(t)
	rcs := redisClients(t, c)
	setExpiring(t, ctx, rcs[0], 8*time.Second)
	c.WaitReplicated()
	c.WaitSettled()
	const victim = 2
	c.Kill(victim)
	rcs[victim].Close()
	c.WaitConverged()
	for i := range victim {
		if ttl, err := rcs[i].TTL(ctx, ttlKey(0)).Result(); err != nil || ttl > 8*time.Second || ttl < 0 {
			t.Errorf("TTL through %s after the kill = %v, %v", c.Name(i), ttl, err)
		}
	}
	for i := range victim {
		c.WaitFor("expired keys gone through "+c.Name(i), func() error { return expiredEverywhere(ctx, rcs[i]) })
	}
	c.Restart(victim)
	c.WaitConverged()
	c.WaitReplicated()
	back := redisClients(t, c)
	for i := range c.Len() {
		if err := expiredEverywhere(ctx, back[i]); err != nil {
			t.Errorf("through %s after the restart: %v", c.Name(i), err)
		}
	}
}

// TestExpiryCarriedByHandOff: a node that leaves hands its copies off
// with their expiries, and a node that joins pulls them: afterwards every
// key still has its time to live, through every node, and still expires.
func TestExpiryCarriedByHandOff(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithReplicas(2))
	ctx := ctxT(t)
	rcs := redisClients(t, c)
	setExpiring(t, ctx, rcs[0], 8*time.Second)
	c.WaitReplicated()
	c.Leave(2)
	rcs[2].Close()
	added := c.Add()
	c.WaitConverged()
	c.WaitReplicated()
	for _, i := range []int{0, 1, added} {
		rc := redisClients(t, c)[i]
		for k := range expiring {
			if ttl, err := rc.PTTL(ctx, ttlKey(k)).Result(); err != nil || ttl <= 0 || ttl > 8*time.Second {
				t.Fatalf("TTL %s through %s after the hand-off = %v, %v; want its expiry kept", ttlKey(k), c.Name(i), ttl, err)
			}
		}
	}
	for _, i := range []int{0, 1, added} {
		rc := redisClients(t, c)[i]
		c.WaitFor("expired keys gone through "+c.Name(i), func() error { return expiredEverywhere(ctx, rc) })
	}
}
