package proto

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/starlingmq/starling/internal/packet"
)

// h builds bytes from space-separated tokens: hex ("10", "00ff") or ASCII
// in single quotes ('node', no spaces inside).
func h(s string) []byte {
	var out []byte
	for tok := range strings.FieldsSeq(s) {
		if len(tok) >= 2 && tok[0] == '\'' && tok[len(tok)-1] == '\'' {
			out = append(out, tok[1:len(tok)-1]...)
			continue
		}
		b, err := hex.DecodeString(tok)
		if err != nil {
			panic(fmt.Sprintf("bad hex token %q: %v", tok, err))
		}
		out = append(out, b...)
	}
	return out
}

// frame prefixes the type and the body parts with their length.
func frame(t Type, parts ...[]byte) []byte {
	body := bytes.Join(parts, nil)
	out := binary.BigEndian.AppendUint32(nil, uint32(len(body)+1))
	out = append(out, byte(t))
	return append(out, body...)
}

// pub is the MQTT 5 encoding of p.
func pub(p *packet.Publish) []byte {
	b, err := p.AppendTo(nil, packet.V5)
	if err != nil {
		panic(err)
	}
	return b
}

func ptr[T any](v T) *T { return &v }

// vector is one entry of the protocol's table of test vectors. It feeds
// the encode, decode and round-trip tests and the fuzz seeds.
//
//   - raw set, err nil: Decode(raw) gives msg; unless decodeOnly,
//     msg.AppendTo gives raw.
//   - raw set, err set: Decode(raw) fails with err (errors.Is).
//   - raw nil: msg.AppendTo fails with err.
type vector struct {
	name       string
	raw        []byte
	msg        Message
	err        error
	decodeOnly bool
}

var (
	payload64 = bytes.Repeat([]byte{'p'}, 64)
	hello     = &Hello{ProtocolVersion: 1, MinProtocolVersion: 1, NodeName: "n1", ClusterName: "c", Incarnation: 300, Capabilities: 5}
	pubQoS1   = &packet.Publish{QoS: 1, PacketID: 7, Topic: "a/b", Payload: []byte("hi"),
		Properties: packet.Properties{MessageExpiry: ptr(uint32(60)), ContentType: "text/plain",
			User: []packet.UserProperty{{Key: "k", Value: "v"}}}}
	pubQoS0 = &packet.Publish{Topic: "a/b", Payload: []byte("x")}
)

var vectors = []vector{
	// ---- Hello ----------------------------------------------------------
	{name: "hello", raw: h("00 00 00 0b 01 01 01 02 'n1' 01 'c' ac 02 05"), msg: hello},
	{name: "hello/empty", raw: h("00 00 00 07 01 00 00 00 00 00 00"), msg: &Hello{}},
	{name: "hello/trailing-byte", raw: frame(TypeHello, h("01 01 02 'n1' 01 'c' ac 02 05 00")), err: ErrMalformed},
	{name: "hello/truncated", raw: frame(TypeHello, h("01 01 02 'n1' 01")), err: ErrMalformed},
	{name: "hello/version-overflows-32-bits", raw: frame(TypeHello, h("80 80 80 80 10 01 00 00 00 00")), err: ErrMalformed},
	{name: "hello/non-minimal-uvarint", raw: frame(TypeHello, h("81 00 01 00 00 00 00")), err: ErrMalformed},
	{name: "hello/string-beyond-frame", raw: frame(TypeHello, h("01 01 09 'n1'")), err: ErrMalformed},
	{name: "hello/uvarint-overflows-64-bits", raw: frame(TypeHello, h("01 01 00 00 ff ff ff ff ff ff ff ff ff 7f 00")), err: ErrMalformed},
	{name: "hello-ack", raw: frame(TypeHelloAck, h("01 02 'n2' 07 00 00 00")),
		msg: &HelloAck{ProtocolVersion: 1, NodeName: "n2", Incarnation: 7}},
	{name: "hello-ack/refused", raw: frame(TypeHelloAck, h("02 02 'n2' 07 03 84 04 'old!'")),
		msg: &HelloAck{ProtocolVersion: 2, NodeName: "n2", Incarnation: 7, Capabilities: 3, Code: packet.UnsupportedProtocolVersion, Reason: "old!"}},

	// ---- Ping / Pong ----------------------------------------------------
	{name: "ping", raw: frame(TypePing, h("02")), msg: &Ping{SentUnixNano: 1}},
	{name: "ping/negative", raw: frame(TypePing, h("01")), msg: &Ping{SentUnixNano: -1}},
	{name: "pong", raw: frame(TypePong, h("c8 01 ca 01")), msg: &Pong{PingSentUnixNano: 100, SentUnixNano: 101}},
	{name: "pong/missing-field", raw: frame(TypePong, h("c8 01")), err: ErrMalformed},

	// ---- Routes ---------------------------------------------------------
	{name: "route-snapshot",
		raw: frame(TypeRouteSnapshot, h("02 'n1' 09 05 00 00 02 03 'a/+' 02 00 01 '#' 00 02 01 'g' 03 01 'h' 01")),
		msg: &RouteSnapshot{Origin: "n1", Incarnation: 9, Seq: 5, Entries: []RouteEntry{
			{Filter: "a/+", Count: 2},
			{Filter: "#", Shared: []GroupCount{{Group: "g", Members: 3}, {Group: "h", Members: 1}}},
		}}},
	{name: "route-snapshot/part-more-empty", raw: frame(TypeRouteSnapshot, h("02 'n1' 09 05 01 01 00")),
		msg: &RouteSnapshot{Origin: "n1", Incarnation: 9, Seq: 5, Part: 1, More: true}},
	{name: "route-snapshot/unknown-flag", raw: frame(TypeRouteSnapshot, h("02 'n1' 09 05 01 03 00")), err: ErrMalformed},
	{name: "route-snapshot/count-beyond-frame", raw: frame(TypeRouteSnapshot, h("02 'n1' 09 05 00 00 ff ff ff ff 0f")), err: ErrMalformed},
	{name: "route-delta",
		raw: frame(TypeRouteDelta, h("02 'n1' 09 06 03 03 'a/+' 00 01 01 '#' 01 'g' 04 01 'x' 00 00")),
		msg: &RouteDelta{Origin: "n1", Incarnation: 9, Seq: 6, Changes: []RouteChange{
			{Filter: "a/+", Count: 1}, {Filter: "#", Group: "g", Count: 4}, {Filter: "x"},
		}}},
	{name: "route-delta/count-over-32-bits", raw: frame(TypeRouteDelta, h("02 'n1' 09 06 01 01 'x' 00 80 80 80 80 10")), err: ErrMalformed},
	{name: "route-snapshot-request", raw: frame(TypeRouteSnapshotRequest, h("09 05")), msg: &RouteSnapshotRequest{Incarnation: 9, Seq: 5}},

	// ---- Forward --------------------------------------------------------
	{name: "forward",
		raw: frame(TypeForward, h("02"),
			h("0a 01 02 'n1' 02 'c1' 00"), pub(pubQoS1),
			h("0b 00 02 'n1' 02 'c2' 01 01 'g' 03 'a/#' 02 'n2'"), pub(pubQoS0)),
		msg: &Forward{Messages: []ForwardMessage{
			{Seq: 10, NeedsAck: true, Origin: "n1", PublisherID: "c1", Publish: pubQoS1},
			{Seq: 11, Origin: "n1", PublisherID: "c2", Publish: pubQoS0,
				Shared: []SharedTarget{{Group: "g", Filter: "a/#", Node: "n2"}}},
		}}},
	{name: "forward/empty", raw: frame(TypeForward, h("00")), msg: &Forward{}},
	{name: "forward-v2",
		raw: frame(TypeForwardV2, h("01"), h("0a 07 2a 01 02 'n1' 02 'c1' 00"), pub(pubQoS1)),
		msg: &Forward{V2: true, Messages: []ForwardMessage{
			{Seq: 10, ID: MsgID{Node: 7, Seq: 42}, NeedsAck: true, Origin: "n1", PublisherID: "c1", Publish: pubQoS1},
		}}},
	{name: "forward-v2/id-truncated", raw: frame(TypeForwardV2, h("01 0a 07")), err: ErrMalformed},
	{name: "relay",
		raw: frame(TypeRelay, h("02 'c1' 01 'g' 03 'a/#' 07 2a 02 'p1'"), pub(pubQoS1)),
		msg: &Relay{ClientID: "c1", Group: "g", Filter: "a/#", ID: MsgID{Node: 7, Seq: 42}, PublisherID: "p1", Publish: pubQoS1}},
	{name: "relay/no-publish", raw: frame(TypeRelay, h("02 'c1' 00 00 07 2a 02 'p1'")), err: ErrMalformed},
	{name: "relay/encode-nil-publish", msg: &Relay{ClientID: "c1"}, err: ErrEncode},
	{name: "session-seen", raw: frame(TypeSessionSeen, h("02 'c1' 05 02 07 2a 07 2b")),
		msg: &SessionSeen{ClientID: "c1", Epoch: 5, IDs: []MsgID{{Node: 7, Seq: 42}, {Node: 7, Seq: 43}}}},
	{name: "relay-barrier", raw: frame(TypeRelayBarrier, h("02 'c1' 05 02 'n1'")), msg: &RelayBarrier{ClientID: "c1", Epoch: 5, Ghost: "n1"}},
	{name: "barrier-passed", raw: frame(TypeBarrierPassed, h("02 'c1' 05 02 'n3'")), msg: &BarrierPassed{ClientID: "c1", Epoch: 5, Node: "n3"}},
	{name: "relay-end", raw: frame(TypeRelayEnd, h("02 'c1' 05")), msg: &RelayEnd{ClientID: "c1", Epoch: 5}},
	{name: "relay-end/trailing", raw: frame(TypeRelayEnd, h("02 'c1' 05 00")), err: ErrMalformed},
	{name: "session-seen/empty", raw: frame(TypeSessionSeen, h("02 'c1' 05 00")), msg: &SessionSeen{ClientID: "c1", Epoch: 5}},
	{name: "session-seen/count-beyond-frame", raw: frame(TypeSessionSeen, h("02 'c1' 05 05 07 2a")), err: ErrMalformed},
	{name: "forward/publish-truncated", raw: frame(TypeForward, h("01 0a 01 02 'n1' 02 'c1' 00"), pub(pubQoS1)[:8]), err: ErrMalformed},
	{name: "forward/not-a-publish", raw: frame(TypeForward, h("01 0a 01 02 'n1' 02 'c1' 00 c0 00 00 00 00 00 00 00 00")), err: ErrMalformed},
	{name: "forward/needs-ack-bad-flag", raw: frame(TypeForward, h("01 0a 02 02 'n1' 02 'c1' 00"), pub(pubQoS0)), err: ErrMalformed},
	{name: "forward/topic-alias",
		raw: frame(TypeForward, h("01 0a 00 02 'n1' 02 'c1' 00"),
			pub(&packet.Publish{Topic: "a", Properties: packet.Properties{TopicAlias: ptr(uint16(1))}})), err: ErrMalformed},
	{name: "forward/encode-nil-publish", msg: &Forward{Messages: []ForwardMessage{{Seq: 1}}}, err: ErrEncode},
	{name: "forward/encode-empty-topic", msg: &Forward{Messages: []ForwardMessage{{Seq: 1, Publish: &packet.Publish{}}}}, err: ErrEncode},
	{name: "forward/encode-qos3", msg: &Forward{Messages: []ForwardMessage{{Seq: 1, Publish: &packet.Publish{Topic: "a", QoS: 3}}}}, err: ErrEncode},
	{name: "forward-ack", raw: frame(TypeForwardAck, h("64 02 5f 97 66 00")),
		msg: &ForwardAck{UpTo: 100, Statuses: []ForwardStatus{{Seq: 95, Code: packet.QuotaExceeded}, {Seq: 102, Code: packet.Success}}}},
	{name: "forward-ack/up-to-only", raw: frame(TypeForwardAck, h("64 00")), msg: &ForwardAck{UpTo: 100}},

	// ---- Retained -------------------------------------------------------
	{name: "retained/delete", raw: frame(TypeRetained, h("d0 0f 02 02 'n1' 00 03 'a/b'")),
		msg: &Retained{Topic: "a/b", Time: Timestamp{WallMilli: 1000, Logical: 2, Node: "n1"}}},
	{name: "retained/message",
		raw: frame(TypeRetained, h("d0 0f 00 02 'n1' 01 e0 07 02 'n3'"),
			pub(&packet.Publish{QoS: 1, PacketID: 1, Retain: true, Topic: "a/b", Payload: []byte("v")})),
		msg: &Retained{Topic: "a/b", Time: Timestamp{WallMilli: 1000, Node: "n1"},
			Message: &MessageRecord{Topic: "a/b", Payload: []byte("v"), QoS: 1, Retain: true, ExpiresUnixMilli: 496, Origin: "n3"}}},
	{name: "retained/dup", raw: frame(TypeRetained, h("d0 0f 00 02 'n1' 01 00 00"),
		pub(&packet.Publish{Dup: true, QoS: 1, PacketID: 1, Topic: "a/b"})), err: ErrMalformed},
	{name: "retained/encode-topic-mismatch", msg: &Retained{Topic: "a", Message: &MessageRecord{Topic: "b"}}, err: ErrEncode},
	{name: "retained-snapshot",
		raw: frame(TypeRetainedSnapshot, h("02 'n1' 00 01 02"),
			h("d0 0f 02 02 'n1' 00 03 'a/b'"),
			h("d0 0f 00 02 'n2' 01 00 00"), pub(&packet.Publish{Retain: true, Topic: "c"})),
		msg: &RetainedSnapshot{Origin: "n1", More: true, Messages: []Retained{
			{Topic: "a/b", Time: Timestamp{WallMilli: 1000, Logical: 2, Node: "n1"}},
			{Topic: "c", Time: Timestamp{WallMilli: 1000, Node: "n2"}, Message: &MessageRecord{Topic: "c", Retain: true}},
		}}},

	// ---- Sessions -------------------------------------------------------
	{name: "session-kick", raw: frame(TypeSessionKick, h("02 'c1' 02 'n2' 04")), msg: &SessionKick{ClientID: "c1", Node: "n2", AtUnixNano: 2}},
	{name: "session-claim", raw: frame(TypeSessionClaim, h("02 'c1' 02 'n2' 2a")), msg: &SessionClaim{ClientID: "c1", Node: "n2", Epoch: 42}},
	{name: "session-transfer/no-session", raw: frame(TypeSessionTransfer, h("02 'c1' 2a 00 00 00 00 00")),
		msg: &SessionTransfer{ClientID: "c1", Epoch: 42}},
	{name: "session-transfer/full",
		raw: frame(TypeSessionTransfer, h("02 'c1' 2a 00 03"),
			h("90 1c 02 07 02 'us' 04"), pub(&packet.Publish{QoS: 1, PacketID: 1, Topic: "will", Payload: []byte("bye")}), h("05"),
			h("02 0a '$share/g/a' 01 00 00 00 03 'a/b' 02 03 02 07"),
			h("01 05 01 02 01 03 09 00"), h("00 02 'n1'"), pub(&packet.Publish{QoS: 1, PacketID: 1, Topic: "a/b", Payload: []byte("m")}),
			h("02 01 ff ff 03")),
		msg: &SessionTransfer{ClientID: "c1", Epoch: 42, More: true,
			Session: &SessionRecord{Expiry: 3600, DisconnectedAtUnixMilli: 1, Username: "us", HasUsername: true,
				WillAtUnixMilli: 2,
				Will:            &packet.Will{Topic: "will", Payload: []byte("bye"), QoS: 1, Properties: packet.Properties{WillDelay: ptr(uint32(5))}}},
			Subscriptions: []SubscriptionRecord{
				{Filter: "$share/g/a", QoS: 1},
				{Filter: "a/b", QoS: 2, NoLocal: true, RetainAsPublished: true, RetainHandling: 2, SubscriptionID: 7},
			},
			Deliveries: []DeliveryRecord{{Seq: 5, QoS: 1, Sent: true, SubIDs: []int{3}, PacketID: 9,
				Message: MessageRecord{Topic: "a/b", Payload: []byte("m"), QoS: 1, Origin: "n1"}}},
			IncomingQoS2: []uint16{1, 65535},
		}},
	{name: "session-transfer/will-delay-without-will", raw: frame(TypeSessionTransfer, h("02 'c1' 2a 00 02 00 00 04 00 00 00 00 00")), err: ErrMalformed},
	{name: "session-transfer/retain-handling-3", raw: frame(TypeSessionTransfer, h("02 'c1' 2a 00 00 01 01 'a' 00 00 03 00 00 00")), err: ErrMalformed},
	{name: "session-transfer/subscription-id-too-big", raw: frame(TypeSessionTransfer, h("02 'c1' 2a 00 00 01 01 'a' 00 00 00 80 80 80 80 01 00 00")), err: ErrMalformed},
	{name: "session-transfer/packet-id-over-16-bits", raw: frame(TypeSessionTransfer, h("02 'c1' 2a 00 00 00 00 01 80 80 04")), err: ErrMalformed},
	{name: "session-transfer/encode-negative-sub-id",
		msg: &SessionTransfer{ClientID: "c", Subscriptions: []SubscriptionRecord{{Filter: "a", SubscriptionID: -1}}}, err: ErrEncode},
	{name: "session-transfer/encode-will-sub-ids",
		msg: &SessionTransfer{ClientID: "c", Session: &SessionRecord{Will: &packet.Will{Topic: "w", Properties: packet.Properties{SubscriptionIDs: []int{1}}}}}, err: ErrEncode},
	{name: "session-transfer-ack", raw: frame(TypeSessionTransferAck, h("02 'c1' 2a 00")), msg: &SessionTransferAck{ClientID: "c1", Epoch: 42}},

	// ---- Unknown and framing --------------------------------------------
	{name: "unknown/type-200", raw: h("00 00 00 04 c8 01 02 03"), msg: &Unknown{MsgType: 200, Body: h("01 02 03")}},
	{name: "unknown/empty-body", raw: h("00 00 00 01 63"), msg: &Unknown{MsgType: 99}},
	{name: "unknown/encode-known-type", msg: &Unknown{MsgType: TypePing}, err: ErrEncode},
	{name: "type-0", raw: h("00 00 00 01 00"), err: ErrMalformed},
	{name: "zero-length", raw: h("00 00 00 00"), err: ErrMalformed},
	{name: "short-prefix", raw: h("00 00 00"), err: io.ErrUnexpectedEOF},
	{name: "short-frame", raw: h("00 00 00 05 03 00"), err: io.ErrUnexpectedEOF},
	{name: "bytes-after-frame", raw: h("00 00 00 02 03 00 00"), err: ErrMalformed},
}

func TestVectors(t *testing.T) {
	for _, tc := range vectors {
		t.Run(tc.name, func(t *testing.T) {
			if tc.raw != nil {
				m, err := Decode(tc.raw)
				if tc.err != nil {
					if !errors.Is(err, tc.err) {
						t.Fatalf("Decode error %v, want %v", err, tc.err)
					}
					if m != nil {
						t.Fatalf("Decode returned %#v with an error", m)
					}
					return
				}
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				if !reflect.DeepEqual(m, tc.msg) {
					t.Fatalf("Decode:\n got %#v\nwant %#v", m, tc.msg)
				}
				if m.Type() != tc.msg.Type() {
					t.Fatalf("Type %s, want %s", m.Type(), tc.msg.Type())
				}
				if tc.decodeOnly {
					return
				}
			}
			prefix := []byte("xyz")
			out, err := tc.msg.AppendTo(prefix)
			if tc.raw == nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("AppendTo error %v, want %v", err, tc.err)
				}
				if !bytes.Equal(out, prefix) {
					t.Fatalf("AppendTo on error returned %x, want the untouched %x", out, prefix)
				}
				return
			}
			if err != nil {
				t.Fatalf("AppendTo: %v", err)
			}
			if !bytes.Equal(out[:3], prefix) || !bytes.Equal(out[3:], tc.raw) {
				t.Fatalf("AppendTo:\n got %x\nwant %x", out[3:], tc.raw)
			}
		})
	}
}

// TestReadFrame reads every well-formed vector through ReadFrame, one byte
// at a time and back to back, and checks FrameLen on the same bytes.
func TestReadFrame(t *testing.T) {
	var stream []byte
	var want []Message
	for _, tc := range vectors {
		if tc.raw == nil || tc.err != nil {
			continue
		}
		n, err := FrameLen(tc.raw, 0)
		if err != nil || n != len(tc.raw) {
			t.Fatalf("%s: FrameLen = %d, %v; want %d", tc.name, n, err, len(tc.raw))
		}
		stream = append(stream, tc.raw...)
		want = append(want, tc.msg)
	}
	r := iotest.OneByteReader(bytes.NewReader(stream))
	for i, w := range want {
		f, err := ReadFrame(r, nil, 0)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		m, err := Decode(f)
		if err != nil || !reflect.DeepEqual(m, w) {
			t.Fatalf("frame %d: %#v, %v; want %#v", i, m, err, w)
		}
	}
	if _, err := ReadFrame(r, nil, 0); err != io.EOF {
		t.Fatalf("at the end: %v, want io.EOF", err)
	}
}

func TestReadFrameLimits(t *testing.T) {
	raw := frame(TypePing, h("02"))
	tests := []struct {
		name    string
		in      []byte
		maxSize int
		want    error
	}{
		{"fits-exactly", raw, len(raw), nil},
		{"one-byte-over", raw, len(raw) - 1, ErrFrameTooLarge},
		{"huge-prefix-default-max", h("ff ff ff ff 03"), 0, ErrFrameTooLarge},
		{"just-over-default-max", binary.BigEndian.AppendUint32(nil, DefaultMaxFrameSize-HeaderLen+1), 0, ErrFrameTooLarge},
		{"zero-length", h("00 00 00 00"), 0, ErrMalformed},
		{"eof-in-prefix", h("00 00"), 0, io.ErrUnexpectedEOF},
		{"eof-in-body", h("00 00 00 09 03"), 0, io.ErrUnexpectedEOF},
		{"empty", nil, 0, io.EOF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadFrame(bytes.NewReader(tc.in), nil, tc.maxSize)
			if !errors.Is(err, tc.want) {
				t.Fatalf("ReadFrame: %v, want %v", err, tc.want)
			}
			if tc.want == io.EOF || tc.want == io.ErrUnexpectedEOF && len(tc.in) < HeaderLen {
				return
			}
			if _, err := FrameLen(tc.in, tc.maxSize); !errors.Is(err, tc.want) && tc.want != io.ErrUnexpectedEOF {
				t.Fatalf("FrameLen: %v, want %v", err, tc.want)
			}
		})
	}
}

// TestReadFrameReusesBuffer: a buffer with room is used, not replaced.
func TestReadFrameReusesBuffer(t *testing.T) {
	raw := frame(TypePing, h("02"))
	buf := make([]byte, 0, 64)
	f, err := ReadFrame(bytes.NewReader(raw), buf, 0)
	if err != nil {
		t.Fatal(err)
	}
	if &f[0] != &buf[:1][0] {
		t.Fatal("ReadFrame allocated although buf had room")
	}
}

// TestDecodeStringsAreCopies: strings survive the frame being overwritten;
// payloads alias it, as documented.
func TestDecodeStringsAreCopies(t *testing.T) {
	raw, err := (&Forward{Messages: []ForwardMessage{{Seq: 1, Origin: "n1", PublisherID: "c1", Publish: pubQoS0}}}).AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	for i := range raw {
		raw[i] = 'Z'
	}
	f := m.(*Forward).Messages[0]
	if f.Origin != "n1" || f.PublisherID != "c1" || f.Publish.Topic != "a/b" {
		t.Fatalf("strings changed with the frame: %+v", f)
	}
	if string(f.Publish.Payload) != "Z" {
		t.Fatalf("payload %q does not alias the frame", f.Publish.Payload)
	}
}

// TestForwardZeroPacketID: a QoS 1 message with no packet id travels (as
// id 1), since ids mean nothing between nodes.
func TestForwardZeroPacketID(t *testing.T) {
	p := &packet.Publish{QoS: 2, Topic: "t"}
	raw, err := (&Forward{Messages: []ForwardMessage{{Seq: 1, Publish: p}}}).AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.(*Forward).Messages[0].Publish; got.QoS != 2 || got.PacketID != 1 || p.PacketID != 0 {
		t.Fatalf("decoded %+v; caller's packet id now %d", got, p.PacketID)
	}
}

func TestNegotiate(t *testing.T) {
	tests := []struct {
		aMin, aMax, bMin, bMax uint32
		want                   uint32
		ok                     bool
	}{
		{1, 1, 1, 1, 1, true},
		{1, 3, 1, 2, 2, true},
		{2, 3, 1, 2, 2, true},
		{3, 4, 1, 2, 0, false},
		{1, 2, 3, 4, 0, false},
		{0, 0, 0, 0, 0, false},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%d-%d/%d-%d", tc.aMin, tc.aMax, tc.bMin, tc.bMax), func(t *testing.T) {
			a := &Hello{MinProtocolVersion: tc.aMin, ProtocolVersion: tc.aMax}
			b := &Hello{MinProtocolVersion: tc.bMin, ProtocolVersion: tc.bMax}
			for _, pair := range [][2]*Hello{{a, b}, {b, a}} {
				v, err := Negotiate(pair[0], pair[1])
				if tc.ok != (err == nil) || v != tc.want {
					t.Fatalf("Negotiate = %d, %v; want %d ok=%v", v, err, tc.want, tc.ok)
				}
				if err != nil && !errors.Is(err, packet.UnsupportedProtocolVersion) {
					t.Fatalf("error %v does not wrap UnsupportedProtocolVersion", err)
				}
			}
		})
	}
}

func TestTimestampCompare(t *testing.T) {
	ts := []Timestamp{ // ascending
		{},
		{WallMilli: 1},
		{WallMilli: 1, Node: "a"},
		{WallMilli: 1, Node: "b"},
		{WallMilli: 1, Logical: 1},
		{WallMilli: 1, Logical: 1, Node: "a"},
		{WallMilli: 2},
	}
	for i, a := range ts {
		for j, b := range ts {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := a.Compare(b); got != want {
				t.Errorf("%+v.Compare(%+v) = %d, want %d", a, b, got, want)
			}
		}
	}
	if !(Timestamp{}).IsZero() || ts[1].IsZero() {
		t.Error("IsZero")
	}
}

func TestTypeString(t *testing.T) {
	if TypeForward.String() != "Forward" || Type(200).String() != "Type(200)" || TypeSessionTransferAck.String() != "SessionTransferAck" {
		t.Fatal(TypeForward.String(), Type(200).String())
	}
	if !Capabilities(5).Has(4) || Capabilities(5).Has(2) {
		t.Fatal("Capabilities.Has")
	}
}

// checkRoundTrip: whatever decodes re-encodes to a frame that decodes to an
// equal message.
func checkRoundTrip(t *testing.T, raw []byte) {
	t.Helper()
	m, err := Decode(raw)
	if err != nil {
		if m != nil {
			t.Fatalf("Decode returned %#v with error %v", m, err)
		}
		return
	}
	enc, err := m.AppendTo(nil)
	if err != nil {
		t.Fatalf("AppendTo(%#v) of a decoded message: %v", m, err)
	}
	m2, err := Decode(enc)
	if err != nil {
		t.Fatalf("Decode(re-encoded %x): %v (original %x)", enc, err, raw)
	}
	if !reflect.DeepEqual(m, m2) {
		t.Fatalf("round trip changed the message:\n first %#v\nsecond %#v", m, m2)
	}
}

func TestRoundTripVectors(t *testing.T) {
	for _, tc := range vectors {
		if tc.raw != nil {
			checkRoundTrip(t, tc.raw)
		}
	}
}
