package node

import (
	"slices"
	"testing"
	"time"
)

func TestBackoffSteps(t *testing.T) {
	ms := time.Millisecond
	b := backoff{next: 5 * ms, most: 100 * ms}
	var got []time.Duration
	for range 7 {
		got = append(got, b.step())
	}
	if want := []time.Duration{5 * ms, 10 * ms, 20 * ms, 40 * ms, 80 * ms, 100 * ms, 100 * ms}; !slices.Equal(got, want) {
		t.Errorf("steps %v, want %v", got, want)
	}

	// The join loop changes most between waits: a node restarted with a
	// peer book and no --join, nobody answering (ProbeInterval 500ms,
	// RejoinTimeout 10s). Each wait is twice the last, capped by the
	// limit in force when it is taken.
	s := time.Second
	b = backoff{next: s / 2, most: s / 2}
	got = got[:0]
	for _, most := range []time.Duration{s / 2, 10 * s, 10 * s, 10 * s, 5 * s / 2, maxJoinBackoff, maxJoinBackoff, maxJoinBackoff} {
		b.most = most
		got = append(got, b.step())
	}
	if want := []time.Duration{s / 2, s, 2 * s, 4 * s, 5 * s / 2, 5 * s, 10 * s, 10 * s}; !slices.Equal(got, want) {
		t.Errorf("join steps %v, want %v", got, want)
	}
}
