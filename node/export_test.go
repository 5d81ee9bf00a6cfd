package node

import "fmt"

// The messages' type bytes and names (messages.go), for the tests of
// package node_test that hang or count messages by type.
const (
	MsgPing      = msgPing
	MsgOp        = msgOp
	MsgBatch     = msgBatch
	MsgReplicate = msgReplicate
	MsgMerge     = msgMerge
	MsgSums      = msgSums
	MsgScan      = msgScan
	ScanNames    = scanNames // msgScan's mode byte for a page of names
)

// MessageName names a message by its type byte.
func MessageName(t byte) string {
	if m := messages(); int(t) < len(m) && m[t].name != "" {
		return m[t].name
	}
	return fmt.Sprintf("type%d", t)
}
