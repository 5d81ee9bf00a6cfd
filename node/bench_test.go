package node_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/dboutique/dboutique/node"
	"github.com/dboutique/dboutique/node/store"
)

// benchNode starts a node alone on an in-memory network, with bucket
// holding keys key:0 .. key:keys-1.
func benchNode(b testing.TB, bucket string, keys int) *node.Node {
	b.Helper()
	n, err := node.New(node.Config{Name: "bench", Transport: &memTransport{net: newMemNet(), id: "id-bench"}})
	if err != nil {
		b.Fatal(err)
	}
	n.Start()
	b.Cleanup(func() { n.Close() })
	ops := make([]store.Op, 0, 256)
	flush := func() {
		res, errs := make([]store.Result, len(ops)), make([]error, len(ops))
		n.ExecuteBatch(context.Background(), ops, res, errs)
		for _, err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
		ops = ops[:0]
	}
	for i := range keys {
		ops = append(ops, store.Op{Kind: store.KindPutCreate, Bucket: bucket, Key: fmt.Sprintf("key:%d", i), Value: "xxx"})
		if len(ops) == cap(ops) {
			flush()
		}
	}
	flush()
	return n
}

// BenchmarkExecuteBatch: a node alone runs pipelines of 16 HSETs
// (PUTCREATE) or HGETs over 100k keys of one bucket, as textproto hands
// them over; ns/op and allocs/op are per request.
func BenchmarkExecuteBatch(b *testing.B) {
	const keys, depth = 100_000, 16
	n := benchNode(b, "bench", keys)
	names := make([]string, keys)
	for i := range names {
		names[i] = fmt.Sprintf("key:%d", i)
	}
	for _, kind := range []store.Kind{store.KindPutCreate, store.KindGet} {
		b.Run(kind.String(), func(b *testing.B) {
			ops := make([]store.Op, depth)
			res, errs := make([]store.Result, depth), make([]error, depth)
			ctx := context.Background()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				k := i % depth
				ops[k] = store.Op{Kind: kind, Bucket: "bench", Key: names[(i*7919)%keys]}
				if kind == store.KindPutCreate {
					ops[k].Value = "xxx"
				}
				if k == depth-1 {
					n.ExecuteBatch(ctx, ops, res, errs)
					if errs[0] != nil {
						b.Fatal(errs[0])
					}
				}
				i++
			}
		})
	}
	// SETs of plain keys: each in one of 256 buckets, so a pipeline
	// writes to about 16.
	b.Run("PUTCREATE-spread", func(b *testing.B) {
		ops := make([]store.Op, depth)
		res, errs := make([]store.Result, depth), make([]error, depth)
		buckets := make([]string, 256)
		for i := range buckets {
			buckets[i] = fmt.Sprintf("plain%d", i)
		}
		ctx := context.Background()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			k := i % depth
			key := (i * 7919) % keys
			ops[k] = store.Op{Kind: store.KindPutCreate, Bucket: buckets[key%256], Key: names[key], Value: "xxx"}
			if k == depth-1 {
				n.ExecuteBatch(ctx, ops, res, errs)
				if errs[0] != nil {
					b.Fatal(errs[0])
				}
			}
			i++
		}
	})
}

// TestWritePipelinesAllocateNothing: a node alone runs a pipeline of 16
// writes, to one bucket or to 16 (as SETs spread over the plain-key
// buckets are), without allocating: the write path's buffers stay on the
// stack. (BenchmarkExecuteBatch measures the same path's time.)
func TestWritePipelinesAllocateNothing(t *testing.T) {
	const depth = 16
	n := benchNode(t, "one", 100)
	for _, spread := range []int{1, depth} {
		ops := make([]store.Op, depth)
		for k := range ops {
			b := fmt.Sprintf("b%d", k%spread)
			ops[k] = store.Op{Kind: store.KindPutCreate, Bucket: b, Key: fmt.Sprintf("key:%d", k), Value: "xxx"}
		}
		res, errs := make([]store.Result, depth), make([]error, depth)
		ctx := context.Background()
		n.ExecuteBatch(ctx, ops, res, errs) // creates the buckets
		allocs := testing.AllocsPerRun(100, func() {
			n.ExecuteBatch(ctx, ops, res, errs)
		})
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if allocs != 0 {
			t.Errorf("a pipeline of %d writes over %d buckets allocates %.1f times, want 0", depth, spread, allocs)
		}
	}
}
