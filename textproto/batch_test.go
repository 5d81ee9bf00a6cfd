package textproto

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/textproto/prototest"
)

// batchStore is a BatchExecutor over a Store that records the size of
// every batch it runs.
type batchStore struct {
	*store.Store
	mu      sync.Mutex
	batches []int
}

func (b *batchStore) ExecuteBatch(ctx context.Context, ops []store.Op, res []store.Result, errs []error) {
	b.mu.Lock()
	b.batches = append(b.batches, len(ops))
	b.mu.Unlock()
	for i, op := range ops {
		res[i], errs[i] = b.Execute(ctx, op)
	}
}

func (b *batchStore) sizes() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.batches)
}

// TestPipelinedRequestsRunAsBatches: requests that arrive together run as
// one batch; any other request splits the batch, and replies keep their
// order.
func TestPipelinedRequestsRunAsBatches(t *testing.T) {
	bs := &batchStore{Store: store.NewStore()}
	s := startServer(t, Config{Executor: bs})
	c := prototest.Dial(t, s.addr)
	var req, want strings.Builder
	req.WriteString("CREATE b\r\n")
	want.WriteString("OK\r\n")
	for i := range 10 {
		req.WriteString("PUT b k" + string(rune('0'+i)) + " v\r\n")
		want.WriteString("OK\r\n")
	}
	req.WriteString("PING\r\nGET b k3\r\nGET b nope\r\nGET zz k\r\nKEYS b\r\nPUT b\r\n")
	want.WriteString("PONG\r\nv\r\nOK\r\n\r\nOK\r\nNOT FOUND\r\n")
	for i := range 10 {
		want.WriteString("k" + string(rune('0'+i)) + "\r\n")
	}
	want.WriteString("OK\r\nCOMMAND NOT IMPLEMENTED\r\n")
	// One write, so the server finds every request buffered.
	c.Send(req.String())
	c.Expect(want.String())
	// Normally [11 4]: the requests before PING, then those after it. TCP
	// may deliver the write in parts, which splits batches further, but
	// no batch may hold requests from both sides of PING.
	got := bs.sizes()
	sum, before := 0, 0
	for _, n := range got {
		sum += n
		if before < 11 {
			before += n
		}
	}
	if sum != 15 || before != 11 || !slices.ContainsFunc(got, func(n int) bool { return n > 1 }) {
		t.Errorf("batches = %v, want [11 4] or a split of it", got)
	}
}
