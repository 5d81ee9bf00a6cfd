// Package bench is "dboutique bench": a load generator for a D-Boutique
// node (text protocol or RESP) or any RESP server. It owns the command's
// flags and its report (bench.go), the run that drives the server with one
// goroutine per connection and measures latency (run.go), and the wire
// side, request encoders and bounded reply readers that allocate nothing
// per request (proto.go). Main is the whole command; package main only
// dispatches "dboutique bench" to it.
package bench
