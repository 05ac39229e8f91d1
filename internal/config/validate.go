package config

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Validate checks what no single line can: settings that contradict each
// other, listeners that collide, and the ranges of every value (so that a
// Config built in code is checked as well as a parsed one). It reports every
// problem at once (errors.Join).
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if len(c.Listeners) == 0 {
		add("no listener configured")
	}
	for i := range c.Listeners {
		for _, err := range c.validateListener(&c.Listeners[i]) {
			errs = append(errs, fmt.Errorf("%s: %w", c.Listeners[i].where(), err))
		}
	}
	for i := range c.Listeners {
		a := &c.Listeners[i]
		for j := i + 1; j < len(c.Listeners); j++ {
			b := &c.Listeners[j]
			if a.Port == 0 || a.Port != b.Port {
				continue
			}
			switch {
			case strings.EqualFold(a.Address, b.Address):
				add("%s and %s: two listeners on the same port and address", a.where(), b.where())
			case a.Address == "" || b.Address == "":
				add("%s and %s: a listener on all interfaces and another on the same port", a.where(), b.where())
			}
		}
	}

	ranges := []struct {
		key      string
		v        int64
		min, max int64
	}{
		{"max_packet_size", c.MaxPacketSize, 0, MaxPacketSizeLimit},
		{"message_size_limit", c.MessageSizeLimit, 0, MaxPayloadSize},
		{"max_inflight_messages", int64(c.MaxInflightMessages), 0, 65535},
		{"max_inflight_bytes", c.MaxInflightBytes, 0, 1<<63 - 1},
		{"max_queued_messages", int64(c.MaxQueuedMessages), 0, 1<<63 - 1},
		{"max_queued_bytes", c.MaxQueuedBytes, 0, 1<<63 - 1},
		{"memory_limit", c.MemoryLimit, 0, 1<<63 - 1},
		{"max_keepalive", int64(c.MaxKeepAlive / time.Second), 0, 65535},
		{"sys_interval", int64(c.SysInterval / time.Second), 0, 65535},
		{"autosave_interval", int64(c.AutosaveInterval), 0, 1<<31 - 1},
		{"log_facility", int64(c.LogFacility), -1, 7},
		{"websockets_log_level", int64(c.WebsocketsLogLevel), 0, 1<<31 - 1},
	}
	for _, r := range ranges {
		if r.v < r.min || r.v > r.max {
			add("%s: %d out of range [%d, %d]", r.key, r.v, r.min, r.max)
		}
	}
	if c.MaxPacketSize > 0 && c.MaxPacketSize < minPacketSize {
		add("max_packet_size: %d is below the minimum of %d bytes (0 means no limit)", c.MaxPacketSize, minPacketSize)
	}
	if c.MaxKeepAlive%time.Second != 0 || c.SysInterval%time.Second != 0 {
		add("max_keepalive and sys_interval must be whole seconds")
	}
	if c.PersistentClientExpiration < 0 {
		add("persistent_client_expiration must not be negative")
	}
	if cl := c.Clustering; cl.Listen == "" && (len(cl.Join) > 0 || cl.LinkListen != "" || cl.Expect > 1) {
		add("cluster_join, cluster_link_listen and cluster_expect need cluster_listen (the node's gossip address)")
	}
	if cl := c.Clustering; (cl.CAFile != "" || cl.CertFile != "" || cl.KeyFile != "") &&
		(cl.CAFile == "" || cl.CertFile == "" || cl.KeyFile == "") {
		add("cluster_cafile, cluster_certfile and cluster_keyfile go together")
	}
	switch c.LogLevel {
	case slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError:
	default:
		add("log_level: %v is not one of debug, info, warn, error", c.LogLevel)
	}
	if c.LogTypes&^LogAll != 0 {
		add("log_type: unknown bits %#x", uint16(c.LogTypes&^LogAll))
	}
	files := 0
	for _, d := range c.LogDests {
		switch d.Kind {
		case "stdout", "stderr", "syslog", "topic":
			if d.Path != "" {
				add("log_dest %s takes no path", d.Kind)
			}
		case "file":
			files++
			if d.Path == "" {
				add("log_dest file needs a path")
			}
		default:
			add("log_dest: invalid destination %q", d.Kind)
		}
	}
	if files > 1 {
		add("log_dest: only one file destination may be configured, got %d", files)
	}
	if c.AutoIDPrefix == "" && c.AllowZeroLengthClientID {
		add("auto_id_prefix must not be empty when allow_zero_length_clientid is true")
	}
	return errors.Join(errs...)
}

// where names a listener in errors: its name and, when known, its line.
func (l *Listener) where() string {
	if l.File != "" {
		return fmt.Sprintf("listener %s (%s:%d)", l.Name(), l.File, l.Line)
	}
	return "listener " + l.Name()
}

func (c *Config) validateListener(l *Listener) []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if l.Port < 0 || l.Port > 65535 {
		add("port %d out of range [0, 65535]", l.Port)
	}
	switch l.Protocol {
	case ProtocolMQTT, ProtocolWebsockets:
	default:
		add("protocol %q is not mqtt or websockets", l.Protocol)
	}
	switch l.SocketDomain {
	case "", "ipv4", "ipv6":
	default:
		add("socket_domain %q is not ipv4 or ipv6", l.SocketDomain)
	}
	switch l.TLSVersion {
	case "", "tlsv1.1", "tlsv1.2", "tlsv1.3":
	default:
		add("tls_version %q is not tlsv1.1, tlsv1.2 or tlsv1.3", l.TLSVersion)
	}
	if l.MaxConnections < -1 {
		add("max_connections %d is below -1", l.MaxConnections)
	}
	if l.MaxQoS < 0 || l.MaxQoS > 2 {
		add("max_qos %d out of range [0, 2]", l.MaxQoS)
	}
	if l.MaxTopicAlias < 0 || l.MaxTopicAlias > 65535 {
		add("max_topic_alias %d out of range [0, 65535]", l.MaxTopicAlias)
	}
	if strings.ContainsAny(l.MountPoint, "+#") {
		add("mount_point %q must not contain wildcards", l.MountPoint)
	}

	switch {
	case l.CertFile != "" && l.KeyFile == "":
		add("certfile is set but keyfile is not")
	case l.KeyFile != "" && l.CertFile == "":
		add("keyfile is set but certfile is not")
	}
	if !l.TLS() {
		for _, o := range []struct {
			key string
			set bool
		}{
			{"cafile", l.CAFile != ""}, {"capath", l.CAPath != ""},
			{"ciphers", l.Ciphers != ""}, {"ciphers_tls1.3", l.CiphersTLS13 != ""},
			{"tls_version", l.TLSVersion != ""}, {"crlfile", l.CRLFile != ""},
			{"dhparamfile", l.DHParamFile != ""},
			{"require_certificate", l.RequireCertificate},
			{"use_identity_as_username", l.UseIdentityAsUsername},
			{"use_subject_as_username", l.UseSubjectAsUsername},
		} {
			if o.set {
				add("%s needs TLS: set certfile and keyfile", o.key)
			}
		}
	}
	if l.RequireCertificate && l.CAFile == "" && l.CAPath == "" {
		add("require_certificate needs cafile or capath to verify client certificates")
	}
	if l.HTTPDir != "" && l.Protocol != ProtocolWebsockets {
		add("http_dir needs protocol websockets")
	}
	if !c.PerListenerSettings {
		for _, o := range []struct {
			key string
			set bool
		}{
			{"allow_anonymous", l.AllowAnonymous != nil}, {"password_file", l.PasswordFile != ""},
			{"acl_file", l.ACLFile != ""}, {"allow_zero_length_clientid", l.AllowZeroLengthClientID != nil},
			{"auto_id_prefix", l.AutoIDPrefix != ""}, {"auth plugins", len(l.Plugins) > 0},
		} {
			if o.set {
				add("%s is set on the listener but per_listener_settings is false", o.key)
			}
		}
	}
	return errs
}
