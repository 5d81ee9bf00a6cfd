package ring

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/buraksezer/consistent"
)

func TestNewConsistent(t *testing.T) {
	good := []struct {
		name string
		cfg  ConsistentConfig
		want ConsistentConfig
		str  string
	}{
		{"zero takes defaults", ConsistentConfig{}, ConsistentConfig{271, 20, 1.25},
			"consistent(partitions=271,replication=20,load=1.25)"},
		{"explicit", ConsistentConfig{7, 3, 2}, ConsistentConfig{7, 3, 2},
			"consistent(partitions=7,replication=3,load=2)"},
		{"smallest", ConsistentConfig{1, 1, math.Nextafter(1, 2)}, ConsistentConfig{1, 1, math.Nextafter(1, 2)},
			"consistent(partitions=1,replication=1,load=1.0000000000000002)"},
		{"largest", ConsistentConfig{MaxPartitionCount, MaxReplicationFactor, 1e9},
			ConsistentConfig{MaxPartitionCount, MaxReplicationFactor, 1e9},
			"consistent(partitions=65536,replication=1024,load=1e+09)"},
		{"one field", ConsistentConfig{Load: 1.5}, ConsistentConfig{271, 20, 1.5},
			"consistent(partitions=271,replication=20,load=1.5)"},
	}
	for _, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewConsistent(tc.cfg)
			if err != nil {
				t.Fatalf("NewConsistent(%+v): %v", tc.cfg, err)
			}
			if got := p.Config(); got != tc.want {
				t.Errorf("Config() = %+v, want %+v", got, tc.want)
			}
			if got := p.String(); got != tc.str {
				t.Errorf("String() = %q, want %q", got, tc.str)
			}
		})
	}

	mustFail := []ConsistentConfig{
		{PartitionCount: -1},
		{PartitionCount: MaxPartitionCount + 1},
		{PartitionCount: math.MinInt},
		{ReplicationFactor: -1},
		{ReplicationFactor: MaxReplicationFactor + 1},
		{Load: 1},
		{Load: 0.99},
		{Load: 0.5},
		{Load: -1},
		{Load: math.NaN()},
		{Load: math.Inf(1)},
		{Load: math.Inf(-1)},
	}
	for _, cfg := range mustFail {
		if p, err := NewConsistent(cfg); !errors.Is(err, ErrInvalidConfig) || p != nil {
			t.Errorf("NewConsistent(%+v) = %v, %v; want nil, ErrInvalidConfig", cfg, p, err)
		}
	}
}

func TestConsistentZeroValue(t *testing.T) {
	// A ConsistentPlacement that NewConsistent did not build still works,
	// with the defaults, rather than dividing by a zero partition count.
	var p ConsistentPlacement
	if got, want := p.String(), "consistent(partitions=271,replication=20,load=1.25)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	r := mustPlace(t, &p, names("n", 3))
	checkOwners(t, r, "bucket", 3)
}

func TestConsistentPlaceErrors(t *testing.T) {
	p, err := NewConsistent(ConsistentConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for _, members := range [][]string{{""}, {"a", ""}, {"", ""}} {
		if r, err := p.Place(members); !errors.Is(err, ErrInvalidMember) || r != nil {
			t.Errorf("Place(%q) = %v, %v; want nil, ErrInvalidMember", members, r, err)
		}
	}
}

func TestConsistentNoMembers(t *testing.T) {
	p, err := NewConsistent(ConsistentConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for _, members := range [][]string{nil, {}} {
		r := mustPlace(t, p, members)
		if got := r.Members(); len(got) != 0 {
			t.Errorf("Members() = %q, want none", got)
		}
		got, err := r.Owners("hello", 1)
		if !errors.Is(err, ErrNoOwner) || got != nil {
			t.Errorf("Owners = %q, %v; want nil, ErrNoOwner", got, err)
		}
		if err != nil && !strings.Contains(err.Error(), `"hello"`) {
			t.Errorf("error %q does not name the bucket", err)
		}
		checkQueryErrors(t, r)
	}
}

func TestConsistentQueryErrors(t *testing.T) {
	p, err := NewConsistent(ConsistentConfig{})
	if err != nil {
		t.Fatal(err)
	}
	checkQueryErrors(t, mustPlace(t, p, names("n", 3)))
}

// TestConsistentMatchesLibrary checks that Owners answers as the library's
// GetClosestN and LocateKey would, for the same members and settings.
func TestConsistentMatchesLibrary(t *testing.T) {
	for _, tc := range []struct {
		cfg     ConsistentConfig
		members int
	}{
		{ConsistentConfig{}, 1},
		{ConsistentConfig{}, 5},
		{ConsistentConfig{}, 16},
		{ConsistentConfig{PartitionCount: 7, ReplicationFactor: 1, Load: 1.1}, 9},
		{ConsistentConfig{PartitionCount: 1031, ReplicationFactor: 50, Load: 3}, 12},
	} {
		p, err := NewConsistent(tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		ms := names("peer-", tc.members)
		r := mustPlace(t, p, ms)
		cfg := p.Config()
		lib := consistent.New(libraryMembers(ms), consistent.Config{
			Hasher: hasher{}, PartitionCount: cfg.PartitionCount,
			ReplicationFactor: cfg.ReplicationFactor, Load: cfg.Load,
		})
		for _, b := range bucketNames(300) {
			if got, want := mustOwners(t, r, b, 1)[0], lib.LocateKey([]byte(b)).String(); got != want {
				t.Fatalf("%s, %d members: first owner of %q = %q, library says %q", p, tc.members, b, got, want)
			}
			for n := 1; n <= tc.members; n++ {
				want, err := lib.GetClosestN([]byte(b), n)
				if err != nil {
					t.Fatal(err)
				}
				if got := mustOwners(t, r, b, n); !slices.Equal(got, memberStrings(want)) {
					t.Fatalf("%s: Owners(%q, %d) = %q, library says %q", p, b, n, got, memberStrings(want))
				}
			}
		}
	}
}

func libraryMembers(ms []string) []consistent.Member {
	out := make([]consistent.Member, len(ms))
	for i, m := range ms {
		out[i] = member(m)
	}
	return out
}

func memberStrings(ms []consistent.Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.String()
	}
	return out
}

// TestConsistentGrowAndShrink grows a ring from 1 to 16 members and back:
// every step places without error and every bucket always has owners.
func TestConsistentGrowAndShrink(t *testing.T) {
	p, err := NewConsistent(ConsistentConfig{})
	if err != nil {
		t.Fatal(err)
	}
	all := names("12D3KooWPeer", 16)
	var sizes []int
	for n := 1; n <= 16; n++ {
		sizes = append(sizes, n)
	}
	for n := 15; n >= 1; n-- {
		sizes = append(sizes, n)
	}
	buckets := bucketNames(200)
	for _, size := range sizes {
		r := mustPlace(t, p, all[:size])
		if got := r.Members(); !slices.Equal(got, all[:size]) {
			t.Fatalf("Members() = %q, want %q", got, all[:size])
		}
		for _, b := range buckets {
			checkOwners(t, r, b, size)
		}
	}
}

// TestConsistentEdgeSettings places rings at the edges of the settings:
// partitions fewer than members, one point per member, a load just above 1.
// None may fail, and no member may be first owner of more partitions than the
// library's bound.
func TestConsistentEdgeSettings(t *testing.T) {
	for _, parts := range []int{1, 2, 3, 7, 16, 17, 271} {
		for _, repl := range []int{1, 2} {
			for _, load := range []float64{math.Nextafter(1, 2), 1.25, 3} {
				p, err := NewConsistent(ConsistentConfig{PartitionCount: parts, ReplicationFactor: repl, Load: load})
				if err != nil {
					t.Fatal(err)
				}
				for size := 1; size <= 20; size++ {
					r := mustPlace(t, p, names("n", size)).(*consistentRing)
					checkPartitionBound(t, p, r)
					checkOwners(t, r, "bucket", size)
				}
			}
		}
	}
}

// checkPartitionBound checks the library's promise: no member is the first
// owner of more than ceil(partitions / members × load) partitions, and every
// partition has an owner.
func checkPartitionBound(t testing.TB, p *ConsistentPlacement, r *consistentRing) {
	t.Helper()
	cfg := p.Config()
	bound := int(math.Ceil(float64(cfg.PartitionCount) / float64(len(r.members)) * cfg.Load))
	if len(r.owner) != cfg.PartitionCount {
		t.Fatalf("%s: %d partitions have owners, want %d", p, len(r.owner), cfg.PartitionCount)
	}
	for m, n := range partitionCounts(r) {
		if n > bound {
			t.Fatalf("%s, %d members: %s owns %d partitions, bound %d", p, len(r.members), m, n, bound)
		}
	}
}

func partitionCounts(r *consistentRing) map[string]int {
	counts := map[string]int{}
	for _, i := range r.owner {
		counts[r.order[i]]++
	}
	return counts
}

// TestConsistentBuildRecovers checks the last guard: settings that make the
// library panic (validate rejects them, so call the builder directly) give an
// error instead.
func TestConsistentBuildRecovers(t *testing.T) {
	for _, cfg := range []ConsistentConfig{
		{PartitionCount: 271, ReplicationFactor: 20, Load: 0.5}, // too little room
		{PartitionCount: 271, ReplicationFactor: 20, Load: -1},  // no room at all
		{PartitionCount: 271, ReplicationFactor: -1, Load: 1.25},
	} {
		r, err := buildConsistent(cfg, names("n", 2))
		if !errors.Is(err, ErrInvalidConfig) || r != nil {
			t.Errorf("buildConsistent(%+v) = %v, %v; want nil, ErrInvalidConfig", cfg, r, err)
		}
	}
}

// TestConsistentOrderIndependent checks that the order of members and
// duplicates do not change the placement.
func TestConsistentOrderIndependent(t *testing.T) {
	p, err := NewConsistent(ConsistentConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ms := names("peer-", 10)
	want := mustPlace(t, p, ms).(*consistentRing)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 5 {
		shuffled := append(slices.Clone(ms), ms[rng.IntN(len(ms))], ms[rng.IntN(len(ms))])
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		got := mustPlace(t, p, shuffled).(*consistentRing)
		if !slices.Equal(got.members, want.members) || !slices.Equal(got.order, want.order) ||
			!slices.Equal(got.owner, want.owner) {
			t.Fatalf("Place(%q) differs from Place(%q)", shuffled, ms)
		}
		for _, b := range bucketNames(100) {
			if g, w := mustOwners(t, got, b, 3), mustOwners(t, want, b, 3); !slices.Equal(g, w) {
				t.Fatalf("Owners(%q, 3) = %q for %q, %q for %q", b, g, shuffled, w, ms)
			}
		}
	}
}

// TestConsistentBalance checks the load bound with 8 members. The library
// bounds partitions: no member is the first owner of more than
// ceil(271 / 8 × 1.25) = 43 of them, which is checked exactly. Buckets follow
// partitions, but partitions hold unequal numbers of buckets (10,000 names in
// 271 partitions: about 37 each, give or take 6), so a member at the bound can
// hold a little more than 43/271 of the buckets: the share check allows 10%
// more, about four standard deviations.
func TestConsistentBalance(t *testing.T) {
	p, err := NewConsistent(ConsistentConfig{})
	if err != nil {
		t.Fatal(err)
	}
	r := mustPlace(t, p, names("12D3KooWNode", 8)).(*consistentRing)
	checkPartitionBound(t, p, r)

	cfg := p.Config()
	bound := math.Ceil(float64(cfg.PartitionCount)/8*cfg.Load) / float64(cfg.PartitionCount)
	maxShare := bound * 1.1
	buckets := bucketNames(10000)
	counts := map[string]int{}
	for _, b := range buckets {
		counts[mustOwners(t, r, b, 1)[0]]++
	}
	if len(counts) != 8 {
		t.Errorf("%d members own buckets, want 8: %v", len(counts), counts)
	}
	for m, n := range counts {
		share := float64(n) / float64(len(buckets))
		t.Logf("%s: %d buckets (%.3f), partition bound %.3f", m, n, share, bound)
		if share > maxShare {
			t.Errorf("%s owns %.3f of the buckets, want at most %.3f", m, share, maxShare)
		}
	}
}

// TestConsistentJoin adds one member to rings of 1 to 15 members and counts
// the buckets whose first owner changes. About 1/(N+1) of them should move,
// most of them to the new member.
//
// With bounded loads, a join can also move a few partitions between old
// members: the new, smaller bound can push a partition past its old owner.
// TestConsistentJoinUnbounded shows that without the bound every move goes
// to the new member.
func TestConsistentJoin(t *testing.T) {
	p, err := NewConsistent(ConsistentConfig{})
	if err != nil {
		t.Fatal(err)
	}
	checkJoins(t, p, func(t *testing.T, size, moved, toNew, total int) {
		if limit := 2 * total / (size + 1); moved >= limit {
			t.Errorf("%d members + 1: %d of %d buckets moved, want fewer than %d", size, moved, total, limit)
		}
		if moved == 0 || toNew*2 <= moved {
			t.Errorf("%d members + 1: %d of %d moved buckets went to the new member, want most", size, toNew, moved)
		}
	})
}

// TestConsistentJoinUnbounded: with a load so high that no member is ever
// full, the library places as plain consistent hashing, and a join moves
// buckets only to the new member.
func TestConsistentJoinUnbounded(t *testing.T) {
	p, err := NewConsistent(ConsistentConfig{Load: DefaultPartitionCount})
	if err != nil {
		t.Fatal(err)
	}
	checkJoins(t, p, func(t *testing.T, size, moved, toNew, total int) {
		if limit := 2 * total / (size + 1); moved >= limit {
			t.Errorf("%d members + 1: %d of %d buckets moved, want fewer than %d", size, moved, total, limit)
		}
		if toNew != moved {
			t.Errorf("%d members + 1: %d of %d moved buckets went to old members", size, moved-toNew, moved)
		}
	})
}

func checkJoins(t *testing.T, p *ConsistentPlacement, check func(t *testing.T, size, moved, toNew, total int)) {
	t.Helper()
	all := names("12D3KooWPeer", 16)
	buckets := bucketNames(10000)
	for size := 1; size < len(all); size++ {
		before := mustPlace(t, p, all[:size])
		after := mustPlace(t, p, all[:size+1])
		moved, toNew := 0, 0
		for _, b := range buckets {
			was, is := mustOwners(t, before, b, 1)[0], mustOwners(t, after, b, 1)[0]
			if was != is {
				moved++
				if is == all[size] {
					toNew++
				}
			}
		}
		t.Logf("%2d members + 1: %.3f of the buckets moved (1/(N+1) = %.3f), %d of %d to the new member",
			size, float64(moved)/float64(len(buckets)), 1/float64(size+1), toNew, moved)
		check(t, size, moved, toNew, len(buckets))
	}
}
