package node_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/dboutique/dboutique/node"
)

// The faults a schedule draws, and how the cluster is brought back to a
// settled state between them (sim_test.go runs the schedules).

// simMix is a kind of schedule: how long it waits between faults, and how
// often it draws each fault (weights).
type simMix struct {
	name               string
	minPause, maxPause time.Duration
	events             []simEvent
}

type simEvent struct {
	weight int
	apply  func(*simCluster)
}

// simWeightedMix is a mix and how often seeds draw it.
type simWeightedMix struct {
	weight int
	mix    simMix
}

// simMixes are the kinds of schedule a seed draws from: the default, a
// churn of crashes, quick restarts, joins and leaves, a bad network, and
// leaves with rejoins. (A function, so that no package state can change.)
func simMixes() []simWeightedMix {
	settle := func(sc *simCluster) { sc.heal(); sc.settle("the copies to settle") }
	slow := func(sc *simCluster) { sc.slowNetwork(40*time.Millisecond, 5) }
	bad := func(sc *simCluster) { sc.slowNetwork(150*time.Millisecond, 20) }
	return []simWeightedMix{
		{5, simMix{"default", 200 * time.Millisecond, 2 * time.Second, []simEvent{
			{14, (*simCluster).crashOne}, {14, (*simCluster).restartOne}, {8, (*simCluster).joinOne},
			{5, (*simCluster).leaveOne}, {10, (*simCluster).partition}, {8, (*simCluster).oneWay},
			{15, (*simCluster).heal}, {10, slow}, {8, (*simCluster).clockStep}, {8, settle}}}},
		{2, simMix{"churn", 20 * time.Millisecond, 600 * time.Millisecond, []simEvent{
			{25, (*simCluster).crashOne}, {30, (*simCluster).restartOne}, {10, (*simCluster).joinOne},
			{10, (*simCluster).leaveOne}, {10, (*simCluster).oneWay}, {10, (*simCluster).heal}, {5, settle}}}},
		{2, simMix{"network", 20 * time.Millisecond, 600 * time.Millisecond, []simEvent{
			{25, (*simCluster).partition}, {25, (*simCluster).oneWay}, {15, bad}, {10, (*simCluster).crashOne},
			{10, (*simCluster).restartOne}, {10, (*simCluster).heal}, {5, settle}}}},
		{1, simMix{"leaves", 20 * time.Millisecond, 600 * time.Millisecond, []simEvent{
			{30, (*simCluster).leaveOne}, {25, (*simCluster).restartOne}, {10, (*simCluster).joinOne},
			{10, (*simCluster).partition}, {10, slow}, {10, (*simCluster).heal}, {5, settle}}}},
	}
}

// drawWeighted returns the index of one of n weights, drawn in proportion.
func drawWeighted(rng *rand.Rand, n int, weight func(i int) int) int {
	total := 0
	for i := range n {
		total += weight(i)
	}
	k := rng.IntN(total)
	for i := range n {
		if k -= weight(i); k < 0 {
			return i
		}
	}
	return n - 1
}

// faults draws and applies fault events of the seed's mix for
// simFaultTime.
func (sc *simCluster) faults() {
	m := sc.plan.mix
	start := time.Now()
	end := start.Add(simFaultTime)
	var disasterAt time.Time
	if sc.plan.disaster {
		disasterAt = start.Add(time.Second + time.Duration(sc.rng.Int64N(int64(simFaultTime/2))))
	}
	for time.Now().Before(end) {
		time.Sleep(m.minPause + time.Duration(sc.rng.Int64N(int64(m.maxPause-m.minPause))))
		if !disasterAt.IsZero() && time.Now().After(disasterAt) {
			sc.disaster()
			disasterAt = time.Time{}
			continue
		}
		m.events[drawWeighted(sc.rng, len(m.events), func(i int) int { return m.events[i].weight })].apply(sc)
	}
}

// disaster crashes every owner of one of the workload's buckets at once:
// more than the replicas-1 that the guarantees allow for, so the copies of
// that bucket (and of others with the same owners) are gone. Half the
// time one of them restarts at once, with an empty store, before the
// others have seen it dead. What must hold then is that no request ever
// answers NOT FOUND for those buckets: their requests answer that a node
// is unreachable. From then on no node stops, no link is cut and no
// message is lost: the nodes that saw the deaths are the only ones that
// know of them, and a node that has not (restarted since, say) and is cut
// off from all of those, for good or for a moment by lost pings, serves
// alone what it knows: nothing of the bucket. That is beyond what a node
// can know.
func (sc *simCluster) disaster() {
	sc.heal()
	sc.settle("the copies to settle before the disaster")
	up := sc.up()
	b := pick(sc.rng, simBuckets)
	owners, err := sc.nodeOf(pick(sc.rng, up)).Owners(b)
	if err != nil {
		return
	}
	var victims []*simNode
	for _, o := range owners {
		if i := slices.IndexFunc(up, func(sn *simNode) bool { return sn.id == o.ID }); i >= 0 {
			victims = append(victims, up[i])
		}
	}
	if len(up)-len(victims) < 1 {
		sc.logf("no disaster: no node would be left to see it")
		return
	}
	for _, sn := range victims {
		sc.crash(sn)
	}
	sc.lost = true
	sc.logf("disaster: crash %v, every owner of %s", nodeNames(victims), b)
	// Restarted at once: one half the time, and as many as a cp seed
	// needs to have MinMembers running again.
	restart := max(sc.rng.IntN(2), sc.plan.minMembers-len(sc.up()))
	for _, sn := range victims[:min(restart, len(victims))] {
		sc.boot(sn, []string{"/sim/" + pick(sc.rng, sc.up()).id})
		sc.logf("restart %s at once", sn.name)
	}
}

// budget makes room for k more lost nodes: when they would be more than
// replicas-1 since the copies last settled, it heals and waits for the
// copies to settle first. It returns false when k can never fit.
func (sc *simCluster) budget(k int) bool {
	if k > sc.plan.replicas-1 {
		return false
	}
	if sc.losses+k > sc.plan.replicas-1 {
		sc.heal()
		sc.settle("the copies to settle before the next fault")
	}
	sc.losses += k
	return true
}

// spare reports whether k more nodes may stop and leave enough running:
// MinMembers of them in a cp seed (or the cluster would refuse every
// write), two in an ap seed.
func (sc *simCluster) spare(k int) bool {
	return len(sc.up())-k >= max(sc.plan.minMembers, 2)
}

// healFirst heals the network and waits for the copies to settle before a
// node stops, in an ap seed: there, the writes a side took while cut off
// are only on that side until the copies merge after the heal.
func (sc *simCluster) healFirst() {
	if sc.plan.mode == "ap" && sc.split {
		sc.heal()
		sc.settle("the copies to settle before a node stops")
	}
}

// mayStop reports whether one more node may stop now (spare, healFirst,
// budget), having made room for it.
func (sc *simCluster) mayStop() bool {
	if sc.lost || !sc.spare(1) {
		return false
	}
	sc.healFirst()
	return sc.budget(1)
}

func (sc *simCluster) crashOne() {
	if !sc.mayStop() {
		return
	}
	sn := pick(sc.rng, sc.up())
	sc.crash(sn)
	sc.logf("crash %s", sn.name)
}

func (sc *simCluster) restartOne() {
	down := sc.down()
	if len(down) == 0 {
		return
	}
	sn := pick(sc.rng, down)
	// Half the time without --join, so that only the peer book can find
	// the cluster: as an operator restarts a seed, or an mDNS node; but
	// only if a node of the book is up (one whose whole cluster was
	// replaced since it stopped has nothing to find it with).
	var join []string
	up := sc.up()
	book, _ := sn.book.Load()
	known := slices.ContainsFunc(up, func(u *simNode) bool {
		return slices.ContainsFunc(book, func(m node.Member) bool { return m.ID == u.id })
	})
	if len(up) > 0 && (sc.rng.IntN(2) == 0 || !known) {
		join = []string{"/sim/" + pick(sc.rng, up).id}
	}
	sc.boot(sn, join)
	sc.logf("restart %s joining %v (peer book: %d)", sn.name, join, sn.book.len())
}

func (sc *simCluster) joinOne() {
	sc.mu.Lock()
	full := len(sc.nodes) >= sc.plan.maxNodes
	sc.mu.Unlock()
	if !full {
		sc.addNode()
	}
}

func (sc *simCluster) leaveOne() {
	if !sc.mayStop() {
		return
	}
	sn := pick(sc.rng, sc.up())
	sc.mu.Lock()
	sn.leaving = true
	n := sn.n
	sc.mu.Unlock()
	sc.logf("leave %s", sn.name)
	// The leave runs on while the schedule goes on.
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := n.Leave(ctx)
		cancel()
		sc.net.down(sn.id)
		n.Close()
		sc.mu.Lock()
		sn.n, sn.leaving = nil, false
		sc.mu.Unlock()
		sc.logf("%s left (%v)", sn.name, err)
	}()
}

// partition cuts a group of at most replicas-1 nodes off from the others,
// both ways.
func (sc *simCluster) partition() {
	up := sc.up()
	k := 1 + sc.rng.IntN(sc.plan.replicas-1)
	if sc.lost || len(up)-k < 1 || !sc.budget(k) {
		return
	}
	sc.rng.Shuffle(len(up), func(i, j int) { up[i], up[j] = up[j], up[i] })
	if sc.rng.IntN(2) == 0 {
		// Cut off the primary of one of the workload's buckets: the
		// node whose requests are under way.
		if owners, err := sc.nodeOf(up[0]).Owners(pick(sc.rng, simBuckets)); err == nil {
			if i := slices.IndexFunc(up, func(sn *simNode) bool { return sn.id == owners[0].ID }); i > 0 {
				up[0], up[i] = up[i], up[0]
			}
		}
	}
	side, rest := up[:k], up[k:]
	for _, a := range side {
		for _, b := range rest {
			sc.net.setCut(a.id, b.id, true)
			sc.net.setCut(b.id, a.id, true)
		}
	}
	sc.split = true
	sc.logf("partition %v | %v", nodeNames(side), nodeNames(rest))
}

// oneWay cuts the link from one node to another in one direction only.
func (sc *simCluster) oneWay() {
	up := sc.up()
	if sc.lost || len(up) < 2 || !sc.budget(1) {
		return
	}
	sc.rng.Shuffle(len(up), func(i, j int) { up[i], up[j] = up[j], up[i] })
	sc.net.setCut(up[0].id, up[1].id, true)
	sc.split = true
	sc.logf("cut %s -> %s (one way)", up[0].name, up[1].name)
}

func (sc *simCluster) heal() {
	sc.net.healAll()
	sc.net.setQuality(0, 0)
	sc.logf("heal")
}

// slowNetwork delays messages by up to maxDelay each way and loses up to
// maxLossPct percent of them, as drawn.
func (sc *simCluster) slowNetwork(maxDelay time.Duration, maxLossPct int) {
	if sc.lost {
		return // see disaster
	}
	d := time.Millisecond + time.Duration(sc.rng.Int64N(int64(maxDelay)))
	loss := float64(sc.rng.IntN(maxLossPct+1)) / 100
	sc.net.setQuality(d, loss)
	sc.logf("network: delay up to %v each way, %.0f%% lost", d, loss*100)
}

func (sc *simCluster) clockStep() {
	up := sc.up()
	if len(up) == 0 {
		return
	}
	sn := pick(sc.rng, up)
	d := sc.drawSkew()
	sn.skew.Store(int64(d))
	sc.logf("clock of %s steps to %+v", sn.name, d)
}

// settle waits until every running node (but those leaving) sees the same
// members alive, serves, and has its copies where the view wants them.
func (sc *simCluster) settle(what string) {
	deadline := time.Now().Add(simSettleWait)
	for {
		sc.rescue()
		err := sc.settled()
		if err == nil {
			sc.losses, sc.split = 0, false
			sc.logf("settled")
			return
		}
		if time.Now().After(deadline) {
			sc.t.Fatalf("seed %d: gave up waiting %v for %s: %v", sc.seed, simSettleWait, what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (sc *simCluster) settled() error {
	sc.mu.Lock()
	leaving := slices.ContainsFunc(sc.nodes, func(sn *simNode) bool { return sn.leaving })
	sc.mu.Unlock()
	if leaving {
		return errors.New("a node is still leaving")
	}
	up := sc.up()
	var ids []string
	for _, sn := range up {
		ids = append(ids, sn.id)
	}
	slices.Sort(ids)
	for _, sn := range up {
		n := sc.nodeOf(sn)
		if n == nil {
			return fmt.Errorf("%s stopped", sn.name)
		}
		var alive []string
		for _, m := range n.Members() {
			if m.State == node.StateAlive {
				alive = append(alive, m.ID)
			}
		}
		slices.Sort(alive)
		if !slices.Equal(alive, ids) {
			return fmt.Errorf("%s sees %v alive, not %v", sn.name, alive, ids)
		}
		st := n.Stats()
		if !st.Leased {
			return fmt.Errorf("%s holds no lease", sn.name)
		}
		if !n.Settled() {
			return fmt.Errorf("%s has not settled", sn.name)
		}
	}
	return nil
}

// Buckets and keys of the workload.
var (
	simBuckets = []string{"apple", "kiwi", "plum"}
	simKeys    = []string{"x", "y"}
)
