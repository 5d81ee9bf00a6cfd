//go:build linux && !race

package store

import "syscall"

// mapMem maps n bytes of anonymous memory, zeroed; pages the system
// reserves nothing for until they are touched.
func mapMem(n int) ([]byte, error) {
	return syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
}

// unmap unmaps what mapMem mapped.
func unmap(b []byte) { _ = syscall.Munmap(b) }

// adviseFree gives b's pages back to the system: b reads as zeros after.
func adviseFree(b []byte) { _ = syscall.Madvise(b, syscall.MADV_DONTNEED) }
