package ring

import (
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/cespare/xxhash/v2"
)

// Ranges is a parsed letter-range table: each entry gives the bytes from one
// bound to another (inclusive) to a node name. It implements Placement and is
// immutable, safe for concurrent use. Build it with ParseRanges.
//
// The first byte of a bucket name picks the entry, and so the first owner.
// Further owners come from the entries that follow in table order (the order
// of the spec), wrapping around to the first entry, each name counted once.
// Names that are not members of the ring are skipped, so when a node is
// missing its buckets go to the node of the next entry.
//
// Bucket names that begin with a NUL byte are the node's own (the buckets
// that hold plain keys, see ReservedPrefix): no table names that byte, so
// such a name picks its entry by a hash of the whole name instead, which
// spreads those buckets over every entry.
type Ranges struct {
	entries []rangeEntry
	names   []string   // distinct names, in table order
	index   [256]uint8 // byte → 1 + index of the entry that covers it; 0: none
}

var _ Placement = (*Ranges)(nil)

// rangeEntry gives the bytes from..to (inclusive) to a node name.
type rangeEntry struct {
	from, to  byte
	name      string
	nameIndex int // index of name in Ranges.names
}

func (e rangeEntry) String() string {
	if e.from == e.to {
		return string(e.from) + "=" + e.name
	}
	return string(e.from) + "-" + string(e.to) + "=" + e.name
}

// ParseRanges parses a letter-range table: comma-separated entries
// "<from>-<to>=<name>", or "<byte>=<name>" for a single byte, for example
// "a-g=a-g,h-n=h-n,o-u=o-u,v-z=v-z". Space around entries, and around
// their '=', is ignored.
//
// A bound is one printable ASCII byte other than space, ',' and '=' (so
// "--/=n" is the range from '-' to '/' and "-=n" is the byte '-'); from must
// not be above to, and no byte may be in two entries. A range may span ','
// and '=', but no bound can name them. A name is non-empty UTF-8 without
// white space, control characters, ',' or '='; one name may own several
// entries. Any other input gives ErrInvalidSpec.
func ParseRanges(spec string) (*Ranges, error) {
	if strings.TrimSpace(spec) == "" {
		return nil, fmt.Errorf("%w: empty spec", ErrInvalidSpec)
	}
	parts := strings.Split(spec, ",")
	if len(parts) > 255 { // a byte can belong to one entry only; this keeps index in a uint8
		return nil, fmt.Errorf("%w: %d entries, at most 255", ErrInvalidSpec, len(parts))
	}
	r := &Ranges{entries: make([]rangeEntry, 0, len(parts))}
	for i, part := range parts {
		e, err := parseEntry(strings.TrimSpace(part))
		if err != nil {
			return nil, fmt.Errorf("%w: entry %d: %w", ErrInvalidSpec, i+1, err)
		}
		for b := int(e.from); b <= int(e.to); b++ {
			if j := r.index[b]; j != 0 {
				prev := r.entries[j-1]
				if prev.from == e.from && prev.to == e.to {
					return nil, fmt.Errorf("%w: entry %d (%q) repeats the range of entry %d (%q)",
						ErrInvalidSpec, i+1, e.String(), j, prev.String())
				}
				return nil, fmt.Errorf("%w: entry %d (%q) overlaps entry %d (%q) at %q",
					ErrInvalidSpec, i+1, e.String(), j, prev.String(), string(rune(b)))
			}
			r.index[b] = uint8(i + 1)
		}
		e.nameIndex = slices.Index(r.names, e.name)
		if e.nameIndex < 0 {
			e.nameIndex = len(r.names)
			r.names = append(r.names, e.name)
		}
		r.entries = append(r.entries, e)
	}
	return r, nil
}

// parseEntry parses one trimmed entry.
func parseEntry(entry string) (rangeEntry, error) {
	if entry == "" {
		return rangeEntry{}, fmt.Errorf("empty entry")
	}
	bounds, name, ok := strings.Cut(entry, "=")
	if !ok {
		return rangeEntry{}, fmt.Errorf("%q has no '=' before a node name", entry)
	}
	bounds, name = strings.TrimSpace(bounds), strings.TrimSpace(name)
	var e rangeEntry
	switch {
	case len(bounds) == 1:
		e.from, e.to = bounds[0], bounds[0]
	case len(bounds) == 3 && bounds[1] == '-':
		e.from, e.to = bounds[0], bounds[2]
	case bounds == "":
		return rangeEntry{}, fmt.Errorf("%q has no range before '='", entry)
	default:
		return rangeEntry{}, fmt.Errorf("range %q is not <byte> or <byte>-<byte>", bounds)
	}
	for _, b := range []byte{e.from, e.to} {
		if !validBound(b) {
			return rangeEntry{}, fmt.Errorf("bound %q is not a printable ASCII byte other than space, ',' and '='", string(rune(b)))
		}
	}
	if e.from > e.to {
		return rangeEntry{}, fmt.Errorf("range %q runs backwards", bounds)
	}
	if name == "" {
		return rangeEntry{}, fmt.Errorf("missing node name after '='")
	}
	if err := ValidName(name); err != nil {
		return rangeEntry{}, err
	}
	e.name = name
	return e, nil
}

func validBound(b byte) bool {
	return b > ' ' && b <= '~' && b != ',' && b != '='
}

// MaxNameLen bounds the length, in bytes, of a node's or a cluster's name.
const MaxNameLen = 64

// ValidName returns an error unless name can name a node or a cluster: one
// word of at most MaxNameLen bytes of printable UTF-8, without commas or
// equals signs (the range table's separators). Node names are placed by the
// table, so the rule lives here, and node and cmd apply the same one.
func ValidName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("a name cannot be empty")
	case len(name) > MaxNameLen:
		return fmt.Errorf("name %.16q... is longer than %d bytes", name, MaxNameLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("name %q is not valid UTF-8", name)
	}
	for _, c := range name {
		if unicode.IsSpace(c) || unicode.IsControl(c) || !unicode.IsPrint(c) || c == ',' || c == '=' {
			return fmt.Errorf("name %q contains %q", name, c)
		}
	}
	return nil
}

// String returns the canonical spec: entries in table order, without spaces,
// a single byte written as "x=name". It parses back to the same table.
func (r *Ranges) String() string {
	var b strings.Builder
	for i, e := range r.entries {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(e.String())
	}
	return b.String()
}

// Names returns the node names of the table in table order, each once.
func (r *Ranges) Names() []string { return slices.Clone(r.names) }

// Place builds the ring for members; see Placement.Place. The table stays
// whole: names that are not members are skipped when owners are looked up,
// and members that the table does not name own nothing.
func (r *Ranges) Place(members []string) (Ring, error) {
	ms, err := normalizeMembers(members)
	if err != nil {
		return nil, err
	}
	// present[k]: r.names[k] is a member. Names that are not members are
	// marked as already seen, so the walks below skip them.
	present := make([]bool, len(r.names))
	live := 0
	for k, name := range r.names {
		if _, ok := slices.BinarySearch(ms, name); ok {
			present[k] = true
			live++
		}
	}
	rr := &rangesRing{members: ms, index: r.index, chains: make([][]string, len(r.entries))}
	if live == 0 {
		return rr, nil
	}
	// Every entry's chain holds each live name once: one backing array.
	backing := make([]string, 0, len(r.entries)*live)
	seen := make([]bool, len(r.names))
	for i := range r.entries {
		for k := range seen {
			seen[k] = !present[k]
		}
		start := len(backing)
		for k := range r.entries {
			e := r.entries[(i+k)%len(r.entries)]
			if !seen[e.nameIndex] {
				seen[e.nameIndex] = true
				backing = append(backing, e.name)
			}
		}
		rr.chains[i] = backing[start:len(backing):len(backing)]
	}
	return rr, nil
}

// rangesRing is the immutable result of Ranges.Place.
type rangesRing struct {
	members []string
	index   [256]uint8 // as Ranges.index
	chains  [][]string // entry → its owners that are members, in order
}

func (r *rangesRing) Owners(bucket string, n int) ([]string, error) {
	if err := checkQuery(bucket, n); err != nil {
		return nil, err
	}
	i := r.index[bucket[0]]
	if bucket[0] == ReservedPrefix[0] && len(r.chains) > 0 {
		i = uint8(1 + xxhash.Sum64String(bucket)%uint64(len(r.chains)))
	}
	if i == 0 {
		return nil, fmt.Errorf("%w: bucket %s: no range covers its first byte", ErrNoOwner, quoteBucket(bucket))
	}
	chain := r.chains[i-1]
	if len(chain) == 0 {
		return nil, fmt.Errorf("%w: bucket %s: no node of the table is a member", ErrNoOwner, quoteBucket(bucket))
	}
	return slices.Clone(chain[:min(n, len(chain))]), nil
}

func (r *rangesRing) Members() []string { return slices.Clone(r.members) }
