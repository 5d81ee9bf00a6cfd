package node_test

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/anishathalye/porcupine"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/dboutique/dboutique/node"
	"github.com/dboutique/dboutique/node/store"
)

// Fault schedules. Each seed draws a cluster (three to seven nodes,
// replicas, whether it runs with --min-members a majority), a kind of
// schedule (simMixes: the default, a fast churn of crashes and restarts, a
// bad network, leaves and rejoins) and a schedule of faults:
// crashes, restarts with and without --join (the restarted node then has
// only its peer book), joins of new nodes, graceful leaves, symmetric and
// one-way partitions, slow and lossy links, and clock steps, while clients
// read and write through random nodes. Everything runs inside a
// testing/synctest bubble on the in-memory network of simnet_test.go, so
// every timer is on the bubble's fake clock: a seed's schedule and
// workload replay exactly from the seed (the interleaving of goroutines
// within one instant of fake time may still differ between runs).
//
// What is checked, after a final heal, once the copies have settled:
//
//   - with --min-members a majority ("cp" seeds): the history of every key,
//     final reads through every node included, is linearizable (porcupine),
//     so no acknowledged write is lost and no read is stale; and no request
//     ever answers NOT FOUND for a bucket that exists;
//   - without it ("ap" seeds, where both sides of a partition take
//     writes): every node answers every key the same way (the copies
//     converged), and every acknowledged write of a key written only once
//     reads back through every node.
//
// Faults stay within the guarantee: at most replicas-1 nodes crashed, left
// or cut off since the copies last settled (the schedule waits for them to
// settle before it goes further), at most three, five or seven nodes ever
// (so that two majorities always share one), and clocks within
// --max-clock-skew. Partitions cut off the primary of a workload bucket
// half the time.
//
// But one seed in eight has a disaster: every owner of a bucket crashes at
// once (some restart at once, with empty stores), and its copies are gone.
// Then what the README says of lost copies is checked: no request ever
// answers NOT FOUND for a bucket that exists (they answer that a node is
// unreachable), and the copies that are left converge.
//
// make test runs simDefaultSeeds seeds; `make sim SEEDS=N` runs more, from
// a random first seed. A failing seed prints the command that replays it.

// Settings of the simulated clusters, on the fake clock.
const (
	simDefaultSeeds = 200
	simProbe        = 100 * time.Millisecond
	simDeadAfter    = 600 * time.Millisecond
	simForward      = 300 * time.Millisecond
	simSync         = 2 * time.Second
	simGrace        = 30 * time.Second
	simMaxSkew      = 2 * time.Second
	simRejoin       = 2 * time.Second
	simFaultTime    = 20 * time.Second // how long faults are drawn for
	simSettleWait   = 60 * time.Second // how long copies may take to settle
	simOpTimeout    = 3 * time.Second
	simClients      = 3
)

// simSeeds returns the seeds to run: DBOUTIQUE_SIM_SEEDS of them (default
// simDefaultSeeds) from DBOUTIQUE_SIM_FIRST (default 1).
func simSeeds(t *testing.T) (first, count uint64) {
	first, count = 1, simDefaultSeeds
	for name, p := range map[string]*uint64{"DBOUTIQUE_SIM_FIRST": &first, "DBOUTIQUE_SIM_SEEDS": &count} {
		if v := os.Getenv(name); v != "" {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				t.Fatalf("%s=%q: %v", name, v, err)
			}
			*p = n
		}
	}
	if testing.Short() {
		count = min(count, 20)
	}
	return first, count
}

func TestFaultSchedules(t *testing.T) {
	first, count := simSeeds(t)
	var (
		mu   sync.Mutex
		sums = make(map[string]int)
	)
	t.Run("seeds", func(t *testing.T) {
		for seed := first; seed < first+count; seed++ {
			t.Run("seed="+strconv.FormatUint(seed, 10), func(t *testing.T) {
				t.Parallel()
				var st simStats
				synctest.Test(t, func(t *testing.T) { st = runSchedule(t, seed) })
				if t.Failed() {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				sums["seeds"]++
				sums[st.mode]++
				sums[st.mix]++
				if st.disaster {
					sums["disasters"]++
				}
				sums["events"] += st.events
				sums["ops"] += st.ops
				sums["acked"] += st.acked
			})
		}
	})
	t.Logf("%d seeds from %d passed: %d cp, %d ap; faults %d default, %d churn, %d network, %d leaves; %d with a disaster; %d fault events, %d requests, %d writes acknowledged",
		sums["seeds"], first, sums["cp"], sums["ap"], sums["default"], sums["churn"], sums["network"], sums["leaves"],
		sums["disasters"], sums["events"], sums["ops"], sums["acked"])
}

// simStats sums up one seed's run.
type simStats struct {
	mode, mix          string
	disaster           bool // a disaster took place
	events, ops, acked int
}

// simPlan is what a seed draws before the schedule.
type simPlan struct {
	mode       string // "cp": --min-members a majority; "ap": none
	start      int    // nodes at the start
	maxNodes   int    // distinct nodes the seed may ever have
	replicas   int
	minMembers int
	mix        simMix // the kind of schedule
	// disaster: once in the schedule, every owner of a bucket crashes at
	// once, beyond what the guarantees allow for (see disaster).
	disaster bool
}

func (p simPlan) String() string {
	s := fmt.Sprintf("%s, %s faults: %d nodes (at most %d), replicas %d, min-members %d",
		p.mode, p.mix.name, p.start, p.maxNodes, p.replicas, p.minMembers)
	if p.disaster {
		s += ", with a disaster"
	}
	return s
}

// runSchedule runs one seed, inside a bubble.
func runSchedule(t *testing.T, seed uint64) simStats {
	rng := rand.New(rand.NewPCG(seed, 0xfa17))
	plan := simPlan{mode: "cp", start: 3 + rng.IntN(2), replicas: 2 + rng.IntN(2), maxNodes: 5}
	switch k := rng.IntN(10); {
	case k < 3:
		plan.mode = "ap"
	case k < 5:
		// Three nodes at most: one fault is a third of the cluster.
		plan.start, plan.maxNodes = 3, 3
	case k < 6:
		// Seven nodes at most, and up to four copies.
		plan.start, plan.maxNodes, plan.replicas = 5, 7, 2+rng.IntN(3)
	}
	if plan.mode == "cp" {
		plan.minMembers = plan.maxNodes/2 + 1
		plan.start = max(plan.start, plan.minMembers+1)
	}
	mixes := simMixes()
	plan.mix = mixes[drawWeighted(rng, len(mixes), func(i int) int { return mixes[i].weight })].mix
	// Drawn apart, so that a seed's schedule without a disaster is the
	// same as before there were any.
	plan.disaster = rand.New(rand.NewPCG(seed, 0xd15a)).IntN(8) == 0
	sc := newSimCluster(t, seed, rng, plan)
	ctx, stop := context.WithCancel(context.Background())
	var clients sync.WaitGroup
	// Cleanups run inside the bubble, also after a Fatal: every goroutine
	// of the bubble must end before it does.
	t.Cleanup(func() {
		if t.Failed() {
			sc.report()
		}
		stop()
		clients.Wait()
		sc.closeAll()
	})
	for range plan.start {
		sc.addNode()
	}
	sc.settle("the first nodes to form a cluster")
	sc.createBuckets()

	for c := range simClients {
		crng := rand.New(rand.NewPCG(seed, uint64(c)+1))
		clients.Go(func() { sc.client(ctx, c, crng) })
	}
	sc.faults()
	sc.heal()
	stop()
	clients.Wait()
	sc.settle("the copies to settle after the last fault")
	sc.finalReads()
	sc.check()
	return simStats{mode: plan.mode, mix: plan.mix.name, disaster: plan.disaster && sc.lost,
		events: len(sc.events), ops: int(sc.ops.Load()), acked: int(sc.acked.Load())}
}

// simCluster is one seed's cluster, schedule and history.
type simCluster struct {
	t     *testing.T
	seed  uint64
	rng   *rand.Rand // the schedule's; only the driver goroutine uses it
	plan  simPlan
	net   *simNet
	logs  *simLog
	start time.Time

	mu     sync.Mutex // guards nodes and events
	nodes  []*simNode
	events []string

	losses int  // nodes crashed, leaving or cut off since the copies last settled (driver only)
	split  bool // links were cut since the copies last settled (driver only)
	lost   bool // the disaster took place: copies are lost (driver only)

	clock atomic.Int64 // orders the history's calls and returns
	ops   atomic.Int64
	acked atomic.Int64
	hist  simHistory

	expiring simExpiring // keys with a time to live, checked apart from hist
}

// simNode is one node of a simCluster, across its restarts.
type simNode struct {
	name, id string
	join     []string // the --join addresses it was started with
	book     *memBook
	skew     atomic.Int64 // its wall clock's offset, ns
	n        *node.Node   // the running node; nil when down
	leaving  bool         // a Leave is under way
}

func newSimCluster(t *testing.T, seed uint64, rng *rand.Rand, plan simPlan) *simCluster {
	return &simCluster{t: t, seed: seed, rng: rng, plan: plan, net: newSimNet(seed), logs: newSimLog(), start: time.Now()}
}

// newSimScenario is a simCluster for a scripted test rather than a drawn
// schedule: it reports its schedule and logs if the test fails, and its
// nodes stop with the test.
func newSimScenario(t *testing.T, seed uint64, plan simPlan) *simCluster {
	sc := newSimCluster(t, seed, rand.New(rand.NewPCG(seed, 1)), plan)
	t.Cleanup(func() {
		if t.Failed() {
			sc.report()
		}
		sc.closeAll()
	})
	return sc
}

// form starts the plan's first nodes, waits until they have settled, and
// returns them.
func (sc *simCluster) form() []*simNode {
	for range sc.plan.start {
		sc.addNode()
	}
	sc.settle("the nodes to form a cluster")
	return sc.up()
}

// logf records a schedule event.
func (sc *simCluster) logf(format string, args ...any) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.events = append(sc.events, fmt.Sprintf("%7.3fs %s", time.Since(sc.start).Seconds(), fmt.Sprintf(format, args...)))
}

// report prints what a failing seed needs to be understood and replayed.
func (sc *simCluster) report() {
	sc.mu.Lock()
	events := strings.Join(sc.events, "\n  ")
	sc.mu.Unlock()
	sc.t.Logf("seed %d (%v); schedule:\n  %s", sc.seed, sc.plan, events)
	sc.t.Logf("messages: %s", sc.net.callsReport())
	sc.t.Logf("last node log lines:\n%s", sc.logs.tail(300))
	// The schedule and the workload replay exactly; which goroutine runs
	// first within one instant of the fake clock may not, so the command
	// runs the seed a few times.
	sc.t.Logf("replay: DBOUTIQUE_SIM_FIRST=%d DBOUTIQUE_SIM_SEEDS=1 go test -count=20 -run 'TestFaultSchedules/seeds/seed=%d$' ./node", sc.seed, sc.seed)
}

// up returns the running nodes that are not leaving.
func (sc *simCluster) up() []*simNode {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	var up []*simNode
	for _, sn := range sc.nodes {
		if sn.n != nil && !sn.leaving {
			up = append(up, sn)
		}
	}
	return up
}

// down returns the nodes that are not running.
func (sc *simCluster) down() []*simNode {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	var down []*simNode
	for _, sn := range sc.nodes {
		if sn.n == nil && !sn.leaving {
			down = append(down, sn)
		}
	}
	return down
}

// nodeOf returns the running node behind sn, or nil.
func (sc *simCluster) nodeOf(sn *simNode) *node.Node {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sn.n
}

// addNode starts a new node, joining through a running one if any.
func (sc *simCluster) addNode() *simNode {
	var via *simNode
	if up := sc.up(); len(up) > 0 {
		via = pick(sc.rng, up)
	}
	return sc.addNodeVia(via)
}

// addNodeVia starts a new node, joining through via unless it is nil.
func (sc *simCluster) addNodeVia(via *simNode) *simNode {
	sc.mu.Lock()
	i := len(sc.nodes)
	sn := &simNode{name: fmt.Sprintf("n%d", i+1), id: fmt.Sprintf("id-%d", i+1), book: &memBook{}}
	sc.nodes = append(sc.nodes, sn)
	sc.mu.Unlock()
	sn.skew.Store(int64(sc.drawSkew()))
	var join []string
	if via != nil {
		join = []string{"/sim/" + via.id}
	}
	sc.boot(sn, join)
	sc.logf("start %s (clock %+v) joining %v", sn.name, time.Duration(sn.skew.Load()), join)
	return sn
}

// drawSkew draws a clock offset: any two are within simMaxSkew.
func (sc *simCluster) drawSkew() time.Duration {
	return time.Duration(sc.rng.Int64N(int64(simMaxSkew))) - simMaxSkew/2
}

// boot starts sn's node with an empty store.
func (sc *simCluster) boot(sn *simNode, join []string) {
	cfg := node.Config{
		Name:           sn.name,
		Transport:      sc.net.transport(sn.id),
		Join:           join,
		ProbeInterval:  simProbe,
		DeadAfter:      simDeadAfter,
		ForwardTimeout: simForward,
		Replicas:       sc.plan.replicas,
		MinMembers:     sc.plan.minMembers,
		SyncInterval:   simSync,
		TombstoneGrace: simGrace,
		MaxClockSkew:   simMaxSkew,
		RejoinTimeout:  simRejoin,
		PeerBook:       sn.book,
		Now:            func() time.Time { return time.Now().Add(time.Duration(sn.skew.Load())) },
		Logger:         sc.logs.logger(sn.name),
	}
	n, err := node.New(cfg)
	if err != nil {
		sc.t.Fatal(err)
	}
	n.Start()
	sc.mu.Lock()
	sn.n, sn.join = n, join
	sc.mu.Unlock()
}

// rescue restarts, joining through a running node, each node that has not
// found its cluster while every node it could find it through (its --join
// addresses and its peer book) is down: as an operator would, once a node
// was told to join through one that died before it got there.
func (sc *simCluster) rescue() {
	up := sc.up()
	alive := make(map[string]bool)
	for _, sn := range up {
		alive[sn.id] = true
	}
	for _, sn := range up {
		n := sc.nodeOf(sn)
		if n == nil || n.Joined() {
			continue
		}
		book, _ := sn.book.Load()
		stuck := !slices.ContainsFunc(book, func(m node.Member) bool { return alive[m.ID] })
		for _, addr := range sn.join {
			stuck = stuck && !alive[strings.TrimPrefix(addr, "/sim/")]
		}
		var others []*simNode
		for _, o := range up {
			if o != sn && sc.nodeOf(o).Joined() {
				others = append(others, o)
			}
		}
		if stuck && len(others) > 0 {
			sc.crash(sn)
			via := pick(sc.rng, others)
			sc.boot(sn, []string{"/sim/" + via.id})
			sc.logf("restart %s joining %s: every node it knew is down", sn.name, via.name)
		}
	}
}

// crash stops sn at once: its store is lost, its peer book kept.
func (sc *simCluster) crash(sn *simNode) {
	sc.net.down(sn.id)
	sc.mu.Lock()
	n := sn.n
	sn.n = nil
	sc.mu.Unlock()
	n.Close()
}

func pick[T any](rng *rand.Rand, xs []T) T { return xs[rng.IntN(len(xs))] }

func nodeNames(sns []*simNode) []string {
	var out []string
	for _, sn := range sns {
		out = append(out, sn.name)
	}
	return out
}

// memBook is a node.PeerBook in memory: it outlives the node's restarts.
type memBook struct {
	mu sync.Mutex
	ms []node.Member
}

func (b *memBook) Load() ([]node.Member, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.ms), nil
}

func (b *memBook) Save(ms []node.Member) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ms = slices.Clone(ms)
	return nil
}

func (b *memBook) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.ms)
}

// --- the history and its model ---

// simInput is a request of the workload.
type simInput struct {
	kind               store.Kind
	bucket, key, value string
	once               bool // ap seeds: a key written this once only
	final              bool // a read after the last fault
}

// simOutput is its outcome. A write that failed (err set) may or may not
// have taken effect.
type simOutput struct {
	value    string
	found    bool
	notFound bool // ErrBucketNotFound
	refused  bool // ErrUnavailable: the request was not run
	err      error
}

// simHistory collects the operations of a run.
type simHistory struct {
	mu  sync.Mutex
	ops []porcupine.Operation
}

func (h *simHistory) add(op porcupine.Operation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, op)
}

func (h *simHistory) all() []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.ops)
}

// onceKeys lists the keys written once (ap seeds).
func (h *simHistory) onceKeys() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var keys []string
	for _, op := range h.ops {
		if in := op.Input.(simInput); in.once {
			keys = append(keys, in.key)
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// simForChecker prepares a history for porcupine: reads that failed are
// left out (they returned nothing), and writes that failed stay open to
// the end of the history (they may take effect at any time after their
// call).
func simForChecker(ops []porcupine.Operation) []porcupine.Operation {
	var end int64
	for _, op := range ops {
		end = max(end, op.Return)
	}
	var out []porcupine.Operation
	for _, op := range ops {
		in, o := op.Input.(simInput), op.Output.(simOutput)
		if o.err == nil && !o.notFound {
			out = append(out, op)
			continue
		}
		if in.kind == store.KindGet || o.refused {
			continue
		}
		op.Return = end + 1
		out = append(out, op)
	}
	return out
}

// simModel is a map of registers, one per bucket and key, checked key by
// key.
func simModel() porcupine.Model {
	type state struct {
		value string
		set   bool
	}
	return porcupine.Model{
		Partition: func(ops []porcupine.Operation) [][]porcupine.Operation {
			byKey := make(map[string][]porcupine.Operation)
			var order []string
			for _, op := range ops {
				in := op.Input.(simInput)
				k := in.bucket + "/" + in.key
				if _, ok := byKey[k]; !ok {
					order = append(order, k)
				}
				byKey[k] = append(byKey[k], op)
			}
			out := make([][]porcupine.Operation, 0, len(order))
			for _, k := range order {
				out = append(out, byKey[k])
			}
			return out
		},
		Init: func() any { return state{} },
		Step: func(st, input, output any) (bool, any) {
			s, in, out := st.(state), input.(simInput), output.(simOutput)
			switch in.kind {
			case store.KindGet:
				return out.found == s.set && (!s.set || out.value == s.value), s
			case store.KindPut:
				return true, state{value: in.value, set: true}
			case store.KindDelete:
				return true, state{}
			}
			return false, s
		},
		Equal:             func(a, b any) bool { return a.(state) == b.(state) },
		DescribeOperation: describeSimOp,
		DescribeState: func(st any) string {
			if s := st.(state); s.set {
				return s.value
			}
			return "(none)"
		},
	}
}

func describeSimOp(input, output any) string {
	in, out := input.(simInput), output.(simOutput)
	k := in.bucket + "/" + in.key
	var res string
	switch {
	case out.err != nil:
		res = "error: " + out.err.Error()
	case out.notFound:
		res = "NOT FOUND"
	case in.kind == store.KindGet && !out.found:
		res = "(none)"
	case in.kind == store.KindGet:
		res = out.value
	default:
		res = "ok"
	}
	switch in.kind {
	case store.KindPut:
		return fmt.Sprintf("put %s = %s -> %s", k, in.value, res)
	case store.KindDelete:
		return fmt.Sprintf("delete %s -> %s", k, res)
	}
	final := ""
	if in.final {
		final = " (final)"
	}
	return fmt.Sprintf("get %s%s -> %s", k, final, res)
}

// illegalKeys describes the keys whose histories are not linearizable:
// each one's operations in call order, with the client and timestamps.
func illegalKeys(ops []porcupine.Operation) string {
	var b strings.Builder
	byKey := make(map[string][]porcupine.Operation)
	for _, op := range simForChecker(ops) {
		in := op.Input.(simInput)
		byKey[in.bucket+"/"+in.key] = append(byKey[in.bucket+"/"+in.key], op)
	}
	for _, k := range slices.Sorted(maps.Keys(byKey)) {
		kops := byKey[k]
		if porcupine.CheckOperations(simModel(), kops) {
			continue
		}
		slices.SortFunc(kops, func(a, b porcupine.Operation) int { return int(a.Call - b.Call) })
		fmt.Fprintf(&b, "key %s:\n", k)
		for _, op := range kops {
			fmt.Fprintf(&b, "  [%6d, %6d] client %d: %s (%v)\n", op.Call, op.Return, op.ClientId, describeSimOp(op.Input, op.Output), op.Metadata)
		}
	}
	return b.String()
}

// --- logs ---

// simLog keeps the nodes' log lines of one run, the last simLogLines.
type simLog struct {
	mu    sync.Mutex
	lines []string
}

const simLogLines = 5000

func newSimLog() *simLog { return &simLog{} }

func (l *simLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for line := range bytes.SplitSeq(bytes.TrimRight(p, "\n"), []byte("\n")) {
		l.lines = append(l.lines, string(line))
	}
	if len(l.lines) > simLogLines {
		l.lines = slices.Delete(l.lines, 0, len(l.lines)-simLogLines)
	}
	return len(p), nil
}

func (l *simLog) Sync() error { return nil }

func (l *simLog) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines[max(len(l.lines)-n, 0):], "\n")
}

// logger returns a logger that writes to l, at Info and above.
func (l *simLog) logger(name string) *zap.Logger {
	enc := zapcore.NewConsoleEncoder(zapcore.EncoderConfig{
		TimeKey: "t", LevelKey: "level", NameKey: "node", MessageKey: "msg",
		EncodeTime: func(t time.Time, e zapcore.PrimitiveArrayEncoder) {
			e.AppendString(t.Format("05.000"))
		},
		EncodeLevel:    zapcore.CapitalLevelEncoder,
		EncodeDuration: zapcore.StringDurationEncoder,
		EncodeName:     zapcore.FullNameEncoder,
	})
	return zap.New(zapcore.NewCore(enc, l, zapcore.InfoLevel)).Named(name)
}
