package proto

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/starlingmq/starling/internal/packet"
)

// Decode decodes one whole frame, length prefix included, as ReadFrame
// returns it. Strings are copies; []byte fields (payloads, correlation
// data, Unknown.Body) alias frame, so a frame must not be reused while its
// message is in use.
//
// A frame shorter than its prefix announces is io.ErrUnexpectedEOF; any
// other problem, including bytes after the frame, wraps ErrMalformed.
// Decode never panics. A type this code does not know (a newer node's)
// decodes as *Unknown without error, so that old and new nodes can share a
// cluster during a rolling upgrade.
func Decode(frame []byte) (Message, error) {
	if len(frame) < HeaderLen {
		return nil, fmt.Errorf("proto: %d bytes of a length prefix: %w", len(frame), io.ErrUnexpectedEOF)
	}
	n := binary.BigEndian.Uint32(frame)
	if n == 0 {
		return nil, fmt.Errorf("proto: zero-length frame: %w", ErrMalformed)
	}
	if total := uint64(n) + HeaderLen; uint64(len(frame)) != total {
		if uint64(len(frame)) < total {
			return nil, fmt.Errorf("proto: frame of %d bytes, have %d: %w", total, len(frame), io.ErrUnexpectedEOF)
		}
		return nil, fmt.Errorf("proto: %d bytes after a frame of %d: %w", uint64(len(frame))-total, total, ErrMalformed)
	}
	t := Type(frame[HeaderLen])
	d := &decoder{b: frame[HeaderLen+1:]}
	var m Message
	switch t {
	case 0:
		return nil, fmt.Errorf("proto: message type 0: %w", ErrMalformed)
	case TypeHello:
		m = d.hello()
	case TypeHelloAck:
		m = d.helloAck()
	case TypePing:
		m = &Ping{SentUnixNano: d.varint()}
	case TypePong:
		m = &Pong{PingSentUnixNano: d.varint(), SentUnixNano: d.varint()}
	case TypeRouteSnapshot:
		m = d.routeSnapshot()
	case TypeRouteDelta:
		m = d.routeDelta()
	case TypeRouteSnapshotRequest:
		m = &RouteSnapshotRequest{Incarnation: d.uvarint(), Seq: d.uvarint()}
	case TypeForward:
		m = d.forward(false)
	case TypeForwardV2:
		m = d.forward(true)
	case TypeSessionSeen:
		m = d.sessionSeen()
	case TypeRelayBarrier:
		m = &RelayBarrier{ClientID: d.str(), Epoch: d.uvarint(), Ghost: d.str()}
	case TypeBarrierPassed:
		m = &BarrierPassed{ClientID: d.str(), Epoch: d.uvarint(), Node: d.str()}
	case TypeRelayEnd:
		m = &RelayEnd{ClientID: d.str(), Epoch: d.uvarint()}
	case TypeRelay:
		m = &Relay{ClientID: d.str(), Group: d.str(), Filter: d.str(), ID: MsgID{Node: d.uvarint(), Seq: d.uvarint()},
			PublisherID: d.str(), Publish: d.publish()}
	case TypeForwardAck:
		m = d.forwardAck()
	case TypeRetained:
		r := &Retained{}
		d.retained(r)
		m = r
	case TypeRetainedSnapshot:
		m = d.retainedSnapshot()
	case TypeSessionClaim:
		m = &SessionClaim{ClientID: d.str(), Node: d.str(), Epoch: d.uvarint()}
	case TypeSessionTransfer:
		m = d.sessionTransfer()
	case TypeSessionTransferAck:
		m = &SessionTransferAck{ClientID: d.str(), Epoch: d.uvarint(), Code: packet.ReasonCode(d.u8())}
	case TypeSessionKick:
		m = &SessionKick{ClientID: d.str(), Node: d.str(), AtUnixNano: d.varint()}
	default:
		return &Unknown{MsgType: t, Body: nilIfEmpty(d.b[:len(d.b):len(d.b)])}, nil
	}
	d.end()
	if d.err != nil {
		return nil, fmt.Errorf("proto: %s: %w", t, d.err)
	}
	return m, nil
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func (d *decoder) hello() *Hello {
	return &Hello{
		ProtocolVersion:    d.u32(),
		MinProtocolVersion: d.u32(),
		NodeName:           d.str(),
		ClusterName:        d.str(),
		Incarnation:        d.uvarint(),
		Capabilities:       Capabilities(d.uvarint()),
	}
}

func (d *decoder) helloAck() *HelloAck {
	return &HelloAck{
		ProtocolVersion: d.u32(),
		NodeName:        d.str(),
		Incarnation:     d.uvarint(),
		Capabilities:    Capabilities(d.uvarint()),
		Code:            packet.ReasonCode(d.u8()),
		Reason:          d.str(),
	}
}

// Smallest encodings of list items, for decoder.count.
const (
	minRouteEntry  = 3  // filter length, count, shared count
	minGroupCount  = 2  // group length, members
	minRouteChange = 3  // filter length, group length, count
	minForwardMsg  = 10 // seq, flags, origin, publisher, shared count, PUBLISH of at least 5 bytes
	minShared      = 3
	minStatus      = 2
	minRetained    = 4 // wall, logical, node, flags (+ topic or message)
	minSub         = 5
	minDelivery    = 12 // seq, qos, flags, subids, packet id, state, expires, origin, PUBLISH
)

func (d *decoder) routeSnapshot() *RouteSnapshot {
	s := &RouteSnapshot{Origin: d.str(), Incarnation: d.uvarint(), Seq: d.uvarint(), Part: d.u32()}
	s.More = d.flags(flagMore) != 0
	if n := d.count(minRouteEntry); n > 0 {
		s.Entries = make([]RouteEntry, n)
		for i := range s.Entries {
			e := &s.Entries[i]
			e.Filter = d.str()
			e.Count = d.u32()
			if k := d.count(minGroupCount); k > 0 {
				e.Shared = make([]GroupCount, k)
				for j := range e.Shared {
					e.Shared[j] = GroupCount{Group: d.str(), Members: d.u32()}
				}
			}
			if d.err != nil {
				return nil
			}
		}
	}
	return s
}

func (d *decoder) routeDelta() *RouteDelta {
	m := &RouteDelta{Origin: d.str(), Incarnation: d.uvarint(), Seq: d.uvarint()}
	if n := d.count(minRouteChange); n > 0 {
		m.Changes = make([]RouteChange, n)
		for i := range m.Changes {
			m.Changes[i] = RouteChange{Filter: d.str(), Group: d.str(), Count: d.u32()}
		}
	}
	return m
}

func (d *decoder) sessionSeen() *SessionSeen {
	m := &SessionSeen{ClientID: d.str(), Epoch: d.uvarint()}
	if n := d.count(2); n > 0 {
		m.IDs = make([]MsgID, n)
		for i := range m.IDs {
			m.IDs[i] = MsgID{Node: d.uvarint(), Seq: d.uvarint()}
		}
	}
	return m
}

func (d *decoder) forward(v2 bool) *Forward {
	n := d.count(minForwardMsg)
	m := &Forward{V2: v2}
	if n == 0 {
		return m
	}
	m.Messages = make([]ForwardMessage, n)
	var lastOrigin, lastPublisher string
	for i := range m.Messages {
		f := &m.Messages[i]
		f.Seq = d.uvarint()
		if v2 {
			f.ID = MsgID{Node: d.uvarint(), Seq: d.uvarint()}
		}
		f.NeedsAck = d.flags(flagNeedsAck) != 0
		f.Origin = d.strLike(&lastOrigin)
		f.PublisherID = d.strLike(&lastPublisher)
		if k := d.count(minShared); k > 0 {
			f.Shared = make([]SharedTarget, k)
			for j := range f.Shared {
				f.Shared[j] = SharedTarget{Group: d.str(), Filter: d.str(), Node: d.strLike(&lastOrigin)}
			}
		}
		f.Publish = d.publish()
		if d.err != nil {
			return nil
		}
	}
	return m
}

func (d *decoder) forwardAck() *ForwardAck {
	m := &ForwardAck{UpTo: d.uvarint()}
	if n := d.count(minStatus); n > 0 {
		m.Statuses = make([]ForwardStatus, n)
		for i := range m.Statuses {
			m.Statuses[i] = ForwardStatus{Seq: d.uvarint(), Code: packet.ReasonCode(d.u8())}
		}
	}
	return m
}

func (d *decoder) timestamp() Timestamp {
	return Timestamp{WallMilli: d.varint(), Logical: d.u32(), Node: d.str()}
}

func (d *decoder) messageRecord(r *MessageRecord) {
	r.ExpiresUnixMilli = d.varint()
	r.Origin = d.str()
	p := d.publish()
	if p == nil {
		return
	}
	if p.Dup {
		d.fail("stored message with DUP")
		return
	}
	*r = MessageRecord{Topic: p.Topic, Payload: p.Payload, QoS: p.QoS, Retain: p.Retain,
		Properties: p.Properties, ExpiresUnixMilli: r.ExpiresUnixMilli, Origin: r.Origin}
}

func (d *decoder) retained(r *Retained) {
	r.Time = d.timestamp()
	if d.flags(flagMessage) == 0 {
		r.Topic = d.str()
		return
	}
	r.Message = &MessageRecord{}
	d.messageRecord(r.Message)
	r.Topic = r.Message.Topic
}

func (d *decoder) retainedSnapshot() *RetainedSnapshot {
	s := &RetainedSnapshot{Origin: d.str(), Part: d.u32()}
	s.More = d.flags(flagMore) != 0
	if n := d.count(minRetained); n > 0 {
		s.Messages = make([]Retained, n)
		for i := range s.Messages {
			d.retained(&s.Messages[i])
			if d.err != nil {
				return nil
			}
		}
	}
	return s
}

func (d *decoder) session() *SessionRecord {
	s := &SessionRecord{Expiry: d.u32(), DisconnectedAtUnixMilli: d.varint()}
	f := d.flags(flagHasUsername | flagWill | flagWillDelay)
	s.HasUsername = f&flagHasUsername != 0
	s.Username = d.str()
	s.WillAtUnixMilli = d.varint()
	if f&flagWill == 0 {
		if f&flagWillDelay != 0 {
			d.fail("will delay without a will")
		}
		return s
	}
	p := d.publish()
	if p == nil {
		return s
	}
	if p.Dup || len(p.Properties.SubscriptionIDs) > 0 {
		d.fail("will with DUP or subscription identifiers")
		return s
	}
	w := &packet.Will{Topic: p.Topic, Payload: p.Payload, QoS: p.QoS, Retain: p.Retain, Properties: p.Properties}
	if f&flagWillDelay != 0 {
		delay := d.u32()
		w.Properties.WillDelay = &delay
	}
	s.Will = w
	return s
}

func (d *decoder) subID() int {
	v := d.uvarint()
	if v > maxSubID {
		d.fail("subscription identifier %d", v)
		return 0
	}
	return int(v)
}

func (d *decoder) sessionTransfer() *SessionTransfer {
	m := &SessionTransfer{ClientID: d.str(), Epoch: d.uvarint(), Part: d.u32()}
	f := d.flags(flagMore | flagSession)
	m.More = f&flagMore != 0
	if f&flagSession != 0 {
		m.Session = d.session()
	}
	if n := d.count(minSub); n > 0 {
		m.Subscriptions = make([]SubscriptionRecord, n)
		for i := range m.Subscriptions {
			s := &m.Subscriptions[i]
			s.Filter = d.str()
			s.QoS = d.qos("subscription")
			sf := d.flags(flagNoLocal | flagRAP)
			s.NoLocal, s.RetainAsPublished = sf&flagNoLocal != 0, sf&flagRAP != 0
			if s.RetainHandling = d.u8(); s.RetainHandling > 2 {
				d.fail("retain handling %d", s.RetainHandling)
			}
			s.SubscriptionID = d.subID()
		}
	}
	if n := d.count(minDelivery); n > 0 {
		m.Deliveries = make([]DeliveryRecord, n)
		for i := range m.Deliveries {
			r := &m.Deliveries[i]
			r.Seq = d.uvarint()
			r.QoS = d.qos("delivery")
			df := d.flags(flagRetain | flagSent)
			r.Retain, r.Sent = df&flagRetain != 0, df&flagSent != 0
			if k := d.count(1); k > 0 {
				r.SubIDs = make([]int, k)
				for j := range r.SubIDs {
					r.SubIDs[j] = d.subID()
				}
			}
			r.PacketID = d.u16()
			r.State = d.u8()
			d.messageRecord(&r.Message)
			if d.err != nil {
				return nil
			}
		}
	}
	if n := d.count(1); n > 0 {
		m.IncomingQoS2 = make([]uint16, n)
		for i := range m.IncomingQoS2 {
			m.IncomingQoS2[i] = d.u16()
		}
	}
	return m
}

// ForwardDecoder decodes Forward frames reusing its memory: the message
// slice, each message's PUBLISH, and the strings (origin, publisher,
// topic) when they repeat. It is the hot path of a node receiving
// forwarded messages. The zero value is ready; not safe for concurrent
// use.
type ForwardDecoder struct {
	f                 Forward
	pubs              []*packet.Publish
	origin, publisher string
	topic             string
}

// Decode decodes a whole Forward frame as Decode does. The result, and
// everything in it, is valid until the next call; payloads alias frame.
func (fd *ForwardDecoder) Decode(frame []byte) (*Forward, error) {
	if len(frame) < HeaderLen+1 || (Type(frame[HeaderLen]) != TypeForward && Type(frame[HeaderLen]) != TypeForwardV2) {
		return nil, fmt.Errorf("proto: not a Forward frame: %w", ErrMalformed)
	}
	v2 := Type(frame[HeaderLen]) == TypeForwardV2
	n := binary.BigEndian.Uint32(frame)
	if total := uint64(n) + HeaderLen; uint64(len(frame)) != total {
		if uint64(len(frame)) < total {
			return nil, fmt.Errorf("proto: frame of %d bytes, have %d: %w", total, len(frame), io.ErrUnexpectedEOF)
		}
		return nil, fmt.Errorf("proto: %d bytes after a frame of %d: %w", uint64(len(frame))-total, total, ErrMalformed)
	}
	d := &decoder{b: frame[HeaderLen+1:]}
	count := d.count(minForwardMsg)
	f := &fd.f
	clear(f.Messages)
	f.Messages = f.Messages[:0]
	f.V2 = v2
	for i := range count {
		if i == len(fd.pubs) {
			fd.pubs = append(fd.pubs, new(packet.Publish))
		}
		f.Messages = append(f.Messages, ForwardMessage{})
		m := &f.Messages[i]
		m.Seq = d.uvarint()
		if v2 {
			m.ID = MsgID{Node: d.uvarint(), Seq: d.uvarint()}
		}
		m.NeedsAck = d.flags(flagNeedsAck) != 0
		m.Origin = d.strLike(&fd.origin)
		m.PublisherID = d.strLike(&fd.publisher)
		if k := d.count(minShared); k > 0 {
			m.Shared = make([]SharedTarget, k)
			for j := range m.Shared {
				m.Shared[j] = SharedTarget{Group: d.str(), Filter: d.str(), Node: d.strLike(&fd.origin)}
			}
		}
		if d.err != nil {
			break
		}
		p := fd.pubs[i]
		used, err := packet.DecodePublishInto(d.b, packet.V5, p, &fd.topic)
		if err != nil {
			d.fail("publish: %v", err)
			break
		}
		if p.Properties.TopicAlias != nil {
			d.fail("publish with a topic alias")
			break
		}
		d.b = d.b[used:]
		m.Publish = p
	}
	d.end()
	if d.err != nil {
		return nil, fmt.Errorf("proto: %s: %w", f.Type(), d.err)
	}
	return f, nil
}
