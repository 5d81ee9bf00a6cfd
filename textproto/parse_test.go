package textproto

import (
	"bufio"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/dboutique/dboutique/node/store"
)

func words(r *request) []string {
	var w []string
	for _, b := range r.words[:r.n] {
		w = append(w, string(b))
	}
	return w
}

func TestParseLine(t *testing.T) {
	tests := []struct {
		line  string
		words []string
		arity int
	}{
		{"", nil, 0},
		{"   \t ", nil, 0},
		{"GET", []string{"GET"}, 1},
		{"GET a b", []string{"GET", "a", "b"}, 3},
		{"  GET \t a\t\tb  ", []string{"GET", "a", "b"}, 3},
		{"PUT b k v", []string{"PUT", "b", "k", "v"}, 4},
		{"a b c d e", []string{"a", "b", "c", "d", "e"}, 5},
		{"a b c d e f", []string{"a", "b", "c", "d", "e", "f"}, 6},
		{"a b c d e f g h", []string{"a", "b", "c", "d", "e", "f", "g"}, maxWords + 1},
		{"a b c d e f g h i j", []string{"a", "b", "c", "d", "e", "f", "g"}, maxWords + 1},
		{"x\ry \x00z", []string{"x\ry", "\x00z"}, 2},
		{"\xff\xfe", []string{"\xff\xfe"}, 1},
	}
	for _, tt := range tests {
		var r request
		parseLine([]byte(tt.line), &r)
		if got := words(&r); !slices.Equal(got, tt.words) || r.arity() != tt.arity {
			t.Errorf("parseLine(%q) = %q arity %d, want %q arity %d", tt.line, got, r.arity(), tt.words, tt.arity)
		}
	}
}

func TestParseVerb(t *testing.T) {
	tests := []struct {
		word string
		want verb
	}{
		{"CREATE", verbCreate}, {"create", verbCreate}, {"CrEaTe", verbCreate},
		{"PUT", verbPut}, {"GET", verbGet}, {"DELETE", verbDelete}, {"DROP", verbDrop},
		{"BUCKETS", verbBuckets}, {"buckets", verbBuckets}, {"KEYS", verbKeys},
		{"PING", verbPing}, {"QUIT", verbQuit}, {"HELP", verbHelp}, {"AUTH", verbAuth},
		// Must not match.
		{"", verbUnknown}, {"GE", verbUnknown}, {"GETS", verbUnknown}, {"CREATED", verbUnknown},
		{"BUCKETSX", verbUnknown}, {"UNKNOWN", verbUnknown}, {"G\x00T", verbUnknown},
		{"ＧＥＴ", verbUnknown}, {"get\x80", verbUnknown}, {"\xc7ET", verbUnknown},
	}
	for _, tt := range tests {
		if got := parseVerb([]byte(tt.word)); got != tt.want {
			t.Errorf("parseVerb(%q) = %d, want %d", tt.word, got, tt.want)
		}
	}
}

// TestTextCommands: parseVerb knows every verb of the table by its name,
// and each kind of operation is run by one verb, which verbOf finds.
func TestTextCommands(t *testing.T) {
	s, err := NewServer(Config{Executor: store.NewStore()})
	if err != nil {
		t.Fatal(err)
	}
	for v, tc := range textCommands() {
		if v == int(verbUnknown) {
			continue
		}
		if got := parseVerb([]byte(tc.name)); got != verb(v) {
			t.Errorf("parseVerb(%q) = %d, want %d", tc.name, got, v)
		}
		if tc.words > 0 {
			if got := s.verbOf(tc.kind); got != verb(v) {
				t.Errorf("verbOf(%v) = %d, want %d (%s)", tc.kind, got, v, tc.name)
			}
		}
	}
	if got := s.verbOf(store.KindPutCreate); got != verbUnknown {
		t.Errorf("verbOf(%v) = %d, want verbUnknown: no text verb runs it", store.KindPutCreate, got)
	}
}

// readLines reads every line of input through a lineReader with a small
// buffer, feeding it with r's chunking.
func readLines(r io.Reader, max int) ([]string, error) {
	lr := lineReader{r: bufio.NewReaderSize(r, 16), max: max}
	var out []string
	for {
		line, err := lr.next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, string(line))
	}
}

func TestLineReader(t *testing.T) {
	long := strings.Repeat("x", 40) // longer than the 16-byte buffer
	tests := []struct {
		in    string
		max   int
		lines []string
		err   error
	}{
		{"", 64, nil, nil},
		{"a\r\nb\nc", 64, []string{"a", "b", "c"}, nil},
		{"\r\n\n", 64, []string{"", ""}, nil},
		{"a\r\r\n", 64, []string{"a\r"}, nil},
		{long + "\r\n" + long + "\n" + long, 40, []string{long, long, long}, nil},
		{long + "\r", 40, []string{long}, nil},
		// Must fail.
		{long + "x\r\n", 40, nil, errLineTooLong},
		{long + "x\n", 40, nil, errLineTooLong},
		{long + "x", 40, nil, errLineTooLong},
		{"ok\n" + long + "xx\r", 40, []string{"ok"}, errLineTooLong},
		{"abcdef\n", 5, nil, errLineTooLong},
		{"abcdef", 5, nil, errLineTooLong},
	}
	for _, tt := range tests {
		for name, r := range map[string]io.Reader{
			"whole":    strings.NewReader(tt.in),
			"one byte": iotest.OneByteReader(strings.NewReader(tt.in)),
			"half":     iotest.HalfReader(strings.NewReader(tt.in)),
		} {
			lines, err := readLines(r, tt.max)
			if !slices.Equal(lines, tt.lines) || !errors.Is(err, tt.err) {
				t.Errorf("%s %q (max %d): lines %q, err %v; want %q, %v", name, tt.in, tt.max, lines, err, tt.lines, tt.err)
			}
		}
	}
}

func TestLineReaderDropsLargeBuffer(t *testing.T) {
	huge := strings.Repeat("y", 1000)
	lr := lineReader{r: bufio.NewReaderSize(strings.NewReader(huge+"\nshort-but-over-the-buffer\n"), 16), max: 2000}
	if l, err := lr.next(); err != nil || string(l) != huge {
		t.Fatalf("first line: %v", err)
	}
	if l, err := lr.next(); err != nil || string(l) != "short-but-over-the-buffer" {
		t.Fatalf("second line: %q %v", l, err)
	}
	if cap(lr.long) > 4*16*2 {
		t.Errorf("line buffer kept %d bytes after a long line", cap(lr.long))
	}
}
