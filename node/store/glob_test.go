package store

import (
	"strings"
	"testing"
)

func TestGlobMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		// Literals and the empty cases.
		{"", "", true},
		{"", "a", false},
		{"a", "", false},
		{"abc", "abc", true},
		{"abc", "abd", false},
		{"abc", "ab", false},
		{"ab", "abc", false},
		{"ABC", "abc", false}, // case counts
		// Stars.
		{"*", "", false}, // as Redis: SCAN and KEYS treat "*" as every name before matching
		{"**", "", false},
		{"*", "anything at all", true},
		{"a*", "a", true},
		{"a*", "abc", true},
		{"a*", "ba", false},
		{"*c", "abc", true},
		{"*c", "abcd", false},
		{"a*c", "ac", true},
		{"a*c", "abbbc", true},
		{"a*c", "abbbd", false},
		{"a**c", "abc", true},
		{"*a*b*c*", "xaxbxcx", true},
		{"*a*b*c*", "xaxcxbx", false},
		{"user:*:name", "user:42:name", true},
		{"user:*:name", "user:42:age", false},
		// Question marks.
		{"?", "a", true},
		{"?", "", false},
		{"?", "ab", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"??*", "ab", true},
		{"??*", "a", false},
		// Sets.
		{"[abc]", "b", true},
		{"[abc]", "d", false},
		{"[abc]", "", false},
		{"h[ae]llo", "hello", true},
		{"h[ae]llo", "hallo", true},
		{"h[ae]llo", "hillo", false},
		{"[^abc]", "d", true},
		{"[^abc]", "a", false},
		{"h[^e]llo", "hallo", true},
		{"h[^e]llo", "hello", false},
		{"[a-c]", "b", true},
		{"[a-c]", "d", false},
		{"[c-a]", "b", true}, // a reversed range is the same range
		{"[a-cx-z]", "y", true},
		{"[a-cx-z]", "m", false},
		{"[^a-c]", "m", true},
		{"[\\]]", "]", true},
		{"[\\-]", "-", true},
		{"[a\\-c]", "b", false}, // an escaped dash is no range
		{"[a\\-c]", "-", true},
		{"[]", "a", false}, // an empty set matches nothing
		{"[]a]", "a", false},
		{"[]a]", "]a]", false},
		{"[]a]", "a]", false},
		{"[-a]", "-", true},
		{"[a-]", "a", true}, // "a-]" is the range a..] (reversed: ]..a)
		{"[a-]", "^", true},
		{"[a-]", "b", false},
		{"[a-]x", "ax", false}, // the range swallowed the closing bracket: the set is not closed
		// A set not closed runs to the end of the pattern.
		{"[abc", "a", true},
		{"[abc", "d", false},
		{"x[abc", "xb", true},
		{"x[abc", "xbc", false},
		{"[", "a", false},
		{"[", "[", false},
		{"[^", "a", true},
		{"[^", "", false},
		{"[\\", "\\", true},
		// Escapes.
		{"\\*", "*", true},
		{"\\*", "a", false},
		{"\\?", "?", true},
		{"\\?", "a", false},
		{"\\[a]", "[a]", true},
		{"\\a", "a", true},
		{"\\", "\\", true}, // a backslash ending the pattern stands for itself
		{"a\\", "a\\", true},
		{"a\\", "a", false},
		{"*\\*", "abc*", true},
		{"*\\*", "abc", false},
		// Any bytes.
		{"\x00*", "\x00kv:1", true},
		{"\xff?", "\xff\x00", true},
		{"[\x00-\x10]", "\x05", true},
	} {
		if got := GlobMatch(tc.pattern, tc.name); got != tc.want {
			t.Errorf("GlobMatch(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
		if got := refGlobMatch(tc.pattern, tc.name); got != tc.want {
			t.Errorf("refGlobMatch(%q, %q) = %v, want %v (the reference disagrees with the table)", tc.pattern, tc.name, got, tc.want)
		}
	}
}

// TestGlobMatchIsPolynomial: a pattern that makes a naive backtracking
// matcher take exponential time returns at once.
func TestGlobMatchIsPolynomial(t *testing.T) {
	name := strings.Repeat("a", 200)
	pattern := strings.Repeat("*a", 50) + "b"
	if GlobMatch(pattern, name) {
		t.Fatalf("%q matched %q", pattern, name)
	}
	if !GlobMatch(strings.Repeat("*a", 50), name) {
		t.Fatal("no match where one exists")
	}
}

// TestGlobMatchNesting: like Redis, a match that has to nest through more
// than 1000 stars gives up, and does not overflow the stack.
func TestGlobMatchNesting(t *testing.T) {
	name := strings.Repeat("a", 3000)
	if GlobMatch(strings.Repeat("*a", 1500), name) {
		t.Fatal("a match nested through 1500 stars succeeded; Redis gives up at 1000")
	}
	if !GlobMatch(strings.Repeat("*a", 900), name) {
		t.Fatal("a match through 900 stars failed")
	}
}

// refGlobMatch is a second statement of Redis's matching, written another
// way: the pattern is first cut into tokens (a star, or a set of bytes that
// matches one byte), following Redis's parsing rules, and then matched by
// dynamic programming over (token, byte) positions.
func refGlobMatch(pattern, name string) bool {
	type token struct {
		star bool
		set  [256]bool
	}
	var toks []token
	p := pattern
	for len(p) > 0 {
		var tk token
		switch p[0] {
		case '*':
			tk.star = true
			p = p[1:]
		case '?':
			for i := range tk.set {
				tk.set[i] = true
			}
			p = p[1:]
		case '[':
			p = p[1:]
			not := len(p) > 0 && p[0] == '^'
			if not {
				p = p[1:]
			}
			for {
				if len(p) == 0 {
					break // not closed: the set ends with the pattern
				}
				if p[0] == '\\' && len(p) >= 2 {
					tk.set[p[1]] = true
					p = p[2:]
					continue
				}
				if p[0] == ']' {
					p = p[1:]
					break
				}
				if len(p) >= 3 && p[1] == '-' {
					lo, hi := int(p[0]), int(p[2])
					if lo > hi {
						lo, hi = hi, lo
					}
					for c := lo; c <= hi; c++ {
						tk.set[c] = true
					}
					p = p[3:]
					continue
				}
				tk.set[p[0]] = true
				p = p[1:]
			}
			if not {
				for i := range tk.set {
					tk.set[i] = !tk.set[i]
				}
			}
		case '\\':
			if len(p) >= 2 {
				p = p[1:]
			}
			tk.set[p[0]] = true
			p = p[1:]
		default:
			tk.set[p[0]] = true
			p = p[1:]
		}
		toks = append(toks, tk)
	}
	if name == "" {
		return len(toks) == 0 // Redis never enters its loop for an empty name
	}
	// m[i][j]: tokens i.. match name[j:].
	m := make([][]bool, len(toks)+1)
	for i := range m {
		m[i] = make([]bool, len(name)+1)
	}
	m[len(toks)][len(name)] = true
	for i := len(toks) - 1; i >= 0; i-- {
		for j := len(name); j >= 0; j-- {
			if toks[i].star {
				m[i][j] = m[i+1][j] || j < len(name) && m[i][j+1]
			} else {
				m[i][j] = j < len(name) && toks[i].set[name[j]] && m[i+1][j+1]
			}
		}
	}
	return m[0][0]
}

// FuzzGlobMatch checks GlobMatch against refGlobMatch on any pattern and
// name, and that escaping every byte of a name makes a pattern that
// matches exactly that name.
func FuzzGlobMatch(f *testing.F) {
	for _, s := range [][2]string{
		{"*", "abc"}, {"a*c", "abc"}, {"[a-c]?", "bx"}, {"[^a]*", "ba"}, {"\\*x", "*x"},
		{"[abc", "a"}, {"[a-]x", "ax"}, {"*a*a*b", "aaaaab"}, {"[\\]]*", "]"}, {"", ""},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		if len(pattern) > 64 || len(name) > 64 {
			return // the reference is quadratic; short inputs find the cases
		}
		if got, want := GlobMatch(pattern, name), refGlobMatch(pattern, name); got != want {
			t.Fatalf("GlobMatch(%q, %q) = %v, reference %v", pattern, name, got, want)
		}
		var esc strings.Builder
		for i := range len(name) {
			esc.WriteByte('\\')
			esc.WriteByte(name[i])
		}
		if name != "" && !GlobMatch(esc.String(), name) {
			t.Fatalf("the escaped pattern %q does not match %q", esc.String(), name)
		}
		if name != "" && !GlobMatch("*", name) {
			t.Fatalf("* does not match %q", name)
		}
	})
}
