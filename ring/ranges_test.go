package ring

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const original = "a-g=a-g,h-n=h-n,o-u=o-u,v-z=v-z"

func TestParseRanges(t *testing.T) {
	for _, tc := range []struct {
		spec, canonical string
		names           []string
	}{
		{original, original, []string{"a-g", "h-n", "o-u", "v-z"}},
		{" a-g = left , h-z=right ", "a-g=left,h-z=right", []string{"left", "right"}},
		{"a=solo", "a=solo", []string{"solo"}},
		{"a-a=solo", "a=solo", []string{"solo"}},
		{"a-f=x,g-m=y,n-z=x", "a-f=x,g-m=y,n-z=x", []string{"x", "y"}},
		{"n-z=late,a-m=early", "n-z=late,a-m=early", []string{"late", "early"}}, // table order is spec order
		{"!-~=everything", "!-~=everything", []string{"everything"}},
		{"-=dash", "-=dash", []string{"dash"}},
		{"--/=dash-to-slash", "--/=dash-to-slash", []string{"dash-to-slash"}},
		{"!--=bang-to-dash", "!--=bang-to-dash", []string{"bang-to-dash"}},
		{"---=dash", "-=dash", []string{"dash"}},
		{"A-Z=upper,0-9=digits,a-z=lower", "A-Z=upper,0-9=digits,a-z=lower", []string{"upper", "digits", "lower"}},
		{"a-z=12D3KooWGRUVh7DKYnXrjUS4HALVtjuuJ3xDTdPVoUeDUm8uvdBm", "a-z=12D3KooWGRUVh7DKYnXrjUS4HALVtjuuJ3xDTdPVoUeDUm8uvdBm",
			[]string{"12D3KooWGRUVh7DKYnXrjUS4HALVtjuuJ3xDTdPVoUeDUm8uvdBm"}},
		{"a-z=nœud", "a-z=nœud", []string{"nœud"}},
		{"a-z=a-b-c", "a-z=a-b-c", []string{"a-b-c"}},
	} {
		r, err := ParseRanges(tc.spec)
		if err != nil {
			t.Errorf("ParseRanges(%q): %v", tc.spec, err)
			continue
		}
		if got := r.String(); got != tc.canonical {
			t.Errorf("ParseRanges(%q).String() = %q, want %q", tc.spec, got, tc.canonical)
		}
		if got := r.Names(); !slices.Equal(got, tc.names) {
			t.Errorf("ParseRanges(%q).Names() = %q, want %q", tc.spec, got, tc.names)
		}
		again, err := ParseRanges(r.String())
		if err != nil || again.String() != r.String() || !slices.Equal(again.entries, r.entries) {
			t.Errorf("ParseRanges(%q) does not give back %q: %v, %v", r.String(), tc.spec, again, err)
		}
	}
}

func TestParseRangesFails(t *testing.T) {
	for _, spec := range []string{
		"",
		"   ",
		",",
		"a-g=x,",          // empty entry at the end
		",a-g=x",          // empty entry at the start
		"a-g=x,,h-n=y",    // empty entry in the middle
		"a-g",             // no name
		"a-g=",            // empty name
		"a-g= ",           // blank name
		"=x",              // no range
		"a-g=x,b-c=y",     // overlap inside
		"a-g=x,g-n=y",     // overlap at a bound
		"a-g=x,a-g=y",     // duplicate range
		"a-g=x,a-g=x",     // duplicate entry
		"a=x,a=y",         // duplicate byte
		"a-z=x,m=y",       // single byte inside a range
		"g-a=x",           // from > to
		"aa-g=x",          // multi-byte bound
		"a-gg=x",          // multi-byte bound
		"ab=x",            // multi-byte single
		"a--=x",           // from > to ('a' > '-')
		"a-=x",            // missing upper bound
		"-a=x",            // two bytes: neither one byte nor a range
		"a - g=x",         // space inside the range
		"a- g=x",          // space as a bound
		"a-g=x y",         // space in the name
		"a-g=x\ty",        // tab in the name
		"a-g=x=y",         // '=' in the name
		"a-g=x\x00",       // control byte in the name
		"a-g=\xff",        // invalid UTF-8 name
		"a-g=x\u00a0y",    // no-break space in the name
		"\x00-a=x",        // control byte as a bound
		"a-\x7f=x",        // DEL as a bound
		"é=x",             // multi-byte UTF-8 bound
		"a-é=x",           // multi-byte UTF-8 bound
		"a-g;h-n=x",       // wrong separator
		"a-g=x;h-n=y",     // ';' separates nothing: the name "x;h-n=y" holds '='
		"!-~=x,a=y",       // overlap with everything
		"a-g=x,h-n=y,c=z", // overlap with an earlier entry, not the last
	} {
		if r, err := ParseRanges(spec); !errors.Is(err, ErrInvalidSpec) || r != nil {
			t.Errorf("ParseRanges(%q) = %v, %v; want nil, ErrInvalidSpec", spec, r, err)
		}
	}
}

func TestParseRangesErrorMessages(t *testing.T) {
	for spec, want := range map[string]string{
		"a-g=x,a-g=y": "repeats",
		"a-g=x,c-d=y": "overlaps",
		"g-a=x":       "backwards",
		"a-g":         "no '='",
		"a-g=x,":      "entry 2: empty entry",
	} {
		_, err := ParseRanges(spec)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseRanges(%q) = %v, want an error that says %q", spec, err, want)
		}
	}
}

func mustParse(t testing.TB, spec string) *Ranges {
	t.Helper()
	r, err := ParseRanges(spec)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestRangesOriginal is the original D-Boutique's placement: four nodes, one
// per letter range, lower-case bucket names only.
func TestRangesOriginal(t *testing.T) {
	table := mustParse(t, original)
	r := mustPlace(t, table, table.Names())
	for bucket, want := range map[string]string{
		"hello": "h-n",
		"world": "v-z",
		"apple": "a-g",
		"zebra": "v-z",
		"a":     "a-g",
		"g":     "a-g",
		"n":     "h-n",
		"o":     "o-u",
		"u":     "o-u",
	} {
		if got := mustOwners(t, r, bucket, 1); !slices.Equal(got, []string{want}) {
			t.Errorf("Owners(%q, 1) = %q, want [%q]", bucket, got, want)
		}
	}
	for _, bucket := range []string{"Hello", "1abc", "{", "`", " a", "\xffa", "é"} {
		got, err := r.Owners(bucket, 1)
		if !errors.Is(err, ErrNoOwner) || got != nil {
			t.Errorf("Owners(%q, 1) = %q, %v; want nil, ErrNoOwner", bucket, got, err)
		}
		if err != nil && !strings.Contains(err.Error(), quoteBucket(bucket)) {
			t.Errorf("error %q does not name bucket %q", err, bucket)
		}
	}
	checkQueryErrors(t, r)
}

func TestRangesOwners(t *testing.T) {
	for _, tc := range []struct {
		name    string
		spec    string
		members []string
		bucket  string
		want    []string // Owners(bucket, len(members)+1)
	}{
		{"all members", original, []string{"a-g", "h-n", "o-u", "v-z"}, "hello", []string{"h-n", "o-u", "v-z", "a-g"}},
		{"wraps around", original, []string{"a-g", "h-n", "o-u", "v-z"}, "zebra", []string{"v-z", "a-g", "h-n", "o-u"}},
		{"owner gone", original, []string{"a-g", "o-u", "v-z"}, "hello", []string{"o-u", "v-z", "a-g"}},
		{"two gone", original, []string{"a-g", "v-z"}, "hello", []string{"v-z", "a-g"}},
		{"two gone, wrapping", original, []string{"h-n", "o-u"}, "world", []string{"h-n", "o-u"}},
		{"one left", original, []string{"o-u"}, "apple", []string{"o-u"}},
		{"members the table does not name own nothing", original, []string{"h-n", "other", "zzz"}, "apple", []string{"h-n"}},
		{"name owns several ranges", "a-f=x,g-m=y,n-s=x,t-z=z", []string{"x", "y", "z"}, "goat", []string{"y", "x", "z"}},
		{"table order, not byte order", "n-z=late,a-m=early,0-9=digits", []string{"digits", "early", "late"}, "apple",
			[]string{"early", "digits", "late"}},
		{"duplicate members count once", original, []string{"v-z", "h-n", "v-z", "h-n"}, "hello", []string{"h-n", "v-z"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustPlace(t, mustParse(t, tc.spec), tc.members)
			if got := mustOwners(t, r, tc.bucket, len(tc.members)+1); !slices.Equal(got, tc.want) {
				t.Errorf("Owners(%q, %d) = %q, want %q", tc.bucket, len(tc.members)+1, got, tc.want)
			}
			checkOwners(t, r, tc.bucket, len(tc.want))
			want := slices.Compact(slices.Sorted(slices.Values(tc.members)))
			if got := r.Members(); !slices.Equal(got, want) {
				t.Errorf("Members() = %q, want %q", got, want)
			}
		})
	}
}

func TestRangesNoOwner(t *testing.T) {
	table := mustParse(t, original)
	for _, members := range [][]string{nil, {}, {"other"}, {"A-G", "h-n "}} {
		r := mustPlace(t, table, members)
		got, err := r.Owners("hello", 2)
		if !errors.Is(err, ErrNoOwner) || got != nil {
			t.Errorf("members %q: Owners(hello, 2) = %q, %v; want nil, ErrNoOwner", members, got, err)
		}
		if err != nil && !strings.Contains(err.Error(), `"hello"`) {
			t.Errorf("error %q does not name the bucket", err)
		}
	}
}

func TestRangesPlaceErrors(t *testing.T) {
	table := mustParse(t, original)
	for _, members := range [][]string{{""}, {"a-g", ""}} {
		if r, err := table.Place(members); !errors.Is(err, ErrInvalidMember) || r != nil {
			t.Errorf("Place(%q) = %v, %v; want nil, ErrInvalidMember", members, r, err)
		}
	}
}

func TestRangesOrderIndependent(t *testing.T) {
	table := mustParse(t, original)
	a := mustPlace(t, table, []string{"a-g", "h-n", "v-z"})
	b := mustPlace(t, table, []string{"v-z", "a-g", "h-n", "a-g"})
	for c := range 256 {
		bucket := string(rune(c)) + "x"
		if c >= 0x80 {
			bucket = string([]byte{byte(c)}) + "x"
		}
		ga, ea := a.Owners(bucket, 3)
		gb, eb := b.Owners(bucket, 3)
		if !slices.Equal(ga, gb) || (ea == nil) != (eb == nil) {
			t.Errorf("Owners(%q) = %q, %v and %q, %v", bucket, ga, ea, gb, eb)
		}
	}
}

func TestRangesLongBucketNameInError(t *testing.T) {
	r := mustPlace(t, mustParse(t, original), []string{"a-g"})
	_, err := r.Owners(strings.Repeat("Z", 1<<20), 1)
	if !errors.Is(err, ErrNoOwner) || len(err.Error()) > 200 {
		t.Errorf("Owners(long name): %d-byte error %.80q..., want ErrNoOwner, short", len(err.Error()), err)
	}
}

// TestRangesReservedNames: names that begin with ReservedPrefix are spread
// over every entry by hash, the same way each time, and owned like any
// other bucket of their entry.
func TestRangesReservedNames(t *testing.T) {
	table := mustParse(t, original)
	r := mustPlace(t, table, table.Names())
	again := mustPlace(t, table, table.Names())
	firsts := map[string]int{}
	for i := range 256 {
		name := ReservedPrefix + "kv:" + strconv.Itoa(i)
		got := mustOwners(t, r, name, 2)
		if other := mustOwners(t, again, name, 2); !slices.Equal(got, other) {
			t.Fatalf("Owners(%q) = %q, then %q", name, got, other)
		}
		checkOwners(t, r, name, 4)
		firsts[got[0]]++
	}
	for _, name := range table.Names() {
		if firsts[name] < 256/8 {
			t.Errorf("entry %s is first owner of %d of 256 reserved names; want them spread (%v)", name, firsts[name], firsts)
		}
	}
	// With no member the table names, they have no owner, like the rest.
	none := mustPlace(t, table, []string{"other"})
	if got, err := none.Owners(ReservedPrefix+"kv:1", 1); !errors.Is(err, ErrNoOwner) {
		t.Errorf("no table member: Owners = %q, %v; want ErrNoOwner", got, err)
	}
}

func TestValidName(t *testing.T) {
	for _, name := range []string{"a", "node-1", "été", "n.example.org", strings.Repeat("x", MaxNameLen)} {
		if err := ValidName(name); err != nil {
			t.Errorf("ValidName(%q) = %v, want nil", name, err)
		}
	}
	mustFail := []string{
		"", " ", "two words", "tab\there", "new\nline", "comma,name", "equals=name",
		"\x7f", "\xff", "nul\x00", "zero\u200bwidth", strings.Repeat("x", MaxNameLen+1),
	}
	for _, name := range mustFail {
		if err := ValidName(name); err == nil {
			t.Errorf("ValidName(%q) = nil, want an error", name)
		}
	}
}
