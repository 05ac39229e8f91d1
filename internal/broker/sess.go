package broker

import (
	"context"
	"math"
	"slices"
	"time"

	"sync"

	"github.com/starlingmq/starling/internal/packet"
	"github.com/starlingmq/starling/internal/session"
)

// neverExpires is the MQTT 5 session expiry meaning "never".
const neverExpires = math.MaxUint32

// sess is the broker's side of a session: the pure state plus the
// connection it is attached to.
type sess struct {
	b  *Broker
	id string

	mu      sync.Mutex // guards everything below
	st      *session.Session
	conn    *conn // nil while offline
	info    *ClientInfo
	authz   Authorizer
	subs    map[string]*subscription
	expiry  uint32 // session expiry interval, seconds; neverExpires = never
	offAt   time.Time
	will    *packet.Will
	willAt  time.Time // when a delayed will is due; zero = none pending
	gone    bool      // removed from the broker; deliveries are dropped
	scratch []*session.Delivery
	// drained is closed when the queue of a congested online session has
	// drained (see congestQueue); nil when nobody waits.
	drained chan struct{}
	// relay, set on a ghost (a session handed over to another node, see
	// Handover), passes what is delivered to it on to that node.
	relay      RelayFunc
	ghostUntil time.Time // when a ghost ends; zero until its handover is done
	// seen holds the messages routed to a session that just arrived from
	// another node, until seenUntil: a message reaching it both from
	// the old node's ghost and directly is taken once.
	seen      map[session.MsgID]struct{}
	seenUntil time.Time
	// holding: the session arrived from a node that relays to it (see
	// Install); messages routed to it directly wait in held until that
	// relay ends (ReleaseHeld, or holdUntil), so that a message relayed
	// late is not overtaken by later ones that came directly.
	holding   bool
	releasing bool // a releaseHeld runs
	held      []heldDelivery
	holdUntil time.Time
	holdEpoch uint64 // the claim whose relay it waits for
	// relayOpen: it came with a relay that has not ended yet (RelayEnd;
	// the hold may end earlier); upstream: a ghost made of such a
	// session, which passes that relay on and ends only after it;
	// endAsked: its end was asked, onGhostEnd runs when it ends
	relayOpen, upstream, endAsked bool
	onGhostEnd                    func()
}

// heldDelivery is a delivery waiting for a session's relay to end.
type heldDelivery struct {
	msg    *session.Message
	qos    byte
	retain bool
	subIDs []int
}

// RelayFunc passes a message delivered to a ghost on to the node its
// session went to; shared is the subscription it was delivered for when
// it was chosen as a shared subscription group's member, nil otherwise.
type RelayFunc func(msg *session.Message, shared *SharedMatch)

// seenWindow is how long a session handed over from another node
// remembers the messages routed to it (relayGhostLife and some margin
// for what is still on its way).
const seenWindow = relayGhostLife + 3*time.Second

// dupLocked reports whether msg already reached s during its seen window,
// and records it (mark false: only reports). s.mu must be held.
func (s *sess) dupLocked(msg *session.Message, now time.Time, mark bool) bool {
	if s.seen == nil || msg.ID.IsZero() {
		return false
	}
	if now.After(s.seenUntil) {
		s.seen = nil
		return false
	}
	if _, ok := s.seen[msg.ID]; ok {
		return true
	}
	if mark {
		s.seen[msg.ID] = struct{}{}
	}
	return false
}

// congestQueue is the queue length at which an online session is congested:
// acknowledgements of QoS 1 and 2 messages routed to it wait (at most
// congestWait) until its queue is down to half, so that publishers slow to
// the pace of their subscribers through MQTT's own flow control instead of
// filling queues until messages are dropped. The reader is not blocked: a
// publisher stops when its own window of unacknowledged messages is full.
const (
	congestQueue = 256
	congestWait  = 2 * time.Second
)

// congestedLocked returns the channel to wait on when s is congested, or
// nil. s.mu must be held.
func (s *sess) congestedLocked() chan struct{} {
	if s.conn == nil || s.st.QueueLen() < congestQueue {
		return nil
	}
	if s.drained == nil {
		s.drained = make(chan struct{})
	}
	return s.drained
}

// uncongestLocked wakes the waiters once the queue has drained enough, or
// the session went offline or away. s.mu must be held.
func (s *sess) uncongestLocked() {
	if s.drained != nil && (s.conn == nil || s.gone || s.st.QueueLen() <= congestQueue/2) {
		close(s.drained)
		s.drained = nil
	}
}

func (s *sess) online() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn != nil
}

// deliver offers msg to the session; false when it was not taken (session
// gone, not authorized, queue full, QoS 0 for an offline session).
func (s *sess) deliver(msg *session.Message, qos byte, retain bool, subIDs []int, now time.Time, ec *encCache) bool {
	return s.deliverVia(msg, qos, retain, subIDs, now, ec, nil, false)
}

// deliverVia is deliver for the subscription shared, as a shared
// subscription group's member (nil: through its other subscriptions).
// A message routed (ec set) is taken once during the session's seen
// window; one for a shared group is not checked: the group's member is
// chosen once per message cluster-wide, so it cannot come twice.
//
// relayed is set for a message relayed by the session's old node, and for
// one released from held: those are delivered at once, in order.
func (s *sess) deliverVia(msg *session.Message, qos byte, retain bool, subIDs []int, now time.Time, ec *encCache, shared *subscription, relayed bool) bool {
	s.mu.Lock()
	if s.gone {
		s.mu.Unlock()
		return false
	}
	if s.relay == nil && s.authz != nil {
		info, az := s.info, s.authz
		s.mu.Unlock()
		// [acl] read access is checked on delivery, outside the lock
		if !az.Authorize(context.Background(), info, msg.Topic, AccessRead) {
			return false
		}
		s.mu.Lock()
		if s.gone {
			s.mu.Unlock()
			return false
		}
	}
	// from here on in one hold of s.mu: relayed, held, or recorded as
	// seen and queued together, so that a snapshot (Handover) never
	// names a message as seen that it does not hold
	if s.relay != nil {
		relay := s.relay
		s.mu.Unlock()
		var sm *SharedMatch
		if shared != nil {
			sm = &SharedMatch{Group: shared.group, Filter: shared.inner}
		}
		relay(msg, sm)
		return true
	}
	if ec != nil && shared == nil {
		if s.holding && !relayed {
			if !s.dupLocked(msg, now, false) {
				s.held = append(s.held, heldDelivery{msg: ec.keep(), qos: qos, retain: retain, subIDs: slices.Clone(subIDs)})
			}
			s.mu.Unlock()
			return true
		}
		if s.dupLocked(msg, now, true) {
			s.mu.Unlock()
			return true // taken already
		}
	}
	c := s.conn
	if c != nil && qos == 0 && s.st.QueueLen() == 0 {
		// fast path: nothing queued ahead, send directly without a Delivery
		ok := c.sendPublish(msg, 0, retain, subIDs, 0, false, now, ec)
		s.mu.Unlock()
		if !ok {
			s.b.stats.pubDropped.Add(1)
		}
		return ok
	}
	if ec != nil {
		msg = ec.keep() // the session may keep it: never an ephemeral one
	}
	d := &session.Delivery{Msg: msg, QoS: qos, Retain: retain, SubIDs: subIDs}
	durable := ec != nil && ec.batch != nil && s.durableLocked()
	// held until the store has it, so that an acknowledgement never
	// overtakes the record it deletes; released by the route's end
	d.Hold = durable
	send, err := s.st.Offer(d, c != nil, now)
	if err != nil {
		// a full queue drops the message (max_queued_messages, as in
		// Mosquitto); the publisher still waits for the queue to drain,
		// so that it slows down instead of losing more
		if ec != nil && ec.msg.QoS > 0 {
			if ch := s.congestedLocked(); ch != nil {
				ec.congested = append(ec.congested, ch)
			}
		}
		s.mu.Unlock()
		s.b.stats.pubDropped.Add(1)
		return false
	}
	if durable && s.st.Holds(d) {
		ec.batch.PutDelivery(s.id, deliveryRecord(d))
		ec.added = append(ec.added, pendingSend{s, d})
		send = nil
	}
	if ec != nil && ec.msg.QoS > 0 {
		if ch := s.congestedLocked(); ch != nil {
			ec.congested = append(ec.congested, ch)
		}
	}
	if send != nil {
		s.sendLocked(send, now, ec)
	}
	s.mu.Unlock()
	return true
}

// sendLocked writes d to the connection. s.mu must be held and s.conn set.
func (s *sess) sendLocked(d *session.Delivery, now time.Time, ec *encCache) {
	dup := d.Sent
	d.Sent = true
	if !s.conn.sendPublish(d.Msg, d.QoS, d.Retain, d.SubIDs, d.PacketID, dup, now, ec) && d.QoS > 0 {
		s.st.Forget(d.PacketID) // too large for the client: treated as delivered
	}
}

// pumpLocked sends queued deliveries while the window has room, recording
// their new state in batch when it is not nil. s.mu must be held.
func (s *sess) pumpLocked(now time.Time, batch *Batch) {
	if s.conn == nil {
		return
	}
	defer s.uncongestLocked()
	defer s.forgetGoneLocked(batch)
	for {
		s.scratch = s.st.Next(s.scratch[:0], now)
		if len(s.scratch) == 0 {
			return
		}
		for _, d := range s.scratch {
			if batch != nil {
				if d.QoS == 0 {
					batch.DeleteDelivery(s.id, d.Seq) // sent: nothing to wait for
				} else {
					batch.PutDelivery(s.id, deliveryRecord(d))
				}
			}
			if d.QoS == 0 {
				s.conn.sendPublish(d.Msg, 0, d.Retain, d.SubIDs, 0, false, now, nil)
				continue
			}
			s.sendLocked(d, now, nil)
		}
		clear(s.scratch)
	}
}

// forgetGoneLocked deletes the records of the deliveries the session let go
// of without an acknowledgement (batch nil: it only forgets them). s.mu
// must be held.
func (s *sess) forgetGoneLocked(batch *Batch) {
	s.scratch = s.st.TakeGone(s.scratch[:0])
	if batch != nil {
		for _, d := range s.scratch {
			batch.DeleteDelivery(s.id, d.Seq)
		}
	}
	clear(s.scratch)
}

// resendLocked sends every unacknowledged delivery again on a new
// connection, PUBLISH with DUP or PUBREL as its state requires
// [MQTT-4.4.0-1]. s.mu must be held.
func (s *sess) resendLocked(now time.Time, batch *Batch) {
	for _, d := range s.st.Inflight(nil) {
		if d.Hold {
			continue // sent when its record is stored
		}
		switch d.State {
		case session.AwaitPuback, session.AwaitPubrec:
			s.sendLocked(d, now, nil)
		case session.AwaitPubcomp:
			s.conn.send(&packet.Pubrel{PacketID: d.PacketID})
		}
	}
	s.pumpLocked(now, batch)
}

// expired reports whether an offline session has outlived its expiry.
func (s *sess) expiredLocked(now time.Time, persistentCap time.Duration) bool {
	if s.conn != nil || s.gone {
		return false
	}
	if s.expiry == neverExpires {
		return persistentCap > 0 && now.Sub(s.offAt) >= persistentCap
	}
	return now.Sub(s.offAt) >= time.Duration(s.expiry)*time.Second
}

// dropSession forgets s: unsubscribes everything and drops its state. b.mu
// must NOT be held; s must already be out of b.sessions, and its records
// deleted from the store by the caller, under b.mu.
func (b *Broker) dropSession(s *sess) {
	s.mu.Lock()
	s.gone = true
	subs := s.subs
	s.subs = nil
	s.st.Reset()
	s.uncongestLocked()
	s.mu.Unlock()
	for _, sub := range subs {
		b.removeSubscription(s, sub)
	}
}

// publishWill sends a will message, if the client may write to its topic.
func (b *Broker) publishWill(w *packet.Will, info *ClientInfo, az Authorizer, origin *sess) {
	if w == nil {
		return
	}
	if !authorize(context.Background(), az, info, w.Topic, AccessWrite) {
		b.log.Info("will not authorized", "client_id", info.ClientID, "topic", w.Topic)
		return
	}
	now := time.Now()
	p := &packet.Publish{Topic: w.Topic, Payload: w.Payload, QoS: w.QoS, Retain: w.Retain, Properties: w.Properties}
	p.Properties.WillDelay = nil
	msg := newMessage(p, info.ClientID, now)
	if _, err := b.routeMsg(msg, origin, now, false, inbound{retain: w.Retain && b.opts.RetainAvailable}); err != nil {
		b.log.Warn("will not stored", "client_id", info.ClientID, "err", err)
	}
}

// janitor expires sessions and sends delayed wills, once a second.
func (b *Broker) janitor() {
	defer b.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-b.quit:
			return
		case now := <-t.C:
			b.sweep(now)
			b.sweepGhosts(now)
			b.sweepHolds(now)
			if n%10 == 0 {
				b.saveCounters()
			}
		}
	}
}

type dueWill struct {
	w     *packet.Will
	info  *ClientInfo
	authz Authorizer
	s     *sess
}

// sweep removes expired sessions and publishes wills whose delay passed.
func (b *Broker) sweep(now time.Time) {
	if b.loading.Load() {
		return // sessions are being restored
	}
	var dead []*sess
	var wills []dueWill
	var batch Batch
	b.mu.Lock()
	capd := b.opts.PersistentClientExpiration
	for s := range b.offline {
		id := s.id
		s.mu.Lock()
		if s.conn != nil || s.gone {
			delete(b.offline, s)
			s.mu.Unlock()
			continue
		}
		if s.will != nil && !s.willAt.IsZero() && s.conn == nil && !now.Before(s.willAt) {
			wills = append(wills, dueWill{s.will, s.info, s.authz, s})
			s.will, s.willAt = nil, time.Time{}
			if s.durableLocked() {
				batch.PutSession(s.sessionRecordLocked())
			}
		}
		if s.expiredLocked(now, capd) {
			if s.will != nil { // the session ends before the will delay [MQTT-3.1.3-9]
				wills = append(wills, dueWill{s.will, s.info, s.authz, s})
				s.will = nil
			}
			if b.sessions[id] == s {
				delete(b.sessions, id)
			}
			s.gone = true
			delete(b.offline, s)
			dead = append(dead, s)
			if b.store != nil {
				batch.DeleteSession(id)
			}
		}
		s.mu.Unlock()
	}
	b.apply(&batch, false) // under b.mu: ordered with a new session's records
	b.mu.Unlock()
	for _, w := range wills {
		b.publishWill(w.w, w.info, w.authz, w.s)
	}
	for _, s := range dead {
		b.dropSession(s)
		if b.router != nil {
			b.router.Ended(s.id)
		}
	}
}
