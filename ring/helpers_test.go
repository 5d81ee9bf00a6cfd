package ring

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

// names returns n member names: prefix00, prefix01, ...
func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%02d", prefix, i)
	}
	return out
}

// bucketNames returns n distinct bucket names.
func bucketNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("bucket-%d", i)
	}
	return out
}

// mustPlace builds a ring or fails the test.
func mustPlace(t testing.TB, p Placement, members []string) Ring {
	t.Helper()
	r, err := p.Place(members)
	if err != nil {
		t.Fatalf("%s: Place(%q): %v", p, members, err)
	}
	return r
}

// mustOwners looks owners up or fails the test.
func mustOwners(t testing.TB, r Ring, bucket string, n int) []string {
	t.Helper()
	got, err := r.Owners(bucket, n)
	if err != nil {
		t.Fatalf("Owners(%q, %d): %v", bucket, n, err)
	}
	return got
}

// checkOwners checks what every Ring promises about Owners(bucket, n) for
// n = 1..len(members)+1: distinct members, the first equal to Owners(1),
// each answer a prefix of the next, and min(n, max) of them, where max is
// the number of members that can own the bucket.
func checkOwners(t testing.TB, r Ring, bucket string, max int) {
	t.Helper()
	members := r.Members()
	all := mustOwners(t, r, bucket, len(members)+1)
	if len(all) != max {
		t.Fatalf("Owners(%q, %d) = %q: %d owners, want %d", bucket, len(members)+1, all, len(all), max)
	}
	seen := map[string]bool{}
	for _, o := range all {
		if _, ok := slices.BinarySearch(members, o); !ok {
			t.Fatalf("Owners(%q) = %q: %q is not a member of %q", bucket, all, o, members)
		}
		if seen[o] {
			t.Fatalf("Owners(%q) = %q: %q twice", bucket, all, o)
		}
		seen[o] = true
	}
	for n := 1; n <= len(members); n++ {
		got := mustOwners(t, r, bucket, n)
		if want := all[:min(n, len(all))]; !slices.Equal(got, want) {
			t.Fatalf("Owners(%q, %d) = %q, want %q (a prefix of Owners(%d))", bucket, n, got, want, len(members)+1)
		}
	}
}

// checkQueryErrors checks the argument errors every Ring returns.
func checkQueryErrors(t *testing.T, r Ring) {
	t.Helper()
	for _, tc := range []struct {
		bucket string
		n      int
		want   error
	}{
		{"b", 0, ErrInvalidConfig},
		{"b", -1, ErrInvalidConfig},
		{"", 1, ErrInvalidBucket},
		{"", 0, ErrInvalidConfig},
	} {
		got, err := r.Owners(tc.bucket, tc.n)
		if !errors.Is(err, tc.want) || got != nil {
			t.Errorf("Owners(%q, %d) = %q, %v; want nil, %v", tc.bucket, tc.n, got, err, tc.want)
		}
	}
}
