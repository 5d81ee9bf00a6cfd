package mapstore

// GlobMatch reports whether name matches pattern as Redis's KEYS, SCAN's
// MATCH and HSCAN's MATCH match it (stringmatchlen in Redis's util.c),
// byte by byte:
//
//	'*'      any run of bytes, the empty run included
//	'?'      any one byte
//	[abc]    one byte of the set; [^abc] one byte not in it
//	[a-z]    one byte in the range (a reversed range, [z-a], is the same)
//	\x       the byte x itself, also inside a set
//	x        any other byte stands for itself
//
// Redis's corner cases are kept: an unclosed set ("[ab") is the set of
// what follows the bracket to the end of the pattern; a backslash ending
// the pattern stands for itself; and a non-empty pattern never matches the
// empty name, not even "*" (SCAN and KEYS treat the exact pattern "*" as
// "every name" before any matching, so they list the empty name for it).
// Like Redis, a pattern with more than maxGlobNesting stars that the name
// makes it try matches nothing.
//
// path.Match differs: its '*' stops at '/', it reports bad patterns, and
// it takes '!' for negation. Matching never allocates, and takes time
// polynomial in the lengths of pattern and name: once the rest of the
// pattern after a star has failed from every position of the name, no
// earlier star is tried further (Redis's skipLongerMatches).
func GlobMatch(pattern, name string) bool {
	skip := false
	return globMatch(pattern, name, &skip, 0)
}

// maxGlobNesting bounds the stars one match may nest through, as Redis's
// does (1000).
const maxGlobNesting = 1000

func globMatch(p, s string, skipLonger *bool, nesting int) bool {
	if nesting > maxGlobNesting {
		return false
	}
	for len(p) > 0 && len(s) > 0 {
		switch p[0] {
		case '*':
			for len(p) > 1 && p[1] == '*' {
				p = p[1:]
			}
			if len(p) == 1 {
				return true
			}
			for len(s) > 0 {
				if globMatch(p[1:], s, skipLonger, nesting+1) {
					return true
				}
				if *skipLonger {
					return false
				}
				s = s[1:]
			}
			// The rest of the pattern matches from no position of the
			// name: a longer run for an earlier star cannot help either.
			*skipLonger = true
			return false
		case '?':
			s = s[1:]
		case '[':
			var ok bool
			p, ok = globSet(p[1:], s[0])
			if !ok {
				return false
			}
			s = s[1:]
		case '\\':
			if len(p) >= 2 {
				p = p[1:]
			}
			fallthrough
		default:
			if p[0] != s[0] {
				return false
			}
			s = s[1:]
		}
		p = p[1:]
		if len(s) == 0 {
			for len(p) > 0 && p[0] == '*' {
				p = p[1:]
			}
			break
		}
	}
	return len(p) == 0 && len(s) == 0
}

// globSet matches c against the set that p, the pattern just after its
// '[', begins with. It returns the pattern from the set's last byte (its
// ']', or the pattern's last byte when the set is not closed), and whether
// c is in the set.
func globSet(p string, c byte) (string, bool) {
	not := len(p) > 0 && p[0] == '^'
	if not {
		p = p[1:]
	}
	match := false
	for {
		switch {
		case len(p) == 0:
			// Not closed: the set ends with the pattern. The caller steps
			// past the last byte, so hand it back a one-byte remainder.
			if not {
				match = !match
			}
			return " ", match
		case p[0] == '\\' && len(p) >= 2:
			p = p[1:]
			if p[0] == c {
				match = true
			}
		case p[0] == ']':
			if not {
				match = !match
			}
			return p, match
		case len(p) >= 3 && p[1] == '-':
			lo, hi := p[0], p[2]
			if lo > hi {
				lo, hi = hi, lo
			}
			if lo <= c && c <= hi {
				match = true
			}
			p = p[2:]
		default:
			if p[0] == c {
				match = true
			}
		}
		p = p[1:]
	}
}
