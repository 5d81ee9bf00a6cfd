package store_test

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/node/store/internal/mapstore"
)

// layoutKV is what BenchmarkLayout needs of a store: the packed layout
// (store) and the maps it replaced (mapstore) both have it.
type layoutKV struct {
	create func(bucket string) error
	get    func(bucket, key string) (string, error)
	put    func(bucket, key, value string) error
	delete func(bucket, key string) error
	page   func(bucket string, shard int) int
}

func tableKV() layoutKV {
	s := store.NewStore()
	return layoutKV{s.Create, s.Get, s.Put, s.Delete, func(b string, shard int) int {
		es, _, _ := s.Page(b, shard, "", 1<<20)
		return len(es)
	}}
}

func mapsKV() layoutKV {
	s := mapstore.NewStore()
	return layoutKV{s.Create, s.Get, s.Put, s.Delete, func(b string, shard int) int {
		es, _, _ := s.Page(b, shard, "", 1<<20)
		return len(es)
	}}
}

// BenchmarkLayout compares the packed layout with the maps it replaced,
// on 256 buckets of 4096 keys of 16 bytes with 8-byte values (the plain
// keys of a node): Get, Put of a value of the same size, Put of a new key,
// Delete (a live key, leaving a tombstone) and Page (one shard of a
// bucket, 64 entries).
//
//	go test -run '^$' -bench Layout -benchmem ./node/store
func BenchmarkLayout(b *testing.B) {
	const buckets, perBucket = 256, 4096
	names := make([]string, buckets)
	for i := range names {
		names[i] = "bucket-" + strconv.Itoa(i)
	}
	keys := make([]string, buckets*perBucket)
	for i := range keys {
		keys[i] = fmt.Sprintf("key:%012d", i)
	}
	fill := func(b *testing.B, kv layoutKV) {
		b.Helper()
		for _, n := range names {
			if err := kv.create(n); err != nil {
				b.Fatal(err)
			}
		}
		for i, k := range keys {
			if err := kv.put(names[i%buckets], k, "v0000000"); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, layout := range []struct {
		name string
		make func() layoutKV
	}{{"maps", mapsKV}, {"table", tableKV}} {
		b.Run("Get/"+layout.name, func(b *testing.B) {
			kv := layout.make()
			fill(b, kv)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				j := (i * 7919) % len(keys)
				if _, err := kv.get(names[j%buckets], keys[j]); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("PutReplace/"+layout.name, func(b *testing.B) {
			kv := layout.make()
			fill(b, kv)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				j := (i * 7919) % len(keys)
				if err := kv.put(names[j%buckets], keys[j], "v1111111"); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("PutNew/"+layout.name, func(b *testing.B) {
			kv := layout.make()
			for _, n := range names {
				if err := kv.create(n); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if i%len(keys) == 0 && i > 0 {
					b.StopTimer()
					kv = layout.make()
					for _, n := range names {
						_ = kv.create(n)
					}
					b.StartTimer()
				}
				j := i % len(keys)
				if err := kv.put(names[j%buckets], keys[j], "v0000000"); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("Delete/"+layout.name, func(b *testing.B) {
			kv := layout.make()
			fill(b, kv)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if i%len(keys) == 0 && i > 0 {
					b.StopTimer()
					kv = layout.make()
					fill(b, kv)
					b.StartTimer()
				}
				j := i % len(keys)
				if err := kv.delete(names[j%buckets], keys[j]); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("Page/"+layout.name, func(b *testing.B) {
			kv := layout.make()
			fill(b, kv)
			b.ReportAllocs()
			b.ResetTimer()
			n := 0
			for i := range b.N {
				n += kv.page(names[i%buckets], i%store.NumShards)
			}
			b.ReportMetric(float64(n)/float64(b.N), "entries/op")
		})
	}
}
