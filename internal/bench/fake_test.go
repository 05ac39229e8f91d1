package bench

import (
	"bufio"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/starlingmq/starling/internal/packet"
)

// key names one benchmark message.
type key struct {
	stream uint32
	seq    uint64
}

// faults tells the fake broker what to do to messages on their way to
// subscribers: drop some, send some twice, and hold some back until the
// next message of the same stream has gone out to that subscriber (reordering them).
type faults struct {
	drop, dup, hold map[key]bool
}

// fakeBroker speaks just enough MQTT 3.1.1 for the benchmark: CONNECT,
// SUBSCRIBE (exact filters and a trailing "+"), PUBLISH at QoS 0 and 1
// (acknowledged at once, forwarded at QoS 0), PINGREQ and DISCONNECT.
type fakeBroker struct {
	t  *testing.T
	ln net.Listener
	f  faults
	wg sync.WaitGroup

	mu    sync.Mutex
	subs  map[*fakeConn][]string
	conns map[net.Conn]bool
}

type fakeConn struct {
	mu   sync.Mutex // serialises writes
	w    *bufio.Writer
	nc   net.Conn
	held map[uint32][]*packet.Publish // by stream
}

func newFakeBroker(t *testing.T, f faults) *fakeBroker {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &fakeBroker{t: t, ln: ln, f: f, subs: map[*fakeConn][]string{}, conns: map[net.Conn]bool{}}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns[nc] = true
			b.mu.Unlock()
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				b.serve(nc)
			}()
		}
	}()
	t.Cleanup(b.close)
	return b
}

func (b *fakeBroker) addr() string { return b.ln.Addr().String() }

func (b *fakeBroker) close() {
	b.ln.Close()
	b.mu.Lock()
	for nc := range b.conns {
		nc.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

func (c *fakeConn) send(p packet.Packet) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, err := packet.Encode(p, packet.V311)
	if err != nil {
		panic(err)
	}
	c.w.Write(b)
	c.w.Flush()
}

func (b *fakeBroker) serve(nc net.Conn) {
	c := &fakeConn{w: bufio.NewWriter(nc), nc: nc}
	defer func() {
		b.mu.Lock()
		delete(b.subs, c)
		delete(b.conns, nc)
		b.mu.Unlock()
		nc.Close()
	}()
	br := bufio.NewReader(nc)
	for {
		pk, err := packet.ReadPacket(br, packet.V311, 0)
		if err != nil {
			return
		}
		switch p := pk.(type) {
		case *packet.Connect:
			c.send(&packet.Connack{})
		case *packet.Subscribe:
			ack := &packet.Suback{PacketID: p.PacketID}
			b.mu.Lock()
			for _, s := range p.Subscriptions {
				b.subs[c] = append(b.subs[c], s.Filter)
				ack.ReasonCodes = append(ack.ReasonCodes, 0)
			}
			b.mu.Unlock()
			c.send(ack)
		case *packet.Publish:
			b.route(p)
			if p.QoS == 1 {
				c.send(&packet.Puback{PacketID: p.PacketID})
			}
		case *packet.Pingreq:
			c.send(&packet.Pingresp{})
		case *packet.Disconnect:
			return
		}
	}
}

func matches(filter, topic string) bool {
	if pre, ok := strings.CutSuffix(filter, "+"); ok {
		return strings.HasPrefix(topic, pre) && !strings.Contains(topic[len(pre):], "/")
	}
	return filter == topic
}

// route forwards p at QoS 0 to every matching subscriber, applying faults.
func (b *fakeBroker) route(p *packet.Publish) {
	h, ok := parseHeader(p.Payload)
	if !ok {
		b.t.Errorf("fake broker: a payload without header")
		return
	}
	k := key{h.stream, h.seq}
	out := &packet.Publish{Topic: p.Topic, Payload: append([]byte(nil), p.Payload...)}
	b.mu.Lock()
	var targets []*fakeConn
	for c, fs := range b.subs {
		for _, f := range fs {
			if matches(f, p.Topic) {
				targets = append(targets, c)
				break
			}
		}
	}
	b.mu.Unlock()
	for _, c := range targets {
		switch {
		case b.f.drop[k]:
			continue
		case b.f.hold[k]:
			c.mu.Lock()
			if c.held == nil {
				c.held = map[uint32][]*packet.Publish{}
			}
			c.held[h.stream] = append(c.held[h.stream], out)
			c.mu.Unlock()
			continue
		}
		c.send(out)
		if b.f.dup[k] {
			c.send(out)
		}
		c.mu.Lock()
		held := c.held[h.stream]
		delete(c.held, h.stream)
		c.mu.Unlock()
		for _, hp := range held {
			c.send(hp)
		}
	}
}
