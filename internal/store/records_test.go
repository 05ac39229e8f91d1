package store

import (
	"fmt"
	"strings"
	"time"

	"github.com/starlingmq/starling/internal/broker"
	"github.com/starlingmq/starling/internal/packet"
)

// fullProperties sets every field of packet.Properties.
func fullProperties() packet.Properties {
	return packet.Properties{
		PayloadFormat:        ptr[byte](1),
		MessageExpiry:        ptr[uint32](3600),
		ContentType:          "application/json",
		ResponseTopic:        "reply/to",
		CorrelationData:      []byte{0, 1, 2},
		SubscriptionIDs:      []int{1, 268435455},
		SessionExpiry:        ptr[uint32](0xFFFFFFFF),
		AssignedClientID:     "auto-1",
		ServerKeepAlive:      ptr[uint16](60),
		AuthMethod:           "SCRAM",
		AuthData:             []byte{},
		RequestProblemInfo:   ptr[byte](0),
		WillDelay:            ptr[uint32](30),
		RequestResponseInfo:  ptr[byte](1),
		ResponseInfo:         "info",
		ServerReference:      "other:1883",
		ReasonString:         "because",
		ReceiveMaximum:       ptr[uint16](65535),
		TopicAliasMaximum:    ptr[uint16](10),
		TopicAlias:           ptr[uint16](3),
		MaximumQoS:           ptr[byte](1),
		RetainAvailable:      ptr[byte](1),
		User:                 []packet.UserProperty{{Key: "k", Value: "v"}, {Key: "k", Value: ""}, {Key: "é", Value: "\x00"}},
		MaximumPacketSize:    ptr[uint32](1 << 20),
		WildcardSubAvailable: ptr[byte](0),
		SubIDAvailable:       ptr[byte](1),
		SharedSubAvailable:   ptr[byte](0),
	}
}

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)

func message(topic string, n int) broker.MessageRecord {
	return broker.MessageRecord{
		Topic:     topic,
		Payload:   []byte(fmt.Sprintf("payload %d", n)),
		QoS:       byte(n % 3),
		Retain:    n%2 == 0,
		ExpiresAt: t0.Add(time.Duration(n) * time.Second),
		Origin:    "node-a",
	}
}

func fullMessage(topic string) broker.MessageRecord {
	m := message(topic, 2)
	m.Properties = fullProperties()
	return m
}

func session(id string) *broker.SessionRecord {
	return &broker.SessionRecord{ClientID: id, Expiry: 300}
}

func fullSession(id string) *broker.SessionRecord {
	return &broker.SessionRecord{
		ClientID:       id,
		Expiry:         0xFFFFFFFF,
		DisconnectedAt: t0,
		Username:       "alice",
		HasUsername:    true,
		Will: &packet.Will{
			Topic:   "will/" + id,
			Payload: []byte("gone"),
			QoS:     2,
			Retain:  true,
			Properties: packet.Properties{
				WillDelay:     ptr[uint32](30),
				MessageExpiry: ptr[uint32](60),
				ContentType:   "text/plain",
				User:          []packet.UserProperty{{Key: "a", Value: "b"}},
			},
		},
		WillAt: t0.Add(30 * time.Second),
	}
}

func sub(filter string) *broker.SubscriptionRecord {
	return &broker.SubscriptionRecord{Filter: filter, QoS: 1, NoLocal: true, RetainAsPublished: true, RetainHandling: 2, SubscriptionID: 7}
}

func delivery(seq uint64) *broker.DeliveryRecord {
	return &broker.DeliveryRecord{
		Seq: seq, QoS: 2, Retain: true, SubIDs: []int{7, 9}, PacketID: uint16(seq), State: 2, Sent: true,
		Message: fullMessage(fmt.Sprintf("t/%d", seq)),
	}
}

// event is one Loader call.
type event struct {
	Kind     string // session, sub, delivery, incoming, retained
	ClientID string
	Rec      any
}

func (e event) String() string { return fmt.Sprintf("%s %q %+v", e.Kind, e.ClientID, e.Rec) }

// recorder is a Loader that records its calls; fail, if set, is returned
// by the call whose index is failAt.
type recorder struct {
	events []event
	failAt int
	fail   error
}

func (r *recorder) add(e event) error {
	r.events = append(r.events, e)
	if r.fail != nil && len(r.events)-1 == r.failAt {
		return r.fail
	}
	return nil
}

func (r *recorder) Session(s *broker.SessionRecord) error {
	return r.add(event{"session", s.ClientID, s})
}
func (r *recorder) Subscription(id string, s *broker.SubscriptionRecord) error {
	return r.add(event{"sub", id, s})
}
func (r *recorder) Delivery(id string, d *broker.DeliveryRecord) error {
	return r.add(event{"delivery", id, d})
}
func (r *recorder) IncomingQoS2(id string, pid uint16) error {
	return r.add(event{"incoming", id, pid})
}
func (r *recorder) Retained(m *broker.MessageRecord) error {
	return r.add(event{"retained", "", m})
}

func formatEvents(es []event) string {
	var b strings.Builder
	for _, e := range es {
		b.WriteString("  " + e.String() + "\n")
	}
	return b.String()
}
