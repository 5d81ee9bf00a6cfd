package memlimit

import (
	"fmt"
	"strings"
)

// Policy is what a node does when it is over its memory limit: Redis's
// maxmemory-policy, with Redis's names and meanings. The zero value is
// NoEviction, Redis's default.
type Policy uint8

// The policies. The allkeys ones choose among every entry, the volatile
// ones only among entries that have an expiry time.
const (
	// NoEviction evicts nothing: writes that would add memory are refused
	// with store.ErrOutOfMemory while the node is over its limit.
	NoEviction Policy = iota
	// AllKeysLRU evicts the entries used least recently.
	AllKeysLRU
	// AllKeysLFU evicts the entries used least frequently.
	AllKeysLFU
	// AllKeysRandom evicts entries at random.
	AllKeysRandom
	// VolatileLRU evicts, among entries with an expiry time, those used
	// least recently.
	VolatileLRU
	// VolatileLFU evicts, among entries with an expiry time, those used
	// least frequently.
	VolatileLFU
	// VolatileRandom evicts entries with an expiry time at random.
	VolatileRandom
	// VolatileTTL evicts, among entries with an expiry time, those that
	// expire soonest.
	VolatileTTL

	numPolicies // not a policy: how many there are
)

// Policies returns every policy, NoEviction first.
func Policies() []Policy {
	ps := make([]Policy, numPolicies)
	for i := range ps {
		ps[i] = Policy(i)
	}
	return ps
}

// ParsePolicy reads a policy by its Redis name (noeviction, allkeys-lru,
// allkeys-lfu, allkeys-random, volatile-lru, volatile-lfu,
// volatile-random, volatile-ttl), in any case; surrounding white space is
// ignored. Any other name is an error wrapping ErrUnknownPolicy.
func ParsePolicy(s string) (Policy, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	for _, p := range Policies() {
		if p.String() == t {
			return p, nil
		}
	}
	names := make([]string, numPolicies)
	for i, p := range Policies() {
		names[i] = p.String()
	}
	return 0, fmt.Errorf("%w: %q (want %s)", ErrUnknownPolicy, s, strings.Join(names, ", "))
}

// String returns the policy's Redis name.
func (p Policy) String() string {
	switch p {
	case NoEviction:
		return "noeviction"
	case AllKeysLRU:
		return "allkeys-lru"
	case AllKeysLFU:
		return "allkeys-lfu"
	case AllKeysRandom:
		return "allkeys-random"
	case VolatileLRU:
		return "volatile-lru"
	case VolatileLFU:
		return "volatile-lfu"
	case VolatileRandom:
		return "volatile-random"
	case VolatileTTL:
		return "volatile-ttl"
	}
	return fmt.Sprintf("Policy(%d)", uint8(p))
}

// Valid reports whether p is one of the policies.
func (p Policy) Valid() bool { return p < numPolicies }

// Evicts reports whether the policy evicts entries (every policy but
// NoEviction).
func (p Policy) Evicts() bool { return p != NoEviction && p.Valid() }

// Volatile reports whether the policy evicts only entries that have an
// expiry time (the volatile-* policies). Redis refuses a write, as
// NoEviction does, when no such entry is left to evict.
func (p Policy) Volatile() bool { return p >= VolatileLRU && p <= VolatileTTL }

// NeedsAccess reports whether the policy ranks entries by their use, so
// that reads and writes must call Governor.Touch (the LRU and LFU
// policies). The others need no access tracking, and a Governor keeps no
// sketch for them.
func (p Policy) NeedsAccess() bool { return p.LRU() || p.LFU() }

// LRU reports whether the policy evicts the entries used least recently.
func (p Policy) LRU() bool { return p == AllKeysLRU || p == VolatileLRU }

// LFU reports whether the policy evicts the entries used least frequently.
func (p Policy) LFU() bool { return p == AllKeysLFU || p == VolatileLFU }

// Random reports whether the policy evicts entries at random.
func (p Policy) Random() bool { return p == AllKeysRandom || p == VolatileRandom }

// TTL reports whether the policy evicts the entries that expire soonest.
func (p Policy) TTL() bool { return p == VolatileTTL }
