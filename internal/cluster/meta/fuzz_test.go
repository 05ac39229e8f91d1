package meta

import (
	"bufio"
	"bytes"
	"maps"
	"testing"
	"time"
)

// Seeds come from the codec vectors; more are in testdata/fuzz.

func FuzzDecodeCommand(f *testing.F) {
	for _, v := range commandVectors {
		f.Add(v.raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := decodeCommand(raw)
		if err != nil {
			return
		}
		// decode-encode-decode round-trips.
		again, err := decodeCommand(c.appendTo(nil))
		if err != nil || again != c {
			t.Fatalf("round trip of %+v: %+v, %v", c, again, err)
		}
		// The FSM applies whatever decodes.
		newFSM().apply(c, 1)
	})
}

func FuzzDecodeRequest(f *testing.F) {
	header := request{kind: reqApply, timeout: time.Second}.appendTo(nil)[:4:4] // version, kind, 1000 ms
	f.Add(header)
	for _, v := range commandVectors {
		f.Add(append(header, v.raw...))
	}
	f.Add(request{kind: reqRemove, timeout: 250 * time.Millisecond, id: "node-1"}.appendTo(nil))
	f.Fuzz(func(t *testing.T, raw []byte) {
		q, err := decodeRequest(raw)
		if err != nil {
			return
		}
		enc := q.appendTo(nil)
		again, err := decodeRequest(enc)
		if err != nil || again != q {
			t.Fatalf("round trip of %+v: %+v, %v", q, again, err)
		}
		if len(enc) > maxFrameLen && len(raw) <= maxFrameLen {
			t.Fatalf("request of %d bytes re-encodes to %d, more than a frame", len(raw), len(enc))
		}
	})
}

func FuzzRestore(f *testing.F) {
	full := newFSM()
	fill(full, 5)
	f.Add(persist(f, full))
	f.Add(persist(f, newFSM()))
	f.Add([]byte{snapVersion, 1, 1, 'a', 2, 1, 'x', 0, 5, 1, 'y', 0, 6})
	f.Fuzz(func(t *testing.T, raw []byte) {
		owners, _, err := readSnapshot(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return
		}
		g := &fsm{owners: owners}
		snap, _ := g.Snapshot()
		var sink memSink
		if err := snap.Persist(&sink); err != nil {
			t.Fatal(err)
		}
		again, _, err := readSnapshot(bufio.NewReader(&sink.Buffer))
		if err != nil || !maps.Equal(again, owners) {
			t.Fatalf("round trip: %d entries, %v; want %d", len(again), err, len(owners))
		}
	})
}
