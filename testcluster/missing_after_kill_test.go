package testcluster_test

import (
	"fmt"
	"testing"

	"github.com/dboutique/dboutique/testcluster"
)

// TestNeverWrittenNamesAfterKill: once the copies have settled, a crash
// leaves a name that was never written missing (EXISTS 0), not
// "unreachable": the survivors know they held their share of every
// bucket. (Before, a node counted a peer's confirmation only if it came
// after its own view changed, so it often never knew it held its share,
// and answered a quarter of such names "node unreachable" for ten
// minutes.)
func TestNeverWrittenNamesAfterKill(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.WithReplicas(2))
	ctx := ctxT(t)
	rcs := redisClients(t, c)
	setPlainKeys(t, ctx, rcs)
	c.WaitReplicated()
	c.WaitSettled()
	c.Kill(2)
	rcs[2].Close()
	c.WaitConverged()
	for i := range 200 {
		name := fmt.Sprint("never-written:", i)
		if n, err := rcs[i%2].Exists(ctx, name).Result(); err != nil || n != 0 {
			t.Errorf("EXISTS %s through %s after the kill = %d, %v; want 0", name, c.Name(i%2), n, err)
		}
	}
}
