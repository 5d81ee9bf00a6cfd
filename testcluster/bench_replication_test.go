package testcluster_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/testcluster"
)

// Benchmarks of replication: moving buckets to a node that joins,
// re-making the copies of a node that dies, and the cost of replicating
// writes.
//
// BenchmarkRebalanceJoin and BenchmarkRepairAfterKill build a cluster and
// load it in every iteration, which takes longer than what they measure;
// run them once each with -benchtime 1x:
//
//	go test -run '^$' -bench 'RebalanceJoin|RepairAfterKill' -benchtime 1x -benchmem ./testcluster
//
// With more iterations every cluster stays in memory until the benchmark
// ends (the harness stops clusters at cleanup), and the metrics are means.

// replWaitTimeout bounds the waits of these benchmarks that may take longer
// than testcluster.WaitTimeout on a slow machine: a million keys to move.
const replWaitTimeout = 5 * time.Minute

// replValueSize is the size of every value the benchmarks load.
const replValueSize = 100

// BenchmarkRebalanceJoin measures how long a fourth node takes to get its
// share of a 3-node cluster (replicas 2) holding keys=N keys in 1000
// buckets, values of 100 bytes. It reports:
//   - converge-s: from Add until every node sees the new one (Add itself);
//   - settle-s: from Add until every node has moved its copies where the
//     new view wants them (node.Settled); the rates below use it;
//   - replicated-s: from Add until every copy is where the ring puts it
//     and identical (WaitReplicated, which also compares digests);
//   - keys-moved: the keys the new node holds afterwards;
//   - keys-copied, keys-removed: keys of the bucket copies that appeared
//     on, or left, any node (the placement bounds loads, so a join also
//     moves some buckets between old nodes);
//   - keys/s, MB/s: keys-copied, and their keys' and values' bytes, per
//     settle-s;
//   - heap-before-MB, peak-heap-MB, heap-after-MB: the heap after a GC
//     before the move, its peak during the move (sampled every 50 ms) and
//     after a GC once replicated. Every node runs in this process, so it
//     is the whole cluster's heap; the loader shares each value between
//     its two copies.
func BenchmarkRebalanceJoin(b *testing.B) {
	for _, size := range []struct {
		name           string
		buckets, perBk int
	}{
		{"keys=100k", 1000, 100},
		{"keys=1M", 1000, 1000},
	} {
		b.Run(size.name, func(b *testing.B) {
			var sum struct {
				converge, settle, replicated    float64
				moved, copied, removed, bytes   float64
				heapBefore, heapPeak, heapAfter float64
			}
			for range b.N {
				// Setup, not timed: the cluster, loaded straight into the
				// owners' stores, and checked consistent.
				b.StopTimer()
				c := testcluster.New(b, 3, testcluster.WithReplicas(2))
				replLoad(b, c, size.buckets, size.perBk)
				replWaitReplicated(b, c, "loaded")
				before := replCopies(c)
				keyBytes := replBytesPerKey(c)
				runtime.GC()
				heapBefore := replHeap()
				sampler := replStartHeapSampler()

				// Timed: the join and the move.
				b.StartTimer()
				start := time.Now()
				added := c.Add()
				converge := time.Since(start)
				replWaitSettled(b, c)
				settle := time.Since(start)
				b.StopTimer()
				replWaitReplicated(b, c, "settled")
				replicated := time.Since(start)
				peak := sampler.stop()
				runtime.GC()
				heapAfter := replHeap()

				after := replCopies(c)
				copied, removed := replDiff(before, after)
				sum.converge += converge.Seconds()
				sum.settle += settle.Seconds()
				sum.replicated += replicated.Seconds()
				sum.moved += float64(replKeys(after[added]))
				sum.copied += float64(copied)
				sum.removed += float64(removed)
				sum.bytes += float64(copied) * keyBytes
				sum.heapBefore += float64(heapBefore)
				sum.heapPeak += float64(peak)
				sum.heapAfter += float64(heapAfter)
			}
			n := float64(b.N)
			b.ReportMetric(sum.converge/n, "converge-s")
			b.ReportMetric(sum.settle/n, "settle-s")
			b.ReportMetric(sum.replicated/n, "replicated-s")
			b.ReportMetric(sum.moved/n, "keys-moved")
			b.ReportMetric(sum.copied/n, "keys-copied")
			b.ReportMetric(sum.removed/n, "keys-removed")
			b.ReportMetric(sum.copied/sum.settle, "keys/s")
			b.ReportMetric(sum.bytes/(1<<20)/sum.settle, "MB/s")
			b.ReportMetric(sum.heapBefore/n/(1<<20), "heap-before-MB")
			b.ReportMetric(sum.heapPeak/n/(1<<20), "peak-heap-MB")
			b.ReportMetric(sum.heapAfter/n/(1<<20), "heap-after-MB")
		})
	}
}

// BenchmarkRepairAfterKill measures how long a 4-node cluster (replicas 2)
// holding 200k keys in 1000 buckets takes to have two copies of every
// bucket again after one node crashes. It reports:
//   - detect-s: from Kill until the others drop it from their view (the
//     failure detector: testcluster's default of 2 s of silence);
//   - repair-s: from then until every bucket is fully replicated again;
//   - keys-on-dead: the keys the dead node held;
//   - keys-recopied, keys-removed: keys of the bucket copies that
//     appeared on, or left, the survivors (the placement bounds loads, so
//     some buckets move between survivors too);
//   - keys/s: keys-recopied per repair-s.
func BenchmarkRepairAfterKill(b *testing.B) {
	const buckets, perBk, victim = 1000, 200, 3
	var sum struct{ detect, repair, dead, recopied, removed float64 }
	for range b.N {
		b.StopTimer()
		c := testcluster.New(b, 4, testcluster.WithReplicas(2))
		replLoad(b, c, buckets, perBk)
		replWaitReplicated(b, c, "loaded")
		before := replCopies(c)

		b.StartTimer()
		start := time.Now()
		c.Kill(victim)
		c.WaitConverged()
		detect := time.Since(start)
		replWaitSettled(b, c)
		replWaitReplicated(b, c, "settled")
		total := time.Since(start)
		b.StopTimer()

		after := replCopies(c)
		dead := replKeys(before[victim])
		before[victim] = nil // its copies are lost, not removed
		recopied, removed := replDiff(before, after)
		sum.detect += detect.Seconds()
		sum.repair += (total - detect).Seconds()
		sum.dead += float64(dead)
		sum.recopied += float64(recopied)
		sum.removed += float64(removed)
	}
	n := float64(b.N)
	b.ReportMetric(sum.detect/n, "detect-s")
	b.ReportMetric(sum.repair/n, "repair-s")
	b.ReportMetric(sum.dead/n, "keys-on-dead")
	b.ReportMetric(sum.recopied/n, "keys-recopied")
	b.ReportMetric(sum.removed/n, "keys-removed")
	b.ReportMetric(sum.recopied/sum.repair, "keys/s")
}

// BenchmarkPutReplicas measures PUT through one node's client port on a
// 3-node cluster holding each bucket on 1, 2 or 3 nodes, with runLoad as
// BenchmarkClientPort uses it: 50 clients, each waiting for every reply
// (p1) or keeping 16 requests in flight (p16). Every PUT goes to one key
// of a bucket whose primary is the node the clients talk to, so no request
// is forwarded and the differences between replica counts are the cost of
// replication (with replicas=1 nothing is replicated). Run it with
// -benchtime 2s; the cluster is built once per replica count.
func BenchmarkPutReplicas(b *testing.B) {
	const clients = 50
	for replicas := 1; replicas <= 3; replicas++ {
		b.Run(fmt.Sprintf("replicas=%d", replicas), func(b *testing.B) {
			c := testcluster.New(b, 3, testcluster.WithReplicas(replicas))
			bucket := replPrimaryBucket(b, c, 0)
			ctx := context.Background()
			if err := c.Client(0).Create(ctx, bucket); err != nil {
				b.Fatal(err)
			}
			if err := c.Client(0).Put(ctx, bucket, "k", "value-of-k"); err != nil {
				b.Fatal(err)
			}
			req := fmt.Sprintf("PUT %s k value-of-k\r\n", bucket)
			for _, depth := range []int{1, 16} {
				b.Run(fmt.Sprintf("p%d", depth), func(b *testing.B) {
					runLoad(b, c.Addr(0), clients, depth, req, 1)
				})
			}
		})
	}
}

// replPrimaryBucket returns the name of a bucket whose primary (first
// owner) is node i.
func replPrimaryBucket(b *testing.B, c *testcluster.Cluster, i int) string {
	b.Helper()
	nd := c.Node(i)
	for k := range 10000 {
		name := fmt.Sprintf("bench%d", k)
		owners, err := nd.Owners(name)
		if err != nil {
			b.Fatalf("owners of %q: %v", name, err)
		}
		if owners[0].ID == nd.ID() {
			return name
		}
	}
	b.Fatalf("no bucket of 10000 has node %d as its primary", i)
	return ""
}

// replLoad fills the cluster with buckets x perBucket keys, values of
// replValueSize bytes, written straight into the stores of each bucket's
// owners (not through the primary, so that loading takes seconds). Every
// owner gets the same versions, taken from the primary's clock, so the
// copies are identical.
func replLoad(b *testing.B, c *testcluster.Cluster, buckets, perBucket int) {
	b.Helper()
	stores := make(map[string]*store.Store) // peer ID -> store
	for i := range c.Len() {
		if c.Up(i) {
			stores[c.Node(i).ID()] = c.Node(i).Store()
		}
	}
	owners := make([][]*store.Store, buckets)
	for k := range buckets {
		ms, err := c.Node(0).Owners(replBucket(k))
		if err != nil {
			b.Fatalf("owners of %q: %v", replBucket(k), err)
		}
		for _, m := range ms {
			s := stores[m.ID]
			if s == nil {
				b.Fatalf("owner %s of %q is not running", m.Name, replBucket(k))
			}
			owners[k] = append(owners[k], s)
		}
	}
	workers := runtime.GOMAXPROCS(0)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			value := make([]byte, replValueSize)
			for k := w; k < buckets; k += workers {
				if err := replLoadBucket(replBucket(k), owners[k], perBucket, value); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
}

// replLoadBucket writes one bucket to its owners' stores; the first is the
// primary, whose clock versions the writes. value is scratch space.
func replLoadBucket(bucket string, owners []*store.Store, keys int, value []byte) error {
	clock := owners[0].Clock()
	created := clock.Now()
	for _, s := range owners {
		if err := s.ApplyCreate(bucket, created); err != nil {
			return fmt.Errorf("create %q: %w", bucket, err)
		}
	}
	for j := range keys {
		key := fmt.Sprintf("key%07d", j)
		for i := range value {
			value[i] = 'a' + byte((i+j)%26)
		}
		copy(value, bucket+"/"+key+"=")
		e := store.Entry{Key: key, Value: string(value), Version: clock.Now()}
		for _, s := range owners {
			if err := s.ApplyEntry(bucket, e); err != nil {
				return fmt.Errorf("put %q/%q: %w", bucket, key, err)
			}
		}
	}
	return nil
}

func replBucket(k int) string { return fmt.Sprintf("bucket%04d", k) }

// replCopies returns, for every node (indexed like the cluster's), the
// live keys of each bucket copy it holds; a node that is down holds none.
func replCopies(c *testcluster.Cluster) []map[string]int {
	copies := make([]map[string]int, c.Len())
	for i := range copies {
		if !c.Up(i) {
			continue
		}
		s := c.Node(i).Store()
		copies[i] = make(map[string]int)
		for _, bk := range s.Records() {
			if n, err := s.Len(bk); err == nil {
				copies[i][bk] = n
			}
		}
	}
	return copies
}

// replDiff returns the keys of the copies that after holds and before does
// not (copied), and those that before holds and after does not (removed),
// over every node of before. Copies move whole, so comparing which node
// holds which bucket counts what moved.
func replDiff(before, after []map[string]int) (copied, removed int) {
	for i, a := range after {
		var bf map[string]int
		if i < len(before) {
			bf = before[i]
		}
		for bk, n := range a {
			if _, ok := bf[bk]; !ok {
				copied += n
			}
		}
		for bk, n := range bf {
			if _, ok := a[bk]; !ok {
				removed += n
			}
		}
	}
	return copied, removed
}

// replKeys returns the keys of one node's copies.
func replKeys(copies map[string]int) int {
	n := 0
	for _, k := range copies {
		n += k
	}
	return n
}

// replBytesPerKey returns the mean bytes of a key and its value over the
// cluster's stores.
func replBytesPerKey(c *testcluster.Cluster) float64 {
	var keys int
	var bytes int64
	for i := range c.Len() {
		if c.Up(i) {
			st := c.Node(i).Store().Stats()
			keys += st.Keys
			bytes += st.Bytes
		}
	}
	if keys == 0 {
		return 0
	}
	return float64(bytes) / float64(keys)
}

// replWaitSettled is testcluster's WaitSettled with a longer deadline
// (replWaitTimeout): moving a million keys may take longer than
// testcluster.WaitTimeout on a slow machine.
func replWaitSettled(b *testing.B, c *testcluster.Cluster) {
	b.Helper()
	deadline := time.Now().Add(replWaitTimeout)
	for err := c.Settled(); err != nil; err = c.Settled() {
		if time.Now().After(deadline) {
			b.Fatalf("gave up waiting %v for the nodes to settle: %v", replWaitTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// replWaitReplicated is testcluster's WaitReplicated with a longer
// deadline (replWaitTimeout): it polls until the nodes are settled and
// every copy is where the ring puts it and identical to the other owners'.
// state says what should already imply it ("loaded": the loader wrote
// every copy; "settled": the nodes said so); when it does not at once, the
// benchmark logs why and how long it took. It ends with WaitReplicated.
func replWaitReplicated(b *testing.B, c *testcluster.Cluster, state string) {
	b.Helper()
	start := time.Now()
	deadline := start.Add(replWaitTimeout)
	first := c.Replicated()
	for err := first; err != nil; err = c.Replicated() {
		if time.Now().After(deadline) {
			b.Fatalf("gave up waiting %v for every bucket to have all its copies: %v", replWaitTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if first != nil {
		b.Logf("%s, but copies were not all in place (%v); they were %v later", state, first, time.Since(start))
	}
	c.WaitReplicated()
}

// replHeap returns the bytes of allocated heap objects.
func replHeap() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// replHeapSampler records the greatest heap size it sees, every 50 ms,
// until stop.
type replHeapSampler struct {
	done chan struct{}
	peak chan uint64
}

func replStartHeapSampler() *replHeapSampler {
	s := &replHeapSampler{done: make(chan struct{}), peak: make(chan uint64)}
	go func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		peak := replHeap()
		for {
			select {
			case <-t.C:
				peak = max(peak, replHeap())
			case <-s.done:
				s.peak <- max(peak, replHeap())
				return
			}
		}
	}()
	return s
}

// stop ends the sampling and returns the peak.
func (s *replHeapSampler) stop() uint64 {
	close(s.done)
	return <-s.peak
}
