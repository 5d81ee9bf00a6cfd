package ring

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// FuzzParseRanges checks that ParseRanges never panics, fails only with
// ErrInvalidSpec, and that a table it accepts prints as a spec that parses
// back to the same table, in which every entry's bounds belong to its name.
func FuzzParseRanges(f *testing.F) {
	for _, seed := range []string{
		original, " a-g = x , h-z=y ", "a=solo", "-=dash", "--/=d", "!--=d", "---=d", "!-~=all",
		"a-f=x,g-m=y,n-z=x", "n-z=late,a-m=early", "a-z=nœud", "", ",", "a-g=x,", "a-g", "a-g=",
		"a-g=x,b-c=y", "a-g=x,a-g=x", "g-a=x", "aa-g=x", "a-g=x=y", "a-g=\xff", "é=x",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		r, err := ParseRanges(spec)
		if err != nil {
			if !errors.Is(err, ErrInvalidSpec) || r != nil {
				t.Fatalf("ParseRanges(%q) = %v, %v; want nil, ErrInvalidSpec", spec, r, err)
			}
			return
		}
		canonical := r.String()
		again, err := ParseRanges(canonical)
		if err != nil {
			t.Fatalf("ParseRanges(%q) printed %q, which does not parse: %v", spec, canonical, err)
		}
		if again.String() != canonical || !slices.Equal(again.entries, r.entries) ||
			again.index != r.index || !slices.Equal(again.Names(), r.Names()) {
			t.Fatalf("ParseRanges(%q) printed %q, which parses to a different table %q", spec, canonical, again)
		}
		rr, err := r.Place(r.Names())
		if err != nil {
			t.Fatalf("Place(%q): %v", r.Names(), err)
		}
		for _, e := range r.entries {
			for _, b := range []byte{e.from, e.to} {
				got, err := rr.Owners(string(b)+"bucket", 1)
				if err != nil || !slices.Equal(got, []string{e.name}) {
					t.Fatalf("table %q: Owners(%q) = %q, %v; want [%q]", canonical, string(b)+"bucket", got, err, e.name)
				}
			}
		}
	})
}

// FuzzOwners checks that both rings answer any query without panicking,
// with one of the package's errors or with distinct members, at most n.
func FuzzOwners(f *testing.F) {
	f.Add("hello", 1, "a-g,h-n,o-u,v-z")
	f.Add("zebra", 3, "h-n,v-z,v-z")
	f.Add("", 1, "a-g")
	f.Add("x", 0, "")
	f.Add("Hello", 2, "peer-1,,peer-2")
	cp, err := NewConsistent(ConsistentConfig{PartitionCount: 31, ReplicationFactor: 3})
	if err != nil {
		f.Fatal(err)
	}
	table, err := ParseRanges(original)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, bucket string, n int, memberList string) {
		members := strings.Split(memberList, ",")
		if len(members) > 32 {
			members = members[:32]
		}
		for _, p := range []Placement{cp, table} {
			r, err := p.Place(members)
			if err != nil {
				if !errors.Is(err, ErrInvalidMember) {
					t.Fatalf("%s: Place(%q): %v", p, members, err)
				}
				continue
			}
			got, err := r.Owners(bucket, n)
			if err != nil {
				if !errors.Is(err, ErrNoOwner) && !errors.Is(err, ErrInvalidConfig) && !errors.Is(err, ErrInvalidBucket) {
					t.Fatalf("%s: Owners(%q, %d): unexpected error %v", p, bucket, n, err)
				}
				continue
			}
			if len(got) == 0 || len(got) > n {
				t.Fatalf("%s: Owners(%q, %d) = %q", p, bucket, n, got)
			}
			ms := r.Members()
			for i, o := range got {
				if _, ok := slices.BinarySearch(ms, o); !ok || slices.Contains(got[:i], o) {
					t.Fatalf("%s: Owners(%q, %d) = %q: %q is not a member or repeats", p, bucket, n, got, o)
				}
			}
		}
	})
}
