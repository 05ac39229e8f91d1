package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// v5Client is a connected eclipse/paho.golang MQTT 5 client that collects
// what it receives.
type v5Client struct {
	*paho.Client
	t       *testing.T
	name    string
	Connack *paho.Connack
	inbox   chan *paho.Publish
	// serverDisconnect receives the DISCONNECT the server sent, if any.
	serverDisconnect chan *paho.Disconnect
}

func u16(v uint16) *uint16 { return &v }
func u32(v uint32) *uint32 { return &v }

// dialV5 connects an MQTT 5 client over TCP to addr with the CONNECT cp
// (ClientID and KeepAlive defaulted); configure may change the client
// configuration. It fails the test if the broker refuses. Cleanup
// disconnects the client and waits for its goroutines.
func dialV5(t *testing.T, addr string, cp *paho.Connect, configure func(*paho.ClientConfig)) *v5Client {
	t.Helper()
	c, err := tryV5(t, addr, cp, configure)
	if err != nil {
		t.Fatalf("MQTT 5 connect %q to %s: %v", cp.ClientID, addr, err)
	}
	return c
}

// tryV5 is dialV5 returning the refusal instead of failing; the Connack
// is set when the broker answered.
func tryV5(t *testing.T, addr string, cp *paho.Connect, configure func(*paho.ClientConfig)) (*v5Client, error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return connectV5(t, conn, cp, configure)
}

// connectV5 runs the MQTT 5 handshake over conn.
func connectV5(t *testing.T, conn net.Conn, cp *paho.Connect, configure func(*paho.ClientConfig)) (*v5Client, error) {
	t.Helper()
	if cp.KeepAlive == 0 {
		cp.KeepAlive = 30
	}
	c := &v5Client{t: t, name: cp.ClientID, inbox: make(chan *paho.Publish, 10000), serverDisconnect: make(chan *paho.Disconnect, 1)}
	cfg := paho.ClientConfig{
		ClientID: cp.ClientID,
		Conn:     conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			c.inbox <- pr.Packet
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) {
			select {
			case c.serverDisconnect <- d:
			default:
			}
		},
	}
	if configure != nil {
		configure(&cfg)
	}
	c.Client = paho.NewClient(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, cp)
	c.Connack = ca
	if err != nil {
		conn.Close()
		return c, err
	}
	t.Cleanup(func() {
		_ = c.Disconnect(&paho.Disconnect{ReasonCode: 0})
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Errorf("client %s did not shut down", c.name)
		}
	})
	return c, nil
}

// close disconnects cleanly and waits until the client has shut down.
func (c *v5Client) close() {
	c.t.Helper()
	_ = c.Disconnect(&paho.Disconnect{ReasonCode: 0})
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		c.t.Fatalf("client %s did not shut down", c.name)
	}
}

// sub subscribes and fails the test unless every subscription is granted.
func (c *v5Client) sub(s *paho.Subscribe) *paho.Suback {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sa, err := c.Subscribe(ctx, s)
	if err != nil {
		c.t.Fatalf("%s subscribe: %v", c.name, err)
	}
	for i, r := range sa.Reasons {
		if r >= 0x80 {
			c.t.Fatalf("%s subscribe %q refused: reason %#x", c.name, s.Subscriptions[i].Topic, r)
		}
	}
	return sa
}

// pub publishes and fails the test on an error or a failure reason code.
func (c *v5Client) pub(p *paho.Publish) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.Publish(ctx, p)
	if err != nil {
		c.t.Fatalf("%s publish to %q: %v", c.name, p.Topic, err)
	}
	if r != nil && r.ReasonCode >= 0x80 {
		c.t.Fatalf("%s publish to %q: reason %#x", c.name, p.Topic, r.ReasonCode)
	}
}

// next waits for the next message.
func (c *v5Client) next(d time.Duration) *paho.Publish {
	c.t.Helper()
	select {
	case m := <-c.inbox:
		return m
	case <-time.After(d):
		c.t.Fatalf("%s: no message within %v", c.name, d)
		return nil
	}
}

// none checks that no message arrives within d.
func (c *v5Client) none(d time.Duration) {
	c.t.Helper()
	select {
	case m := <-c.inbox:
		c.t.Fatalf("%s: unexpected message on %q: %q", c.name, m.Topic, m.Payload)
	case <-time.After(d):
	}
}

// TestPahoGolangV5SessionExpiry: a session with an expiry interval
// survives a disconnect (session present, queued messages delivered); one
// with expiry 0 does not.
func TestPahoGolangV5SessionExpiry(t *testing.T) {
	t.Parallel()
	b := startBroker(t, plainConfig())
	pub := dialV5(t, b.Addr(), &paho.Connect{ClientID: "se-pub", CleanStart: true}, nil)

	persistent := &paho.Connect{ClientID: "se-keep", CleanStart: true, Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(300)}}
	c := dialV5(t, b.Addr(), persistent, nil)
	if c.Connack.SessionPresent {
		t.Fatal("clean start: session present")
	}
	c.sub(&paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "se/t", QoS: 1}}})
	c.close()

	pub.pub(&paho.Publish{Topic: "se/t", QoS: 1, Payload: []byte("queued 1")})
	pub.pub(&paho.Publish{Topic: "se/t", QoS: 1, Payload: []byte("queued 2")})

	again := dialV5(t, b.Addr(), &paho.Connect{ClientID: "se-keep", CleanStart: false, Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(300)}}, nil)
	if !again.Connack.SessionPresent {
		t.Fatal("reconnect within the session expiry: session not present")
	}
	for _, want := range []string{"queued 1", "queued 2"} {
		if m := again.next(5 * time.Second); string(m.Payload) != want {
			t.Fatalf("got %q, want %q", m.Payload, want)
		}
	}

	gone := dialV5(t, b.Addr(), &paho.Connect{ClientID: "se-gone", CleanStart: false, Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(0)}}, nil)
	gone.sub(&paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "se/t", QoS: 1}}})
	gone.close()
	back := dialV5(t, b.Addr(), &paho.Connect{ClientID: "se-gone", CleanStart: false}, nil)
	if back.Connack.SessionPresent {
		t.Fatal("session expiry 0: session still present after disconnect")
	}
}

// TestPahoGolangV5SubscriptionIdentifier: a message carries the identifier
// of the subscription it matched.
func TestPahoGolangV5SubscriptionIdentifier(t *testing.T) {
	t.Parallel()
	b := startBroker(t, plainConfig())
	c := dialV5(t, b.Addr(), &paho.Connect{ClientID: "sid", CleanStart: true}, nil)
	if p := c.Connack.Properties; p != nil && !p.SubIDAvailable {
		t.Fatal("CONNACK says subscription identifiers are not available")
	}
	id := 4242
	c.sub(&paho.Subscribe{Properties: &paho.SubscribeProperties{SubscriptionIdentifier: &id},
		Subscriptions: []paho.SubscribeOptions{{Topic: "sid/#", QoS: 1}}})
	c.sub(&paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "nosid/#", QoS: 1}}})
	c.pub(&paho.Publish{Topic: "sid/a", QoS: 1, Payload: []byte("x")})
	m := c.next(5 * time.Second)
	if m.Properties == nil || m.Properties.SubscriptionIdentifier == nil || *m.Properties.SubscriptionIdentifier != id {
		t.Fatalf("message properties %+v: want subscription identifier %d", m.Properties, id)
	}
	c.pub(&paho.Publish{Topic: "nosid/a", QoS: 1, Payload: []byte("y")})
	m = c.next(5 * time.Second)
	if m.Properties != nil && m.Properties.SubscriptionIdentifier != nil {
		t.Fatalf("subscription without identifier: message has identifier %d", *m.Properties.SubscriptionIdentifier)
	}
}

// TestPahoGolangV5NoLocal: a no-local subscriber does not get its own
// messages; another subscriber does.
func TestPahoGolangV5NoLocal(t *testing.T) {
	t.Parallel()
	b := startBroker(t, plainConfig())
	self := dialV5(t, b.Addr(), &paho.Connect{ClientID: "nl-self", CleanStart: true}, nil)
	other := dialV5(t, b.Addr(), &paho.Connect{ClientID: "nl-other", CleanStart: true}, nil)
	self.sub(&paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "nl/t", QoS: 1, NoLocal: true}}})
	other.sub(&paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "nl/t", QoS: 1}}})

	self.pub(&paho.Publish{Topic: "nl/t", QoS: 1, Payload: []byte("mine")})
	if m := other.next(5 * time.Second); string(m.Payload) != "mine" {
		t.Fatalf("other got %q, want mine", m.Payload)
	}
	other.pub(&paho.Publish{Topic: "nl/t", QoS: 1, Payload: []byte("theirs")})
	if m := self.next(5 * time.Second); string(m.Payload) != "theirs" {
		t.Fatalf("no-local subscriber got %q first, want theirs (its own message must not come back)", m.Payload)
	}
}

// TestPahoGolangV5RetainHandling: retain handling 0 sends retained
// messages on every subscribe, 1 only for a new subscription, 2 never;
// retain-as-published keeps the flag on live messages.
func TestPahoGolangV5RetainHandling(t *testing.T) {
	t.Parallel()
	b := startBroker(t, plainConfig())
	pub := dialV5(t, b.Addr(), &paho.Connect{ClientID: "rh-pub", CleanStart: true}, nil)
	pub.pub(&paho.Publish{Topic: "rh/t", QoS: 1, Retain: true, Payload: []byte("retained")})

	marker := func(c *v5Client) {
		t.Helper()
		pub.pub(&paho.Publish{Topic: "rh/t", QoS: 1, Payload: []byte("marker")})
		if m := c.next(5 * time.Second); string(m.Payload) != "marker" {
			t.Fatalf("%s: got %q, want only the marker", c.name, m.Payload)
		}
	}
	expectRetained := func(c *v5Client) {
		t.Helper()
		m := c.next(5 * time.Second)
		if string(m.Payload) != "retained" || !m.Retain {
			t.Fatalf("%s: got %q retain=%v, want the retained message", c.name, m.Payload, m.Retain)
		}
	}
	subscribe := func(c *v5Client, rh byte) {
		c.sub(&paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "rh/t", QoS: 1, RetainHandling: rh}}})
	}

	rh0 := dialV5(t, b.Addr(), &paho.Connect{ClientID: "rh0", CleanStart: true}, nil)
	subscribe(rh0, 0)
	expectRetained(rh0)
	subscribe(rh0, 0)
	expectRetained(rh0)
	marker(rh0)

	rh1 := dialV5(t, b.Addr(), &paho.Connect{ClientID: "rh1", CleanStart: true}, nil)
	subscribe(rh1, 1)
	expectRetained(rh1)
	subscribe(rh1, 1) // the subscription exists: no retained message
	marker(rh1)

	rh2 := dialV5(t, b.Addr(), &paho.Connect{ClientID: "rh2", CleanStart: true}, nil)
	subscribe(rh2, 2)
	marker(rh2)

	rap := dialV5(t, b.Addr(), &paho.Connect{ClientID: "rap", CleanStart: true}, nil)
	plain := dialV5(t, b.Addr(), &paho.Connect{ClientID: "plain", CleanStart: true}, nil)
	rap.sub(&paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "rap/t", QoS: 1, RetainAsPublished: true}}})
	plain.sub(&paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "rap/t", QoS: 1}}})
	pub.pub(&paho.Publish{Topic: "rap/t", QoS: 1, Retain: true, Payload: []byte("live retained")})
	if m := rap.next(5 * time.Second); !m.Retain {
		t.Error("retain-as-published: live retained message arrived without the retain flag")
	}
	if m := plain.next(5 * time.Second); m.Retain {
		t.Error("without retain-as-published: live message arrived with the retain flag")
	}
}

// TestPahoGolangV5SharedSubscription: each message published to a topic
// with a $share/g group of two clients reaches exactly one of them, and a
// plain subscriber still gets every message.
func TestPahoGolangV5SharedSubscription(t *testing.T) {
	t.Parallel()
	b := startBroker(t, plainConfig())
	a := dialV5(t, b.Addr(), &paho.Connect{ClientID: "share-a", CleanStart: true}, nil)
	bb := dialV5(t, b.Addr(), &paho.Connect{ClientID: "share-b", CleanStart: true}, nil)
	all := dialV5(t, b.Addr(), &paho.Connect{ClientID: "share-all", CleanStart: true}, nil)
	for _, c := range []*v5Client{a, bb} {
		c.sub(&paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "$share/g/shared/t", QoS: 1}}})
	}
	all.sub(&paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "shared/t", QoS: 1}}})
	pub := dialV5(t, b.Addr(), &paho.Connect{ClientID: "share-pub", CleanStart: true}, nil)
	const n = 40
	for i := range n {
		pub.pub(&paho.Publish{Topic: "shared/t", QoS: 1, Payload: fmt.Appendf(nil, "%d", i)})
	}
	for range n {
		all.next(5 * time.Second)
	}
	seen := map[string]string{}
	count := map[string]int{}
	eventually(t, 5*time.Second, func() bool {
		for {
			select {
			case m := <-a.inbox:
				if prev, dup := seen[string(m.Payload)]; dup {
					t.Fatalf("message %s delivered to %s and share-a", m.Payload, prev)
				}
				seen[string(m.Payload)] = "share-a"
				count["share-a"]++
			case m := <-bb.inbox:
				if prev, dup := seen[string(m.Payload)]; dup {
					t.Fatalf("message %s delivered to %s and share-b", m.Payload, prev)
				}
				seen[string(m.Payload)] = "share-b"
				count["share-b"]++
			default:
				return len(seen) == n
			}
		}
	}, "all %d messages delivered to the group (got %d)", n, len(seen))
	a.none(200 * time.Millisecond)
	bb.none(0)
	t.Logf("distribution: %v", count)
}

// TestPahoGolangV5PropertiesPassThrough: user properties (order and
// duplicate keys kept), content type, response topic, correlation data
// and payload format indicator reach the subscriber unchanged, and the
// message expiry interval is at most what was sent.
func TestPahoGolangV5PropertiesPassThrough(t *testing.T) {
	t.Parallel()
	b := startBroker(t, plainConfig())
	sub := dialV5(t, b.Addr(), &paho.Connect{ClientID: "props-sub", CleanStart: true}, nil)
	sub.sub(&paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "props/t", QoS: 2}}})
	pub := dialV5(t, b.Addr(), &paho.Connect{ClientID: "props-pub", CleanStart: true}, nil)
	format := byte(1)
	sent := &paho.PublishProperties{
		CorrelationData: []byte{0, 1, 2, 0xff},
		ContentType:     "application/json",
		ResponseTopic:   "props/reply",
		PayloadFormat:   &format,
		MessageExpiry:   u32(3600),
		User:            paho.UserProperties{{Key: "a", Value: "1"}, {Key: "b", Value: "2"}, {Key: "a", Value: "3"}, {Key: "ünï", Value: "cödé"}},
	}
	for qos := range byte(3) {
		pub.pub(&paho.Publish{Topic: "props/t", QoS: qos, Payload: []byte(`{"k":1}`), Properties: sent})
		m := sub.next(5 * time.Second)
		got := m.Properties
		if got == nil {
			t.Fatalf("QoS %d: no properties", qos)
		}
		if !bytes.Equal(got.CorrelationData, sent.CorrelationData) || got.ContentType != sent.ContentType || got.ResponseTopic != sent.ResponseTopic {
			t.Errorf("QoS %d: correlation %x content type %q response topic %q; want %x %q %q", qos,
				got.CorrelationData, got.ContentType, got.ResponseTopic, sent.CorrelationData, sent.ContentType, sent.ResponseTopic)
		}
		if !slices.Equal(got.User, sent.User) {
			t.Errorf("QoS %d: user properties %v, want %v", qos, got.User, sent.User)
		}
		if got.PayloadFormat == nil || *got.PayloadFormat != 1 {
			t.Errorf("QoS %d: payload format %v, want 1", qos, got.PayloadFormat)
		}
		if got.MessageExpiry == nil || *got.MessageExpiry > 3600 || *got.MessageExpiry < 3590 {
			t.Errorf("QoS %d: message expiry %v, want about 3600", qos, got.MessageExpiry)
		}
	}
}

// TestPahoGolangV5TopicAliasFromClient: a client sets a topic alias with
// its first publish and then publishes with the alias alone; subscribers
// see the full topic.
func TestPahoGolangV5TopicAliasFromClient(t *testing.T) {
	t.Parallel()
	b := startBroker(t, plainConfig())
	sub := dialV5(t, b.Addr(), &paho.Connect{ClientID: "ta-sub", CleanStart: true}, nil)
	sub.sub(&paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "alias/#", QoS: 1}}})
	pub := dialV5(t, b.Addr(), &paho.Connect{ClientID: "ta-pub", CleanStart: true}, nil)
	max := uint16(0)
	if p := pub.Connack.Properties; p != nil && p.TopicAliasMaximum != nil {
		max = *p.TopicAliasMaximum
	}
	if max < 2 {
		t.Fatalf("broker topic alias maximum %d, want at least 2", max)
	}
	pub.pub(&paho.Publish{Topic: "alias/one", QoS: 1, Payload: []byte("1"), Properties: &paho.PublishProperties{TopicAlias: u16(1)}})
	pub.pub(&paho.Publish{Topic: "alias/two", QoS: 0, Payload: []byte("2"), Properties: &paho.PublishProperties{TopicAlias: u16(2)}})
	pub.pub(&paho.Publish{QoS: 1, Payload: []byte("3"), Properties: &paho.PublishProperties{TopicAlias: u16(1)}})
	pub.pub(&paho.Publish{QoS: 2, Payload: []byte("4"), Properties: &paho.PublishProperties{TopicAlias: u16(2)}})
	// Re-map alias 1 to another topic.
	pub.pub(&paho.Publish{Topic: "alias/three", QoS: 1, Payload: []byte("5"), Properties: &paho.PublishProperties{TopicAlias: u16(1)}})
	pub.pub(&paho.Publish{QoS: 1, Payload: []byte("6"), Properties: &paho.PublishProperties{TopicAlias: u16(1)}})
	want := []string{"alias/one 1", "alias/two 2", "alias/one 3", "alias/two 4", "alias/three 5", "alias/three 6"}
	for _, w := range want {
		m := sub.next(5 * time.Second)
		if got := m.Topic + " " + string(m.Payload); got != w {
			t.Fatalf("got %q, want %q", got, w)
		}
		if m.Properties != nil && m.Properties.TopicAlias != nil {
			t.Errorf("subscriber that allows no aliases got alias %d", *m.Properties.TopicAlias)
		}
	}
}

// TestPahoGolangV5ReceiveMaximum: a subscriber with receive maximum 2 that
// does not acknowledge has at most 2 QoS 1 messages in flight; the rest
// follow, in order, as it acknowledges.
func TestPahoGolangV5ReceiveMaximum(t *testing.T) {
	t.Parallel()
	b := startBroker(t, plainConfig())
	sub := dialV5(t, b.Addr(), &paho.Connect{ClientID: "rm-sub", CleanStart: true, Properties: &paho.ConnectProperties{ReceiveMaximum: u16(2)}},
		func(cfg *paho.ClientConfig) {
			cfg.EnableManualAcknowledgment = true
			cfg.SendAcksInterval = 10 * time.Millisecond
		})
	if p := sub.Connack.Properties; p == nil || p.ReceiveMaximum == nil || *p.ReceiveMaximum == 0 {
		t.Logf("CONNACK receive maximum absent (65535)")
	}
	sub.sub(&paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "rm/t", QoS: 1}}})
	pub := dialV5(t, b.Addr(), &paho.Connect{ClientID: "rm-pub", CleanStart: true}, nil)
	const n = 6
	for i := range n {
		pub.pub(&paho.Publish{Topic: "rm/t", QoS: 1, Payload: fmt.Appendf(nil, "%d", i)})
	}
	next := 0
	for next < n {
		batch := []*paho.Publish{sub.next(5 * time.Second), sub.next(5 * time.Second)}
		sub.none(300 * time.Millisecond) // a third would exceed the receive maximum
		for _, m := range batch {
			if string(m.Payload) != fmt.Sprint(next) {
				t.Fatalf("got message %q, want %d", m.Payload, next)
			}
			next++
		}
		for _, m := range batch {
			if err := sub.Ack(m); err != nil {
				t.Fatalf("ack: %v", err)
			}
		}
	}
}
