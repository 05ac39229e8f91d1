package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/starlingmq/starling/internal/packet"
)

var versions = []packet.Version{packet.V31, packet.V311, packet.V5}

func TestConnectVersions(t *testing.T) {
	addr := needBroker(t)
	for _, v := range versions {
		t.Run(v.String(), func(t *testing.T) {
			c, ack, err := Connect(testCtx(t), Options{Addr: addr, Version: v, ClientID: clientID(), CleanStart: true})
			if err != nil {
				t.Fatalf("Connect: %v", err)
			}
			if ack.ReasonCode != packet.Success || ack.SessionPresent {
				t.Errorf("CONNACK = %+v, want success without session", ack)
			}
			if c.Version() != v {
				t.Errorf("Version() = %v, want %v", c.Version(), v)
			}
			if err := c.Disconnect(testCtx(t), nil); err != nil {
				t.Errorf("Disconnect: %v", err)
			}
			<-c.Done()
			if !errors.Is(c.Err(), ErrClosed) {
				t.Errorf("Err() = %v, want ErrClosed", c.Err())
			}
			if err := c.Close(); err != nil { // safe twice
				t.Errorf("second Close: %v", err)
			}
		})
	}
}

func TestPublishSubscribeRoundTrip(t *testing.T) {
	addr := needBroker(t)
	for _, v := range versions {
		for qos := byte(0); qos <= 2; qos++ {
			t.Run(fmt.Sprintf("%v/QoS%d", v, qos), func(t *testing.T) {
				topic := prefix() + "/rt"
				in := newInbox()
				sub, _ := connect(t, Options{Addr: addr, Version: v, CleanStart: true, OnMessage: in.on})
				subscribe(t, sub, topic, qos)
				pub, _ := connect(t, Options{Addr: addr, Version: v, CleanStart: true})
				for i := range 3 {
					payload := fmt.Appendf(nil, "msg %d", i)
					rc, err := pub.Publish(testCtx(t), &packet.Publish{Topic: topic, QoS: qos, Payload: payload})
					if err != nil || rc.IsError() {
						t.Fatalf("Publish: %v, %v", rc, err)
					}
					m := in.next(t)
					if m.Topic != topic || !bytes.Equal(m.Payload, payload) || m.QoS != qos || m.Retain {
						t.Fatalf("got %q %q QoS %d retain %v, want %q %q QoS %d", m.Topic, m.Payload, m.QoS, m.Retain, topic, payload, qos)
					}
				}
			})
		}
	}
}

func TestRetained(t *testing.T) {
	addr := needBroker(t)
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		t.Run(v.String(), func(t *testing.T) {
			topic := prefix() + "/retained"
			pub, _ := connect(t, Options{Addr: addr, Version: v, CleanStart: true})
			if _, err := pub.Publish(testCtx(t), &packet.Publish{Topic: topic, QoS: 1, Retain: true, Payload: []byte("kept")}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				pub.Publish(context.Background(), &packet.Publish{Topic: topic, QoS: 1, Retain: true})
			})
			in := newInbox()
			sub, _ := connect(t, Options{Addr: addr, Version: v, CleanStart: true, OnMessage: in.on})
			subscribe(t, sub, topic, 1)
			m := in.next(t)
			if !m.Retain || string(m.Payload) != "kept" {
				t.Fatalf("got retain=%v %q, want retained \"kept\"", m.Retain, m.Payload)
			}
		})
	}
}

func TestWillOnClose(t *testing.T) {
	addr := needBroker(t)
	for _, v := range versions {
		t.Run(v.String(), func(t *testing.T) {
			topic := prefix() + "/will"
			in := newInbox()
			sub, _ := connect(t, Options{Addr: addr, Version: v, CleanStart: true, OnMessage: in.on})
			subscribe(t, sub, topic+"/#", 1)

			// A clean DISCONNECT discards the will.
			polite, _ := connect(t, Options{Addr: addr, Version: v, CleanStart: true,
				Will: &packet.Will{Topic: topic + "/polite", QoS: 1, Payload: []byte("polite")}})
			if err := polite.Disconnect(testCtx(t), nil); err != nil {
				t.Fatal(err)
			}
			// Close without DISCONNECT makes the server publish it.
			rude, _ := connect(t, Options{Addr: addr, Version: v, CleanStart: true,
				Will: &packet.Will{Topic: topic + "/rude", QoS: 1, Payload: []byte("gone")}})
			rude.Close()
			m := in.next(t)
			if m.Topic != topic+"/rude" || string(m.Payload) != "gone" {
				t.Fatalf("got %q %q, want the will of the closed client", m.Topic, m.Payload)
			}
			in.none(t, 200*time.Millisecond)
		})
	}
}

// sessionOptions returns options for a persistent session in version v;
// first starts it afresh (MQTT 5 only: a 3.x clean session is never kept).
func sessionOptions(addr string, v packet.Version, id string, first bool) Options {
	o := Options{Addr: addr, Version: v, ClientID: id}
	if v == packet.V5 {
		o.CleanStart = first
		o.Properties.SessionExpiry = u32(60)
	}
	return o
}

// dropSession removes a persistent session from the shared broker.
func dropSession(addr string, v packet.Version, id string) {
	o := Options{Addr: addr, Version: v, ClientID: id, CleanStart: true}
	c, _, err := Connect(context.Background(), o)
	if err == nil {
		c.Disconnect(context.Background(), nil)
	}
}

func TestPersistentSessionQueuesQoS1(t *testing.T) {
	addr := needBroker(t)
	for _, v := range versions {
		t.Run(v.String(), func(t *testing.T) {
			topic := prefix() + "/queued"
			id := clientID()
			t.Cleanup(func() { dropSession(addr, v, id) })

			sub, _ := connect(t, sessionOptions(addr, v, id, true))
			subscribe(t, sub, topic, 1)
			if err := sub.Disconnect(testCtx(t), nil); err != nil {
				t.Fatal(err)
			}

			pub, _ := connect(t, Options{Addr: addr, Version: v, CleanStart: true})
			for i := range 5 {
				if _, err := pub.Publish(testCtx(t), &packet.Publish{Topic: topic, QoS: 1, Payload: fmt.Appendf(nil, "%d", i)}); err != nil {
					t.Fatal(err)
				}
			}

			in := newInbox()
			o := sessionOptions(addr, v, id, false)
			o.OnMessage = in.on
			_, ack := connect(t, o)
			if !ack.SessionPresent && v != packet.V31 {
				t.Errorf("SessionPresent = false after reconnecting to a persistent session")
			}
			for i := range 5 {
				m := in.next(t)
				if want := fmt.Sprint(i); string(m.Payload) != want || m.QoS != 1 {
					t.Fatalf("message %d: got %q QoS %d, want %q QoS 1", i, m.Payload, m.QoS, want)
				}
			}
		})
	}
}

func TestManualAcksRedeliveredWithDup(t *testing.T) {
	addr := needBroker(t)
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		for _, qos := range []byte{1, 2} {
			t.Run(fmt.Sprintf("%v/QoS%d", v, qos), func(t *testing.T) {
				topic := prefix() + "/held"
				id := clientID()
				t.Cleanup(func() { dropSession(addr, v, id) })

				in := newInbox()
				o := sessionOptions(addr, v, id, true)
				o.OnMessage, o.ManualAcks = in.on, true
				sub, _ := connect(t, o)
				subscribe(t, sub, topic, qos)

				pub, _ := connect(t, Options{Addr: addr, Version: v, CleanStart: true})
				if _, err := pub.Publish(testCtx(t), &packet.Publish{Topic: topic, QoS: qos, Payload: []byte("held")}); err != nil {
					t.Fatal(err)
				}
				first := in.next(t)
				if first.Dup {
					t.Fatalf("first delivery has DUP set")
				}
				sub.Close() // never acknowledged

				in2 := newInbox()
				o = sessionOptions(addr, v, id, false)
				o.OnMessage = in2.on
				connect(t, o)
				m := in2.next(t)
				if !m.Dup || string(m.Payload) != "held" || m.PacketID != first.PacketID {
					t.Fatalf("redelivery: dup=%v payload=%q id=%d, want dup, \"held\", id %d", m.Dup, m.Payload, m.PacketID, first.PacketID)
				}
			})
		}
	}
}

func TestManualAck(t *testing.T) {
	addr := needBroker(t)
	topic := prefix() + "/ack"
	in := newInbox()
	sub, _ := connect(t, Options{Addr: addr, Version: packet.V5, CleanStart: true, OnMessage: in.on, ManualAcks: true})
	subscribe(t, sub, topic, 2)
	pub, _ := connect(t, Options{Addr: addr, Version: packet.V5, CleanStart: true})
	for _, qos := range []byte{0, 1, 2} {
		if _, err := pub.Publish(testCtx(t), &packet.Publish{Topic: topic, QoS: qos, Payload: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		m := in.next(t)
		if err := sub.Ack(m); err != nil {
			t.Fatalf("Ack QoS %d: %v", qos, err)
		}
	}
	// The session still works: nothing is stuck in the server's window.
	if _, err := pub.Publish(testCtx(t), &packet.Publish{Topic: topic, QoS: 2, Payload: []byte("y")}); err != nil {
		t.Fatal(err)
	}
	sub.Ack(in.next(t))
	if err := pub.Ack(&packet.Publish{QoS: 1}); !errors.Is(err, ErrNotManualAcks) {
		t.Errorf("Ack without ManualAcks = %v, want ErrNotManualAcks", err)
	}
}

func TestUnsubscribe(t *testing.T) {
	addr := needBroker(t)
	for _, v := range versions {
		t.Run(v.String(), func(t *testing.T) {
			p := prefix()
			in := newInbox()
			sub, _ := connect(t, Options{Addr: addr, Version: v, CleanStart: true, OnMessage: in.on})
			subscribe(t, sub, p+"/gone", 1)
			subscribe(t, sub, p+"/marker", 1)
			ack, err := sub.Unsubscribe(testCtx(t), &packet.Unsubscribe{Filters: []string{p + "/gone"}})
			if err != nil {
				t.Fatal(err)
			}
			if v == packet.V5 && (len(ack.ReasonCodes) != 1 || ack.ReasonCodes[0] != packet.Success) {
				t.Errorf("UNSUBACK codes = %v, want [success]", ack.ReasonCodes)
			}
			pub, _ := connect(t, Options{Addr: addr, Version: v, CleanStart: true})
			pub.Publish(testCtx(t), &packet.Publish{Topic: p + "/gone", QoS: 1, Payload: []byte("no")})
			pub.Publish(testCtx(t), &packet.Publish{Topic: p + "/marker", QoS: 1, Payload: []byte("yes")})
			if m := in.next(t); m.Topic != p+"/marker" {
				t.Fatalf("got %q after unsubscribing, want only the marker", m.Topic)
			}
		})
	}
}

func TestKeepAlivePing(t *testing.T) {
	addr := needBroker(t)
	c, _ := connect(t, Options{Addr: addr, Version: packet.V311, CleanStart: true, KeepAlive: time.Second})
	eventually(t, 5*time.Second, "two PINGRESPs", func() bool { return c.pings.Load() >= 2 })
	if err := c.Err(); err != nil {
		t.Fatalf("connection ended: %v", err)
	}
}

func TestPublishAsyncPipeline(t *testing.T) {
	addr := needBroker(t)
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		t.Run(v.String(), func(t *testing.T) {
			const n = 10000
			topic := prefix() + "/pipeline"
			c, _ := connect(t, Options{Addr: addr, Version: v, CleanStart: true})
			var acked, failed atomic.Int64
			var firstErr atomic.Value
			all := make(chan struct{})
			done := func(rc packet.ReasonCode, err error) {
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
				if acked.Add(1) == n {
					close(all)
				}
			}
			payload := make([]byte, 64)
			p := &packet.Publish{Topic: topic, QoS: 1, Payload: payload}
			start := time.Now()
			for range n {
				if err := c.PublishAsync(p, done); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case <-all:
			case <-time.After(30 * time.Second):
				t.Fatalf("only %d of %d acknowledged", acked.Load(), n)
			}
			if failed.Load() > 0 {
				t.Fatalf("%d publishes failed, first: %v", failed.Load(), firstErr.Load())
			}
			t.Logf("%d QoS 1 publishes acknowledged in %v", n, time.Since(start))
			c.mu.Lock()
			left := len(c.ops)
			c.mu.Unlock()
			if left != 0 {
				t.Errorf("%d operations still tracked", left)
			}
		})
	}
}

// TestWebSocket runs MQTT over WebSocket through a small in-test proxy to
// Mosquitto (its build here has no WebSocket listener).
func TestWebSocket(t *testing.T) {
	addr := needBroker(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wsProxy(t, w, r, addr)
	}))
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/mqtt"

	for _, v := range []packet.Version{packet.V311, packet.V5} {
		t.Run(v.String(), func(t *testing.T) {
			topic := prefix() + "/ws"
			in := newInbox()
			c, _ := connect(t, Options{Addr: url, Version: v, CleanStart: true, OnMessage: in.on})
			subscribe(t, c, topic, 2)
			big := bytes.Repeat([]byte("w"), 100<<10) // spans many frames
			for _, qos := range []byte{0, 1, 2} {
				if _, err := c.Publish(testCtx(t), &packet.Publish{Topic: topic, QoS: qos, Payload: big}); err != nil {
					t.Fatal(err)
				}
				if m := in.next(t); !bytes.Equal(m.Payload, big) {
					t.Fatalf("QoS %d: payload of %d bytes, want %d", qos, len(m.Payload), len(big))
				}
			}
			if err := c.Disconnect(testCtx(t), nil); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestConcurrentPublishers(t *testing.T) {
	addr := needBroker(t)
	topic := prefix() + "/concurrent"
	var got atomic.Int64
	sub, _ := connect(t, Options{Addr: addr, Version: packet.V5, CleanStart: true, OnMessage: func(*packet.Publish) { got.Add(1) }})
	subscribe(t, sub, topic, 1)
	pub, _ := connect(t, Options{Addr: addr, Version: packet.V5, CleanStart: true})
	var wg sync.WaitGroup
	const workers, each = 8, 50
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				qos := byte((w + i) % 3)
				if _, err := pub.Publish(testCtx(t), &packet.Publish{Topic: topic, QoS: qos, Payload: []byte("c")}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	eventually(t, 10*time.Second, "all messages", func() bool { return got.Load() == workers*each })
}
