package cluster

import (
	"bufio"
	"log/slog"
	"net"
	"sync"
	"testing"

	"github.com/starlingmq/starling/internal/cluster/proto"
	"github.com/starlingmq/starling/internal/packet"
)

// TestLinkWriterKeepsFramesWhole sends frames from many goroutines while
// the writer drains them, and checks that the peer decodes every one: the
// writer's two buffers must never alias (a wake-up with nothing to write
// once made them share memory and corrupted the stream).
func TestLinkWriterKeepsFramesWhole(t *testing.T) {
	a, b := net.Pipe()
	n := &Node{log: slog.New(slog.DiscardHandler)}
	l := newLink(n, "peer", 1, proto.Version, a)
	n.goroutine(l.writeLoop)
	const senders, each = 8, 2000
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for i := range each {
				if i%3 == 0 {
					l.send(&proto.Ping{SentUnixNano: int64(i)})
					continue
				}
				fm := proto.ForwardMessage{Origin: "o", Publish: &packet.Publish{Topic: "t/" + string(rune('a'+s)), Payload: make([]byte, i%700)}}
				l.forward(&fm, nil)
			}
		})
	}
	br := bufio.NewReader(b)
	got := 0
	for got < senders*each {
		frame, err := proto.ReadFrame(br, nil, 0)
		if err != nil {
			t.Fatalf("frame %d: %v", got, err)
		}
		if _, err := proto.Decode(frame); err != nil {
			t.Fatalf("frame %d: %v", got, err)
		}
		got++
	}
	wg.Wait()
	l.close()
	n.wg.Wait()
	b.Close()
}
