package listener

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

func TestTCPEcho(t *testing.T) {
	l := newListener(t, Config{})
	c := dialTCP(t, l.Addr().String())
	s := acceptOne(t, l)
	if got, want := s.RemoteAddr().String(), c.LocalAddr().String(); got != want {
		t.Errorf("RemoteAddr = %s, want %s", got, want)
	}
	if _, ok := s.(*net.TCPConn); !ok {
		t.Errorf("plain listener without limits should hand out *net.TCPConn, got %T", s)
	}
	echo(t, c, s, []byte("hello mqtt"))
	if certs := PeerCertificates(s); certs != nil {
		t.Errorf("PeerCertificates on plain TCP = %v, want nil", certs)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"udp network", Config{Network: "udp", Address: "127.0.0.1:0"}, "unsupported network"},
		{"bad address", Config{Address: "127.0.0.1:notaport"}, "listener:"},
		{"negative max", Config{Address: "127.0.0.1:0", MaxConnections: -1}, "MaxConnections"},
		{"negative timeout", Config{Address: "127.0.0.1:0", ReadHeaderTimeout: -time.Second}, "ReadHeaderTimeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := New(tt.cfg)
			if err == nil {
				_ = l.Close()
				t.Fatal("New succeeded, want error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestNetworkTCP4(t *testing.T) {
	l := newListener(t, Config{Network: "tcp4"})
	c := dialTCP(t, l.Addr().String())
	s := acceptOne(t, l)
	echo(t, c, s, []byte("v4"))
}

func TestAcceptAfterCloseAndDoubleClose(t *testing.T) {
	l, err := New(Config{Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close = %v, want net.ErrClosed", err)
	}
	if _, err := net.DialTimeout("tcp", l.Addr().String(), time.Second); err == nil {
		t.Error("dial succeeded after Close")
	}
}

func TestAcceptUnblocksOnClose(t *testing.T) {
	l, err := New(Config{Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ch := acceptAsync(t, l)
	_ = l.Close()
	select {
	case r := <-ch:
		if !errors.Is(r.err, net.ErrClosed) {
			t.Fatalf("Accept = %v, want net.ErrClosed", r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept still blocked after Close")
	}
}

// assertNothingAccepted fails if the pending Accept has returned.
func assertNothingAccepted(t *testing.T, ch <-chan acceptResult) {
	t.Helper()
	select {
	case r := <-ch:
		if r.err == nil {
			_ = r.c.Close()
			t.Fatalf("Accept returned a conn that should have been refused (remote %s)", r.c.RemoteAddr())
		}
		t.Fatalf("Accept failed: %v", r.err)
	default:
	}
}

// awaitAccepted waits for the pending Accept and checks the remote address.
func awaitAccepted(t *testing.T, ch <-chan acceptResult, wantRemote string) net.Conn {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("Accept: %v", r.err)
		}
		t.Cleanup(func() { _ = r.c.Close() })
		if got := r.c.RemoteAddr().String(); got != wantRemote {
			t.Fatalf("accepted conn from %s, want %s", got, wantRemote)
		}
		return r.c
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return within 5s")
		return nil
	}
}

func TestTLS(t *testing.T) {
	p := newPKI(t)
	tests := []struct {
		name        string
		requireCert bool
		tlsVersion  string
		clientCert  bool
		clientMax   uint16
		wantOK      bool
	}{
		{name: "require_certificate with cert", requireCert: true, clientCert: true, wantOK: true},
		{name: "require_certificate without cert", requireCert: true, clientCert: false, wantOK: false},
		{name: "no client cert needed", requireCert: false, clientCert: false, wantOK: true},
		{name: "tlsv1.2 client on tlsv1.2 listener", tlsVersion: "tlsv1.2", clientMax: tls.VersionTLS12, wantOK: true},
		{name: "tlsv1.2 client on tlsv1.3 listener", tlsVersion: "tlsv1.3", clientMax: tls.VersionTLS12, wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srvCfg, err := TLSConfig(TLSOptions{
				CAFile:             p.path("ca.pem"),
				CertFile:           p.path("server.pem"),
				KeyFile:            p.path("server.key"),
				RequireCertificate: tt.requireCert,
				TLSVersion:         tt.tlsVersion,
			})
			if err != nil {
				t.Fatal(err)
			}
			l := newListener(t, Config{TLS: srvCfg})
			ch := acceptAsync(t, l)
			cliCfg := p.clientConfig(tt.clientCert)
			cliCfg.MaxVersion = tt.clientMax
			raw := dialTCP(t, l.Addr().String())
			c := tls.Client(raw, cliCfg)
			hsErr := c.Handshake()

			if !tt.wantOK {
				// With TLS 1.3 the client may finish its handshake before the
				// server rejects it; either way the server must close it.
				if hsErr == nil {
					expectClosedByServer(t, c)
				}
				assertNothingAccepted(t, ch)
				good := tls.Client(dialTCP(t, l.Addr().String()), &tls.Config{
					RootCAs: p.caPool, ServerName: "localhost", Certificates: []tls.Certificate{p.client},
				})
				if err := good.Handshake(); err != nil {
					t.Fatalf("good client handshake: %v", err)
				}
				awaitAccepted(t, ch, good.LocalAddr().String())
				return
			}
			if hsErr != nil {
				t.Fatalf("handshake: %v", hsErr)
			}
			s := awaitAccepted(t, ch, raw.LocalAddr().String())
			echo(t, c, s, []byte("over tls"))
			certs := PeerCertificates(s)
			if tt.clientCert && tt.requireCert {
				if len(certs) == 0 || certs[0].Subject.CommonName != "client-alice" {
					t.Fatalf("PeerCertificates = %v, want client-alice first", certs)
				}
				if !certs[0].Equal(p.clientLeaf) {
					t.Error("PeerCertificates[0] is not the client's certificate")
				}
			} else if certs != nil {
				t.Errorf("PeerCertificates = %v, want nil", certs)
			}
		})
	}
}

// tcpAddr parses host:port for test headers.
func tcpAddr(t *testing.T, s string) *net.TCPAddr {
	t.Helper()
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func proxyHeader(t *testing.T, version byte, src, dst string) *proxyproto.Header {
	t.Helper()
	s, d := tcpAddr(t, src), tcpAddr(t, dst)
	tp := proxyproto.TCPv4
	if s.IP.To4() == nil {
		tp = proxyproto.TCPv6
	}
	return &proxyproto.Header{
		Version:           version,
		Command:           proxyproto.PROXY,
		TransportProtocol: tp,
		SourceAddr:        s,
		DestinationAddr:   d,
	}
}

func TestProxyProtocol(t *testing.T) {
	local := &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}
	tests := []struct {
		name       string
		header     func(t *testing.T) []byte
		wantRemote string // "" means the socket's own peer
		wantLocal  string
	}{
		{
			name:       "v1 tcp4",
			header:     headerBytes(proxyHeader, 1, "203.0.113.7:4711", "198.51.100.1:18830"),
			wantRemote: "203.0.113.7:4711", wantLocal: "198.51.100.1:18830",
		},
		{
			name:       "v1 tcp6",
			header:     headerBytes(proxyHeader, 1, "[2001:db8::7]:4711", "[2001:db8::1]:18830"),
			wantRemote: "[2001:db8::7]:4711", wantLocal: "[2001:db8::1]:18830",
		},
		{
			name:       "v2 tcp4",
			header:     headerBytes(proxyHeader, 2, "192.0.2.33:50000", "198.51.100.1:18830"),
			wantRemote: "192.0.2.33:50000", wantLocal: "198.51.100.1:18830",
		},
		{
			name:       "v2 tcp6",
			header:     headerBytes(proxyHeader, 2, "[2001:db8::33]:50000", "[2001:db8::1]:18830"),
			wantRemote: "[2001:db8::33]:50000", wantLocal: "[2001:db8::1]:18830",
		},
		{
			name: "v2 LOCAL (health check) keeps the socket address",
			header: func(t *testing.T) []byte {
				b, err := local.Format()
				if err != nil {
					t.Fatal(err)
				}
				return b
			},
		},
		{
			name:   "v1 UNKNOWN keeps the socket address",
			header: func(*testing.T) []byte { return []byte("PROXY UNKNOWN\r\n") },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newListener(t, Config{ProxyProtocol: true})
			c := dialTCP(t, l.Addr().String())
			// The header and the first MQTT bytes in one segment: bytes read
			// past the header must not be lost.
			first := append(tt.header(t), 0x10, 0x00)
			if _, err := c.Write(first); err != nil {
				t.Fatal(err)
			}
			s := acceptOne(t, l)
			wantRemote, wantLocal := tt.wantRemote, tt.wantLocal
			if wantRemote == "" {
				wantRemote, wantLocal = c.LocalAddr().String(), c.RemoteAddr().String()
			}
			if got := s.RemoteAddr().String(); got != wantRemote {
				t.Errorf("RemoteAddr = %s, want %s", got, wantRemote)
			}
			if got := s.LocalAddr().String(); got != wantLocal {
				t.Errorf("LocalAddr = %s, want %s", got, wantLocal)
			}
			buf := make([]byte, 2)
			_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := s.Read(buf[:1]); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Read(buf[1:]); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf, []byte{0x10, 0x00}) {
				t.Fatalf("bytes after header = %x, want 1000", buf)
			}
			echo(t, c, s, []byte("after proxy header"))
		})
	}
}

func headerBytes(mk func(*testing.T, byte, string, string) *proxyproto.Header, v byte, src, dst string) func(*testing.T) []byte {
	return func(t *testing.T) []byte {
		b, err := mk(t, v, src, dst).Format()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
}

func TestProxyProtocolRefusesMissingOrBadHeader(t *testing.T) {
	v2 := headerBytes(proxyHeader, 2, "192.0.2.1:1000", "192.0.2.2:2000")
	tests := []struct {
		name string
		send func(t *testing.T) []byte // nil: send nothing and stay silent
	}{
		{"mqtt connect without header", func(*testing.T) []byte {
			return []byte{0x10, 0x0c, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, 0}
		}},
		{"garbage v1", func(*testing.T) []byte { return []byte("PROXY GARBAGE here\r\n") }},
		{"v1 without crlf", func(*testing.T) []byte { return []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n\n") }},
		{"http request", func(*testing.T) []byte { return []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n") }},
		{"v2 with bad command", func(t *testing.T) []byte {
			b := v2(t)
			b[12] = 0x2f
			return b
		}},
		{"truncated v2 then silence", func(t *testing.T) []byte { return v2(t)[:14] }},
		{"silent client", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newListener(t, Config{ProxyProtocol: true, ReadHeaderTimeout: 300 * time.Millisecond})
			ch := acceptAsync(t, l)
			bad := dialTCP(t, l.Addr().String())
			if tt.send != nil {
				if _, err := bad.Write(tt.send(t)); err != nil {
					t.Fatal(err)
				}
			}
			expectClosedByServer(t, bad)
			assertNothingAccepted(t, ch)

			good := dialTCP(t, l.Addr().String())
			if _, err := good.Write(v2(t)); err != nil {
				t.Fatal(err)
			}
			awaitAccepted(t, ch, "192.0.2.1:1000")
		})
	}
}

func TestProxyProtocolThenTLS(t *testing.T) {
	p := newPKI(t)
	l := newListener(t, Config{ProxyProtocol: true, TLS: p.serverConfig(t, true)})
	raw := dialTCP(t, l.Addr().String())
	if _, err := proxyHeader(t, 2, "198.51.100.200:61000", "198.51.100.1:8883").WriteTo(raw); err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, p.clientConfig(true))
	if err := c.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	s := acceptOne(t, l)
	if got := s.RemoteAddr().String(); got != "198.51.100.200:61000" {
		t.Errorf("RemoteAddr = %s, want the PROXY source", got)
	}
	if certs := PeerCertificates(s); len(certs) == 0 || certs[0].Subject.CommonName != "client-alice" {
		t.Errorf("PeerCertificates = %v, want client-alice", certs)
	}
	echo(t, c, s, []byte("proxy then tls"))
}

func TestProxyProtocolTLSBeforeHeaderRefused(t *testing.T) {
	p := newPKI(t)
	l := newListener(t, Config{ProxyProtocol: true, TLS: p.serverConfig(t, false), ReadHeaderTimeout: time.Second})
	ch := acceptAsync(t, l)
	raw := dialTCP(t, l.Addr().String())
	c := tls.Client(raw, p.clientConfig(false))
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := c.Handshake(); err == nil {
		t.Fatal("TLS without PROXY header succeeded")
	}
	assertNothingAccepted(t, ch)
}

func TestMaxConnections(t *testing.T) {
	l := newListener(t, Config{MaxConnections: 2})
	addr := l.Addr().String()
	c1, c2 := dialTCP(t, addr), dialTCP(t, addr)
	s1, s2 := acceptOne(t, l), acceptOne(t, l)
	echo(t, c1, s1, []byte("one"))
	echo(t, c2, s2, []byte("two"))

	ch := acceptAsync(t, l)
	c3 := dialTCP(t, addr)
	expectClosedByServer(t, c3)
	assertNothingAccepted(t, ch)

	// Closing an accepted conn frees its slot, once: a double Close must
	// not free two.
	_ = s1.Close()
	_ = s1.Close()
	c4 := dialTCP(t, addr)
	s4 := awaitAccepted(t, ch, c4.LocalAddr().String())
	echo(t, c4, s4, []byte("four"))

	c5 := dialTCP(t, addr)
	expectClosedByServer(t, c5)
}

func TestMaxConnectionsCountsConnsInSetup(t *testing.T) {
	l := newListener(t, Config{MaxConnections: 1, ProxyProtocol: true, ReadHeaderTimeout: time.Minute})
	silent := dialTCP(t, l.Addr().String())
	eventually(t, 5*time.Second, func() bool { return l.open.Load() == 1 }, "silent conn counted")
	extra := dialTCP(t, l.Addr().String())
	expectClosedByServer(t, extra)
	_ = silent.Close()
	eventually(t, 5*time.Second, func() bool { return l.open.Load() == 0 }, "slot freed when the silent client leaves")
}

// TestSlowClientDoesNotBlockAccept: a client stuck in the handshake must not
// delay others.
func TestSlowClientDoesNotBlockAccept(t *testing.T) {
	p := newPKI(t)
	l := newListener(t, Config{TLS: p.serverConfig(t, false), ProxyProtocol: true, ReadHeaderTimeout: time.Minute})
	for range 3 {
		slow := dialTCP(t, l.Addr().String())
		_, _ = slow.Write([]byte("PROX")) // a partial header, then nothing
	}
	raw := dialTCP(t, l.Addr().String())
	if _, err := proxyHeader(t, 1, "192.0.2.9:999", "192.0.2.1:8883").WriteTo(raw); err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, p.clientConfig(false))
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	s := acceptOne(t, l)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Accept took %s with slow clients around", d)
	}
	if s.RemoteAddr().String() != "192.0.2.9:999" {
		t.Errorf("RemoteAddr = %s", s.RemoteAddr())
	}
}

func TestCloseWhileClientMidHandshake(t *testing.T) {
	p := newPKI(t)
	tests := []struct {
		name string
		cfg  Config
		send []byte
	}{
		{"tls", Config{TLS: p.serverConfig(t, false)}, []byte{0x16, 0x03, 0x01}},
		// A v1 line split over reads is refused at once by go-proxyproto; a
		// partial signature is what keeps the server waiting.
		{"proxy", Config{ProxyProtocol: true}, []byte("PROX")},
		{"websocket", Config{WebSocket: true}, []byte("GET /mqtt HTTP/1.1\r\nHost: x\r\n")},
		{"wss behind proxy", Config{WebSocket: true, ProxyProtocol: true, TLS: p.serverConfig(t, false)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Address = "127.0.0.1:0"
			cfg.ReadHeaderTimeout = time.Minute
			l, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			c := dialTCP(t, l.Addr().String())
			if tt.send != nil {
				if _, err := c.Write(tt.send); err != nil {
					t.Fatal(err)
				}
			}
			eventually(t, 5*time.Second, func() bool {
				l.mu.Lock()
				defer l.mu.Unlock()
				return len(l.pending) == 1
			}, "connection in setup")
			ch := acceptAsync(t, l)

			start := time.Now()
			if err := l.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("Close took %s with a client mid-handshake", d)
			}
			r := <-ch
			if !errors.Is(r.err, net.ErrClosed) {
				t.Errorf("Accept = %v, %v; want net.ErrClosed", r.c, r.err)
			}
			expectClosedByServer(t, c)
		})
	}
}

// TestCloseWithReadyConnNotAccepted: a conn that finished setup but was never
// taken by Accept is closed by Close, and Close does not hang on it.
func TestCloseWithReadyConnNotAccepted(t *testing.T) {
	l, err := New(Config{Address: "127.0.0.1:0", ProxyProtocol: true})
	if err != nil {
		t.Fatal(err)
	}
	c := dialTCP(t, l.Addr().String())
	if _, err := c.Write([]byte("PROXY UNKNOWN\r\n")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.pending) == 0
	}, "setup done")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	expectClosedByServer(t, c)
}

func TestPeerCertificatesNil(t *testing.T) {
	if PeerCertificates(nil) != nil {
		t.Error("PeerCertificates(nil) != nil")
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if PeerCertificates(a) != nil {
		t.Error("PeerCertificates(pipe) != nil")
	}
	if PeerCertificates(&proxyConn{Conn: a}) != nil {
		t.Error("PeerCertificates(proxyConn over pipe) != nil")
	}
}
