package config

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ErrUnknownKey is wrapped by the error for a key nobody knows.
var ErrUnknownKey = errors.New("unknown configuration key")

// Error is one problem of a configuration file, at a line.
type Error struct {
	File string
	Line int
	Err  error
}

func (e *Error) Error() string { return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err) }

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// maxLine bounds a configuration line, so that a runaway file cannot exhaust
// memory.
const maxLine = 1 << 20

// fileSystem is what the parser reads included files from; tests and the
// fuzzer substitute their own.
type fileSystem interface {
	Open(name string) (io.ReadCloser, error)
	ReadDir(name string) ([]string, error)
}

// osFS reads the real file system; relative paths are relative to the
// working directory, as in Mosquitto.
type osFS struct{}

func (osFS) Open(name string) (io.ReadCloser, error) { return os.Open(name) }

func (osFS) ReadDir(name string) ([]string, error) {
	entries, err := os.ReadDir(name)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// Load reads and parses the file at path. It does not call Validate.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	return Parse(f, path)
}

// Parse reads a configuration in Mosquitto's syntax; filename names it in
// errors and warnings. include_dir paths are read from the file system,
// relative ones from the working directory as in Mosquitto. Every problem
// is reported at once (errors.Join of *Error values). Parse does not call
// Validate.
func Parse(r io.Reader, filename string) (*Config, error) {
	return parse(r, filename, osFS{})
}

func parse(r io.Reader, filename string, fsys fileSystem) (*Config, error) {
	p := newParser(fsys)
	p.main = filename
	p.readFile(r, filename, 0)
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	p.finish()
	return p.cfg, nil
}

// parser holds the state of one Parse.
type parser struct {
	fsys fileSystem
	main string
	cfg  *Config
	errs []error

	// tmpl collects the default listener's settings: those given before
	// any listener line of a file, or after port/bind_address.
	tmpl     Listener
	tmplKeys []Directive // per-listener keys that went to tmpl
	portSet  bool        // port or bind_address given
	explicit []Listener  // from listener lines

	anonSet        bool // global allow_anonymous given
	sawSecurity    bool // a security setting was given (for per_listener_settings)
	logTypeSet     bool
	logDestSet     bool
	perListenerSet bool
}

// section is the per-file state: Mosquitto starts every file, included or
// not, with the default listener current and no bridge.
type section struct {
	file     string
	listener int // index in explicit, or -1 for the default listener
	bridge   int // index in cfg.Bridges, or -1
}

func newParser(fsys fileSystem) *parser {
	return &parser{
		fsys: fsys,
		cfg:  newConfig(),
		tmpl: newListener(DefaultPort, ""),
	}
}

func (p *parser) errorf(d Directive, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: d.File, Line: d.Line, Err: fmt.Errorf(format, args...)})
}

func (p *parser) warnf(d Directive, format string, args ...any) {
	p.cfg.Warnings = append(p.cfg.Warnings, fmt.Sprintf("%s:%d: ", d.File, d.Line)+fmt.Sprintf(format, args...))
}

// readFile parses one file; level is 0 for the main file.
func (p *parser) readFile(r io.Reader, file string, level int) {
	br := bufio.NewReader(r)
	s := &section{file: file, listener: -1, bridge: -1}
	for n := 1; ; n++ {
		line, err := readLine(br)
		if err == errLineTooLong {
			p.errs = append(p.errs, &Error{File: file, Line: n, Err: fmt.Errorf("line longer than %d bytes", maxLine)})
			return
		}
		if err != nil && err != io.EOF {
			p.errs = append(p.errs, &Error{File: file, Line: n, Err: err})
			return
		}
		if line == "" && err == io.EOF {
			return
		}
		if n == 1 {
			line = strings.TrimPrefix(line, "\ufeff") // a byte order mark
		}
		p.line(s, line, n, level)
		if err == io.EOF {
			return
		}
	}
}

var errLineTooLong = errors.New("line too long")

// readLine returns the next line without its end of line.
func readLine(br *bufio.Reader) (string, error) {
	var b []byte
	for {
		chunk, isPrefix, err := br.ReadLine()
		b = append(b, chunk...)
		if len(b) > maxLine {
			return "", errLineTooLong
		}
		if err != nil {
			return string(b), err
		}
		if !isPrefix {
			return string(b), nil
		}
	}
}

// isBlank reports the characters trimmed around keys and values.
func isBlank(r rune) bool { return r == ' ' || r == '\t' || r == '\r' }

// line handles one line of a file.
func (p *parser) line(s *section, text string, n, level int) {
	text = strings.TrimFunc(text, isBlank)
	if text == "" || text[0] == '#' {
		return
	}
	key, value := text, ""
	if i := strings.IndexAny(text, " \t"); i >= 0 {
		key, value = text[:i], strings.TrimLeftFunc(text[i:], isBlank)
	}
	d := Directive{Key: key, Value: value, File: s.file, Line: n}
	if value == "" {
		if known(key) {
			p.errorf(d, "%s: missing value", key)
		} else {
			p.errorf(d, "%w %q", ErrUnknownKey, key)
		}
		return
	}
	p.directive(s, d, level)
}

// known reports whether key is a configuration key of any kind.
func known(key string) bool {
	if _, ok := listenerKey(key); ok {
		return true
	}
	if laterWork(key) != "" || securityKey(key) || ignoredKey(key) != "" {
		return true
	}
	switch key {
	case "listener", "port", "bind_address", "include_dir", "connection":
		return true
	}
	_, ok := globalKey(key)
	return ok
}

// directive applies one key and value.
func (p *parser) directive(s *section, d Directive, level int) {
	switch d.Key {
	case "include_dir":
		p.includeDir(d, level)
		return
	case "listener":
		p.listener(s, d)
		return
	case "port":
		if v, ok := p.intIn(d, 1, 65535); ok {
			p.tmpl.Port = int(v)
			p.tmpl.File, p.tmpl.Line = d.File, d.Line
			p.portSet = true
			s.listener = -1
		}
		return
	case "bind_address":
		p.tmpl.Address = d.Value
		p.tmpl.File, p.tmpl.Line = d.File, d.Line
		p.portSet = true
		s.listener = -1
		return
	case "connection":
		p.cfg.Bridges = append(p.cfg.Bridges, Bridge{Name: d.Value, File: d.File, Line: d.Line})
		s.bridge = len(p.cfg.Bridges) - 1
		p.warnf(d, "key %s is not yet supported (bridges)", d.Key)
		return
	case "per_listener_settings":
		v, ok := p.boolean(d)
		if !ok {
			return
		}
		if p.cfg.PerListenerSettings && !v {
			p.warnf(d, "per_listener_settings cannot be unset once set; ignored")
			return
		}
		if v && p.sawSecurity {
			p.errorf(d, "per_listener_settings must be set before any other security settings")
			return
		}
		p.cfg.PerListenerSettings = v
		p.perListenerSet = true
		return
	}
	if securityKey(d.Key) {
		p.security(s, d)
		return
	}
	if area := laterWork(d.Key); area != "" {
		p.later(s, d, area)
		return
	}
	if set, ok := listenerKey(d.Key); ok {
		l := p.current(s, d)
		set(p, l, d)
		return
	}
	if set, ok := globalKey(d.Key); ok {
		set(p, p.cfg, d)
		return
	}
	if msg := ignoredKey(d.Key); msg != "" {
		p.ignored(d, msg)
		return
	}
	p.errorf(d, "%w %q", ErrUnknownKey, d.Key)
}

// current returns the listener that per-listener keys of s apply to.
func (p *parser) current(s *section, d Directive) *Listener {
	if s.listener < 0 {
		p.tmplKeys = append(p.tmplKeys, d)
		return &p.tmpl
	}
	return &p.explicit[s.listener]
}

func (p *parser) listener(s *section, d Directive) {
	f := strings.Fields(d.Value)
	if len(f) == 0 || len(f) > 2 {
		p.errorf(d, "listener: want PORT [ADDRESS], got %q", d.Value)
		return
	}
	port, ok := p.intTokenIn(d, f[0], 0, 65535)
	if !ok {
		return
	}
	l := newListener(int(port), "")
	if len(f) == 2 {
		l.Address = f[1]
	}
	l.File, l.Line = d.File, d.Line
	p.explicit = append(p.explicit, l)
	s.listener = len(p.explicit) - 1
}

func (p *parser) includeDir(d Directive, level int) {
	if level > 0 {
		p.errorf(d, "include_dir can only be used in the main configuration file")
		return
	}
	if p.fsys == nil {
		p.errorf(d, "include_dir is not available")
		return
	}
	names, err := p.fsys.ReadDir(d.Value)
	if err != nil {
		p.errorf(d, "include_dir: %v", err)
		return
	}
	var confs []string
	for _, n := range names {
		if strings.HasSuffix(n, ".conf") {
			confs = append(confs, n)
		}
	}
	sort.Slice(confs, func(i, j int) bool { return mosquittoLess(confs[i], confs[j]) })
	mainAbs, _ := filepath.Abs(p.main)
	for _, n := range confs {
		path := filepath.Join(d.Value, n)
		if abs, err := filepath.Abs(path); err == nil && abs == mainAbs {
			p.errorf(d, "include_dir %s contains the main configuration file", d.Value)
			continue
		}
		f, err := p.fsys.Open(path)
		if err != nil {
			p.errorf(d, "include_dir: %v", err)
			continue
		}
		p.readFile(f, path, level+1)
		f.Close()
	}
}

// mosquittoLess orders file names as Mosquitto does: case-insensitively,
// and an upper-case letter before the same letter in lower case.
func mosquittoLess(a, b string) bool {
	upper := func(c byte) byte {
		if 'a' <= c && c <= 'z' {
			return c - 'a' + 'A'
		}
		return c
	}
	for i := 0; i < len(a) && i < len(b); i++ {
		if ua, ub := upper(a[i]), upper(b[i]); ua != ub {
			return ua < ub
		}
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return len(a) < len(b)
}

// securityKey reports the keys that per_listener_settings makes per listener.
func securityKey(key string) bool {
	switch key {
	case "allow_anonymous", "password_file", "acl_file", "allow_zero_length_clientid",
		"auto_id_prefix", "auth_plugin", "plugin", "auth_plugin_deny_special_chars":
		return true
	}
	return strings.HasPrefix(key, "auth_opt_") || strings.HasPrefix(key, "plugin_opt_")
}

// pluginKey reports the security keys kept verbatim for the auth package.
func pluginKey(key string) bool {
	switch key {
	case "auth_plugin", "plugin", "auth_plugin_deny_special_chars":
		return true
	}
	return strings.HasPrefix(key, "auth_opt_") || strings.HasPrefix(key, "plugin_opt_")
}

// security applies a key that per_listener_settings makes per listener.
func (p *parser) security(s *section, d Directive) {
	p.sawSecurity = true
	var l *Listener
	if p.cfg.PerListenerSettings {
		l = p.current(s, d)
	}
	c := p.cfg
	if pluginKey(d.Key) {
		if d.Key == "auth_plugin_deny_special_chars" {
			if _, ok := p.boolean(d); !ok {
				return
			}
		}
		p.warnf(d, "key %s is not yet supported (auth plugins)", d.Key)
		if l != nil {
			l.Plugins = append(l.Plugins, d)
		} else {
			c.Plugins = append(c.Plugins, d)
		}
		return
	}
	switch d.Key {
	case "allow_anonymous":
		v, ok := p.boolean(d)
		if !ok {
			return
		}
		if l != nil {
			l.AllowAnonymous = &v
		} else {
			c.AllowAnonymous = v
			p.anonSet = true
		}
	case "allow_zero_length_clientid":
		v, ok := p.boolean(d)
		if !ok {
			return
		}
		if l != nil {
			l.AllowZeroLengthClientID = &v
		} else {
			c.AllowZeroLengthClientID = v
		}
	case "password_file":
		if l != nil {
			l.PasswordFile = d.Value
		} else {
			c.PasswordFile = d.Value
		}
	case "acl_file":
		if l != nil {
			l.ACLFile = d.Value
		} else {
			c.ACLFile = d.Value
		}
	case "auto_id_prefix":
		if l != nil {
			l.AutoIDPrefix = d.Value
		} else {
			c.AutoIDPrefix = d.Value
		}
	}
}

// laterWork names the area of keys recognised but not yet supported; empty
// for other keys.
func laterWork(key string) string {
	switch key {
	case "address", "addresses", "topic", "remote_username", "remote_password",
		"remote_clientid", "local_clientid", "cleansession", "local_cleansession",
		"keepalive_interval", "notifications", "notifications_local_only",
		"notification_topic", "try_private", "bridge_protocol_version",
		"bridge_cafile", "bridge_capath", "bridge_certfile", "bridge_keyfile",
		"bridge_insecure", "bridge_alpn", "bridge_bind_address", "bridge_identity",
		"bridge_psk", "bridge_require_ocsp", "bridge_tls_version",
		"restart_timeout", "start_type", "round_robin", "bridge_attempt_unsubscribe",
		"local_username", "local_password", "idle_timeout", "threshold",
		"bridge_outgoing_retain", "bridge_max_packet_size", "bridge_max_topic_alias",
		"bridge_receive_maximum", "bridge_session_expiry_interval",
		"clientid", "username", "password":
		return "bridges"
	case "persistence", "persistence_file", "persistence_location",
		"autosave_interval", "autosave_on_changes", "retained_persistence":
		return "persistence"
	case "node_name", "cluster_listen", "cluster_link_listen", "cluster_advertise",
		"cluster_join", "cluster_expect", "cluster_secret", "cluster_cafile",
		"cluster_certfile", "cluster_keyfile", "allow_register_during_netsplit",
		"cluster_dead_node_timeout", "admin_listen":
		return "cluster"
	case "global_plugin", "plugin_load":
		return "auth plugins"
	}
	return ""
}

// later records a key that belongs to work not done yet.
func (p *parser) later(s *section, d Directive, area string) {
	switch area {
	case "bridges":
		if s.bridge < 0 {
			p.errorf(d, "%s: only valid in a bridge section (after a connection line)", d.Key)
			return
		}
		b := &p.cfg.Bridges[s.bridge]
		b.Directives = append(b.Directives, d)
	case "persistence":
		c := p.cfg
		switch d.Key {
		case "persistence", "retained_persistence":
			if v, ok := p.boolean(d); ok {
				c.Persistence = v
			}
		case "persistence_file":
			c.PersistenceFile = d.Value
			p.warnf(d, "key %s has no effect: Starling keeps its state in a folder (persistence_location)", d.Key)
		case "persistence_location":
			c.PersistenceLocation = d.Value
		case "autosave_interval":
			if v, ok := p.intIn(d, 0, 1<<31-1); ok {
				c.AutosaveInterval = int(v)
			}
			p.warnf(d, "key %s has no effect: Starling writes each change as it happens", d.Key)
		case "autosave_on_changes":
			if v, ok := p.boolean(d); ok {
				c.AutosaveOnChanges = v
			}
			p.warnf(d, "key %s has no effect: Starling writes each change as it happens", d.Key)
		}
		return
	case "cluster":
		p.cfg.Cluster = append(p.cfg.Cluster, d)
		p.clusterKey(d)
		return
	case "auth plugins":
		p.cfg.Plugins = append(p.cfg.Plugins, d)
	}
	p.warnf(d, "key %s is not yet supported (%s)", d.Key, area)
}

// ignoredKey returns why a Mosquitto key Starling does not use is accepted
// or refused: "ignore: ..." keys only warn, "refuse: ..." keys are errors
// because ignoring them would weaken security. Empty for other keys.
func ignoredKey(key string) string {
	switch key {
	case "allow_duplicate_messages":
		return "ignore: it is deprecated and Starling never sends duplicates for overlapping subscriptions"
	case "websockets_headers_size":
		return "ignore: it is a libwebsockets setting"
	case "psk_file":
		return "ignore: pre-shared-key TLS is not supported"
	case "tls_keyform":
		return "ignore: only PEM keys are supported"
	case "psk_hint":
		return "refuse: pre-shared-key TLS is not supported"
	case "tls_engine", "tls_engine_kpass_sha1":
		return "refuse: OpenSSL engines are not supported"
	}
	return ""
}

func (p *parser) ignored(d Directive, msg string) {
	what, why, _ := strings.Cut(msg, ": ")
	if what == "refuse" {
		p.errorf(d, "%s is not supported by Starling: %s", d.Key, why)
		return
	}
	if d.Key == "tls_keyform" && d.Value != "pem" {
		p.errorf(d, "tls_keyform %s is not supported by Starling: %s", d.Value, why)
		return
	}
	p.warnf(d, "key %s is ignored: %s", d.Key, why)
}

// listenerSetter applies a per-listener key.
type listenerSetter func(p *parser, l *Listener, d Directive)

func listenerKey(key string) (listenerSetter, bool) {
	str := func(f func(l *Listener) *string) listenerSetter {
		return func(_ *parser, l *Listener, d Directive) { *f(l) = d.Value }
	}
	boolean := func(f func(l *Listener) *bool) listenerSetter {
		return func(p *parser, l *Listener, d Directive) {
			if v, ok := p.boolean(d); ok {
				*f(l) = v
			}
		}
	}
	integer := func(min, max int64, f func(l *Listener) *int) listenerSetter {
		return func(p *parser, l *Listener, d Directive) {
			if v, ok := p.intIn(d, min, max); ok {
				*f(l) = int(v)
			}
		}
	}
	oneOf := func(f func(l *Listener) *string, values ...string) listenerSetter {
		return func(p *parser, l *Listener, d Directive) {
			if v, ok := p.enum(d, values...); ok {
				*f(l) = v
			}
		}
	}
	switch key {
	case "protocol":
		return oneOf(func(l *Listener) *string { return &l.Protocol }, ProtocolMQTT, ProtocolWebsockets), true
	case "socket_domain":
		return oneOf(func(l *Listener) *string { return &l.SocketDomain }, "ipv4", "ipv6"), true
	case "tls_version":
		return oneOf(func(l *Listener) *string { return &l.TLSVersion }, "tlsv1.1", "tlsv1.2", "tlsv1.3"), true
	case "bind_interface":
		return str(func(l *Listener) *string { return &l.BindInterface }), true
	case "max_connections":
		return integer(-1, 1<<31-1, func(l *Listener) *int { return &l.MaxConnections }), true
	case "max_qos":
		return integer(0, 2, func(l *Listener) *int { return &l.MaxQoS }), true
	case "max_topic_alias":
		return integer(0, 65535, func(l *Listener) *int { return &l.MaxTopicAlias }), true
	case "mount_point":
		return func(p *parser, l *Listener, d Directive) {
			if strings.ContainsAny(d.Value, "+#") {
				p.errorf(d, "mount_point: %q must not contain wildcards", d.Value)
				return
			}
			l.MountPoint = d.Value
		}, true
	case "cafile":
		return str(func(l *Listener) *string { return &l.CAFile }), true
	case "capath":
		return str(func(l *Listener) *string { return &l.CAPath }), true
	case "certfile":
		return str(func(l *Listener) *string { return &l.CertFile }), true
	case "keyfile":
		return str(func(l *Listener) *string { return &l.KeyFile }), true
	case "ciphers":
		return str(func(l *Listener) *string { return &l.Ciphers }), true
	case "ciphers_tls1.3":
		return str(func(l *Listener) *string { return &l.CiphersTLS13 }), true
	case "crlfile":
		return str(func(l *Listener) *string { return &l.CRLFile }), true
	case "dhparamfile":
		return str(func(l *Listener) *string { return &l.DHParamFile }), true
	case "http_dir":
		return str(func(l *Listener) *string { return &l.HTTPDir }), true
	case "require_certificate":
		return boolean(func(l *Listener) *bool { return &l.RequireCertificate }), true
	case "use_identity_as_username":
		return boolean(func(l *Listener) *bool { return &l.UseIdentityAsUsername }), true
	case "use_subject_as_username":
		return boolean(func(l *Listener) *bool { return &l.UseSubjectAsUsername }), true
	case "use_username_as_clientid":
		return boolean(func(l *Listener) *bool { return &l.UseUsernameAsClientID }), true
	case "proxy_protocol":
		return boolean(func(l *Listener) *bool { return &l.ProxyProtocol }), true
	}
	return nil, false
}

// globalSetter applies a global key.
type globalSetter func(p *parser, c *Config, d Directive)

func globalKey(key string) (globalSetter, bool) {
	str := func(f func(c *Config) *string) globalSetter {
		return func(_ *parser, c *Config, d Directive) { *f(c) = d.Value }
	}
	boolean := func(f func(c *Config) *bool) globalSetter {
		return func(p *parser, c *Config, d Directive) {
			if v, ok := p.boolean(d); ok {
				*f(c) = v
			}
		}
	}
	integer := func(min, max int64, f func(c *Config) *int) globalSetter {
		return func(p *parser, c *Config, d Directive) {
			if v, ok := p.intIn(d, min, max); ok {
				*f(c) = int(v)
			}
		}
	}
	size := func(min, max int64, f func(c *Config) *int64) globalSetter {
		return func(p *parser, c *Config, d Directive) {
			if v, ok := p.intIn(d, min, max); ok {
				*f(c) = v
			}
		}
	}
	seconds := func(max int64, f func(c *Config) *time.Duration) globalSetter {
		return func(p *parser, c *Config, d Directive) {
			if v, ok := p.intIn(d, 0, max); ok {
				*f(c) = time.Duration(v) * time.Second
			}
		}
	}
	const maxInt64 = 1<<63 - 1
	switch key {
	case "max_packet_size":
		return func(p *parser, c *Config, d Directive) {
			v, ok := p.intIn(d, 0, MaxPacketSizeLimit)
			if ok && v != 0 && v < minPacketSize {
				p.errorf(d, "max_packet_size: %d is below the minimum of %d bytes (0 means no limit)", v, minPacketSize)
				return
			}
			if ok {
				c.MaxPacketSize = v
			}
		}, true
	case "message_size_limit":
		return size(0, MaxPayloadSize, func(c *Config) *int64 { return &c.MessageSizeLimit }), true
	case "max_inflight_messages":
		return integer(0, 65535, func(c *Config) *int { return &c.MaxInflightMessages }), true
	case "max_inflight_bytes":
		return size(0, maxInt64, func(c *Config) *int64 { return &c.MaxInflightBytes }), true
	case "max_queued_messages":
		return integer(0, 1<<31-1, func(c *Config) *int { return &c.MaxQueuedMessages }), true
	case "max_queued_bytes":
		return size(0, maxInt64, func(c *Config) *int64 { return &c.MaxQueuedBytes }), true
	case "memory_limit":
		return size(0, maxInt64, func(c *Config) *int64 { return &c.MemoryLimit }), true
	case "queue_qos0_messages":
		return boolean(func(c *Config) *bool { return &c.QueueQoS0Messages }), true
	case "max_keepalive":
		return seconds(65535, func(c *Config) *time.Duration { return &c.MaxKeepAlive }), true
	case "sys_interval":
		return seconds(65535, func(c *Config) *time.Duration { return &c.SysInterval }), true
	case "retain_available":
		return boolean(func(c *Config) *bool { return &c.RetainAvailable }), true
	case "upgrade_outgoing_qos":
		return boolean(func(c *Config) *bool { return &c.UpgradeOutgoingQoS }), true
	case "set_tcp_nodelay":
		return boolean(func(c *Config) *bool { return &c.SetTCPNoDelay }), true
	case "check_retain_source":
		return boolean(func(c *Config) *bool { return &c.CheckRetainSource }), true
	case "connection_messages":
		return boolean(func(c *Config) *bool { return &c.ConnectionMessages }), true
	case "log_timestamp":
		return boolean(func(c *Config) *bool { return &c.LogTimestamp }), true
	case "outgoing_topic_aliases":
		return boolean(func(c *Config) *bool { return &c.OutgoingTopicAliases }), true
	case "log_timestamp_format":
		return str(func(c *Config) *string { return &c.LogTimestampFormat }), true
	case "pid_file":
		return str(func(c *Config) *string { return &c.PIDFile }), true
	case "user":
		return str(func(c *Config) *string { return &c.User }), true
	case "clientid_prefixes":
		return str(func(c *Config) *string { return &c.ClientIDPrefixes }), true
	case "websockets_log_level":
		return integer(0, 1<<31-1, func(c *Config) *int { return &c.WebsocketsLogLevel }), true
	case "log_facility":
		return integer(0, 7, func(c *Config) *int { return &c.LogFacility }), true
	case "persistent_client_expiration":
		return func(p *parser, c *Config, d Directive) {
			v, err := ParsePeriod(d.Value)
			if err != nil {
				p.errorf(d, "persistent_client_expiration: %v", err)
				return
			}
			c.PersistentClientExpiration = v
		}, true
	case "log_level":
		return func(p *parser, c *Config, d Directive) {
			v, ok := p.enum(d, "debug", "info", "warn", "error")
			if !ok {
				return
			}
			var l slog.Level
			_ = l.UnmarshalText([]byte(v))
			c.LogLevel = l
		}, true
	case "log_type":
		return (*parser).logType, true
	case "log_dest":
		return (*parser).logDest, true
	}
	return nil, false
}

func (p *parser) logType(c *Config, d Directive) {
	if !p.logTypeSet {
		p.logTypeSet = true
		c.LogTypes = LogNone
	}
	for _, f := range strings.Fields(d.Value) {
		switch f {
		case "none":
			c.LogTypes = LogNone
			continue
		case "all":
			c.LogTypes = LogAll
			continue
		}
		found := false
		for _, n := range logTypeNames() {
			if n.name == f {
				c.LogTypes |= n.t
				found = true
			}
		}
		if !found {
			p.errorf(d, "log_type: invalid value %q (want error, warning, notice, information, debug, subscribe, unsubscribe, websockets, none or all)", f)
		}
	}
}

func (p *parser) logDest(c *Config, d Directive) {
	if !p.logDestSet {
		p.logDestSet = true
		c.LogDests = nil
	}
	kind, rest := d.Value, ""
	if i := strings.IndexAny(d.Value, " \t"); i >= 0 {
		kind, rest = d.Value[:i], strings.TrimLeftFunc(d.Value[i:], isBlank)
	}
	switch kind {
	case "none":
		if rest != "" {
			p.errorf(d, "log_dest: unexpected %q after none", rest)
			return
		}
		c.LogDests = nil
	case "stdout", "stderr", "syslog", "topic":
		if rest != "" {
			p.errorf(d, "log_dest: unexpected %q after %s", rest, kind)
			return
		}
		addLogDest(c, LogDest{Kind: kind})
	case "file":
		if rest == "" {
			p.errorf(d, "log_dest: file needs a path")
			return
		}
		addLogDest(c, LogDest{Kind: kind, Path: rest})
	case "dlt":
		p.warnf(d, "log_dest dlt is not supported; ignored")
	default:
		p.errorf(d, "log_dest: invalid destination %q (want stdout, stderr, syslog, topic, file PATH or none)", kind)
	}
}

func addLogDest(c *Config, ld LogDest) {
	for _, have := range c.LogDests {
		if have == ld {
			return
		}
	}
	c.LogDests = append(c.LogDests, ld)
}

// token returns the single value of a key that takes one; a trailing
// `# comment`, which Mosquitto ignores there, is dropped with a warning.
func (p *parser) token(d Directive) (string, bool) {
	f := strings.FieldsFunc(d.Value, isBlank)
	if len(f) == 0 {
		p.errorf(d, "%s: a value is required", d.Key)
		return "", false
	}
	if len(f) > 1 {
		if !strings.HasPrefix(f[1], "#") {
			p.errorf(d, "%s: want one value, got %q", d.Key, d.Value)
			return "", false
		}
		p.warnf(d, "%s: text after the value ignored: %q", d.Key, strings.Join(f[1:], " "))
	}
	return f[0], true
}

// boolean parses true or false (and Mosquitto's 1 or 0).
func (p *parser) boolean(d Directive) (bool, bool) {
	v, ok := p.token(d)
	if !ok {
		return false, false
	}
	switch v {
	case "true", "1":
		return true, true
	case "false", "0":
		return false, true
	}
	p.errorf(d, "%s: invalid boolean %q (want true or false)", d.Key, v)
	return false, false
}

func (p *parser) intIn(d Directive, min, max int64) (int64, bool) {
	v, ok := p.token(d)
	if !ok {
		return 0, false
	}
	return p.intTokenIn(d, v, min, max)
}

func (p *parser) intTokenIn(d Directive, tok string, min, max int64) (int64, bool) {
	v, err := strconv.ParseInt(tok, 10, 64)
	if err != nil {
		p.errorf(d, "%s: invalid integer %q", d.Key, tok)
		return 0, false
	}
	if v < min || v > max {
		p.errorf(d, "%s: %d out of range [%d, %d]", d.Key, v, min, max)
		return 0, false
	}
	return v, true
}

func (p *parser) enum(d Directive, values ...string) (string, bool) {
	v, ok := p.token(d)
	if !ok {
		return "", false
	}
	for _, want := range values {
		if v == want {
			return v, true
		}
	}
	p.errorf(d, "%s: invalid value %q (want %s)", d.Key, v, strings.Join(values, ", "))
	return "", false
}

// Period units of persistent_client_expiration, largest first.
func periodUnits() []struct {
	suffix byte
	d      time.Duration
} {
	const day = 24 * time.Hour
	return []struct {
		suffix byte
		d      time.Duration
	}{
		{'y', 365 * day}, {'m', 30 * day}, {'w', 7 * day}, {'d', day}, {'h', time.Hour},
	}
}

// ParsePeriod parses Mosquitto's period syntax: a positive integer followed
// by h (hours), d (days), w (weeks), m (months of 30 days) or y (years of
// 365 days), as in `14d`.
func ParsePeriod(s string) (time.Duration, error) {
	if len(s) < 2 {
		return 0, fmt.Errorf("invalid period %q (want a number followed by h, d, w, m or y)", s)
	}
	var unit time.Duration
	for _, u := range periodUnits() {
		if s[len(s)-1] == u.suffix {
			unit = u.d
		}
	}
	n, err := strconv.ParseInt(s[:len(s)-1], 10, 64)
	if unit == 0 || err != nil {
		return 0, fmt.Errorf("invalid period %q (want a number followed by h, d, w, m or y)", s)
	}
	if n <= 0 || n > int64((1<<63-1)/unit) {
		return 0, fmt.Errorf("period %q out of range", s)
	}
	return time.Duration(n) * unit, nil
}

// FormatPeriod formats d in the largest period unit that divides it; it
// returns "" for a duration that is not a whole number of hours.
func FormatPeriod(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	for _, u := range periodUnits() {
		if d%u.d == 0 {
			return strconv.FormatInt(int64(d/u.d), 10) + string(u.suffix)
		}
	}
	return ""
}

// finish decides the listeners and the defaults that depend on them.
func (p *parser) finish() {
	c := p.cfg
	c.LocalOnly = len(p.explicit) == 0 && !p.portSet
	if !p.anonSet {
		c.AllowAnonymous = c.LocalOnly
	}
	var ls []Listener
	switch {
	case c.LocalOnly:
		for _, addr := range []string{"127.0.0.1", "::1"} {
			l := p.tmpl.clone()
			l.Address, l.Default = addr, true
			ls = append(ls, l)
		}
	case p.portSet:
		l := p.tmpl.clone()
		l.Default = true
		ls = append(ls, l)
	default:
		for _, d := range p.tmplKeys {
			p.warnf(d, "%s before the first listener line applies to no listener: add a port line or move it after a listener line", d.Key)
		}
	}
	c.Listeners = append(ls, p.explicit...)
}

// clusterKey types one cluster or admin key.
func (p *parser) clusterKey(d Directive) {
	c := &p.cfg.Clustering
	addr := func() string {
		v, ok := p.token(d)
		if !ok {
			return ""
		}
		if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
			p.errorf(d, "%s: %q is not host:port", d.Key, v)
			return ""
		}
		return v
	}
	switch d.Key {
	case "node_name":
		if v, ok := p.token(d); ok {
			c.NodeName = v
		}
	case "cluster_listen":
		c.Listen = addr()
	case "cluster_link_listen":
		c.LinkListen = addr()
	case "admin_listen":
		c.AdminListen = addr()
	case "cluster_advertise":
		if v, ok := p.token(d); ok {
			c.Advertise = v
		}
	case "cluster_join":
		for _, s := range strings.FieldsFunc(d.Value, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
			if _, port, err := net.SplitHostPort(s); err != nil || port == "" {
				p.errorf(d, "%s: seed %q is not host:port", d.Key, s)
				continue
			}
			c.Join = append(c.Join, s)
		}
	case "cluster_expect":
		if v, ok := p.intIn(d, 1, 1000); ok {
			c.Expect = int(v)
		}
	case "cluster_secret":
		c.Secret = d.Value
	case "cluster_cafile":
		c.CAFile = d.Value
	case "cluster_certfile":
		c.CertFile = d.Value
	case "cluster_keyfile":
		c.KeyFile = d.Value
	case "allow_register_during_netsplit":
		if v, ok := p.boolean(d); ok {
			c.AllowRegisterDuringNetsplit = v
		}
	case "cluster_dead_node_timeout":
		v, ok := p.token(d)
		if !ok {
			return
		}
		dur, err := time.ParseDuration(v)
		if err != nil {
			secs, err2 := strconv.ParseInt(v, 10, 64)
			if err2 != nil {
				p.errorf(d, "%s: %q is not a duration (60s, 5m) or a number of seconds", d.Key, v)
				return
			}
			dur = time.Duration(secs) * time.Second
		}
		if dur < time.Second {
			p.errorf(d, "%s: %v is below 1s", d.Key, dur)
			return
		}
		c.DeadNodeTimeout = dur
	}
}
