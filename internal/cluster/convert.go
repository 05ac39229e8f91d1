package cluster

import (
	"sync"
	"time"

	"github.com/starlingmq/starling/internal/broker"
	"github.com/starlingmq/starling/internal/cluster/proto"
	"github.com/starlingmq/starling/internal/packet"
	"github.com/starlingmq/starling/internal/session"
)

// Conversions between the broker's records and the protocol's.

func unixMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromUnixMilli(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

func toProtoMessage(m *broker.MessageRecord) proto.MessageRecord {
	return proto.MessageRecord{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain,
		Properties: m.Properties, ExpiresUnixMilli: unixMilli(m.ExpiresAt), Origin: m.Origin}
}

func fromProtoMessage(m *proto.MessageRecord) broker.MessageRecord {
	return broker.MessageRecord{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain,
		Properties: m.Properties, ExpiresAt: fromUnixMilli(m.ExpiresUnixMilli), Origin: m.Origin}
}

// maxTransferPart bounds the deliveries' bytes in one SessionTransfer part.
const maxTransferPart = 4 << 20

// transferParts splits a session into SessionTransfer parts; st nil sends
// one part saying there is no session.
func transferParts(clientID string, epoch uint64, st *broker.SessionState) []*proto.SessionTransfer {
	first := &proto.SessionTransfer{ClientID: clientID, Epoch: epoch}
	parts := []*proto.SessionTransfer{first}
	if st == nil {
		return parts
	}
	s := &st.Session
	first.Session = &proto.SessionRecord{Expiry: s.Expiry, DisconnectedAtUnixMilli: unixMilli(s.DisconnectedAt),
		Username: s.Username, HasUsername: s.HasUsername, Will: s.Will, WillAtUnixMilli: unixMilli(s.WillAt)}
	for _, sub := range st.Subscriptions {
		first.Subscriptions = append(first.Subscriptions, proto.SubscriptionRecord{Filter: sub.Filter, QoS: sub.QoS,
			NoLocal: sub.NoLocal, RetainAsPublished: sub.RetainAsPublished, RetainHandling: sub.RetainHandling,
			SubscriptionID: sub.SubscriptionID})
	}
	first.IncomingQoS2 = st.IncomingQoS2
	cur, size := first, 0
	for i := range st.Deliveries {
		d := &st.Deliveries[i]
		n := len(d.Message.Topic) + len(d.Message.Payload) + 64
		if size > 0 && size+n > maxTransferPart {
			cur.More = true
			cur = &proto.SessionTransfer{ClientID: clientID, Epoch: epoch, Part: uint32(len(parts))}
			parts = append(parts, cur)
			size = 0
		}
		cur.Deliveries = append(cur.Deliveries, proto.DeliveryRecord{Seq: d.Seq, QoS: d.QoS, Retain: d.Retain,
			SubIDs: d.SubIDs, PacketID: d.PacketID, State: d.State, Sent: d.Sent, Message: toProtoMessage(&d.Message)})
		size += n
	}
	return parts
}

// sessionFromParts assembles what transferParts split; nil when the sender
// held no session.
func sessionFromParts(clientID string, parts []*proto.SessionTransfer) *broker.SessionState {
	if len(parts) == 0 || parts[0].Session == nil {
		return nil
	}
	p := parts[0].Session
	st := &broker.SessionState{Session: broker.SessionRecord{ClientID: clientID, Expiry: p.Expiry,
		DisconnectedAt: fromUnixMilli(p.DisconnectedAtUnixMilli), Username: p.Username, HasUsername: p.HasUsername,
		Will: p.Will, WillAt: fromUnixMilli(p.WillAtUnixMilli)}}
	if st.Session.DisconnectedAt.IsZero() {
		st.Session.DisconnectedAt = time.Now()
	}
	for _, part := range parts {
		for _, s := range part.Subscriptions {
			st.Subscriptions = append(st.Subscriptions, broker.SubscriptionRecord{Filter: s.Filter, QoS: s.QoS,
				NoLocal: s.NoLocal, RetainAsPublished: s.RetainAsPublished, RetainHandling: s.RetainHandling,
				SubscriptionID: s.SubscriptionID})
		}
		for i := range part.Deliveries {
			d := &part.Deliveries[i]
			st.Deliveries = append(st.Deliveries, broker.DeliveryRecord{Seq: d.Seq, QoS: d.QoS, Retain: d.Retain,
				SubIDs: d.SubIDs, PacketID: d.PacketID, State: d.State, Sent: d.Sent, Message: fromProtoMessage(&d.Message)})
		}
		st.IncomingQoS2 = append(st.IncomingQoS2, part.IncomingQoS2...)
	}
	return st
}

// publishOf sets p to the MQTT 5 PUBLISH that carries msg to another
// node, with the expiry it has left (rem holds it).
func publishOf(p *packet.Publish, rem *uint32, msg *session.Message, now time.Time) {
	*p = packet.Publish{Topic: msg.Topic, Payload: msg.Payload, QoS: msg.QoS, Retain: msg.Retain,
		Properties: msg.Properties}
	if r, ok := msg.RemainingExpiry(now); ok {
		*rem = r
		p.Properties.MessageExpiry = rem
	}
}

// fwdScratch is the memory of one Forward call, pooled: the PUBLISH is
// encoded into each link's buffer before Forward returns.
type fwdScratch struct {
	p       packet.Publish
	rem     uint32
	targets []fwdTarget
}

var fwdPool = sync.Pool{New: func() any { return new(fwdScratch) }}
