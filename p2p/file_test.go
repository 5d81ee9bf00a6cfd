package p2p

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestReplaceFile: the file holds the new data, readable by its owner
// only, whatever was there before; a file that cannot be replaced is an
// error that leaves what was there; no temporary file is left either way.
func TestReplaceFile(t *testing.T) {
	const name = "n1.key.peers"
	for _, tt := range []struct {
		name   string
		before func(t *testing.T, path string) // prepares path; nil for nothing
		data   string
		fails  bool
		wantIs error // when it fails, what the error must wrap; nil for anything
	}{
		{name: "new file", data: "a b c\n"},
		{name: "replaces a file", before: writeBefore("old\n", 0o644), data: "new\n"},
		{name: "replaces with nothing", before: writeBefore("old\n", 0o600), data: ""},
		{name: "missing directory", before: func(t *testing.T, path string) {
			if err := os.Remove(filepath.Dir(path)); err != nil {
				t.Fatal(err)
			}
		}, data: "x", fails: true, wantIs: fs.ErrNotExist},
		{name: "a directory in the way", before: func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}, data: "x", fails: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, name)
			if tt.before != nil {
				tt.before(t, path)
			}
			err := ReplaceFile(path, []byte(tt.data))
			if tt.fails {
				if err == nil || tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
					t.Errorf("ReplaceFile: %v, want an error wrapping %v", err, tt.wantIs)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				got, err := os.ReadFile(path)
				if err != nil || string(got) != tt.data {
					t.Fatalf("the file holds %q, %v; want %q", got, err, tt.data)
				}
				info, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				if perm := info.Mode().Perm(); perm != 0o600 {
					t.Errorf("file mode %v, want 0600", perm)
				}
			}
			if entries, err := os.ReadDir(dir); err == nil && (len(entries) != 1 || entries[0].Name() != name) {
				t.Errorf("files in the directory: %v, want only %s", entries, name)
			}
		})
	}
}

// writeBefore returns a before function for TestReplaceFile that writes
// data to path with mode perm.
func writeBefore(data string, perm fs.FileMode) func(t *testing.T, path string) {
	return func(t *testing.T, path string) {
		if err := os.WriteFile(path, []byte(data), perm); err != nil {
			t.Fatal(err)
		}
	}
}
