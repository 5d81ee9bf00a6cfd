package textproto

import (
	"bufio"
	"context"
	"fmt"
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
