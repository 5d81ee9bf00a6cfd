package store_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/node/store/storetest"
)

// Versioned writes racing each other and the removal of a copy.

// TestConcurrentVersioned races ApplyEntry, ApplyDrop, Merge, Page, Digest
// and Collect on one bucket (for -race). Whatever the interleaving, the copy
// ends equal to the model of all writes, and its digest matches its entries.
func TestConcurrentVersioned(t *testing.T) {
	const (
		writers = 4
		passes  = 3 // every writer applies its share this often: duplicates are harmless
	)
	r := rand.New(rand.NewPCG(5, 5))
	ops := randomOps(r, 5999, []string{"hot"}) // not a multiple of writers: passes mix shares
	for i := range ops {
		ops[i].v += 1000 // above Collect's cut-off below
	}
	s := store.NewStore()
	// A bucket whose tombstones Collect does remove meanwhile.
	for i := range 500 {
		storetest.MustNil(t, s.ApplyEntry("gc", tomb("k"+strconv.Itoa(i), store.Version(1+i%10))))
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			var batch []store.Entry
			for i := w; i < passes*len(ops); i += writers {
				o := ops[i%len(ops)]
				switch {
				case w == 0 && (o.kind == 'p' || o.kind == 'x'):
					// Writer 0 sends its entries in Merge batches.
					batch = append(batch, o.entry())
					if len(batch) == 16 {
						_, err := s.Merge("hot", store.BucketMeta{}, batch)
						mustNilAsync(t, err)
						batch = batch[:0]
					}
				case o.kind == 'd' && w == 1:
					_, err := s.Merge("hot", store.BucketMeta{Dropped: o.v}, nil)
					mustNilAsync(t, err)
				default:
					mustNilAsync(t, o.apply(s))
				}
			}
			_, err := s.Merge("hot", store.BucketMeta{}, batch)
			mustNilAsync(t, err)
		})
	}
	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Go(func() { // pager
		for {
			select {
			case <-stop:
				return
			default:
			}
			for sh := range store.NumShards {
				after := ""
				for {
					es, more, _ := s.Page("hot", sh, after, 200)
					if !slices.IsSortedFunc(es, func(a, b store.Entry) int { return strings.Compare(a.Key, b.Key) }) {
						t.Errorf("page not sorted: %v", es)
						return
					}
					if !more {
						break
					}
					after = es[len(es)-1].Key
				}
			}
		}
	})
	bg.Go(func() { // digests, stats and garbage collection
		for {
			select {
			case <-stop:
				return
			default:
			}
			s.Digest("hot")
			s.Stats()
			s.Collect(500)
		}
	})
	wg.Wait()
	close(stop)
	bg.Wait()
	want, _ := model(ops, "hot")
	if got, _ := dump(t, s, "hot"); !got.equal(want) {
		t.Errorf("after concurrent writes: %+v\nwant %+v", got, want)
	}
	s.Collect(500)
	if gc, _ := dump(t, s, "gc"); len(gc.Entries) != 0 {
		t.Errorf("gc bucket still holds %d tombstones", len(gc.Entries))
	}
}

func mustNilAsync(t testing.TB, err error) {
	if err != nil {
		t.Errorf("unexpected error: %v", err)
	}
}

// TestConcurrentApplyRemove races versioned writes, Retire and Unretire
// against Remove of the same record (for -race). A write that returned is
// readable unless a Remove overlapped it, and the record left at the end is
// consistent.
func TestConcurrentApplyRemove(t *testing.T) {
	const (
		goroutines = 6
		iterations = 2000
	)
	s := store.NewStore()
	var removesStarted, removesFinished, vanished atomic.Int64
	var next atomic.Uint64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range iterations {
				if (i+g)%5 == 0 {
					removesStarted.Add(1)
					s.Remove("x")
					removesFinished.Add(1)
					continue
				}
				if (i+g)%5 == 1 {
					s.Retire("x")
					s.Unretire("x")
				}
				key := fmt.Sprintf("g%d-%d", g, i)
				f0 := removesFinished.Load()
				err := s.ApplyEntry("x", live(key, "v", store.Version(next.Add(1))))
				if err != nil && !errors.Is(err, store.ErrRetired) {
					t.Errorf("ApplyEntry: %v", err)
					return
				}
				if err != nil {
					continue // retired by another goroutine meanwhile
				}
				if _, err := s.Get("x", key); err != nil {
					if removesStarted.Load() <= f0 {
						t.Errorf("write of %q lost with no Remove overlapping: %v", key, err)
						return
					}
					vanished.Add(1)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d writes removed by an overlapping Remove", vanished.Load())
	if _, ok := s.Meta("x"); ok {
		dump(t, s, "x")
	}
}

// --- benchmarks on one bucket of 100k keys ---

const bigBucketKeys = 100_000
