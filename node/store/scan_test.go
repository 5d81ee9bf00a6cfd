package store_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dboutique/dboutique/node/store"
)

// plain returns the name of the plain bucket that holds key, as textproto
// names them.
func plain(key string) string {
	return fmt.Sprintf("%s%d", store.PlainBucketPrefix, store.NameHash(key)%256)
}

// setPlain sets a plain key, as RESP's SET does.
func setPlain(t testing.TB, s *store.Store, key string) {
	t.Helper()
	if _, err := s.Execute(context.Background(), store.Op{Kind: store.KindPutCreate, Bucket: plain(key), Key: key, Value: "v"}); err != nil {
		t.Fatal(err)
	}
}

func mustCreate(t testing.TB, s *store.Store, bucket string) {
	t.Helper()
	if err := s.Create(bucket); err != nil {
		t.Fatal(err)
	}
}

// typed is a name with its type, for comparing listings.
type typed struct {
	name string
	typ  store.NameType
}

func typedOf(items []store.ScanItem) []typed {
	out := make([]typed, len(items))
	for i, it := range items {
		out[i] = typed{it.Name, it.Type}
	}
	return out
}

// scanAll iterates s.Scan from cursor 0 to the end with count per page and
// returns every item listed, in order, checking that each page moves on.
func scanAll(t testing.TB, s *store.Store, r store.ScanRequest) []typed {
	t.Helper()
	var out []typed
	r.Cursor = 0
	for range 100000 {
		p, err := s.Scan(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, typedOf(p.Items)...)
		if p.Next == 0 {
			return out
		}
		if p.Next <= r.Cursor {
			t.Fatalf("cursor went from %d to %d", r.Cursor, p.Next)
		}
		r.Cursor = p.Next
	}
	t.Fatal("the scan did not end")
	return nil
}

// sortedTyped sorts names as listings order them.
func sortedTyped(ns []typed) []typed {
	slices.SortFunc(ns, func(a, b typed) int {
		ha, hb := store.NameHash(a.name), store.NameHash(b.name)
		switch {
		case ha != hb:
			if ha < hb {
				return -1
			}
			return 1
		case a.name != b.name:
			if a.name < b.name {
				return -1
			}
			return 1
		}
		return int(a.typ) - int(b.typ)
	})
	return ns
}

// TestScanLists: table tests of what a store lists: buckets as hashes,
// the keys of plain buckets as strings, nothing dropped, deleted or
// reserved, each filter, and the order.
func TestScanLists(t *testing.T) {
	s := store.NewStore()
	for _, b := range []string{"fruit", "veg", "both", "empty"} {
		mustCreate(t, s, b)
	}
	mustCreate(t, s, "gone")
	if err := s.Drop("gone"); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, "\x00other") // reserved, and not a plain bucket: holds no names
	if err := s.Put("\x00other", "hidden", "v"); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"both", "k1", "k2", "deleted", ""} {
		setPlain(t, s, k)
	}
	if err := s.Delete(plain("deleted"), "deleted"); err != nil {
		t.Fatal(err)
	}
	h := func(ns ...string) []typed {
		var out []typed
		for _, n := range ns {
			out = append(out, typed{n, store.TypeHash})
		}
		return out
	}
	str := func(ns ...string) []typed {
		var out []typed
		for _, n := range ns {
			out = append(out, typed{n, store.TypeString})
		}
		return out
	}
	all := append(h("fruit", "veg", "both", "empty"), str("both", "k1", "k2", "")...)
	for _, tc := range []struct {
		name string
		r    store.ScanRequest
		want []typed
	}{
		{"everything", store.ScanRequest{Count: 1000}, all},
		{"star is everything, the empty name too", store.ScanRequest{Count: 1000, Match: "*"}, all},
		{"hashes", store.ScanRequest{Count: 1000, Type: store.TypeHash}, h("fruit", "veg", "both", "empty")},
		{"strings", store.ScanRequest{Count: 1000, Type: store.TypeString}, str("both", "k1", "k2", "")},
		{"another type", store.ScanRequest{Count: 1000, Type: store.TypeOther}, nil},
		{"match", store.ScanRequest{Count: 1000, Match: "k?"}, str("k1", "k2")},
		{"match both types", store.ScanRequest{Count: 1000, Match: "b*"}, append(h("both"), str("both")...)},
		{"match and type", store.ScanRequest{Count: 1000, Match: "b*", Type: store.TypeString}, str("both")},
		{"match nothing", store.ScanRequest{Count: 1000, Match: "zz*"}, nil},
		{"double star is not every name", store.ScanRequest{Count: 1000, Match: "**"}, append(h("fruit", "veg", "both", "empty"), str("both", "k1", "k2")...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := scanAll(t, s, tc.r)
			if want := sortedTyped(slices.Clone(tc.want)); !slices.Equal(got, want) {
				t.Errorf("listed %v\nwant %v", got, want)
			}
			for _, count := range []int{1, 2, 3} {
				r := tc.r
				r.Count = count
				if got := scanAll(t, s, r); !slices.Equal(got, sortedTyped(slices.Clone(tc.want))) {
					t.Errorf("count %d: listed %v", count, got)
				}
			}
			n, _ := s.DBSize(context.Background())
			if tc.name == "everything" && n != len(tc.want) {
				t.Errorf("DBSize = %d, want %d", n, len(tc.want))
			}
		})
	}
}

// TestScanCursor: a cursor is a hash: a page from it lists the names whose
// hash is at least the cursor, and its Next is one past the last one's.
func TestScanCursor(t *testing.T) {
	s := store.NewStore()
	var ns []typed
	for i := range 50 {
		b := fmt.Sprintf("b%02d", i)
		mustCreate(t, s, b)
		ns = append(ns, typed{b, store.TypeHash})
	}
	ns = sortedTyped(ns)
	ctx := context.Background()
	for i := range ns {
		cur := store.NameHash(ns[i].name)
		p, err := s.Scan(ctx, store.ScanRequest{Cursor: cur, Count: 3})
		if err != nil {
			t.Fatal(err)
		}
		want := ns[i:min(i+3, len(ns))]
		if got := typedOf(p.Items); !slices.Equal(got, want) {
			t.Fatalf("from the hash of %s: %v, want %v", ns[i].name, got, want)
		}
		wantNext := store.NameHash(want[len(want)-1].name) + 1
		if i+3 >= len(ns) {
			wantNext = 0
		}
		if p.Next != wantNext {
			t.Fatalf("from the hash of %s: next %d, want %d", ns[i].name, p.Next, wantNext)
		}
		// One past a hash starts after its name.
		p, _ = s.Scan(ctx, store.ScanRequest{Cursor: cur + 1, Count: 1})
		if len(p.Items) > 0 && p.Items[0].Name == ns[i].name {
			t.Fatalf("cursor %d listed %s, whose hash is %d", cur+1, ns[i].name, cur)
		}
	}
	p, _ := s.Scan(ctx, store.ScanRequest{Cursor: math.MaxUint64, Count: 10})
	if p.Next != 0 {
		t.Fatalf("past every hash: next %d, want 0", p.Next)
	}
}

// TestScanTies: a page never ends inside a hash. A name that is a bucket
// and a plain key has one hash for both, so COUNT 1 lists both.
func TestScanTies(t *testing.T) {
	s := store.NewStore()
	mustCreate(t, s, "x")
	setPlain(t, s, "x")
	p, err := s.Scan(context.Background(), store.ScanRequest{Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	if want := []typed{{"x", store.TypeHash}, {"x", store.TypeString}}; !slices.Equal(typedOf(p.Items), want) || p.Next != 0 {
		t.Fatalf("count 1: %v next %d, want both types of x", typedOf(p.Items), p.Next)
	}
}

// TestScanBytes: a page stops at its byte budget, at the end of a hash,
// and says it is full.
func TestScanBytes(t *testing.T) {
	s := store.NewStore()
	for i := range 20 {
		mustCreate(t, s, fmt.Sprintf("bucket-%d", i))
	}
	p := s.ScanCopies(store.ScanRequest{Count: 100}, nil, 30)
	if len(p.Items) != 2 || !p.Full || p.Last != store.NameHash(p.Items[1].Name) {
		t.Fatalf("a 30-byte page of 8-byte names: %d items, full %v", len(p.Items), p.Full)
	}
	p = s.ScanCopies(store.ScanRequest{Count: 100}, nil, 0)
	if len(p.Items) != 1 || !p.Full {
		t.Fatalf("a page with no budget holds %d items, want one", len(p.Items))
	}
}

// TestScanInclude: only the copies Include accepts are listed.
func TestScanInclude(t *testing.T) {
	s := store.NewStore()
	for _, b := range []string{"mine", "theirs", "leaving"} {
		mustCreate(t, s, b)
	}
	setPlain(t, s, "k")
	include := func(b string) bool { return b == "mine" || b == "leaving" }
	p := s.ScanCopies(store.ScanRequest{Count: 10}, include, 1<<20)
	if got, want := typedOf(p.Items), sortedTyped([]typed{{"mine", store.TypeHash}, {"leaving", store.TypeHash}}); !slices.Equal(got, want) {
		t.Fatalf("listed %v, want %v", got, want)
	}
	if n := s.CountNames(include); n != 2 {
		t.Fatalf("CountNames = %d, want 2", n)
	}
	if n := s.CountNames(func(b string) bool { return b == plain("k") }); n != 1 {
		t.Fatalf("CountNames of the plain bucket = %d, want 1", n)
	}
}

// TestScanKeys: HSCAN's listing of one bucket: keys and values in hash
// order, without values on request, deleted keys left out, and a missing
// or dropped bucket not found.
func TestScanKeys(t *testing.T) {
	s := store.NewStore()
	mustCreate(t, s, "b")
	want := map[string]string{}
	for i := range 30 {
		k, v := fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i)
		if err := s.Put("b", k, v); err != nil {
			t.Fatal(err)
		}
		want[k] = v
	}
	if err := s.Delete("b", "k7"); err != nil {
		t.Fatal(err)
	}
	delete(want, "k7")
	ctx := context.Background()
	for _, noValues := range []bool{false, true} {
		got := map[string]string{}
		r := store.ScanRequest{Count: 4, NoValues: noValues}
		prev := uint64(0)
		for {
			p, err := s.ScanBucket(ctx, "b", r)
			if err != nil {
				t.Fatal(err)
			}
			for _, it := range p.Items {
				h := store.NameHash(it.Name)
				if h < prev {
					t.Fatalf("%s out of order", it.Name)
				}
				prev = h
				if _, dup := got[it.Name]; dup {
					t.Fatalf("%s listed twice", it.Name)
				}
				got[it.Name] = it.Value
			}
			if p.Next == 0 {
				break
			}
			r.Cursor = p.Next
		}
		w := maps.Clone(want)
		if noValues {
			for k := range w {
				w[k] = ""
			}
		}
		if !maps.Equal(got, w) {
			t.Fatalf("NoValues %v: listed %v\nwant %v", noValues, got, w)
		}
	}
	p, err := s.ScanBucket(ctx, "b", store.ScanRequest{Count: 100, Match: "k1*"})
	if err != nil || len(p.Items) != 11 {
		t.Fatalf("MATCH k1*: %d items, %v; want 11", len(p.Items), err)
	}
	if err := s.Drop("b"); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"b", "never"} {
		if _, err := s.ScanBucket(ctx, b, store.ScanRequest{Count: 10}); !errors.Is(err, store.ErrBucketNotFound) {
			t.Fatalf("ScanBucket(%q): %v, want ErrBucketNotFound", b, err)
		}
	}
}

// TestScanRequestMustFail: requests a store refuses.
func TestScanRequestMustFail(t *testing.T) {
	s := store.NewStore()
	ctx := context.Background()
	for _, r := range []store.ScanRequest{
		{},
		{Count: 0},
		{Count: -1},
		{Count: store.MaxScanCount + 1},
		{Count: math.MaxInt},
		{Count: 1, Type: 4},
		{Count: 1, Type: 255},
	} {
		if err := r.Validate(); !errors.Is(err, store.ErrInvalidOp) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalidOp", r, err)
		}
		if _, err := s.Scan(ctx, r); !errors.Is(err, store.ErrInvalidOp) {
			t.Errorf("Scan(%+v) = %v, want ErrInvalidOp", r, err)
		}
		if _, err := s.ScanBucket(ctx, "b", r); !errors.Is(err, store.ErrInvalidOp) {
			t.Errorf("ScanBucket(%+v) = %v, want ErrInvalidOp", r, err)
		}
	}
	if _, err := s.ScanBucket(ctx, "", store.ScanRequest{Count: 1}); !errors.Is(err, store.ErrInvalidOp) {
		t.Errorf("ScanBucket of the empty name: %v, want ErrInvalidOp", err)
	}
}

func TestParseNameType(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want store.NameType
	}{
		{"hash", store.TypeHash}, {"HASH", store.TypeHash}, {"String", store.TypeString},
		{"list", store.TypeOther}, {"set", store.TypeOther}, {"zset", store.TypeOther}, {"stream", store.TypeOther},
		{"nonsense", store.TypeOther}, {"", store.TypeOther},
	} {
		if got := store.ParseNameType(tc.in); got != tc.want {
			t.Errorf("ParseNameType(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// TestMergePages: the union of the pages of stores that each hold some of
// the names, iterated to the end through MergePages, lists every name
// exactly once, whatever the count; as a cluster's nodes are.
func TestMergePages(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 25 {
		stores := make([]*store.Store, 1+rng.IntN(4))
		for i := range stores {
			stores[i] = store.NewStore()
		}
		want := map[typed]bool{}
		for i := range 1 + rng.IntN(150) {
			name := fmt.Sprintf("n%d", i)
			// Each name on one to all of the stores, as copies are.
			for _, j := range rng.Perm(len(stores))[:1+rng.IntN(len(stores))] {
				if rng.IntN(2) == 0 {
					mustCreate(t, stores[j], name)
					want[typed{name, store.TypeHash}] = true
				} else {
					setPlain(t, stores[j], name)
					want[typed{name, store.TypeString}] = true
				}
			}
		}
		r := store.ScanRequest{Count: 1 + rng.IntN(30)}
		got := map[typed]bool{}
		for pages := 0; ; pages++ {
			if pages > 10000 {
				t.Fatal("the scan did not end")
			}
			var ps []store.Page
			for _, s := range stores {
				ps = append(ps, s.ScanCopies(r, nil, 1<<20))
			}
			p := store.MergePages(r, ps)
			if len(p.Items) > r.Count+1 {
				t.Fatalf("round %d: a page of %d items for count %d", round, len(p.Items), r.Count)
			}
			for _, it := range p.Items {
				k := typed{it.Name, it.Type}
				if got[k] {
					t.Fatalf("round %d: %v listed twice", round, k)
				}
				got[k] = true
			}
			if p.Next == 0 {
				break
			}
			r.Cursor = p.Next
		}
		if !maps.Equal(got, want) {
			t.Fatalf("round %d: listed %d names, want %d", round, len(got), len(want))
		}
	}
}

// TestScanWhileWriting: names present for a whole iteration are listed,
// while other names come and go concurrently (run with -race).
func TestScanWhileWriting(t *testing.T) {
	s := store.NewStore()
	for i := range 300 {
		setPlain(t, s, fmt.Sprintf("stay%d", i))
		mustCreate(t, s, fmt.Sprintf("bucket%d", i))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			k := fmt.Sprintf("churn%d", i%500)
			setPlain(t, s, k)
			_ = s.Delete(plain(k), k)
			b := fmt.Sprintf("tmp%d", i%50)
			_ = s.Create(b)
			_ = s.Drop(b)
		}
	})
	got := scanAll(t, s, store.ScanRequest{Count: 7})
	close(stop)
	wg.Wait()
	seen := map[typed]bool{}
	for _, n := range got {
		seen[n] = true
	}
	for i := range 300 {
		for _, n := range []typed{{fmt.Sprintf("stay%d", i), store.TypeString}, {fmt.Sprintf("bucket%d", i), store.TypeHash}} {
			if !seen[n] {
				t.Fatalf("%v, present all along, was not listed", n)
			}
		}
	}
}

// TestRemovals: Removals counts the copies taken out of the store, by
// Remove and by Collect, and nothing else.
func TestRemovals(t *testing.T) {
	s := store.NewStore()
	mustCreate(t, s, "a")
	mustCreate(t, s, "b")
	if err := s.Put("a", "k", "v"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("a", "k"); err != nil {
		t.Fatal(err)
	}
	if n := s.Removals(); n != 0 {
		t.Fatalf("Removals after writes = %d, want 0", n)
	}
	s.Remove("a")
	s.Remove("a") // gone already
	if n := s.Removals(); n != 1 {
		t.Fatalf("Removals after one Remove = %d, want 1", n)
	}
	if err := s.Drop("b"); err != nil {
		t.Fatal(err)
	}
	if _, recs := s.Collect(store.VersionAt(time.Now().Add(time.Hour))); recs != 1 {
		t.Fatalf("Collect removed %d records, want 1", recs)
	}
	if n := s.Removals(); n != 2 {
		t.Fatalf("Removals after Collect = %d, want 2", n)
	}
}
