package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/dboutique/dboutique/node"
	"github.com/dboutique/dboutique/p2p"
)

// The peer book: the other nodes a node has known, kept in a text file
// beside its identity (FILE.peers for --identity FILE), so that a node
// restarted without --join finds its cluster again before it serves
// (node.PeerBook). One line a member: peer ID, name, and its addresses
// separated by commas. The file is rewritten whole (p2p.ReplaceFile: a
// temporary file, then a rename), so a crash leaves the old one or the new
// one.

// maxPeersFile bounds what is read of a peers file.
const maxPeersFile = 4 << 20

// peersFile is a node.PeerBook in a file.
type peersFile struct{ path string }

// peerBook returns the peer book beside the identity file, or nil when
// the node has no identity (every start is then a new node, with nothing
// to rejoin).
func peerBook(identity string) node.PeerBook {
	if identity == "" {
		return nil
	}
	return &peersFile{path: identity + ".peers"}
}

// Load reads the file; a missing file is an empty book.
func (f *peersFile) Load() ([]node.Member, error) {
	fh, err := os.Open(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, maxPeersFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxPeersFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", f.path, maxPeersFile)
	}
	return parsePeers(string(b))
}

// parsePeers parses the lines of a peers file.
func parsePeers(s string) ([]node.Member, error) {
	var ms []node.Member
	for i, line := range strings.Split(s, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 3 {
			return nil, fmt.Errorf("line %d: want a peer ID, a name and addresses", i+1)
		}
		ms = append(ms, node.Member{ID: fields[0], Name: fields[1], Addrs: strings.Split(fields[2], ",")})
	}
	return ms, nil
}

// formatPeers is the text of a peers file for ms.
func formatPeers(ms []node.Member) string {
	var b strings.Builder
	for _, m := range ms {
		name := m.Name
		if name == "" {
			name = "?"
		}
		fmt.Fprintf(&b, "%s %s %s\n", m.ID, name, strings.Join(m.Addrs, ","))
	}
	return b.String()
}

// Save replaces the file atomically: a reader sees the old book or the new
// one, never a part of either. The new one is synced to disk first, so
// that it survives a power cut, not only kill -9.
func (f *peersFile) Save(ms []node.Member) error {
	return p2p.ReplaceFile(f.path, []byte(formatPeers(ms)))
}
