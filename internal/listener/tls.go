package listener

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// TLSOptions are a listener's mosquitto.conf TLS settings.
type TLSOptions struct {
	// CAFile is a PEM file of CA certificates that client certificates are
	// verified against (cafile).
	CAFile string
	// CAPath is a directory whose files hold PEM CA certificates (capath);
	// files without a certificate, such as CRLs, are skipped.
	CAPath string
	// CertFile and KeyFile are the server's PEM certificate chain and key
	// (certfile, keyfile). Both are required.
	CertFile string
	KeyFile  string
	// RequireCertificate demands a client certificate that verifies against
	// CAFile/CAPath (require_certificate). When false, as in Mosquitto, no
	// client certificate is asked for.
	RequireCertificate bool
	// TLSVersion is the minimum protocol version (tls_version): "tlsv1.3",
	// "tlsv1.2" or "tlsv1.1"; empty means TLS 1.2, as Mosquitto 2 does.
	TLSVersion string
	// Ciphers is an OpenSSL-style list of TLS 1.2 cipher suites (ciphers),
	// separated by ':' (',' and spaces also work), by OpenSSL name
	// (ECDHE-RSA-AES128-GCM-SHA256) or IANA name
	// (TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256). DEFAULT, HIGH and ALL stand
	// for Go's secure default suites; "!NAME" or "-NAME" removes a suite and
	// is ignored for names Go does not offer. TLS 1.3 suite names are
	// accepted and ignored: Go does not make TLS 1.3 suites configurable.
	Ciphers string
}

// TLSConfig builds a server *tls.Config from mosquitto-style settings.
// Errors name the offending file or setting.
func TLSConfig(o TLSOptions) (*tls.Config, error) {
	if o.CertFile == "" || o.KeyFile == "" {
		return nil, errors.New("listener: tls: certfile and keyfile are both required")
	}
	cert, err := loadKeyPair(o.CertFile, o.KeyFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		ClientAuth:   tls.NoClientCert,
	}

	if o.CAFile != "" || o.CAPath != "" {
		pool := x509.NewCertPool()
		if o.CAFile != "" {
			n, err := appendCAFile(pool, o.CAFile)
			if err != nil {
				return nil, fmt.Errorf("listener: tls: cafile: %w", err)
			}
			if n == 0 {
				return nil, fmt.Errorf("listener: tls: cafile %s: no PEM CERTIFICATE block", o.CAFile)
			}
		}
		if o.CAPath != "" {
			if err := appendCAPath(pool, o.CAPath); err != nil {
				return nil, err
			}
		}
		cfg.ClientCAs = pool
	}
	if o.RequireCertificate {
		if cfg.ClientCAs == nil {
			return nil, errors.New("listener: tls: require_certificate needs cafile or capath")
		}
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}

	switch strings.ToLower(strings.TrimSpace(o.TLSVersion)) {
	case "", "tlsv1.2":
		cfg.MinVersion = tls.VersionTLS12
	case "tlsv1.3":
		cfg.MinVersion = tls.VersionTLS13
	case "tlsv1.1":
		cfg.MinVersion = tls.VersionTLS11
	default:
		return nil, fmt.Errorf("listener: tls: unsupported tls_version %q (want tlsv1.3, tlsv1.2 or tlsv1.1)", o.TLSVersion)
	}

	if strings.TrimSpace(o.Ciphers) != "" {
		suites, err := parseCiphers(o.Ciphers)
		if err != nil {
			return nil, fmt.Errorf("listener: tls: ciphers: %w", err)
		}
		cfg.CipherSuites = suites // nil keeps Go's defaults
	}
	return cfg, nil
}

func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("listener: tls: certfile: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("listener: tls: keyfile: %w", err)
	}
	if !hasPEMBlock(certPEM, func(t string) bool { return t == "CERTIFICATE" }) {
		return tls.Certificate{}, fmt.Errorf("listener: tls: certfile %s: no PEM CERTIFICATE block", certFile)
	}
	if !hasPEMBlock(keyPEM, func(t string) bool { return strings.HasSuffix(t, "PRIVATE KEY") }) {
		return tls.Certificate{}, fmt.Errorf("listener: tls: keyfile %s: no PEM PRIVATE KEY block", keyFile)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("listener: tls: certfile %s, keyfile %s: %w", certFile, keyFile, err)
	}
	return cert, nil
}

func hasPEMBlock(data []byte, match func(blockType string) bool) bool {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return false
		}
		if match(b.Type) {
			return true
		}
	}
}

// appendCAFile adds the PEM certificates of file to pool and returns how
// many it added. Errors name the file.
func appendCAFile(pool *x509.CertPool, file string) (int, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return n, fmt.Errorf("%s: %w", file, err)
		}
		pool.AddCert(c)
		n++
	}
	return n, nil
}

// appendCAPath adds the certificates of every file in dir (an OpenSSL
// hashed directory or any directory of PEM files) to pool.
func appendCAPath(pool *x509.CertPool, dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("listener: tls: capath: %w", err)
	}
	total := 0
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		st, err := os.Stat(p) // follows the hash symlinks
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		n, err := appendCAFile(pool, p)
		if err != nil {
			return fmt.Errorf("listener: tls: capath %s: %w", dir, err)
		}
		total += n
	}
	if total == 0 {
		return fmt.Errorf("listener: tls: capath %s: no CA certificate found", dir)
	}
	return nil
}

// opensslCipherNames maps OpenSSL cipher names to the IANA names Go uses.
var opensslCipherNames = map[string]string{
	"AES128-SHA":                    "TLS_RSA_WITH_AES_128_CBC_SHA",
	"AES256-SHA":                    "TLS_RSA_WITH_AES_256_CBC_SHA",
	"AES128-SHA256":                 "TLS_RSA_WITH_AES_128_CBC_SHA256",
	"AES128-GCM-SHA256":             "TLS_RSA_WITH_AES_128_GCM_SHA256",
	"AES256-GCM-SHA384":             "TLS_RSA_WITH_AES_256_GCM_SHA384",
	"DES-CBC3-SHA":                  "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
	"RC4-SHA":                       "TLS_RSA_WITH_RC4_128_SHA",
	"ECDHE-ECDSA-AES128-SHA":        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
	"ECDHE-ECDSA-AES256-SHA":        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
	"ECDHE-ECDSA-AES128-SHA256":     "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
	"ECDHE-ECDSA-AES128-GCM-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
	"ECDHE-ECDSA-AES256-GCM-SHA384": "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
	"ECDHE-ECDSA-CHACHA20-POLY1305": "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
	"ECDHE-ECDSA-RC4-SHA":           "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
	"ECDHE-RSA-AES128-SHA":          "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
	"ECDHE-RSA-AES256-SHA":          "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
	"ECDHE-RSA-AES128-SHA256":       "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
	"ECDHE-RSA-AES128-GCM-SHA256":   "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
	"ECDHE-RSA-AES256-GCM-SHA384":   "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
	"ECDHE-RSA-CHACHA20-POLY1305":   "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
	"ECDHE-RSA-DES-CBC3-SHA":        "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
	"ECDHE-RSA-RC4-SHA":             "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
}

// parseCiphers turns an OpenSSL-style cipher list into Go suite IDs, in the
// order given.
func parseCiphers(list string) ([]uint16, error) {
	byName := make(map[string]uint16)
	var defaults []uint16
	for _, s := range tls.CipherSuites() {
		byName[s.Name] = s.ID
		defaults = append(defaults, s.ID)
	}
	for _, s := range tls.InsecureCipherSuites() {
		byName[s.Name] = s.ID
	}
	tls13 := make(map[string]bool)
	for _, id := range []uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384, tls.TLS_CHACHA20_POLY1305_SHA256} {
		tls13[tls.CipherSuiteName(id)] = true
	}
	lookup := func(name string) (uint16, bool) {
		if iana, ok := opensslCipherNames[strings.ToUpper(name)]; ok {
			name = iana
		}
		id, ok := byName[strings.ToUpper(name)]
		return id, ok
	}

	var out []uint16
	seen := make(map[uint16]bool)
	removed := make(map[uint16]bool)
	other := 0 // tokens that are not TLS 1.3 suite names
	add := func(id uint16) {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	tokens := strings.FieldsFunc(list, func(r rune) bool {
		return r == ':' || r == ',' || r == ' ' || r == '\t'
	})
	for _, tok := range tokens {
		if !tls13[strings.ToUpper(tok)] {
			other++
		}
		switch {
		case strings.HasPrefix(tok, "!") || strings.HasPrefix(tok, "-"):
			if id, ok := lookup(tok[1:]); ok {
				removed[id] = true
			}
		case strings.HasPrefix(tok, "+"):
			return nil, fmt.Errorf("unsupported cipher list operator in %q", tok)
		case strings.EqualFold(tok, "DEFAULT") || strings.EqualFold(tok, "HIGH") || strings.EqualFold(tok, "ALL"):
			for _, id := range defaults {
				add(id)
			}
		case tls13[strings.ToUpper(tok)]:
			// TLS 1.3 suites are not configurable in Go; all are enabled.
		default:
			id, ok := lookup(tok)
			if !ok {
				return nil, fmt.Errorf("unknown cipher %q", tok)
			}
			add(id)
		}
	}
	var kept []uint16
	for _, id := range out {
		if !removed[id] {
			kept = append(kept, id)
		}
	}
	if len(kept) == 0 && other == 0 {
		return nil, nil // only TLS 1.3 names: keep Go's TLS 1.2 defaults
	}
	if len(kept) == 0 {
		return nil, fmt.Errorf("%q selects no TLS 1.2 cipher suite", list)
	}
	return kept, nil
}
