package testcluster_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dboutique/dboutique/node"
	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/testcluster"
	"github.com/dboutique/dboutique/textproto"
)

// soakDuration returns how long the churn and partition tests run: short
// in `make test`, as long as DBOUTIQUE_SOAK (a Go duration) says in `make
// soak`.
func soakDuration(t *testing.T, short time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv("DBOUTIQUE_SOAK")
	if v == "" {
		return short
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("DBOUTIQUE_SOAK=%q: want a positive Go duration such as 10m", v)
	}
	return d
}

// ledger records, for every key written, the last value a PUT was
// acknowledged with and the values of later PUTs whose outcome is unknown
// (they failed: they may or may not have taken effect).
type ledger struct {
	mu    sync.Mutex
	keys  map[string]*keyRecord // "bucket/key" -> record
	acked atomic.Int64
	unack atomic.Int64
}

type keyRecord struct {
	bucket, key string
	acked       string   // last acknowledged value; "" if none yet
	hasAck      bool     // acked is set
	maybe       []string // values of failed PUTs after the last acknowledged one
}

func newLedger() *ledger { return &ledger{keys: make(map[string]*keyRecord)} }

func (l *ledger) record(bucket, key, value string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.keys[bucket+"/"+key]
	if r == nil {
		r = &keyRecord{bucket: bucket, key: key}
		l.keys[bucket+"/"+key] = r
	}
	if err == nil {
		r.acked, r.hasAck, r.maybe = value, true, nil
		l.acked.Add(1)
		return
	}
	r.maybe = append(r.maybe, value)
	l.unack.Add(1)
}

// verify reads every key with an acknowledged value back and returns how
// many acknowledged values are lost, with a few examples.
func (l *ledger) verify(t *testing.T, ctx context.Context, c *testcluster.Cluster) (checked, lost int, examples []string) {
	t.Helper()
	l.mu.Lock()
	recs := make([]*keyRecord, 0, len(l.keys))
	for _, r := range l.keys {
		if r.hasAck {
			recs = append(recs, r)
		}
	}
	l.mu.Unlock()
	var up []int
	for i := range c.Len() {
		if c.Up(i) {
			up = append(up, i)
		}
	}
	clients := make([]*textproto.Client, len(up))
	for k, i := range up {
		clients[k] = c.Client(i)
	}
	for k, r := range recs {
		cl := clients[k%len(clients)]
		got, err := cl.Get(ctx, r.bucket, r.key)
		checked++
		if err == nil && (got == r.acked || slices.Contains(r.maybe, got)) {
			continue
		}
		lost++
		if len(examples) < 10 {
			examples = append(examples, fmt.Sprintf("%s/%s = %q, %v; acknowledged %q", r.bucket, r.key, got, err, r.acked))
		}
	}
	return checked, lost, examples
}

// writer is one client of the churn test: it writes unique keys (and now
// and then a new value for one of its earlier keys) through random nodes,
// and reads each acknowledged write back.
type writer struct {
	id      int
	c       *testcluster.Cluster
	buckets []string
	l       *ledger
	rng     *rand.Rand
	// overwrite: one write in overwrite (0: none) gives one of the
	// writer's earlier keys a new value.
	overwrite int
	// nodes, if set, lists the nodes the writer may talk to.
	nodes []int

	cl        *textproto.Client
	staleRead atomic.Int64 // read-backs that did not return the acknowledged value
	errors    atomic.Int64
}

func (w *writer) client(ctx context.Context) *textproto.Client {
	if w.cl != nil {
		return w.cl
	}
	for ctx.Err() == nil {
		i := w.rng.IntN(w.c.Len())
		if len(w.nodes) > 0 {
			i = w.nodes[w.rng.IntN(len(w.nodes))]
		}
		if !w.c.Up(i) {
			continue
		}
		cl, err := textproto.Dial(ctx, w.c.Addr(i), textproto.WithTimeout(30*time.Second))
		if err == nil {
			w.cl = cl
			return cl
		}
	}
	return nil
}

func (w *writer) drop() {
	if w.cl != nil {
		_ = w.cl.Close()
		w.cl = nil
	}
}

func (w *writer) run(ctx context.Context) {
	defer w.drop()
	var mine []string // keys written so far
	for seq := 0; ctx.Err() == nil; seq++ {
		cl := w.client(ctx)
		if cl == nil {
			return
		}
		bucket := w.buckets[w.rng.IntN(len(w.buckets))]
		key := fmt.Sprintf("w%d-%d", w.id, seq)
		if len(mine) > 0 && w.overwrite > 0 && w.rng.IntN(w.overwrite) == 0 {
			bk := mine[w.rng.IntN(len(mine))]
			bucket, key, _ = strings.Cut(bk, "/")
		}
		value := fmt.Sprintf("v%d-%d", w.id, seq)
		err := cl.Put(context.WithoutCancel(ctx), bucket, key, value)
		w.l.record(bucket, key, value, err)
		if err != nil {
			w.errors.Add(1)
			if !isReply(err) {
				w.drop() // the connection may be broken: the node stopped
			}
			continue
		}
		if !slices.Contains(mine, bucket+"/"+key) {
			mine = append(mine, bucket+"/"+key)
		}
		got, err := cl.Get(context.WithoutCancel(ctx), bucket, key)
		if err != nil {
			w.errors.Add(1)
			if !isReply(err) {
				w.drop()
			}
			continue
		}
		if got != value {
			w.staleRead.Add(1)
		}
	}
}

// isReply reports whether err is an error reply from a server that is
// still talking, rather than a broken connection.
func isReply(err error) bool {
	var ue *node.UnreachableError
	var se *textproto.ServerError
	return errors.Is(err, node.ErrNoRoute) || errors.Is(err, node.ErrUnavailable) ||
		errors.Is(err, store.ErrBucketNotFound) || errors.As(err, &ue) || errors.As(err, &se)
}

// TestChurnLosesNoAcknowledgedWrite: five nodes with two replicas; 32
// clients write unique keys (and overwrite some) and read them back while
// nodes are killed, restarted, added and gracefully removed, one at a time.
// Afterwards every acknowledged write reads back with its last
// acknowledged value.
func TestChurnLosesNoAcknowledgedWrite(t *testing.T) {
	d := soakDuration(t, 30*time.Second)
	c := testcluster.New(t, 5, testcluster.WithReplicas(2))
	ctx := ctxT(t)
	var buckets []string
	for b := range 12 {
		name := fmt.Sprintf("churn-%d", b)
		if err := c.Client(b%5).Create(ctx, name); err != nil {
			t.Fatal(err)
		}
		buckets = append(buckets, name)
	}
	l := newLedger()
	load, stop := context.WithCancel(context.Background())
	defer stop()
	writers := make([]*writer, 32)
	var wg sync.WaitGroup
	for i := range writers {
		writers[i] = &writer{id: i, c: c, buckets: buckets, l: l, rng: rand.New(rand.NewPCG(uint64(i), 7)), overwrite: 5}
		wg.Go(func() { writers[i].run(load) })
	}

	// Churn: one event at a time, each followed by the cluster settling.
	rng := rand.New(rand.NewPCG(1, 2))
	end := time.Now().Add(d)
	var events []string
	upNodes := func() []int {
		var up []int
		for i := range c.Len() {
			if c.Up(i) {
				up = append(up, i)
			}
		}
		return up
	}
	for step := 0; time.Now().Before(end); step++ {
		up := upNodes()
		victim := up[rng.IntN(len(up))]
		switch step % 4 {
		case 0:
			c.Kill(victim)
			events = append(events, "kill "+c.Name(victim))
			c.WaitSettled()
			c.Restart(victim)
			events = append(events, "restart "+c.Name(victim))
		case 1:
			i := c.Add()
			events = append(events, "add "+c.Name(i))
		case 2:
			if len(up) > 4 {
				c.Leave(victim)
				events = append(events, "leave "+c.Name(victim))
			}
		case 3:
			c.Kill(victim)
			events = append(events, "kill "+c.Name(victim))
			c.WaitSettled()
			if len(up) <= 4 {
				c.Restart(victim)
				events = append(events, "restart "+c.Name(victim))
			}
		}
		c.WaitSettled()
	}
	stop()
	wg.Wait()
	c.WaitReplicated()

	ctx = ctxT(t) // a fresh deadline for reading everything back
	checked, lost, examples := l.verify(t, ctx, c)
	var stale, errs int64
	for _, w := range writers {
		stale += w.staleRead.Load()
		errs += w.errors.Load()
	}
	t.Logf("churn for %v: %d events (%s)", d.Round(time.Second), len(events), strings.Join(events, ", "))
	t.Logf("acknowledged writes: %d; failed writes (outcome unknown): %d; failed requests: %d",
		l.acked.Load(), l.unack.Load(), errs)
	t.Logf("keys checked: %d; acknowledged values lost: %d; read-backs that missed the acknowledged value: %d",
		checked, lost, stale)
	if lost > 0 {
		t.Errorf("%d acknowledged writes lost, for example:\n%s", lost, strings.Join(examples, "\n"))
	}
	if stale > 0 {
		t.Errorf("%d reads right after an acknowledged write did not see it", stale)
	}
	if l.acked.Load() < 1000 {
		t.Errorf("only %d writes acknowledged: the cluster was mostly unavailable", l.acked.Load())
	}
}
