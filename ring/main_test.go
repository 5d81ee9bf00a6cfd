package ring

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them. The
// package starts none; this keeps it that way.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
