package node

import (
	"context"

	"github.com/dboutique/dboutique/node/store"
)

// ReviewReclaimRead runs the delete a read of op does when it finds its
// key expired (reclaimRead), for the review's tests
// (review_expiry_test.go).
func (n *Node) ReviewReclaimRead(ctx context.Context, op store.Op) error {
	return n.reclaimRead(ctx, op, store.ErrKeyExpired, n.cfg.MaxHops)
}
