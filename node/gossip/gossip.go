package gossip

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"
)

// Sentinel errors.
var (
	// ErrClosed: the engine was closed.
	ErrClosed = errors.New("gossip: closed")
	// ErrConfig: the configuration is invalid.
	ErrConfig = errors.New("gossip: invalid config")
	// ErrTooLarge: a packet or stream from a peer is over its cap.
	ErrTooLarge = errors.New("gossip: message too large")
)

// Caps on what a peer may send.
const (
	// MaxPacket caps a packet (a probe, an ack, gossip).
	MaxPacket = 64 << 10
	// MaxStream caps each direction of a stream (a push/pull carries the
	// whole member list: about 300 bytes a member).
	MaxStream = 16 << 20
	// MaxMeta caps a member's metadata (memberlist's own limit).
	MaxMeta = memberlist.MetaMaxSize
	// MaxState caps the node's own state in a push/pull (Config.State),
	// each way.
	MaxState = 64 << 10
)

// Placeholder is the address every member advertises to memberlist: the
// transport finds members by peer ID, never by this address.
const Placeholder = "127.0.0.1:1"

// Caller sends a request to a peer and returns its reply; the node's
// transport does, with the request's first byte naming its handler.
type Caller interface {
	Call(ctx context.Context, to string, req []byte) ([]byte, error)
}

// Events receives what the engine learns, one call at a time and in order,
// from a goroutine of the engine's own. Its methods may call the engine.
type Events interface {
	// Alive: member id is alive (new, back from the dead, or its metadata
	// changed), with meta.
	Alive(id string, meta []byte)
	// Gone: member id died or left. (memberlist does not say which: a
	// node that leaves says so itself, before it tells memberlist.)
	Gone(id string)
}

// Config configures an Engine. Zero durations take defaults.
type Config struct {
	// ID is this node's peer ID, its name in memberlist. Required.
	ID string
	// Caller carries packets and streams. Required.
	Caller Caller
	// PacketType and StreamType are the first bytes of the requests that
	// carry a packet and a stream; the receiver hands them to
	// HandlePacket and HandleStream. They must differ.
	PacketType, StreamType byte
	// Events receives joins, updates and deaths. Required.
	Events Events
	// Meta returns this node's metadata (at most MaxMeta bytes); it is
	// read at Start and at every UpdateMeta. Required.
	Meta func() []byte
	// Admit, when set, is asked about every member memberlist hears of
	// (under memberlist's lock: it must not call the engine); an error
	// keeps the member out, as if never heard of.
	Admit func(id string, meta []byte) error
	// State, when set, returns what this node tells the member it
	// exchanges member lists with (a push/pull: when either joins
	// through the other, and now and then), at most MaxState bytes; the
	// other side's MergeState receives it, whoever it is (it checks what
	// it takes). Both are called outside memberlist's lock, from a
	// goroutine of memberlist's; they may not call the engine.
	State      func() []byte
	MergeState func(state []byte)
	// ProbeInterval is how often the engine probes one member (a random
	// one, round robin). Default 500 ms.
	ProbeInterval time.Duration
	// DeadAfter is about how long a silent member takes to be declared
	// dead in a small cluster; the suspicion it takes grows slowly
	// (logarithmically) with the cluster. Default 3 s; at least twice
	// ProbeInterval.
	DeadAfter time.Duration
	// Log receives memberlist's log lines; nil discards them.
	Log *zap.Logger
}

func (c *Config) validate() error {
	c.ProbeInterval = cmp.Or(c.ProbeInterval, 500*time.Millisecond)
	c.DeadAfter = cmp.Or(c.DeadAfter, 3*time.Second)
	if c.Log == nil {
		c.Log = zap.NewNop()
	}
	switch {
	case c.ID == "":
		return fmt.Errorf("%w: no ID", ErrConfig)
	case c.Caller == nil || c.Events == nil || c.Meta == nil:
		return fmt.Errorf("%w: Caller, Events and Meta are required", ErrConfig)
	case c.PacketType == c.StreamType:
		return fmt.Errorf("%w: PacketType and StreamType are both %d", ErrConfig, c.PacketType)
	case c.ProbeInterval < time.Millisecond || c.DeadAfter < 2*c.ProbeInterval:
		return fmt.Errorf("%w: DeadAfter (%v) must be at least twice ProbeInterval (%v), which is at least 1ms", ErrConfig, c.DeadAfter, c.ProbeInterval)
	}
	return nil
}

// memberlist maps the two knobs onto memberlist's configuration.
//
// A member that stops answering is found by the first member to probe it
// after its death (within ProbeInterval × members probed before it, on
// average half the members... but a small cluster's members each probe it
// within a few intervals), suspected after ProbeTimeout and the indirect
// probes, and declared dead when the suspicion times out: after
// SuspicionMult × max(1, log10 N) × ProbeInterval once enough other members
// confirm it (Lifeguard), longer without confirmations. SuspicionMult is
// chosen so that in a cluster under ten members the whole takes about
// DeadAfter, as the probe loop before it did.
func (c *Config) memberlist() *memberlist.Config {
	mc := memberlist.DefaultLANConfig()
	mc.Name = c.ID
	mc.BindAddr, mc.BindPort = "127.0.0.1", 1
	mc.AdvertiseAddr, mc.AdvertisePort = "127.0.0.1", 1
	mc.ProtocolVersion = memberlist.ProtocolVersionMax
	mc.ProbeInterval = c.ProbeInterval
	mc.ProbeTimeout = max(c.ProbeInterval*3/5, time.Millisecond)
	mc.SuspicionMult = max(int(math.Ceil(float64(c.DeadAfter-c.ProbeInterval)/float64(c.ProbeInterval))), 2)
	mc.SuspicionMaxTimeoutMult = 4
	mc.GossipInterval = max(c.ProbeInterval/2, time.Millisecond)
	mc.GossipToTheDeadTime = max(10*c.DeadAfter, 30*time.Second)
	mc.PushPullInterval = max(60*c.ProbeInterval, time.Second)
	mc.TCPTimeout = c.memberlistTCPTimeout()
	mc.DisableTcpPings = true // a stream is a call like a packet: it would tell nothing more
	mc.EnableCompression = false
	mc.UDPBufferSize = 16 << 10
	mc.HandoffQueueDepth = 4096
	mc.DeadNodeReclaimTime = time.Nanosecond
	mc.RequireNodeNames = true
	mc.DNSConfigPath = ""
	return mc
}

// Engine is one node's membership engine.
type Engine struct {
	cfg Config
	tr  *transport
	ev  *eventQueue

	mu     sync.Mutex // guards ml, closed
	ml     *memberlist.Memberlist
	closed bool

	smu      sync.Mutex      // guards suspects, gone
	suspects map[string]bool // peer IDs this node suspects (Suspects)
	gone     map[string]bool // peer IDs reported gone since last alive

	// Counters (stats).
	probes, indirect, suspicions, refutations atomic.Uint64
	sent, received, dropped                   atomic.Uint64
}

// New validates cfg and returns an engine; it starts nothing.
func New(cfg Config) (*Engine, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	e := &Engine{cfg: cfg, suspects: make(map[string]bool), gone: make(map[string]bool)}
	e.tr = newTransport(e)
	e.ev = newEventQueue(cfg.Events, e.seen)
	return e, nil
}

// Start starts memberlist, alone in its cluster until Join.
func (e *Engine) Start() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	if e.ml != nil {
		return nil
	}
	mc := e.cfg.memberlist()
	mc.Transport = e.tr
	mc.Delegate = delegate{e}
	mc.Events = e.ev
	mc.Ping = pingDelegate{e}
	if e.cfg.Admit != nil {
		mc.Alive = aliveDelegate{e.cfg.Admit}
	}
	mc.LogOutput = nil
	mc.Logger = log.New(&logWriter{e: e}, "", 0)
	e.ev.start()
	ml, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("gossip: %w", err)
	}
	e.ml = ml
	return nil
}

func (e *Engine) list() *memberlist.Memberlist {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	return e.ml
}

// Join contacts the members with the given peer IDs (their addresses must
// be known to the Caller) and merges their member lists into this one. It
// returns how many answered.
func (e *Engine) Join(ids ...string) (int, error) {
	ml := e.list()
	if ml == nil {
		return 0, ErrClosed
	}
	addrs := make([]string, 0, len(ids))
	for _, id := range ids {
		if id != "" && id != e.cfg.ID {
			addrs = append(addrs, id+"/"+Placeholder)
		}
	}
	if len(addrs) == 0 {
		return 0, nil
	}
	return ml.Join(addrs)
}

// UpdateMeta tells the others this node's new metadata (Config.Meta).
func (e *Engine) UpdateMeta(timeout time.Duration) error {
	ml := e.list()
	if ml == nil {
		return ErrClosed
	}
	return ml.UpdateNode(timeout)
}

// Leave tells the others this node is leaving for good, waiting up to
// timeout for the news to go out.
func (e *Engine) Leave(timeout time.Duration) error {
	ml := e.list()
	if ml == nil {
		return ErrClosed
	}
	return ml.Leave(timeout)
}

// Close stops the engine. It is idempotent.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	ml := e.ml
	e.mu.Unlock()
	var err error
	if ml != nil {
		health := ml.GetHealthScore()
		err = ml.Shutdown()
		e.tr.cancel() // calls under way end now
		// memberlist does not wait for its goroutines. The last to end
		// is a probe waiting for its ack, which times out one probe
		// interval (scaled by the node's awareness score) after it was
		// sent: wait that long, so that nothing of the engine runs once
		// Close has returned.
		time.Sleep(time.Duration(health+1)*e.cfg.ProbeInterval + e.cfg.ProbeInterval/4)
	}
	e.tr.close()
	e.ev.stop()
	return err
}

// Suspects returns the peer IDs of the members this node suspects now: it
// began to when its probe of one went unanswered (directly and
// indirectly), and stops when the member answers a probe, or the engine
// reports it alive again or gone. (memberlist keeps members' states to
// itself; this is what it tells.)
func (e *Engine) Suspects() map[string]bool {
	e.smu.Lock()
	defer e.smu.Unlock()
	s := make(map[string]bool, len(e.suspects))
	for id := range e.suspects {
		s[id] = true
	}
	return s
}

// maxGoneRemembered bounds Engine.gone.
const maxGoneRemembered = 4096

// seen clears a suspicion on news of the member: alive, or gone.
func (e *Engine) seen(id string, gone bool) {
	e.smu.Lock()
	defer e.smu.Unlock()
	delete(e.suspects, id)
	if gone {
		if len(e.gone) >= maxGoneRemembered {
			clear(e.gone) // members that never came back; at worst a stale suspicion
		}
		e.gone[id] = true
	} else {
		delete(e.gone, id)
	}
}

func (e *Engine) suspect(id string, on bool) {
	e.smu.Lock()
	defer e.smu.Unlock()
	if on && !e.gone[id] { // a probe that ended after the death
		e.suspects[id] = true
	} else {
		delete(e.suspects, id)
	}
}

// Health returns memberlist's awareness score: 0 is healthy; higher means
// this node has been slow to answer (it then probes less often).
func (e *Engine) Health() int {
	ml := e.list()
	if ml == nil {
		return 0
	}
	return ml.GetHealthScore()
}

// Stats counts the engine's work since it started.
type Stats struct {
	Probes         uint64 // direct probes sent
	ProbesIndirect uint64 // indirect probe requests sent
	Suspicions     uint64 // times this node began to suspect a member
	Refutations    uint64 // times this node refuted a suspicion, a death, or a stale alive of itself
	Sent           uint64 // packets and streams sent
	Received       uint64 // packets and streams received
	Dropped        uint64 // packets dropped: queue full, too large, or sent after Close
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	return Stats{
		Probes:         e.probes.Load(),
		ProbesIndirect: e.indirect.Load(),
		Suspicions:     e.suspicions.Load(),
		Refutations:    e.refutations.Load(),
		Sent:           e.sent.Load(),
		Received:       e.received.Load(),
		Dropped:        e.dropped.Load(),
	}
}

// peerAddr is a member's address for memberlist: its peer ID.
type peerAddr string

func (a peerAddr) Network() string { return "libp2p" }
func (a peerAddr) String() string  { return string(a) }

var _ net.Addr = peerAddr("")

// errWriteAfterRead: memberlist wrote to a stream after reading its reply.
var errWriteAfterRead = errors.New("gossip: a stream is a request then a reply")

var _ io.ReadWriteCloser = (*callConn)(nil)
