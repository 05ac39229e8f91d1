package listener

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %s", within, msg)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// newListener starts a Listener on 127.0.0.1:0 and closes it at the end of
// the test.
func newListener(t *testing.T, cfg Config) *Listener {
	t.Helper()
	if cfg.Address == "" {
		cfg.Address = "127.0.0.1:0"
	}
	l, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return l
}

type acceptResult struct {
	c   net.Conn
	err error
}

// acceptAsync runs one Accept in a goroutine the test waits for.
func acceptAsync(t *testing.T, l *Listener) <-chan acceptResult {
	t.Helper()
	ch := make(chan acceptResult, 1)
	go func() {
		c, err := l.Accept()
		ch <- acceptResult{c, err}
	}()
	return ch
}

// acceptOne accepts one conn within a few seconds and closes it at the end
// of the test.
func acceptOne(t *testing.T, l *Listener) net.Conn {
	t.Helper()
	select {
	case r := <-acceptAsync(t, l):
		if r.err != nil {
			t.Fatalf("Accept: %v", r.err)
		}
		t.Cleanup(func() { _ = r.c.Close() })
		return r.c
	case <-time.After(5 * time.Second):
		// The goroutine above is released by the listener's Close in cleanup.
		t.Fatal("Accept did not return within 5s")
		return nil
	}
}

func dialTCP(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// expectClosedByServer asserts the server closes c (EOF or reset) without
// sending anything but, possibly, a TLS alert or HTTP error.
func expectClosedByServer(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("server did not close the connection: %v", err)
	}
}

// echo copies n bytes from the client through the server conn and back.
func echo(t *testing.T, client, server net.Conn, msg []byte) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(server, buf); err != nil {
			errc <- err
			return
		}
		_, err := server.Write(buf)
		errc <- err
	}()
	if _, err := client.Write(msg); err != nil {
		t.Fatalf("client write: %v", err)
	}
	got := make([]byte, len(msg))
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(client, got); err != nil {
		t.Fatalf("client read: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("server echo: %v", err)
	}
	if string(got) != string(msg) {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}

// pki is a throwaway CA with a server and a client certificate.
type pki struct {
	caCert     *x509.Certificate
	caPool     *x509.CertPool
	server     tls.Certificate
	client     tls.Certificate
	clientLeaf *x509.Certificate
	dir        string // PEM files: ca.pem, server.pem, server.key, client.pem, client.key
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	caKey := mustKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "starling test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	p := &pki{caCert: caCert, caPool: x509.NewCertPool(), dir: t.TempDir()}
	p.caPool.AddCert(caCert)
	writePEM(t, filepath.Join(p.dir, "ca.pem"), "CERTIFICATE", caDER)

	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage, name string) (tls.Certificate, *x509.Certificate) {
		key := mustKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			DNSNames:     []string{"localhost"},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(t, filepath.Join(p.dir, name+".pem"), "CERTIFICATE", der)
		writePEM(t, filepath.Join(p.dir, name+".key"), "PRIVATE KEY", keyDER)
		c, _ := x509.ParseCertificate(der)
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: c}, c
	}
	p.server, _ = leaf(2, "localhost", x509.ExtKeyUsageServerAuth, "server")
	p.client, p.clientLeaf = leaf(3, "client-alice", x509.ExtKeyUsageClientAuth, "client")
	return p
}

func (p *pki) path(name string) string { return filepath.Join(p.dir, name) }

// serverConfig is what TLSConfig builds from the files, so the tests also
// exercise TLSConfig.
func (p *pki) serverConfig(t *testing.T, requireCert bool) *tls.Config {
	t.Helper()
	cfg, err := TLSConfig(TLSOptions{
		CAFile:             p.path("ca.pem"),
		CertFile:           p.path("server.pem"),
		KeyFile:            p.path("server.key"),
		RequireCertificate: requireCert,
	})
	if err != nil {
		t.Fatalf("TLSConfig: %v", err)
	}
	return cfg
}

func (p *pki) clientConfig(withCert bool) *tls.Config {
	cfg := &tls.Config{RootCAs: p.caPool, ServerName: "localhost"}
	if withCert {
		cfg.Certificates = []tls.Certificate{p.client}
	}
	return cfg
}

func mustKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
