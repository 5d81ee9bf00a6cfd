package testcluster_test

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/dboutique/dboutique/node"
	"github.com/dboutique/dboutique/testcluster"
)

const (
	// scalePoll is how often the scale test checks for convergence and for
	// a killed node's removal: the times it reports are this coarse.
	scalePoll = 20 * time.Millisecond
	// scaleQuiet is how long the cluster is left alone after the kill.
	scaleQuiet = 10 * time.Second
	// scaleSample is how often every node's statistics are read during the
	// quiet window, to see the changes that come and go between two reads.
	scaleSample = 100 * time.Millisecond
)

// scaleSizes returns the cluster sizes of DBOUTIQUE_SCALE=1.
func scaleSizes() []int { return []int{3, 16, 32, 64} }

// scaleRow is what TestScale measured at one size; a zero time or a nil
// quiet window was not measured (the size failed before).
type scaleRow struct {
	nodes                    int
	converge, join, detect   time.Duration
	quiet                    *quietStats
	failed                   bool
	startedAfter, reconverge time.Duration
}

// quietStats is what happened while nothing failed, per live node and per
// second where it says so.
type quietStats struct {
	views, epochs int // views installed (Stats.ViewChanges), epoch changes seen
	flaps         int // a node seeing another suspect, dead, or no longer alive
	probes        float64
	gossip        float64
	lease         float64
	calls         float64 // every request a node sent (testcluster.CallsSent)
	cpu           float64 // % of one core
	heapMB        float64 // live heap of the whole process after the window
	sampler       time.Duration
}

// TestScale starts N in-process nodes for each size that DBOUTIQUE_SCALE
// lists (for example "16,32,64,128"; "1" means those four), adds one, kills
// one, and then leaves the cluster alone for 10 s. It reports, in one table
// at the end:
//
//   - converge: from the first node's start until every node sees all N
//     alive and places buckets the same way (one epoch);
//   - join: from the (N+1)th node's start until all N+1 agree so;
//   - detect-kill: from the kill until no live node has the killed one in
//     its view;
//   - over the quiet 10 s: the views the live nodes installed plus the
//     epoch changes seen (must be 0), the times a node saw another become
//     suspect or dead or stop being alive, the probes (direct and indirect),
//     gossip packets, lease pings and requests of any kind each node sent
//     per second, the process's CPU time per node (% of one core), and the
//     process's live heap after the window.
//
// It asserts only that every stage ends within a generous deadline and that
// nothing changes in the quiet window; the times are reported, never
// checked. The nodes use the node package's default probe interval and
// dead-after, as a deployed cluster would. make scale runs it.
func TestScale(t *testing.T) {
	env := os.Getenv("DBOUTIQUE_SCALE")
	if env == "" {
		t.Skip("set DBOUTIQUE_SCALE=1, or run make scale")
	}
	sizes, err := parseScaleSizes(env)
	if err != nil {
		t.Fatalf("DBOUTIQUE_SCALE=%q: %v", env, err)
	}
	var rows []*scaleRow
	for _, n := range sizes {
		row := &scaleRow{nodes: n}
		rows = append(rows, row)
		if !t.Run(fmt.Sprintf("N=%d", n), func(t *testing.T) { runScale(t, row) }) {
			row.failed = true
		}
	}
	t.Logf("scale (probe interval %v, dead after %v, GOMAXPROCS %d):\n%s",
		node.DefaultProbeInterval, node.DefaultDeadAfter, runtime.GOMAXPROCS(0), scaleTable(rows))
}

// parseScaleSizes reads DBOUTIQUE_SCALE: "1", or sizes separated by commas.
func parseScaleSizes(env string) ([]int, error) {
	if strings.TrimSpace(env) == "1" {
		return scaleSizes(), nil
	}
	var sizes []int
	for f := range strings.SplitSeq(env, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		if n < 2 {
			return nil, fmt.Errorf("size %d: a node must be killed besides node 0", n)
		}
		sizes = append(sizes, n)
	}
	return sizes, nil
}

// runScale measures one size into row.
func runScale(t *testing.T, row *scaleRow) {
	n := row.nodes
	deadline := 60 * time.Second
	if n > 64 {
		deadline = 120 * time.Second
	}

	// Node 0 first, then the others joining through it without waiting,
	// as New does; New's wait is too short at this scale.
	start := time.Now()
	c := testcluster.New(t, 1,
		testcluster.WithFailureDetection(node.DefaultProbeInterval, node.DefaultDeadAfter),
		testcluster.WithLogLevel(zapcore.ErrorLevel))
	for range n - 1 {
		c.AddVia(0)
	}
	row.startedAfter = time.Since(start)
	row.converge = waitScale(t, c, start, deadline, fmt.Sprintf("%d nodes to converge", n), c.Converged)
	t.Logf("%d nodes: all started after %.2f s, converged after %.2f s", n, row.startedAfter.Seconds(), row.converge.Seconds())

	start = time.Now()
	joiner := c.Name(c.AddVia(0))
	row.join = waitScale(t, c, start, deadline, joiner+" to join", c.Converged)
	t.Logf("%d nodes: %s joined in %.2f s", n, joiner, row.join.Seconds())

	victim := n / 2
	id, name := c.Node(victim).ID(), c.Name(victim)
	start = time.Now()
	c.Kill(victim)
	row.detect = waitScale(t, c, start, deadline, name+" to leave every view", func() error {
		for i := range c.Len() {
			if !c.Up(i) {
				continue
			}
			for _, m := range c.Node(i).Members() {
				if m.ID == id && inView(m.State) {
					return fmt.Errorf("%s still has %s in its view (%s)", c.Name(i), name, m.State)
				}
			}
		}
		return nil
	})
	row.reconverge = waitScale(t, c, start, deadline, "the survivors to converge", c.Converged)
	t.Logf("%d nodes: %s, killed, out of every view after %.2f s, the %d others converged after %.2f s",
		n, name, row.detect.Seconds(), n, row.reconverge.Seconds())

	row.quiet = quietWindow(t, c)
	q := row.quiet
	if q.views+q.epochs > 0 {
		t.Errorf("%d nodes: %d views installed and %d epoch changes seen in %v while nothing failed, want 0",
			n, q.views, q.epochs, scaleQuiet)
	}
	t.Logf("%d nodes, quiet %v: %d views installed, %d epoch changes, %d flaps; per node per second: "+
		"%.1f probes, %.1f gossip, %.1f lease pings, %.1f requests; CPU %.2f%% of a core per node; "+
		"heap %.1f MB; sampling took %v",
		n, scaleQuiet, q.views, q.epochs, q.flaps, q.probes, q.gossip, q.lease, q.calls, q.cpu, q.heapMB, q.sampler)
}

// inView reports whether a member in state s is in its node's view: alive,
// or anything else that placement still counts (a suspect is still alive).
func inView(s node.State) bool {
	return s != node.StateJoining && s != node.StateDead && s != node.StateLeft
}

// waitScale polls cond every scalePoll until it returns nil, and returns
// the time since start then; it fails the test with cond's last error once
// deadline has passed since start. Every 10 s it logs how the wait goes:
// what the nodes see, and the CPU the process used.
func waitScale(t *testing.T, c *testcluster.Cluster, start time.Time, deadline time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	next := 10 * time.Second
	ru, at := rusage(t), time.Now()
	for {
		err := cond()
		took := time.Since(start)
		if err == nil {
			return took
		}
		if took > deadline {
			t.Fatalf("gave up waiting %v for %s: %v; %s", deadline, what, err, memberCounts(c))
		}
		if took > next {
			now := rusage(t)
			cpu := 100 * (cpuTime(now) - cpuTime(ru)).Seconds() / time.Since(at).Seconds()
			t.Logf("still waiting after %.0f s for %s: %v; %s; the process used %.0f%% of a core since the last report",
				took.Seconds(), what, err, memberCounts(c), cpu)
			ru, at = now, time.Now()
			next += 10 * time.Second
		}
		time.Sleep(scalePoll)
	}
}

// memberCounts tells how many members the live nodes see in each state:
// the least and the most any node sees.
func memberCounts(c *testcluster.Cluster) string {
	type span struct{ lo, hi int }
	var alive, joining, dead span
	first := true
	widen := func(s *span, v int) {
		if first || v < s.lo {
			s.lo = v
		}
		if first || v > s.hi {
			s.hi = v
		}
	}
	live := 0
	for i := range c.Len() {
		if !c.Up(i) {
			continue
		}
		live++
		st := c.Node(i).Stats()
		widen(&alive, st.MembersAlive)
		widen(&joining, st.MembersJoining)
		widen(&dead, st.MembersDead)
		first = false
	}
	return fmt.Sprintf("the %d live nodes see %d-%d alive, %d-%d joining, %d-%d dead",
		live, alive.lo, alive.hi, joining.lo, joining.hi, dead.lo, dead.hi)
}

// quietWindow leaves the cluster alone for scaleQuiet, reading every live
// node's statistics each scaleSample, and returns what it saw.
func quietWindow(t *testing.T, c *testcluster.Cluster) *quietStats {
	t.Helper()
	var live []int
	for i := range c.Len() {
		if c.Up(i) {
			live = append(live, i)
		}
	}
	type seen struct {
		epoch                uint64
		alive, suspect, dead int
	}
	see := func(st node.Stats) seen {
		return seen{st.Epoch, st.MembersAlive, st.MembersSuspect, st.MembersDead}
	}
	var q quietStats
	ru0 := rusage(t)
	t0 := time.Now()
	before := make([]node.Stats, len(live))
	calls := make([]uint64, len(live))
	last := make([]seen, len(live))
	for j, i := range live {
		before[j], calls[j] = c.Node(i).Stats(), c.CallsSent(i)
		last[j] = see(before[j])
	}
	for time.Since(t0) < scaleQuiet {
		time.Sleep(scaleSample)
		s0 := time.Now()
		for j, i := range live {
			now := see(c.Node(i).Stats())
			was := last[j]
			if now.epoch != was.epoch {
				q.epochs++
				t.Logf("%s: epoch %x -> %x (%d alive) in the quiet window", c.Name(i), was.epoch, now.epoch, now.alive)
			}
			if now.suspect > was.suspect || now.dead > was.dead || now.alive != was.alive {
				q.flaps++
				t.Logf("%s: alive/suspect/dead %d/%d/%d -> %d/%d/%d in the quiet window",
					c.Name(i), was.alive, was.suspect, was.dead, now.alive, now.suspect, now.dead)
			}
			last[j] = now
		}
		q.sampler += time.Since(s0)
	}
	var probes, gossip, lease, sent uint64
	for j, i := range live {
		st := c.Node(i).Stats()
		q.views += int(st.ViewChanges - before[j].ViewChanges)
		probes += st.Probes + st.ProbesIndirect - before[j].Probes - before[j].ProbesIndirect
		gossip += st.GossipSent - before[j].GossipSent
		lease += st.LeasePings - before[j].LeasePings
		sent += c.CallsSent(i) - calls[j]
	}
	took := time.Since(t0)
	ru1 := rusage(t)
	perNode := func(v uint64) float64 { return float64(v) / float64(len(live)) / took.Seconds() }
	q.probes, q.gossip, q.lease, q.calls = perNode(probes), perNode(gossip), perNode(lease), perNode(sent)
	cpu := cpuTime(ru1) - cpuTime(ru0)
	q.cpu = 100 * cpu.Seconds() / took.Seconds() / float64(len(live))
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	q.heapMB = float64(ms.HeapAlloc) / (1 << 20)
	return &q
}

func rusage(t *testing.T) syscall.Rusage {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatalf("getrusage: %v", err)
	}
	return ru
}

// cpuTime is the user and system time of ru.
func cpuTime(ru syscall.Rusage) time.Duration {
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// scaleTable formats rows as a markdown table; "-" marks what was not
// measured because the size failed before.
func scaleTable(rows []*scaleRow) string {
	var b strings.Builder
	b.WriteString("| nodes | converge s | join s | detect-kill s | view changes in quiet 10 s | flaps | " +
		"probes/node/s | gossip msgs/node/s | lease pings/node/s | requests/node/s | CPU % per node | heap MB |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	secs := func(d time.Duration) string {
		if d == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", d.Seconds())
	}
	for _, r := range rows {
		nodes := strconv.Itoa(r.nodes)
		if r.failed {
			nodes += " (FAILED)"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | ", nodes, secs(r.converge), secs(r.join), secs(r.detect))
		if q := r.quiet; q != nil {
			fmt.Fprintf(&b, "%d | %d | %.1f | %.1f | %.1f | %.1f | %.2f | %.1f |\n",
				q.views+q.epochs, q.flaps, q.probes, q.gossip, q.lease, q.calls, q.cpu, q.heapMB)
		} else {
			b.WriteString("- | - | - | - | - | - | - | - |\n")
		}
	}
	b.WriteString("\nview changes: views installed (Stats.ViewChanges) plus epoch changes seen by reading every node's Stats each " +
		scaleSample.String() + "; flaps: a node seeing another become suspect or dead, or its alive count change; " +
		"requests: every node-to-node request sent (testcluster.CallsSent); " +
		"CPU: the whole process's, over the quiet window, per live node; heap: the process's live heap after it.\n")
	return b.String()
}
