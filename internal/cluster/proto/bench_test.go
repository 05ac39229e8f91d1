package proto

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/starlingmq/starling/internal/packet"
)

// benchForward is a batch of 64 QoS 1 messages with 64-byte payloads from
// a handful of publishers, as a busy link carries them.
func benchForward() *Forward {
	payload := bytes.Repeat([]byte{'p'}, 64)
	m := &Forward{Messages: make([]ForwardMessage, 64)}
	for i := range m.Messages {
		m.Messages[i] = ForwardMessage{
			Seq: uint64(1000 + i), NeedsAck: true, Origin: "node-1",
			PublisherID: fmt.Sprintf("client-%d", i%4),
			Publish: &packet.Publish{QoS: 1, PacketID: uint16(i + 1),
				Topic: fmt.Sprintf("sensors/building-1/floor-2/room-%d/temperature", i%8), Payload: payload},
		}
	}
	return m
}

func BenchmarkForwardEncode(b *testing.B) {
	m := benchForward()
	buf := make([]byte, 0, 16<<10)
	b.ReportAllocs()
	for b.Loop() {
		out, err := m.AppendTo(buf[:0])
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(out)))
	}
}

func BenchmarkForwardDecode(b *testing.B) {
	raw, err := benchForward().AppendTo(nil)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRouteDelta(b *testing.B) {
	m := &RouteDelta{Origin: "node-1", Incarnation: 1, Seq: 2, Changes: make([]RouteChange, 64)}
	for i := range m.Changes {
		m.Changes[i] = RouteChange{Filter: fmt.Sprintf("devices/%d/+/cmd", i), Count: 1}
	}
	raw, _ := m.AppendTo(nil)
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 4096)
		for b.Loop() {
			if _, err := m.AppendTo(buf[:0]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Decode(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
}
