package node

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

// Store holds buckets in memory. It is safe for concurrent use; the zero
// value is not usable, call NewStore.
//
// The directory of buckets is a sync.Map, read without locks; each bucket
// has its own RWMutex, so operations on different buckets never wait for each
// other and reads of one bucket run in parallel.
type Store struct {
	buckets sync.Map // bucket name (string) -> *bucket
}

type bucket struct {
	mu      sync.RWMutex      // guards dropped and data
	dropped bool              // set once, under mu, when the bucket leaves the directory
	data    map[string]string // key -> value
}

// NewStore returns an empty store.
func NewStore() *Store { return &Store{} }

// Execute applies op and returns its result. It is the single entry point
// through which routed and replicated operations reach the data. The context
// is accepted for the Executor contract; a local operation never blocks on
// anything but a bucket's lock.
func (s *Store) Execute(_ context.Context, op Op) (Result, error) {
	if err := op.Validate(); err != nil {
		return Result{}, err
	}
	switch op.Kind {
	case KindGet:
		v, err := s.Get(op.Bucket, op.Key)
		return Result{Value: v}, err
	case KindPut:
		return Result{}, s.Put(op.Bucket, op.Key, op.Value)
	case KindDelete:
		return Result{}, s.Delete(op.Bucket, op.Key)
	case KindCreate:
		return Result{}, s.Create(op.Bucket)
	case KindDrop:
		return Result{}, s.Drop(op.Bucket)
	case KindBuckets:
		return Result{Names: s.Buckets()}, nil
	case KindKeys:
		keys, err := s.Keys(op.Bucket)
		return Result{Names: keys}, err
	case KindNodes, KindOwner:
		return Result{}, fmt.Errorf("%w: %v needs a clustered node", ErrInvalidOp, op.Kind)
	}
	return Result{}, fmt.Errorf("%w: unknown kind %v", ErrInvalidOp, op.Kind)
}

// lookup returns the live bucket called name, or nil.
func (s *Store) lookup(name string) *bucket {
	v, ok := s.buckets.Load(name)
	if !ok {
		return nil
	}
	return v.(*bucket)
}

func notFound(name string) error {
	return fmt.Errorf("%w: %q", ErrBucketNotFound, name)
}

// Create makes an empty bucket called name. Creating a bucket that exists
// is not an error and keeps its contents.
func (s *Store) Create(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty bucket name", ErrInvalidOp)
	}
	for {
		b := s.lookup(name)
		if b == nil {
			v, loaded := s.buckets.LoadOrStore(name, &bucket{data: make(map[string]string)})
			if !loaded {
				return nil
			}
			b = v.(*bucket)
		}
		b.mu.RLock()
		dropped := b.dropped
		b.mu.RUnlock()
		if !dropped {
			return nil
		}
		// A concurrent Drop is removing this bucket; once it has left the
		// directory the next round creates a fresh one.
		s.buckets.CompareAndDelete(name, b)
	}
}

// Drop removes the bucket called name and all its keys.
func (s *Store) Drop(name string) error {
	b := s.lookup(name)
	if b == nil {
		return notFound(name)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped {
		return notFound(name)
	}
	b.dropped = true
	b.data = nil
	s.buckets.CompareAndDelete(name, b)
	return nil
}

// Put sets key to value in the bucket called name.
func (s *Store) Put(name, key, value string) error {
	b := s.lookup(name)
	if b == nil {
		return notFound(name)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped {
		return notFound(name)
	}
	b.data[key] = value
	return nil
}

// Get returns the value of key in the bucket called name. A missing key is
// ErrKeyNotFound; a missing bucket is ErrBucketNotFound.
func (s *Store) Get(name, key string) (string, error) {
	b := s.lookup(name)
	if b == nil {
		return "", notFound(name)
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.dropped {
		return "", notFound(name)
	}
	v, ok := b.data[key]
	if !ok {
		return "", ErrKeyNotFound
	}
	return v, nil
}

// Delete removes key from the bucket called name. Removing a missing key is
// not an error.
func (s *Store) Delete(name, key string) error {
	b := s.lookup(name)
	if b == nil {
		return notFound(name)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped {
		return notFound(name)
	}
	delete(b.data, key)
	return nil
}

// Buckets returns the names of all buckets, sorted. While buckets are
// being created and dropped it is not a snapshot of one instant: a bucket
// created or dropped during the call may or may not be listed.
func (s *Store) Buckets() []string {
	var names []string
	s.buckets.Range(func(k, _ any) bool {
		names = append(names, k.(string))
		return true
	})
	slices.Sort(names)
	return names
}

// Keys returns the keys of the bucket called name, sorted.
func (s *Store) Keys(name string) ([]string, error) {
	b := s.lookup(name)
	if b == nil {
		return nil, notFound(name)
	}
	b.mu.RLock()
	if b.dropped {
		b.mu.RUnlock()
		return nil, notFound(name)
	}
	keys := make([]string, 0, len(b.data))
	for k := range b.data {
		keys = append(keys, k)
	}
	b.mu.RUnlock()
	slices.Sort(keys)
	return keys, nil
}

// Len returns the number of keys in the bucket called name.
func (s *Store) Len(name string) (int, error) {
	b := s.lookup(name)
	if b == nil {
		return 0, notFound(name)
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.dropped {
		return 0, notFound(name)
	}
	return len(b.data), nil
}
