package memlimit

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// The units of ParseSize, as Redis's configuration reads them: a bare
// letter is a power of 1000, the letter with b a power of 1024.
const (
	kb  = 1000
	kib = 1 << 10
	mb  = 1000 * kb
	mib = 1 << 20
	gb  = 1000 * mb
	gib = 1 << 30
)

// ParseSize reads an amount of memory as Redis's configuration does
// (maxmemory 64mb): decimal digits, then optionally a unit, in any case:
//
//	b          bytes
//	k  kb      1000 and 1024 bytes
//	m  mb      1000² and 1024² bytes
//	g  gb      1000³ and 1024³ bytes
//
// KiB, MiB and GiB are also read, as powers of 1024 (the spelling
// --max-line uses). Surrounding white space is ignored. Signs, fractions,
// exponents, spaces inside, other units and sizes beyond an int64 are
// errors wrapping ErrInvalidSize.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && '0' <= t[i] && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("%w: %q does not start with a number (want e.g. 1073741824, 100mb or 1gb)", ErrInvalidSize, s)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %q is too large", ErrInvalidSize, s)
	}
	var mult int64
	switch strings.ToLower(t[i:]) {
	case "", "b":
		mult = 1
	case "k":
		mult = kb
	case "kb", "kib":
		mult = kib
	case "m":
		mult = mb
	case "mb", "mib":
		mult = mib
	case "g":
		mult = gb
	case "gb", "gib":
		mult = gib
	default:
		return 0, fmt.Errorf("%w: %q has an unknown unit %q (want b, k, kb, m, mb, g or gb)", ErrInvalidSize, s, t[i:])
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%w: %q is too large", ErrInvalidSize, s)
	}
	return n * mult, nil
}

// FormatSize writes n bytes in the largest unit of ParseSize that divides
// it exactly, binary units first: 64mb, 1gb, 100m, 1500k, 12345. ParseSize
// reads it back to n.
func FormatSize(n int64) string {
	if n != 0 {
		for _, u := range [...]struct {
			mult int64
			name string
		}{{gib, "gb"}, {mib, "mb"}, {kib, "kb"}, {gb, "g"}, {mb, "m"}, {kb, "k"}} {
			if n%u.mult == 0 {
				return strconv.FormatInt(n/u.mult, 10) + u.name
			}
		}
	}
	return strconv.FormatInt(n, 10)
}
