package p2p

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestClusterKeyRoundTrip(t *testing.T) {
	key, err := GenerateClusterKey()
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != ClusterKeySize {
		t.Fatalf("GenerateClusterKey returned %d bytes", len(key))
	}
	other, err := GenerateClusterKey()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(key, other) {
		t.Fatal("two generated keys are equal")
	}

	var buf bytes.Buffer
	if err := WriteClusterKey(&buf, key); err != nil {
		t.Fatal(err)
	}
	want := "/key/swarm/psk/1.0.0/\n/base16/\n" + hex.EncodeToString(key) + "\n"
	if buf.String() != want {
		t.Fatalf("WriteClusterKey wrote %q, want %q", buf.String(), want)
	}
	got, err := ReadClusterKey(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, key) {
		t.Fatalf("read %x, wrote %x", got, key)
	}
}

func TestReadClusterKeyFormats(t *testing.T) {
	key := bytes.Repeat([]byte{0xab, 0x0a, 0x42, 0x00}, ClusterKeySize/4) // holds a '\n' byte
	hexKey := hex.EncodeToString(key)
	tests := []struct {
		name string
		file string
	}{
		{"base16", "/key/swarm/psk/1.0.0/\n/base16/\n" + hexKey + "\n"},
		{"base16 upper case", "/key/swarm/psk/1.0.0/\n/base16/\n" + strings.ToUpper(hexKey) + "\n"},
		{"base16 no final newline", "/key/swarm/psk/1.0.0/\n/base16/\n" + hexKey},
		{"base16 trailing blank lines", "/key/swarm/psk/1.0.0/\n/base16/\n" + hexKey + "\n\n\n"},
		{"base16 CRLF", "/key/swarm/psk/1.0.0/\r\n/base16/\r\n" + hexKey + "\r\n"},
		{"base64", "/key/swarm/psk/1.0.0/\n/base64/\n" + base64.StdEncoding.EncodeToString(key) + "\n"},
		{"binary", "/key/swarm/psk/1.0.0/\n/bin/\n" + string(key)},
		{"binary with newline", "/key/swarm/psk/1.0.0/\n/bin/\n" + string(key) + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadClusterKey(strings.NewReader(tt.file))
			if err != nil {
				t.Fatalf("ReadClusterKey: %v", err)
			}
			if !bytes.Equal(got, key) {
				t.Fatalf("read %x, want %x", got, key)
			}
			// The same file delivered one byte at a time.
			got, err = ReadClusterKey(iotest.OneByteReader(strings.NewReader(tt.file)))
			if err != nil || !bytes.Equal(got, key) {
				t.Fatalf("one byte at a time: %x, %v", got, err)
			}
		})
	}
}

func TestReadClusterKeyMustFail(t *testing.T) {
	hexKey := strings.Repeat("0123456789abcdef", 4)
	header := "/key/swarm/psk/1.0.0/\n"
	tests := []struct {
		name string
		file string
	}{
		{"empty", ""},
		{"just a newline", "\n"},
		{"hex only", hexKey + "\n"},
		{"header only", header},
		{"no encoding line end", header + "/base16/"},
		{"no key", header + "/base16/\n"},
		{"wrong version", "/key/swarm/psk/2.0.0/\n/base16/\n" + hexKey + "\n"},
		{"header with space", "/key/swarm/psk/1.0.0/ \n/base16/\n" + hexKey + "\n"},
		{"unknown encoding", header + "/base32/\n" + hexKey + "\n"},
		{"short hex", header + "/base16/\n" + hexKey[:63] + "\n"},
		{"31 bytes of hex", header + "/base16/\n" + hexKey[:62] + "\n"},
		{"long hex", header + "/base16/\n" + hexKey + "00\n"},
		{"two keys", header + "/base16/\n" + hexKey + "\n" + hexKey + "\n"},
		{"not hex", header + "/base16/\n" + strings.Repeat("zz", 32) + "\n"},
		{"space inside hex", header + "/base16/\n" + hexKey[:32] + " " + hexKey[32:] + "\n"},
		{"short base64", header + "/base64/\n" + base64.StdEncoding.EncodeToString(make([]byte, 31)) + "\n"},
		{"long base64", header + "/base64/\n" + base64.StdEncoding.EncodeToString(make([]byte, 33)) + "\n"},
		{"short binary", header + "/bin/\n" + strings.Repeat("k", 31)},
		{"long binary", header + "/bin/\n" + strings.Repeat("k", 34)},
		{"huge", header + "/base16/\n" + hexKey + strings.Repeat("\n", maxKeyFileSize)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, err := ReadClusterKey(strings.NewReader(tt.file))
			if !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("ReadClusterKey = %x, %v; want an error wrapping ErrInvalidKey", key, err)
			}
		})
	}
	t.Run("read error", func(t *testing.T) {
		want := errors.New("disk on fire")
		if _, err := ReadClusterKey(iotest.ErrReader(want)); !errors.Is(err, want) {
			t.Fatalf("ReadClusterKey: %v, want the reader's error", err)
		}
	})
}

func TestReadClusterKeyReadsBoundedInput(t *testing.T) {
	r := &keyByteCounter{r: endlessZeros{}}
	if _, err := ReadClusterKey(r); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("ReadClusterKey(endless input): %v", err)
	}
	if r.n > maxKeyFileSize+1 {
		t.Fatalf("ReadClusterKey read %d bytes of an endless input", r.n)
	}
}

type endlessZeros struct{}

func (endlessZeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

type keyByteCounter struct {
	r io.Reader
	n int
}

func (c *keyByteCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestWriteClusterKeyMustFail(t *testing.T) {
	for _, key := range [][]byte{nil, {}, make([]byte, 31), make([]byte, 33), make([]byte, 64)} {
		var buf bytes.Buffer
		if err := WriteClusterKey(&buf, key); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("WriteClusterKey(%d bytes): %v, want an error wrapping ErrInvalidKey", len(key), err)
		}
		if buf.Len() != 0 {
			t.Errorf("WriteClusterKey(%d bytes) wrote %q", len(key), buf.String())
		}
	}
}

func FuzzReadClusterKey(f *testing.F) {
	key := bytes.Repeat([]byte{0x5a}, ClusterKeySize)
	var buf bytes.Buffer
	if err := WriteClusterKey(&buf, key); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte("/key/swarm/psk/1.0.0/\n/base64/\n" + base64.StdEncoding.EncodeToString(key) + "\n"))
	f.Add([]byte("/key/swarm/psk/1.0.0/\n/bin/\n" + string(key)))
	f.Add([]byte("/key/swarm/psk/1.0.0/\n/base16/\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := ReadClusterKey(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("error %v does not wrap ErrInvalidKey", err)
			}
			return
		}
		if len(got) != ClusterKeySize {
			t.Fatalf("accepted a %d-byte key", len(got))
		}
		// What was accepted must survive a round trip unchanged.
		var out bytes.Buffer
		if err := WriteClusterKey(&out, got); err != nil {
			t.Fatal(err)
		}
		again, err := ReadClusterKey(&out)
		if err != nil || !bytes.Equal(again, got) {
			t.Fatalf("round trip: %x, %v; want %x", again, err, got)
		}
	})
}

func TestKeyFingerprint(t *testing.T) {
	k1 := bytes.Repeat([]byte{1}, ClusterKeySize)
	k2 := bytes.Repeat([]byte{2}, ClusterKeySize)
	f1 := KeyFingerprint(k1)
	if len(f1) != 16 {
		t.Fatalf("fingerprint %q is not 16 hex digits", f1)
	}
	if _, err := hex.DecodeString(f1); err != nil {
		t.Fatalf("fingerprint %q is not hex", f1)
	}
	if KeyFingerprint(k1) != f1 {
		t.Fatal("fingerprint is not deterministic")
	}
	if KeyFingerprint(k2) == f1 {
		t.Fatal("different keys have the same fingerprint")
	}
	if strings.Contains(hex.EncodeToString(k1), f1) {
		t.Fatal("fingerprint reveals key bytes")
	}
	if KeyFingerprint(nil) != "" || KeyFingerprint([]byte{}) != "" {
		t.Fatal("fingerprint of no key is not empty")
	}
}

func TestServiceTag(t *testing.T) {
	k1 := bytes.Repeat([]byte{1}, ClusterKeySize)
	k2 := bytes.Repeat([]byte{2}, ClusterKeySize)
	long := strings.Repeat("very-long-cluster-name-", 10)
	tests := []struct {
		cluster    string
		key        []byte
		wantPrefix string // the readable part
	}{
		{"default", nil, "dbq-default-"},
		{"default", k1, "dbq-default-"},
		{"default", k2, "dbq-default-"},
		{"Default", nil, "dbq-default-"},
		{"prod", nil, "dbq-prod-"},
		{"prod-eu-1", nil, "dbq-prod-eu-1-"},
		{"prod_eu 1", nil, "dbq-prod-eu-1-"},
		{"prod.eu.1", nil, "dbq-prod-eu-1-"},
		{"--prod--", nil, "dbq-prod-"},
		{"", nil, "dbq-"},
		{"", k1, "dbq-"},
		{"___", nil, "dbq-"},
		{"boutique à paris", nil, "dbq-boutique-paris-"},
		{"日本", nil, "dbq-"},
		{long, nil, "dbq-very-long-cluster-name-very-long-"},
		{long + "x", nil, "dbq-very-long-cluster-name-very-long-"},
		{"a\x00b", nil, "dbq-a-b-"},
	}
	seen := make(map[string]string)
	for _, tt := range tests {
		what := fmt.Sprintf("ServiceTag(%q, key %q)", tt.cluster, KeyFingerprint(tt.key))
		tag := ServiceTag(tt.cluster, tt.key)
		if !validServiceTag(tag) || strings.ToLower(tag) != tag {
			t.Errorf("%s = %q: not a valid lower-case label", what, tag)
		}
		if len("_"+tag) > 63 {
			t.Errorf("%s = %q: %d bytes with the underscore, over 63", what, tag, len(tag)+1)
		}
		if !strings.HasPrefix(tag, tt.wantPrefix) {
			t.Errorf("%s = %q, want prefix %q", what, tag, tt.wantPrefix)
		}
		if ServiceTag(tt.cluster, tt.key) != tag {
			t.Errorf("%s is not deterministic", what)
		}
		if prev, ok := seen[tag]; ok {
			t.Errorf("%s = %q, the same as %s", what, tag, prev)
		}
		seen[tag] = what
	}
}

func TestValidServiceTag(t *testing.T) {
	valid := []string{"a", "dbq-x-0123", "ABC-def", strings.Repeat("a", maxServiceTagLen)}
	invalid := []string{"", "-a", "a-", "a.b", "a_b", "_a", "a b", "é", strings.Repeat("a", maxServiceTagLen+1)}
	for _, s := range valid {
		if !validServiceTag(s) {
			t.Errorf("validServiceTag(%q) = false", s)
		}
	}
	for _, s := range invalid {
		if validServiceTag(s) {
			t.Errorf("validServiceTag(%q) = true", s)
		}
	}
}

func FuzzServiceTag(f *testing.F) {
	f.Add("default", false)
	f.Add("prod eu", true)
	f.Add(strings.Repeat("x", 100), true)
	key := bytes.Repeat([]byte{7}, ClusterKeySize)
	f.Fuzz(func(t *testing.T, cluster string, withKey bool) {
		var k []byte
		if withKey {
			k = key
		}
		tag := ServiceTag(cluster, k)
		if !validServiceTag(tag) {
			t.Fatalf("ServiceTag(%q) = %q: not a valid label", cluster, tag)
		}
		if ServiceTag(cluster, nil) == ServiceTag(cluster, key) {
			t.Fatalf("ServiceTag(%q) is the same with and without a key", cluster)
		}
	})
}

func ExampleWriteClusterKey() {
	key := bytes.Repeat([]byte{0x42}, ClusterKeySize) // use GenerateClusterKey
	var file bytes.Buffer
	if err := WriteClusterKey(&file, key); err != nil {
		panic(err)
	}
	fmt.Print(file.String())
	read, err := ReadClusterKey(&file)
	fmt.Println(bytes.Equal(read, key), err)
	// Output:
	// /key/swarm/psk/1.0.0/
	// /base16/
	// 4242424242424242424242424242424242424242424242424242424242424242
	// true <nil>
}

func ExampleServiceTag() {
	fmt.Println(ServiceTag("prod", nil))
	fmt.Println(len(ServiceTag("prod", bytes.Repeat([]byte{0x42}, ClusterKeySize))))
	// Output:
	// dbq-prod-caef20f55aefdeac
	// 25
}

func BenchmarkReadClusterKey(b *testing.B) {
	var file bytes.Buffer
	if err := WriteClusterKey(&file, bytes.Repeat([]byte{1}, ClusterKeySize)); err != nil {
		b.Fatal(err)
	}
	data := file.Bytes()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ReadClusterKey(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkServiceTag(b *testing.B) {
	key := bytes.Repeat([]byte{1}, ClusterKeySize)
	for _, cluster := range []string{"prod", strings.Repeat("long cluster name ", 8)} {
		b.Run(fmt.Sprintf("%dB", len(cluster)), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = ServiceTag(cluster, key)
			}
		})
	}
}
