package store_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/dboutique/dboutique/node/store"
)

const benchKeys = 1024 // keys per bucket

// benchStore returns a store with n buckets of benchKeys keys each, the
// bucket names and the key names.
func benchStore(b *testing.B, n int) (*store.Store, []string, []string) {
	b.Helper()
	s := store.NewStore()
	names := make([]string, n)
	keys := make([]string, benchKeys)
	for i := range keys {
		keys[i] = "key-" + strconv.Itoa(i)
	}
	for i := range names {
		names[i] = "bucket-" + strconv.Itoa(i)
		if err := s.Create(names[i]); err != nil {
			b.Fatal(err)
		}
		for _, k := range keys {
			if err := s.Put(names[i], k, "value"); err != nil {
				b.Fatal(err)
			}
		}
	}
	return s, names, keys
}

var bucketCounts = []int{1, 64}

// BenchmarkGet and BenchmarkPut run on one goroutine and in parallel, on one
// bucket and spread over many (each parallel goroutine starts on a bucket of
// its own and walks through the others).
func BenchmarkGet(b *testing.B) {
	benchStoreOp(b, func(s *store.Store, bucket, key string) error {
		_, err := s.Get(bucket, key)
		return err
	})
}

func BenchmarkPut(b *testing.B) {
	benchStoreOp(b, func(s *store.Store, bucket, key string) error {
		return s.Put(bucket, key, "value")
	})
}

func benchStoreOp(b *testing.B, op func(s *store.Store, bucket, key string) error) {
	for _, n := range bucketCounts {
		b.Run(fmt.Sprintf("serial/buckets=%d", n), func(b *testing.B) {
			s, names, keys := benchStore(b, n)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := op(s, names[i%n], keys[i%benchKeys]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
		b.Run(fmt.Sprintf("parallel/buckets=%d", n), func(b *testing.B) {
			s, names, keys := benchStore(b, n)
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				g := int(next.Add(1))
				i := g * 7919
				for pb.Next() {
					if err := op(s, names[(g+i/benchKeys)%n], keys[i%benchKeys]); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
		})
	}
}

// BenchmarkExecute compares Execute with the method it dispatches to.
func BenchmarkExecute(b *testing.B) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		run  func(s *store.Store, key string) error
	}{
		{"Get/method", func(s *store.Store, key string) error {
			_, err := s.Get("bucket-0", key)
			return err
		}},
		{"Get/Execute", func(s *store.Store, key string) error {
			_, err := s.Execute(ctx, store.Op{Kind: store.KindGet, Bucket: "bucket-0", Key: key})
			return err
		}},
		{"Put/method", func(s *store.Store, key string) error {
			return s.Put("bucket-0", key, "value")
		}},
		{"Put/Execute", func(s *store.Store, key string) error {
			_, err := s.Execute(ctx, store.Op{Kind: store.KindPut, Bucket: "bucket-0", Key: key, Value: "value"})
			return err
		}},
		{"Keys/method", func(s *store.Store, _ string) error {
			_, err := s.Keys("bucket-0")
			return err
		}},
		{"Keys/Execute", func(s *store.Store, _ string) error {
			_, err := s.Execute(ctx, store.Op{Kind: store.KindKeys, Bucket: "bucket-0"})
			return err
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s, _, keys := benchStore(b, 1)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := tc.run(s, keys[i%benchKeys]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

var valueSizes = []int{16, 1 << 10, 64 << 10}

func BenchmarkOpAppendBinary(b *testing.B) {
	for _, size := range valueSizes {
		b.Run("value="+strconv.Itoa(size), func(b *testing.B) {
			op := store.Op{Kind: store.KindPut, Bucket: "bucket", Key: "key", Value: strings.Repeat("v", size)}
			buf, _ := op.AppendBinary(nil)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				var err error
				buf, err = op.AppendBinary(buf[:0])
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecodeOp(b *testing.B) {
	for _, size := range valueSizes {
		b.Run("value="+strconv.Itoa(size), func(b *testing.B) {
			op := store.Op{Kind: store.KindPut, Bucket: "bucket", Key: "key", Value: strings.Repeat("v", size)}
			buf, _ := op.AppendBinary(nil)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := store.DecodeOp(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecodeResult(b *testing.B) {
	for _, n := range []int{0, 16, 1024} {
		b.Run("names="+strconv.Itoa(n), func(b *testing.B) {
			r := store.Result{Names: make([]string, n)}
			for i := range r.Names {
				r.Names[i] = "key-" + strconv.Itoa(i)
			}
			buf, _ := r.AppendBinary(nil)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := store.DecodeResult(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
