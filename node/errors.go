package node

import "errors"

// Sentinel errors of a clustered node.
var (
	// ErrUnreachable: the node that owns a bucket did not answer in time.
	// Errors that wrap it are *UnreachableError values naming the node.
	ErrUnreachable = errors.New("node: owner unreachable")
	// ErrNoRoute: membership is changing: a forwarded request ran out of
	// hops because nodes disagree about who owns its bucket, members do
	// not agree yet to the view a primary must serve in, or a primary lost
	// its lease or its quorum while a write was being replicated. A write
	// may or may not have taken effect; the client may retry.
	ErrNoRoute = errors.New("node: membership is changing, no route to the owner")
	// ErrClosed: the node was closed.
	ErrClosed = errors.New("node: closed")
	// ErrInvalidConfig: a Config field is out of range.
	ErrInvalidConfig = errors.New("node: invalid configuration")
	// ErrClusterMismatch: a peer belongs to another cluster.
	ErrClusterMismatch = errors.New("node: peer belongs to another cluster")
	// ErrUnavailable: the node refuses the request, before running it,
	// because it cannot serve it safely: it sees fewer members than
	// Config.MinMembers, it holds no lease (lease.go), or it has not
	// joined its cluster yet. A request refused so was not run.
	ErrUnavailable = errors.New("node: cluster unavailable")
)

// UnreachableError says which node could not be reached. It wraps
// ErrUnreachable, and the transport's error when there is one.
type UnreachableError struct {
	Node string // the node's name (its peer ID if the name is unknown)
	Err  error  // the transport's error; may be nil
}

func (e *UnreachableError) Error() string {
	if e.Err == nil {
		return "node: node " + e.Node + " unreachable"
	}
	return "node: node " + e.Node + " unreachable: " + e.Err.Error()
}

// Unwrap returns ErrUnreachable and the transport's error.
func (e *UnreachableError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrUnreachable}
	}
	return []error{ErrUnreachable, e.Err}
}
