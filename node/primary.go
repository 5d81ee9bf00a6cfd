package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"go.uber.org/zap"
)

// Replication. A bucket lives on its first Config.Replicas ring owners.
// The first owner, the primary, orders the bucket's writes: it gives each
// a version from its clock, sends the writes to the other owners, and
// applies and acknowledges them only once every owner of its current view
// holds them. A write is therefore visible (to reads, which the primary
// serves) only once it is on every live owner, and it survives the loss of
// any Replicas-1 of them.
//
// Before the primary serves a bucket in a new view it is "ready" for it: it
// has pulled the copies every other member holds (pullBucket). Membership
// changes move a bucket's primary role to nodes that may not hold it yet;
// the pull is what makes sure that a bucket in flight never answers NOT
// FOUND and that no acknowledged write is missed.

// seqStripes is the number of sequencer locks. A bucket's writes take its
// stripe shared, except CREATE and DROP, which take it alone: a bucket's
// existence changes in version order with respect to its other writes.
const seqStripes = 256

// maxReady caps the buckets remembered as ready in one view; past it the
// set starts over (the cost is one more pull per bucket).
const maxReady = 1 << 20

func (n *Node) seqLock(bucket string) *sync.RWMutex {
	return &n.seq[xxhash.Sum64String(bucket)%seqStripes]
}

// executeOwned runs ops, valid routed operations whose buckets this node
// is the primary of, in order. Consecutive writes to one bucket are
// replicated as one message.
func (n *Node) executeOwned(ctx context.Context, ops []Op, res []Result, errs []error) {
	// Writes to several buckets that each wait for a replica's round trip
	// wait for them at the same time: each bucket's operations run in
	// order on a goroutine of their own (as executeRouted does for
	// owners). Alone, or with replicas 1, there is nothing to wait for.
	if v := n.view.Load(); n.cfg.Replicas > 1 && len(v.byKey) > 1 {
		if buckets := splitByBucket(ops); len(buckets) > 1 {
			var wg sync.WaitGroup
			for _, idx := range buckets {
				wg.Go(func() {
					bops := make([]Op, len(idx))
					bres := make([]Result, len(idx))
					berrs := make([]error, len(idx))
					for k, i := range idx {
						bops[k] = ops[i]
					}
					n.executeInOrder(ctx, bops, bres, berrs)
					for k, i := range idx {
						res[i], errs[i] = bres[k], berrs[k]
					}
				})
			}
			wg.Wait()
			return
		}
	}
	n.executeInOrder(ctx, ops, res, errs)
}

// splitByBucket returns the indices of ops by bucket, each bucket's in
// order, when ops write to anything and name more than one bucket; nil
// otherwise.
func splitByBucket(ops []Op) [][]int {
	if !slices.ContainsFunc(ops, func(op Op) bool { return op.Kind.IsWrite() }) {
		return nil // reads do not wait for replicas
	}
	if !slices.ContainsFunc(ops, func(op Op) bool { return op.Bucket != ops[0].Bucket }) {
		return nil // the common case: one bucket, no map
	}
	var idx [][]int
	pos := make(map[string]int)
	for i := range ops {
		k, ok := pos[ops[i].Bucket]
		if !ok {
			k = len(idx)
			pos[ops[i].Bucket] = k
			idx = append(idx, nil)
		}
		idx[k] = append(idx[k], i)
	}
	if len(idx) < 2 {
		return nil
	}
	return idx
}

// executeInOrder runs ops one after the other, consecutive writes to one
// bucket as one replicated group.
func (n *Node) executeInOrder(ctx context.Context, ops []Op, res []Result, errs []error) {
	for i := 0; i < len(ops); {
		op := ops[i]
		if !op.Kind.IsWrite() {
			res[i], errs[i] = n.read(ctx, op)
			i++
			continue
		}
		// A group is replicated as one message: keep it well under the
		// transport's frame cap.
		j, size := i+1, len(op.Key)+len(op.Value)
		for j < len(ops) && j-i < maxWrites && ops[j].Kind.IsWrite() && ops[j].Bucket == op.Bucket &&
			size+len(ops[j].Key)+len(ops[j].Value) <= maxGroupBytes {
			size += len(ops[j].Key) + len(ops[j].Value)
			j++
		}
		n.writeGroup(ctx, op.Bucket, ops[i:j], res[i:j], errs[i:j])
		i = j
	}
}

// executeOne runs one operation whose bucket this node is the primary of.
func (n *Node) executeOne(ctx context.Context, op Op) (Result, error) {
	if !op.Kind.IsWrite() {
		return n.read(ctx, op)
	}
	ops := [1]Op{op}
	var res [1]Result
	var errs [1]error
	n.writeGroup(ctx, op.Bucket, ops[:], res[:], errs[:])
	return res[0], errs[0]
}

// read serves GET and KEYS.
func (n *Node) read(ctx context.Context, op Op) (Result, error) {
	if err := n.serving(); err != nil {
		return Result{}, err
	}
	if err := n.view.Load().copiesDown(op.Bucket, n.cfg.Replicas); err != nil {
		return Result{}, err
	}
	if err := n.ensureReady(ctx, op.Bucket); err != nil {
		return Result{}, err
	}
	return n.cfg.Store.Execute(ctx, op)
}

// serving reports whether the node may answer for buckets at all: a node
// told to join a cluster answers nothing until it has, or it would answer
// NOT FOUND for buckets that exist.
func (n *Node) serving() error {
	if !n.joined.Load() {
		return fmt.Errorf("%w: not joined yet", ErrUnavailable)
	}
	return nil
}

// writable reports whether the node may accept writes: it has joined and
// sees at least Config.MinMembers members.
func (n *Node) writable() error {
	if err := n.serving(); err != nil {
		return err
	}
	if n.cfg.MinMembers > 0 {
		if alive := len(n.view.Load().byKey); alive < n.cfg.MinMembers {
			return fmt.Errorf("%w: %d members reachable, %d needed", ErrUnavailable, alive, n.cfg.MinMembers)
		}
	}
	return nil
}

// writeGroup runs ops, writes to bucket, in order: it decides each one's
// outcome, versions those that change the bucket, replicates them, and
// applies them here once every owner holds them.
func (n *Node) writeGroup(ctx context.Context, bucket string, ops []Op, res []Result, errs []error) {
	fail := func(err error) {
		for k := range ops {
			res[k], errs[k] = Result{}, err
		}
	}
	if err := n.writable(); err != nil {
		fail(err)
		return
	}
	if err := n.view.Load().copiesDown(bucket, n.cfg.Replicas); err != nil {
		fail(err)
		return
	}
	if err := n.ensureReady(ctx, bucket); err != nil {
		fail(err)
		return
	}
	// CREATE and DROP change whether the bucket exists, and so does a
	// PUTCREATE of a bucket that does not: those take the sequencer alone.
	exclusive := false
	for _, op := range ops {
		switch op.Kind {
		case KindCreate, KindDrop:
			exclusive = true
		case KindPutCreate:
			exclusive = exclusive || !n.cfg.Store.Exists(bucket)
		}
	}
	if !n.sequence(ctx, bucket, ops, res, errs, exclusive) {
		// Dropped between the look and the lock: order the group alone.
		n.sequence(ctx, bucket, ops, res, errs, true)
	}
}

// sequence orders ops under the bucket's sequencer, taken alone when
// exclusive, then replicates and applies them. Holding it shared, it
// returns false, having done nothing, when a PUTCREATE finds that it must
// create the bucket.
func (n *Node) sequence(ctx context.Context, bucket string, ops []Op, res []Result, errs []error, exclusive bool) bool {
	mu := n.seqLock(bucket)
	if exclusive {
		mu.Lock()
		defer mu.Unlock()
	} else {
		mu.RLock()
		defer mu.RUnlock()
	}
	// Under the sequencer, this node must still be the primary: a node
	// getting ready to replace it waits for the sequencer (see msgDigest),
	// so no write is ordered here once that node serves the bucket.
	if first, err := n.view.Load().primary(bucket); err != nil || !first.Self {
		err := fmt.Errorf("%w: this node no longer orders writes to %q", ErrNoRoute, bucket)
		for k := range ops {
			res[k], errs[k] = Result{}, err
		}
		return true
	}
	exists := n.cfg.Store.Exists(bucket)
	if !exists && !exclusive && slices.ContainsFunc(ops, func(op Op) bool { return op.Kind == KindPutCreate }) {
		return false
	}
	var buf [8]write
	ws := n.order(buf[:0], bucket, exists, ops, res, errs)
	n.commit(ctx, bucket, ws, res, errs)
	return true
}

// commit replicates ws, the writes ordered for a group, and applies them
// here once every owner holds them; if that fails, the group's operations
// that had no error get the failure.
//
// It also settles the counts of the writes marked countFor. A count must
// be decided before the write leaves this node: once a replica holds it,
// anti-entropy may bring it back here before it is applied, and applying
// it would then change nothing. So counts are read from the store just
// before the first send; a write that is never sent (a node alone, or
// replicas 1) is counted as it is applied, which saves a lookup.
func (n *Node) commit(ctx context.Context, bucket string, ws []write, res []Result, errs []error) {
	if len(ws) == 0 {
		return
	}
	s := n.cfg.Store
	countNow := func() {
		for i := range ws {
			if w := &ws[i]; w.countFor > 0 {
				res[w.countFor-1].Count = b2i(live(s, bucket, ws[:i], w.entry.Key) == w.entry.Deleted)
				w.countFor = 0
			}
		}
	}
	if err := n.replicate(ctx, bucket, ws, countNow); err != nil {
		for k := range errs {
			if errs[k] == nil {
				errs[k] = err
			}
		}
		return
	}
	for _, w := range ws {
		var err error
		if w.countFor > 0 {
			var wasLive, applied bool
			wasLive, applied, err = s.applyEntryLive(bucket, w.entry)
			res[w.countFor-1].Count = b2i(applied && wasLive == w.entry.Deleted)
		} else {
			err = w.apply(s, bucket)
		}
		// A copy retired meanwhile (the view changed and this node no
		// longer owns the bucket) is being handed off; the owners
		// already hold the write.
		if err != nil && !errors.Is(err, ErrRetired) {
			n.log.Error("cannot apply a replicated write", zap.String("bucket", bucket), zap.Error(err))
		}
	}
}

// order decides the outcome of each of ops, writes to bucket, given
// whether the bucket exists now, and appends the writes to replicate to
// ws. The caller holds the bucket's sequencer (alone when ops may change
// whether the bucket exists).
func (n *Node) order(ws []write, bucket string, exists bool, ops []Op, res []Result, errs []error) []write {
	s := n.cfg.Store
	clock := s.Clock()
	for k, op := range ops {
		res[k], errs[k] = Result{}, nil
		if !exists && op.Kind != KindCreate && op.Kind != KindPutCreate {
			errs[k] = notFound(bucket)
			continue
		}
		switch op.Kind {
		case KindCreate:
			// Written even when the bucket exists: a copy that missed
			// its creation learns of it.
			ws = append(ws, write{kind: KindCreate, entry: Entry{Version: clock.Now()}})
			res[k].Count = b2i(!exists)
			exists = true
		case KindDrop:
			ws = append(ws, write{kind: KindDrop, entry: Entry{Version: clock.Now()}})
			res[k].Count = 1
			exists = false
		case KindPutCreate:
			if !exists {
				ws = append(ws, write{kind: KindCreate, entry: Entry{Version: clock.Now()}})
				exists = true
			}
			ws = append(ws, write{kind: KindPut, entry: Entry{Key: op.Key, Value: op.Value, Version: clock.Now()}, countFor: k + 1})
		case KindPut:
			ws = append(ws, write{kind: KindPut, entry: Entry{Key: op.Key, Value: op.Value, Version: clock.Now()}})
		case KindDelete:
			ws = append(ws, write{kind: KindDelete, entry: Entry{Key: op.Key, Deleted: true, Version: clock.Now()}, countFor: k + 1})
		}
	}
	return ws
}

// live reports whether key has a value once ws, writes not applied yet,
// are: the last of them that writes key decides, or else the store.
func live(s *Store, bucket string, ws []write, key string) bool {
	for i := len(ws) - 1; i >= 0; i-- {
		switch w := &ws[i]; {
		case w.kind == KindCreate:
			continue
		case w.kind == KindDrop:
			return false
		case w.entry.Key == key:
			return !w.entry.Deleted
		}
	}
	return s.Live(bucket, key)
}

// replicate sends ws to every owner of bucket other than this node and
// returns once all hold them. When the view changes meanwhile, the owners
// of the new view get them too. An owner that does not answer is retried
// until it answers or leaves the view (its death is detected), within
// Config.WriteTimeout.
//
// beforeSend, when not nil, runs once before the writes first leave this
// node.
func (n *Node) replicate(ctx context.Context, bucket string, ws []write, beforeSend func()) error {
	if v := n.view.Load(); n.cfg.Replicas == 1 || v.ring != nil && len(v.byKey) == 1 {
		// Nobody else holds the bucket (this view has one member): the
		// common case of a node alone, checked without allocating. A
		// node that joins meanwhile pulls the bucket before serving it.
		return nil
	}
	var (
		msg      []byte
		done     []string // owners that hold the writes
		backoff  = 5 * time.Millisecond
		measured replication
		cancel   context.CancelFunc
	)
	for {
		v := n.view.Load()
		owners, err := v.owners(bucket, n.cfg.Replicas)
		if err != nil {
			n.stats.replicationErrors.Add(1)
			return err
		}
		var targets []Member
		for _, m := range owners {
			if !m.Self && !contains(done, m.ID) {
				targets = append(targets, m)
			}
		}
		if len(targets) == 0 {
			return nil
		}
		if msg == nil {
			// The first round (msg is set once, so these defers run
			// once): from here on the write waits for others, within the
			// write timeout.
			measured = n.stats.replicateBegin()
			defer n.stats.replicateEnd(&measured)
			ctx, cancel = context.WithTimeout(ctx, n.cfg.WriteTimeout)
			defer cancel()
			if beforeSend != nil {
				beforeSend()
			}
			msg = appendReplicate(nil, bucket, ws)
			measured.writes = len(ws)
		}
		errs := n.replicateRound(ctx, v, targets, msg)
		var failed error
		for i, err := range errs {
			if err == nil {
				done = append(done, targets[i].ID)
			} else if failed == nil {
				failed = err
			}
		}
		if failed == nil {
			continue // check that the view has not changed meanwhile
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			n.stats.replicationErrors.Add(1)
			if n.ctx.Err() != nil {
				return ErrClosed
			}
			return failed
		}
		backoff = min(2*backoff, 200*time.Millisecond)
	}
}

// replicateRound sends msg to every target at once. The calls end when
// the view changes: an owner may be dead, and a call to it hang (a dial
// over a silent network) until the view drops it, when the caller no
// longer needs it.
func (n *Node) replicateRound(ctx context.Context, v *view, targets []Member, msg []byte) []error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(v.replaced, cancel)
	defer stop()
	errs := make([]error, len(targets))
	if len(targets) == 1 {
		errs[0] = n.replicateTo(ctx, targets[0], msg)
		return errs
	}
	var wg sync.WaitGroup
	for i, m := range targets {
		wg.Go(func() { errs[i] = n.replicateTo(ctx, m, msg) })
	}
	wg.Wait()
	return errs
}

func contains(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// replicateTo sends an encoded msgReplicate to m.
func (n *Node) replicateTo(ctx context.Context, m Member, msg []byte) error {
	reply, err := n.call(ctx, m, msg, n.cfg.ForwardTimeout)
	if err != nil {
		return err
	}
	_, err = decodeReply(reply)
	if errors.Is(err, ErrRetired) {
		// The replica no longer thinks it owns the bucket: our views
		// differ. Compare member lists now; the client, if it comes to
		// that, may retry.
		n.probeSoon(m.ID)
		return fmt.Errorf("%w: %s is handing the bucket off", ErrNoRoute, m.Name)
	}
	return err
}

// applyReplicated applies a primary's writes to this node's copy.
func (n *Node) applyReplicated(bucket string, ws []write) error {
	for _, w := range ws {
		if err := w.apply(n.cfg.Store, bucket); err != nil {
			return err
		}
	}
	return nil
}

// readiness remembers the buckets this node has pulled in the current
// view, and the pulls in flight.
type readiness struct {
	mu    sync.RWMutex // guards the fields below
	epoch uint64
	ready map[string]struct{}
	pulls map[string]*pull
}

// pull is one pull of a bucket in flight; done is closed when err is set.
type pull struct {
	epoch uint64
	done  chan struct{}
	err   error
}

// ensureReady returns once this node has pulled bucket from every other
// member in the current view (once per view and bucket).
func (n *Node) ensureReady(ctx context.Context, bucket string) error {
	r := &n.ready
	for {
		v := n.view.Load()
		// Every request at a primary asks: the common answer, under a
		// shared lock.
		r.mu.RLock()
		_, ready := r.ready[bucket]
		ready = ready && r.epoch == v.epoch
		r.mu.RUnlock()
		if ready {
			return nil
		}
		r.mu.Lock()
		if r.epoch != v.epoch || r.ready == nil || len(r.ready) >= maxReady {
			r.epoch = v.epoch
			r.ready = make(map[string]struct{})
			r.pulls = make(map[string]*pull)
		}
		if _, ok := r.ready[bucket]; ok {
			r.mu.Unlock()
			return nil
		}
		p := r.pulls[bucket]
		if p == nil {
			p = &pull{epoch: v.epoch, done: make(chan struct{})}
			r.pulls[bucket] = p
			r.mu.Unlock()
			p.err = n.pullUntilAgreed(ctx, bucket)
			r.mu.Lock()
			if p.err == nil && r.epoch == p.epoch {
				r.ready[bucket] = struct{}{}
			}
			if r.pulls[bucket] == p {
				delete(r.pulls, bucket)
			}
			r.mu.Unlock()
			close(p.done)
		} else {
			r.mu.Unlock()
			select {
			case <-p.done:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if p.err != nil {
			return p.err
		}
		if p.epoch == n.view.Load().epoch {
			return nil
		}
		// The view changed during the pull: members may have joined
		// that were not asked.
	}
}

// pullUntilAgreed pulls bucket, retrying while other members still place
// buckets differently (they will agree within a probe or two), for at most
// ForwardTimeout.
func (n *Node) pullUntilAgreed(ctx context.Context, bucket string) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ForwardTimeout)
	defer cancel()
	backoff := 5 * time.Millisecond
	for {
		err := n.pullBucket(ctx, bucket)
		if !errors.Is(err, errViewsDiffer) {
			return err
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
		backoff = min(2*backoff, 100*time.Millisecond)
	}
}

// pullBucket merges into this node's copy of bucket what every other
// member holds of it. A member that left recently is asked too (it may be
// handing its copies off), but its silence is not an error.
func (n *Node) pullBucket(ctx context.Context, bucket string) error {
	n.handoffMu.Lock()
	if n.cfg.Store.Retired(bucket) {
		// This node owns the bucket again before its hand-off ended.
		n.cfg.Store.Unretire(bucket)
	}
	n.handoffMu.Unlock()
	epoch := n.Epoch()
	sources := n.syncSources()
	errs := make([]error, len(sources))
	var wg sync.WaitGroup
	for i, m := range sources {
		wg.Go(func() {
			if m.State == StateLeft {
				// A departed member's view no longer has itself in it.
				errs[i] = n.pullFrom(ctx, m, bucket, 0)
			} else {
				errs[i] = n.pullFrom(ctx, m, bucket, epoch)
			}
			if errs[i] != nil && m.State == StateLeft {
				n.log.Debug("pull from a departed member failed", zap.String("peer", m.Name), zap.Error(errs[i]))
				errs[i] = nil
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// pullFrom merges m's copy of bucket into this node's: the shards whose
// digests differ, page by page. With a non-zero epoch, m answers only if
// it has the same view (errViewsDiffer otherwise), and only once its own
// writes to the bucket as a primary have finished.
func (n *Node) pullFrom(ctx context.Context, m Member, bucket string, epoch uint64) error {
	reply, err := n.call(ctx, m, appendDigestRequest(nil, epoch, bucket), n.cfg.ForwardTimeout)
	if err != nil {
		return err
	}
	theirs, ok, err := decodeDigestReply(reply)
	if err != nil || !ok {
		return err
	}
	s := n.cfg.Store
	if err := checkVersions(time.Now(), theirs.Meta, nil); err != nil {
		return err
	}
	mine, _ := s.Digest(bucket)
	if theirs.Meta != mine.Meta {
		if _, err := s.Merge(bucket, theirs.Meta, nil); err != nil {
			return err
		}
	}
	for shard := range differingShards(&theirs, &mine) {
		after := ""
		for {
			req := pageRequest{bucket: bucket, shard: shard, after: after, maxBytes: pageBytes}.append(nil)
			reply, err := n.call(ctx, m, req, n.cfg.ForwardTimeout)
			if err != nil {
				return err
			}
			es, more, err := decodePageReply(reply)
			if err == nil {
				err = checkVersions(time.Now(), BucketMeta{}, es)
			}
			if err != nil {
				return err
			}
			if _, err := s.Merge(bucket, BucketMeta{}, es); err != nil {
				return err
			}
			if !more || len(es) == 0 {
				break
			}
			after = es[len(es)-1].Key
		}
	}
	return nil
}
