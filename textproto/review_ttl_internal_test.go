package textproto

// Adversarial review of expiry (i14): TTL's conversion of the store's
// milliseconds to seconds rounds as Redis 7 does ((ms+500)/1000). (An
// attack that held; a failure other than "missing" is the command's error
// reply before ttlOf runs: replyRESP.)

import (
	"testing"

	"github.com/dboutique/dboutique/node/store"
)

func TestReviewTTLRounding(t *testing.T) {
	for _, c := range []struct {
		value  string
		millis bool
		want   int64
	}{
		{"", false, -1}, {"0", false, 0}, {"499", false, 0}, {"500", false, 1}, {"1499", false, 1},
		{"1500", false, 2}, {"1499", true, 1499}, {"0", true, 0},
	} {
		if got := ttlOf(store.Result{Value: c.value}, nil, c.millis); got != c.want {
			t.Errorf("ttlOf(%q, millis %v) = %d, want %d", c.value, c.millis, got, c.want)
		}
	}
	if got := ttlOf(store.Result{}, store.ErrKeyNotFound, false); got != -2 {
		t.Errorf("ttlOf of a missing key = %d, want -2", got)
	}
}
