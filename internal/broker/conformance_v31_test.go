package broker

// Conformance tests for MQTT 3.1 (protocol name "MQIsdp", level 3), which
// has no numbered statements: the checks follow the IBM 3.1 specification
// and what 3.1 clients send in practice. Wire formats are checked byte by
// byte because 3.1 differs from 3.1.1 in them.

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/starlingmq/starling/internal/packet"
)

// readRaw reads exactly n bytes from c.
func readRaw(t testing.TB, c *rawClient, n int) []byte {
	t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(c.br, b); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return b
}

// 3.1 CONNACK: the first variable header byte is reserved (there is no
// Session Present flag), the second is the return code; the persistent
// session (clean session 0) still resumes.
func TestMQTT31_ConnackWireFormat(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	c := dialRaw(t, addr, packet.V31)
	c.sendRaw(rawConnect("MQIsdp", 3, 0x00, 60, nil, "v31-persist"))
	if b := readRaw(t, c, 4); !bytes.Equal(b, []byte{0x20, 0x02, 0x00, 0x00}) {
		t.Fatalf("CONNACK % X", b)
	}
	c.subscribe(1, packet.Subscription{Filter: "v31/p", QoS: 1})
	disconnect(c)
	pub := connected(t, addr, packet.V31, "v31-pub")
	publishQoS(t, pub, &packet.Publish{Topic: "v31/p", QoS: 1, PacketID: 1, Payload: []byte("queued")})

	c = dialRaw(t, addr, packet.V31)
	c.sendRaw(rawConnect("MQIsdp", 3, 0x00, 60, nil, "v31-persist"))
	if b := readRaw(t, c, 4); !bytes.Equal(b, []byte{0x20, 0x02, 0x00, 0x00}) {
		t.Fatalf("CONNACK for a resumed 3.1 session % X, want 20 02 00 00", b)
	}
	if m := c.recvPublish(); string(m.Payload) != "queued" || m.QoS != 1 {
		t.Fatalf("got %+v", m)
	}
}

// 3.1: the Client Identifier MUST be 1 to 23 characters; an empty one is
// refused with return code 2 (identifier rejected) and the connection is
// closed, whatever the clean session flag.
func TestMQTT31_EmptyClientIDRejected(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	for _, flags := range []byte{0x00, 0x02} {
		c := dialRaw(t, addr, packet.V31)
		c.sendRaw(rawConnect("MQIsdp", 3, flags, 60, nil, ""))
		if b := readRaw(t, c, 4); !bytes.Equal(b, []byte{0x20, 0x02, 0x00, 0x02}) {
			t.Fatalf("flags %02X: CONNACK % X, want 20 02 00 02", flags, b)
		}
		c.expectClosed()
	}
}

// 3.1 SUBACK carries one granted QoS per topic; UNSUBACK has only the
// message identifier.
func TestMQTT31_SubackAndUnsubackWireFormat(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	c := connected(t, addr, packet.V31, "wire")
	// SUBSCRIBE id 0x0102: "a" QoS 2, "b" QoS 0
	c.sendRaw([]byte{0x82, 0x0A, 0x01, 0x02, 0, 1, 'a', 2, 0, 1, 'b', 0})
	if b := readRaw(t, c, 6); !bytes.Equal(b, []byte{0x90, 0x04, 0x01, 0x02, 0x02, 0x00}) {
		t.Fatalf("SUBACK % X", b)
	}
	c.sendRaw([]byte{0xA2, 0x05, 0x01, 0x03, 0, 1, 'a'})
	if b := readRaw(t, c, 4); !bytes.Equal(b, []byte{0xB0, 0x02, 0x01, 0x03}) {
		t.Fatalf("UNSUBACK % X", b)
	}
}

// 3.1 clients send SUBSCRIBE, UNSUBSCRIBE and PUBREL with QoS 1 in the fixed
// header and set DUP on retries; 3.1 did not reserve those bits, so the
// Server accepts them.
func TestMQTT31_HeaderFlagsTolerated(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	c := connected(t, addr, packet.V31, "flags31")
	for i, first := range []byte{0x82, 0x8A} {
		c.sendRaw([]byte{first, 0x06, 0, byte(i + 1), 0, 1, 'f', 1})
		if sa := recvAs[*packet.Suback](t, c); sa.PacketID != uint16(i+1) || sa.ReasonCodes[0] != packet.GrantedQoS1 {
			t.Fatalf("SUBACK %+v", sa)
		}
	}
	c.sendRaw([]byte{0xAA, 0x05, 0, 3, 0, 1, 'x'})
	if ua := recvAs[*packet.Unsuback](t, c); ua.PacketID != 3 {
		t.Fatalf("UNSUBACK %+v", ua)
	}
	pub := connected(t, addr, packet.V31, "flags31-pub")
	pub.send(&packet.Publish{Topic: "f", QoS: 2, PacketID: 4, Payload: []byte("q2")})
	recvAs[*packet.Pubrec](t, pub)
	pub.sendRaw([]byte{0x6A, 0x02, 0, 4}) // PUBREL, DUP + QoS 1
	if pc := recvAs[*packet.Pubcomp](t, pub); pc.PacketID != 4 {
		t.Fatalf("PUBCOMP %+v", pc)
	}
	if m := c.recvPublish(); string(m.Payload) != "q2" || m.Dup {
		t.Fatalf("got %+v", m)
	}
}

// 3.1 let the password flag be set with no password following (older
// clients did); the Server accepts such a CONNECT.
func TestMQTT31_PasswordFlagWithoutPassword(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	c := dialRaw(t, addr, packet.V31)
	c.sendRaw(rawConnect("MQIsdp", 3, 0xC2, 60, nil, "nopw", "user"))
	if b := readRaw(t, c, 4); !bytes.Equal(b, []byte{0x20, 0x02, 0x00, 0x00}) {
		t.Fatalf("CONNACK % X", b)
	}
}

// 3.1 is one of the protocols of a 3.1.1/5.0 broker: messages cross
// versions with their topic, payload, QoS and retain semantics, and 5.0
// properties are left out of 3.1 packets.
func TestMQTT31_CrossVersionDelivery(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	s31 := connected(t, addr, packet.V31, "s31")
	s311 := connected(t, addr, packet.V311, "s311")
	s5 := connected(t, addr, packet.V5, "s5")
	for _, c := range []*rawClient{s31, s311, s5} {
		c.subscribe(1, packet.Subscription{Filter: "x/#", QoS: 2})
	}
	p5 := connected(t, addr, packet.V5, "p5")
	publishQoS(t, p5, &packet.Publish{Topic: "x/5", QoS: 2, PacketID: 1, Payload: []byte("from 5"),
		Properties: packet.Properties{ContentType: "text/plain", User: []packet.UserProperty{{Key: "k", Value: "v"}}}})
	p31 := connected(t, addr, packet.V31, "p31")
	publishQoS(t, p31, &packet.Publish{Topic: "x/31", QoS: 1, PacketID: 2, Payload: []byte("from 3.1")})
	for _, c := range []*rawClient{s31, s311, s5} {
		got := receiveAll(t, c, 2)
		if got[0].Topic != "x/5" || got[0].QoS != 2 || string(got[0].Payload) != "from 5" ||
			got[1].Topic != "x/31" || got[1].QoS != 1 || string(got[1].Payload) != "from 3.1" {
			t.Fatalf("%v: got %+v, %+v", c.v, got[0], got[1])
		}
		if c.v == packet.V5 && got[0].Properties.ContentType != "text/plain" {
			t.Fatalf("5.0 subscriber lost the properties: %+v", got[0].Properties)
		}
	}
}

// A second CONNECT on a 3.1 connection is a protocol violation: the Server
// closes the connection (as [MQTT-3.1.0-2]).
func TestMQTT31_SecondConnectCloses(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	c := connected(t, addr, packet.V31, "twice31")
	c.sendRaw(rawConnect("MQIsdp", 3, 0x02, 60, nil, "twice31"))
	if got := readToClose(c); len(got) != 0 {
		t.Fatalf("got %v", typesOf(got))
	}
}

// 3.1 DUP on a QoS 0 PUBLISH is tolerated; the copy sent on has DUP 0.
func TestMQTT31_DupOnQoS0Tolerated(t *testing.T) {
	t.Parallel()
	_, addr := startBroker(t, Options{}, nil)
	sub := connected(t, addr, packet.V311, "sub")
	sub.subscribe(1, packet.Subscription{Filter: "d0"})
	c := connected(t, addr, packet.V31, "dup0")
	c.sendRaw([]byte{0x38, 0x05, 0, 2, 'd', '0', 'x'})
	if m := sub.recvPublish(); m.Dup || string(m.Payload) != "x" {
		t.Fatalf("got %+v", m)
	}
}
