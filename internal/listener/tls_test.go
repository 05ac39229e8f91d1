package listener

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestTLSConfigErrorsNameTheFile(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not pem at all\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyDir := t.TempDir()
	missing := filepath.Join(dir, "missing.pem")
	base := TLSOptions{CertFile: p.path("server.pem"), KeyFile: p.path("server.key")}
	with := func(f func(*TLSOptions)) TLSOptions {
		o := base
		f(&o)
		return o
	}
	tests := []struct {
		name string
		opts TLSOptions
		want []string // each must appear in the error
	}{
		{"no certfile", with(func(o *TLSOptions) { o.CertFile = "" }), []string{"certfile"}},
		{"missing certfile", with(func(o *TLSOptions) { o.CertFile = missing }), []string{"certfile", missing}},
		{"missing keyfile", with(func(o *TLSOptions) { o.KeyFile = missing }), []string{"keyfile", missing}},
		{"certfile not PEM", with(func(o *TLSOptions) { o.CertFile = garbage }), []string{"certfile", garbage}},
		{"keyfile not PEM", with(func(o *TLSOptions) { o.KeyFile = garbage }), []string{"keyfile", garbage}},
		{"key of another cert", with(func(o *TLSOptions) { o.KeyFile = p.path("client.key") }), []string{p.path("server.pem"), p.path("client.key")}},
		{"missing cafile", with(func(o *TLSOptions) { o.CAFile = missing }), []string{"cafile", missing}},
		{"cafile without certs", with(func(o *TLSOptions) { o.CAFile = p.path("server.key") }), []string{"cafile", p.path("server.key")}},
		{"missing capath", with(func(o *TLSOptions) { o.CAPath = missing }), []string{"capath", missing}},
		{"capath without certs", with(func(o *TLSOptions) { o.CAPath = emptyDir }), []string{"capath", emptyDir}},
		{"require_certificate without CA", with(func(o *TLSOptions) { o.RequireCertificate = true }), []string{"require_certificate"}},
		{"bad tls_version", with(func(o *TLSOptions) { o.TLSVersion = "sslv3" }), []string{"tls_version", "sslv3"}},
		{"unknown cipher", with(func(o *TLSOptions) { o.Ciphers = "ECDHE-RSA-AES128-GCM-SHA256:NOPE-CIPHER" }), []string{"ciphers", "NOPE-CIPHER"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := TLSConfig(tt.opts)
			if err == nil {
				t.Fatal("TLSConfig succeeded, want error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestTLSConfigSettings(t *testing.T) {
	p := newPKI(t)
	// capath: an OpenSSL-style directory with a hash symlink and a non-cert file.
	capath := t.TempDir()
	ca, err := os.ReadFile(p.path("ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(capath, "ca.crt"), ca, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("ca.crt", filepath.Join(capath, "deadbeef.0")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(capath, "README"), []byte("not a cert"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(capath, "subdir"), 0o700); err != nil {
		t.Fatal(err)
	}

	cfg, err := TLSConfig(TLSOptions{
		CAPath:             capath,
		CertFile:           p.path("server.pem"),
		KeyFile:            p.path("server.key"),
		RequireCertificate: true,
		TLSVersion:         "tlsv1.3",
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Errorf("ClientAuth = %v, want RequireAndVerifyClientCert", cfg.ClientAuth)
	}
	if cfg.ClientCAs == nil {
		t.Error("ClientCAs not set from capath")
	}
	if cfg.MinVersion != tls.VersionTLS13 {
		t.Errorf("MinVersion = %x, want TLS 1.3", cfg.MinVersion)
	}

	cfg, err = TLSConfig(TLSOptions{CAFile: p.path("ca.pem"), CertFile: p.path("server.pem"), KeyFile: p.path("server.key")})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ClientAuth != tls.NoClientCert {
		t.Errorf("without require_certificate ClientAuth = %v, want NoClientCert (as Mosquitto)", cfg.ClientAuth)
	}
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("default MinVersion = %x, want TLS 1.2", cfg.MinVersion)
	}
	if cfg.CipherSuites != nil {
		t.Errorf("CipherSuites = %v, want Go's defaults", cfg.CipherSuites)
	}
}

func TestParseCiphers(t *testing.T) {
	var defaults []uint16
	for _, s := range tls.CipherSuites() {
		defaults = append(defaults, s.ID)
	}
	tests := []struct {
		list    string
		want    []uint16
		wantErr bool
	}{
		{list: "ECDHE-RSA-AES128-GCM-SHA256", want: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}},
		{
			list: "ECDHE-ECDSA-AES256-GCM-SHA384:TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, ecdhe-rsa-chacha20-poly1305",
			want: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256},
		},
		{list: "AES128-SHA:AES128-SHA", want: []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA}},
		{list: "HIGH:!aNULL:!MD5", want: defaults},
		{list: "DEFAULT:!ECDHE-RSA-AES128-GCM-SHA256", want: slices.DeleteFunc(slices.Clone(defaults), func(id uint16) bool {
			return id == tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
		})},
		{list: "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384", want: nil},
		{list: "ECDHE-RSA-AES128-GCM-SHA256:TLS_AES_128_GCM_SHA256", want: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}},
		{list: "NOT-A-CIPHER", wantErr: true},
		{list: "+AES128-SHA", wantErr: true},
		{list: "!AES128-SHA", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.list, func(t *testing.T) {
			got, err := parseCiphers(tt.list)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestCiphersHandshake: a listener restricted to one TLS 1.2 suite
// negotiates that suite.
func TestCiphersHandshake(t *testing.T) {
	p := newPKI(t)
	cfg, err := TLSConfig(TLSOptions{
		CertFile: p.path("server.pem"), KeyFile: p.path("server.key"),
		Ciphers: "ECDHE-ECDSA-CHACHA20-POLY1305",
	})
	if err != nil {
		t.Fatal(err)
	}
	l := newListener(t, Config{TLS: cfg})
	cli := p.clientConfig(false)
	cli.MaxVersion = tls.VersionTLS12
	c := tls.Client(dialTCP(t, l.Addr().String()), cli)
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	acceptOne(t, l)
	if got := c.ConnectionState().CipherSuite; got != tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 {
		t.Errorf("negotiated %s", tls.CipherSuiteName(got))
	}
}

func FuzzParseCiphers(f *testing.F) {
	for _, s := range []string{"", "HIGH:!aNULL", "ECDHE-RSA-AES128-GCM-SHA256", "a:b,c d", "!", "-", "+", "TLS_AES_128_GCM_SHA256"} {
		f.Add(s)
	}
	known := make(map[uint16]bool)
	for _, s := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		known[s.ID] = true
	}
	f.Fuzz(func(t *testing.T, list string) {
		got, err := parseCiphers(list)
		if err != nil {
			return
		}
		seen := make(map[uint16]bool)
		for _, id := range got {
			if !known[id] || seen[id] {
				t.Fatalf("parseCiphers(%q) = %v: unknown or duplicate suite %x", list, got, id)
			}
			seen[id] = true
		}
	})
}
