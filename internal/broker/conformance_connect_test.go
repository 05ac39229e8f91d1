package broker

// Conformance tests for CONNECT, CONNACK, sessions, wills and keep alive.
// Statement numbers are those of MQTT 3.1.1 unless a test says "5.0"; where
// the two versions number the same rule differently both are cited. The
// helpers at the end of this file are shared by every conformance_*_test.go.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/starlingmq/starling/internal/packet"
)

// [MQTT-3.1.2-1] (3.1.1) If the protocol name is incorrect the Server MAY
// disconnect the Client... [MQTT-3.1.4-1] ...close the Network Connection
// without sending a CONNACK if it does not conform.
func TestMQTT_3_1_2_1_ProtocolNameInvalid(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	for _, name := range []string{"MQTX", "mqtt", "MQTT\x00", "MQIsdpX", ""} {
		t.Run(name, func(t *testing.T) {
			c := dialRaw(t, addr, packet.V311)
			c.sendRaw(rawConnect(name, 4, 0x02, 60, nil, "x"))
			expectConnectRefused(c)
		})
	}
}

// [MQTT-3.1.2-2] The Server MUST respond to the CONNECT Packet with a CONNACK
// return code 0x01 (unacceptable protocol level) and then disconnect the
// Client if the Protocol Level is not supported by the Server.
func TestMQTT_3_1_2_2_UnsupportedLevelsAnsweredWithReturnCode1(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	cases := []struct {
		name  string
		level byte
	}{
		{"MQTT", 0}, {"MQTT", 2}, {"MQTT", 3}, {"MQTT", 6}, {"MQTT", 255}, {"MQIsdp", 4},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s/%d", tc.name, tc.level), func(t *testing.T) {
			c := dialRaw(t, addr, packet.V311)
			c.sendRaw(rawConnect(tc.name, tc.level, 0x02, 60, nil, "x"))
			got := readToClose(c)
			if len(got) != 1 {
				t.Fatalf("want exactly one CONNACK then close, got %v", typesOf(got))
			}
			ack, ok := got[0].(*packet.Connack)
			if !ok || ack.ReasonCode != packet.UnsupportedProtocolVersion || ack.SessionPresent {
				t.Fatalf("want CONNACK return code 1, got %+v", got[0])
			}
		})
	}
}

// [MQTT-3.1.2-3] The Server MUST validate that the reserved flag in the
// CONNECT Control Packet is set to zero and disconnect the Client if it is
// not zero (5.0: the same statement; it is a Malformed Packet).
func TestMQTT_3_1_2_3_ReservedConnectFlag(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		t.Run(v.String(), func(t *testing.T) {
			c := dialRaw(t, addr, v)
			c.sendRaw(rawConnect("MQTT", byte(v), 0x03, 60, propsFor(v), "reserved"))
			expectConnectRefused(c, packet.MalformedPacket, packet.ProtocolError)
		})
	}
}

// [MQTT-3.1.2-4] If CleanSession is set to 0, the Server MUST resume
// communications with the Client based on state from the current Session
// (5.0 [MQTT-3.1.2-5]: Clean Start 0 with an existing session).
func TestMQTT_3_1_2_4_CleanSessionZeroResumesSubscriptions(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	for _, v := range allVersions {
		t.Run(v.String(), func(t *testing.T) {
			id := "resume" + v.String()
			topic := "resume/" + v.String()
			c, _ := dialSession(t, addr, v, id, false, 300)
			c.subscribe(1, packet.Subscription{Filter: topic, QoS: 1})
			disconnect(c)

			c, ack := dialSession(t, addr, v, id, false, 300)
			if v != packet.V31 && !ack.SessionPresent {
				t.Fatal("session present 0 for a stored session")
			}
			pub := connected(t, addr, v, "resume-pub"+v.String())
			pub.send(&packet.Publish{Topic: topic, Payload: []byte("still subscribed")})
			if m := c.recvPublish(); m.Topic != topic || string(m.Payload) != "still subscribed" {
				t.Fatalf("got %+v", m)
			}
		})
	}
}

// [MQTT-3.1.2-5] After the disconnection of a Session that had CleanSession
// set to 0, the Server MUST store further QoS 1 and QoS 2 messages that
// match any subscriptions that the client had at the time of disconnection
// as part of the Session state (5.0 [MQTT-3.1.2-23]).
func TestMQTT_3_1_2_5_QoS1And2StoredWhileDisconnected(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	for _, v := range []packet.Version{packet.V31, packet.V311, packet.V5} {
		t.Run(v.String(), func(t *testing.T) {
			id := "store" + v.String()
			topic := "store/" + v.String()
			c, _ := dialSession(t, addr, v, id, false, 300)
			c.subscribe(1, packet.Subscription{Filter: topic, QoS: 2})
			disconnect(c)

			pub := connected(t, addr, v, "store-pub"+v.String())
			publishQoS(t, pub, &packet.Publish{Topic: topic, QoS: 0, Payload: []byte("q0")})
			publishQoS(t, pub, &packet.Publish{Topic: topic, QoS: 1, PacketID: 1, Payload: []byte("q1")})
			publishQoS(t, pub, &packet.Publish{Topic: topic, QoS: 2, PacketID: 2, Payload: []byte("q2")})

			c, _ = dialSession(t, addr, v, id, false, 300)
			var got []string
			for len(got) < 2 {
				m := c.recvPublish()
				if m.QoS == 0 {
					continue // storing QoS 0 messages is optional
				}
				got = append(got, string(m.Payload))
				if want := fmt.Sprintf("q%d", m.QoS); string(m.Payload) != want {
					t.Fatalf("payload %q delivered at QoS %d", m.Payload, m.QoS)
				}
				ackPublish(t, c, m)
			}
			if !slices.Equal(got, []string{"q1", "q2"}) {
				t.Fatalf("got %v, want [q1 q2] in order", got)
			}
		})
	}
}

// [MQTT-3.1.2-6] If CleanSession is set to 1, the Client and Server MUST
// discard any previous Session and start a new one. This Session lasts as
// long as the Network Connection. State data associated with this Session
// MUST NOT be reused in any subsequent Session (5.0 [MQTT-3.1.2-4]).
func TestMQTT_3_1_2_6_CleanSessionDiscardsState(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	for _, v := range allVersions {
		t.Run(v.String(), func(t *testing.T) {
			id := "discard" + v.String()
			topic := "discard/" + v.String()
			c, _ := dialSession(t, addr, v, id, false, 300)
			c.subscribe(1, packet.Subscription{Filter: topic, QoS: 1})
			disconnect(c)
			pub := connected(t, addr, v, "discard-pub"+v.String())
			publishQoS(t, pub, &packet.Publish{Topic: topic, QoS: 1, PacketID: 1, Payload: []byte("queued")})

			c, ack := dialSession(t, addr, v, id, true, 0)
			if ack.SessionPresent {
				t.Fatal("session present 1 with clean session")
			}
			c.expectNothing(200 * time.Millisecond) // the queued message went with the old session
			publishQoS(t, pub, &packet.Publish{Topic: topic, QoS: 1, PacketID: 2, Payload: []byte("live")})
			c.expectNothing(200 * time.Millisecond) // and so did the subscription
			c.subscribe(2, packet.Subscription{Filter: topic, QoS: 1})
			disconnect(c)

			// the clean session is not reused by a later persistent one
			c, ack = dialSession(t, addr, v, id, false, 300)
			if ack.SessionPresent {
				t.Fatal("state of a clean session was kept after it ended")
			}
			publishQoS(t, pub, &packet.Publish{Topic: topic, QoS: 1, PacketID: 3, Payload: []byte("after")})
			c.expectNothing(200 * time.Millisecond)
		})
	}
}

// [MQTT-3.1.2-7] Retained messages do not form part of the Session state in
// the Server, they MUST NOT be deleted when the Session ends.
func TestMQTT_3_1_2_7_RetainedMessagesOutliveSession(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	pub := connected(t, addr, packet.V311, "short-lived")
	publishQoS(t, pub, &packet.Publish{Topic: "outlive", Retain: true, QoS: 1, PacketID: 1, Payload: []byte("kept")})
	disconnect(pub)
	sub := connected(t, addr, packet.V311, "later")
	sub.subscribe(1, packet.Subscription{Filter: "outlive"})
	if m := sub.recvPublish(); !m.Retain || string(m.Payload) != "kept" {
		t.Fatalf("got %+v", m)
	}
}

// [MQTT-3.1.2-8] The Will Message MUST be published when the Network
// Connection is subsequently closed unless the Will Message has been
// deleted by the Server on receipt of a DISCONNECT Packet. Situations
// include a keep alive failure and the Server closing the connection because
// of a protocol error; a malformed DISCONNECT [MQTT-3.14.1-1] is not a
// DISCONNECT. 5.0 [MQTT-3.1.4-3]: a taken-over connection's will is sent.
func TestMQTT_3_1_2_8_WillPublishedWhenServerCloses(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	cases := []struct {
		name string
		v    packet.Version
		ka   uint16
		kill func(c *rawClient)
	}{
		{"keep alive timeout", packet.V311, 1, func(c *rawClient) {}},
		{"keep alive timeout 3.1", packet.V31, 1, func(c *rawClient) {}},
		{"protocol violation", packet.V311, 60, func(c *rawClient) { c.sendRaw([]byte{0xC1, 0x00}) }},
		{"malformed DISCONNECT flags", packet.V311, 60, func(c *rawClient) { c.sendRaw([]byte{0xE1, 0x00}) }},
		{"DISCONNECT with a body", packet.V311, 60, func(c *rawClient) { c.sendRaw([]byte{0xE0, 0x01, 0x00}) }},
		{"protocol violation 5.0", packet.V5, 60, func(c *rawClient) { c.sendRaw([]byte{0xC1, 0x00}) }},
		{"session taken over 3.1.1", packet.V311, 60, nil},
		{"session taken over 5.0", packet.V5, 60, nil},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			id := fmt.Sprintf("will-close-%d", i)
			topic := "willclose/" + id
			sub := connected(t, addr, packet.V311, "sub-"+id)
			sub.subscribe(1, packet.Subscription{Filter: topic})
			c := dialRaw(t, addr, tc.v)
			ack := c.connect(&packet.Connect{ClientID: id, CleanStart: true, KeepAlive: tc.ka,
				Will: &packet.Will{Topic: topic, Payload: []byte("bye")}})
			if ack.ReasonCode != packet.Success {
				t.Fatal(ack.ReasonCode)
			}
			if tc.kill != nil {
				tc.kill(c)
			} else {
				connected(t, addr, tc.v, id)
			}
			c.expectClosed()
			if m := sub.recvPublish(); m.Topic != topic || string(m.Payload) != "bye" {
				t.Fatalf("got %+v", m)
			}
		})
	}
}

// [MQTT-3.1.2-10] The Will Message MUST be removed from the stored Session
// state in the Server once it has been published.
func TestMQTT_3_1_2_10_WillRemovedOncePublished(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	sub := connected(t, addr, packet.V311, "sub")
	sub.subscribe(1, packet.Subscription{Filter: "once"})
	c := dialRaw(t, addr, packet.V311)
	c.connect(&packet.Connect{ClientID: "w", KeepAlive: 60, Will: &packet.Will{Topic: "once", Payload: []byte("w")}})
	c.nc.Close()
	sub.recvPublish()
	// the session survives (clean session 0); a connection without a will
	// that fails must not publish the old will again
	c = dialRaw(t, addr, packet.V311)
	if ack := c.connect(&packet.Connect{ClientID: "w", KeepAlive: 60}); !ack.SessionPresent {
		t.Fatal("session lost")
	}
	c.nc.Close()
	sub.expectNothing(300 * time.Millisecond)
}

// [MQTT-3.1.2-12] If the Will Flag is set to 0, a Will Message MUST NOT be
// published when this Network Connection ends.
func TestMQTT_3_1_2_12_NoWillWithoutWillFlag(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	sub := connected(t, addr, packet.V311, "sub")
	sub.subscribe(1, packet.Subscription{Filter: "#"})
	for _, v := range allVersions {
		c := connected(t, addr, v, "nowill"+v.String())
		c.nc.Close()
	}
	sub.expectNothing(300 * time.Millisecond)
}

// [MQTT-3.1.2-13] If the Will Flag is set to 0, then the Will QoS MUST be
// set to 0. [MQTT-3.1.2-15] ...then the Will Retain Flag MUST be set to 0.
// [MQTT-3.1.2-14] Will QoS MUST NOT be 3. A CONNECT breaking them is
// malformed: the Server closes without CONNACK [MQTT-3.1.4-1].
func TestMQTT_3_1_2_13_WillFlagsConsistency(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	cases := []struct {
		name   string
		flags  byte
		fields []string
	}{
		{"will QoS 1 without will flag", 0x0A, []string{"id"}},
		{"will QoS 2 without will flag", 0x12, []string{"id"}},
		{"will retain without will flag", 0x22, []string{"id"}},
		{"will QoS 3", 0x1E, []string{"id", "will/t", "payload"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, addr, packet.V311)
			c.sendRaw(rawConnect("MQTT", 4, tc.flags, 60, nil, tc.fields...))
			expectConnectRefused(c)
		})
	}
}

// [MQTT-3.1.2-9] If the Will Flag is set to 1, the Will QoS and Will Retain
// fields in the Connect Flags will be used by the Server. The will is
// delivered at min(Will QoS, subscription QoS) [MQTT-3.8.4-6].
func TestMQTT_3_1_2_9_WillQoSUsed(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		for q := byte(0); q <= 2; q++ {
			t.Run(fmt.Sprintf("%v/qos%d", v, q), func(t *testing.T) {
				topic := fmt.Sprintf("willqos/%v/%d", v, q)
				sub := connected(t, addr, v, "sub-"+topic)
				sub.subscribe(1, packet.Subscription{Filter: topic, QoS: 2})
				c := dialRaw(t, addr, v)
				c.connect(&packet.Connect{ClientID: "w-" + topic, CleanStart: true, KeepAlive: 60,
					Will: &packet.Will{Topic: topic, QoS: q, Payload: []byte("w")}})
				c.nc.Close()
				m := sub.recvPublish()
				if m.QoS != q || (q > 0 && m.PacketID == 0) {
					t.Fatalf("will delivered at QoS %d id %d, want QoS %d", m.QoS, m.PacketID, q)
				}
				ackPublish(t, sub, m)
			})
		}
	}
}

// [MQTT-3.1.2-16] If Will Retain is set to 0, the Server MUST publish the
// Will Message as a non-retained message. [MQTT-3.1.2-17] If Will Retain is
// set to 1, the Server MUST publish the Will Message as a retained message
// (5.0 [MQTT-3.1.2-14], [MQTT-3.1.2-15]).
func TestMQTT_3_1_2_17_WillRetain(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		for _, retain := range []bool{false, true} {
			name := v.String() + "/retain=false"
			if retain {
				name = v.String() + "/retain=true"
			}
			t.Run(name, func(t *testing.T) {
				topic := "willretain/" + name
				live := connected(t, addr, v, "live-"+name)
				live.subscribe(1, packet.Subscription{Filter: topic})
				c := dialRaw(t, addr, v)
				c.connect(&packet.Connect{ClientID: "w-" + name, CleanStart: true, KeepAlive: 60,
					Will: &packet.Will{Topic: topic, Retain: retain, Payload: []byte("w")}})
				c.nc.Close()
				if m := live.recvPublish(); m.Retain {
					// [MQTT-3.3.1-9] / 5.0 [MQTT-3.3.1-12]: live deliveries carry retain 0
					t.Fatalf("live delivery of the will has retain 1: %+v", m)
				}
				late := connected(t, addr, v, "late-"+name)
				late.subscribe(1, packet.Subscription{Filter: topic})
				if !retain {
					late.expectNothing(200 * time.Millisecond)
					return
				}
				if m := late.recvPublish(); !m.Retain || string(m.Payload) != "w" {
					t.Fatalf("retained will: got %+v", m)
				}
			})
		}
	}
}

// [MQTT-3.1.2-19] If the User Name Flag is set to 1, a user name MUST be
// present in the payload. [MQTT-3.1.2-21] If the Password Flag is set to 1,
// a password MUST be present in the payload. [MQTT-3.1.4-1] A CONNECT that
// does not conform is closed without CONNACK.
func TestMQTT_3_1_2_19_FlaggedFieldsMustBePresent(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	cases := []struct {
		name   string
		flags  byte
		fields []string
	}{
		{"user name missing", 0x82, []string{"id"}},
		{"password missing", 0xC2, []string{"id", "user"}},
		{"will topic missing", 0x06, []string{"id"}},
		{"trailing bytes", 0x02, []string{"id", "extra"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, addr, packet.V311)
			c.sendRaw(rawConnect("MQTT", 4, tc.flags, 60, nil, tc.fields...))
			expectConnectRefused(c)
		})
	}
}

// [MQTT-3.1.2-22] (3.1.1) If the User Name Flag is set to 0 then the
// Password Flag MUST be set to 0. 5.0 lifts this rule (3.1.2.9): a password
// without a user name is accepted.
func TestMQTT_3_1_2_22_PasswordWithoutUserName(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	c := dialRaw(t, addr, packet.V311)
	c.sendRaw(rawConnect("MQTT", 4, 0x42, 60, nil, "id", "pw"))
	expectConnectRefused(c)

	c5 := dialRaw(t, addr, packet.V5)
	c5.sendRaw(rawConnect("MQTT", 5, 0x42, 60, []byte{}, "id5", "pw"))
	if ack := recvAs[*packet.Connack](t, c5); ack.ReasonCode != packet.Success {
		t.Fatalf("5.0 CONNECT with a password and no user name refused: %v", ack.ReasonCode)
	}
}

// [MQTT-3.1.2-24] If the Keep Alive value is non-zero and the Server does
// not receive a Control Packet from the Client within one and a half times
// the Keep Alive time period, it MUST disconnect the Network Connection to
// the Client as if the network had failed (5.0 [MQTT-3.1.2-22]). A Keep
// Alive of zero has the effect of turning off the mechanism (3.1.2.10), and
// any Control Packet, not only PINGREQ, resets the timer.
func TestMQTT_3_1_2_24_KeepAliveRules(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	t.Run("zero means no timeout", func(t *testing.T) {
		t.Parallel()
		for _, v := range allVersions {
			c := dialRaw(t, addr, v)
			ack := c.connect(&packet.Connect{ClientID: "ka0" + v.String(), CleanStart: true, KeepAlive: 0})
			if v == packet.V5 && ack.Properties.ServerKeepAlive != nil {
				t.Fatalf("server keep alive %d imposed on keep alive 0 without a configured maximum", *ack.Properties.ServerKeepAlive)
			}
			defer func() {
				c.expectNothing(10 * time.Millisecond)
				ping(t, c)
			}()
		}
		time.Sleep(2200 * time.Millisecond) // longer than 1.5 x any keep alive >= 1 s
	})
	t.Run("any packet resets the timer", func(t *testing.T) {
		t.Parallel()
		c := dialRaw(t, addr, packet.V311)
		c.connect(&packet.Connect{ClientID: "ka-busy", CleanStart: true, KeepAlive: 1})
		for range 5 {
			time.Sleep(600 * time.Millisecond)
			c.send(&packet.Publish{Topic: "ka/busy", Payload: []byte("x")})
		}
		ping(t, c) // 3 s later, still connected
	})
	for _, v := range []packet.Version{packet.V31, packet.V311} {
		t.Run("timeout closes without DISCONNECT "+v.String(), func(t *testing.T) {
			t.Parallel()
			c := dialRaw(t, addr, v)
			c.connect(&packet.Connect{ClientID: "ka1" + v.String(), CleanStart: true, KeepAlive: 1})
			start := time.Now()
			if got := readToClose(c); len(got) != 0 {
				t.Fatalf("3.x server sent %v before closing", typesOf(got))
			}
			if el := time.Since(start); el < time.Second || el > 4*time.Second {
				t.Fatalf("closed after %v, want about 1.5 s", el)
			}
		})
	}
}

// 5.0 [MQTT-3.2.2-22] If the Server does not send the Server Keep Alive, the
// Server MUST use the Keep Alive value set by the Client on CONNECT.
// [MQTT-3.2.2-21] If it sends one, that value is the keep alive in force.
func TestMQTT_3_2_2_22_KeepAliveInForce(t *testing.T) {
	t.Parallel()
	t.Run("client value", func(t *testing.T) {
		t.Parallel()
		_, addr := startBroker(t, Options{}, nil)
		c := dialRaw(t, addr, packet.V5)
		ack := c.connect(&packet.Connect{ClientID: "client-ka", CleanStart: true, KeepAlive: 1})
		if ack.Properties.ServerKeepAlive != nil {
			t.Fatalf("unexpected server keep alive %d", *ack.Properties.ServerKeepAlive)
		}
		start := time.Now()
		if d := c.expectClosed(); d == nil || d.ReasonCode != packet.KeepAliveTimeout {
			t.Fatalf("want DISCONNECT 0x8D, got %+v", d)
		}
		if el := time.Since(start); el > 4*time.Second {
			t.Fatalf("closed after %v", el)
		}
	})
	t.Run("server value", func(t *testing.T) {
		t.Parallel()
		_, addr := startBroker(t, Options{MaxKeepAlive: 1}, nil)
		c := dialRaw(t, addr, packet.V5)
		ack := c.connect(&packet.Connect{ClientID: "server-ka", CleanStart: true, KeepAlive: 100})
		if ack.Properties.ServerKeepAlive == nil || *ack.Properties.ServerKeepAlive != 1 {
			t.Fatalf("want server keep alive 1, got %+v", ack.Properties.ServerKeepAlive)
		}
		start := time.Now()
		if d := c.expectClosed(); d == nil || d.ReasonCode != packet.KeepAliveTimeout {
			t.Fatalf("want DISCONNECT 0x8D, got %+v", d)
		}
		if el := time.Since(start); el > 4*time.Second {
			t.Fatalf("the server keep alive of 1 s was not enforced: closed after %v", el)
		}
	})
}

// [MQTT-3.1.3-5] The Server MUST allow ClientIds which are between 1 and 23
// UTF-8 encoded bytes in length, and that contain only the characters
// 0-9a-zA-Z; it MAY allow more. [MQTT-3.1.3-2] The ClientId MUST be used by
// Servers to identify state that they hold: the same id finds the session,
// an id differing only in case does not.
func TestMQTT_3_1_3_5_ClientIdentifiers(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	ids := map[string]string{
		"one char":    "a",
		"23 alnum":    "0123456789abcdefghijKLM",
		"24 chars":    "0123456789abcdefghijKLMN",
		"100 chars":   strings.Repeat("x", 100),
		"punctuation": "dev/1:a-b_c.d+e#f $g",
		"utf-8":       "клиент-客户端-🙂",
		"65535 bytes": strings.Repeat("z", 65535),
	}
	for name, id := range ids {
		for _, v := range []packet.Version{packet.V311, packet.V5} {
			if v == packet.V5 && len(id) > 1000 {
				continue
			}
			t.Run(name+"/"+v.String(), func(t *testing.T) {
				id := id + v.String()
				if len(id) > 65535 {
					id = id[:65535]
				}
				c, ack := dialSession(t, addr, v, id, false, 300)
				if ack.SessionPresent {
					t.Fatal("fresh id reported a session")
				}
				disconnect(c)
				c, ack = dialSession(t, addr, v, id, false, 300)
				if !ack.SessionPresent {
					t.Fatal("session not found again by its client id")
				}
				disconnect(c)
				if up := strings.ToUpper(id); up != id {
					c, ack = dialSession(t, addr, v, up, true, 0)
					if ack.SessionPresent {
						t.Fatal("client ids compared case-insensitively")
					}
					disconnect(c)
				}
			})
		}
	}
	// 3.1 has the 23-character limit itself; ids within it are accepted
	c, _ := dialSession(t, addr, packet.V31, "0123456789abcdefghijKLM", true, 0)
	ping(t, c)
}

// [MQTT-3.1.3-4] The ClientId MUST be a UTF-8 encoded string; [MQTT-1.5.3-1]
// ill-formed UTF-8 (including surrogates U+D800..U+DFFF) and [MQTT-1.5.3-2]
// U+0000 make the receiver close the Network Connection.
func TestMQTT_3_1_3_4_ClientIDMustBeValidUTF8(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	for name, id := range map[string]string{
		"ill-formed": "ab\xc3\x28",
		"surrogate":  "ab\xed\xa0\x80",
		"overlong":   "ab\xc0\xaf",
		"U+0000":     "ab\x00cd",
	} {
		for _, v := range []packet.Version{packet.V311, packet.V5} {
			t.Run(name+"/"+v.String(), func(t *testing.T) {
				c := dialRaw(t, addr, v)
				c.sendRaw(rawConnect("MQTT", byte(v), 0x02, 60, propsFor(v), id))
				expectConnectRefused(c, packet.MalformedPacket, packet.ClientIdentifierNotValid)
			})
		}
	}
}

// [MQTT-3.1.3-6] A Server MAY allow a Client to supply a ClientId that has a
// length of zero bytes; if it does so the Server MUST treat this as a
// special case and assign a unique ClientId to that Client. 5.0
// [MQTT-3.2.2-16]: the Assigned Client Identifier MUST be a new identifier
// not used by any other Session; 5.0 allows it with Clean Start 0 too.
func TestMQTT_3_1_3_6_ZeroLengthClientIDIsUnique(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	t.Run("3.1.1", func(t *testing.T) {
		a := dialRaw(t, addr, packet.V311)
		if ack := a.connect(&packet.Connect{CleanStart: true, KeepAlive: 60}); ack.ReasonCode != packet.Success || ack.SessionPresent {
			t.Fatalf("got %+v", ack)
		}
		b := dialRaw(t, addr, packet.V311)
		b.connect(&packet.Connect{CleanStart: true, KeepAlive: 60})
		// neither took the other over
		ping(t, a)
		ping(t, b)
		a.subscribe(1, packet.Subscription{Filter: "anon"})
		b.send(&packet.Publish{Topic: "anon", Payload: []byte("x")})
		a.recvPublish()
	})
	t.Run("5.0", func(t *testing.T) {
		seen := map[string]bool{}
		var clients []*rawClient
		for i := range 5 {
			c := dialRaw(t, addr, packet.V5)
			ack := c.connect(&packet.Connect{CleanStart: i%2 == 0, KeepAlive: 60})
			id := ack.Properties.AssignedClientID
			if ack.ReasonCode != packet.Success || ack.SessionPresent || id == "" || seen[id] {
				t.Fatalf("connection %d: %+v (assigned %q)", i, ack, id)
			}
			seen[id] = true
			clients = append(clients, c)
		}
		for _, c := range clients {
			ping(t, c)
		}
		// a client that names its id is not told one
		c := dialRaw(t, addr, packet.V5)
		if ack := c.connect(&packet.Connect{ClientID: "named", CleanStart: true}); ack.Properties.AssignedClientID != "" {
			t.Fatalf("assigned client id %q to a client that sent one", ack.Properties.AssignedClientID)
		}
	})
}

// [MQTT-3.1.4-2] If the ClientId represents a Client already connected to
// the Server then the Server MUST disconnect the existing Client. The
// session itself carries over when the new connection has CleanSession 0.
func TestMQTT_3_1_4_2_ExistingClientDisconnected(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	for _, v := range []packet.Version{packet.V31, packet.V311} {
		t.Run(v.String(), func(t *testing.T) {
			id := "taken" + v.String()
			topic := "taken/" + v.String()
			old, _ := dialSession(t, addr, v, id, false, 0)
			old.subscribe(1, packet.Subscription{Filter: topic, QoS: 1})
			c, ack := dialSession(t, addr, v, id, false, 0)
			if got := readToClose(old); len(got) != 0 {
				t.Fatalf("3.x client sent %v on takeover", typesOf(got))
			}
			if v == packet.V311 && !ack.SessionPresent {
				t.Fatal("session present 0 after takeover of a persistent session")
			}
			pub := connected(t, addr, v, "pub-"+id)
			pub.send(&packet.Publish{Topic: topic, Payload: []byte("to new")})
			if m := c.recvPublish(); string(m.Payload) != "to new" {
				t.Fatalf("got %+v", m)
			}
		})
	}
}

// [MQTT-3.1.4-5] If the Server rejects the CONNECT, it MUST NOT process any
// data sent by the Client after the CONNECT Packet. [MQTT-3.2.2-4] A CONNACK
// with a non-zero return code MUST set Session Present to 0 and
// [MQTT-3.2.2-5] the Server MUST then close the Network Connection
// (5.0 [MQTT-3.1.4-6], [MQTT-3.2.2-6], [MQTT-3.2.2-7]).
func TestMQTT_3_1_4_5_RejectedConnectProcessesNothing(t *testing.T) {
	t.Parallel()
	auth := authnFunc(func(c *ClientInfo) error {
		if string(c.Password) == "secret" {
			return nil
		}
		return packet.BadUsernameOrPassword
	})
	_, addr := startBroker(t, Options{}, &ListenerOptions{Name: "auth", Authenticator: auth})
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		t.Run(v.String(), func(t *testing.T) {
			id := "rejected" + v.String()
			topic := "rejected/" + v.String()
			// a stored session for the id, so Session Present could be 1
			good := dialRaw(t, addr, v)
			cp := &packet.Connect{ClientID: id, KeepAlive: 60, UsernameFlag: true, Username: "u", PasswordFlag: true, Password: []byte("secret")}
			if v == packet.V5 {
				cp.Properties.SessionExpiry = new(uint32(300))
			}
			if ack := good.connect(cp); ack.ReasonCode != packet.Success {
				t.Fatal(ack.ReasonCode)
			}
			disconnect(good)

			bad := dialRaw(t, addr, v)
			cp.Password = []byte("wrong")
			cp.ProtocolName, cp.Version = "MQTT", v
			b1, _ := packet.Encode(cp, v)
			b2, _ := packet.Encode(&packet.Publish{Topic: topic, Retain: true, Payload: []byte("must not be stored")}, v)
			b3, _ := packet.Encode(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "#"}}}, v)
			bad.sendRaw(append(append(b1, b2...), b3...))
			got := readToClose(bad)
			if len(got) != 1 {
				t.Fatalf("want one CONNACK then close, got %v", typesOf(got))
			}
			ack, ok := got[0].(*packet.Connack)
			if !ok || ack.ReasonCode != packet.BadUsernameOrPassword || ack.SessionPresent {
				t.Fatalf("want CONNACK bad user name or password with session present 0, got %+v", got[0])
			}
			sub := dialRaw(t, addr, v)
			sub.connect(&packet.Connect{ClientID: "sub" + id, CleanStart: true, Username: "u", UsernameFlag: true, PasswordFlag: true, Password: []byte("secret")})
			sub.subscribe(1, packet.Subscription{Filter: topic})
			sub.expectNothing(200 * time.Millisecond)
		})
	}
}

// [MQTT-3.2.0-1] The first packet sent from the Server to the Client MUST be
// a CONNACK Packet, even when the session has messages waiting.
func TestMQTT_3_2_0_1_ConnackFirstEvenWithQueuedMessages(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	for _, v := range allVersions {
		t.Run(v.String(), func(t *testing.T) {
			id := "first" + v.String()
			topic := "first/" + v.String()
			c, _ := dialSession(t, addr, v, id, false, 300)
			c.subscribe(1, packet.Subscription{Filter: topic, QoS: 1})
			pub := connected(t, addr, v, "pub"+id)
			publishQoS(t, pub, &packet.Publish{Topic: topic, QoS: 1, PacketID: 1, Payload: []byte("inflight")})
			c.recvPublish() // left unacknowledged
			c.nc.Close()
			for i := range 3 {
				publishQoS(t, pub, &packet.Publish{Topic: topic, QoS: 1, PacketID: uint16(2 + i), Payload: []byte("queued")})
			}
			c = dialRaw(t, addr, v)
			cp := &packet.Connect{ProtocolName: "MQTT", Version: v, ClientID: id, KeepAlive: 60}
			if v == packet.V31 {
				cp.ProtocolName = "MQIsdp"
			}
			if v == packet.V5 {
				cp.Properties.SessionExpiry = new(uint32(300))
			}
			c.send(cp)
			if _, ok := c.recv().(*packet.Connack); !ok {
				t.Fatal("first packet is not CONNACK")
			}
			for range 4 {
				c.recvPublish()
			}
		})
	}
}

// [MQTT-3.2.2-1] With CleanSession 1 the Server MUST set Session Present to
// 0. [MQTT-3.2.2-2] With CleanSession 0 and stored Session state it MUST set
// Session Present to 1. [MQTT-3.2.2-3] Without stored state, 0
// (5.0 [MQTT-3.2.2-2], [MQTT-3.2.2-3]). In 5.0 a session whose expiry was 0
// is not stored [MQTT-3.1.2-23].
func TestMQTT_3_2_2_1_SessionPresentFlag(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		t.Run(v.String(), func(t *testing.T) {
			id := "present" + v.String()
			steps := []struct {
				clean                bool
				expiry               uint32
				present311, present5 bool
			}{
				{false, 300, false, false}, // nothing stored yet
				{false, 300, true, true},   // stored by the previous connection
				{true, 300, false, false},  // clean start discards it; in 3.1.1 the new one ends with the connection
				{false, 300, false, true},  // 5.0 kept the clean-start session (expiry 300)
				{false, 0, true, true},     // stored; in 5.0 this connection does not keep it
			}
			for i, s := range steps {
				c, ack := dialSession(t, addr, v, id, s.clean, s.expiry)
				want := s.present5
				if v != packet.V5 {
					want = s.present311
				}
				if ack.SessionPresent != want {
					t.Fatalf("step %d: session present %v, want %v", i, ack.SessionPresent, want)
				}
				disconnect(c)
			}
			if v == packet.V5 {
				_, ack := dialSession(t, addr, v, id, false, 0)
				if ack.SessionPresent {
					t.Fatal("session with expiry 0 outlived its connection")
				}
			}
		})
	}
}

// ---- helpers shared by the conformance_*_test.go files ----

// authzFunc is an Authorizer made of a function.
type authzFunc func(topic string, a Access) bool

func (f authzFunc) Authorize(_ context.Context, _ *ClientInfo, topic string, a Access) bool {
	return f(topic, a)
}

// authnFunc is an Authenticator made of a function.
type authnFunc func(c *ClientInfo) error

func (f authnFunc) Authenticate(_ context.Context, c *ClientInfo) error { return f(c) }

// frame prepends a fixed header to body.
func frame(first byte, body []byte) []byte {
	return append(appendVarint([]byte{first}, len(body)), body...)
}

func appendVarint(dst []byte, n int) []byte {
	for {
		b := byte(n & 0x7F)
		n >>= 7
		if n > 0 {
			b |= 0x80
		}
		dst = append(dst, b)
		if n == 0 {
			return dst
		}
	}
}

func appendStr(dst []byte, s string) []byte {
	dst = append(dst, byte(len(s)>>8), byte(len(s)))
	return append(dst, s...)
}

// rawConnect builds a CONNECT by hand so a test can set any flag. props is
// the MQTT 5 property block without its length; nil leaves the block out
// (3.x). fields are the payload strings in order.
func rawConnect(name string, level, flags byte, keepAlive uint16, props []byte, fields ...string) []byte {
	body := appendStr(nil, name)
	body = append(body, level, flags, byte(keepAlive>>8), byte(keepAlive))
	if props != nil {
		body = appendVarint(body, len(props))
		body = append(body, props...)
	}
	for _, f := range fields {
		body = appendStr(body, f)
	}
	return frame(0x10, body)
}

// propsFor returns an empty MQTT 5 property block for 5.0, nil otherwise.
func propsFor(v packet.Version) []byte {
	if v == packet.V5 {
		return []byte{}
	}
	return nil
}

// readToClose returns every packet received until the server closes the
// connection; it fails if the connection stays open for 5 s.
func readToClose(c *rawClient) []packet.Packet {
	c.t.Helper()
	var got []packet.Packet
	for {
		p, err := c.tryRecv(5 * time.Second)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				c.t.Fatalf("connection still open after %v", typesOf(got))
			}
			return got
		}
		got = append(got, p)
	}
}

func typesOf(ps []packet.Packet) []string {
	var s []string
	for _, p := range ps {
		s = append(s, p.Type().String())
	}
	return s
}

// expectConnectRefused checks that a bad CONNECT is answered by closing the
// connection. A 3.x client must get no CONNACK [MQTT-3.1.4-1]; a 5.0 client
// may get a CONNACK whose reason is one of codes (any failure when codes is
// empty), and never a DISCONNECT [MQTT-3.14.0-1].
func expectConnectRefused(c *rawClient, codes ...packet.ReasonCode) {
	c.t.Helper()
	got := readToClose(c)
	if len(got) == 0 {
		return
	}
	ack, ok := got[0].(*packet.Connack)
	if c.v != packet.V5 || len(got) > 1 || !ok || !ack.ReasonCode.IsError() || ack.SessionPresent ||
		(len(codes) > 0 && !slices.Contains(codes, ack.ReasonCode)) {
		c.t.Fatalf("want the connection closed (5.0: optionally after CONNACK %v), got %v %+v", codes, typesOf(got), got[0])
	}
}

// expectViolation checks that the server closes the connection after a
// protocol violation. A 5.0 client must first get a DISCONNECT whose reason
// is one of codes (when codes are given) [MQTT-4.13.1-1]; a 3.x client gets
// nothing.
func expectViolation(c *rawClient, codes ...packet.ReasonCode) {
	c.t.Helper()
	got := readToClose(c)
	var d *packet.Disconnect
	for _, p := range got {
		if dp, ok := p.(*packet.Disconnect); ok && c.v == packet.V5 && d == nil {
			d = dp
			continue
		}
		c.t.Fatalf("unexpected %T %+v before close (all: %v)", p, p, typesOf(got))
	}
	if c.v == packet.V5 && len(codes) > 0 {
		if d == nil {
			c.t.Fatalf("closed without DISCONNECT, want reason %v", codes)
		}
		if !slices.Contains(codes, d.ReasonCode) {
			c.t.Fatalf("DISCONNECT reason %v (0x%02X), want one of %v", d.ReasonCode, byte(d.ReasonCode), codes)
		}
	}
}

// recvAs reads the next packet and fails unless it is a T.
func recvAs[T packet.Packet](t testing.TB, c *rawClient) T {
	t.Helper()
	p := c.recv()
	v, ok := p.(T)
	if !ok {
		t.Fatalf("want %T, got %T %+v", *new(T), p, p)
	}
	return v
}

// ping sends PINGREQ and expects PINGRESP as the very next packet; as the
// server handles a connection's packets in order, everything sent before
// has then been processed.
func ping(t testing.TB, c *rawClient) {
	t.Helper()
	c.send(&packet.Pingreq{})
	recvAs[*packet.Pingresp](t, c)
}

// dialSession connects with the given clean flag; for 5.0 expiry is the
// session expiry interval (0 leaves it out).
func dialSession(t testing.TB, addr string, v packet.Version, id string, clean bool, expiry uint32) (*rawClient, *packet.Connack) {
	t.Helper()
	c := dialRaw(t, addr, v)
	cp := &packet.Connect{ClientID: id, CleanStart: clean, KeepAlive: 60}
	if v == packet.V5 && expiry > 0 {
		cp.Properties.SessionExpiry = new(expiry)
	}
	ack := c.connect(cp)
	if ack.ReasonCode != packet.Success {
		t.Fatalf("connect %s: %v", id, ack.ReasonCode)
	}
	return c, ack
}

// disconnect ends a connection normally and waits for the server to close.
func disconnect(c *rawClient) {
	c.t.Helper()
	c.send(&packet.Disconnect{})
	c.expectClosed()
}

// publishQoS publishes p from a client without subscriptions and completes
// its acknowledgement flow, so the server has routed it on return.
func publishQoS(t testing.TB, c *rawClient, p *packet.Publish) packet.ReasonCode {
	t.Helper()
	c.send(p)
	switch p.QoS {
	case 0:
		ping(t, c)
	case 1:
		a := recvAs[*packet.Puback](t, c)
		if a.PacketID != p.PacketID {
			t.Fatalf("PUBACK for %d, want %d", a.PacketID, p.PacketID)
		}
		return a.ReasonCode
	case 2:
		r := recvAs[*packet.Pubrec](t, c)
		if r.PacketID != p.PacketID {
			t.Fatalf("PUBREC for %d, want %d", r.PacketID, p.PacketID)
		}
		if r.ReasonCode.IsError() {
			return r.ReasonCode
		}
		c.send(&packet.Pubrel{PacketID: p.PacketID})
		if pc := recvAs[*packet.Pubcomp](t, c); pc.PacketID != p.PacketID || pc.ReasonCode != packet.Success {
			t.Fatalf("PUBCOMP %+v", pc)
		}
		return r.ReasonCode
	}
	return packet.Success
}

// ackPublish completes the flow of a PUBLISH received from the server.
func ackPublish(t testing.TB, c *rawClient, m *packet.Publish) {
	t.Helper()
	switch m.QoS {
	case 1:
		c.send(&packet.Puback{PacketID: m.PacketID})
	case 2:
		c.send(&packet.Pubrec{PacketID: m.PacketID})
		if r := recvAs[*packet.Pubrel](t, c); r.PacketID != m.PacketID {
			t.Fatalf("PUBREL for %d, want %d", r.PacketID, m.PacketID)
		}
		c.send(&packet.Pubcomp{PacketID: m.PacketID})
	}
}

// [MQTT-3.1.3-2] The ClientId identifies the session whatever protocol
// version the client connects with: a 3.1.1 session resumes on a 5.0
// connection and back, with its subscriptions and queued messages.
func TestMQTT_3_1_3_2_SessionResumesAcrossVersions(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	pub := connected(t, addr, packet.V311, "pub")
	c, _ := dialSession(t, addr, packet.V311, "cross", false, 0)
	c.subscribe(1, packet.Subscription{Filter: "cross", QoS: 1})
	disconnect(c)
	publishQoS(t, pub, &packet.Publish{Topic: "cross", QoS: 1, PacketID: 1, Payload: []byte("to 5.0")})
	c, ack := dialSession(t, addr, packet.V5, "cross", false, 300)
	if !ack.SessionPresent {
		t.Fatal("3.1.1 session not found by a 5.0 connection")
	}
	m := c.recvPublish()
	if string(m.Payload) != "to 5.0" {
		t.Fatalf("got %+v", m)
	}
	ackPublish(t, c, m)
	disconnect(c)
	publishQoS(t, pub, &packet.Publish{Topic: "cross", QoS: 1, PacketID: 2, Payload: []byte("to 3.1.1")})
	c, ack = dialSession(t, addr, packet.V311, "cross", false, 0)
	if !ack.SessionPresent {
		t.Fatal("5.0 session not found by a 3.1.1 connection")
	}
	if m := c.recvPublish(); string(m.Payload) != "to 3.1.1" {
		t.Fatalf("got %+v", m)
	}
}

// 3.1.4: if the Server does not receive a CONNECT within a reasonable
// amount of time after the Network Connection is established, it SHOULD
// close the connection.
func TestMQTT_3_1_4_ConnectTimeout(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{ConnectTimeout: 300 * time.Millisecond}, nil)
	c := dialRaw(t, addr, packet.V311)
	start := time.Now()
	if got := readToClose(c); len(got) != 0 {
		t.Fatalf("got %v", typesOf(got))
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("closed after %v", el)
	}
}
