package p2p

import (
	"errors"
	"fmt"
	"sync"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	"go.uber.org/zap"
)

// ErrInvalidServiceTag reports a service tag StartMDNS cannot publish.
var ErrInvalidServiceTag = errors.New("p2p: invalid mDNS service tag")

// mdnsFoundQueue is how many found peers may wait for the callback; more
// are dropped (mDNS reports every peer again at its next announcement).
const mdnsFoundQueue = 64

// MDNS announces a host on the local network with libp2p's multicast DNS
// discovery (p2p/discovery/mdns) and reports the other hosts that announce
// the same service tag. Create it with StartMDNS and stop it with Close.
//
// libp2p calls its notifee from a new goroutine per peer found, and its
// Close does not wait for them; MDNS therefore only queues what they
// report, and one goroutine of its own, which Close waits for, calls found.
type MDNS struct {
	svc   mdns.Service
	found func(peer.AddrInfo)
	log   *zap.Logger

	mu     sync.Mutex // guards closed, so nothing is queued after Close
	closed bool
	peers  chan peer.AddrInfo
	done   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
}

// StartMDNS starts announcing h under serviceTag (see ServiceTag) on every
// multicast interface and calls found, from one goroutine, for each other
// host found with the same tag; found may be called again for the same
// peer and must return quickly. The host's listen addresses are announced
// as they are, so a node that should be found on a LAN must listen on a
// LAN address.
func StartMDNS(h host.Host, serviceTag string, found func(peer.AddrInfo), logger *zap.Logger) (*MDNS, error) {
	if h == nil || found == nil {
		return nil, errors.New("p2p: StartMDNS needs a host and a found function")
	}
	if !validServiceTag(serviceTag) {
		return nil, fmt.Errorf("%w: %q: want 1 to %d letters, digits and inner hyphens", ErrInvalidServiceTag, serviceTag, maxServiceTagLen)
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	m := &MDNS{
		found: found,
		log:   logger,
		peers: make(chan peer.AddrInfo, mdnsFoundQueue),
		done:  make(chan struct{}),
	}
	m.svc = mdns.NewMdnsService(h, serviceTag, (*mdnsNotifee)(m))
	if err := m.svc.Start(); err != nil {
		_ = m.svc.Close()
		return nil, fmt.Errorf("p2p: mdns: %w", err)
	}
	m.wg.Add(1)
	go m.dispatch()
	logger.Info("mdns discovery started", zap.String("service", serviceTag))
	return m, nil
}

// mdnsNotifee receives libp2p's reports.
type mdnsNotifee MDNS

// HandlePeerFound queues ai for the dispatcher, never blocking.
func (n *mdnsNotifee) HandlePeerFound(ai peer.AddrInfo) {
	m := (*MDNS)(n)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	select {
	case m.peers <- ai:
	default:
		m.log.Debug("mdns: dropping a found peer, the queue is full", zap.Stringer("peer", ai.ID))
	}
}

func (m *MDNS) dispatch() {
	defer m.wg.Done()
	for {
		select {
		case <-m.done:
			return
		case ai := <-m.peers:
			m.log.Debug("mdns: found a peer", zap.Stringer("peer", ai.ID))
			m.found(ai)
		}
	}
}

// Close stops announcing and browsing and waits for the callback to
// return. It is idempotent.
func (m *MDNS) Close() error {
	var err error
	m.once.Do(func() {
		err = m.svc.Close()
		m.mu.Lock()
		m.closed = true
		m.mu.Unlock()
		close(m.done)
		m.wg.Wait()
	})
	return err
}
