package config

import (
	"log/slog"
	"net"
	"strconv"
	"time"
)

// Protocols a listener can serve.
const (
	ProtocolMQTT       = "mqtt"
	ProtocolWebsockets = "websockets"
)

// Limits from the MQTT specification that bound configuration values.
const (
	// MaxPacketSizeLimit is the largest MQTT packet: a 268435455-byte
	// remaining length plus the largest fixed header (5 bytes).
	MaxPacketSizeLimit = 268435455 + 5
	// MaxPayloadSize is the largest payload MQTT can carry.
	MaxPayloadSize = 268435455
	// minPacketSize is the smallest non-zero max_packet_size Mosquitto accepts.
	minPacketSize = 20
)

// DefaultPort is the port of the default listener.
const DefaultPort = 1883

// Config is a parsed configuration: the effective value of every setting,
// defaults included.
type Config struct {
	// Listeners are the network listeners, the default listener (from
	// `port`/`bind_address`, or Mosquitto 2's local-only pair) first.
	Listeners []Listener
	// LocalOnly reports Mosquitto 2's local-only mode: no listener, port or
	// bind_address was configured, so the broker listens on 127.0.0.1 and
	// ::1 only and allows anonymous clients unless told otherwise.
	LocalOnly bool

	// PerListenerSettings makes allow_anonymous, password_file, acl_file,
	// allow_zero_length_clientid, auto_id_prefix and the auth plugin keys
	// apply per listener (Listener fields) instead of globally (these).
	PerListenerSettings bool
	// AllowAnonymous lets clients connect without a username. With
	// PerListenerSettings it is the value for listeners that do not set it.
	AllowAnonymous bool
	// AllowZeroLengthClientID lets the broker assign client ids.
	AllowZeroLengthClientID bool
	// AutoIDPrefix prefixes the client ids the broker assigns.
	AutoIDPrefix string
	// PasswordFile is a mosquitto_passwd file; empty for none.
	PasswordFile string
	// ACLFile is a Mosquitto ACL file; empty for none.
	ACLFile string
	// Plugins are the auth plugin lines (auth_plugin, auth_opt_*, plugin,
	// plugin_opt_*, ...) in file order, kept verbatim for the auth package.
	Plugins []Directive
	// ClientIDPrefixes, when set, is the prefix every client id must have
	// (deprecated in Mosquitto).
	ClientIDPrefixes string
	// CheckRetainSource re-checks the publisher's access before a retained
	// message is delivered.
	CheckRetainSource bool

	// MaxPacketSize is the largest packet accepted, in bytes; 0 means the
	// protocol maximum.
	MaxPacketSize int64
	// MessageSizeLimit is the largest publish payload accepted, in bytes;
	// 0 means no limit.
	MessageSizeLimit int64
	// MaxInflightMessages bounds outgoing QoS 1/2 messages in flight per
	// client; 0 means no limit.
	MaxInflightMessages int
	// MaxInflightBytes bounds in-flight payload bytes per client; 0 means
	// no limit.
	MaxInflightBytes int64
	// MaxQueuedMessages bounds messages queued per client above those in
	// flight; 0 means no limit.
	MaxQueuedMessages int
	// MaxQueuedBytes bounds queued payload bytes per client; 0 means no limit.
	MaxQueuedBytes int64
	// QueueQoS0Messages queues QoS 0 messages for offline persistent clients.
	QueueQoS0Messages bool
	// MaxKeepAlive is the largest keepalive granted to MQTT 5 clients.
	MaxKeepAlive time.Duration
	// MemoryLimit bounds the broker's heap, in bytes; 0 means no limit.
	MemoryLimit int64
	// RetainAvailable enables retained messages.
	RetainAvailable bool
	// UpgradeOutgoingQoS delivers at the subscription's QoS (non-standard).
	UpgradeOutgoingQoS bool
	// SetTCPNoDelay disables Nagle's algorithm on client sockets.
	SetTCPNoDelay bool
	// OutgoingTopicAliases lets the broker use topic aliases towards MQTT 5
	// clients that allow them (Starling's own key, outgoing_topic_aliases).
	OutgoingTopicAliases bool
	// PersistentClientExpiration removes persistent sessions not resumed
	// within this time; 0 means never.
	PersistentClientExpiration time.Duration
	// SysInterval is the period of $SYS updates; 0 disables them.
	SysInterval time.Duration

	// LogTypes is the set of Mosquitto log types enabled.
	LogTypes LogType
	// LogDests are where logs go; empty means nowhere (`log_dest none`).
	LogDests []LogDest
	// LogTimestamp adds a timestamp to each log line.
	LogTimestamp bool
	// LogTimestampFormat is a strftime format for the timestamp; empty
	// means seconds since the epoch.
	LogTimestampFormat string
	// LogFacility is the syslog local facility (0-7 for local0-local7), or
	// -1 for the daemon facility.
	LogFacility int
	// LogLevel is the slog level (Starling's own key, log_level; -v on the
	// command line means debug).
	LogLevel slog.Level
	// ConnectionMessages logs client connects and disconnects.
	ConnectionMessages bool
	// WebsocketsLogLevel is libwebsockets' log mask (accepted, unused).
	WebsocketsLogLevel int

	// PIDFile is where to write the process id; empty for none.
	PIDFile string
	// User is the user to switch to when started as root. Unlike
	// Mosquitto, empty (the default) means do not switch.
	User string

	// Persistence stores sessions and retained messages on disk.
	Persistence bool
	// PersistenceFile is Mosquitto's database file name.
	PersistenceFile string
	// PersistenceLocation is the folder of the persistent store; empty
	// means the working directory.
	PersistenceLocation string
	// AutosaveInterval is seconds between saves, or a number of changes
	// when AutosaveOnChanges is set.
	AutosaveInterval int
	// AutosaveOnChanges makes AutosaveInterval count changes, not seconds.
	AutosaveOnChanges bool

	// Bridges are the `connection` sections, kept verbatim.
	Bridges []Bridge
	// Cluster holds Starling's cluster and admin keys (node_name,
	// cluster_*, admin_listen, ...), kept verbatim; Clustering has them
	// typed.
	Cluster    []Directive
	Clustering Clustering

	// Warnings are problems that do not stop the broker: keys not yet
	// supported, settings that have no effect. Each names its file and line.
	Warnings []string
}

// Clustering is the typed form of the cluster and admin keys.
type Clustering struct {
	// NodeName is node_name; empty means the host name.
	NodeName string
	// Listen is cluster_listen (gossip, host:port); empty: no cluster.
	Listen string
	// LinkListen is cluster_link_listen; empty: the gossip port + 1.
	LinkListen string
	// Advertise is cluster_advertise.
	Advertise string
	// Join is cluster_join: seeds, host:port.
	Join []string
	// Expect is cluster_expect (default 1).
	Expect int
	// Secret is cluster_secret.
	Secret string
	// CAFile, CertFile, KeyFile are cluster_cafile/certfile/keyfile.
	CAFile, CertFile, KeyFile string
	// AllowRegisterDuringNetsplit is allow_register_during_netsplit.
	AllowRegisterDuringNetsplit bool
	// DeadNodeTimeout is cluster_dead_node_timeout (default 60s).
	DeadNodeTimeout time.Duration
	// AdminListen is admin_listen (HTTP, host:port); empty: none.
	AdminListen string
}

// Listener is one network listener.
type Listener struct {
	// Port is the TCP port; 0 lets the system choose (or, with an Address
	// that is a path, a Unix socket as in Mosquitto).
	Port int
	// Address is the address or host to bind; empty means all interfaces.
	Address string
	// Default marks the default listener: from `port`/`bind_address` or the
	// local-only pair, not from a `listener` line. -p on the command line
	// replaces its port.
	Default bool
	// File and Line locate the line that defined the listener; empty for
	// listeners that no line defined.
	File string
	Line int

	// Protocol is ProtocolMQTT or ProtocolWebsockets.
	Protocol string
	// SocketDomain restricts the listener to "ipv4" or "ipv6"; empty for both.
	SocketDomain string
	// BindInterface binds to a network interface by name.
	BindInterface string
	// MaxConnections bounds concurrent clients; -1 means no limit.
	MaxConnections int
	// MaxQoS is the highest QoS clients of this listener may use.
	MaxQoS int
	// MaxTopicAlias is the Topic Alias Maximum offered to MQTT 5 clients.
	MaxTopicAlias int
	// MountPoint is prefixed to every topic of this listener's clients.
	MountPoint string
	// ProxyProtocol expects a HAProxy PROXY protocol (v1 or v2) header on
	// every connection (Starling's own key, proxy_protocol).
	ProxyProtocol bool
	// HTTPDir is served over HTTP by websockets listeners.
	HTTPDir string
	// UseUsernameAsClientID replaces the client id with the username.
	UseUsernameAsClientID bool

	// CAFile and CAPath hold the CA certificates trusted for client
	// certificates.
	CAFile string
	CAPath string
	// CertFile and KeyFile are the server's PEM certificate and key; both
	// set enable TLS.
	CertFile string
	KeyFile  string
	// Ciphers is the TLS 1.2 cipher list (OpenSSL names, colon separated).
	Ciphers string
	// CiphersTLS13 is the TLS 1.3 cipher suite list (ciphers_tls1.3).
	CiphersTLS13 string
	// TLSVersion is the minimum TLS version: "tlsv1.1", "tlsv1.2",
	// "tlsv1.3", or empty for the default (1.2).
	TLSVersion string
	// CRLFile is a PEM certificate revocation list for client certificates.
	CRLFile string
	// DHParamFile is accepted for compatibility (Go chooses its own groups).
	DHParamFile string
	// RequireCertificate makes clients present a valid certificate.
	RequireCertificate bool
	// UseIdentityAsUsername uses the certificate's CN as the username.
	UseIdentityAsUsername bool
	// UseSubjectAsUsername uses the certificate's whole subject as the
	// username.
	UseSubjectAsUsername bool

	// The settings below apply only when Config.PerListenerSettings is set;
	// use Config.AuthFor, Config.ClientIDFor and Config.PluginsFor.

	// AllowAnonymous overrides Config.AllowAnonymous; nil means not set.
	AllowAnonymous *bool
	// PasswordFile is this listener's password file.
	PasswordFile string
	// ACLFile is this listener's ACL file.
	ACLFile string
	// AllowZeroLengthClientID overrides Config.AllowZeroLengthClientID;
	// nil means not set.
	AllowZeroLengthClientID *bool
	// AutoIDPrefix overrides Config.AutoIDPrefix; empty means not set.
	AutoIDPrefix string
	// Plugins are this listener's auth plugin lines.
	Plugins []Directive
}

// Directive is one configuration line kept verbatim for a later package to
// type: a bridge, auth plugin or cluster setting.
type Directive struct {
	Key   string
	Value string
	File  string
	Line  int
}

// Bridge is a `connection NAME` section, its lines kept verbatim.
type Bridge struct {
	Name       string
	File       string
	Line       int
	Directives []Directive
}

// LogDest is one log destination: Kind is "stdout", "stderr", "syslog",
// "topic" or "file"; Path is set for "file".
type LogDest struct {
	Kind string
	Path string
}

// LogType is a set of Mosquitto log types.
type LogType uint16

// Mosquitto's log types.
const (
	LogError LogType = 1 << iota
	LogWarning
	LogNotice
	LogInformation
	LogDebug
	LogSubscribe
	LogUnsubscribe
	LogWebsockets

	// LogNone is the empty set.
	LogNone LogType = 0
	// LogAll is every type.
	LogAll = LogError | LogWarning | LogNotice | LogInformation | LogDebug |
		LogSubscribe | LogUnsubscribe | LogWebsockets
	// LogDefault is Mosquitto's default set.
	LogDefault = LogError | LogWarning | LogNotice | LogInformation
)

// logTypeNames lists the log types in the order String prints them.
func logTypeNames() []struct {
	t    LogType
	name string
} {
	return []struct {
		t    LogType
		name string
	}{
		{LogError, "error"}, {LogWarning, "warning"}, {LogNotice, "notice"},
		{LogInformation, "information"}, {LogDebug, "debug"},
		{LogSubscribe, "subscribe"}, {LogUnsubscribe, "unsubscribe"},
		{LogWebsockets, "websockets"},
	}
}

// Default returns the configuration `starling` serves with no arguments,
// which is also what an empty file parses to: Mosquitto 2's local-only mode,
// listeners on 127.0.0.1:1883 and [::1]:1883 with anonymous clients allowed,
// and Mosquitto 2's documented defaults for everything else.
func Default() *Config {
	p := newParser(nil)
	p.finish()
	return p.cfg
}

// newConfig returns the defaults before any listener is decided.
func newConfig() *Config {
	return &Config{
		AllowZeroLengthClientID: true,
		AutoIDPrefix:            "auto-",
		CheckRetainSource:       true,
		MaxInflightMessages:     20,
		MaxQueuedMessages:       1000,
		MaxKeepAlive:            65535 * time.Second,
		RetainAvailable:         true,
		OutgoingTopicAliases:    true,
		SysInterval:             10 * time.Second,
		LogTypes:                LogDefault,
		LogDests:                []LogDest{{Kind: "stderr"}},
		LogTimestamp:            true,
		LogFacility:             -1,
		LogLevel:                slog.LevelInfo,
		ConnectionMessages:      true,
		PersistenceFile:         "mosquitto.db",
		AutosaveInterval:        1800,
	}
}

// newListener returns a listener with Mosquitto's defaults.
func newListener(port int, address string) Listener {
	return Listener{
		Port:           port,
		Address:        address,
		Protocol:       ProtocolMQTT,
		MaxConnections: -1,
		MaxQoS:         2,
		MaxTopicAlias:  10,
	}
}

// clone returns a copy of l that shares no memory with it.
func (l *Listener) clone() Listener {
	c := *l
	if l.AllowAnonymous != nil {
		v := *l.AllowAnonymous
		c.AllowAnonymous = &v
	}
	if l.AllowZeroLengthClientID != nil {
		v := *l.AllowZeroLengthClientID
		c.AllowZeroLengthClientID = &v
	}
	if l.Plugins != nil {
		c.Plugins = append([]Directive(nil), l.Plugins...)
	}
	return c
}

// TLS reports whether the listener serves TLS.
func (l *Listener) TLS() bool { return l.CertFile != "" && l.KeyFile != "" }

// Name returns a short name for logs and metrics, such as
// "mqtt://127.0.0.1:1883", "mqtts://:8883", "ws://:8080" or "wss://:8081".
func (l *Listener) Name() string {
	scheme := "mqtt"
	if l.Protocol == ProtocolWebsockets {
		scheme = "ws"
	}
	if l.TLS() {
		scheme += "s"
	}
	return scheme + "://" + net.JoinHostPort(l.Address, strconv.Itoa(l.Port))
}

// AuthFor returns the allow_anonymous, password_file and acl_file that apply
// to listener l, following per_listener_settings.
func (c *Config) AuthFor(l *Listener) (allowAnonymous bool, passwordFile, aclFile string) {
	if !c.PerListenerSettings || l == nil {
		return c.AllowAnonymous, c.PasswordFile, c.ACLFile
	}
	allowAnonymous = c.AllowAnonymous
	if l.AllowAnonymous != nil {
		allowAnonymous = *l.AllowAnonymous
	}
	return allowAnonymous, l.PasswordFile, l.ACLFile
}

// ClientIDFor returns the allow_zero_length_clientid and auto_id_prefix that
// apply to listener l, following per_listener_settings.
func (c *Config) ClientIDFor(l *Listener) (allowZeroLength bool, autoIDPrefix string) {
	allowZeroLength, autoIDPrefix = c.AllowZeroLengthClientID, c.AutoIDPrefix
	if !c.PerListenerSettings || l == nil {
		return allowZeroLength, autoIDPrefix
	}
	if l.AllowZeroLengthClientID != nil {
		allowZeroLength = *l.AllowZeroLengthClientID
	}
	if l.AutoIDPrefix != "" {
		autoIDPrefix = l.AutoIDPrefix
	}
	return allowZeroLength, autoIDPrefix
}

// PluginsFor returns the auth plugin lines that apply to listener l,
// following per_listener_settings.
func (c *Config) PluginsFor(l *Listener) []Directive {
	if !c.PerListenerSettings || l == nil {
		return c.Plugins
	}
	return l.Plugins
}

// SetDefaultPort makes the default listener(s) listen on port p, as -p on
// the command line does. A configuration without a default listener gets
// one on all interfaces.
func (c *Config) SetDefaultPort(p int) {
	found := false
	for i := range c.Listeners {
		if c.Listeners[i].Default {
			c.Listeners[i].Port = p
			found = true
		}
	}
	if !found {
		l := newListener(p, "")
		l.Default = true
		c.Listeners = append([]Listener{l}, c.Listeners...)
	}
}
