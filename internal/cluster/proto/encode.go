package proto

import (
	"github.com/starlingmq/starling/internal/packet"
)

// Flag bits.
const (
	flagMore        = 0x01 // snapshots and transfers: more parts follow
	flagNeedsAck    = 0x01 // ForwardMessage
	flagMessage     = 0x01 // Retained: a message, not a delete
	flagSession     = 0x02 // SessionTransfer: Session is set
	flagHasUsername = 0x01 // SessionRecord
	flagWill        = 0x02 // SessionRecord
	flagWillDelay   = 0x04 // SessionRecord: Will has a Will Delay Interval
	flagNoLocal     = 0x01 // SubscriptionRecord
	flagRAP         = 0x02 // SubscriptionRecord: Retain As Published
	flagRetain      = 0x01 // DeliveryRecord
	flagSent        = 0x02 // DeliveryRecord
)

func boolFlag(b bool, f byte) byte {
	if b {
		return f
	}
	return 0
}

// AppendTo appends the frame.
func (m *Hello) AppendTo(dst []byte) ([]byte, error) {
	dst, start := beginFrame(dst, TypeHello)
	dst = appendUvarint(dst, uint64(m.ProtocolVersion))
	dst = appendUvarint(dst, uint64(m.MinProtocolVersion))
	dst = appendString(dst, m.NodeName)
	dst = appendString(dst, m.ClusterName)
	dst = appendUvarint(dst, m.Incarnation)
	dst = appendUvarint(dst, uint64(m.Capabilities))
	return endFrame(dst, start, nil)
}

// AppendTo appends the frame.
func (m *HelloAck) AppendTo(dst []byte) ([]byte, error) {
	dst, start := beginFrame(dst, TypeHelloAck)
	dst = appendUvarint(dst, uint64(m.ProtocolVersion))
	dst = appendString(dst, m.NodeName)
	dst = appendUvarint(dst, m.Incarnation)
	dst = appendUvarint(dst, uint64(m.Capabilities))
	dst = append(dst, byte(m.Code))
	dst = appendString(dst, m.Reason)
	return endFrame(dst, start, nil)
}

// AppendTo appends the frame.
func (m *Ping) AppendTo(dst []byte) ([]byte, error) {
	dst, start := beginFrame(dst, TypePing)
	dst = appendVarint(dst, m.SentUnixNano)
	return endFrame(dst, start, nil)
}

// AppendTo appends the frame.
func (m *Pong) AppendTo(dst []byte) ([]byte, error) {
	dst, start := beginFrame(dst, TypePong)
	dst = appendVarint(dst, m.PingSentUnixNano)
	dst = appendVarint(dst, m.SentUnixNano)
	return endFrame(dst, start, nil)
}

// AppendTo appends the frame.
func (m *RouteSnapshot) AppendTo(dst []byte) ([]byte, error) {
	dst, start := beginFrame(dst, TypeRouteSnapshot)
	dst = appendString(dst, m.Origin)
	dst = appendUvarint(dst, m.Incarnation)
	dst = appendUvarint(dst, m.Seq)
	dst = appendUvarint(dst, uint64(m.Part))
	dst = append(dst, boolFlag(m.More, flagMore))
	dst = appendUvarint(dst, uint64(len(m.Entries)))
	for i := range m.Entries {
		e := &m.Entries[i]
		dst = appendString(dst, e.Filter)
		dst = appendUvarint(dst, uint64(e.Count))
		dst = appendUvarint(dst, uint64(len(e.Shared)))
		for _, g := range e.Shared {
			dst = appendString(dst, g.Group)
			dst = appendUvarint(dst, uint64(g.Members))
		}
	}
	return endFrame(dst, start, nil)
}

// AppendTo appends the frame.
func (m *RouteDelta) AppendTo(dst []byte) ([]byte, error) {
	dst, start := beginFrame(dst, TypeRouteDelta)
	dst = appendString(dst, m.Origin)
	dst = appendUvarint(dst, m.Incarnation)
	dst = appendUvarint(dst, m.Seq)
	dst = appendUvarint(dst, uint64(len(m.Changes)))
	for _, c := range m.Changes {
		dst = appendString(dst, c.Filter)
		dst = appendString(dst, c.Group)
		dst = appendUvarint(dst, uint64(c.Count))
	}
	return endFrame(dst, start, nil)
}

// AppendTo appends the frame.
func (m *RouteSnapshotRequest) AppendTo(dst []byte) ([]byte, error) {
	dst, start := beginFrame(dst, TypeRouteSnapshotRequest)
	dst = appendUvarint(dst, m.Incarnation)
	dst = appendUvarint(dst, m.Seq)
	return endFrame(dst, start, nil)
}

// AppendTo appends the frame. Each message's Publish is written in the
// MQTT 5 encoding; a zero PacketID of a QoS 1 or 2 message is written as 1
// (the encoding cannot carry 0, and the id means nothing between nodes).
func (m *Forward) AppendTo(dst []byte) ([]byte, error) {
	dst, start := beginFrame(dst, m.Type())
	dst = appendUvarint(dst, uint64(len(m.Messages)))
	var err error
	for i := range m.Messages {
		f := &m.Messages[i]
		if f.Publish == nil {
			return endFrame(dst, start, encErr("forwarded message %d without a publish", i))
		}
		dst = appendUvarint(dst, f.Seq)
		if m.V2 {
			dst = appendUvarint(dst, f.ID.Node)
			dst = appendUvarint(dst, f.ID.Seq)
		}
		dst = append(dst, boolFlag(f.NeedsAck, flagNeedsAck))
		dst = appendString(dst, f.Origin)
		dst = appendString(dst, f.PublisherID)
		dst = appendUvarint(dst, uint64(len(f.Shared)))
		for _, s := range f.Shared {
			dst = appendString(dst, s.Group)
			dst = appendString(dst, s.Filter)
			dst = appendString(dst, s.Node)
		}
		if dst, err = appendPublish(dst, f.Publish); err != nil {
			return endFrame(dst, start, err)
		}
	}
	return endFrame(dst, start, nil)
}

// AppendTo appends the frame.
func (m *ForwardAck) AppendTo(dst []byte) ([]byte, error) {
	dst, start := beginFrame(dst, TypeForwardAck)
	dst = appendUvarint(dst, m.UpTo)
	dst = appendUvarint(dst, uint64(len(m.Statuses)))
	for _, s := range m.Statuses {
		dst = appendUvarint(dst, s.Seq)
		dst = append(dst, byte(s.Code))
	}
	return endFrame(dst, start, nil)
}

func appendTimestamp(dst []byte, t *Timestamp) []byte {
	dst = appendVarint(dst, t.WallMilli)
	dst = appendUvarint(dst, uint64(t.Logical))
	return appendString(dst, t.Node)
}

func appendMessageRecord(dst []byte, r *MessageRecord) ([]byte, error) {
	if r.QoS > 2 {
		return dst, encErr("message QoS %d", r.QoS)
	}
	dst = appendVarint(dst, r.ExpiresUnixMilli)
	dst = appendString(dst, r.Origin)
	return appendPublish(dst, &packet.Publish{QoS: r.QoS, Retain: r.Retain, Topic: r.Topic,
		Payload: r.Payload, Properties: r.Properties})
}

func appendRetained(dst []byte, m *Retained) ([]byte, error) {
	dst = appendTimestamp(dst, &m.Time)
	if m.Message == nil {
		dst = append(dst, 0)
		return appendString(dst, m.Topic), nil
	}
	if m.Message.Topic != m.Topic {
		return dst, encErr("retained topic %q carries a message of topic %q", m.Topic, m.Message.Topic)
	}
	dst = append(dst, flagMessage)
	return appendMessageRecord(dst, m.Message)
}

// AppendTo appends the frame.
func (m *Retained) AppendTo(dst []byte) ([]byte, error) {
	dst, start := beginFrame(dst, TypeRetained)
	dst, err := appendRetained(dst, m)
	return endFrame(dst, start, err)
}

// AppendTo appends the frame.
func (m *RetainedSnapshot) AppendTo(dst []byte) ([]byte, error) {
	dst, start := beginFrame(dst, TypeRetainedSnapshot)
	dst = appendString(dst, m.Origin)
	dst = appendUvarint(dst, uint64(m.Part))
	dst = append(dst, boolFlag(m.More, flagMore))
	dst = appendUvarint(dst, uint64(len(m.Messages)))
	var err error
	for i := range m.Messages {
		if dst, err = appendRetained(dst, &m.Messages[i]); err != nil {
			break
		}
	}
	return endFrame(dst, start, err)
}

// AppendTo appends the frame.
func (m *SessionClaim) AppendTo(dst []byte) ([]byte, error) {
	dst, start := beginFrame(dst, TypeSessionClaim)
	dst = appendString(dst, m.ClientID)
	dst = appendString(dst, m.Node)
	dst = appendUvarint(dst, m.Epoch)
	return endFrame(dst, start, nil)
}

// AppendTo implements Message.
func (m *SessionKick) AppendTo(dst []byte) ([]byte, error) {
	dst, start := beginFrame(dst, TypeSessionKick)
	dst = appendString(dst, m.ClientID)
	dst = appendString(dst, m.Node)
	dst = appendVarint(dst, m.AtUnixNano)
	return endFrame(dst, start, nil)
}

func appendSession(dst []byte, s *SessionRecord) ([]byte, error) {
	flags := boolFlag(s.HasUsername, flagHasUsername) | boolFlag(s.Will != nil, flagWill)
	if s.Will != nil && s.Will.Properties.WillDelay != nil {
		flags |= flagWillDelay
	}
	dst = appendUvarint(dst, uint64(s.Expiry))
	dst = appendVarint(dst, s.DisconnectedAtUnixMilli)
	dst = append(dst, flags)
	dst = appendString(dst, s.Username)
	dst = appendVarint(dst, s.WillAtUnixMilli)
	if w := s.Will; w != nil {
		if w.QoS > 2 {
			return dst, encErr("will QoS %d", w.QoS)
		}
		if len(w.Properties.SubscriptionIDs) > 0 {
			return dst, encErr("will with subscription identifiers")
		}
		// The Will Delay Interval is not a PUBLISH property; it travels
		// on its own.
		p := packet.Publish{QoS: w.QoS, Retain: w.Retain, Topic: w.Topic, Payload: w.Payload, Properties: w.Properties}
		p.Properties.WillDelay = nil
		var err error
		if dst, err = appendPublish(dst, &p); err != nil {
			return dst, err
		}
		if d := w.Properties.WillDelay; d != nil {
			dst = appendUvarint(dst, uint64(*d))
		}
	}
	return dst, nil
}

func appendSubscription(dst []byte, s *SubscriptionRecord) ([]byte, error) {
	if s.QoS > 2 || s.RetainHandling > 2 {
		return dst, encErr("subscription QoS %d, retain handling %d", s.QoS, s.RetainHandling)
	}
	if s.SubscriptionID < 0 || s.SubscriptionID > maxSubID {
		return dst, encErr("subscription identifier %d", s.SubscriptionID)
	}
	dst = appendString(dst, s.Filter)
	dst = append(dst, s.QoS, boolFlag(s.NoLocal, flagNoLocal)|boolFlag(s.RetainAsPublished, flagRAP), s.RetainHandling)
	return appendUvarint(dst, uint64(s.SubscriptionID)), nil
}

func appendDelivery(dst []byte, d *DeliveryRecord) ([]byte, error) {
	if d.QoS > 2 {
		return dst, encErr("delivery QoS %d", d.QoS)
	}
	dst = appendUvarint(dst, d.Seq)
	dst = append(dst, d.QoS, boolFlag(d.Retain, flagRetain)|boolFlag(d.Sent, flagSent))
	dst = appendUvarint(dst, uint64(len(d.SubIDs)))
	for _, id := range d.SubIDs {
		if id < 0 || id > maxSubID {
			return dst, encErr("subscription identifier %d", id)
		}
		dst = appendUvarint(dst, uint64(id))
	}
	dst = appendUvarint(dst, uint64(d.PacketID))
	dst = append(dst, d.State)
	return appendMessageRecord(dst, &d.Message)
}

// AppendTo appends the frame.
func (m *SessionTransfer) AppendTo(dst []byte) ([]byte, error) {
	dst, start := beginFrame(dst, TypeSessionTransfer)
	dst = appendString(dst, m.ClientID)
	dst = appendUvarint(dst, m.Epoch)
	dst = appendUvarint(dst, uint64(m.Part))
	dst = append(dst, boolFlag(m.More, flagMore)|boolFlag(m.Session != nil, flagSession))
	var err error
	if m.Session != nil {
		if dst, err = appendSession(dst, m.Session); err != nil {
			return endFrame(dst, start, err)
		}
	}
	dst = appendUvarint(dst, uint64(len(m.Subscriptions)))
	for i := range m.Subscriptions {
		if dst, err = appendSubscription(dst, &m.Subscriptions[i]); err != nil {
			return endFrame(dst, start, err)
		}
	}
	dst = appendUvarint(dst, uint64(len(m.Deliveries)))
	for i := range m.Deliveries {
		if dst, err = appendDelivery(dst, &m.Deliveries[i]); err != nil {
			return endFrame(dst, start, err)
		}
	}
	dst = appendUvarint(dst, uint64(len(m.IncomingQoS2)))
	for _, id := range m.IncomingQoS2 {
		dst = appendUvarint(dst, uint64(id))
	}
	return endFrame(dst, start, nil)
}

// AppendTo appends the frame.
func (m *SessionTransferAck) AppendTo(dst []byte) ([]byte, error) {
	dst, start := beginFrame(dst, TypeSessionTransferAck)
	dst = appendString(dst, m.ClientID)
	dst = appendUvarint(dst, m.Epoch)
	dst = append(dst, byte(m.Code))
	return endFrame(dst, start, nil)
}

// AppendTo appends the frame.
func (m *SessionSeen) AppendTo(dst []byte) ([]byte, error) {
	dst, start := beginFrame(dst, TypeSessionSeen)
	dst = appendString(dst, m.ClientID)
	dst = appendUvarint(dst, m.Epoch)
	dst = appendUvarint(dst, uint64(len(m.IDs)))
	for _, id := range m.IDs {
		dst = appendUvarint(dst, id.Node)
		dst = appendUvarint(dst, id.Seq)
	}
	return endFrame(dst, start, nil)
}

// AppendTo appends the frame.
func (m *RelayBarrier) AppendTo(dst []byte) ([]byte, error) {
	dst, start := beginFrame(dst, TypeRelayBarrier)
	dst = appendString(dst, m.ClientID)
	dst = appendUvarint(dst, m.Epoch)
	dst = appendString(dst, m.Ghost)
	return endFrame(dst, start, nil)
}

// AppendTo appends the frame.
func (m *BarrierPassed) AppendTo(dst []byte) ([]byte, error) {
	dst, start := beginFrame(dst, TypeBarrierPassed)
	dst = appendString(dst, m.ClientID)
	dst = appendUvarint(dst, m.Epoch)
	dst = appendString(dst, m.Node)
	return endFrame(dst, start, nil)
}

// AppendTo appends the frame.
func (m *RelayEnd) AppendTo(dst []byte) ([]byte, error) {
	dst, start := beginFrame(dst, TypeRelayEnd)
	dst = appendString(dst, m.ClientID)
	dst = appendUvarint(dst, m.Epoch)
	return endFrame(dst, start, nil)
}

// AppendTo appends the frame; the Publish as in Forward.
func (m *Relay) AppendTo(dst []byte) ([]byte, error) {
	dst, start := beginFrame(dst, TypeRelay)
	if m.Publish == nil {
		return endFrame(dst, start, encErr("relay without a publish"))
	}
	dst = appendString(dst, m.ClientID)
	dst = appendString(dst, m.Group)
	dst = appendString(dst, m.Filter)
	dst = appendUvarint(dst, m.ID.Node)
	dst = appendUvarint(dst, m.ID.Seq)
	dst = appendString(dst, m.PublisherID)
	var err error
	dst, err = appendPublish(dst, m.Publish)
	return endFrame(dst, start, err)
}

// AppendTo appends the frame as it was received, so that a node can relay
// or record a message it does not understand. Type 0 and the known types
// cannot be sent as Unknown.
func (m *Unknown) AppendTo(dst []byte) ([]byte, error) {
	if m.MsgType == 0 || known(m.MsgType) {
		return dst, encErr("Unknown with type %s", m.MsgType)
	}
	dst, start := beginFrame(dst, m.MsgType)
	dst = append(dst, m.Body...)
	return endFrame(dst, start, nil)
}

func known(t Type) bool { return t > 0 && int(t) < len(typeNames) }
