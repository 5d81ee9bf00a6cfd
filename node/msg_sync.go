package node

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/node/wire"
)

// The encodings of the messages of replication and anti-entropy, as
// messages.go describes them.

// Limits on what a peer may ask for or send in one message.
const (
	maxPageBytes = 4 << 20 // the largest page a peer may ask for
	pageBytes    = 1 << 20 // the page size this node asks for and sends
	maxWrites    = maxBatch
	// maxGroupBytes bounds the keys and values of the writes replicated in
	// one message (a single larger write still goes alone).
	maxGroupBytes = 8 << 20
	// maxSumsBytes bounds the bucket names compared in one msgSums.
	maxSumsBytes = 1 << 20
)

// write is one replicated write: a bucket-level create, drop or expiry, or
// a key's new entry (a value, with its expiry if any, or a tombstone for
// DELETE).
type write struct {
	kind  store.Kind // KindCreate, KindDrop, KindExpire, KindPut, KindDelete or KindEvict
	entry store.Entry
	// countFor, when not 0, is 1 + the index in its group of the
	// operation whose Result.Count this write decides (see commit); the
	// primary's own, never sent.
	countFor int
}

// apply applies w to the bucket's copy in s.
func (w write) apply(s *store.Store, bucket string) error {
	switch w.kind {
	case store.KindCreate:
		return s.ApplyCreate(bucket, w.entry.Version)
	case store.KindDrop:
		return s.ApplyDrop(bucket, w.entry.Version)
	case store.KindExpire:
		return s.ApplyExpiry(bucket, w.entry.Version, w.entry.Expires)
	case store.KindEvict:
		return s.ApplyEvict(bucket, w.entry.Key, w.entry.Version)
	}
	return s.ApplyEntry(bucket, w.entry)
}

func appendReplicate(b []byte, bucket string, ws []write) []byte {
	b = append(b, msgReplicate)
	b = wire.AppendString(b, bucket)
	b = binary.AppendUvarint(b, uint64(len(ws)))
	for _, w := range ws {
		b = append(b, byte(w.kind))
		b = wire.AppendU64(b, uint64(w.entry.Version))
		switch w.kind {
		case store.KindPut:
			b = wire.AppendString(b, w.entry.Key)
			b = wire.AppendString(b, w.entry.Value)
			b = binary.AppendUvarint(b, uint64(w.entry.Expires))
		case store.KindExpire:
			b = binary.AppendUvarint(b, uint64(w.entry.Expires))
		case store.KindDelete, store.KindEvict:
			b = wire.AppendString(b, w.entry.Key)
		}
	}
	return b
}

// decodeReplicate decodes a msgReplicate body (after the type byte).
func decodeReplicate(b []byte) (string, []write, error) {
	d := decoder{wire.NewDecoder(b)}
	bucket := d.String()
	n := d.Count()
	if d.Err() == nil && n > maxWrites {
		return "", nil, fmt.Errorf("%w: %d writes in one message, at most %d", wire.ErrCorrupt, n, maxWrites)
	}
	ws := make([]write, 0, n)
	for range n {
		w := write{kind: store.Kind(d.Byte())}
		w.entry.Version = store.Version(d.U64())
		switch w.kind {
		case store.KindCreate, store.KindDrop:
		case store.KindPut:
			w.entry.Key = d.String()
			w.entry.Value = d.String()
			w.entry.Expires = d.expires()
		case store.KindExpire:
			w.entry.Expires = d.expires()
		case store.KindEvict:
			w.entry.Key = d.String()
		case store.KindDelete:
			w.entry.Key = d.String()
			w.entry.Deleted = true
		default:
			if d.Err() == nil {
				d.Failf("write of kind %v", w.kind)
			}
		}
		if d.Err() == nil && w.entry.Version == 0 {
			d.Failf("write without a version")
		}
		if d.Err() != nil {
			break
		}
		ws = append(ws, w)
	}
	if err := d.Finish(); err != nil {
		return "", nil, err
	}
	if bucket == "" {
		return "", nil, fmt.Errorf("%w: replicated write without a bucket", wire.ErrCorrupt)
	}
	return bucket, ws, nil
}

func appendEntry(b []byte, e store.Entry) []byte {
	b = wire.AppendString(b, e.Key)
	b = wire.AppendString(b, e.Value)
	b = wire.AppendU64(b, uint64(e.Version))
	b = wire.AppendBool(b, e.Deleted)
	return binary.AppendUvarint(b, uint64(e.Expires))
}

func (d *decoder) entry() store.Entry {
	e := store.Entry{Key: d.String(), Value: d.String(), Version: store.Version(d.U64()), Deleted: d.Bool()}
	e.Expires = d.expires()
	if d.Err() == nil && e.Deleted && e.Expires != 0 {
		d.Failf("a tombstone with an expiry")
	}
	return e
}

// expires reads an expiry: ms since the Unix epoch, 0 for none.
func (d *decoder) expires() int64 {
	v := d.Uvarint()
	if v > math.MaxInt64 {
		d.Failf("expiry %d", v)
		return 0
	}
	return int64(v)
}

// entries reads a uvarint count and that many entries.
func (d *decoder) entries() []store.Entry {
	n := d.Count()
	es := make([]store.Entry, 0, n)
	for range n {
		e := d.entry()
		if d.Err() != nil {
			return nil
		}
		if e.Version == 0 {
			d.Failf("entry without a version")
			return nil
		}
		es = append(es, e)
	}
	return es
}

func appendEntries(b []byte, es []store.Entry) []byte {
	b = binary.AppendUvarint(b, uint64(len(es)))
	for _, e := range es {
		b = appendEntry(b, e)
	}
	return b
}

func appendMeta(b []byte, m store.BucketMeta) []byte {
	b = wire.AppendU64(b, uint64(m.Created))
	b = wire.AppendU64(b, uint64(m.Dropped))
	b = binary.AppendUvarint(b, uint64(m.ExpiresV))
	return binary.AppendUvarint(b, uint64(m.Expires))
}

func (d *decoder) meta() store.BucketMeta {
	m := store.BucketMeta{Created: store.Version(d.U64()), Dropped: store.Version(d.U64())}
	m.ExpiresV = store.Version(d.Uvarint())
	m.Expires = d.expires()
	return m
}

func appendDigestRequest(b []byte, epoch uint64, bucket string) []byte {
	b = append(b, msgDigest)
	b = wire.AppendU64(b, epoch)
	return wire.AppendString(b, bucket)
}

func decodeDigestRequest(b []byte) (uint64, string, error) {
	d := decoder{wire.NewDecoder(b)}
	epoch := d.U64()
	bucket := d.String()
	return epoch, bucket, d.Finish()
}

// errViewsDiffer is a msgDigest reply's status digestDiffer.
var errViewsDiffer = fmt.Errorf("%w: the peer does not agree to this node's view yet", ErrNoRoute)

// appendDigestDiffer encodes the reply to a msgDigest whose epoch this
// node does not agree to (yet).
func appendDigestDiffer(b []byte) []byte { return append(b, digestDiffer) }

// copiesLost is a msgDigest reply's digestLost.
type copiesLost struct{ node string }

func (e *copiesLost) Error() string { return "node: the copies died with node " + e.node }

// appendDigestLost encodes the reply to a msgDigest for a bucket whose
// copies this node believes died with node `name`.
func appendDigestLost(b []byte, name string) []byte {
	return wire.AppendString(append(b, digestLost), name)
}

// appendDigestReply encodes the reply to msgDigest.
func appendDigestReply(b []byte, dg store.Digest, ok bool) []byte {
	if !ok {
		return append(b, digestNone)
	}
	b = append(b, digestCopy)
	b = appendMeta(b, dg.Meta)
	for _, s := range dg.Shards {
		b = wire.AppendU64(b, s)
	}
	return b
}

func decodeDigestReply(b []byte) (store.Digest, bool, error) {
	if len(b) == 1 && b[0] == digestDiffer {
		return store.Digest{}, false, errViewsDiffer
	}
	if len(b) > 0 && b[0] == digestLost {
		d := decoder{wire.NewDecoder(b[1:])}
		name := d.String()
		if err := d.Finish(); err != nil {
			return store.Digest{}, false, err
		}
		return store.Digest{}, false, &copiesLost{node: name}
	}
	d := decoder{wire.NewDecoder(b)}
	var dg store.Digest
	ok := d.Bool()
	if ok {
		dg.Meta = d.meta()
		for i := range dg.Shards {
			dg.Shards[i] = d.U64()
		}
	}
	return dg, ok, d.Finish()
}

// pageRequest is the body of msgPage.
type pageRequest struct {
	bucket   string
	shard    int
	after    string
	maxBytes int
}

func (r pageRequest) append(b []byte) []byte {
	b = append(b, msgPage)
	b = wire.AppendString(b, r.bucket)
	b = append(b, byte(r.shard))
	b = wire.AppendString(b, r.after)
	return binary.AppendUvarint(b, uint64(r.maxBytes))
}

func decodePageRequest(b []byte) (pageRequest, error) {
	d := decoder{wire.NewDecoder(b)}
	r := pageRequest{bucket: d.String(), shard: int(d.Byte()), after: d.String()}
	mb := d.Uvarint()
	if err := d.Finish(); err != nil {
		return pageRequest{}, err
	}
	if r.bucket == "" || r.shard >= store.NumShards || mb == 0 {
		return pageRequest{}, fmt.Errorf("%w: bad page request", wire.ErrCorrupt)
	}
	r.maxBytes = int(min(mb, maxPageBytes))
	return r, nil
}

func appendPageReply(b []byte, es []store.Entry, more bool) []byte {
	b = wire.AppendBool(b, more)
	return appendEntries(b, es)
}

func decodePageReply(b []byte) ([]store.Entry, bool, error) {
	d := decoder{wire.NewDecoder(b)}
	more := d.Bool()
	es := d.entries()
	return es, more, d.Finish()
}

func appendMerge(b []byte, bucket string, m store.BucketMeta, es []store.Entry) []byte {
	b = append(b, msgMerge)
	b = wire.AppendString(b, bucket)
	b = appendMeta(b, m)
	return appendEntries(b, es)
}

func decodeMerge(b []byte) (string, store.BucketMeta, []store.Entry, error) {
	d := decoder{wire.NewDecoder(b)}
	bucket := d.String()
	m := d.meta()
	es := d.entries()
	if err := d.Finish(); err != nil {
		return "", store.BucketMeta{}, nil, err
	}
	if bucket == "" {
		return "", store.BucketMeta{}, nil, fmt.Errorf("%w: merge without a bucket", wire.ErrCorrupt)
	}
	return bucket, m, es, nil
}

// bucketSum is one bucket's digest sum, for msgSums.
type bucketSum struct {
	bucket string
	sum    uint64
}

// appendSums encodes a msgSums from a node whose view has epoch epoch;
// done (with no sums) ends a pass that left the receiver lacking nothing
// of the sender's.
func appendSums(b []byte, epoch uint64, done bool, sums []bucketSum) []byte {
	b = append(b, msgSums)
	b = wire.AppendU64(b, epoch)
	b = wire.AppendBool(b, done)
	b = binary.AppendUvarint(b, uint64(len(sums)))
	for _, s := range sums {
		b = wire.AppendString(b, s.bucket)
		b = wire.AppendU64(b, s.sum)
	}
	return b
}

// decodeSums decodes a msgSums body (after the type byte).
func decodeSums(b []byte) (epoch uint64, done bool, sums []bucketSum, err error) {
	d := decoder{wire.NewDecoder(b)}
	epoch = d.U64()
	done = d.Bool()
	n := d.Count()
	sums = make([]bucketSum, 0, n)
	for range n {
		s := bucketSum{bucket: d.String(), sum: d.U64()}
		if d.Err() != nil {
			break
		}
		sums = append(sums, s)
	}
	return epoch, done, sums, d.Finish()
}

// appendSumsReply encodes the reply to msgSums: whether the replier has
// the sender's view, and the buckets whose copy differs there.
func appendSumsReply(b []byte, agree bool, differ []string) []byte {
	return appendNames(wire.AppendBool(b, agree), differ)
}

func decodeSumsReply(b []byte) (agree bool, differ []string, err error) {
	d := decoder{wire.NewDecoder(b)}
	agree = d.Bool()
	if d.Err() != nil {
		return false, nil, d.Err()
	}
	differ, err = decodeNames(d.Rest())
	return agree, differ, err
}

func appendNames(b []byte, names []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(names)))
	for _, s := range names {
		b = wire.AppendString(b, s)
	}
	return b
}

func decodeNames(b []byte) ([]string, error) {
	d := decoder{wire.NewDecoder(b)}
	n := d.Count()
	names := make([]string, 0, n)
	for range n {
		s := d.String()
		if d.Err() != nil {
			break
		}
		names = append(names, s)
	}
	return names, d.Finish()
}
