package broker

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/starlingmq/starling/internal/packet"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// tcpListener adapts net.Listener to Listener.
type tcpListener struct{ net.Listener }

// startBroker runs a broker on a loopback port and returns it with its
// address. It is closed when the test ends.
func startBroker(t testing.TB, o Options, lo *ListenerOptions) (*Broker, string) {
	t.Helper()
	if lo == nil {
		lo = &ListenerOptions{Name: "test"}
	}
	if !o.RetainAvailable {
		o.RetainAvailable = true
	}
	if o.MaxInflight == 0 {
		o.MaxInflight = 20
	}
	if o.TopicAliasMaximum == 0 {
		o.TopicAliasMaximum = 10
	}
	o.AllowZeroLengthClientID = true
	if o.Logger == nil && testing.Verbose() {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	b := New(o)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Serve(tcpListener{ln}, lo)
	}()
	t.Cleanup(func() {
		b.Close()
		<-done
	})
	return b, ln.Addr().String()
}

// rawClient speaks MQTT packet by packet, so tests control every byte.
type rawClient struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
	v  packet.Version
}

func dialRaw(t testing.TB, addr string, v packet.Version) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawClient{t: t, nc: nc, br: bufio.NewReader(nc), v: v}
}

func (c *rawClient) send(p packet.Packet) {
	c.t.Helper()
	b, err := packet.Encode(p, c.v)
	if err != nil {
		c.t.Fatalf("encode %v: %v", p.Type(), err)
	}
	c.sendRaw(b)
}

func (c *rawClient) sendRaw(b []byte) {
	c.t.Helper()
	c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// recv returns the next packet, failing the test after 5 s.
func (c *rawClient) recv() packet.Packet {
	c.t.Helper()
	p, err := c.tryRecv(5 * time.Second)
	if err != nil {
		c.t.Fatalf("recv: %v", err)
	}
	return p
}

func (c *rawClient) tryRecv(d time.Duration) (packet.Packet, error) {
	c.nc.SetReadDeadline(time.Now().Add(d))
	return packet.ReadPacket(c.br, c.v, 0)
}

// expectNothing checks that no packet arrives within d.
func (c *rawClient) expectNothing(d time.Duration) {
	c.t.Helper()
	p, err := c.tryRecv(d)
	if err == nil {
		c.t.Fatalf("unexpected %T %+v", p, p)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		c.t.Fatalf("connection failed instead of staying quiet: %v", err)
	}
}

// expectClosed checks that the server closes the connection, returning the
// DISCONNECT it sent first, if any.
func (c *rawClient) expectClosed() *packet.Disconnect {
	c.t.Helper()
	var d *packet.Disconnect
	for {
		p, err := c.tryRecv(5 * time.Second)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				c.t.Fatalf("connection still open")
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !isReset(err) {
				c.t.Logf("closed with %v", err)
			}
			return d
		}
		if dp, ok := p.(*packet.Disconnect); ok {
			d = dp
			continue
		}
		c.t.Logf("packet before close: %T", p)
	}
}

func isReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe)
}

func (c *rawClient) connect(cp *packet.Connect) *packet.Connack {
	c.t.Helper()
	if cp.ProtocolName == "" {
		cp.ProtocolName = "MQTT"
		if c.v == packet.V31 {
			cp.ProtocolName = "MQIsdp"
		}
	}
	cp.Version = c.v
	c.send(cp)
	p := c.recv()
	ack, ok := p.(*packet.Connack)
	if !ok {
		c.t.Fatalf("want CONNACK, got %T", p)
	}
	return ack
}

// connected dials and connects with a clean session.
func connected(t testing.TB, addr string, v packet.Version, id string) *rawClient {
	t.Helper()
	c := dialRaw(t, addr, v)
	ack := c.connect(&packet.Connect{ClientID: id, CleanStart: true, KeepAlive: 60})
	if ack.ReasonCode != packet.Success {
		t.Fatalf("connect %s: %v", id, ack.ReasonCode)
	}
	return c
}

func (c *rawClient) subscribe(id uint16, subs ...packet.Subscription) *packet.Suback {
	c.t.Helper()
	c.send(&packet.Subscribe{PacketID: id, Subscriptions: subs})
	p := c.recv()
	sa, ok := p.(*packet.Suback)
	if !ok {
		c.t.Fatalf("want SUBACK, got %T %+v", p, p)
	}
	return sa
}

func (c *rawClient) recvPublish() *packet.Publish {
	c.t.Helper()
	p := c.recv()
	pub, ok := p.(*packet.Publish)
	if !ok {
		c.t.Fatalf("want PUBLISH, got %T %+v", p, p)
	}
	return pub
}

// eventually polls cond until it holds or 5 s pass.
func eventually(t testing.TB, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", msg)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
