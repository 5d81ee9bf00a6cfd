package store

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestFullBucketRefusesWrites: a bucket whose table has used every chunk
// index it can refuses a write that needs a new chunk with ErrBucketFull,
// through every way in, and changes nothing: no digest, count or meta
// moves, and the node does not panic. (The table is made full by hand: a
// full one holds 8 GiB or more.)
func TestFullBucketRefusesWrites(t *testing.T) {
	s := NewStore()
	ctx := context.Background()
	if _, err := s.Execute(ctx, Op{Kind: KindPutCreate, Bucket: "b", Key: "old", Value: "v"}); err != nil {
		t.Fatal(err)
	}
	r := s.load("b")
	r.mu.Lock()
	// Every chunk index taken, none spare, and no room at the tail.
	for len(r.tab.chunks)+1 < maxChunks {
		r.tab.chunks = append(r.tab.chunks, chunk{})
	}
	r.tab.spare = nil
	if r.tab.tail > 0 {
		c := &r.tab.chunks[r.tab.tail-1]
		c.used = int32(len(c.b))
	}
	r.mu.Unlock()
	digest, _ := s.Digest("b")
	stats := s.Stats()
	meta, _ := s.Meta("b")

	big := strings.Repeat("x", 1000)
	v := s.Clock().Now()
	for _, tt := range []struct {
		name string
		do   func() error
	}{
		{"PUTCREATE", func() error {
			_, err := s.Execute(ctx, Op{Kind: KindPutCreate, Bucket: "b", Key: "new", Value: big})
			return err
		}},
		{"PUT", func() error { return s.Put("b", "new", big) }},
		{"DELETE", func() error { return s.Delete("b", "old") }},
		{"SET NX", func() error {
			_, err := s.Execute(ctx, Op{Kind: KindSet, Bucket: "b", Key: "new", Value: big, Flags: FlagNX})
			return err
		}},
		{"ApplyEntry", func() error { return s.ApplyEntry("b", Entry{Key: "new", Value: big, Version: v + 1}) }},
		{"ApplyEntryLive", func() error {
			_, _, err := s.ApplyEntryLive("b", Entry{Key: "new", Value: big, Version: v + 2})
			return err
		}},
		{"Merge", func() error {
			_, err := s.Merge("b", BucketMeta{}, []Entry{{Key: "new", Value: big, Version: v + 3}})
			return err
		}},
	} {
		if err := tt.do(); !errors.Is(err, ErrBucketFull) {
			t.Errorf("%s to a full bucket: %v, want ErrBucketFull", tt.name, err)
		}
	}
	if d, _ := s.Digest("b"); d != digest {
		t.Errorf("the digest moved: %v, was %v", d, digest)
	}
	if st := s.Stats(); st != stats {
		t.Errorf("the stats moved: %+v, were %+v", st, stats)
	}
	if m, _ := s.Meta("b"); m != meta {
		t.Errorf("the meta moved: %+v, was %+v", m, meta)
	}
	if got, err := s.Get("b", "old"); err != nil || got != "v" {
		t.Errorf("Get old: %q, %v; want v", got, err)
	}
}
