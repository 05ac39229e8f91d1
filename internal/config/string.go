package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// String returns the effective settings in the configuration syntax, one
// `key value` per line, defaults included: what `starling config check`
// prints. Parsing it gives a Config equal to c apart from Warnings and the
// File and Line fields, for any c that Parse returned. Listeners whose
// settings the syntax cannot express (local-only listeners moved by
// SetDefaultPort, default listeners that differ) are printed as comments.
func (c *Config) String() string {
	var w writer
	w.kv("per_listener_settings", c.PerListenerSettings)
	if !c.PerListenerSettings {
		w.kv("allow_anonymous", c.AllowAnonymous)
		w.kv("allow_zero_length_clientid", c.AllowZeroLengthClientID)
		w.str("auto_id_prefix", c.AutoIDPrefix)
		w.str("password_file", c.PasswordFile)
		w.str("acl_file", c.ACLFile)
		w.directives(c.Plugins)
	} else {
		w.comment("allow_anonymous %t (for listeners that do not set it)", c.AllowAnonymous)
		w.comment("allow_zero_length_clientid %t (for listeners that do not set it)", c.AllowZeroLengthClientID)
		w.comment("auto_id_prefix %s (for listeners that do not set it)", c.AutoIDPrefix)
	}
	w.str("clientid_prefixes", c.ClientIDPrefixes)
	w.kv("check_retain_source", c.CheckRetainSource)

	w.kv("max_packet_size", c.MaxPacketSize)
	w.kv("message_size_limit", c.MessageSizeLimit)
	w.kv("max_inflight_messages", c.MaxInflightMessages)
	w.kv("max_inflight_bytes", c.MaxInflightBytes)
	w.kv("max_queued_messages", c.MaxQueuedMessages)
	w.kv("max_queued_bytes", c.MaxQueuedBytes)
	w.kv("queue_qos0_messages", c.QueueQoS0Messages)
	w.kv("max_keepalive", seconds(c.MaxKeepAlive))
	w.kv("memory_limit", c.MemoryLimit)
	w.kv("retain_available", c.RetainAvailable)
	w.kv("upgrade_outgoing_qos", c.UpgradeOutgoingQoS)
	w.kv("set_tcp_nodelay", c.SetTCPNoDelay)
	w.kv("outgoing_topic_aliases", c.OutgoingTopicAliases)
	if c.PersistentClientExpiration > 0 {
		if p := FormatPeriod(c.PersistentClientExpiration); p != "" {
			w.str("persistent_client_expiration", p)
		} else {
			w.comment("persistent_client_expiration %v (not a whole number of hours)", c.PersistentClientExpiration)
		}
	}
	w.kv("sys_interval", seconds(c.SysInterval))

	if c.LogTypes == LogNone {
		w.str("log_type", "none")
	}
	for _, n := range logTypeNames() {
		if c.LogTypes&n.t != 0 {
			w.str("log_type", n.name)
		}
	}
	if len(c.LogDests) == 0 {
		w.str("log_dest", "none")
	}
	for _, d := range c.LogDests {
		if d.Path != "" {
			w.str("log_dest", d.Kind+" "+d.Path)
		} else {
			w.str("log_dest", d.Kind)
		}
	}
	w.kv("log_timestamp", c.LogTimestamp)
	w.str("log_timestamp_format", c.LogTimestampFormat)
	if c.LogFacility >= 0 {
		w.kv("log_facility", c.LogFacility)
	}
	w.str("log_level", strings.ToLower(c.LogLevel.String()))
	w.kv("connection_messages", c.ConnectionMessages)
	w.kv("websockets_log_level", c.WebsocketsLogLevel)
	w.str("pid_file", c.PIDFile)
	w.str("user", c.User)

	w.kv("persistence", c.Persistence)
	w.str("persistence_file", c.PersistenceFile)
	w.str("persistence_location", c.PersistenceLocation)
	w.kv("autosave_interval", c.AutosaveInterval)
	w.kv("autosave_on_changes", c.AutosaveOnChanges)

	w.directives(c.Cluster)

	// The default listener's settings go before any listener line.
	var defaults []*Listener
	for i := range c.Listeners {
		if c.Listeners[i].Default {
			defaults = append(defaults, &c.Listeners[i])
		}
	}
	if len(defaults) > 0 {
		first := defaults[0]
		w.blank()
		switch {
		case c.LocalOnly && first.Port != DefaultPort:
			w.comment("local-only listeners on port %d (set on the command line)", first.Port)
		case c.LocalOnly:
			w.comment("local-only: no listener configured, listening on 127.0.0.1 and ::1 port %d", first.Port)
		default:
			w.kv("port", first.Port)
			w.str("bind_address", first.Address)
		}
		c.writeListener(&w, first)
		for _, l := range defaults[1:] {
			if !c.LocalOnly {
				w.comment("default listener %s cannot be expressed", l.Name())
			}
		}
	}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		if l.Default {
			continue
		}
		w.blank()
		if l.Address != "" {
			w.str("listener", strconv.Itoa(l.Port)+" "+l.Address)
		} else {
			w.kv("listener", l.Port)
		}
		c.writeListener(&w, l)
	}
	for _, b := range c.Bridges {
		w.blank()
		w.str("connection", b.Name)
		w.directives(b.Directives)
	}
	return w.b.String()
}

// writeListener prints the per-listener keys of l.
func (c *Config) writeListener(w *writer, l *Listener) {
	w.str("protocol", l.Protocol)
	w.str("socket_domain", l.SocketDomain)
	w.str("bind_interface", l.BindInterface)
	w.kv("max_connections", l.MaxConnections)
	if l.MaxQoS != 2 {
		w.kv("max_qos", l.MaxQoS)
	}
	if l.MaxTopicAlias != 10 {
		w.kv("max_topic_alias", l.MaxTopicAlias)
	}
	w.str("mount_point", l.MountPoint)
	w.flag("proxy_protocol", l.ProxyProtocol)
	w.str("http_dir", l.HTTPDir)
	w.flag("use_username_as_clientid", l.UseUsernameAsClientID)
	w.str("cafile", l.CAFile)
	w.str("capath", l.CAPath)
	w.str("certfile", l.CertFile)
	w.str("keyfile", l.KeyFile)
	w.str("ciphers", l.Ciphers)
	w.str("ciphers_tls1.3", l.CiphersTLS13)
	w.str("tls_version", l.TLSVersion)
	w.str("crlfile", l.CRLFile)
	w.str("dhparamfile", l.DHParamFile)
	w.flag("require_certificate", l.RequireCertificate)
	w.flag("use_identity_as_username", l.UseIdentityAsUsername)
	w.flag("use_subject_as_username", l.UseSubjectAsUsername)
	if !c.PerListenerSettings {
		return
	}
	if l.AllowAnonymous != nil {
		w.kv("allow_anonymous", *l.AllowAnonymous)
	}
	w.str("password_file", l.PasswordFile)
	w.str("acl_file", l.ACLFile)
	if l.AllowZeroLengthClientID != nil {
		w.kv("allow_zero_length_clientid", *l.AllowZeroLengthClientID)
	}
	w.str("auto_id_prefix", l.AutoIDPrefix)
	w.directives(l.Plugins)
}

func seconds(d time.Duration) int64 { return int64(d / time.Second) }

// writer accumulates `key value` lines.
type writer struct{ b strings.Builder }

func (w *writer) kv(key string, v any) { fmt.Fprintf(&w.b, "%s %v\n", key, v) }

// str writes key and v unless v is empty, which the syntax cannot express.
func (w *writer) str(key, v string) {
	if v != "" {
		w.b.WriteString(key + " " + v + "\n")
	}
}

// flag writes key true when v is set.
func (w *writer) flag(key string, v bool) {
	if v {
		w.kv(key, true)
	}
}

func (w *writer) directives(ds []Directive) {
	for _, d := range ds {
		w.str(d.Key, d.Value)
	}
}

func (w *writer) comment(format string, args ...any) {
	w.b.WriteString("# " + fmt.Sprintf(format, args...) + "\n")
}

func (w *writer) blank() { w.b.WriteString("\n") }

// Redacted is String with the values of secret keys (bridge and cluster
// passwords and keys, plugin options that look like secrets) replaced, for
// output that may be logged or shown.
func (c *Config) Redacted() string {
	lines := strings.SplitAfter(c.String(), "\n")
	for i, line := range lines {
		key, _, ok := strings.Cut(line, " ")
		if ok && secretKey(key) {
			lines[i] = key + " <redacted>\n"
		}
	}
	return strings.Join(lines, "")
}

// secretKey reports keys whose values must not be shown.
func secretKey(key string) bool {
	switch key {
	case "remote_password", "local_password", "password", "bridge_psk", "cluster_secret":
		return true
	}
	if strings.HasPrefix(key, "auth_opt_") || strings.HasPrefix(key, "plugin_opt_") {
		k := strings.ToLower(key)
		for _, s := range []string{"pass", "secret", "psk", "token"} {
			if strings.Contains(k, s) {
				return true
			}
		}
	}
	return false
}
