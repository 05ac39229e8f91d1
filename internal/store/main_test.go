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
	goleak.VerifyTestMain(m)
}
