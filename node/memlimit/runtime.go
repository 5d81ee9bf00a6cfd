package memlimit

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// Defaults of RuntimeLimitConfig.
const (
	// DefaultStepFraction is RuntimeLimitConfig.Step, as a fraction of
	// the budget, when Step is 0: 1/64 (1 MiB of 64 MiB).
	DefaultStepFraction = 64
	// MinStep is the least default Step.
	MinStep = 256 << 10
	// DefaultRuntimeFloor is RuntimeLimitConfig.Floor when it is 0: twice
	// what an idle node's runtime holds (3.9 MB, 2.2 MB of it heap); under
	// load (20 clients writing 1 KiB values) it holds about 19 MB, 5.5 MB
	// of it live heap. Eviction keeps the tables from leaving it so little
	// (DefaultThreshold); the floor is for when it cannot.
	DefaultRuntimeFloor = 8 << 20
)

// RuntimeLimitConfig configures a RuntimeLimit.
type RuntimeLimitConfig struct {
	// Budget is the memory the Go runtime and the store's memory outside
	// the heap share: --maxmemory less Config.Reserve. Required.
	Budget int64
	// Step is how far the memory outside the heap moves before the
	// runtime's limit follows it, and the slack left below the budget
	// for what it grows by meanwhile; 0 means Budget/DefaultStepFraction,
	// at least MinStep. From 1 to less than Budget.
	Step int64
	// Floor is the least limit set, whatever the store holds: a runtime
	// held below its live heap collects back to back and passes its
	// limit all the same. 0 means DefaultRuntimeFloor, or Budget-Step if
	// that is less. From 1 to Budget-Step.
	Floor int64
	// Set sets the runtime's memory limit and returns the previous one:
	// debug.SetMemoryLimit for the binary, the one process-wide thing the
	// package does not do itself. Tests pass a fake. Required.
	Set func(int64) int64
}

func (c *RuntimeLimitConfig) validate() error {
	if c.Budget <= 0 {
		return fmt.Errorf("%w: runtime budget %d is not positive", ErrInvalidConfig, c.Budget)
	}
	if c.Set == nil {
		return fmt.Errorf("%w: a runtime limit needs a Set func", ErrInvalidConfig)
	}
	if c.Step == 0 {
		c.Step = min(max(c.Budget/DefaultStepFraction, MinStep), c.Budget/2)
	}
	if c.Step < 1 || c.Step >= c.Budget {
		return fmt.Errorf("%w: step %d is not from 1 to less than the budget %d", ErrInvalidConfig, c.Step, c.Budget)
	}
	if c.Floor == 0 {
		c.Floor = min(DefaultRuntimeFloor, c.Budget-c.Step)
	}
	if c.Floor < 1 || c.Floor > c.Budget-c.Step {
		return fmt.Errorf("%w: floor %d is not from 1 to the budget less the step, %d", ErrInvalidConfig, c.Floor, c.Budget-c.Step)
	}
	return nil
}

// A RuntimeLimit keeps the Go runtime's memory limit at what a budget
// leaves once the memory a store holds outside the Go heap (its tables:
// Footprint.OffHeap) is counted, so that the heap cannot grow into the
// memory the tables hold: the runtime's limit is
//
//	max(Budget − off-heap − Step, Floor)
//
// set again whenever the off-heap bytes moved by Step or more from where
// it was last set; in between they grow by less than Step, which the
// limit leaves free, so that the heap and the tables together stay under
// the budget. Follow is called with each reading of the off-heap bytes
// (a process meter does, on every Used); it takes a lock only to set the
// limit. A RuntimeLimit is safe for concurrent use.
type RuntimeLimit struct {
	cfg    RuntimeLimitConfig
	at     atomic.Int64 // the off-heap bytes the limit was last set for
	limit  atomic.Int64 // the limit last set
	mu     sync.Mutex   // serialises setting; Follow only TryLocks it
	writes atomic.Uint64
}

// NewRuntimeLimit validates cfg, fills its defaults and sets the runtime's
// limit for no memory outside the heap: Budget − Step. It returns the
// RuntimeLimit and the limit that was set before (to restore at the end).
func NewRuntimeLimit(cfg RuntimeLimitConfig) (*RuntimeLimit, int64, error) {
	if err := cfg.validate(); err != nil {
		return nil, 0, err
	}
	l := &RuntimeLimit{cfg: cfg}
	prev := l.set(0)
	return l, prev, nil
}

// Follow sets the runtime's limit for offHeap bytes outside the heap when
// they moved by Step or more since it was last set. Unless it sets the
// limit, it reads one atomic word and takes no lock; a call that finds
// another setting the limit leaves it to that one.
func (l *RuntimeLimit) Follow(offHeap int64) {
	if d := offHeap - l.at.Load(); d < l.cfg.Step && d > -l.cfg.Step {
		return
	}
	if !l.mu.TryLock() {
		return
	}
	defer l.mu.Unlock()
	if d := offHeap - l.at.Load(); d < l.cfg.Step && d > -l.cfg.Step {
		return // set meanwhile
	}
	l.set(offHeap)
}

// set sets the limit for offHeap bytes outside the heap and returns the
// previous limit; l.mu is held, or l is not shared yet.
func (l *RuntimeLimit) set(offHeap int64) int64 {
	limit := max(l.cfg.Budget-offHeap-l.cfg.Step, l.cfg.Floor)
	prev := l.cfg.Set(limit)
	l.limit.Store(limit)
	l.at.Store(offHeap)
	l.writes.Add(1)
	return prev
}

// Limit returns the runtime's limit as last set.
func (l *RuntimeLimit) Limit() int64 { return l.limit.Load() }

// Sets returns how many times the limit was set, NewRuntimeLimit's
// included.
func (l *RuntimeLimit) Sets() uint64 { return l.writes.Load() }

// Step returns Config.Step, its default filled.
func (l *RuntimeLimit) Step() int64 { return l.cfg.Step }
