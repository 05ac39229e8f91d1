package meta

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"testing"
	"unsafe"

	"github.com/hashicorp/raft"
)

// memSink is a raft.SnapshotSink in memory.
type memSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *memSink) ID() string     { return "mem" }
func (s *memSink) Close() error   { s.closed = true; return nil }
func (s *memSink) Cancel() error  { s.cancelled = true; return nil }
func (s *memSink) String() string { return "memSink" }

func applyCmd(f *fsm, index uint64, c command) applyResult {
	res := f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: c.appendTo(nil)})
	r, ok := res.(applyResult)
	if !ok {
		panic(fmt.Sprintf("apply %+v: %v", c, res))
	}
	return r
}

func TestFSMApply(t *testing.T) {
	f := newFSM()
	claim := func(i uint64, id, node string) applyResult {
		return applyCmd(f, i, command{op: opClaim, clientID: id, node: node})
	}
	release := func(i uint64, id, node string, e uint64) int {
		return applyCmd(f, i, command{op: opRelease, clientID: id, node: node, epoch: e}).deleted
	}

	if r := claim(1, "c1", "a"); r.prev != (Owner{}) || r.index != 1 {
		t.Fatalf("first claim: %+v", r)
	}
	if r := claim(2, "c1", "b"); r.prev != (Owner{Node: "a", Epoch: 1}) {
		t.Fatalf("takeover: %+v", r)
	}
	claim(3, "c2", "b")
	claim(4, "c3", "a")
	if f.sessions("a") != 1 || f.sessions("b") != 2 {
		t.Fatalf("sessions a=%d b=%d", f.sessions("a"), f.sessions("b"))
	}
	if n := release(5, "c1", "a", 1); n != 0 {
		t.Fatal("released another node's entry")
	}
	if n := release(6, "c1", "b", 1); n != 0 {
		t.Fatal("released with a stale epoch")
	}
	if n := release(7, "c1", "b", 2); n != 1 {
		t.Fatal("did not release a matching entry")
	}
	if _, ok := f.owner("c1"); ok {
		t.Fatal("c1 still there")
	}
	if r := applyCmd(f, 8, command{op: opPurge, node: "b"}); r.deleted != 1 {
		t.Fatalf("purge b: %+v", r)
	}
	if r := applyCmd(f, 9, command{op: opPurge, node: "b"}); r.deleted != 0 {
		t.Fatalf("purge b again: %+v", r)
	}
	if f.len() != 1 || f.sessions("b") != 0 || len(f.nodes) != 1 {
		t.Fatalf("after purge: %d entries, nodes %v", f.len(), f.nodes)
	}
	if o, _ := f.owner("c3"); o != (Owner{Node: "a", Epoch: 4}) {
		t.Fatalf("c3: %+v", o)
	}
	// Node names are shared, not copied per entry.
	claim(10, "c4", "a")
	o3, _ := f.owner("c3")
	o4, _ := f.owner("c4")
	if unsafe.StringData(o3.Node) != unsafe.StringData(o4.Node) {
		t.Fatal("node name copied per entry")
	}
	if res := f.Apply(&raft.Log{Index: 11, Type: raft.LogCommand, Data: []byte{9}}); !errors.Is(res.(error), ErrInvalid) {
		t.Fatalf("garbage command: %v", res)
	}
	if res := f.Apply(&raft.Log{Index: 12, Type: raft.LogNoop}); res != nil {
		t.Fatalf("noop: %v", res)
	}
}

func fill(f *fsm, n int) {
	for i := range n {
		applyCmd(f, uint64(i+1), command{op: opClaim, clientID: fmt.Sprintf("client-%d", i), node: fmt.Sprintf("node-%d", i%7)})
	}
}

func persist(t testing.TB, f *fsm) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	var sink memSink
	if err := snap.Persist(&sink); err != nil || !sink.closed {
		t.Fatalf("persist: %v, closed %v", err, sink.closed)
	}
	return sink.Bytes()
}

func TestFSMSnapshotRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 20000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			f := newFSM()
			fill(f, n)
			data := persist(t, f)
			// Writes after Snapshot do not change what is persisted.
			g := newFSM()
			applyCmd(g, 1, command{op: opClaim, clientID: "stale", node: "z"})
			if err := g.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(f.owners, g.owners) {
				t.Fatalf("restored %d entries, want %d", len(g.owners), len(f.owners))
			}
			for node, st := range f.nodes {
				if g.sessions(node) != st.sessions {
					t.Fatalf("node %s: %d sessions, want %d", node, g.sessions(node), st.sessions)
				}
			}
			if len(g.nodes) != len(f.nodes) {
				t.Fatalf("nodes %d, want %d", len(g.nodes), len(f.nodes))
			}
			// Compact: about the size of the client ids.
			if n > 100 && len(data) > n*20 {
				t.Fatalf("snapshot of %d entries is %d bytes", n, len(data))
			}
		})
	}
}

func TestFSMSnapshotIsolation(t *testing.T) {
	f := newFSM()
	fill(f, 10)
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	applyCmd(f, 100, command{op: opPurge, node: "node-1"})
	applyCmd(f, 101, command{op: opClaim, clientID: "new", node: "x"})
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	g := newFSM()
	if err := g.Restore(io.NopCloser(&sink)); err != nil {
		t.Fatal(err)
	}
	if g.len() != 10 || g.sessions("node-1") == 0 {
		t.Fatalf("snapshot saw later writes: %d entries", g.len())
	}
}

func TestFSMRestoreRejects(t *testing.T) {
	f := newFSM()
	fill(f, 3)
	good := persist(t, f)
	entry := func(id string, node, epoch uint64) []byte {
		b := appendString(nil, id)
		b = binary.AppendUvarint(b, node)
		return binary.AppendUvarint(b, epoch)
	}
	header := []byte{snapVersion, 1, 1, 'a'}
	cases := map[string][]byte{
		"empty":       {},
		"version":     append([]byte{9}, good[1:]...),
		"truncated":   good[:len(good)-1],
		"trailing":    append(bytes.Clone(good), 0),
		"node index":  append(append(bytes.Clone(header), 1), entry("c", 1, 1)...),
		"duplicate":   append(append(bytes.Clone(header), 2), append(entry("c", 0, 1), entry("c", 0, 2)...)...),
		"empty id":    append(append(bytes.Clone(header), 1), entry("", 0, 1)...),
		"empty node":  {snapVersion, 1, 0, 0},
		"many nodes":  binary.AppendUvarint([]byte{snapVersion}, maxSnapNodes+1),
		"huge count":  append(bytes.Clone(header), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f),
		"long string": append([]byte{snapVersion, 1}, 0xff, 0xff, 0x7f),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			g := newFSM()
			applyCmd(g, 1, command{op: opClaim, clientID: "kept", node: "k"})
			if err := g.Restore(io.NopCloser(bytes.NewReader(data))); !errors.Is(err, ErrInvalid) {
				t.Fatalf("restore: %v, want ErrInvalid", err)
			}
			if o, ok := g.owner("kept"); !ok || o.Node != "k" || g.len() != 1 {
				t.Fatal("a failed restore changed the state")
			}
		})
	}
	if _, _, err := readSnapshot(bufio.NewReader(bytes.NewReader(good))); err != nil {
		t.Fatal(err)
	}
}

// failSink fails writes after n bytes.
type failSink struct {
	memSink
	n int
}

func (s *failSink) Write(p []byte) (int, error) {
	if s.Len()+len(p) > s.n {
		return 0, errors.New("disk full")
	}
	return s.memSink.Write(p)
}

func TestFSMPersistFailure(t *testing.T) {
	f := newFSM()
	fill(f, 50000)
	snap, _ := f.Snapshot()
	sink := &failSink{n: 100000}
	if err := snap.Persist(sink); err == nil || !sink.cancelled || sink.closed {
		t.Fatalf("persist: %v, cancelled %v, closed %v", err, sink.cancelled, sink.closed)
	}
}

func BenchmarkFSMApplyClaim(b *testing.B) {
	f := newFSM()
	ids := make([][]byte, 1024)
	for i := range ids {
		ids[i] = command{op: opClaim, clientID: fmt.Sprintf("client-%d", i), node: "node-1"}.appendTo(nil)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		f.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: ids[i%len(ids)]})
	}
}

func BenchmarkSnapshotPersist1M(b *testing.B) {
	f := newFSM()
	fill(f, 1_000_000)
	b.ReportAllocs()
	for b.Loop() {
		snap, _ := f.Snapshot()
		if err := snap.Persist(&discardSink{}); err != nil {
			b.Fatal(err)
		}
		snap.Release()
	}
}

type discardSink struct{ memSink }

func (discardSink) Write(p []byte) (int, error) { return len(p), nil }
