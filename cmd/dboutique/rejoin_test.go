package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dboutique/dboutique/node"
	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/p2p"
	"github.com/dboutique/dboutique/textproto"
)

// Shape and limits of TestRestartedSeedRejoins.
const (
	rejoinBuckets = 20 // buckets written before the seed is killed
	rejoinKeys    = 10 // keys in each bucket
	rejoinClients = 4  // clients reading at once through the restarted seed
	// rejoinReadTimeout bounds the wait, from the restart of the seed, for
	// every acknowledged key to read back through it: it must find a
	// member of its peer book (they are all alive), rejoin, and pull its
	// buckets back.
	rejoinReadTimeout = 15 * time.Second
)

// TestRestartedSeedRejoins follows the README ("Restarting a node") with
// real processes: n1 is the seed (no --join), n2 and n3 join through it,
// each with an identity file. Once n1's peers file lists the other two,
// n1 is killed with SIGKILL and started again with the same identity and
// no --join. From its first answer on, the restarted seed must never say
// NOT FOUND for a bucket that exists nor give a value other than the one
// acknowledged: until it has found its cluster it answers
// ERROR cluster unavailable (or, while views change, one of the transient
// errors); then every key reads back through it, and writes through it
// read back through the other two.
//
// The seed comes back either at once, before the others have noticed that
// it died, or once they have declared it dead and taken over its buckets.
func TestRestartedSeedRejoins(t *testing.T) {
	t.Parallel()
	binary(t) // build first: the deadlines below are for the nodes, not the compiler
	t.Run("at once", func(t *testing.T) { restartSeed(t, false) })
	t.Run("once declared dead", func(t *testing.T) { restartSeed(t, true) })
}

// restartSeed runs one TestRestartedSeedRejoins: when waitDead is set, the
// seed is started again only once n2 and n3 have declared it dead.
func restartSeed(t *testing.T, waitDead bool) {
	began := time.Now()
	dir := t.TempDir()
	identity := func(name string) string { return filepath.Join(dir, name+".key") }
	start := func(name, join string) *walkNode {
		args := []string{"--name", name, "--listen", "127.0.0.1:0", "--replicas", "2",
			"--dead-after", "1s", "--identity", identity(name)}
		if join != "" {
			args = append(args, "--join", join)
		}
		return startWalkNode(t, name, args)
	}
	n1 := start("n1", "")
	n2, n3 := start("n2", n1.peer), start("n3", n1.peer)
	waitView(t, []*walkNode{n1, n2, n3}, false)

	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	acked := fillRejoin(ctx, t, []*walkNode{n1, n2, n3})

	// n1 remembers the other two before it is killed.
	book := identity("n1") + ".peers"
	want := []string{peerIDOf(t, n2.peer), peerIDOf(t, n3.peer)}
	slices.Sort(want)
	poll(t, "n1's peers file to list n2 and n3", func() error {
		b, err := os.ReadFile(book)
		if err != nil {
			return err
		}
		ms, err := parsePeers(string(b))
		if err != nil {
			return fmt.Errorf("%s: %w", book, err)
		}
		var ids []string
		for _, m := range ms {
			ids = append(ids, m.ID)
		}
		slices.Sort(ids)
		if !slices.Equal(ids, want) {
			return fmt.Errorf("%s lists %v, want %v:\n%s", book, ids, want, b)
		}
		return nil
	})

	// kill -9 n1, and start it again with its identity and no --join: it
	// has only its peers file to find its cluster with.
	n1.p.signal(syscall.SIGKILL)
	n1.p.exitCode() // wait until it is gone
	if waitDead {
		waitView(t, []*walkNode{n2, n3}, false)
	}
	restartedAt := time.Now()
	n1 = start("n1", "")
	hammer(t, n1, restartedAt, acked)

	n1.p.waitLine("joined the cluster")
	if n1.p.hasLine("serving on its own") {
		t.Error("the restarted seed served on its own although every member it knew was alive")
	}

	// Writes through the restarted seed, one to each bucket (some have n1
	// as primary, some not), read back through the others.
	c1 := dialClient(t, n1.addr)
	ctx, cancel = context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	for b := range rejoinBuckets {
		bucket := fmt.Sprintf("bucket%d", b)
		if err := retryRefused(ctx, func() error { return c1.Put(ctx, bucket, "after", "restart") }); err != nil {
			t.Fatalf("PUT %s after restart through the restarted n1: %s", bucket, wireReply(err))
		}
	}
	for _, n := range []*walkNode{n2, n3} {
		c := dialClient(t, n.addr)
		poll(t, "the writes through the restarted n1 to read back through "+n.name, func() error {
			for b := range rejoinBuckets {
				bucket := fmt.Sprintf("bucket%d", b)
				if got, err := c.Get(ctx, bucket, "after"); err != nil || got != "restart" {
					return fmt.Errorf("GET %s after = %q, %s; want %q", bucket, got, wireReply(err), "restart")
				}
			}
			return nil
		})
	}
	for _, n := range []*walkNode{n1, n2, n3} {
		n.p.stop()
	}
	t.Logf("the cluster's life took %v", time.Since(began).Round(time.Millisecond))
}

// TestRestartedSeedAloneServesAfterRejoinTimeout: a node started without
// --join whose peers file names only a member that is gone for good
// answers ERROR cluster unavailable while it looks for it, then, once
// --rejoin-timeout has passed, serves on its own and says so in its log.
func TestRestartedSeedAloneServesAfterRejoinTimeout(t *testing.T) {
	t.Parallel()
	binary(t) // build first: the timing checked below is the node's, not the compiler's
	dir := t.TempDir()
	// A member that never existed: a valid peer ID, at an address where
	// nothing listens (port 1 is privileged, and unused).
	key, err := p2p.LoadOrCreateIdentity(filepath.Join(dir, "gone.key"))
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	identity := filepath.Join(dir, "n1.key")
	book := fmt.Sprintf("%s gone /ip4/127.0.0.1/tcp/1\n", id)
	if err := os.WriteFile(identity+".peers", []byte(book), 0o600); err != nil {
		t.Fatal(err)
	}

	const rejoin = time.Second
	started := time.Now()
	n := startWalkNode(t, "n1", []string{"--name", "n1", "--listen", "127.0.0.1:0",
		"--identity", identity, "--rejoin-timeout", rejoin.String()})
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	c := dialClient(t, n.addr)

	// At first: refused, not run.
	_, err = c.Get(ctx, "b", "k")
	answered := time.Since(started)
	switch {
	case errors.Is(err, node.ErrUnavailable):
	case answered >= rejoin:
		// Too late to tell: the node may have given up looking by then.
		t.Fatalf("the first request was answered only %v after the start, later than --rejoin-timeout %v (%s); the machine is too slow for this test",
			answered.Round(time.Millisecond), rejoin, wireReply(err))
	default:
		t.Fatalf("GET b k %v after the start, within --rejoin-timeout: %s, want ERROR cluster unavailable",
			answered.Round(time.Millisecond), wireReply(err))
	}

	// Then, once the rejoin timeout has passed, it serves on its own.
	var refusals int
	poll(t, "the node to serve on its own", func() error {
		err := c.Create(ctx, "b")
		if errors.Is(err, node.ErrUnavailable) {
			refusals++
			return err
		}
		if err != nil {
			t.Fatalf("CREATE b while looking for the cluster: %s, want OK or ERROR cluster unavailable", wireReply(err))
		}
		return nil
	})
	served := time.Since(started)
	t.Logf("refused %d CREATEs; served %v after the start", refusals, served.Round(time.Millisecond))
	if served < rejoin {
		t.Errorf("served %v after the start, before --rejoin-timeout %v", served.Round(time.Millisecond), rejoin)
	}
	if limit := rejoin + 4*time.Second; served > limit {
		t.Errorf("served only %v after the start; want about --rejoin-timeout %v (at most %v)",
			served.Round(time.Millisecond), rejoin, limit)
	}
	if err := c.Put(ctx, "b", "k", "v"); err != nil {
		t.Fatalf("PUT b k v: %s", wireReply(err))
	}
	if got, err := c.Get(ctx, "b", "k"); err != nil || got != "v" {
		t.Fatalf("GET b k = %q, %s; want v", got, wireReply(err))
	}
	line := n.p.waitLine("no member this node knew answered; serving on its own")
	if waited, err := loggedDuration(line, "waited"); err != nil || waited < rejoin {
		t.Errorf("the node says it waited %v (%v) before serving on its own, want at least --rejoin-timeout %v: %s",
			waited, err, rejoin, line)
	}
	if n.p.hasLine("joined the cluster") {
		t.Error(`the node logged "joined the cluster" with no member to join`)
	}
	n.p.stop()
}

// startWalkNode starts dboutique with args and waits for its client and
// peer-to-peer addresses (both are logged before it accepts connections).
func startWalkNode(t *testing.T, name string, args []string) *walkNode {
	t.Helper()
	n := &walkNode{name: name, p: startNode(t, nil, args...)}
	line := n.p.waitLine("Peer address ")
	_, rest, _ := strings.Cut(line, "Peer address ")
	n.peer = strings.Fields(rest)[0]
	n.addr = n.p.addr()
	return n
}

// wireReply returns the reply that an error from the client stands for,
// as the node sent it where that is known.
func wireReply(err error) string {
	switch {
	case err == nil:
		return "OK"
	case errors.Is(err, store.ErrBucketNotFound):
		return "NOT FOUND"
	case errors.Is(err, store.ErrKeyNotFound):
		return "an empty value (no such key)"
	case errors.Is(err, node.ErrUnavailable):
		return "ERROR cluster unavailable"
	case errors.Is(err, node.ErrNoRoute):
		return "ERROR cluster membership is changing, retry"
	}
	return reply(err)
}

// loggedDuration returns the duration logged as field name in line, a
// log line whose fields are JSON ({"waited": "1.001s"}).
func loggedDuration(line, name string) (time.Duration, error) {
	_, rest, ok := strings.Cut(line, `"`+name+`": "`)
	if !ok {
		return 0, fmt.Errorf("no field %q", name)
	}
	v, _, _ := strings.Cut(rest, `"`)
	return time.ParseDuration(v)
}

// peerIDOf returns the peer ID at the end of a peer address
// (".../p2p/<peer ID>").
func peerIDOf(t *testing.T, addr string) string {
	t.Helper()
	_, id, ok := strings.Cut(addr, "/p2p/")
	if !ok || id == "" {
		t.Fatalf("no peer ID in %q", addr)
	}
	return id
}

// refused reports whether err is a reply that a request may get while the
// cluster changes: the node has not found its cluster
// (ERROR cluster unavailable), nodes disagree about who holds the bucket
// (ERROR cluster membership is changing, retry), or its holder did not
// answer (ERROR node X unreachable). A refused request can be tried again.
func refused(err error) bool {
	return errors.Is(err, node.ErrUnavailable) || errors.Is(err, node.ErrNoRoute) || errors.Is(err, node.ErrUnreachable)
}

// retryRefused calls op until it returns anything but a refusal, or ctx ends.
func retryRefused(ctx context.Context, op func() error) error {
	for {
		err := op()
		if !refused(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %w)", ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// fillRejoin creates rejoinBuckets buckets of rejoinKeys keys, each
// bucket through one of nodes in turn, and returns the acknowledged
// values: acked[b][k] is the value of key k in bucket b. A refused
// request is tried again (a CREATE, or a PUT of the same value, can be
// repeated).
func fillRejoin(ctx context.Context, t *testing.T, nodes []*walkNode) [][]string {
	t.Helper()
	clients := make([]*textproto.Client, len(nodes))
	for i, n := range nodes {
		clients[i] = dialClient(t, n.addr)
	}
	acked := make([][]string, rejoinBuckets)
	for b := range acked {
		acked[b] = make([]string, rejoinKeys)
		c, via := clients[b%len(nodes)], nodes[b%len(nodes)].name
		bucket := fmt.Sprintf("bucket%d", b)
		if err := retryRefused(ctx, func() error { return c.Create(ctx, bucket) }); err != nil {
			t.Fatalf("CREATE %s through %s: %s", bucket, via, wireReply(err))
		}
		for k := range rejoinKeys {
			key, value := fmt.Sprintf("k%d", k), fmt.Sprintf("v%d-%d", b, k)
			if err := retryRefused(ctx, func() error { return c.Put(ctx, bucket, key, value) }); err != nil {
				t.Fatalf("PUT %s %s through %s: %s", bucket, key, via, wireReply(err))
			}
			acked[b][k] = value
		}
	}
	return acked
}

// hammer GETs every acknowledged key through n, the restarted seed, from
// the moment it accepts connections: rejoinClients clients at once, each
// going through the keys pass after pass (each from another bucket on),
// until each has had a pass that read every key back with its
// acknowledged value. Every answer must be that value or a refusal (see
// refused); NOT FOUND, an empty value or another value fails the test. So
// does a client that has not read everything back in one pass
// rejoinReadTimeout after restartedAt.
func hammer(t *testing.T, n *walkNode, restartedAt time.Time, acked [][]string) {
	t.Helper()
	deadline := restartedAt.Add(rejoinReadTimeout)
	ctx, cancel := context.WithDeadline(t.Context(), deadline)
	defer cancel()
	clients := make([]*textproto.Client, rejoinClients)
	for i := range clients {
		clients[i] = dialClient(t, n.addr)
	}
	var (
		wg         sync.WaitGroup
		mu         sync.Mutex         // guards the three below
		answers    = map[string]int{} // every answer, by kind
		firstValue time.Duration      // when an acknowledged value was first read, from restartedAt
		errs       []error            // one per client that failed, the first first
	)
	for i, c := range clients {
		wg.Go(func() {
			err := hammerOne(ctx, c, restartedAt, i*rejoinBuckets/rejoinClients, acked, func(answer string) {
				mu.Lock()
				defer mu.Unlock()
				answers[answer]++
				if answer == "the value" && firstValue == 0 {
					firstValue = time.Since(restartedAt)
				}
			})
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("client %d: %w", i, err))
				mu.Unlock()
				cancel() // the others stop too
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		// The first error stopped the other clients, if it was not the
		// deadline.
		t.Fatalf("through the restarted %s: %v; answers: %v", n.name, errs[0], answers)
	}
	t.Logf("every key read back through the restarted %s, by each of %d clients, %v after the restart (the first value %v after); answers: %v",
		n.name, rejoinClients, time.Since(restartedAt).Round(time.Millisecond), firstValue.Round(time.Millisecond), answers)
}

// hammerOne is one client of hammer: it GETs every key of acked through
// c, from bucket first on, pass after pass, calling answered with each
// answer's kind, until a pass reads every key back. It returns an error
// for an answer that is neither the acknowledged value nor a refusal, or
// when ctx ends first.
func hammerOne(ctx context.Context, c *textproto.Client, restartedAt time.Time, first int, acked [][]string, answered func(string)) error {
	for pass := 1; ; pass++ {
		var missing []string // the first few keys that did not read back in this pass
		for i := range acked {
			b := (first + i) % len(acked)
			bucket := fmt.Sprintf("bucket%d", b)
			for k, want := range acked[b] {
				key := fmt.Sprintf("k%d", k)
				got, err := c.Get(ctx, bucket, key)
				switch {
				case err == nil && got == want:
					answered("the value")
					continue
				case refused(err):
					answered(wireReply(err))
				case ctx.Err() != nil:
					return fmt.Errorf("%v after the restart, beyond %v, still no pass in which every key read back (pass %d; the first keys that did not read back in it: %s)",
						time.Since(restartedAt).Round(time.Millisecond), rejoinReadTimeout, pass, strings.Join(missing, "; "))
				case err != nil:
					return fmt.Errorf("GET %s %s %v after the restart (pass %d): %s; want %q or a refusal",
						bucket, key, time.Since(restartedAt).Round(time.Millisecond), pass, wireReply(err), want)
				default:
					return fmt.Errorf("GET %s %s %v after the restart (pass %d): %q; want %q or a refusal",
						bucket, key, time.Since(restartedAt).Round(time.Millisecond), pass, got, want)
				}
				if len(missing) < 5 {
					missing = append(missing, fmt.Sprintf("GET %s %s: %s", bucket, key, wireReply(err)))
				}
			}
		}
		if len(missing) == 0 {
			return nil
		}
	}
}
