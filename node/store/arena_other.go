//go:build !linux

package store

import "errors"

// Elsewhere than on Linux the arena takes its blocks from the Go heap.

func mapMem(int) ([]byte, error) { return nil, errors.New("store: no mmap here") }
func unmap([]byte)               {}
func adviseFree([]byte)          {}
