package p2p

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
	cryptopb "github.com/libp2p/go-libp2p/core/crypto/pb"
)

// maxIdentityFileSize caps how much of an identity file is read. A
// marshalled Ed25519 key is 68 bytes.
const maxIdentityFileSize = 4 << 10

// LoadOrCreateIdentity returns the node identity (an Ed25519 private key,
// which fixes the peer ID) stored at path. If the file does not exist it
// creates one with a new key, readable by its owner only; the directory must
// exist. The file holds the key in libp2p's protobuf encoding
// (crypto.MarshalPrivateKey).
//
// A file that exists but cannot be used (unreadable, corrupt, or holding
// another kind of key) is an error wrapping ErrInvalidIdentity; it is never
// replaced, since that would silently give the node a new peer ID.
func LoadOrCreateIdentity(path string) (crypto.PrivKey, error) {
	key, err := loadIdentity(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	key, _, err = crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("p2p: generate identity: %w", err)
	}
	data, err := crypto.MarshalPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("p2p: marshal identity: %w", err)
	}
	if err := writeNewFile(path, data); err != nil {
		if errors.Is(err, fs.ErrExist) {
			// Another process created it since we looked: use theirs.
			return loadIdentity(path)
		}
		return nil, fmt.Errorf("p2p: create identity file: %w", err)
	}
	return key, nil
}

// loadIdentity reads the key at path. A missing file is an error wrapping
// fs.ErrNotExist; anything else that goes wrong wraps ErrInvalidIdentity.
func loadIdentity(path string) (crypto.PrivKey, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalidIdentity, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxIdentityFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidIdentity, path, err)
	}
	if len(data) > maxIdentityFileSize {
		return nil, fmt.Errorf("%w: %s: larger than %d bytes", ErrInvalidIdentity, path, maxIdentityFileSize)
	}
	key, err := crypto.UnmarshalPrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidIdentity, path, err)
	}
	if key.Type() != cryptopb.KeyType_Ed25519 {
		return nil, fmt.Errorf("%w: %s: key type %s, want Ed25519", ErrInvalidIdentity, path, key.Type())
	}
	return key, nil
}

// writeNewFile creates a file at path holding data, readable by its owner
// only, and fails with an error wrapping fs.ErrExist if path exists. The
// file appears complete or not at all: data goes to a temporary file in the
// same directory, which is then hard-linked to path. Where hard links are not
// supported it falls back to writing path directly.
func writeNewFile(path string, data []byte) error {
	tmp, err := writeTemp(filepath.Dir(path), ".identity-*.tmp", data)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	err = os.Link(tmp, path)
	if err == nil || errors.Is(err, fs.ErrExist) {
		return err
	}
	return writeExclusive(path, data)
}

// writeExclusive writes data to a new file at path, readable by its owner
// only, and syncs it. On failure it removes what it created.
func writeExclusive(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := writeSynced(f, data); err != nil {
		_ = os.Remove(path)
		return err
	}
	return nil
}
