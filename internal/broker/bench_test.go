package broker

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/starlingmq/starling/internal/packet"
	"github.com/starlingmq/starling/internal/session"
)

// discardConn is a connection that swallows writes, so benchmarks measure
// the broker and not the kernel.
type discardConn struct {
	once   sync.Once
	closed chan struct{}
}

func newDiscardConn() *discardConn { return &discardConn{closed: make(chan struct{})} }

func (d *discardConn) Read([]byte) (int, error) { <-d.closed; return 0, net.ErrClosed }
func (d *discardConn) Write(p []byte) (int, error) {
	select {
	case <-d.closed:
		return 0, net.ErrClosed
	default:
		return len(p), nil
	}
}
func (d *discardConn) Close() error                     { d.once.Do(func() { close(d.closed) }); return nil }
func (d *discardConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (d *discardConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (d *discardConn) SetDeadline(time.Time) error      { return nil }
func (d *discardConn) SetReadDeadline(time.Time) error  { return nil }
func (d *discardConn) SetWriteDeadline(time.Time) error { return nil }

// attachSubscriber makes an online session with one subscription whose
// connection discards what it is sent.
func attachSubscriber(tb testing.TB, b *Broker, id, filter string, qos byte, v packet.Version) *conn {
	nc := newDiscardConn()
	c := newConn(b, nc, &ListenerOptions{})
	c.version = v
	c.info = &ClientInfo{ClientID: id}
	s := &sess{b: b, id: id, st: session.New(id, session.Limits{MaxInflight: 65535}), conn: c, info: c.info, expiry: 0}
	c.s = s
	b.mu.Lock()
	b.sessions[id] = s
	b.mu.Unlock()
	sub := &subscription{filter: filter, inner: filter, qos: qos}
	s.subs = map[string]*subscription{filter: sub}
	b.addSubscription(s, sub)
	tb.Cleanup(func() {
		c.shutdown()
		c.wg.Wait()
		nc.Close()
	})
	return c
}

func benchRoute(b *testing.B, subs int, qos byte, v packet.Version) {
	br := New(Options{MaxWriteBuffer: 1 << 30})
	defer br.Close()
	for i := range subs {
		attachSubscriber(b, br, fmt.Sprintf("sub-%d", i), "bench/+/data", 2, v)
	}
	// background subscriptions that do not match, so the trie is not trivial
	for i := range 1000 {
		attachSubscriber(b, br, fmt.Sprintf("other-%d", i), fmt.Sprintf("other/%d/#", i), 0, v)
	}
	p := &packet.Publish{Topic: "bench/1/data", QoS: qos, Payload: make([]byte, 64)}
	now := time.Now()
	msg := newMessage(p, "pub", now)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		br.route(msg, nil, now)
	}
	b.ReportMetric(float64(b.N*subs)/b.Elapsed().Seconds(), "deliveries/s")
}

// BenchmarkRouteQoS0 measures matching, merging and encoding a QoS 0
// message into each subscriber's write buffer: 0 allocs/op is the goal.
func BenchmarkRouteQoS0(b *testing.B) {
	for _, n := range []int{1, 100} {
		for _, v := range []packet.Version{packet.V311, packet.V5} {
			b.Run(fmt.Sprintf("subs=%d/v=%v", n, v), func(b *testing.B) { benchRoute(b, n, 0, v) })
		}
	}
}

// BenchmarkPublishPath measures a whole QoS 0 publish: decode from the wire
// bytes, build the message, route and encode to 100 subscribers.
func BenchmarkPublishPath(b *testing.B) {
	br := New(Options{MaxWriteBuffer: 1 << 30})
	defer br.Close()
	for i := range 100 {
		attachSubscriber(b, br, fmt.Sprintf("sub-%d", i), "bench/+/data", 0, packet.V311)
	}
	raw, _ := packet.Encode(&packet.Publish{Topic: "bench/1/data", Payload: make([]byte, 64)}, packet.V311)
	b.ReportAllocs()
	for b.Loop() {
		p, _, err := packet.Decode(raw, packet.V311)
		if err != nil {
			b.Fatal(err)
		}
		now := time.Now()
		br.route(newMessage(p.(*packet.Publish), "pub", now), nil, now)
	}
}
