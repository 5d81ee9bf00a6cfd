package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dboutique/dboutique/node/store"
)

// Listing the cluster: SCAN, KEYS and RANDOMKEY (Scan), DBSIZE (DBSize)
// and HSCAN (ScanBucket), answered by any node.
//
// A listing is in one order that no view decides: by the hash of each
// name (store.NameHash), and a cursor is a position in it, "every name
// whose hash is at least this" (store/scan.go). So a cursor one node gave
// means the same to any other, before and after the membership changes.
//
// Each Scan asks every member that may hold copies, itself included, for
// its page from the cursor (msgScan, mode scanNames): the alive members,
// and those that left and have not handed every copy off yet (the members
// a pull asks, membership.sources). A member lists every copy it holds
// (listedCopies): those its view gives it, as primary or replica, and
// those it no longer owns, which it is handing off (retired, or about to
// be: a sync pass hands off every copy a node does not own, and may not
// have reached this one yet); only a copy of a bucket that no member owns
// in its view (no range of the table covers the name) is left out. The
// pages merge (store.MergePages): every name up to the smallest hash at
// which a full page stops, since every member listed all of its names up
// to there, and the next cursor is one past that hash.
//
// Copies move while a page is listed: a bucket's new owner may be asked
// before its copy arrives, and its old owner after it removed its copy
// (it does once the new owners confirm they hold it). One join can move
// every copy of a bucket: the consistent-hash ring reassigns partitions
// to balance them. So a page is listed in two rounds. First every member
// gives its mark (mode scanBegin): the epoch of its view and how many
// copies it has removed so far (store.Removals). Then the pages, each with
// the member's mark after it listed. The page stands when no member
// removed a copy in between, and every member, this node included, was in
// the same view all along; otherwise it is listed again, up to
// scanAttempts times, and then the Scan fails with ErrNoRoute ("cluster
// membership is changing, retry"). A removal before the first round does
// not matter: the copy's new owners held it by then, and are asked (they
// are members of the same view).
//
// Guarantee, as Redis's: a name present in the cluster for a whole
// iteration is returned at least once, while nodes join and leave
// gracefully; it may be returned more than once, and a name added or
// removed meanwhile may be returned or not (a copy being handed off may
// still hold a key deleted since). A member that does not answer fails the
// Scan (an UnreachableError naming it) rather than skip its names; a
// crashed member's copies are gone with it, and its buckets' other copies
// are listed by their holders.
//
// DBSize asks every alive member how many names it holds as a bucket's
// primary in its view (mode scanCount), so that each counts once: exact
// while the copies are settled, and off by the buckets whose primary does
// not hold them yet while they move.
//
// ScanBucket (HSCAN) runs on the bucket's primary, as a read does (mode
// scanKeys, forwarded like msgOp), in the same hash order over the
// bucket's keys.

// scanAttempts bounds how many times one Scan lists its page, when copies
// moved or the members' views differed while it listed.
const scanAttempts = 10

// errMoved: copies moved, or the members' views differed, while a page
// was listed every time it was tried.
var errMoved = fmt.Errorf("%w: copies moved while the cluster was being listed", ErrNoRoute)

// Scan lists a page of the cluster's names for r: buckets (type hash) and
// plain keys (type string), each once per page, from r.Cursor on; the
// page's Next continues the listing, and is 0 at its end.
func (n *Node) Scan(ctx context.Context, r store.ScanRequest) (store.ScanPage, error) {
	if err := r.Validate(); err != nil {
		return store.ScanPage{}, err
	}
	if err := cmp.Or(n.serving(), n.enoughMembers()); err != nil {
		return store.ScanPage{}, err
	}
	pause := 5 * time.Millisecond
	for attempt := 1; ; attempt++ {
		p, err := n.scanOnce(ctx, r)
		if !errors.Is(err, errMoved) || attempt == scanAttempts {
			return p, err
		}
		// Views converge and hand-offs end within a few probe
		// intervals.
		if err := n.pause(ctx, pause); err != nil {
			return store.ScanPage{}, err
		}
		pause = min(2*pause, n.cfg.ProbeInterval)
	}
}

// scanOnce lists one page in the two rounds described above; errMoved
// when it does not stand.
func (n *Node) scanOnce(ctx context.Context, r store.ScanRequest) (store.ScanPage, error) {
	epoch := n.Epoch()
	selfBefore := n.cfg.Store.Removals()
	ms := n.ms.sources()
	before := make([]*scanMark, len(ms))
	err := n.fanOut(ctx, ms, scanRequest{mode: scanBegin}.append(nil), nil, func(i int, reply []byte) error {
		m, err := decodeMarkReply(reply)
		if err == nil {
			before[i] = &m
		}
		return err
	})
	if err != nil {
		return store.ScanPage{}, err
	}
	var (
		mu    sync.Mutex
		after = make([]*scanMark, len(ms))
		pages []store.Page
		moved bool
	)
	err = n.fanOut(ctx, ms, scanRequest{mode: scanNames, req: r}.append(nil), func() {
		p := n.ownNames(r)
		mu.Lock()
		defer mu.Unlock()
		pages = append(pages, p)
		moved = n.cfg.Store.Removals() != selfBefore || n.Epoch() != epoch
	}, func(i int, reply []byte) error {
		m, p, err := decodeNamesReply(reply, r)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		after[i] = &m
		pages = append(pages, p)
		return nil
	})
	if err != nil {
		return store.ScanPage{}, err
	}
	moved = moved || n.Epoch() != epoch
	for i, m := range ms {
		b, a := before[i], after[i]
		switch {
		case b != nil && a != nil && a.removals != b.removals:
			moved = true // its copies changed
		case m.required && (b == nil || a == nil || b.epoch != epoch || a.epoch != epoch):
			moved = true // it is in another view (a member left silent needs none)
		}
	}
	if moved {
		return store.ScanPage{}, errMoved
	}
	return store.MergePages(r, pages), nil
}

// DBSize counts the cluster's names: every member counts those of the
// buckets it is the primary of in its view.
func (n *Node) DBSize(ctx context.Context) (int, error) {
	if err := cmp.Or(n.serving(), n.enoughMembers()); err != nil {
		return 0, err
	}
	var alive []source
	for _, m := range n.ms.members() {
		if !m.Self && m.State == StateAlive {
			alive = append(alive, source{m, true})
		}
	}
	var (
		mu  sync.Mutex
		sum int
	)
	err := n.fanOut(ctx, alive, scanRequest{mode: scanCount}.append(nil), func() {
		c := n.ownCount()
		mu.Lock()
		defer mu.Unlock()
		sum += c
	}, func(_ int, reply []byte) error {
		c, err := decodeCountReply(reply)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		sum += c
		return nil
	})
	return sum, err
}

// ScanBucket lists a page of the keys of bucket for r (its Type is
// ignored), with their values unless r.NoValues, on the bucket's primary.
// A bucket that does not exist is store.ErrBucketNotFound.
func (n *Node) ScanBucket(ctx context.Context, bucket string, r store.ScanRequest) (store.ScanPage, error) {
	if err := r.Validate(); err != nil {
		return store.ScanPage{}, err
	}
	if bucket == "" {
		return store.ScanPage{}, fmt.Errorf("%w: a bucket scan needs a bucket name", store.ErrInvalidOp)
	}
	p, err := n.scanBucket(ctx, bucket, r, n.cfg.MaxHops)
	if err != nil {
		return store.ScanPage{}, err
	}
	return store.MergePages(r, []store.Page{p}), nil
}

// scanBucket lists a page of bucket's keys where the current view places
// it; hops is how many more times the request may be forwarded.
func (n *Node) scanBucket(ctx context.Context, bucket string, r store.ScanRequest, hops int) (store.Page, error) {
	v := n.ms.view()
	owner, err := v.primary(bucket)
	if err != nil {
		return store.Page{}, err
	}
	if !owner.Self {
		if hops <= 0 {
			n.stats.forwardErrors.Add(1)
			return store.Page{}, ErrNoRoute
		}
		req := scanRequest{mode: scanKeys, epoch: v.epoch, hops: hops - 1, bucket: bucket, req: r}.append(nil)
		n.stats.forwarded(1)
		reply, err := n.call(ctx, owner, req, n.forwardTimeout())
		if err != nil {
			n.stats.forwardErrors.Add(1)
			return store.Page{}, err
		}
		return decodeKeysReply(reply, r)
	}
	// As a read (primary.go): what was listed holds only if this node
	// was the primary, with its lease, all along.
	g, err := n.serve(ctx, bucket)
	if err == nil {
		var p store.Page
		p, err = n.cfg.Store.ScanKeys(bucket, r, pageBytes)
		if gerr := n.stillServing(g); gerr != nil {
			p, err = store.Page{}, gerr
		}
		if errors.Is(err, store.ErrBucketNotFound) {
			if lost := n.lost(bucket); lost != nil {
				err = lost
			}
		}
		if !errors.Is(err, errNotPrimary) {
			return p, err
		}
	}
	if errors.Is(err, errNotPrimary) && hops > 0 {
		return n.scanBucket(ctx, bucket, r, hops-1)
	}
	return store.Page{}, err
}

// ownNames lists this node's page of names for r.
func (n *Node) ownNames(r store.ScanRequest) store.Page {
	return n.cfg.Store.ScanCopies(r, n.listedCopies(), pageBytes)
}

// listedCopies says which copies this node lists (see the top of this
// file): every copy of a bucket that a member owns in its current view,
// and, while it leaves (it is in no view of its own), every copy.
func (n *Node) listedCopies() store.Include {
	if n.leaving.Load() {
		return nil
	}
	v := n.ms.view()
	return func(bucket string) bool {
		_, err := v.primary(bucket) // cached: a listing asks for every copy
		return err == nil
	}
}

// ownCount counts the names of the buckets this node is the primary of in
// its current view.
func (n *Node) ownCount() int {
	v := n.ms.view()
	return n.cfg.Store.CountNames(func(bucket string) bool {
		first, err := v.primary(bucket)
		return err == nil && first.Self
	})
}

// mark returns where this node stands for a listing (see scanMark).
func (n *Node) mark() scanMark {
	return scanMark{epoch: n.Epoch(), removals: n.cfg.Store.Removals()}
}

// fanOut sends req to every member of ms and gives the reply of ms[i] to
// handle, while own, when not nil, runs here. It fails with the first
// failure of a required member (in the order of ms): its call, or
// handle's error; a member not required may fail silently.
func (n *Node) fanOut(ctx context.Context, ms []source, req []byte, own func(), handle func(i int, reply []byte) error) error {
	errs := make([]error, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Go(func() {
			reply, err := n.call(ctx, m.Member, req, n.cfg.ForwardTimeout)
			if err == nil {
				err = handle(i, reply)
			}
			if m.required {
				errs[i] = err
			}
		})
	}
	if own != nil {
		own()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// handleScan answers msgScan: this node's mark, page of names or count,
// or a page of a bucket's keys (forwarded to its primary if need be).
func (n *Node) handleScan(ctx context.Context, from string, body []byte) ([]byte, error) {
	r, err := decodeScanRequest(body)
	if err != nil {
		return nil, err
	}
	switch r.mode {
	case scanBegin:
		return appendMarkReply(nil, n.mark()), nil
	case scanNames:
		p := n.ownNames(r.req)
		return appendNamesReply(nil, n.mark(), p), nil
	case scanCount:
		return appendCountReply(nil, n.ownCount(), nil), nil
	}
	if r.epoch != n.Epoch() {
		n.ms.probeSoon(from) // as handleOp does
	}
	p, err := n.scanBucket(ctx, r.bucket, r.req, r.hops)
	return appendKeysReply(nil, p, err), nil
}
