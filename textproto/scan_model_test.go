package textproto

import (
	"cmp"
	"slices"
	"strconv"
	"strings"

	"github.com/dboutique/dboutique/node/store"
)

// The listing commands as the fuzz models (fuzz_test.go, resp_fuzz_test.go)
// state them, written from the protocol's description rather than from
// the server: the names in the order of their hashes, pages of COUNT
// names that never end inside a hash, the cursor one past the last hash
// listed or 0 at the end.

// modelName is a name with its type, as the models hold them.
type modelName struct {
	name string
	typ  store.NameType
}

// modelPage returns the page of names from cursor: those whose hash is
// at least cursor and that match, in order, at most count of them (and
// the rest of the hash the last one has), and the next cursor.
func modelPage(names []modelName, cursor uint64, count int, match string) ([]modelName, uint64) {
	var from []modelName
	for _, n := range names {
		if store.NameHash(n.name) >= cursor && (match == "" || match == "*" || store.GlobMatch(match, n.name)) {
			from = append(from, n)
		}
	}
	slices.SortFunc(from, func(a, b modelName) int {
		return cmp.Or(cmp.Compare(store.NameHash(a.name), store.NameHash(b.name)), strings.Compare(a.name, b.name), cmp.Compare(a.typ, b.typ))
	})
	end := min(count, len(from))
	for end > 0 && end < len(from) && store.NameHash(from[end].name) == store.NameHash(from[end-1].name) {
		end++
	}
	if end == len(from) {
		return from, 0
	}
	return from[:end], store.NameHash(from[end-1].name) + 1
}

// modelScanText parses the words of a text SCAN request: ok false for a
// usage error.
func modelScanText(w []string) (cursor uint64, count int, match string, ok bool) {
	if len(w) < 2 || len(w) > 6 || len(w)%2 != 0 {
		return 0, 0, "", false
	}
	cursor, err := strconv.ParseUint(w[1], 10, 64)
	if err != nil {
		return 0, 0, "", false
	}
	count = 10
	for i := 2; i < len(w); i += 2 {
		switch asciiUpper(w[i]) {
		case "MATCH":
			match = w[i+1]
		case "COUNT":
			n, err := strconv.ParseUint(w[i+1], 10, 64)
			if err != nil || n == 0 {
				return 0, 0, "", false
			}
			count = int(min(n, 10000))
		default:
			return 0, 0, "", false
		}
	}
	return cursor, count, match, true
}

// modelScanRESP parses the arguments of SCAN (after the name) or, with
// hscan, of HSCAN (after the bucket), as Redis 7 does; errReply is the
// error reply, if any.
func modelScanRESP(args []string, hscan bool) (cursor uint64, count int, match string, hasMatch bool, typ store.NameType, noValues bool, errReply string) {
	cursor, err := strconv.ParseUint(args[0], 10, 64)
	if err != nil {
		return 0, 0, "", false, 0, false, rErr("ERR invalid cursor")
	}
	count = 10
	for i := 1; i < len(args); {
		left := len(args) - i - 1
		switch opt := asciiUpper(args[i]); {
		case opt == "COUNT" && left > 0:
			n, err := strconv.ParseInt(args[i+1], 10, 64)
			if err != nil {
				return 0, 0, "", false, 0, false, rErr("ERR value is not an integer or out of range")
			}
			if n < 1 {
				return 0, 0, "", false, 0, false, rErr("ERR syntax error")
			}
			count = int(min(n, 10000))
			i += 2
		case opt == "MATCH" && left > 0:
			match, hasMatch = args[i+1], true
			i += 2
		case opt == "TYPE" && left > 0 && !hscan:
			switch strings.ToLower(args[i+1]) {
			case "hash":
				typ = store.TypeHash
			case "string":
				typ = store.TypeString
			default:
				typ = store.TypeOther
			}
			i += 2
		case opt == "NOVALUES" && hscan:
			noValues = true
			i++
		case opt == "NOVALUES":
			return 0, 0, "", false, 0, false, rErr("ERR NOVALUES option can only be used in HSCAN")
		default:
			return 0, 0, "", false, 0, false, rErr("ERR syntax error")
		}
	}
	return cursor, count, match, hasMatch, typ, noValues, ""
}

// names returns the model's names: plain keys and buckets.
func (m *respModel) names() []modelName {
	var ns []modelName
	for k := range m.plain {
		ns = append(ns, modelName{k, store.TypeString})
	}
	for b := range m.buckets {
		ns = append(ns, modelName{b, store.TypeHash})
	}
	return ns
}

// distinct returns the names of a page, each once, keeping only the empty
// name when the pattern was empty.
func distinct(page []modelName, onlyEmpty bool) []string {
	var out []string
	for i, n := range page {
		if i > 0 && page[i-1].name == n.name || onlyEmpty && n.name != "" {
			continue
		}
		out = append(out, n.name)
	}
	return out
}

// listing answers SCAN, KEYS, DBSIZE, RANDOMKEY and HSCAN; ok false for
// another command.
func (m *respModel) listing(name string, args []string) (r expectedReply, ok bool) {
	exact := func(s string) expectedReply { return expectedReply{kind: replyExact, reply: s} }
	switch name {
	case "SCAN":
		cursor, count, match, hasMatch, typ, _, e := modelScanRESP(args[1:], false)
		if e != "" {
			return exact(e), true
		}
		var ns []modelName
		for _, n := range m.names() {
			if typ == store.TypeAny || typ == n.typ {
				ns = append(ns, n)
			}
		}
		page, next := modelPage(ns, cursor, count, match)
		return exact(rArr(rBulk(strconv.FormatUint(next, 10)), rBulks(distinct(page, hasMatch && match == "")...))), true
	case "KEYS":
		page, _ := modelPage(m.names(), 0, 1<<30, args[1])
		return exact(rBulks(distinct(page, args[1] == "")...)), true
	case "DBSIZE":
		return exact(rInt(len(m.plain) + len(m.buckets))), true
	case "RANDOMKEY":
		alts := []string{rNil}
		if ns := m.names(); len(ns) > 0 {
			alts = nil
			for _, n := range ns {
				alts = append(alts, rBulk(n.name))
			}
		}
		return expectedReply{kind: replyOneOf, alts: alts}, true
	case "HSCAN":
		cursor, count, match, hasMatch, _, noValues, e := modelScanRESP(args[2:], true)
		if e != "" {
			return exact(e), true
		}
		b := m.buckets[args[1]]
		var keys []modelName
		for k := range b {
			keys = append(keys, modelName{k, store.TypeAny})
		}
		page, next := modelPage(keys, cursor, count, match)
		var out []string
		for _, k := range page {
			if hasMatch && match == "" && k.name != "" {
				continue
			}
			out = append(out, k.name)
			if !noValues {
				out = append(out, b[k.name])
			}
		}
		return exact(rArr(rBulk(strconv.FormatUint(next, 10)), rBulks(out...))), true
	}
	return expectedReply{}, false
}
