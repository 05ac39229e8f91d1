package config

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

// memFS serves included files from memory.
type memFS fstest.MapFS

func (m memFS) Open(name string) (io.ReadCloser, error) {
	return fstest.MapFS(m).Open(filepath.ToSlash(filepath.Clean(name)))
}

func (m memFS) ReadDir(name string) ([]string, error) {
	entries, err := fstest.MapFS(m).ReadDir(filepath.ToSlash(filepath.Clean(name)))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

func parseString(t *testing.T, text string) (*Config, error) {
	t.Helper()
	return parse(strings.NewReader(text), "mosquitto.conf", memFS{})
}

func mustParse(t *testing.T, text string) *Config {
	t.Helper()
	c, err := parseString(t, text)
	if err != nil {
		t.Fatalf("Parse(%q): %v", text, err)
	}
	return c
}

// normalize clears what String cannot carry: warnings and file positions.
func normalize(c *Config) *Config {
	n := *c
	n.Warnings = nil
	n.Listeners = nil
	for _, l := range c.Listeners {
		l = l.clone()
		l.File, l.Line = "", 0
		l.Plugins = clearPos(l.Plugins)
		n.Listeners = append(n.Listeners, l)
	}
	n.Plugins = clearPos(c.Plugins)
	n.Cluster = clearPos(c.Cluster)
	n.Bridges = nil
	for _, b := range c.Bridges {
		b.File, b.Line = "", 0
		b.Directives = clearPos(b.Directives)
		n.Bridges = append(n.Bridges, b)
	}
	return &n
}

func clearPos(ds []Directive) []Directive {
	if ds == nil {
		return nil
	}
	out := make([]Directive, len(ds))
	for i, d := range ds {
		d.File, d.Line = "", 0
		out[i] = d
	}
	return out
}

func ptr[T any](v T) *T { return &v }

func TestDefault(t *testing.T) {
	c := Default()
	if !c.LocalOnly || !c.AllowAnonymous {
		t.Errorf("LocalOnly=%v AllowAnonymous=%v, want both true", c.LocalOnly, c.AllowAnonymous)
	}
	var names []string
	for _, l := range c.Listeners {
		names = append(names, l.Name())
		if !l.Default || l.Protocol != ProtocolMQTT || l.MaxConnections != -1 {
			t.Errorf("listener %+v: want a default mqtt listener without limit", l)
		}
	}
	if want := []string{"mqtt://127.0.0.1:1883", "mqtt://[::1]:1883"}; !reflect.DeepEqual(names, want) {
		t.Errorf("listeners %v, want %v", names, want)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"max_inflight_messages", c.MaxInflightMessages, 20},
		{"max_queued_messages", c.MaxQueuedMessages, 1000},
		{"max_keepalive", c.MaxKeepAlive, 65535 * time.Second},
		{"sys_interval", c.SysInterval, 10 * time.Second},
		{"retain_available", c.RetainAvailable, true},
		{"max_packet_size", c.MaxPacketSize, int64(0)},
		{"allow_zero_length_clientid", c.AllowZeroLengthClientID, true},
		{"auto_id_prefix", c.AutoIDPrefix, "auto-"},
		{"outgoing_topic_aliases", c.OutgoingTopicAliases, true},
		{"log_type", c.LogTypes, LogDefault},
		{"log_dest", c.LogDests, []LogDest{{Kind: "stderr"}}},
		{"log_level", c.LogLevel, slog.LevelInfo},
		{"check_retain_source", c.CheckRetainSource, true},
		{"connection_messages", c.ConnectionMessages, true},
		{"log_timestamp", c.LogTimestamp, true},
		{"persistence", c.Persistence, false},
		{"autosave_interval", c.AutosaveInterval, 1800},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Default().Validate(): %v", err)
	}
	empty := mustParse(t, "# nothing\n\n")
	if !reflect.DeepEqual(empty, c) {
		t.Errorf("empty file parses to\n%+v\nwant Default()\n%+v", empty, c)
	}
}

func TestGlobalKeys(t *testing.T) {
	tests := []struct {
		in   string
		get  func(c *Config) any
		want any
	}{
		{"allow_anonymous true", func(c *Config) any { return c.AllowAnonymous }, true},
		{"allow_anonymous 0", func(c *Config) any { return c.AllowAnonymous }, false},
		{"allow_zero_length_clientid false", func(c *Config) any { return c.AllowZeroLengthClientID }, false},
		{"auto_id_prefix gen-", func(c *Config) any { return c.AutoIDPrefix }, "gen-"},
		{"password_file /etc/mosquitto/pass word", func(c *Config) any { return c.PasswordFile }, "/etc/mosquitto/pass word"},
		{"acl_file /etc/acl", func(c *Config) any { return c.ACLFile }, "/etc/acl"},
		{"max_packet_size 20", func(c *Config) any { return c.MaxPacketSize }, int64(20)},
		{"max_packet_size 0", func(c *Config) any { return c.MaxPacketSize }, int64(0)},
		{"max_packet_size 268435460", func(c *Config) any { return c.MaxPacketSize }, int64(268435460)},
		{"message_size_limit 1024", func(c *Config) any { return c.MessageSizeLimit }, int64(1024)},
		{"max_inflight_messages 0", func(c *Config) any { return c.MaxInflightMessages }, 0},
		{"max_inflight_messages 65535", func(c *Config) any { return c.MaxInflightMessages }, 65535},
		{"max_inflight_bytes 9000000000", func(c *Config) any { return c.MaxInflightBytes }, int64(9000000000)},
		{"max_queued_messages 5", func(c *Config) any { return c.MaxQueuedMessages }, 5},
		{"max_queued_bytes 100", func(c *Config) any { return c.MaxQueuedBytes }, int64(100)},
		{"queue_qos0_messages true", func(c *Config) any { return c.QueueQoS0Messages }, true},
		{"max_keepalive 60", func(c *Config) any { return c.MaxKeepAlive }, time.Minute},
		{"retain_available false", func(c *Config) any { return c.RetainAvailable }, false},
		{"persistent_client_expiration 2h", func(c *Config) any { return c.PersistentClientExpiration }, 2 * time.Hour},
		{"persistent_client_expiration 14d", func(c *Config) any { return c.PersistentClientExpiration }, 14 * 24 * time.Hour},
		{"persistent_client_expiration 1w", func(c *Config) any { return c.PersistentClientExpiration }, 7 * 24 * time.Hour},
		{"persistent_client_expiration 1m", func(c *Config) any { return c.PersistentClientExpiration }, 30 * 24 * time.Hour},
		{"persistent_client_expiration 1y", func(c *Config) any { return c.PersistentClientExpiration }, 365 * 24 * time.Hour},
		{"sys_interval 0", func(c *Config) any { return c.SysInterval }, time.Duration(0)},
		{"log_type debug", func(c *Config) any { return c.LogTypes }, LogDebug},
		{"log_type error\nlog_type subscribe", func(c *Config) any { return c.LogTypes }, LogError | LogSubscribe},
		{"log_type all", func(c *Config) any { return c.LogTypes }, LogAll},
		{"log_type all\nlog_type none", func(c *Config) any { return c.LogTypes }, LogNone},
		{"log_type none\nlog_type websockets", func(c *Config) any { return c.LogTypes }, LogWebsockets},
		{"log_dest stdout", func(c *Config) any { return c.LogDests }, []LogDest{{Kind: "stdout"}}},
		{"log_dest syslog\nlog_dest topic\nlog_dest syslog", func(c *Config) any { return c.LogDests }, []LogDest{{Kind: "syslog"}, {Kind: "topic"}}},
		{"log_dest file /var/log/my log.txt", func(c *Config) any { return c.LogDests }, []LogDest{{Kind: "file", Path: "/var/log/my log.txt"}}},
		{"log_dest none", func(c *Config) any { return c.LogDests }, []LogDest(nil)},
		{"log_dest stdout\nlog_dest none\nlog_dest stderr", func(c *Config) any { return c.LogDests }, []LogDest{{Kind: "stderr"}}},
		{"log_timestamp false", func(c *Config) any { return c.LogTimestamp }, false},
		{"log_timestamp_format %Y-%m-%d %H:%M", func(c *Config) any { return c.LogTimestampFormat }, "%Y-%m-%d %H:%M"},
		{"log_facility 5", func(c *Config) any { return c.LogFacility }, 5},
		{"connection_messages false", func(c *Config) any { return c.ConnectionMessages }, false},
		{"pid_file /run/m.pid", func(c *Config) any { return c.PIDFile }, "/run/m.pid"},
		{"user nobody", func(c *Config) any { return c.User }, "nobody"},
		{"upgrade_outgoing_qos true", func(c *Config) any { return c.UpgradeOutgoingQoS }, true},
		{"set_tcp_nodelay true", func(c *Config) any { return c.SetTCPNoDelay }, true},
		{"check_retain_source false", func(c *Config) any { return c.CheckRetainSource }, false},
		{"websockets_log_level 255", func(c *Config) any { return c.WebsocketsLogLevel }, 255},
		{"memory_limit 1073741824", func(c *Config) any { return c.MemoryLimit }, int64(1 << 30)},
		{"clientid_prefixes secure-", func(c *Config) any { return c.ClientIDPrefixes }, "secure-"},
		{"outgoing_topic_aliases false", func(c *Config) any { return c.OutgoingTopicAliases }, false},
		{"log_level debug", func(c *Config) any { return c.LogLevel }, slog.LevelDebug},
		{"log_level warn", func(c *Config) any { return c.LogLevel }, slog.LevelWarn},
		{"log_level error", func(c *Config) any { return c.LogLevel }, slog.LevelError},
		{"per_listener_settings true", func(c *Config) any { return c.PerListenerSettings }, true},
		{"\t  max_queued_messages   7  \r", func(c *Config) any { return c.MaxQueuedMessages }, 7},
		{"max_queued_messages 7 # seven", func(c *Config) any { return c.MaxQueuedMessages }, 7},
		{"\ufeffmax_queued_messages 8\r\n", func(c *Config) any { return c.MaxQueuedMessages }, 8},
		{"persistence true", func(c *Config) any { return c.Persistence }, true},
		{"retained_persistence true", func(c *Config) any { return c.Persistence }, true},
		{"persistence_file s.db", func(c *Config) any { return c.PersistenceFile }, "s.db"},
		{"persistence_location /var/lib/starling/", func(c *Config) any { return c.PersistenceLocation }, "/var/lib/starling/"},
		{"autosave_interval 60", func(c *Config) any { return c.AutosaveInterval }, 60},
		{"autosave_on_changes true", func(c *Config) any { return c.AutosaveOnChanges }, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			c := mustParse(t, tt.in)
			if got := tt.get(c); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
			checkRoundTrip(t, c)
		})
	}
}

func TestBadValues(t *testing.T) {
	tests := []struct{ in, want string }{
		{"allow_anonymous yes", `mosquitto.conf:1: allow_anonymous: invalid boolean "yes" (want true or false)`},
		{"allow_anonymous", `mosquitto.conf:1: allow_anonymous: missing value`},
		{"allow_anonymous true false", `allow_anonymous: want one value, got "true false"`},
		{"max_connections ten", `mosquitto.conf:1: max_connections: invalid integer "ten"`},
		{"max_connections -2", `max_connections: -2 out of range [-1, 2147483647]`},
		{"max_packet_size 19", `max_packet_size: 19 is below the minimum of 20 bytes`},
		{"max_packet_size 268435461", `max_packet_size: 268435461 out of range`},
		{"max_packet_size -1", `max_packet_size: -1 out of range`},
		{"message_size_limit 268435456", `message_size_limit: 268435456 out of range`},
		{"max_inflight_messages 65536", `max_inflight_messages: 65536 out of range [0, 65535]`},
		{"max_inflight_bytes -1", `max_inflight_bytes: -1 out of range`},
		{"max_queued_messages 1.5", `max_queued_messages: invalid integer "1.5"`},
		{"max_queued_bytes 99999999999999999999", `max_queued_bytes: invalid integer`},
		{"max_keepalive 65536", `max_keepalive: 65536 out of range [0, 65535]`},
		{"sys_interval -1", `sys_interval: -1 out of range`},
		{"memory_limit 1G", `memory_limit: invalid integer "1G"`},
		{"persistent_client_expiration 14", `persistent_client_expiration: invalid period "14"`},
		{"persistent_client_expiration 0d", `persistent_client_expiration: period "0d" out of range`},
		{"persistent_client_expiration 3s", `persistent_client_expiration: invalid period "3s"`},
		{"persistent_client_expiration 99999999999y", `out of range`},
		{"log_type verbose", `log_type: invalid value "verbose"`},
		{"log_dest console", `log_dest: invalid destination "console"`},
		{"log_dest file", `log_dest: file needs a path`},
		{"log_dest stdout now", `log_dest: unexpected "now" after stdout`},
		{"log_level trace", `log_level: invalid value "trace" (want debug, info, warn, error)`},
		{"log_facility 8", `log_facility: 8 out of range [0, 7]`},
		{"per_listener_settings maybe", `per_listener_settings: invalid boolean`},
		{"port 0", `port: 0 out of range [1, 65535]`},
		{"port 65536", `port: 65536 out of range`},
		{"listener", `listener: missing value`},
		{"listener 70000", `listener: 70000 out of range [0, 65535]`},
		{"listener http", `listener: invalid integer "http"`},
		{"listener 1883 a b", `listener: want PORT [ADDRESS], got "1883 a b"`},
		{"protocol mqtts", `protocol: invalid value "mqtts" (want mqtt, websockets)`},
		{"socket_domain ipv5", `socket_domain: invalid value "ipv5"`},
		{"tls_version tlsv1.0", `tls_version: invalid value "tlsv1.0"`},
		{"max_qos 3", `max_qos: 3 out of range [0, 2]`},
		{"max_topic_alias 65536", `max_topic_alias: 65536 out of range`},
		{"mount_point a/+/", `mount_point: "a/+/" must not contain wildcards`},
		{"proxy_protocol v2", `proxy_protocol: invalid boolean "v2"`},
		{"require_certificate 2", `require_certificate: invalid boolean "2"`},
		{"autosave_interval -5", `autosave_interval: -5 out of range`},
		{"persistence on", `persistence: invalid boolean "on"`},
		{"auth_plugin_deny_special_chars nope", `auth_plugin_deny_special_chars: invalid boolean`},
		{"psk_hint hint", `psk_hint is not supported by Starling`},
		{"tls_engine pkcs11", `tls_engine is not supported by Starling`},
		{"tls_keyform engine", `tls_keyform engine is not supported by Starling`},
		{"foo bar", `mosquitto.conf:1: unknown configuration key "foo"`},
		{"foo", `mosquitto.conf:1: unknown configuration key "foo"`},
		{"Allow_anonymous true", `unknown configuration key "Allow_anonymous"`},
		{"address 10.0.0.1", `address: only valid in a bridge section (after a connection line)`},
		{"topic # both", `topic: only valid in a bridge section`},
		{"allow_anonymous true\nper_listener_settings true", `mosquitto.conf:2: per_listener_settings must be set before any other security settings`},
		{"include_dir missing.d", `mosquitto.conf:1: include_dir: open missing.d`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := parseString(t, tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse(%q) error %v, want it to contain %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestUnknownKeyError(t *testing.T) {
	text := strings.Repeat("# comment\n", 11) + "foo 1\n"
	_, err := parseString(t, text)
	if err == nil || err.Error() != `mosquitto.conf:12: unknown configuration key "foo"` {
		t.Fatalf("error %v", err)
	}
	if !errors.Is(err, ErrUnknownKey) {
		t.Errorf("errors.Is(err, ErrUnknownKey) = false")
	}
	var ce *Error
	if !errors.As(err, &ce) || ce.File != "mosquitto.conf" || ce.Line != 12 {
		t.Errorf("errors.As: %+v", ce)
	}
}

func TestAllErrorsAtOnce(t *testing.T) {
	text := "foo 1\nmax_connections x\nallow_anonymous maybe\nlistener 1883\nprotocol gopher\nbar\n"
	_, err := parseString(t, text)
	if err == nil {
		t.Fatal("no error")
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("error %T is not a joined error", err)
	}
	var lines []int
	for _, e := range joined.Unwrap() {
		var ce *Error
		if !errors.As(e, &ce) {
			t.Fatalf("%v is not a *Error", e)
		}
		lines = append(lines, ce.Line)
	}
	if want := []int{1, 2, 3, 5, 6}; !reflect.DeepEqual(lines, want) {
		t.Errorf("errors at lines %v, want %v:\n%v", lines, want, err)
	}
}

func TestListenerKeys(t *testing.T) {
	tests := []struct {
		in   string
		get  func(l *Listener) any
		want any
	}{
		{"protocol websockets", func(l *Listener) any { return l.Protocol }, ProtocolWebsockets},
		{"protocol mqtt", func(l *Listener) any { return l.Protocol }, ProtocolMQTT},
		{"socket_domain ipv6", func(l *Listener) any { return l.SocketDomain }, "ipv6"},
		{"bind_interface eth0", func(l *Listener) any { return l.BindInterface }, "eth0"},
		{"max_connections 100", func(l *Listener) any { return l.MaxConnections }, 100},
		{"max_connections -1", func(l *Listener) any { return l.MaxConnections }, -1},
		{"max_qos 1", func(l *Listener) any { return l.MaxQoS }, 1},
		{"max_topic_alias 0", func(l *Listener) any { return l.MaxTopicAlias }, 0},
		{"mount_point tenant/a/", func(l *Listener) any { return l.MountPoint }, "tenant/a/"},
		{"cafile /c a.pem", func(l *Listener) any { return l.CAFile }, "/c a.pem"},
		{"capath /etc/ssl/certs", func(l *Listener) any { return l.CAPath }, "/etc/ssl/certs"},
		{"certfile /s.crt", func(l *Listener) any { return l.CertFile }, "/s.crt"},
		{"keyfile /s.key", func(l *Listener) any { return l.KeyFile }, "/s.key"},
		{"ciphers ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384", func(l *Listener) any { return l.Ciphers }, "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384"},
		{"ciphers_tls1.3 TLS_AES_128_GCM_SHA256", func(l *Listener) any { return l.CiphersTLS13 }, "TLS_AES_128_GCM_SHA256"},
		{"tls_version tlsv1.3", func(l *Listener) any { return l.TLSVersion }, "tlsv1.3"},
		{"require_certificate true", func(l *Listener) any { return l.RequireCertificate }, true},
		{"use_identity_as_username true", func(l *Listener) any { return l.UseIdentityAsUsername }, true},
		{"use_subject_as_username true", func(l *Listener) any { return l.UseSubjectAsUsername }, true},
		{"crlfile /crl.pem", func(l *Listener) any { return l.CRLFile }, "/crl.pem"},
		{"dhparamfile /dh.pem", func(l *Listener) any { return l.DHParamFile }, "/dh.pem"},
		{"http_dir /www", func(l *Listener) any { return l.HTTPDir }, "/www"},
		{"use_username_as_clientid true", func(l *Listener) any { return l.UseUsernameAsClientID }, true},
		{"proxy_protocol true", func(l *Listener) any { return l.ProxyProtocol }, true},
		{"proxy_protocol false", func(l *Listener) any { return l.ProxyProtocol }, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			c := mustParse(t, "listener 1883 10.0.0.1\n"+tt.in)
			if len(c.Listeners) != 1 {
				t.Fatalf("%d listeners, want 1", len(c.Listeners))
			}
			l := &c.Listeners[0]
			if l.Port != 1883 || l.Address != "10.0.0.1" || l.Default || l.Line != 1 {
				t.Errorf("listener %+v", l)
			}
			if got := tt.get(l); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
			checkRoundTrip(t, c)

			// The same key before any listener line configures the default
			// listener: both local-only listeners here.
			c = mustParse(t, tt.in)
			for i := range c.Listeners {
				if got := tt.get(&c.Listeners[i]); !reflect.DeepEqual(got, tt.want) {
					t.Errorf("default listener %d: got %#v, want %#v", i, got, tt.want)
				}
			}
			checkRoundTrip(t, c)
		})
	}
}

func TestDefaultListener(t *testing.T) {
	t.Run("listener lines only", func(t *testing.T) {
		c := mustParse(t, "listener 1884\nlistener 8883 ::\n")
		if c.LocalOnly || c.AllowAnonymous || len(c.Listeners) != 2 {
			t.Fatalf("LocalOnly=%v AllowAnonymous=%v listeners=%d", c.LocalOnly, c.AllowAnonymous, len(c.Listeners))
		}
		if n := c.Listeners[1].Name(); n != "mqtt://[::]:8883" {
			t.Errorf("name %s", n)
		}
	})
	t.Run("port", func(t *testing.T) {
		c := mustParse(t, "port 1884\nmax_connections 10\nlistener 8883\n")
		if c.LocalOnly || c.AllowAnonymous || len(c.Listeners) != 2 {
			t.Fatalf("%+v", c.Listeners)
		}
		l := c.Listeners[0]
		if !l.Default || l.Port != 1884 || l.Address != "" || l.MaxConnections != 10 || l.Line != 1 {
			t.Errorf("default listener %+v", l)
		}
		if c.Listeners[1].MaxConnections != -1 {
			t.Errorf("explicit listener got the default listener's max_connections")
		}
		checkRoundTrip(t, c)
	})
	t.Run("bind_address", func(t *testing.T) {
		c := mustParse(t, "listener 8883\nbind_address 192.168.1.2\nmount_point m/\n")
		if len(c.Listeners) != 2 {
			t.Fatalf("%+v", c.Listeners)
		}
		l := c.Listeners[0]
		if !l.Default || l.Port != 1883 || l.Address != "192.168.1.2" || l.MountPoint != "m/" {
			t.Errorf("default listener %+v", l)
		}
		if c.Listeners[1].MountPoint != "" {
			t.Errorf("mount_point after bind_address went to the listener")
		}
		checkRoundTrip(t, c)
	})
	t.Run("settings for no listener", func(t *testing.T) {
		c := mustParse(t, "max_connections 10\nlistener 8883\n")
		if len(c.Listeners) != 1 || c.Listeners[0].MaxConnections != -1 {
			t.Fatalf("%+v", c.Listeners)
		}
		if len(c.Warnings) != 1 || !strings.HasPrefix(c.Warnings[0], "mosquitto.conf:1: max_connections before the first listener line applies to no listener") {
			t.Errorf("warnings %q", c.Warnings)
		}
	})
	t.Run("local only with explicit allow_anonymous", func(t *testing.T) {
		c := mustParse(t, "allow_anonymous false\npassword_file /p\n")
		if !c.LocalOnly || c.AllowAnonymous || len(c.Listeners) != 2 {
			t.Errorf("LocalOnly=%v AllowAnonymous=%v", c.LocalOnly, c.AllowAnonymous)
		}
		checkRoundTrip(t, c)
	})
}

func TestSetDefaultPort(t *testing.T) {
	c := Default()
	c.SetDefaultPort(1999)
	for _, l := range c.Listeners {
		if l.Port != 1999 {
			t.Errorf("%s: port not replaced", l.Name())
		}
	}
	if !strings.Contains(c.String(), "# local-only listeners on port 1999") {
		t.Errorf("String does not mention the port:\n%s", c)
	}

	c = mustParse(t, "port 1884\nlistener 8883\n")
	c.SetDefaultPort(1999)
	if c.Listeners[0].Port != 1999 || c.Listeners[1].Port != 8883 {
		t.Errorf("%+v", c.Listeners)
	}

	c = mustParse(t, "listener 8883\n")
	c.SetDefaultPort(1999)
	if len(c.Listeners) != 2 || !c.Listeners[0].Default || c.Listeners[0].Port != 1999 {
		t.Errorf("%+v", c.Listeners)
	}
	checkRoundTrip(t, c)
}

func TestPerListenerSettings(t *testing.T) {
	t.Run("global", func(t *testing.T) {
		c := mustParse(t, "listener 1883\nallow_anonymous true\npassword_file /p\nlistener 8883\nacl_file /acl\nauto_id_prefix x-\n")
		for i := range c.Listeners {
			l := &c.Listeners[i]
			anon, pw, acl := c.AuthFor(l)
			if !anon || pw != "/p" || acl != "/acl" {
				t.Errorf("%s: AuthFor = %v %q %q", l.Name(), anon, pw, acl)
			}
			if l.AllowAnonymous != nil || l.PasswordFile != "" {
				t.Errorf("%s: per-listener fields set without per_listener_settings", l.Name())
			}
			if _, prefix := c.ClientIDFor(l); prefix != "x-" {
				t.Errorf("prefix %q", prefix)
			}
		}
		checkRoundTrip(t, c)
	})
	t.Run("per listener", func(t *testing.T) {
		c := mustParse(t, `per_listener_settings true
listener 1883
allow_anonymous true
listener 8883
password_file /p
acl_file /acl
allow_zero_length_clientid false
auto_id_prefix tls-
auth_plugin /usr/lib/go-auth.so
auth_opt_backends files
`)
		type auth struct {
			anon    bool
			pw, acl string
		}
		var got []auth
		for i := range c.Listeners {
			a, p, acl := c.AuthFor(&c.Listeners[i])
			got = append(got, auth{a, p, acl})
		}
		want := []auth{{true, "", ""}, {false, "/p", "/acl"}}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("AuthFor %+v, want %+v", got, want)
		}
		zero, prefix := c.ClientIDFor(&c.Listeners[1])
		if zero || prefix != "tls-" {
			t.Errorf("ClientIDFor = %v %q", zero, prefix)
		}
		if zero, prefix := c.ClientIDFor(&c.Listeners[0]); !zero || prefix != "auto-" {
			t.Errorf("ClientIDFor first = %v %q", zero, prefix)
		}
		if p := c.PluginsFor(&c.Listeners[1]); len(p) != 2 || p[1].Key != "auth_opt_backends" || p[1].Value != "files" {
			t.Errorf("PluginsFor %+v", p)
		}
		if len(c.Plugins) != 0 || len(c.PluginsFor(&c.Listeners[0])) != 0 {
			t.Errorf("plugins leaked: %+v", c.Plugins)
		}
		checkRoundTrip(t, c)
	})
	t.Run("per listener default listener", func(t *testing.T) {
		c := mustParse(t, "per_listener_settings true\nallow_anonymous false\npassword_file /p\n")
		if !c.LocalOnly {
			t.Fatal("not local-only")
		}
		for i := range c.Listeners {
			if a, p, _ := c.AuthFor(&c.Listeners[i]); a || p != "/p" {
				t.Errorf("%s: AuthFor %v %q", c.Listeners[i].Name(), a, p)
			}
		}
		checkRoundTrip(t, c)
	})
	t.Run("cannot be unset", func(t *testing.T) {
		c := mustParse(t, "per_listener_settings true\nper_listener_settings false\n")
		if !c.PerListenerSettings || len(c.Warnings) != 1 {
			t.Errorf("PerListenerSettings=%v warnings %q", c.PerListenerSettings, c.Warnings)
		}
	})
	t.Run("false after security settings", func(t *testing.T) {
		mustParse(t, "allow_anonymous true\nper_listener_settings false\n")
	})
}

func TestLaterWork(t *testing.T) {
	text := `node_name a
cluster_join b:7946 c:7946
auth_plugin /usr/lib/auth-plug.so
auth_opt_backends mysql
plugin /usr/lib/dynamic-security.so
plugin_opt_config_file /dynsec.json
persistence true
connection cloud
address mqtt.example.com:1883
topic # both 0 "" remote/
remote_password s3cret
listener 1883
cleansession true
`
	c := mustParse(t, text)
	wantWarn := []string{
		"mosquitto.conf:3: key auth_plugin is not yet supported (auth plugins)",
		"mosquitto.conf:4: key auth_opt_backends is not yet supported (auth plugins)",
		"mosquitto.conf:5: key plugin is not yet supported (auth plugins)",
		"mosquitto.conf:6: key plugin_opt_config_file is not yet supported (auth plugins)",
		"mosquitto.conf:8: key connection is not yet supported (bridges)",
		"mosquitto.conf:9: key address is not yet supported (bridges)",
		"mosquitto.conf:10: key topic is not yet supported (bridges)",
		"mosquitto.conf:11: key remote_password is not yet supported (bridges)",
		"mosquitto.conf:13: key cleansession is not yet supported (bridges)",
	}
	if !reflect.DeepEqual(c.Warnings, wantWarn) {
		t.Errorf("warnings\n%s\nwant\n%s", strings.Join(c.Warnings, "\n"), strings.Join(wantWarn, "\n"))
	}
	wantCluster := []Directive{
		{"node_name", "a", "mosquitto.conf", 1},
		{"cluster_join", "b:7946 c:7946", "mosquitto.conf", 2},
	}
	if !reflect.DeepEqual(c.Cluster, wantCluster) {
		t.Errorf("cluster %+v", c.Cluster)
	}
	if c.Clustering.NodeName != "a" || !reflect.DeepEqual(c.Clustering.Join, []string{"b:7946", "c:7946"}) {
		t.Errorf("clustering %+v", c.Clustering)
	}
	if len(c.Plugins) != 4 || c.Plugins[3].Key != "plugin_opt_config_file" {
		t.Errorf("plugins %+v", c.Plugins)
	}
	if !c.Persistence {
		t.Error("persistence not typed")
	}
	if len(c.Bridges) != 1 {
		t.Fatalf("bridges %+v", c.Bridges)
	}
	b := c.Bridges[0]
	if b.Name != "cloud" || b.Line != 8 || len(b.Directives) != 4 {
		t.Errorf("bridge %+v", b)
	}
	if d := b.Directives[1]; d.Key != "topic" || d.Value != `# both 0 "" remote/` || d.Line != 10 {
		t.Errorf("topic %+v", d)
	}
	checkRoundTrip(t, c)
}

func TestIncludeDir(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"b.conf":   "max_queued_messages 2\n",
		"A.conf":   "max_queued_messages 3\n",
		"01.conf":  "listener 1884\nmax_connections 5\n",
		"a.conf":   "max_queued_messages 4\nsys_interval 20\n",
		"B.conf":   "max_queued_messages 5\n",
		"00.conf":  "listener 1883\n",
		"skip.txt": "garbage\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub.conf"), 0o755); err != nil {
		t.Fatal(err)
	}
	main := filepath.Join(t.TempDir(), "main.conf")
	text := "max_connections 1\ninclude_dir " + dir + "\nmax_inflight_messages 9\n"
	if err := os.WriteFile(main, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(main)
	if err != nil {
		t.Fatal(err)
	}
	// Mosquitto's order: 00 01 A a B b, so b.conf wins.
	if c.MaxQueuedMessages != 2 || c.SysInterval != 20*time.Second || c.MaxInflightMessages != 9 {
		t.Errorf("max_queued_messages %d sys_interval %v max_inflight_messages %d", c.MaxQueuedMessages, c.SysInterval, c.MaxInflightMessages)
	}
	if len(c.Listeners) != 2 || c.Listeners[0].Port != 1883 || c.Listeners[1].MaxConnections != 5 {
		t.Errorf("listeners %+v", c.Listeners)
	}
	if c.Listeners[1].File != filepath.Join(dir, "01.conf") || c.Listeners[1].Line != 1 {
		t.Errorf("listener at %s:%d", c.Listeners[1].File, c.Listeners[1].Line)
	}

	// Errors name the included file and line.
	if err := os.WriteFile(filepath.Join(dir, "c.conf"), []byte("# c\nmax_connections x\ninclude_dir /\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(main)
	want := []string{
		filepath.Join(dir, "c.conf") + `:2: max_connections: invalid integer "x"`,
		filepath.Join(dir, "c.conf") + `:3: include_dir can only be used in the main configuration file`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Errorf("error\n%v\nwant\n%s", err, strings.Join(want, "\n"))
	}

	// A directory that holds the main file.
	self := filepath.Join(dir, "self.conf")
	os.Remove(filepath.Join(dir, "c.conf"))
	if err := os.WriteFile(self, []byte("include_dir "+dir+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(self); err == nil || !strings.Contains(err.Error(), "contains the main configuration file") {
		t.Errorf("error %v", err)
	}
}

func TestMosquittoOrder(t *testing.T) {
	names := []string{"b.conf", "A.conf", "01.conf", "a.conf", "B.conf", "00.conf", "_x.conf", "a_b.conf", "aB.conf", "ab.conf"}
	sort.Slice(names, func(i, j int) bool { return mosquittoLess(names[i], names[j]) })
	want := []string{"00.conf", "01.conf", "A.conf", "a.conf", "aB.conf", "ab.conf", "a_b.conf", "B.conf", "b.conf", "_x.conf"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("order %v, want %v", names, want)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string // substrings of the error; none means valid
	}{
		{"default", "", nil},
		{"tls", "listener 8883\ncertfile /c\nkeyfile /k\ncafile /ca\nrequire_certificate true\nuse_identity_as_username true\n", nil},
		{"certfile without keyfile", "listener 8883\ncertfile /c\n", []string{"listener mqtt://:8883 (mosquitto.conf:1): certfile is set but keyfile is not"}},
		{"keyfile without certfile", "listener 8883\nkeyfile /k\n", []string{"keyfile is set but certfile is not"}},
		{"require_certificate without cafile", "listener 8883\ncertfile /c\nkeyfile /k\nrequire_certificate true\n", []string{"require_certificate needs cafile or capath"}},
		{"require_certificate with capath", "listener 8883\ncertfile /c\nkeyfile /k\ncapath /ca\nrequire_certificate true\n", nil},
		{"tls options without tls", "listener 8883\ncafile /ca\ntls_version tlsv1.2\n", []string{"cafile needs TLS", "tls_version needs TLS"}},
		{"duplicate listener", "listener 1883\nlistener 1883\n", []string{"listener mqtt://:1883 (mosquitto.conf:1) and listener mqtt://:1883 (mosquitto.conf:2): two listeners on the same port and address"}},
		{"wildcard overlap", "listener 1883 127.0.0.1\nlistener 1883\n", []string{"a listener on all interfaces and another on the same port"}},
		{"same port other addresses", "listener 1883 127.0.0.1\nlistener 1883 ::1\n", nil},
		{"port 0 twice", "listener 0\nlistener 0\n", nil},
		{"default and explicit", "port 1883\nlistener 1883\n", []string{"two listeners on the same port and address"}},
		{"proxy protocol on websockets", "listener 9001\nprotocol websockets\nproxy_protocol true\nhttp_dir /www\n", nil},
		{"http_dir on mqtt", "listener 1883\nhttp_dir /www\n", []string{"http_dir needs protocol websockets"}},
		{"two log files", "log_dest file /a\nlog_dest file /b\n", []string{"only one file destination"}},
		{"all at once", "listener 1883\ncertfile /c\nlistener 1883\nhttp_dir /x\n", []string{"certfile is set", "http_dir needs", "same port and address"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, tt.in)
			err := c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Errorf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate: no error, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate error\n%v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

func TestValidateBuilt(t *testing.T) {
	c := Default()
	c.Listeners[0].Protocol = "quic"
	c.Listeners[0].MaxQoS = 3
	c.Listeners[1].AllowAnonymous = ptr(false)
	c.MaxPacketSize = 5
	c.MaxInflightMessages = -1
	c.LogLevel = slog.Level(3)
	c.LogDests = append(c.LogDests, LogDest{Kind: "printer"})
	err := c.Validate()
	for _, w := range []string{
		`protocol "quic" is not mqtt or websockets`, "max_qos 3 out of range",
		"allow_anonymous is set on the listener but per_listener_settings is false",
		"max_packet_size: 5 is below the minimum", "max_inflight_messages: -1 out of range",
		"log_level", `log_dest: invalid destination "printer"`,
	} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("Validate error %v, want it to contain %q", err, w)
		}
	}
	if c := (&Config{}); c.Validate() == nil {
		t.Error("empty Config validates")
	}
}

func TestPeriod(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want time.Duration
		out  string
	}{
		{"1h", time.Hour, "1h"},
		{"48h", 48 * time.Hour, "2d"},
		{"14d", 14 * 24 * time.Hour, "2w"},
		{"60d", 60 * 24 * time.Hour, "2m"},
		{"2y", 2 * 365 * 24 * time.Hour, "2y"},
	} {
		got, err := ParsePeriod(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParsePeriod(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		if out := FormatPeriod(got); out != tt.out {
			t.Errorf("FormatPeriod(%v) = %q, want %q", got, out, tt.out)
		}
	}
	for _, bad := range []string{"", "h", "1", "-1h", "0h", "1x", "1.5d", "9999999999999y"} {
		if _, err := ParsePeriod(bad); err == nil {
			t.Errorf("ParsePeriod(%q) succeeded", bad)
		}
	}
	if FormatPeriod(time.Minute) != "" {
		t.Error("FormatPeriod of a minute")
	}
}

func TestListenerName(t *testing.T) {
	for _, tt := range []struct {
		l    Listener
		want string
	}{
		{Listener{Port: 1883, Protocol: ProtocolMQTT}, "mqtt://:1883"},
		{Listener{Port: 8883, Address: "::1", CertFile: "c", KeyFile: "k"}, "mqtts://[::1]:8883"},
		{Listener{Port: 9001, Protocol: ProtocolWebsockets}, "ws://:9001"},
		{Listener{Port: 9443, Address: "example.com", Protocol: ProtocolWebsockets, CertFile: "c", KeyFile: "k"}, "wss://example.com:9443"},
	} {
		if got := tt.l.Name(); got != tt.want {
			t.Errorf("Name() = %q, want %q", got, tt.want)
		}
	}
}

func TestIgnoredKeys(t *testing.T) {
	c := mustParse(t, "allow_duplicate_messages true\nwebsockets_headers_size 2048\npsk_file /psk\ntls_keyform pem\nlog_dest dlt\n")
	if len(c.Warnings) != 5 {
		t.Errorf("warnings %q", c.Warnings)
	}
	checkRoundTrip(t, c)
}

// checkRoundTrip checks that String's output parses to an equal Config.
func checkRoundTrip(t *testing.T, c *Config) {
	t.Helper()
	text := c.String()
	c2, err := parse(strings.NewReader(text), "string.conf", memFS{})
	if err != nil {
		t.Fatalf("String() output does not parse: %v\n%s", err, text)
	}
	if a, b := normalize(c), normalize(c2); !reflect.DeepEqual(a, b) {
		t.Fatalf("round trip differs:\n%+v\n%+v\nString():\n%s", a, b, text)
	}
	if text2 := c2.String(); text2 != text {
		t.Fatalf("String() not stable:\n%s\n---\n%s", text, text2)
	}
}

func TestExample(t *testing.T) {
	c, err := Load("testdata/mosquitto.conf")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	var names []string
	for _, l := range c.Listeners {
		names = append(names, l.Name())
	}
	want := []string{"mqtt://127.0.0.1:1883", "mqtts://:8883", "ws://:9001", "ws://:9002"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("listeners %v, want %v", names, want)
	}
	if c.AllowAnonymous || c.PasswordFile != "/etc/mosquitto/passwd" || c.PersistentClientExpiration != 14*24*time.Hour {
		t.Errorf("security/expiry %v %q %v", c.AllowAnonymous, c.PasswordFile, c.PersistentClientExpiration)
	}
	if len(c.Bridges) != 1 || len(c.Bridges[0].Directives) != 16 {
		t.Errorf("bridges %+v", c.Bridges)
	}
	if len(c.Cluster) != 4 || c.Cluster[0].File != filepath.Join("testdata", "conf.d", "10-cluster.conf") {
		t.Errorf("cluster %+v", c.Cluster)
	}
	if !c.Listeners[2].ProxyProtocol || c.Listeners[1].MaxConnections != 5000 {
		t.Errorf("listeners %+v", c.Listeners)
	}
	checkRoundTrip(t, c)
}

func TestRedacted(t *testing.T) {
	c := mustParse(t, "auth_plugin /a.so\nauth_opt_pg_password hunter2\nauth_opt_pg_host db\ncluster_secret s3\nconnection b\nremote_password pw\naddress h\n")
	r := c.Redacted()
	for _, secret := range []string{"hunter2", "s3", "pw\n"} {
		if strings.Contains(r, secret) {
			t.Errorf("Redacted shows %q:\n%s", secret, r)
		}
	}
	if !strings.Contains(r, "auth_opt_pg_host db\n") || !strings.Contains(r, "remote_password <redacted>\n") {
		t.Errorf("Redacted:\n%s", r)
	}
}

func TestClusterKeys(t *testing.T) {
	c := mustParse(t, `node_name n1
cluster_listen 127.0.0.1:7946
cluster_link_listen 127.0.0.1:7947
cluster_advertise 10.0.0.5
cluster_join a.example:7946, b.example:7946 127.0.0.1:7956
cluster_expect 3
cluster_secret s3cret
cluster_cafile /ca.pem
cluster_certfile /c.pem
cluster_keyfile /k.pem
allow_register_during_netsplit true
cluster_dead_node_timeout 90s
admin_listen 127.0.0.1:8081
`)
	want := Clustering{NodeName: "n1", Listen: "127.0.0.1:7946", LinkListen: "127.0.0.1:7947", Advertise: "10.0.0.5",
		Join: []string{"a.example:7946", "b.example:7946", "127.0.0.1:7956"}, Expect: 3, Secret: "s3cret",
		CAFile: "/ca.pem", CertFile: "/c.pem", KeyFile: "/k.pem", AllowRegisterDuringNetsplit: true,
		DeadNodeTimeout: 90 * time.Second, AdminListen: "127.0.0.1:8081"}
	if !reflect.DeepEqual(c.Clustering, want) {
		t.Fatalf("clustering\n%+v\nwant\n%+v", c.Clustering, want)
	}
	if len(c.Warnings) != 0 {
		t.Errorf("warnings %v", c.Warnings)
	}
	if c := mustParse(t, "cluster_dead_node_timeout 30\n"); c.Clustering.DeadNodeTimeout != 30*time.Second {
		t.Errorf("seconds: %v", c.Clustering.DeadNodeTimeout)
	}
	checkRoundTrip(t, c)

	for text, msg := range map[string]string{
		"cluster_listen 7946\n":                `mosquitto.conf:1: cluster_listen: "7946" is not host:port`,
		"cluster_join a.example\n":             `mosquitto.conf:1: cluster_join: seed "a.example" is not host:port`,
		"cluster_expect 0\n":                   "mosquitto.conf:1: cluster_expect: 0 out of range [1, 1000]",
		"cluster_dead_node_timeout soon\n":     `mosquitto.conf:1: cluster_dead_node_timeout: "soon" is not a duration (60s, 5m) or a number of seconds`,
		"cluster_dead_node_timeout 10ms\n":     "mosquitto.conf:1: cluster_dead_node_timeout: 10ms is below 1s",
		"allow_register_during_netsplit yes\n": `mosquitto.conf:1: allow_register_during_netsplit: invalid boolean "yes" (want true or false)`,
		"admin_listen 127.0.0.1\n":             `mosquitto.conf:1: admin_listen: "127.0.0.1" is not host:port`,
		"cluster_link_listen localhost:http\n": "",
	} {
		_, err := parseString(t, text)
		if msg == "" {
			if err != nil {
				t.Errorf("%q: %v", text, err)
			}
			continue
		}
		if err == nil || err.Error() != msg {
			t.Errorf("%q: error %v, want %s", text, err, msg)
		}
	}
}
