package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// starlingBin is the path of the binary TestMain builds once.
var starlingBin string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if bin := os.Getenv("STARLING_E2E_BIN"); bin != "" {
		// A binary built elsewhere (a release build, or a snapshot while
		// the tree does not compile).
		abs, err := filepath.Abs(bin)
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
		starlingBin = abs
		return runTests(m)
	}
	dir, err := os.MkdirTemp("", "starling-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	starlingBin = filepath.Join(dir, "starling")
	args := []string{"build", "-o", starlingBin}
	if os.Getenv("STARLING_E2E_RACE") == "1" {
		args = append(args, "-race")
	}
	args = append(args, "github.com/starlingmq/starling/cmd/starling")
	build := exec.Command("go", args...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building starling:", err)
		return 1
	}
	return runTests(m)
}

func runTests(m *testing.M) int {
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: goroutines leaked:", err)
			return 1
		}
	}
	return code
}

// requireServices reports whether a missing external program fails the
// test instead of skipping it (as CI runs).
func requireServices() bool { return os.Getenv("STARLING_REQUIRE_SERVICES") == "1" }

// needProgram returns the path of an external program, skipping the test
// when it is missing (failing it under STARLING_REQUIRE_SERVICES=1).
func needProgram(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		missing(t, "%s not found on PATH (%s)", name, installHint(name))
	}
	return p
}

// haveProgram reports whether an external program is on PATH. When it is
// not, the test goes on without the parts that need it (logging why), or
// fails under STARLING_REQUIRE_SERVICES=1.
func haveProgram(t testing.TB, name string) bool {
	t.Helper()
	if _, err := exec.LookPath(name); err == nil {
		return true
	}
	if requireServices() {
		t.Fatalf("STARLING_REQUIRE_SERVICES=1 but %s not found on PATH (%s)", name, installHint(name))
	}
	t.Logf("%s not found on PATH (%s): skipping the checks that use it", name, installHint(name))
	return false
}

func installHint(name string) string {
	switch name {
	case "mosquitto_pub", "mosquitto_sub", "mosquitto_passwd":
		return "apt-get install -y mosquitto-clients"
	case "haproxy":
		return "apt-get install -y haproxy"
	case "stdbuf":
		return "coreutils"
	}
	return "install it"
}

// missing skips or fails for a missing external service.
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if requireServices() {
		t.Fatalf("STARLING_REQUIRE_SERVICES=1 but %s", msg)
	}
	t.Skip(msg)
}

// pythonPaho is the system Python, which has paho-mqtt from Debian's
// python3-paho-mqtt (the pyenv python3 on PATH does not).
const pythonPaho = "/usr/bin/python3"

func needPythonPaho(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(pythonPaho); err != nil {
		missing(t, "%s not found", pythonPaho)
	}
	out, err := exec.Command(pythonPaho, "-c", "import paho.mqtt.client").CombinedOutput()
	if err != nil {
		missing(t, "%s has no paho-mqtt (apt-get install -y python3-paho-mqtt): %v: %s", pythonPaho, err, out)
	}
	return pythonPaho
}

// eventually polls cond every 20 ms until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %s", timeout, fmt.Sprintf(format, args...))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePort returns a loopback TCP port that was free a moment ago. The
// caller must cope with losing a race for it.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	p := l.Addr().(*net.TCPAddr).Port
	if p == 1883 {
		// Never: Mosquitto owns it. Vanishingly unlikely from :0 anyway.
		return freePort(t)
	}
	return p
}

// syncBuffer is a bytes.Buffer safe for a writer goroutine and readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// broker is one running starling process.
type broker struct {
	t      testing.TB
	Ports  []int  // Ports[0] is the main MQTT listener
	Dir    string // the test's temp dir with the config file
	Config string // path of the config file
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // Wait's result, valid after done
}

// Port is the first listener's port.
func (b *broker) Port() int { return b.Ports[0] }

// Addr is host:port of the first listener.
func (b *broker) Addr() string { return "127.0.0.1:" + strconv.Itoa(b.Ports[0]) }

// Log returns what the broker wrote to stderr so far.
func (b *broker) Log() string { return b.stderr.String() }

// Exited reports whether the process has ended.
func (b *broker) Exited() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the broker.
func (b *broker) Signal(sig os.Signal) {
	b.t.Helper()
	if err := b.cmd.Process.Signal(sig); err != nil {
		b.t.Fatalf("signal %v: %v", sig, err)
	}
}

// brokerSpec describes a broker to start.
type brokerSpec struct {
	// Ports is the number of free ports to pick (default 1).
	Ports int
	// Config renders the configuration file for the chosen ports; nil
	// means no -c (Args then usually holds -p).
	Config func(ports []int) string
	// Args renders extra command-line arguments for the chosen ports.
	Args func(ports []int) []string
	// NoWait lists port indexes not to wait on (none by default).
	NoWait map[int]bool
}

// plainConfig is a single anonymous MQTT listener on 127.0.0.1 with debug
// logging, plus extra lines.
func plainConfig(extra ...string) brokerSpec {
	return brokerSpec{Config: func(p []int) string {
		return fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\nlog_level debug\n%s\n", p[0], strings.Join(extra, "\n"))
	}}
}

// startBroker starts a starling process for spec and waits until every
// port accepts connections. It retries with fresh ports when it loses a
// race for one. Cleanup stops the process (SIGTERM, SIGKILL after 5 s)
// and logs its stderr if the test failed.
func startBroker(t testing.TB, spec brokerSpec) *broker {
	t.Helper()
	n := max(spec.Ports, 1)
	dir := t.TempDir()
	var lastLog string
	for attempt := range 5 {
		ports := make([]int, n)
		for i := range ports {
			ports[i] = freePort(t)
		}
		b := &broker{t: t, Ports: ports, Dir: dir, stderr: &syncBuffer{}, done: make(chan struct{})}
		var args []string
		if spec.Config != nil {
			b.Config = filepath.Join(dir, "starling.conf")
			if err := os.WriteFile(b.Config, []byte(spec.Config(ports)), 0o600); err != nil {
				t.Fatal(err)
			}
			args = append(args, "-c", b.Config)
		}
		if spec.Args != nil {
			args = append(args, spec.Args(ports)...)
		}
		b.cmd = exec.Command(starlingBin, args...)
		b.cmd.Stdout = b.stderr
		b.cmd.Stderr = b.stderr
		b.cmd.Dir = dir
		if err := b.cmd.Start(); err != nil {
			t.Fatalf("start starling: %v", err)
		}
		go func() {
			b.err = b.cmd.Wait()
			close(b.done)
		}()
		ok := b.waitReady(spec.NoWait)
		if ok {
			t.Cleanup(b.stop)
			return b
		}
		b.kill()
		lastLog = b.Log()
		if !strings.Contains(lastLog, "address already in use") {
			t.Fatalf("starling did not start (attempt %d, args %q): exit %v\n%s", attempt+1, args, b.err, lastLog)
		}
	}
	t.Fatalf("starling did not start after 5 attempts (port races):\n%s", lastLog)
	return nil
}

// waitReady waits until every port accepts a TCP connection; false if the
// process exited first.
func (b *broker) waitReady(skip map[int]bool) bool {
	deadline := time.Now().Add(10 * time.Second)
	for i, p := range b.Ports {
		if skip[i] {
			continue
		}
		addr := "127.0.0.1:" + strconv.Itoa(p)
		for {
			if b.Exited() {
				return false
			}
			c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				b.t.Fatalf("starling: port %d not accepting after 10 s:\n%s", p, b.Log())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return true
}

// kill ends the process at once and waits for it.
func (b *broker) kill() {
	_ = b.cmd.Process.Kill()
	<-b.done
}

// stop is the cleanup: SIGTERM, SIGKILL after 5 s.
func (b *broker) stop() {
	if !b.Exited() {
		_ = b.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-b.done:
			if b.err != nil {
				b.t.Errorf("starling exited with %v after SIGTERM (want status 0)", b.err)
			}
		case <-time.After(5 * time.Second):
			b.t.Errorf("starling did not exit within 5 s of SIGTERM; killing it")
			b.kill()
		}
	}
	if log := b.Log(); strings.Contains(log, "WARNING: DATA RACE") || strings.Contains(log, "panic: ") {
		b.t.Errorf("starling reported a data race or a panic")
	}
	if b.t.Failed() {
		b.t.Logf("starling stderr (%s):\n%s", b.cmd.Args, b.Log())
	}
}

// waitExit waits up to d for the process to exit and returns its error.
func (b *broker) waitExit(d time.Duration) (error, bool) {
	select {
	case <-b.done:
		return b.err, true
	case <-time.After(d):
		return nil, false
	}
}

// cmdResult is what an external command did.
type cmdResult struct {
	Stdout, Stderr string
	Err            error // nil on exit status 0
}

func (r cmdResult) ExitCode() int {
	var ee *exec.ExitError
	if errors.As(r.Err, &ee) {
		return ee.ExitCode()
	}
	if r.Err != nil {
		return -1
	}
	return 0
}

// run runs a program to completion (bounded by timeout).
func run(t testing.TB, timeout time.Duration, name string, args ...string) cmdResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s timed out after %v: %w", name, timeout, err)
	}
	return cmdResult{Stdout: out.String(), Stderr: errb.String(), Err: err}
}

// mustRun runs a program and fails the test unless it exits 0.
func mustRun(t testing.TB, timeout time.Duration, name string, args ...string) cmdResult {
	t.Helper()
	r := run(t, timeout, name, args...)
	if r.Err != nil {
		t.Fatalf("%s %q: %v\nstdout: %s\nstderr: %s", name, args, r.Err, r.Stdout, r.Stderr)
	}
	return r
}

// bgCmd is an external program running in the background.
type bgCmd struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan struct{}
	err            error
}

// startBg starts a program in the background; cleanup kills it if it is
// still running.
func startBg(t testing.TB, name string, args ...string) *bgCmd {
	t.Helper()
	c := &bgCmd{cmd: exec.Command(name, args...), stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	c.cmd.Stdout, c.cmd.Stderr = c.stdout, c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		select {
		case <-c.done:
		default:
			_ = c.cmd.Process.Kill()
			<-c.done
		}
		if t.Failed() {
			t.Logf("%s %q stdout:\n%s\nstderr:\n%s", name, args, c.stdout.String(), c.stderr.String())
		}
	})
	return c
}

// wait waits up to d for the program to exit.
func (c *bgCmd) wait(t testing.TB, d time.Duration) error {
	t.Helper()
	select {
	case <-c.done:
		return c.err
	case <-time.After(d):
		t.Fatalf("%q still running after %v\nstdout: %s\nstderr: %s", c.cmd.Args, d, c.stdout.String(), c.stderr.String())
		return nil
	}
}
