package packet

import (
	"bufio"
	"bytes"
	"testing"
)

// benchPackets are the packets encoded and decoded by the benchmarks.
func benchPackets() []struct {
	name string
	v    Version
	p    Packet
} {
	payload := bytes.Repeat([]byte{'p'}, 64)
	topic := "sensors/building-1/floor-2/room-3/temperature"
	return []struct {
		name string
		v    Version
		p    Packet
	}{
		{"Publish/QoS0/311", V311, &Publish{Topic: topic, Payload: payload}},
		{"Publish/QoS1/311", V311, &Publish{QoS: 1, PacketID: 42, Topic: topic, Payload: payload}},
		{"Publish/QoS0/5", V5, &Publish{Topic: topic, Payload: payload}},
		{"Publish/QoS1/5", V5, &Publish{QoS: 1, PacketID: 42, Topic: topic, Payload: payload}},
		{"Publish/QoS1/5/props", V5, &Publish{QoS: 1, PacketID: 42, Topic: topic, Payload: payload,
			Properties: Properties{MessageExpiry: new(uint32(60)), SubscriptionIDs: []int{7}, User: []UserProperty{{"trace", "abc"}}}}},
		{"Connect/311", V311, &Connect{CleanStart: true, KeepAlive: 60, ClientID: "client-1", UsernameFlag: true,
			Username: "user", PasswordFlag: true, Password: []byte("secret")}},
		{"Connect/5", V5, &Connect{CleanStart: true, KeepAlive: 60, ClientID: "client-1",
			Properties: Properties{SessionExpiry: new(uint32(3600)), ReceiveMaximum: new(uint16(100))}}},
		{"Connack/311", V311, &Connack{SessionPresent: true}},
		{"Connack/5", V5, &Connack{Properties: Properties{TopicAliasMaximum: new(uint16(10)), MaximumQoS: new(byte(1))}}},
		{"Puback/311", V311, &Puback{PacketID: 42}},
		{"Puback/5", V5, &Puback{PacketID: 42}},
		{"Pubrec/5", V5, &Pubrec{PacketID: 42}},
		{"Pubrel/5", V5, &Pubrel{PacketID: 42}},
		{"Pubcomp/5", V5, &Pubcomp{PacketID: 42}},
		{"Subscribe/311", V311, &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "a/+/c", QoS: 1}}}},
		{"Subscribe/5", V5, &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "a/+/c", QoS: 1, NoLocal: true}}}},
		{"Suback/5", V5, &Suback{PacketID: 1, ReasonCodes: []ReasonCode{GrantedQoS1}}},
		{"Unsubscribe/5", V5, &Unsubscribe{PacketID: 1, Filters: []string{"a/+/c"}}},
		{"Unsuback/5", V5, &Unsuback{PacketID: 1, ReasonCodes: []ReasonCode{Success}}},
		{"Pingreq/311", V311, &Pingreq{}},
		{"Disconnect/5", V5, &Disconnect{ReasonCode: ServerShuttingDown}},
		{"Auth/5", V5, &Auth{ReasonCode: ContinueAuthentication, Properties: Properties{AuthMethod: "SCRAM-SHA-1", AuthData: []byte("abc")}}},
	}
}

func BenchmarkEncode(b *testing.B) {
	for _, bp := range benchPackets() {
		b.Run(bp.name, func(b *testing.B) {
			buf := make([]byte, 0, 512)
			b.ReportAllocs()
			for b.Loop() {
				out, err := bp.p.AppendTo(buf[:0], bp.v)
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(len(out)))
			}
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, bp := range benchPackets() {
		raw, err := Encode(bp.p, bp.v)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bp.name, func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := Decode(raw, bp.v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReadPacket reads from a buffered stream, as the broker does.
func BenchmarkReadPacket(b *testing.B) {
	for _, bp := range benchPackets()[:4] {
		raw, err := Encode(bp.p, bp.v)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bp.name, func(b *testing.B) {
			stream := bytes.Repeat(raw, 1024)
			r := bytes.NewReader(stream)
			br := bufio.NewReaderSize(r, 64<<10)
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if i == 1024 {
					r.Reset(stream)
					br.Reset(r)
					i = 0
				}
				if _, err := ReadPacket(br, bp.v, 0); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
