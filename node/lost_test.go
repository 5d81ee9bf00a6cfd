package node_test

import (
	"errors"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dboutique/dboutique/node"
)

// TestRestartedCutOffSaysUnreachable: a node that has just restarted owns
// buckets whose copies are still on their way to it; cut off then (no
// --min-members, so it goes on serving on its side), it must answer
// unreachable for them, not NOT FOUND: it does not hold its share yet. The
// fault schedules found it: a node counted itself a holder of every bucket
// of a view it had settled in, and a node with nothing to hand anyone
// settles at once. Now it counts itself a holder only once every other
// member has confirmed that it lacks nothing of theirs.
func TestRestartedCutOffSaysUnreachable(t *testing.T) {
	for i := range 3 {
		synctest.Test(t, func(t *testing.T) {
			plan := simPlan{mode: "ap", start: 3, replicas: 3, maxNodes: 3}
			sc := newSimCluster(t, uint64(40+i), rand.New(rand.NewPCG(uint64(40+i), 1)), plan)
			t.Cleanup(func() {
				if t.Failed() {
					sc.report()
				}
				sc.closeAll()
			})
			for range plan.start {
				sc.addNode()
			}
			sc.settle("three nodes")
			ns := sc.up()
			var buckets []string
			for b := range 10 {
				buckets = append(buckets, bucketName(b))
				sc.mustDo(ns[0], create(bucketName(b)))
				sc.mustDo(ns[0], put(bucketName(b), "k", "v"))
			}
			sc.settle("the copies to settle")
			r := ns[1]
			sc.crash(r)
			sc.settle("the two others to settle")

			// A slow network: the restarted node's copies take a few
			// round trips to come; it is cut off as soon as its own pass
			// (it has nothing to hand anyone) has settled.
			sc.net.setQuality(80*time.Millisecond, 0)
			sc.boot(r, []string{"/sim/" + ns[2].id})
			for !sc.nodeOf(r).Settled() || len(sc.nodeOf(r).Members()) < 3 {
				time.Sleep(time.Millisecond)
			}
			for _, o := range []*simNode{ns[0], ns[2]} {
				sc.net.setCut(o.id, r.id, true)
				sc.net.setCut(r.id, o.id, true)
			}
			time.Sleep(3 * simDeadAfter) // until it holds the others dead
			for _, b := range buckets {
				if _, err := sc.try(r, get(b, "k")); errors.Is(err, node.ErrBucketNotFound) {
					t.Fatalf("GET %s k through the cut-off restarted node: NOT FOUND; want its value, or unreachable", b)
				}
			}
			sc.heal()
		})
	}
}
