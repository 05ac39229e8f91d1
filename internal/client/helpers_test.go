package client

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/starlingmq/starling/internal/packet"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// mosquittoAddr is the shared Mosquitto service the integration tests use.
const mosquittoAddr = "127.0.0.1:1883"

// needBroker skips the test when Mosquitto is not reachable, or fails it
// when STARLING_REQUIRE_SERVICES=1.
func needBroker(t testing.TB) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", mosquittoAddr, time.Second)
	if err != nil {
		if os.Getenv("STARLING_REQUIRE_SERVICES") == "1" {
			t.Fatalf("mosquitto not reachable at %s: %v", mosquittoAddr, err)
		}
		t.Skipf("mosquitto not reachable at %s (%v); set up the broker or STARLING_REQUIRE_SERVICES=1 to fail", mosquittoAddr, err)
	}
	conn.Close()
	return mosquittoAddr
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// prefix returns a topic prefix no other test run shares.
func prefix() string { return "starling-client-test/" + randHex(6) }

// clientID returns a unique client id short enough for MQTT 3.1 (23 bytes).
func clientID() string { return "sct-" + randHex(8) }

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// connect connects and closes the client at the end of the test.
func connect(t testing.TB, o Options) (*Client, *packet.Connack) {
	t.Helper()
	if o.ClientID == "" {
		o.ClientID = clientID()
	}
	c, ack, err := Connect(testCtx(t), o)
	if err != nil {
		t.Fatalf("Connect(%s, v%v): %v", o.Addr, o.Version, err)
	}
	t.Cleanup(func() { c.Close() })
	return c, ack
}

// inbox collects received messages.
type inbox struct {
	ch chan *packet.Publish
}

func newInbox() *inbox { return &inbox{ch: make(chan *packet.Publish, 1024)} }

func (b *inbox) on(p *packet.Publish) { b.ch <- p }

func (b *inbox) next(t testing.TB) *packet.Publish {
	t.Helper()
	select {
	case p := <-b.ch:
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("no message within 10s")
		return nil
	}
}

func (b *inbox) none(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case p := <-b.ch:
		t.Fatalf("unexpected message on %q: %q", p.Topic, p.Payload)
	case <-time.After(d):
	}
}

func subscribe(t testing.TB, c *Client, filter string, qos byte) {
	t.Helper()
	ack, err := c.Subscribe(testCtx(t), &packet.Subscribe{Subscriptions: []packet.Subscription{{Filter: filter, QoS: qos}}})
	if err != nil {
		t.Fatalf("Subscribe(%s): %v", filter, err)
	}
	if len(ack.ReasonCodes) != 1 || ack.ReasonCodes[0] != packet.ReasonCode(qos) {
		t.Fatalf("Subscribe(%s, QoS %d): SUBACK codes %v", filter, qos, ack.ReasonCodes)
	}
}

// eventually polls cond every 10ms until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fakeServer accepts one connection on a free port, reads its CONNECT and
// hands both to serve. It is torn down at the end of the test.
func fakeServer(t testing.TB, v packet.Version, serve func(conn net.Conn, br *bufio.Reader, c *packet.Connect)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		mu.Lock()
		conns = append(conns, conn)
		mu.Unlock()
		br := bufio.NewReader(conn)
		pk, err := packet.ReadPacket(br, v, 0)
		if err != nil {
			t.Errorf("fake server: read CONNECT: %v", err)
			conn.Close()
			return
		}
		serve(conn, br, pk.(*packet.Connect))
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func writePacket(t testing.TB, conn net.Conn, p packet.Packet, v packet.Version) {
	t.Helper()
	b, err := packet.Encode(p, v)
	if err != nil {
		t.Errorf("fake server: encode %v: %v", p.Type(), err)
		return
	}
	conn.Write(b)
}

func u16(v uint16) *uint16 { return &v }
func u32(v uint32) *uint32 { return &v }
