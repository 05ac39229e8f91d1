package broker

// Conformance tests for SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ
// and shared subscriptions. Statement numbers are those of MQTT 3.1.1
// unless a test says "5.0".

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/starlingmq/starling/internal/packet"
)

// [MQTT-2.2.2-1] Reserved flag bits MUST be set to the listed values;
// [MQTT-2.2.2-2] if invalid flags are received, the receiver MUST close the
// Network Connection. SUBSCRIBE [MQTT-3.8.1-1], UNSUBSCRIBE [MQTT-3.10.1-1]
// and PUBREL [MQTT-3.6.1-1] carry 0010; the others 0000 (DISCONNECT
// [MQTT-3.14.1-1]). 5.0 [MQTT-2.1.3-1]: a Malformed Packet, DISCONNECT 0x81.
func TestMQTT_2_2_2_2_InvalidFixedHeaderFlags(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	pkts := map[string]packet.Packet{
		"SUBSCRIBE":   &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "a"}}},
		"UNSUBSCRIBE": &packet.Unsubscribe{PacketID: 1, Filters: []string{"a"}},
		"PUBREL":      &packet.Pubrel{PacketID: 1},
		"PUBACK":      &packet.Puback{PacketID: 1},
		"PUBREC":      &packet.Pubrec{PacketID: 1},
		"PUBCOMP":     &packet.Pubcomp{PacketID: 1},
		"PINGREQ":     &packet.Pingreq{},
		"DISCONNECT":  &packet.Disconnect{},
	}
	for name, p := range pkts {
		for _, flags := range []byte{0x0, 0x1, 0x2, 0x8} {
			want := byte(0)
			if name == "SUBSCRIBE" || name == "UNSUBSCRIBE" || name == "PUBREL" {
				want = 0x2
			}
			if flags == want {
				continue
			}
			for _, v := range []packet.Version{packet.V311, packet.V5} {
				t.Run(fmt.Sprintf("%s/%X/%v", name, flags, v), func(t *testing.T) {
					b, err := packet.Encode(p, v)
					if err != nil {
						t.Fatal(err)
					}
					b[0] = b[0]&0xF0 | flags
					c := connected(t, addr, v, "flags")
					c.sendRaw(b)
					expectViolation(c, packet.MalformedPacket)
				})
			}
		}
	}
}

// [MQTT-3.8.3-4] The Server MUST treat a SUBSCRIBE packet as malformed and
// close the Network Connection if any of Reserved bits in the payload are
// non-zero, or QoS is not 0, 1 or 2. 5.0 [MQTT-3.8.3-5]: reserved bits 6-7
// make it malformed; QoS 3 and Retain Handling 3 are Protocol Errors.
func TestMQTT_3_8_3_4_SubscriptionOptionsValidated(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	cases := []struct {
		v     packet.Version
		opts  byte
		codes []packet.ReasonCode
	}{
		{packet.V311, 0x03, nil},
		{packet.V311, 0x04, nil},
		{packet.V311, 0x80, nil},
		{packet.V311, 0x20, nil},
		{packet.V5, 0x03, []packet.ReasonCode{packet.ProtocolError, packet.MalformedPacket}},
		{packet.V5, 0x30, []packet.ReasonCode{packet.ProtocolError, packet.MalformedPacket}},
		{packet.V5, 0x40, []packet.ReasonCode{packet.MalformedPacket}},
		{packet.V5, 0x80, []packet.ReasonCode{packet.MalformedPacket}},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%v/%02X", tc.v, tc.opts), func(t *testing.T) {
			b, _ := packet.Encode(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "a"}}}, tc.v)
			b[len(b)-1] = tc.opts
			c := connected(t, addr, tc.v, "opts")
			c.sendRaw(b)
			expectViolation(c, tc.codes...)
		})
	}
}

// [MQTT-3.8.3-1] The Topic Filters in a SUBSCRIBE packet payload MUST be
// UTF-8 encoded strings; [MQTT-3.10.3-1] likewise in UNSUBSCRIBE;
// ill-formed UTF-8 [MQTT-1.5.3-1] or U+0000 [MQTT-1.5.3-2, MQTT-4.7.3-2]
// close the connection.
func TestMQTT_3_8_3_1_FilterEncoding(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	for name, f := range map[string]string{"ill-formed": "a/\xff", "surrogate": "a/\xed\xa0\x80", "U+0000": "a/\x00"} {
		for _, v := range []packet.Version{packet.V311, packet.V5} {
			t.Run(name+"/"+v.String(), func(t *testing.T) {
				c := connected(t, addr, v, "enc")
				c.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: f}}})
				expectViolation(c, packet.MalformedPacket)
				c = connected(t, addr, v, "enc")
				c.send(&packet.Unsubscribe{PacketID: 1, Filters: []string{f}})
				expectViolation(c, packet.MalformedPacket)
			})
		}
	}
}

// [MQTT-3.8.3-3] The payload of a SUBSCRIBE packet MUST contain at least one
// Topic Filter / QoS pair (5.0 [MQTT-3.8.3-2]); [MQTT-3.10.3-2] the payload
// of an UNSUBSCRIBE packet MUST contain at least one Topic Filter.
func TestMQTT_3_8_3_3_AtLeastOneFilter(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	raw := map[string]map[packet.Version][]byte{
		"SUBSCRIBE":   {packet.V311: {0x82, 0x02, 0, 1}, packet.V5: {0x82, 0x03, 0, 1, 0}},
		"UNSUBSCRIBE": {packet.V311: {0xA2, 0x02, 0, 1}, packet.V5: {0xA2, 0x03, 0, 1, 0}},
	}
	for name, byV := range raw {
		for v, b := range byV {
			t.Run(name+"/"+v.String(), func(t *testing.T) {
				c := connected(t, addr, v, "empty")
				c.sendRaw(b)
				expectViolation(c, packet.ProtocolError, packet.MalformedPacket)
			})
		}
	}
}

// [MQTT-3.8.4-1] When the Server receives a SUBSCRIBE Packet it MUST respond
// with a SUBACK Packet; [MQTT-3.8.4-2] with the same Packet Identifier.
// [MQTT-3.10.4-4] The UNSUBACK MUST have the same Packet Identifier;
// [MQTT-3.10.4-5] even where no Topic Filters are deleted, the Server MUST
// respond with an UNSUBACK. [MQTT-3.12.4-1] PINGREQ is answered by PINGRESP.
func TestMQTT_3_8_4_2_AcknowledgementsEchoPacketID(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	for _, v := range allVersions {
		t.Run(v.String(), func(t *testing.T) {
			c := connected(t, addr, v, "echo"+v.String())
			for _, id := range []uint16{1, 0x1234, 0x8001, 0xFFFF} {
				if sa := c.subscribe(id, packet.Subscription{Filter: "echo/" + fmt.Sprint(id), QoS: 1}); sa.PacketID != id || len(sa.ReasonCodes) != 1 {
					t.Fatalf("SUBACK %+v for %d", sa, id)
				}
				c.send(&packet.Unsubscribe{PacketID: id, Filters: []string{"never/subscribed"}})
				if ua := recvAs[*packet.Unsuback](t, c); ua.PacketID != id {
					t.Fatalf("UNSUBACK %d for %d", ua.PacketID, id)
				}
				c.send(&packet.Unsubscribe{PacketID: id, Filters: []string{"echo/" + fmt.Sprint(id)}})
				if ua := recvAs[*packet.Unsuback](t, c); ua.PacketID != id {
					t.Fatalf("UNSUBACK %d for %d", ua.PacketID, id)
				}
			}
			for range 3 {
				ping(t, c)
			}
		})
	}
}

// [MQTT-3.8.4-3] A subscribe request which contains a Topic Filter that is
// identical to an existing Subscription's Topic Filter completely replaces
// that existing Subscription with a new Subscription (its maximum QoS may
// differ). Any existing retained messages matching the Topic Filter are
// re-sent, but the flow of publications is not interrupted (5.0
// [MQTT-3.8.4-3], [MQTT-3.8.4-4]).
func TestMQTT_3_8_4_3_IdenticalFilterReplacesSubscription(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	for _, v := range allVersions {
		t.Run(v.String(), func(t *testing.T) {
			topic := "replace/" + v.String()
			pub := connected(t, addr, v, "pub"+topic)
			publishQoS(t, pub, &packet.Publish{Topic: topic, QoS: 1, PacketID: 1, Retain: true, Payload: []byte("retained")})
			c := connected(t, addr, v, "sub"+topic)
			c.subscribe(1, packet.Subscription{Filter: topic, QoS: 2})
			if m := c.recvPublish(); !m.Retain || m.QoS != 1 {
				t.Fatalf("got %+v", m)
			} else {
				ackPublish(t, c, m)
			}
			if sa := c.subscribe(2, packet.Subscription{Filter: topic, QoS: 0}); sa.ReasonCodes[0] != packet.GrantedQoS0 {
				t.Fatalf("suback %v", sa.ReasonCodes)
			}
			if m := c.recvPublish(); !m.Retain || m.QoS != 0 || string(m.Payload) != "retained" {
				t.Fatalf("retained message not re-sent at the new QoS: %+v", m)
			}
			publishQoS(t, pub, &packet.Publish{Topic: topic, QoS: 2, PacketID: 2, Payload: []byte("live")})
			if m := c.recvPublish(); m.QoS != 0 || string(m.Payload) != "live" {
				t.Fatalf("got %+v, want one copy at the new QoS 0", m)
			}
			c.expectNothing(200 * time.Millisecond)
		})
	}
}

// [MQTT-3.8.4-4] If a Server receives a SUBSCRIBE packet that contains
// multiple Topic Filters it MUST handle that packet as if it had received a
// sequence of multiple SUBSCRIBE packets, except that it combines their
// responses into a single SUBACK response. [MQTT-3.8.4-5] The SUBACK MUST
// contain a return code for each Topic Filter/QoS pair, showing the
// maximum QoS granted or a failure; [MQTT-3.9.3-1] in the same order
// (5.0 [MQTT-3.8.4-5..7], [MQTT-3.9.3-1]).
func TestMQTT_3_8_4_4_MultipleFiltersOneSuback(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	for _, v := range allVersions {
		t.Run(v.String(), func(t *testing.T) {
			p := "multi/" + v.String()
			c := connected(t, addr, v, "multi"+v.String())
			fail := packet.TopicFilterInvalid
			if v != packet.V5 {
				fail = packet.UnspecifiedError
			}
			sa := c.subscribe(7,
				packet.Subscription{Filter: p + "/a", QoS: 2},
				packet.Subscription{Filter: p + "/#/bad", QoS: 1},
				packet.Subscription{Filter: p + "/b", QoS: 0},
				packet.Subscription{Filter: p + "/c", QoS: 1},
				packet.Subscription{Filter: p + "/dup", QoS: 1},
				packet.Subscription{Filter: p + "/dup", QoS: 2},
			)
			want := []packet.ReasonCode{2, fail, 0, 1, 1, 2}
			if !slices.Equal(sa.ReasonCodes, want) || sa.PacketID != 7 {
				t.Fatalf("SUBACK %v, want %v", sa.ReasonCodes, want)
			}
			pub := connected(t, addr, v, "pub"+p)
			for i, s := range []string{"a", "b", "c", "dup"} {
				publishQoS(t, pub, &packet.Publish{Topic: p + "/" + s, QoS: 2, PacketID: uint16(i + 1), Payload: []byte(s)})
			}
			wantQoS := map[string]byte{"a": 2, "b": 0, "c": 1, "dup": 2}
			for _, m := range receiveAll(t, c, 4) {
				if q := wantQoS[string(m.Payload)]; m.QoS != q {
					t.Fatalf("%s at QoS %d, want %d", m.Topic, m.QoS, q)
				}
				delete(wantQoS, string(m.Payload))
			}
		})
	}
}

// [MQTT-4.7.1-2] '#' MUST be the last character and occupy a whole level;
// [MQTT-4.7.1-3] '+' MUST occupy an entire level; [MQTT-4.7.3-1] filters are
// at least one character long. A bad filter is refused in the SUBACK
// (3.1.1 0x80, 5.0 0x8F) while the others in the packet are granted.
func TestMQTT_4_7_1_2_InvalidFiltersRefused(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	bad := []string{"a/b#", "a/#/", "#/a", "a+", "+a/b", "a/+b", "a/b+/c", "sport+", "++", "##", ""}
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		for _, f := range bad {
			t.Run(fmt.Sprintf("%v/%q", v, f), func(t *testing.T) {
				c := connected(t, addr, v, "badfilter")
				sa := c.subscribe(1, packet.Subscription{Filter: f, QoS: 1}, packet.Subscription{Filter: "ok/#", QoS: 1})
				if !sa.ReasonCodes[0].IsError() || sa.ReasonCodes[1] != packet.GrantedQoS1 {
					t.Fatalf("got %v", sa.ReasonCodes)
				}
				if v == packet.V5 && sa.ReasonCodes[0] != packet.TopicFilterInvalid {
					t.Fatalf("5.0 reason %v, want 0x8F", sa.ReasonCodes[0])
				}
			})
		}
	}
}

// [MQTT-3.9.3-2] SUBACK return codes other than 0x00, 0x01, 0x02 and 0x80
// are reserved and MUST NOT be used: a subscription the Server refuses is
// 0x80 in 3.1.1 and 0x87 "not authorized" in 5.0; it is not established.
func TestMQTT_3_9_3_2_RefusedSubscription(t *testing.T) {
	t.Parallel()
	az := authzFunc(func(topic string, a Access) bool {
		return !(a == AccessSubscribe && strings.HasPrefix(topic, "secret"))
	})
	_, addr := startBroker(t, Options{}, &ListenerOptions{Name: "az", Authorizer: az})
	for _, v := range allVersions {
		t.Run(v.String(), func(t *testing.T) {
			c := connected(t, addr, v, "refused"+v.String())
			sa := c.subscribe(1, packet.Subscription{Filter: "secret/#", QoS: 1}, packet.Subscription{Filter: "public/#", QoS: 2})
			want := []packet.ReasonCode{packet.UnspecifiedError, packet.GrantedQoS2}
			if v == packet.V5 {
				want[0] = packet.NotAuthorized
			}
			if !slices.Equal(sa.ReasonCodes, want) {
				t.Fatalf("got %v, want %v", sa.ReasonCodes, want)
			}
			pub := connected(t, addr, v, "pub"+v.String())
			publishQoS(t, pub, &packet.Publish{Topic: "secret/x", QoS: 1, PacketID: 1, Payload: []byte("s")})
			c.expectNothing(150 * time.Millisecond)
		})
	}
}

// [MQTT-3.10.4-1] The Topic Filters supplied in an UNSUBSCRIBE packet MUST
// be compared character-by-character with the current set of Topic Filters
// held by the Server for the Client. If any filter matches exactly then it
// is deleted, otherwise no additional processing occurs. [MQTT-3.10.4-6]
// Several filters in one UNSUBSCRIBE get one UNSUBACK; 5.0 [MQTT-3.11.3-1]
// with a reason code per filter in order.
func TestMQTT_3_10_4_1_UnsubscribeMatchesExactly(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	for _, v := range allVersions {
		t.Run(v.String(), func(t *testing.T) {
			p := "exact" + v.String()
			c := connected(t, addr, v, "unsub"+v.String())
			c.subscribe(1, packet.Subscription{Filter: p + "/+"}, packet.Subscription{Filter: p + "/x/#"})
			pub := connected(t, addr, v, "pub"+p)
			check := func(topic string, delivered bool) {
				t.Helper()
				publishQoS(t, pub, &packet.Publish{Topic: topic, Payload: []byte(topic)})
				if !delivered {
					c.expectNothing(150 * time.Millisecond)
					return
				}
				if m := c.recvPublish(); m.Topic != topic {
					t.Fatalf("got %q", m.Topic)
				}
			}
			// none of these is one of the client's filters
			c.send(&packet.Unsubscribe{PacketID: 2, Filters: []string{p + "/a", strings.ToUpper(p) + "/+", p + "/#", p + "/x/+"}})
			ua := recvAs[*packet.Unsuback](t, c)
			if v == packet.V5 && !slices.Equal(ua.ReasonCodes, []packet.ReasonCode{0x11, 0x11, 0x11, 0x11}) {
				t.Fatalf("UNSUBACK %v", ua.ReasonCodes)
			}
			check(p+"/a", true)
			check(p+"/x/y", true)
			// both at once, with one filter unknown in the middle
			c.send(&packet.Unsubscribe{PacketID: 3, Filters: []string{p + "/+", p + "/nope", p + "/x/#"}})
			ua = recvAs[*packet.Unsuback](t, c)
			if v == packet.V5 && !slices.Equal(ua.ReasonCodes, []packet.ReasonCode{0, 0x11, 0}) {
				t.Fatalf("UNSUBACK %v", ua.ReasonCodes)
			}
			check(p+"/a", false)
			check(p+"/x/y", false)
		})
	}
}

// [MQTT-3.10.4-2] After UNSUBSCRIBE the Server MUST stop adding any new
// messages for delivery to the Client; [MQTT-3.10.4-3] it MUST complete the
// delivery of any QoS 1 or QoS 2 messages which it has started to send.
func TestMQTT_3_10_4_3_InflightCompletesAfterUnsubscribe(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	for _, v := range allVersions {
		t.Run(v.String(), func(t *testing.T) {
			topic := "inflight/" + v.String()
			c := connected(t, addr, v, "sub"+topic)
			c.subscribe(1, packet.Subscription{Filter: topic, QoS: 2})
			pub := connected(t, addr, v, "pub"+topic)
			publishQoS(t, pub, &packet.Publish{Topic: topic, QoS: 1, PacketID: 1, Payload: []byte("q1")})
			publishQoS(t, pub, &packet.Publish{Topic: topic, QoS: 2, PacketID: 2, Payload: []byte("q2")})
			m1, m2 := c.recvPublish(), c.recvPublish()
			c.send(&packet.Unsubscribe{PacketID: 3, Filters: []string{topic}})
			recvAs[*packet.Unsuback](t, c)
			publishQoS(t, pub, &packet.Publish{Topic: topic, QoS: 1, PacketID: 3, Payload: []byte("after")})
			c.send(&packet.Puback{PacketID: m1.PacketID})
			c.send(&packet.Pubrec{PacketID: m2.PacketID})
			if r := recvAs[*packet.Pubrel](t, c); r.PacketID != m2.PacketID {
				t.Fatalf("PUBREL %d, want %d", r.PacketID, m2.PacketID)
			}
			c.send(&packet.Pubcomp{PacketID: m2.PacketID})
			c.expectNothing(200 * time.Millisecond)
		})
	}
}

// 5.0 [MQTT-4.8.2-1] A Shared Subscription's Topic Filter MUST start with
// $share/ and MUST contain a ShareName that is at least one character long.
// [MQTT-4.8.2-2] The ShareName MUST NOT contain "/", "+" or "#", but MUST be
// followed by a "/" character, followed by a Topic Filter. Invalid ones are
// refused in the SUBACK.
func TestMQTT_4_8_2_1_InvalidSharedFilters(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	c := connected(t, addr, packet.V5, "shared-bad")
	for _, f := range []string{"$share//a", "$share/g", "$share/g/", "$share/g+/a", "$share/g#/a", "$share/+/a", "$share/#", "$share/g/a#", "$share/g/#/a"} {
		sa := c.subscribe(1, packet.Subscription{Filter: f}, packet.Subscription{Filter: "$share/ok/a"})
		if !sa.ReasonCodes[0].IsError() || sa.ReasonCodes[1] != packet.GrantedQoS0 {
			t.Errorf("%q: SUBACK %v", f, sa.ReasonCodes)
		}
	}
}

// 5.0 [MQTT-3.8.3-4] It is a Protocol Error to set the No Local bit to 1 on
// a Shared Subscription.
func TestMQTT_3_8_3_4_NoLocalOnSharedSubscription(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	c := connected(t, addr, packet.V5, "nolocal-shared")
	c.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "$share/g/a", NoLocal: true}}})
	expectViolation(c, packet.ProtocolError)
}

// 5.0 [MQTT-4.8.2-3] The Server MUST respect the granted QoS for the
// Client's subscription; retained messages are not sent for a new Shared
// Subscription (4.8.2); a shared subscription is removed by UNSUBSCRIBE with
// its full filter.
func TestMQTT_4_8_2_3_SharedSubscriptionGrantedQoS(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	pub := connected(t, addr, packet.V5, "pub")
	publishQoS(t, pub, &packet.Publish{Topic: "sq/x", QoS: 1, PacketID: 1, Retain: true, Payload: []byte("retained")})
	c := connected(t, addr, packet.V5, "member")
	if sa := c.subscribe(1, packet.Subscription{Filter: "$share/g/sq/#", QoS: 1}); sa.ReasonCodes[0] != packet.GrantedQoS1 {
		t.Fatalf("suback %v", sa.ReasonCodes)
	}
	c.expectNothing(200 * time.Millisecond) // no retained message
	publishQoS(t, pub, &packet.Publish{Topic: "sq/x", QoS: 2, PacketID: 2, Payload: []byte("q2")})
	if m := c.recvPublish(); m.QoS != 1 || string(m.Payload) != "q2" {
		t.Fatalf("got %+v, want QoS 1", m)
	} else {
		ackPublish(t, c, m)
	}
	c.send(&packet.Unsubscribe{PacketID: 2, Filters: []string{"$share/g/sq/#"}})
	if ua := recvAs[*packet.Unsuback](t, c); !slices.Equal(ua.ReasonCodes, []packet.ReasonCode{packet.Success}) {
		t.Fatalf("UNSUBACK %v", ua.ReasonCodes)
	}
	publishQoS(t, pub, &packet.Publish{Topic: "sq/x", QoS: 1, PacketID: 3, Payload: []byte("gone")})
	c.expectNothing(200 * time.Millisecond)
}

// 5.0 [MQTT-4.8.2-6] If a Client responds with a PUBACK or PUBREC containing
// a Reason Code of 0x80 or greater to a PUBLISH packet from the Server, the
// Server MUST discard the Application Message and not attempt to send it to
// any other Subscriber.
func TestMQTT_4_8_2_6_RejectedSharedMessageNotRedelivered(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	for _, q := range []byte{1, 2} {
		t.Run(fmt.Sprintf("qos %d", q), func(t *testing.T) {
			f := fmt.Sprintf("$share/g/rej%d", q)
			a := connected(t, addr, packet.V5, "a"+f)
			b := connected(t, addr, packet.V5, "b"+f)
			a.subscribe(1, packet.Subscription{Filter: f, QoS: 2})
			b.subscribe(1, packet.Subscription{Filter: f, QoS: 2})
			pub := connected(t, addr, packet.V5, "pub"+f)
			publishQoS(t, pub, &packet.Publish{Topic: fmt.Sprintf("rej%d", q), QoS: q, PacketID: 1, Payload: []byte("x")})
			got, other := a, b
			p, err := a.tryRecv(time.Second)
			if err != nil {
				got, other = b, a
				p = b.recv()
			}
			m, ok := p.(*packet.Publish)
			if !ok {
				t.Fatalf("got %T", p)
			}
			if q == 1 {
				got.send(&packet.Puback{PacketID: m.PacketID, ReasonCode: packet.UnspecifiedError})
			} else {
				got.send(&packet.Pubrec{PacketID: m.PacketID, ReasonCode: packet.UnspecifiedError})
			}
			got.expectNothing(200 * time.Millisecond) // no PUBREL, no resend
			other.expectNothing(200 * time.Millisecond)
		})
	}
}

// 5.0 [MQTT-4.8.2-4] If a member's connection closes before it acknowledges
// a message, the Server MUST complete the delivery of the message to that
// Client when it reconnects; [MQTT-4.8.2-5] it is not sent to another
// member meanwhile.
func TestMQTT_4_8_2_4_SharedDeliveryCompletesOnReconnect(t *testing.T) {
	t.Parallel()
	b, addr := startBroker(t, Options{}, nil)
	a, _ := dialSession(t, addr, packet.V5, "member-a", false, 300)
	a.subscribe(1, packet.Subscription{Filter: "$share/g/comp", QoS: 1})
	pub := connected(t, addr, packet.V5, "pub")
	publishQoS(t, pub, &packet.Publish{Topic: "comp", QoS: 1, PacketID: 1, Payload: []byte("mine")})
	first := a.recvPublish()
	closeAndWait(t, b, a)
	other := connected(t, addr, packet.V5, "member-b")
	other.subscribe(1, packet.Subscription{Filter: "$share/g/comp", QoS: 1})
	other.expectNothing(300 * time.Millisecond)
	a, ack := dialSession(t, addr, packet.V5, "member-a", false, 300)
	if !ack.SessionPresent {
		t.Fatal("session lost")
	}
	if m := a.recvPublish(); !m.Dup || m.PacketID != first.PacketID || string(m.Payload) != "mine" {
		t.Fatalf("got %+v", m)
	}
}

// [MQTT-4.7.2-1] applies to Shared Subscriptions too: a shared filter
// starting with a wildcard does not match topic names starting with '$'.
func TestMQTT_4_7_2_1_SharedWildcardsSkipDollarTopics(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	c := connected(t, addr, packet.V5, "member")
	c.subscribe(1, packet.Subscription{Filter: "$share/g/#"}, packet.Subscription{Filter: "$share/g/+/x"},
		packet.Subscription{Filter: "$share/h/$dollar/#"})
	pub := connected(t, addr, packet.V5, "pub")
	publishQoS(t, pub, &packet.Publish{Topic: "$dollar/x", Payload: []byte("$")})
	if m := c.recvPublish(); m.Topic != "$dollar/x" {
		t.Fatalf("got %q", m.Topic)
	}
	c.expectNothing(200 * time.Millisecond) // only the explicit $dollar/# group matched
}
