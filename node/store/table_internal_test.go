package store

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// tableModel checks a table against a map of what it should hold.
type tableModel struct {
	t    *table
	want map[string]hdrValue
	hash func(key string) uint64
}

type hdrValue struct {
	vd      uint64
	expires int64
	value   string
}

func newTableModel(hash func(string) uint64) *tableModel {
	t := &table{mem: newArena(), hash: func(k []byte) uint64 { return hash(string(k)) }}
	return &tableModel{t: t, want: make(map[string]hdrValue), hash: hash}
}

func (m *tableModel) put(key, value string, vd uint64, expires int64) {
	h := m.hash(key)
	slot, _ := m.t.find(h, key)
	m.t.put(h, key, slot, vd, expires, value)
	if vd&expiresBit == 0 {
		expires = 0
	}
	m.want[key] = hdrValue{vd, expires, value}
}

func (m *tableModel) del(key string) bool {
	slot, _ := m.t.find(m.hash(key), key)
	if slot < 0 {
		return false
	}
	m.t.remove(slot)
	delete(m.want, key)
	return true
}

func (m *tableModel) check(tb testing.TB) {
	tb.Helper()
	if m.t.len() != len(m.want) {
		tb.Fatalf("len %d, want %d", m.t.len(), len(m.want))
	}
	vol := 0
	for k, w := range m.want {
		slot, v := m.t.find(m.hash(k), k)
		if slot < 0 {
			tb.Fatalf("key %q not found", k)
		}
		if v.vd != w.vd || v.expires != w.expires || string(v.value) != w.value || string(v.key) != k {
			tb.Fatalf("key %q: %#x %d %q, want %#x %d %q", k, v.vd, v.expires, v.value, w.vd, w.expires, w.value)
		}
		if got := uint32(m.t.idx.at(slot) >> 32); got != tagOf(m.hash(k)) {
			tb.Fatalf("key %q: tag %#x, want %#x", k, got, tagOf(m.hash(k)))
		}
		if w.vd&expiresBit != 0 {
			vol++
			if m.t.vol.find(m.t.idx.at(slot)) < 0 {
				tb.Fatalf("key %q has an expiry but is not in vol", k)
			}
		}
	}
	if m.t.vol.n != vol {
		tb.Fatalf("vol holds %d, want %d", m.t.vol.n, vol)
	}
	seen := 0
	m.t.idx.each(0, func(v uint64) bool { seen++; return true })
	if seen != len(m.want) {
		tb.Fatalf("each saw %d slots, want %d", seen, len(m.want))
	}
	// Every byte the table holds comes from its arena.
	if got, want := m.t.bytes(), m.t.mem.inUse.Load(); got != want {
		tb.Fatalf("table holds %d bytes, arena hands out %d", got, want)
	}
	if live := m.liveBytes(); live != m.t.live {
		tb.Fatalf("live bytes %d, want %d", m.t.live, live)
	}
}

func (m *tableModel) liveBytes() int {
	n := 0
	for k, w := range m.want {
		n += encSize(len(k), len(w.value), w.vd&expiresBit != 0)
	}
	return n
}

func TestTable(t *testing.T) {
	for _, tc := range []struct {
		name string
		hash func(string) uint64
	}{
		{"xxhash", keyHash},
		// Every key in one slot chain: 64-bit collisions.
		{"one hash", func(string) uint64 { return 42 }},
		// Tags collide, homes differ only by chance: 32-bit collisions.
		{"four tags", func(k string) uint64 { return keyHash(k)<<32 | keyHash(k)%4 }},
		// Same tag, different high bits.
		{"high bits only", func(k string) uint64 { return keyHash(k) &^ (1<<32 - 1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 3000
			if tc.name != "xxhash" {
				n = 300 // a chain of every key
			}
			m := newTableModel(tc.hash)
			rng := rand.New(rand.NewPCG(1, 2))
			values := []string{"", "v", "value-8!", strings.Repeat("x", 100), strings.Repeat("y", 5000)}
			for step := range 20 * n {
				key := fmt.Sprintf("key-%d", rng.IntN(n))
				switch rng.IntN(10) {
				case 0, 1, 2:
					m.del(key)
				default:
					vd := uint64(rng.IntN(1 << 20))
					var exp int64
					switch rng.IntN(4) {
					case 0:
						vd |= tombstoneBit
					case 1:
						vd |= expiresBit
						exp = rng.Int64N(1<<40) + 1
					}
					m.put(key, values[rng.IntN(len(values))], vd, exp)
				}
				if step%997 == 0 {
					m.t.tidy()
					m.check(t)
				}
			}
			m.check(t)
			// Delete all: nothing is held after.
			for k := range m.want {
				m.del(k)
			}
			m.check(t)
			if m.t.mem.inUse.Load() != 0 || len(m.t.chunks) != 0 || m.t.idx.b != nil || m.t.vol.b != nil {
				t.Fatalf("an empty table holds %d bytes, %d chunks", m.t.mem.inUse.Load(), len(m.t.chunks))
			}
		})
	}
}

// TestTableGrowsAndCompacts fills a table, overwrites every entry with one
// of another size (each old one dead), deletes most: the memory held
// stays within bounds of what is live.
func TestTableGrowsAndCompacts(t *testing.T) {
	m := newTableModel(keyHash)
	const n = 100_000
	for i := range n {
		m.put(fmt.Sprintf("key:%012d", i), "v0000000", uint64(i), 0)
	}
	m.check(t)
	full := m.t.bytes()
	if per := float64(full) / n; per > 70 {
		t.Errorf("%.1f bytes per entry of 16-byte keys and 8-byte values", per)
	}
	for round := range 3 {
		for i := range n {
			m.put(fmt.Sprintf("key:%012d", i), strings.Repeat("w", 9+round*8), uint64(n+i), 0)
		}
		m.t.tidy()
		m.check(t)
		if held, live := m.t.bytes(), int64(m.t.live); held > 3*live {
			t.Errorf("round %d: %d bytes held for %d live", round, held, live)
		}
	}
	for i := range n {
		if i%10 != 0 {
			m.del(fmt.Sprintf("key:%012d", i))
		}
	}
	m.t.tidy()
	m.check(t)
	// Another write compacts what the deletes left.
	m.put("another", "v", 1, 0)
	m.t.tidy()
	m.check(t)
	if held, live := m.t.bytes(), int64(m.t.live); held > 4*live {
		t.Errorf("after deleting 90%%: %d bytes held for %d live", held, live)
	}
}

// TestTableOwnChunks writes entries too large for a shared chunk.
func TestTableOwnChunks(t *testing.T) {
	m := newTableModel(keyHash)
	big := strings.Repeat("b", ownChunk+1)
	huge := strings.Repeat("h", 3*maxBlock)
	for i := range 10 {
		m.put(fmt.Sprint("big", i), big, 1, 0)
		m.put(fmt.Sprint("small", i), "s", 1, 0)
	}
	m.put("huge", huge, 1|expiresBit, 5)
	m.check(t)
	m.put("huge", "now small", 2, 0)
	for i := range 10 {
		m.put(fmt.Sprint("big", i), "small", 2, 0)
	}
	m.t.tidy()
	m.check(t)
	if held := m.t.bytes(); held > 64<<10 {
		t.Errorf("%d bytes held after the large values went", held)
	}
}

func TestUvarintLen(t *testing.T) {
	for _, n := range []int{0, 1, 127, 128, 16383, 16384, 1 << 21, 1 << 28, 1 << 35} {
		var buf [10]byte
		if got, want := uvarintLen(n), len(appendUvarint(buf[:0], uint64(n))); got != want {
			t.Errorf("uvarintLen(%d) = %d, want %d", n, got, want)
		}
	}
}

func appendUvarint(b []byte, x uint64) []byte {
	for x >= 0x80 {
		b = append(b, byte(x)|0x80)
		x >>= 7
	}
	return append(b, byte(x))
}
