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
// version, tombstone flag).
const PageEntryOverhead = 24

// ShardOf returns the shard (0 to NumShards-1) that holds key.
func ShardOf(key string) int { return int(xxhash.Sum64String(key) % NumShards) }

// Entry is one key's state in a copy of a bucket: a value or, when Deleted,
// a tombstone. The store keeps a tombstone's Value empty.
type Entry struct {
	Key, Value string
	Version    Version
	Deleted    bool
}

// Newer reports whether a should replace b (same key): higher Version wins;
// on equal versions (two primaries on two sides of a partition) the
// tombstone wins, then the greater Value; identical = false.
func (a Entry) Newer(b Entry) bool {
	return newer(a.Version, a.Deleted, a.Value, b.Version, b.Deleted, b.Value)
}

func newer(av Version, adel bool, aval string, bv Version, bdel bool, bval string) bool {
	if av != bv {
		return av > bv
	}
	if adel != bdel {
		return adel
	}
	return aval > bval
}

// Hash returns the hash of e that digests combine: xxhash over the key's
// length and bytes, the version, the tombstone flag and the value.
func (e Entry) Hash() uint64 { return entryHash(e.Key, e.Version, e.Deleted, e.Value) }

func entryHash(key string, v Version, deleted bool, value string) uint64 {
	var flag byte
	if deleted {
		flag = 1
	}
	// Layout: key length (8 bytes), key, version (8 bytes), flag, value. The
	// value is the rest of the input, so nothing needs its length.
	if n := 17 + len(key) + len(value); n <= smallEntry {
		var buf [smallEntry]byte // one-shot hashing is faster for the common small entry
		b := binary.LittleEndian.AppendUint64(buf[:0], uint64(len(key)))
		b = append(b, key...)
		b = binary.LittleEndian.AppendUint64(b, uint64(v))
		b = append(b, flag)
		b = append(b, value...)
		return xxhash.Sum64(b)
	}
	var d xxhash.Digest
	d.Reset()
	var buf [9]byte
	binary.LittleEndian.PutUint64(buf[:8], uint64(len(key)))
	_, _ = d.Write(buf[:8])
	_, _ = d.WriteString(key)
	binary.LittleEndian.PutUint64(buf[:8], uint64(v))
	buf[8] = flag
	_, _ = d.Write(buf[:9])
	_, _ = d.WriteString(value)
	return d.Sum64()
}

// smallEntry is the size up to which entryHash hashes from a stack buffer.
const smallEntry = 128

// BucketMeta is a copy's bucket-level state. The bucket exists when
// Created > Dropped. Merging takes the maximum of each field.
//
// The store keeps it canonical, so that copies that saw the same writes in
// any order hold equal metas: while the bucket exists, Created is the
// greatest version of any create or entry written since the last drop; when
// it does not exist, Created is 0.
type BucketMeta struct {
	Created, Dropped Version
}

// Exists reports whether the bucket exists (Created > Dropped).
func (m BucketMeta) Exists() bool { return m.Created > m.Dropped }

// merge sets m to the maximum of m and o, field by field, and keeps it
// canonical.
func (m *BucketMeta) merge(o BucketMeta) {
	m.Created = max(m.Created, o.Created)
	m.Dropped = max(m.Dropped, o.Dropped)
	if m.Created <= m.Dropped {
		m.Created = 0
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
	var buf [16 + 8*NumShards]byte
	binary.LittleEndian.PutUint64(buf[0:], uint64(d.Meta.Created))
	binary.LittleEndian.PutUint64(buf[8:], uint64(d.Meta.Dropped))
	for i, h := range d.Shards {
		binary.LittleEndian.PutUint64(buf[16+8*i:], h)
	}
	return xxhash.Sum64(buf[:])
}
