package meta

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"
)

// commandVectors is the one table of command encodings: it feeds the
// encode and decode tests and the fuzzers' seeds. err means decoding raw
// fails with ErrInvalid.
var commandVectors = []struct {
	name string
	raw  []byte
	cmd  command
	err  bool
}{
	{name: "claim", raw: []byte{1, opClaim, 2, 'c', '1', 1, 'a'}, cmd: command{op: opClaim, clientID: "c1", node: "a"}},
	{name: "release", raw: []byte{1, opRelease, 2, 'c', '1', 1, 'a', 0xac, 0x02}, cmd: command{op: opRelease, clientID: "c1", node: "a", epoch: 300}},
	{name: "purge", raw: []byte{1, opPurge, 1, 'b'}, cmd: command{op: opPurge, node: "b"}},
	{name: "empty", raw: []byte{}, err: true},
	{name: "version", raw: []byte{2, opClaim, 2, 'c', '1', 1, 'a'}, err: true},
	{name: "unknown op", raw: []byte{1, 9}, err: true},
	{name: "no op", raw: []byte{1}, err: true},
	{name: "empty client", raw: []byte{1, opClaim, 0, 1, 'a'}, err: true},
	{name: "empty node", raw: []byte{1, opPurge, 0}, err: true},
	{name: "string past end", raw: []byte{1, opClaim, 5, 'c', '1', 1, 'a'}, err: true},
	{name: "trailing", raw: []byte{1, opPurge, 1, 'b', 0}, err: true},
	{name: "missing epoch", raw: []byte{1, opRelease, 2, 'c', '1', 1, 'a'}, err: true},
	{name: "bad varint", raw: []byte{1, opRelease, 2, 'c', '1', 1, 'a', 0xff}, err: true},
	{name: "huge length", raw: []byte{1, opClaim, 0xff, 0xff, 0xff, 0xff, 0x0f}, err: true},
	{name: "long node", raw: append([]byte{1, opPurge, 0x80, 0x02}, bytes.Repeat([]byte{'n'}, 256)...), err: true},
}

func TestCommandCodec(t *testing.T) {
	for _, v := range commandVectors {
		t.Run(v.name, func(t *testing.T) {
			got, err := decodeCommand(v.raw)
			if v.err {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("decode: %+v, %v; want ErrInvalid", got, err)
				}
				return
			}
			if err != nil || got != v.cmd {
				t.Fatalf("decode: %+v, %v; want %+v", got, err, v.cmd)
			}
			if enc := v.cmd.appendTo(nil); !bytes.Equal(enc, v.raw) {
				t.Fatalf("encode: %x, want %x", enc, v.raw)
			}
		})
	}
}

func TestRequestCodec(t *testing.T) {
	good := []request{
		{kind: reqApply, timeout: time.Millisecond, cmd: command{op: opClaim, clientID: strings.Repeat("x", MaxClientIDLen), node: strings.Repeat("n", MaxNodeLen)}},
		{kind: reqApply, timeout: maxRPCTimeout, cmd: command{op: opRelease, clientID: "c", node: "a", epoch: 1 << 60}},
		{kind: reqRemove, timeout: 5 * time.Second, id: "node-1"},
	}
	for _, q := range good {
		raw := q.appendTo(nil)
		if len(raw) > maxFrameLen {
			t.Fatalf("request of %d bytes does not fit a frame", len(raw))
		}
		got, err := decodeRequest(raw)
		if err != nil || got != q {
			t.Fatalf("round trip of %+v: %+v, %v", q.kind, got.kind, err)
		}
	}
	bad := map[string][]byte{
		"empty":        {},
		"version":      {2, reqRemove, 1, 1, 'a'},
		"kind":         {rpcVersion, 7, 1},
		"zero timeout": {rpcVersion, reqRemove, 0, 1, 'a'},
		"long timeout": binary.AppendUvarint([]byte{rpcVersion, reqRemove}, uint64(maxRPCTimeout/time.Millisecond)+1),
		"no command":   {rpcVersion, reqApply, 1},
		"bad command":  {rpcVersion, reqApply, 1, 1, opPurge, 0},
		"empty id":     {rpcVersion, reqRemove, 1, 0},
		"trailing":     {rpcVersion, reqRemove, 1, 1, 'a', 0},
	}
	for name, raw := range bad {
		if q, err := decodeRequest(raw); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %+v, %v; want ErrInvalid", name, q, err)
		}
	}
}

func TestResponseCodec(t *testing.T) {
	for _, p := range []response{
		{status: statusOK, res: applyResult{index: 7, prev: Owner{Node: "a", Epoch: 3}, deleted: 12}},
		{status: statusOK},
		{status: statusRetry, msg: "not the leader"},
		{status: statusFailed, msg: "bad"},
	} {
		got, err := decodeResponse(p.appendTo(nil))
		if err != nil || got != p {
			t.Fatalf("round trip of %+v: %+v, %v", p, got, err)
		}
	}
	long := response{status: statusFailed, msg: strings.Repeat("m", 5000)}
	if got, err := decodeResponse(long.appendTo(nil)); err != nil || len(got.msg) != maxMessageLen {
		t.Fatalf("long message: %d bytes, %v", len(got.msg), err)
	}
	for _, raw := range [][]byte{{}, {rpcVersion}, {rpcVersion, 9}, {rpcVersion, statusOK, 1}, {2, statusOK}} {
		if _, err := decodeResponse(raw); err == nil {
			t.Errorf("%x decoded", raw)
		}
	}
}

func TestFrames(t *testing.T) {
	var buf bytes.Buffer
	payload := bytes.Repeat([]byte{7}, maxFrameLen)
	if err := writeFrame(&buf, append([]byte{0, 0, 0, 0}, payload...)); err != nil {
		t.Fatal(err)
	}
	if err := writeFrame(&buf, append([]byte{0, 0, 0, 0}, 1, 2, 3)); err != nil {
		t.Fatal(err)
	}
	if err := writeFrame(&buf, append([]byte{0, 0, 0, 0}, payload...)[:4+maxFrameLen]); err != nil {
		t.Fatal(err)
	}
	if err := writeFrame(&buf, make([]byte, 5+maxFrameLen)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("oversized frame written: %v", err)
	}
	if err := writeFrame(&buf, make([]byte, 4)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty frame written: %v", err)
	}
	br := bufio.NewReader(&buf)
	var b []byte
	var err error
	for _, want := range [][]byte{payload, {1, 2, 3}, payload} {
		b, err = readFrame(br, b)
		if err != nil || !bytes.Equal(b, want) {
			t.Fatalf("read %d bytes, %v; want %d", len(b), err, len(want))
		}
	}
	for _, hdr := range [][]byte{{0, 0, 0, 0}, {0, 1, 2, 1}, {0xff, 0xff, 0xff, 0xff}} {
		if _, err := readFrame(bufio.NewReader(bytes.NewReader(hdr)), nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("header %x: %v", hdr, err)
		}
	}
	if _, err := readFrame(bufio.NewReader(bytes.NewReader([]byte{0, 0, 0, 5, 1})), nil); err == nil {
		t.Error("truncated frame read")
	}
}
