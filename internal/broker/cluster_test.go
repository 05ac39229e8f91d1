package broker

import (
	"testing"

	"github.com/starlingmq/starling/internal/packet"
)

func TestSharedRetainedCountLeavesOutSys(t *testing.T) {
	b, addr := startBroker(t, Options{}, nil)
	c := connected(t, addr, packet.V311, "pub")
	c.send(&packet.Publish{Topic: "a/b", Retain: true, Payload: []byte("x")})
	c.send(&packet.Publish{Topic: "a/c", Retain: true, Payload: []byte("y")})
	if err := b.SetRetained(&MessageRecord{Topic: "$SYS/broker/test", Payload: []byte("z")}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { return b.Stats().Retained == 3 }, "3 retained messages in all")
	if n := b.SharedRetainedCount(); n != 2 {
		t.Fatalf("SharedRetainedCount = %d, want 2 (the $SYS one left out)", n)
	}
	c.send(&packet.Publish{Topic: "a/b", Retain: true}) // deletes it
	eventually(t, func() bool { return b.SharedRetainedCount() == 1 }, "deleted retained message still counted")
}
