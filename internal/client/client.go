package client

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/starlingmq/starling/internal/packet"
)

// Errors reported by the client. Errors that come from the protocol wrap a
// packet.ReasonCode, so errors.Is(err, packet.NotAuthorized) works.
var (
	// ErrClosed is the cause reported once the connection was ended by
	// Close or Disconnect.
	ErrClosed = errors.New("client: connection closed")
	// ErrPingTimeout is the cause reported when no PINGRESP arrived within
	// the keep alive after a PINGREQ.
	ErrPingTimeout = errors.New("client: no PINGRESP within keep alive")
	// ErrNoPacketID is returned when all 65535 packet identifiers are in use.
	ErrNoPacketID = errors.New("client: no free packet identifier")
	// ErrNotManualAcks is returned by Ack when Options.ManualAcks is false.
	ErrNotManualAcks = errors.New("client: Ack needs Options.ManualAcks")
)

const (
	defaultConnectTimeout = 30 * time.Second
	readBufferSize        = 16 << 10
	// maxBuffered bounds the bytes queued for the writer; publishers wait
	// while it is exceeded. Acknowledgements sent by the reader never wait,
	// so the reader cannot stall behind a slow network.
	maxBuffered = 1 << 20
	// keepBuffer is the largest write buffer the writer keeps between
	// batches; a larger one (one huge publish) is dropped after use.
	keepBuffer = 4 << 20
)

// Options configure one connection. The zero value of every field except
// Addr is usable.
type Options struct {
	// Addr is "host:port" (plain TCP, or TLS when TLS is set), or a URL:
	// "tcp://", "mqtt://", "tls://", "ssl://", "mqtts://" followed by
	// host:port, or "ws://host:port/path", "wss://host:port/path".
	Addr string
	// TLS configures TLS for "tls://" and "wss://" addresses, and turns it
	// on for a bare "host:port". ServerName defaults to the address's host.
	TLS *tls.Config
	// Dialer dials the TCP connection; set LocalAddr on it to choose the
	// source address. Nil means a zero net.Dialer.
	Dialer *net.Dialer
	// Version is the protocol version; zero means packet.V311.
	Version packet.Version

	ClientID   string
	CleanStart bool // clean session in 3.x
	// KeepAlive is sent in CONNECT, rounded up to whole seconds; zero turns
	// keep alive off. An MQTT 5 server's Server Keep Alive overrides it.
	KeepAlive time.Duration
	// Username is sent when non-empty; Password when non-nil (an empty
	// non-nil slice sends an empty password).
	Username string
	Password []byte
	Will     *packet.Will
	// Properties are the MQTT 5 CONNECT properties (SessionExpiry,
	// ReceiveMaximum, TopicAliasMaximum, MaximumPacketSize, ...). The
	// client honours its own TopicAliasMaximum (aliases above it are a
	// protocol error) and MaximumPacketSize (the read limit).
	Properties packet.Properties

	// ConnectTimeout bounds dialing and the CONNECT/CONNACK exchange, in
	// addition to the ctx given to Connect. Zero means 30s.
	ConnectTimeout time.Duration

	// OnMessage is called for every PUBLISH received, from the reader
	// goroutine and in order; MQTT 5 topic aliases are already resolved.
	// Unless ManualAcks is set, the client acknowledges the message when
	// OnMessage returns (PUBACK for QoS 1, PUBREC for QoS 2; PUBCOMP
	// answers PUBREL). A QoS 2 message redelivered on the same connection
	// before its PUBREL is not passed on twice. OnMessage must not block
	// on this client's own acknowledgements (a QoS>0 Publish, Subscribe,
	// Unsubscribe, Close): they are read by the goroutine running it.
	// PublishAsync, Send and Ack are fine.
	OnMessage func(*packet.Publish)
	// OnDisconnect is called exactly once when the connection ends, from
	// the reader goroutine, after every pending operation has been failed.
	// d is the server's DISCONNECT (MQTT 5) or nil; err is the cause
	// (ErrClosed when ended by Close or Disconnect).
	OnDisconnect func(d *packet.Disconnect, err error)
	// ManualAcks makes the user acknowledge each QoS>0 message with Ack,
	// so tests can hold acknowledgements back.
	ManualAcks bool
	// InflightLimit caps the outstanding QoS 1 and 2 publishes. Zero or a
	// value above the server's Receive Maximum (MQTT 5; 65535 before)
	// means that maximum. Publishes beyond it wait in order.
	InflightLimit int
}

// Client is one MQTT connection. Its methods are safe for concurrent use.
type Client struct {
	conn net.Conn
	v    packet.Version
	br   *bufio.Reader

	onMessage    func(*packet.Publish)
	onDisconnect func(*packet.Disconnect, error)
	manualAcks   bool
	keepAlive    time.Duration
	maxIn        int    // read limit (our Maximum Packet Size), 0 = protocol max
	maxOut       int    // server's Maximum Packet Size, 0 = none
	aliasMax     uint16 // our Topic Alias Maximum

	// wmu guards the write side below. Lock order: mu before wmu.
	wmu      sync.Mutex
	wbuf     []byte
	wqueued  uint64        // bytes ever appended to wbuf
	wwritten uint64        // bytes ever written to conn
	wsignal  chan struct{} // closed after the next write batch; nil when nobody waits
	ackPkt   struct {      // scratch acks, so sending one does not allocate
		puback  packet.Puback
		pubrec  packet.Pubrec
		pubrel  packet.Pubrel
		pubcomp packet.Pubcomp
	}
	kick chan struct{} // wakes the writer; capacity 1

	// mu guards the operation state below.
	mu       sync.Mutex
	closed   bool
	ops      map[uint16]*op
	lastID   uint16
	inflight int
	window   int
	waiting  []*op // publishes waiting for the inflight window, FIFO
	waitHead int

	lastSent atomic.Int64 // unix nanos of the last write
	lastRecv atomic.Int64 // unix nanos of the last packet read
	pingSent atomic.Int64 // unix nanos of the outstanding PINGREQ, 0 if none
	pings    atomic.Int64 // PINGRESPs received (tests)
	// disconnecting is set once DISCONNECT is queued: the server closing
	// the connection is then the expected end, not a loss.
	disconnecting atomic.Bool

	// Owned by the reader goroutine.
	aliases    map[uint16]string
	recvQoS2   map[uint16]struct{}
	serverDisc *packet.Disconnect

	closeOnce sync.Once
	closing   chan struct{} // closed by fail
	err       error         // set before closing is closed
	done      chan struct{} // closed after the reader's cleanup
	wg        sync.WaitGroup
}

type opKind uint8

const (
	opPublish opKind = iota
	opSubscribe
	opUnsubscribe
)

// op is one operation waiting for its acknowledgement.
type op struct {
	kind      opKind
	pub       *packet.Publish // until sent
	qos       byte
	rec       bool // PUBREC received, PUBREL sent
	cancelled bool // the waiting caller gave up before it was sent; mu
	cb        func(packet.ReasonCode, error)
	ch        chan opResult
}

type opResult struct {
	rc  packet.ReasonCode
	pk  packet.Packet
	err error
}

func (o *op) finish(rc packet.ReasonCode, pk packet.Packet, err error) {
	if o.cb != nil {
		o.cb(rc, err)
	}
	if o.ch != nil {
		o.ch <- opResult{rc, pk, err}
	}
}

// Connect dials o.Addr, sends CONNECT and waits for the CONNACK, which it
// returns. A CONNACK refusing the connection yields a nil Client, the
// CONNACK, and an error wrapping its reason code.
func Connect(ctx context.Context, o Options) (*Client, *packet.Connack, error) {
	v := o.Version
	if v == 0 {
		v = packet.V311
	}
	timeout := o.ConnectTimeout
	if timeout <= 0 {
		timeout = defaultConnectTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	conn, err := dial(ctx, o)
	if err != nil {
		return nil, nil, err
	}
	ack, br, err := handshake(ctx, conn, v, o)
	if err != nil {
		conn.Close()
		return nil, ack, err
	}

	c := &Client{
		conn:         conn,
		v:            v,
		br:           br,
		onMessage:    o.OnMessage,
		onDisconnect: o.OnDisconnect,
		manualAcks:   o.ManualAcks,
		keepAlive:    keepAliveDuration(o.KeepAlive),
		kick:         make(chan struct{}, 1),
		ops:          make(map[uint16]*op),
		window:       65535,
		closing:      make(chan struct{}),
		done:         make(chan struct{}),
	}
	if p := o.Properties.MaximumPacketSize; p != nil && v == packet.V5 {
		c.maxIn = int(*p)
	}
	if p := o.Properties.TopicAliasMaximum; p != nil && v == packet.V5 {
		c.aliasMax = *p
	}
	if v == packet.V5 {
		if p := ack.Properties.ServerKeepAlive; p != nil {
			c.keepAlive = time.Duration(*p) * time.Second
		}
		if p := ack.Properties.ReceiveMaximum; p != nil && *p > 0 {
			c.window = int(*p)
		}
		if p := ack.Properties.MaximumPacketSize; p != nil {
			c.maxOut = int(*p)
		}
	}
	if o.InflightLimit > 0 && o.InflightLimit < c.window {
		c.window = o.InflightLimit
	}
	now := time.Now().UnixNano()
	c.lastSent.Store(now)
	c.lastRecv.Store(now)

	c.wg.Add(2)
	go c.readLoop()
	go c.writeLoop()
	return c, ack, nil
}

func keepAliveDuration(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	s := (d + time.Second - 1) / time.Second
	if s > 65535 {
		s = 65535
	}
	return s * time.Second
}

// handshake sends CONNECT and reads CONNACK within ctx.
func handshake(ctx context.Context, conn net.Conn, v packet.Version, o Options) (*packet.Connack, *bufio.Reader, error) {
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	cp := &packet.Connect{
		ProtocolName: "MQTT",
		Version:      v,
		CleanStart:   o.CleanStart,
		KeepAlive:    uint16(keepAliveDuration(o.KeepAlive) / time.Second),
		ClientID:     o.ClientID,
		Will:         o.Will,
		UsernameFlag: o.Username != "",
		Username:     o.Username,
		PasswordFlag: o.Password != nil,
		Password:     o.Password,
	}
	if v == packet.V31 {
		cp.ProtocolName = "MQIsdp"
	}
	if v == packet.V5 {
		cp.Properties = o.Properties
	}
	b, err := packet.Encode(cp, v)
	if err != nil {
		return nil, nil, fmt.Errorf("client: encode CONNECT: %w", err)
	}
	if _, err := conn.Write(b); err != nil {
		return nil, nil, handshakeErr(ctx, "write CONNECT", err)
	}
	maxIn := 0
	if p := o.Properties.MaximumPacketSize; p != nil && v == packet.V5 {
		maxIn = int(*p)
	}
	br := bufio.NewReaderSize(conn, readBufferSize)
	pk, err := packet.ReadPacket(br, v, maxIn)
	if err != nil {
		return nil, nil, handshakeErr(ctx, "read CONNACK", err)
	}
	ack, ok := pk.(*packet.Connack)
	if !ok {
		return nil, nil, fmt.Errorf("client: got %v instead of CONNACK: %w", pk.Type(), packet.ProtocolError)
	}
	if ack.ReasonCode.IsError() || (v != packet.V5 && ack.ReasonCode != packet.Success) {
		return ack, nil, fmt.Errorf("client: connection refused: %w", ack.ReasonCode)
	}
	if !stop() {
		return ack, nil, fmt.Errorf("client: connect: %w", ctx.Err())
	}
	conn.SetDeadline(time.Time{})
	return ack, br, nil
}

func handshakeErr(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
		// The connection's deadline is ctx's, and may fire first.
		return fmt.Errorf("client: %s: %w (%v)", what, context.DeadlineExceeded, err)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("client: %s: %w (%v)", what, ctx.Err(), err)
	}
	return fmt.Errorf("client: %s: %w", what, err)
}

// Version returns the connection's protocol version.
func (c *Client) Version() packet.Version { return c.v }

// Done returns a channel closed when the connection has ended and every
// pending operation has been failed.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns nil while the connection is up, then the cause of its end.
func (c *Client) Err() error {
	select {
	case <-c.closing:
		return c.err
	default:
		return nil
	}
}

// Close closes the connection without DISCONNECT, so the server publishes
// the will. It is safe to call twice and returns once the client's
// goroutines have exited; it must not be called from OnMessage,
// OnDisconnect or a PublishAsync callback.
func (c *Client) Close() error {
	c.fail(ErrClosed)
	c.wg.Wait()
	return nil
}

// Disconnect sends d (a zero DISCONNECT if nil), waits until it is written
// or ctx ends, and closes the connection. It returns the write's error, or
// the cause if the connection had already ended.
func (c *Client) Disconnect(ctx context.Context, d *packet.Disconnect) error {
	if d == nil {
		d = &packet.Disconnect{}
	}
	c.disconnecting.Store(true)
	c.wmu.Lock()
	err := c.appendLocked(d, false)
	target := c.wqueued
	c.wmu.Unlock()
	if err == nil {
		c.wake()
		err = c.waitWritten(ctx, target)
		if errors.Is(err, ErrClosed) {
			// The server closed first, having read the DISCONNECT.
			err = nil
		}
	}
	c.Close()
	return err
}

// fail ends the connection with cause err; only the first cause counts.
func (c *Client) fail(err error) {
	c.closeOnce.Do(func() {
		c.err = err
		close(c.closing)
		c.conn.Close()
	})
}

// Publish sends p and waits for its acknowledgement: for QoS 0 until it is
// written to the connection, for QoS 1 until PUBACK, for QoS 2 until
// PUBCOMP. It returns the acknowledgement's reason code (always Success
// before MQTT 5); a failure code is also returned as the error. The client
// assigns the packet identifier; p is not modified and may be reused once
// Publish returns. If ctx ends after p was sent, its identifier stays in use
// until the server answers.
func (c *Client) Publish(ctx context.Context, p *packet.Publish) (packet.ReasonCode, error) {
	if p.QoS == 0 {
		target, err := c.publish0(ctx, p)
		if err != nil {
			return 0, err
		}
		return 0, c.waitWritten(ctx, target)
	}
	o := &op{kind: opPublish, qos: p.QoS, ch: make(chan opResult, 1)}
	if err := c.publish(ctx, p, o); err != nil {
		return 0, err
	}
	select {
	case r := <-o.ch:
		return r.rc, r.err
	case <-ctx.Done():
		c.mu.Lock()
		o.cancelled = true
		c.mu.Unlock()
		return 0, ctx.Err()
	}
}

// PublishAsync sends p without waiting for its acknowledgement and calls
// done (if non-nil) with the outcome Publish would return. For QoS 0, done
// runs before PublishAsync returns, once p is queued for writing; for QoS 1
// and 2 it runs later on the reader goroutine (it must not block; it may
// call PublishAsync). When the inflight window is full, p waits in order
// in the client: p and its payload must not be modified until done runs.
// PublishAsync never waits for acknowledgements, only, briefly, for room
// in the write buffer. An error returned means done will not be called.
func (c *Client) PublishAsync(p *packet.Publish, done func(packet.ReasonCode, error)) error {
	if p.QoS == 0 {
		if _, err := c.publish0(context.Background(), p); err != nil {
			return err
		}
		if done != nil {
			done(packet.Success, nil)
		}
		return nil
	}
	return c.publish(context.Background(), p, &op{kind: opPublish, qos: p.QoS, cb: done})
}

// publish0 queues a QoS 0 publish once the write buffer has room and
// returns the byte count to wait for to know it is written. It is the hot
// path of the load generator: one lock, no allocation.
func (c *Client) publish0(ctx context.Context, p *packet.Publish) (uint64, error) {
	for {
		c.wmu.Lock()
		if len(c.wbuf) < maxBuffered {
			break
		}
		ch := c.signalLocked()
		c.wmu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-c.closing:
			return 0, c.err
		}
	}
	select {
	case <-c.closing:
		c.wmu.Unlock()
		return 0, c.err
	default:
	}
	err := c.appendPublishLocked(p, 0)
	target := c.wqueued
	c.wmu.Unlock()
	if err != nil {
		return 0, err
	}
	c.wake()
	return target, nil
}

// publish sends (or queues) a QoS 1 or 2 publish tracked by o.
func (c *Client) publish(ctx context.Context, p *packet.Publish, o *op) error {
	if p.QoS > 2 {
		return fmt.Errorf("client: QoS %d: %w", p.QoS, packet.ProtocolError)
	}
	if err := c.waitSpace(ctx); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return c.err
	}
	if c.inflight >= c.window || c.waitHead < len(c.waiting) {
		o.pub = p
		c.waiting = append(c.waiting, o)
		return nil
	}
	id, ok := c.allocIDLocked()
	if !ok {
		o.pub = p
		c.waiting = append(c.waiting, o)
		return nil
	}
	c.wmu.Lock()
	err := c.appendPublishLocked(p, id)
	c.wmu.Unlock()
	if err != nil {
		return err
	}
	c.ops[id] = o
	c.inflight++
	c.wake()
	return nil
}

// sendWaitingLocked sends queued publishes while the window allows and
// returns those that failed to encode, to be finished outside mu.
// mu must be held.
func (c *Client) sendWaitingLocked(failed []failedOp) []failedOp {
	sent := false
	for c.waitHead < len(c.waiting) && c.inflight < c.window {
		o := c.waiting[c.waitHead]
		if o.cancelled {
			c.waiting[c.waitHead] = nil
			c.waitHead++
			continue
		}
		id, ok := c.allocIDLocked()
		if !ok {
			break
		}
		c.waiting[c.waitHead] = nil
		c.waitHead++
		c.wmu.Lock()
		err := c.appendPublishLocked(o.pub, id)
		c.wmu.Unlock()
		o.pub = nil
		if err != nil {
			failed = append(failed, failedOp{o, err})
			continue
		}
		c.ops[id] = o
		c.inflight++
		sent = true
	}
	if c.waitHead == len(c.waiting) {
		c.waiting = c.waiting[:0]
		c.waitHead = 0
	}
	if sent {
		c.wake()
	}
	return failed
}

type failedOp struct {
	o   *op
	err error
}

// allocIDLocked returns a free packet identifier. mu must be held.
func (c *Client) allocIDLocked() (uint16, bool) {
	if len(c.ops) >= 65535 {
		return 0, false
	}
	id := c.lastID
	for {
		id++
		if id == 0 {
			id = 1
		}
		if _, used := c.ops[id]; !used {
			c.lastID = id
			return id, true
		}
	}
}

// Subscribe sends s with a packet identifier of the client's choosing and
// waits for the SUBACK, which it returns; per-filter failures are in its
// reason codes, not the error.
func (c *Client) Subscribe(ctx context.Context, s *packet.Subscribe) (*packet.Suback, error) {
	q := *s
	pk, err := c.request(ctx, &op{kind: opSubscribe}, func(id uint16) packet.Packet {
		q.PacketID = id
		return &q
	})
	if err != nil {
		return nil, err
	}
	return pk.(*packet.Suback), nil
}

// Unsubscribe sends u and waits for the UNSUBACK, which it returns.
func (c *Client) Unsubscribe(ctx context.Context, u *packet.Unsubscribe) (*packet.Unsuback, error) {
	q := *u
	pk, err := c.request(ctx, &op{kind: opUnsubscribe}, func(id uint16) packet.Packet {
		q.PacketID = id
		return &q
	})
	if err != nil {
		return nil, err
	}
	return pk.(*packet.Unsuback), nil
}

// request sends the packet built by mk under a fresh packet identifier and
// waits for the answer.
func (c *Client) request(ctx context.Context, o *op, mk func(id uint16) packet.Packet) (packet.Packet, error) {
	o.ch = make(chan opResult, 1)
	if err := c.waitSpace(ctx); err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, c.err
	}
	id, ok := c.allocIDLocked()
	if !ok {
		c.mu.Unlock()
		return nil, ErrNoPacketID
	}
	c.wmu.Lock()
	err := c.appendLocked(mk(id), true)
	c.wmu.Unlock()
	if err == nil {
		c.ops[id] = o
	}
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	c.wake()
	select {
	case r := <-o.ch:
		return r.pk, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Ack acknowledges a message received with Options.ManualAcks: PUBACK for
// QoS 1, PUBREC for QoS 2 (the client answers the PUBREL itself); QoS 0
// needs nothing.
func (c *Client) Ack(p *packet.Publish) error {
	if !c.manualAcks {
		return ErrNotManualAcks
	}
	if p.QoS == 0 {
		return nil
	}
	if err := c.Err(); err != nil {
		return err
	}
	c.sendAck(ackType(p.QoS), p.PacketID, packet.Success)
	return nil
}

func ackType(qos byte) packet.Type {
	if qos == 2 {
		return packet.PUBREC
	}
	return packet.PUBACK
}

// Send queues any packet as it is, with no bookkeeping: for conformance
// tests that need odd packets. Answers to it are handled as usual (an
// answer to a packet identifier the client did not assign is ignored).
func (c *Client) Send(p packet.Packet) error {
	if err := c.waitSpace(context.Background()); err != nil {
		return err
	}
	c.wmu.Lock()
	err := c.appendLocked(p, false)
	c.wmu.Unlock()
	if err != nil {
		return err
	}
	c.wake()
	return nil
}
