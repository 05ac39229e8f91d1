package listener

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pires/go-proxyproto"
)

type wsDialOpts struct {
	path         string
	subprotocols []string
	tls          *tls.Config        // nil: ws://
	header       *proxyproto.Header // sent before anything else when set
}

// wsDial connects a coder/websocket client and returns it with the local
// address of its TCP socket.
func wsDial(t *testing.T, l *Listener, o wsDialOpts) (*websocket.Conn, string, error) {
	t.Helper()
	var (
		mu        sync.Mutex
		localAddr string
	)
	tr := &http.Transport{
		TLSClientConfig: o.tls,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			if o.header != nil {
				if _, err := o.header.WriteTo(c); err != nil {
					_ = c.Close()
					return nil, err
				}
			}
			mu.Lock()
			localAddr = c.LocalAddr().String()
			mu.Unlock()
			return c, nil
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	scheme := "ws"
	if o.tls != nil {
		scheme = "wss"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, scheme+"://"+l.Addr().String()+o.path, &websocket.DialOptions{
		HTTPClient:   &http.Client{Transport: tr},
		Subprotocols: o.subprotocols,
	})
	if resp != nil && resp.Body != nil && err != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		return nil, "", err
	}
	t.Cleanup(func() { _ = c.CloseNow() })
	c.SetReadLimit(-1)
	mu.Lock()
	defer mu.Unlock()
	return c, localAddr, nil
}

// wsRoundTrip sends msg as one binary message from the client, reads it on
// the server conn, sends reply back and checks the client gets it as binary.
func wsRoundTrip(t *testing.T, c *websocket.Conn, s net.Conn, msg, reply []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- c.Write(ctx, websocket.MessageBinary, msg) }()
	got := make([]byte, len(msg))
	_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(s, got); err != nil {
		t.Fatalf("server read: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("client write: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("server got %d bytes, not the %d sent", len(got), len(msg))
	}
	if _, err := s.Write(reply); err != nil {
		t.Fatalf("server write: %v", err)
	}
	typ, data, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("client read: %v", err)
	}
	if typ != websocket.MessageBinary {
		t.Errorf("server sent message type %v, want binary", typ)
	}
	if !bytes.Equal(data, reply) {
		t.Errorf("client got %q, want %q", data, reply)
	}
}

func TestWebSocket(t *testing.T) {
	tests := []struct {
		name         string
		path         string
		subprotocols []string
		wantProto    string
	}{
		{"mqtt subprotocol", "/mqtt", []string{"mqtt"}, "mqtt"},
		{"mqttv3.1 subprotocol", "/", []string{"mqttv3.1"}, "mqttv3.1"},
		{"mqtt among others", "/any/path?x=1", []string{"wamp", "mqtt"}, "mqtt"},
		{"no subprotocol, as Mosquitto allows", "/ws", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newListener(t, Config{WebSocket: true})
			ch := acceptAsync(t, l)
			c, local, err := wsDial(t, l, wsDialOpts{path: tt.path, subprotocols: tt.subprotocols})
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			if c.Subprotocol() != tt.wantProto {
				t.Errorf("subprotocol = %q, want %q", c.Subprotocol(), tt.wantProto)
			}
			s := awaitAccepted(t, ch, local)
			wsRoundTrip(t, c, s, []byte{0x10, 0x02, 0x00, 0x04}, []byte{0x20, 0x02, 0x00, 0x00})
			// Client first: the server's close handshake then ends at once
			// instead of waiting wsCloseTimeout for an idle peer.
			_ = c.CloseNow()
		})
	}
}

func TestWebSocketLargeMessage(t *testing.T) {
	l := newListener(t, Config{WebSocket: true})
	ch := acceptAsync(t, l)
	c, local, err := wsDial(t, l, wsDialOpts{path: "/mqtt", subprotocols: []string{"mqtt"}})
	if err != nil {
		t.Fatal(err)
	}
	s := awaitAccepted(t, ch, local)
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB, far over 32 KiB
	wsRoundTrip(t, c, s, big, big[:100000])
	_ = c.CloseNow()
}

func TestWebSocketTextMessageFailsRead(t *testing.T) {
	l := newListener(t, Config{WebSocket: true})
	ch := acceptAsync(t, l)
	c, local, err := wsDial(t, l, wsDialOpts{subprotocols: []string{"mqtt"}})
	if err != nil {
		t.Fatal(err)
	}
	s := awaitAccepted(t, ch, local)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	// The client reads, so it answers the server's close frame.
	clientErr := make(chan error, 1)
	go func() {
		_, _, err := c.Read(ctx)
		clientErr <- err
	}()
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.Read(make([]byte, 10)); err == nil {
		t.Fatal("reading a text message succeeded; MQTT over WebSocket is binary")
	}
	if got := websocket.CloseStatus(<-clientErr); got != websocket.StatusUnsupportedData {
		t.Errorf("client saw close status %v, want %v", got, websocket.StatusUnsupportedData)
	}
}

func TestWebSocketServerCloseIsGraceful(t *testing.T) {
	l := newListener(t, Config{WebSocket: true})
	ch := acceptAsync(t, l)
	c, local, err := wsDial(t, l, wsDialOpts{subprotocols: []string{"mqtt"}})
	if err != nil {
		t.Fatal(err)
	}
	s := awaitAccepted(t, ch, local)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	clientErr := make(chan error, 1)
	go func() {
		_, _, err := c.Read(ctx)
		clientErr <- err
	}()
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if d := time.Since(start); d >= wsCloseTimeout {
		t.Errorf("Close with a responsive peer took %s", d)
	}
	if got := websocket.CloseStatus(<-clientErr); got != websocket.StatusNormalClosure {
		t.Errorf("client saw close status %v, want normal closure", got)
	}
}

func TestWebSocketRefused(t *testing.T) {
	tests := []struct {
		name    string
		request string
		want    string // status line prefix
	}{
		{"foreign subprotocol only", "GET /mqtt HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: wamp, graphql-ws\r\n\r\n",
			"HTTP/1.1 400"},
		{"plain http", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 426"},
		{"bad version", "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
			"Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", "HTTP/1.1 400"},
		{"post", "POST / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 405"},
		{"not http", "\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newListener(t, Config{WebSocket: true, ReadHeaderTimeout: 500 * time.Millisecond})
			ch := acceptAsync(t, l)
			c := dialTCP(t, l.Addr().String())
			if _, err := io.WriteString(c, tt.request); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if tt.want != "" {
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					t.Fatalf("read response: %v", err)
				}
				_ = resp.Body.Close()
				if got := resp.Proto + " " + resp.Status; !strings.HasPrefix(got, tt.want) {
					t.Errorf("response %q, want %q", got, tt.want)
				}
			}
			expectClosedByServer(t, c)
			assertNothingAccepted(t, ch)
		})
	}
}

func TestWebSocketDialRefusesForeignSubprotocol(t *testing.T) {
	l := newListener(t, Config{WebSocket: true})
	ch := acceptAsync(t, l)
	if _, _, err := wsDial(t, l, wsDialOpts{subprotocols: []string{"chat"}}); err == nil {
		t.Fatal("dial with only a foreign subprotocol succeeded")
	}
	assertNothingAccepted(t, ch)
}

// TestWebSocketLayers covers wss, ws behind PROXY and wss behind PROXY:
// RemoteAddr shows through the WebSocket conn and PeerCertificates finds
// the client certificate under it.
func TestWebSocketLayers(t *testing.T) {
	p := newPKI(t)
	tests := []struct {
		name  string
		tls   bool
		proxy bool
	}{
		{"wss", true, false},
		{"ws behind proxy", false, true},
		{"wss behind proxy", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{WebSocket: true, ProxyProtocol: tt.proxy}
			o := wsDialOpts{path: "/mqtt", subprotocols: []string{"mqtt"}}
			if tt.tls {
				cfg.TLS = p.serverConfig(t, true)
				o.tls = p.clientConfig(true)
			}
			if tt.proxy {
				o.header = proxyHeader(t, 2, "203.0.113.50:40000", "203.0.113.1:8884")
			}
			l := newListener(t, cfg)
			ch := acceptAsync(t, l)
			c, local, err := wsDial(t, l, o)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			want := local
			if tt.proxy {
				want = "203.0.113.50:40000"
			}
			s := awaitAccepted(t, ch, want)
			certs := PeerCertificates(s)
			if tt.tls {
				if len(certs) == 0 || certs[0].Subject.CommonName != "client-alice" {
					t.Errorf("PeerCertificates = %v, want client-alice", certs)
				}
			} else if certs != nil {
				t.Errorf("PeerCertificates = %v, want nil", certs)
			}
			wsRoundTrip(t, c, s, []byte("ping"), []byte("pong"))
			_ = c.CloseNow()
		})
	}
}

func TestWebSocketMaxConnectionsReleasedOnClose(t *testing.T) {
	l := newListener(t, Config{WebSocket: true, MaxConnections: 1})
	ch := acceptAsync(t, l)
	c, local, err := wsDial(t, l, wsDialOpts{subprotocols: []string{"mqtt"}})
	if err != nil {
		t.Fatal(err)
	}
	s := awaitAccepted(t, ch, local)
	if _, _, err := wsDial(t, l, wsDialOpts{subprotocols: []string{"mqtt"}}); err == nil {
		t.Fatal("second WebSocket client got in over MaxConnections 1")
	}
	_ = c.CloseNow()
	start := time.Now()
	_ = s.Close()
	if d := time.Since(start); d > wsCloseTimeout+time.Second {
		t.Errorf("Close of a WebSocket conn whose peer is gone took %s", d)
	}
	if n := l.open.Load(); n != 0 {
		t.Fatalf("open = %d after Close, want 0", n)
	}
	ch = acceptAsync(t, l)
	c, local, err = wsDial(t, l, wsDialOpts{subprotocols: []string{"mqtt"}})
	if err != nil {
		t.Fatal(err)
	}
	awaitAccepted(t, ch, local)
	_ = c.CloseNow()
}
