package node

import (
	"cmp"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"go.uber.org/zap"

	"github.com/dboutique/dboutique/node/gossip"
	"github.com/dboutique/dboutique/node/memlimit"
	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/ring"
)

// Transport is what a Node needs from the network: its own identity, a
// request/response call to a peer, and a way to learn where peers are. The
// p2p package implements it over libp2p; tests may implement it in memory.
// Peer IDs and addresses are strings (libp2p peer IDs and multiaddrs).
type Transport interface {
	// ID returns this node's peer ID.
	ID() string
	// Addrs returns the addresses this node listens on for peers.
	Addrs() []string
	// Serve starts answering peers' requests with h. It is called once.
	Serve(h func(ctx context.Context, from string, req []byte) ([]byte, error))
	// Call sends req to peer `to` and returns its reply.
	Call(ctx context.Context, to string, req []byte) ([]byte, error)
	// AddAddrs records where peer id listens, so that Call can reach it.
	AddAddrs(id string, addrs []string)
	// Connect connects to the full address addr (one that names the peer)
	// and returns the peer's ID.
	Connect(ctx context.Context, addr string) (string, error)
}

// Defaults of Config.
const (
	DefaultCluster        = "dboutique"
	DefaultProbeInterval  = 500 * time.Millisecond
	DefaultDeadAfter      = 3 * time.Second
	DefaultForwardTimeout = 3 * time.Second
	DefaultMaxHops        = 2
	DefaultReplicas       = 2
	DefaultSyncInterval   = 30 * time.Second
	DefaultTombstoneGrace = 10 * time.Minute
	defaultForgetAfter    = 10 * time.Minute
	maxJoinBackoff        = 10 * time.Second
	DefaultMaxClockSkew   = 10 * time.Second
	DefaultRejoinTimeout  = 10 * time.Second
	leaveTimeout          = time.Second
	// leftSourceWindow is how long after it was last heard from a member
	// that left is still asked for its copies (it hands them off before
	// it exits, probing the others all the while).
	leftSourceWindow = time.Minute
)

// MaxReplicas bounds Config.Replicas: how many nodes may hold one bucket.
const MaxReplicas = 16

// Config configures a Node. Zero values take the defaults above.
type Config struct {
	// Name is the node's name, shown by NODES and OWNER and used by the
	// letter-range table. Required.
	Name string
	// Cluster is the cluster's name; peers of another cluster are refused.
	Cluster string
	// Transport reaches the other nodes. Required.
	Transport Transport
	// Store holds this node's buckets; nil makes an empty one.
	Store *store.Store
	// Placement puts buckets on members; nil is a consistent-hash ring
	// with default settings. With a *ring.Ranges table the ring works on
	// node names; otherwise on peer IDs, so that a node keeps its place
	// across restarts as long as it keeps its identity.
	Placement ring.Placement
	// Join lists full addresses (with the peer ID) of nodes to join
	// through; the node retries them until it has reached a member.
	Join []string
	// ProbeInterval is how often each member is probed.
	ProbeInterval time.Duration
	// DeadAfter is how long a member may stay silent before it leaves the
	// ring. It must be at least twice ProbeInterval.
	DeadAfter time.Duration
	// ForwardTimeout bounds a request forwarded to its bucket's owner.
	ForwardTimeout time.Duration
	// MaxHops is how many times a request may be forwarded in all.
	MaxHops int
	// Replicas is how many nodes hold each bucket (its first ring owners);
	// an acknowledged write survives the loss of Replicas-1 of them.
	Replicas int
	// MinMembers, when positive, makes the node refuse reads and writes
	// with ErrUnavailable unless it sees at least that many members
	// (itself included) and MinMembers-1 of them vouch for it (lease.go),
	// so that the minority side of a partition answers nothing. It must
	// be a majority of the members that may come back; the node warns
	// when it is not.
	MinMembers int
	// WriteTimeout bounds the replication of a write: an owner that does
	// not answer is retried until it answers or is declared dead. The
	// default is DeadAfter plus ForwardTimeout.
	WriteTimeout time.Duration
	// SyncInterval is how often copies are compared with the other
	// owners' when nothing else triggers it (anti-entropy); every change
	// of membership triggers it at once.
	SyncInterval time.Duration
	// TombstoneGrace is how long deleted keys and dropped buckets are
	// remembered, so that an older copy merged later cannot bring them
	// back. A copy cut off for longer than this (a partition) may.
	TombstoneGrace time.Duration
	// MaxClockSkew is how far a member's wall clock may be from this
	// node's: a member further off is not let in, and a version further
	// ahead is refused. Deleted keys are remembered for at least
	// TombstoneGrace minus MaxClockSkew, so it must be well below the
	// grace (at most a quarter of it).
	MaxClockSkew time.Duration
	// Now reads the wall clock, which versions writes (when Store is nil,
	// the node's store versions with it too) and is compared with the
	// members' clocks; nil is time.Now. Timeouts, leases and failure
	// detection use the monotonic clock, never this one.
	Now func() time.Time
	// PeerBook, when not nil, keeps the members this node knew across
	// restarts: a node that knew members answers ErrUnavailable until it
	// reaches one of them again, or until RejoinTimeout when it has no
	// Join address (join.go).
	PeerBook PeerBook
	// RejoinTimeout bounds how long a node without Join addresses waits for
	// a member of its PeerBook before it serves on its own.
	RejoinTimeout time.Duration
	// MaxMemory is the node's memory limit in bytes (--maxmemory); 0 means
	// none. How memory is counted and when eviction starts: package
	// node/memlimit.
	MaxMemory int64
	// MaxMemoryPolicy is what the node does at MaxMemory
	// (--maxmemory-policy); the zero value is memlimit.NoEviction.
	MaxMemoryPolicy memlimit.Policy
	// MaxMemoryReserve is the part of MaxMemory that the node's meter does
	// not see and eviction cannot free (memlimit.Config.Reserve): the
	// binary passes the resident pages of its own executable; 0 in tests.
	MaxMemoryReserve int64
	// MemoryMeter makes the meter of the node's memory from the store's
	// footprint; nil is memlimit.StoreMeter, which counts the store only
	// and suits nodes that share their process. The binary, alone in its
	// process, passes memlimit.ProcessMeter.
	MemoryMeter func(footprint func() memlimit.Footprint) memlimit.Meter
	// Logger receives membership changes and errors; nil logs nothing.
	Logger *zap.Logger
}

func (c *Config) validate() error {
	if err := ring.ValidName(c.Name); err != nil {
		return fmt.Errorf("%w: node name: %w", ErrInvalidConfig, err)
	}
	if c.Transport == nil {
		return fmt.Errorf("%w: a node needs a transport", ErrInvalidConfig)
	}
	c.Cluster = cmp.Or(c.Cluster, DefaultCluster)
	if err := ring.ValidName(c.Cluster); err != nil {
		return fmt.Errorf("%w: cluster name: %w", ErrInvalidConfig, err)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Store == nil {
		c.Store = store.NewStoreWithClock(store.NewClock(c.Now))
	}
	if c.Placement == nil {
		p, err := ring.NewConsistent(ring.ConsistentConfig{})
		if err != nil {
			return err
		}
		c.Placement = p
	}
	c.ProbeInterval = cmp.Or(c.ProbeInterval, DefaultProbeInterval)
	c.DeadAfter = cmp.Or(c.DeadAfter, DefaultDeadAfter)
	c.ForwardTimeout = cmp.Or(c.ForwardTimeout, DefaultForwardTimeout)
	c.MaxHops = cmp.Or(c.MaxHops, DefaultMaxHops)
	c.Replicas = cmp.Or(c.Replicas, DefaultReplicas)
	c.WriteTimeout = cmp.Or(c.WriteTimeout, c.DeadAfter+c.ForwardTimeout)
	c.SyncInterval = cmp.Or(c.SyncInterval, DefaultSyncInterval)
	c.TombstoneGrace = cmp.Or(c.TombstoneGrace, DefaultTombstoneGrace)
	c.MaxClockSkew = cmp.Or(c.MaxClockSkew, min(DefaultMaxClockSkew, c.TombstoneGrace/4))
	c.RejoinTimeout = cmp.Or(c.RejoinTimeout, DefaultRejoinTimeout)
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	switch {
	case c.ProbeInterval < 0:
		return fmt.Errorf("%w: probe interval %v", ErrInvalidConfig, c.ProbeInterval)
	case c.DeadAfter < 2*c.ProbeInterval:
		return fmt.Errorf("%w: dead-after %v must be at least twice the probe interval %v", ErrInvalidConfig, c.DeadAfter, c.ProbeInterval)
	case c.ForwardTimeout < 0:
		return fmt.Errorf("%w: forward timeout %v", ErrInvalidConfig, c.ForwardTimeout)
	case c.MaxHops < 1 || c.MaxHops > 16:
		return fmt.Errorf("%w: max hops %d not in [1, 16]", ErrInvalidConfig, c.MaxHops)
	case c.Replicas < 1 || c.Replicas > MaxReplicas:
		return fmt.Errorf("%w: replicas %d not in [1, %d]", ErrInvalidConfig, c.Replicas, MaxReplicas)
	case c.MinMembers < 0:
		return fmt.Errorf("%w: min members %d", ErrInvalidConfig, c.MinMembers)
	case c.WriteTimeout < 0:
		return fmt.Errorf("%w: write timeout %v", ErrInvalidConfig, c.WriteTimeout)
	case c.SyncInterval < 0:
		return fmt.Errorf("%w: sync interval %v", ErrInvalidConfig, c.SyncInterval)
	case c.TombstoneGrace < 0:
		return fmt.Errorf("%w: tombstone grace %v", ErrInvalidConfig, c.TombstoneGrace)
	case c.MaxClockSkew < 0 || c.MaxClockSkew > c.TombstoneGrace/4:
		return fmt.Errorf("%w: max clock skew %v must be positive and at most a quarter of the tombstone grace %v", ErrInvalidConfig, c.MaxClockSkew, c.TombstoneGrace)
	case c.RejoinTimeout < 0:
		return fmt.Errorf("%w: rejoin timeout %v", ErrInvalidConfig, c.RejoinTimeout)
	case c.MaxMemory < 0:
		return fmt.Errorf("%w: max memory %d", ErrInvalidConfig, c.MaxMemory)
	case c.MaxMemoryReserve < 0 || c.MaxMemoryReserve > 0 && c.MaxMemoryReserve >= c.MaxMemory:
		return fmt.Errorf("%w: max memory reserve %d must be less than max memory %d", ErrInvalidConfig, c.MaxMemoryReserve, c.MaxMemory)
	case !c.MaxMemoryPolicy.Valid():
		return fmt.Errorf("%w: max memory policy %v", ErrInvalidConfig, c.MaxMemoryPolicy)
	}
	return nil
}

// Node is one member of a D-Boutique cluster: it holds the buckets the ring
// gives it, forwards requests for other buckets to their owners, and keeps
// the membership (which nodes exist and which are alive) by probing every
// member and exchanging member lists with it.
//
// New returns a Node that does nothing until Start; Close stops it.
type Node struct {
	cfg    Config
	self   Member
	byName bool
	// layout is a fingerprint of how the node places buckets (its
	// Placement): members must agree on it, or two of them could each
	// take itself for a bucket's primary in views with the same epoch.
	layout uint64
	log    *zap.Logger

	mem      *memlimit.Governor // the memory limit, or nil (evict.go)
	touches  bool               // the policy ranks by access: reads and writes Touch
	evictNow chan struct{}      // wakes the evictor

	ms     membership     // the member list and the view built from it
	gossip *gossip.Engine // finds members and tells who is alive (gossip.go)
	view   atomic.Pointer[view]
	// settledView is the last view in which this node held its share of
	// every bucket: where the copies were then (lost.go).
	settledView atomic.Pointer[view]
	// term grows with every view installed and every lease regained
	// (view.go); it never repeats. leaseGen grows with every lease
	// regained, and lease is when the lease runs out (lease.go); both on
	// the clock of sinceStart, which base starts.
	term     atomic.Uint64
	leaseGen atomic.Uint64
	lease    atomic.Int64
	base     time.Time

	mu        sync.Mutex        // guards members, deaths and bookDirty
	members   map[string]*entry // peer ID -> entry; never holds self
	deaths    []death           // lives that died lately, oldest first (lost.go)
	bookDirty bool              // the members changed since the peer book was saved
	bookMu    sync.Mutex        // one save of the peer book at a time; guards bookSaved
	bookKick  chan struct{}     // asks bookLoop for a save
	bookNow   atomic.Bool       // the save asked for may not wait for bookSaveGap
	bookSaved time.Time         // when the book was last saved
	// restartHold is how long after its start the node holds the views
	// that lack a member of restartBook, the members of its peer book at
	// the start, for which it may have vouched in an earlier life
	// (join.go). Set by Start before anything reads them.
	restartHold time.Duration
	restartBook []string
	warnedKnown int // the member count last warned about (checkMajorityLocked); guarded by mu
	// caughtFrom lists the members that confirmed, in the view of term
	// caughtTerm, that this node lacks nothing of theirs (lost.go);
	// guarded by mu.
	caughtTerm uint64
	caughtFrom map[string]bool

	scratch  sync.Pool         // *batchScratch for answering batches
	messages [msgTypes]message // what answers each message from a peer (messages.go)

	poke chan string // peer IDs to probe now (buffered; dropped when full)
	// admitKick asks the run loop to place the members admitted lately
	// (admitSoonLocked); admitPending, guarded by mu, says some wait.
	admitKick    chan struct{}
	admitPending bool
	// faraway lists the members looked for that the table does not hold
	// (faraway.go), and farawayBusy how many are being contacted; guarded
	// by mu.
	faraway     map[string]*faraway
	farawayBusy int
	syncNow     chan struct{} // a pass is due (the view changed); buffered, 1
	leaving     atomic.Bool   // set by Leave: out of the ring; its pings say so
	joined      atomic.Bool   // has reached a member, or need not (join.go)
	// skewLogged is when a refused version was last logged (UnixNano);
	// admitLogged, when a member the engine refused was (gossip.go).
	skewLogged  atomic.Int64
	admitLogged atomic.Int64

	seq           *[seqStripes]sequencer                 // primary's per-bucket write sequencers (seqlock.go)
	replicaQueues *sendQueues[[]byte, []byte]            // writes waiting to go to each replica (replicate_batch.go)
	forwardQueues *sendQueues[forwardChunk, []opOutcome] // operations waiting to go to each primary (route.go)
	ready         readiness                              // buckets pulled in the current term
	handoffMu     sync.Mutex                             // orders retiring, un-retiring and removing copies; never held across a wait
	passMu        chan struct{}                          // one sync pass at a time: holds a token while a pass runs
	settled       atomic.Uint64                          // term of the last pass that left nothing undone

	stats stats // counters behind Stats (stats.go)

	ctx       context.Context // cancelled by Close
	cancel    context.CancelFunc
	wg        sync.WaitGroup // every goroutine the node starts
	startOnce sync.Once
	closeOnce sync.Once
}

// New validates cfg and returns a Node that is not started.
func New(cfg Config) (*Node, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	_, byName := cfg.Placement.(*ring.Ranges)
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{
		cfg:           cfg,
		byName:        byName,
		layout:        xxhash.Sum64String(cfg.Placement.String()),
		log:           cfg.Logger,
		messages:      messages(),
		members:       make(map[string]*entry),
		replicaQueues: newReplicaQueues(),
		forwardQueues: newForwardQueues(),
		faraway:       make(map[string]*faraway),
		poke:          make(chan string, 64),
		admitKick:     make(chan struct{}, 1),
		syncNow:       make(chan struct{}, 1),
		bookKick:      make(chan struct{}, 1),
		ctx:           ctx,
		cancel:        cancel,
		base:          time.Now().Add(-time.Millisecond), // no reading of sinceStart is 0, which means "never"
		seq:           newSequencers(),
		passMu:        make(chan struct{}, 1),
	}
	n.scratch.New = func() any { return new(batchScratch) }
	mem, err := newGovernor(&n.cfg, cfg.Store)
	if err != nil {
		cancel()
		return nil, err
	}
	n.mem, n.evictNow = mem, make(chan struct{}, 1)
	n.touches = mem != nil && mem.Policy().NeedsAccess()
	n.ms = probes{n}
	n.self = Member{ID: cfg.Transport.ID(), Name: cfg.Name, State: StateAlive, Self: true, Incarnation: newIncarnation()}
	n.joined.Store(len(cfg.Join) == 0)
	eng, err := n.newEngine()
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	n.gossip = eng
	n.rebuildLocked()
	n.updateLeaseLocked()
	return n, nil
}

// Store returns the store that holds this node's buckets.
func (n *Node) Store() *store.Store { return n.cfg.Store }

// Name returns the node's name.
func (n *Node) Name() string { return n.cfg.Name }

// ID returns the node's peer ID.
func (n *Node) ID() string { return n.self.ID }

// Start answers peers and starts probing members and joining through
// Config.Join. It returns at once; calling it again does nothing.
func (n *Node) Start() {
	n.startOnce.Do(func() {
		n.self.Addrs = n.cfg.Transport.Addrs()
		book := n.loadBook()
		if len(book) > 0 {
			n.joined.Store(false)
			n.restartHold = n.holdDuration()
			for _, m := range book {
				n.restartBook = append(n.restartBook, m.ID)
			}
		}
		n.cfg.Transport.Serve(n.handle)
		if err := n.gossip.Start(); err != nil {
			n.log.Error("cannot start the gossip engine; this node will not find members", zap.Error(err))
		}
		n.wg.Add(3)
		go n.run()
		go n.syncLoop()
		go n.rounds(expireInterval, nil, n.expireRound) // expire.go
		if n.mem != nil && n.mem.Policy().Evicts() {
			n.wg.Add(1)
			go n.rounds(evictInterval, n.evictNow, n.evictRound) // evict.go
		}
		if n.cfg.PeerBook != nil {
			n.wg.Add(1)
			go n.bookLoop()
		}
		if len(n.cfg.Join) > 0 || len(book) > 0 {
			n.wg.Add(1)
			go n.join(book)
		}
	})
}

// Close stops the node's goroutines and waits for them. It does not close
// the transport, which the caller owns. Close is idempotent.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		if n.leaving.Load() {
			// Gone at once everywhere, rather than suspected first.
			_ = n.gossip.Leave(leaveTimeout)
		}
		_ = n.gossip.Close()
		n.cancel()
		n.wg.Wait()
	})
	return nil
}

// Members returns every member this node knows, itself included, sorted by
// name and then peer ID.
func (n *Node) Members() []Member { return n.ms.members() }

// Owners returns the nodes that hold bucket, the primary (which orders
// its writes and serves its reads) first.
func (n *Node) Owners(bucket string) ([]Member, error) {
	return n.ms.view().owners(bucket, n.cfg.Replicas)
}

// Epoch returns a fingerprint of the membership this node places buckets
// with; two nodes with the same epoch place every bucket the same way.
func (n *Node) Epoch() uint64 { return n.ms.view().epoch }

// Joined reports whether the node has found its cluster (join.go): until
// it has, it answers ErrUnavailable.
func (n *Node) Joined() bool { return n.joined.Load() }

// Term returns this node's term: a number that grows with every view it
// installs and every lease it regains, and never repeats (view.go).
func (n *Node) Term() uint64 { return n.term.Load() }

// Introduce tells the node about a peer found by discovery (mDNS). The
// node's gossip engine contacts it; once the engine holds it alive and it
// answers a probe, it is in the ring.
func (n *Node) Introduce(id string, addrs []string) {
	if id == n.self.ID {
		return
	}
	n.cfg.Transport.AddAddrs(id, addrs)
	n.mu.Lock()
	if _, ok := n.members[id]; !ok {
		n.addLocked(Member{ID: id, Addrs: addrs})
	}
	n.mu.Unlock()
	n.joinSoon(id)
}
