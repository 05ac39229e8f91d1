package testutil

import (
	"fmt"
	"net"
	"testing"
	"time"
)

// pollInterval is how often Eventually checks its condition.
const pollInterval = 10 * time.Millisecond

// Eventually calls cond every 10 ms until it returns true, and fails the
// test with t.Fatalf if it has not within the given time. msgAndArgs says
// what was awaited: a format string and its arguments, or any values to
// print. Like t.Fatalf, it must be called from the test's goroutine.
func Eventually(t testing.TB, within time.Duration, cond func() bool, msgAndArgs ...any) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %s", within, message(msgAndArgs))
		}
		<-tick.C
	}
}

// message formats Eventually's msgAndArgs.
func message(msgAndArgs []any) string {
	if len(msgAndArgs) == 0 {
		return "(no message)"
	}
	if format, ok := msgAndArgs[0].(string); ok {
		return fmt.Sprintf(format, msgAndArgs[1:]...)
	}
	return fmt.Sprint(msgAndArgs...)
}

// FreePort returns a loopback TCP port that was free a moment ago, for a
// process that must be told its port before it starts. Another process may
// take it in between: prefer listening on 127.0.0.1:0 where possible.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("FreePort: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatalf("FreePort: %v", err)
	}
	return port
}
