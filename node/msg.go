package node

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/node/wire"
)

// The encodings of the messages of membership and of operations, as
// messages.go describes them.

// appendLeave encodes a msgLeave.
func appendLeave(b []byte, handedOff bool, incarnation uint64) []byte {
	b = wire.AppendBool(append(b, msgLeave), handedOff)
	return wire.AppendU64(b, incarnation)
}

// decodeLeave decodes a msgLeave's body.
func decodeLeave(b []byte) (handedOff bool, incarnation uint64, err error) {
	d := decoder{wire.NewDecoder(b)}
	handedOff = d.Bool()
	incarnation = d.U64()
	if err := d.Finish(); err != nil {
		return false, 0, err
	}
	return handedOff, incarnation, nil
}

// decoder reads node messages: the wire primitives, and the fields that
// several messages share (members, entries, bucket metadata).
type decoder struct{ wire.Decoder }

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// maxBatch caps the operations of one msgBatch.
const maxBatch = 1024

// ping is the body of msgPing and of its reply.
type ping struct {
	cluster string
	from    Member // the sender (or replier); State unused
	leaving bool   // the sender is leaving: a goodbye, not proof of life
	// vouch, in a reply, says that the replier sees the prober alive and
	// promises to hold its lease (lease.go).
	vouch  bool
	clock  int64  // the sender's wall clock, Unix milliseconds
	layout uint64 // how the sender places buckets (Node.layout)
	joined bool   // the sender is part of a cluster
}

// Bits of a ping's flags byte.
const (
	pingLeaving byte = 1 << iota
	pingVouch
	pingJoined // the sender is part of a cluster (join.go): its answer lets a joining node in
)

func appendMember(b []byte, m Member) []byte {
	b = wire.AppendString(b, m.ID)
	b = wire.AppendString(b, m.Name)
	b = binary.AppendUvarint(b, uint64(len(m.Addrs)))
	for _, a := range m.Addrs {
		b = wire.AppendString(b, a)
	}
	return b
}

func (d *decoder) member() Member {
	m := Member{ID: d.String(), Name: d.String()}
	if n := d.Count(); n > 0 {
		m.Addrs = make([]string, n)
		for i := range m.Addrs {
			m.Addrs[i] = d.String()
		}
	}
	return m
}

func (p ping) append(b []byte) []byte {
	b = wire.AppendString(b, p.cluster)
	b = appendMember(b, p.from)
	b = wire.AppendU64(b, p.from.Incarnation)
	var flags byte
	if p.leaving {
		flags |= pingLeaving
	}
	if p.vouch {
		flags |= pingVouch
	}
	if p.joined {
		flags |= pingJoined
	}
	b = append(b, flags)
	b = wire.AppendU64(b, uint64(p.clock))
	return wire.AppendU64(b, p.layout)
}

func decodePing(b []byte) (ping, error) {
	d := decoder{wire.NewDecoder(b)}
	p := ping{cluster: d.String(), from: d.member()}
	p.from.Incarnation = d.U64()
	flags := d.Byte()
	p.leaving, p.vouch, p.joined = flags&pingLeaving != 0, flags&pingVouch != 0, flags&pingJoined != 0
	p.clock = int64(d.U64())
	p.layout = d.U64()
	if d.Err() == nil && flags&^(pingLeaving|pingVouch|pingJoined) != 0 {
		return ping{}, fmt.Errorf("%w: ping flags %#x", wire.ErrCorrupt, flags)
	}
	if err := d.Finish(); err != nil {
		return ping{}, err
	}
	if p.from.ID == "" {
		return ping{}, fmt.Errorf("%w: ping without a sender", wire.ErrCorrupt)
	}
	return p, nil
}

// opRequest is the body of msgOp.
type opRequest struct {
	epoch uint64 // the sender's view of the membership
	hops  int    // how many more times the request may be forwarded
	op    store.Op
}

func (r opRequest) append(b []byte) ([]byte, error) {
	b = append(b, msgOp)
	b = binary.BigEndian.AppendUint64(b, r.epoch)
	b = append(b, byte(r.hops))
	return r.op.AppendBinary(b)
}

// decodeOpRequest decodes a msgOp body (after the type byte).
func decodeOpRequest(b []byte) (opRequest, error) {
	if len(b) < 9 {
		return opRequest{}, fmt.Errorf("%w: short op request", wire.ErrCorrupt)
	}
	r := opRequest{epoch: binary.BigEndian.Uint64(b), hops: int(b[8])}
	op, err := store.DecodeOp(b[9:])
	if err != nil {
		return opRequest{}, err
	}
	r.op = op
	return r, nil
}

// batchRequest is the body of msgBatch: operations to run in order.
type batchRequest struct {
	epoch uint64
	hops  int
	ops   []store.Op
}

func (r batchRequest) append(b []byte) ([]byte, error) {
	size := 16
	for _, o := range r.ops {
		size += len(o.Bucket) + len(o.Key) + len(o.Value) + 8
	}
	b = slices.Grow(b, size)
	b = append(b, msgBatch)
	b = binary.BigEndian.AppendUint64(b, r.epoch)
	b = append(b, byte(r.hops))
	b = binary.AppendUvarint(b, uint64(len(r.ops)))
	var op []byte
	for _, o := range r.ops {
		var err error
		if op, err = o.AppendBinary(op[:0]); err != nil {
			return nil, err
		}
		b = binary.AppendUvarint(b, uint64(len(op)))
		b = append(b, op...)
	}
	return b, nil
}

// decodeBatchRequest decodes a msgBatch body (after the type byte), putting
// the operations in ops[:0] (which may be nil). Each operation is
// validated; one that is invalid fails the whole batch.
func decodeBatchRequest(b []byte, ops []store.Op) (batchRequest, error) {
	if len(b) < 9 {
		return batchRequest{}, fmt.Errorf("%w: short batch request", wire.ErrCorrupt)
	}
	r := batchRequest{epoch: binary.BigEndian.Uint64(b), hops: int(b[8])}
	d := decoder{wire.NewDecoder(b[9:])}
	n := d.Count()
	if d.Err() == nil && n > maxBatch {
		return batchRequest{}, fmt.Errorf("%w: %d operations in a batch, at most %d", wire.ErrCorrupt, n, maxBatch)
	}
	r.ops = slices.Grow(ops[:0], int(n))
	for range n {
		raw := d.Bytes()
		if d.Err() != nil {
			break
		}
		var last string
		if len(r.ops) > 0 {
			last = r.ops[len(r.ops)-1].Bucket
		}
		op, err := store.DecodeOpAfter(raw, last)
		if err != nil {
			return batchRequest{}, err
		}
		r.ops = append(r.ops, op)
	}
	if err := d.Finish(); err != nil {
		return batchRequest{}, err
	}
	return r, nil
}

// appendBatchReply encodes the outcomes of a batch.
func appendBatchReply(b []byte, res []store.Result, errs []error) []byte {
	size := 8
	for _, r := range res {
		size += len(r.Value) + 8
	}
	b = slices.Grow(b, size)
	b = binary.AppendUvarint(b, uint64(len(res)))
	var one []byte
	for i := range res {
		one = appendReply(one[:0], res[i], errs[i])
		b = binary.AppendUvarint(b, uint64(len(one)))
		b = append(b, one...)
	}
	return b
}

// decodeBatchReply decodes a batch's outcomes into res and errs, which
// must have the length the batch had.
func decodeBatchReply(b []byte, res []store.Result, errs []error) error {
	d := decoder{wire.NewDecoder(b)}
	if n := d.Uvarint(); d.Err() == nil && n != uint64(len(res)) {
		return fmt.Errorf("%w: %d replies to a batch of %d", wire.ErrCorrupt, n, len(res))
	}
	for i := range res {
		raw := d.Bytes()
		if d.Err() != nil {
			break
		}
		res[i], errs[i] = decodeReply(raw)
		if errors.Is(errs[i], wire.ErrCorrupt) {
			return errs[i]
		}
	}
	return d.Finish()
}

// appendReply encodes the outcome of an operation.
func appendReply(b []byte, res store.Result, err error) []byte {
	if err == nil {
		b, _ = res.AppendBinary(append(b, replyOK))
		return b
	}
	code, msg := codeOther, err.Error()
	if ue, ok := errors.AsType[*UnreachableError](err); ok {
		code, msg = codeUnreachable, ue.Node
	} else {
		for _, e := range replyErrors() {
			if errors.Is(err, e.err) {
				code = e.code
				break
			}
		}
	}
	return wire.AppendString(append(b, replyError, code), msg)
}

// decodeReply decodes a reply into the operation's outcome: the Result, or
// the error the remote node returned, as the same sentinel.
func decodeReply(b []byte) (store.Result, error) {
	if len(b) == 0 {
		return store.Result{}, fmt.Errorf("%w: empty reply", wire.ErrCorrupt)
	}
	if b[0] == replyOK {
		return store.DecodeResult(b[1:])
	}
	if b[0] != replyError || len(b) < 2 {
		return store.Result{}, fmt.Errorf("%w: bad reply status", wire.ErrCorrupt)
	}
	d := decoder{wire.NewDecoder(b[2:])}
	msg := d.String()
	if err := d.Finish(); err != nil {
		return store.Result{}, err
	}
	if b[1] == codeUnreachable {
		return store.Result{}, &UnreachableError{Node: msg}
	}
	for _, e := range replyErrors() {
		if b[1] == e.code {
			return store.Result{}, &remoteError{err: e.err, msg: msg}
		}
	}
	return store.Result{}, &remoteError{msg: msg}
}

// remoteError is an error another node returned: it prints the remote
// message and, when it stands for a sentinel error, matches it with
// errors.Is.
type remoteError struct {
	err error // nil when the error has no sentinel
	msg string
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.err }
