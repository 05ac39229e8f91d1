package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// needHAProxy returns the haproxy binary (often in /usr/sbin, which is not
// always on PATH).
func needHAProxy(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/haproxy"); err == nil {
		return "/usr/sbin/haproxy"
	}
	missing(t, "haproxy not found (apt-get install -y haproxy)")
	return ""
}

// startHAProxy runs haproxy in the foreground in front of backend: the
// first returned port sends PROXY v2 headers, the second PROXY v1.
func startHAProxy(t *testing.T, backend int) (v2Port, v1Port int) {
	t.Helper()
	bin := needHAProxy(t)
	dir := t.TempDir()
	var last string
	for range 5 {
		v2Port, v1Port = freePort(t), freePort(t)
		cfg := fmt.Sprintf(`global
    maxconn 100

defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s

frontend mqtt_v2
    bind 127.0.0.1:%d
    default_backend starling_v2

frontend mqtt_v1
    bind 127.0.0.1:%d
    default_backend starling_v1

backend starling_v2
    server s1 127.0.0.1:%d send-proxy-v2

backend starling_v1
    server s1 127.0.0.1:%d send-proxy
`, v2Port, v1Port, backend, backend)
		path := filepath.Join(dir, "haproxy.cfg")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		h := startBg(t, bin, "-db", "-f", path)
		up := func(p int) bool {
			c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(p), 200*time.Millisecond)
			if err == nil {
				c.Close()
			}
			return err == nil
		}
		eventually(t, 10*time.Second, func() bool { return exited(h) || (up(v2Port) && up(v1Port)) }, "haproxy listening")
		if !exited(h) {
			return v2Port, v1Port
		}
		last = h.stderr.String() + h.stdout.String()
		if !strings.Contains(last, "cannot bind") && !strings.Contains(last, "Address already in use") {
			t.Fatalf("haproxy exited: %v\n%s", h.err, last)
		}
	}
	t.Fatalf("haproxy could not bind after 5 attempts:\n%s", last)
	return 0, 0
}

// TestHAProxyProxyProtocol: behind HAProxy with send-proxy-v2 (and
// send-proxy), a listener with proxy_protocol true serves clients and
// logs their real address; a direct connection without a PROXY header is
// refused.
func TestHAProxyProxyProtocol(t *testing.T) {
	t.Parallel()
	needHAProxy(t)
	b := startBroker(t, brokerSpec{Ports: 2, Config: func(p []int) string {
		return fmt.Sprintf("allow_anonymous true\nlog_level debug\nlistener %d 127.0.0.1\nproxy_protocol true\n\nlistener %d 127.0.0.1\n", p[0], p[1])
	}})
	v2Port, v1Port := startHAProxy(t, b.Port())

	for _, tc := range []struct {
		name string
		port int
	}{{"v2", v2Port}, {"v1", v1Port}} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(tc.port), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			local := conn.LocalAddr().String()
			id := "via-haproxy-" + tc.name
			c, err := connectV5(t, conn, &paho.Connect{ClientID: id, CleanStart: true}, nil)
			if err != nil {
				t.Fatalf("connect through haproxy: %v", err)
			}
			c.sub(&paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "hap/" + tc.name, QoS: 1}}})
			direct := dialV5(t, "127.0.0.1:"+strconv.Itoa(b.Ports[1]), &paho.Connect{ClientID: "direct-" + tc.name, CleanStart: true}, nil)
			direct.pub(&paho.Publish{Topic: "hap/" + tc.name, QoS: 1, Payload: []byte("through the proxy")})
			if m := c.next(5 * time.Second); string(m.Payload) != "through the proxy" {
				t.Fatalf("got %q", m.Payload)
			}
			c.pub(&paho.Publish{Topic: "hap/" + tc.name, QoS: 1, Payload: []byte("from behind")})
			if m := c.next(5 * time.Second); string(m.Payload) != "from behind" {
				t.Fatalf("got %q", m.Payload)
			}

			line := regexp.MustCompile(`msg="client connected" client_id=` + regexp.QuoteMeta(id) + ` remote=(\S+)`)
			var remote string
			eventually(t, 5*time.Second, func() bool {
				if m := line.FindStringSubmatch(b.Log()); m != nil {
					remote = m[1]
					return true
				}
				return false
			}, "a debug log line for %s", id)
			if remote != local {
				t.Errorf("broker logged remote=%s for %s; want the client's own address %s (not haproxy's)", remote, id, local)
			}
		})
	}

	t.Run("direct connection without PROXY header refused", func(t *testing.T) {
		c, err := tryV5(t, b.Addr(), &paho.Connect{ClientID: "no-proxy-header", CleanStart: true}, nil)
		if err == nil {
			c.close()
			t.Fatal("a client without a PROXY header was served on a proxy_protocol listener")
		}
	})
}
