package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/starlingmq/starling/internal/admin"
	"github.com/starlingmq/starling/internal/auth/file"
	"github.com/starlingmq/starling/internal/broker"
	"github.com/starlingmq/starling/internal/cluster"
	"github.com/starlingmq/starling/internal/config"
	"github.com/starlingmq/starling/internal/listener"
	"github.com/starlingmq/starling/internal/store"
)

// portList collects repeated -p flags.
type portList []int

func (p *portList) String() string { return fmt.Sprint(*p) }
func (p *portList) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("invalid port %q", s)
	}
	*p = append(*p, n)
	return nil
}

func serveCmd(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("starling", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("c", "", "configuration `file` (Mosquitto syntax)")
	var ports portList
	fs.Var(&ports, "p", "listen on `port` instead of 1883 (repeatable)")
	verbose := fs.Bool("v", false, "verbose: log at debug level")
	dataDir := fs.String("data-dir", "", "keep sessions and retained messages in `folder` (persistence true + persistence_location)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile to `file` until shutdown (for performance work)")
	traceFile := fs.String("trace", "", "write a runtime execution trace to `file` until shutdown (go tool trace; for latency work)")
	daemon := fs.Bool("d", false, "run in the background (not supported: use your service manager)")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	if *daemon {
		return usageError{"-d is not supported: run starling under systemd or another service manager"}
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	if len(ports) > 0 {
		cfg.SetDefaultPort(ports[0])
		var extra []config.Listener
		for _, p := range ports[1:] {
			for _, l := range cfg.Listeners {
				if l.Default {
					l.Port, l.Default = p, false
					extra = append(extra, l)
				}
			}
		}
		cfg.Listeners = append(cfg.Listeners, extra...)
	}
	if *verbose {
		cfg.LogLevel = slog.LevelDebug
	}
	if *dataDir != "" {
		cfg.Persistence, cfg.PersistenceLocation = true, *dataDir
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	for _, p := range []struct {
		path  string
		start func(io.Writer) error
		stop  func()
	}{{*traceFile, trace.Start, trace.Stop}, {*cpuProfile, pprof.StartCPUProfile, pprof.StopCPUProfile}} {
		if p.path == "" {
			continue
		}
		stop, err := recordTo(p.path, p.start, p.stop)
		if err != nil {
			return err
		}
		defer stop()
	}
	s, err := newServer(cfg, *cfgPath, stderr)
	if err != nil {
		return err
	}
	return s.run()
}

// logLevel is log_level when it is set (or -v), else what Mosquitto's
// log_type asks for: debug shows everything, none nothing, and the default
// (error, warning, notice, information) Info.
func logLevel(cfg *config.Config) slog.Level {
	if cfg.LogLevel != slog.LevelInfo {
		return cfg.LogLevel
	}
	t := cfg.LogTypes
	switch {
	case t&config.LogDebug != 0:
		return slog.LevelDebug
	case t&(config.LogNotice|config.LogInformation|config.LogSubscribe|config.LogUnsubscribe|config.LogWebsockets) != 0:
		return slog.LevelInfo
	case t&config.LogWarning != 0:
		return slog.LevelWarn
	case t&config.LogError != 0:
		return slog.LevelError
	}
	return slog.LevelError + 4 // log_type none
}

func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return config.Default(), nil
	}
	return config.Load(path)
}

// storeDir is the folder of the store: a starling.db folder inside
// persistence_location (the working directory when it is not set, as
// Mosquitto does), so that a Mosquitto data folder can be shared.
func storeDir(cfg *config.Config) string {
	loc := cfg.PersistenceLocation
	if loc == "" {
		loc = "."
	}
	return filepath.Join(loc, "starling.db")
}

func (s *server) closeStore() {
	if s.store != nil {
		if err := s.store.Close(); err != nil {
			s.log.Error("closing the store", "err", err)
		}
	}
}

// server wires a Config to a broker and its listeners.
type server struct {
	store   *store.Pebble
	cfgPath string
	level   *slog.LevelVar
	log     *slog.Logger
	b       *broker.Broker
	lns     []*listener.Listener
	auths   []*file.Auth
	tlsCfgs []*reloadableTLS
	node    *cluster.Node // nil on a single node
	admin   *admin.Server
	leave   chan struct{} // closed by the admin API's leave
	once    sync.Once
	// leaveOnce: SIGTERM and the admin API both leave, once
	leaveOnce sync.Once
}

// reloadableTLS serves the TLS configuration of a listener, which SIGHUP
// reloads from its files.
type reloadableTLS struct {
	opts listener.TLSOptions
	cur  atomic.Pointer[tls.Config]
}

func (r *reloadableTLS) load() error {
	c, err := listener.TLSConfig(r.opts)
	if err != nil {
		return err
	}
	r.cur.Store(c)
	return nil
}

func (r *reloadableTLS) config() *tls.Config {
	base := r.cur.Load().Clone()
	return &tls.Config{
		MinVersion: base.MinVersion,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return r.cur.Load(), nil
		},
	}
}

func brokerOptions(cfg *config.Config, log *slog.Logger) broker.Options {
	o := broker.Options{
		MaxPacketSize:              int(cfg.MaxPacketSize),
		MessageSizeLimit:           int(cfg.MessageSizeLimit),
		MaxInflight:                cfg.MaxInflightMessages,
		MaxQueued:                  cfg.MaxQueuedMessages,
		MaxQueuedBytes:             int(cfg.MaxQueuedBytes),
		QueueQoS0:                  cfg.QueueQoS0Messages,
		MaxKeepAlive:               uint16(min(cfg.MaxKeepAlive/time.Second, 65535)),
		RetainAvailable:            cfg.RetainAvailable,
		AllowZeroLengthClientID:    cfg.AllowZeroLengthClientID,
		AutoIDPrefix:               cfg.AutoIDPrefix,
		PersistentClientExpiration: cfg.PersistentClientExpiration,
		SysInterval:                cfg.SysInterval,
		OutgoingTopicAliases:       cfg.OutgoingTopicAliases,
		TopicAliasMaximum:          10,
		UpgradeOutgoingQoS:         cfg.UpgradeOutgoingQoS,
		Version:                    version,
		Logger:                     log,
		ConnectionMessages:         cfg.ConnectionMessages,
	}
	for _, l := range cfg.Listeners {
		if l.MaxTopicAlias >= 0 && l.MaxTopicAlias <= 65535 {
			o.TopicAliasMaximum = uint16(l.MaxTopicAlias)
			break
		}
	}
	return o
}

func newServer(cfg *config.Config, cfgPath string, stderr io.Writer) (*server, error) {
	level := new(slog.LevelVar)
	level.Set(logLevel(cfg))
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	s := &server{cfgPath: cfgPath, level: level, log: log}
	opts := brokerOptions(cfg, log)
	persistence := "in memory: sessions and retained messages are lost on restart (persistence true with persistence_location DIR, or --data-dir DIR, keeps them)"
	if cfg.Persistence {
		dir := storeDir(cfg)
		st, err := store.Open(store.Options{Dir: dir, Logger: log})
		if err != nil {
			return nil, err
		}
		s.store = st
		opts.Store = st
		persistence = "in " + dir
	}
	if cfg.Clustering.Listen != "" {
		node, err := newNode(cfg, log)
		if err != nil {
			s.closeStore()
			return nil, err
		}
		s.node = node
		opts.Router = node
	}
	s.b = broker.New(opts)
	if err := s.b.Load(context.Background()); err != nil {
		s.b.Close()
		s.closeStore()
		return nil, err
	}
	if s.node != nil {
		if err := s.node.Start(s.b); err != nil {
			s.b.Close()
			s.closeStore()
			return nil, err
		}
	}
	s.leave = make(chan struct{})
	if a := cfg.Clustering.AdminListen; a != "" {
		if err := s.startAdmin(a); err != nil {
			s.stop()
			return nil, fmt.Errorf("admin_listen %s: %w", a, err)
		}
	}

	var addrs []string
	var errs []error
	for i := range cfg.Listeners {
		l := &cfg.Listeners[i]
		ln, lo, err := s.openListener(cfg, l)
		if err != nil {
			// The local-only default tolerates a machine without IPv6.
			if cfg.LocalOnly && l.Address == "::1" {
				log.Warn("cannot listen on [::1], serving IPv4 only", "err", err)
				continue
			}
			errs = append(errs, fmt.Errorf("listener %s: %w", l.Name(), err))
			continue
		}
		s.lns = append(s.lns, ln)
		addrs = append(addrs, l.Name()+" on "+ln.Addr().String())
		_ = lo
	}
	if err := errors.Join(errs...); err != nil || len(s.lns) == 0 {
		for _, ln := range s.lns {
			ln.Close()
		}
		s.stop()
		if err == nil {
			err = errors.New("no listener could be opened")
		}
		return nil, err
	}
	mode := "with the access rules of the configuration"
	if cfg.LocalOnly {
		mode = "anonymous access from this machine only (Mosquitto 2's local-only default; use -c FILE to serve others)"
	}
	log.Info("starling "+version+" serving "+strings.Join(addrs, ", ")+"; "+mode, "persistence", persistence)
	for _, w := range cfg.Warnings {
		log.Warn(w)
	}
	return s, nil
}

func (s *server) openListener(cfg *config.Config, l *config.Listener) (*listener.Listener, *broker.ListenerOptions, error) {
	lc := listener.Config{
		Address:       net.JoinHostPort(l.Address, strconv.Itoa(l.Port)),
		WebSocket:     l.Protocol == config.ProtocolWebsockets,
		ProxyProtocol: l.ProxyProtocol,
		Logger:        s.log,
	}
	switch l.SocketDomain {
	case "ipv4":
		lc.Network = "tcp4"
	case "ipv6":
		lc.Network = "tcp6"
	}
	if l.TLS() {
		rt := &reloadableTLS{opts: listener.TLSOptions{
			CAFile: l.CAFile, CAPath: l.CAPath, CertFile: l.CertFile, KeyFile: l.KeyFile,
			RequireCertificate: l.RequireCertificate, TLSVersion: l.TLSVersion, Ciphers: l.Ciphers,
		}}
		if err := rt.load(); err != nil {
			return nil, nil, err
		}
		s.tlsCfgs = append(s.tlsCfgs, rt)
		lc.TLS = rt.config()
	}
	anon, pwFile, aclFile := cfg.AuthFor(l)
	a, err := file.New(file.Options{AllowAnonymous: anon, PasswordFile: pwFile, ACLFile: aclFile})
	if err != nil {
		return nil, nil, err
	}
	s.auths = append(s.auths, a)
	lo := &broker.ListenerOptions{
		Name:                  l.Name(),
		Authenticator:         a,
		MaxConnections:        l.MaxConnections,
		UseIdentityAsUsername: l.UseIdentityAsUsername,
		UseSubjectAsUsername:  l.UseSubjectAsUsername,
		PeerCertificates:      listener.PeerCertificates,
	}
	if aclFile != "" {
		lo.Authorizer = a
	}
	if l.MaxQoS >= 0 && l.MaxQoS < 2 {
		lo.MaxQoS = new(byte(l.MaxQoS))
	}
	ln, err := listener.New(lc)
	if err != nil {
		return nil, nil, err
	}
	go s.b.Serve(ln, lo)
	return ln, lo, nil
}

// run serves until SIGINT or SIGTERM; SIGHUP reloads what can be reloaded.
func (s *server) run() error {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
loop:
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				s.reload()
				continue
			}
			s.log.Info("shutting down", "signal", sig.String())
			if s.node != nil && sig == syscall.SIGTERM {
				s.leaveCluster()
			}
			break loop
		case <-s.leave:
			s.log.Info("shutting down: left the cluster")
			break loop
		}
	}
	var wg sync.WaitGroup
	for _, ln := range s.lns {
		wg.Go(func() { ln.Close() })
	}
	wg.Wait()
	s.stop()
	s.log.Info("stopped")
	return nil
}

// reload re-reads the configuration file, the password and ACL files and
// the TLS files. Listeners themselves are not changed.
func (s *server) reload() {
	s.log.Info("reloading on SIGHUP")
	if s.cfgPath != "" {
		cfg, err := config.Load(s.cfgPath)
		if err == nil {
			err = cfg.Validate()
		}
		if err != nil {
			s.log.Error("configuration not reloaded", "err", err)
		} else {
			s.level.Set(logLevel(cfg))
			s.b.SetLimits(brokerOptions(cfg, s.log))
		}
	}
	for _, a := range s.auths {
		if err := a.Reload(); err != nil {
			s.log.Error("password or ACL file not reloaded", "err", err)
		}
	}
	for _, t := range s.tlsCfgs {
		if err := t.load(); err != nil {
			s.log.Error("TLS files not reloaded", "err", err)
		}
	}
}

// recordTo starts a runtime recording (execution trace, CPU profile) into
// the file at path; the returned func stops it and closes the file.
func recordTo(path string, start func(io.Writer) error, stop func()) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := start(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		stop()
		f.Close()
	}, nil
}
