package store

// Listing the keyspace a page at a time: SCAN, KEYS, DBSIZE and RANDOMKEY
// over the names of a store (or of a cluster, whose node gathers the pages
// of its members), and HSCAN over the keys of one bucket.
//
// # Names
//
// The keyspace, as a Redis client sees it, holds two types of name: every
// bucket is a name of type hash, and every key of the buckets that hold
// plain keys (those whose names begin with PlainBucketPrefix) is a name of
// type string. Other buckets whose names begin with the reserved prefix
// hold no names. A name can be of both types at once (a bucket and a
// plain key of the same name).
//
// # Order, and what a cursor means
//
// Names are listed in one order that does not depend on where they are
// held: by NameHash (xxhash64 of the name), then by the name's bytes, then
// by type. A cursor is a hash: the position "every name whose hash is at
// least the cursor". Cursor 0 is the start; a page whose items end at hash
// h gives the cursor h+1, and 0 when nothing is left (h+1 cannot wrap to 0
// before the end: a page ending at the largest hash has listed everything).
// So a cursor stays meaningful whoever answers it and however the names
// move between stores: it names a place in the order, not in a table.
//
// A store's page (Page) holds its smallest names from the cursor on, at
// most Count of them (and at most a byte budget), always with every name
// of the hash it ends at, and says whether more follow. Pages of several
// stores merge (MergePages) by listing every name up to the smallest hash
// at which one of the full pages stops: each store has listed all of its
// names up to there. A name present in some listed store for a whole
// iteration is therefore returned at least once, as Redis promises; a name
// held by several stores is returned once per page.
//
// # What is listed
//
// A bucket is listed when existsForList says so, and a key of a plain
// bucket when listable says so: the one place each that decides whether a
// bucket, or a key, counts as present.

import (
	"cmp"
	"container/heap"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// NameType is the type of a name of the keyspace, as Redis's TYPE calls
// it; as a filter (ScanRequest.Type), TypeAny lets every name through and
// TypeOther none.
type NameType uint8

// The types of names. The numeric values are wire format (node/scan.go):
// append new ones, never renumber.
const (
	TypeAny    NameType = iota // a filter letting every name through
	TypeHash                   // a bucket: a Redis hash
	TypeString                 // a plain key: a Redis string
	TypeOther                  // a filter for a Redis type no name has here (list, set, ...)
	typeEnd
)

func (t NameType) String() string {
	switch t {
	case TypeAny:
		return "any"
	case TypeHash:
		return "hash"
	case TypeString:
		return "string"
	case TypeOther:
		return "other"
	}
	return fmt.Sprintf("NameType(%d)", uint8(t))
}

// ParseNameType returns the filter for a type name as SCAN's TYPE takes
// it, in any case: "hash" and "string" are the types names have here, and
// any other name (a Redis type such as "list", or a name Redis does not
// know either, which Redis 7 also lets match nothing) is TypeOther.
func ParseNameType(name string) NameType {
	switch strings.ToLower(name) {
	case "hash":
		return TypeHash
	case "string":
		return TypeString
	}
	return TypeOther
}

// PlainBucketPrefix begins the names of the buckets that hold plain keys
// (RESP's SET and GET; textproto names them PlainBucketPrefix + "<i>"):
// ring.ReservedPrefix, then "kv:".
const PlainBucketPrefix = "\x00kv:"

// reservedByte begins every bucket name the node keeps for itself
// (ring.ReservedPrefix).
const reservedByte = '\x00'

// MaxScanCount bounds ScanRequest.Count.
const MaxScanCount = 10000

// DefaultScanCount is Redis's COUNT when a request gives none.
const DefaultScanCount = 10

// ScanPageBytes is the byte budget of the pages a store lists for Scan
// and ScanBucket: a page stops, at the end of a hash, once its names and
// values pass it.
const ScanPageBytes = 1 << 20

// scanItemOverhead is what a page counts for an item on top of its name
// and value, so that the byte budget bounds an encoded page.
const scanItemOverhead = 8

// NameHash is the hash that orders names (and a bucket's keys) for
// listing; a cursor is one of its values.
func NameHash(name string) uint64 { return xxhash.Sum64String(name) }

// ScanRequest asks for a page of names (or of one bucket's keys).
type ScanRequest struct {
	// Cursor: list from the names whose hash is at least Cursor; 0 starts.
	Cursor uint64
	// Count is how many names the page should hold: 1 to MaxScanCount.
	// A page may hold a few more (every name of the hash it ends at).
	Count int
	// Match, when neither empty nor "*", keeps the names it matches
	// (GlobMatch). Unlike Redis's, an empty pattern matches every name.
	Match string
	// Type keeps the names of one type (Scan only; TypeAny: all).
	Type NameType
	// NoValues lists a bucket's keys without their values (ScanBucket).
	NoValues bool
}

// Validate reports whether r is well formed, wrapping ErrInvalidOp if not.
func (r ScanRequest) Validate() error {
	if r.Count < 1 || r.Count > MaxScanCount {
		return fmt.Errorf("%w: scan count %d not in [1, %d]", ErrInvalidOp, r.Count, MaxScanCount)
	}
	if r.Type >= typeEnd {
		return fmt.Errorf("%w: scan type %d", ErrInvalidOp, r.Type)
	}
	return nil
}

// matcher returns the test of r's pattern; nil lets every name through.
func (r ScanRequest) matcher() func(string) bool {
	if r.Match == "" || r.Match == "*" {
		return nil
	}
	return func(name string) bool { return GlobMatch(r.Match, name) }
}

// ScanItem is one name of a listing: of the keyspace (Scan: Type is
// TypeHash or TypeString) or of a bucket's keys (ScanBucket: Name is a
// key, Value its value unless the request asked for NoValues).
type ScanItem struct {
	Name  string
	Type  NameType
	Value string
}

// Page is what one store lists from a cursor: its items in listing order,
// and whether more follow. When Full, the store holds more items past
// Last, and the page holds every one of its items with a hash from the
// cursor to Last, Last included; otherwise it holds all of its items
// from the cursor on.
type Page struct {
	Items []ScanItem
	Full  bool
	Last  uint64
}

// ScanPage is a page as a client gets it: the items, and the cursor that
// continues after them (0 when the listing is complete).
type ScanPage struct {
	Items []ScanItem
	Next  uint64
}

// hashedItem is an item with its hash, in listing order.
type hashedItem struct {
	h uint64
	ScanItem
}

func compareItems(a, b hashedItem) int {
	return cmp.Or(cmp.Compare(a.h, b.h), strings.Compare(a.Name, b.Name), cmp.Compare(a.Type, b.Type))
}

// itemHeap is a max-heap of items in listing order.
type itemHeap []hashedItem

func (h itemHeap) Len() int           { return len(h) }
func (h itemHeap) Less(i, j int) bool { return compareItems(h[i], h[j]) > 0 }
func (h itemHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *itemHeap) Push(x any)        { *h = append(*h, x.(hashedItem)) }
func (h *itemHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// PageBuilder keeps the smallest items it is offered, in any order, for
// one Page: at most the request's Count of them, plus those of the same
// hash as the largest kept, in memory bounded by Count whatever the number
// of items offered. A store offers it every name it holds (ScanCopies) or
// every key of a bucket (ScanKeys).
type PageBuilder struct {
	cursor uint64
	count  int
	match  func(string) bool // nil: every name
	kept   itemHeap
	// ties holds items let go whose hash was then the largest kept one:
	// if that hash is still the largest at the end, they belong to the
	// page (a page ends at the end of a hash).
	ties    []hashedItem
	dropped bool   // an item was let go
	maxDrop uint64 // the largest hash let go
}

// NewPageBuilder returns a PageBuilder for r's page.
func NewPageBuilder(r ScanRequest) *PageBuilder {
	return &PageBuilder{cursor: r.Cursor, count: r.Count, match: r.matcher()}
}

// Offer considers it for the page.
func (b *PageBuilder) Offer(it ScanItem) { b.offer(NameHash(it.Name), it) }

// offer considers an item of hash h for the page.
func (b *PageBuilder) offer(h uint64, it ScanItem) {
	if h < b.cursor || b.match != nil && !b.match(it.Name) {
		return
	}
	x := hashedItem{h, it}
	if len(b.kept) < b.count {
		heap.Push(&b.kept, x)
		return
	}
	gone := x
	if compareItems(x, b.kept[0]) < 0 {
		gone = b.kept[0]
		b.kept[0] = x
		heap.Fix(&b.kept, 0)
	}
	b.dropped = true
	b.maxDrop = max(b.maxDrop, gone.h)
	top := b.kept[0].h
	if gone.h == top {
		b.ties = append(b.ties, gone)
	}
	if len(b.ties) > 2*b.count+16 {
		// Ties of a hash that is no longer the largest kept never
		// belong to the page.
		b.ties = slices.DeleteFunc(b.ties, func(t hashedItem) bool { return t.h != top })
	}
}

// Page returns the page: the items kept, sorted, with the ties of the
// hash they end at, cut at the end of a hash once they pass maxBytes.
func (b *PageBuilder) Page(maxBytes int) Page {
	items := []hashedItem(b.kept)
	var p Page
	if len(items) == 0 {
		return p
	}
	slices.SortFunc(items, compareItems)
	last := items[len(items)-1].h
	for _, t := range b.ties {
		if t.h == last {
			items = append(items, t)
		}
	}
	slices.SortFunc(items, compareItems)
	p.Full, p.Last = b.dropped && b.maxDrop > last, last
	size := 0
	for i, it := range items {
		if i > 0 && size > maxBytes && it.h != items[i-1].h {
			items = items[:i]
			p.Full, p.Last = true, items[i-1].h
			break
		}
		size += len(it.Name) + len(it.Value) + scanItemOverhead
	}
	p.Items = make([]ScanItem, len(items))
	for i := range items {
		p.Items[i] = items[i].ScanItem
	}
	if !p.Full {
		p.Last = 0
	}
	return p
}

// existsForList reports whether the record's bucket counts as present for
// listing (SCAN, DBSIZE, HSCAN): the one place that decides it. The caller
// holds r.mu.
func (r *record) existsForList(now int64) bool { return !r.removed && r.meta.LiveAt(now) }

// listable reports whether a key whose state is h counts as present for
// listing at now (neither deleted nor expired): the one place that
// decides it.
func listable(h hdr, now int64) bool { return h.liveAt(now) }

// Include says which copies of a store a listing reads, by name. It is
// called with the copy's lock held, and must not call the store.
type Include func(bucket string) bool

// isPlain reports whether the bucket called name holds plain keys, and
// whether it holds names at all.
func isPlain(name string) (plain, names bool) {
	if strings.HasPrefix(name, PlainBucketPrefix) {
		return true, true
	}
	return false, name == "" || name[0] != reservedByte
}

// ScanCopies lists this store's page of the keyspace for r (see Page):
// the names of type hash of the buckets, and of type string of the keys of
// the plain buckets, of the copies that include accepts (nil: every copy),
// at most r.Count of them and about maxBytes. It is not a snapshot: a name
// added or removed while it runs may be listed or not. It reads one shard
// of one copy at a time, under that copy's read lock, and keeps in memory
// only what the page holds.
func (s *Store) ScanCopies(r ScanRequest, include Include, maxBytes int) Page {
	b := NewPageBuilder(r)
	now := s.clock.Millis()
	s.records.Range(func(k, v any) bool {
		name, rec := k.(string), v.(*record)
		plain, names := isPlain(name)
		switch {
		case !names, r.Type == TypeOther,
			plain && r.Type == TypeHash, !plain && r.Type == TypeString:
			return true
		}
		if !plain {
			rec.mu.RLock()
			ok := rec.existsForList(now) && (include == nil || include(name))
			rec.mu.RUnlock()
			if ok {
				b.Offer(ScanItem{Name: name, Type: TypeHash})
			}
			return true
		}
		rec.eachListable(name, now, include, false, func(key, _ string) {
			b.Offer(ScanItem{Name: key, Type: TypeString})
		})
		return true
	})
	return b.Page(maxBytes)
}

// eachListable calls f with every listable key of the record (and its
// value when values is set), as long as the record's bucket exists for
// listing and include (nil: any) accepts it, under the read lock: at once
// for a small record; for a larger one, a group of shards at a time (the
// shards i with i % groups == g, each group read whole under one lock), so
// that writes to it wait for a part of it at most, and a key present
// throughout is listed. It reports false when the bucket did not exist
// for listing (or include refused it) at the start.
func (r *record) eachListable(name string, now int64, include Include, values bool, f func(key, value string)) bool {
	r.mu.RLock()
	if !r.existsForList(now) || include != nil && !include(name) {
		r.mu.RUnlock()
		return false
	}
	groups := uint32(1)
	for groups < NumShards && r.live+r.tombstones > smallRecord*int(groups) {
		groups *= 2
	}
	for g := range groups {
		if g > 0 {
			r.mu.RLock()
			if !r.existsForList(now) {
				r.mu.RUnlock()
				return true
			}
		}
		r.tab.idx.each(0, func(v uint64) bool {
			if uint32(v>>32)%groups != g {
				return true
			}
			if e := r.tab.view(uint32(v)); listable(e.hdr(), now) {
				if values {
					f(e.strings())
				} else {
					f(string(e.key), "")
				}
			}
			return true
		})
		r.mu.RUnlock()
	}
	return true
}

// smallRecord is the most entries a record may have for eachListable to
// read it all under one lock, and about the most it reads under one.
const smallRecord = 4096

// ScanKeys lists the page of the keys of the bucket called name for r (its
// Type is ignored): items named by the keys, with their values unless
// r.NoValues, in the order of NameHash of the keys. ErrBucketNotFound when
// the bucket does not exist for listing.
func (s *Store) ScanKeys(name string, r ScanRequest, maxBytes int) (Page, error) {
	rec := s.load(name)
	if rec == nil {
		return Page{}, notFound(name)
	}
	b := NewPageBuilder(r)
	if !rec.eachListable(name, s.clock.Millis(), nil, !r.NoValues, func(key, value string) {
		b.Offer(ScanItem{Name: key, Value: value})
	}) {
		return Page{}, notFound(name)
	}
	return b.Page(maxBytes), nil
}

// CountNames counts the names of the copies that include accepts (nil:
// every copy): one for each bucket, and one for each key of each plain
// bucket, as ScanCopies lists them. It reads every key of the plain
// buckets.
func (s *Store) CountNames(include Include) int {
	n := 0
	now := s.clock.Millis()
	s.records.Range(func(k, v any) bool {
		name, rec := k.(string), v.(*record)
		plain, names := isPlain(name)
		switch {
		case !names:
		case plain:
			rec.eachListable(name, now, include, false, func(string, string) { n++ })
		default:
			rec.mu.RLock()
			if rec.existsForList(now) && (include == nil || include(name)) {
				n++
			}
			rec.mu.RUnlock()
		}
		return true
	})
	return n
}

// MergePages merges the pages that several stores listed for r into the
// page a client gets: every item (once) up to the smallest Last of the
// full pages, since every store listed all of its items up to there, and
// no more than r.Count items unless the hash they end at has more. Items
// are checked again against r's cursor, and their hashes computed here:
// the pages may come from other nodes.
func MergePages(r ScanRequest, pages []Page) ScanPage {
	bound := uint64(math.MaxUint64)
	size := 0
	for _, p := range pages {
		if p.Full {
			bound = min(bound, p.Last)
		}
		size += len(p.Items)
	}
	items := make([]hashedItem, 0, size)
	for _, p := range pages {
		for _, it := range p.Items {
			if h := NameHash(it.Name); h >= r.Cursor && h <= bound {
				items = append(items, hashedItem{h, it})
			}
		}
	}
	slices.SortFunc(items, compareItems)
	items = slices.CompactFunc(items, func(a, b hashedItem) bool { return compareItems(a, b) == 0 })
	if len(items) > r.Count && r.Count > 0 {
		cut := items[r.Count-1].h
		end := r.Count
		for end < len(items) && items[end].h == cut {
			end++
		}
		if end < len(items) {
			items, bound = items[:end], cut
		}
	}
	out := ScanPage{Items: make([]ScanItem, len(items)), Next: bound + 1} // 0 after the largest hash
	for i := range items {
		out.Items[i] = items[i].ScanItem
	}
	return out
}

// Removals counts the copies taken out of the store so far (Remove, and
// Collect of dropped buckets). A listing that reads it before and after it
// lists learns whether a copy, and the names in it, went meanwhile: when
// copies move between stores, a name can otherwise be in neither store's
// page (listed by its new holder before it arrived, by its old one after
// it left).
func (s *Store) Removals() uint64 { return s.removals.Load() }

// Scan lists a page of the store's names for r (every copy is listed):
// the textproto server's SCAN, KEYS and RANDOMKEY on a single node.
func (s *Store) Scan(_ context.Context, r ScanRequest) (ScanPage, error) {
	if err := r.Validate(); err != nil {
		return ScanPage{}, err
	}
	return MergePages(r, []Page{s.ScanCopies(r, nil, ScanPageBytes)}), nil
}

// ScanBucket lists a page of the keys of the bucket called name for r:
// HSCAN on a single node.
func (s *Store) ScanBucket(_ context.Context, name string, r ScanRequest) (ScanPage, error) {
	if err := r.Validate(); err != nil {
		return ScanPage{}, err
	}
	if name == "" {
		return ScanPage{}, emptyName()
	}
	p, err := s.ScanKeys(name, r, ScanPageBytes)
	if err != nil {
		return ScanPage{}, err
	}
	return MergePages(r, []Page{p}), nil
}

// DBSize counts the store's names, as Scan lists them: DBSIZE on a single
// node.
func (s *Store) DBSize(context.Context) (int, error) { return s.CountNames(nil), nil }
