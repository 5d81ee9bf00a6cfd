package store

// This file holds what two copies of a bucket exchange and compare: an
// Entry (one key's versioned state), a bucket's metadata, and the per-shard
// digests that find where copies differ.

import (
	"encoding/binary"

	"github.com/cespare/xxhash/v2"
)

// NumShards is the number of shards a bucket's keys are split into (by
// ShardOf). Each shard has its own digest, so two copies of a bucket that
// differ in a few keys differ in a few shard digests only.
const NumShards = 64

// PageEntryOverhead is what Page counts for one entry on top of the bytes of
// its key and value, so that maxBytes bounds an encoded page (lengths,
// version, tombstone flag, expiry).
const PageEntryOverhead = 34

// ShardOf returns the shard (0 to NumShards-1) that holds key.
func ShardOf(key string) int { return int(xxhash.Sum64String(key) % NumShards) }

// Entry is one key's state in a copy of a bucket: a value or, when Deleted,
// a tombstone. The store keeps a tombstone's Value empty.
//
// Expires, when not 0, is when the value expires, in milliseconds since
// the Unix epoch: from then on the key counts as missing everywhere, and
// the bucket's primary replaces it with a tombstone (see expiry.go). It is
// part of the versioned state: setting or removing an expiry writes the
// entry again, at a new version. A tombstone has none.
type Entry struct {
	Key, Value string
	Version    Version
	Deleted    bool
	Expires    int64
}

// Newer reports whether a should replace b (same key): higher Version wins;
// on equal versions (two primaries on two sides of a partition) the
// tombstone wins, then the greater Value, then the later expiry;
// identical = false.
func (a Entry) Newer(b Entry) bool {
	return newer(a.Version, a.Deleted, a.Value, a.Expires, b.Version, b.Deleted, b.Value, b.Expires)
}

func newer(av Version, adel bool, aval string, aexp int64, bv Version, bdel bool, bval string, bexp int64) bool {
	if av != bv {
		return av > bv
	}
	if adel != bdel {
		return adel
	}
	if aval != bval {
		return aval > bval
	}
	return aexp > bexp
}

// Hash returns the hash of e that digests combine: xxhash over the key's
// length and bytes, the version, the flags (tombstone, has an expiry), the
// expiry if any, and the value.
func (e Entry) Hash() uint64 { return entryHash(e.Key, e.Version, e.Deleted, e.Expires, e.Value) }

func entryHash[K, V string | []byte](key K, v Version, deleted bool, expires int64, value V) uint64 {
	var flag byte
	if deleted {
		flag = 1
	}
	extra := 0
	if expires != 0 {
		flag |= 2
		extra = 8
	}
	// Layout: key length (8 bytes), key, version (8 bytes), flag, the
	// expiry (8 bytes, only when flag says so), value. The value is the
	// rest of the input, so nothing needs its length.
	if n := 17 + extra + len(key) + len(value); n <= smallEntry {
		var buf [smallEntry]byte // one-shot hashing is faster for the common small entry
		b := binary.LittleEndian.AppendUint64(buf[:0], uint64(len(key)))
		b = append(b, key...)
		b = binary.LittleEndian.AppendUint64(b, uint64(v))
		b = append(b, flag)
		if extra > 0 {
			b = binary.LittleEndian.AppendUint64(b, uint64(expires))
		}
		b = append(b, value...)
		return xxhash.Sum64(b)
	}
	var d xxhash.Digest
	d.Reset()
	var buf [17]byte
	binary.LittleEndian.PutUint64(buf[:8], uint64(len(key)))
	_, _ = d.Write(buf[:8])
	writeTo(&d, key)
	binary.LittleEndian.PutUint64(buf[:8], uint64(v))
	buf[8] = flag
	binary.LittleEndian.PutUint64(buf[9:], uint64(expires))
	_, _ = d.Write(buf[:9+extra])
	writeTo(&d, value)
	return d.Sum64()
}

// writeTo writes s to d without copying it.
func writeTo[S string | []byte](d *xxhash.Digest, s S) {
	for len(s) > 0 {
		var buf [256]byte
		n := copy(buf[:], s)
		_, _ = d.Write(buf[:n])
		s = s[n:]
	}
}

// smallEntry is the size up to which entryHash hashes from a stack buffer.
const smallEntry = 128

// BucketMeta is a copy's bucket-level state. The bucket exists when
// Created > Dropped. Merging takes the maximum of each field, and of the
// pair (ExpiresV, Expires).
//
// Expires, when not 0, is when the whole bucket expires (milliseconds since
// the Unix epoch), set by the write of version ExpiresV; a PERSIST is such
// a write with Expires 0. An expiry set counts as a create, as an entry
// written does.
//
// The store keeps it canonical, so that copies that saw the same writes in
// any order hold equal metas: while the bucket exists, Created is the
// greatest version of any create, entry or expiry written since the last
// drop; when it does not exist, Created is 0; an expiry set before the last
// drop is forgotten (ExpiresV and Expires 0).
type BucketMeta struct {
	Created, Dropped Version
	ExpiresV         Version
	Expires          int64
}

// Exists reports whether the copy holds the bucket (Created > Dropped),
// expired or not; see LiveAt.
func (m BucketMeta) Exists() bool { return m.Created > m.Dropped }

// ExpiredAt reports whether the bucket has an expiry that is not later
// than now (milliseconds since the Unix epoch).
func (m BucketMeta) ExpiredAt(now int64) bool { return m.Expires != 0 && m.Expires <= now }

// LiveAt reports whether the bucket exists and has not expired at now.
func (m BucketMeta) LiveAt(now int64) bool { return m.Exists() && !m.ExpiredAt(now) }

// Merge sets m to the maximum of m and o, field by field, and keeps it
// canonical: how a copy takes in another's meta, in any order.
func (m *BucketMeta) Merge(o BucketMeta) {
	m.Created = max(m.Created, o.Created, o.ExpiresV)
	m.Dropped = max(m.Dropped, o.Dropped)
	if o.ExpiresV > m.ExpiresV || o.ExpiresV == m.ExpiresV && o.Expires > m.Expires {
		m.ExpiresV, m.Expires = o.ExpiresV, o.Expires
	}
	if m.Created <= m.Dropped {
		m.Created = 0
	}
	if m.ExpiresV <= m.Dropped {
		m.ExpiresV, m.Expires = 0, 0
	}
}

// Digest summarises a copy: meta plus one XOR-digest per shard. Equal
// digests mean equal copies (up to hash collisions).
type Digest struct {
	Meta   BucketMeta
	Shards [NumShards]uint64
}

// Sum returns one number combining meta and all shards (xxhash of their
// bytes).
func (d *Digest) Sum() uint64 {
	var buf [32 + 8*NumShards]byte
	binary.LittleEndian.PutUint64(buf[0:], uint64(d.Meta.Created))
	binary.LittleEndian.PutUint64(buf[8:], uint64(d.Meta.Dropped))
	binary.LittleEndian.PutUint64(buf[16:], uint64(d.Meta.ExpiresV))
	binary.LittleEndian.PutUint64(buf[24:], uint64(d.Meta.Expires))
	for i, h := range d.Shards {
		binary.LittleEndian.PutUint64(buf[32+8*i:], h)
	}
	return xxhash.Sum64(buf[:])
}
