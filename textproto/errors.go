package textproto

import (
	"errors"
	"fmt"
	"strings"

	"github.com/dboutique/dboutique/node"
	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/ring"
)

// Sentinel errors of the text protocol.
var (
	// ErrServerClosed is returned by Serve after Shutdown or Close.
	ErrServerClosed = errors.New("textproto: server closed")
	// ErrNotImplemented: the server answered COMMAND NOT IMPLEMENTED.
	ErrNotImplemented = errors.New("textproto: command not implemented")
	// ErrLineTooLong: a request line exceeded the server's limit.
	ErrLineTooLong = errors.New("textproto: line too long")
	// ErrTooManyConns: the server refused the connection at its limit.
	ErrTooManyConns = errors.New("textproto: too many connections")
	// ErrAuthRequired: the server wants AUTH before other requests.
	ErrAuthRequired = errors.New("textproto: authentication required")
	// ErrInvalidPassword: AUTH was refused.
	ErrInvalidPassword = errors.New("textproto: invalid password")
	// ErrIdleTimeout: the server closed an idle connection.
	ErrIdleTimeout = errors.New("textproto: idle timeout")
	// ErrInvalidArgument: a client call's argument cannot be sent as one
	// word (it is empty or holds a space, tab or line break).
	ErrInvalidArgument = errors.New("textproto: invalid argument")
	// ErrReservedName: a client named a bucket that begins with
	// ring.ReservedPrefix; the node keeps those for itself.
	ErrReservedName = errors.New("textproto: bucket names beginning with a NUL byte are reserved")
	// ErrProtocol: the server's reply does not follow the protocol.
	ErrProtocol = errors.New("textproto: protocol error")
	// ErrClientClosed: the client was closed, or broken by an earlier
	// failure that left the connection in an unknown state.
	ErrClientClosed = errors.New("textproto: client closed")
)

// Wire replies for errors. The first four are fixed by PROTOCOL.md.
const (
	replyOK             = "OK"
	replyNotFound       = "NOT FOUND"
	replyNotImplemented = "COMMAND NOT IMPLEMENTED"
	errorPrefix         = "ERROR "
)

// errorReplies is the one table between sentinel errors and the wire
// replies that stand for them; the server reads it one way, the client the
// other. It is a function so that the table cannot be modified.
func errorReplies() []struct {
	err   error
	reply string
} {
	return []struct {
		err   error
		reply string
	}{
		{store.ErrBucketNotFound, replyNotFound},
		{store.ErrOutOfMemory, errorPrefix + "out of memory"},
		{ErrNotImplemented, replyNotImplemented},
		{ErrLineTooLong, errorPrefix + "line too long"},
		{ErrTooManyConns, errorPrefix + "too many connections"},
		{ErrAuthRequired, errorPrefix + "authentication required"},
		{ErrInvalidPassword, errorPrefix + "invalid password"},
		{ErrIdleTimeout, errorPrefix + "idle timeout"},
		{node.ErrNoRoute, errorPrefix + "cluster membership is changing, retry"},
		{node.ErrUnavailable, errorPrefix + "cluster unavailable"},
		{ErrReservedName, errorPrefix + "bucket names beginning with a NUL byte are reserved"},
	}
}

// replyForError returns the reply line (without line ending) for err.
// Errors not in the table are reported as "ERROR <message>", with the
// message kept to one line.
func replyForError(err error) string {
	var ue *node.UnreachableError
	if errors.As(err, &ue) {
		return errorPrefix + "node " + oneLine(ue.Node) + " unreachable"
	}
	for _, e := range errorReplies() {
		if errors.Is(err, e.err) {
			return e.reply
		}
	}
	return errorPrefix + oneLine(err.Error())
}

// errorForReply returns the error a reply line stands for, or nil if the
// line is not an error reply.
func errorForReply(line string) error {
	for _, e := range errorReplies() {
		if line == e.reply {
			return e.err
		}
	}
	if msg, ok := strings.CutPrefix(line, errorPrefix); ok {
		if name, ok := strings.CutPrefix(msg, "node "); ok {
			if name, ok := strings.CutSuffix(name, " unreachable"); ok {
				return &node.UnreachableError{Node: name}
			}
		}
		if bucket, ok := strings.CutPrefix(msg, "no node owns bucket "); ok {
			return fmt.Errorf("%w: %s", ring.ErrNoOwner, bucket)
		}
		return &ServerError{Msg: msg}
	}
	return nil
}

// ServerError is an "ERROR <message>" reply that has no sentinel error.
type ServerError struct{ Msg string }

func (e *ServerError) Error() string { return "textproto: server error: " + e.Msg }

// oneLine replaces the line breaks in s with spaces, byte by byte: any
// other byte, valid UTF-8 or not, is kept as it is (as Redis quotes a
// client's argument in an error).
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if c == '\r' || c == '\n' {
			b[i] = ' '
		}
	}
	return string(b)
}
