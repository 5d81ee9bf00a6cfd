package node_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dboutique/dboutique/node"
)

// simNet is the network of the fault schedules (sim_test.go): calls are
// function calls on the caller's goroutine, run inside a testing/synctest
// bubble, so every delay and timeout is on the bubble's fake clock. It can
// cut links one way or both ways, delay messages and lose requests or
// replies.
//
// A cut link is silent: a call over it waits until its context ends, as a
// call over a network that drops packets does. A node that is down (no
// handler) refuses at once, as a closed port does.
type simNet struct {
	mu       sync.Mutex               // guards the fields below
	handlers map[string]simHandler    // peer ID -> the node's handler
	live     map[string]*simTransport // peer ID -> the transport of the node running now
	cut      map[[2]string]bool       // [from, to] -> calls from `from` to `to` are lost
	maxDelay time.Duration            // each way, drawn uniformly
	loss     float64                  // probability that a request, or a reply, is lost
	rng      *rand.Rand               // draws delays and losses
	calls    map[string]int           // message type -> calls, for the report
}

type simHandler func(ctx context.Context, from string, req []byte) ([]byte, error)

var errSimRefused = errors.New("simnet: connection refused")
var errSimLost = errors.New("simnet: message lost")

func newSimNet(seed uint64) *simNet {
	return &simNet{
		handlers: make(map[string]simHandler),
		live:     make(map[string]*simTransport),
		cut:      make(map[[2]string]bool),
		rng:      rand.New(rand.NewPCG(seed, 0x5eed)),
		calls:    make(map[string]int),
	}
}

// transport returns the transport of the node with peer ID id.
func (s *simNet) transport(id string) *simTransport { return &simTransport{net: s, id: id} }

// down takes id off the network: calls to it are refused, its calls
// reach nobody, and the answers it was working on are never sent.
func (s *simNet) down(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.handlers, id)
	delete(s.live, id)
}

// setCut cuts (or restores) the link from `from` to `to`: from's calls to
// `to` are lost; to's calls to from are not.
func (s *simNet) setCut(from, to string, cut bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cut {
		s.cut[[2]string{from, to}] = true
	} else {
		delete(s.cut, [2]string{from, to})
	}
}

// healAll restores every link.
func (s *simNet) healAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.cut)
}

// setQuality sets the delay each way and the loss rate.
func (s *simNet) setQuality(maxDelay time.Duration, loss float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxDelay, s.loss = maxDelay, loss
}

// draw returns a delay, and whether the message is lost.
func (s *simNet) draw() (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var d time.Duration
	if s.maxDelay > 0 {
		d = time.Duration(s.rng.Int64N(int64(s.maxDelay)))
	}
	return d, s.loss > 0 && s.rng.Float64() < s.loss
}

// callsReport lists the calls by message type.
func (s *simNet) callsReport() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(s.calls)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, s.calls[k]))
	}
	return strings.Join(parts, " ")
}

// simTransport is one node's node.Transport on a simNet.
type simTransport struct {
	net *simNet
	id  string
}

func (t *simTransport) ID() string      { return t.id }
func (t *simTransport) Addrs() []string { return []string{"/sim/" + t.id} }
func (t *simTransport) Serve(h func(ctx context.Context, from string, req []byte) ([]byte, error)) {
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	t.net.handlers[t.id] = h
	t.net.live[t.id] = t
}
func (t *simTransport) AddAddrs(string, []string) {}

func (t *simTransport) Connect(ctx context.Context, addr string) (string, error) {
	id, ok := strings.CutPrefix(addr, "/sim/")
	if !ok {
		return "", fmt.Errorf("simnet: bad address %q", addr)
	}
	return id, nil
}

// Call delivers req to `to` after a delay, unless the link is cut or the
// request is lost, and brings the reply back the same way.
func (t *simTransport) Call(ctx context.Context, to string, req []byte) ([]byte, error) {
	s := t.net
	s.mu.Lock()
	h, callee := s.handlers[to], s.live[to]
	crashed := s.live[t.id] != t // a crashed node's leftovers reach nobody, even once it restarted
	cut := s.cut[[2]string{t.id, to}]
	if len(req) > 0 {
		s.calls[node.MessageName(req[0])]++
	}
	s.mu.Unlock()
	if h == nil || crashed {
		return nil, errSimRefused
	}
	wait := func(d time.Duration) error {
		if d <= 0 {
			return ctx.Err()
		}
		timer := time.NewTimer(d)
		defer timer.Stop()
		select {
		case <-timer.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if cut {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	d, lost := s.draw()
	if err := wait(d); err != nil {
		return nil, err
	}
	if lost {
		<-ctx.Done()
		return nil, errors.Join(errSimLost, ctx.Err())
	}
	reply, err := h(ctx, t.id, slices.Clone(req))
	s.mu.Lock()
	gone := s.live[to] != callee
	s.mu.Unlock()
	if gone {
		// The callee crashed while it worked on the request: it never
		// answered (what it did before may stay).
		<-ctx.Done()
		return nil, errors.Join(errSimLost, ctx.Err())
	}
	d, lost = s.draw()
	if werr := wait(d); werr != nil {
		return nil, werr
	}
	if lost {
		// The request took effect; only its answer is gone.
		<-ctx.Done()
		return nil, errors.Join(errSimLost, ctx.Err())
	}
	return reply, err
}
