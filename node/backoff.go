package node

import (
	"context"
	"time"
)

// backoff is the wait between the attempts of a retry loop: each wait is
// twice the one before, and at most most (which the loop may change
// between waits); the first is next.
type backoff struct {
	next time.Duration // the coming wait, before most caps it
	most time.Duration
}

// wait sleeps for the coming delay and doubles it; it reports false, at
// once, when ctx ends first.
func (b *backoff) wait(ctx context.Context) bool { return sleep(ctx, b.step()) }

// step returns the coming delay and doubles it.
func (b *backoff) step() time.Duration {
	d := min(b.next, b.most)
	b.next = 2 * d
	return d
}

// sleep waits for d, and reports false, at once, when ctx ends first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// pause waits for d. It returns ErrClosed when the node is closed first,
// and ctx's error when ctx ends first.
func (n *Node) pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-n.ctx.Done():
		return ErrClosed
	case <-ctx.Done():
		if n.ctx.Err() != nil {
			return ErrClosed
		}
		return ctx.Err()
	}
}
