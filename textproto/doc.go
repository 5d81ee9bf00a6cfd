// Package textproto owns D-Boutique's client-facing line protocol: the
// server that speaks it (Server) and a Go client for it (Client).
//
// The protocol is the one in docs/protocol.md: one request a line, words
// separated by spaces or tabs, replies ending in "\r\n". The replies of the
// original commands (CREATE, PUT, GET, DELETE) are a compatibility contract
// and never change; DROP, BUCKETS, KEYS, NODES, OWNER, PING, AUTH, HELP and
// QUIT are extensions.
//
// The server reads lines of bounded length with a deadline, answers every
// request already buffered in order and flushes the replies once, and runs
// each operation through an Executor: a node.Store, or a node.Node that
// routes it through the cluster. Store requests that arrive together run as
// one batch when the Executor is a BatchExecutor, so that a node can forward
// a client's pipelined requests in one message. Server errors map to wire
// replies, and wire
// replies back to the same sentinel errors, through one table (errors.go).
package textproto
