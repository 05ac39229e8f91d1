package packet

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

// h builds bytes from space-separated tokens: hex ("10", "00ff") or ASCII
// in single quotes ('MQTT', no spaces inside).
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

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// vector is one entry of the codec's single table of test vectors. It feeds
// the encode, decode, round-trip and ReadPacket tests, the fuzz seeds and
// the spec-named conformance tests.
//
//   - raw set, err nil: Decode(raw, v) gives pkt; unless decodeOnly,
//     AppendTo(pkt, v) gives raw.
//   - raw set, err set: Decode(raw, v) fails with err (errors.Is); pkt, if
//     set, is the partial packet returned with it.
//   - raw set, encodeOnly: only AppendTo(pkt, v) == raw is checked (3.x
//     mappings that lose information).
//   - raw nil: AppendTo(pkt, v) fails with err.
type vector struct {
	name       string
	spec       string // spec statement checked, e.g. "MQTT-2.1.3-1"
	v          Version
	raw        []byte
	pkt        Packet
	err        error
	decodeOnly bool
	encodeOnly bool
}

var bigPayload = bytes.Repeat([]byte{'x'}, 316)

// vectors is the codec's table of test vectors, written from the
// specifications' byte layouts.
var vectors = []vector{
	// ---- CONNECT --------------------------------------------------------
	{name: "connect/311/minimal", v: V311,
		raw: h("10 0e 00 04 'MQTT' 04 02 00 3c 00 02 'c1'"),
		pkt: &Connect{ProtocolName: "MQTT", Version: V311, CleanStart: true, KeepAlive: 60, ClientID: "c1"}},
	{name: "connect/311/empty-client-id", v: V311,
		raw: h("10 0c 00 04 'MQTT' 04 02 00 00 00 00"),
		pkt: &Connect{ProtocolName: "MQTT", Version: V311, CleanStart: true}},
	{name: "connect/311/full", v: V311,
		raw: h("10 22 00 04 'MQTT' 04 f6 00 0a 00 02 'c1' 00 03 'w/t' 00 03 'bye' 00 04 'user' 00 02 'pw'"),
		pkt: &Connect{ProtocolName: "MQTT", Version: V311, CleanStart: true, KeepAlive: 10, ClientID: "c1",
			Will:         &Will{Topic: "w/t", Payload: []byte("bye"), QoS: 2, Retain: true},
			UsernameFlag: true, Username: "user", PasswordFlag: true, Password: []byte("pw")}},
	{name: "connect/311/will-qos1-no-retain", v: V311,
		raw: h("10 18 00 04 'MQTT' 04 0c 00 0a 00 02 'c1' 00 03 'w/t' 00 03 'bye'"),
		pkt: &Connect{ProtocolName: "MQTT", Version: V311, KeepAlive: 10, ClientID: "c1",
			Will: &Will{Topic: "w/t", Payload: []byte("bye"), QoS: 1}}},
	{name: "connect/311/utf8-4byte-client-id", spec: "MQTT-1.5.4-1", v: V311,
		raw: h("10 10 00 04 'MQTT' 04 02 00 3c 00 04 f0 9f 98 80"),
		pkt: &Connect{ProtocolName: "MQTT", Version: V311, CleanStart: true, KeepAlive: 60, ClientID: "\U0001F600"}},
	{name: "connect/311/bom-not-stripped", spec: "MQTT-1.5.4-3", v: V311,
		raw: h("10 10 00 04 'MQTT' 04 02 00 3c 00 04 ef bb bf 'a'"),
		pkt: &Connect{ProtocolName: "MQTT", Version: V311, CleanStart: true, KeepAlive: 60, ClientID: "\ufeffa"}},
	{name: "connect/31/minimal", v: V31,
		raw: h("10 10 00 06 'MQIsdp' 03 02 00 3c 00 02 'c1'"),
		pkt: &Connect{ProtocolName: "MQIsdp", Version: V31, CleanStart: true, KeepAlive: 60, ClientID: "c1"}},
	{name: "connect/31/full", v: V31,
		raw: h("10 24 00 06 'MQIsdp' 03 f6 00 0a 00 02 'c1' 00 03 'w/t' 00 03 'bye' 00 04 'user' 00 02 'pw'"),
		pkt: &Connect{ProtocolName: "MQIsdp", Version: V31, CleanStart: true, KeepAlive: 10, ClientID: "c1",
			Will:         &Will{Topic: "w/t", Payload: []byte("bye"), QoS: 2, Retain: true},
			UsernameFlag: true, Username: "user", PasswordFlag: true, Password: []byte("pw")}},
	{name: "connect/31/password-flag-without-password", v: V31, decodeOnly: true,
		raw: h("10 13 00 06 'MQIsdp' 03 c2 00 3c 00 02 'c1' 00 01 'u'"),
		pkt: &Connect{ProtocolName: "MQIsdp", Version: V31, CleanStart: true, KeepAlive: 60, ClientID: "c1",
			UsernameFlag: true, Username: "u", PasswordFlag: true}},
	{name: "connect/5/minimal", v: V5,
		raw: h("10 0f 00 04 'MQTT' 05 02 00 3c 00 00 02 'c1'"),
		pkt: &Connect{ProtocolName: "MQTT", Version: V5, CleanStart: true, KeepAlive: 60, ClientID: "c1"}},
	{name: "connect/5/full", v: V5,
		raw: h(`10 71 00 04 'MQTT' 05 ee 00 3c
			27 11 0000000a 15 0004 'SCRA' 16 0002 0102 17 00 19 01 21 0014 22 0005 26 0001 'k' 0001 'v' 27 00001000
			00 02 'c1'
			26 01 01 02 0000003c 03 0004 'text' 08 0004 'resp' 09 0002 abcd 18 00000005 26 0001 'a' 0001 'b'
			00 03 'w/t' 00 03 'bye' 00 04 'user' 00 02 'pw'`),
		pkt: &Connect{ProtocolName: "MQTT", Version: V5, CleanStart: true, KeepAlive: 60, ClientID: "c1",
			Properties: Properties{SessionExpiry: new(uint32(10)), AuthMethod: "SCRA", AuthData: []byte{1, 2},
				RequestProblemInfo: new(byte(0)), RequestResponseInfo: new(byte(1)), ReceiveMaximum: new(uint16(20)),
				TopicAliasMaximum: new(uint16(5)), User: []UserProperty{{"k", "v"}}, MaximumPacketSize: new(uint32(4096))},
			Will: &Will{Topic: "w/t", Payload: []byte("bye"), QoS: 1, Retain: true,
				Properties: Properties{PayloadFormat: new(byte(1)), MessageExpiry: new(uint32(60)), ContentType: "text",
					ResponseTopic: "resp", CorrelationData: []byte{0xab, 0xcd}, WillDelay: new(uint32(5)),
					User: []UserProperty{{"a", "b"}}}},
			UsernameFlag: true, Username: "user", PasswordFlag: true, Password: []byte("pw")}},
	{name: "connect/5/password-without-username", spec: "MQTT-3.1.2-22", v: V5,
		raw: h("10 13 00 04 'MQTT' 05 42 00 3c 00 00 02 'c1' 00 02 'pw'"),
		pkt: &Connect{ProtocolName: "MQTT", Version: V5, CleanStart: true, KeepAlive: 60, ClientID: "c1",
			PasswordFlag: true, Password: []byte("pw")}},
	{name: "connect/5/username-flag-empty-username", v: V5,
		raw: h("10 11 00 04 'MQTT' 05 82 00 3c 00 00 02 'c1' 00 00"),
		pkt: &Connect{ProtocolName: "MQTT", Version: V5, CleanStart: true, KeepAlive: 60, ClientID: "c1",
			UsernameFlag: true}},
	{name: "connect/311/password-without-username", spec: "MQTT-3.1.2-22", v: V311, err: MalformedPacket,
		raw: h("10 12 00 04 'MQTT' 04 42 00 3c 00 02 'c1' 00 02 'pw'")},
	{name: "connect/311/reserved-flag", spec: "MQTT-3.1.2-3", v: V311, err: MalformedPacket,
		raw: h("10 0e 00 04 'MQTT' 04 03 00 3c 00 02 'c1'")},
	{name: "connect/5/reserved-flag", spec: "MQTT-3.1.2-3", v: V5, err: MalformedPacket,
		raw: h("10 0f 00 04 'MQTT' 05 03 00 3c 00 00 02 'c1'")},
	{name: "connect/311/will-qos3", spec: "MQTT-3.1.2-14", v: V311, err: MalformedPacket,
		raw: h("10 18 00 04 'MQTT' 04 1e 00 3c 00 02 'c1' 00 03 'w/t' 00 03 'bye'")},
	{name: "connect/311/will-retain-without-will", spec: "MQTT-3.1.2-15", v: V311, err: MalformedPacket,
		raw: h("10 0e 00 04 'MQTT' 04 22 00 3c 00 02 'c1'")},
	{name: "connect/311/will-qos-without-will", spec: "MQTT-3.1.2-13", v: V311, err: MalformedPacket,
		raw: h("10 0e 00 04 'MQTT' 04 0a 00 3c 00 02 'c1'")},
	{name: "connect/unsupported-level-6", spec: "MQTT-3.1.2-2", v: V5, err: UnsupportedProtocolVersion,
		raw: h("10 0e 00 04 'MQTT' 06 02 00 3c 00 02 'c1'"),
		pkt: &Connect{ProtocolName: "MQTT", Version: 6}},
	{name: "connect/unsupported-mqtt-level-3", spec: "MQTT-3.1.2-2", v: V311, err: UnsupportedProtocolVersion,
		raw: h("10 0e 00 04 'MQTT' 03 02 00 3c 00 02 'c1'"),
		pkt: &Connect{ProtocolName: "MQTT", Version: V31}},
	{name: "connect/unsupported-mqisdp-level-4", spec: "MQTT-3.1.2-2", v: V311, err: UnsupportedProtocolVersion,
		raw: h("10 10 00 06 'MQIsdp' 04 02 00 3c 00 02 'c1'"),
		pkt: &Connect{ProtocolName: "MQIsdp", Version: V311}},
	{name: "connect/unknown-protocol-name", spec: "MQTT-3.1.2-1", v: V311, err: MalformedPacket,
		raw: h("10 0e 00 04 'MQTX' 04 02 00 3c 00 02 'c1'")},
	{name: "connect/reserved-header-flags", spec: "MQTT-2.1.3-1", v: V311, err: MalformedPacket,
		raw: h("11 0e 00 04 'MQTT' 04 02 00 3c 00 02 'c1'")},
	{name: "connect/client-id-overlong-nul", spec: "MQTT-1.5.4-1", v: V311, err: MalformedPacket,
		raw: h("10 0e 00 04 'MQTT' 04 02 00 3c 00 02 c0 80")},
	{name: "connect/client-id-nul", spec: "MQTT-1.5.4-2", v: V311, err: MalformedPacket,
		raw: h("10 0e 00 04 'MQTT' 04 02 00 3c 00 02 'a' 00")},
	{name: "connect/client-id-surrogate", spec: "MQTT-1.5.4-1", v: V311, err: MalformedPacket,
		raw: h("10 0f 00 04 'MQTT' 04 02 00 3c 00 03 ed a0 80")},
	{name: "connect/username-invalid-utf8", spec: "MQTT-1.5.4-1", v: V311, err: MalformedPacket,
		raw: h("10 11 00 04 'MQTT' 04 82 00 3c 00 02 'c1' 00 01 ff")},
	{name: "connect/truncated", v: V311, err: MalformedPacket,
		raw: h("10 0c 00 04 'MQTT' 04 02 00 3c 00 02")},
	{name: "connect/truncated-protocol-name", v: V311, err: MalformedPacket,
		raw: h("10 03 00 04 'M'")},
	{name: "connect/trailing-byte", v: V311, err: MalformedPacket,
		raw: h("10 0f 00 04 'MQTT' 04 02 00 3c 00 02 'c1' ff")},
	{name: "connect/will-payload-truncated", v: V311, err: MalformedPacket,
		raw: h("10 16 00 04 'MQTT' 04 06 00 3c 00 02 'c1' 00 03 'w/t' 00 03 'b'")},
	{name: "connect/5/topic-alias-not-allowed", spec: "MQTT-2.2.2.2", v: V5, err: ProtocolError,
		raw: h("10 12 00 04 'MQTT' 05 02 00 3c 03 23 0001 00 02 'c1'")},
	{name: "connect/5/unknown-property", spec: "MQTT-2.2.2.2", v: V5, err: MalformedPacket,
		raw: h("10 11 00 04 'MQTT' 05 02 00 3c 02 04 00 00 02 'c1'")},
	{name: "connect/5/duplicate-session-expiry", spec: "MQTT-2.2.2.2", v: V5, err: ProtocolError,
		raw: h("10 19 00 04 'MQTT' 05 02 00 3c 0a 11 00000001 11 00000002 00 02 'c1'")},
	{name: "connect/5/receive-maximum-0", v: V5, err: ProtocolError,
		raw: h("10 12 00 04 'MQTT' 05 02 00 3c 03 21 0000 00 02 'c1'")},
	{name: "connect/5/maximum-packet-size-0", v: V5, err: ProtocolError,
		raw: h("10 14 00 04 'MQTT' 05 02 00 3c 05 27 00000000 00 02 'c1'")},
	{name: "connect/5/request-problem-info-2", v: V5, err: ProtocolError,
		raw: h("10 11 00 04 'MQTT' 05 02 00 3c 02 17 02 00 02 'c1'")},
	{name: "connect/5/request-response-info-2", v: V5, err: ProtocolError,
		raw: h("10 11 00 04 'MQTT' 05 02 00 3c 02 19 02 00 02 'c1'")},
	{name: "connect/5/auth-data-without-method", v: V5, err: ProtocolError,
		raw: h("10 13 00 04 'MQTT' 05 02 00 3c 04 16 0001 ff 00 02 'c1'")},
	{name: "connect/5/property-length-too-long", v: V5, err: MalformedPacket,
		raw: h("10 0f 00 04 'MQTT' 05 02 00 3c 05 00 02 'c1'")},
	{name: "connect/5/property-length-not-minimal", spec: "MQTT-1.5.5-1", v: V5, err: MalformedPacket,
		raw: h("10 10 00 04 'MQTT' 05 02 00 3c 80 00 00 02 'c1'")},
	{name: "connect/5/will-property-not-allowed", spec: "MQTT-2.2.2.2", v: V5, err: ProtocolError,
		raw: h("10 1a 00 04 'MQTT' 05 06 00 3c 00 00 02 'c1' 05 11 00000001 00 01 't' 00 00")},
	{name: "connect/5/will-delay-in-connect", spec: "MQTT-2.2.2.2", v: V5, err: ProtocolError,
		raw: h("10 14 00 04 'MQTT' 05 02 00 3c 05 18 00000001 00 02 'c1'")},

	// ---- CONNACK --------------------------------------------------------
	{name: "connack/311/session-present", v: V311, raw: h("20 02 01 00"),
		pkt: &Connack{SessionPresent: true}},
	{name: "connack/311/unacceptable-protocol-version", v: V311, raw: h("20 02 00 01"),
		pkt: &Connack{ReasonCode: UnsupportedProtocolVersion}},
	{name: "connack/311/identifier-rejected", v: V311, raw: h("20 02 00 02"),
		pkt: &Connack{ReasonCode: ClientIdentifierNotValid}},
	{name: "connack/311/server-unavailable", v: V311, raw: h("20 02 00 03"),
		pkt: &Connack{ReasonCode: ServerUnavailable}},
	{name: "connack/311/bad-username-password", v: V311, raw: h("20 02 00 04"),
		pkt: &Connack{ReasonCode: BadUsernameOrPassword}},
	{name: "connack/311/not-authorized", v: V311, raw: h("20 02 00 05"),
		pkt: &Connack{ReasonCode: NotAuthorized}},
	{name: "connack/311/server-busy-maps-to-3", v: V311, raw: h("20 02 00 03"), encodeOnly: true,
		pkt: &Connack{ReasonCode: ServerBusy}},
	{name: "connack/311/banned-maps-to-5", v: V311, raw: h("20 02 00 05"), encodeOnly: true,
		pkt: &Connack{ReasonCode: Banned}},
	{name: "connack/311/quota-exceeded-maps-to-3", v: V311, raw: h("20 02 00 03"), encodeOnly: true,
		pkt: &Connack{ReasonCode: QuotaExceeded}},
	{name: "connack/311/properties-omitted", v: V311, raw: h("20 02 00 00"), encodeOnly: true,
		pkt: &Connack{Properties: Properties{ReasonString: "dropped", TopicAlias: new(uint16(1))}}},
	{name: "connack/311/success-code-cannot-map", v: V311, err: MalformedPacket,
		pkt: &Connack{ReasonCode: GrantedQoS1}},
	{name: "connack/311/reserved-return-code", v: V311, err: MalformedPacket, raw: h("20 02 00 06")},
	{name: "connack/311/reserved-ack-flags", spec: "MQTT-3.2.2-1", v: V311, err: MalformedPacket, raw: h("20 02 02 00")},
	{name: "connack/311/trailing-byte", v: V311, err: MalformedPacket, raw: h("20 03 00 00 00")},
	{name: "connack/311/short", v: V311, err: MalformedPacket, raw: h("20 01 00")},
	{name: "connack/31/accepted", v: V31, raw: h("20 02 00 00"), pkt: &Connack{}},
	{name: "connack/31/no-session-present", v: V31, raw: h("20 02 00 00"), encodeOnly: true,
		pkt: &Connack{SessionPresent: true}},
	{name: "connack/5/minimal", v: V5, raw: h("20 03 00 00 00"), pkt: &Connack{}},
	{name: "connack/5/server-busy", v: V5, raw: h("20 03 00 89 00"), pkt: &Connack{ReasonCode: ServerBusy}},
	{name: "connack/5/full", v: V5,
		raw: h(`20 4b 01 00 48 11 00000078 12 0003 'cid' 13 001e 15 0004 'SCRA' 16 0001 ff 1a 0004 'info'
			1c 0004 'srv2' 1f 0002 'ok' 21 000a 22 0008 24 01 25 00 26 0001 'k' 0001 'v' 27 00010000
			28 01 29 00 2a 01`),
		pkt: &Connack{SessionPresent: true, Properties: Properties{SessionExpiry: new(uint32(120)),
			AssignedClientID: "cid", ServerKeepAlive: new(uint16(30)), AuthMethod: "SCRA", AuthData: []byte{0xff},
			ResponseInfo: "info", ServerReference: "srv2", ReasonString: "ok", ReceiveMaximum: new(uint16(10)),
			TopicAliasMaximum: new(uint16(8)), MaximumQoS: new(byte(1)), RetainAvailable: new(byte(0)),
			User: []UserProperty{{"k", "v"}}, MaximumPacketSize: new(uint32(65536)),
			WildcardSubAvailable: new(byte(1)), SubIDAvailable: new(byte(0)), SharedSubAvailable: new(byte(1))}}},
	{name: "connack/5/invalid-reason-code", v: V5, err: ProtocolError, raw: h("20 03 00 04 00")},
	{name: "connack/5/missing-property-length", v: V5, err: MalformedPacket, raw: h("20 02 00 00")},
	{name: "connack/5/maximum-qos-2", v: V5, err: ProtocolError, raw: h("20 05 00 00 02 24 02")},
	{name: "connack/5/retain-available-2", v: V5, err: ProtocolError, raw: h("20 05 00 00 02 25 02")},
	{name: "connack/5/wildcard-available-2", v: V5, err: ProtocolError, raw: h("20 05 00 00 02 28 02")},
	{name: "connack/5/subid-available-2", v: V5, err: ProtocolError, raw: h("20 05 00 00 02 29 02")},
	{name: "connack/5/shared-available-2", v: V5, err: ProtocolError, raw: h("20 05 00 00 02 2a 02")},
	{name: "connack/5/request-problem-info-not-allowed", spec: "MQTT-2.2.2.2", v: V5, err: ProtocolError,
		raw: h("20 05 00 00 02 17 01")},
	{name: "connack/5/topic-alias-not-allowed-encode", spec: "MQTT-2.2.2.2", v: V5, err: ProtocolError,
		pkt: &Connack{Properties: Properties{TopicAlias: new(uint16(1))}}},
	{name: "connack/5/reserved-header-flags", spec: "MQTT-2.1.3-1", v: V5, err: MalformedPacket, raw: h("21 03 00 00 00")},

	// ---- PUBLISH --------------------------------------------------------
	{name: "publish/311/qos0", v: V311, raw: h("30 07 00 03 'a/b' 'hi'"),
		pkt: &Publish{Topic: "a/b", Payload: []byte("hi")}},
	{name: "publish/311/qos1", v: V311, raw: h("32 09 00 03 'a/b' 00 01 'hi'"),
		pkt: &Publish{QoS: 1, Topic: "a/b", PacketID: 1, Payload: []byte("hi")}},
	{name: "publish/311/qos2-dup-retain", v: V311, raw: h("3d 09 00 03 'a/b' 00 02 'hi'"),
		pkt: &Publish{Dup: true, QoS: 2, Retain: true, Topic: "a/b", PacketID: 2, Payload: []byte("hi")}},
	{name: "publish/311/empty-payload-retained", v: V311, raw: h("31 05 00 03 'a/b'"),
		pkt: &Publish{Retain: true, Topic: "a/b"}},
	{name: "publish/311/two-byte-remaining-length", spec: "MQTT-1.5.5", v: V311,
		raw: cat(h("30 c1 02 00 03 'a/b'"), bigPayload),
		pkt: &Publish{Topic: "a/b", Payload: bigPayload}},
	{name: "publish/311/properties-omitted", v: V311, raw: h("30 07 00 03 'a/b' 'hi'"), encodeOnly: true,
		pkt: &Publish{Topic: "a/b", Payload: []byte("hi"), Properties: Properties{TopicAlias: new(uint16(3)), SessionExpiry: new(uint32(1))}}},
	{name: "publish/311/qos0-packet-id-omitted", spec: "MQTT-2.3.1-5", v: V311, raw: h("30 07 00 03 'a/b' 'hi'"), encodeOnly: true,
		pkt: &Publish{Topic: "a/b", PacketID: 9, Payload: []byte("hi")}},
	{name: "publish/311/qos3", spec: "MQTT-3.3.1-4", v: V311, err: MalformedPacket, raw: h("36 07 00 03 'a/b' 'hi'")},
	{name: "publish/5/qos3", spec: "MQTT-3.3.1-4", v: V5, err: MalformedPacket, raw: h("36 08 00 03 'a/b' 00 'hi'")},
	{name: "publish/311/qos3-encode", spec: "MQTT-3.3.1-4", v: V311, err: MalformedPacket,
		pkt: &Publish{QoS: 3, Topic: "a/b"}},
	{name: "publish/311/packet-id-0", spec: "MQTT-2.3.1-1", v: V311, err: ProtocolError, raw: h("32 09 00 03 'a/b' 00 00 'hi'")},
	{name: "publish/5/packet-id-0", spec: "MQTT-2.3.1-1", v: V5, err: ProtocolError, raw: h("34 0a 00 03 'a/b' 00 00 00 'hi'")},
	{name: "publish/311/dup-qos0", spec: "MQTT-3.3.1-2", v: V311, err: MalformedPacket, raw: h("38 07 00 03 'a/b' 'hi'")},
	{name: "publish/311/topic-surrogate", spec: "MQTT-1.5.4-1", v: V311, err: MalformedPacket, raw: h("30 07 00 03 ed a0 80 'hi'")},
	{name: "publish/311/topic-nul", spec: "MQTT-1.5.4-2", v: V311, err: MalformedPacket, raw: h("30 07 00 03 'a' 00 'b' 'hi'")},
	{name: "publish/311/missing-packet-id", v: V311, err: MalformedPacket, raw: h("32 05 00 03 'a/b'")},
	{name: "publish/311/topic-length-exceeds-packet", v: V311, err: MalformedPacket, raw: h("30 03 00 05 'a'")},
	{name: "publish/311/empty-body", v: V311, err: MalformedPacket, raw: h("30 00")},
	{name: "publish/31/qos0", v: V31, raw: h("30 07 00 03 'a/b' 'hi'"),
		pkt: &Publish{Topic: "a/b", Payload: []byte("hi")}},
	{name: "publish/31/qos1", v: V31, raw: h("32 09 00 03 'a/b' 12 34 'hi'"),
		pkt: &Publish{QoS: 1, Topic: "a/b", PacketID: 0x1234, Payload: []byte("hi")}},
	{name: "publish/5/qos0", v: V5, raw: h("30 08 00 03 'a/b' 00 'hi'"),
		pkt: &Publish{Topic: "a/b", Payload: []byte("hi")}},
	{name: "publish/5/full", v: V5,
		raw: h(`33 43 00 03 'a/b' 00 07 36 01 01 02 0000003c 03 000a 'text/plain' 08 0004 'resp' 09 0002 0102
			0b 05 0b 8001 23 0002 26 0001 'k' 0001 'v' 26 0001 'k' 0001 'w' 'hello'`),
		pkt: &Publish{QoS: 1, Retain: true, Topic: "a/b", PacketID: 7, Payload: []byte("hello"),
			Properties: Properties{PayloadFormat: new(byte(1)), MessageExpiry: new(uint32(60)), ContentType: "text/plain",
				ResponseTopic: "resp", CorrelationData: []byte{1, 2}, SubscriptionIDs: []int{5, 128},
				TopicAlias: new(uint16(2)), User: []UserProperty{{"k", "v"}, {"k", "w"}}}}},
	{name: "publish/5/max-subscription-id", v: V5,
		raw: h("30 0d 00 03 'a/b' 05 0b ffffff7f 'hi'"),
		pkt: &Publish{Topic: "a/b", Payload: []byte("hi"), Properties: Properties{SubscriptionIDs: []int{268435455}}}},
	{name: "publish/5/empty-correlation-data", v: V5,
		raw: h("30 0b 00 03 'a/b' 03 09 0000 'hi'"),
		pkt: &Publish{Topic: "a/b", Payload: []byte("hi"), Properties: Properties{CorrelationData: []byte{}}}},
	{name: "publish/5/empty-topic-with-alias", v: V5, raw: h("30 08 00 00 03 23 0001 'hi'"),
		pkt: &Publish{Payload: []byte("hi"), Properties: Properties{TopicAlias: new(uint16(1))}}},
	{name: "publish/5/empty-topic-without-alias", v: V5, err: ProtocolError, raw: h("30 05 00 00 00 'hi'")},
	{name: "publish/5/topic-alias-0", spec: "MQTT-3.3.2-8", v: V5, err: TopicAliasInvalid,
		raw: h("30 0b 00 03 'a/b' 03 23 0000 'hi'")},
	{name: "publish/5/topic-alias-0-protocol-error", spec: "MQTT-3.3.2-8", v: V5, err: ProtocolError,
		raw: h("30 0b 00 03 'a/b' 03 23 0000 'hi'")},
	{name: "publish/5/payload-format-2", v: V5, err: ProtocolError, raw: h("30 0a 00 03 'a/b' 02 01 02 'hi'")},
	{name: "publish/5/subscription-id-0", v: V5, err: ProtocolError, raw: h("30 0a 00 03 'a/b' 02 0b 00 'hi'")},
	{name: "publish/5/subscription-id-not-minimal", spec: "MQTT-1.5.5-1", v: V5, err: MalformedPacket,
		raw: h("30 0b 00 03 'a/b' 03 0b 80 00 'hi'")},
	{name: "publish/5/subscription-id-five-bytes", v: V5, err: MalformedPacket,
		raw: h("30 0c 00 03 'a/b' 06 0b ffffffff 7f")},
	{name: "publish/5/session-expiry-not-allowed", spec: "MQTT-2.2.2.2", v: V5, err: ProtocolError,
		raw: h("30 0d 00 03 'a/b' 05 11 00000001 'hi'")},
	{name: "publish/5/duplicate-topic-alias", spec: "MQTT-2.2.2.2", v: V5, err: ProtocolError,
		raw: h("30 0c 00 03 'a/b' 06 23 0001 23 0002")},
	{name: "publish/5/duplicate-content-type", spec: "MQTT-2.2.2.2", v: V5, err: ProtocolError,
		raw: h("30 0e 00 03 'a/b' 08 03 0001 'a' 03 0001 'b'")},
	{name: "publish/5/property-length-exceeds-packet", v: V5, err: MalformedPacket, raw: h("30 07 00 03 'a/b' 05 'h'")},
	{name: "publish/5/missing-property-length", v: V5, err: MalformedPacket, raw: h("30 05 00 03 'a/b'")},
	{name: "publish/5/property-value-truncated", v: V5, err: MalformedPacket, raw: h("30 08 00 03 'a/b' 02 02 00")},
	{name: "publish/5/property-id-0", spec: "MQTT-2.2.2.2", v: V5, err: MalformedPacket, raw: h("30 0a 00 03 'a/b' 02 00 00 'hi'")},
	{name: "publish/5/user-property-invalid-utf8", spec: "MQTT-1.5.4-1", v: V5, err: MalformedPacket,
		raw: h("30 0c 00 03 'a/b' 06 26 0001 ff 0000")},
	{name: "publish/5/content-type-nul", spec: "MQTT-1.5.4-2", v: V5, err: MalformedPacket,
		raw: h("30 0a 00 03 'a/b' 04 03 0001 00")},
	{name: "publish/5/reserved-property-encode", spec: "MQTT-2.2.2.2", v: V5, err: ProtocolError,
		pkt: &Publish{Topic: "a/b", Properties: Properties{ReasonString: "no"}}},
	{name: "publish/5/subscription-id-0-encode", v: V5, err: MalformedPacket,
		pkt: &Publish{Topic: "a/b", Properties: Properties{SubscriptionIDs: []int{0}}}},

	// ---- PUBACK, PUBREC, PUBREL, PUBCOMP --------------------------------
	{name: "puback/311", v: V311, raw: h("40 02 00 01"), pkt: &Puback{PacketID: 1}},
	{name: "pubrec/311", v: V311, raw: h("50 02 00 02"), pkt: &Pubrec{PacketID: 2}},
	{name: "pubrel/311", spec: "MQTT-3.6.1-1", v: V311, raw: h("62 02 00 03"), pkt: &Pubrel{PacketID: 3}},
	{name: "pubcomp/311", v: V311, raw: h("70 02 ff ff"), pkt: &Pubcomp{PacketID: 0xffff}},
	{name: "puback/31", v: V31, raw: h("40 02 00 01"), pkt: &Puback{PacketID: 1}},
	{name: "pubrec/31", v: V31, raw: h("50 02 00 01"), pkt: &Pubrec{PacketID: 1}},
	{name: "pubrel/31", v: V31, raw: h("62 02 00 01"), pkt: &Pubrel{PacketID: 1}},
	{name: "pubrel/31/dup-flag", v: V31, raw: h("6a 02 00 01"), pkt: &Pubrel{PacketID: 1}, decodeOnly: true},
	{name: "pubcomp/31", v: V31, raw: h("70 02 00 01"), pkt: &Pubcomp{PacketID: 1}},
	{name: "puback/311/reason-omitted", v: V311, raw: h("40 02 00 01"), encodeOnly: true,
		pkt: &Puback{PacketID: 1, ReasonCode: NotAuthorized, Properties: Properties{ReasonString: "x"}}},
	{name: "puback/311/trailing-byte", v: V311, err: MalformedPacket, raw: h("40 03 00 01 00")},
	{name: "puback/311/short", v: V311, err: MalformedPacket, raw: h("40 01 00")},
	{name: "pubrel/311/reserved-flags", spec: "MQTT-3.6.1-1", v: V311, err: MalformedPacket, raw: h("60 02 00 01")},
	{name: "pubrel/5/reserved-flags", spec: "MQTT-3.6.1-1", v: V5, err: MalformedPacket, raw: h("60 02 00 01")},
	{name: "puback/311/reserved-flags", spec: "MQTT-2.1.3-1", v: V311, err: MalformedPacket, raw: h("42 02 00 01")},
	{name: "pubcomp/5/reserved-flags", spec: "MQTT-2.1.3-1", v: V5, err: MalformedPacket, raw: h("71 02 00 01")},
	{name: "puback/5/success-short-form", spec: "MQTT-3.4.2.1", v: V5, raw: h("40 02 00 01"), pkt: &Puback{PacketID: 1}},
	{name: "pubrec/5/success-short-form", v: V5, raw: h("50 02 00 01"), pkt: &Pubrec{PacketID: 1}},
	{name: "pubrel/5/success-short-form", v: V5, raw: h("62 02 00 01"), pkt: &Pubrel{PacketID: 1}},
	{name: "pubcomp/5/success-short-form", v: V5, raw: h("70 02 00 01"), pkt: &Pubcomp{PacketID: 1}},
	{name: "puback/5/reason-only", v: V5, raw: h("40 03 00 01 10"), pkt: &Puback{PacketID: 1, ReasonCode: NoMatchingSubscribers}},
	{name: "pubrec/5/reason-only", v: V5, raw: h("50 03 00 01 80"), pkt: &Pubrec{PacketID: 1, ReasonCode: UnspecifiedError}},
	{name: "pubrel/5/reason-only", v: V5, raw: h("62 03 00 01 92"), pkt: &Pubrel{PacketID: 1, ReasonCode: PacketIdentifierNotFound}},
	{name: "pubcomp/5/reason-only", v: V5, raw: h("70 03 00 01 92"), pkt: &Pubcomp{PacketID: 1, ReasonCode: PacketIdentifierNotFound}},
	{name: "puback/5/full", v: V5, raw: h("40 12 00 01 87 0e 1f 0004 'deny' 26 0001 'k' 0001 'v'"),
		pkt: &Puback{PacketID: 1, ReasonCode: NotAuthorized, Properties: Properties{ReasonString: "deny", User: []UserProperty{{"k", "v"}}}}},
	{name: "pubrec/5/full", v: V5, raw: h("50 0b 00 01 97 07 1f 0004 'full'"),
		pkt: &Pubrec{PacketID: 1, ReasonCode: QuotaExceeded, Properties: Properties{ReasonString: "full"}}},
	{name: "pubrel/5/full", v: V5, raw: h("62 0b 00 01 00 07 1f 0004 'done'"),
		pkt: &Pubrel{PacketID: 1, Properties: Properties{ReasonString: "done"}}},
	{name: "pubcomp/5/success-with-properties", v: V5, raw: h("70 0b 00 01 00 07 26 0001 'k' 0001 'v'"),
		pkt: &Pubcomp{PacketID: 1, Properties: Properties{User: []UserProperty{{"k", "v"}}}}},
	{name: "puback/5/zero-property-length", v: V5, raw: h("40 04 00 01 00 00"), pkt: &Puback{PacketID: 1}, decodeOnly: true},
	{name: "puback/5/reason-zero-property-length", v: V5, raw: h("40 04 00 01 10 00"),
		pkt: &Puback{PacketID: 1, ReasonCode: NoMatchingSubscribers}, decodeOnly: true},
	{name: "puback/5/invalid-reason", v: V5, err: ProtocolError, raw: h("40 03 00 01 81")},
	{name: "pubrel/5/invalid-reason", v: V5, err: ProtocolError, raw: h("62 03 00 01 10")},
	{name: "puback/5/content-type-not-allowed", spec: "MQTT-2.2.2.2", v: V5, err: ProtocolError,
		raw: h("40 0b 00 01 00 07 03 0004 'text'")},
	{name: "puback/5/duplicate-reason-string", spec: "MQTT-2.2.2.2", v: V5, err: ProtocolError,
		raw: h("40 0c 00 01 80 08 1f 0001 'a' 1f 0001 'b'")},
	{name: "puback/5/trailing-after-properties", v: V5, err: MalformedPacket, raw: h("40 05 00 01 00 00 ff")},
	{name: "puback/5/topic-alias-encode", spec: "MQTT-2.2.2.2", v: V5, err: ProtocolError,
		pkt: &Puback{PacketID: 1, Properties: Properties{TopicAlias: new(uint16(1))}}},

	// ---- SUBSCRIBE ------------------------------------------------------
	{name: "subscribe/311", v: V311, raw: h("82 08 00 01 00 03 'a/b' 01"),
		pkt: &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "a/b", QoS: 1}}}},
	{name: "subscribe/311/two-filters", v: V311, raw: h("82 0e 00 02 00 03 'a/b' 00 00 03 'c/#' 02"),
		pkt: &Subscribe{PacketID: 2, Subscriptions: []Subscription{{Filter: "a/b"}, {Filter: "c/#", QoS: 2}}}},
	{name: "subscribe/311/v5-options-omitted", v: V311, raw: h("82 08 00 01 00 03 'a/b' 01"), encodeOnly: true,
		pkt: &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "a/b", QoS: 1, NoLocal: true, RetainAsPublished: true, RetainHandling: 2}},
			Properties: Properties{SubscriptionIDs: []int{1}}}},
	{name: "subscribe/31", v: V31, raw: h("82 08 00 01 00 03 'a/b' 01"),
		pkt: &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "a/b", QoS: 1}}}},
	{name: "subscribe/31/dup-flag", v: V31, raw: h("8a 08 00 01 00 03 'a/b' 01"), decodeOnly: true,
		pkt: &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "a/b", QoS: 1}}}},
	{name: "subscribe/5/full", v: V5,
		raw: h("82 18 00 03 09 0b 2a 26 0001 'k' 0001 'v' 00 03 'a/b' 2d 00 03 'c/+' 12"),
		pkt: &Subscribe{PacketID: 3, Properties: Properties{SubscriptionIDs: []int{42}, User: []UserProperty{{"k", "v"}}},
			Subscriptions: []Subscription{
				{Filter: "a/b", QoS: 1, NoLocal: true, RetainAsPublished: true, RetainHandling: 2},
				{Filter: "c/+", QoS: 2, RetainHandling: 1}}}},
	{name: "subscribe/5/no-properties", v: V5, raw: h("82 09 00 01 00 00 03 'a/b' 00"),
		pkt: &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "a/b"}}}},
	{name: "subscribe/311/reserved-flags", spec: "MQTT-3.8.1-1", v: V311, err: MalformedPacket, raw: h("80 08 00 01 00 03 'a/b' 01")},
	{name: "subscribe/5/reserved-flags", spec: "MQTT-3.8.1-1", v: V5, err: MalformedPacket, raw: h("83 09 00 01 00 00 03 'a/b' 01")},
	{name: "subscribe/311/no-filters", spec: "MQTT-3.8.3-3", v: V311, err: ProtocolError, raw: h("82 02 00 01")},
	{name: "subscribe/5/no-filters", spec: "MQTT-3.8.3-3", v: V5, err: ProtocolError, raw: h("82 03 00 01 00")},
	{name: "subscribe/311/packet-id-0", spec: "MQTT-2.3.1-1", v: V311, err: ProtocolError, raw: h("82 08 00 00 00 03 'a/b' 01")},
	{name: "subscribe/311/reserved-option-bits", spec: "MQTT-3.8.3-4", v: V311, err: MalformedPacket, raw: h("82 08 00 01 00 03 'a/b' 05")},
	{name: "subscribe/311/qos3", spec: "MQTT-3.8.3-4", v: V311, err: MalformedPacket, raw: h("82 08 00 01 00 03 'a/b' 03")},
	{name: "subscribe/5/reserved-option-bits", spec: "MQTT-3.8.3-5", v: V5, err: MalformedPacket, raw: h("82 09 00 01 00 00 03 'a/b' 41")},
	{name: "subscribe/5/retain-handling-3", v: V5, err: ProtocolError, raw: h("82 09 00 01 00 00 03 'a/b' 30")},
	{name: "subscribe/5/qos3", v: V5, err: ProtocolError, raw: h("82 09 00 01 00 00 03 'a/b' 03")},
	{name: "subscribe/5/missing-options", v: V5, err: MalformedPacket, raw: h("82 08 00 01 00 00 03 'a/b'")},
	{name: "subscribe/311/filter-invalid-utf8", spec: "MQTT-1.5.4-1", v: V311, err: MalformedPacket, raw: h("82 08 00 01 00 03 'a' ff 'b' 01")},
	{name: "subscribe/5/two-subscription-ids", spec: "MQTT-2.2.2.2", v: V5, err: ProtocolError,
		raw: h("82 0d 00 01 04 0b 01 0b 02 00 03 'a/b' 00")},
	{name: "subscribe/5/subscription-id-0", v: V5, err: ProtocolError, raw: h("82 0b 00 01 02 0b 00 00 03 'a/b' 00")},
	{name: "subscribe/5/topic-alias-not-allowed", spec: "MQTT-2.2.2.2", v: V5, err: ProtocolError,
		raw: h("82 0c 00 01 03 23 0001 00 03 'a/b' 00")},
	{name: "subscribe/5/two-subscription-ids-encode", v: V5, err: MalformedPacket,
		pkt: &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "a"}}, Properties: Properties{SubscriptionIDs: []int{1, 2}}}},
	{name: "subscribe/5/retain-handling-3-encode", v: V5, err: MalformedPacket,
		pkt: &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "a", RetainHandling: 3}}}},

	// ---- SUBACK ---------------------------------------------------------
	{name: "suback/311", v: V311, raw: h("90 06 00 01 00 01 02 80"),
		pkt: &Suback{PacketID: 1, ReasonCodes: []ReasonCode{GrantedQoS0, GrantedQoS1, GrantedQoS2, UnspecifiedError}}},
	{name: "suback/311/failures-map-to-0x80", v: V311, raw: h("90 05 00 01 01 80 80"), encodeOnly: true,
		pkt: &Suback{PacketID: 1, ReasonCodes: []ReasonCode{GrantedQoS1, NotAuthorized, TopicFilterInvalid},
			Properties: Properties{ReasonString: "dropped"}}},
	{name: "suback/31", v: V31, raw: h("90 03 00 01 01"), pkt: &Suback{PacketID: 1, ReasonCodes: []ReasonCode{GrantedQoS1}}},
	{name: "suback/311/reserved-return-code", spec: "MQTT-3.9.3-2", v: V311, err: MalformedPacket, raw: h("90 03 00 01 03")},
	{name: "suback/311/no-return-codes", v: V311, err: ProtocolError, raw: h("90 02 00 01")},
	{name: "suback/311/reserved-flags", spec: "MQTT-2.1.3-1", v: V311, err: MalformedPacket, raw: h("92 03 00 01 00")},
	{name: "suback/5/full", v: V5,
		raw: h("90 1b 00 01 0c 1f 0002 'ok' 26 0001 'k' 0001 'v' 00 01 02 80 87 8f 91 97 9e a1 a2 83"),
		pkt: &Suback{PacketID: 1, Properties: Properties{ReasonString: "ok", User: []UserProperty{{"k", "v"}}},
			ReasonCodes: []ReasonCode{GrantedQoS0, GrantedQoS1, GrantedQoS2, UnspecifiedError, NotAuthorized,
				TopicFilterInvalid, PacketIdentifierInUse, QuotaExceeded, SharedSubscriptionsNotSupported,
				SubscriptionIdentifiersNotSupported, WildcardSubscriptionsNotSupported, ImplementationSpecificError}}},
	{name: "suback/5/invalid-reason", v: V5, err: ProtocolError, raw: h("90 04 00 01 00 03")},
	{name: "suback/5/no-reason-codes", v: V5, err: ProtocolError, raw: h("90 03 00 01 00")},
	{name: "suback/5/missing-property-length", v: V5, err: MalformedPacket, raw: h("90 02 00 01")},

	// ---- UNSUBSCRIBE ----------------------------------------------------
	{name: "unsubscribe/311", v: V311, raw: h("a2 07 00 01 00 03 'a/b'"),
		pkt: &Unsubscribe{PacketID: 1, Filters: []string{"a/b"}}},
	{name: "unsubscribe/311/two-filters", v: V311, raw: h("a2 0c 00 01 00 03 'a/b' 00 03 'c/d'"),
		pkt: &Unsubscribe{PacketID: 1, Filters: []string{"a/b", "c/d"}}},
	{name: "unsubscribe/31", v: V31, raw: h("a2 07 00 01 00 03 'a/b'"),
		pkt: &Unsubscribe{PacketID: 1, Filters: []string{"a/b"}}},
	{name: "unsubscribe/5", v: V5, raw: h("a2 08 00 01 00 00 03 'a/b'"),
		pkt: &Unsubscribe{PacketID: 1, Filters: []string{"a/b"}}},
	{name: "unsubscribe/5/user-property", v: V5, raw: h("a2 0f 00 01 07 26 0001 'k' 0001 'v' 00 03 'a/b'"),
		pkt: &Unsubscribe{PacketID: 1, Filters: []string{"a/b"}, Properties: Properties{User: []UserProperty{{"k", "v"}}}}},
	{name: "unsubscribe/311/reserved-flags", spec: "MQTT-3.10.1-1", v: V311, err: MalformedPacket, raw: h("a0 07 00 01 00 03 'a/b'")},
	{name: "unsubscribe/311/no-filters", spec: "MQTT-3.10.3-2", v: V311, err: ProtocolError, raw: h("a2 02 00 01")},
	{name: "unsubscribe/5/no-filters", spec: "MQTT-3.10.3-2", v: V5, err: ProtocolError, raw: h("a2 03 00 01 00")},
	{name: "unsubscribe/311/packet-id-0", spec: "MQTT-2.3.1-1", v: V311, err: ProtocolError, raw: h("a2 07 00 00 00 03 'a/b'")},
	{name: "unsubscribe/5/reason-string-not-allowed", spec: "MQTT-2.2.2.2", v: V5, err: ProtocolError,
		raw: h("a2 0d 00 01 05 1f 0002 'no' 00 03 'a/b'")},
	{name: "unsubscribe/311/truncated-filter", v: V311, err: MalformedPacket, raw: h("a2 05 00 01 00 03 'a'")},

	// ---- UNSUBACK -------------------------------------------------------
	{name: "unsuback/311", v: V311, raw: h("b0 02 00 01"), pkt: &Unsuback{PacketID: 1}},
	{name: "unsuback/31", v: V31, raw: h("b0 02 00 01"), pkt: &Unsuback{PacketID: 1}},
	{name: "unsuback/311/codes-omitted", v: V311, raw: h("b0 02 00 01"), encodeOnly: true,
		pkt: &Unsuback{PacketID: 1, ReasonCodes: []ReasonCode{Success, NoSubscriptionExisted}}},
	{name: "unsuback/311/trailing-byte", v: V311, err: MalformedPacket, raw: h("b0 03 00 01 00")},
	{name: "unsuback/5", v: V5, raw: h("b0 05 00 01 00 00 11"),
		pkt: &Unsuback{PacketID: 1, ReasonCodes: []ReasonCode{Success, NoSubscriptionExisted}}},
	{name: "unsuback/5/full", v: V5, raw: h("b0 0f 00 01 05 1f 0002 'ok' 00 11 80 83 87 8f 91"),
		pkt: &Unsuback{PacketID: 1, Properties: Properties{ReasonString: "ok"},
			ReasonCodes: []ReasonCode{Success, NoSubscriptionExisted, UnspecifiedError, ImplementationSpecificError,
				NotAuthorized, TopicFilterInvalid, PacketIdentifierInUse}}},
	{name: "unsuback/5/no-reason-codes", v: V5, err: ProtocolError, raw: h("b0 03 00 01 00")},
	{name: "unsuback/5/invalid-reason", v: V5, err: ProtocolError, raw: h("b0 04 00 01 00 01")},

	// ---- PINGREQ, PINGRESP ----------------------------------------------
	{name: "pingreq/311", v: V311, raw: h("c0 00"), pkt: &Pingreq{}},
	{name: "pingreq/31", v: V31, raw: h("c0 00"), pkt: &Pingreq{}},
	{name: "pingreq/5", v: V5, raw: h("c0 00"), pkt: &Pingreq{}},
	{name: "pingresp/311", v: V311, raw: h("d0 00"), pkt: &Pingresp{}},
	{name: "pingresp/31", v: V31, raw: h("d0 00"), pkt: &Pingresp{}},
	{name: "pingresp/5", v: V5, raw: h("d0 00"), pkt: &Pingresp{}},
	{name: "pingreq/311/body", v: V311, err: MalformedPacket, raw: h("c0 01 00")},
	{name: "pingresp/5/body", v: V5, err: MalformedPacket, raw: h("d0 01 00")},
	{name: "pingreq/311/reserved-flags", spec: "MQTT-2.1.3-1", v: V311, err: MalformedPacket, raw: h("c2 00")},
	{name: "pingresp/5/reserved-flags", spec: "MQTT-2.1.3-1", v: V5, err: MalformedPacket, raw: h("d8 00")},

	// ---- DISCONNECT -----------------------------------------------------
	{name: "disconnect/311", v: V311, raw: h("e0 00"), pkt: &Disconnect{}},
	{name: "disconnect/31", v: V31, raw: h("e0 00"), pkt: &Disconnect{}},
	{name: "disconnect/311/reason-omitted", v: V311, raw: h("e0 00"), encodeOnly: true,
		pkt: &Disconnect{ReasonCode: ServerShuttingDown, Properties: Properties{ReasonString: "bye"}}},
	{name: "disconnect/311/body", v: V311, err: MalformedPacket, raw: h("e0 01 00")},
	{name: "disconnect/311/reserved-flags", spec: "MQTT-2.1.3-1", v: V311, err: MalformedPacket, raw: h("e1 00")},
	{name: "disconnect/5/normal-short-form", spec: "MQTT-3.14.2.1", v: V5, raw: h("e0 00"), pkt: &Disconnect{}},
	{name: "disconnect/5/with-will", v: V5, raw: h("e0 01 04"), pkt: &Disconnect{ReasonCode: DisconnectWithWill}},
	{name: "disconnect/5/shutting-down", v: V5, raw: h("e0 01 8b"), pkt: &Disconnect{ReasonCode: ServerShuttingDown}},
	{name: "disconnect/5/full", v: V5,
		raw: h("e0 1b 9c 19 11 00000000 1c 0004 'srv2' 1f 0003 'bye' 26 0001 'k' 0001 'v'"),
		pkt: &Disconnect{ReasonCode: UseAnotherServer, Properties: Properties{SessionExpiry: new(uint32(0)),
			ServerReference: "srv2", ReasonString: "bye", User: []UserProperty{{"k", "v"}}}}},
	{name: "disconnect/5/zero-property-length", v: V5, raw: h("e0 02 00 00"), pkt: &Disconnect{}, decodeOnly: true},
	{name: "disconnect/5/invalid-reason", v: V5, err: ProtocolError, raw: h("e0 01 10")},
	{name: "disconnect/5/assigned-client-id-not-allowed", spec: "MQTT-2.2.2.2", v: V5, err: ProtocolError,
		raw: h("e0 08 00 06 12 0003 'cid'")},
	{name: "disconnect/5/reserved-flags", spec: "MQTT-2.1.3-1", v: V5, err: MalformedPacket, raw: h("e2 00")},

	// ---- AUTH -----------------------------------------------------------
	{name: "auth/5/success-short-form", spec: "MQTT-3.15.2.1", v: V5, raw: h("f0 00"), pkt: &Auth{}},
	{name: "auth/5/full", v: V5,
		raw: h("f0 1c 18 1a 15 0004 'SCRA' 16 0002 0102 1f 0004 'more' 26 0001 'k' 0001 'v'"),
		pkt: &Auth{ReasonCode: ContinueAuthentication, Properties: Properties{AuthMethod: "SCRA", AuthData: []byte{1, 2},
			ReasonString: "more", User: []UserProperty{{"k", "v"}}}}},
	{name: "auth/5/empty-auth-data", v: V5, raw: h("f0 0c 19 0a 15 0004 'SCRA' 16 0000"),
		pkt: &Auth{ReasonCode: ReAuthenticate, Properties: Properties{AuthMethod: "SCRA", AuthData: []byte{}}}},
	{name: "auth/5/reason-no-properties", v: V5, raw: h("f0 02 18 00"), pkt: &Auth{ReasonCode: ContinueAuthentication}},
	{name: "auth/5/reason-without-property-length", v: V5, raw: h("f0 01 18"), decodeOnly: true,
		pkt: &Auth{ReasonCode: ContinueAuthentication}},
	{name: "auth/5/invalid-reason", v: V5, err: ProtocolError, raw: h("f0 02 04 00")},
	{name: "auth/5/session-expiry-not-allowed", spec: "MQTT-2.2.2.2", v: V5, err: ProtocolError, raw: h("f0 07 18 05 11 00000001")},
	{name: "auth/5/reserved-flags", spec: "MQTT-2.1.3-1", v: V5, err: MalformedPacket, raw: h("f1 00")},
	{name: "auth/311/reserved-type", v: V311, err: MalformedPacket, raw: h("f0 00")},
	{name: "auth/31/reserved-type", v: V31, err: MalformedPacket, raw: h("f0 00")},
	{name: "auth/311/encode", v: V311, err: ProtocolError, pkt: &Auth{}},

	// ---- Fixed header ---------------------------------------------------
	{name: "header/reserved-type-0", v: V311, err: MalformedPacket, raw: h("00 00")},
	{name: "header/reserved-type-0-v5", v: V5, err: MalformedPacket, raw: h("00 00")},
	{name: "header/remaining-length-five-bytes", spec: "MQTT-1.5.5-1", v: V311, err: MalformedPacket, raw: h("30 ff ff ff ff 01")},
	{name: "header/remaining-length-not-minimal", spec: "MQTT-1.5.5-1", v: V311, err: MalformedPacket, raw: h("c0 80 00")},
	{name: "header/remaining-length-not-minimal-3", spec: "MQTT-1.5.5-1", v: V5, err: MalformedPacket, raw: h("c0 80 80 00")},
	{name: "header/first-packet-not-connect", spec: "MQTT-3.1.0-1", v: 0, err: ProtocolError, raw: h("c0 00")},
	{name: "header/incomplete-length", v: V311, err: io.ErrUnexpectedEOF, raw: h("30 ff")},
	{name: "header/incomplete-body", v: V311, err: io.ErrUnexpectedEOF, raw: h("30 05 00 03 'a'")},
	{name: "header/only-first-byte", v: V5, err: io.ErrUnexpectedEOF, raw: h("30")},
	{name: "encode/unknown-version", v: 6, err: UnsupportedProtocolVersion, pkt: &Pingreq{}},
}

// encodeVersion is the version to encode p with: CONNECT carries its own.
func encodeVersion(p Packet, v Version) Version {
	if c, ok := p.(*Connect); ok && c.Version != 0 {
		return c.Version
	}
	return v
}

func TestVectorsDecode(t *testing.T) {
	for _, tc := range vectors {
		if tc.raw == nil || tc.encodeOnly {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			checkDecode(t, tc, tc.v)
			if tc.raw[0]>>4 == byte(CONNECT) {
				checkDecode(t, tc, 0) // CONNECT is decoded by its own version
			}
		})
	}
}

func checkDecode(t *testing.T, tc vector, v Version) {
	t.Helper()
	got, n, err := Decode(tc.raw, v)
	if tc.err != nil {
		if !errors.Is(err, tc.err) {
			t.Fatalf("Decode(%x, %s): err = %v, want %v", tc.raw, v, err, tc.err)
		}
		var rc ReasonCode
		if !errors.As(err, &rc) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("error %v wraps no ReasonCode", err)
		}
		if !reflect.DeepEqual(got, tc.pkt) && (got != nil || tc.pkt != nil) {
			t.Errorf("Decode returned %#v with the error, want %#v", got, tc.pkt)
		}
		return
	}
	if err != nil {
		t.Fatalf("Decode(%x, %s): %v", tc.raw, v, err)
	}
	if n != len(tc.raw) {
		t.Errorf("Decode used %d bytes, want %d", n, len(tc.raw))
	}
	if !reflect.DeepEqual(got, tc.pkt) {
		t.Errorf("Decode(%x, %s):\n got %#v\nwant %#v", tc.raw, v, got, tc.pkt)
	}
}

func TestVectorsEncode(t *testing.T) {
	for _, tc := range vectors {
		if tc.pkt == nil || tc.decodeOnly || (tc.raw != nil && tc.err != nil) {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			prefix := []byte("prefix")
			got, err := tc.pkt.AppendTo(prefix, encodeVersion(tc.pkt, tc.v))
			if tc.raw == nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("AppendTo: err = %v, want %v", err, tc.err)
				}
				if string(got) != "prefix" {
					t.Errorf("AppendTo changed dst on error: %x", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("AppendTo: %v", err)
			}
			if !bytes.Equal(got[len(prefix):], tc.raw) || string(got[:len(prefix)]) != "prefix" {
				t.Errorf("AppendTo:\n got %x\nwant %x", got[len(prefix):], tc.raw)
			}
			enc, err := Encode(tc.pkt, encodeVersion(tc.pkt, tc.v))
			if err != nil || !bytes.Equal(enc, tc.raw) {
				t.Errorf("Encode = %x, %v; want %x", enc, err, tc.raw)
			}
		})
	}
}

// TestVectorsRoundTrip decodes, encodes and decodes again every valid
// vector, in every version the vector decodes in.
func TestVectorsRoundTrip(t *testing.T) {
	for _, tc := range vectors {
		if tc.raw == nil {
			continue
		}
		for _, v := range []Version{V31, V311, V5} {
			t.Run(fmt.Sprintf("%s/as-%s", tc.name, v), func(t *testing.T) {
				checkRoundTrip(t, tc.raw, v)
			})
		}
	}
}

// checkRoundTrip is the property the fuzzer checks: whatever decodes
// re-encodes to something that decodes to the same packet, and encoding is
// stable.
func checkRoundTrip(t *testing.T, raw []byte, v Version) {
	t.Helper()
	p, n, err := Decode(raw, v)
	if err != nil {
		if p != nil {
			if _, ok := p.(*Connect); !ok || !errors.Is(err, UnsupportedProtocolVersion) {
				t.Fatalf("Decode returned %#v with error %v", p, err)
			}
		}
		if n < 0 || n > len(raw) {
			t.Fatalf("Decode used %d of %d bytes", n, len(raw))
		}
		return
	}
	if n <= 0 || n > len(raw) {
		t.Fatalf("Decode used %d of %d bytes", n, len(raw))
	}
	ev := encodeVersion(p, v)
	enc, err := p.AppendTo(nil, ev)
	if err != nil {
		t.Fatalf("AppendTo(%#v, %s) of decoded packet: %v", p, ev, err)
	}
	p2, n2, err := Decode(enc, v)
	if err != nil {
		t.Fatalf("Decode(re-encoded %x): %v (original %x)", enc, err, raw[:n])
	}
	if n2 != len(enc) {
		t.Fatalf("Decode(re-encoded) used %d of %d bytes", n2, len(enc))
	}
	if !reflect.DeepEqual(p, p2) {
		t.Fatalf("round trip changed packet:\n first %#v\nsecond %#v\n   raw %x\n   enc %x", p, p2, raw[:n], enc)
	}
	enc2, err := p2.AppendTo(nil, ev)
	if err != nil || !bytes.Equal(enc, enc2) {
		t.Fatalf("encoding not stable: %x then %x (%v)", enc, enc2, err)
	}
}

// TestVectorsReadPacket checks that ReadPacket agrees with Decode, through
// a buffered reader (io.ByteReader) and a one-byte-at-a-time reader.
func TestVectorsReadPacket(t *testing.T) {
	for _, tc := range vectors {
		if tc.raw == nil || tc.encodeOnly {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			readers := map[string]io.Reader{
				"bufio":   bufio.NewReader(bytes.NewReader(tc.raw)),
				"onebyte": iotest.OneByteReader(bytes.NewReader(tc.raw)),
			}
			for name, r := range readers {
				got, err := ReadPacket(r, tc.v, 0)
				// the reusing Reader must decode exactly the same, twice in a row
				for i := range 2 {
					in := tc.raw
					if err == nil {
						in = append(append([]byte(nil), tc.raw...), tc.raw...)
					} else if i > 0 {
						break
					}
					rd := NewReader(bufio.NewReader(bytes.NewReader(in)))
					rd.topic = "t" // a stale cached topic must not leak into the result
					for range i + 1 {
						rgot, rerr := rd.ReadPacket(tc.v, 0)
						if (rerr == nil) != (err == nil) || (err == nil && !reflect.DeepEqual(rgot, got)) {
							t.Errorf("%s: Reader.ReadPacket = %#v, %v; ReadPacket = %#v, %v", name, rgot, rerr, got, err)
						}
					}
				}
				if tc.err != nil {
					if !errors.Is(err, tc.err) {
						t.Errorf("%s: err = %v, want %v", name, err, tc.err)
					}
					continue
				}
				if err != nil {
					t.Errorf("%s: %v", name, err)
					continue
				}
				if !reflect.DeepEqual(got, tc.pkt) {
					t.Errorf("%s:\n got %#v\nwant %#v", name, got, tc.pkt)
				}
			}
		})
	}
}

// specVectors runs the decode and encode checks of every vector tagged
// with statement id and fails if there is none.
func specVectors(t *testing.T, id string) {
	t.Helper()
	found := 0
	for _, tc := range vectors {
		if tc.spec != id {
			continue
		}
		found++
		t.Run(tc.name, func(t *testing.T) {
			if tc.raw != nil && !tc.encodeOnly {
				checkDecode(t, tc, tc.v)
			}
			switch {
			case tc.raw == nil:
				if _, err := tc.pkt.AppendTo(nil, tc.v); !errors.Is(err, tc.err) {
					t.Errorf("AppendTo: err = %v, want %v", err, tc.err)
				}
			case tc.err == nil && !tc.decodeOnly:
				if enc, err := tc.pkt.AppendTo(nil, encodeVersion(tc.pkt, tc.v)); err != nil || !bytes.Equal(enc, tc.raw) {
					t.Errorf("AppendTo = %x, %v; want %x", enc, err, tc.raw)
				}
			}
		})
	}
	if found == 0 {
		t.Fatalf("no vectors for %s", id)
	}
}

func TestMQTT_1_5_4_1_WellFormedUTF8(t *testing.T)         { specVectors(t, "MQTT-1.5.4-1") }
func TestMQTT_1_5_4_2_NoNullCharacter(t *testing.T)        { specVectors(t, "MQTT-1.5.4-2") }
func TestMQTT_1_5_4_3_BOMNotStripped(t *testing.T)         { specVectors(t, "MQTT-1.5.4-3") }
func TestMQTT_1_5_5_1_MinimalVariableByteInt(t *testing.T) { specVectors(t, "MQTT-1.5.5-1") }
func TestMQTT_2_1_3_1_ReservedFlags(t *testing.T)          { specVectors(t, "MQTT-2.1.3-1") }
func TestMQTT_2_2_2_2_PropertyPlacement(t *testing.T)      { specVectors(t, "MQTT-2.2.2.2") }
func TestMQTT_2_3_1_1_NonZeroPacketID(t *testing.T)        { specVectors(t, "MQTT-2.3.1-1") }
func TestMQTT_3_1_0_1_FirstPacketConnect(t *testing.T)     { specVectors(t, "MQTT-3.1.0-1") }
func TestMQTT_3_1_2_1_ProtocolName(t *testing.T)           { specVectors(t, "MQTT-3.1.2-1") }
func TestMQTT_3_1_2_2_UnsupportedLevel(t *testing.T)       { specVectors(t, "MQTT-3.1.2-2") }
func TestMQTT_3_1_2_3_ConnectReservedFlag(t *testing.T)    { specVectors(t, "MQTT-3.1.2-3") }
func TestMQTT_3_1_2_13_WillQoSWithoutWill(t *testing.T)    { specVectors(t, "MQTT-3.1.2-13") }
func TestMQTT_3_1_2_14_WillQoS3(t *testing.T)              { specVectors(t, "MQTT-3.1.2-14") }
func TestMQTT_3_1_2_15_WillRetainWithoutWill(t *testing.T) {
	specVectors(t, "MQTT-3.1.2-15")
}
func TestMQTT_3_1_2_22_PasswordWithoutUsername(t *testing.T) { specVectors(t, "MQTT-3.1.2-22") }
func TestMQTT_3_2_2_1_ConnackReservedFlags(t *testing.T)     { specVectors(t, "MQTT-3.2.2-1") }
func TestMQTT_2_3_1_5_NoPacketIDAtQoS0(t *testing.T)         { specVectors(t, "MQTT-2.3.1-5") }
func TestMQTT_3_3_1_2_DupQoS0(t *testing.T)                  { specVectors(t, "MQTT-3.3.1-2") }
func TestMQTT_3_3_1_4_QoS3Malformed(t *testing.T)            { specVectors(t, "MQTT-3.3.1-4") }
func TestMQTT_3_3_2_8_TopicAliasZero(t *testing.T)           { specVectors(t, "MQTT-3.3.2-8") }
func TestMQTT_3_6_1_1_PubrelFlags(t *testing.T)              { specVectors(t, "MQTT-3.6.1-1") }
func TestMQTT_3_8_1_1_SubscribeFlags(t *testing.T)           { specVectors(t, "MQTT-3.8.1-1") }
func TestMQTT_3_8_3_3_SubscribeNeedsFilter(t *testing.T)     { specVectors(t, "MQTT-3.8.3-3") }
func TestMQTT_3_8_3_4_SubscribeReservedBits311(t *testing.T) { specVectors(t, "MQTT-3.8.3-4") }
func TestMQTT_3_8_3_5_SubscribeReservedBits5(t *testing.T)   { specVectors(t, "MQTT-3.8.3-5") }
func TestMQTT_3_9_3_2_SubackReservedCodes(t *testing.T)      { specVectors(t, "MQTT-3.9.3-2") }
func TestMQTT_3_10_1_1_UnsubscribeFlags(t *testing.T)        { specVectors(t, "MQTT-3.10.1-1") }
func TestMQTT_3_10_3_2_UnsubscribeNeedsFilter(t *testing.T)  { specVectors(t, "MQTT-3.10.3-2") }
func TestMQTT_3_4_2_1_PubackShortForm(t *testing.T)          { specVectors(t, "MQTT-3.4.2.1") }
func TestMQTT_3_14_2_1_DisconnectShortForm(t *testing.T)     { specVectors(t, "MQTT-3.14.2.1") }
func TestMQTT_3_15_2_1_AuthShortForm(t *testing.T)           { specVectors(t, "MQTT-3.15.2.1") }

// TestMQTT_1_5_5_VariableByteInteger checks the boundaries of table 1.5.
func TestMQTT_1_5_5_VariableByteInteger(t *testing.T) {
	for _, tc := range []struct {
		n   int
		enc string
	}{
		{0, "00"}, {127, "7f"}, {128, "8001"}, {16383, "ff7f"}, {16384, "808001"},
		{2097151, "ffff7f"}, {2097152, "80808001"}, {268435455, "ffffff7f"},
	} {
		enc := appendVarint(nil, tc.n)
		if hex.EncodeToString(enc) != tc.enc || varintLen(tc.n) != len(enc) {
			t.Errorf("appendVarint(%d) = %x (len %d), want %s", tc.n, enc, varintLen(tc.n), tc.enc)
		}
		d := decoder{b: enc}
		if got := d.varint(); got != tc.n || d.err != nil || len(d.b) != 0 {
			t.Errorf("varint(%s) = %d, %v", tc.enc, got, d.err)
		}
	}
}

// TestMQTT_2_2_3_RemainingLengthLimit checks that an encoder refuses a
// packet longer than a four-byte remaining length can describe.
func TestMQTT_2_2_3_RemainingLengthLimit(t *testing.T) {
	if _, err := appendHeader(nil, 0x30, MaxRemainingLength+1); !errors.Is(err, PacketTooLarge) {
		t.Fatalf("appendHeader: err = %v, want PacketTooLarge", err)
	}
	// The payload is never touched, so the operating system never backs it.
	p := &Publish{Topic: "a/b", Payload: make([]byte, MaxRemainingLength-4)}
	if _, err := p.AppendTo(nil, V311); !errors.Is(err, PacketTooLarge) {
		t.Fatalf("AppendTo: err = %v, want PacketTooLarge", err)
	}
}

// propertySamples holds one valid encoding of every property, with the
// Properties value it decodes to.
var propertySamples = []struct {
	id  byte
	raw []byte
	set func(*Properties)
}{
	{propPayloadFormat, h("01 01"), func(p *Properties) { p.PayloadFormat = new(byte(1)) }},
	{propMessageExpiry, h("02 00000e10"), func(p *Properties) { p.MessageExpiry = new(uint32(3600)) }},
	{propContentType, h("03 0001 't'"), func(p *Properties) { p.ContentType = "t" }},
	{propResponseTopic, h("08 0001 'r'"), func(p *Properties) { p.ResponseTopic = "r" }},
	{propCorrelationData, h("09 0001 ff"), func(p *Properties) { p.CorrelationData = []byte{0xff} }},
	{propSubscriptionID, h("0b 01"), func(p *Properties) { p.SubscriptionIDs = []int{1} }},
	{propSessionExpiry, h("11 ffffffff"), func(p *Properties) { p.SessionExpiry = new(uint32(0xffffffff)) }},
	{propAssignedClientID, h("12 0001 'c'"), func(p *Properties) { p.AssignedClientID = "c" }},
	{propServerKeepAlive, h("13 0005"), func(p *Properties) { p.ServerKeepAlive = new(uint16(5)) }},
	{propAuthMethod, h("15 0001 'm'"), func(p *Properties) { p.AuthMethod = "m" }},
	{propAuthData, h("16 0001 01"), func(p *Properties) { p.AuthData = []byte{1} }},
	{propRequestProblemInfo, h("17 01"), func(p *Properties) { p.RequestProblemInfo = new(byte(1)) }},
	{propWillDelay, h("18 00000001"), func(p *Properties) { p.WillDelay = new(uint32(1)) }},
	{propRequestResponseInfo, h("19 00"), func(p *Properties) { p.RequestResponseInfo = new(byte(0)) }},
	{propResponseInfo, h("1a 0001 'i'"), func(p *Properties) { p.ResponseInfo = "i" }},
	{propServerReference, h("1c 0001 's'"), func(p *Properties) { p.ServerReference = "s" }},
	{propReasonString, h("1f 0001 'r'"), func(p *Properties) { p.ReasonString = "r" }},
	{propReceiveMaximum, h("21 ffff"), func(p *Properties) { p.ReceiveMaximum = new(uint16(0xffff)) }},
	{propTopicAliasMaximum, h("22 0000"), func(p *Properties) { p.TopicAliasMaximum = new(uint16(0)) }},
	{propTopicAlias, h("23 0001"), func(p *Properties) { p.TopicAlias = new(uint16(1)) }},
	{propMaximumQoS, h("24 00"), func(p *Properties) { p.MaximumQoS = new(byte(0)) }},
	{propRetainAvailable, h("25 01"), func(p *Properties) { p.RetainAvailable = new(byte(1)) }},
	{propUser, h("26 0001 'k' 0000"), func(p *Properties) { p.User = []UserProperty{{Key: "k"}} }},
	{propMaximumPacketSize, h("27 00000001"), func(p *Properties) { p.MaximumPacketSize = new(uint32(1)) }},
	{propWildcardSubAvailable, h("28 00"), func(p *Properties) { p.WildcardSubAvailable = new(byte(0)) }},
	{propSubIDAvailable, h("29 01"), func(p *Properties) { p.SubIDAvailable = new(byte(1)) }},
	{propSharedSubAvailable, h("2a 00"), func(p *Properties) { p.SharedSubAvailable = new(byte(0)) }},
}

// propertyCarriers builds, for each place properties can appear, an MQTT 5
// packet around the given property bytes, and returns the packet that
// decodes from it with props in place.
var propertyCarriers = []struct {
	ctx   propCtx
	build func(props []byte) []byte
	pkt   func(p Properties) Packet
}{
	{inConnect,
		func(pr []byte) []byte { return cat(h("00 04 'MQTT' 05 02 00 00"), vbi(pr), h("00 01 'c'")) },
		func(p Properties) Packet {
			return &Connect{ProtocolName: "MQTT", Version: V5, CleanStart: true, ClientID: "c", Properties: p}
		}},
	{inWill,
		func(pr []byte) []byte {
			return cat(h("00 04 'MQTT' 05 06 00 00 00 00 01 'c'"), vbi(pr), h("00 01 't' 00 00"))
		},
		func(p Properties) Packet {
			return &Connect{ProtocolName: "MQTT", Version: V5, CleanStart: true, ClientID: "c",
				Will: &Will{Topic: "t", Properties: p}}
		}},
	{inConnack,
		func(pr []byte) []byte { return cat(h("00 00"), vbi(pr)) },
		func(p Properties) Packet { return &Connack{Properties: p} }},
	{inPublish,
		func(pr []byte) []byte { return cat(h("00 01 't'"), vbi(pr), h("'x'")) },
		func(p Properties) Packet { return &Publish{Topic: "t", Payload: []byte("x"), Properties: p} }},
	{inPuback,
		func(pr []byte) []byte { return cat(h("00 01 80"), vbi(pr)) },
		func(p Properties) Packet { return &Puback{PacketID: 1, ReasonCode: UnspecifiedError, Properties: p} }},
	{inSubscribe,
		func(pr []byte) []byte { return cat(h("00 01"), vbi(pr), h("00 01 't' 00")) },
		func(p Properties) Packet {
			return &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "t"}}, Properties: p}
		}},
	{inSuback,
		func(pr []byte) []byte { return cat(h("00 01"), vbi(pr), h("01")) },
		func(p Properties) Packet {
			return &Suback{PacketID: 1, ReasonCodes: []ReasonCode{GrantedQoS1}, Properties: p}
		}},
	{inUnsubscribe,
		func(pr []byte) []byte { return cat(h("00 01"), vbi(pr), h("00 01 't'")) },
		func(p Properties) Packet { return &Unsubscribe{PacketID: 1, Filters: []string{"t"}, Properties: p} }},
	{inUnsuback,
		func(pr []byte) []byte { return cat(h("00 01"), vbi(pr), h("11")) },
		func(p Properties) Packet {
			return &Unsuback{PacketID: 1, ReasonCodes: []ReasonCode{NoSubscriptionExisted}, Properties: p}
		}},
	{inDisconnect,
		func(pr []byte) []byte { return cat(h("80"), vbi(pr)) },
		func(p Properties) Packet { return &Disconnect{ReasonCode: UnspecifiedError, Properties: p} }},
	{inAuth,
		func(pr []byte) []byte { return cat(h("18"), vbi(pr)) },
		func(p Properties) Packet { return &Auth{ReasonCode: ContinueAuthentication, Properties: p} }},
}

// vbi prefixes b with its length as a variable byte integer.
func vbi(b []byte) []byte { return append(appendVarint(nil, len(b)), b...) }

// frame adds the fixed header for the packet p to body.
func frame(p Packet, body []byte) []byte {
	first := byte(p.Type()) << 4
	switch p.Type() {
	case PUBREL, SUBSCRIBE, UNSUBSCRIBE:
		first |= 2
	}
	return append(appendVarint([]byte{first}, len(body)), body...)
}

// TestMQTT_2_2_2_2_PropertyTable checks every property in every packet
// against table 2.4: allowed ones decode and re-encode to the same bytes,
// others are a Protocol Error on both sides; a second copy of any property
// but User Property (and Subscription Identifier in PUBLISH) is a Protocol
// Error.
func TestMQTT_2_2_2_2_PropertyTable(t *testing.T) {
	for _, c := range propertyCarriers {
		for _, s := range propertySamples {
			t.Run(fmt.Sprintf("%s/%s", c.ctx, propNames[s.id]), func(t *testing.T) {
				var want Properties
				s.set(&want)
				sraw := s.raw
				if c.ctx == inConnect && s.id == propAuthData {
					// Authentication Data needs a method in CONNECT (3.1.2.11.10).
					want.AuthMethod = "m"
					sraw = cat(h("15 0001 'm'"), sraw)
				}
				pkt := c.pkt(want)
				raw := frame(pkt, c.build(sraw))
				allowed := propAllowed[s.id]&c.ctx != 0

				got, _, err := Decode(raw, V5)
				enc, encErr := pkt.AppendTo(nil, V5)
				if !allowed {
					if !errors.Is(err, ProtocolError) {
						t.Errorf("Decode(%x): err = %v, want ProtocolError", raw, err)
					}
					if !errors.Is(encErr, ProtocolError) {
						t.Errorf("AppendTo: err = %v, want ProtocolError", encErr)
					}
					return
				}
				if err != nil {
					t.Fatalf("Decode(%x): %v", raw, err)
				}
				if !reflect.DeepEqual(got, pkt) {
					t.Errorf("Decode(%x):\n got %#v\nwant %#v", raw, got, pkt)
				}
				if encErr != nil || !bytes.Equal(enc, raw) {
					t.Errorf("AppendTo = %x, %v; want %x", enc, encErr, raw)
				}

				twice := frame(pkt, c.build(cat(sraw, sraw)))
				got, _, err = Decode(twice, V5)
				repeatable := s.id == propUser || (s.id == propSubscriptionID && c.ctx == inPublish)
				if repeatable {
					if err != nil {
						t.Errorf("Decode(%x) with property twice: %v", twice, err)
					} else {
						checkRoundTrip(t, twice, V5)
					}
				} else if !errors.Is(err, ProtocolError) {
					t.Errorf("Decode(%x) with property twice: err = %v, want ProtocolError", twice, err)
				}
			})
		}
	}
}

// TestAckVariants covers every PUBACK-family packet with every reason code
// the spec allows, in short and long form.
func TestAckVariants(t *testing.T) {
	mk := map[Type]func(rc ReasonCode, p Properties) Packet{
		PUBACK:  func(rc ReasonCode, p Properties) Packet { return &Puback{PacketID: 9, ReasonCode: rc, Properties: p} },
		PUBREC:  func(rc ReasonCode, p Properties) Packet { return &Pubrec{PacketID: 9, ReasonCode: rc, Properties: p} },
		PUBREL:  func(rc ReasonCode, p Properties) Packet { return &Pubrel{PacketID: 9, ReasonCode: rc, Properties: p} },
		PUBCOMP: func(rc ReasonCode, p Properties) Packet { return &Pubcomp{PacketID: 9, ReasonCode: rc, Properties: p} },
	}
	for typ, f := range mk {
		for code := range 256 {
			rc := ReasonCode(code)
			raw := frame(f(0, Properties{}), []byte{0, 9, byte(rc)})
			_, _, err := Decode(raw, V5)
			if !validReason(typ, rc) {
				if !errors.Is(err, ProtocolError) {
					t.Errorf("%s reason 0x%02X: err = %v, want ProtocolError", typ, code, err)
				}
				continue
			}
			for _, p := range []Properties{{}, {ReasonString: "r"}} {
				pkt := f(rc, p)
				enc, err := pkt.AppendTo(nil, V5)
				if err != nil {
					t.Fatalf("%s: %v", typ, err)
				}
				got, _, err := Decode(enc, V5)
				if err != nil || !reflect.DeepEqual(got, pkt) {
					t.Errorf("%s %x: got %#v, %v; want %#v", typ, enc, got, err, pkt)
				}
				if rc == Success && p.ReasonString == "" && len(enc) != 4 {
					t.Errorf("%s success without properties encoded as %x, want 4 bytes", typ, enc)
				}
			}
		}
	}
}

func TestReadPacketTooLarge(t *testing.T) {
	// A 2 MiB PUBLISH header followed by a reader that must never be
	// touched: the body is not read.
	hdr := h("30 80 80 80 01")
	r := io.MultiReader(bytes.NewReader(hdr), iotest.ErrReader(errors.New("body was read")))
	_, err := ReadPacket(r, V311, 1<<20)
	if !errors.Is(err, PacketTooLarge) {
		t.Fatalf("err = %v, want PacketTooLarge", err)
	}

	// maxSize counts the fixed header: a 9-byte packet fits in 9, not 8.
	raw := h("30 07 00 03 'a/b' 'hi'")
	if _, err := ReadPacket(bytes.NewReader(raw), V311, 9); err != nil {
		t.Errorf("9-byte packet with maxSize 9: %v", err)
	}
	if _, err := ReadPacket(bytes.NewReader(raw), V311, 8); !errors.Is(err, PacketTooLarge) {
		t.Errorf("9-byte packet with maxSize 8: err = %v, want PacketTooLarge", err)
	}
}

func TestReadPacketStream(t *testing.T) {
	var stream []byte
	var want []Packet
	for _, tc := range vectors {
		if tc.v == V5 && tc.err == nil && tc.raw != nil && !tc.encodeOnly && tc.raw[0]>>4 != byte(CONNECT) {
			stream = append(stream, tc.raw...)
			want = append(want, tc.pkt)
		}
	}
	br := bufio.NewReaderSize(bytes.NewReader(stream), 16)
	for i, w := range want {
		got, err := ReadPacket(br, V5, 0)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, w) {
			t.Fatalf("packet %d:\n got %#v\nwant %#v", i, got, w)
		}
	}
	if _, err := ReadPacket(br, V5, 0); err != io.EOF {
		t.Fatalf("at end of stream: err = %v, want io.EOF", err)
	}
}

func TestReadPacketTruncated(t *testing.T) {
	raw := h("32 09 00 03 'a/b' 00 01 'hi'")
	for i := 1; i < len(raw); i++ {
		_, err := ReadPacket(bytes.NewReader(raw[:i]), V311, 0)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%d of %d bytes: err = %v, want io.ErrUnexpectedEOF", i, len(raw), err)
		}
		_, n, err := Decode(raw[:i], V311)
		if !errors.Is(err, io.ErrUnexpectedEOF) || n != 0 {
			t.Errorf("Decode %d of %d bytes: n = %d, err = %v", i, len(raw), n, err)
		}
	}
}

func TestReadPacketLargeBody(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB, past the chunked-read threshold
	p := &Publish{QoS: 1, PacketID: 5, Topic: "big", Payload: payload}
	raw, err := Encode(p, V5)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadPacket(iotest.HalfReader(bytes.NewReader(raw)), V5, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, p) {
		t.Fatal("large PUBLISH did not round trip")
	}
	// A peer announcing a large body and then stopping must not make us
	// allocate it all.
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = ReadPacket(bytes.NewReader(h("30 ff ff ff 7f 00 01 'a'")), V311, 0)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("a 256 MiB header with 3 body bytes allocated %d bytes", n)
	}
}

func TestDecodeConsumesOnePacket(t *testing.T) {
	buf := h("c0 00 d0 00 e0 00")
	for _, want := range []Packet{&Pingreq{}, &Pingresp{}, &Disconnect{}} {
		p, n, err := Decode(buf, V311)
		if err != nil || n != 2 || !reflect.DeepEqual(p, want) {
			t.Fatalf("Decode(%x) = %#v, %d, %v", buf, p, n, err)
		}
		buf = buf[n:]
	}
}

// TestDecodedPayloadCapacity checks that a decoded []byte cannot be grown
// over the bytes that follow it.
func TestDecodedPayloadCapacity(t *testing.T) {
	raw := h("10 1b 00 04 'MQTT' 04 c6 00 3c 00 02 'c1' 00 01 't' 00 01 'p' 00 01 'u' 00 02 'pw'")
	p, _, err := Decode(raw, 0)
	if err != nil {
		t.Fatal(err)
	}
	c := p.(*Connect)
	if cap(c.Will.Payload) != 1 || cap(c.Password) != 2 {
		t.Errorf("cap(will payload) = %d, cap(password) = %d", cap(c.Will.Payload), cap(c.Password))
	}
}

func TestEncodePublishZeroAllocs(t *testing.T) {
	for _, v := range []Version{V311, V5} {
		p := &Publish{QoS: 1, PacketID: 1, Topic: "sensors/room1/temperature", Payload: make([]byte, 64)}
		if v == V5 {
			p.Properties.User = []UserProperty{{"k", "v"}}
			p.Properties.MessageExpiry = new(uint32(10))
		}
		buf := make([]byte, 0, 256)
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := p.AppendTo(buf[:0], v); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: AppendTo allocated %.0f times", v, allocs)
		}
	}
}

func TestVersionAndTypeStrings(t *testing.T) {
	if V311.String() != "3.1.1" || Version(9).String() != "unknown(9)" || PUBLISH.String() != "PUBLISH" || Type(16).String() != "Type(16)" {
		t.Error("String methods changed")
	}
	if inConnect.String() != "CONNECT" || (inPublish|inWill).String() != "PUBLISH|will properties" {
		t.Errorf("propCtx.String = %q", (inPublish | inWill).String())
	}
}
