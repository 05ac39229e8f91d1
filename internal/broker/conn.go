package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/starlingmq/starling/internal/packet"
	"github.com/starlingmq/starling/internal/session"
	"github.com/starlingmq/starling/internal/topic"
)

// conn is one client connection: a reader (run) and a writer goroutine.
// Only the writer writes to nc.
type conn struct {
	b    *Broker
	nc   net.Conn
	lo   *ListenerOptions
	br   *idleReader
	rd   *packet.Reader
	eph  *session.Message // the message being routed; made on the first PUBLISH
	opts *Options         // the settings at accept; read-only

	// set during CONNECT, then read-only
	version   packet.Version
	info      *ClientInfo
	s         *sess
	keepAlive time.Duration
	// limits announced by the client (MQTT 5)
	maxOut          int    // client's maximum packet size, 0 = none
	aliasMaxOut     uint16 // client's topic alias maximum
	requestProbInfo bool

	// reader-owned state
	batch     Batch // store writes of this connection's requests
	inAliases map[uint16]string
	graceful  bool // normal DISCONNECT received: no will

	outMu       sync.Mutex // guards the fields below
	out         *[]byte    // pooled; nil while nothing waits to be written
	spare       *[]byte    // the flusher's other buffer
	writing     bool       // a flusher goroutine is running
	outAliases  map[string]uint16
	closing     bool
	sentDisc    bool
	aliasTmp    uint16
	expiryTmp   uint32
	drainCh     chan struct{} // closed when a full write buffer is taken by the flusher
	behindSince time.Time     // when the write buffer filled

	ackMu  sync.Mutex // guards acks and acking
	acks   []ackEntry // acknowledgements waiting for the store, in order
	acking bool       // an acker goroutine runs

	wake    chan struct{} // wakes a lingering flusher
	cleaned chan struct{} // closed when the connection is fully cleaned up
	// connectedAt is when the client id was claimed, to tell this
	// connection from a newer one on another node (Broker.Kick)
	connectedAt time.Time
	wg          sync.WaitGroup
	counted     bool // counted in lo.conns
}

func newConn(b *Broker, nc net.Conn, lo *ListenerOptions) *conn {
	c := &conn{
		b:       b,
		nc:      nc,
		lo:      lo,
		opts:    b.options(),
		wake:    make(chan struct{}, 1),
		cleaned: make(chan struct{}),
	}
	c.br = &idleReader{src: countingReader{nc, b}}
	c.rd = packet.NewReader(c.br)
	return c
}

type countingReader struct {
	r io.Reader
	b *Broker
}

func (r countingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.b.stats.bytesRecv.Add(uint64(n))
	return n, err
}

// errClose ends the read loop without a DISCONNECT from the server.
var errClose = errors.New("connection closed")

// run reads CONNECT, then hands the connection to a fresh goroutine for
// the rest of its life: the handshake's deep calls (authentication,
// logging) grow a goroutine's stack, and an idle connection should not keep
// that stack for hours. The caller's goroutine exits.
func (c *conn) run() {
	c.b.stats.connsAccepted.Add(1)
	if err := c.handshake(); err != nil {
		c.finish(err)
		return
	}
	c.b.wg.Add(1)
	go func() {
		defer c.b.wg.Done()
		c.finish(c.serve())
	}()
}

// finish ends the connection: the session's will and fate, the writer,
// the socket, and the broker's books.
func (c *conn) finish(err error) {
	if c.s != nil {
		c.detach(err)
	}
	c.shutdown()
	c.wg.Wait()
	c.nc.Close()
	if c.counted {
		c.lo.conns.Add(-1)
	}
	if c.s != nil {
		c.b.stats.connected.Add(-1)
	}
	c.b.mu.Lock()
	delete(c.b.conns, c)
	c.b.mu.Unlock()
	close(c.cleaned)
}

// serve reads packets until the connection ends.
func (c *conn) serve() error {
	var refreshed time.Time
	n := 0
	for {
		if c.keepAlive > 0 {
			// [MQTT-3.1.2-24] within 1.5 x keep alive, refreshed at most
			// every 100 ms so that a busy client does not pay for it per packet
			if now := time.Now(); now.Sub(refreshed) > 100*time.Millisecond {
				refreshed = now
				c.nc.SetReadDeadline(now.Add(c.keepAlive * 3 / 2))
			}
		}
		p, err := c.rd.ReadPacket(c.version, c.opts.MaxPacketSize)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				c.kick(packet.KeepAliveTimeout)
				return err
			}
			var rc packet.ReasonCode
			if errors.As(err, &rc) {
				c.kick(rc)
			}
			return err
		}
		c.b.stats.msgsRecv.Add(1)
		if n++; n%16 == 0 {
			// a publisher that always has more to read must not starve
			// the goroutines that deliver and take acknowledgements
			runtime.Gosched()
		}
		if err := c.handle(p); err != nil {
			var rc packet.ReasonCode
			if errors.As(err, &rc) {
				c.kick(rc)
			}
			return err
		}
	}
}

func (c *conn) handle(p packet.Packet) error {
	switch p := p.(type) {
	case *packet.Publish:
		return c.handlePublish(p)
	case *packet.Puback:
		return c.ack(p.PacketID, func(st *session.Session) (*session.Delivery, error) { return st.Puback(p.PacketID) })
	case *packet.Pubrec:
		return c.handlePubrec(p)
	case *packet.Pubrel:
		c.s.mu.Lock()
		known := c.s.st.Pubrel(p.PacketID)
		if known && c.s.durableLocked() {
			c.batch.DeleteIncoming(c.s.id, p.PacketID)
		}
		c.s.mu.Unlock()
		rc := packet.Success
		if !known {
			rc = packet.PacketIdentifierNotFound
		}
		// the id may be reused after PUBCOMP: forget it durably first
		id := p.PacketID
		c.queueAck(ackEntry{wait: c.b.applyAsync(&c.batch), send: func(err error) {
			if _, ok := c.storeErr(err); ok {
				c.send(&packet.Pubcomp{PacketID: id, ReasonCode: rc})
			}
		}})
		return nil
	case *packet.Pubcomp:
		return c.ack(p.PacketID, func(st *session.Session) (*session.Delivery, error) { return st.Pubcomp(p.PacketID) })
	case *packet.Subscribe:
		return c.handleSubscribe(p)
	case *packet.Unsubscribe:
		return c.handleUnsubscribe(p)
	case *packet.Pingreq:
		c.send(&packet.Pingresp{})
		return nil
	case *packet.Disconnect:
		return c.handleDisconnect(p)
	case *packet.Connect:
		return fmt.Errorf("second CONNECT: %w", packet.ProtocolError) // [MQTT-3.1.0-2]
	case *packet.Auth:
		return fmt.Errorf("re-authentication is not supported: %w", packet.ProtocolError)
	default:
		return fmt.Errorf("unexpected %v from a client: %w", p.Type(), packet.ProtocolError)
	}
}

// ack applies an acknowledgement and refills the window.
func (c *conn) ack(id uint16, f func(*session.Session) (*session.Delivery, error)) error {
	s := c.s
	s.mu.Lock()
	d, err := f(s.st)
	if err == nil {
		var batch *Batch
		if s.durableLocked() {
			batch = &c.batch
			batch.DeleteDelivery(s.id, d.Seq)
		}
		s.pumpLocked(time.Now(), batch)
	}
	s.mu.Unlock()
	c.b.apply(&c.batch, false) // a lost delete only means a redelivery
	if err != nil {
		// an ack for an unknown id is ignored, as clients may repeat them
		c.b.log.Debug("unexpected acknowledgement", "client_id", c.info.ClientID, "packet_id", id, "err", err)
	}
	return nil
}

func (c *conn) handlePubrec(p *packet.Pubrec) error {
	s := c.s
	s.mu.Lock()
	d, release, err := s.st.Pubrec(p.PacketID, p.ReasonCode.IsError())
	var batch *Batch
	if err == nil && s.durableLocked() {
		batch = &c.batch
		if release {
			batch.PutDelivery(s.id, deliveryRecord(d))
		} else {
			batch.DeleteDelivery(s.id, d.Seq)
		}
	}
	if err == nil && !release {
		s.pumpLocked(time.Now(), batch)
	}
	s.mu.Unlock()
	id := p.PacketID
	switch {
	case err != nil:
		c.b.apply(&c.batch, false)
		c.send(&packet.Pubrel{PacketID: id, ReasonCode: packet.PacketIdentifierNotFound})
	case release:
		// PUBREL ends the client's memory of the message: the broker must
		// not forget, in a crash, that it was received [MQTT-4.3.3]
		c.queueAck(ackEntry{wait: c.b.applyAsync(&c.batch), send: func(err error) {
			if _, ok := c.storeErr(err); ok && err == nil {
				c.send(&packet.Pubrel{PacketID: id})
			}
		}})
	default:
		c.b.apply(&c.batch, false)
	}
	return nil
}

func (c *conn) handleDisconnect(p *packet.Disconnect) error {
	if c.version == packet.V5 && p.Properties.SessionExpiry != nil {
		c.s.mu.Lock()
		was := c.s.expiry
		if was == 0 && *p.Properties.SessionExpiry != 0 {
			c.s.mu.Unlock()
			return fmt.Errorf("session expiry set on DISCONNECT after 0 on CONNECT: %w", packet.ProtocolError) // [MQTT-3.14.2-2]
		}
		c.s.expiry = *p.Properties.SessionExpiry
		c.s.mu.Unlock()
	}
	// [MQTT-3.14.4-3] only a normal disconnection discards the will; 0x04
	// and the error reasons leave it to be published
	c.graceful = p.ReasonCode == packet.NormalDisconnection
	return errClose
}

func (c *conn) handlePublish(p *packet.Publish) error {
	c.b.stats.pubRecv.Add(1)
	if c.version == packet.V5 && p.Properties.TopicAlias != nil {
		a := *p.Properties.TopicAlias
		if a == 0 || a > c.opts.TopicAliasMaximum {
			return fmt.Errorf("topic alias %d: %w", a, packet.TopicAliasInvalid) // [MQTT-3.3.2-9/10]
		}
		if p.Topic == "" {
			t, ok := c.inAliases[a]
			if !ok {
				return fmt.Errorf("unknown topic alias %d: %w", a, packet.ProtocolError)
			}
			p.Topic = t
		} else {
			if c.inAliases == nil {
				c.inAliases = make(map[uint16]string)
			}
			c.inAliases[a] = p.Topic
		}
		p.Properties.TopicAlias = nil
	}
	if err := topic.ValidName(p.Topic); err != nil {
		return fmt.Errorf("%v: %w", err, packet.TopicNameInvalid)
	}
	if rt := p.Properties.ResponseTopic; rt != "" && topic.ValidName(rt) != nil {
		return fmt.Errorf("response topic %q is not a topic name: %w", rt, packet.ProtocolError) // [MQTT-3.3.2-14]
	}
	if p.Retain && !c.opts.RetainAvailable {
		return fmt.Errorf("retain not available: %w", packet.RetainNotSupported) // [MQTT-3.3.1-13]
	}
	if m := c.lo.MaxQoS; m != nil && p.QoS > *m {
		return fmt.Errorf("QoS %d above the listener's max_qos %d: %w", p.QoS, *m, packet.QoSNotSupported) // [MQTT-3.2.2-11]
	}
	s := c.s
	id, qos := p.PacketID, p.QoS
	if qos == 2 {
		s.mu.Lock()
		isNew := s.st.ReceiveQoS2(id)
		// only MQTT 5 clients know the limit (Receive Maximum in CONNACK);
		// a 3.x client is bounded by its packet identifiers alone
		if isNew && c.version == packet.V5 && s.st.IncomingQoS2() > c.receiveMax() {
			s.st.Pubrel(id)
			s.mu.Unlock()
			return fmt.Errorf("more than %d QoS 2 messages awaiting PUBREL: %w", c.receiveMax(), packet.ReceiveMaximumExceeded)
		}
		s.mu.Unlock()
		if !isNew {
			// [MQTT-4.3.3-9] not delivered again; answered in order
			c.queueAck(ackEntry{send: func(error) { c.send(&packet.Pubrec{PacketID: id}) }})
			return nil
		}
	}
	rc, done := c.accept(p)
	if qos == 0 {
		if done != nil {
			done.finish()
		}
		return nil
	}
	if done == nil && c.ackNow() {
		// nothing to wait for and nothing queued before it: no closure
		c.ackPublish(qos, id, rc)
		return nil
	}
	c.queueAck(ackEntry{done: done, send: func(err error) {
		rc := rc
		if err != nil {
			var ok bool
			if rc, ok = c.storeErr(err); !ok {
				if qos == 2 {
					s.mu.Lock()
					s.st.Pubrel(id) // not received: a resend must be routed
					s.mu.Unlock()
				}
				return // 3.1.1 has no way to say so but to close
			}
		}
		c.ackPublish(qos, id, rc)
	}})
	return nil
}

// ackPublish answers a QoS 1 or 2 PUBLISH with rc. A refused QoS 2
// message is not awaiting PUBREL: its id is free again [MQTT-4.3.3-9].
func (c *conn) ackPublish(qos byte, id uint16, rc packet.ReasonCode) {
	if qos == 1 {
		c.send(&packet.Puback{PacketID: id, ReasonCode: rc})
		return
	}
	if rc.IsError() {
		c.s.mu.Lock()
		c.s.st.Pubrel(id)
		c.s.mu.Unlock()
	}
	c.send(&packet.Pubrec{PacketID: id, ReasonCode: rc})
}

// accept authorizes and routes an incoming message, returning the reason
// for its acknowledgement and, when the store must sync first, what to
// wait for before sending it.
func (c *conn) accept(p *packet.Publish) (packet.ReasonCode, *routeDone) {
	if c.opts.MessageSizeLimit > 0 && len(p.Payload) > c.opts.MessageSizeLimit {
		return packet.QuotaExceeded, nil
	}
	if c.version == packet.V5 && p.Properties.PayloadFormat != nil && *p.Properties.PayloadFormat == 1 && !utf8.Valid(p.Payload) {
		return packet.PayloadFormatInvalid, nil
	}
	if len(p.Topic) >= 4 && p.Topic[:4] == "$SYS" {
		return packet.NotAuthorized, nil
	}
	if !authorize(context.Background(), c.lo.Authorizer, c.info, p.Topic, AccessWrite) {
		return packet.NotAuthorized, nil
	}
	now := time.Now()
	in := inbound{retain: p.Retain}
	if p.QoS == 2 {
		c.s.mu.Lock()
		if c.s.durableLocked() {
			in.clientID, in.qos2ID = c.s.id, p.PacketID
		}
		c.s.mu.Unlock()
	}
	// p and its payload are reused by the next read: route a message that
	// lives in the connection, copied only if a session or the retained
	// store keeps it
	if c.eph == nil {
		c.eph = new(session.Message)
	}
	fillMessage(c.eph, p, c.info.ClientID, now)
	n, done := c.b.routeAsync(c.eph, c.s, now, true, in)
	*c.eph = session.Message{}
	if n == 0 {
		return packet.NoMatchingSubscribers, done
	}
	return packet.Success, done
}

func (c *conn) receiveMax() int {
	if c.opts.MaxInflight <= 0 || c.opts.MaxInflight > 65535 {
		return 65535
	}
	return c.opts.MaxInflight
}

func (c *conn) handleSubscribe(p *packet.Subscribe) error {
	now := time.Now()
	id := 0
	if len(p.Properties.SubscriptionIDs) > 0 {
		id = p.Properties.SubscriptionIDs[0]
	}
	codes := make([]packet.ReasonCode, len(p.Subscriptions))
	type retainedFor struct {
		sub *subscription
	}
	var want []retainedFor
	s := c.s
	for i, ps := range p.Subscriptions {
		if m := c.lo.MaxQoS; m != nil && ps.QoS > *m {
			ps.QoS = *m
		}
		sub, rc := parseSubscription(ps, id)
		if rc == packet.ProtocolError {
			return fmt.Errorf("no local on a shared subscription: %w", rc)
		}
		if sub != nil && !authorize(context.Background(), c.lo.Authorizer, c.info, sub.filter, AccessSubscribe) {
			sub, rc = nil, packet.NotAuthorized
		}
		codes[i] = rc
		if sub == nil {
			continue
		}
		s.mu.Lock()
		if s.subs == nil {
			s.subs = make(map[string]*subscription)
		}
		_, existed := s.subs[sub.filter]
		s.subs[sub.filter] = sub
		if s.durableLocked() {
			c.batch.PutSubscription(s.id, subscriptionRecord(sub))
		}
		s.mu.Unlock()
		c.b.addSubscription(s, sub)
		if sub.group == "" && (sub.rh == 0 || (sub.rh == 1 && !existed)) { // [MQTT-3.3.1-9..11]
			want = append(want, retainedFor{sub})
		}
	}
	// a SUBACK promises the subscriptions: stored first
	if err := c.b.apply(&c.batch, true); err != nil {
		return fmt.Errorf("subscriptions not stored: %v: %w", err, packet.UnspecifiedError)
	}
	c.send(&packet.Suback{PacketID: p.PacketID, ReasonCodes: codes})
	for _, w := range want {
		var ids []int
		if w.sub.subID > 0 {
			ids = []int{w.sub.subID}
		}
		for _, m := range c.b.retainedFor(w.sub.inner, now) {
			qos := min(m.QoS, w.sub.qos)
			if c.opts.UpgradeOutgoingQoS {
				qos = w.sub.qos
			}
			s.deliver(m, qos, true, ids, now, nil) // [MQTT-3.3.1-8]
		}
	}
	return nil
}

func (c *conn) handleUnsubscribe(p *packet.Unsubscribe) error {
	codes := make([]packet.ReasonCode, len(p.Filters))
	s := c.s
	for i, f := range p.Filters {
		s.mu.Lock()
		sub, ok := s.subs[f]
		if ok {
			delete(s.subs, f)
			if s.durableLocked() {
				c.batch.DeleteSubscription(s.id, f)
			}
		}
		s.mu.Unlock()
		if !ok {
			codes[i] = packet.NoSubscriptionExisted
			continue
		}
		c.b.removeSubscription(s, sub)
	}
	if err := c.b.apply(&c.batch, true); err != nil {
		return fmt.Errorf("unsubscribe not stored: %v: %w", err, packet.UnspecifiedError)
	}
	c.send(&packet.Unsuback{PacketID: p.PacketID, ReasonCodes: codes})
	return nil
}

// detach ends the connection's hold on its session: the will, and the
// session itself when it does not outlive the connection.
func (c *conn) detach(cause error) {
	s := c.s
	b := c.b
	now := time.Now()
	var will *packet.Will
	drop := false
	b.mu.Lock()
	s.mu.Lock()
	if s.conn == c {
		s.conn = nil
		s.uncongestLocked()
		s.offAt = now
		if c.graceful {
			s.will = nil
		}
		if s.will != nil {
			delay := uint32(0)
			if s.will.Properties.WillDelay != nil {
				delay = *s.will.Properties.WillDelay
			}
			if delay == 0 || s.expiry == 0 {
				will, s.will = s.will, nil
			} else {
				s.willAt = now.Add(time.Duration(min(delay, s.expiry)) * time.Second)
			}
		}
		if s.expiry == 0 && b.sessions[s.id] == s {
			delete(b.sessions, s.id)
			s.gone = true
			drop = true
			if b.store != nil {
				c.batch.DeleteSession(s.id) // it may have been durable before
			}
		} else {
			b.offline[s] = struct{}{}
			if !b.opts.QueueQoS0 {
				s.st.DropQoS0()
			}
			if s.durableLocked() {
				c.batch.PutSession(s.sessionRecordLocked())
				s.forgetGoneLocked(&c.batch)
			} else {
				s.forgetGoneLocked(nil)
			}
		}
	}
	info, az := s.info, s.authz
	s.mu.Unlock()
	b.apply(&c.batch, false) // under b.mu: ordered with the next claim of the id
	b.mu.Unlock()
	if will != nil {
		b.publishWill(will, info, az, s)
	}
	if drop {
		b.dropSession(s)
	}
	if lvl := b.connLogLevel(); b.log.Enabled(context.Background(), lvl) {
		b.log.Log(context.Background(), lvl, "client disconnected", "client_id", info.ClientID, "cause", cause)
	}
}

// send queues a control packet for the writer.
func (c *conn) send(p packet.Packet) {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	if c.closing {
		return
	}
	c.appendLocked(p)
}

func (c *conn) appendLocked(p packet.Packet) bool {
	buf := c.outBuf()
	start := len(*buf)
	out, err := p.AppendTo(*buf, c.version)
	return c.appended(p.Type(), start, out, err)
}

// outBuf returns the buffer to append to, taken from the pool when there
// is none. c.outMu must be held.
func (c *conn) outBuf() *[]byte {
	if c.out == nil {
		c.out = writeBufPool.Get().(*[]byte)
		*c.out = (*c.out)[:0]
	}
	return c.out
}

// appended finishes an append of one packet that started at start: it
// drops a packet above the client's maximum packet size and makes sure a
// flusher will write it. c.outMu must be held.
func (c *conn) appended(t packet.Type, start int, out []byte, err error) bool {
	if err != nil {
		*c.out = out[:start]
		c.b.log.Warn("cannot encode packet", "client_id", c.clientID(), "type", t.String(), "err", err)
		return false
	}
	if c.maxOut > 0 && len(out)-start > c.maxOut {
		*c.out = out[:start]
		return false
	}
	*c.out = out
	c.b.stats.msgsSent.Add(1)
	c.flushLocked()
	return true
}

// flushLocked starts a flusher, or wakes the one that lingers. c.outMu
// must be held.
func (c *conn) flushLocked() {
	if !c.writing {
		c.writing = true
		c.wg.Add(1)
		go c.flushLoop()
		return
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *conn) clientID() string {
	if c.info == nil {
		return ""
	}
	return c.info.ClientID
}

// sendPublish encodes one delivery for this connection. It returns false
// when the message was dropped (too large for the client, or a QoS 0
// message to a client whose write buffer is full).
func (c *conn) sendPublish(msg *session.Message, qos byte, retain bool, subIDs []int, id uint16, dup bool, now time.Time, ec *encCache) bool {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	if c.closing {
		return qos > 0 // kept inflight for the next connection
	}
	if qos == 0 && c.out != nil && len(*c.out) > c.opts.MaxWriteBuffer {
		// The client reads slower than messages come. While that has
		// lasted less than slowConsumerAfter, the publisher is made to wait
		// (its reader stops, and TCP slows it) instead of losing the
		// message; a client that stays behind longer is a slow consumer and
		// its QoS 0 messages are dropped, so it cannot hold others up.
		if ec == nil || len(*c.out) > 4*c.opts.MaxWriteBuffer {
			return false
		}
		if c.drainCh == nil {
			c.drainCh = make(chan struct{})
			c.behindSince = now
		} else if now.Sub(c.behindSince) > slowConsumerAfter {
			return false
		}
		ec.congested = append(ec.congested, c.drainCh)
	}
	if ec != nil && !dup && len(subIDs) == 0 && !(c.aliasMaxOut > 0 && c.b.opts.OutgoingTopicAliases && c.version == packet.V5) {
		if e := ec.get(c.version, qos, retain, now); e != nil {
			buf := c.outBuf()
			start := len(*buf)
			out := append(*buf, e.buf...)
			if qos > 0 {
				out[start+e.idOff] = byte(id >> 8)
				out[start+e.idOff+1] = byte(id)
			}
			if !c.appended(packet.PUBLISH, start, out, nil) {
				return false
			}
			c.b.stats.pubSent.Add(1)
			return true
		}
	}
	p := packet.Publish{Dup: dup, QoS: qos, Retain: retain, Topic: msg.Topic, PacketID: id, Payload: msg.Payload}
	var newAlias string
	if c.version == packet.V5 {
		p.Properties = msg.Properties
		p.Properties.SubscriptionIDs = subIDs
		if rem, ok := msg.RemainingExpiry(now); ok {
			c.expiryTmp = rem
			p.Properties.MessageExpiry = &c.expiryTmp // [MQTT-3.3.2-6]
		}
		if c.aliasMaxOut > 0 && c.b.opts.OutgoingTopicAliases {
			if a, ok := c.outAliases[msg.Topic]; ok {
				c.aliasTmp = a
				p.Topic = ""
				p.Properties.TopicAlias = &c.aliasTmp
			} else if len(c.outAliases) < int(c.aliasMaxOut) {
				if c.outAliases == nil {
					c.outAliases = make(map[string]uint16)
				}
				c.aliasTmp = uint16(len(c.outAliases) + 1)
				c.outAliases[msg.Topic] = c.aliasTmp
				newAlias = msg.Topic
				p.Properties.TopicAlias = &c.aliasTmp
			}
		}
	}
	buf := c.outBuf()
	start := len(*buf)
	out, err := p.AppendTo(*buf, c.version)
	if !c.appended(packet.PUBLISH, start, out, err) {
		if newAlias != "" {
			delete(c.outAliases, newAlias)
		}
		return false
	}
	c.b.stats.pubSent.Add(1)
	return true
}

// kick sends DISCONNECT with reason rc to an MQTT 5 client, then closes.
func (c *conn) kick(rc packet.ReasonCode) {
	c.outMu.Lock()
	if !c.closing && c.version == packet.V5 && c.info != nil && !c.sentDisc {
		c.sentDisc = true
		c.appendLocked(&packet.Disconnect{ReasonCode: rc})
	}
	c.closing = true
	c.caughtUpLocked()
	c.flushLocked()
	c.outMu.Unlock()
	c.nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
	c.nc.SetReadDeadline(time.Now().Add(2 * time.Second))
}

// shutdown asks for what is queued to be flushed and the connection closed.
func (c *conn) shutdown() {
	c.outMu.Lock()
	c.closing = true
	c.caughtUpLocked()
	c.flushLocked()
	c.outMu.Unlock()
}

// flushLinger is how long a flusher waits for more to write before it
// exits, so that a busy connection keeps one and an idle one has none.
const flushLinger = 250 * time.Millisecond

// flushLoop is the only writer of nc: it drains the queue into one write
// per batch. At most one runs per connection (c.writing). It exits after
// flushLinger with nothing to write, or closes the connection when closing
// is set and everything is written.
func (c *conn) flushLoop() {
	defer c.wg.Done()
	var idle *time.Timer
	for {
		c.outMu.Lock()
		buf := c.out
		closing := c.closing
		if buf == nil || len(*buf) == 0 {
			if closing {
				c.outMu.Unlock()
				if tc, ok := c.nc.(interface{ CloseWrite() error }); ok {
					tc.CloseWrite()
				}
				c.nc.Close()
				return
			}
			c.outMu.Unlock()
			if idle == nil {
				idle = time.NewTimer(flushLinger)
			} else {
				idle.Reset(flushLinger)
			}
			select {
			case <-c.wake:
				continue
			case <-idle.C:
			}
			c.outMu.Lock()
			if (c.out == nil || len(*c.out) == 0) && !c.closing {
				c.writing = false
				c.releaseLocked()
				c.outMu.Unlock()
				return
			}
			c.outMu.Unlock()
			continue
		}
		c.out, c.spare = c.spare, nil
		if c.out != nil {
			*c.out = (*c.out)[:0]
		}
		c.caughtUpLocked()
		c.outMu.Unlock()
		if closing {
			c.nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
		} else {
			c.nc.SetWriteDeadline(time.Now().Add(c.opts.WriteTimeout))
		}
		n, err := c.nc.Write(*buf)
		c.b.stats.bytesSent.Add(uint64(n))
		if err != nil {
			// the reader sees the closed connection and cleans up; later
			// sends are dropped because closing is set
			c.nc.Close()
			c.outMu.Lock()
			c.closing = true
			c.releaseLocked()
			c.outMu.Unlock()
			if cap(*buf) <= maxKeptWriteBuf {
				writeBufPool.Put(buf)
			}
			return
		}
		c.outMu.Lock()
		// a busy connection keeps its grown buffer while its flusher
		// runs (no regrowing for every batch); releaseLocked lets a big
		// one go when it falls idle
		c.spare = buf
		c.outMu.Unlock()
	}
}

// slowConsumerAfter is how long a client may stay behind (its write buffer
// full) while QoS 0 publishers wait for it; after that its QoS 0 messages
// are dropped until it catches up.
const slowConsumerAfter = time.Second

// caughtUpLocked releases the publishers waiting for this client's buffer.
// c.outMu must be held.
func (c *conn) caughtUpLocked() {
	if c.drainCh != nil {
		close(c.drainCh)
		c.drainCh = nil
		c.behindSince = time.Time{}
	}
}

// releaseLocked returns empty buffers to the pool. c.outMu must be held.
func (c *conn) releaseLocked() {
	c.caughtUpLocked()
	if c.out != nil && len(*c.out) == 0 {
		putWriteBuf(c.out)
		c.out = nil
	}
	if c.spare != nil {
		putWriteBuf(c.spare)
		c.spare = nil
	}
	if c.closing && c.out != nil {
		c.out = nil
	}
}

// setVersion sets the protocol version during the handshake; kick, from
// another goroutine, reads it under outMu.
func (c *conn) setVersion(v packet.Version) {
	c.outMu.Lock()
	c.version = v
	c.outMu.Unlock()
}

// refuse answers CONNECT with a failure and ends the connection.
func (c *conn) refuse(rc packet.ReasonCode, reason string) error {
	ack := &packet.Connack{ReasonCode: rc}
	if c.version == packet.V5 && reason != "" {
		ack.Properties.ReasonString = reason
		// the reason string goes only if it keeps the packet within the
		// client's maximum packet size [MQTT-3.2.2-19]
		if b, err := ack.AppendTo(nil, c.version); err == nil && c.maxOut > 0 && len(b) > c.maxOut {
			ack.Properties.ReasonString = ""
		}
	}
	c.send(ack)
	return fmt.Errorf("connection refused: %s: %w", reason, rc)
}

func (c *conn) handshake() error {
	c.nc.SetReadDeadline(time.Now().Add(c.opts.ConnectTimeout))
	p, err := c.rd.ReadPacket(0, c.opts.MaxPacketSize)
	if err != nil {
		if cp, ok := p.(*packet.Connect); ok && errors.Is(err, packet.UnsupportedProtocolVersion) {
			// answer in 3.1.1 form: return code 1 [MQTT-3.1.2-2]
			v := packet.V311
			if cp.Version == packet.V5 {
				v = packet.V5
			}
			c.setVersion(v)
			c.refuse(packet.UnsupportedProtocolVersion, "unsupported protocol version")
		}
		return err
	}
	cp, ok := p.(*packet.Connect)
	if !ok {
		return fmt.Errorf("first packet is %v, not CONNECT: %w", p.Type(), packet.ProtocolError) // [MQTT-3.1.0-1]
	}
	c.setVersion(cp.Version)
	c.nc.SetReadDeadline(time.Time{})
	if cp.Version == packet.V5 && cp.Properties.MaximumPacketSize != nil {
		c.outMu.Lock()
		c.maxOut = int(*cp.Properties.MaximumPacketSize)
		c.outMu.Unlock()
	}
	b := c.b
	o := c.opts

	if n := c.lo.conns.Add(1); c.lo.MaxConnections > 0 && n > int64(c.lo.MaxConnections) {
		c.lo.conns.Add(-1)
		return c.refuse(packet.ServerBusy, "too many connections")
	}
	c.counted = true

	if cp.Properties.AuthMethod != "" {
		return c.refuse(packet.BadAuthenticationMethod, "enhanced authentication is not supported")
	}
	clientID := cp.ClientID
	assigned := false
	if clientID == "" {
		if !o.AllowZeroLengthClientID || cp.Version == packet.V31 || (cp.Version == packet.V311 && !cp.CleanStart) {
			return c.refuse(packet.ClientIdentifierNotValid, "empty client identifier") // [MQTT-3.1.3-8]
		}
		clientID = b.assignID(o.AutoIDPrefix)
		assigned = true
	}
	if cp.Will != nil {
		if err := topic.ValidName(cp.Will.Topic); err != nil {
			return c.refuse(packet.TopicNameInvalid, "invalid will topic")
		}
		if m := c.lo.MaxQoS; m != nil && cp.Will.QoS > *m {
			return c.refuse(packet.QoSNotSupported, "will QoS above max_qos") // [MQTT-3.2.2-12]
		}
		if cp.Will.Retain && !o.RetainAvailable {
			return c.refuse(packet.RetainNotSupported, "retain not available") // [MQTT-3.2.2-13]
		}
		if cp.Version == packet.V5 && cp.Will.Properties.PayloadFormat != nil && *cp.Will.Properties.PayloadFormat == 1 && !utf8.Valid(cp.Will.Payload) {
			return c.refuse(packet.PayloadFormatInvalid, "will payload is not UTF-8")
		}
	}
	keepAlive := cp.KeepAlive
	var serverKeepAlive *uint16
	if cp.Version == packet.V5 {
		if keepAlive > o.MaxKeepAlive || (keepAlive == 0 && o.MaxKeepAlive < 65535) {
			keepAlive = o.MaxKeepAlive
			serverKeepAlive = new(keepAlive) // [MQTT-3.2.2-21]
		}
	} else if keepAlive > o.MaxKeepAlive || (keepAlive == 0 && o.MaxKeepAlive < 65535) {
		// 3.x cannot be told another keep alive: refused, as Mosquitto does
		return c.refuse(packet.ClientIdentifierNotValid, "keep alive above max_keepalive")
	}
	c.keepAlive = time.Duration(keepAlive) * time.Second

	info := &ClientInfo{
		ClientID:        clientID,
		Username:        cp.Username,
		HasUsername:     cp.UsernameFlag,
		Password:        cp.Password,
		HasPassword:     cp.PasswordFlag,
		RemoteAddr:      c.nc.RemoteAddr(),
		Listener:        c.lo.Name,
		ProtocolVersion: byte(cp.Version),
	}
	if c.lo.PeerCertificates != nil {
		info.PeerCerts = c.lo.PeerCertificates(c.nc)
	}
	certAuth := c.lo.UseIdentityAsUsername || c.lo.UseSubjectAsUsername
	if certAuth {
		if len(info.PeerCerts) == 0 {
			return c.refuse(packet.NotAuthorized, "a client certificate is required")
		}
		if c.lo.UseSubjectAsUsername {
			info.Username = info.PeerCerts[0].Subject.String()
		} else {
			info.Username = info.PeerCerts[0].Subject.CommonName
		}
		info.HasUsername = true
	}
	// A verified certificate that names the user is the authentication, as
	// in Mosquitto: no password check; the ACL still applies to the name.
	if c.lo.Authenticator != nil && !certAuth {
		if err := c.lo.Authenticator.Authenticate(context.Background(), info); err != nil {
			var rc packet.ReasonCode
			if !errors.As(err, &rc) || !rc.IsError() {
				rc = packet.ServerUnavailable
			}
			info.Password = nil
			return c.refuse(rc, "not authorized")
		}
	}
	info.Password = nil
	c.outMu.Lock() // kick reads it
	c.info = info
	c.outMu.Unlock()

	if cp.Version == packet.V5 {
		if v := cp.Properties.MaximumPacketSize; v != nil {
			c.outMu.Lock()
			c.maxOut = int(*v)
			c.outMu.Unlock()
		}
		if v := cp.Properties.TopicAliasMaximum; v != nil {
			c.aliasMaxOut = *v
		}
	}
	expiry := uint32(0)
	if cp.Version == packet.V5 {
		if v := cp.Properties.SessionExpiry; v != nil {
			expiry = *v
		}
	} else if !cp.CleanStart {
		expiry = neverExpires
	}
	inflight := c.receiveMax()
	if cp.Version == packet.V5 && cp.Properties.ReceiveMaximum != nil {
		inflight = min(inflight, int(*cp.Properties.ReceiveMaximum))
	}

	// In a cluster, claim the id first: a connection of it on another
	// node is closed and a persistent session elsewhere comes here.
	c.connectedAt = time.Now()
	if r := b.router; r != nil {
		ctx, cancel := context.WithTimeout(context.Background(), claimTimeout)
		err := r.Claim(ctx, clientID, expiry > 0)
		cancel()
		if err != nil {
			b.log.Warn("client refused: its id cannot be claimed in the cluster", "client_id", clientID, "err", err)
			return c.refuse(packet.ServerUnavailable, "session registry unavailable")
		}
	}

	// Claim the client id: take over a live connection first [MQTT-3.1.4-3].
	var stale *sess
	present := false
	s := b.lockOffline(clientID)
	if b.closed {
		b.mu.Unlock()
		return c.refuse(packet.ServerShuttingDown, "server shutting down")
	}
	if s != nil {
		delete(b.offline, s)
	}
	if s != nil && cp.CleanStart {
		delete(b.sessions, clientID)
		s.mu.Lock()
		s.gone = true // no delivery may be stored for it after its delete
		s.mu.Unlock()
		stale, s = s, nil
	}
	if s == nil {
		s = &sess{b: b, id: clientID, st: session.New(clientID, session.Limits{})}
		b.sessions[clientID] = s
	} else {
		present = true
	}
	ack := &packet.Connack{SessionPresent: present}
	if cp.Version == packet.V5 {
		pr := &ack.Properties
		if rm := c.receiveMax(); rm < 65535 {
			pr.ReceiveMaximum = new(uint16(rm))
		}
		if !o.RetainAvailable {
			pr.RetainAvailable = new(byte(0))
		}
		if m := c.lo.MaxQoS; m != nil && *m < 2 {
			pr.MaximumQoS = new(*m)
		}
		if o.MaxPacketSize > 0 {
			pr.MaximumPacketSize = new(uint32(o.MaxPacketSize))
		}
		if assigned {
			pr.AssignedClientID = clientID
		}
		if o.TopicAliasMaximum > 0 {
			pr.TopicAliasMaximum = new(o.TopicAliasMaximum)
		}
		pr.ServerKeepAlive = serverKeepAlive
	}
	now := time.Now()
	s.mu.Lock()
	s.willAt = time.Time{} // a new connection cancels a delayed will [MQTT-3.1.3-9]
	s.will = cp.Will
	s.info = info
	s.authz = c.lo.Authorizer
	s.expiry = expiry
	s.st.Limits = session.Limits{
		MaxInflight:    inflight,
		MaxQueued:      o.MaxQueued,
		MaxQueuedBytes: o.MaxQueuedBytes,
		QueueQoS0:      o.QueueQoS0,
	}
	s.conn = c
	c.s = s
	var batch *Batch
	if b.store != nil {
		if stale != nil {
			c.batch.DeleteSession(clientID)
		}
		if s.durableLocked() {
			batch = &c.batch
			batch.PutSession(s.sessionRecordLocked())
		}
	}
	c.send(ack)
	s.resendLocked(now, batch)
	s.mu.Unlock()
	b.apply(&c.batch, false) // under b.mu: ordered with other claims of the id
	b.mu.Unlock()
	n := b.stats.connected.Add(1)
	for {
		m := b.stats.maxConnected.Load()
		if n <= m || b.stats.maxConnected.CompareAndSwap(m, n) {
			break
		}
	}
	if stale != nil {
		b.dropSession(stale)
	}
	if lvl := b.connLogLevel(); b.log.Enabled(context.Background(), lvl) {
		b.log.Log(context.Background(), lvl, "client connected", "client_id", clientID, "remote", info.RemoteAddr.String(),
			"version", cp.Version.String(), "session_present", present, "listener", c.lo.Name, "username", info.Username)
	}
	return nil
}

// connLogLevel is the level of connection messages: Info with Mosquitto's
// connection_messages (the default), Debug without.
func (b *Broker) connLogLevel() slog.Level {
	if b.opts.ConnectionMessages {
		return slog.LevelInfo
	}
	return slog.LevelDebug
}

// assignID returns a unique client id for a client that sent none.
func (b *Broker) assignID(prefix string) string {
	n := b.idSeq.Add(1)
	return prefix + strconv.FormatInt(b.start.UnixNano(), 36) + "-" + strconv.FormatUint(n, 36)
}
