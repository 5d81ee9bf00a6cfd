package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/node/store/storetest"
)

// These tests are meant for -race: they check invariants after (and during)
// concurrent use, never timing.

// TestConcurrentOwnKeys: goroutines write, read and delete their own keys in
// a shared bucket nobody drops and in buckets of their own, while others list
// keys and buckets and churn unrelated buckets. Every goroutine reads its own
// writes, and afterwards the shared bucket holds exactly each goroutine's
// last values.
func TestConcurrentOwnKeys(t *testing.T) {
	const (
		writers    = 8
		iterations = 400
		keysEach   = 16
	)
	s := store.NewStore()
	storetest.MustNil(t, s.Create("shared"))
	ctx := context.Background()

	finals := make([]map[string]string, writers) // per writer: key -> last value, "" if deleted
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			own := "own-" + strconv.Itoa(g)
			if err := s.Create(own); err != nil {
				t.Errorf("Create(%q): %v", own, err)
				return
			}
			last := make(map[string]string)
			for i := range iterations {
				k := fmt.Sprintf("g%d-k%d", g, i%keysEach)
				v := fmt.Sprintf("v%d", i)
				// Half the writes go through Execute, half through the methods.
				var err error
				if i%2 == 0 {
					_, err = s.Execute(ctx, storetest.Put("shared", k, v))
				} else {
					err = s.Put("shared", k, v)
				}
				if err != nil {
					t.Errorf("Put(shared, %q): %v", k, err)
					return
				}
				if err := s.Put(own, k, v); err != nil {
					t.Errorf("Put(%q, %q): %v", own, k, err)
					return
				}
				last[k] = v
				if got, err := s.Get("shared", k); err != nil || got != v {
					t.Errorf("Get(shared, %q) right after Put = %q, %v; want %q", k, got, err, v)
					return
				}
				if i%5 == 0 {
					dk := fmt.Sprintf("g%d-k%d", g, (i/5)%keysEach)
					if err := s.Delete("shared", dk); err != nil {
						t.Errorf("Delete(shared, %q): %v", dk, err)
						return
					}
					last[dk] = ""
					if _, err := s.Get("shared", dk); !errors.Is(err, store.ErrKeyNotFound) {
						t.Errorf("Get(shared, %q) right after Delete: %v, want ErrKeyNotFound", dk, err)
						return
					}
				}
			}
			// The own bucket saw every write but no delete.
			if n, err := s.Len(own); err != nil || n != keysEach {
				t.Errorf("Len(%q) = %d, %v; want %d", own, n, err, keysEach)
			}
			finals[g] = last
		})
	}

	// Readers and churners run until the writers are done.
	stop := make(chan struct{})
	var bg sync.WaitGroup
	for r := range 2 {
		bg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				ks, err := s.Keys("shared")
				if err != nil {
					t.Errorf("Keys(shared): %v", err)
					return
				}
				if !slices.IsSorted(ks) {
					t.Errorf("Keys(shared) not sorted: %q", ks)
					return
				}
				if _, err := s.Len("shared"); err != nil {
					t.Errorf("Len(shared): %v", err)
					return
				}
				bs := s.Buckets()
				if !slices.IsSorted(bs) || !slices.Contains(bs, "shared") {
					t.Errorf("Buckets() = %q: want sorted and holding shared", bs)
					return
				}
				// Another goroutine's key: absent, or one of the values it writes.
				res, err := s.Execute(ctx, storetest.Get("shared", fmt.Sprintf("g%d-k0", r)))
				if err != nil && !errors.Is(err, store.ErrKeyNotFound) || err == nil && !strings.HasPrefix(res.Value, "v") {
					t.Errorf("Execute(GET shared) = %+v, %v", res, err)
					return
				}
			}
		})
	}
	for c := range 2 {
		bg.Go(func() {
			name := "churn-" + strconv.Itoa(c)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := s.Create(name); err != nil {
					t.Errorf("Create(%q): %v", name, err)
					return
				}
				// Only this goroutine touches its churn bucket.
				if err := s.Put(name, "k", strconv.Itoa(i)); err != nil {
					t.Errorf("Put(%q) after Create: %v", name, err)
					return
				}
				if err := s.Drop(name); err != nil {
					t.Errorf("Drop(%q): %v", name, err)
					return
				}
				if _, err := s.Get(name, "k"); !errors.Is(err, store.ErrBucketNotFound) {
					t.Errorf("Get(%q) after Drop: %v, want ErrBucketNotFound", name, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	bg.Wait()
	if t.Failed() {
		return
	}

	var want []string
	for g, last := range finals {
		for k, v := range last {
			got, err := s.Get("shared", k)
			switch {
			case v == "" && !errors.Is(err, store.ErrKeyNotFound):
				t.Errorf("writer %d: deleted key %q reads %q, %v", g, k, got, err)
			case v != "" && (err != nil || got != v):
				t.Errorf("writer %d: key %q reads %q, %v; want %q", g, k, got, err, v)
			}
			if v != "" {
				want = append(want, k)
			}
		}
		own := "own-" + strconv.Itoa(g)
		for k := range last {
			// the own bucket has every key's last written value
			if _, err := s.Get(own, k); err != nil {
				t.Errorf("Get(%q, %q): %v", own, k, err)
			}
		}
	}
	slices.Sort(want)
	if got, err := s.Keys("shared"); err != nil || !slices.Equal(got, want) {
		t.Errorf("Keys(shared) = %q, %v; want %q", got, err, want)
	}
	wantBuckets := []string{"shared"}
	for g := range writers {
		wantBuckets = append(wantBuckets, "own-"+strconv.Itoa(g))
	}
	slices.Sort(wantBuckets)
	if got := s.Buckets(); !slices.Equal(got, wantBuckets) {
		t.Errorf("Buckets() = %q, want %q", got, wantBuckets)
	}
}

// TestConcurrentCreateSameBucket: creators racing on one name all succeed and
// share one bucket; no Create replaces a bucket another already wrote to.
func TestConcurrentCreateSameBucket(t *testing.T) {
	const (
		goroutines = 8
		names      = 2000
	)
	s := store.NewStore()
	start := make(chan struct{})
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			<-start
			key := strconv.Itoa(g)
			for n := range names {
				name := strconv.Itoa(n)
				if err := s.Create(name); err != nil {
					t.Errorf("Create(%q): %v", name, err)
					return
				}
				if err := s.Put(name, key, "v"); err != nil {
					t.Errorf("Put(%q) after Create: %v", name, err)
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	for n := range names {
		name := strconv.Itoa(n)
		if got, err := s.Len(name); err != nil || got != goroutines {
			t.Fatalf("Len(%q) = %d, %v; want %d (a Create replaced a bucket in use)", name, got, err, goroutines)
		}
	}
}

// TestConcurrentCreateDrop races Create, Put and Get against Drop on one name.
//
// What the store guarantees: Create never fails for a valid name, and it is
// linearizable with Drop. So a Put right after a successful Create may find
// the bucket gone only if some Drop overlapped the two calls; once every Drop
// has finished, Create followed by Put always succeeds. Drop of a bucket
// that is gone is ErrBucketNotFound, never anything else.
func TestConcurrentCreateDrop(t *testing.T) {
	const (
		goroutines = 8
		iterations = 1500
	)
	s := store.NewStore()
	// dropsStarted counts Drop calls about to begin, dropsFinished those that
	// returned. A Drop overlapped [t0, t1] only if it started before t1 and
	// had not finished at t0, so only if started(t1) > finished(t0).
	var dropsStarted, dropsFinished, dropsDone atomic.Int64
	var overlapped atomic.Int64 // failures explained by an overlapping Drop

	// Every goroutine mixes drops (one op in four) into its create-put-get
	// cycles, so that on few CPUs drops still interleave with the others.
	dropOnce := func() bool {
		dropsStarted.Add(1)
		err := s.Drop("x")
		dropsFinished.Add(1)
		if err == nil {
			dropsDone.Add(1)
		} else if !errors.Is(err, store.ErrBucketNotFound) {
			t.Errorf("Drop: %v, want nil or ErrBucketNotFound", err)
			return false
		}
		return true
	}
	createPutGet := func(key, v string) bool {
		f0 := dropsFinished.Load()
		if err := s.Create("x"); err != nil {
			t.Errorf("Create: %v", err)
			return false
		}
		err := s.Put("x", key, v)
		if err != nil {
			if !errors.Is(err, store.ErrBucketNotFound) {
				t.Errorf("Put after Create: %v, want nil or ErrBucketNotFound", err)
				return false
			}
			if dropsStarted.Load() <= f0 {
				t.Errorf("Put after a successful Create failed with no Drop overlapping: %v", err)
				return false
			}
			overlapped.Add(1)
			return true
		}
		// Only this goroutine writes key: a Get sees v, or no key in a
		// bucket created after a Drop, or no bucket.
		got, err := s.Get("x", key)
		switch {
		case err == nil:
			if got != v {
				t.Errorf("Get(x, %q) = %q, want %q", key, got, v)
				return false
			}
		case errors.Is(err, store.ErrBucketNotFound), errors.Is(err, store.ErrKeyNotFound):
			if dropsStarted.Load() <= f0 {
				t.Errorf("Get after Put failed with no Drop overlapping: %v", err)
				return false
			}
		default:
			t.Errorf("Get: %v", err)
			return false
		}
		return true
	}
	list := func() bool {
		// The only name ever created is x; listings are sorted.
		bs := s.Buckets()
		if len(bs) > 1 || (len(bs) == 1 && bs[0] != "x") {
			t.Errorf("Buckets() = %q, want at most [x]", bs)
			return false
		}
		ks, err := s.Keys("x")
		if err != nil && !errors.Is(err, store.ErrBucketNotFound) {
			t.Errorf("Keys(x): %v", err)
			return false
		}
		if !slices.IsSorted(ks) {
			t.Errorf("Keys(x) not sorted: %q", ks)
			return false
		}
		return true
	}

	start := make(chan struct{})
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			<-start
			key := "k" + strconv.Itoa(g)
			for i := range iterations {
				var ok bool
				switch (i + g) % 8 {
				case 0, 4:
					ok = dropOnce()
				case 1:
					ok = list()
				default:
					ok = createPutGet(key, strconv.Itoa(i))
				}
				if !ok {
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	t.Logf("%d of %d drops succeeded; %d puts found the bucket dropped under them", dropsDone.Load(), dropsStarted.Load(), overlapped.Load())

	// Quiescent again: the store is in a consistent state.
	if bs := s.Buckets(); len(bs) == 1 {
		if _, err := s.Len("x"); err != nil {
			t.Errorf("Buckets lists x but Len(x): %v", err)
		}
		storetest.MustNil(t, s.Drop("x"))
	} else if len(bs) != 0 {
		t.Errorf("Buckets() = %q", bs)
	} else if _, err := s.Len("x"); !errors.Is(err, store.ErrBucketNotFound) {
		t.Errorf("Buckets lists nothing but Len(x): %v", err)
	}
	storetest.MustNil(t, s.Create("x"))
	storetest.MustNil(t, s.Put("x", "k", "v"))
	if ks, err := s.Keys("x"); err != nil || !slices.Equal(ks, []string{"k"}) {
		t.Errorf("Keys(x) after drop and create = %q, %v; want [k]", ks, err)
	}
}

// TestConcurrentBucketLifecycles: goroutines each run whole bucket lifecycles
// on buckets of their own while sharing the directory with the others.
func TestConcurrentBucketLifecycles(t *testing.T) {
	const (
		goroutines = 8
		cycles     = 100
	)
	s := store.NewStore()
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for c := range cycles {
				name := fmt.Sprintf("g%d-b%d", g, c%3)
				steps := []step{
					ok(storetest.Create(name)),
					names(storetest.Keys(name)),
					ok(storetest.Put(name, "a", "1")),
					ok(storetest.Put(name, "b", "2")),
					ok(storetest.Del(name, "a")),
					value(storetest.Get(name, "b"), "2"),
					missingKey(storetest.Get(name, "a")),
					names(storetest.Keys(name), "b"),
					ok(storetest.Drop(name)),
					notFound(storetest.Get(name, "b")),
					notFound(storetest.Drop(name)),
				}
				for i, st := range steps {
					got, err := s.Execute(ctx, st.op)
					if !errors.Is(err, st.wantErr) {
						t.Errorf("%s: %s: err = %v, want %v", name, stepName(i, st.op), err, st.wantErr)
						return
					}
					if got.Value != st.want.Value || !slices.Equal(got.Names, st.want.Names) {
						t.Errorf("%s: %s: got %+v, want %+v", name, stepName(i, st.op), got, st.want)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if bs := s.Buckets(); len(bs) != 0 {
		t.Errorf("Buckets() = %q after every bucket was dropped", bs)
	}
}
