package meta

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no goroutine outlives the tests. raft's transport
// starts a goroutine per accepted connection that ends only when the
// connection closes, and a leadership-transfer watcher that ends after
// ElectionTimeout; raft.Shutdown waits for neither. Registry.Close closes
// every connection it knows of, so they end shortly after, within
// VerifyTestMain's retries: nothing needs to be ignored.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
