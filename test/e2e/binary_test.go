package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// TestConfigCheck: `starling config check` prints the effective settings
// of a good file and exits 0; on a bad file it exits non-zero naming
// file:line of every problem.
func TestConfigCheck(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.conf")
	if err := os.WriteFile(good, []byte("# a comment\nallow_anonymous true\nmax_inflight_messages 7\n\nlistener 18999 127.0.0.1\nprotocol websockets\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := run(t, 10*time.Second, starlingBin, "config", "check", good)
	if r.Err != nil {
		t.Fatalf("config check of a good file: %v\n%s%s", r.Err, r.Stdout, r.Stderr)
	}
	for _, want := range []string{"allow_anonymous true", "max_inflight_messages 7", "listener 18999 127.0.0.1", "protocol websockets", "configuration OK"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("config check output lacks %q:\n%s", want, r.Stdout)
		}
	}

	bad := filepath.Join(dir, "bad.conf")
	if err := os.WriteFile(bad, []byte("allow_anonymous true\n# comment\nno_such_key 1\nmax_inflight_messages lots\nlistener 18999 127.0.0.1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = run(t, 10*time.Second, starlingBin, "config", "check", bad)
	if r.Err == nil || r.ExitCode() == 0 {
		t.Fatalf("config check of a file with an unknown key exited 0:\n%s", r.Stdout)
	}
	for _, want := range []string{"bad.conf:3:", "no_such_key", "bad.conf:4:", "max_inflight_messages"} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("config check error lacks %q:\n%s", want, r.Stderr)
		}
	}

	r = run(t, 10*time.Second, starlingBin, "config", "check", filepath.Join(dir, "missing.conf"))
	if r.Err == nil {
		t.Error("config check of a missing file exited 0")
	}
}

// TestVersionAndUsage: `starling version` prints the version; an unknown
// flag is a usage error (exit status 2).
func TestVersionAndUsage(t *testing.T) {
	t.Parallel()
	r := mustRun(t, 10*time.Second, starlingBin, "version")
	if !strings.HasPrefix(r.Stdout, "starling ") {
		t.Errorf("version output %q", r.Stdout)
	}
	r = run(t, 10*time.Second, starlingBin, "-no-such-flag")
	if r.ExitCode() != 2 {
		t.Errorf("unknown flag: exit status %d, want 2\n%s", r.ExitCode(), r.Stderr)
	}
}

// TestServePortFlag: `starling -p PORT -v` without a configuration file
// serves anonymous clients on 127.0.0.1:PORT and logs at debug level.
func TestServePortFlag(t *testing.T) {
	t.Parallel()
	b := startBroker(t, brokerSpec{Args: func(p []int) []string { return []string{"-p", strconv.Itoa(p[0]), "-v"} }})
	c := dialV5(t, b.Addr(), &paho.Connect{ClientID: "port-flag", CleanStart: true}, nil)
	c.sub(&paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "pf", QoS: 1}}})
	c.pub(&paho.Publish{Topic: "pf", QoS: 1, Payload: []byte("ok")})
	c.next(5 * time.Second)
	eventually(t, 5*time.Second, func() bool {
		return strings.Contains(b.Log(), `msg="client connected" client_id=port-flag`)
	}, "-v: debug log line for the client")
	if !strings.Contains(b.Log(), "127.0.0.1:"+strconv.Itoa(b.Port())) {
		t.Errorf("startup log does not name 127.0.0.1:%d:\n%s", b.Port(), b.Log())
	}
	// Local only: [::1] too when the machine has IPv6.
	if l, err := net.Listen("tcp6", "[::1]:0"); err == nil {
		l.Close()
		conn, err := net.DialTimeout("tcp6", "[::1]:"+strconv.Itoa(b.Port()), 2*time.Second)
		if err != nil {
			t.Errorf("-p %d: not serving on [::1]: %v", b.Port(), err)
		} else {
			conn.Close()
		}
	}
}

// TestSIGTERMShutdown: on SIGTERM the broker tells MQTT 5 clients
// "server shutting down" (DISCONNECT 0x8B), closes MQTT 3.1.1 clients and
// exits 0 within 5 s.
func TestSIGTERMShutdown(t *testing.T) {
	t.Parallel()
	b := startBroker(t, plainConfig())
	v5s := make([]*v5Client, 3)
	for i := range v5s {
		v5s[i] = dialV5(t, b.Addr(), &paho.Connect{ClientID: fmt.Sprintf("term5-%d", i), CleanStart: true}, nil)
		v5s[i].sub(&paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "term/#", QoS: 1}}})
	}
	lost := make(chan error, 1)
	v3, _ := v3Client(t, "tcp://"+b.Addr(), "term3", func(o *mqtt.ClientOptions) {
		o.SetConnectionLostHandler(func(_ mqtt.Client, err error) { lost <- err })
	})
	wait(t, "subscribe", v3.Subscribe("term/#", 1, nil))

	start := time.Now()
	b.Signal(syscall.SIGTERM)
	err, ok := b.waitExit(5 * time.Second)
	if !ok {
		t.Fatalf("still running 5 s after SIGTERM:\n%s", b.Log())
	}
	t.Logf("exited %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	for _, c := range v5s {
		select {
		case d := <-c.serverDisconnect:
			if d.ReasonCode != 0x8B {
				t.Errorf("%s: DISCONNECT reason %#x, want 0x8B (server shutting down)", c.name, d.ReasonCode)
			}
		case <-time.After(2 * time.Second):
			t.Errorf("%s: no DISCONNECT from the server on shutdown", c.name)
		}
	}
	select {
	case <-lost:
	case <-time.After(2 * time.Second):
		t.Error("MQTT 3.1.1 client: connection not closed on shutdown")
	}
	if !strings.Contains(b.Log(), "stopped") {
		t.Errorf("log lacks the final \"stopped\" line:\n%s", b.Log())
	}
	if c, err := net.DialTimeout("tcp", b.Addr(), time.Second); err == nil {
		c.Close()
		t.Error("port still accepting after exit")
	}
}

// TestLogTypeAllLogsConnections: with Mosquitto's `log_type all` (and no
// Starling log_level), a client's connection is logged with its client id
// and address, as Mosquitto logs "New client connected from ADDR as ID".
func TestLogTypeAllLogsConnections(t *testing.T) {
	t.Parallel()
	b := startBroker(t, brokerSpec{Config: func(p []int) string {
		return fmt.Sprintf("log_type all\nallow_anonymous true\nlistener %d 127.0.0.1\n", p[0])
	}})
	conn, err := net.DialTimeout("tcp", b.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	local := conn.LocalAddr().String()
	if _, err := connectV5(t, conn, &paho.Connect{ClientID: "logged-client", CleanStart: true}, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, func() bool {
		for line := range strings.SplitSeq(b.Log(), "\n") {
			if strings.Contains(line, "logged-client") && strings.Contains(line, local) {
				return true
			}
		}
		return false
	}, "log_type all: a log line naming client logged-client and its address %s", local)
}
