package p2p

import (
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

func TestLoadOrCreateIdentity(t *testing.T) {
	path := filepath.Join(t.TempDir(), "identity.key")
	first, err := LoadOrCreateIdentity(path)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("identity file mode %v, want 0600", perm)
	}
	second, err := LoadOrCreateIdentity(path)
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	id1, _ := peer.IDFromPrivateKey(first)
	id2, _ := peer.IDFromPrivateKey(second)
	if id1 != id2 || id1 == "" {
		t.Fatalf("reloaded peer ID %s, want %s", id2, id1)
	}
	if !first.Equals(second) {
		t.Fatal("reloaded key differs")
	}

	other, err := LoadOrCreateIdentity(filepath.Join(t.TempDir(), "other.key"))
	if err != nil {
		t.Fatal(err)
	}
	if other.Equals(first) {
		t.Fatal("two identity files hold the same key")
	}
}

func TestLoadOrCreateIdentityConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "identity.key")
	const n = 8
	keys := make([]crypto.PrivKey, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			keys[i], errs[i] = LoadOrCreateIdentity(path)
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if !keys[i].Equals(keys[0]) {
			t.Fatalf("caller %d got a different key than caller 0", i)
		}
	}
}

func TestLoadOrCreateIdentityMustFail(t *testing.T) {
	marshal := func(k crypto.PrivKey, _ crypto.PubKey, err error) []byte {
		if err != nil {
			t.Fatal(err)
		}
		b, err := crypto.MarshalPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	valid := marshal(crypto.GenerateEd25519Key(rand.Reader))
	secp := marshal(crypto.GenerateSecp256k1Key(rand.Reader))
	tests := []struct {
		name    string
		content []byte
	}{
		{"empty", nil},
		{"text", []byte("not a key\n")},
		{"truncated", valid[:len(valid)/2]},
		{"one byte short", valid[:len(valid)-1]},
		{"hex of a key", []byte("080112400a")},
		{"secp256k1 key", secp},
		{"too large", make([]byte, maxIdentityFileSize+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "identity.key")
			if err := os.WriteFile(path, tt.content, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := LoadOrCreateIdentity(path); !errors.Is(err, ErrInvalidIdentity) {
				t.Fatalf("LoadOrCreateIdentity: %v, want an error wrapping ErrInvalidIdentity", err)
			}
			after, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(after) != string(tt.content) {
				t.Fatal("the corrupt identity file was modified")
			}
		})
	}

	t.Run("a directory", func(t *testing.T) {
		if _, err := LoadOrCreateIdentity(t.TempDir()); !errors.Is(err, ErrInvalidIdentity) {
			t.Fatalf("LoadOrCreateIdentity(dir): %v, want an error wrapping ErrInvalidIdentity", err)
		}
	})
	t.Run("missing parent directory", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "no-such-dir", "identity.key")
		if _, err := LoadOrCreateIdentity(path); err == nil {
			t.Fatal("LoadOrCreateIdentity created a file in a missing directory")
		}
	})
}

func BenchmarkLoadIdentity(b *testing.B) {
	path := filepath.Join(b.TempDir(), "identity.key")
	if _, err := LoadOrCreateIdentity(path); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := LoadOrCreateIdentity(path); err != nil {
			b.Fatal(err)
		}
	}
}
