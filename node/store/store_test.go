package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/node/store/storetest"
)

// step is one operation of a scenario and its expected outcome. Names are
// compared with slices.Equal: the store does not promise nil versus empty.
type step struct {
	op      store.Op
	want    store.Result
	wantErr error
}

func ok(op store.Op) step                 { return step{op: op} }
func fails(op store.Op, err error) step   { return step{op: op, wantErr: err} }
func value(op store.Op, v string) step    { return step{op: op, want: store.Result{Value: v}} }
func names(op store.Op, n ...string) step { return step{op: op, want: store.Result{Names: n}} }
func notFound(op store.Op) step           { return fails(op, store.ErrBucketNotFound) }
func missingKey(op store.Op) step         { return fails(op, store.ErrKeyNotFound) }
func stepName(i int, op store.Op) string {
	return fmt.Sprintf("step %d %v %q %q %q", i, op.Kind, op.Bucket, op.Key, op.Value)
}
func execute(s *store.Store, op store.Op) (store.Result, error) {
	return s.Execute(context.Background(), op)
}

// direct applies op through the Store's methods rather than Execute.
func direct(s *store.Store, op store.Op) (store.Result, error) {
	switch op.Kind {
	case store.KindCreate:
		return store.Result{}, s.Create(op.Bucket)
	case store.KindDrop:
		return store.Result{}, s.Drop(op.Bucket)
	case store.KindPut:
		return store.Result{}, s.Put(op.Bucket, op.Key, op.Value)
	case store.KindGet:
		v, err := s.Get(op.Bucket, op.Key)
		return store.Result{Value: v}, err
	case store.KindDelete:
		return store.Result{}, s.Delete(op.Bucket, op.Key)
	case store.KindBuckets:
		return store.Result{Names: s.Buckets()}, nil
	case store.KindKeys:
		n, err := s.Keys(op.Bucket)
		return store.Result{Names: n}, err
	}
	panic(fmt.Sprintf("direct: no method for %v", op.Kind))
}

var scenarios = []struct {
	name  string
	steps []step
}{
	{"empty store", []step{
		names(storetest.Buckets()),
		notFound(storetest.Keys("b")),
	}},
	{"create is idempotent and keeps contents", []step{
		ok(storetest.Create("b")),
		ok(storetest.Put("b", "k", "v")),
		ok(storetest.Create("b")),
		ok(storetest.Create("b")),
		value(storetest.Get("b", "k"), "v"),
		names(storetest.Keys("b"), "k"),
		names(storetest.Buckets(), "b"),
	}},
	{"put get overwrite delete", []step{
		ok(storetest.Create("b")),
		names(storetest.Keys("b")),
		ok(storetest.Put("b", "k", "v1")),
		value(storetest.Get("b", "k"), "v1"),
		ok(storetest.Put("b", "k", "v2")),
		value(storetest.Get("b", "k"), "v2"),
		names(storetest.Keys("b"), "k"),
		ok(storetest.Del("b", "k")),
		missingKey(storetest.Get("b", "k")),
		names(storetest.Keys("b")),
	}},
	{"missing key", []step{
		ok(storetest.Create("b")),
		missingKey(storetest.Get("b", "nope")),
		ok(storetest.Del("b", "nope")), // deleting a missing key is not an error
		names(storetest.Keys("b")),
	}},
	{"missing bucket", []step{
		ok(storetest.Create("other")),
		notFound(storetest.Put("b", "k", "v")),
		notFound(storetest.Get("b", "k")),
		notFound(storetest.Del("b", "k")),
		notFound(storetest.Drop("b")),
		notFound(storetest.Keys("b")),
		names(storetest.Buckets(), "other"), // no operation above created b
	}},
	{"drop removes bucket and keys", []step{
		ok(storetest.Create("b")),
		ok(storetest.Put("b", "k", "v")),
		ok(storetest.Drop("b")),
		notFound(storetest.Get("b", "k")),
		notFound(storetest.Put("b", "k", "v")),
		notFound(storetest.Del("b", "k")),
		notFound(storetest.Keys("b")),
		notFound(storetest.Drop("b")),
		names(storetest.Buckets()),
	}},
	{"drop then create gives an empty bucket", []step{
		ok(storetest.Create("b")),
		ok(storetest.Put("b", "k", "v")),
		ok(storetest.Drop("b")),
		ok(storetest.Create("b")),
		names(storetest.Keys("b")),
		missingKey(storetest.Get("b", "k")),
		ok(storetest.Put("b", "k2", "v2")),
		names(storetest.Keys("b"), "k2"),
	}},
	{"drop leaves other buckets alone", []step{
		ok(storetest.Create("a")),
		ok(storetest.Create("b")),
		ok(storetest.Put("a", "k", "va")),
		ok(storetest.Put("b", "k", "vb")),
		ok(storetest.Drop("a")),
		value(storetest.Get("b", "k"), "vb"),
		names(storetest.Buckets(), "b"),
	}},
	{"buckets and keys sorted", []step{
		ok(storetest.Create("c")),
		ok(storetest.Create("a")),
		ok(storetest.Create("B")),
		ok(storetest.Create("b")),
		names(storetest.Buckets(), "B", "a", "b", "c"),
		ok(storetest.Put("a", "z", "1")),
		ok(storetest.Put("a", "a", "2")),
		ok(storetest.Put("a", "m", "3")),
		ok(storetest.Put("a", "", "4")),
		ok(storetest.Put("a", "\xff", "5")),
		names(storetest.Keys("a"), "", "a", "m", "z", "\xff"),
	}},
	{"empty key and empty value", []step{
		ok(storetest.Create("b")),
		ok(storetest.Put("b", "", "")),
		value(storetest.Get("b", ""), ""),
		ok(storetest.Put("b", "k", "")),
		value(storetest.Get("b", "k"), ""),
		names(storetest.Keys("b"), "", "k"),
		ok(storetest.Del("b", "")),
		missingKey(storetest.Get("b", "")),
	}},
	{"binary bytes in names, keys and values", []step{
		ok(storetest.Create("\x00b\xff")),
		ok(storetest.Put("\x00b\xff", "\x00\x01\n\r ", "\xff\xfe\x00")),
		value(storetest.Get("\x00b\xff", "\x00\x01\n\r "), "\xff\xfe\x00"),
		ok(storetest.Put("\x00b\xff", "ключ", "значение")),
		value(storetest.Get("\x00b\xff", "ключ"), "значение"),
		names(storetest.Keys("\x00b\xff"), "\x00\x01\n\r ", "ключ"),
		names(storetest.Buckets(), "\x00b\xff"),
		notFound(storetest.Get("\x00b", "\x00\x01\n\r ")),
	}},
	{"large value", []step{
		ok(storetest.Create("b")),
		ok(storetest.Put("b", "k", strings.Repeat("x", 1<<20))),
		value(storetest.Get("b", "k"), strings.Repeat("x", 1<<20)),
	}},
}

func TestStore(t *testing.T) {
	for _, via := range []struct {
		name  string
		apply func(*store.Store, store.Op) (store.Result, error)
	}{
		{"Execute", execute},
		{"methods", direct},
	} {
		for _, sc := range scenarios {
			t.Run(via.name+"/"+sc.name, func(t *testing.T) {
				s := store.NewStore()
				for i, st := range sc.steps {
					what := stepName(i, st.op)
					got, err := via.apply(s, st.op)
					storetest.CheckErr(t, what, err, st.wantErr)
					if got.Value != st.want.Value {
						t.Errorf("%s: Value = %q, want %q", what, got.Value, st.want.Value)
					}
					if !slices.Equal(got.Names, st.want.Names) {
						t.Errorf("%s: Names = %q, want %q", what, got.Names, st.want.Names)
					}
				}
			})
		}
	}
}

func TestStoreLen(t *testing.T) {
	s := store.NewStore()
	_, err := s.Len("b")
	storetest.CheckErr(t, "Len of missing bucket", err, store.ErrBucketNotFound)

	storetest.MustNil(t, s.Create("b"))
	lenIs := func(want int) {
		t.Helper()
		n, err := s.Len("b")
		if err != nil || n != want {
			t.Fatalf("Len = %d, %v; want %d, nil", n, err, want)
		}
	}
	lenIs(0)
	storetest.MustNil(t, s.Put("b", "k1", "v"))
	storetest.MustNil(t, s.Put("b", "k2", "v"))
	storetest.MustNil(t, s.Put("b", "k1", "v2")) // overwrite does not grow
	lenIs(2)
	storetest.MustNil(t, s.Delete("b", "k1"))
	storetest.MustNil(t, s.Delete("b", "k1"))
	lenIs(1)

	storetest.MustNil(t, s.Drop("b"))
	_, err = s.Len("b")
	storetest.CheckErr(t, "Len of dropped bucket", err, store.ErrBucketNotFound)
}

// TestStoreEmptyBucketName: no bucket called "" can exist. Execute rejects
// such an op as invalid before it reaches the data; Create does the same; the
// other methods answer that the bucket does not exist.
func TestStoreEmptyBucketName(t *testing.T) {
	s := store.NewStore()
	for _, op := range []store.Op{storetest.Create(""), storetest.Drop(""), storetest.Keys(""), storetest.Put("", "k", "v"), storetest.Get("", "k"), storetest.Del("", "k")} {
		_, err := s.Execute(context.Background(), op)
		storetest.CheckErr(t, "Execute "+op.Kind.String(), err, store.ErrInvalidOp)
	}
	storetest.CheckErr(t, "Create", s.Create(""), store.ErrInvalidOp)
	storetest.CheckErr(t, "Drop", s.Drop(""), store.ErrBucketNotFound)
	storetest.CheckErr(t, "Put", s.Put("", "k", "v"), store.ErrBucketNotFound)
	storetest.CheckErr(t, "Delete", s.Delete("", "k"), store.ErrBucketNotFound)
	_, err := s.Get("", "k")
	storetest.CheckErr(t, "Get", err, store.ErrBucketNotFound)
	_, err = s.Keys("")
	storetest.CheckErr(t, "Keys", err, store.ErrBucketNotFound)
	_, err = s.Len("")
	storetest.CheckErr(t, "Len", err, store.ErrBucketNotFound)
	if got := s.Buckets(); len(got) != 0 {
		t.Errorf("Buckets = %q after operations on an empty name, want none", got)
	}
}

// TestExecuteRejectsInvalidOps: Execute validates before it touches the
// store, so an invalid op has no effect even when its bucket exists.
func TestExecuteRejectsInvalidOps(t *testing.T) {
	s := store.NewStore()
	storetest.MustNil(t, s.Create("b"))
	storetest.MustNil(t, s.Put("b", "k", "v"))
	for _, op := range invalidOps {
		_, err := s.Execute(context.Background(), op)
		storetest.CheckErr(t, fmt.Sprintf("Execute(%+v)", op), err, store.ErrInvalidOp)
	}
	if got, err := s.Get("b", "k"); err != nil || got != "v" {
		t.Errorf("Get after invalid ops = %q, %v; want %q, nil", got, err, "v")
	}
	if got := s.Buckets(); !slices.Equal(got, []string{"b"}) {
		t.Errorf("Buckets after invalid ops = %q, want [b]", got)
	}
}

func TestErrorsNameTheBucket(t *testing.T) {
	s := store.NewStore()
	_, err := s.Get("shoes", "k")
	if err == nil || !strings.Contains(err.Error(), `"shoes"`) {
		t.Errorf("Get of missing bucket: error %v does not name the bucket", err)
	}
}

// TestStoresAreIndependent: a Store has no package-level state.
func TestStoresAreIndependent(t *testing.T) {
	a, b := store.NewStore(), store.NewStore()
	storetest.MustNil(t, a.Create("x"))
	storetest.MustNil(t, a.Put("x", "k", "v"))
	if got := b.Buckets(); len(got) != 0 {
		t.Errorf("second store sees buckets %q", got)
	}
	_, err := b.Get("x", "k")
	storetest.CheckErr(t, "Get in second store", err, store.ErrBucketNotFound)
}

var validOps = []store.Op{
	storetest.Create("b"),
	storetest.Drop("b"),
	storetest.Keys("b"),
	storetest.Put("b", "k", "v"),
	storetest.Put("b", "", ""),
	storetest.Put("b", "k", ""),
	storetest.Put("b", "", "v"),
	storetest.Put("\x00", "\xff\x00", "\x00\xff"),
	storetest.Get("b", "k"),
	storetest.Get("b", ""),
	storetest.Del("b", "k"),
	storetest.Del("b", ""),
	storetest.Buckets(),
	{Kind: store.KindPut, Bucket: strings.Repeat("b", 1000), Key: strings.Repeat("k", 1000), Value: strings.Repeat("v", 100000)},
}

var invalidOps = []store.Op{
	{},
	{Kind: store.KindInvalid, Bucket: "b"},
	{Kind: store.KindInvalid, Bucket: "b", Key: "k", Value: "v"},
	{Kind: 8, Bucket: "b"}, // one past the last kind
	{Kind: 9, Bucket: "b", Key: "k"},
	{Kind: 255, Bucket: "b", Key: "k", Value: "v"},
	// a bucket name is required
	storetest.Create(""),
	storetest.Drop(""),
	storetest.Keys(""),
	storetest.Put("", "k", "v"),
	storetest.Put("", "", ""),
	storetest.Get("", "k"),
	storetest.Del("", "k"),
	// fields the kind does not take
	{Kind: store.KindCreate, Bucket: "b", Key: "k"},
	{Kind: store.KindCreate, Bucket: "b", Value: "v"},
	{Kind: store.KindDrop, Bucket: "b", Key: "k"},
	{Kind: store.KindDrop, Bucket: "b", Value: "v"},
	{Kind: store.KindKeys, Bucket: "b", Key: "k"},
	{Kind: store.KindKeys, Bucket: "b", Value: "v"},
	{Kind: store.KindGet, Bucket: "b", Key: "k", Value: "v"},
	{Kind: store.KindGet, Bucket: "b", Value: "v"},
	{Kind: store.KindDelete, Bucket: "b", Key: "k", Value: "v"},
	{Kind: store.KindBuckets, Bucket: "b"},
	{Kind: store.KindBuckets, Key: "k"},
	{Kind: store.KindBuckets, Value: "v"},
}

func TestOpValidate(t *testing.T) {
	for _, op := range validOps {
		if err := op.Validate(); err != nil {
			t.Errorf("Validate(%v %.20q %.20q %.20q) = %v, want nil", op.Kind, op.Bucket, op.Key, op.Value, err)
		}
	}
	for _, op := range invalidOps {
		storetest.CheckErr(t, fmt.Sprintf("Validate(%+v)", op), op.Validate(), store.ErrInvalidOp)
	}
}

func TestKind(t *testing.T) {
	for _, tc := range []struct {
		k     store.Kind
		num   uint8 // part of the wire encoding: never renumber
		str   string
		write bool
	}{
		{store.KindInvalid, 0, "Kind(0)", false},
		{store.KindCreate, 1, "CREATE", true},
		{store.KindPut, 2, "PUT", true},
		{store.KindGet, 3, "GET", false},
		{store.KindDelete, 4, "DELETE", true},
		{store.KindDrop, 5, "DROP", true},
		{store.KindBuckets, 6, "BUCKETS", false},
		{store.KindKeys, 7, "KEYS", false},
		{store.KindNodes, 8, "NODES", false},
		{store.KindOwner, 9, "OWNER", false},
		{store.KindPutCreate, 10, "PUTCREATE", true},
		{store.KindLen, 11, "LEN", false},
		{store.KindGetAll, 12, "GETALL", false},
		{store.KindSet, 13, "SET", true},
		{store.KindExpire, 14, "EXPIRE", true},
		{store.KindPersist, 15, "PERSIST", true},
		{store.KindTTL, 16, "TTL", false},
		{store.KindGetEx, 17, "GETEX", true},
		{store.KindReclaim, 18, "RECLAIM", true},
		{store.KindEvict, 19, "EVICT", true},
		{20, 20, "Kind(20)", false},
		{255, 255, "Kind(255)", false},
	} {
		if uint8(tc.k) != tc.num {
			t.Errorf("%v = %d, want %d", tc.k, uint8(tc.k), tc.num)
		}
		if got := tc.k.String(); got != tc.str {
			t.Errorf("Kind(%d).String() = %q, want %q", tc.num, got, tc.str)
		}
		if got := tc.k.IsWrite(); got != tc.write {
			t.Errorf("%v.IsWrite() = %v, want %v", tc.k, got, tc.write)
		}
	}
}

// TestStoreRefusesVersionsOutOfRange: the top two bits of a version are
// where the store marks tombstones and expiries, so versions stay below
// 2^61 (and a clock that saw the largest still counts up).
func TestStoreRefusesVersionsOutOfRange(t *testing.T) {
	s := store.NewStore()
	huge := store.Version(1 << 61)
	for name, err := range map[string]error{
		"ApplyEntry":  s.ApplyEntry("b", store.Entry{Key: "k", Value: "v", Version: huge}),
		"ApplyCreate": s.ApplyCreate("b", huge),
		"ApplyDrop":   s.ApplyDrop("b", huge|1),
	} {
		if !errors.Is(err, store.ErrInvalidOp) {
			t.Errorf("%s with version %#x: %v, want ErrInvalidOp", name, uint64(huge), err)
		}
	}
	if _, err := s.Merge("b", store.BucketMeta{Created: 1}, []store.Entry{{Key: "k", Version: huge}}); !errors.Is(err, store.ErrInvalidOp) {
		t.Errorf("Merge with version %#x: %v, want ErrInvalidOp", uint64(huge), err)
	}
	if s.Exists("b") {
		t.Error("bucket exists after refused writes")
	}
	// The largest version allowed is kept, tombstone or not.
	top := store.Version(1<<61 - 1)
	storetest.MustNil(t, s.ApplyEntry("c", store.Entry{Key: "k", Deleted: true, Version: top - 1}))
	storetest.MustNil(t, s.ApplyEntry("c", store.Entry{Key: "k", Value: "v", Version: top}))
	if v, err := s.Get("c", "k"); err != nil || v != "v" {
		t.Errorf("Get after the largest version = %q, %v; want v", v, err)
	}
	// Local writes after it still have versions of their own.
	storetest.MustNil(t, s.Delete("c", "k"))
	if _, err := s.Get("c", "k"); !errors.Is(err, store.ErrKeyNotFound) {
		t.Errorf("Get after Delete: %v, want ErrKeyNotFound", err)
	}
	storetest.MustNil(t, s.Put("c", "k", "w"))
	if v, err := s.Get("c", "k"); err != nil || v != "w" {
		t.Errorf("Get after Put = %q, %v; want w", v, err)
	}
}
