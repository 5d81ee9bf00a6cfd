// Package deadline owns the write deadline kept on a connection or stream
// by its writer, so that a peer that stops reading cannot hold the writer
// for ever. It depends on the standard library only, so that packages that
// must not pull in libp2p (textproto) share it with p2p.
//
// A Writer sets a deadline Timeout ahead before a write. Setting a deadline
// costs a timer update in the runtime, so it is moved only when it has come
// within a sixteenth of Timeout: each write has between 15/16 of Timeout
// and all of it to finish. A caller that needs every write to have at least
// d gives a Timeout of 16/15 d or more (p2p gives two frame timeouts for
// one).
package deadline
