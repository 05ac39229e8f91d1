package listener

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// freePort returns a port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestHAProxyInterop puts a real HAProxy in front of a PROXY-protocol
// listener, as in a production cluster, and checks the listener sees the
// client's own address.
func TestHAProxyInterop(t *testing.T) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if os.Getenv("STARLING_REQUIRE_SERVICES") == "1" {
			t.Fatal("haproxy not found in PATH and STARLING_REQUIRE_SERVICES=1 (apt-get install -y haproxy)")
		}
		t.Skip("haproxy not found in PATH; install it (apt-get install -y haproxy) or set STARLING_REQUIRE_SERVICES=1 to make this a failure")
	}
	for _, mode := range []string{"send-proxy-v2", "send-proxy"} {
		t.Run(mode, func(t *testing.T) {
			l := newListener(t, Config{ProxyProtocol: true})
			front := freePort(t)
			dir := t.TempDir()
			cfgPath := filepath.Join(dir, "haproxy.cfg")
			cfg := fmt.Sprintf(`global
    maxconn 64

defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend mqtt
    bind 127.0.0.1:%d
    default_backend starling

backend starling
    server s1 %s %s
`, front, l.Addr().String(), mode)
			if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			cmd := exec.Command(bin, "-db", "-f", cfgPath)
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatalf("start haproxy: %v", err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				<-exited
				if t.Failed() {
					t.Logf("haproxy output:\n%s", out.String())
				}
			})

			frontAddr := fmt.Sprintf("127.0.0.1:%d", front)
			var c net.Conn
			eventually(t, 10*time.Second, func() bool {
				select {
				case err := <-exited:
					exited <- err
					t.Fatalf("haproxy exited: %v\n%s", err, out.String())
				default:
				}
				c, err = net.DialTimeout("tcp", frontAddr, time.Second)
				return err == nil
			}, "haproxy listening on "+frontAddr)
			t.Cleanup(func() { _ = c.Close() })

			// HAProxy connects to the backend (and sends the header) when
			// the client's first bytes arrive, or at once; either way the
			// echo below drives it.
			ch := acceptAsync(t, l)
			if _, err := c.Write([]byte{0x10, 0x00}); err != nil {
				t.Fatal(err)
			}
			s := awaitAccepted(t, ch, c.LocalAddr().String())
			buf := make([]byte, 2)
			_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := s.Read(buf); err != nil {
				t.Fatal(err)
			}
			echo(t, c, s, []byte("through haproxy"))
		})
	}
}
