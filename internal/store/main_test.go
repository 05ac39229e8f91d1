package store

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// envKillChild makes the test binary run killChild (see crash_test.go)
// instead of the tests: the crash test re-executes itself with it.
const envKillChild = "STARLING_STORE_KILL_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(envKillChild); dir != "" {
		killChild(dir)
		os.Exit(0)
	}
	// Pebble v2.1.7's Open registers its compaction scheduler and, when a
	// later step of Open fails, returns without unregistering it: one idle
	// goroutine (a 100 ms ticker) stays behind per failed Open. Only the
	// fault tests fail Opens; an unclosed DB would still show up through
	// its other goroutines (WAL flusher, cleanup manager).
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/cockroachdb/pebble/v2.(*ConcurrencyLimitScheduler).periodicGranter"))
}
