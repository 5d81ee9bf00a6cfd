package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/dboutique/dboutique/node"
)

// TestPeersFile: the peer book beside an identity file saves and loads the
// members, a missing file is an empty book, and no identity means no book.
func TestPeersFile(t *testing.T) {
	t.Parallel()
	if peerBook("") != nil {
		t.Error("a node without --identity has a peer book")
	}
	dir := t.TempDir()
	book := peerBook(filepath.Join(dir, "n1.key"))
	if ms, err := book.Load(); err != nil || len(ms) != 0 {
		t.Fatalf("Load of a missing file = %v, %v; want nothing", ms, err)
	}
	want := []node.Member{
		{ID: "12D3KooWA", Name: "n2", Addrs: []string{"/ip4/127.0.0.1/tcp/7041"}},
		{ID: "12D3KooWB", Name: "n3", Addrs: []string{"/ip4/10.0.0.3/tcp/7040", "/ip4/10.0.0.3/udp/7040/quic-v1"}},
	}
	if err := book.Save(want); err != nil {
		t.Fatal(err)
	}
	got, err := book.Load()
	if err != nil || !slices.EqualFunc(got, want, func(a, b node.Member) bool {
		return a.ID == b.ID && a.Name == b.Name && slices.Equal(a.Addrs, b.Addrs)
	}) {
		t.Fatalf("Load after Save = %+v, %v; want %+v", got, err, want)
	}
	if err := book.Save(nil); err != nil {
		t.Fatal(err)
	}
	if got, err := book.Load(); err != nil || len(got) != 0 {
		t.Fatalf("Load after an empty Save = %+v, %v", got, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("files left beside the book: %v", entries)
	}
}

// TestPeersFileMustFail: lines that are not "ID name addresses" are an
// error, not a guess.
func TestPeersFileMustFail(t *testing.T) {
	t.Parallel()
	for _, text := range []string{
		"12D3KooWA\n",
		"12D3KooWA n2\n",
		"12D3KooWA n2 /ip4/127.0.0.1/tcp/1 extra\n",
		"ok n1 /a\nbad\n",
	} {
		if ms, err := parsePeers(text); err == nil {
			t.Errorf("parsePeers(%q) = %+v, want an error", text, ms)
		}
	}
	if ms, err := parsePeers("\n  \n"); err != nil || len(ms) != 0 {
		t.Errorf("blank lines: %+v, %v", ms, err)
	}
}
