package memlimit_test

import (
	"errors"
	"testing"

	"github.com/dboutique/dboutique/node/memlimit"
)

func TestPolicies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                               string
		p                                  memlimit.Policy
		evicts, volatile, access, lru, lfu bool
		random, ttl                        bool
	}{
		{"noeviction", memlimit.NoEviction, false, false, false, false, false, false, false},
		{"allkeys-lru", memlimit.AllKeysLRU, true, false, true, true, false, false, false},
		{"allkeys-lfu", memlimit.AllKeysLFU, true, false, true, false, true, false, false},
		{"allkeys-random", memlimit.AllKeysRandom, true, false, false, false, false, true, false},
		{"volatile-lru", memlimit.VolatileLRU, true, true, true, true, false, false, false},
		{"volatile-lfu", memlimit.VolatileLFU, true, true, true, false, true, false, false},
		{"volatile-random", memlimit.VolatileRandom, true, true, false, false, false, true, false},
		{"volatile-ttl", memlimit.VolatileTTL, true, true, false, false, false, false, true},
	} {
		if got := tc.p.String(); got != tc.name {
			t.Errorf("%d.String() = %q, want %q", tc.p, got, tc.name)
		}
		for _, in := range []string{tc.name, " " + tc.name + "\n", toUpper(tc.name)} {
			if got, err := memlimit.ParsePolicy(in); err != nil || got != tc.p {
				t.Errorf("ParsePolicy(%q) = %v, %v; want %v", in, got, err, tc.p)
			}
		}
		p := tc.p
		got := [...]bool{p.Valid(), p.Evicts(), p.Volatile(), p.NeedsAccess(), p.LRU(), p.LFU(), p.Random(), p.TTL()}
		want := [...]bool{true, tc.evicts, tc.volatile, tc.access, tc.lru, tc.lfu, tc.random, tc.ttl}
		if got != want {
			t.Errorf("%v: Valid, Evicts, Volatile, NeedsAccess, LRU, LFU, Random, TTL = %v, want %v", p, got, want)
		}
	}
	if n := len(memlimit.Policies()); n != 8 {
		t.Errorf("%d policies, want Redis's 8", n)
	}
	if memlimit.Policy(0) != memlimit.NoEviction {
		t.Error("the zero Policy is not noeviction, Redis's default")
	}
	bad := memlimit.Policy(200)
	if bad.Valid() || bad.Evicts() || bad.Volatile() || bad.NeedsAccess() || bad.String() != "Policy(200)" {
		t.Errorf("Policy(200): Valid %v Evicts %v Volatile %v NeedsAccess %v String %q",
			bad.Valid(), bad.Evicts(), bad.Volatile(), bad.NeedsAccess(), bad.String())
	}
}

func toUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

func TestParsePolicyMustFail(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"", " ", "lru", "lfu", "random", "ttl", "allkeys", "volatile", "no-eviction", "noevict",
		"allkeys_lru", "allkeys lru", "allkeys-lru,", "allkeys-lru allkeys-lfu", "allkeys-ttl",
		"volatile-", "-lru", "allkeys-lru\x00", "Policy(1)", "1", "0",
	} {
		got, err := memlimit.ParsePolicy(in)
		if err == nil {
			t.Errorf("ParsePolicy(%q) = %v, want an error", in, got)
			continue
		}
		if !errors.Is(err, memlimit.ErrUnknownPolicy) {
			t.Errorf("ParsePolicy(%q): error %v does not wrap ErrUnknownPolicy", in, err)
		}
	}
}
