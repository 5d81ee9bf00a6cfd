package node

import (
	"encoding/binary"
	"fmt"
)

// Messages of replication and anti-entropy (see msg.go for the others):
//
//	msgReplicate: bucket string, uvarint count, then writes; a write is a
//	              kind byte, a version (8 bytes, big endian) and, for PUT and
//	              DELETE, the key string and (PUT only) the value string.
//	              reply: a reply (msg.go)
//	msgDigest:    epoch (8 bytes; 0: any), bucket string; reply: 0 (no
//	              copy), 2 (the replier does not agree to the epoch), 3
//	              and a node name string (no copy: it died with that
//	              node), or 1 and a digest: created, dropped, then
//	              NumShards shard digests (8 bytes each)
//	msgPage:      bucket string, shard byte, after string, uvarint max bytes;
//	              reply: more byte, uvarint count, entries
//	msgMerge:     bucket string, created, dropped, uvarint count, entries;
//	              reply: a reply
//	msgSums:      uvarint count, then bucket string and sum (8 bytes) each;
//	              reply: uvarint count, then the bucket strings whose copy
//	              differs here (or is missing)
//
// An entry is key string, value string, version, deleted byte.
const (
	msgReplicate byte = 6
	msgDigest    byte = 7
	msgPage      byte = 8
	msgMerge     byte = 9
	msgSums      byte = 10
)

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

// write is one replicated write: a bucket-level create or drop, or a key's
// new entry (a value, or a tombstone for DELETE).
type write struct {
	kind  Kind // KindCreate, KindDrop, KindPut or KindDelete
	entry Entry
	// countFor, when not 0, is 1 + the index in its group of the
	// operation whose Result.Count this write decides (see commit); the
	// primary's own, never sent.
	countFor int
}

// apply applies w to the bucket's copy in s.
func (w write) apply(s *Store, bucket string) error {
	switch w.kind {
	case KindCreate:
		return s.ApplyCreate(bucket, w.entry.Version)
	case KindDrop:
		return s.ApplyDrop(bucket, w.entry.Version)
	}
	return s.ApplyEntry(bucket, w.entry)
}

func appendU64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

func (d *decoder) u64() uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.buf) < 8 {
		d.err = fmt.Errorf("%w: short integer", ErrCorruptOp)
		return 0
	}
	v := binary.BigEndian.Uint64(d.buf)
	d.buf = d.buf[8:]
	return v
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.buf) < 1 {
		d.err = fmt.Errorf("%w: short message", ErrCorruptOp)
		return 0
	}
	c := d.buf[0]
	d.buf = d.buf[1:]
	return c
}

// bool reads a byte that must be 0 or 1.
func (d *decoder) bool() bool {
	c := d.byte()
	if c > 1 && d.err == nil {
		d.err = fmt.Errorf("%w: bad flag %d", ErrCorruptOp, c)
	}
	return c == 1
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

func appendReplicate(b []byte, bucket string, ws []write) []byte {
	b = append(b, msgReplicate)
	b = appendString(b, bucket)
	b = binary.AppendUvarint(b, uint64(len(ws)))
	for _, w := range ws {
		b = append(b, byte(w.kind))
		b = appendU64(b, uint64(w.entry.Version))
		switch w.kind {
		case KindPut:
			b = appendString(b, w.entry.Key)
			b = appendString(b, w.entry.Value)
		case KindDelete:
			b = appendString(b, w.entry.Key)
		}
	}
	return b
}

// decodeReplicate decodes a msgReplicate body (after the type byte).
func decodeReplicate(b []byte) (string, []write, error) {
	d := decoder{buf: b}
	bucket := d.string()
	n := d.count()
	if d.err == nil && n > maxWrites {
		return "", nil, fmt.Errorf("%w: %d writes in one message, at most %d", ErrCorruptOp, n, maxWrites)
	}
	ws := make([]write, 0, n)
	for range n {
		w := write{kind: Kind(d.byte())}
		w.entry.Version = Version(d.u64())
		switch w.kind {
		case KindCreate, KindDrop:
		case KindPut:
			w.entry.Key = d.string()
			w.entry.Value = d.string()
		case KindDelete:
			w.entry.Key = d.string()
			w.entry.Deleted = true
		default:
			if d.err == nil {
				d.err = fmt.Errorf("%w: write of kind %v", ErrCorruptOp, w.kind)
			}
		}
		if d.err == nil && w.entry.Version == 0 {
			d.err = fmt.Errorf("%w: write without a version", ErrCorruptOp)
		}
		if d.err != nil {
			break
		}
		ws = append(ws, w)
	}
	if err := d.finish(); err != nil {
		return "", nil, err
	}
	if bucket == "" {
		return "", nil, fmt.Errorf("%w: replicated write without a bucket", ErrCorruptOp)
	}
	return bucket, ws, nil
}

func appendEntry(b []byte, e Entry) []byte {
	b = appendString(b, e.Key)
	b = appendString(b, e.Value)
	b = appendU64(b, uint64(e.Version))
	return appendBool(b, e.Deleted)
}

func (d *decoder) entry() Entry {
	return Entry{Key: d.string(), Value: d.string(), Version: Version(d.u64()), Deleted: d.bool()}
}

// entries reads a uvarint count and that many entries.
func (d *decoder) entries() []Entry {
	n := d.count()
	es := make([]Entry, 0, n)
	for range n {
		e := d.entry()
		if d.err != nil {
			return nil
		}
		if e.Version == 0 {
			d.err = fmt.Errorf("%w: entry without a version", ErrCorruptOp)
			return nil
		}
		es = append(es, e)
	}
	return es
}

func appendEntries(b []byte, es []Entry) []byte {
	b = binary.AppendUvarint(b, uint64(len(es)))
	for _, e := range es {
		b = appendEntry(b, e)
	}
	return b
}

func appendMeta(b []byte, m BucketMeta) []byte {
	b = appendU64(b, uint64(m.Created))
	return appendU64(b, uint64(m.Dropped))
}

func (d *decoder) meta() BucketMeta {
	return BucketMeta{Created: Version(d.u64()), Dropped: Version(d.u64())}
}

func appendDigestRequest(b []byte, epoch uint64, bucket string) []byte {
	b = append(b, msgDigest)
	b = appendU64(b, epoch)
	return appendString(b, bucket)
}

func decodeDigestRequest(b []byte) (uint64, string, error) {
	d := decoder{buf: b}
	epoch := d.u64()
	bucket := d.string()
	return epoch, bucket, d.finish()
}

// errViewsDiffer is a msgDigest reply's status digestDiffer.
var errViewsDiffer = fmt.Errorf("%w: the peer does not agree to this node's view yet", ErrNoRoute)

// appendDigestDiffer encodes the reply to a msgDigest whose epoch this
// node does not agree to (yet).
func appendDigestDiffer(b []byte) []byte { return append(b, digestDiffer) }

// Status bytes of a msgDigest reply.
const (
	digestNone   byte = 0 // no copy here
	digestCopy   byte = 1 // a digest follows
	digestDiffer byte = 2 // the replier does not agree to the puller's view
	digestLost   byte = 3 // no copy here, and the copies died with a node: its name follows (lost.go)
)

// copiesLost is a msgDigest reply's digestLost.
type copiesLost struct{ node string }

func (e *copiesLost) Error() string { return "node: the copies died with node " + e.node }

// appendDigestLost encodes the reply to a msgDigest for a bucket whose
// copies this node believes died with node `name`.
func appendDigestLost(b []byte, name string) []byte {
	return appendString(append(b, digestLost), name)
}

// appendDigestReply encodes the reply to msgDigest.
func appendDigestReply(b []byte, dg Digest, ok bool) []byte {
	if !ok {
		return append(b, digestNone)
	}
	b = append(b, digestCopy)
	b = appendMeta(b, dg.Meta)
	for _, s := range dg.Shards {
		b = appendU64(b, s)
	}
	return b
}

func decodeDigestReply(b []byte) (Digest, bool, error) {
	if len(b) == 1 && b[0] == digestDiffer {
		return Digest{}, false, errViewsDiffer
	}
	if len(b) > 0 && b[0] == digestLost {
		d := decoder{buf: b[1:]}
		name := d.string()
		if err := d.finish(); err != nil {
			return Digest{}, false, err
		}
		return Digest{}, false, &copiesLost{node: name}
	}
	d := decoder{buf: b}
	var dg Digest
	ok := d.bool()
	if ok {
		dg.Meta = d.meta()
		for i := range dg.Shards {
			dg.Shards[i] = d.u64()
		}
	}
	return dg, ok, d.finish()
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
	b = appendString(b, r.bucket)
	b = append(b, byte(r.shard))
	b = appendString(b, r.after)
	return binary.AppendUvarint(b, uint64(r.maxBytes))
}

func decodePageRequest(b []byte) (pageRequest, error) {
	d := decoder{buf: b}
	r := pageRequest{bucket: d.string(), shard: int(d.byte()), after: d.string()}
	mb := d.uvarint()
	if err := d.finish(); err != nil {
		return pageRequest{}, err
	}
	if r.bucket == "" || r.shard >= NumShards || mb == 0 {
		return pageRequest{}, fmt.Errorf("%w: bad page request", ErrCorruptOp)
	}
	r.maxBytes = int(min(mb, maxPageBytes))
	return r, nil
}

func appendPageReply(b []byte, es []Entry, more bool) []byte {
	b = appendBool(b, more)
	return appendEntries(b, es)
}

func decodePageReply(b []byte) ([]Entry, bool, error) {
	d := decoder{buf: b}
	more := d.bool()
	es := d.entries()
	return es, more, d.finish()
}

func appendMerge(b []byte, bucket string, m BucketMeta, es []Entry) []byte {
	b = append(b, msgMerge)
	b = appendString(b, bucket)
	b = appendMeta(b, m)
	return appendEntries(b, es)
}

func decodeMerge(b []byte) (string, BucketMeta, []Entry, error) {
	d := decoder{buf: b}
	bucket := d.string()
	m := d.meta()
	es := d.entries()
	if err := d.finish(); err != nil {
		return "", BucketMeta{}, nil, err
	}
	if bucket == "" {
		return "", BucketMeta{}, nil, fmt.Errorf("%w: merge without a bucket", ErrCorruptOp)
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
	b = appendU64(b, epoch)
	b = appendBool(b, done)
	b = binary.AppendUvarint(b, uint64(len(sums)))
	for _, s := range sums {
		b = appendString(b, s.bucket)
		b = appendU64(b, s.sum)
	}
	return b
}

// decodeSums decodes a msgSums body (after the type byte).
func decodeSums(b []byte) (epoch uint64, done bool, sums []bucketSum, err error) {
	d := decoder{buf: b}
	epoch = d.u64()
	done = d.bool()
	n := d.count()
	sums = make([]bucketSum, 0, n)
	for range n {
		s := bucketSum{bucket: d.string(), sum: d.u64()}
		if d.err != nil {
			break
		}
		sums = append(sums, s)
	}
	return epoch, done, sums, d.finish()
}

// appendSumsReply encodes the reply to msgSums: whether the replier has
// the sender's view, and the buckets whose copy differs there.
func appendSumsReply(b []byte, agree bool, differ []string) []byte {
	return appendNames(appendBool(b, agree), differ)
}

func decodeSumsReply(b []byte) (agree bool, differ []string, err error) {
	d := decoder{buf: b}
	agree = d.bool()
	if d.err != nil {
		return false, nil, d.err
	}
	differ, err = decodeNames(d.buf)
	return agree, differ, err
}

func appendNames(b []byte, names []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(names)))
	for _, s := range names {
		b = appendString(b, s)
	}
	return b
}

func decodeNames(b []byte) ([]string, error) {
	d := decoder{buf: b}
	n := d.count()
	names := make([]string, 0, n)
	for range n {
		s := d.string()
		if d.err != nil {
			break
		}
		names = append(names, s)
	}
	return names, d.finish()
}
