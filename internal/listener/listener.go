package listener

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pires/go-proxyproto"
)

// DefaultReadHeaderTimeout bounds the setup of a connection when
// Config.ReadHeaderTimeout is zero.
const DefaultReadHeaderTimeout = 5 * time.Second

// tcpKeepAlive is the idle time before the kernel probes a silent peer. MQTT
// has its own keep alive; this only reaps half-open sockets of clients that
// never sent CONNECT or asked for no keep alive.
var tcpKeepAlive = net.KeepAliveConfig{
	Enable:   true,
	Idle:     60 * time.Second,
	Interval: 15 * time.Second,
	Count:    4,
}

// Log keys, as named in CONVENTIONS.md.
const (
	logKeyListener = "listener"
	logKeyPeer     = "peer"
	logKeyError    = "err"
)

// Config describes one listening socket.
type Config struct {
	// Network is "tcp" (the default when empty), "tcp4" or "tcp6".
	Network string
	// Address is host:port; port 0 picks a free port (see Listener.Addr).
	Address string
	// TLS, when not nil, makes every connection a TLS server connection.
	TLS *tls.Config
	// WebSocket serves MQTT over WebSocket on any path, binary frames,
	// subprotocol "mqtt" or "mqttv3.1" (or none, as Mosquitto allows). A
	// client that offers only other subprotocols is refused.
	WebSocket bool
	// ProxyProtocol requires a PROXY protocol v1 or v2 header before
	// anything else; the returned conn's RemoteAddr is the address the
	// header carries (or the socket's peer for a LOCAL/UNKNOWN header). A
	// connection without a valid header is closed and never returned.
	ProxyProtocol bool
	// ReadHeaderTimeout bounds the whole setup of a connection: PROXY
	// header, TLS handshake and WebSocket upgrade together. Zero means
	// DefaultReadHeaderTimeout. Plain TCP has no setup and no such bound.
	ReadHeaderTimeout time.Duration
	// MaxConnections, when > 0, caps the connections of this listener that
	// are open at once, counting those still in setup. A connection beyond
	// the cap is closed at once. The count goes down when a conn returned
	// by Accept is closed.
	MaxConnections int
	// Logger receives per-connection setup failures at Debug level and
	// accept errors at Warn level. Nil discards.
	Logger *slog.Logger
}

// Listener accepts MQTT connections of one kind (see Config). Accept and
// Close may be called from any goroutine.
type Listener struct {
	cfg     Config
	ln      net.Listener
	log     *slog.Logger
	timeout time.Duration
	// needSetup is true when a connection needs a setup step (PROXY, TLS or
	// WebSocket) before Accept may return it.
	needSetup bool

	ready  chan net.Conn  // set-up conns waiting for Accept; unbuffered
	done   chan struct{}  // closed by Close
	open   atomic.Int64   // open conns, for MaxConnections
	wg     sync.WaitGroup // the accept loop and every setup goroutine
	once   sync.Once      // guards Close
	mu     sync.Mutex     // guards closed and pending
	closed bool
	// pending holds the raw sockets of connections in setup, so Close can
	// cut a handshake short. mu must be held.
	pending map[net.Conn]struct{}
}

// New validates cfg and binds the socket at once, so Addr is known when it
// returns. The accept loop starts immediately; connections wait for Accept.
func New(cfg Config) (*Listener, error) {
	network := cfg.Network
	switch network {
	case "":
		network = "tcp"
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("listener: unsupported network %q (want tcp, tcp4 or tcp6)", cfg.Network)
	}
	if cfg.MaxConnections < 0 {
		return nil, fmt.Errorf("listener: negative MaxConnections %d", cfg.MaxConnections)
	}
	if cfg.ReadHeaderTimeout < 0 {
		return nil, fmt.Errorf("listener: negative ReadHeaderTimeout %s", cfg.ReadHeaderTimeout)
	}
	lc := net.ListenConfig{KeepAliveConfig: tcpKeepAlive}
	ln, err := lc.Listen(context.Background(), network, cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("listener: %w", err)
	}
	l := &Listener{
		cfg:       cfg,
		ln:        ln,
		log:       cfg.Logger,
		timeout:   cfg.ReadHeaderTimeout,
		needSetup: cfg.TLS != nil || cfg.WebSocket || cfg.ProxyProtocol,
		ready:     make(chan net.Conn),
		done:      make(chan struct{}),
		pending:   make(map[net.Conn]struct{}),
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	l.log = l.log.With(logKeyListener, ln.Addr().String())
	if l.timeout == 0 {
		l.timeout = DefaultReadHeaderTimeout
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		l.acceptLoop()
	}()
	return l, nil
}

// Addr returns the bound address (with the real port when Address had 0).
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Accept blocks until a connection has finished its setup and returns it;
// the caller owns it and must Close it. After Close, Accept returns an error
// that wraps net.ErrClosed.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		select {
		case <-l.done:
			// Close raced with the hand-over; Close promises no more conns.
			_ = c.Close()
			return nil, net.ErrClosed
		default:
			return c, nil
		}
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting, aborts connections still in setup and returns when
// every goroutine the Listener started has exited. Conns already returned by
// Accept belong to the caller and stay open. Close is safe to call twice.
func (l *Listener) Close() error {
	var err error
	l.once.Do(func() {
		l.mu.Lock()
		l.closed = true
		close(l.done)
		for c := range l.pending {
			_ = c.Close()
		}
		l.mu.Unlock()
		err = l.ln.Close()
		if errors.Is(err, net.ErrClosed) {
			err = nil
		}
	})
	l.wg.Wait()
	return err
}

func (l *Listener) acceptLoop() {
	var backoff time.Duration
	for {
		raw, err := l.ln.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Typically EMFILE/ENFILE: back off like net/http does rather
			// than spin, and keep serving once descriptors free up.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.log.Warn("accept failed", logKeyError, err, "retry_in", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-l.done:
				t.Stop()
				return
			}
			continue
		}
		backoff = 0
		if tc, ok := raw.(*net.TCPConn); ok {
			// Go sets TCP_NODELAY by default; say so explicitly, MQTT
			// packets are small and latency-sensitive.
			_ = tc.SetNoDelay(true)
		}
		var c net.Conn = raw
		if limit := l.cfg.MaxConnections; limit > 0 {
			if l.open.Add(1) > int64(limit) {
				l.open.Add(-1)
				_ = raw.Close()
				if l.log.Enabled(context.Background(), slog.LevelDebug) {
					l.log.Debug("connection refused: too many connections",
						logKeyPeer, raw.RemoteAddr().String(), "max_connections", limit)
				}
				continue
			}
			c = &countedConn{Conn: raw, open: &l.open}
		}
		if !l.needSetup {
			l.handOver(c)
			continue
		}
		if !l.track(raw) {
			_ = c.Close()
			return
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.setupAndHandOver(raw, c)
		}()
	}
}

// track registers raw as in setup; it reports false if the Listener is
// closed, in which case the caller must close the conn.
func (l *Listener) track(raw net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.pending[raw] = struct{}{}
	return true
}

func (l *Listener) untrack(raw net.Conn) {
	l.mu.Lock()
	delete(l.pending, raw)
	l.mu.Unlock()
}

// handOver gives c to Accept, or closes it if the Listener closes first.
func (l *Listener) handOver(c net.Conn) {
	select {
	case l.ready <- c:
	case <-l.done:
		_ = c.Close()
	}
}

// setupAndHandOver runs the setup steps on c (whose socket is raw) and
// hands the result to Accept; on failure it closes c.
func (l *Listener) setupAndHandOver(raw, c net.Conn) {
	ready, err := l.setup(raw, c)
	l.untrack(raw)
	if err != nil {
		_ = c.Close()
		if l.log.Enabled(context.Background(), slog.LevelDebug) {
			l.log.Debug("connection setup failed", logKeyPeer, raw.RemoteAddr().String(), logKeyError, err)
		}
		return
	}
	l.handOver(ready)
}

// setup applies, in order, the PROXY header, the TLS handshake and the
// WebSocket upgrade, all under one deadline on the raw socket.
func (l *Listener) setup(raw, c net.Conn) (net.Conn, error) {
	if err := raw.SetDeadline(time.Now().Add(l.timeout)); err != nil {
		return nil, err
	}
	if l.cfg.ProxyProtocol {
		pc, err := readProxyHeader(c)
		if err != nil {
			return nil, err
		}
		c = pc
	}
	if l.cfg.TLS != nil {
		tc := tls.Server(c, l.cfg.TLS)
		if err := tc.Handshake(); err != nil {
			return nil, fmt.Errorf("tls handshake: %w", err)
		}
		c = tc
	}
	if l.cfg.WebSocket {
		wc, err := upgrade(c)
		if err != nil {
			return nil, err
		}
		c = wc
	}
	// Clearing the deadline of the raw socket clears it for every layer:
	// each delegates its deadlines downwards.
	if err := raw.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	return c, nil
}

// readProxyHeader reads a PROXY v1 or v2 header from c and returns a conn
// that reports the addresses it carries and still yields any bytes read
// past the header.
func readProxyHeader(c net.Conn) (net.Conn, error) {
	br := bufio.NewReader(c)
	h, err := proxyproto.Read(br)
	if err != nil {
		return nil, fmt.Errorf("proxy header: %w", err)
	}
	pc := &proxyConn{Conn: c, br: br}
	if h.Command.IsProxy() && h.SourceAddr != nil {
		pc.remote = h.SourceAddr
		pc.local = h.DestinationAddr
	}
	if br.Buffered() == 0 {
		pc.br = nil
	}
	return pc, nil
}
