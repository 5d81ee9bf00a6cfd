package node

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dboutique/dboutique/ring"
)

// Messages between nodes. The transport carries opaque request and reply
// payloads; a request's first byte says what it is:
//
//	msgPing:    cluster string, sender member, its incarnation (8 bytes,
//	            big endian), flags byte (pingLeaving, pingVouch,
//	            pingJoined), the sender's wall clock (Unix milliseconds, 8
//	            bytes), a fingerprint of its placement (8 bytes, Node.layout),
//	            the members it sees alive (a member list), then
//	            those it holds dead (a uvarint count, then each member and
//	            a uvarint of the milliseconds since it died); reply: the
//	            same fields for the replier, with pingVouch set when the
//	            replier sees the sender alive
//	msgOp:      epoch uint64 (8 bytes, big endian), hops byte, Op (codec.go)
//	            reply: a reply (below)
//	msgBuckets: nothing; reply: a reply whose Result lists local buckets
//	msgLeave:   a byte, 0 (leaving) or 1 (left, every copy handed off),
//	            then the sender's incarnation (8 bytes); reply: empty
//	msgBatch:   epoch uint64, hops byte, uvarint count, then each Op as a
//	            uvarint length and the Op; reply: uvarint count, then each
//	            reply as a uvarint length and the reply
//
// A member is: id string, name string, address count uvarint, addresses.
// A member list is a uvarint count, then members. A reply is a status byte:
// 0, then a Result; or 1, an error code byte and a message string.
// Strings are a uvarint length, then bytes (codec.go).
const (
	msgPing    byte = 1
	msgOp      byte = 2
	msgBuckets byte = 3
	msgLeave   byte = 4
	msgBatch   byte = 5
)

// appendLeave encodes a msgLeave.
func appendLeave(b []byte, handedOff bool, incarnation uint64) []byte {
	b = append(b, msgLeave, byte(b2i(handedOff)))
	return appendU64(b, incarnation)
}

// decodeLeave decodes a msgLeave's body.
func decodeLeave(b []byte) (handedOff bool, incarnation uint64, err error) {
	d := decoder{buf: b}
	flag := d.byte()
	incarnation = d.u64()
	if err := d.finish(); err != nil {
		return false, 0, err
	}
	if flag > 1 {
		return false, 0, fmt.Errorf("%w: leave flag %d", ErrCorruptOp, flag)
	}
	return flag == 1, incarnation, nil
}

// maxBatch caps the operations of one msgBatch.
const maxBatch = 1024

// Error codes in replies; the values are wire format.
const (
	codeOther       byte = 0
	codeBucket      byte = 1 // ErrBucketNotFound
	codeKey         byte = 2 // ErrKeyNotFound
	codeInvalid     byte = 3 // ErrInvalidOp
	codeNoOwner     byte = 4 // ring.ErrNoOwner
	codeUnreachable byte = 5 // *UnreachableError; the message is the node's name
	codeNoRoute     byte = 6 // ErrNoRoute
	codeUnavailable byte = 7 // ErrUnavailable
	codeRetired     byte = 8 // ErrRetired
)

// ping is the body of msgPing and of its reply.
type ping struct {
	cluster string
	from    Member // the sender (or replier); State unused
	leaving bool   // the sender is leaving: a goodbye, not proof of life
	// vouch, in a reply, says that the replier sees the prober alive and
	// promises to hold its lease (lease.go).
	vouch   bool
	clock   int64    // the sender's wall clock, Unix milliseconds
	layout  uint64   // how the sender places buckets (Node.layout)
	members []Member // the members the sender sees alive; State unused
	joined  bool     // the sender is part of a cluster
	// dead are the members the sender holds dead (not forgotten yet), so
	// that a node that knew only a member now gone still finds the others
	// once they are back; deadFor says for how long each has been, so that
	// all forget it at about the same time.
	dead    []Member
	deadFor []time.Duration
}

// maxDeadForMillis caps a gossiped death's age (a year), so that it
// converts to a Duration whatever a peer sends.
const maxDeadForMillis = 365 * 24 * 3600 * 1000

// Bits of a ping's flags byte.
const (
	pingLeaving byte = 1 << iota
	pingVouch
	pingJoined // the sender is part of a cluster (join.go): its answer lets a joining node in
)

func appendMember(b []byte, m Member) []byte {
	b = appendString(b, m.ID)
	b = appendString(b, m.Name)
	b = binary.AppendUvarint(b, uint64(len(m.Addrs)))
	for _, a := range m.Addrs {
		b = appendString(b, a)
	}
	return b
}

func (d *decoder) member() Member {
	m := Member{ID: d.string(), Name: d.string()}
	if n := d.count(); n > 0 {
		m.Addrs = make([]string, n)
		for i := range m.Addrs {
			m.Addrs[i] = d.string()
		}
	}
	return m
}

// count reads a count of items that each take at least one byte, and
// checks it against the bytes left, which bounds what the caller allocates.
func (d *decoder) count() uint64 {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.buf)) {
		d.err = fmt.Errorf("%w: %d items in %d bytes", ErrCorruptOp, n, len(d.buf))
		return 0
	}
	return n
}

func (p ping) append(b []byte) []byte {
	b = appendString(b, p.cluster)
	b = appendMember(b, p.from)
	b = appendU64(b, p.from.Incarnation)
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
	b = appendU64(b, uint64(p.clock))
	b = appendU64(b, p.layout)
	b = binary.AppendUvarint(b, uint64(len(p.members)))
	for _, m := range p.members {
		b = appendMember(b, m)
	}
	b = binary.AppendUvarint(b, uint64(len(p.dead)))
	for i, m := range p.dead {
		b = appendMember(b, m)
		b = binary.AppendUvarint(b, uint64(p.deadFor[i].Milliseconds()))
	}
	return b
}

func decodePing(b []byte) (ping, error) {
	d := decoder{buf: b}
	p := ping{cluster: d.string(), from: d.member()}
	p.from.Incarnation = d.u64()
	flags := d.byte()
	p.leaving, p.vouch, p.joined = flags&pingLeaving != 0, flags&pingVouch != 0, flags&pingJoined != 0
	p.clock = int64(d.u64())
	p.layout = d.u64()
	if d.err == nil && flags&^(pingLeaving|pingVouch|pingJoined) != 0 {
		return ping{}, fmt.Errorf("%w: ping flags %#x", ErrCorruptOp, flags)
	}
	if n := d.count(); n > 0 {
		p.members = make([]Member, 0, n)
		for range n {
			p.members = append(p.members, d.member())
		}
	}
	if n := d.count(); n > 0 {
		p.dead, p.deadFor = make([]Member, 0, n), make([]time.Duration, 0, n)
		for range n {
			p.dead = append(p.dead, d.member())
			p.deadFor = append(p.deadFor, time.Duration(min(d.uvarint(), maxDeadForMillis))*time.Millisecond)
		}
	}
	if err := d.finish(); err != nil {
		return ping{}, err
	}
	if p.from.ID == "" {
		return ping{}, fmt.Errorf("%w: ping without a sender", ErrCorruptOp)
	}
	return p, nil
}

// opRequest is the body of msgOp.
type opRequest struct {
	epoch uint64 // the sender's view of the membership
	hops  int    // how many more times the request may be forwarded
	op    Op
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
		return opRequest{}, fmt.Errorf("%w: short op request", ErrCorruptOp)
	}
	r := opRequest{epoch: binary.BigEndian.Uint64(b), hops: int(b[8])}
	op, err := DecodeOp(b[9:])
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
	ops   []Op
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
func decodeBatchRequest(b []byte, ops []Op) (batchRequest, error) {
	if len(b) < 9 {
		return batchRequest{}, fmt.Errorf("%w: short batch request", ErrCorruptOp)
	}
	r := batchRequest{epoch: binary.BigEndian.Uint64(b), hops: int(b[8])}
	d := decoder{buf: b[9:]}
	n := d.count()
	if d.err == nil && n > maxBatch {
		return batchRequest{}, fmt.Errorf("%w: %d operations in a batch, at most %d", ErrCorruptOp, n, maxBatch)
	}
	r.ops = slices.Grow(ops[:0], int(n))
	for range n {
		raw := d.bytes()
		if d.err != nil {
			break
		}
		var last string
		if len(r.ops) > 0 {
			last = r.ops[len(r.ops)-1].Bucket
		}
		op, err := decodeOp(raw, last)
		if err != nil {
			return batchRequest{}, err
		}
		r.ops = append(r.ops, op)
	}
	if err := d.finish(); err != nil {
		return batchRequest{}, err
	}
	return r, nil
}

// appendBatchReply encodes the outcomes of a batch.
func appendBatchReply(b []byte, res []Result, errs []error) []byte {
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
func decodeBatchReply(b []byte, res []Result, errs []error) error {
	d := decoder{buf: b}
	if n := d.uvarint(); d.err == nil && n != uint64(len(res)) {
		return fmt.Errorf("%w: %d replies to a batch of %d", ErrCorruptOp, n, len(res))
	}
	for i := range res {
		raw := d.bytes()
		if d.err != nil {
			break
		}
		res[i], errs[i] = decodeReply(raw)
		if errors.Is(errs[i], ErrCorruptOp) {
			return errs[i]
		}
	}
	return d.finish()
}

// appendReply encodes the outcome of an operation.
func appendReply(b []byte, res Result, err error) []byte {
	if err == nil {
		b = append(b, 0)
		b, _ = res.AppendBinary(b)
		return b
	}
	code, msg := codeOther, err.Error()
	var ue *UnreachableError
	switch {
	case errors.As(err, &ue):
		code, msg = codeUnreachable, ue.Node
	case errors.Is(err, ErrBucketNotFound):
		code = codeBucket
	case errors.Is(err, ErrKeyNotFound):
		code = codeKey
	case errors.Is(err, ErrInvalidOp):
		code = codeInvalid
	case errors.Is(err, ring.ErrNoOwner):
		code = codeNoOwner
	case errors.Is(err, ErrNoRoute):
		code = codeNoRoute
	case errors.Is(err, ErrUnavailable):
		code = codeUnavailable
	case errors.Is(err, ErrRetired):
		code = codeRetired
	}
	b = append(b, 1, code)
	return appendString(b, msg)
}

// decodeReply decodes a reply into the operation's outcome: the Result, or
// the error the remote node returned, as the same sentinel.
func decodeReply(b []byte) (Result, error) {
	if len(b) == 0 {
		return Result{}, fmt.Errorf("%w: empty reply", ErrCorruptOp)
	}
	if b[0] == 0 {
		return DecodeResult(b[1:])
	}
	if b[0] != 1 || len(b) < 2 {
		return Result{}, fmt.Errorf("%w: bad reply status", ErrCorruptOp)
	}
	d := decoder{buf: b[2:]}
	msg := d.string()
	if err := d.finish(); err != nil {
		return Result{}, err
	}
	var sentinel error
	switch b[1] {
	case codeUnreachable:
		return Result{}, &UnreachableError{Node: msg}
	case codeBucket:
		sentinel = ErrBucketNotFound
	case codeKey:
		sentinel = ErrKeyNotFound
	case codeInvalid:
		sentinel = ErrInvalidOp
	case codeNoOwner:
		sentinel = ring.ErrNoOwner
	case codeNoRoute:
		sentinel = ErrNoRoute
	case codeUnavailable:
		sentinel = ErrUnavailable
	case codeRetired:
		sentinel = ErrRetired
	default:
		return Result{}, &RemoteError{Msg: msg}
	}
	return Result{}, &remoteSentinel{err: sentinel, msg: msg}
}

// RemoteError is an error another node returned that has no sentinel.
type RemoteError struct{ Msg string }

func (e *RemoteError) Error() string { return e.Msg }

// remoteSentinel is a sentinel error that crossed the network: it prints
// the remote message and matches the sentinel with errors.Is.
type remoteSentinel struct {
	err error
	msg string
}

func (e *remoteSentinel) Error() string { return e.msg }
func (e *remoteSentinel) Unwrap() error { return e.err }
