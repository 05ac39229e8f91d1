package cluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/starlingmq/starling/internal/cluster/proto"
	"github.com/starlingmq/starling/internal/packet"
)

// Channel tags: the first byte a dialer writes on a connection to the link
// port says what the connection carries, so that node links, Raft and the
// registry's requests share one port (and one TLS configuration).
const (
	tagLink byte = 'L'
	tagRaft byte = 'R'
	tagMeta byte = 'M'
)

// Link limits.
const (
	// maxLinkBuffer bounds the bytes waiting to be written to one peer:
	// beyond it a QoS 0 publisher waits (at most linkFullWait) for the
	// link to drain, then its message is dropped (counted); other messages
	// are still queued, bounded by the publishers' own windows.
	maxLinkBuffer = 8 << 20
	linkFullWait  = time.Second
	// linkIdle closes a link on which nothing arrived for this long (the
	// peer pings every pingEvery): a cut link is noticed even when
	// memberlist still sees the node through another path.
	linkIdle  = 6 * time.Second
	pingEvery = time.Second
	// forwardTimeout bounds the wait for a peer's acceptance of a QoS 1 or
	// 2 message.
	forwardTimeout = 10 * time.Second
	dialTimeout    = 3 * time.Second
)

var errLinkDown = errors.New("cluster: link to the node is down")

// link is the connection with one other node: one reader, one writer
// that coalesces queued frames into one write, one goroutine sending
// acknowledgements of forwarded messages in order.
type link struct {
	n    *Node
	peer string
	inc  uint64 // the peer's incarnation
	ver  uint32 // the protocol version both ends speak
	nc   net.Conn
	up   time.Time

	mu      sync.Mutex
	out     []byte
	spare   []byte
	closed  bool
	seq     uint64    // last forwarded message's number
	unacked []pending // forwarded messages awaiting ForwardAck, by seq
	wake    chan struct{}
	done    chan struct{}
	drained chan struct{} // closed when the writer takes the buffer; nil when nobody waits
	one     [1]proto.ForwardMessage

	acks    chan ackItem
	rttNano atomic.Int64
	lastIn  atomic.Int64 // unix nanoseconds of the last frame read
}

type pending struct {
	seq uint64
	w   *fwdWait
}

type ackItem struct {
	seq  uint64
	wait func() error
}

// fwdWait is one message's wait for the nodes it was forwarded to.
type fwdWait struct {
	left atomic.Int32
	err  atomic.Pointer[error]
	done chan struct{}
}

func (w *fwdWait) settle(err error) {
	if err != nil {
		w.err.CompareAndSwap(nil, &err)
	}
	if w.left.Add(-1) == 0 {
		close(w.done)
	}
}

func (w *fwdWait) wait() error {
	t := time.NewTimer(forwardTimeout)
	defer t.Stop()
	select {
	case <-w.done:
	case <-t.C:
		return fmt.Errorf("cluster: forwarded message not accepted within %v", forwardTimeout)
	}
	if e := w.err.Load(); e != nil {
		return *e
	}
	return nil
}

func newLink(n *Node, peer string, inc uint64, ver uint32, nc net.Conn) *link {
	l := &link{n: n, peer: peer, inc: inc, ver: ver, nc: nc, up: time.Now(),
		wake: make(chan struct{}, 1), done: make(chan struct{}), acks: make(chan ackItem, 4096)}
	l.lastIn.Store(time.Now().UnixNano())
	return l
}

// send queues a message; false when the link is closed.
func (l *link) send(m proto.Message) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.appendLocked(m)
}

func (l *link) appendLocked(m proto.Message) bool {
	if l.closed {
		return false
	}
	out, err := m.AppendTo(l.out)
	if err != nil {
		l.n.log.Error("cluster: message not encoded", "peer", l.peer, "type", m.Type().String(), "err", err)
		return false
	}
	l.out = out
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return true
}

// forward queues one forwarded message, numbered, with w to settle on its
// acknowledgement (nil: none needed). It reports false when the link is
// closed or, for a message without w, its buffer stays full for
// linkFullWait.
func (l *link) forward(fm *proto.ForwardMessage, w *fwdWait) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if w == nil && len(l.out) > maxLinkBuffer && !l.closed {
		// QoS 0: the publisher waits for the link, as for a slow local
		// subscriber, instead of losing messages at once
		if l.drained == nil {
			l.drained = make(chan struct{})
		}
		ch := l.drained
		l.mu.Unlock()
		t := time.NewTimer(linkFullWait)
		select {
		case <-ch:
		case <-t.C:
		case <-l.done:
		}
		t.Stop()
		l.mu.Lock()
	}
	if l.closed || (w == nil && len(l.out) > maxLinkBuffer) {
		return false
	}
	l.seq++
	fm.Seq = l.seq
	fm.NeedsAck = w != nil
	l.one[0] = *fm
	f := proto.Forward{Messages: l.one[:], V2: l.ver >= 2}
	out, err := f.AppendTo(l.out)
	l.one[0] = proto.ForwardMessage{}
	if err != nil {
		l.n.log.Error("cluster: forwarded message not encoded", "peer", l.peer, "err", err)
		return false
	}
	l.out = out
	select {
	case l.wake <- struct{}{}:
	default:
	}
	if w != nil {
		l.unacked = append(l.unacked, pending{seq: l.seq, w: w})
	}
	return true
}

// acked settles the forwarded messages a ForwardAck covers.
func (l *link) acked(a *proto.ForwardAck) {
	var bad map[uint64]packet.ReasonCode
	for _, s := range a.Statuses {
		if bad == nil {
			bad = make(map[uint64]packet.ReasonCode)
		}
		bad[s.Seq] = s.Code
	}
	l.mu.Lock()
	i := 0
	var done []pending
	for ; i < len(l.unacked) && l.unacked[i].seq <= a.UpTo; i++ {
		done = append(done, l.unacked[i])
	}
	l.unacked = l.unacked[i:]
	l.mu.Unlock()
	for _, p := range done {
		var err error
		if rc, ok := bad[p.seq]; ok && rc.IsError() {
			err = fmt.Errorf("cluster: node %s refused a forwarded message: %w", l.peer, rc)
		}
		p.w.settle(err)
	}
}

// isClosed reports whether close was called.
func (l *link) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// close shuts the link and fails what waits for it; safe twice.
func (l *link) close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	un := l.unacked
	l.unacked = nil
	close(l.done)
	l.mu.Unlock()
	closeNow(l.nc)
	// what the peer had not acknowledged is lost for it, as what is
	// forwarded while no link is up (README, "Limits"): counted, and the
	// publisher, whose message reached every other node, is not failed
	l.n.dropped.Add(uint64(len(un)))
	for _, p := range un {
		p.w.settle(nil)
	}
}

// run starts the link's goroutines on the node's group; the link is
// removed from the node when its reader ends.
func (l *link) run() {
	n := l.n
	n.goroutine(l.writeLoop)
	n.goroutine(l.ackLoop)
	n.goroutine(func() {
		err := l.readLoop()
		close(l.acks) // the reader is its only sender: ackLoop drains the rest
		l.close()
		n.linkDown(l, err)
	})
}

func (l *link) writeLoop() {
	ping := time.NewTicker(pingEvery)
	defer ping.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-ping.C:
			if time.Since(time.Unix(0, l.lastIn.Load())) > linkIdle {
				l.n.log.Warn("cluster: link silent, closing it", "peer", l.peer)
				l.close()
				return
			}
			l.send(&proto.Ping{SentUnixNano: time.Now().UnixNano()})
			continue
		case <-l.wake:
		}
		l.mu.Lock()
		if len(l.out) == 0 {
			l.mu.Unlock()
			continue
		}
		// swap buffers: queued frames go to spare while out is written
		buf := l.out
		l.out, l.spare = l.spare[:0], nil
		if l.drained != nil {
			close(l.drained)
			l.drained = nil
		}
		l.mu.Unlock()
		l.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, err := l.nc.Write(buf)
		if err != nil {
			l.close()
			return
		}
		if cap(buf) > 2*maxLinkBuffer {
			buf = nil
		}
		l.mu.Lock()
		l.spare = buf[:0]
		l.mu.Unlock()
	}
}

// ackLoop acknowledges forwarded messages in order, once each is accepted
// (stored where a persistent session needs it), one ForwardAck for all
// that are ready.
func (l *link) ackLoop() {
	var upTo uint64
	var bad []proto.ForwardStatus
	flush := func() {
		if upTo > 0 || len(bad) > 0 {
			l.send(&proto.ForwardAck{UpTo: upTo, Statuses: bad})
			bad = nil
		}
	}
	// Every wait is called, even after the link closed: a wait is what
	// releases the deliveries it held for persistent sessions.
	for it := range l.acks {
		for {
			if it.wait != nil {
				if err := it.wait(); err != nil {
					var rc packet.ReasonCode
					if !errors.As(err, &rc) || !rc.IsError() {
						rc = packet.UnspecifiedError
					}
					bad = append(bad, proto.ForwardStatus{Seq: it.seq, Code: rc})
				}
			}
			upTo = it.seq
			var more bool
			select {
			case it, more = <-l.acks:
			default:
			}
			if !more {
				break
			}
		}
		flush()
	}
}

func (l *link) readLoop() error {
	br := bufio.NewReaderSize(l.nc, 64<<10)
	var buf []byte
	var fd proto.ForwardDecoder
	for frames := 0; ; frames++ {
		if br.Buffered() == 0 || frames%256 == 0 {
			// about to wait for the network (or every 256 frames): the
			// clock is read here, not for every frame of a busy link
			now := time.Now()
			l.lastIn.Store(now.UnixNano())
			l.nc.SetReadDeadline(now.Add(linkIdle + time.Second))
		}
		frame, err := proto.ReadFrame(br, buf, 0)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		if now := l.n.coarseNow.Load(); now != 0 {
			// a frame arrived: the link is alive even when its handling
			// then waits (a congested subscriber, a full ack queue)
			l.lastIn.Store(now)
		}
		if len(frame) > proto.HeaderLen {
			switch proto.Type(frame[proto.HeaderLen]) {
			case proto.TypeForward, proto.TypeForwardV2:
				buf = frame
				f, err := fd.Decode(frame)
				if err != nil {
					return err
				}
				for i := range f.Messages {
					l.n.receiveForward(l, &f.Messages[i])
				}
				continue
			case proto.TypeForwardAck, proto.TypePing, proto.TypePong, proto.TypeRouteDelta:
				buf = frame // decoded messages are not kept past handling
			default:
				frame = bytes.Clone(frame)
			}
		}
		m, err := proto.Decode(frame)
		if err != nil {
			return err
		}
		if err := l.n.handle(l, m); err != nil {
			return err
		}
	}
}

// dialLink opens a connection of the given channel to a node's link port.
func (n *Node) dialConn(ctx context.Context, addr string, tag byte) (net.Conn, error) {
	if f := n.blocked.Load(); f != nil && (*f)(addr) {
		return nil, errors.New("cluster: partitioned (test)")
	}
	d := net.Dialer{Timeout: dialTimeout, KeepAlive: 15 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if n.tls != nil {
		tc := tls.Client(nc, n.tls)
		hctx, cancel := context.WithTimeout(ctx, dialTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("cluster: TLS with %s: %w", addr, err)
		}
		nc = tc
	}
	if _, err := nc.Write([]byte{tag}); err != nil {
		nc.Close()
		return nil, err
	}
	return n.track(nc), nil
}

// trackedConn is a link-port connection the node can cut (tests'
// partitions).
type trackedConn struct {
	net.Conn
	n    *Node
	once sync.Once
}

func (t *trackedConn) Close() error {
	t.untrack()
	return t.Conn.Close()
}

func (t *trackedConn) untrack() {
	t.once.Do(func() {
		t.n.connMu.Lock()
		delete(t.n.conns, t)
		t.n.connMu.Unlock()
	})
}

// closeNow closes nc without waiting. A TLS connection's Close first sends
// close_notify, which on a cut link waits for its 5 s deadline and would
// hold up the caller: memberlist's NotifyLeave (memberDead) among them,
// which runs under memberlist's own lock. The socket under it is closed
// instead.
func closeNow(nc net.Conn) error {
	if t, ok := nc.(*trackedConn); ok {
		t.untrack()
		nc = t.Conn
	}
	if tc, ok := nc.(*tls.Conn); ok {
		return tc.NetConn().Close()
	}
	return nc.Close()
}

func (n *Node) track(nc net.Conn) net.Conn {
	t := &trackedConn{Conn: nc, n: n}
	n.connMu.Lock()
	n.conns[t] = struct{}{}
	n.connMu.Unlock()
	return t
}

// cutAll closes every link-port connection (tests' partitions).
func (n *Node) cutAll() {
	n.connMu.Lock()
	all := make([]*trackedConn, 0, len(n.conns))
	for t := range n.conns {
		all = append(all, t)
	}
	n.connMu.Unlock()
	for _, t := range all {
		t.Close()
	}
}

// chanListener is a net.Listener fed with connections the link port
// accepted for one channel (Raft, registry requests).
type chanListener struct {
	addr  net.Addr
	ch    chan net.Conn
	once  sync.Once
	close chan struct{}
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, ch: make(chan net.Conn), close: make(chan struct{})}
}

func (c *chanListener) Accept() (net.Conn, error) {
	select {
	case nc := <-c.ch:
		return nc, nil
	case <-c.close:
		return nil, net.ErrClosed
	}
}

func (c *chanListener) Close() error {
	c.once.Do(func() { close(c.close) })
	return nil
}

func (c *chanListener) Addr() net.Addr { return c.addr }

// offer hands nc to the listener's Accept, or closes it when nobody takes
// it in time.
func (c *chanListener) offer(nc net.Conn) {
	select {
	case c.ch <- nc:
	case <-c.close:
		nc.Close()
	case <-time.After(5 * time.Second):
		nc.Close()
	}
}

// raftLayer is raft's StreamLayer over the link port.
type raftLayer struct {
	*chanListener
	n *Node
}

func (r *raftLayer) Dial(address raftAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return r.n.dialConn(ctx, string(address), tagRaft)
}
