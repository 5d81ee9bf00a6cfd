package testcluster_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dboutique/dboutique/testcluster"
)

// BenchmarkClientPort measures GET and PUT (and RESP's HGET and HSET)
// through a node's client port,
// when the node holds the bucket (local) and when it forwards the request
// to the node that does (forwarded): 50 clients, each either waiting for
// every reply (p1) or keeping 16 requests in flight (p16). It reports
// requests per second and the latency of a round trip (one request, or one
// batch of 16) at the 50th and 99th percentiles.
func BenchmarkClientPort(b *testing.B) {
	const clients = 50
	c := testcluster.New(b, 2, testcluster.WithRanges("a-m=left,n-z=right"))
	ctx := context.Background()
	if err := c.Client(0).Create(ctx, "apple"); err != nil {
		b.Fatal(err)
	}
	if err := c.Client(0).Put(ctx, "apple", "k", "value-of-k"); err != nil {
		b.Fatal(err)
	}
	for _, where := range []struct {
		name string
		node int
	}{{"local", 0}, {"forwarded", 1}} {
		for _, op := range []struct {
			name, req string
			lines     int
		}{
			{"GET", "GET apple k\r\n", 2},
			{"PUT", "PUT apple k value-of-k\r\n", 1},
			{"HGET", "*3\r\n$4\r\nHGET\r\n$5\r\napple\r\n$1\r\nk\r\n", 2},
			{"HSET", "*4\r\n$4\r\nHSET\r\n$5\r\napple\r\n$1\r\nk\r\n$10\r\nvalue-of-k\r\n", 1},
		} {
			for _, depth := range []int{1, 16} {
				b.Run(fmt.Sprintf("%s/%s/p%d", where.name, op.name, depth), func(b *testing.B) {
					runLoad(b, c.Addr(where.node), clients, depth, op.req, op.lines)
				})
			}
		}
	}
}

// runLoad sends b.N requests from `clients` connections, depth at a time.
func runLoad(b *testing.B, addr string, clients, depth int, req string, lines int) {
	conns := make([]net.Conn, clients)
	for i := range conns {
		nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		defer nc.Close()
		conns[i] = nc
	}
	batch := []byte(strings.Repeat(req, depth))
	rounds := (b.N + clients*depth - 1) / (clients * depth)
	lat := make([][]time.Duration, clients)
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i, nc := range conns {
		wg.Go(func() {
			r := bufio.NewReader(nc)
			l := make([]time.Duration, 0, rounds)
			_ = nc.SetDeadline(time.Now().Add(5 * time.Minute))
			for range rounds {
				t0 := time.Now()
				if _, err := nc.Write(batch); err != nil {
					errs <- err
					return
				}
				for range depth * lines {
					line, err := r.ReadSlice('\n')
					if err != nil {
						errs <- err
						return
					}
					if strings.HasPrefix(string(line), "ERROR") || string(line) == "NOT FOUND\r\n" || line[0] == '-' {
						errs <- fmt.Errorf("reply %q", line)
						return
					}
				}
				l = append(l, time.Since(t0))
			}
			lat[i] = l
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	total := rounds * clients * depth
	b.ReportMetric(float64(total)/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
}
