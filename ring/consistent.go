package ring

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/buraksezer/consistent"
	"github.com/cespare/xxhash/v2"
)

// Defaults and limits of ConsistentConfig.
const (
	// DefaultPartitionCount is the number of partitions when
	// ConsistentConfig.PartitionCount is zero.
	DefaultPartitionCount = 271
	// DefaultReplicationFactor is the number of points per member on the hash
	// ring when ConsistentConfig.ReplicationFactor is zero.
	DefaultReplicationFactor = 20
	// DefaultLoad is the load factor when ConsistentConfig.Load is zero.
	DefaultLoad = 1.25
	// MaxPartitionCount is the largest accepted PartitionCount. Building a
	// ring costs time and memory in proportion to it.
	MaxPartitionCount = 1 << 16
	// MaxReplicationFactor is the largest accepted ReplicationFactor.
	// Building a ring costs time and memory in proportion to members times
	// this factor.
	MaxReplicationFactor = 1 << 10
)

// ConsistentConfig configures a consistent-hash placement with bounded loads.
// A zero field takes its default.
type ConsistentConfig struct {
	// PartitionCount is the number of partitions that bucket names hash
	// into; each partition has one first owner. 1 to MaxPartitionCount,
	// default DefaultPartitionCount. A prime spreads names best.
	PartitionCount int
	// ReplicationFactor is the number of points each member has on the hash
	// ring (virtual nodes). 1 to MaxReplicationFactor, default
	// DefaultReplicationFactor. It is not the number of copies of a bucket:
	// that is the n passed to Ring.Owners.
	ReplicationFactor int
	// Load bounds how unevenly partitions spread: no member is the first
	// owner of more than ceil(Load × PartitionCount / members) partitions.
	// Must be greater than 1 and finite, default DefaultLoad.
	Load float64
}

// validate fills defaults and checks the settings.
func (c *ConsistentConfig) validate() error {
	if c.PartitionCount == 0 {
		c.PartitionCount = DefaultPartitionCount
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = DefaultReplicationFactor
	}
	if c.Load == 0 {
		c.Load = DefaultLoad
	}
	switch {
	case c.PartitionCount < 1 || c.PartitionCount > MaxPartitionCount:
		return fmt.Errorf("%w: partition count %d, want 1 to %d", ErrInvalidConfig, c.PartitionCount, MaxPartitionCount)
	case c.ReplicationFactor < 1 || c.ReplicationFactor > MaxReplicationFactor:
		return fmt.Errorf("%w: replication factor %d, want 1 to %d", ErrInvalidConfig, c.ReplicationFactor, MaxReplicationFactor)
	case math.IsNaN(c.Load) || math.IsInf(c.Load, 0) || c.Load <= 1:
		return fmt.Errorf("%w: load %v, want a finite number greater than 1", ErrInvalidConfig, c.Load)
	}
	return nil
}

// ConsistentPlacement places buckets with consistent hashing with bounded
// loads (github.com/buraksezer/consistent, hashed with xxhash). Build it with
// NewConsistent; it holds only its configuration and is safe for concurrent
// use.
type ConsistentPlacement struct {
	cfg ConsistentConfig // validated, defaults filled
}

var _ Placement = (*ConsistentPlacement)(nil)

// NewConsistent validates cfg, fills its defaults and returns the placement.
// A bad setting gives ErrInvalidConfig.
func NewConsistent(cfg ConsistentConfig) (*ConsistentPlacement, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &ConsistentPlacement{cfg: cfg}, nil
}

// Config returns the placement's configuration, defaults filled.
func (p *ConsistentPlacement) Config() ConsistentConfig {
	cfg := p.cfg
	_ = cfg.validate() // a zero ConsistentPlacement reports the defaults
	return cfg
}

// String describes the placement, e.g.
// "consistent(partitions=271,replication=20,load=1.25)".
func (p *ConsistentPlacement) String() string {
	cfg := p.Config()
	return "consistent(partitions=" + strconv.Itoa(cfg.PartitionCount) +
		",replication=" + strconv.Itoa(cfg.ReplicationFactor) +
		",load=" + strconv.FormatFloat(cfg.Load, 'g', -1, 64) + ")"
}

// Place builds the ring for members. See Placement.Place.
//
// The library panics in consistent.New when it finds no member with room for
// a partition ("not enough room to distribute partitions"). It walks every
// point of the ring, and a member has room while it holds fewer than
// ceil(PartitionCount / members × Load) partitions, so it panics exactly when
// the members it can reach have less room in total than PartitionCount. With
// Load > 1 (which validate enforces) the room is at least PartitionCount, so
// that cannot happen unless every point of a member is hidden by a 64-bit
// hash collision. It also panics with no points at all (ReplicationFactor <
// 1, rejected by validate) and with a nil Hasher (never passed). Place checks
// the room before calling the library and, as a last guard, turns any panic
// into an ErrInvalidConfig error. It never calls the library with zero
// members.
func (p *ConsistentPlacement) Place(members []string) (Ring, error) {
	cfg := p.cfg
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ms, err := normalizeMembers(members)
	if err != nil {
		return nil, err
	}
	if len(ms) == 0 {
		return &consistentRing{partitions: uint64(cfg.PartitionCount)}, nil
	}
	room := math.Ceil(float64(cfg.PartitionCount) / float64(len(ms)) * cfg.Load)
	if room*float64(len(ms)) < float64(cfg.PartitionCount) {
		return nil, fmt.Errorf("%w: %d members with load %v have no room for %d partitions",
			ErrInvalidConfig, len(ms), cfg.Load, cfg.PartitionCount)
	}
	cr, err := buildConsistent(cfg, ms)
	if err != nil {
		return nil, err // not cr: a nil *consistentRing would make a non-nil Ring
	}
	return cr, nil
}

// buildConsistent asks the library for the first owner of every partition,
// then keeps only what Owners needs, so a query takes no lock and hashes
// nothing but the bucket name. ms must be sorted, deduplicated and not empty.
// A panic in the library comes back as an ErrInvalidConfig error.
func buildConsistent(cfg ConsistentConfig, ms []string) (r *consistentRing, err error) {
	defer func() {
		if rec := recover(); rec != nil {
			r, err = nil, fmt.Errorf("%w: consistent hashing failed for %d members: %v", ErrInvalidConfig, len(ms), rec)
		}
	}()
	libMembers := make([]consistent.Member, len(ms))
	for i, m := range ms {
		libMembers[i] = member(m)
	}
	c := consistent.New(libMembers, consistent.Config{
		Hasher:            hasher{},
		PartitionCount:    cfg.PartitionCount,
		ReplicationFactor: cfg.ReplicationFactor,
		Load:              cfg.Load,
	})

	// The library's GetClosestN walks the members sorted by the hash of
	// their names, starting at the partition's owner. Build that order once.
	// Equal hashes (which the library cannot tell apart) are ordered by name.
	hashes := make(map[string]uint64, len(ms))
	for _, m := range ms {
		hashes[m] = xxhash.Sum64String(m)
	}
	order := slices.Clone(ms)
	slices.SortFunc(order, func(a, b string) int {
		return cmp.Or(cmp.Compare(hashes[a], hashes[b]), cmp.Compare(a, b))
	})
	pos := make(map[string]int32, len(order))
	for i, m := range order {
		pos[m] = int32(i)
	}

	owner := make([]int32, cfg.PartitionCount)
	for part := range owner {
		m := c.GetPartitionOwner(part)
		if m == nil {
			return nil, fmt.Errorf("%w: consistent hashing left partition %d without an owner", ErrInvalidConfig, part)
		}
		i, ok := pos[m.String()]
		if !ok {
			return nil, fmt.Errorf("%w: consistent hashing gave partition %d to unknown member %q", ErrInvalidConfig, part, m.String())
		}
		owner[part] = i
	}
	return &consistentRing{
		members:    ms,
		order:      order,
		owner:      owner,
		partitions: uint64(cfg.PartitionCount),
	}, nil
}

// consistentRing is the immutable result of ConsistentPlacement.Place.
type consistentRing struct {
	members    []string // sorted
	order      []string // members sorted by the hash of their names: the walk for further owners
	owner      []int32  // partition → index in order of its first owner
	partitions uint64   // len(owner), or the configured count when there are no members
}

// Owners returns the first owner of the bucket's partition, then the members
// that follow it in hash order, like the library's GetClosestN.
func (r *consistentRing) Owners(bucket string, n int) ([]string, error) {
	if err := checkQuery(bucket, n); err != nil {
		return nil, err
	}
	if len(r.order) == 0 {
		return nil, fmt.Errorf("%w: bucket %s: the ring has no members", ErrNoOwner, quoteBucket(bucket))
	}
	start := int(r.owner[r.partition(bucket)])
	out := make([]string, min(n, len(r.order)))
	for k := range out {
		out[k] = r.order[(start+k)%len(r.order)]
	}
	return out, nil
}

// partition returns the bucket's partition, as the library's FindPartitionID.
func (r *consistentRing) partition(bucket string) int {
	return int(xxhash.Sum64String(bucket) % r.partitions)
}

func (r *consistentRing) Members() []string { return slices.Clone(r.members) }

// member is a ring member for the library.
type member string

func (m member) String() string { return string(m) }

// hasher is the library's Hasher: 64-bit xxhash.
type hasher struct{}

func (hasher) Sum64(b []byte) uint64 { return xxhash.Sum64(b) }
