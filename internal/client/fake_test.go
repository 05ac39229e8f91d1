package client

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/starlingmq/starling/internal/packet"
)

// wsProxy accepts an MQTT WebSocket and relays it to the TCP broker at addr.
func wsProxy(t testing.TB, w http.ResponseWriter, r *http.Request, addr string) {
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"mqtt"}})
	if err != nil {
		t.Errorf("ws accept: %v", err)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	client := websocket.NetConn(ctx, ws, websocket.MessageBinary)
	defer client.Close()
	backend, err := net.Dial("tcp", addr)
	if err != nil {
		t.Errorf("ws proxy dial: %v", err)
		return
	}
	defer backend.Close()
	var wg sync.WaitGroup
	wg.Go(func() {
		io.Copy(backend, client)
		backend.Close()
	})
	io.Copy(client, backend)
	client.Close()
	wg.Wait()
}

// connackV5 is a successful MQTT 5 CONNACK with the given properties.
func connackV5(props packet.Properties) *packet.Connack {
	return &packet.Connack{Properties: props}
}

func TestRefusedConnack(t *testing.T) {
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		t.Run(v.String(), func(t *testing.T) {
			addr := fakeServer(t, v, func(conn net.Conn, _ *bufio.Reader, _ *packet.Connect) {
				writePacket(t, conn, &packet.Connack{ReasonCode: packet.NotAuthorized}, v)
			})
			c, ack, err := Connect(testCtx(t), Options{Addr: addr, Version: v})
			if c != nil {
				c.Close()
				t.Fatal("got a client for a refused connection")
			}
			if !errors.Is(err, packet.NotAuthorized) {
				t.Fatalf("err = %v, want one wrapping NotAuthorized", err)
			}
			if ack == nil || ack.ReasonCode != packet.NotAuthorized {
				t.Fatalf("CONNACK = %+v, want the refusing CONNACK", ack)
			}
		})
	}
}

func TestConnectTimeout(t *testing.T) {
	addr := fakeServer(t, packet.V311, func(net.Conn, *bufio.Reader, *packet.Connect) {})
	start := time.Now()
	_, _, err := Connect(context.Background(), Options{Addr: addr, ConnectTimeout: 200 * time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestConnectSendsOptions(t *testing.T) {
	got := make(chan *packet.Connect, 1)
	addr := fakeServer(t, packet.V5, func(conn net.Conn, _ *bufio.Reader, c *packet.Connect) {
		got <- c
		writePacket(t, conn, connackV5(packet.Properties{}), packet.V5)
	})
	c, _ := connect(t, Options{Addr: addr, Version: packet.V5, ClientID: "opts", KeepAlive: 1500 * time.Millisecond,
		Username: "u", Password: []byte{}, Properties: packet.Properties{SessionExpiry: u32(7)}})
	c.Close()
	cp := <-got
	if cp.ClientID != "opts" || cp.KeepAlive != 2 || !cp.UsernameFlag || cp.Username != "u" ||
		!cp.PasswordFlag || len(cp.Password) != 0 || cp.Properties.SessionExpiry == nil || *cp.Properties.SessionExpiry != 7 {
		t.Fatalf("CONNECT = %+v", cp)
	}
}

func TestServerTopicAlias(t *testing.T) {
	served := make(chan struct{})
	addr := fakeServer(t, packet.V5, func(conn net.Conn, br *bufio.Reader, _ *packet.Connect) {
		defer close(served)
		writePacket(t, conn, connackV5(packet.Properties{}), packet.V5)
		writePacket(t, conn, &packet.Publish{Topic: "a/b", Payload: []byte("1"), Properties: packet.Properties{TopicAlias: u16(3)}}, packet.V5)
		writePacket(t, conn, &packet.Publish{Payload: []byte("2"), Properties: packet.Properties{TopicAlias: u16(3)}}, packet.V5)
		writePacket(t, conn, &packet.Publish{Payload: []byte("3"), Properties: packet.Properties{TopicAlias: u16(4)}}, packet.V5)
		pk, err := packet.ReadPacket(br, packet.V5, 0)
		if err != nil {
			t.Errorf("read: %v", err)
			return
		}
		if d, ok := pk.(*packet.Disconnect); !ok || d.ReasonCode != packet.ProtocolError {
			t.Errorf("got %+v, want DISCONNECT protocol error for an unset alias", pk)
		}
	})
	in := newInbox()
	var discErr error
	c, _ := connect(t, Options{Addr: addr, Version: packet.V5, OnMessage: in.on,
		Properties:   packet.Properties{TopicAliasMaximum: u16(10)},
		OnDisconnect: func(_ *packet.Disconnect, err error) { discErr = err }})
	for _, want := range []string{"1", "2"} {
		if m := in.next(t); m.Topic != "a/b" || string(m.Payload) != want {
			t.Fatalf("got %q %q, want \"a/b\" %q", m.Topic, m.Payload, want)
		}
	}
	<-c.Done()
	<-served
	if !errors.Is(discErr, packet.ProtocolError) {
		t.Fatalf("OnDisconnect err = %v, want protocol error", discErr)
	}
}

func TestInflightWindow(t *testing.T) {
	seen := make(chan *packet.Publish, 100)
	release := make(chan uint16, 100)
	addr := fakeServer(t, packet.V5, func(conn net.Conn, br *bufio.Reader, _ *packet.Connect) {
		writePacket(t, conn, connackV5(packet.Properties{ReceiveMaximum: u16(3)}), packet.V5)
		go func() {
			for id := range release {
				writePacket(t, conn, &packet.Puback{PacketID: id}, packet.V5)
			}
		}()
		for {
			pk, err := packet.ReadPacket(br, packet.V5, 0)
			if err != nil {
				return
			}
			if p, ok := pk.(*packet.Publish); ok {
				seen <- p
			}
		}
	})
	defer close(release)
	c, _ := connect(t, Options{Addr: addr, Version: packet.V5})
	results := make(chan packet.ReasonCode, 10)
	for i := range 10 {
		p := &packet.Publish{Topic: "w", QoS: 1, Payload: []byte{byte(i)}}
		if err := c.PublishAsync(p, func(rc packet.ReasonCode, err error) {
			if err != nil {
				t.Error(err)
			}
			results <- rc
		}); err != nil {
			t.Fatal(err)
		}
	}
	var got []*packet.Publish
	for range 3 {
		got = append(got, <-seen)
	}
	select {
	case p := <-seen:
		t.Fatalf("4th publish %v sent with a receive maximum of 3", p.Payload)
	case <-time.After(200 * time.Millisecond):
	}
	for len(got) < 10 {
		release <- got[len(got)-3].PacketID
		got = append(got, <-seen)
	}
	for _, p := range got[7:] {
		release <- p.PacketID
	}
	for i, p := range got {
		if p.Payload[0] != byte(i) {
			t.Fatalf("publish %d carries %d: order lost", i, p.Payload[0])
		}
	}
	for range 10 {
		<-results
	}
}

func TestServerMaximumPacketSize(t *testing.T) {
	addr := fakeServer(t, packet.V5, func(conn net.Conn, br *bufio.Reader, _ *packet.Connect) {
		writePacket(t, conn, connackV5(packet.Properties{MaximumPacketSize: u32(100)}), packet.V5)
		io.Copy(io.Discard, br)
	})
	c, _ := connect(t, Options{Addr: addr, Version: packet.V5})
	_, err := c.Publish(testCtx(t), &packet.Publish{Topic: "big", Payload: make([]byte, 200)})
	if !errors.Is(err, packet.PacketTooLarge) {
		t.Fatalf("err = %v, want PacketTooLarge", err)
	}
	if _, err := c.Publish(testCtx(t), &packet.Publish{Topic: "small", Payload: make([]byte, 10)}); err != nil {
		t.Fatalf("small publish: %v", err)
	}
}

func TestPingTimeout(t *testing.T) {
	addr := fakeServer(t, packet.V311, func(conn net.Conn, br *bufio.Reader, _ *packet.Connect) {
		writePacket(t, conn, &packet.Connack{}, packet.V311)
		io.Copy(io.Discard, br) // swallows PINGREQ
	})
	var once sync.Once
	discErr := make(chan error, 1)
	c, _ := connect(t, Options{Addr: addr, KeepAlive: time.Second,
		OnDisconnect: func(_ *packet.Disconnect, err error) { once.Do(func() { discErr <- err }) }})
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("connection not dropped without PINGRESP")
	}
	if err := <-discErr; !errors.Is(err, ErrPingTimeout) {
		t.Fatalf("OnDisconnect err = %v, want ErrPingTimeout", err)
	}
}

func TestServerDisconnectFailsPending(t *testing.T) {
	addr := fakeServer(t, packet.V5, func(conn net.Conn, br *bufio.Reader, _ *packet.Connect) {
		writePacket(t, conn, connackV5(packet.Properties{}), packet.V5)
		packet.ReadPacket(br, packet.V5, 0) // the PUBLISH, never acknowledged
		writePacket(t, conn, &packet.Disconnect{ReasonCode: packet.ServerShuttingDown}, packet.V5)
	})
	var disc *packet.Disconnect
	c, _ := connect(t, Options{Addr: addr, Version: packet.V5,
		OnDisconnect: func(d *packet.Disconnect, _ error) { disc = d }})
	_, err := c.Publish(testCtx(t), &packet.Publish{Topic: "x", QoS: 1})
	if !errors.Is(err, packet.ServerShuttingDown) {
		t.Fatalf("Publish err = %v, want ServerShuttingDown", err)
	}
	<-c.Done()
	if disc == nil || disc.ReasonCode != packet.ServerShuttingDown {
		t.Fatalf("OnDisconnect got %+v", disc)
	}
	if _, err := c.Publish(testCtx(t), &packet.Publish{Topic: "x", QoS: 1}); !errors.Is(err, packet.ServerShuttingDown) {
		t.Fatalf("Publish after end = %v", err)
	}
}

func TestQoS2ReceiveExactlyOnce(t *testing.T) {
	answers := make(chan packet.Packet, 10)
	addr := fakeServer(t, packet.V5, func(conn net.Conn, br *bufio.Reader, _ *packet.Connect) {
		writePacket(t, conn, connackV5(packet.Properties{}), packet.V5)
		p := &packet.Publish{Topic: "q2", QoS: 2, PacketID: 7, Payload: []byte("once")}
		writePacket(t, conn, p, packet.V5)
		p.Dup = true
		writePacket(t, conn, p, packet.V5)
		for range 2 {
			pk, err := packet.ReadPacket(br, packet.V5, 0)
			if err != nil {
				return
			}
			answers <- pk
		}
		writePacket(t, conn, &packet.Pubrel{PacketID: 7}, packet.V5)
		writePacket(t, conn, &packet.Pubrel{PacketID: 8}, packet.V5)
		for range 2 {
			pk, err := packet.ReadPacket(br, packet.V5, 0)
			if err != nil {
				return
			}
			answers <- pk
		}
	})
	in := newInbox()
	connect(t, Options{Addr: addr, Version: packet.V5, OnMessage: in.on})
	in.next(t)
	for i, want := range []packet.Packet{
		&packet.Pubrec{PacketID: 7}, &packet.Pubrec{PacketID: 7},
		&packet.Pubcomp{PacketID: 7}, &packet.Pubcomp{PacketID: 8, ReasonCode: packet.PacketIdentifierNotFound},
	} {
		select {
		case got := <-answers:
			if got.Type() != want.Type() || ackID(got) != ackID(want) || ackRC(got) != ackRC(want) {
				t.Fatalf("answer %d = %#v, want %#v", i, got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("answer %d missing", i)
		}
	}
	in.none(t, 50*time.Millisecond)
}

func ackID(p packet.Packet) uint16 {
	switch p := p.(type) {
	case *packet.Pubrec:
		return p.PacketID
	case *packet.Pubcomp:
		return p.PacketID
	}
	return 0
}

func ackRC(p packet.Packet) packet.ReasonCode {
	switch p := p.(type) {
	case *packet.Pubrec:
		return p.ReasonCode
	case *packet.Pubcomp:
		return p.ReasonCode
	}
	return 0
}

// sink is a server that accepts a connection, answers CONNACK and discards
// everything else.
func sink(b *testing.B, v packet.Version) string {
	return fakeServer(b, v, func(conn net.Conn, br *bufio.Reader, _ *packet.Connect) {
		writePacket(b, conn, &packet.Connack{}, v)
		io.Copy(io.Discard, br)
	})
}

func BenchmarkPublishAsyncQoS0(b *testing.B) {
	c, _ := connect(b, Options{Addr: sink(b, packet.V311)})
	p := &packet.Publish{Topic: "bench/topic", Payload: make([]byte, 64)}
	b.ReportAllocs()
	b.SetBytes(64)
	for b.Loop() {
		if err := c.PublishAsync(p, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPublishAsyncQoS1(b *testing.B) {
	// Against Mosquitto, so acknowledgements really flow.
	c, _ := connect(b, Options{Addr: needBroker(b), CleanStart: true})
	p := &packet.Publish{Topic: prefix() + "/bench", QoS: 1, Payload: make([]byte, 64)}
	var wg sync.WaitGroup
	done := func(packet.ReasonCode, error) { wg.Done() }
	b.ReportAllocs()
	for b.Loop() {
		wg.Add(1)
		if err := c.PublishAsync(p, done); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
}

func TestCancelledPublishWhileQueuedIsNotSent(t *testing.T) {
	seen := make(chan *packet.Publish, 10)
	ack := make(chan uint16, 1)
	addr := fakeServer(t, packet.V5, func(conn net.Conn, br *bufio.Reader, _ *packet.Connect) {
		writePacket(t, conn, connackV5(packet.Properties{ReceiveMaximum: u16(1)}), packet.V5)
		go func() {
			for id := range ack {
				writePacket(t, conn, &packet.Puback{PacketID: id}, packet.V5)
			}
		}()
		for {
			pk, err := packet.ReadPacket(br, packet.V5, 0)
			if err != nil {
				return
			}
			if p, ok := pk.(*packet.Publish); ok {
				seen <- p
			}
		}
	})
	defer close(ack)
	c, _ := connect(t, Options{Addr: addr, Version: packet.V5})
	first := make(chan error, 1)
	c.PublishAsync(&packet.Publish{Topic: "a", QoS: 1, Payload: []byte("1")}, func(_ packet.ReasonCode, err error) { first <- err })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Publish(ctx, &packet.Publish{Topic: "a", QoS: 1, Payload: []byte("2")}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish with a full window = %v, want deadline exceeded", err)
	}
	third := make(chan error, 1)
	c.PublishAsync(&packet.Publish{Topic: "a", QoS: 1, Payload: []byte("3")}, func(_ packet.ReasonCode, err error) { third <- err })
	p := <-seen
	ack <- p.PacketID
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if p := <-seen; string(p.Payload) != "3" {
		t.Fatalf("sent %q after the window opened, want \"3\" (\"2\" was cancelled)", p.Payload)
	}
}

// tlsProxy serves TLS on a free port and relays each connection to addr.
func tlsProxy(t *testing.T, cfg *tls.Config, addr string) string {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				backend, err := net.Dial("tcp", addr)
				if err != nil {
					return
				}
				defer backend.Close()
				go func() { io.Copy(backend, conn); backend.Close() }()
				io.Copy(conn, backend)
			})
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

func TestTLS(t *testing.T) {
	addr := needBroker(t)
	// httptest supplies a certificate for 127.0.0.1 and a client config
	// trusting it; the HTTP server serves wss:// through wsProxy.
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wsProxy(t, w, r, addr)
	}))
	defer srv.Close()
	clientTLS := srv.Client().Transport.(*http.Transport).TLSClientConfig
	tlsAddr := tlsProxy(t, srv.TLS, addr)

	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"tls-scheme", Options{Addr: "tls://" + tlsAddr, TLS: clientTLS}},
		{"bare-with-config", Options{Addr: tlsAddr, TLS: clientTLS}},
		{"wss", Options{Addr: "wss" + strings.TrimPrefix(srv.URL, "https") + "/mqtt", TLS: clientTLS}},
		{"local-addr", Options{Addr: "tls://" + tlsAddr, TLS: clientTLS,
			Dialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topic := prefix() + "/tls"
			in := newInbox()
			tc.o.OnMessage, tc.o.CleanStart, tc.o.Version = in.on, true, packet.V5
			c, _ := connect(t, tc.o)
			subscribe(t, c, topic, 1)
			if _, err := c.Publish(testCtx(t), &packet.Publish{Topic: topic, QoS: 1, Payload: []byte("secret")}); err != nil {
				t.Fatal(err)
			}
			if m := in.next(t); string(m.Payload) != "secret" {
				t.Fatalf("got %q", m.Payload)
			}
			if err := c.Disconnect(testCtx(t), nil); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("untrusted", func(t *testing.T) {
		_, _, err := Connect(testCtx(t), Options{Addr: "tls://" + tlsAddr})
		if err == nil {
			t.Fatal("connected to a server with an untrusted certificate")
		}
	})
}
