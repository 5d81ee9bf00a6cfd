// Package wire holds the primitives of D-Boutique's binary encodings: the
// operations a node forwards (package store's Op and Result) and the
// messages between nodes (package node) are built from them.
//
// Lengths and counts are unsigned varints written minimally, so that every
// value has exactly one encoding; fixed-size integers are big-endian. A
// [Decoder] checks every length and count against the bytes that remain,
// so decoding allocates at most a small constant times the input's size
// (the transport caps that size), and the first malformed field makes it
// return zero values and, from [Decoder.Finish], an error wrapping
// [ErrCorrupt].
//
// The package is pure: no I/O, no goroutines, no state beyond a Decoder's.
package wire
