package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"

	"github.com/starlingmq/starling/internal/broker"
	"github.com/starlingmq/starling/internal/cluster/meta"
	"github.com/starlingmq/starling/internal/cluster/proto"
	"github.com/starlingmq/starling/internal/packet"
	"github.com/starlingmq/starling/internal/session"
)

type raftAddress = raft.ServerAddress

// Config is one node's cluster settings (the cluster_* keys).
type Config struct {
	// NodeName is unique in the cluster.
	NodeName string
	// GossipAddr is memberlist's bind address (TCP and UDP), host:port.
	GossipAddr string
	// LinkAddr is the node links' bind address, host:port; also Raft's
	// and the registry's.
	LinkAddr string
	// Advertise is the host peers should dial, when it is not the bind
	// address's.
	Advertise string
	// Join lists seeds, host:port; names are resolved again while the
	// node runs.
	Join []string
	// Expect is the number of nodes that form the registry.
	Expect int
	// Secret encrypts gossip and authenticates node links.
	Secret string
	// CAFile, CertFile, KeyFile: mutual TLS for node links instead of the
	// secret-derived certificates.
	CAFile, CertFile, KeyFile string
	// AllowRegisterDuringNetsplit lets a node that cannot reach the
	// registry's majority accept persistent clients anyway.
	AllowRegisterDuringNetsplit bool
	// DeadNodeTimeout: a node dead this long leaves the registry.
	DeadNodeTimeout time.Duration
	// RaftDir keeps the registry's log and snapshots; "" in memory.
	RaftDir string
	Logger  *slog.Logger

	// Fast makes gossip and failure detection faster than a LAN's
	// defaults (tests).
	Fast bool
}

// Node is this node's membership of the cluster. It implements
// broker.Router; Start attaches it to the broker it routes for.
type Node struct {
	cfg  Config
	log  *slog.Logger
	name string
	inc  uint64
	tls  *tls.Config

	b         *broker.Broker
	ln        net.Listener
	linkAddr  string // advertised
	raftLn    *chanListener
	metaLn    *chanListener
	ml        *memberlist.Memberlist
	reg       *meta.Registry
	delegate  *delegate
	formed    atomic.Bool
	closing   atomic.Bool
	leaving   atomic.Bool   // Leave was called: /health fails so load balancers drain the node
	dropped   atomic.Uint64 // QoS 0 forwards dropped: link down or full
	forwarded atomic.Uint64
	relayed   atomic.Uint64 // messages relayed by a moved session's old node, delivered here
	coarseNow atomic.Int64  // unix nanoseconds, updated every 100 ms (links' liveness)

	mu      sync.Mutex // guards links, members, transfers; lock order: routesMu, then mu
	links   map[string]*link
	members map[string]*member
	dialing map[string]bool
	xfers   map[string]*transfer // by client id
	// installing holds the transfers whose last part arrived, while
	// their session is installed: relayed messages wait there
	installing map[string]*transfer
	relayers   map[ackKey]*relayer // ghosts of sessions handed over from here
	acks       map[ackKey]chan packet.ReasonCode
	quit       chan struct{}
	wg         sync.WaitGroup
	closeMux   sync.Once

	routesMu sync.Mutex // guards local; serialises deltas with snapshots
	local    *LocalRoutes

	tableMu sync.RWMutex
	table   *RouteTable

	// blocked, when set (tests), refuses link-port traffic with a peer
	// address: a partition of links and Raft, gossip untouched
	blocked atomic.Pointer[func(addr string) bool]
	started time.Time // when Start ran

	// dialed, when set (tests), runs after a dialed link is up, before
	// the dial returns
	dialed atomic.Pointer[func(l *link)]

	connMu sync.Mutex
	conns  map[*trackedConn]struct{}

	retMu sync.Mutex
	clock *Clock
	retTS map[string]proto.Timestamp // last write of each retained topic (deletes included)
}

type member struct {
	name     string
	linkAddr string
	inc      uint64
	formed   bool
	alive    bool
	since    time.Time
}

var _ broker.Router = (*Node)(nil)

// New checks cfg and prepares a node; Start makes it join.
func New(cfg Config) (*Node, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("cluster: node_name is empty")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Expect <= 0 {
		cfg.Expect = 1
	}
	if cfg.DeadNodeTimeout <= 0 {
		cfg.DeadNodeTimeout = 60 * time.Second
	}
	t, err := linkTLS(cfg.NodeName, cfg.Secret, cfg.CAFile, cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, err
	}
	if t == nil && (!loopback(cfg.GossipAddr) || !loopback(cfg.LinkAddr) || (cfg.Advertise != "" && !loopback(cfg.Advertise))) {
		return nil, errors.New("cluster: cluster_secret (or cluster_cafile/certfile/keyfile) is required to cluster on a non-loopback address")
	}
	inc := uint64(time.Now().UnixNano())
	n := &Node{cfg: cfg, log: cfg.Logger.With("node", cfg.NodeName), name: cfg.NodeName, inc: inc, tls: t,
		links: make(map[string]*link), members: make(map[string]*member), dialing: make(map[string]bool),
		xfers: make(map[string]*transfer), installing: make(map[string]*transfer), relayers: make(map[ackKey]*relayer), quit: make(chan struct{}), conns: make(map[*trackedConn]struct{}),
		local: NewLocalRoutes(cfg.NodeName, inc), table: NewRouteTable(cfg.NodeName),
		clock: NewClock(cfg.NodeName, 0), retTS: make(map[string]proto.Timestamp)}
	return n, nil
}

func loopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// goroutine runs f on the node's group, waited for by Close.
func (n *Node) goroutine(f func()) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
}

// Name is the node's name.
func (n *Node) Name() string { return n.name }

// Start attaches the node to b, opens the link port, the registry and
// gossip, and joins the seeds (in the background: the node serves alone
// until it finds them).
func (n *Node) Start(b *broker.Broker) error {
	n.b = b
	n.started = time.Now()
	n.coarseNow.Store(time.Now().UnixNano())
	ln, err := net.Listen("tcp", n.cfg.LinkAddr)
	if err != nil {
		return fmt.Errorf("cluster_link_listen %s: %w", n.cfg.LinkAddr, err)
	}
	n.ln = ln
	n.linkAddr = advertised(ln.Addr().String(), n.cfg.Advertise)
	n.raftLn = newChanListener(ln.Addr())
	n.metaLn = newChanListener(ln.Addr())
	n.goroutine(n.acceptLoop)

	n.reg, err = meta.Open(meta.Config{
		NodeName:    n.name,
		Addr:        n.linkAddr,
		Dir:         n.cfg.RaftDir,
		Layer:       &raftLayer{chanListener: n.raftLn, n: n},
		RPCListener: n.metaLn,
		DialRPC: func(ctx context.Context, addr string) (net.Conn, error) {
			return n.dialConn(ctx, addr, tagMeta)
		},
		Logger: n.log,
	})
	if err != nil {
		n.closeListeners()
		n.wg.Wait()
		return fmt.Errorf("cluster registry: %w", err)
	}
	n.formed.Store(n.reg.HasState())

	if err := n.startGossip(); err != nil {
		n.reg.Close()
		n.closeListeners()
		n.wg.Wait()
		return err
	}
	n.goroutine(n.clockLoop)
	n.goroutine(n.registryLoop)
	n.goroutine(n.joinLoop)
	return nil
}

// clockLoop keeps coarseNow, so that a link's reader marks it alive for
// every frame without reading the clock.
func (n *Node) clockLoop() {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-n.quit:
			return
		case now := <-t.C:
			n.coarseNow.Store(now.UnixNano())
		}
	}
}

func advertised(bound, host string) string {
	if host == "" {
		return bound
	}
	_, port, _ := net.SplitHostPort(bound)
	if h, p, err := net.SplitHostPort(host); err == nil {
		return net.JoinHostPort(h, p)
	}
	return net.JoinHostPort(host, port)
}

func (n *Node) closeListeners() {
	n.closeMux.Do(func() {
		n.ln.Close()
		n.raftLn.Close()
		n.metaLn.Close()
	})
}

// acceptLoop accepts connections on the link port and hands each to its
// channel.
func (n *Node) acceptLoop() {
	for {
		nc, err := n.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		n.goroutine(func() { n.serveConn(nc) })
	}
}

func (n *Node) serveConn(nc net.Conn) {
	if f := n.blocked.Load(); f != nil && (*f)("") {
		nc.Close()
		return
	}
	nc.SetDeadline(time.Now().Add(dialTimeout))
	if n.tls != nil {
		tc := tls.Server(nc, n.tls)
		if err := tc.Handshake(); err != nil {
			n.log.Warn("cluster: refused a connection to the link port", "peer", nc.RemoteAddr().String(), "err", err)
			nc.Close()
			return
		}
		nc = tc
	}
	var tag [1]byte
	if _, err := io.ReadFull(nc, tag[:]); err != nil {
		nc.Close()
		return
	}
	nc.SetDeadline(time.Time{})
	nc = n.track(nc)
	switch tag[0] {
	case tagRaft:
		n.raftLn.offer(nc)
	case tagMeta:
		n.metaLn.offer(nc)
	case tagLink:
		n.acceptLink(nc)
	default:
		nc.Close()
	}
}

// hello is what this node says first on a link.
func (n *Node) hello() *proto.Hello {
	return &proto.Hello{ProtocolVersion: proto.Version, MinProtocolVersion: proto.MinVersion,
		NodeName: n.name, Incarnation: n.inc}
}

func (n *Node) acceptLink(nc net.Conn) {
	nc.SetDeadline(time.Now().Add(dialTimeout))
	frame, err := proto.ReadFrame(nc, nil, 1<<16)
	if err != nil {
		nc.Close()
		return
	}
	m, err := proto.Decode(frame)
	h, ok := m.(*proto.Hello)
	if err != nil || !ok {
		nc.Close()
		return
	}
	mine := n.hello()
	v, err := proto.Negotiate(mine, h)
	ack := &proto.HelloAck{ProtocolVersion: v, NodeName: n.name, Incarnation: n.inc}
	if err != nil || h.NodeName == n.name || h.NodeName == "" {
		ack.Code, ack.Reason = 0x84, "refused"
		if err == nil {
			ack.Reason = "same node name"
		}
		out, _ := ack.AppendTo(nil)
		nc.Write(out)
		nc.Close()
		return
	}
	out, _ := ack.AppendTo(nil)
	if _, err := nc.Write(out); err != nil {
		nc.Close()
		return
	}
	nc.SetDeadline(time.Time{})
	n.linkUp(newLink(n, h.NodeName, h.Incarnation, v, nc))
}

// dialLink connects to peer and runs the link; the node with the smaller
// name dials.
func (n *Node) dialLink(peer, addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	nc, err := n.dialConn(ctx, addr, tagLink)
	if err != nil {
		return err
	}
	nc.SetDeadline(time.Now().Add(dialTimeout))
	out, _ := n.hello().AppendTo(nil)
	if _, err := nc.Write(out); err != nil {
		nc.Close()
		return err
	}
	frame, err := proto.ReadFrame(nc, nil, 1<<16)
	if err != nil {
		nc.Close()
		return err
	}
	m, err := proto.Decode(frame)
	ack, ok := m.(*proto.HelloAck)
	if err != nil || !ok || ack.Code.IsError() || ack.NodeName != peer {
		nc.Close()
		return fmt.Errorf("cluster: %s refused the link", addr)
	}
	nc.SetDeadline(time.Time{})
	if ack.ProtocolVersion < proto.MinVersion || ack.ProtocolVersion > proto.Version {
		nc.Close()
		return fmt.Errorf("cluster: %s answered with protocol version %d", addr, ack.ProtocolVersion)
	}
	l := newLink(n, peer, ack.Incarnation, ack.ProtocolVersion, nc)
	n.linkUp(l)
	if f := n.dialed.Load(); f != nil {
		(*f)(l)
	}
	return nil
}

// linkUp registers a new link (replacing an older one to the same peer)
// and starts it with this node's routes and retained messages.
func (n *Node) linkUp(l *link) {
	n.routesMu.Lock()
	n.mu.Lock()
	if n.closing.Load() {
		n.mu.Unlock()
		n.routesMu.Unlock()
		l.nc.Close()
		return
	}
	old := n.links[l.peer]
	n.links[l.peer] = l
	// the snapshot is queued before any delta that follows it
	for _, s := range n.local.Snapshot(1 << 20) {
		l.send(s)
	}
	n.mu.Unlock()
	n.routesMu.Unlock()
	if old != nil {
		old.close()
	}
	n.log.Info("cluster: link up", "peer", l.peer)
	l.run()
	n.sendRetainedSnapshot(l)
}

// linkDown forgets a link that ended.
func (n *Node) linkDown(l *link, err error) {
	n.mu.Lock()
	if n.links[l.peer] == l {
		delete(n.links, l.peer)
	}
	n.mu.Unlock()
	if !n.closing.Load() {
		n.log.Info("cluster: link down", "peer", l.peer, "err", err)
		n.ensureLink(l.peer) // the dialer of the pair dials again while the peer is alive
	}
}

// linkTo returns the link to peer, or nil.
func (n *Node) linkTo(peer string) *link {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.links[peer]
}

func (n *Node) allLinks() []*link {
	n.mu.Lock()
	defer n.mu.Unlock()
	ls := make([]*link, 0, len(n.links))
	for _, l := range n.links {
		ls = append(ls, l)
	}
	return ls
}

// handle processes one message from a link's reader.
func (n *Node) handle(l *link, m proto.Message) error {
	switch m := m.(type) {
	case *proto.Ping:
		l.send(&proto.Pong{PingSentUnixNano: m.SentUnixNano, SentUnixNano: time.Now().UnixNano()})
	case *proto.Pong:
		l.rttNano.Store(time.Now().UnixNano() - m.PingSentUnixNano)
	case *proto.RouteSnapshot:
		if m.Origin != l.peer {
			return fmt.Errorf("cluster: routes of %s from %s", m.Origin, l.peer)
		}
		n.tableMu.Lock()
		if l.isClosed() {
			// the node was declared dead (memberDead closes the link,
			// then drops its routes under tableMu): late routes stay out
			n.tableMu.Unlock()
			return nil
		}
		err := n.table.ApplySnapshot(m)
		n.tableMu.Unlock()
		if err != nil && !errors.Is(err, ErrStale) {
			return err
		}
	case *proto.RouteDelta:
		if m.Origin != l.peer {
			return fmt.Errorf("cluster: routes of %s from %s", m.Origin, l.peer)
		}
		n.tableMu.Lock()
		if l.isClosed() {
			n.tableMu.Unlock()
			return nil
		}
		err := n.table.ApplyDelta(m)
		n.tableMu.Unlock()
		switch {
		case errors.Is(err, ErrGap):
			l.send(&proto.RouteSnapshotRequest{Incarnation: m.Incarnation, Seq: m.Seq})
		case err != nil && !errors.Is(err, ErrStale):
			return err
		}
	case *proto.RouteSnapshotRequest:
		n.routesMu.Lock()
		for _, s := range n.local.Snapshot(1 << 20) {
			l.send(s)
		}
		n.routesMu.Unlock()
	case *proto.Forward:
		for i := range m.Messages {
			n.receiveForward(l, &m.Messages[i])
		}
	case *proto.ForwardAck:
		l.acked(m)
	case *proto.Retained:
		n.receiveRetained(m)
	case *proto.RetainedSnapshot:
		for i := range m.Messages {
			n.receiveRetained(&m.Messages[i])
		}
	case *proto.SessionKick:
		n.b.Kick(m.ClientID, time.Unix(0, m.AtUnixNano))
	case *proto.SessionSeen:
		n.receiveSeen(m)
	case *proto.Relay:
		n.receiveRelay(m)
	case *proto.RelayBarrier:
		n.receiveBarrier(l, m)
	case *proto.BarrierPassed:
		n.barrierPassed(m.ClientID, m.Epoch, m.Node)
	case *proto.RelayEnd:
		n.receiveRelayEnd(m)
	case *proto.SessionClaim:
		n.goroutine(func() { n.handOver(l.peer, m.ClientID, m.Epoch) })
	case *proto.SessionTransfer:
		n.receiveTransfer(l, m)
	case *proto.SessionTransferAck:
		n.transferAcked(m)
	case *proto.Unknown, *proto.Hello, *proto.HelloAck:
		// a newer node's message, or a repeated greeting: skipped
	}
	return nil
}

// receiveForward delivers a forwarded message here and queues its
// acknowledgement.
func (n *Node) receiveForward(l *link, fm *proto.ForwardMessage) {
	var shared []broker.SharedMatch
	for _, t := range fm.Shared {
		if t.Node == n.name {
			shared = append(shared, broker.SharedMatch{Group: t.Group, Filter: t.Filter})
		}
	}
	_, wait := n.b.DeliverForwarded(fm.Publish, fm.PublisherID, session.MsgID(fm.ID), shared)
	if !fm.NeedsAck {
		if wait != nil {
			// a local subscriber is behind: the link's reader waits (at
			// most the broker's congestion wait), so that the sending
			// node's publishers slow down instead of messages being lost
			wait()
		}
		return
	}
	// always queued, even on a closing link: ackLoop calls every wait
	// until the reader (this goroutine) closes the queue
	l.acks <- ackItem{seq: fm.Seq, wait: wait}
}

// Subscribed implements broker.Router.
func (n *Node) Subscribed(filter string) {
	n.routesMu.Lock()
	defer n.routesMu.Unlock()
	if err := n.local.Add(filter); err != nil {
		n.log.Warn("cluster: route not added", "filter", filter, "err", err)
		return
	}
	n.flushRoutesLocked()
}

// Unsubscribed implements broker.Router.
func (n *Node) Unsubscribed(filter string) {
	n.routesMu.Lock()
	defer n.routesMu.Unlock()
	if err := n.local.Remove(filter); err != nil {
		n.log.Warn("cluster: route not removed", "filter", filter, "err", err)
		return
	}
	n.flushRoutesLocked()
}

// flushRoutesLocked sends the pending route changes to every link.
// routesMu must be held.
func (n *Node) flushRoutesLocked() {
	d, ok := n.local.Delta()
	if !ok {
		return
	}
	for _, l := range n.allLinks() {
		l.send(d)
	}
}

type fwdTarget struct {
	node   string
	shared []proto.SharedTarget
}

// Forward implements broker.Router.
func (n *Node) Forward(msg *session.Message, publisherID string, shared []broker.SharedMatch) (int, func() error) {
	fs := fwdPool.Get().(*fwdScratch)
	defer func() {
		fs.p = packet.Publish{}
		clear(fs.targets)
		fs.targets = fs.targets[:0]
		fwdPool.Put(fs)
	}()
	targets := fs.targets[:0]
	type groupKey struct{ group, filter string }
	var remoteGroups map[groupKey][]SharedGroup // with Group/Filter/Members, by node in nodes
	var groupNodes map[groupKey][]string
	n.tableMu.RLock()
	n.table.Match(msg.Topic, func(node string, direct bool, sg []SharedGroup) {
		if direct {
			targets = append(targets, fwdTarget{node: node})
		}
		for _, g := range sg {
			if remoteGroups == nil {
				remoteGroups = make(map[groupKey][]SharedGroup)
				groupNodes = make(map[groupKey][]string)
			}
			k := groupKey{g.Group, g.Filter}
			remoteGroups[k] = append(remoteGroups[k], g)
			groupNodes[k] = append(groupNodes[k], node)
		}
	})
	n.tableMu.RUnlock()
	// shared groups: one member cluster-wide, in proportion to members
	if len(remoteGroups) > 0 {
		for k, gs := range remoteGroups {
			local := 0
			li := slices.IndexFunc(shared, func(m broker.SharedMatch) bool { return m.Group == k.group && m.Filter == k.filter })
			if li >= 0 {
				local = shared[li].Local
			}
			total := local
			for _, g := range gs {
				total += int(g.Members)
			}
			if total == 0 {
				continue
			}
			r := rand.IntN(total)
			if r < local {
				continue // delivered here
			}
			r -= local
			pick := ""
			for i, g := range gs {
				if r < int(g.Members) {
					pick = groupNodes[k][i]
					break
				}
				r -= int(g.Members)
			}
			if li >= 0 {
				shared[li].Remote = true
			}
			st := proto.SharedTarget{Group: k.group, Filter: k.filter, Node: pick}
			ti := slices.IndexFunc(targets, func(t fwdTarget) bool { return t.node == pick })
			if ti < 0 {
				targets = append(targets, fwdTarget{node: pick})
				ti = len(targets) - 1
			}
			targets[ti].shared = append(targets[ti].shared, st)
		}
	}
	if len(targets) == 0 {
		return 0, nil
	}
	var now time.Time
	if !msg.ExpiresAt.IsZero() {
		now = time.Now()
	}
	fs.targets = targets
	publishOf(&fs.p, &fs.rem, msg, now)
	p := &fs.p
	var w *fwdWait
	if msg.QoS > 0 {
		w = &fwdWait{done: make(chan struct{})}
		w.left.Store(int32(len(targets)) + 1)
	}
	sent := 0
	for _, t := range targets {
		l := n.linkTo(t.node)
		fm := proto.ForwardMessage{Origin: n.name, PublisherID: publisherID, Publish: p, Shared: t.shared, ID: proto.MsgID(msg.ID)}
		if l == nil || !l.forward(&fm, w) {
			n.dropped.Add(1)
			if w != nil {
				w.settle(nil) // the node is unreachable: not waited for (see README)
			}
			continue
		}
		n.forwarded.Add(1)
		sent++
	}
	if w == nil {
		return sent, nil
	}
	w.settle(nil) // the +1 held while queuing
	return sent, w.wait
}

// Retained implements broker.Router.
func (n *Node) Retained(msg *session.Message) {
	n.retMu.Lock()
	ts := n.clock.Now(time.Now())
	n.retTS[msg.Topic] = ts
	n.retMu.Unlock()
	r := &proto.Retained{Topic: msg.Topic, Time: ts}
	if len(msg.Payload) > 0 {
		rec := proto.MessageRecord{Topic: msg.Topic, Payload: msg.Payload, QoS: msg.QoS, Retain: true,
			Properties: msg.Properties, ExpiresUnixMilli: unixMilli(msg.ExpiresAt), Origin: msg.Origin}
		r.Message = &rec
	}
	for _, l := range n.allLinks() {
		l.send(r)
	}
}

// receiveRetained applies another node's retained write if it is newer
// than what this node has (last writer wins).
func (n *Node) receiveRetained(r *proto.Retained) {
	// the broker's order first, then retMu, as for a local write
	n.b.InRetainedOrder(func() { n.applyRetained(r) })
}

func (n *Node) applyRetained(r *proto.Retained) {
	n.retMu.Lock()
	if err := n.clock.Observe(time.Now(), r.Time); err != nil {
		n.log.Warn("cluster: clock of a peer far ahead", "err", err)
	}
	defer n.retMu.Unlock()
	cur := n.retTS[r.Topic]
	if !LastWriterWins(cur, r.Time) {
		return
	}
	n.retTS[r.Topic] = r.Time
	rec := broker.MessageRecord{Topic: r.Topic}
	if r.Message != nil {
		rec = fromProtoMessage(r.Message)
		rec.Topic = r.Topic
	}
	// applied under retMu: two writes of a topic from different nodes
	// land in the order of their clocks
	if err := n.b.SetRetained(&rec); err != nil {
		n.log.Warn("cluster: retained message not stored", "topic", r.Topic, "err", err)
	}
}

// sendRetainedSnapshot sends every retained message and delete this node
// knows to a new link.
func (n *Node) sendRetainedSnapshot(l *link) {
	n.retMu.Lock()
	ts := make(map[string]proto.Timestamp, len(n.retTS))
	for k, v := range n.retTS {
		ts[k] = v
	}
	n.retMu.Unlock()
	part := &proto.RetainedSnapshot{Origin: n.name}
	size := 0
	flush := func(more bool) {
		part.More = more
		l.send(part)
		part = &proto.RetainedSnapshot{Origin: n.name, Part: part.Part + 1}
		size = 0
	}
	n.b.EachRetained(func(r *broker.MessageRecord) {
		pm := toProtoMessage(r)
		pm.Payload = append([]byte(nil), pm.Payload...)
		part.Messages = append(part.Messages, proto.Retained{Topic: r.Topic, Message: &pm, Time: ts[r.Topic]})
		delete(ts, r.Topic)
		size += len(r.Topic) + len(r.Payload) + 64
		if size > 1<<20 {
			flush(true)
		}
	})
	for topic, t := range ts { // deletes (tombstones)
		part.Messages = append(part.Messages, proto.Retained{Topic: topic, Time: t})
	}
	flush(false)
}

// Ended implements broker.Router.
func (n *Node) Ended(clientID string) {
	o, ok := n.reg.Owner(clientID)
	if !ok || o.Node != n.name {
		return
	}
	n.goroutine(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.reg.Release(ctx, clientID, n.name, o.Epoch); err != nil {
			n.log.Debug("cluster: expired session not released in the registry", "client_id", clientID, "err", err)
		}
	})
}

// Close leaves gossip without handing anything over (see Leave) and
// stops every goroutine; safe twice.
func (n *Node) Close() error {
	if n.closing.Swap(true) {
		n.wg.Wait()
		return nil
	}
	close(n.quit)
	if n.ml != nil {
		n.ml.Leave(time.Second)
		n.ml.Shutdown()
	}
	if n.reg != nil {
		n.reg.Close()
	}
	if n.ln != nil {
		n.closeListeners()
	}
	for _, l := range n.allLinks() {
		l.close()
	}
	n.mu.Lock()
	for _, x := range n.xfers {
		x.fail()
	}
	n.mu.Unlock()
	n.wg.Wait()
	return nil
}

func itoa(v uint64) string { return strconv.FormatUint(v, 10) }
