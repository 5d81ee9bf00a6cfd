package mapstore

// Listing a bucket's keys (HSCAN) and counting the keyspace's names
// (DBSIZE) from the shard maps; store.PageBuilder and store.MergePages
// make the pages, as they do for store.

import (
	"context"
	"strings"

	"github.com/dboutique/dboutique/node/store"
)

// existsForList reports whether the record's bucket counts as present for
// listing (DBSIZE, HSCAN). The caller holds r.mu.
func (r *record) existsForList(now int64) bool { return !r.removed && r.meta.LiveAt(now) }

// listable reports whether the key k of r, whose state is e, counts as
// present for listing at now (neither deleted nor expired).
func (r *record) listable(k string, e cell, now int64) bool {
	return !e.deleted() && (!e.volatile() || r.expires[k] > now)
}

// isPlain reports whether the bucket called name holds plain keys, and
// whether it holds names at all (as store's isPlain).
func isPlain(name string) (plain, names bool) {
	if strings.HasPrefix(name, store.PlainBucketPrefix) {
		return true, true
	}
	return false, name == "" || name[0] != '\x00'
}

// eachListable calls f with every listable key of the record (and its
// value when values is set), as long as the record's bucket exists for
// listing, under the read lock: at once for a small record, one shard at a
// time for a larger one, so that writes to it wait for one shard at most.
// It reports false when the bucket did not exist for listing at the start.
func (r *record) eachListable(now int64, values bool, f func(key, value string)) bool {
	r.mu.RLock()
	if !r.existsForList(now) {
		r.mu.RUnlock()
		return false
	}
	small := r.live+r.tombstones <= smallRecord
	for i := range r.shards {
		if i > 0 && !small {
			r.mu.RLock()
			if !r.existsForList(now) {
				r.mu.RUnlock()
				return true
			}
		}
		for k, e := range r.shards[i].entries {
			if r.listable(k, e, now) {
				v := ""
				if values {
					v = e.value
				}
				f(k, v)
			}
		}
		if !small {
			r.mu.RUnlock()
		}
	}
	if small {
		r.mu.RUnlock()
	}
	return true
}

// smallRecord is the most entries a record may have for eachListable to
// read it all under one lock.
const smallRecord = 4096

// ScanBucket lists a page of the keys of the bucket called name for r, as
// store's ScanBucket.
func (s *Store) ScanBucket(_ context.Context, name string, r store.ScanRequest) (store.ScanPage, error) {
	if err := r.Validate(); err != nil {
		return store.ScanPage{}, err
	}
	if name == "" {
		return store.ScanPage{}, emptyName()
	}
	rec := s.load(name)
	if rec == nil {
		return store.ScanPage{}, notFound(name)
	}
	b := store.NewPageBuilder(r)
	if !rec.eachListable(s.clock.Millis(), !r.NoValues, func(key, value string) {
		b.Offer(store.ScanItem{Name: key, Value: value})
	}) {
		return store.ScanPage{}, notFound(name)
	}
	return store.MergePages(r, []store.Page{b.Page(store.ScanPageBytes)}), nil
}

// DBSize counts the store's names, as store's DBSize: one for each bucket,
// and one for each key of each plain bucket.
func (s *Store) DBSize(context.Context) (int, error) {
	n := 0
	now := s.clock.Millis()
	s.records.Range(func(k, v any) bool {
		name, rec := k.(string), v.(*record)
		plain, names := isPlain(name)
		switch {
		case !names:
		case plain:
			rec.eachListable(now, false, func(string, string) { n++ })
		default:
			rec.mu.RLock()
			if rec.existsForList(now) {
				n++
			}
			rec.mu.RUnlock()
		}
		return true
	})
	return n, nil
}
