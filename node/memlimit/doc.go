// Package memlimit owns the memory limit of a node (--maxmemory and
// --maxmemory-policy, with Redis's names and meanings): reading sizes
// and policies ([ParseSize], [ParsePolicy]). It is pure: no goroutines, no
// I/O, and no package-level state, so that many nodes run in one process.
//
// Errors are the sentinel values in errors.go, wrapped with %w where
// context is added; callers test them with errors.Is.
package memlimit
