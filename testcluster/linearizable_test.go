package testcluster_test

// Linearizability checking with porcupine: a model of one bucket, a
// recorder of concurrent histories, a workload that drives a cluster
// through its client ports, and a checker that writes a visualization when
// a history is not linearizable.
//
// A request that fails may or may not have taken effect. Following
// porcupine's advice, a write whose outcome is unknown is recorded with its
// return at the end of the history (it may take effect at any time after
// its call, or never: nothing later would see it), and a read that failed
// is left out (it observed nothing anyone can rely on). A write answered
// NOT FOUND did not take effect (the bucket does not exist) and is left out
// too; should it have taken effect after all, a read of its value makes the
// history illegal.

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/dboutique/dboutique/node"
	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/testcluster"
	"github.com/dboutique/dboutique/textproto"
)

// Limits of the workload and the checker.
const (
	// linOpTimeout bounds one request; it is longer than the nodes'
	// forward timeout, so an unreachable owner is reported by the node.
	linOpTimeout = 5 * time.Second
	// linMaxOpsPerWorker bounds each worker's loop in count, as the
	// duration bounds it in time; a worker spreads them over the duration.
	linMaxOpsPerWorker = 1000
	// linCheckTimeout bounds the linearizability check.
	linCheckTimeout = 60 * time.Second
	// A worker pauses after a failed request or dial, from
	// linMinBackoff doubling up to linMaxBackoff until a request
	// succeeds, so that an outage adds few operations of unknown outcome
	// (each stays open to the end of the history and slows the check).
	linMinBackoff = 10 * time.Millisecond
	linMaxBackoff = 320 * time.Millisecond
	// linErrSamples is how many distinct error messages a history keeps.
	linErrSamples = 8
)

// errNoNodeUp: the dialer found no running node to connect to.
var errNoNodeUp = errors.New("testcluster_test: no node is up")

// kvOp is the kind of a modelled request.
type kvOp uint8

const (
	opGet kvOp = iota
	opPut
	opDelete
)

// kvInput is a request on one key of the bucket.
type kvInput struct {
	Op    kvOp
	Key   string
	Value string // for opPut
}

// kvOutput is the reply to a kvInput. Unknown marks a write that failed in
// a way that leaves its effect unknown; its Return is the end of the
// history.
type kvOutput struct {
	Value   string // for opGet, when Found
	Found   bool   // for opGet
	Unknown bool
}

// kvState is the modelled bucket: key -> value. Step never modifies a
// state; it returns a new one.
type kvState map[string]string

// kvModel returns the porcupine model of one bucket, partitioned by key
// (linearizability is compositional, so each key is checked on its own).
func kvModel() porcupine.Model {
	m := kvModelUnpartitioned()
	m.Partition = partitionByKey
	m.PartitionEvent = partitionEventsByKey
	return m
}

// kvModelUnpartitioned is kvModel without the partition functions: the same
// verdicts, checked on the whole history at once.
func kvModelUnpartitioned() porcupine.Model {
	return porcupine.Model{
		Init: func() any { return kvState{} },
		Step: func(state, input, output any) (bool, any) {
			st, in, out := state.(kvState), input.(kvInput), output.(kvOutput)
			switch in.Op {
			case opGet:
				if out.Unknown {
					return true, st
				}
				v, ok := st[in.Key]
				return ok == out.Found && (!ok || v == out.Value), st
			case opPut:
				next := maps.Clone(st)
				next[in.Key] = in.Value
				return true, next
			case opDelete:
				if _, ok := st[in.Key]; !ok {
					return true, st
				}
				next := maps.Clone(st)
				delete(next, in.Key)
				return true, next
			}
			return false, st
		},
		Equal: func(a, b any) bool { return maps.Equal(a.(kvState), b.(kvState)) },
		Hash: func(state any) uint64 {
			st := state.(kvState)
			h := fnv.New64a()
			for _, k := range slices.Sorted(maps.Keys(st)) {
				fmt.Fprintf(h, "%s\x00%s\x00", k, st[k])
			}
			return h.Sum64()
		},
		DescribeOperation: describeKVOperation,
		DescribeState: func(state any) string {
			st := state.(kvState)
			parts := make([]string, 0, len(st))
			for _, k := range slices.Sorted(maps.Keys(st)) {
				parts = append(parts, k+": "+st[k])
			}
			return "{" + strings.Join(parts, ", ") + "}"
		},
	}
}

func describeKVOperation(input, output any) string {
	in, out := input.(kvInput), output.(kvOutput)
	var s string
	switch in.Op {
	case opGet:
		s = fmt.Sprintf("Get(%s)", in.Key)
		switch {
		case out.Unknown:
		case out.Found:
			return s + " -> " + out.Value
		default:
			return s + " -> absent"
		}
	case opPut:
		s = fmt.Sprintf("Put(%s, %s)", in.Key, in.Value)
	case opDelete:
		s = fmt.Sprintf("Delete(%s)", in.Key)
	default:
		s = fmt.Sprintf("op%d(%s)", in.Op, in.Key)
	}
	if out.Unknown {
		return s + " -> ?"
	}
	return s
}

// partitionByKey splits a history into one per key, in order of first
// appearance.
func partitionByKey(ops []porcupine.Operation) [][]porcupine.Operation {
	index := map[string]int{}
	var parts [][]porcupine.Operation
	for _, op := range ops {
		k := op.Input.(kvInput).Key
		i, ok := index[k]
		if !ok {
			i = len(parts)
			index[k] = i
			parts = append(parts, nil)
		}
		parts[i] = append(parts[i], op)
	}
	return parts
}

// partitionEventsByKey is partitionByKey for event histories: a return
// goes with its call, matched by Id.
func partitionEventsByKey(events []porcupine.Event) [][]porcupine.Event {
	keyOf := map[int]string{}
	index := map[string]int{}
	var parts [][]porcupine.Event
	for _, e := range events {
		k, ok := keyOf[e.Id]
		if !ok && e.Kind == porcupine.CallEvent {
			k = e.Value.(kvInput).Key
			keyOf[e.Id] = k
		}
		i, ok := index[k]
		if !ok {
			i = len(parts)
			index[k] = i
			parts = append(parts, nil)
		}
		parts[i] = append(parts[i], e)
	}
	return parts
}

// history records operations from many goroutines on one monotonic clock.
type history struct {
	start time.Time

	mu        sync.Mutex // guards everything below
	ops       []porcupine.Operation
	unknown   []porcupine.Operation // writes of unknown outcome; Return set by Operations
	dropped   int                   // failed reads left out
	refused   int                   // writes answered NOT FOUND, left out
	clients   int                   // ClientIds handed out
	errCounts map[string]int        // error message -> count, at most linErrSamples messages
	errOther  int                   // errors past the samples
}

func newHistory() *history {
	return &history{start: time.Now(), errCounts: map[string]int{}}
}

// now is the history's clock: nanoseconds since it started, monotonic.
func (h *history) now() int64 { return time.Since(h.start).Nanoseconds() }

// newClient returns a fresh ClientId. A worker takes a new one after an
// operation of unknown outcome, which stays open to the end of the history,
// so that no ClientId has two operations open at once.
func (h *history) newClient() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.clients++
	return h.clients - 1
}

// add records a completed operation.
func (h *history) add(op porcupine.Operation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, op)
}

// addUnknown records a write whose outcome is unknown; its Return becomes
// the end of the history.
func (h *history) addUnknown(op porcupine.Operation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	op.Output = kvOutput{Unknown: true}
	h.unknown = append(h.unknown, op)
}

// fail records a failed request: a write answered NOT FOUND is left out,
// any other failed write becomes an operation of unknown outcome, a failed
// read is left out. It counts err by message, and reports whether the
// outcome is unknown.
func (h *history) fail(op porcupine.Operation, err error) (unknown bool) {
	switch {
	case op.Input.(kvInput).Op == opGet:
		h.mu.Lock()
		h.dropped++
		h.mu.Unlock()
	case errors.Is(err, store.ErrBucketNotFound):
		h.mu.Lock()
		h.refused++
		h.mu.Unlock()
	default:
		h.addUnknown(op)
		unknown = true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	msg := err.Error()
	if _, ok := h.errCounts[msg]; ok || len(h.errCounts) < linErrSamples {
		h.errCounts[msg]++
	} else {
		h.errOther++
	}
	return unknown
}

// Operations returns the history for the checker: the completed operations
// and, ending at the end of the history, those of unknown outcome.
func (h *history) Operations() []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	var end int64
	for _, op := range h.ops {
		end = max(end, op.Call, op.Return)
	}
	for _, op := range h.unknown {
		end = max(end, op.Call)
	}
	all := slices.Clone(h.ops)
	for _, op := range h.unknown {
		op.Return = end + 1
		all = append(all, op)
	}
	return all
}

// Summary describes the history: operations by outcome and the errors.
func (h *history) Summary() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "%d completed, %d writes of unknown outcome, %d failed reads and %d refused writes left out, %d client ids",
		len(h.ops), len(h.unknown), h.dropped, h.refused, h.clients)
	for _, msg := range slices.Sorted(maps.Keys(h.errCounts)) {
		fmt.Fprintf(&b, "; %dx %s", h.errCounts[msg], msg)
	}
	if h.errOther > 0 {
		fmt.Fprintf(&b, "; %d other errors", h.errOther)
	}
	return b.String()
}

// Failures returns how many requests failed.
func (h *history) Failures() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.unknown) + h.dropped + h.refused
}

// Completed counts the completed operations of kind op.
func (h *history) Completed(op kvOp) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, o := range h.ops {
		if o.Input.(kvInput).Op == op {
			n++
		}
	}
	return n
}

// dialFunc connects worker to a node, for the attempt-th time (0 first);
// it returns the client and a label for the node, kept as the operations'
// metadata. A dialFunc is called from the workers' goroutines: it must not
// fail the test.
type dialFunc func(ctx context.Context, worker, attempt int) (*textproto.Client, string, error)

// clusterDialer spreads workers over the running nodes of c: worker w
// starts on node w mod n, and each new attempt moves it to the next node
// that is up. It dials directly rather than through c.Client, which fails
// the test when a node is down.
func clusterDialer(c *testcluster.Cluster) dialFunc {
	return func(ctx context.Context, worker, attempt int) (*textproto.Client, string, error) {
		n := c.Len()
		for k := range n {
			i := (worker + attempt + k) % n
			if !c.Up(i) {
				continue
			}
			cl, err := textproto.Dial(ctx, c.Addr(i), textproto.WithTimeout(linOpTimeout))
			return cl, "via " + c.Name(i), err
		}
		return nil, "", errNoNodeUp
	}
}

// runWorkload creates bucket (which must hold none of keys) and runs
// workers goroutines for d, each on its own connection from dial, looping
// random requests on keys: GET 50%, PUT 40% with values unique to the run
// ("w3-17"), DELETE 10%. Each worker sends at most linMaxOpsPerWorker
// requests, paced to spread over d (a slow cluster is not waited for). A
// worker whose request fails closes its connection and dials again (the
// next node, with clusterDialer), so nodes may go away during the run. It
// returns when every worker has stopped: at d, after its last request, or
// when ctx ends.
func runWorkload(t testing.TB, ctx context.Context, dial dialFunc, workers int, keys []string, bucket string, d time.Duration) *history {
	t.Helper()
	if err := createBucket(ctx, dial, bucket); err != nil {
		t.Fatalf("create bucket %s: %v", bucket, err)
	}
	h := newHistory()
	seed := rand.Uint64()
	t.Logf("workload: %d workers, keys %v, bucket %s, %v, seed %d", workers, keys, bucket, d, seed)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			runWorker(ctx, h, dial, w, rand.New(rand.NewPCG(seed, uint64(w))), keys, bucket, start, d)
		})
	}
	wg.Wait()
	t.Logf("workload done: %s", h.Summary())
	return h
}

// createBucket creates bucket through the first node that answers,
// polling for up to testcluster.WaitTimeout.
func createBucket(ctx context.Context, dial dialFunc, bucket string) error {
	ctx, cancel := context.WithTimeout(ctx, testcluster.WaitTimeout)
	defer cancel()
	var last error
	for attempt := 0; ctx.Err() == nil; attempt++ {
		cl, _, err := dial(ctx, 0, attempt)
		if err == nil {
			err = cl.Create(ctx, bucket)
			cl.Close()
			if err == nil {
				return nil
			}
		}
		last = err
		pauseCtx(ctx, linMinBackoff)
	}
	return fmt.Errorf("%w (last error: %w)", ctx.Err(), last)
}

// pauseCtx waits for d or until ctx ends: a retry's backoff, or a
// worker's pacing.
func pauseCtx(ctx context.Context, d time.Duration) {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
	case <-tm.C:
	}
}

// runWorker is one worker's loop; see runWorkload.
func runWorker(ctx context.Context, h *history, dial dialFunc, w int, rng *rand.Rand, keys []string, bucket string, start time.Time, d time.Duration) {
	id := h.newClient()
	deadline := start.Add(d)
	interval := d / linMaxOpsPerWorker
	var (
		cl      *textproto.Client
		via     string
		attempt int
		backoff = linMinBackoff
	)
	failed := func() {
		pauseCtx(ctx, backoff)
		backoff = min(2*backoff, linMaxBackoff)
	}
	defer func() {
		if cl != nil {
			cl.Close()
		}
	}()
	for n := 0; n < linMaxOpsPerWorker && ctx.Err() == nil && time.Now().Before(deadline); {
		if cl == nil {
			c, label, err := dial(ctx, w, attempt)
			attempt++
			if err != nil {
				failed()
				continue
			}
			cl, via = c, label
		}
		if ahead := time.Until(start.Add(time.Duration(n) * interval)); ahead > 0 {
			pauseCtx(ctx, ahead) // pacing, not waiting for a condition
		}
		in := kvInput{Key: keys[rng.IntN(len(keys))]}
		switch p := rng.IntN(100); {
		case p < 50:
			in.Op = opGet
		case p < 90:
			in.Op, in.Value = opPut, fmt.Sprintf("w%d-%d", w, n)
		default:
			in.Op = opDelete
		}
		n++
		op := porcupine.Operation{ClientId: id, Input: in, Metadata: via}
		op.Call = h.now()
		out, err := doRequest(ctx, cl, bucket, in)
		op.Return = h.now()
		if err == nil {
			op.Output = out
			h.add(op)
			backoff = linMinBackoff
			continue
		}
		if h.fail(op, err) {
			id = h.newClient()
		}
		cl.Close()
		cl = nil
		failed()
	}
}

// doRequest sends in on cl. A GET of a missing key, or of a bucket that
// does not exist (it was created before the run and is never dropped, so
// its keys are lost with it), reads the key as absent.
func doRequest(ctx context.Context, cl *textproto.Client, bucket string, in kvInput) (kvOutput, error) {
	ctx, cancel := context.WithTimeout(ctx, linOpTimeout)
	defer cancel()
	switch in.Op {
	case opGet:
		v, err := cl.Get(ctx, bucket, in.Key)
		if errors.Is(err, store.ErrKeyNotFound) || errors.Is(err, store.ErrBucketNotFound) {
			return kvOutput{}, nil
		}
		return kvOutput{Value: v, Found: true}, err
	case opPut:
		return kvOutput{}, cl.Put(ctx, bucket, in.Key, in.Value)
	case opDelete:
		return kvOutput{}, cl.Delete(ctx, bucket, in.Key)
	}
	return kvOutput{}, fmt.Errorf("unknown operation %d", in.Op)
}

// checkLinearizable checks h against kvModel. If h is not linearizable it
// writes porcupine's visualization to a file under os.TempDir, which
// outlives the test, and fails naming it; if the checker times out it
// fails too. It returns the checker's verdict.
func checkLinearizable(t testing.TB, h *history) porcupine.CheckResult {
	t.Helper()
	ops := h.Operations()
	keys := map[string]bool{}
	unknown := 0
	for _, op := range ops {
		keys[op.Input.(kvInput).Key] = true
		if op.Output.(kvOutput).Unknown {
			unknown++
		}
	}
	model := kvModel()
	res, info := porcupine.CheckOperationsVerbose(model, ops, linCheckTimeout)
	switch res {
	case porcupine.Ok:
		t.Logf("linearizable: %d operations on %d keys checked, %d of unknown outcome", len(ops), len(keys), unknown)
	case porcupine.Illegal:
		path, err := writeVisualization(model, info)
		if err != nil {
			t.Fatalf("history of %d operations is not linearizable; writing its visualization failed: %v", len(ops), err)
			return res
		}
		t.Fatalf("history of %d operations is not linearizable; visualization: %s", len(ops), path)
	default:
		t.Fatalf("linearizability check of %d operations gave up after %v (result %s)", len(ops), linCheckTimeout, res)
	}
	return res
}

// writeVisualization writes info as an HTML file under os.TempDir and
// returns its path.
func writeVisualization(model porcupine.Model, info porcupine.LinearizationInfo) (string, error) {
	f, err := os.CreateTemp("", "dboutique-linearizability-*.html")
	if err != nil {
		return "", err
	}
	path := f.Name()
	if err := f.Close(); err != nil {
		return "", err
	}
	return path, porcupine.VisualizePath(model, info, path)
}

// TestLinearizableSingleNode: concurrent requests to one node are
// linearizable.
func TestLinearizableSingleNode(t *testing.T) {
	c := testcluster.New(t, 1)
	h := runWorkload(t, ctxT(t), clusterDialer(c), 8, []string{"k0", "k1", "k2", "k3"}, "linear", 3*time.Second)
	requireHealthyRun(t, h)
	checkLinearizable(t, h)
}

// TestLinearizableStable: on a stable three-node cluster with consistent
// hashing, requests through every node's client port (two of three are
// forwarded to the bucket's owner) are linearizable.
func TestLinearizableStable(t *testing.T) {
	c := testcluster.New(t, 3)
	h := runWorkload(t, ctxT(t), clusterDialer(c), 12, []string{"k0", "k1", "k2", "k3", "k4"}, "linear", 5*time.Second)
	requireHealthyRun(t, h)
	checkLinearizable(t, h)
}

// requireHealthyRun fails if a request failed in a cluster where nothing
// fails, or if no read or write completed.
func requireHealthyRun(t *testing.T, h *history) {
	t.Helper()
	if n := h.Failures(); n > 0 {
		t.Errorf("%d requests failed in a stable cluster: %s", n, h.Summary())
	}
	if h.Completed(opGet) == 0 || h.Completed(opPut) == 0 {
		t.Errorf("the workload completed %d GETs and %d PUTs, want some of each", h.Completed(opGet), h.Completed(opPut))
	}
}

// linOp is one operation of a hand-made history, on a clock of small
// integers.
type linOp struct {
	client    int
	call, ret int64 // ret is ignored for writes of unknown outcome
	in        kvInput
	out       kvOutput
	err       error // the request failed with err; out is ignored
}

// handMade builds a history from ops through the recorder.
func handMade(ops []linOp) *history {
	h := newHistory()
	for _, o := range ops {
		p := porcupine.Operation{ClientId: o.client, Input: o.in, Call: o.call, Return: o.ret, Output: o.out}
		if o.err != nil {
			h.fail(p, o.err)
		} else {
			h.add(p)
		}
	}
	return h
}

// linHistories are hand-made histories and whether each is linearizable.
func linHistories() []struct {
	name  string
	ops   []linOp
	legal bool
} {
	get := func(k string) kvInput { return kvInput{Op: opGet, Key: k} }
	put := func(k, v string) kvInput { return kvInput{Op: opPut, Key: k, Value: v} }
	del := func(k string) kvInput { return kvInput{Op: opDelete, Key: k} }
	found := func(v string) kvOutput { return kvOutput{Value: v, Found: true} }
	absent := kvOutput{}
	done := kvOutput{}
	op := func(c int, call, ret int64, in kvInput, out kvOutput) linOp {
		return linOp{client: c, call: call, ret: ret, in: in, out: out}
	}
	// Failed requests: a write of unknown outcome, a failed read, a
	// write answered NOT FOUND.
	unreachable := &node.UnreachableError{Node: "x"}
	lost := func(c int, call int64, in kvInput) linOp {
		return linOp{client: c, call: call, ret: call + 10, in: in, err: unreachable}
	}
	failedRead := func(c int, call, ret int64, k string) linOp {
		return linOp{client: c, call: call, ret: ret, in: get(k), out: found("bogus"), err: io.ErrUnexpectedEOF}
	}
	refused := func(c int, call, ret int64, in kvInput) linOp {
		return linOp{client: c, call: call, ret: ret, in: in, err: store.ErrBucketNotFound}
	}
	return []struct {
		name  string
		ops   []linOp
		legal bool
	}{
		{"empty", nil, true},
		{"sequential put get delete get", []linOp{
			op(0, 0, 10, put("a", "1"), done),
			op(0, 20, 30, get("a"), found("1")),
			op(0, 40, 50, del("a"), done),
			op(0, 60, 70, get("a"), absent),
		}, true},
		{"read of a value never written", []linOp{
			op(0, 0, 10, put("a", "1"), done),
			op(1, 20, 30, get("a"), found("2")),
		}, false},
		{"read of a key never written", []linOp{
			op(0, 0, 10, get("a"), found("1")),
		}, false},
		{"stale read after a newer write completed", []linOp{
			op(0, 0, 10, put("a", "1"), done),
			op(0, 20, 30, put("a", "2"), done),
			op(1, 40, 50, get("a"), found("1")),
		}, false},
		{"lost write: absent after a completed put", []linOp{
			op(0, 0, 10, put("a", "1"), done),
			op(1, 20, 30, get("a"), absent),
		}, false},
		{"read of a deleted value", []linOp{
			op(0, 0, 10, put("a", "1"), done),
			op(0, 20, 30, del("a"), done),
			op(1, 40, 50, get("a"), found("1")),
		}, false},
		{"concurrent read sees the new value", []linOp{
			op(0, 0, 10, put("a", "1"), done),
			op(0, 20, 50, put("a", "2"), done),
			op(1, 25, 30, get("a"), found("2")),
		}, true},
		{"concurrent read sees the old value", []linOp{
			op(0, 0, 10, put("a", "1"), done),
			op(0, 20, 50, put("a", "2"), done),
			op(1, 25, 30, get("a"), found("1")),
		}, true},
		{"closed intervals: touching operations are concurrent", []linOp{
			op(0, 0, 10, put("a", "1"), done),
			op(1, 10, 20, get("a"), absent),
		}, true},
		{"readers disagree on the order of two writes", []linOp{
			op(0, 0, 100, put("a", "1"), done),
			op(1, 0, 100, put("a", "2"), done),
			op(2, 10, 20, get("a"), found("1")),
			op(3, 25, 30, get("a"), found("2")),
			op(3, 35, 40, get("a"), found("1")),
			op(2, 50, 60, get("a"), found("2")),
		}, false},
		{"readers agree on the order of two writes", []linOp{
			op(0, 0, 100, put("a", "1"), done),
			op(1, 0, 100, put("a", "2"), done),
			op(2, 10, 20, get("a"), found("1")),
			op(3, 25, 30, get("a"), found("1")),
			op(3, 35, 40, get("a"), found("2")),
			op(2, 50, 60, get("a"), found("2")),
		}, true},
		{"keys are independent", []linOp{
			op(0, 0, 10, put("a", "1"), done),
			op(1, 5, 15, put("b", "x"), done),
			op(2, 20, 30, get("b"), found("x")),
			op(2, 40, 50, get("a"), found("1")),
			op(3, 40, 50, del("b"), done),
			op(3, 60, 70, get("b"), absent),
		}, true},
		{"stale read on one key among others", []linOp{
			op(0, 0, 10, put("a", "1"), done),
			op(1, 0, 10, put("b", "x"), done),
			op(0, 20, 30, put("a", "2"), done),
			op(1, 40, 50, get("b"), found("x")),
			op(1, 60, 70, get("a"), found("1")),
		}, false},
		{"unknown write seen later", []linOp{
			lost(0, 0, put("a", "1")),
			op(1, 50, 60, get("a"), found("1")),
			op(1, 70, 80, get("a"), found("1")),
		}, true},
		{"unknown write never seen", []linOp{
			lost(0, 0, put("a", "1")),
			op(1, 50, 60, get("a"), absent),
		}, true},
		{"unknown write seen, then not seen", []linOp{
			lost(0, 0, put("a", "1")),
			op(1, 50, 60, get("a"), found("1")),
			op(1, 70, 80, get("a"), absent),
		}, false},
		{"unknown write seen before its call", []linOp{
			op(1, 0, 5, get("a"), found("1")),
			lost(0, 10, put("a", "1")),
		}, false},
		{"unknown delete takes effect late", []linOp{
			op(0, 0, 10, put("a", "1"), done),
			lost(0, 20, del("a")),
			op(1, 40, 50, get("a"), found("1")),
			op(1, 60, 70, get("a"), absent),
		}, true},
		{"failed read is dropped", []linOp{
			op(0, 0, 10, put("a", "1"), done),
			failedRead(1, 20, 30, "a"),
			op(1, 40, 50, get("a"), found("1")),
		}, true},
		{"refused write is left out", []linOp{
			op(0, 0, 10, put("a", "1"), done),
			refused(0, 20, 30, put("a", "2")),
			refused(0, 40, 50, del("a")),
			op(1, 60, 70, get("a"), found("1")),
		}, true},
		{"refused write seen", []linOp{
			op(0, 0, 10, put("a", "1"), done),
			refused(0, 20, 30, put("a", "2")),
			op(1, 40, 50, get("a"), found("2")),
		}, false},
	}
}

// opsToEvents turns operations into porcupine's event representation.
func opsToEvents(ops []porcupine.Operation) []porcupine.Event {
	type stamped struct {
		t  int64
		ev porcupine.Event
	}
	var all []stamped
	for id, op := range ops {
		all = append(all,
			stamped{op.Call, porcupine.Event{ClientId: op.ClientId, Kind: porcupine.CallEvent, Value: op.Input, Id: id}},
			stamped{op.Return, porcupine.Event{ClientId: op.ClientId, Kind: porcupine.ReturnEvent, Value: op.Output, Id: id}})
	}
	// Calls before returns at equal times: intervals are closed.
	slices.SortStableFunc(all, func(a, b stamped) int {
		if a.t != b.t {
			return int(a.t - b.t)
		}
		if a.ev.Kind == b.ev.Kind {
			return 0
		}
		if a.ev.Kind == porcupine.CallEvent {
			return -1
		}
		return 1
	})
	events := make([]porcupine.Event, len(all))
	for i, s := range all {
		events[i] = s.ev
	}
	return events
}

// TestLinearizabilityChecker: the model, the recorder and the checker give
// the right verdict on hand-made histories, partitioned by key or not, as
// operations or as events.
func TestLinearizabilityChecker(t *testing.T) {
	for _, tc := range linHistories() {
		t.Run(tc.name, func(t *testing.T) {
			ops := handMade(tc.ops).Operations()
			want := porcupine.Illegal
			if tc.legal {
				want = porcupine.Ok
			}
			for name, model := range map[string]porcupine.Model{"partitioned": kvModel(), "whole": kvModelUnpartitioned()} {
				if got := porcupine.CheckOperationsTimeout(model, ops, linCheckTimeout); got != want {
					t.Errorf("%s, operations: %s, want %s", name, got, want)
				}
				if got := porcupine.CheckEventsTimeout(model, opsToEvents(ops), linCheckTimeout); got != want {
					t.Errorf("%s, events: %s, want %s", name, got, want)
				}
			}
		})
	}
}

// fakeTB records a test's failure instead of stopping it.
type fakeTB struct {
	testing.TB
	failed bool
	msg    string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed, f.msg = true, fmt.Sprintf(format, args...)
}
func (f *fakeTB) Errorf(format string, args ...any) { f.Fatalf(format, args...) }

// TestCheckLinearizableReports: checkLinearizable passes a linearizable
// history, and fails an illegal one, naming a visualization file.
func TestCheckLinearizableReports(t *testing.T) {
	for _, tc := range linHistories() {
		if tc.legal {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			tb := &fakeTB{TB: t}
			if res := checkLinearizable(tb, handMade(tc.ops)); res != porcupine.Illegal || !tb.failed {
				t.Fatalf("checkLinearizable = %s, failed %v (%q); want Illegal, failed", res, tb.failed, tb.msg)
			}
			_, path, ok := strings.Cut(tb.msg, "visualization: ")
			if !ok {
				t.Fatalf("failure message %q names no visualization", tb.msg)
			}
			t.Cleanup(func() { os.Remove(path) })
			html, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(html), "<html") || !strings.Contains(string(html), "Get(a)") {
				t.Errorf("%s does not look like a visualization of the history (%d bytes)", path, len(html))
			}
		})
	}
	for _, tc := range linHistories() {
		if !tc.legal {
			continue
		}
		tb := &fakeTB{TB: t}
		if res := checkLinearizable(tb, handMade(tc.ops)); res != porcupine.Ok || tb.failed {
			t.Errorf("%s: checkLinearizable = %s, failed %v (%q); want Ok", tc.name, res, tb.failed, tb.msg)
		}
	}
}

// staleExecutor is a store that answers GET with the value a key had
// before its last PUT or DELETE, as a replica one write behind would: not
// linearizable.
type staleExecutor struct {
	store *store.Store

	mu   sync.Mutex // guards prev
	prev map[string]*string
}

func (e *staleExecutor) Execute(ctx context.Context, op store.Op) (store.Result, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	k := op.Bucket + "/" + op.Key
	switch op.Kind {
	case store.KindGet:
		if p, ok := e.prev[k]; ok {
			if p == nil {
				return store.Result{}, nil // an empty value: the key reads as absent
			}
			return store.Result{Value: *p}, nil
		}
	case store.KindPut, store.KindDelete:
		var old *string
		if r, err := e.store.Execute(ctx, store.Op{Kind: store.KindGet, Bucket: op.Bucket, Key: op.Key}); err == nil {
			old = &r.Value
		}
		res, err := e.store.Execute(ctx, op)
		if err == nil {
			e.prev[k] = old
		}
		return res, err
	}
	return e.store.Execute(ctx, op)
}

// serveExecutor serves ex on a loopback text server until the test ends,
// and returns a dialFunc for it.
func serveExecutor(t *testing.T, ex textproto.Executor) dialFunc {
	t.Helper()
	srv, err := textproto.NewServer(textproto.Config{Executor: ex})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, textproto.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	addr := l.Addr().String()
	return func(ctx context.Context, _, _ int) (*textproto.Client, string, error) {
		cl, err := textproto.Dial(ctx, addr, textproto.WithTimeout(linOpTimeout))
		return cl, "stale", err
	}
}

// TestLinearizableDetectsStaleReads: the workload and the checker together
// catch a server whose reads lag one write behind.
func TestLinearizableDetectsStaleReads(t *testing.T) {
	dial := serveExecutor(t, &staleExecutor{store: store.NewStore(), prev: map[string]*string{}})
	h := runWorkload(t, ctxT(t), dial, 4, []string{"k0", "k1"}, "stale", 500*time.Millisecond)
	tb := &fakeTB{TB: t}
	if res := checkLinearizable(tb, h); res != porcupine.Illegal {
		t.Fatalf("checkLinearizable = %s (%q), want Illegal", res, tb.msg)
	}
	msg, path, ok := strings.Cut(tb.msg, "; visualization: ")
	if ok {
		os.Remove(path)
	}
	t.Logf("detected, as it should be: %s", msg)
}

// TestLinearizableAcrossCrashes: with two replicas on four nodes,
// requests stay linearizable while the bucket's primary is killed, and
// then, once its copies are re-made, the next primary too. Requests in
// flight at a crash have unknown outcomes; none may be half-visible.
func TestLinearizableAcrossCrashes(t *testing.T) {
	c := testcluster.New(t, 4, testcluster.WithReplicas(2))
	ctx := ctxT(t)
	const bucket = "crashy"
	done := make(chan *history, 1)
	go func() {
		done <- runWorkload(t, ctx, clusterDialer(c), 10, []string{"k0", "k1", "k2", "k3"}, bucket, 9*time.Second)
	}()
	primary := func() int {
		var idx int
		c.WaitFor("the bucket to have a primary", func() error {
			for i := range c.Len() {
				if !c.Up(i) {
					continue
				}
				owners, err := c.Node(i).Owners(bucket)
				if err != nil {
					return err
				}
				for j := range c.Len() {
					if c.Up(j) && c.Node(j).ID() == owners[0].ID {
						idx = j
						return nil
					}
				}
			}
			return errors.New("no running node owns it")
		})
		return idx
	}
	start := time.Now()
	for _, at := range []time.Duration{1500 * time.Millisecond, 5 * time.Second} {
		pauseCtx(ctx, time.Until(start.Add(at)))
		victim := primary()
		t.Logf("killing %s, the primary of %s", c.Name(victim), bucket)
		c.Kill(victim)
		c.WaitSettled()
	}
	h := <-done
	if h.Completed(opGet) == 0 || h.Completed(opPut) == 0 {
		t.Errorf("the workload completed %d GETs and %d PUTs, want some of each", h.Completed(opGet), h.Completed(opPut))
	}
	checkLinearizable(t, h)
}
