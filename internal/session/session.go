package session

import (
	"errors"
	"time"

	"github.com/starlingmq/starling/internal/packet"
)

// Message is an application message as the broker routes it: immutable once
// built and shared by every session it is delivered to.
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte // the QoS it was published with
	Retain  bool // the retain flag it was published with
	// Properties are the publisher's MQTT 5 properties that travel with the
	// message (payload format, content type, response topic, correlation
	// data, user properties). TopicAlias, SubscriptionIDs and MessageExpiry
	// are per delivery and ignored here.
	Properties packet.Properties
	// ExpiresAt is when the message expires; zero means never.
	ExpiresAt time.Time
	// Origin is the publishing session's client id (for no-local), empty for
	// messages the broker makes itself.
	Origin string
	// Size approximates the bytes the message holds, for queue limits.
	Size int
	// ID names the publish cluster-wide (zero: unnamed), so that a session
	// that moved between nodes takes a message that reaches it by two
	// paths once.
	ID MsgID
}

// MsgID names one publish in a cluster: the node it entered by (a random
// number the node draws when it starts) and its number there.
type MsgID struct {
	Node, Seq uint64
}

// IsZero reports whether id names nothing.
func (id MsgID) IsZero() bool { return id.Node == 0 && id.Seq == 0 }

// Expired reports whether m has expired at now.
func (m *Message) Expired(now time.Time) bool {
	return !m.ExpiresAt.IsZero() && !now.Before(m.ExpiresAt)
}

// RemainingExpiry is the message expiry interval to send at now, in whole
// seconds rounded up, and whether the message has an expiry at all.
func (m *Message) RemainingExpiry(now time.Time) (uint32, bool) {
	if m.ExpiresAt.IsZero() {
		return 0, false
	}
	d := m.ExpiresAt.Sub(now)
	if d <= 0 {
		return 0, true
	}
	return uint32((d + time.Second - 1) / time.Second), true
}

// State is where an outgoing delivery stands.
type State byte

// Delivery states. A QoS 0 delivery only ever queues.
const (
	Queued       State = iota // waiting for room in the inflight window
	AwaitPuback               // QoS 1 sent
	AwaitPubrec               // QoS 2 PUBLISH sent
	AwaitPubcomp              // QoS 2 PUBREL sent
)

// Delivery is one message on its way to this session.
type Delivery struct {
	// Seq orders a session's deliveries; assigned by Offer when zero. It
	// is the delivery's key in a store, and its packet identifier is
	// derived from it when that one is free, so that a delivery restored
	// after a crash goes out with the identifier it had before.
	Seq      uint64
	Msg      *Message
	QoS      byte  // granted: min(published, subscribed)
	Retain   bool  // the retain flag to send
	SubIDs   []int // subscription identifiers to send (MQTT 5)
	PacketID uint16
	State    State
	Sent     bool // sent at least once: a resend carries DUP
	// Hold keeps the delivery from being sent until its record is stored
	// (see Release). While an inflight delivery is held, Next gives out
	// nothing, so that no later delivery overtakes it.
	Hold bool
}

// Limits bound a session's state.
type Limits struct {
	// MaxInflight is the outgoing window: deliveries sent and not yet
	// acknowledged (the smaller of the broker's max_inflight_messages and
	// the client's receive maximum). Zero means 65535.
	MaxInflight int
	// MaxQueued and MaxQueuedBytes bound the queue; zero means unlimited.
	MaxQueued      int
	MaxQueuedBytes int
	// QueueQoS0 queues QoS 0 messages while the client is offline.
	QueueQoS0 bool
}

// Errors a Session returns.
var (
	ErrQueueFull     = errors.New("session queue full")
	ErrUnknownPacket = errors.New("packet identifier not found")
	ErrWrongState    = errors.New("acknowledgement does not match the delivery's state")
)

// Session is one client's delivery state.
type Session struct {
	ClientID string
	Limits   Limits

	inflight map[uint16]*Delivery
	order    []uint16 // packet ids in the order first sent, for resend on reconnect
	queue    []*Delivery
	qhead    int
	qbytes   int
	nextID   uint16

	// incoming QoS 2 packet ids for which PUBREC was sent and PUBREL not yet
	// received [MQTT-4.3.3-9]
	incoming map[uint16]struct{}

	nextSeq uint64
	held    int         // inflight deliveries with Hold
	gone    []*Delivery // taken out without an acknowledgement; see TakeGone

	// Dropped counts deliveries refused because the queue was full.
	Dropped uint64
	// Expired counts deliveries that expired before they were sent.
	Expired uint64
}

// New returns an empty session.
func New(clientID string, l Limits) *Session {
	return &Session{ClientID: clientID, Limits: l}
}

func (s *Session) maxInflight() int {
	if s.Limits.MaxInflight <= 0 || s.Limits.MaxInflight > 65535 {
		return 65535
	}
	return s.Limits.MaxInflight
}

// InflightLen is the number of deliveries awaiting an acknowledgement.
func (s *Session) InflightLen() int { return len(s.inflight) }

// QueueLen is the number of queued deliveries.
func (s *Session) QueueLen() int { return len(s.queue) - s.qhead }

// QueuedBytes is the size of the queued messages.
func (s *Session) QueuedBytes() int { return s.qbytes }

// packetIDFor returns the identifier for d: the one derived from its Seq
// when free, else the next free one; ok is false when all 65535 are in use.
func (s *Session) packetIDFor(d *Delivery) (uint16, bool) {
	if d.Seq != 0 {
		id := uint16(d.Seq%65535) + 1
		if _, used := s.inflight[id]; !used {
			return id, true
		}
	}
	return s.nextPacketID()
}

// nextPacketID returns a free packet identifier; ok is false when all 65535
// are in use.
func (s *Session) nextPacketID() (uint16, bool) {
	for range 65535 {
		s.nextID++
		if s.nextID == 0 {
			s.nextID = 1
		}
		if _, used := s.inflight[s.nextID]; !used {
			return s.nextID, true
		}
	}
	return 0, false
}

// Offer hands the session a new delivery. When online and the window has
// room (or QoS is 0), it returns the delivery to send now, with its packet
// identifier assigned and its state set. Otherwise the delivery is queued
// (QoS 0 only when online, or offline with QueueQoS0) and Offer returns
// nil; ErrQueueFull means it was dropped.
func (s *Session) Offer(d *Delivery, online bool, now time.Time) (*Delivery, error) {
	if d.Seq == 0 {
		s.nextSeq++
		d.Seq = s.nextSeq
	}
	if d.Msg.Expired(now) {
		s.Expired++
		return nil, nil
	}
	if online && s.QueueLen() == 0 {
		if d.QoS == 0 {
			return d, nil
		}
		if len(s.inflight) < s.maxInflight() {
			if s.start(d) {
				return d, nil
			}
		}
	}
	if d.QoS == 0 && !online && !s.Limits.QueueQoS0 {
		return nil, nil
	}
	if !s.roomFor(d) {
		s.Dropped++
		return nil, ErrQueueFull
	}
	d.State = Queued
	s.queue = append(s.queue, d)
	s.qbytes += d.Msg.Size
	return nil, nil
}

func (s *Session) roomFor(d *Delivery) bool {
	if s.Limits.MaxQueued > 0 && s.QueueLen() >= s.Limits.MaxQueued {
		return false
	}
	if s.Limits.MaxQueuedBytes > 0 && s.qbytes+d.Msg.Size > s.Limits.MaxQueuedBytes {
		return false
	}
	return true
}

// start moves d into the inflight window; false when no packet id is free.
func (s *Session) start(d *Delivery) bool {
	if d.QoS == 0 {
		return true
	}
	id, ok := s.packetIDFor(d)
	if !ok {
		return false
	}
	if s.inflight == nil {
		s.inflight = make(map[uint16]*Delivery)
	}
	d.PacketID = id
	if d.Hold {
		s.held++
	}
	if d.QoS == 1 {
		d.State = AwaitPuback
	} else {
		d.State = AwaitPubrec
	}
	s.inflight[id] = d
	s.order = append(s.order, id)
	return true
}

// Next pops queued deliveries that may be sent now, while the inflight
// window has room, appending them to dst. Expired ones are dropped.
func (s *Session) Next(dst []*Delivery, now time.Time) []*Delivery {
	for s.qhead < len(s.queue) && s.held == 0 {
		d := s.queue[s.qhead]
		if d.Hold || (d.QoS > 0 && len(s.inflight) >= s.maxInflight()) {
			break
		}
		s.queue[s.qhead] = nil
		s.qhead++
		s.qbytes -= d.Msg.Size
		if d.Msg.Expired(now) {
			s.Expired++
			s.gone = append(s.gone, d)
			continue
		}
		if !s.start(d) {
			// no packet id: put it back and stop
			s.qhead--
			s.queue[s.qhead] = d
			s.qbytes += d.Msg.Size
			break
		}
		dst = append(dst, d)
	}
	s.compact()
	return dst
}

func (s *Session) compact() {
	if s.qhead == len(s.queue) {
		clear(s.queue)
		s.queue = s.queue[:0]
		s.qhead = 0
		if cap(s.queue) > 1024 {
			s.queue = nil
		}
		return
	}
	if s.qhead > 256 && s.qhead*2 > len(s.queue) {
		n := copy(s.queue, s.queue[s.qhead:])
		clear(s.queue[n:])
		s.queue = s.queue[:n]
		s.qhead = 0
	}
}

func (s *Session) remove(id uint16) {
	if d := s.inflight[id]; d != nil && d.Hold {
		s.held--
	}
	delete(s.inflight, id)
	for i, v := range s.order {
		if v == id {
			s.order = append(s.order[:i], s.order[i+1:]...)
			break
		}
	}
	if len(s.inflight) == 0 {
		s.order = s.order[:0]
	}
}

// Puback completes a QoS 1 delivery and returns it.
func (s *Session) Puback(id uint16) (*Delivery, error) {
	d, ok := s.inflight[id]
	if !ok {
		return nil, ErrUnknownPacket
	}
	if d.State != AwaitPuback {
		return nil, ErrWrongState
	}
	s.remove(id)
	return d, nil
}

// Pubrec moves a QoS 2 delivery to AwaitPubcomp; the caller sends PUBREL.
// A PUBREC with a failure reason (MQTT 5) ends the delivery instead: then
// release is false and no PUBREL is sent [MQTT-4.3.3-5 / 4.9].
// It returns the delivery.
func (s *Session) Pubrec(id uint16, failed bool) (d *Delivery, release bool, err error) {
	d, ok := s.inflight[id]
	if !ok {
		return nil, false, ErrUnknownPacket
	}
	switch d.State {
	case AwaitPubrec:
		if failed {
			s.remove(id)
			return d, false, nil
		}
		d.State = AwaitPubcomp
		return d, true, nil
	case AwaitPubcomp:
		return d, true, nil // repeated PUBREC: send PUBREL again
	}
	return nil, false, ErrWrongState
}

// Pubcomp completes a QoS 2 delivery and returns it.
func (s *Session) Pubcomp(id uint16) (*Delivery, error) {
	d, ok := s.inflight[id]
	if !ok {
		return nil, ErrUnknownPacket
	}
	if d.State != AwaitPubcomp {
		return nil, ErrWrongState
	}
	s.remove(id)
	return d, nil
}

// Inflight returns the unacknowledged deliveries in the order they were
// first sent, for resending on reconnect [MQTT-4.4.0-1].
func (s *Session) Inflight(dst []*Delivery) []*Delivery {
	for _, id := range s.order {
		if d, ok := s.inflight[id]; ok {
			dst = append(dst, d)
		}
	}
	return dst
}

// DropQoS0 forgets queued QoS 0 deliveries (when the client goes offline
// and QueueQoS0 is off).
func (s *Session) DropQoS0() {
	if s.QueueLen() == 0 {
		return
	}
	kept := s.queue[:0]
	for _, d := range s.queue[s.qhead:] {
		if d.QoS == 0 {
			s.qbytes -= d.Msg.Size
			s.gone = append(s.gone, d)
			continue
		}
		kept = append(kept, d)
	}
	clear(s.queue[len(kept):])
	s.queue = kept
	s.qhead = 0
}

// ReceiveQoS2 records an incoming QoS 2 PUBLISH. It reports whether the
// message is new (to be routed) or a duplicate of one awaiting PUBREL (not
// to be routed again) [MQTT-4.3.3-9]; count is the number awaiting PUBREL.
func (s *Session) ReceiveQoS2(id uint16) (isNew bool) {
	if _, dup := s.incoming[id]; dup {
		return false
	}
	if s.incoming == nil {
		s.incoming = make(map[uint16]struct{})
	}
	s.incoming[id] = struct{}{}
	return true
}

// IncomingQoS2 is the number of incoming QoS 2 messages awaiting PUBREL.
func (s *Session) IncomingQoS2() int { return len(s.incoming) }

// IncomingIDs returns the packet ids of incoming QoS 2 messages awaiting
// PUBREL, appended to dst (for a session handed to another node).
func (s *Session) IncomingIDs(dst []uint16) []uint16 {
	for id := range s.incoming {
		dst = append(dst, id)
	}
	return dst
}

// Pubrel releases an incoming QoS 2 id; false when it was not known.
func (s *Session) Pubrel(id uint16) bool {
	if _, ok := s.incoming[id]; !ok {
		return false
	}
	delete(s.incoming, id)
	return true
}

// Forget drops an inflight delivery without an acknowledgement, as when the
// packet would exceed the client's maximum packet size [MQTT-3.1.2-25].
func (s *Session) Forget(id uint16) {
	if d, ok := s.inflight[id]; ok {
		s.remove(id)
		s.gone = append(s.gone, d)
	}
}

// TakeGone returns, appended to dst, the deliveries the session let go of
// without an acknowledgement since the last call (expired in the queue,
// QoS 0 dropped at disconnect, forgotten as too large), so that their
// records can be deleted; and forgets them.
func (s *Session) TakeGone(dst []*Delivery) []*Delivery {
	dst = append(dst, s.gone...)
	clear(s.gone)
	s.gone = s.gone[:0]
	return dst
}

// Restore puts back a delivery read from a store: into the inflight window
// with its packet identifier when it was in flight, else at the end of the
// queue. Deliveries are restored in Seq order. Limits are not applied.
func (s *Session) Restore(d *Delivery) {
	s.nextSeq = max(s.nextSeq, d.Seq)
	if d.State == Queued || d.PacketID == 0 {
		d.State = Queued
		s.queue = append(s.queue, d)
		s.qbytes += d.Msg.Size
		return
	}
	if _, used := s.inflight[d.PacketID]; used {
		// two deliveries with one id cannot both be in flight: resend the
		// later one as new
		d.State, d.PacketID = Queued, 0
		s.queue = append(s.queue, d)
		s.qbytes += d.Msg.Size
		return
	}
	if s.inflight == nil {
		s.inflight = make(map[uint16]*Delivery)
	}
	s.inflight[d.PacketID] = d
	s.order = append(s.order, d.PacketID)
}

// Queued returns the queued deliveries in order (for tests and snapshots).
func (s *Session) Queued() []*Delivery {
	return append([]*Delivery(nil), s.queue[s.qhead:]...)
}

// Reset forgets all deliveries and incoming QoS 2 state.
func (s *Session) Reset() {
	s.held = 0
	s.gone = nil
	s.inflight = nil
	s.order = nil
	s.queue = nil
	s.qhead = 0
	s.qbytes = 0
	s.incoming = nil
}

// Release lets a held delivery be sent: its record is stored.
func (s *Session) Release(d *Delivery) {
	if !d.Hold {
		return
	}
	if s.IsInflight(d) {
		s.held--
	}
	d.Hold = false
}

// IsInflight reports whether d is in the inflight window.
func (s *Session) IsInflight(d *Delivery) bool {
	return d.PacketID != 0 && s.inflight[d.PacketID] == d
}

// Cancel takes back a delivery that could not be stored: from the inflight
// window or the queue. It reports whether d was found.
func (s *Session) Cancel(d *Delivery) bool {
	if s.IsInflight(d) {
		s.remove(d.PacketID)
		return true
	}
	for i := len(s.queue) - 1; i >= s.qhead; i-- {
		if s.queue[i] == d {
			copy(s.queue[i:], s.queue[i+1:])
			s.queue[len(s.queue)-1] = nil
			s.queue = s.queue[:len(s.queue)-1]
			s.qbytes -= d.Msg.Size
			return true
		}
	}
	return false
}

// Holds reports whether the session keeps d: in flight or queued. A
// delivery Offer took without keeping (expired, QoS 0 for an offline
// session) is not held.
func (s *Session) Holds(d *Delivery) bool {
	if s.IsInflight(d) {
		return true
	}
	for i := len(s.queue) - 1; i >= s.qhead; i-- {
		if s.queue[i] == d {
			return true
		}
	}
	return false
}
