package e2e

import (
	"fmt"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// v3Msg is a message a paho.mqtt.golang client received.
type v3Msg struct {
	Topic    string
	Payload  string
	QoS      byte
	Retained bool
}

// v3Inbox collects the messages of a paho.mqtt.golang client.
type v3Inbox chan v3Msg

func (in v3Inbox) handler(_ mqtt.Client, m mqtt.Message) {
	in <- v3Msg{Topic: m.Topic(), Payload: string(m.Payload()), QoS: m.Qos(), Retained: m.Retained()}
}

// next waits for the next message.
func (in v3Inbox) next(t *testing.T, d time.Duration) v3Msg {
	t.Helper()
	select {
	case m := <-in:
		return m
	case <-time.After(d):
		t.Fatalf("no message within %v", d)
		return v3Msg{}
	}
}

// none checks that no message arrives within d.
func (in v3Inbox) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case m := <-in:
		t.Fatalf("unexpected message %+v", m)
	case <-time.After(d):
	}
}

// v3Client connects a paho.mqtt.golang MQTT 3.1.1 client to broker URL
// server; configure may change the options. Cleanup disconnects it.
func v3Client(t *testing.T, server, id string, configure func(*mqtt.ClientOptions)) (mqtt.Client, v3Inbox) {
	t.Helper()
	inbox := make(v3Inbox, 1000)
	o := mqtt.NewClientOptions().
		AddBroker(server).
		SetClientID(id).
		SetProtocolVersion(4).
		SetAutoReconnect(false).
		SetConnectTimeout(5 * time.Second).
		SetWriteTimeout(5 * time.Second).
		SetDefaultPublishHandler(inbox.handler)
	if configure != nil {
		configure(o)
	}
	c := mqtt.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s to %s: %v", id, server, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c, inbox
}

// wait fails the test if tok does not complete without error in 10 s.
func wait(t *testing.T, what string, tok mqtt.Token) {
	t.Helper()
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatalf("%s: no answer within 10 s", what)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// TestPahoGoV311PublishSubscribe: paho.mqtt.golang connects, subscribes and
// round-trips QoS 0, 1 and 2.
func TestPahoGoV311PublishSubscribe(t *testing.T) {
	t.Parallel()
	b := startBroker(t, plainConfig())
	server := "tcp://" + b.Addr()
	sub, inbox := v3Client(t, server, "v3-sub", nil)
	pub, _ := v3Client(t, server, "v3-pub", nil)
	for qos := range byte(3) {
		topic := fmt.Sprintf("paho3/qos%d", qos)
		st := sub.Subscribe(topic, qos, nil)
		wait(t, "subscribe", st)
		if got := st.(*mqtt.SubscribeToken).Result()[topic]; got != qos {
			t.Fatalf("granted QoS %d, want %d", got, qos)
		}
		for i := range 5 {
			wait(t, "publish", pub.Publish(topic, qos, false, fmt.Sprintf("m%d", i)))
		}
		for i := range 5 {
			m := inbox.next(t, 5*time.Second)
			if m.Topic != topic || m.Payload != fmt.Sprintf("m%d", i) || m.QoS != qos {
				t.Fatalf("QoS %d message %d: got %+v", qos, i, m)
			}
		}
	}
}

// TestPahoGoV311PersistentSession: a CleanSession(false) client that
// disconnects gets the QoS 1 and 2 messages published meanwhile when it
// reconnects, and the broker says the session is present.
func TestPahoGoV311PersistentSession(t *testing.T) {
	t.Parallel()
	b := startBroker(t, plainConfig())
	server := "tcp://" + b.Addr()
	persistent := func(o *mqtt.ClientOptions) { o.SetCleanSession(false) }

	c, _ := v3Client(t, server, "v3-persistent", persistent)
	wait(t, "subscribe", c.SubscribeMultiple(map[string]byte{"queued/1": 1, "queued/2": 2}, nil))
	c.Disconnect(250)

	pub, _ := v3Client(t, server, "v3-pub", nil)
	want := map[string]bool{}
	for i := range 4 {
		qos := byte(1 + i%2)
		topic := fmt.Sprintf("queued/%d", qos)
		payload := fmt.Sprintf("while away %d", i)
		wait(t, "publish", pub.Publish(topic, qos, false, payload))
		want[payload] = true
	}

	c2, inbox := v3Client(t, server, "v3-persistent", persistent)
	if !c2.IsConnectionOpen() {
		t.Fatal("not connected")
	}
	for range len(want) {
		m := inbox.next(t, 5*time.Second)
		if !want[m.Payload] {
			t.Fatalf("unexpected or duplicate message %+v", m)
		}
		delete(want, m.Payload)
	}
	inbox.none(t, 200*time.Millisecond)
}

// TestPahoGoV311WillOnAbruptClose: a client whose TCP connection drops
// without DISCONNECT has its will published; one that disconnects cleanly
// does not.
func TestPahoGoV311WillOnAbruptClose(t *testing.T) {
	t.Parallel()
	b := startBroker(t, plainConfig())
	server := "tcp://" + b.Addr()
	watcher, watch := v3Client(t, server, "v3-watcher", nil)
	wait(t, "subscribe", watcher.Subscribe("wills/#", 1, nil))

	clean, _ := v3Client(t, server, "v3-clean", func(o *mqtt.ClientOptions) {
		o.SetWill("wills/clean", "should not be sent", 1, false)
	})
	clean.Disconnect(250)

	var mu sync.Mutex
	var conn net.Conn
	v3Client(t, server, "v3-dying", func(o *mqtt.ClientOptions) {
		o.SetWill("wills/dying", "it died", 1, false)
		o.SetCustomOpenConnectionFn(func(u *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
			c, err := net.Dial("tcp", u.Host)
			mu.Lock()
			conn = c
			mu.Unlock()
			return c, err
		})
	})
	mu.Lock()
	conn.Close() // abrupt: no DISCONNECT packet
	mu.Unlock()

	m := watch.next(t, 5*time.Second)
	if m.Topic != "wills/dying" || m.Payload != "it died" {
		t.Fatalf("got %+v, want the will of v3-dying", m)
	}
	watch.none(t, 200*time.Millisecond)
}
