package p2p

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// benchPayloads are the request sizes the benchmarks run with.
var benchPayloads = []struct {
	name string
	size int
}{{"16B", 16}, {"1KiB", 1 << 10}}

// benchParallelCallers is how many goroutines call at once in the parallel
// benchmarks.
const benchParallelCallers = 50

// runCallBenchmarks runs call, sequentially and from 50 goroutines, for each
// payload size.
func runCallBenchmarks(b *testing.B, call func(ctx context.Context, req []byte) ([]byte, error)) {
	for _, pl := range benchPayloads {
		req := bytes.Repeat([]byte{'x'}, pl.size)
		b.Run("sequential/"+pl.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(pl.size))
			ctx := context.Background()
			for b.Loop() {
				if _, err := call(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("parallel%d/%s", benchParallelCallers, pl.name), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(pl.size))
			procs := runtime.GOMAXPROCS(0)
			b.SetParallelism((benchParallelCallers + procs - 1) / procs)
			ctx := context.Background()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := call(ctx, req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkRPC measures calls over the pooled, long-lived streams.
func BenchmarkRPC(b *testing.B) {
	p := newRPCPair(b, RPCConfig{CallTimeout: time.Minute}, RPCConfig{}, rpcEcho)
	runCallBenchmarks(b, p.call)
}

// benchBaselineProtocol is a protocol that opens a new stream per request,
// the design RPC avoids; it is here to measure what stream reuse gains.
const benchBaselineProtocol protocol.ID = "/dboutique/rpc-bench-baseline/1.0.0"

// BenchmarkNewStreamPerCall is the baseline: the same frames, one stream per
// call.
func BenchmarkNewStreamPerCall(b *testing.B) {
	client, server := newTestHostRPC(b), newTestHostRPC(b)
	rpcIntroduce(client, server)
	server.SetStreamHandler(benchBaselineProtocol, func(s network.Stream) {
		_ = s.SetDeadline(time.Now().Add(10 * time.Second))
		f, err := readFrame(bufio.NewReader(s), 1<<20)
		if err != nil {
			_ = s.Reset()
			return
		}
		bw := bufio.NewWriter(s)
		if err := writeFrame(bw, frameReply, f.id, f.payload); err != nil || bw.Flush() != nil {
			_ = s.Reset()
			return
		}
		_ = s.Close()
	})
	runCallBenchmarks(b, func(ctx context.Context, req []byte) ([]byte, error) {
		return newStreamCall(ctx, client, server.ID(), req)
	})
}

func newStreamCall(ctx context.Context, h host.Host, to peer.ID, req []byte) ([]byte, error) {
	s, err := h.NewStream(ctx, to, benchBaselineProtocol)
	if err != nil {
		return nil, err
	}
	_ = s.SetDeadline(time.Now().Add(10 * time.Second))
	bw := bufio.NewWriter(s)
	if err := writeFrame(bw, frameRequest, 1, req); err != nil {
		_ = s.Reset()
		return nil, err
	}
	if err := bw.Flush(); err != nil {
		_ = s.Reset()
		return nil, err
	}
	_ = s.CloseWrite()
	f, err := readFrame(bufio.NewReader(s), 1<<20)
	if err != nil {
		_ = s.Reset()
		return nil, err
	}
	_ = s.Close()
	return f.payload, nil
}

func BenchmarkWriteFrame(b *testing.B) {
	for _, pl := range benchPayloads {
		b.Run(pl.name, func(b *testing.B) {
			payload := make([]byte, pl.size)
			bw := bufio.NewWriterSize(io.Discard, streamBufferSize)
			b.ReportAllocs()
			b.SetBytes(int64(pl.size))
			for i := uint64(0); b.Loop(); i++ {
				if err := writeFrame(bw, frameRequest, i, payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkReadFrame(b *testing.B) {
	for _, pl := range benchPayloads {
		b.Run(pl.name, func(b *testing.B) {
			var stream []byte
			for i := range 64 {
				stream = append(stream, encodeFrame(b, frameReply, uint64(i), make([]byte, pl.size))...)
			}
			rd := bytes.NewReader(stream)
			br := bufio.NewReaderSize(rd, streamBufferSize)
			b.ReportAllocs()
			b.SetBytes(int64(pl.size))
			for b.Loop() {
				if _, err := readFrame(br, 1<<20); err == io.EOF {
					rd.Reset(stream)
					br.Reset(rd)
				} else if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
