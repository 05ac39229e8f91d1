package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// testPKI is a CA with a server and a client certificate, written as PEM
// files.
type testPKI struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey string // file paths
	pool                                             *x509.CertPool
	client                                           tls.Certificate
}

// clientCN is the common name of the client certificate, which
// use_identity_as_username turns into the username.
const clientCN = "tlsclient"

func newPKI(t *testing.T, dir string) *testPKI {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	serial := int64(1)
	template := func(cn string) *x509.Certificate {
		serial++
		return &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn, Organization: []string{"Starling e2e"}},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
		}
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	writeKey := func(name string, k *ecdsa.PrivateKey) string {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return write(name, "PRIVATE KEY", der)
	}

	caKey := newKey()
	caTmpl := template("Starling e2e CA")
	caTmpl.IsCA, caTmpl.BasicConstraintsValid = true, true
	caTmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}

	issue := func(cn string, usage x509.ExtKeyUsage, name string) (certPath, keyPath string, der []byte, key *ecdsa.PrivateKey) {
		key = newKey()
		tmpl := template(cn)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{usage}
		if usage == x509.ExtKeyUsageServerAuth {
			tmpl.DNSNames = []string{"localhost"}
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".pem", "CERTIFICATE", der), writeKey(name+".key", key), der, key
	}
	p := &testPKI{CA: write("ca.pem", "CERTIFICATE", caDER), pool: x509.NewCertPool()}
	p.pool.AddCert(caCert)
	p.ServerCert, p.ServerKey, _, _ = issue("localhost", x509.ExtKeyUsageServerAuth, "server")
	var clientDER []byte
	var clientKey *ecdsa.PrivateKey
	p.ClientCert, p.ClientKey, clientDER, clientKey = issue(clientCN, x509.ExtKeyUsageClientAuth, "client")
	p.client = tls.Certificate{Certificate: [][]byte{clientDER}, PrivateKey: clientKey}
	return p
}

// tlsBroker starts a broker with a TLS listener requiring client
// certificates (Ports[0]) and a WebSocket listener (Ports[1]); the ACL
// lets the certificate's user use tls/# and the password user wsuser use
// ws/#. anonymous is the value of allow_anonymous; withPasswords adds a
// password_file holding wsuser (and not the certificate's user).
func tlsBroker(t *testing.T, anonymous, withPasswords bool) (*broker, *testPKI) {
	t.Helper()
	dir := t.TempDir()
	pki := newPKI(t, dir)
	pw := filepath.Join(dir, "passwd")
	starlingPasswd(t, "-c", "-b", pw, "wsuser", "wspw")
	acl := filepath.Join(dir, "acl")
	if err := os.WriteFile(acl, []byte("user "+clientCN+"\ntopic readwrite tls/#\n\nuser wsuser\ntopic readwrite ws/#\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pwLine := "password_file " + pw
	if !withPasswords {
		pwLine = "# no password_file"
	}
	b := startBroker(t, brokerSpec{Ports: 2, Config: func(p []int) string {
		return fmt.Sprintf(`per_listener_settings false
allow_anonymous %t
%s
acl_file %s
log_level debug

listener %d 127.0.0.1
cafile %s
certfile %s
keyfile %s
require_certificate true
use_identity_as_username true

listener %d 127.0.0.1
protocol websockets
`, anonymous, pwLine, acl, p[0], pki.CA, pki.ServerCert, pki.ServerKey, p[1])
	}})
	return b, pki
}

// dialTLSv5 connects an MQTT 5 client over TLS with the client certificate.
func dialTLSv5(t *testing.T, b *broker, pki *testPKI, id string) (*v5Client, error) {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", b.Addr(), &tls.Config{
		RootCAs:      pki.pool,
		Certificates: []tls.Certificate{pki.client},
		ServerName:   "127.0.0.1",
	})
	if err != nil {
		return nil, err
	}
	return connectV5(t, packets.NewThreadSafeConn(conn), &paho.Connect{ClientID: id, CleanStart: true}, nil)
}

// TestTLSClientCertificateIdentity: with require_certificate and
// use_identity_as_username, mosquitto_pub with --cafile --cert --key is
// accepted and acts as the certificate's common name (the ACL lets only
// that user use tls/#); without a client certificate it is refused.
//
// As in Mosquitto, the certificate is the authentication: the password
// file is not consulted and allow_anonymous false does not refuse the
// client.
func TestTLSClientCertificateIdentity(t *testing.T) {
	t.Parallel()
	pubBin := needProgram(t, "mosquitto_pub")
	for _, tc := range []struct {
		name                     string
		anonymous, withPasswords bool
	}{
		{"allow_anonymous true", true, false},
		{"allow_anonymous true with password_file", true, true},
		{"allow_anonymous false", false, false},
		{"allow_anonymous false with password_file", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, pki := tlsBroker(t, tc.anonymous, tc.withPasswords)
			watcher, err := dialTLSv5(t, b, pki, "tls-watcher")
			if err != nil {
				reason := "none"
				if watcher != nil && watcher.Connack != nil {
					reason = fmt.Sprintf("%#x", watcher.Connack.ReasonCode)
				}
				t.Fatalf("TLS client with a certificate for %q refused, CONNACK reason %s (Mosquitto accepts it: with use_identity_as_username the certificate is the authentication): %v", clientCN, reason, err)
			}
			watcher.sub(&paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "tls/#", QoS: 1}}})

			port := strconv.Itoa(b.Port())
			for _, v := range mosquittoVersions {
				mustRun(t, 10*time.Second, pubBin, "-h", "127.0.0.1", "-p", port, "-V", v, "-q", "1",
					"--cafile", pki.CA, "--cert", pki.ClientCert, "--key", pki.ClientKey, "-t", "tls/x", "-m", "over tls "+v)
				if m := watcher.next(5 * time.Second); string(m.Payload) != "over tls "+v {
					t.Fatalf("got %q, want %q", m.Payload, "over tls "+v)
				}
				r := run(t, 10*time.Second, pubBin, "-h", "127.0.0.1", "-p", port, "-V", v, "-q", "1",
					"--cafile", pki.CA, "-t", "tls/x", "-m", "no cert")
				if r.Err == nil {
					t.Errorf("%s: mosquitto_pub without a client certificate succeeded", v)
				}
			}
			watcher.none(100 * time.Millisecond)
		})
	}
}

// TestWebSocketListener: paho.mqtt.golang clients with a ws:// broker URL
// publish and subscribe through a `protocol websockets` listener, with a
// username and password checked on it.
func TestWebSocketListener(t *testing.T) {
	t.Parallel()
	b, _ := tlsBroker(t, false, true)
	server := "ws://127.0.0.1:" + strconv.Itoa(b.Ports[1])
	login := func(o *mqtt.ClientOptions) { o.SetUsername("wsuser").SetPassword("wspw") }
	sub, inbox := v3Client(t, server, "ws-sub", login)
	pub, _ := v3Client(t, server, "ws-pub", login)
	wait(t, "subscribe", sub.Subscribe("ws/#", 2, nil))
	big := make([]byte, 200<<10) // spans many WebSocket frames
	for i := range big {
		big[i] = byte(i)
	}
	for qos := range byte(3) {
		wait(t, "publish", pub.Publish("ws/t", qos, false, fmt.Sprintf("ws qos %d", qos)))
		if m := inbox.next(t, 5*time.Second); m.Payload != fmt.Sprintf("ws qos %d", qos) || m.QoS != qos {
			t.Fatalf("got %+v", m)
		}
	}
	wait(t, "publish", pub.Publish("ws/big", 1, false, big))
	if m := inbox.next(t, 5*time.Second); m.Payload != string(big) {
		t.Fatalf("big message: got %d bytes, want %d", len(m.Payload), len(big))
	}

	o := mqtt.NewClientOptions().AddBroker(server).SetClientID("ws-bad").SetUsername("wsuser").SetPassword("wrong").
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
	bad := mqtt.NewClient(o)
	if tok := bad.Connect(); tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
		bad.Disconnect(0)
		t.Fatal("WebSocket client with a wrong password accepted")
	}
}
