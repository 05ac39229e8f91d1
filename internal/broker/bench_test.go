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
		br.routeMsg(msg, nil, now, false, inbound{})
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

// repeatReader yields the same bytes forever.
type repeatReader struct {
	b   []byte
	off int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k := copy(p[n:], r.b[r.off:])
		n += k
		r.off = (r.off + k) % len(r.b)
	}
	return n, nil
}

func (r *repeatReader) ReadByte() (byte, error) {
	c := r.b[r.off]
	r.off = (r.off + 1) % len(r.b)
	return c, nil
}

// BenchmarkPublishPath measures a whole QoS 0 publish as a connection's
// reader handles it: read and decode from the wire bytes, authorize, route
// and encode into 100 subscribers' write buffers. 0 allocs/op is the goal.
func BenchmarkPublishPath(b *testing.B) {
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		b.Run("v="+v.String(), func(b *testing.B) {
			br := New(Options{MaxWriteBuffer: 1 << 30})
			defer br.Close()
			for i := range 100 {
				attachSubscriber(b, br, fmt.Sprintf("sub-%d", i), "bench/+/data", 0, v)
			}
			pub := attachSubscriber(b, br, "publisher", "publisher/inbox", 0, v)
			raw, _ := packet.Encode(&packet.Publish{Topic: "bench/1/data", Payload: make([]byte, 64)}, v)
			rd := packet.NewReader(&repeatReader{b: raw})
			b.ReportAllocs()
			for b.Loop() {
				p, err := rd.ReadPacket(v, 0)
				if err != nil {
					b.Fatal(err)
				}
				if err := pub.handlePublish(p.(*packet.Publish)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}
