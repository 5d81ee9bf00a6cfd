// Package mapstore is package store's bucket layout as it was before its
// entries were packed into tables (i15): each bucket's keys in 64 Go maps
// of key to value and version, one per shard, and a map of expiries. It is
// kept only as the model that store's tests compare the packed layout
// with (FuzzLayoutMatchesMaps, TestLayoutMatchesMapsRandom) and as the
// "maps" side of BenchmarkLayout; only tests import it.
//
// It owns only what the layout decides: the record and its shard maps,
// and the Store methods that read and write them (Execute and the
// unversioned API, the versioned writes, Meta, Digest, Page, Collect,
// expiry and eviction, the listing of a bucket's keys and DBSize). The
// rest it takes from package store, so that a difference the tests find
// is a difference of layout: the types (Op, Result, Entry, BucketMeta,
// Digest, Version, Clock, ...), the errors, BucketMeta.Merge, Entry.Newer
// and Entry.Hash, Decide, and the paging of listings (PageBuilder,
// MergePages). It has none of store's methods that no test compares
// (Scan, Sample, Footprint, ...).
//
// Do not change its behaviour to follow store's: a difference between the
// two is what the tests look for. When store's behaviour changes on
// purpose in what the layout decides, change this package the same way,
// or retire the comparison.
package mapstore
