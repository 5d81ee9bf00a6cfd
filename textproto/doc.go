// Package textproto owns D-Boutique's client-facing protocols: the server
// that speaks them (Server), a Go client for the text protocol (Client),
// and the server's request metrics (Metrics).
//
// One port speaks two protocols, chosen per connection by its first byte:
//
//   - The text protocol of docs/protocol.md: one request a line, words
//     separated by spaces or tabs, replies ending in "\r\n". The replies of
//     the original commands (CREATE, PUT, GET, DELETE) are a compatibility
//     contract and never change; DROP, BUCKETS, KEYS, SCAN, NODES, OWNER,
//     PING, AUTH, INFO, HELP and QUIT are extensions.
//   - RESP2, the protocol of Redis, when the first byte is '*' (resp.go,
//     resp_conn.go, and resp_commands.go, the one table of its commands):
//     buckets are Redis hashes (HSET, HGET, ...), plain keys (SET, GET)
//     live in buckets the node keeps for itself, and enough of the
//     connection commands (HELLO, CLIENT, COMMAND, ...) for redis-cli,
//     redis-benchmark and client libraries to work.
//
// The server reads requests of bounded size with a deadline, answers every
// request already buffered in order and flushes the replies once, and runs
// each operation through an Executor: a store.Store, or a node.Node that
// routes it through the cluster. Store requests that arrive together run as
// one batch when the Executor is a BatchExecutor, so that a node can forward
// a client's pipelined requests in one message. The listing commands (RESP's
// SCAN, KEYS, DBSIZE, RANDOMKEY and HSCAN, the text protocol's SCAN; scan.go)
// need an Executor that is also a Lister. Server errors map to wire
// replies, and wire replies back to the same sentinel errors, through one
// table (errors.go).
package textproto
