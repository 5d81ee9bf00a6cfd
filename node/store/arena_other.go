//go:build !linux || race

package store

import "errors"

// Elsewhere than on Linux the arena takes its blocks from the Go heap; so
// does a build with the race detector, which sees only the Go heap: there
// the tables' memory is checked for races like any other.

func mapMem(int) ([]byte, error) { return nil, errors.New("store: no mmap here") }
func unmap([]byte)               {}
func adviseFree([]byte)          {}
