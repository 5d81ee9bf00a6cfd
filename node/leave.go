package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Leave takes the node out of the cluster without losing data: it leaves
// its own ring (requests it receives go to the remaining owners), hands
// over what it knows of the members (handOverPeers), tells every alive
// member, who take it out of theirs at once instead of waiting for
// DeadAfter, and then hands every bucket copy it holds to the bucket's
// owners, returning once all have confirmed or ctx ends. From
// then on the node answers no pings, and its own pings say it is leaving
// (it keeps probing to learn whom to hand off to); it still answers peers
// until Close, which the caller should call next.
func (n *Node) Leave(ctx context.Context) error {
	n.ms.leave()
	n.handOverPeers()
	// This node orders no new write (it is in no view of its own), and the
	// writes it was ordering finish before the others take its buckets:
	// they will not wait for it (it left), nor ask it for a barrier.
	for i := range n.seq {
		if err := n.seq[i].lock(ctx, true); err != nil {
			return err
		}
		n.seq[i].unlock(true)
	}
	n.sayGoodbye(ctx, appendLeave(nil, leaveLeaving, n.self.Incarnation))
	if err := n.handoff(ctx); err != nil {
		return err
	}
	// Nothing left to pull from here: the others stop asking.
	n.sayGoodbye(ctx, appendLeave(nil, leaveHandedOff, n.self.Incarnation))
	return nil
}

// handOverPeers has the engine exchange member lists with every alive
// member, in the background: each push/pull tells the members this node
// holds dead (faraway.go), so that a member that knew the cluster only
// through this node can still look for the rest once this node is gone.
func (n *Node) handOverPeers() {
	for _, m := range n.ms.members() {
		if !m.Self && m.State == StateAlive {
			n.joinSoon(m.ID)
		}
	}
}

// sayGoodbye sends msg, a msgLeave, to every alive member, and to those
// leaving too (the whole cluster may be stopping: each must know the
// others will not take its buckets).
func (n *Node) sayGoodbye(ctx context.Context, msg []byte) {
	ctx, cancel := context.WithTimeout(ctx, leaveTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, m := range n.ms.members() {
		if m.Self || m.State != StateAlive && m.State != StateLeft {
			continue
		}
		wg.Go(func() {
			if _, err := n.cfg.Transport.Call(ctx, m.ID, msg); err != nil {
				n.log.Debug("leave not delivered", zap.String("peer", m.Name), zap.Error(err))
			}
		})
	}
	wg.Wait()
}

// handoff pushes every copy this node holds to the bucket's owners (this
// node has left the view) until none is left or ctx ends.
func (n *Node) handoff(ctx context.Context) error {
	start := time.Now()
	held := len(n.cfg.Store.Records())
	var total passStats
	var alone time.Time // when the view was first found empty
	for {
		if len(n.ms.view().byKey) == 0 {
			// Alone, or every other member is leaving too (the whole
			// cluster is shutting down). Members only thought dead (an
			// overloaded machine) may come back: wait a little for them.
			if alone.IsZero() {
				alone = time.Now()
			}
			if !n.anyDead() || time.Since(alone) > 2*n.cfg.DeadAfter {
				if recs := len(n.cfg.Store.Records()); recs > 0 {
					n.log.Warn("no other member to hand buckets to; their data goes with this node", zap.Int("buckets", recs))
				}
				return nil
			}
		} else {
			alone = time.Time{}
		}
		st := n.syncPass(ctx)
		total.buckets += st.buckets
		total.entries += st.entries
		total.bytes += st.bytes
		total.removed += st.removed
		if st.pending == 0 && len(n.cfg.Store.Records()) == 0 {
			n.log.Info("handed every bucket off", zap.Int("copies_held", held),
				zap.Duration("took", time.Since(start)))
			return nil
		}
		if err := n.pause(ctx, 50*time.Millisecond); errors.Is(err, ErrClosed) {
			return err
		} else if err != nil {
			return fmt.Errorf("node: %d bucket copies not handed off: %w", len(n.cfg.Store.Records()), err)
		}
	}
}

// anyDead reports whether a member is dead (rather than gone for good).
func (n *Node) anyDead() bool {
	return slices.ContainsFunc(n.ms.members(), func(m Member) bool { return m.State == StateDead })
}
