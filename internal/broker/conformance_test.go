package broker

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/starlingmq/starling/internal/packet"
)

var allVersions = []packet.Version{packet.V31, packet.V311, packet.V5}

func TestMQTT_3_1_0_1_FirstPacketMustBeConnect(t *testing.T) {
	_, addr := startBroker(t, Options{}, nil)
	c := dialRaw(t, addr, packet.V311)
	c.send(&packet.Pingreq{})
	c.expectClosed()
}

func TestMQTT_3_1_0_2_SecondConnectIsProtocolError(t *testing.T) {
	_, addr := startBroker(t, Options{}, nil)
	c := connected(t, addr, packet.V5, "twice")
	c.send(&packet.Connect{ProtocolName: "MQTT", Version: packet.V5, ClientID: "twice", CleanStart: true})
	d := c.expectClosed()
	if d == nil || d.ReasonCode != packet.ProtocolError {
		t.Fatalf("want DISCONNECT protocol error, got %+v", d)
	}
}

func TestMQTT_3_1_2_2_UnsupportedProtocolLevel(t *testing.T) {
	_, addr := startBroker(t, Options{}, nil)
	c := dialRaw(t, addr, packet.V311)
	// CONNECT, protocol "MQTT" level 9, clean session, keep alive 60, client id "x"
	c.sendRaw([]byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 9, 0x02, 0, 60, 0, 1, 'x'})
	ack, ok := c.recv().(*packet.Connack)
	if !ok || ack.ReasonCode != packet.UnsupportedProtocolVersion {
		t.Fatalf("want CONNACK return code 1, got %+v", ack)
	}
	c.expectClosed()
}

func TestMQTT_3_1_3_8_EmptyClientIDWithoutCleanSession(t *testing.T) {
	_, addr := startBroker(t, Options{}, nil)
	c := dialRaw(t, addr, packet.V311)
	ack := c.connect(&packet.Connect{ClientID: "", CleanStart: false})
	if ack.ReasonCode != packet.ClientIdentifierNotValid {
		t.Fatalf("got %v", ack.ReasonCode)
	}
}

func TestMQTT_3_2_2_AssignedClientIdentifier(t *testing.T) {
	_, addr := startBroker(t, Options{}, nil)
	c := dialRaw(t, addr, packet.V5)
	ack := c.connect(&packet.Connect{CleanStart: true})
	if ack.ReasonCode != packet.Success || ack.Properties.AssignedClientID == "" {
		t.Fatalf("got %+v", ack)
	}
}

func TestMQTT_3_1_4_3_SessionTakenOver(t *testing.T) {
	_, addr := startBroker(t, Options{}, nil)
	old := connected(t, addr, packet.V5, "dup-id")
	connected(t, addr, packet.V5, "dup-id")
	d := old.expectClosed()
	if d == nil || d.ReasonCode != packet.SessionTakenOver {
		t.Fatalf("want DISCONNECT 0x8E, got %+v", d)
	}
}

func TestPublishSubscribeEveryQoSAndVersion(t *testing.T) {
	_, addr := startBroker(t, Options{}, nil)
	for _, v := range allVersions {
		for qos := byte(0); qos <= 2; qos++ {
			t.Run(fmt.Sprintf("%v/qos%d", v, qos), func(t *testing.T) {
				sub := connected(t, addr, v, fmt.Sprintf("sub-%d-%d", v, qos))
				if sa := sub.subscribe(1, packet.Subscription{Filter: "t/+", QoS: 2}); sa.ReasonCodes[0] != packet.GrantedQoS2 {
					t.Fatalf("suback %v", sa.ReasonCodes)
				}
				pub := connected(t, addr, v, fmt.Sprintf("pub-%d-%d", v, qos))
				topic := fmt.Sprintf("t/%d%d", v, qos)
				pub.send(&packet.Publish{Topic: topic, QoS: qos, PacketID: 7, Payload: []byte("hello")})
				switch qos {
				case 1:
					if a, ok := pub.recv().(*packet.Puback); !ok || a.PacketID != 7 {
						t.Fatalf("want PUBACK 7, got %+v", a)
					}
				case 2:
					if a, ok := pub.recv().(*packet.Pubrec); !ok || a.PacketID != 7 {
						t.Fatalf("want PUBREC 7, got %+v", a)
					}
					pub.send(&packet.Pubrel{PacketID: 7})
					if a, ok := pub.recv().(*packet.Pubcomp); !ok || a.PacketID != 7 {
						t.Fatalf("want PUBCOMP 7, got %+v", a)
					}
				}
				m := sub.recvPublish()
				if m.Topic != topic || string(m.Payload) != "hello" || m.QoS != qos || m.Retain {
					t.Fatalf("got %+v", m)
				}
				switch qos {
				case 1:
					sub.send(&packet.Puback{PacketID: m.PacketID})
				case 2:
					sub.send(&packet.Pubrec{PacketID: m.PacketID})
					if r, ok := sub.recv().(*packet.Pubrel); !ok || r.PacketID != m.PacketID {
						t.Fatalf("want PUBREL, got %+v", r)
					}
					sub.send(&packet.Pubcomp{PacketID: m.PacketID})
				}
			})
		}
	}
}

func TestMQTT_4_3_3_QoS2DeliveredOnceDespiteRepeatedPublish(t *testing.T) {
	_, addr := startBroker(t, Options{}, nil)
	sub := connected(t, addr, packet.V311, "sub")
	sub.subscribe(1, packet.Subscription{Filter: "q2", QoS: 0})
	pub := connected(t, addr, packet.V311, "pub")
	for range 3 {
		pub.send(&packet.Publish{Topic: "q2", QoS: 2, PacketID: 9, Dup: true, Payload: []byte("x")})
		if _, ok := pub.recv().(*packet.Pubrec); !ok {
			t.Fatal("want PUBREC")
		}
	}
	pub.send(&packet.Pubrel{PacketID: 9})
	pub.recv()
	sub.recvPublish()
	sub.expectNothing(200 * time.Millisecond)
}

func TestMQTT_3_3_1_RetainedMessages(t *testing.T) {
	_, addr := startBroker(t, Options{}, nil)
	pub := connected(t, addr, packet.V311, "pub")
	pub.send(&packet.Publish{Topic: "r/1", Retain: true, Payload: []byte("one")})
	pub.send(&packet.Publish{Topic: "r/2", Retain: true, QoS: 1, PacketID: 1, Payload: []byte("two")})
	pub.recv()
	sub := connected(t, addr, packet.V311, "sub")
	sub.subscribe(1, packet.Subscription{Filter: "r/#", QoS: 1})
	got := map[string]bool{}
	for range 2 {
		m := sub.recvPublish()
		if !m.Retain { // [MQTT-3.3.1-8]
			t.Fatalf("retained message without retain flag: %+v", m)
		}
		got[m.Topic] = true
		if m.QoS == 1 {
			sub.send(&packet.Puback{PacketID: m.PacketID})
		}
	}
	if !got["r/1"] || !got["r/2"] {
		t.Fatalf("got %v", got)
	}
	// A live message to a subscriber carries retain 0 [MQTT-3.3.1-9]
	pub.send(&packet.Publish{Topic: "r/1", Retain: true, Payload: []byte("again")})
	if m := sub.recvPublish(); m.Retain {
		t.Fatal("retain flag set on a live delivery")
	}
	// An empty retained payload deletes [MQTT-3.3.1-10/11]
	pub.send(&packet.Publish{Topic: "r/1", Retain: true})
	sub.recvPublish()
	sub2 := connected(t, addr, packet.V311, "sub2")
	sub2.subscribe(1, packet.Subscription{Filter: "r/1"})
	sub2.expectNothing(200 * time.Millisecond)
}

func TestMQTT_3_1_2_8_WillOnAbnormalClose(t *testing.T) {
	_, addr := startBroker(t, Options{}, nil)
	for _, v := range allVersions {
		t.Run(v.String(), func(t *testing.T) {
			sub := connected(t, addr, v, "will-sub")
			sub.subscribe(1, packet.Subscription{Filter: "will/#"})
			c := dialRaw(t, addr, v)
			c.connect(&packet.Connect{ClientID: "dying", CleanStart: true, Will: &packet.Will{Topic: "will/x", Payload: []byte("gone")}})
			c.nc.Close()
			if m := sub.recvPublish(); m.Topic != "will/x" || string(m.Payload) != "gone" {
				t.Fatalf("got %+v", m)
			}
			// [MQTT-3.1.2-10] a normal DISCONNECT discards the will
			c = dialRaw(t, addr, v)
			c.connect(&packet.Connect{ClientID: "leaving", CleanStart: true, Will: &packet.Will{Topic: "will/y", Payload: []byte("no")}})
			c.send(&packet.Disconnect{})
			c.expectClosed()
			sub.expectNothing(200 * time.Millisecond)
		})
	}
}

func TestMQTT_3_1_3_9_WillDelayEndsWithSession(t *testing.T) {
	_, addr := startBroker(t, Options{}, nil)
	sub := connected(t, addr, packet.V5, "sub")
	sub.subscribe(1, packet.Subscription{Filter: "w"})
	c := dialRaw(t, addr, packet.V5)
	w := &packet.Will{Topic: "w", Payload: []byte("x"), Properties: packet.Properties{WillDelay: new(uint32(3600))}}
	c.connect(&packet.Connect{ClientID: "d", CleanStart: true, Will: w,
		Properties: packet.Properties{SessionExpiry: new(uint32(1))}})
	c.nc.Close()
	start := time.Now()
	sub.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	m := sub.recvPublish()
	if m.Topic != "w" {
		t.Fatalf("got %+v", m)
	}
	if el := time.Since(start); el > 4*time.Second {
		t.Fatalf("will took %v; the session expired after 1 s", el)
	}
}

func TestWillDelayCancelledByReconnect(t *testing.T) {
	_, addr := startBroker(t, Options{}, nil)
	sub := connected(t, addr, packet.V5, "sub")
	sub.subscribe(1, packet.Subscription{Filter: "w"})
	c := dialRaw(t, addr, packet.V5)
	w := &packet.Will{Topic: "w", Payload: []byte("x"), Properties: packet.Properties{WillDelay: new(uint32(2))}}
	c.connect(&packet.Connect{ClientID: "d", CleanStart: true, Will: w,
		Properties: packet.Properties{SessionExpiry: new(uint32(60))}})
	c.nc.Close()
	c2 := dialRaw(t, addr, packet.V5)
	if ack := c2.connect(&packet.Connect{ClientID: "d", Properties: packet.Properties{SessionExpiry: new(uint32(60))}}); !ack.SessionPresent {
		t.Fatal("session not present")
	}
	sub.expectNothing(3 * time.Second)
}

func TestPersistentSessionQueuesWhileOffline(t *testing.T) {
	_, addr := startBroker(t, Options{}, nil)
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		t.Run(v.String(), func(t *testing.T) {
			id := "persist-" + v.String()
			cp := func() *packet.Connect {
				c := &packet.Connect{ClientID: id, CleanStart: false, KeepAlive: 60}
				if v == packet.V5 {
					c.Properties.SessionExpiry = new(uint32(300))
				}
				return c
			}
			c := dialRaw(t, addr, v)
			if ack := c.connect(cp()); ack.SessionPresent {
				t.Fatal("fresh session reported present")
			}
			c.subscribe(1, packet.Subscription{Filter: "p/" + v.String(), QoS: 1})
			c.send(&packet.Disconnect{})
			c.expectClosed()
			pub := connected(t, addr, v, "pub-"+id)
			for i := range 5 {
				pub.send(&packet.Publish{Topic: "p/" + v.String(), QoS: 1, PacketID: uint16(i + 1), Payload: []byte{byte(i)}})
				pub.recv()
			}
			c = dialRaw(t, addr, v)
			if ack := c.connect(cp()); !ack.SessionPresent {
				t.Fatal("session not present")
			}
			for i := range 5 {
				m := c.recvPublish()
				if m.Payload[0] != byte(i) || m.QoS != 1 {
					t.Fatalf("message %d: got %+v", i, m)
				}
				c.send(&packet.Puback{PacketID: m.PacketID})
			}
		})
	}
}

func TestMQTT_4_4_0_1_InflightResentWithDup(t *testing.T) {
	_, addr := startBroker(t, Options{}, nil)
	c := dialRaw(t, addr, packet.V311)
	c.connect(&packet.Connect{ClientID: "s", CleanStart: false})
	c.subscribe(1, packet.Subscription{Filter: "d", QoS: 2})
	pub := connected(t, addr, packet.V311, "p")
	pub.send(&packet.Publish{Topic: "d", QoS: 1, PacketID: 1, Payload: []byte("a")})
	pub.send(&packet.Publish{Topic: "d", QoS: 2, PacketID: 2, Payload: []byte("b")})
	first := c.recvPublish()
	second := c.recvPublish()
	c.nc.Close() // no acks
	c = dialRaw(t, addr, packet.V311)
	if ack := c.connect(&packet.Connect{ClientID: "s", CleanStart: false}); !ack.SessionPresent {
		t.Fatal("no session")
	}
	for _, want := range []*packet.Publish{first, second} {
		m := c.recvPublish()
		if !m.Dup || m.PacketID != want.PacketID || string(m.Payload) != string(want.Payload) {
			t.Fatalf("got %+v, want a DUP of %+v", m, want)
		}
	}
	// QoS 2: PUBREC then PUBREL resent after another reconnect
	c.send(&packet.Puback{PacketID: first.PacketID})
	c.send(&packet.Pubrec{PacketID: second.PacketID})
	if r, ok := c.recv().(*packet.Pubrel); !ok || r.PacketID != second.PacketID {
		t.Fatalf("want PUBREL, got %+v", r)
	}
	c.nc.Close()
	c = dialRaw(t, addr, packet.V311)
	c.connect(&packet.Connect{ClientID: "s", CleanStart: false})
	if r, ok := c.recv().(*packet.Pubrel); !ok || r.PacketID != second.PacketID {
		t.Fatalf("want PUBREL again, got %+v", r)
	}
	c.send(&packet.Pubcomp{PacketID: second.PacketID})
	c.expectNothing(200 * time.Millisecond)
}

func TestMQTT_3_3_4_3_OverlappingSubscriptionsOneCopy(t *testing.T) {
	_, addr := startBroker(t, Options{}, nil)
	sub := connected(t, addr, packet.V5, "sub")
	sub.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "a/+", QoS: 0}},
		Properties: packet.Properties{SubscriptionIDs: []int{1}}})
	sub.recv()
	sub.send(&packet.Subscribe{PacketID: 2, Subscriptions: []packet.Subscription{{Filter: "a/#", QoS: 1}},
		Properties: packet.Properties{SubscriptionIDs: []int{2}}})
	sub.recv()
	pub := connected(t, addr, packet.V5, "pub")
	pub.send(&packet.Publish{Topic: "a/b", QoS: 1, PacketID: 1, Payload: []byte("x")})
	m := sub.recvPublish()
	ids := slices.Sorted(slices.Values(m.Properties.SubscriptionIDs))
	if m.QoS != 1 || !slices.Equal(ids, []int{1, 2}) {
		t.Fatalf("want one copy at QoS 1 with ids 1,2; got QoS %d ids %v", m.QoS, m.Properties.SubscriptionIDs)
	}
	sub.send(&packet.Puback{PacketID: m.PacketID})
	sub.expectNothing(200 * time.Millisecond)
}

func TestMQTT_3_8_3_3_NoLocal(t *testing.T) {
	_, addr := startBroker(t, Options{}, nil)
	c := connected(t, addr, packet.V5, "self")
	c.subscribe(1, packet.Subscription{Filter: "nl", NoLocal: true})
	c.send(&packet.Publish{Topic: "nl", Payload: []byte("x")})
	c.expectNothing(200 * time.Millisecond)
	other := connected(t, addr, packet.V5, "other")
	other.send(&packet.Publish{Topic: "nl", Payload: []byte("y")})
	if m := c.recvPublish(); string(m.Payload) != "y" {
		t.Fatalf("got %+v", m)
	}
}

func TestMQTT_3_3_1_12_RetainAsPublished(t *testing.T) {
	_, addr := startBroker(t, Options{}, nil)
	c := connected(t, addr, packet.V5, "rap")
	c.subscribe(1, packet.Subscription{Filter: "rap/1", RetainAsPublished: true}, packet.Subscription{Filter: "rap/2"})
	pub := connected(t, addr, packet.V5, "p")
	pub.send(&packet.Publish{Topic: "rap/1", Retain: true, Payload: []byte("x")})
	if m := c.recvPublish(); !m.Retain {
		t.Fatal("retain as published: flag cleared")
	}
	pub.send(&packet.Publish{Topic: "rap/2", Retain: true, Payload: []byte("x")})
	if m := c.recvPublish(); m.Retain {
		t.Fatal("retain flag kept without retain as published")
	}
}

func TestMQTT_3_3_1_10_RetainHandling(t *testing.T) {
	_, addr := startBroker(t, Options{}, nil)
	pub := connected(t, addr, packet.V5, "p")
	pub.send(&packet.Publish{Topic: "rh", Retain: true, QoS: 1, PacketID: 1, Payload: []byte("x")})
	pub.recv() // stored before anyone subscribes
	c := connected(t, addr, packet.V5, "c")
	c.subscribe(1, packet.Subscription{Filter: "rh", RetainHandling: 2})
	c.expectNothing(200 * time.Millisecond)
	c.subscribe(2, packet.Subscription{Filter: "rh", RetainHandling: 1}) // existed already: nothing
	c.expectNothing(200 * time.Millisecond)
	c.subscribe(3, packet.Subscription{Filter: "rh/#", RetainHandling: 1}) // new: sent
	if m := c.recvPublish(); !m.Retain {
		t.Fatal("want retained message")
	}
	c.subscribe(4, packet.Subscription{Filter: "rh/#", RetainHandling: 0}) // always sent
	if m := c.recvPublish(); !m.Retain {
		t.Fatal("want retained message")
	}
}

func TestMQTT_4_8_2_SharedSubscriptions(t *testing.T) {
	_, addr := startBroker(t, Options{}, nil)
	a := connected(t, addr, packet.V5, "a")
	b := connected(t, addr, packet.V311, "b")
	a.subscribe(1, packet.Subscription{Filter: "$share/g/s/#"})
	b.subscribe(1, packet.Subscription{Filter: "$share/g/s/#"})
	pub := connected(t, addr, packet.V5, "p")
	const n = 100
	for i := range n {
		pub.send(&packet.Publish{Topic: "s/x", Payload: []byte{byte(i)}})
	}
	count := func(c *rawClient) int {
		k := 0
		for {
			if _, err := c.tryRecv(300 * time.Millisecond); err != nil {
				return k
			}
			k++
		}
	}
	na, nb := count(a), count(b)
	if na+nb != n || na == 0 || nb == 0 {
		t.Fatalf("a got %d, b got %d; want %d in all, split", na, nb, n)
	}
}

func TestMQTT_4_7_2_1_WildcardsDoNotMatchSys(t *testing.T) {
	_, addr := startBroker(t, Options{SysInterval: 100 * time.Millisecond}, nil)
	all := connected(t, addr, packet.V311, "all")
	all.subscribe(1, packet.Subscription{Filter: "#"}, packet.Subscription{Filter: "+/broker/#"})
	all.expectNothing(400 * time.Millisecond)
	sys := connected(t, addr, packet.V311, "sys")
	sys.subscribe(1, packet.Subscription{Filter: "$SYS/broker/version"})
	if m := sys.recvPublish(); m.Topic != "$SYS/broker/version" {
		t.Fatalf("got %+v", m)
	}
}

func TestMQTT_3_3_2_TopicAliases(t *testing.T) {
	_, addr := startBroker(t, Options{OutgoingTopicAliases: true}, nil)
	sub := dialRaw(t, addr, packet.V5)
	sub.connect(&packet.Connect{ClientID: "sub", CleanStart: true, Properties: packet.Properties{TopicAliasMaximum: new(uint16(5))}})
	sub.subscribe(1, packet.Subscription{Filter: "alias/#"})
	pub := connected(t, addr, packet.V5, "pub")
	pub.send(&packet.Publish{Topic: "alias/long/topic", Payload: []byte("1"), Properties: packet.Properties{TopicAlias: new(uint16(3))}})
	pub.send(&packet.Publish{Topic: "", Payload: []byte("2"), Properties: packet.Properties{TopicAlias: new(uint16(3))}})
	m1, m2 := sub.recvPublish(), sub.recvPublish()
	if m1.Topic != "alias/long/topic" || m1.Properties.TopicAlias == nil {
		t.Fatalf("first: %+v", m1)
	}
	if m2.Topic != "" || m2.Properties.TopicAlias == nil || *m2.Properties.TopicAlias != *m1.Properties.TopicAlias {
		t.Fatalf("second should use the alias only: %+v", m2)
	}
	// an alias above the maximum is an error [MQTT-3.3.2-9]
	pub.send(&packet.Publish{Topic: "x", Properties: packet.Properties{TopicAlias: new(uint16(1000))}})
	if d := pub.expectClosed(); d == nil || d.ReasonCode != packet.TopicAliasInvalid {
		t.Fatalf("want DISCONNECT 0x94, got %+v", d)
	}
}

func TestMQTT_3_3_4_9_ReceiveMaximumExceeded(t *testing.T) {
	_, addr := startBroker(t, Options{MaxInflight: 3}, nil)
	c := dialRaw(t, addr, packet.V5)
	ack := c.connect(&packet.Connect{ClientID: "flood", CleanStart: true})
	if ack.Properties.ReceiveMaximum == nil || *ack.Properties.ReceiveMaximum != 3 {
		t.Fatalf("receive maximum not announced: %+v", ack.Properties)
	}
	for i := range 4 {
		c.send(&packet.Publish{Topic: "f", QoS: 2, PacketID: uint16(i + 1)})
	}
	if d := c.expectClosed(); d == nil || d.ReasonCode != packet.ReceiveMaximumExceeded {
		t.Fatalf("want DISCONNECT 0x93, got %+v", d)
	}
}

func TestMQTT_3_1_2_24_KeepAliveTimeout(t *testing.T) {
	_, addr := startBroker(t, Options{}, nil)
	c := dialRaw(t, addr, packet.V5)
	c.connect(&packet.Connect{ClientID: "idle", CleanStart: true, KeepAlive: 1})
	start := time.Now()
	d := c.expectClosed()
	if el := time.Since(start); el < time.Second || el > 4*time.Second {
		t.Fatalf("closed after %v, want about 1.5 s", el)
	}
	if d == nil || d.ReasonCode != packet.KeepAliveTimeout {
		t.Fatalf("want DISCONNECT 0x8D, got %+v", d)
	}
}

func TestMQTT_3_2_2_21_ServerKeepAlive(t *testing.T) {
	_, addr := startBroker(t, Options{MaxKeepAlive: 30}, nil)
	c := dialRaw(t, addr, packet.V5)
	ack := c.connect(&packet.Connect{ClientID: "k", CleanStart: true, KeepAlive: 600})
	if ack.Properties.ServerKeepAlive == nil || *ack.Properties.ServerKeepAlive != 30 {
		t.Fatalf("got %+v", ack.Properties)
	}
	c3 := dialRaw(t, addr, packet.V311)
	if ack := c3.connect(&packet.Connect{ClientID: "k3", CleanStart: true, KeepAlive: 600}); ack.ReasonCode == packet.Success {
		t.Fatal("3.1.1 client above max_keepalive accepted")
	}
}

func TestMQTT_3_2_2_PacketTooLarge(t *testing.T) {
	_, addr := startBroker(t, Options{MaxPacketSize: 100}, nil)
	c := dialRaw(t, addr, packet.V5)
	ack := c.connect(&packet.Connect{ClientID: "big", CleanStart: true})
	if ack.Properties.MaximumPacketSize == nil || *ack.Properties.MaximumPacketSize != 100 {
		t.Fatalf("maximum packet size not announced: %+v", ack.Properties)
	}
	c.send(&packet.Publish{Topic: "big", Payload: make([]byte, 200)})
	if d := c.expectClosed(); d == nil || d.ReasonCode != packet.PacketTooLarge {
		t.Fatalf("want DISCONNECT 0x95, got %+v", d)
	}
}

func TestMQTT_3_1_2_25_NoPacketAboveClientMaximum(t *testing.T) {
	_, addr := startBroker(t, Options{}, nil)
	sub := dialRaw(t, addr, packet.V5)
	sub.connect(&packet.Connect{ClientID: "small", CleanStart: true, Properties: packet.Properties{MaximumPacketSize: new(uint32(64))}})
	sub.subscribe(1, packet.Subscription{Filter: "m", QoS: 1})
	pub := connected(t, addr, packet.V5, "p")
	pub.send(&packet.Publish{Topic: "m", QoS: 1, PacketID: 1, Payload: make([]byte, 100)})
	pub.send(&packet.Publish{Topic: "m", QoS: 1, PacketID: 2, Payload: []byte("small")})
	if m := sub.recvPublish(); string(m.Payload) != "small" {
		t.Fatalf("got %+v", m)
	}
}

func TestMQTT_3_3_2_5_MessageExpiry(t *testing.T) {
	_, addr := startBroker(t, Options{}, nil)
	exp := func() *packet.Connect {
		return &packet.Connect{ClientID: "e", Properties: packet.Properties{SessionExpiry: new(uint32(60))}}
	}
	c := dialRaw(t, addr, packet.V5)
	c.connect(exp())
	c.subscribe(1, packet.Subscription{Filter: "e/#", QoS: 1})
	c.send(&packet.Disconnect{})
	c.expectClosed()
	pub := connected(t, addr, packet.V5, "p")
	pub.send(&packet.Publish{Topic: "e/short", QoS: 1, PacketID: 1, Payload: []byte("s"), Properties: packet.Properties{MessageExpiry: new(uint32(1))}})
	pub.send(&packet.Publish{Topic: "e/long", QoS: 1, PacketID: 2, Payload: []byte("l"), Properties: packet.Properties{MessageExpiry: new(uint32(100))}})
	pub.recv()
	pub.recv()
	time.Sleep(1100 * time.Millisecond) // the message must expire while queued
	c = dialRaw(t, addr, packet.V5)
	c.connect(exp())
	m := c.recvPublish()
	if m.Topic != "e/long" || m.Properties.MessageExpiry == nil || *m.Properties.MessageExpiry > 99 {
		t.Fatalf("got %+v expiry %v", m, m.Properties.MessageExpiry)
	}
}

func TestMaxConnectionsRefusesPolitely(t *testing.T) {
	_, addr := startBroker(t, Options{}, &ListenerOptions{Name: "limited", MaxConnections: 1})
	connected(t, addr, packet.V5, "one")
	c := dialRaw(t, addr, packet.V5)
	if ack := c.connect(&packet.Connect{ClientID: "two", CleanStart: true}); ack.ReasonCode != packet.ServerBusy {
		t.Fatalf("got %v", ack.ReasonCode)
	}
}

func TestMQTT_3_8_4_InvalidFilterRefusedInSuback(t *testing.T) {
	_, addr := startBroker(t, Options{}, nil)
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		c := connected(t, addr, v, "f"+v.String())
		sa := c.subscribe(1, packet.Subscription{Filter: "a/#/b"}, packet.Subscription{Filter: "ok/+", QoS: 1})
		want := packet.TopicFilterInvalid
		if v != packet.V5 {
			want = packet.UnspecifiedError
		}
		if sa.ReasonCodes[0] != want || sa.ReasonCodes[1] != packet.GrantedQoS1 {
			t.Fatalf("%v: got %v", v, sa.ReasonCodes)
		}
	}
}

func TestMQTT_3_10_4_UnsubscribeReasonCodes(t *testing.T) {
	_, addr := startBroker(t, Options{}, nil)
	c := connected(t, addr, packet.V5, "u")
	c.subscribe(1, packet.Subscription{Filter: "u/1"})
	c.send(&packet.Unsubscribe{PacketID: 2, Filters: []string{"u/1", "u/2"}})
	ua, ok := c.recv().(*packet.Unsuback)
	if !ok || !slices.Equal(ua.ReasonCodes, []packet.ReasonCode{packet.Success, packet.NoSubscriptionExisted}) {
		t.Fatalf("got %+v", ua)
	}
	pub := connected(t, addr, packet.V5, "p")
	pub.send(&packet.Publish{Topic: "u/1"})
	c.expectNothing(200 * time.Millisecond)
}

func TestMalformedPacketsCloseTheConnection(t *testing.T) {
	_, addr := startBroker(t, Options{}, nil)
	cases := map[string][]byte{
		"reserved flags on PINGREQ": {0xC1, 0x00},
		"QoS 3 publish":             {0x36, 0x05, 0x00, 0x01, 'a', 0x00, 0x01},
		"remaining length too long": {0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F},
		"subscribe with no filter":  {0x82, 0x02, 0x00, 0x01},
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			c := connected(t, addr, packet.V311, "bad")
			c.sendRaw(raw)
			c.expectClosed()
		})
	}
}

func TestMQTT_3_2_2_9_MaximumQoSOfListener(t *testing.T) {
	_, addr := startBroker(t, Options{}, &ListenerOptions{Name: "qos1", MaxQoS: new(byte(1))})
	c := dialRaw(t, addr, packet.V5)
	ack := c.connect(&packet.Connect{ClientID: "q", CleanStart: true})
	if ack.Properties.MaximumQoS == nil || *ack.Properties.MaximumQoS != 1 {
		t.Fatalf("maximum QoS not announced: %+v", ack.Properties)
	}
	if sa := c.subscribe(1, packet.Subscription{Filter: "q", QoS: 2}); sa.ReasonCodes[0] != packet.GrantedQoS1 {
		t.Fatalf("granted %v, want QoS 1", sa.ReasonCodes)
	}
	c.send(&packet.Publish{Topic: "q", QoS: 2, PacketID: 1})
	if d := c.expectClosed(); d == nil || d.ReasonCode != packet.QoSNotSupported {
		t.Fatalf("want DISCONNECT 0x9B, got %+v", d)
	}
	w := dialRaw(t, addr, packet.V5)
	if ack := w.connect(&packet.Connect{ClientID: "w", CleanStart: true, Will: &packet.Will{Topic: "x", QoS: 2}}); ack.ReasonCode != packet.QoSNotSupported {
		t.Fatalf("will QoS 2: got %v", ack.ReasonCode)
	}
}

func TestExpiredSessionIsRemoved(t *testing.T) {
	b, addr := startBroker(t, Options{}, nil)
	c := dialRaw(t, addr, packet.V5)
	c.connect(&packet.Connect{ClientID: "short", Properties: packet.Properties{SessionExpiry: new(uint32(1))}})
	c.subscribe(1, packet.Subscription{Filter: "x"})
	c.send(&packet.Disconnect{})
	c.expectClosed()
	if st := b.Stats(); st.ClientsTotal != 1 || st.Subscriptions != 1 {
		t.Fatalf("session gone too early: %+v", st)
	}
	eventually(t, func() bool { st := b.Stats(); return st.ClientsTotal == 0 && st.Subscriptions == 0 }, "session expiry")
	c = dialRaw(t, addr, packet.V5)
	if ack := c.connect(&packet.Connect{ClientID: "short"}); ack.SessionPresent {
		t.Fatal("expired session reported present")
	}
}
