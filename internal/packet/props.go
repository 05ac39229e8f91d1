package packet

import (
	"fmt"
	"strings"
)

// MQTT 5 property identifiers [MQTT-2.2.2.2].
const (
	propPayloadFormat        byte = 0x01
	propMessageExpiry        byte = 0x02
	propContentType          byte = 0x03
	propResponseTopic        byte = 0x08
	propCorrelationData      byte = 0x09
	propSubscriptionID       byte = 0x0B
	propSessionExpiry        byte = 0x11
	propAssignedClientID     byte = 0x12
	propServerKeepAlive      byte = 0x13
	propAuthMethod           byte = 0x15
	propAuthData             byte = 0x16
	propRequestProblemInfo   byte = 0x17
	propWillDelay            byte = 0x18
	propRequestResponseInfo  byte = 0x19
	propResponseInfo         byte = 0x1A
	propServerReference      byte = 0x1C
	propReasonString         byte = 0x1F
	propReceiveMaximum       byte = 0x21
	propTopicAliasMaximum    byte = 0x22
	propTopicAlias           byte = 0x23
	propMaximumQoS           byte = 0x24
	propRetainAvailable      byte = 0x25
	propUser                 byte = 0x26
	propMaximumPacketSize    byte = 0x27
	propWildcardSubAvailable byte = 0x28
	propSubIDAvailable       byte = 0x29
	propSharedSubAvailable   byte = 0x2A
)

// propCtx is the set of places a property may appear: one bit per packet
// kind, plus the will properties of CONNECT.
type propCtx uint16

const (
	inConnect propCtx = 1 << iota
	inConnack
	inPublish
	inPuback // PUBACK, PUBREC, PUBREL and PUBCOMP
	inSubscribe
	inSuback
	inUnsubscribe
	inUnsuback
	inDisconnect
	inAuth
	inWill

	inAll = inConnect | inConnack | inPublish | inPuback | inSubscribe | inSuback |
		inUnsubscribe | inUnsuback | inDisconnect | inAuth | inWill
)

var ctxNames = [...]string{"CONNECT", "CONNACK", "PUBLISH", "PUBACK/PUBREC/PUBREL/PUBCOMP", "SUBSCRIBE",
	"SUBACK", "UNSUBSCRIBE", "UNSUBACK", "DISCONNECT", "AUTH", "will properties"}

func (c propCtx) String() string {
	var parts []string
	for i, name := range ctxNames {
		if c&(1<<i) != 0 {
			parts = append(parts, name)
		}
	}
	return strings.Join(parts, "|")
}

// propAllowed is table 2.4 of MQTT 5: where each property may appear. A
// zero entry is an unknown identifier.
var propAllowed = [...]propCtx{
	propPayloadFormat:        inPublish | inWill,
	propMessageExpiry:        inPublish | inWill,
	propContentType:          inPublish | inWill,
	propResponseTopic:        inPublish | inWill,
	propCorrelationData:      inPublish | inWill,
	propSubscriptionID:       inPublish | inSubscribe,
	propSessionExpiry:        inConnect | inConnack | inDisconnect,
	propAssignedClientID:     inConnack,
	propServerKeepAlive:      inConnack,
	propAuthMethod:           inConnect | inConnack | inAuth,
	propAuthData:             inConnect | inConnack | inAuth,
	propRequestProblemInfo:   inConnect,
	propWillDelay:            inWill,
	propRequestResponseInfo:  inConnect,
	propResponseInfo:         inConnack,
	propServerReference:      inConnack | inDisconnect,
	propReasonString:         inConnack | inPuback | inSuback | inUnsuback | inDisconnect | inAuth,
	propReceiveMaximum:       inConnect | inConnack,
	propTopicAliasMaximum:    inConnect | inConnack,
	propTopicAlias:           inPublish,
	propMaximumQoS:           inConnack,
	propRetainAvailable:      inConnack,
	propUser:                 inAll,
	propMaximumPacketSize:    inConnect | inConnack,
	propWildcardSubAvailable: inConnack,
	propSubIDAvailable:       inConnack,
	propSharedSubAvailable:   inConnack,
}

var propNames = [len(propAllowed)]string{
	propPayloadFormat:        "Payload Format Indicator",
	propMessageExpiry:        "Message Expiry Interval",
	propContentType:          "Content Type",
	propResponseTopic:        "Response Topic",
	propCorrelationData:      "Correlation Data",
	propSubscriptionID:       "Subscription Identifier",
	propSessionExpiry:        "Session Expiry Interval",
	propAssignedClientID:     "Assigned Client Identifier",
	propServerKeepAlive:      "Server Keep Alive",
	propAuthMethod:           "Authentication Method",
	propAuthData:             "Authentication Data",
	propRequestProblemInfo:   "Request Problem Information",
	propWillDelay:            "Will Delay Interval",
	propRequestResponseInfo:  "Request Response Information",
	propResponseInfo:         "Response Information",
	propServerReference:      "Server Reference",
	propReasonString:         "Reason String",
	propReceiveMaximum:       "Receive Maximum",
	propTopicAliasMaximum:    "Topic Alias Maximum",
	propTopicAlias:           "Topic Alias",
	propMaximumQoS:           "Maximum QoS",
	propRetainAvailable:      "Retain Available",
	propUser:                 "User Property",
	propMaximumPacketSize:    "Maximum Packet Size",
	propWildcardSubAvailable: "Wildcard Subscription Available",
	propSubIDAvailable:       "Subscription Identifier Available",
	propSharedSubAvailable:   "Shared Subscription Available",
}

// props reads a property length and the properties that follow into
// p, checking each against table 2.4 for ctx.
func (d *decoder) props(p *Properties, ctx propCtx) {
	n := d.varint()
	if d.err != nil {
		return
	}
	if n > len(d.b) {
		d.fail(malformed("property length exceeds packet"))
		return
	}
	pd := decoder{b: d.b[:n:n]}
	d.b = d.b[n:]
	var seen uint64
	for len(pd.b) > 0 && pd.err == nil {
		id := pd.b[0]
		pd.b = pd.b[1:]
		// Every identifier defined so far is a one-byte variable byte
		// integer; anything else is unknown [MQTT-2.2.2.2].
		if int(id) >= len(propAllowed) || propAllowed[id] == 0 {
			d.fail(malformed(fmt.Sprintf("unknown property identifier 0x%02X", id)))
			return
		}
		if propAllowed[id]&ctx == 0 {
			d.fail(fmt.Errorf("property %s not allowed in %s: %w", propNames[id], ctx, ProtocolError))
			return
		}
		// Only User Property, and Subscription Identifier in PUBLISH, may
		// appear more than once (sections 2.2.2.2 and 3.3.2.3.8).
		if id != propUser && (id != propSubscriptionID || ctx != inPublish) {
			if seen&(1<<id) != 0 {
				d.fail(fmt.Errorf("property %s included more than once: %w", propNames[id], ProtocolError))
				return
			}
			seen |= 1 << id
		}
		switch id {
		case propPayloadFormat:
			p.PayloadFormat = pd.flag(id)
		case propMessageExpiry:
			p.MessageExpiry = new(pd.u32())
		case propContentType:
			p.ContentType = pd.str()
		case propResponseTopic:
			p.ResponseTopic = pd.str()
		case propCorrelationData:
			p.CorrelationData = pd.bin()
		case propSubscriptionID:
			sid := pd.varint()
			if pd.err == nil && sid == 0 {
				// [MQTT-3.8.2.1.2] "It is a Protocol Error if the
				// Subscription Identifier has a value of 0."
				pd.fail(fmt.Errorf("subscription identifier 0: %w", ProtocolError))
			}
			p.SubscriptionIDs = append(p.SubscriptionIDs, sid)
		case propSessionExpiry:
			p.SessionExpiry = new(pd.u32())
		case propAssignedClientID:
			p.AssignedClientID = pd.str()
		case propServerKeepAlive:
			p.ServerKeepAlive = new(pd.u16())
		case propAuthMethod:
			p.AuthMethod = pd.str()
		case propAuthData:
			p.AuthData = pd.bin()
		case propRequestProblemInfo:
			p.RequestProblemInfo = pd.flag(id)
		case propWillDelay:
			p.WillDelay = new(pd.u32())
		case propRequestResponseInfo:
			p.RequestResponseInfo = pd.flag(id)
		case propResponseInfo:
			p.ResponseInfo = pd.str()
		case propServerReference:
			p.ServerReference = pd.str()
		case propReasonString:
			p.ReasonString = pd.str()
		case propReceiveMaximum:
			v := pd.u16()
			if pd.err == nil && v == 0 {
				// [MQTT-3.1.2.11.3] "It is a Protocol Error to include the
				// Receive Maximum value of 0."
				pd.fail(fmt.Errorf("receive maximum 0: %w", ProtocolError))
			}
			p.ReceiveMaximum = new(v)
		case propTopicAliasMaximum:
			p.TopicAliasMaximum = new(pd.u16())
		case propTopicAlias:
			v := pd.u16()
			if pd.err == nil && v == 0 {
				// [MQTT-3.3.2-8] A Topic Alias of 0 is not permitted; the
				// receiver answers with Topic Alias invalid.
				pd.fail(fmt.Errorf("topic alias 0: %w: %w", TopicAliasInvalid, ProtocolError))
			}
			p.TopicAlias = new(v)
		case propMaximumQoS:
			p.MaximumQoS = pd.flag(id)
		case propRetainAvailable:
			p.RetainAvailable = pd.flag(id)
		case propUser:
			k := pd.str()
			v := pd.str()
			p.User = append(p.User, UserProperty{Key: k, Value: v})
		case propMaximumPacketSize:
			v := pd.u32()
			if pd.err == nil && v == 0 {
				// [MQTT-3.1.2.11.4] "It is a Protocol Error to include the
				// Maximum Packet Size ... if the value is zero."
				pd.fail(fmt.Errorf("maximum packet size 0: %w", ProtocolError))
			}
			p.MaximumPacketSize = new(v)
		case propWildcardSubAvailable:
			p.WildcardSubAvailable = pd.flag(id)
		case propSubIDAvailable:
			p.SubIDAvailable = pd.flag(id)
		case propSharedSubAvailable:
			p.SharedSubAvailable = pd.flag(id)
		}
	}
	if pd.err != nil {
		d.fail(pd.err)
	}
}

// flag reads a one-byte property whose only valid values are 0 and 1
// (booleans, Payload Format Indicator, Maximum QoS); others are a Protocol
// Error.
func (d *decoder) flag(id byte) *byte {
	b := d.u8()
	if d.err == nil && b > 1 {
		d.fail(fmt.Errorf("property %s has value %d: %w", propNames[id], b, ProtocolError))
	}
	return new(b)
}
