package p2p

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"math"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

// encodeFrame returns one frame's bytes.
func encodeFrame(tb testing.TB, typ byte, id uint64, payload []byte) []byte {
	tb.Helper()
	var buf bytes.Buffer
	bw := bufio.NewWriterSize(&buf, 64)
	if err := writeFrame(bw, typ, id, payload); err != nil {
		tb.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func TestFrameGolden(t *testing.T) {
	tests := []struct {
		name    string
		typ     byte
		id      uint64
		payload string
		hex     string
	}{
		{"empty request", frameRequest, 1, "", "020101"},
		{"request", frameRequest, 1, "hi", "04010168" + "69"},
		{"reply with a two-byte id", frameReply, 300, "x", "0402ac0278"},
		{"error reply", frameErrorReply, 0, "no", "0403006e6f"},
		{"largest id", frameReply, math.MaxUint64, "", "0b02ffffffffffffffffff01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := encodeFrame(t, tt.typ, tt.id, []byte(tt.payload))
			if hex.EncodeToString(got) != tt.hex {
				t.Fatalf("encoded %x, want %s", got, tt.hex)
			}
			f, err := readFrame(bufio.NewReader(bytes.NewReader(got)), 1<<10)
			if err != nil {
				t.Fatal(err)
			}
			if f.typ != tt.typ || f.id != tt.id || string(f.payload) != tt.payload {
				t.Fatalf("decoded %+v", f)
			}
		})
	}
}

func TestFrameRoundTrip(t *testing.T) {
	ids := []uint64{0, 1, 127, 128, 16383, 16384, 1 << 35, math.MaxUint64}
	sizes := []int{0, 1, 16, 1 << 10, payloadChunk, payloadChunk + 1, 3*payloadChunk + 5}
	for _, typ := range []byte{frameRequest, frameReply} {
		for _, id := range ids {
			for _, size := range sizes {
				payload := bytes.Repeat([]byte{byte(id), byte(size)}, size/2+1)[:size]
				enc := encodeFrame(t, typ, id, payload)
				// Read through a reader that returns one byte at a time, so
				// every boundary falls between reads.
				br := bufio.NewReaderSize(iotest.OneByteReader(bytes.NewReader(enc)), 16)
				f, err := readFrame(br, 1<<20)
				if err != nil {
					t.Fatalf("type %d id %d size %d: %v", typ, id, size, err)
				}
				if f.typ != typ || f.id != id || !bytes.Equal(f.payload, payload) {
					t.Fatalf("type %d id %d size %d: decoded type %d id %d, %d bytes", typ, id, size, f.typ, f.id, len(f.payload))
				}
				if size == 0 && f.payload != nil {
					t.Fatalf("empty payload decoded as %v, want nil", f.payload)
				}
				if _, err := readFrame(br, 1<<20); err != io.EOF {
					t.Fatalf("after the frame: %v, want io.EOF", err)
				}
			}
		}
	}
}

func TestReadFrameSequence(t *testing.T) {
	var stream []byte
	for i := range 100 {
		stream = append(stream, encodeFrame(t, frameReply, uint64(i), bytes.Repeat([]byte{'a'}, i))...)
	}
	br := bufio.NewReaderSize(bytes.NewReader(stream), 64)
	for i := range 100 {
		f, err := readFrame(br, 1<<10)
		if err != nil || f.id != uint64(i) || len(f.payload) != i {
			t.Fatalf("frame %d: %+v, %v", i, f, err)
		}
	}
	if _, err := readFrame(br, 1<<10); err != io.EOF {
		t.Fatalf("at the end: %v, want io.EOF", err)
	}
}

// TestReadFrameMustFail lists inputs the decoder must refuse.
func TestReadFrameMustFail(t *testing.T) {
	const max = 4 << 10
	longError := append(rpcAppendUvarint(nil, 2+maxErrorText+1), frameErrorReply, 1)
	longError = append(longError, make([]byte, maxErrorText+1)...)
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"nothing", nil, io.EOF},
		{"zero length", []byte{0x00}, ErrCorruptFrame},
		{"zero length then more", []byte{0x00, 0x01, 0x01}, ErrCorruptFrame},
		{"length over the cap", rpcAppendUvarint(nil, max+1), ErrFrameTooLarge},
		{"length of 2^64-1", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, ErrFrameTooLarge},
		{"length overflows 64 bits", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}, ErrCorruptFrame},
		{"length varint of 11 bytes", []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, ErrCorruptFrame},
		{"length not minimal", []byte{0x82, 0x00, 0x01, 0x01}, ErrCorruptFrame},
		{"length cut short", []byte{0x80}, io.ErrUnexpectedEOF},
		{"type missing", []byte{0x02}, io.ErrUnexpectedEOF},
		{"type 0", []byte{0x02, 0x00, 0x01}, ErrCorruptFrame},
		{"type 4", []byte{0x02, 0x04, 0x01}, ErrCorruptFrame},
		{"type 255", []byte{0x02, 0xff, 0x01}, ErrCorruptFrame},
		{"no room for the id", []byte{0x01, 0x01}, ErrCorruptFrame},
		{"id longer than the frame", []byte{0x02, 0x01, 0x80, 0x01}, ErrCorruptFrame},
		{"id not minimal", []byte{0x03, 0x01, 0x80, 0x00}, ErrCorruptFrame},
		{"id overflows 64 bits", append([]byte{0x0b, 0x02}, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02), ErrCorruptFrame},
		{"id cut short", []byte{0x03, 0x01, 0x80}, io.ErrUnexpectedEOF},
		{"payload cut short", []byte{0x05, 0x01, 0x01, 'a'}, io.ErrUnexpectedEOF},
		{"large announced length", append(rpcAppendUvarint(nil, 200<<10), frameRequest, 1, 'a'), ErrFrameTooLarge},
		{"error text over 1 KiB", longError, ErrCorruptFrame},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := readFrame(bufio.NewReader(bytes.NewReader(tt.in)), max)
			if !errors.Is(err, tt.want) {
				t.Fatalf("readFrame(%x) = %+v, %v; want %v", tt.in, f, err, tt.want)
			}
		})
	}
}

func TestReadFrameTruncatedAllocatesLittle(t *testing.T) {
	// A frame announcing 60 MiB of which 1 KiB arrives.
	in := append(rpcAppendUvarint(nil, 60<<20), frameRequest, 1)
	in = append(in, make([]byte, 1<<10)...)
	br := bufio.NewReader(bytes.NewReader(in))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := readFrame(br, 64<<20)
	runtime.ReadMemStats(&after)
	if err != io.ErrUnexpectedEOF {
		t.Fatalf("readFrame = %v, want io.ErrUnexpectedEOF", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Errorf("allocated %d bytes for 1 KiB of a truncated frame", got)
	}
}

func TestFrameBuffered(t *testing.T) {
	frameBytes := encodeFrame(t, frameReply, 5, []byte("hello"))
	tests := []struct {
		name string
		in   []byte
		want bool
	}{
		{"nothing", nil, false},
		{"whole frame", frameBytes, true},
		{"all but the last byte", frameBytes[:len(frameBytes)-1], false},
		{"length only", frameBytes[:1], false},
		{"incomplete length", []byte{0x80}, false},
		{"overflowing length", bytes.Repeat([]byte{0xff}, 11), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			br := bufio.NewReader(bytes.NewReader(tt.in))
			_, _ = br.Peek(len(tt.in)) // fill the buffer
			if got := frameBuffered(br); got != tt.want {
				t.Fatalf("frameBuffered = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestUvarintLen(t *testing.T) {
	var buf [binary.MaxVarintLen64]byte
	for _, x := range []uint64{0, 1, 127, 128, 255, 16383, 16384, 1<<56 - 1, 1 << 56, 1<<63 - 1, 1 << 63, math.MaxUint64} {
		if got, want := uvarintLen(x), binary.PutUvarint(buf[:], x); got != want {
			t.Errorf("uvarintLen(%d) = %d, want %d", x, got, want)
		}
	}
}

func TestErrorText(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"short", "boom", "boom"},
		{"exactly the cap", strings.Repeat("a", maxErrorText), strings.Repeat("a", maxErrorText)},
		{"ASCII over the cap", strings.Repeat("a", maxErrorText+10), strings.Repeat("a", maxErrorText)},
		{"cut inside a character", "a" + strings.Repeat("é", maxErrorText), "a" + strings.Repeat("é", (maxErrorText-1)/2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(errorText(errors.New(tt.in))); got != tt.want {
				t.Fatalf("errorText = %d bytes, want %d", len(got), len(tt.want))
			}
		})
	}
}

// frameChunkReader returns at most n bytes per Read, to split input across reads.
type frameChunkReader struct {
	r io.Reader
	n int
}

func (c *frameChunkReader) Read(p []byte) (int, error) {
	if len(p) > c.n {
		p = p[:c.n]
	}
	return c.r.Read(p)
}

// frameCountingReader counts the bytes read through it.
type frameCountingReader struct {
	r io.Reader
	n int
}

func (c *frameCountingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func FuzzReadFrame(f *testing.F) {
	f.Add(byte(7), encodeFrame(f, frameRequest, 1, []byte("hello")))
	f.Add(byte(1), append(encodeFrame(f, frameReply, 300, nil), encodeFrame(f, frameErrorReply, 2, []byte("no"))...))
	f.Add(byte(3), []byte{0x00})
	f.Add(byte(3), []byte{0x82, 0x00, 0x01, 0x01})
	f.Add(byte(3), []byte{0x02, 0x01, 0x80, 0x01})
	f.Add(byte(3), append(rpcAppendUvarint(nil, 1<<20), frameRequest, 1))
	f.Add(byte(200), append(rpcAppendUvarint(nil, 5000), frameReply, 1, 'x'))
	const max = 4 << 10
	f.Fuzz(func(t *testing.T, chunk byte, data []byte) {
		counter := &frameCountingReader{r: &frameChunkReader{r: bytes.NewReader(data), n: int(chunk%64) + 1}}
		br := bufio.NewReaderSize(counter, 16)
		start := 0
		for {
			fr, err := readFrame(br, max)
			if err != nil {
				if err != io.EOF && err != io.ErrUnexpectedEOF &&
					!errors.Is(err, ErrCorruptFrame) && !errors.Is(err, ErrFrameTooLarge) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if cap(fr.payload) > max {
				t.Fatalf("payload capacity %d over the cap %d", cap(fr.payload), max)
			}
			// Decoding is strict, so a frame re-encodes to the very bytes it
			// was read from.
			end := counter.n - br.Buffered()
			if enc := encodeFrame(t, fr.typ, fr.id, fr.payload); !bytes.Equal(enc, data[start:end]) {
				t.Fatalf("frame %+v re-encodes to %x, read from %x", fr, enc, data[start:end])
			}
			start = end
		}
	})
}
