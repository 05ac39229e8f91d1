package packet

import "fmt"

// Version is the protocol level carried in CONNECT.
type Version byte

// Protocol levels.
const (
	V31  Version = 3 // MQTT 3.1 ("MQIsdp")
	V311 Version = 4 // MQTT 3.1.1
	V5   Version = 5 // MQTT 5.0
)

// String returns the version as users write it.
func (v Version) String() string {
	switch v {
	case V31:
		return "3.1"
	case V311:
		return "3.1.1"
	case V5:
		return "5.0"
	}
	return fmt.Sprintf("unknown(%d)", byte(v))
}

// Type is the control packet type, the high nibble of the fixed header.
type Type byte

// Control packet types [MQTT-2.1.2].
const (
	CONNECT     Type = 1
	CONNACK     Type = 2
	PUBLISH     Type = 3
	PUBACK      Type = 4
	PUBREC      Type = 5
	PUBREL      Type = 6
	PUBCOMP     Type = 7
	SUBSCRIBE   Type = 8
	SUBACK      Type = 9
	UNSUBSCRIBE Type = 10
	UNSUBACK    Type = 11
	PINGREQ     Type = 12
	PINGRESP    Type = 13
	DISCONNECT  Type = 14
	AUTH        Type = 15
)

var typeNames = [...]string{"RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP",
	"SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH"}

// String returns the packet type's name.
func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", byte(t))
}

// Packet is one MQTT control packet.
//
// AppendTo appends the packet's full encoding (fixed header included) for
// protocol version v to dst. Fields that version v cannot carry (properties
// and reason codes before 5.0) are left out; a packet that cannot be
// expressed in v at all is an error.
type Packet interface {
	Type() Type
	AppendTo(dst []byte, v Version) ([]byte, error)
}

// UserProperty is one MQTT 5 user property (a UTF-8 string pair). Order and
// duplicates are preserved [MQTT-3.3.2-18].
type UserProperty struct {
	Key, Value string
}

// Properties holds every MQTT 5 property. A nil pointer, a zero-length
// string or a nil slice means the property is absent. Which properties a
// packet may carry is checked by Decode; AppendTo writes what is set and
// reports a property that the packet type may not carry as an error.
type Properties struct {
	PayloadFormat        *byte   // 0x01
	MessageExpiry        *uint32 // 0x02, seconds
	ContentType          string  // 0x03
	ResponseTopic        string  // 0x08
	CorrelationData      []byte  // 0x09
	SubscriptionIDs      []int   // 0x0B, variable byte integers, may repeat in PUBLISH
	SessionExpiry        *uint32 // 0x11, seconds
	AssignedClientID     string  // 0x12
	ServerKeepAlive      *uint16 // 0x13, seconds
	AuthMethod           string  // 0x15
	AuthData             []byte  // 0x16
	RequestProblemInfo   *byte   // 0x17
	WillDelay            *uint32 // 0x18, seconds
	RequestResponseInfo  *byte   // 0x19
	ResponseInfo         string  // 0x1A
	ServerReference      string  // 0x1C
	ReasonString         string  // 0x1F
	ReceiveMaximum       *uint16 // 0x21
	TopicAliasMaximum    *uint16 // 0x22
	TopicAlias           *uint16 // 0x23
	MaximumQoS           *byte   // 0x24
	RetainAvailable      *byte   // 0x25
	User                 []UserProperty
	MaximumPacketSize    *uint32 // 0x27
	WildcardSubAvailable *byte   // 0x28
	SubIDAvailable       *byte   // 0x29
	SharedSubAvailable   *byte   // 0x2A
}

// Will is the will message carried in CONNECT.
type Will struct {
	Topic      string
	Payload    []byte
	QoS        byte
	Retain     bool
	Properties Properties // will properties (MQTT 5)
}

// Connect is the CONNECT packet. ProtocolName is "MQTT" (3.1.1, 5.0) or
// "MQIsdp" (3.1); Version is the protocol level.
type Connect struct {
	ProtocolName string
	Version      Version
	CleanStart   bool   // clean session in 3.x
	KeepAlive    uint16 // seconds
	ClientID     string
	Will         *Will
	UsernameFlag bool
	Username     string
	PasswordFlag bool
	Password     []byte
	Properties   Properties
}

// Connack is the CONNACK packet. ReasonCode is always an MQTT 5 reason code;
// for 3.x it is mapped to and from the connect return codes 0-5.
type Connack struct {
	SessionPresent bool
	ReasonCode     ReasonCode
	Properties     Properties
}

// Publish is the PUBLISH packet. After Decode, Payload aliases the packet's
// own body buffer, which is freshly allocated per packet and never reused.
type Publish struct {
	Dup        bool
	QoS        byte
	Retain     bool
	Topic      string
	PacketID   uint16 // only for QoS 1 and 2
	Payload    []byte
	Properties Properties
}

// Puback acknowledges a QoS 1 PUBLISH.
type Puback struct {
	PacketID   uint16
	ReasonCode ReasonCode
	Properties Properties
}

// Pubrec is the first answer to a QoS 2 PUBLISH.
type Pubrec struct {
	PacketID   uint16
	ReasonCode ReasonCode
	Properties Properties
}

// Pubrel releases a QoS 2 message.
type Pubrel struct {
	PacketID   uint16
	ReasonCode ReasonCode
	Properties Properties
}

// Pubcomp completes a QoS 2 flow.
type Pubcomp struct {
	PacketID   uint16
	ReasonCode ReasonCode
	Properties Properties
}

// Subscription is one topic filter and its options in SUBSCRIBE.
type Subscription struct {
	Filter            string
	QoS               byte
	NoLocal           bool // MQTT 5
	RetainAsPublished bool // MQTT 5
	RetainHandling    byte // MQTT 5: 0, 1 or 2
}

// Subscribe is the SUBSCRIBE packet.
type Subscribe struct {
	PacketID      uint16
	Subscriptions []Subscription
	Properties    Properties
}

// Suback is the SUBACK packet: one reason code per subscription, in order.
// For 3.x, codes >= 0x80 are written as 0x80 (failure).
type Suback struct {
	PacketID    uint16
	ReasonCodes []ReasonCode
	Properties  Properties
}

// Unsubscribe is the UNSUBSCRIBE packet.
type Unsubscribe struct {
	PacketID   uint16
	Filters    []string
	Properties Properties
}

// Unsuback is the UNSUBACK packet. ReasonCodes are written only in MQTT 5.
type Unsuback struct {
	PacketID    uint16
	ReasonCodes []ReasonCode
	Properties  Properties
}

// Pingreq is the PINGREQ packet.
type Pingreq struct{}

// Pingresp is the PINGRESP packet.
type Pingresp struct{}

// Disconnect is the DISCONNECT packet; reason and properties are MQTT 5 only.
type Disconnect struct {
	ReasonCode ReasonCode
	Properties Properties
}

// Auth is the MQTT 5 AUTH packet.
type Auth struct {
	ReasonCode ReasonCode
	Properties Properties
}

// Type implementations.
func (*Connect) Type() Type     { return CONNECT }
func (*Connack) Type() Type     { return CONNACK }
func (*Publish) Type() Type     { return PUBLISH }
func (*Puback) Type() Type      { return PUBACK }
func (*Pubrec) Type() Type      { return PUBREC }
func (*Pubrel) Type() Type      { return PUBREL }
func (*Pubcomp) Type() Type     { return PUBCOMP }
func (*Subscribe) Type() Type   { return SUBSCRIBE }
func (*Suback) Type() Type      { return SUBACK }
func (*Unsubscribe) Type() Type { return UNSUBSCRIBE }
func (*Unsuback) Type() Type    { return UNSUBACK }
func (*Pingreq) Type() Type     { return PINGREQ }
func (*Pingresp) Type() Type    { return PINGRESP }
func (*Disconnect) Type() Type  { return DISCONNECT }
func (*Auth) Type() Type        { return AUTH }
