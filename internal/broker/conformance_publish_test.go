package broker

// Conformance tests for PUBLISH, its acknowledgement flows, retained
// messages, topic names and message ordering. Statement numbers are those
// of MQTT 3.1.1 unless a test says "5.0".

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/starlingmq/starling/internal/packet"
)

// [MQTT-3.3.1-3] The DUP flag in the outgoing PUBLISH packet is set
// independently to the incoming PUBLISH packet, its value MUST be determined
// solely by whether the outgoing PUBLISH packet is a retransmission.
// [MQTT-3.3.1-2] The DUP flag MUST be set to 0 for all QoS 0 messages.
// [MQTT-4.3.1-1], [MQTT-4.3.2-1], [MQTT-4.3.3-1]: a first send has DUP 0.
func TestMQTT_3_3_1_3_DupNotPropagated(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		t.Run(v.String(), func(t *testing.T) {
			topic := "dup/" + v.String()
			sub := connected(t, addr, v, "sub"+topic)
			sub.subscribe(1, packet.Subscription{Filter: topic, QoS: 2})
			pub := connected(t, addr, v, "pub"+topic)
			for q := byte(0); q <= 2; q++ {
				p := &packet.Publish{Topic: topic, QoS: q, Dup: q > 0, Payload: []byte{q}}
				if q > 0 {
					p.PacketID = uint16(10 + q)
				}
				publishQoS(t, pub, p)
				m := sub.recvPublish()
				if m.Dup || m.QoS != q {
					t.Fatalf("QoS %d first delivery: DUP %v QoS %d", q, m.Dup, m.QoS)
				}
				ackPublish(t, sub, m)
			}
		})
	}
}

// [MQTT-3.3.1-4] A PUBLISH Packet MUST NOT have both QoS bits set to 1. If a
// Server receives one it MUST close the Network Connection (5.0: Malformed
// Packet, DISCONNECT 0x81 [MQTT-4.13.1-1]).
func TestMQTT_3_3_1_4_QoS3ClosesWithMalformed(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	c := connected(t, addr, packet.V5, "qos3")
	c.sendRaw([]byte{0x36, 0x06, 0x00, 0x01, 'a', 0x00, 0x01, 0x00})
	expectViolation(c, packet.MalformedPacket)
}

// [MQTT-3.3.1-5] If the RETAIN flag is 1 the Server MUST store the
// Application Message and its QoS. [MQTT-3.3.1-6] When a new subscription
// is established, the last retained message, if any, on each matching topic
// name MUST be sent to the subscriber.
func TestMQTT_3_3_1_5_RetainedLatestPerTopicWithItsQoS(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	pub := connected(t, addr, packet.V311, "pub")
	publishQoS(t, pub, &packet.Publish{Topic: "rl/a", Retain: true, QoS: 2, PacketID: 1, Payload: []byte("a-old")})
	publishQoS(t, pub, &packet.Publish{Topic: "rl/a", Retain: true, QoS: 1, PacketID: 2, Payload: []byte("a-new")})
	publishQoS(t, pub, &packet.Publish{Topic: "rl/b", Retain: true, QoS: 2, PacketID: 3, Payload: []byte("b")})
	publishQoS(t, pub, &packet.Publish{Topic: "rl/c/d", Retain: true, QoS: 0, Payload: []byte("c")})
	for subQoS := byte(0); subQoS <= 2; subQoS++ {
		t.Run(fmt.Sprintf("sub qos %d", subQoS), func(t *testing.T) {
			sub := connected(t, addr, packet.V311, fmt.Sprintf("sub%d", subQoS))
			sub.subscribe(1, packet.Subscription{Filter: "rl/+", QoS: subQoS})
			got := receiveAll(t, sub, 2)
			want := map[string]struct {
				payload string
				qos     byte
			}{"rl/a": {"a-new", min(1, subQoS)}, "rl/b": {"b", min(2, subQoS)}}
			for _, m := range got {
				w, ok := want[m.Topic]
				if !ok || string(m.Payload) != w.payload || m.QoS != w.qos || !m.Retain {
					t.Fatalf("got %s %q QoS %d retain %v; want %+v", m.Topic, m.Payload, m.QoS, m.Retain, w)
				}
				delete(want, m.Topic)
			}
		})
	}
}

// [MQTT-3.3.1-7] If the Server receives a QoS 0 message with the RETAIN flag
// set to 1 it MUST discard any message previously retained for that topic.
func TestMQTT_3_3_1_7_QoS0RetainedReplacesPrevious(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	pub := connected(t, addr, packet.V311, "pub")
	publishQoS(t, pub, &packet.Publish{Topic: "r0", Retain: true, QoS: 1, PacketID: 1, Payload: []byte("old")})
	publishQoS(t, pub, &packet.Publish{Topic: "r0", Retain: true, QoS: 0, Payload: []byte("new")})
	sub := connected(t, addr, packet.V311, "sub")
	sub.subscribe(1, packet.Subscription{Filter: "r0", QoS: 1})
	p, err := sub.tryRecv(300 * time.Millisecond)
	if err != nil {
		return // the QoS 0 message may be discarded too
	}
	if m, ok := p.(*packet.Publish); !ok || string(m.Payload) != "new" {
		t.Fatalf("got %+v, want the QoS 0 retained message or nothing", p)
	}
	sub.expectNothing(150 * time.Millisecond)
}

// [MQTT-3.3.1-12] If the RETAIN flag is 0, in a PUBLISH Packet sent by a
// Client to a Server, the Server MUST NOT store the message and MUST NOT
// remove or replace any existing retained message (5.0 [MQTT-3.3.1-8]).
func TestMQTT_3_3_1_12_NonRetainedLeavesRetainedAlone(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		t.Run(v.String(), func(t *testing.T) {
			topic := "keep/" + v.String()
			pub := connected(t, addr, v, "pub"+topic)
			publishQoS(t, pub, &packet.Publish{Topic: topic, Retain: true, QoS: 1, PacketID: 1, Payload: []byte("keep")})
			publishQoS(t, pub, &packet.Publish{Topic: topic, QoS: 1, PacketID: 2, Payload: []byte("live")})
			publishQoS(t, pub, &packet.Publish{Topic: topic, QoS: 0})                                  // empty, not retained: no delete
			publishQoS(t, pub, &packet.Publish{Topic: topic + "/other", QoS: 0, Payload: []byte("x")}) // never stored
			sub := connected(t, addr, v, "sub"+topic)
			sub.subscribe(1, packet.Subscription{Filter: topic + "/#"})
			if m := sub.recvPublish(); string(m.Payload) != "keep" || !m.Retain || m.Topic != topic {
				t.Fatalf("got %+v", m)
			}
			sub.expectNothing(200 * time.Millisecond)
		})
	}
}

// [MQTT-3.3.1-10] A PUBLISH with RETAIN 1 and a zero-byte payload is
// processed as normal and sent to current subscribers, and any existing
// retained message with the same topic name MUST be removed; [MQTT-3.3.1-11]
// it MUST NOT be stored (5.0 [MQTT-3.3.1-6], [MQTT-3.3.1-7]). Checked in 5.0
// with QoS 1 and 2 too.
func TestMQTT_3_3_1_11_EmptyRetainedDeletes(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	for q := byte(0); q <= 2; q++ {
		t.Run(fmt.Sprintf("qos %d", q), func(t *testing.T) {
			topic := fmt.Sprintf("del/%d", q)
			pub := connected(t, addr, packet.V5, "pub"+topic)
			live := connected(t, addr, packet.V5, "live"+topic)
			publishQoS(t, pub, &packet.Publish{Topic: topic, Retain: true, QoS: 1, PacketID: 1, Payload: []byte("x")})
			live.subscribe(1, packet.Subscription{Filter: topic, QoS: 2})
			ackPublish(t, live, live.recvPublish()) // the retained one
			publishQoS(t, pub, &packet.Publish{Topic: topic, Retain: true, QoS: q, PacketID: 2})
			if m := live.recvPublish(); len(m.Payload) != 0 {
				t.Fatalf("got %+v, want the empty message", m)
			} else {
				ackPublish(t, live, m)
			}
			late := connected(t, addr, packet.V5, "late"+topic)
			late.subscribe(1, packet.Subscription{Filter: topic})
			late.expectNothing(200 * time.Millisecond)
		})
	}
}

// [MQTT-3.3.2-2] The Topic Name in the PUBLISH Packet MUST NOT contain
// wildcard characters. [MQTT-4.7.3-1] Topic names are at least one
// character long; [MQTT-4.7.3-2] they MUST NOT include U+0000;
// [MQTT-3.3.2-1] the Topic Name is a UTF-8 string. A PUBLISH breaking them
// closes the connection (5.0: DISCONNECT 0x90, 0x81 or 0x82).
func TestMQTT_3_3_2_2_InvalidTopicNamesClose(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	cases := []struct {
		name  string
		topic string
		codes []packet.ReasonCode
	}{
		{"plus", "a/+", []packet.ReasonCode{packet.TopicNameInvalid}},
		{"plus alone", "+", []packet.ReasonCode{packet.TopicNameInvalid}},
		{"hash", "a/#", []packet.ReasonCode{packet.TopicNameInvalid}},
		{"hash mid", "a/#/b", []packet.ReasonCode{packet.TopicNameInvalid}},
		{"plus inside level", "a/b+c", []packet.ReasonCode{packet.TopicNameInvalid}},
		{"empty", "", []packet.ReasonCode{packet.ProtocolError, packet.TopicNameInvalid}},
		{"U+0000", "a\x00b", []packet.ReasonCode{packet.MalformedPacket, packet.TopicNameInvalid}},
		{"ill-formed UTF-8", "a\xffb", []packet.ReasonCode{packet.MalformedPacket}},
		{"surrogate", "a\xed\xbf\xbfb", []packet.ReasonCode{packet.MalformedPacket}},
	}
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		for _, tc := range cases {
			for _, q := range []byte{0, 1} {
				t.Run(fmt.Sprintf("%v/%s/qos%d", v, tc.name, q), func(t *testing.T) {
					sub := connected(t, addr, v, "sub-"+t.Name())
					sub.subscribe(1, packet.Subscription{Filter: "#"})
					c := connected(t, addr, v, "bad-"+t.Name())
					c.send(&packet.Publish{Topic: tc.topic, QoS: q, PacketID: 1, Payload: []byte("x")})
					expectViolation(c, tc.codes...)
					sub.expectNothing(100 * time.Millisecond)
				})
			}
		}
	}
}

// Topic matching, 4.7: [MQTT-4.7.1-2] '#' matches the parent level and any
// number of child levels; [MQTT-4.7.1-3] '+' matches exactly one level;
// [MQTT-4.7.2-1] filters starting with a wildcard do not match names
// starting with '$'; [MQTT-4.7.3-4] no normalization (case, Unicode forms);
// [MQTT-1.5.3-3] U+FEFF is not skipped or stripped; [MQTT-3.3.2-3] the
// topic sent to the subscriber is the published name.
func TestMQTT_4_7_1_TopicFilterMatching(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	cases := []struct {
		filter, topic string
		match         bool
	}{
		{"sport/tennis/player1/#", "sport/tennis/player1", true},
		{"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
		{"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
		{"sport/tennis/player1/#", "sport/tennis/player2", false},
		{"sport/#", "sport", true},
		{"#", "a/b/c", true},
		{"#", "/", true},
		{"sport/tennis/+", "sport/tennis/player1", true},
		{"sport/tennis/+", "sport/tennis/player1/ranking", false},
		{"sport/+", "sport", false},
		{"sport/+", "sport/", true},
		{"+/+", "/finance", true},
		{"/+", "/finance", true},
		{"+", "/finance", false},
		{"+", "finance", true},
		{"+/tennis/#", "sport/tennis/player1", true},
		{"+/+/+", "a/b", false},
		{"ACCOUNTS", "Accounts", false},
		{"Accounts payable", "Accounts payable", true},
		{"a/+/b", "a//b", true},
		{"a//b", "a/b", false},
		{"a/b/", "a/b", false},
		{"a/b", "a/b/", false},
		{"#", "$foo/bar", false},
		{"+/bar", "$foo/bar", false},
		{"+", "$foo", false},
		{"$foo/+", "$foo/bar", true},
		{"$foo/#", "$foo/bar", true},
		{"\uFEFFa", "\uFEFFa", true},
		{"a", "\uFEFFa", false},
		{"\uFEFFa", "a", false},
		{"caf\u00e9", "cafe\u0301", false},
		{"cafe\u0301", "cafe\u0301", true},
	}
	pub := connected(t, addr, packet.V311, "match-pub")
	for i, tc := range cases {
		t.Run(fmt.Sprintf("%q~%q", tc.filter, tc.topic), func(t *testing.T) {
			sub := connected(t, addr, packet.V311, fmt.Sprintf("match-%d", i))
			marker := fmt.Sprintf("$marker/%d", i)
			sa := sub.subscribe(1, packet.Subscription{Filter: tc.filter}, packet.Subscription{Filter: marker})
			if sa.ReasonCodes[0] != packet.GrantedQoS0 || sa.ReasonCodes[1] != packet.GrantedQoS0 {
				t.Fatalf("suback %v", sa.ReasonCodes)
			}
			pub.send(&packet.Publish{Topic: tc.topic, Payload: []byte("m")})
			pub.send(&packet.Publish{Topic: marker})
			m := sub.recvPublish()
			if tc.match {
				if m.Topic != tc.topic {
					t.Fatalf("want %q delivered as is, got %q", tc.topic, m.Topic)
				}
				m = sub.recvPublish()
			}
			if m.Topic != marker {
				t.Fatalf("want only the marker %q next, got %q", marker, m.Topic)
			}
		})
	}
}

// [MQTT-3.3.4-1] The receiver of a PUBLISH Packet MUST respond according to
// the QoS: none for 0, PUBACK for 1, PUBREC for 2; [MQTT-2.3.1-6] with the
// same Packet Identifier.
func TestMQTT_3_3_4_1_ResponseMatchesQoS(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	for _, v := range allVersions {
		t.Run(v.String(), func(t *testing.T) {
			c := connected(t, addr, v, "resp"+v.String())
			c.send(&packet.Publish{Topic: "resp", Payload: []byte("0")})
			c.expectNothing(150 * time.Millisecond)
			for _, id := range []uint16{1, 0x7FFF, 0xFFFF} {
				c.send(&packet.Publish{Topic: "resp", QoS: 1, PacketID: id})
				if a := recvAs[*packet.Puback](t, c); a.PacketID != id {
					t.Fatalf("PUBACK %d for %d", a.PacketID, id)
				}
				c.send(&packet.Publish{Topic: "resp", QoS: 2, PacketID: id})
				if r := recvAs[*packet.Pubrec](t, c); r.PacketID != id {
					t.Fatalf("PUBREC %d for %d", r.PacketID, id)
				}
				c.send(&packet.Pubrel{PacketID: id})
				if r := recvAs[*packet.Pubcomp](t, c); r.PacketID != id {
					t.Fatalf("PUBCOMP %d for %d", r.PacketID, id)
				}
			}
		})
	}
}

// [MQTT-4.5.0-1] When a Server takes ownership of an incoming Application
// Message it MUST add it to the Session state of those clients that have
// matching Subscriptions, whatever their protocol version.
func TestMQTT_4_5_0_1_EveryMatchingSessionGetsTheMessage(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	var subs []*rawClient
	for i, v := range []packet.Version{packet.V31, packet.V311, packet.V5, packet.V31, packet.V311, packet.V5} {
		c := connected(t, addr, v, fmt.Sprintf("fan%d", i))
		c.subscribe(1, packet.Subscription{Filter: []string{"fan/#", "fan/+", "fan/x"}[i%3], QoS: 1})
		subs = append(subs, c)
	}
	offline, _ := dialSession(t, addr, packet.V311, "fan-offline", false, 0)
	offline.subscribe(1, packet.Subscription{Filter: "fan/x", QoS: 1})
	disconnect(offline)
	pub := connected(t, addr, packet.V5, "fan-pub")
	if rc := publishQoS(t, pub, &packet.Publish{Topic: "fan/x", QoS: 1, PacketID: 1, Payload: []byte("all")}); rc != packet.Success {
		t.Fatalf("PUBACK %v", rc)
	}
	for i, c := range subs {
		if m := c.recvPublish(); string(m.Payload) != "all" || m.QoS != 1 {
			t.Fatalf("subscriber %d: %+v", i, m)
		}
	}
	offline, _ = dialSession(t, addr, packet.V311, "fan-offline", false, 0)
	if m := offline.recvPublish(); string(m.Payload) != "all" {
		t.Fatalf("offline session: %+v", m)
	}
}

// [MQTT-3.8.4-6] The QoS of Payload Messages sent in response to a
// Subscription MUST be the minimum of the QoS of the originally published
// message and the maximum QoS granted by the Server (5.0 [MQTT-3.8.4-8]).
func TestMQTT_3_8_4_6_DeliveredQoSIsMinimum(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	for _, v := range allVersions {
		t.Run(v.String(), func(t *testing.T) {
			sub := connected(t, addr, v, "min-sub"+v.String())
			sa := sub.subscribe(1,
				packet.Subscription{Filter: "min/" + v.String() + "/0", QoS: 0},
				packet.Subscription{Filter: "min/" + v.String() + "/1", QoS: 1},
				packet.Subscription{Filter: "min/" + v.String() + "/2", QoS: 2})
			if fmt.Sprint(sa.ReasonCodes) != fmt.Sprint([]packet.ReasonCode{0, 1, 2}) {
				t.Fatalf("suback %v", sa.ReasonCodes)
			}
			pub := connected(t, addr, v, "min-pub"+v.String())
			id := uint16(0)
			for sq := byte(0); sq <= 2; sq++ {
				for pq := byte(0); pq <= 2; pq++ {
					id++
					publishQoS(t, pub, &packet.Publish{Topic: fmt.Sprintf("min/%v/%d", v, sq), QoS: pq, PacketID: id, Payload: []byte{pq}})
				}
			}
			for _, m := range receiveAll(t, sub, 9) {
				sq := m.Topic[len(m.Topic)-1] - '0'
				if want := min(sq, m.Payload[0]); m.QoS != want {
					t.Fatalf("%s published at QoS %d delivered at %d, want %d", m.Topic, m.Payload[0], m.QoS, want)
				}
			}
		})
	}
}

// [MQTT-3.3.5-1] When Subscriptions overlap, the Server MUST deliver the
// message to the Client respecting the maximum QoS of all the matching
// subscriptions (5.0 [MQTT-3.3.4-2]).
func TestMQTT_3_3_5_1_OverlappingSubscriptionsMaximumQoS(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	for _, v := range allVersions {
		t.Run(v.String(), func(t *testing.T) {
			topic := "ov/" + v.String() + "/x"
			sub := connected(t, addr, v, "ov-sub"+v.String())
			sub.subscribe(1, packet.Subscription{Filter: "ov/" + v.String() + "/+", QoS: 0},
				packet.Subscription{Filter: "ov/#", QoS: 2}, packet.Subscription{Filter: topic, QoS: 1})
			pub := connected(t, addr, v, "ov-pub"+v.String())
			publishQoS(t, pub, &packet.Publish{Topic: topic, QoS: 2, PacketID: 1, Payload: []byte("x")})
			best := byte(0)
			for {
				p, err := sub.tryRecv(300 * time.Millisecond)
				if err != nil {
					break
				}
				m, ok := p.(*packet.Publish)
				if !ok {
					t.Fatalf("got %T", p)
				}
				best = max(best, m.QoS)
				ackPublish(t, sub, m)
			}
			if best != 2 {
				t.Fatalf("no copy delivered at QoS 2 (best %d)", best)
			}
		})
	}
}

// [MQTT-4.3.2-2] (QoS 1 receiver) After it has sent a PUBACK Packet the
// Receiver MUST treat any incoming PUBLISH packet that contains the same
// Packet Identifier as being a new publication, irrespective of the setting
// of its DUP flag (5.0 [MQTT-4.3.2-5]).
func TestMQTT_4_3_2_2_QoS1SamePacketIDIsNewMessage(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	for _, v := range allVersions {
		t.Run(v.String(), func(t *testing.T) {
			topic := "q1new/" + v.String()
			sub := connected(t, addr, v, "sub"+topic)
			sub.subscribe(1, packet.Subscription{Filter: topic})
			pub := connected(t, addr, v, "pub"+topic)
			publishQoS(t, pub, &packet.Publish{Topic: topic, QoS: 1, PacketID: 5, Payload: []byte("one")})
			publishQoS(t, pub, &packet.Publish{Topic: topic, QoS: 1, PacketID: 5, Dup: true, Payload: []byte("two")})
			if a, b := sub.recvPublish(), sub.recvPublish(); string(a.Payload) != "one" || string(b.Payload) != "two" {
				t.Fatalf("got %q then %q", a.Payload, b.Payload)
			}
		})
	}
}

// [MQTT-4.3.3-2] (QoS 2 receiver) MUST respond to a PUBREL packet by sending
// a PUBCOMP packet containing the same Packet Identifier as the PUBREL;
// after it has sent a PUBCOMP, the receiver MUST treat any subsequent
// PUBLISH packet that contains that Packet Identifier as being a new
// publication (5.0 [MQTT-4.3.3-11], [MQTT-4.3.3-12]). A PUBREL for an
// unknown identifier is answered too (5.0 with reason 0x92).
func TestMQTT_4_3_3_2_QoS2ReceiverRules(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	for _, v := range allVersions {
		t.Run(v.String(), func(t *testing.T) {
			topic := "q2new/" + v.String()
			sub := connected(t, addr, v, "sub"+topic)
			sub.subscribe(1, packet.Subscription{Filter: topic})
			pub := connected(t, addr, v, "pub"+topic)
			publishQoS(t, pub, &packet.Publish{Topic: topic, QoS: 2, PacketID: 9, Payload: []byte("one")})
			publishQoS(t, pub, &packet.Publish{Topic: topic, QoS: 2, PacketID: 9, Dup: true, Payload: []byte("two")})
			if a, b := sub.recvPublish(), sub.recvPublish(); string(a.Payload) != "one" || string(b.Payload) != "two" {
				t.Fatalf("got %q then %q", a.Payload, b.Payload)
			}
			pub.send(&packet.Pubrel{PacketID: 77})
			pc := recvAs[*packet.Pubcomp](t, pub)
			if pc.PacketID != 77 || (v == packet.V5 && pc.ReasonCode != packet.PacketIdentifierNotFound) {
				t.Fatalf("PUBCOMP for an unknown PUBREL: %+v", pc)
			}
		})
	}
}

// [MQTT-4.3.2-1] (QoS 1 sender) The Server MUST assign an unused Packet
// Identifier each time it has a new Application Message, send it with
// QoS 1 and DUP 0, and treat it as unacknowledged until the PUBACK.
// [MQTT-2.3.1-4] / 5.0 [MQTT-2.2.1-4]: non-zero and currently unused.
// 5.0 [MQTT-4.4.0-1]: it MUST NOT resend messages on the same connection.
func TestMQTT_4_3_2_1_QoS1SenderFlow(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	for _, v := range allVersions {
		t.Run(v.String(), func(t *testing.T) {
			topic := "q1s/" + v.String()
			sub := connected(t, addr, v, "sub"+topic)
			sub.subscribe(1, packet.Subscription{Filter: topic, QoS: 1})
			pub := connected(t, addr, v, "pub"+topic)
			ids := map[uint16]bool{}
			var got []*packet.Publish
			for i := range 6 {
				publishQoS(t, pub, &packet.Publish{Topic: topic, QoS: 1, PacketID: uint16(i + 1), Payload: []byte{byte(i)}})
				m := sub.recvPublish()
				if m.QoS != 1 || m.Dup || m.PacketID == 0 || ids[m.PacketID] {
					t.Fatalf("delivery %d: QoS %d DUP %v id %d (in use: %v)", i, m.QoS, m.Dup, m.PacketID, ids)
				}
				ids[m.PacketID] = true
				got = append(got, m)
			}
			sub.expectNothing(300 * time.Millisecond) // not acknowledged, yet not resent
			for _, m := range got {
				sub.send(&packet.Puback{PacketID: m.PacketID})
			}
			publishQoS(t, pub, &packet.Publish{Topic: topic, QoS: 1, PacketID: 99, Payload: []byte("after")})
			if m := sub.recvPublish(); string(m.Payload) != "after" || m.Dup {
				t.Fatalf("got %+v", m)
			}
		})
	}
}

// [MQTT-4.3.3-1] (QoS 2 sender) The Server MUST send PUBLISH with QoS 2 and
// DUP 0, MUST send a PUBREL packet when it receives a PUBREC packet - and
// not before - with the same Packet Identifier, MUST treat the PUBREL as
// unacknowledged until it has received the PUBCOMP (so the identifier stays
// in use), and MUST NOT re-send the PUBLISH once it has sent the PUBREL.
func TestMQTT_4_3_3_1_QoS2SenderFlow(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	for _, v := range allVersions {
		t.Run(v.String(), func(t *testing.T) {
			topic := "q2s/" + v.String()
			sub := connected(t, addr, v, "sub"+topic)
			sub.subscribe(1, packet.Subscription{Filter: topic, QoS: 2})
			pub := connected(t, addr, v, "pub"+topic)
			publishQoS(t, pub, &packet.Publish{Topic: topic, QoS: 2, PacketID: 1, Payload: []byte("a")})
			first := sub.recvPublish()
			if first.QoS != 2 || first.Dup || first.PacketID == 0 {
				t.Fatalf("got %+v", first)
			}
			sub.expectNothing(200 * time.Millisecond) // no PUBREL before PUBREC
			sub.send(&packet.Pubrec{PacketID: first.PacketID})
			if r := recvAs[*packet.Pubrel](t, sub); r.PacketID != first.PacketID || r.ReasonCode != packet.Success {
				t.Fatalf("PUBREL %+v for %d", r, first.PacketID)
			}
			// the id awaits PUBCOMP: a new message gets another one
			publishQoS(t, pub, &packet.Publish{Topic: topic, QoS: 2, PacketID: 2, Payload: []byte("b")})
			second := sub.recvPublish()
			if second.PacketID == first.PacketID || second.Dup {
				t.Fatalf("packet id %d reused while awaiting PUBCOMP (DUP %v)", second.PacketID, second.Dup)
			}
			sub.send(&packet.Pubcomp{PacketID: first.PacketID})
			sub.send(&packet.Pubrec{PacketID: second.PacketID})
			if r := recvAs[*packet.Pubrel](t, sub); r.PacketID != second.PacketID {
				t.Fatalf("PUBREL %+v", r)
			}
			sub.send(&packet.Pubcomp{PacketID: second.PacketID})
			sub.expectNothing(300 * time.Millisecond) // nothing re-sent
		})
	}
}

// [MQTT-2.3.1-1] SUBSCRIBE, UNSUBSCRIBE, and PUBLISH (in cases where QoS >
// 0) Control Packets MUST contain a non-zero 16-bit Packet Identifier
// (5.0 [MQTT-2.2.1-3]); a packet without one is a protocol violation and the
// connection is closed [MQTT-4.8.0-1].
func TestMQTT_2_3_1_1_PacketIdentifierZero(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	raw := map[string]map[packet.Version][]byte{
		"PUBLISH QoS 1": {
			packet.V311: {0x32, 0x05, 0, 1, 'a', 0, 0},
			packet.V5:   {0x32, 0x06, 0, 1, 'a', 0, 0, 0},
		},
		"PUBLISH QoS 2": {
			packet.V311: {0x34, 0x05, 0, 1, 'a', 0, 0},
			packet.V5:   {0x34, 0x06, 0, 1, 'a', 0, 0, 0},
		},
		"SUBSCRIBE": {
			packet.V311: {0x82, 0x06, 0, 0, 0, 1, 'a', 0},
			packet.V5:   {0x82, 0x07, 0, 0, 0, 0, 1, 'a', 0},
		},
		"UNSUBSCRIBE": {
			packet.V311: {0xA2, 0x05, 0, 0, 0, 1, 'a'},
			packet.V5:   {0xA2, 0x06, 0, 0, 0, 0, 1, 'a'},
		},
	}
	for name, byV := range raw {
		for v, b := range byV {
			t.Run(name+"/"+v.String(), func(t *testing.T) {
				c := connected(t, addr, v, "id0")
				c.sendRaw(b)
				expectViolation(c, packet.ProtocolError, packet.MalformedPacket)
			})
		}
	}
}

// [MQTT-4.6.0-5] A Server MUST by default treat each Topic as an Ordered
// Topic. [MQTT-4.6.0-6] It MUST send PUBLISH packets to consumers (for the
// same Topic and QoS) in the order that they were received from any given
// Client (5.0 [MQTT-4.6.0-5], [MQTT-4.6.0-6]). The subscriber's window is
// kept small so that messages queue in the session.
func TestMQTT_4_6_0_6_OrderPerTopicAndQoS(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{MaxInflight: 3}, nil)
	const n = 90
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		t.Run(v.String(), func(t *testing.T) {
			topic := "ord/" + v.String()
			sub := dialRaw(t, addr, v)
			cp := &packet.Connect{ClientID: "ord-sub" + v.String(), CleanStart: true, KeepAlive: 60}
			if v == packet.V5 {
				cp.Properties.ReceiveMaximum = new(uint16(2))
			}
			sub.connect(cp)
			sub.subscribe(1, packet.Subscription{Filter: topic, QoS: 2})
			pubs := []*rawClient{connected(t, addr, v, "ord-a"+v.String()), connected(t, addr, v, "ord-b"+v.String())}
			for i := range n {
				for j, pub := range pubs {
					q := byte((i + j) % 3)
					publishQoS(t, pub, &packet.Publish{Topic: topic, QoS: q, PacketID: uint16(i + 1),
						Payload: fmt.Appendf(nil, "%d:%d:%d", j, q, i)})
				}
			}
			last := map[string]int{}
			for _, m := range receiveAll(t, sub, 2*n) {
				f := strings.Split(string(m.Payload), ":")
				key := f[0] + "/qos" + f[1]
				i, _ := strconv.Atoi(f[2])
				if q, _ := strconv.Atoi(f[1]); byte(q) != m.QoS {
					t.Fatalf("%s delivered at QoS %d", m.Payload, m.QoS)
				}
				if prev, ok := last[key]; ok && i <= prev {
					t.Fatalf("publisher %s: message %d after %d", key, i, prev)
				}
				last[key] = i
			}
			if len(last) != 6 {
				t.Fatalf("streams seen: %v", last)
			}
		})
	}
}

// [MQTT-4.6.0-1] When it re-sends any PUBLISH packets, it MUST re-send them
// in the order in which the original PUBLISH packets were sent, with their
// original Packet Identifiers [MQTT-4.4.0-1]; messages queued while offline
// follow, in order, with DUP 0.
func TestMQTT_4_6_0_1_ResendInOriginalOrder(t *testing.T) {
	t.Parallel()
	b, addr := startBroker(t, Options{}, nil)
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		t.Run(v.String(), func(t *testing.T) {
			id := "resend" + v.String()
			topic := "resend/" + v.String()
			c, _ := dialSession(t, addr, v, id, false, 300)
			c.subscribe(1, packet.Subscription{Filter: topic, QoS: 2})
			pub := connected(t, addr, v, "pub"+id)
			var first []*packet.Publish
			for i := range 8 {
				publishQoS(t, pub, &packet.Publish{Topic: topic, QoS: byte(1 + i%2), PacketID: uint16(i + 1), Payload: []byte{byte(i)}})
				first = append(first, c.recvPublish())
			}
			closeAndWait(t, b, c)
			for i := 8; i < 12; i++ {
				publishQoS(t, pub, &packet.Publish{Topic: topic, QoS: byte(1 + i%2), PacketID: uint16(i + 1), Payload: []byte{byte(i)}})
			}
			c, _ = dialSession(t, addr, v, id, false, 300)
			for i, want := range first {
				m := c.recvPublish()
				if !m.Dup || m.PacketID != want.PacketID || m.Payload[0] != byte(i) || m.QoS != want.QoS {
					t.Fatalf("resend %d: got id %d payload %v DUP %v, want DUP of id %d payload %d", i, m.PacketID, m.Payload, m.Dup, want.PacketID, i)
				}
			}
			got := receiveAll(t, c, 4)
			for i, m := range got {
				if m.Dup || m.Payload[0] != byte(8+i) {
					t.Fatalf("queued %d: payload %v DUP %v", i, m.Payload, m.Dup)
				}
			}
		})
	}
}

// [MQTT-3.3.5-2] If a Server implementation does not authorize a PUBLISH to
// be performed by a Client, it has no way of informing that Client. It MUST
// either make a positive acknowledgement, according to the normal QoS
// rules, or close the Network Connection. The message is not delivered and
// not retained.
func TestMQTT_3_3_5_2_UnauthorizedPublish311(t *testing.T) {
	t.Parallel()
	az := authzFunc(func(topic string, a Access) bool { return !(a == AccessWrite && strings.HasPrefix(topic, "deny/")) })
	_, addr := startBroker(t, Options{}, &ListenerOptions{Name: "az", Authorizer: az})
	sub := connected(t, addr, packet.V311, "sub")
	sub.subscribe(1, packet.Subscription{Filter: "deny/#", QoS: 2})
	for q := byte(0); q <= 2; q++ {
		t.Run(fmt.Sprintf("qos %d", q), func(t *testing.T) {
			c := connected(t, addr, packet.V311, fmt.Sprintf("denied%d", q))
			c.send(&packet.Publish{Topic: "deny/x", QoS: q, PacketID: 3, Retain: true, Payload: []byte("no")})
			switch q {
			case 0:
				ping(t, c)
			case 1:
				recvAs[*packet.Puback](t, c)
			case 2:
				recvAs[*packet.Pubrec](t, c)
				c.send(&packet.Pubrel{PacketID: 3})
				if pc := recvAs[*packet.Pubcomp](t, c); pc.PacketID != 3 {
					t.Fatalf("PUBCOMP %d", pc.PacketID)
				}
			}
			sub.expectNothing(150 * time.Millisecond)
		})
	}
	late := connected(t, addr, packet.V311, "late")
	late.subscribe(1, packet.Subscription{Filter: "deny/#"})
	late.expectNothing(150 * time.Millisecond)
}

// closeAndWait drops c's connection without DISCONNECT and waits until the
// broker has noticed, so later messages are queued, not sent to it.
func closeAndWait(t testing.TB, b *Broker, c *rawClient) {
	t.Helper()
	n := b.Stats().ClientsConnected
	c.nc.Close()
	eventually(t, func() bool { return b.Stats().ClientsConnected < n }, "broker to notice the close")
}

// receiveAll reads n PUBLISH packets, acknowledging each as the protocol
// requires and answering PUBREL with PUBCOMP, then waits until the
// connection is quiet. Any other packet fails the test.
func receiveAll(t testing.TB, c *rawClient, n int) []*packet.Publish {
	t.Helper()
	var got []*packet.Publish
	for {
		wait := 5 * time.Second
		if len(got) == n {
			wait = 150 * time.Millisecond
		}
		p, err := c.tryRecv(wait)
		if err != nil {
			if len(got) == n {
				return got
			}
			t.Fatalf("after %d of %d messages: %v", len(got), n, err)
		}
		switch p := p.(type) {
		case *packet.Publish:
			if len(got) == n {
				t.Fatalf("unexpected extra PUBLISH %+v", p)
			}
			got = append(got, p)
			switch p.QoS {
			case 1:
				c.send(&packet.Puback{PacketID: p.PacketID})
			case 2:
				c.send(&packet.Pubrec{PacketID: p.PacketID})
			}
		case *packet.Pubrel:
			c.send(&packet.Pubcomp{PacketID: p.PacketID})
		default:
			t.Fatalf("unexpected %T %+v", p, p)
		}
	}
}

// [MQTT-4.7.3-3] Topic Names and Topic Filters MUST NOT encode to more than
// 65,535 bytes: up to that length they are valid. 3.3.3: the payload is
// opaque and may be empty or large.
func TestMQTT_4_7_3_3_LongTopicsAndLargePayloads(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	long := strings.Repeat("t/", 32767) + "x" // 65535 bytes
	sub := connected(t, addr, packet.V311, "sub")
	if sa := sub.subscribe(1, packet.Subscription{Filter: long, QoS: 1}, packet.Subscription{Filter: "big", QoS: 1}); sa.ReasonCodes[0] != packet.GrantedQoS1 {
		t.Fatalf("suback %v", sa.ReasonCodes)
	}
	pub := connected(t, addr, packet.V311, "pub")
	publishQoS(t, pub, &packet.Publish{Topic: long, QoS: 1, PacketID: 1, Payload: []byte("long")})
	if m := sub.recvPublish(); m.Topic != long {
		t.Fatalf("topic of %d bytes", len(m.Topic))
	} else {
		ackPublish(t, sub, m)
	}
	for _, n := range []int{0, 1, 300 << 10} {
		payload := make([]byte, n)
		for i := range payload {
			payload[i] = byte(i * 7)
		}
		publishQoS(t, pub, &packet.Publish{Topic: "big", QoS: 1, PacketID: 2, Payload: payload})
		m := sub.recvPublish()
		if string(m.Payload) != string(payload) {
			t.Fatalf("payload of %d bytes arrived as %d bytes", n, len(m.Payload))
		}
		ackPublish(t, sub, m)
	}
}

// [MQTT-4.3.3-2] Until it has received the corresponding PUBREL, the
// receiver MUST acknowledge any subsequent PUBLISH with the same Packet
// Identifier by sending a PUBREC and MUST NOT cause duplicate messages to be
// delivered - also when the PUBLISH is re-sent on a new connection of the
// same session [MQTT-4.4.0-1]; a PUBREL re-sent after reconnecting gets its
// PUBCOMP. A clean session starts without that state [MQTT-3.1.2-6].
func TestMQTT_4_3_3_2_IncomingQoS2StateKeptInSession(t *testing.T) {
	t.Parallel()
	b, addr := startBroker(t, Options{}, nil)
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		t.Run(v.String(), func(t *testing.T) {
			id := "q2state" + v.String()
			topic := "q2state/" + v.String()
			sub := connected(t, addr, v, "sub"+id)
			sub.subscribe(1, packet.Subscription{Filter: topic})
			c, _ := dialSession(t, addr, v, id, false, 300)
			c.send(&packet.Publish{Topic: topic, QoS: 2, PacketID: 7, Payload: []byte("once")})
			recvAs[*packet.Pubrec](t, c)
			sub.recvPublish()
			closeAndWait(t, b, c)

			c, _ = dialSession(t, addr, v, id, false, 300)
			c.send(&packet.Publish{Topic: topic, QoS: 2, PacketID: 7, Dup: true, Payload: []byte("once")})
			recvAs[*packet.Pubrec](t, c)
			sub.expectNothing(200 * time.Millisecond)
			closeAndWait(t, b, c)

			c, _ = dialSession(t, addr, v, id, false, 300)
			c.send(&packet.Pubrel{PacketID: 7})
			if pc := recvAs[*packet.Pubcomp](t, c); pc.PacketID != 7 || pc.ReasonCode != packet.Success {
				t.Fatalf("PUBCOMP %+v", pc)
			}
			// the same id again on a clean session is a new message
			c.send(&packet.Publish{Topic: topic, QoS: 2, PacketID: 8, Payload: []byte("pending")})
			recvAs[*packet.Pubrec](t, c)
			sub.recvPublish()
			closeAndWait(t, b, c)
			c, _ = dialSession(t, addr, v, id, true, 0)
			publishQoS(t, c, &packet.Publish{Topic: topic, QoS: 2, PacketID: 8, Payload: []byte("fresh")})
			if m := sub.recvPublish(); string(m.Payload) != "fresh" {
				t.Fatalf("got %+v", m)
			}
		})
	}
}
