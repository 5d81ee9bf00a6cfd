package node_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/dboutique/dboutique/node"
	"github.com/dboutique/dboutique/node/store"
)

// The clients of a schedule, the history they record, and the checks of
// that history (sim_test.go runs the schedules).

// createBuckets creates the workload's buckets before any fault.
func (sc *simCluster) createBuckets() {
	for _, b := range simBuckets {
		for attempt := 0; ; attempt++ {
			n := sc.nodeOf(pick(sc.rng, sc.up()))
			ctx, cancel := context.WithTimeout(context.Background(), simOpTimeout)
			_, err := n.Execute(ctx, store.Op{Kind: store.KindCreate, Bucket: b})
			cancel()
			if err == nil {
				break
			}
			if attempt == 20 {
				sc.t.Fatalf("seed %d: CREATE %s: %v", sc.seed, b, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	sc.logf("created %v", simBuckets)
}

// client reads and writes through random running nodes until ctx ends.
// In cp seeds it works on a few shared keys; in ap seeds it also writes
// keys of its own, each once.
func (sc *simCluster) client(ctx context.Context, c int, rng *rand.Rand) {
	backoff := 10 * time.Millisecond
	for seq := 0; ctx.Err() == nil; seq++ {
		time.Sleep(time.Duration(10+rng.IntN(60)) * time.Millisecond)
		up := sc.up()
		if len(up) == 0 {
			continue
		}
		sn := pick(rng, up)
		n := sc.nodeOf(sn)
		if n == nil {
			continue
		}
		bucket := pick(rng, simBuckets)
		key := pick(rng, simKeys)
		in := simInput{bucket: bucket, key: key}
		switch k := rng.IntN(100); {
		case sc.plan.mode == "ap" && k < 30:
			in.kind, in.key, in.value = store.KindPut, fmt.Sprintf("c%d-%d", c, seq), fmt.Sprintf("v%d-%d", c, seq)
			in.once = true
		case k < 45:
			in.kind = store.KindGet
		case k < 75:
			in.kind, in.value = store.KindPut, fmt.Sprintf("v%d-%d", c, seq)
		case k < 85:
			// A pipeline of writes to several buckets: the buckets of
			// one primary are written together (writeMany).
			if sc.doBatch(sn, n, c, sc.pipeline(rng, c, seq)) {
				backoff = min(2*backoff, time.Second)
				time.Sleep(backoff)
			} else {
				backoff = 10 * time.Millisecond
			}
			continue
		case k < 90:
			sc.expiring.put(sc, sn, n, bucket, fmt.Sprintf("e%d-%d", c, seq))
			continue
		case k < 95:
			if key, ok := sc.expiring.pick(rng); ok {
				sc.expiring.get(sc, sn, n, key)
			}
			continue
		default:
			in.kind = store.KindDelete
		}
		if out := sc.do(sn, n, c, in); out.err != nil {
			// Back off, as a real client would, so that an outage adds
			// few writes of unknown outcome (each is a branch for the
			// checker to explore).
			backoff = min(2*backoff, time.Second)
			time.Sleep(backoff)
		} else {
			backoff = 10 * time.Millisecond
		}
	}
}

// pipeline draws a pipeline of writes: one or two to each workload
// bucket, in a random order (in ap seeds, some to keys written once).
func (sc *simCluster) pipeline(rng *rand.Rand, c, seq int) []simInput {
	var ins []simInput
	for i, b := range simBuckets {
		for j := range 1 + rng.IntN(2) {
			in := simInput{kind: store.KindPut, bucket: b, key: pick(rng, simKeys), value: fmt.Sprintf("v%d-%d-%d%d", c, seq, i, j)}
			switch k := rng.IntN(4); {
			case sc.plan.mode == "ap" && k < 2:
				in.key, in.once = fmt.Sprintf("c%d-%d-%d%d", c, seq, i, j), true
			case k == 3:
				in.kind, in.value = store.KindDelete, ""
			}
			ins = append(ins, in)
		}
	}
	rng.Shuffle(len(ins), func(i, j int) { ins[i], ins[j] = ins[j], ins[i] })
	return ins
}

// doBatch runs ins as one pipeline through n (ExecuteBatch) and records
// each in the history, all called and returned at once. It reports
// whether any failed.
func (sc *simCluster) doBatch(sn *simNode, n *node.Node, c int, ins []simInput) bool {
	ctx, cancel := context.WithTimeout(context.Background(), simOpTimeout)
	defer cancel()
	ops := make([]store.Op, len(ins))
	for i, in := range ins {
		ops[i] = store.Op{Kind: in.kind, Bucket: in.bucket, Key: in.key, Value: in.value}
	}
	res, errs := make([]store.Result, len(ops)), make([]error, len(ops))
	call, at := sc.clock.Add(1), time.Since(sc.start)
	n.ExecuteBatch(ctx, ops, res, errs)
	crashed := sc.nodeOf(sn) != n
	ret, took := sc.clock.Add(1), time.Since(sc.start)-at
	failed := false
	for i, in := range ins {
		if crashed {
			res[i], errs[i] = store.Result{}, errSimLost
		}
		out := sc.outcome(in, res[i], errs[i])
		failed = failed || out.err != nil
		meta := fmt.Sprintf("via %s at %.3fs, took %v, in a pipeline of %d", sn.name, at.Seconds(), took, len(ins))
		sc.hist.add(porcupine.Operation{ClientId: c, Input: in, Call: call, Output: out, Return: ret, Metadata: meta})
	}
	return failed
}

// do runs in through n and records it in the history.
func (sc *simCluster) do(sn *simNode, n *node.Node, c int, in simInput) simOutput {
	ctx, cancel := context.WithTimeout(context.Background(), simOpTimeout)
	defer cancel()
	call, at := sc.clock.Add(1), time.Since(sc.start)
	res, err := n.Execute(ctx, store.Op{Kind: in.kind, Bucket: in.bucket, Key: in.key, Value: in.value})
	if sc.nodeOf(sn) != n {
		// The node crashed during the request: its client's connection
		// broke, and no answer came.
		res, err = store.Result{}, errSimLost
	}
	ret, took := sc.clock.Add(1), time.Since(sc.start)-at
	out := sc.outcome(in, res, err)
	meta := fmt.Sprintf("via %s at %.3fs, took %v", sn.name, at.Seconds(), took)
	sc.hist.add(porcupine.Operation{ClientId: c, Input: in, Call: call, Output: out, Return: ret, Metadata: meta})
	return out
}

// outcome counts an operation's outcome and turns it into the history's.
func (sc *simCluster) outcome(in simInput, res store.Result, err error) simOutput {
	sc.ops.Add(1)
	out := simOutput{value: res.Value, found: err == nil}
	switch {
	case err == nil:
		if in.kind != store.KindGet {
			sc.acked.Add(1)
		}
	case errors.Is(err, store.ErrKeyNotFound):
		out.found, err = false, nil
	case errors.Is(err, store.ErrBucketNotFound):
		out.notFound = true
	case errors.Is(err, node.ErrUnavailable):
		// Refused before it ran: no effect.
		out.err, out.refused = err, true
	default:
		out.err = err
	}
	return out
}

// finalReads reads every key through every running node, one read at a
// time, after the last fault: they end the history.
func (sc *simCluster) finalReads() {
	keys := slices.Clone(simKeys)
	if sc.plan.mode == "ap" {
		keys = append(keys, sc.hist.onceKeys()...)
	}
	for i, sn := range sc.up() {
		n := sc.nodeOf(sn)
		for _, b := range simBuckets {
			for _, k := range keys {
				out := sc.do(sn, n, simClients+i, simInput{kind: store.KindGet, bucket: b, key: k, final: true})
				var ue *node.UnreachableError
				if out.err != nil && !(sc.lost && errors.As(out.err, &ue)) {
					sc.t.Errorf("seed %d: final GET %s %s through %s: %v", sc.seed, b, k, sn.name, out.err)
				}
			}
		}
	}
}

// check checks the history (see the top of the file).
func (sc *simCluster) check() {
	ops := sc.hist.all()
	for _, op := range ops {
		if op.Output.(simOutput).notFound {
			sc.t.Errorf("seed %d: NOT FOUND for bucket %s, which exists: %v (%v)", sc.seed, op.Input.(simInput).bucket, describeSimOp(op.Input, op.Output), op.Metadata)
		}
	}
	if !sc.lost && sc.plan.mode == "cp" {
		// Without --min-members (ap), the two sides of a partition both
		// serve, each judging expiry by its own clock.
		sc.checkExpiring()
	}
	switch {
	case sc.lost:
		// Acknowledged writes were lost: only what the guarantees say of
		// lost copies holds (no NOT FOUND, above), and the copies that
		// are left converge.
		sc.checkConverged(ops)
	case sc.plan.mode == "cp":
		switch porcupine.CheckOperationsTimeout(simModel(), simForChecker(ops), time.Minute) {
		case porcupine.Illegal:
			sc.t.Errorf("seed %d: history not linearizable:\n%s", sc.seed, illegalKeys(ops))
		case porcupine.Unknown:
			sc.t.Logf("seed %d: linearizability check timed out", sc.seed)
		}
	default:
		sc.checkConverged(ops)
	}
}

// checkConverged: every node answers each key the same way, and a key
// written once and acknowledged reads back everywhere.
func (sc *simCluster) checkConverged(ops []porcupine.Operation) {
	final := make(map[string]map[string]bool) // key -> answers
	acked := make(map[string]string)          // key written once -> value
	how := make(map[string]any)               // key written once -> where and when
	for _, op := range ops {
		in, out := op.Input.(simInput), op.Output.(simOutput)
		k := in.bucket + "/" + in.key
		if in.once && out.err == nil && !out.notFound {
			acked[k], how[k] = in.value, op.Metadata
		}
		if in.final && out.err == nil {
			if final[k] == nil {
				final[k] = make(map[string]bool)
			}
			final[k][fmt.Sprintf("%v:%s", out.found, out.value)] = true
		}
	}
	for k, answers := range final {
		if len(answers) > 1 {
			sc.t.Errorf("seed %d: nodes disagree about %s after the heal: %v", sc.seed, k, slices.Sorted(maps.Keys(answers)))
		}
		if v, ok := acked[k]; ok && !sc.lost && !answers["true:"+v] {
			sc.t.Errorf("seed %d: %s was acknowledged as %q (%v), reads back as %v", sc.seed, k, v, how[k], slices.Sorted(maps.Keys(answers)))
		}
	}
}

// closeAll stops every node, and waits for the leaves under way.
func (sc *simCluster) closeAll() {
	for {
		sc.mu.Lock()
		leaving := slices.ContainsFunc(sc.nodes, func(sn *simNode) bool { return sn.leaving })
		sc.mu.Unlock()
		if !leaving {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, sn := range sc.up() {
		sc.crash(sn)
	}
}

// Expiring keys: clients also write keys of their own with a short time
// to live (each once), and read them back through random nodes. They stay
// out of the linearizability history (its model knows nothing of time)
// and are checked on their own: once a read that started after the write
// was acknowledged found the key missing, no read that starts later may
// find it (checkExpiring), in the schedules with --min-members (cp), whose
// reads are linearizable. Clocks step and drift in these schedules, and
// primaries crash, so this attacks "a key never comes back after it
// expired".

// simTTL is the time to live of the expiring keys.
const simTTL = 300 * time.Millisecond

// simExpiring records the expiring keys and the operations on them.
type simExpiring struct {
	mu   sync.Mutex
	keys []string // bucket/key of every acknowledged expiring write
	ops  []expiringOp
}

// expiringOp is one operation on an expiring key.
type expiringOp struct {
	key        string // bucket/key
	write      bool
	call, ret  int64 // positions on the history's clock
	found, err bool
	meta       string
}

func (e *simExpiring) pick(rng *rand.Rand) (string, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.keys) == 0 {
		return "", false
	}
	return e.keys[rng.IntN(len(e.keys))], true
}

func (e *simExpiring) record(op expiringOp) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ops = append(e.ops, op)
	if op.write && !op.err {
		e.keys = append(e.keys, op.key)
	}
}

// put writes key in bucket with a time to live, through n.
func (e *simExpiring) put(sc *simCluster, sn *simNode, n *node.Node, bucket, key string) {
	op := store.Op{Kind: store.KindPut, Bucket: bucket, Key: key, Value: "x", Expires: simTTL.Milliseconds(), Flags: store.FlagRelative}
	e.run(sc, sn, n, bucket+"/"+key, op)
}

// get reads an expiring key (bucket/key) through n.
func (e *simExpiring) get(sc *simCluster, sn *simNode, n *node.Node, bk string) {
	bucket, key, _ := strings.Cut(bk, "/")
	e.run(sc, sn, n, bk, store.Op{Kind: store.KindGet, Bucket: bucket, Key: key})
}

func (e *simExpiring) run(sc *simCluster, sn *simNode, n *node.Node, bk string, op store.Op) {
	ctx, cancel := context.WithTimeout(context.Background(), simOpTimeout)
	defer cancel()
	call, at := sc.clock.Add(1), time.Since(sc.start)
	_, err := n.Execute(ctx, op)
	if sc.nodeOf(sn) != n {
		err = errSimLost
	}
	rec := expiringOp{key: bk, write: op.Kind == store.KindPut, call: call, ret: sc.clock.Add(1), found: err == nil,
		meta: fmt.Sprintf("%v via %s at %.3fs", op.Kind, sn.name, at.Seconds())}
	if err != nil && !errors.Is(err, store.ErrKeyNotFound) {
		rec.err = true
	}
	e.record(rec)
}

// checkExpiring: an expiring key that a read found missing after its
// write was acknowledged is found by no read that started later.
func (sc *simCluster) checkExpiring() {
	e := &sc.expiring
	e.mu.Lock()
	defer e.mu.Unlock()
	acked := make(map[string]int64) // key -> return of its acknowledged write
	for _, op := range e.ops {
		if op.write && !op.err {
			acked[op.key] = op.ret
		}
	}
	gone := make(map[string]expiringOp) // key -> the first read that found it missing after its write
	for _, op := range e.ops {
		if w, ok := acked[op.key]; ok && !op.write && !op.err && !op.found && op.call > w {
			if g, seen := gone[op.key]; !seen || op.ret < g.ret {
				gone[op.key] = op
			}
		}
	}
	for _, op := range e.ops {
		if g, ok := gone[op.key]; ok && !op.write && op.found && op.call > g.ret {
			sc.t.Errorf("seed %d: expiring key %s came back: missing by %s, found later by %s", sc.seed, op.key, g.meta, op.meta)
		}
	}
}
