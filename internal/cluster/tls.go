package cluster

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"os"
	"time"
)

// linkTLS returns the TLS configuration of node links: mutual TLS in which
// each end proves it belongs to the cluster.
//
// With a secret, every node derives the same certificate authority from it
// (an Ed25519 key from HKDF of the secret; Ed25519 signatures are
// deterministic, so the CA certificate is the same bytes on every node)
// and makes itself a fresh certificate signed by it at start. A node with
// another secret has another CA: the handshake fails both ways and it
// learns nothing. With cafile/certfile/keyfile, those are used instead.
// Peers are checked against the CA only, not host names: node addresses
// change, membership is the CA.
func linkTLS(node, secret, caFile, certFile, keyFile string) (*tls.Config, error) {
	var pool *x509.CertPool
	var cert tls.Certificate
	switch {
	case caFile != "" || certFile != "" || keyFile != "":
		if caFile == "" || certFile == "" || keyFile == "" {
			return nil, errors.New("cluster_cafile, cluster_certfile and cluster_keyfile go together")
		}
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("cluster_cafile: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("cluster_cafile %s: no certificate found", caFile)
		}
		if cert, err = tls.LoadX509KeyPair(certFile, keyFile); err != nil {
			return nil, fmt.Errorf("cluster_certfile/cluster_keyfile: %w", err)
		}
	case secret != "":
		ca, caKey, err := secretCA(secret)
		if err != nil {
			return nil, err
		}
		pool = x509.NewCertPool()
		pool.AddCert(ca)
		if cert, err = nodeCert(node, ca, caKey); err != nil {
			return nil, err
		}
	default:
		return nil, nil
	}
	verify := func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("cluster: peer sent no certificate")
		}
		certs := make([]*x509.Certificate, len(raw))
		for i, r := range raw {
			c, err := x509.ParseCertificate(r)
			if err != nil {
				return fmt.Errorf("cluster: peer certificate: %w", err)
			}
			certs[i] = c
		}
		inter := x509.NewCertPool()
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
		_, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		if err != nil {
			return fmt.Errorf("cluster: peer is not of this cluster: %w", err)
		}
		return nil
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAnyClientCert,
		// host names are not checked (see above); VerifyPeerCertificate
		// checks the chain against the cluster's CA on both ends
		InsecureSkipVerify:    true,
		VerifyPeerCertificate: verify,
	}, nil
}

// secretCA derives the cluster's certificate authority from the secret.
func secretCA(secret string) (*x509.Certificate, ed25519.PrivateKey, error) {
	seed, err := hkdf.Key(sha256.New, []byte(secret), []byte("starling cluster"), "link ca v1", ed25519.SeedSize)
	if err != nil {
		return nil, nil, err
	}
	key := ed25519.NewKeyFromSeed(seed)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "starling cluster"},
		NotBefore:             time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(der)
	return ca, key, err
}

// nodeCert makes this node's certificate, signed by the CA, for this run.
func nodeCert(node string, ca *x509.Certificate, caKey ed25519.PrivateKey) (tls.Certificate, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: node},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}, nil
}

// gossipKey is memberlist's AES-256 key, derived from the secret.
func gossipKey(secret string) []byte {
	k, _ := hkdf.Key(sha256.New, []byte(secret), []byte("starling cluster"), "gossip v1", 32)
	return k
}
