package p2p

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
)

// Cluster key file format: libp2p's standard "swarm.key" (version 1), the
// same file IPFS private networks use:
//
//	/key/swarm/psk/1.0.0/
//	/base16/
//	<64 hex digits>
//
// ReadClusterKey also accepts the /base64/ and /bin/ encodings of the format.
const (
	keyFileHeader  = "/key/swarm/psk/1.0.0/"
	keyFileBase16  = "/base16/"
	keyFileBase64  = "/base64/"
	keyFileBinary  = "/bin/"
	maxKeyFileSize = 4 << 10 // a valid file is under 100 bytes
)

// Domain separators, so a digest made for one purpose never equals one made
// for another from the same input.
const (
	fingerprintDomain = "dboutique cluster key fingerprint v1\x00"
	serviceTagDomain  = "dboutique mdns service tag v1\x00"
)

// GenerateClusterKey returns a new random cluster key of ClusterKeySize
// bytes.
func GenerateClusterKey() ([]byte, error) {
	key := make([]byte, ClusterKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("p2p: generate cluster key: %w", err)
	}
	return key, nil
}

// WriteClusterKey writes key to w in libp2p's swarm.key format, hex encoded.
func WriteClusterKey(w io.Writer, key []byte) error {
	if len(key) != ClusterKeySize {
		return fmt.Errorf("%w: key is %d bytes, want %d", ErrInvalidKey, len(key), ClusterKeySize)
	}
	if _, err := io.WriteString(w, keyFileHeader+"\n"+keyFileBase16+"\n"+hex.EncodeToString(key)+"\n"); err != nil {
		return fmt.Errorf("p2p: write cluster key: %w", err)
	}
	return nil
}

// ReadClusterKey reads a cluster key in libp2p's swarm.key format. It reads at
// most a few KiB. Anything but a well-formed file holding exactly one
// ClusterKeySize key, optionally followed by blank lines, is an error
// wrapping ErrInvalidKey: libp2p's own decoder ignores what follows the key,
// so a mangled file could otherwise yield a key that differs from the one
// the other nodes read.
func ReadClusterKey(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("p2p: read cluster key: %w", err)
	}
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrInvalidKey, maxKeyFileSize)
	}
	key, err := pnet.DecodeV1PSK(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	if len(key) != ClusterKeySize {
		return nil, fmt.Errorf("%w: key is %d bytes, want %d", ErrInvalidKey, len(key), ClusterKeySize)
	}
	if err := checkKeyPayload(data); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	return []byte(key), nil
}

// checkKeyPayload checks that the payload after the two header lines of a
// key file DecodeV1PSK accepted is exactly one key, with nothing after it but
// line ends and spaces.
func checkKeyPayload(data []byte) error {
	_, rest, _ := bytes.Cut(data, []byte("\n")) // DecodeV1PSK checked the header
	encoding, payload, _ := bytes.Cut(rest, []byte("\n"))
	switch string(bytes.TrimRight(encoding, "\r")) {
	case keyFileBase16:
		text := strings.TrimRight(string(payload), " \t\r\n")
		if len(text) != hex.EncodedLen(ClusterKeySize) {
			return fmt.Errorf("want %d hex digits, got %d characters", hex.EncodedLen(ClusterKeySize), len(text))
		}
	case keyFileBase64:
		text := strings.TrimRight(string(payload), " \t\r\n")
		if n, err := base64.StdEncoding.DecodeString(text); err != nil || len(n) != ClusterKeySize {
			return fmt.Errorf("want %d bytes in base64", ClusterKeySize)
		}
	case keyFileBinary:
		// Raw bytes: the key may itself contain line ends, so only one
		// trailing newline is allowed.
		if len(payload) != ClusterKeySize && !(len(payload) == ClusterKeySize+1 && payload[ClusterKeySize] == '\n') {
			return fmt.Errorf("want %d raw bytes, got %d", ClusterKeySize, len(payload))
		}
	default:
		return errors.New("unknown encoding")
	}
	return nil
}

// KeyFingerprint returns a short hex digest of key (the first 8 bytes of a
// domain-separated SHA-256), safe to log and to publish: it identifies the
// key without revealing it. It returns "" for an empty key.
func KeyFingerprint(key []byte) string {
	if len(key) == 0 {
		return ""
	}
	h := sha256.New()
	h.Write([]byte(fingerprintDomain))
	h.Write(key)
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// Service tag layout: "dbq-<readable cluster name>-<digest>", at most
// maxServiceTagLen bytes, lower-case letters, digits and hyphens. The digest
// covers the exact cluster name and the key's fingerprint, so two clusters
// share a tag only if they share both; the readable part only helps people
// reading packet captures and is shortened or dropped as needed.
const (
	serviceTagPrefix = "dbq-"
	serviceDigestLen = 16 // hex digits
	// maxServiceTagLen keeps "_" + tag, the DNS-SD service label StartMDNS
	// publishes, within DNS's 63-byte label limit.
	maxServiceTagLen = 62
)

// ServiceTag returns the mDNS service tag of a cluster: nodes announce and
// look for it, so only nodes with the same cluster name and the same cluster
// key (or both none) find each other. Its fingerprint is included when key is
// not nil. Any cluster name works: an unusual or long one is kept readable in
// part and told apart by the digest.
func ServiceTag(cluster string, key []byte) string {
	h := sha256.New()
	h.Write([]byte(serviceTagDomain))
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(cluster)))
	h.Write(n[:])
	h.Write([]byte(cluster))
	if key != nil {
		h.Write([]byte{1})
		h.Write([]byte(KeyFingerprint(key)))
	} else {
		h.Write([]byte{0})
	}
	digest := hex.EncodeToString(h.Sum(nil))[:serviceDigestLen]

	room := maxServiceTagLen - len(serviceTagPrefix) - 1 - serviceDigestLen
	readable := readableLabel(cluster, room)
	if readable == "" {
		return serviceTagPrefix + digest
	}
	return serviceTagPrefix + readable + "-" + digest
}

// readableLabel maps s to at most n lower-case ASCII letters and digits,
// with a single hyphen wherever s had a run of other characters between
// them.
func readableLabel(s string, n int) string {
	b := make([]byte, 0, n)
	gap := false
	for _, r := range strings.ToLower(s) {
		if !('a' <= r && r <= 'z' || '0' <= r && r <= '9') {
			gap = len(b) > 0
			continue
		}
		need := 1
		if gap {
			need = 2
		}
		if len(b)+need > n {
			break
		}
		if gap {
			b = append(b, '-')
			gap = false
		}
		b = append(b, byte(r))
	}
	return string(b)
}

// validServiceTag reports whether tag can be published by StartMDNS: 1 to
// maxServiceTagLen letters, digits and hyphens, not starting or ending with a
// hyphen.
func validServiceTag(tag string) bool {
	if len(tag) == 0 || len(tag) > maxServiceTagLen || tag[0] == '-' || tag[len(tag)-1] == '-' {
		return false
	}
	for i := 0; i < len(tag); i++ {
		c := tag[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// ExplainDialError makes a failed connection caused by a cluster key mismatch
// say so. If err looks like one (the security handshake failed because the
// bytes arriving were garbage, which is what a different key, or a key on
// one side only, produces), it returns an error wrapping both
// ErrClusterKeyMismatch and err, keeping err's text. Otherwise, and for nil,
// it returns err unchanged. private tells whether this node uses a cluster
// key, to word the hint.
//
// This is a heuristic: a peer that is not a libp2p node at all fails the same
// way.
func ExplainDialError(err error, private bool) error {
	if err == nil || errors.Is(err, ErrClusterKeyMismatch) || !looksLikeKeyMismatch(err) {
		return err
	}
	hint := "this node has no cluster key; the peer probably has one"
	if private {
		hint = "the peer has a different cluster key, or none"
	}
	return fmt.Errorf("%w: %s: %w", ErrClusterKeyMismatch, hint, err)
}

// looksLikeKeyMismatch reports whether err is a handshake failure of the
// kind a private network mismatch produces. With different keys each side
// decrypts the other's bytes into noise, so the protocol negotiation that
// starts the handshake reads garbage ("incoming message was too large"),
// times out waiting for a message that never comes, or sees the peer hang
// up; with a key on one side only, the keyed side may also fail reading the
// peer's nonce (a privnet error). A failure inside the Noise or TLS
// handshake itself is something else: getting that far means the
// negotiation was read correctly, so the keys match.
func looksLikeKeyMismatch(err error) bool {
	var pe pnet.Error
	if errors.As(err, &pe) && pe.IsPNetError() {
		return true
	}
	var causes []string
	var de *swarm.DialError
	if errors.As(err, &de) && len(de.DialErrors) > 0 {
		for _, te := range de.DialErrors {
			if te.Cause != nil {
				causes = append(causes, te.Cause.Error())
			}
		}
	} else {
		causes = append(causes, err.Error())
	}
	for _, c := range causes {
		_, inner, ok := strings.Cut(c, "failed to negotiate security protocol")
		if ok && !strings.Contains(inner, "noise") && !strings.Contains(inner, "tls:") && !strings.Contains(inner, "handshake message") {
			return true
		}
	}
	return false
}
