package textproto

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"testing"

	"github.com/dboutique/dboutique/node/store"
)

// BenchmarkServer drives a server through loopback TCP with 50 parallel
// clients, one connection each, sending GET or PUT requests one at a time
// or 16 to a pipeline. It reports requests per second over all clients;
// allocs/op counts the server's and the (allocation-free) clients'.
func BenchmarkServer(b *testing.B) {
	const clients = 50
	for _, cmd := range []string{"GET", "PUT"} {
		for _, depth := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/clients=%d/pipeline=%d", cmd, clients, depth), func(b *testing.B) {
				benchServer(b, cmd, clients, depth)
			})
		}
	}
}

func benchServer(b *testing.B, cmd string, clients, depth int) {
	st := store.NewStore()
	if err := st.Create("bench"); err != nil {
		b.Fatal(err)
	}
	const keys = 1000
	for i := range keys {
		if err := st.Put("bench", fmt.Sprintf("key%d", i), "value-0123456789"); err != nil {
			b.Fatal(err)
		}
	}
	s := startServer(b, Config{Executor: st})

	// Each client cycles through its own share of the keys; the request
	// lines are prepared before the clock starts.
	reqs := make([][]byte, keys)
	for i := range reqs {
		if cmd == "GET" {
			reqs[i] = fmt.Appendf(nil, "GET bench key%d\r\n", i)
		} else {
			reqs[i] = fmt.Appendf(nil, "PUT bench key%d value-0123456789\r\n", i)
		}
	}
	replyLines := 1
	if cmd == "GET" {
		replyLines = 2
	}
	b.SetParallelism((clients + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		nc, err := (&net.Dialer{}).DialContext(context.Background(), "tcp", s.addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer nc.Close()
		r := bufio.NewReaderSize(nc, 64<<10)
		w := bufio.NewWriterSize(nc, 64<<10)
		next := 0
		for {
			n := 0
			for n < depth && pb.Next() {
				w.Write(reqs[next%keys])
				next++
				n++
			}
			if n == 0 {
				return
			}
			if err := w.Flush(); err != nil {
				b.Error(err)
				return
			}
			for range n * replyLines {
				if _, err := r.ReadSlice('\n'); err != nil {
					b.Error(err)
					return
				}
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// BenchmarkHandle measures parsing and answering one buffered request,
// without the network.
func BenchmarkHandle(b *testing.B) {
	st := store.NewStore()
	st.Create("bench")
	st.Put("bench", "key", "value")
	s, err := NewServer(Config{Executor: st})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for _, line := range []string{"GET bench key", "PUT bench key value", "PING"} {
		b.Run(line, func(b *testing.B) {
			c := newConn(s, &pipeConn{})
			c.w.Reset(discard{})
			l := []byte(line)
			b.ReportAllocs()
			for b.Loop() {
				c.handle(l)
			}
		})
	}
}

// BenchmarkHandleRESP measures answering RESP requests already read, 16
// to a pipeline as a client such as redis-benchmark -P 16 sends them,
// without the network; one op is one request.
func BenchmarkHandleRESP(b *testing.B) {
	st := store.NewStore()
	s, err := NewServer(Config{Executor: st})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for _, req := range [][]string{
		{"GET", "key"}, {"SET", "key", "value"},
		{"HGET", "bench", "key"}, {"HSET", "bench", "key", "value"},
	} {
		args := make([][]byte, len(req))
		for i, a := range req {
			args[i] = []byte(a)
		}
		b.Run(req[0], func(b *testing.B) {
			c := newConn(s, &pipeConn{})
			c.w.Reset(discard{})
			c.rw = respWriter{w: c.w}
			c.handleRESP([][]byte{[]byte("SET"), []byte("key"), []byte("value")})
			c.handleRESP([][]byte{[]byte("HSET"), []byte("bench"), []byte("key"), []byte("value")})
			c.runRESP()
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				c.handleRESP(args)
				if n++; n == 16 {
					c.runRESP()
					n = 0
				}
			}
			c.runRESP()
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkParseLine measures splitting a request line into words.
func BenchmarkParseLine(b *testing.B) {
	line := []byte("PUT shopping eggs 12")
	var r request
	b.ReportAllocs()
	for b.Loop() {
		parseLine(line, &r)
		parseVerb(r.words[0])
	}
}

// BenchmarkFloor runs the same load against a trivial line server (read a
// line, answer "OK", flush when no input is buffered) as a same-machine,
// same-run reference for BenchmarkServer.
func BenchmarkFloor(b *testing.B) {
	for _, depth := range []int{1, 16} {
		b.Run(fmt.Sprintf("clients=50/pipeline=%d", depth), func(b *testing.B) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					nc, err := l.Accept()
					if err != nil {
						return
					}
					go func() {
						defer nc.Close()
						r, w := bufio.NewReader(nc), bufio.NewWriter(nc)
						for {
							if _, err := r.ReadSlice('\n'); err != nil {
								return
							}
							w.WriteString("OK\r\n")
							if r.Buffered() == 0 && w.Flush() != nil {
								return
							}
						}
					}()
				}
			}()
			b.SetParallelism((50 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				nc, err := net.Dial("tcp", l.Addr().String())
				if err != nil {
					b.Error(err)
					return
				}
				defer nc.Close()
				r, w := bufio.NewReader(nc), bufio.NewWriter(nc)
				for {
					n := 0
					for n < depth && pb.Next() {
						w.WriteString("GET bench key1\r\n")
						n++
					}
					if n == 0 {
						return
					}
					w.Flush()
					for range n {
						if _, err := r.ReadSlice('\n'); err != nil {
							b.Error(err)
							return
						}
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
			l.Close()
			<-done
		})
	}
}

// respRequests are the RESP requests of the benchmarks below, as
// redis-benchmark sends them, with their names.
var respRequests = []struct {
	name string
	args []string
}{
	{"HSET", []string{"HSET", "bench", "key:000000012345", "xxx"}},
	{"HGET", []string{"HGET", "bench", "key:000000012345"}},
	{"SET", []string{"SET", "key:000000012345", "xxx"}},
	{"GET", []string{"GET", "key:000000012345"}},
}

// respBurst encodes depth copies of the request args, back to back.
func respBurst(args []string, depth int) []byte {
	var b []byte
	for range depth {
		b = fmt.Appendf(b, "*%d\r\n", len(args))
		for _, a := range args {
			b = fmt.Appendf(b, "$%d\r\n%s\r\n", len(a), a)
		}
	}
	return b
}

// repeatReader returns the same bytes on every Read, as a client
// pipelining without end.
type repeatReader struct{ burst []byte }

func (r *repeatReader) Read(p []byte) (int, error) { return copy(p, r.burst), nil }

// BenchmarkRESPReader measures the RESP parser alone, reading requests
// from a buffer; one op is one request.
func BenchmarkRESPReader(b *testing.B) {
	for _, req := range respRequests {
		b.Run(req.name, func(b *testing.B) {
			burst := respBurst(req.args, 16)
			rr := respReader{r: bufio.NewReaderSize(&repeatReader{burst: burst}, len(burst)),
				maxBulk: DefaultMaxBulkBytes, maxArgs: DefaultMaxArgs, maxBytes: DefaultMaxRequestBytes}
			b.ReportAllocs()
			for b.Loop() {
				if err := rr.next(); err != nil || len(rr.args) != len(req.args) {
					b.Fatal(err, len(rr.args))
				}
			}
		})
	}
}

// burstConn is a client connection that sends the same burst of
// requests on each Read, bursts times, then ends; replies are dropped.
type burstConn struct {
	pipeConn
	burst  []byte
	bursts int
}

func (c *burstConn) Read(p []byte) (int, error) {
	if c.bursts == 0 {
		return 0, io.EOF
	}
	c.bursts--
	return copy(p, c.burst), nil
}

func (c *burstConn) Write(p []byte) (int, error) { return len(p), nil }
func (c *burstConn) Close() error                { return nil }

// benchBatchStore is a BatchExecutor over a Store.
type benchBatchStore struct{ *store.Store }

func (b benchBatchStore) ExecuteBatch(ctx context.Context, ops []store.Op, res []store.Result, errs []error) {
	for i, op := range ops {
		res[i], errs[i] = b.Execute(ctx, op)
	}
}

// BenchmarkServeRESP measures the whole connection path without the
// network: reading, parsing and dispatching requests that arrive 16 (or
// 1) at a time, running them on a store, and writing the replies, one
// read and one write per burst. One op is one request; an executor that
// batches (batchStore) runs each burst as one call, as a node does.
func BenchmarkServeRESP(b *testing.B) {
	for _, depth := range []int{1, 16} {
		for _, req := range respRequests {
			b.Run(fmt.Sprintf("%s/pipeline=%d", req.name, depth), func(b *testing.B) {
				s, err := NewServer(Config{Executor: benchBatchStore{store.NewStore()}})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				serve := func(burst []byte, bursts int) {
					c := newConn(s, &burstConn{burst: burst, bursts: bursts})
					if !s.trackConn(c) {
						b.Fatal("server closed")
					}
					s.numConns.Add(1)
					c.serve()
				}
				// The key exists, so that reads find it.
				serve(respBurst([]string{"HSET", "bench", "key:000000012345", "xxx"}, 1), 1)
				serve(respBurst([]string{"SET", "key:000000012345", "xxx"}, 1), 1)
				burst := respBurst(req.args, depth)
				b.ReportAllocs()
				b.ResetTimer()
				serve(burst, (b.N+depth-1)/depth)
			})
		}
	}
}
