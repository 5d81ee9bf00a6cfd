package node_test

import (
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dboutique/dboutique/node"
	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/node/store/storetest"
)

// Faults that last longer than the gossip engine remembers, on the
// simulated network and clock (sim_test.go): each was found by a review of
// the move to the engine.

// A one-way cut a -> b that lasts longer than defaultForgetAfter (10 min):
// a holds b dead on its own evidence (failingSince) while the engine holds
// b alive. a must not forget b meanwhile: once the cut heals, b is back in
// a's view and every node settles. (Found by review: a forgot b for good.)
func TestGossipLongOneWayCutHeals(t *testing.T) {
	for _, plan := range []simPlan{
		{mode: "ap", start: 3, replicas: 2},
		{mode: "cp", start: 3, replicas: 2, minMembers: 2},
	} {
		t.Run(plan.mode, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				sc := newSimScenario(t, 7, plan)
				ns := sc.form()
				a, b := ns[0], ns[1]
				sc.net.setCut(a.id, b.id, true)
				time.Sleep(5 * time.Second)
				t.Logf("5s into the cut: %s", simViews(sc, ns))
				time.Sleep(11 * time.Minute)
				t.Logf("11m into the cut: %s", simViews(sc, ns))
				sc.heal()
				time.Sleep(2 * time.Minute)
				t.Logf("2m after heal: %s", simViews(sc, ns))
				if err := sc.settled(); err != nil {
					t.Errorf("2 minutes after the heal: %v", err)
				}
			})
		})
	}
}

// A member whose clock is off is refused (dead here, alive in the engine)
// for more than 10 minutes, then its clock is fixed: it comes back.
func TestGossipLongClockSkewHeals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sc := newSimScenario(t, 8, simPlan{mode: "ap", start: 3, replicas: 2})
		ns := sc.form()
		b := ns[1]
		old := b.skew.Load()
		b.skew.Store(int64(time.Minute))
		time.Sleep(5 * time.Second)
		t.Logf("5s into the skew: %s", simViews(sc, ns))
		time.Sleep(11 * time.Minute)
		b.skew.Store(old)
		time.Sleep(2 * time.Minute)
		t.Logf("2m after the fix: %s", simViews(sc, ns))
		if err := sc.settled(); err != nil {
			t.Errorf("2 minutes after the clock was fixed: %v", err)
		}
	})
}

// A partition longer than the engine's GossipToTheDeadTime (after which
// it stops telling the dead that they are dead), and one longer than
// defaultForgetAfter (after which the sides forget each other), then a
// heal: the dead members are contacted again (reconnectEvery), the
// forgotten ones too (farawayEvery), and the sides merge.
func TestGossipPartitionLongerThanGossipToTheDeadHeals(t *testing.T) {
	for _, d := range []time.Duration{45 * time.Second, 3 * time.Minute, 11 * time.Minute} {
		t.Run(d.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				sc := newSimScenario(t, 9, simPlan{mode: "ap", start: 5, replicas: 2})
				ns := sc.form()
				side, rest := ns[:2], ns[2:]
				for _, x := range side {
					for _, y := range rest {
						sc.net.setCut(x.id, y.id, true)
						sc.net.setCut(y.id, x.id, true)
					}
				}
				time.Sleep(d)
				sc.heal()
				start := time.Now()
				for sc.settled() != nil && time.Since(start) < 2*time.Minute {
					time.Sleep(100 * time.Millisecond)
				}
				if err := sc.settled(); err != nil {
					t.Errorf("after a %v partition, 2m after the heal: %v; %s", d, err, simViews(sc, ns))
				} else {
					t.Logf("after a %v partition, settled %v after the heal", d, time.Since(start))
				}
			})
		})
	}
}

// A node restarted with its identity but without its peer book and without
// --join: the others' pings reach it, and it contacts them (pinged ->
// joinSoon) at once instead of serving alone until a push/pull. (Found by
// review: 15 s and 307 NOT FOUND answers before.)
func TestGossipRestartWithoutBookFindsTheOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sc := newSimScenario(t, 11, simPlan{mode: "ap", start: 4, replicas: 2})
		ns := sc.form()
		for _, b := range simBuckets {
			sc.mustDo(ns[1], storetest.Create(b))
			sc.mustDo(ns[1], storetest.Put(b, "x", "v"))
		}
		sc.settle("copies")
		a := ns[0]
		sc.crash(a)
		a.book = &memBook{}
		sc.boot(a, nil)
		start := time.Now()
		notFound := 0
		for time.Since(start) < 60*time.Second {
			n := sc.nodeOf(a)
			alive := 0
			for _, m := range n.Members() {
				if !m.Self && m.State == node.StateAlive {
					alive++
				}
			}
			for _, b := range simBuckets {
				if _, err := sc.try(a, storetest.Get(b, "x")); errors.Is(err, store.ErrBucketNotFound) {
					notFound++
				}
			}
			if alive == 3 {
				t.Logf("restarted node sees the others after %v; %d NOT FOUND answers meanwhile", time.Since(start), notFound)
				if took := time.Since(start); took > 10*time.Second {
					t.Errorf("the restarted node found the others only after %v (fake clock)", took)
				}
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("after 60s the restarted node still does not see the others; %d NOT FOUND answers", notFound)
	})
}

func gossipStateIn(n *node.Node, id string) string {
	for _, m := range n.Members() {
		if m.ID == id {
			return m.State.String()
		}
	}
	return "absent"
}

func simViews(sc *simCluster, ns []*simNode) string {
	s := ""
	for _, a := range ns {
		s += a.name + ":"
		for _, b := range ns {
			if a != b {
				s += fmt.Sprintf(" %s=%s", b.name, gossipStateIn(sc.nodeOf(a), b.id))
			}
		}
		s += fmt.Sprintf(" epoch=%x; ", sc.nodeOf(a).Epoch())
	}
	return s
}
