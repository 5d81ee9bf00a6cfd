package node

import (
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/node/wire"
)

// Clock skew. Versions come from each primary's wall clock (a hybrid
// logical clock, store/version.go), and tombstones are collected by the local
// wall clock once they are TombstoneGrace old. A node whose clock ran far
// ahead would collect tombstones early, and a delete could come back; its
// versions would also win every merge. So the skew between members is
// bounded by Config.MaxClockSkew, which must be well under the grace:
//
//   - a member whose clock is further off is not let in (membership.go
//     measures it on every probe);
//   - a version further ahead than MaxClockSkew (plus versionSlack) is
//     refused wherever a peer sends one (checkVersions), with a log line
//     naming the peer.
//
// With every clock within MaxClockSkew of every other, a delete is
// remembered everywhere for at least TombstoneGrace - MaxClockSkew.

// versionSlack is how far past a peer's wall clock its versions may run:
// a hybrid clock counts past the millisecond when it issues many versions
// in one, or observed a slightly faster clock.
const versionSlack = time.Second

// errFutureVersion: a peer sent a version too far ahead of this node's
// clock.
var errFutureVersion = errors.New("node: a version from the future")

// checkVersions returns an error wrapping errFutureVersion and
// wire.ErrCorrupt, and logs a line naming the peer, when a version of es (or
// of m) from peer `from` is further ahead of this node's clock than
// MaxClockSkew allows. Merging a version adopts it (the clock never goes
// back), so one from a wrong clock is refused rather than let it push
// every later write's version out of reach.
func (n *Node) checkVersions(from string, m store.BucketMeta, es []store.Entry) error {
	top := max(m.Created, m.Dropped, m.ExpiresV)
	for i := range es {
		top = max(top, es[i].Version)
	}
	now := n.cfg.Now()
	if top <= store.VersionAt(now.Add(n.cfg.MaxClockSkew+versionSlack)) {
		return nil
	}
	ahead := top.Time().Sub(now).Round(time.Millisecond)
	if last := n.skewLogged.Load(); now.UnixNano()-last > int64(time.Minute) && n.skewLogged.CompareAndSwap(last, now.UnixNano()) {
		n.log.Warn("refusing versions from a peer whose clock is ahead; fix its clock (NTP)",
			zap.String("peer", n.nameOf(from)), zap.Duration("ahead", ahead), zap.Duration("max", n.cfg.MaxClockSkew))
	}
	return fmt.Errorf("%w (%w): a version %v ahead of this node's clock, more than the %v allowed", errFutureVersion, wire.ErrCorrupt, ahead, n.cfg.MaxClockSkew)
}

// nameOf returns the name of the member with peer ID id, or id.
func (n *Node) nameOf(id string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if e := n.members[id]; e != nil && e.Name != "" {
		return e.Name
	}
	return id
}
