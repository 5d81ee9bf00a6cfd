package memlimit_test

import (
	"errors"
	"math"
	"testing"

	"github.com/dboutique/dboutique/node/memlimit"
)

func TestParseSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"0", 0},
		{"1", 1},
		{"1048576", 1 << 20},
		{" 100 ", 100},
		{"\t64mb\n", 64 << 20},
		{"10b", 10},
		{"10B", 10},
		{"1k", 1000},
		{"1K", 1000},
		{"1kb", 1024},
		{"1KB", 1024},
		{"1Kb", 1024},
		{"1kib", 1024},
		{"1KiB", 1024},
		{"100m", 100_000_000},
		{"100M", 100_000_000},
		{"100mb", 100 << 20},
		{"100MB", 100 << 20},
		{"100MiB", 100 << 20},
		{"2g", 2_000_000_000},
		{"2gb", 2 << 30},
		{"2GB", 2 << 30},
		{"2GiB", 2 << 30},
		{"007mb", 7 << 20},
		{"8589934591gb", 8589934591 << 30}, // the largest count of GiB in an int64
		{"9223372036g", 9223372036_000_000_000},
		{"9223372036854775807", math.MaxInt64},
		{"9223372036854775807b", math.MaxInt64},
	} {
		got, err := memlimit.ParseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

// sizesThatMustFail are inputs ParseSize must refuse.
var sizesThatMustFail = []string{
	"", " ", "\n", "b", "k", "kb", "mb", "gb", "KiB",
	"-1", "-1mb", "+1", "+1mb", "1.5", "1.5gb", ".5g", "1e3", "1E6", "0x40", "0b1", "1_000",
	"1 mb", "64 KiB", "1m b", "6 4", "1mbb", "1kk", "1bb", "1gib2",
	"1t", "1tb", "1TiB", "1p", "1x", "1i", "1ib", "1kbi", "k1", "mb1", "1\x00", "1mb\x00",
	"１", "1ｍｂ", "٣", // non-ASCII digits and letters
	"9223372036854775808", "99999999999999999999", "8589934592gb", "8796093022208mb",
	"9223372036854775kb", "9223372037g", "9007199254740992kb",
}

func TestParseSizeMustFail(t *testing.T) {
	t.Parallel()
	for _, in := range sizesThatMustFail {
		got, err := memlimit.ParseSize(in)
		if err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, got)
			continue
		}
		if !errors.Is(err, memlimit.ErrInvalidSize) {
			t.Errorf("ParseSize(%q): error %v does not wrap ErrInvalidSize", in, err)
		}
	}
}

func TestFormatSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   int64
		want string
	}{
		{0, "0"}, {1, "1"}, {999, "999"}, {1000, "1k"}, {1024, "1kb"}, {1500, "1500"},
		{1_500_000, "1500k"}, {64 << 20, "64mb"}, {100_000_000, "100m"}, {1 << 30, "1gb"},
		{3_000_000_000, "3g"}, {1<<30 + 1<<20, "1025mb"}, {math.MaxInt64, "9223372036854775807"},
	} {
		if got := memlimit.FormatSize(tc.in); got != tc.want {
			t.Errorf("FormatSize(%d) = %q, want %q", tc.in, got, tc.want)
		}
		if back, err := memlimit.ParseSize(memlimit.FormatSize(tc.in)); err != nil || back != tc.in {
			t.Errorf("ParseSize(FormatSize(%d)) = %d, %v", tc.in, back, err)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "64mb", "1k", "1kb", "2GiB", " 7 ", "100m", "9223372036854775807"} {
		f.Add(s)
	}
	for _, s := range sizesThatMustFail {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := memlimit.ParseSize(s)
		if err != nil {
			if !errors.Is(err, memlimit.ErrInvalidSize) {
				t.Fatalf("ParseSize(%q): error %v does not wrap ErrInvalidSize", s, err)
			}
			return
		}
		if n < 0 {
			t.Fatalf("ParseSize(%q) = %d, negative", s, n)
		}
		back, err := memlimit.ParseSize(memlimit.FormatSize(n))
		if err != nil || back != n {
			t.Fatalf("ParseSize(%q) = %d, but FormatSize gives %q, read back as %d, %v", s, n, memlimit.FormatSize(n), back, err)
		}
	})
}
