package broker

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/starlingmq/starling/internal/packet"
	"github.com/starlingmq/starling/internal/session"
	"github.com/starlingmq/starling/internal/topic"
)

// Options are the broker-wide settings. The zero value is usable; New fills
// in defaults as Mosquitto 2 documents them.
type Options struct {
	// MaxPacketSize is the largest packet accepted from a client, fixed
	// header included; 0 means the protocol maximum. Announced to MQTT 5
	// clients as Maximum Packet Size.
	MaxPacketSize int
	// MessageSizeLimit is the largest payload accepted; 0 means no limit.
	MessageSizeLimit int
	// MaxInflight is max_inflight_messages: the outgoing QoS 1/2 window per
	// client, also announced to MQTT 5 clients as Receive Maximum. 0 = 65535.
	MaxInflight int
	// MaxQueued and MaxQueuedBytes bound each session's queue; 0 = unlimited.
	MaxQueued      int
	MaxQueuedBytes int
	// QueueQoS0 queues QoS 0 messages for offline persistent sessions.
	QueueQoS0 bool
	// MaxKeepAlive caps the keep alive a client may ask for (seconds).
	MaxKeepAlive uint16
	// RetainAvailable is false to refuse retained messages.
	RetainAvailable bool
	// AllowZeroLengthClientID lets clients connect with an empty client id
	// (the broker assigns one starting with AutoIDPrefix).
	AllowZeroLengthClientID bool
	AutoIDPrefix            string
	// PersistentClientExpiration removes persistent sessions that never
	// expire by protocol (3.1.1 clean_session=false) after this long
	// offline; 0 keeps them forever.
	PersistentClientExpiration time.Duration
	// SysInterval is how often $SYS topics are published; 0 turns $SYS off.
	SysInterval time.Duration
	// OutgoingTopicAliases assigns topic aliases on messages sent to MQTT 5
	// clients that allow them.
	OutgoingTopicAliases bool
	// TopicAliasMaximum is how many aliases a client may set towards the
	// broker (announced in CONNACK).
	TopicAliasMaximum uint16
	// UpgradeOutgoingQoS delivers at the subscription's QoS even when the
	// message was published at a lower one (Mosquitto's
	// upgrade_outgoing_qos).
	UpgradeOutgoingQoS bool
	// ConnectTimeout bounds the wait for CONNECT after accept.
	ConnectTimeout time.Duration
	// WriteTimeout bounds each write to a client; a slower client is
	// disconnected.
	WriteTimeout time.Duration
	// MaxWriteBuffer bounds the bytes waiting for one client's writer; QoS 0
	// messages beyond it are dropped (slow consumer).
	MaxWriteBuffer int
	// Version is reported in $SYS/broker/version.
	Version string
	// Logger receives the broker's logs; nil discards them.
	Logger *slog.Logger
	// ConnectionMessages logs each client's connection and disconnection
	// at Info (Mosquitto's connection_messages); otherwise at Debug.
	ConnectionMessages bool
	// Store keeps persistent sessions and retained messages; nil keeps
	// them in memory only. Call Load before Serve when it is set.
	Store Store
	// Router connects the broker to the other nodes of a cluster; nil on
	// a single node.
	Router Router
}

func (o *Options) setDefaults() {
	if o.MaxKeepAlive == 0 {
		o.MaxKeepAlive = 65535
	}
	if o.AutoIDPrefix == "" {
		o.AutoIDPrefix = "auto-"
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 20 * time.Second
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = 30 * time.Second
	}
	if o.MaxWriteBuffer == 0 {
		o.MaxWriteBuffer = 4 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Version == "" {
		o.Version = "starling"
	}
}

// ListenerOptions are the settings of one listener.
type ListenerOptions struct {
	// Name identifies the listener in logs and ClientInfo.
	Name string
	// Authenticator and Authorizer apply to this listener's clients; nil
	// allows everything.
	Authenticator Authenticator
	Authorizer    Authorizer
	// MaxConnections refuses clients beyond this many (CONNACK "server
	// busy" / "quota exceeded"); 0 or less means unlimited.
	MaxConnections int
	// UseIdentityAsUsername takes the username from the client
	// certificate's Common Name; UseSubjectAsUsername from its full subject.
	UseIdentityAsUsername bool
	UseSubjectAsUsername  bool
	// PeerCertificates returns a connection's verified client certificates.
	PeerCertificates func(net.Conn) []*x509.Certificate
	// MaxQoS, when set, is the highest QoS this listener serves (max_qos):
	// announced to MQTT 5 clients, subscriptions are granted at most this,
	// and a PUBLISH or will above it is refused (0x9B).
	MaxQoS *byte

	conns atomic.Int64
}

// Listener yields client connections.
type Listener interface {
	Accept() (net.Conn, error)
	Close() error
	Addr() net.Addr
}

// Broker is a single-node MQTT broker.
type Broker struct {
	opts Options
	log  *slog.Logger

	mu       sync.Mutex // guards sessions and listeners; lock order: mu, then sess.mu
	snap     *Options   // read-only copy of opts for new connections; nil after a change
	sessions map[string]*sess
	offline  map[*sess]struct{} // persistent sessions without a connection
	lns      map[Listener]struct{}
	conns    map[*conn]struct{}
	closed   bool
	draining bool // Drain was called: no new connections
	// ghosts are sessions handed over to another node that, for a
	// moment, pass on what still reaches them here (see Handover)
	ghosts map[string]*sess
	// holding: sessions waiting for their old node's relay to end
	holding map[*sess]struct{}

	subMu  sync.RWMutex // guards subs and shared; never held with sess.mu
	subs   *topic.Trie[*sess, *subscription]
	shared *topic.Trie[sharedKey, *subscription]
	rr     atomic.Uint64
	idSeq  atomic.Uint64
	// msgNode and msgSeq name the messages published here (session.MsgID)
	msgNode uint64
	msgSeq  atomic.Uint64

	retMu    sync.RWMutex
	retained *topic.Names[*session.Message]
	retOrder sync.Mutex // orders local retained writes with Router.Retained

	scratch sync.Pool

	store      Store
	router     Router
	storeErrAt atomic.Int64 // unix nanoseconds of the last logged store failure
	loading    atomic.Bool  // Load runs: the janitor waits

	stats stats
	start time.Time

	wg   sync.WaitGroup
	quit chan struct{}
}

type sharedKey struct {
	group string
	s     *sess
}

// New returns a broker; Close stops it.
func New(o Options) *Broker {
	o.setDefaults()
	b := &Broker{
		opts:     o,
		log:      o.Logger,
		sessions: make(map[string]*sess),
		ghosts:   make(map[string]*sess),
		holding:  make(map[*sess]struct{}),
		offline:  make(map[*sess]struct{}),
		lns:      make(map[Listener]struct{}),
		conns:    make(map[*conn]struct{}),
		subs:     topic.NewTrie[*sess, *subscription](),
		shared:   topic.NewTrie[sharedKey, *subscription](),
		retained: topic.NewNames[*session.Message](),
		start:    time.Now(),
		quit:     make(chan struct{}),
		store:    o.Store,
		router:   o.Router,
	}
	b.scratch.New = func() any { return newMatchScratch() }
	for b.msgNode == 0 {
		b.msgNode = uint64(rand.Uint32()) // 32 bits: 5 bytes on the wire, unique enough among a cluster's nodes
	}
	b.wg.Add(1)
	go b.janitor()
	if o.SysInterval > 0 {
		b.wg.Add(1)
		go b.sysLoop()
	}
	return b
}

// SetLimits changes the limits that can change at run time (SIGHUP).
// New sessions and connections use them; existing ones keep theirs.
func (b *Broker) SetLimits(o Options) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.opts.MaxPacketSize = o.MaxPacketSize
	b.opts.MessageSizeLimit = o.MessageSizeLimit
	b.opts.MaxInflight = o.MaxInflight
	b.opts.MaxQueued = o.MaxQueued
	b.opts.MaxQueuedBytes = o.MaxQueuedBytes
	b.opts.QueueQoS0 = o.QueueQoS0
	if o.MaxKeepAlive != 0 {
		b.opts.MaxKeepAlive = o.MaxKeepAlive
	}
	b.snap = nil
}

// options returns the settings new connections use: one shared copy per
// change of limits, never written after, so connections keep a pointer.
func (b *Broker) options() *Options {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.snap == nil {
		o := b.opts
		b.snap = &o
	}
	return b.snap
}

// Serve accepts connections from l until l fails or the broker closes. It
// closes l before returning.
func (b *Broker) Serve(l Listener, lo *ListenerOptions) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		l.Close()
		return net.ErrClosed
	}
	b.lns[l] = struct{}{}
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.lns, l)
		b.mu.Unlock()
		l.Close()
	}()
	var delay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		b.ServeConn(nc, lo)
	}
}

// ServeConn handles one client connection in its own goroutines and
// returns at once.
func (b *Broker) ServeConn(nc net.Conn, lo *ListenerOptions) {
	c := newConn(b, nc, lo)
	b.mu.Lock()
	if b.closed || b.draining {
		b.mu.Unlock()
		nc.Close()
		return
	}
	b.conns[c] = struct{}{}
	b.wg.Add(1)
	b.mu.Unlock()
	go func() {
		defer b.wg.Done()
		c.run()
	}()
}

// Close stops the listeners, disconnects every client (MQTT 5 clients get
// "server shutting down") and waits for every goroutine. Safe twice.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		b.wg.Wait()
		return nil
	}
	b.closed = true
	close(b.quit)
	conns := b.stopAcceptingLocked()
	b.mu.Unlock()
	for _, c := range conns {
		c.kick(packet.ServerShuttingDown)
	}
	b.wg.Wait()
	b.saveCounters()
	return nil
}

// Publish injects a message as if published by the broker itself (for
// $SYS, bridges and the admin API). It bypasses authorization.
func (b *Broker) Publish(ctx context.Context, p *packet.Publish) error {
	if err := topic.ValidName(p.Topic); err != nil {
		return err
	}
	now := time.Now()
	msg := newMessage(p, "", now)
	_, err := b.routeMsg(msg, nil, now, false, inbound{retain: p.Retain})
	return err
}

// Stats is a snapshot of the broker's counters.
type Stats struct {
	ClientsConnected    int64
	ClientsTotal        int64 // sessions, online and offline
	ClientsMaximum      int64
	MessagesReceived    uint64
	MessagesSent        uint64
	PublishReceived     uint64
	PublishSent         uint64
	PublishDropped      uint64
	BytesReceived       uint64
	BytesSent           uint64
	Subscriptions       int
	Retained            int
	ConnectionsAccepted uint64
}

type stats struct {
	connected     atomic.Int64
	maxConnected  atomic.Int64
	msgsRecv      atomic.Uint64
	msgsSent      atomic.Uint64
	pubRecv       atomic.Uint64
	pubSent       atomic.Uint64
	pubDropped    atomic.Uint64
	bytesRecv     atomic.Uint64
	bytesSent     atomic.Uint64
	connsAccepted atomic.Uint64
}

// Stats returns the broker's counters.
func (b *Broker) Stats() Stats {
	b.mu.Lock()
	total := len(b.sessions)
	b.mu.Unlock()
	b.subMu.RLock()
	nsubs := b.subs.Len() + b.shared.Len()
	b.subMu.RUnlock()
	b.retMu.RLock()
	nret := b.retained.Len()
	b.retMu.RUnlock()
	return Stats{
		ClientsConnected:    b.stats.connected.Load(),
		ClientsTotal:        int64(total),
		ClientsMaximum:      b.stats.maxConnected.Load(),
		MessagesReceived:    b.stats.msgsRecv.Load(),
		MessagesSent:        b.stats.msgsSent.Load(),
		PublishReceived:     b.stats.pubRecv.Load(),
		PublishSent:         b.stats.pubSent.Load(),
		PublishDropped:      b.stats.pubDropped.Load(),
		BytesReceived:       b.stats.bytesRecv.Load(),
		BytesSent:           b.stats.bytesSent.Load(),
		Subscriptions:       nsubs,
		Retained:            nret,
		ConnectionsAccepted: b.stats.connsAccepted.Load(),
	}
}

// stopAcceptingLocked closes the listeners and returns the connections, to
// be told to go. b.mu must be held.
func (b *Broker) stopAcceptingLocked() []*conn {
	for l := range b.lns {
		l.Close()
	}
	conns := make([]*conn, 0, len(b.conns))
	for c := range b.conns {
		conns = append(conns, c)
	}
	return conns
}

// lockOffline locks b.mu and returns the session of clientID, nil when
// there is none, after closing its connection (MQTT 5 "session taken
// over") and waiting for it to be cleaned up [MQTT-3.1.4-3]. b.mu is held
// when it returns.
func (b *Broker) lockOffline(clientID string) *sess {
	for {
		b.mu.Lock()
		s := b.sessions[clientID]
		if s == nil {
			return nil
		}
		s.mu.Lock()
		old := s.conn
		s.mu.Unlock()
		if old == nil {
			return s
		}
		b.mu.Unlock()
		old.kick(packet.SessionTakenOver)
		<-old.cleaned
	}
}
