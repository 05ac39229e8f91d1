package broker

// Conformance tests for what only MQTT 5.0 has: reason codes on
// acknowledgements, session expiry, properties, topic aliases, flow
// control, subscription identifiers, request/response and enhanced
// authentication. Statement numbers are those of MQTT 5.0.

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starlingmq/starling/internal/packet"
)

// [MQTT-3.4.2-1] The Server sending the PUBACK MUST use one of the PUBACK
// Reason Codes: 0x10 No matching subscribers, 0x87 Not authorized, 0x99
// Payload format invalid; [MQTT-3.5.2-1] the same for PUBREC. After a PUBREC
// below 0x80 the flow goes on with PUBREL/PUBCOMP [MQTT-4.3.3-11].
func TestMQTT_3_4_2_1_PubackAndPubrecReasonCodes(t *testing.T) {
	t.Parallel()
	az := authzFunc(func(topic string, a Access) bool { return !(a == AccessWrite && strings.HasPrefix(topic, "deny/")) })
	_, addr := startBroker(t, Options{}, &ListenerOptions{Name: "az", Authorizer: az})
	sub := connected(t, addr, packet.V5, "sub")
	sub.subscribe(1, packet.Subscription{Filter: "has/#"}, packet.Subscription{Filter: "deny/#"})
	pub := connected(t, addr, packet.V5, "pub")
	badUTF8 := &packet.Properties{PayloadFormat: new(byte(1))}
	cases := []struct {
		name  string
		topic string
		props *packet.Properties
		want  packet.ReasonCode
		gets  bool
	}{
		{"no matching subscribers", "none/x", nil, packet.NoMatchingSubscribers, false},
		{"delivered", "has/x", nil, packet.Success, true},
		{"not authorized", "deny/x", nil, packet.NotAuthorized, false},
		{"payload format invalid", "has/utf8", badUTF8, packet.PayloadFormatInvalid, false},
	}
	id := uint16(0)
	for _, tc := range cases {
		for _, q := range []byte{1, 2} {
			t.Run(fmt.Sprintf("%s/qos%d", tc.name, q), func(t *testing.T) {
				id++
				p := &packet.Publish{Topic: tc.topic, QoS: q, PacketID: id, Payload: []byte("\xff\xfe")}
				if tc.props != nil {
					p.Properties = *tc.props
				}
				if rc := publishQoS(t, pub, p); rc != tc.want {
					t.Fatalf("reason %v (0x%02X), want %v", rc, byte(rc), tc.want)
				}
				if tc.gets {
					sub.recvPublish()
				} else {
					sub.expectNothing(100 * time.Millisecond)
				}
			})
		}
	}
}

// [MQTT-4.3.3-9] If the receiver has sent a PUBREC with a Reason Code of
// 0x80 or greater, it MUST treat any subsequent PUBLISH packet that contains
// that Packet Identifier as being a new Application Message.
func TestMQTT_4_3_3_9_FailedPubrecFreesPacketID(t *testing.T) {
	t.Parallel()
	az := authzFunc(func(topic string, a Access) bool { return !(a == AccessWrite && topic == "deny") })
	_, addr := startBroker(t, Options{}, &ListenerOptions{Name: "az", Authorizer: az})
	sub := connected(t, addr, packet.V5, "sub")
	sub.subscribe(1, packet.Subscription{Filter: "allow", QoS: 2})
	pub := connected(t, addr, packet.V5, "pub")
	pub.send(&packet.Publish{Topic: "deny", QoS: 2, PacketID: 4, Payload: []byte("no")})
	if r := recvAs[*packet.Pubrec](t, pub); r.ReasonCode != packet.NotAuthorized {
		t.Fatalf("PUBREC %v", r.ReasonCode)
	}
	if rc := publishQoS(t, pub, &packet.Publish{Topic: "allow", QoS: 2, PacketID: 4, Payload: []byte("yes")}); rc != packet.Success {
		t.Fatalf("second PUBLISH with id 4: %v", rc)
	}
	if m := sub.recvPublish(); string(m.Payload) != "yes" {
		t.Fatalf("got %+v", m)
	}
}

// [MQTT-4.4.0-2] If PUBACK or PUBREC is received containing a Reason Code
// of 0x80 or greater the corresponding PUBLISH packet is treated as
// acknowledged, and MUST NOT be retransmitted; [MQTT-4.3.3-4] a PUBREL is
// sent only for a PUBREC below 0x80.
func TestMQTT_4_4_0_2_FailedAckEndsDelivery(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	c, _ := dialSession(t, addr, packet.V5, "nack", false, 300)
	c.subscribe(1, packet.Subscription{Filter: "nack", QoS: 2})
	pub := connected(t, addr, packet.V5, "pub")
	publishQoS(t, pub, &packet.Publish{Topic: "nack", QoS: 1, PacketID: 1, Payload: []byte("1")})
	publishQoS(t, pub, &packet.Publish{Topic: "nack", QoS: 2, PacketID: 2, Payload: []byte("2")})
	m1, m2 := c.recvPublish(), c.recvPublish()
	c.send(&packet.Puback{PacketID: m1.PacketID, ReasonCode: packet.UnspecifiedError})
	c.send(&packet.Pubrec{PacketID: m2.PacketID, ReasonCode: packet.ImplementationSpecificError})
	c.expectNothing(200 * time.Millisecond) // no PUBREL
	disconnect(c)
	c, _ = dialSession(t, addr, packet.V5, "nack", false, 300)
	c.expectNothing(200 * time.Millisecond) // nothing retransmitted
}

// [MQTT-3.3.4-9] The Server MUST NOT send more than Receive Maximum QoS 1
// and QoS 2 PUBLISH packets for which it has not received PUBACK, PUBCOMP,
// or PUBREC with a Reason Code of 128 or greater [MQTT-4.9.0-2].
// [MQTT-3.3.4-10] The Server MUST NOT delay the sending of any packets other
// than PUBLISH packets because of it [MQTT-4.9.0-3].
func TestMQTT_3_3_4_9_ReceiveMaximumRespected(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	c := dialRaw(t, addr, packet.V5)
	c.connect(&packet.Connect{ClientID: "rm", CleanStart: true, KeepAlive: 60, Properties: packet.Properties{ReceiveMaximum: new(uint16(2))}})
	c.subscribe(1, packet.Subscription{Filter: "rm/#", QoS: 2})
	pub := connected(t, addr, packet.V5, "pub")
	for i := range 6 {
		publishQoS(t, pub, &packet.Publish{Topic: "rm/x", QoS: byte(1 + i%2), PacketID: uint16(i + 1), Payload: []byte{byte(i)}})
	}
	next := func(want byte) *packet.Publish {
		t.Helper()
		m := c.recvPublish()
		if m.Payload[0] != want {
			t.Fatalf("got message %d, want %d", m.Payload[0], want)
		}
		return m
	}
	m0, m1 := next(0), next(1) // QoS 1, QoS 2
	c.expectNothing(200 * time.Millisecond)
	// other packets flow while the quota is zero
	ping(t, c)
	if sa := c.subscribe(2, packet.Subscription{Filter: "other"}); sa.PacketID != 2 {
		t.Fatal("SUBACK")
	}
	c.send(&packet.Unsubscribe{PacketID: 3, Filters: []string{"other"}})
	recvAs[*packet.Unsuback](t, c)

	c.send(&packet.Puback{PacketID: m0.PacketID})
	m2 := next(2)
	c.expectNothing(150 * time.Millisecond)
	c.send(&packet.Pubrec{PacketID: m1.PacketID}) // a successful PUBREC does not free the slot
	recvAs[*packet.Pubrel](t, c)
	c.expectNothing(150 * time.Millisecond)
	c.send(&packet.Pubcomp{PacketID: m1.PacketID}) // PUBCOMP does
	m3 := next(3)
	c.send(&packet.Pubrec{PacketID: m3.PacketID, ReasonCode: packet.UnspecifiedError}) // so does a failed PUBREC
	m4 := next(4)
	c.send(&packet.Puback{PacketID: m2.PacketID})
	m5 := next(5)
	c.send(&packet.Puback{PacketID: m4.PacketID})
	c.send(&packet.Pubrec{PacketID: m5.PacketID})
	recvAs[*packet.Pubrel](t, c)
	c.send(&packet.Pubcomp{PacketID: m5.PacketID})
	c.expectNothing(150 * time.Millisecond)
}

// The 3.1.1 counterpart: the Server's own window (max_inflight_messages)
// bounds unacknowledged QoS 1 and 2 messages, and PINGRESP is not delayed.
func TestMQTT_4_9_0_2_ServerInflightWindow(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{MaxInflight: 2}, nil)
	c := connected(t, addr, packet.V311, "window")
	c.subscribe(1, packet.Subscription{Filter: "w", QoS: 1})
	pub := connected(t, addr, packet.V311, "pub")
	for i := range 4 {
		publishQoS(t, pub, &packet.Publish{Topic: "w", QoS: 1, PacketID: uint16(i + 1), Payload: []byte{byte(i)}})
	}
	a, b := c.recvPublish(), c.recvPublish()
	c.expectNothing(200 * time.Millisecond)
	ping(t, c)
	c.send(&packet.Puback{PacketID: a.PacketID})
	if m := c.recvPublish(); m.Payload[0] != 2 {
		t.Fatalf("got %v", m.Payload)
	}
	c.send(&packet.Puback{PacketID: b.PacketID})
	if m := c.recvPublish(); m.Payload[0] != 3 {
		t.Fatalf("got %v", m.Payload)
	}
}

// [MQTT-3.1.2-23] The Server MUST store the Session State after the Network
// Connection is closed if the Session Expiry Interval is greater than 0;
// [MQTT-4.1.0-2] it MUST discard the Session State when the Network
// Connection is closed and the Session Expiry Interval has passed.
func TestMQTT_4_1_0_2_SessionDiscardedAfterExpiry(t *testing.T) {
	t.Parallel()
	b, addr := startBroker(t, Options{}, nil)
	c, _ := dialSession(t, addr, packet.V5, "expiring", false, 1)
	c.subscribe(1, packet.Subscription{Filter: "exp", QoS: 1})
	disconnect(c)
	if n := b.Stats().ClientsTotal; n != 1 {
		t.Fatalf("%d sessions stored right after the close, want 1", n)
	}
	eventually(t, func() bool { return b.Stats().ClientsTotal == 0 }, "session to expire")
	c, ack := dialSession(t, addr, packet.V5, "expiring", false, 1)
	if ack.SessionPresent {
		t.Fatal("expired session still present")
	}
	pub := connected(t, addr, packet.V5, "pub")
	if rc := publishQoS(t, pub, &packet.Publish{Topic: "exp", QoS: 1, PacketID: 1}); rc != packet.NoMatchingSubscribers {
		t.Fatalf("expired subscription still matches: %v", rc)
	}
}

// 3.14.2.2.2: the Session Expiry Interval sent on DISCONNECT replaces the
// one from CONNECT; it is a Protocol Error to set a non-zero one on
// DISCONNECT when CONNECT had 0.
func TestMQTT_3_14_2_SessionExpiryOnDisconnect(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	t.Run("zero ends the session", func(t *testing.T) {
		c, _ := dialSession(t, addr, packet.V5, "d0", false, 300)
		c.send(&packet.Disconnect{Properties: packet.Properties{SessionExpiry: new(uint32(0))}})
		c.expectClosed()
		if _, ack := dialSession(t, addr, packet.V5, "d0", false, 300); ack.SessionPresent {
			t.Fatal("session kept after DISCONNECT with session expiry 0")
		}
	})
	t.Run("longer keeps it", func(t *testing.T) {
		c, _ := dialSession(t, addr, packet.V5, "d600", false, 300)
		c.send(&packet.Disconnect{Properties: packet.Properties{SessionExpiry: new(uint32(600))}})
		c.expectClosed()
		if _, ack := dialSession(t, addr, packet.V5, "d600", false, 300); !ack.SessionPresent {
			t.Fatal("session lost")
		}
	})
	t.Run("non-zero after zero", func(t *testing.T) {
		c, _ := dialSession(t, addr, packet.V5, "dbad", false, 0)
		c.send(&packet.Disconnect{Properties: packet.Properties{SessionExpiry: new(uint32(60))}})
		expectViolation(c, packet.ProtocolError)
		if _, ack := dialSession(t, addr, packet.V5, "dbad", false, 0); ack.SessionPresent {
			t.Fatal("session kept")
		}
	})
}

// [MQTT-3.14.2-2] The Session Expiry Interval MUST NOT be sent on a
// DISCONNECT by the Server. [MQTT-3.14.4-1] After sending a DISCONNECT the
// sender MUST NOT send any more MQTT Control Packets; [MQTT-3.14.4-2] it
// MUST close the Network Connection. [MQTT-3.1.4-3] A taken-over client gets
// DISCONNECT 0x8E; a shutdown sends 0x8B.
func TestMQTT_3_14_4_1_ServerDisconnectIsLast(t *testing.T) {
	t.Parallel()
	b, addr := startBroker(t, Options{}, nil)
	old := connected(t, addr, packet.V5, "victim")
	old.subscribe(1, packet.Subscription{Filter: "flood"})
	flood := connected(t, addr, packet.V5, "flooder")
	msg, _ := packet.Encode(&packet.Publish{Topic: "flood", Payload: []byte("x")}, packet.V5)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			flood.nc.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := flood.nc.Write(msg); err != nil {
				return
			}
		}
	})
	defer func() { close(stop); wg.Wait() }()
	old.recvPublish() // the flood reaches it
	c, ack := dialSession(t, addr, packet.V5, "victim", false, 0)
	if ack.SessionPresent {
		t.Fatal("session present after a clean 5.0 session was taken over") // expiry was 0
	}
	got := readToClose(old)
	if len(got) == 0 {
		t.Fatal("no DISCONNECT before close")
	}
	d, ok := got[len(got)-1].(*packet.Disconnect)
	if !ok || d.ReasonCode != packet.SessionTakenOver || d.Properties.SessionExpiry != nil {
		t.Fatalf("last packet %+v (of %d), want DISCONNECT 0x8E without session expiry", got[len(got)-1], len(got))
	}
	for _, p := range got[:len(got)-1] {
		if _, ok := p.(*packet.Publish); !ok {
			t.Fatalf("unexpected %T", p)
		}
	}
	close(stop)
	wg.Wait()
	stop = make(chan struct{})

	b.Close()
	got = readToClose(c)
	if len(got) != 1 {
		t.Fatalf("on shutdown got %v", typesOf(got))
	}
	if d, ok := got[0].(*packet.Disconnect); !ok || d.ReasonCode != packet.ServerShuttingDown || d.Properties.SessionExpiry != nil {
		t.Fatalf("on shutdown got %+v", got[0])
	}
}

// [MQTT-3.14.4-3] On receipt of DISCONNECT with a Reason Code of 0x00 the
// Server MUST discard the Will Message without publishing it; with 0x04
// "Disconnect with Will Message" the Will is published.
func TestMQTT_3_14_4_3_DisconnectWithWillMessage(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	sub := connected(t, addr, packet.V5, "sub")
	sub.subscribe(1, packet.Subscription{Filter: "dw/#"})
	for _, rc := range []packet.ReasonCode{packet.NormalDisconnection, packet.DisconnectWithWill} {
		c := dialRaw(t, addr, packet.V5)
		topic := fmt.Sprintf("dw/%02x", byte(rc))
		c.connect(&packet.Connect{ClientID: topic, CleanStart: true, Will: &packet.Will{Topic: topic, Payload: []byte("w")}})
		c.send(&packet.Disconnect{ReasonCode: rc})
		c.expectClosed()
		if rc == packet.NormalDisconnection {
			sub.expectNothing(200 * time.Millisecond)
			continue
		}
		if m := sub.recvPublish(); m.Topic != topic {
			t.Fatalf("reason 0x%02X: got %+v", byte(rc), m)
		}
	}
}

// [MQTT-3.1.2-8] The Will Message MUST be published after the Network
// Connection is closed ... unless the Will Message has been deleted by the
// Server on receipt of a DISCONNECT packet with Reason Code 0x00 (Normal
// disconnection). [MQTT-3.1.2-10] only that reason removes it: a DISCONNECT
// with an error reason (0x80 and up) keeps the will.
func TestMQTT_3_1_2_10_WillKeptOnErrorDisconnect(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	sub := connected(t, addr, packet.V5, "sub")
	sub.subscribe(1, packet.Subscription{Filter: "ew/#"})
	for _, rc := range []packet.ReasonCode{packet.UnspecifiedError, packet.ImplementationSpecificError, packet.MessageRateTooHigh} {
		c := dialRaw(t, addr, packet.V5)
		topic := fmt.Sprintf("ew/%02x", byte(rc))
		c.connect(&packet.Connect{ClientID: topic, CleanStart: true, Will: &packet.Will{Topic: topic, Payload: []byte("w")}})
		c.send(&packet.Disconnect{ReasonCode: rc})
		c.expectClosed()
		if m := sub.recvPublish(); m.Topic != topic {
			t.Fatalf("reason 0x%02X: got %+v", byte(rc), m)
		}
	}
}

// [MQTT-3.1.2-8] The Will Message MUST be published after the Network
// Connection is closed and the Will Delay Interval has elapsed.
func TestMQTT_3_1_2_8_WillDelayInterval(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	sub := connected(t, addr, packet.V5, "sub")
	sub.subscribe(1, packet.Subscription{Filter: "delayed"})
	c := dialRaw(t, addr, packet.V5)
	c.connect(&packet.Connect{ClientID: "delay", CleanStart: true, KeepAlive: 60,
		Will:       &packet.Will{Topic: "delayed", Payload: []byte("late"), Properties: packet.Properties{WillDelay: new(uint32(1))}},
		Properties: packet.Properties{SessionExpiry: new(uint32(60))}})
	c.nc.Close()
	start := time.Now()
	sub.expectNothing(500 * time.Millisecond)
	if m := sub.recvPublish(); string(m.Payload) != "late" || time.Since(start) < time.Second {
		t.Fatalf("got %+v after %v", m, time.Since(start))
	}
}

// [MQTT-3.14.0-1] A Server MUST NOT send a DISCONNECT until after it has
// sent a CONNACK with Reason Code of less than 0x80.
func TestMQTT_3_14_0_1_NoDisconnectBeforeConnack(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	for name, raw := range map[string][]byte{
		"PUBLISH first": {0x30, 0x04, 0, 1, 'a', 0},
		"AUTH first":    {0xF0, 0x00},
		"bad CONNECT":   rawConnect("MQTT", 5, 0x01, 60, []byte{}, "x"),
	} {
		t.Run(name, func(t *testing.T) {
			c := dialRaw(t, addr, packet.V5)
			c.sendRaw(raw)
			for _, p := range readToClose(c) {
				if _, ok := p.(*packet.Disconnect); ok {
					t.Fatal("DISCONNECT before a successful CONNACK")
				}
			}
		})
	}
}

// [MQTT-4.12.0-1] If the Server does not support the Authentication Method
// supplied by the Client, it MAY send a CONNACK with a Reason Code of 0x8C
// (Bad authentication method) or 0x87 and MUST close the Network
// Connection. [MQTT-4.12.0-6] Without an Authentication Method in CONNECT
// the Server MUST NOT send an AUTH packet nor an Authentication Method in
// the CONNACK; [MQTT-4.12.0-7] an AUTH from such a client is a Protocol
// Error.
func TestMQTT_4_12_0_1_EnhancedAuthentication(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	t.Run("unsupported method", func(t *testing.T) {
		c := dialRaw(t, addr, packet.V5)
		cp := &packet.Connect{ProtocolName: "MQTT", Version: packet.V5, ClientID: "scram", CleanStart: true,
			Properties: packet.Properties{AuthMethod: "SCRAM-SHA-1", AuthData: []byte("client-first")}}
		b1, _ := packet.Encode(cp, packet.V5)
		b2, _ := packet.Encode(&packet.Auth{ReasonCode: packet.ContinueAuthentication, Properties: packet.Properties{AuthMethod: "SCRAM-SHA-1"}}, packet.V5)
		c.sendRaw(append(b1, b2...))
		got := readToClose(c)
		if len(got) != 1 {
			t.Fatalf("got %v", typesOf(got))
		}
		ack, ok := got[0].(*packet.Connack)
		if !ok || (ack.ReasonCode != packet.BadAuthenticationMethod && ack.ReasonCode != packet.NotAuthorized) || ack.SessionPresent {
			t.Fatalf("got %+v", got[0])
		}
	})
	t.Run("no method", func(t *testing.T) {
		c := dialRaw(t, addr, packet.V5)
		ack := c.connect(&packet.Connect{ClientID: "plain", CleanStart: true})
		if ack.Properties.AuthMethod != "" || ack.Properties.AuthData != nil {
			t.Fatalf("CONNACK carries authentication: %+v", ack.Properties)
		}
		c.send(&packet.Auth{ReasonCode: packet.ReAuthenticate, Properties: packet.Properties{AuthMethod: "x"}})
		expectViolation(c, packet.ProtocolError)
	})
}

// [MQTT-3.1.2-28] A Request Response Information of 0 indicates that the
// Server MUST NOT return Response Information. [MQTT-3.1.2-29] With Request
// Problem Information 0 the Server MUST NOT send a Reason String or User
// Properties on any packet other than PUBLISH, CONNACK, or DISCONNECT.
func TestMQTT_3_1_2_29_RequestProblemAndResponseInformation(t *testing.T) {
	t.Parallel()
	az := authzFunc(func(topic string, a Access) bool { return !strings.HasPrefix(topic, "deny") })
	_, addr := startBroker(t, Options{}, &ListenerOptions{Name: "az", Authorizer: az})
	c := dialRaw(t, addr, packet.V5)
	ack := c.connect(&packet.Connect{ClientID: "quiet", CleanStart: true, Properties: packet.Properties{
		RequestProblemInfo: new(byte(0)), RequestResponseInfo: new(byte(0))}})
	if ack.Properties.ResponseInfo != "" {
		t.Fatalf("response information %q sent though not requested", ack.Properties.ResponseInfo)
	}
	quiet := func(p *packet.Properties) {
		t.Helper()
		if p.ReasonString != "" || p.User != nil {
			t.Fatalf("reason string %q / user properties %v sent with request problem information 0", p.ReasonString, p.User)
		}
	}
	c.send(&packet.Publish{Topic: "deny/x", QoS: 1, PacketID: 1})
	quiet(&recvAs[*packet.Puback](t, c).Properties)
	c.send(&packet.Publish{Topic: "deny/x", QoS: 2, PacketID: 2})
	quiet(&recvAs[*packet.Pubrec](t, c).Properties)
	c.send(&packet.Pubrel{PacketID: 2})
	quiet(&recvAs[*packet.Pubcomp](t, c).Properties)
	quiet(&c.subscribe(3, packet.Subscription{Filter: "deny/#"}, packet.Subscription{Filter: "a/#/b"}).Properties)
	c.send(&packet.Unsubscribe{PacketID: 4, Filters: []string{"nothing"}})
	quiet(&recvAs[*packet.Unsuback](t, c).Properties)
}

// [MQTT-3.1.2-26] The Server MUST NOT send a Topic Alias in a PUBLISH packet
// to the Client greater than Topic Alias Maximum; [MQTT-3.1.2-27] if it is
// absent or zero, the Server MUST NOT send any Topic Aliases
// ([MQTT-3.3.2-11]).
func TestMQTT_3_1_2_26_OutgoingTopicAliasesBounded(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{OutgoingTopicAliases: true}, nil)
	pub := connected(t, addr, packet.V5, "pub")
	for _, max := range []uint16{0, 1, 2} {
		t.Run(fmt.Sprintf("maximum %d", max), func(t *testing.T) {
			c := dialRaw(t, addr, packet.V5)
			cp := &packet.Connect{ClientID: fmt.Sprintf("alias%d", max), CleanStart: true}
			if max > 0 {
				cp.Properties.TopicAliasMaximum = new(max)
			}
			c.connect(cp)
			prefix := fmt.Sprintf("al%d/", max)
			c.subscribe(1, packet.Subscription{Filter: prefix + "#"})
			known := map[uint16]string{}
			for i := range 12 {
				topic := prefix + fmt.Sprint(i%4)
				publishQoS(t, pub, &packet.Publish{Topic: topic, Payload: []byte(topic)})
				m := c.recvPublish()
				a := m.Properties.TopicAlias
				switch {
				case a == nil:
					if m.Topic != topic {
						t.Fatalf("topic %q without alias", m.Topic)
					}
				case max == 0 || *a == 0 || *a > max:
					t.Fatalf("alias %d sent, maximum %d", *a, max)
				case m.Topic != "":
					known[*a] = m.Topic
				case known[*a] != topic:
					t.Fatalf("alias %d used for %q but set to %q", *a, topic, known[*a])
				}
			}
		})
	}
}

// [MQTT-3.3.2-7] A receiver MUST NOT carry forward any Topic Alias mappings
// from one Network Connection to another. [MQTT-3.3.2-8] A Topic Alias of 0
// is invalid. [MQTT-3.3.2-12] A Server MUST accept all Topic Alias values
// greater than 0 and less than or equal to the Topic Alias Maximum value
// that it returned in the CONNACK packet.
func TestMQTT_3_3_2_12_IncomingTopicAliases(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	sub := connected(t, addr, packet.V5, "sub")
	sub.subscribe(1, packet.Subscription{Filter: "ta/#"})
	c := dialRaw(t, addr, packet.V5)
	ack := c.connect(&packet.Connect{ClientID: "aliaser", KeepAlive: 60, Properties: packet.Properties{SessionExpiry: new(uint32(60))}})
	if ack.Properties.TopicAliasMaximum == nil || *ack.Properties.TopicAliasMaximum == 0 {
		t.Fatal("no topic alias maximum announced")
	}
	max := *ack.Properties.TopicAliasMaximum
	for _, a := range []uint16{1, max} {
		topic := fmt.Sprintf("ta/%d", a)
		c.send(&packet.Publish{Topic: topic, Payload: []byte("set"), Properties: packet.Properties{TopicAlias: new(a)}})
		c.send(&packet.Publish{Payload: []byte("use"), Properties: packet.Properties{TopicAlias: new(a)}})
		for _, want := range []string{"set", "use"} {
			if m := sub.recvPublish(); m.Topic != topic || string(m.Payload) != want {
				t.Fatalf("alias %d: got %q %q", a, m.Topic, m.Payload)
			}
		}
	}
	disconnect(c)
	c = dialRaw(t, addr, packet.V5)
	c.connect(&packet.Connect{ClientID: "aliaser", KeepAlive: 60, Properties: packet.Properties{SessionExpiry: new(uint32(60))}})
	c.send(&packet.Publish{Payload: []byte("stale"), Properties: packet.Properties{TopicAlias: new(uint16(1))}})
	expectViolation(c, packet.ProtocolError, packet.TopicAliasInvalid)
	sub.expectNothing(100 * time.Millisecond)

	c = connected(t, addr, packet.V5, "zero")
	c.send(&packet.Publish{Topic: "ta/0", Properties: packet.Properties{TopicAlias: new(uint16(0))}})
	expectViolation(c, packet.TopicAliasInvalid, packet.ProtocolError)
}

// [MQTT-3.3.2-4] Payload Format Indicator, [MQTT-3.3.2-15] Response Topic,
// [MQTT-3.3.2-16] Correlation Data, [MQTT-3.3.2-17] User Properties and
// [MQTT-3.3.2-20] Content Type MUST be sent unaltered to all subscribers;
// [MQTT-3.3.2-18] the order of User Properties MUST be maintained. Checked
// on live and retained deliveries. 4.10 request/response relies on them.
func TestMQTT_3_3_2_17_PropertiesForwardedUnaltered(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	props := packet.Properties{
		PayloadFormat:   new(byte(1)),
		ContentType:     "application/json; charset=utf-8",
		ResponseTopic:   "reply/to/me",
		CorrelationData: []byte{0, 1, 2, 0xFF},
		User:            []packet.UserProperty{{Key: "b", Value: "2"}, {Key: "a", Value: "1"}, {Key: "b", Value: "3"}, {Key: "", Value: ""}, {Key: "ключ", Value: "значение"}},
	}
	check := func(t *testing.T, m *packet.Publish) {
		t.Helper()
		p := m.Properties
		if p.PayloadFormat == nil || *p.PayloadFormat != 1 || p.ContentType != props.ContentType ||
			p.ResponseTopic != props.ResponseTopic || string(p.CorrelationData) != string(props.CorrelationData) ||
			!slices.Equal(p.User, props.User) {
			t.Fatalf("properties altered: %+v", p)
		}
	}
	sub := connected(t, addr, packet.V5, "sub")
	sub.subscribe(1, packet.Subscription{Filter: "props/#", QoS: 1})
	pub := connected(t, addr, packet.V5, "pub")
	for q := byte(0); q <= 2; q++ {
		publishQoS(t, pub, &packet.Publish{Topic: "props/live", QoS: q, PacketID: 1, Payload: []byte(`{"x":1}`), Properties: props})
		m := sub.recvPublish()
		check(t, m)
		ackPublish(t, sub, m)
	}
	publishQoS(t, pub, &packet.Publish{Topic: "props/retained", QoS: 1, PacketID: 2, Retain: true, Payload: []byte(`{}`), Properties: props})
	ackPublish(t, sub, sub.recvPublish())
	late := connected(t, addr, packet.V5, "late")
	late.subscribe(1, packet.Subscription{Filter: "props/retained"})
	check(t, late.recvPublish())

	// request/response (4.10): the responder answers on the response topic
	// with the correlation data it received
	requester := connected(t, addr, packet.V5, "requester")
	requester.subscribe(1, packet.Subscription{Filter: "reply/to/me"})
	responder := connected(t, addr, packet.V5, "responder")
	responder.subscribe(1, packet.Subscription{Filter: "service/req"})
	requester.send(&packet.Publish{Topic: "service/req", Payload: []byte("ask"),
		Properties: packet.Properties{ResponseTopic: "reply/to/me", CorrelationData: []byte("req-42")}})
	req := responder.recvPublish()
	responder.send(&packet.Publish{Topic: req.Properties.ResponseTopic, Payload: []byte("answer"),
		Properties: packet.Properties{CorrelationData: req.Properties.CorrelationData}})
	if m := requester.recvPublish(); string(m.Payload) != "answer" || string(m.Properties.CorrelationData) != "req-42" {
		t.Fatalf("response: %+v", m)
	}
}

// [MQTT-3.1.3-10] The Server MUST maintain the order of User Properties when
// publishing the Will Message; the other will properties travel as with
// PUBLISH, and the Will Delay Interval is not forwarded.
func TestMQTT_3_1_3_10_WillPropertiesForwarded(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	sub := connected(t, addr, packet.V5, "sub")
	sub.subscribe(1, packet.Subscription{Filter: "wp"})
	user := []packet.UserProperty{{Key: "z", Value: "1"}, {Key: "a", Value: "2"}, {Key: "z", Value: "3"}}
	c := dialRaw(t, addr, packet.V5)
	c.connect(&packet.Connect{ClientID: "wp", CleanStart: true, Will: &packet.Will{Topic: "wp", Payload: []byte("w"),
		Properties: packet.Properties{User: user, ContentType: "text/plain", ResponseTopic: "wp/r", CorrelationData: []byte("c"), WillDelay: new(uint32(0))}}})
	c.nc.Close()
	m := sub.recvPublish()
	if !slices.Equal(m.Properties.User, user) || m.Properties.ContentType != "text/plain" ||
		m.Properties.ResponseTopic != "wp/r" || string(m.Properties.CorrelationData) != "c" {
		t.Fatalf("will properties: %+v", m.Properties)
	}
}

// [MQTT-3.3.2-14] The Response Topic MUST NOT contain wildcard characters,
// and [MQTT-3.3.4-6] a PUBLISH sent from a Client to a Server MUST NOT
// contain a Subscription Identifier. The Server may refuse such a PUBLISH
// (Protocol Error) but must not pass the bad content on to subscribers.
func TestMQTT_3_3_4_6_ClientOnlyPropertiesNotForwarded(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	cases := map[string]packet.Properties{
		"response topic with wildcard": {ResponseTopic: "reply/#"},
		"subscription identifier":      {SubscriptionIDs: []int{42}},
	}
	for name, props := range cases {
		t.Run(name, func(t *testing.T) {
			if props.ResponseTopic != "" {
			}
			sub := connected(t, addr, packet.V5, "sub")
			sub.subscribe(1, packet.Subscription{Filter: "cp"})
			c := connected(t, addr, packet.V5, "pub")
			c.send(&packet.Publish{Topic: "cp", QoS: 1, PacketID: 1, Payload: []byte("x"), Properties: props})
			p, err := sub.tryRecv(300 * time.Millisecond)
			if err != nil {
				return // refused
			}
			m, ok := p.(*packet.Publish)
			if !ok {
				t.Fatalf("got %T", p)
			}
			if strings.ContainsAny(m.Properties.ResponseTopic, "+#") || slices.Contains(m.Properties.SubscriptionIDs, 42) {
				t.Fatalf("forwarded %+v", m.Properties)
			}
		})
	}
}

// 3.8.2.1.2: it is a Protocol Error if the Subscription Identifier is 0.
// [MQTT-3.3.4-3] The Subscription Identifier of a matching subscription is
// sent with the message, also for retained messages sent on subscribing;
// replacing the subscription without an identifier removes it.
func TestMQTT_3_3_4_3_SubscriptionIdentifiers(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	pub := connected(t, addr, packet.V5, "pub")
	publishQoS(t, pub, &packet.Publish{Topic: "sid/r", QoS: 1, PacketID: 1, Retain: true, Payload: []byte("r")})
	c := connected(t, addr, packet.V5, "sid")
	c.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "sid/#"}}, Properties: packet.Properties{SubscriptionIDs: []int{268435455}}})
	recvAs[*packet.Suback](t, c)
	if m := c.recvPublish(); !slices.Equal(m.Properties.SubscriptionIDs, []int{268435455}) {
		t.Fatalf("retained delivery ids %v", m.Properties.SubscriptionIDs)
	}
	c.subscribe(2, packet.Subscription{Filter: "sid/#"}) // replaced, no identifier
	c.recvPublish()                                      // retained again
	publishQoS(t, pub, &packet.Publish{Topic: "sid/x", Payload: []byte("x")})
	if m := c.recvPublish(); m.Properties.SubscriptionIDs != nil {
		t.Fatalf("identifier kept after the subscription was replaced: %v", m.Properties.SubscriptionIDs)
	}
	// identifier 0, encoded by hand: SUBSCRIBE id 3, properties {0x0B 0}, "a" QoS 0
	c.sendRaw([]byte{0x82, 0x09, 0, 3, 2, 0x0B, 0, 0, 1, 'a', 0})
	expectViolation(c, packet.ProtocolError, packet.MalformedPacket)
}

// 3.1.2.11: it is a Protocol Error to include Receive Maximum 0, Maximum
// Packet Size 0, a Request Problem / Response Information other than 0 or 1,
// a property twice, Authentication Data without Authentication Method, or a
// property CONNECT may not carry; an unknown property is malformed. The
// Server closes the connection, optionally after CONNACK 0x81 / 0x82.
func TestMQTT_3_1_2_ConnectPropertyErrors(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	cases := map[string][]byte{
		"receive maximum 0":             {0x21, 0, 0},
		"maximum packet size 0":         {0x27, 0, 0, 0, 0},
		"request problem information 2": {0x17, 2},
		"request response info 2":       {0x19, 2},
		"session expiry twice":          {0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2},
		"topic alias in CONNECT":        {0x23, 0, 1},
		"auth data without method":      {0x16, 0, 1, 'x'},
		"unknown property":              {0x7F, 0},
		"property length too long":      {0x11, 0, 0},
	}
	for name, props := range cases {
		t.Run(name, func(t *testing.T) {
			c := dialRaw(t, addr, packet.V5)
			c.sendRaw(rawConnect("MQTT", 5, 0x02, 60, props, "props"))
			expectConnectRefused(c, packet.MalformedPacket, packet.ProtocolError)
		})
	}
}

// [MQTT-1.5.5-1] The encoded value of a Variable Byte Integer MUST use the
// minimum number of bytes necessary to represent the value.
func TestMQTT_1_5_5_1_NonMinimalVariableByteInteger(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	c := connected(t, addr, packet.V5, "varint")
	c.sendRaw([]byte{0xC0, 0x80, 0x00}) // PINGREQ, remaining length 0 in two bytes
	expectViolation(c, packet.MalformedPacket)
}

// [MQTT-3.1.4-3] If the ClientID represents a Client already connected, the
// Server sends DISCONNECT 0x8E to the existing Client and MUST close its
// connection; with Clean Start 0 the session continues on the new one.
func TestMQTT_3_1_4_3_TakeoverKeepsSession(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	old, _ := dialSession(t, addr, packet.V5, "keep", false, 300)
	old.subscribe(1, packet.Subscription{Filter: "keep", QoS: 1})
	c, ack := dialSession(t, addr, packet.V5, "keep", false, 300)
	if d := old.expectClosed(); d == nil || d.ReasonCode != packet.SessionTakenOver {
		t.Fatalf("got %+v", d)
	}
	if !ack.SessionPresent {
		t.Fatal("session not carried over")
	}
	pub := connected(t, addr, packet.V5, "pub")
	publishQoS(t, pub, &packet.Publish{Topic: "keep", QoS: 1, PacketID: 1, Payload: []byte("k")})
	if m := c.recvPublish(); string(m.Payload) != "k" {
		t.Fatalf("got %+v", m)
	}
}

// [MQTT-4.1.0-1] The Server MUST NOT discard the Session State while the
// Network Connection is open, however short its Session Expiry Interval.
func TestMQTT_4_1_0_1_SessionKeptWhileConnected(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	c, _ := dialSession(t, addr, packet.V5, "short", false, 1)
	c.subscribe(1, packet.Subscription{Filter: "short", QoS: 1})
	time.Sleep(2200 * time.Millisecond) // two janitor sweeps past the expiry
	pub := connected(t, addr, packet.V5, "pub")
	if rc := publishQoS(t, pub, &packet.Publish{Topic: "short", QoS: 1, PacketID: 1, Payload: []byte("x")}); rc != packet.Success {
		t.Fatalf("PUBACK %v: the connected session lost its subscription", rc)
	}
	c.recvPublish()
}

// [MQTT-3.3.2-5] If the Message Expiry Interval has passed and the Server
// has not managed to start onward delivery to a matching subscriber, then
// it MUST delete the copy of the message for that subscriber; this holds
// for retained messages too. [MQTT-3.3.2-6] The expiry sent is the received
// value minus the time the message waited in the Server.
func TestMQTT_3_3_2_6_RetainedMessageExpiry(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	pub := connected(t, addr, packet.V5, "pub")
	publishQoS(t, pub, &packet.Publish{Topic: "rx/short", QoS: 1, PacketID: 1, Retain: true, Payload: []byte("s"),
		Properties: packet.Properties{MessageExpiry: new(uint32(1))}})
	publishQoS(t, pub, &packet.Publish{Topic: "rx/long", QoS: 1, PacketID: 2, Retain: true, Payload: []byte("l"),
		Properties: packet.Properties{MessageExpiry: new(uint32(10))}})
	time.Sleep(1100 * time.Millisecond) // the short one must expire while retained
	c := connected(t, addr, packet.V5, "sub")
	c.subscribe(1, packet.Subscription{Filter: "rx/#"})
	m := c.recvPublish()
	if m.Topic != "rx/long" || m.Properties.MessageExpiry == nil || *m.Properties.MessageExpiry > 9 {
		t.Fatalf("got %s with expiry %v, want rx/long with at most 9 s left", m.Topic, m.Properties.MessageExpiry)
	}
	c.expectNothing(150 * time.Millisecond)
}

// 4.8.2: a Client with both a Shared and a Non-shared Subscription that
// match a message receives a copy by virtue of the Non-shared one, and the
// Shared Subscription delivers another copy to one of its members, which
// may be the same Client.
func TestMQTT_4_8_2_SharedAndNonSharedBothDeliver(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	c := connected(t, addr, packet.V5, "both")
	c.subscribe(1, packet.Subscription{Filter: "both/x"}, packet.Subscription{Filter: "$share/g/both/#"})
	pub := connected(t, addr, packet.V5, "pub")
	publishQoS(t, pub, &packet.Publish{Topic: "both/x", Payload: []byte("x")})
	c.recvPublish()
	c.recvPublish()
	c.expectNothing(150 * time.Millisecond)
}

// [MQTT-3.2.2-19] The Server MUST NOT send a Reason String if it would
// increase the size of the CONNACK packet beyond the Maximum Packet Size
// specified by the Client ([MQTT-3.2.2-20] likewise User Properties); and
// [MQTT-3.1.2-24] no packet may exceed it, refusals included.
func TestMQTT_3_2_2_19_RefusalWithinClientMaximumPacketSize(t *testing.T) {
	t.Parallel()
	auth := authnFunc(func(c *ClientInfo) error {
		if c.Username == "ok" {
			return nil
		}
		return packet.NotAuthorized
	})
	_, addr := startBroker(t, Options{}, &ListenerOptions{Name: "auth", Authenticator: auth})
	cases := map[string]packet.Properties{
		"authenticator refuses":   {MaximumPacketSize: new(uint32(8))},
		"unsupported auth method": {MaximumPacketSize: new(uint32(8)), AuthMethod: "SCRAM-SHA-256"},
	}
	for name, props := range cases {
		t.Run(name, func(t *testing.T) {
			c := dialRaw(t, addr, packet.V5)
			b, _ := packet.Encode(&packet.Connect{ProtocolName: "MQTT", Version: packet.V5, ClientID: "small", CleanStart: true,
				UsernameFlag: true, Username: "no", Properties: props}, packet.V5)
			c.sendRaw(b)
			c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			hdr := readRaw(t, c, 2)
			if hdr[0] != 0x20 {
				t.Fatalf("first byte %02X, want CONNACK", hdr[0])
			}
			if size := 2 + int(hdr[1]); size > 8 {
				t.Fatalf("CONNACK of %d bytes sent to a client whose maximum packet size is 8", size)
			}
		})
	}
}
