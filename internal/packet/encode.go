package packet

import (
	"encoding/binary"
	"fmt"
)

// MaxRemainingLength is the largest remaining length a variable byte integer
// can carry (268,435,455 bytes) [MQTT-1.5.5].
const MaxRemainingLength = 268_435_455

// maxFieldLen is the longest UTF-8 string or binary field (2-byte length).
const maxFieldLen = 0xFFFF

// Encode returns p's encoding for protocol version v in a new buffer.
func Encode(p Packet, v Version) ([]byte, error) {
	return p.AppendTo(nil, v)
}

func checkVersion(v Version) error {
	switch v {
	case V31, V311, V5:
		return nil
	}
	return fmt.Errorf("packet: cannot encode for protocol level %d: %w", byte(v), UnsupportedProtocolVersion)
}

func encErr(t Type, what string) error {
	return fmt.Errorf("packet: encode %s: %s: %w", t, what, MalformedPacket)
}

// varintLen is the number of bytes the variable byte integer n takes.
func varintLen(n int) int {
	switch {
	case n < 128:
		return 1
	case n < 16_384:
		return 2
	case n < 2_097_152:
		return 3
	}
	return 4
}

func appendVarint(dst []byte, n int) []byte {
	for {
		b := byte(n & 0x7F)
		n >>= 7
		if n == 0 {
			return append(dst, b)
		}
		dst = append(dst, b|0x80)
	}
}

func appendU16(dst []byte, n uint16) []byte { return binary.BigEndian.AppendUint16(dst, n) }

func appendString(dst []byte, s string) []byte {
	dst = appendU16(dst, uint16(len(s)))
	return append(dst, s...)
}

func appendBinary(dst []byte, b []byte) []byte {
	dst = appendU16(dst, uint16(len(b)))
	return append(dst, b...)
}

// appendHeader writes the fixed header. The remaining length must fit in a
// four-byte variable byte integer [MQTT-2.2.3].
func appendHeader(dst []byte, first byte, remaining int) ([]byte, error) {
	if remaining > MaxRemainingLength {
		return dst, fmt.Errorf("packet: encode %s: remaining length %d exceeds %d: %w",
			Type(first>>4), remaining, MaxRemainingLength, PacketTooLarge)
	}
	dst = append(dst, first)
	return appendVarint(dst, remaining), nil
}

// propsLen returns the encoded size of p's properties, without the
// property-length prefix, and reports any property that a packet of kind ctx
// may not carry [MQTT-2.2.2.2].
func propsLen(t Type, p *Properties, ctx propCtx) (int, error) {
	n := 0
	bad := byte(0)
	long := false
	use := func(id byte, size int) {
		if propAllowed[id]&ctx == 0 && bad == 0 {
			bad = id
		}
		n += 1 + size
	}
	str := func(id byte, s string) {
		if s != "" {
			long = long || len(s) > maxFieldLen
			use(id, 2+len(s))
		}
	}
	if p.PayloadFormat != nil {
		use(propPayloadFormat, 1)
	}
	if p.MessageExpiry != nil {
		use(propMessageExpiry, 4)
	}
	str(propContentType, p.ContentType)
	str(propResponseTopic, p.ResponseTopic)
	if p.CorrelationData != nil {
		long = long || len(p.CorrelationData) > maxFieldLen
		use(propCorrelationData, 2+len(p.CorrelationData))
	}
	for _, id := range p.SubscriptionIDs {
		if id < 1 || id > MaxRemainingLength {
			return 0, encErr(t, fmt.Sprintf("subscription identifier %d out of range", id))
		}
		use(propSubscriptionID, varintLen(id))
	}
	if ctx == inSubscribe && len(p.SubscriptionIDs) > 1 {
		return 0, encErr(t, "more than one subscription identifier")
	}
	if p.SessionExpiry != nil {
		use(propSessionExpiry, 4)
	}
	str(propAssignedClientID, p.AssignedClientID)
	if p.ServerKeepAlive != nil {
		use(propServerKeepAlive, 2)
	}
	str(propAuthMethod, p.AuthMethod)
	if p.AuthData != nil {
		long = long || len(p.AuthData) > maxFieldLen
		use(propAuthData, 2+len(p.AuthData))
	}
	if p.RequestProblemInfo != nil {
		use(propRequestProblemInfo, 1)
	}
	if p.WillDelay != nil {
		use(propWillDelay, 4)
	}
	if p.RequestResponseInfo != nil {
		use(propRequestResponseInfo, 1)
	}
	str(propResponseInfo, p.ResponseInfo)
	str(propServerReference, p.ServerReference)
	str(propReasonString, p.ReasonString)
	if p.ReceiveMaximum != nil {
		use(propReceiveMaximum, 2)
	}
	if p.TopicAliasMaximum != nil {
		use(propTopicAliasMaximum, 2)
	}
	if p.TopicAlias != nil {
		use(propTopicAlias, 2)
	}
	if p.MaximumQoS != nil {
		use(propMaximumQoS, 1)
	}
	if p.RetainAvailable != nil {
		use(propRetainAvailable, 1)
	}
	for _, u := range p.User {
		long = long || len(u.Key) > maxFieldLen || len(u.Value) > maxFieldLen
		use(propUser, 4+len(u.Key)+len(u.Value))
	}
	if p.MaximumPacketSize != nil {
		use(propMaximumPacketSize, 4)
	}
	if p.WildcardSubAvailable != nil {
		use(propWildcardSubAvailable, 1)
	}
	if p.SubIDAvailable != nil {
		use(propSubIDAvailable, 1)
	}
	if p.SharedSubAvailable != nil {
		use(propSharedSubAvailable, 1)
	}
	if bad != 0 {
		return 0, fmt.Errorf("packet: encode %s: property %s (0x%02X) not allowed in %s: %w",
			t, propNames[bad], bad, ctx, ProtocolError)
	}
	if long {
		return 0, encErr(t, "property string or binary data longer than 65535 bytes")
	}
	return n, nil
}

// appendProps writes the property length n (from propsLen) and the
// properties in identifier order.
func appendProps(dst []byte, p *Properties, n int) []byte {
	dst = appendVarint(dst, n)
	if p.PayloadFormat != nil {
		dst = append(dst, propPayloadFormat, *p.PayloadFormat)
	}
	if p.MessageExpiry != nil {
		dst = binary.BigEndian.AppendUint32(append(dst, propMessageExpiry), *p.MessageExpiry)
	}
	if p.ContentType != "" {
		dst = appendString(append(dst, propContentType), p.ContentType)
	}
	if p.ResponseTopic != "" {
		dst = appendString(append(dst, propResponseTopic), p.ResponseTopic)
	}
	if p.CorrelationData != nil {
		dst = appendBinary(append(dst, propCorrelationData), p.CorrelationData)
	}
	for _, id := range p.SubscriptionIDs {
		dst = appendVarint(append(dst, propSubscriptionID), id)
	}
	if p.SessionExpiry != nil {
		dst = binary.BigEndian.AppendUint32(append(dst, propSessionExpiry), *p.SessionExpiry)
	}
	if p.AssignedClientID != "" {
		dst = appendString(append(dst, propAssignedClientID), p.AssignedClientID)
	}
	if p.ServerKeepAlive != nil {
		dst = appendU16(append(dst, propServerKeepAlive), *p.ServerKeepAlive)
	}
	if p.AuthMethod != "" {
		dst = appendString(append(dst, propAuthMethod), p.AuthMethod)
	}
	if p.AuthData != nil {
		dst = appendBinary(append(dst, propAuthData), p.AuthData)
	}
	if p.RequestProblemInfo != nil {
		dst = append(dst, propRequestProblemInfo, *p.RequestProblemInfo)
	}
	if p.WillDelay != nil {
		dst = binary.BigEndian.AppendUint32(append(dst, propWillDelay), *p.WillDelay)
	}
	if p.RequestResponseInfo != nil {
		dst = append(dst, propRequestResponseInfo, *p.RequestResponseInfo)
	}
	if p.ResponseInfo != "" {
		dst = appendString(append(dst, propResponseInfo), p.ResponseInfo)
	}
	if p.ServerReference != "" {
		dst = appendString(append(dst, propServerReference), p.ServerReference)
	}
	if p.ReasonString != "" {
		dst = appendString(append(dst, propReasonString), p.ReasonString)
	}
	if p.ReceiveMaximum != nil {
		dst = appendU16(append(dst, propReceiveMaximum), *p.ReceiveMaximum)
	}
	if p.TopicAliasMaximum != nil {
		dst = appendU16(append(dst, propTopicAliasMaximum), *p.TopicAliasMaximum)
	}
	if p.TopicAlias != nil {
		dst = appendU16(append(dst, propTopicAlias), *p.TopicAlias)
	}
	if p.MaximumQoS != nil {
		dst = append(dst, propMaximumQoS, *p.MaximumQoS)
	}
	if p.RetainAvailable != nil {
		dst = append(dst, propRetainAvailable, *p.RetainAvailable)
	}
	for _, u := range p.User {
		dst = appendString(append(dst, propUser), u.Key)
		dst = appendString(dst, u.Value)
	}
	if p.MaximumPacketSize != nil {
		dst = binary.BigEndian.AppendUint32(append(dst, propMaximumPacketSize), *p.MaximumPacketSize)
	}
	if p.WildcardSubAvailable != nil {
		dst = append(dst, propWildcardSubAvailable, *p.WildcardSubAvailable)
	}
	if p.SubIDAvailable != nil {
		dst = append(dst, propSubIDAvailable, *p.SubIDAvailable)
	}
	if p.SharedSubAvailable != nil {
		dst = append(dst, propSharedSubAvailable, *p.SharedSubAvailable)
	}
	return dst
}

// hasProps reports whether any property is set.
func hasProps(p *Properties) bool {
	return p.PayloadFormat != nil || p.MessageExpiry != nil || p.ContentType != "" ||
		p.ResponseTopic != "" || p.CorrelationData != nil || p.SubscriptionIDs != nil ||
		p.SessionExpiry != nil || p.AssignedClientID != "" || p.ServerKeepAlive != nil ||
		p.AuthMethod != "" || p.AuthData != nil || p.RequestProblemInfo != nil ||
		p.WillDelay != nil || p.RequestResponseInfo != nil || p.ResponseInfo != "" ||
		p.ServerReference != "" || p.ReasonString != "" || p.ReceiveMaximum != nil ||
		p.TopicAliasMaximum != nil || p.TopicAlias != nil || p.MaximumQoS != nil ||
		p.RetainAvailable != nil || p.User != nil || p.MaximumPacketSize != nil ||
		p.WildcardSubAvailable != nil || p.SubIDAvailable != nil || p.SharedSubAvailable != nil
}

// AppendTo appends the CONNECT packet. The protocol name and level are
// c.ProtocolName and c.Version when set, otherwise those of v ("MQIsdp" 3,
// "MQTT" 4, "MQTT" 5); v decides the layout (properties only for V5). The
// user name is written when UsernameFlag is set or Username is not empty,
// the password when PasswordFlag is set or Password is not nil.
func (c *Connect) AppendTo(dst []byte, v Version) ([]byte, error) {
	if err := checkVersion(v); err != nil {
		return dst, err
	}
	name := c.ProtocolName
	if name == "" {
		name = "MQTT"
		if v == V31 {
			name = "MQIsdp"
		}
	}
	level := c.Version
	if level == 0 {
		level = v
	}
	n := 2 + len(name) + 1 + 1 + 2 + 2 + len(c.ClientID)
	long := len(name) > maxFieldLen || len(c.ClientID) > maxFieldLen
	var flags byte
	if c.CleanStart {
		flags |= 0x02
	}
	var pl, wpl int
	var err error
	if v == V5 {
		if pl, err = propsLen(CONNECT, &c.Properties, inConnect); err != nil {
			return dst, err
		}
		n += varintLen(pl) + pl
	}
	if w := c.Will; w != nil {
		if w.QoS > 2 {
			return dst, encErr(CONNECT, "will QoS greater than 2")
		}
		flags |= 0x04 | w.QoS<<3
		if w.Retain {
			flags |= 0x20
		}
		if v == V5 {
			if wpl, err = propsLen(CONNECT, &w.Properties, inWill); err != nil {
				return dst, err
			}
			n += varintLen(wpl) + wpl
		}
		n += 4 + len(w.Topic) + len(w.Payload)
		long = long || len(w.Topic) > maxFieldLen || len(w.Payload) > maxFieldLen
	}
	if c.UsernameFlag || c.Username != "" {
		flags |= 0x80
		n += 2 + len(c.Username)
		long = long || len(c.Username) > maxFieldLen
	}
	if c.PasswordFlag || c.Password != nil {
		flags |= 0x40
		n += 2 + len(c.Password)
		long = long || len(c.Password) > maxFieldLen
	}
	if long {
		return dst, encErr(CONNECT, "string or binary field longer than 65535 bytes")
	}
	if dst, err = appendHeader(dst, byte(CONNECT)<<4, n); err != nil {
		return dst, err
	}
	dst = appendString(dst, name)
	dst = append(dst, byte(level), flags)
	dst = appendU16(dst, c.KeepAlive)
	if v == V5 {
		dst = appendProps(dst, &c.Properties, pl)
	}
	dst = appendString(dst, c.ClientID)
	if w := c.Will; w != nil {
		if v == V5 {
			dst = appendProps(dst, &w.Properties, wpl)
		}
		dst = appendString(dst, w.Topic)
		dst = appendBinary(dst, w.Payload)
	}
	if flags&0x80 != 0 {
		dst = appendString(dst, c.Username)
	}
	if flags&0x40 != 0 {
		dst = appendBinary(dst, c.Password)
	}
	return dst, nil
}

// connectReturnCode maps an MQTT 5 CONNACK reason code to a 3.x connect
// return code [MQTT-3.2.2.3].
func connectReturnCode(r ReasonCode) (byte, bool) {
	switch r {
	case Success:
		return 0, true
	case UnsupportedProtocolVersion:
		return 1, true
	case ClientIdentifierNotValid:
		return 2, true
	case BadUsernameOrPassword:
		return 4, true
	case NotAuthorized, Banned:
		return 5, true
	}
	if r.IsError() {
		return 3, true // server unavailable covers every other refusal
	}
	return 0, false
}

// AppendTo appends the CONNACK packet. For 3.x the reason code is mapped to
// a connect return code and SessionPresent is not written in 3.1.
func (c *Connack) AppendTo(dst []byte, v Version) ([]byte, error) {
	if err := checkVersion(v); err != nil {
		return dst, err
	}
	var flags byte
	if c.SessionPresent && v != V31 {
		flags = 1
	}
	if v != V5 {
		rc, ok := connectReturnCode(c.ReasonCode)
		if !ok {
			return dst, encErr(CONNACK, fmt.Sprintf("reason code 0x%02X has no 3.x return code", byte(c.ReasonCode)))
		}
		return append(dst, byte(CONNACK)<<4, 2, flags, rc), nil
	}
	pl, err := propsLen(CONNACK, &c.Properties, inConnack)
	if err != nil {
		return dst, err
	}
	if dst, err = appendHeader(dst, byte(CONNACK)<<4, 2+varintLen(pl)+pl); err != nil {
		return dst, err
	}
	dst = append(dst, flags, byte(c.ReasonCode))
	return appendProps(dst, &c.Properties, pl), nil
}

// AppendTo appends the PUBLISH packet. PacketID is written only for QoS 1
// and 2 [MQTT-2.2.1-2].
func (p *Publish) AppendTo(dst []byte, v Version) ([]byte, error) {
	if err := checkVersion(v); err != nil {
		return dst, err
	}
	if p.QoS > 2 {
		return dst, encErr(PUBLISH, "QoS greater than 2") // [MQTT-3.3.1-4]
	}
	if len(p.Topic) > maxFieldLen {
		return dst, encErr(PUBLISH, "topic longer than 65535 bytes")
	}
	n := 2 + len(p.Topic) + len(p.Payload)
	if p.QoS > 0 {
		n += 2
	}
	var pl int
	var err error
	if v == V5 {
		if pl, err = propsLen(PUBLISH, &p.Properties, inPublish); err != nil {
			return dst, err
		}
		n += varintLen(pl) + pl
	}
	first := byte(PUBLISH)<<4 | p.QoS<<1
	if p.Dup {
		first |= 0x08
	}
	if p.Retain {
		first |= 0x01
	}
	if dst, err = appendHeader(dst, first, n); err != nil {
		return dst, err
	}
	dst = appendString(dst, p.Topic)
	if p.QoS > 0 {
		dst = appendU16(dst, p.PacketID)
	}
	if v == V5 {
		dst = appendProps(dst, &p.Properties, pl)
	}
	return append(dst, p.Payload...), nil
}

// appendAck writes PUBACK, PUBREC, PUBREL and PUBCOMP. In MQTT 5 the reason
// code and property length are left out when they can be [MQTT-3.4.2.1].
func appendAck(dst []byte, first byte, id uint16, rc ReasonCode, p *Properties, v Version) ([]byte, error) {
	if err := checkVersion(v); err != nil {
		return dst, err
	}
	if v != V5 {
		return appendU16(append(dst, first, 2), id), nil
	}
	if !hasProps(p) {
		if rc == Success {
			return appendU16(append(dst, first, 2), id), nil
		}
		return append(appendU16(append(dst, first, 3), id), byte(rc)), nil
	}
	pl, err := propsLen(Type(first>>4), p, inPuback)
	if err != nil {
		return dst, err
	}
	if dst, err = appendHeader(dst, first, 3+varintLen(pl)+pl); err != nil {
		return dst, err
	}
	dst = append(appendU16(dst, id), byte(rc))
	return appendProps(dst, p, pl), nil
}

// AppendTo appends the PUBACK packet.
func (p *Puback) AppendTo(dst []byte, v Version) ([]byte, error) {
	return appendAck(dst, byte(PUBACK)<<4, p.PacketID, p.ReasonCode, &p.Properties, v)
}

// AppendTo appends the PUBREC packet.
func (p *Pubrec) AppendTo(dst []byte, v Version) ([]byte, error) {
	return appendAck(dst, byte(PUBREC)<<4, p.PacketID, p.ReasonCode, &p.Properties, v)
}

// AppendTo appends the PUBREL packet (fixed header flags 0b0010
// [MQTT-3.6.1-1]).
func (p *Pubrel) AppendTo(dst []byte, v Version) ([]byte, error) {
	return appendAck(dst, byte(PUBREL)<<4|0x02, p.PacketID, p.ReasonCode, &p.Properties, v)
}

// AppendTo appends the PUBCOMP packet.
func (p *Pubcomp) AppendTo(dst []byte, v Version) ([]byte, error) {
	return appendAck(dst, byte(PUBCOMP)<<4, p.PacketID, p.ReasonCode, &p.Properties, v)
}

// AppendTo appends the SUBSCRIBE packet (fixed header flags 0b0010
// [MQTT-3.8.1-1]). Before 5.0 only the QoS of each subscription is written.
func (s *Subscribe) AppendTo(dst []byte, v Version) ([]byte, error) {
	if err := checkVersion(v); err != nil {
		return dst, err
	}
	n := 2
	var pl int
	var err error
	if v == V5 {
		if pl, err = propsLen(SUBSCRIBE, &s.Properties, inSubscribe); err != nil {
			return dst, err
		}
		n += varintLen(pl) + pl
	}
	for i := range s.Subscriptions {
		sub := &s.Subscriptions[i]
		if len(sub.Filter) > maxFieldLen {
			return dst, encErr(SUBSCRIBE, "topic filter longer than 65535 bytes")
		}
		if sub.QoS > 2 || sub.RetainHandling > 2 {
			return dst, encErr(SUBSCRIBE, "QoS or retain handling greater than 2")
		}
		n += 3 + len(sub.Filter)
	}
	if dst, err = appendHeader(dst, byte(SUBSCRIBE)<<4|0x02, n); err != nil {
		return dst, err
	}
	dst = appendU16(dst, s.PacketID)
	if v == V5 {
		dst = appendProps(dst, &s.Properties, pl)
	}
	for i := range s.Subscriptions {
		sub := &s.Subscriptions[i]
		opts := sub.QoS
		if v == V5 {
			if sub.NoLocal {
				opts |= 0x04
			}
			if sub.RetainAsPublished {
				opts |= 0x08
			}
			opts |= sub.RetainHandling << 4
		}
		dst = append(appendString(dst, sub.Filter), opts)
	}
	return dst, nil
}

// AppendTo appends the SUBACK packet. For 3.x every failure code is written
// as 0x80 [MQTT-3.9.3].
func (s *Suback) AppendTo(dst []byte, v Version) ([]byte, error) {
	if err := checkVersion(v); err != nil {
		return dst, err
	}
	n := 2 + len(s.ReasonCodes)
	var pl int
	var err error
	if v == V5 {
		if pl, err = propsLen(SUBACK, &s.Properties, inSuback); err != nil {
			return dst, err
		}
		n += varintLen(pl) + pl
	}
	if dst, err = appendHeader(dst, byte(SUBACK)<<4, n); err != nil {
		return dst, err
	}
	dst = appendU16(dst, s.PacketID)
	if v == V5 {
		dst = appendProps(dst, &s.Properties, pl)
	}
	for _, rc := range s.ReasonCodes {
		if v != V5 && rc >= 0x80 {
			rc = 0x80
		}
		dst = append(dst, byte(rc))
	}
	return dst, nil
}

// AppendTo appends the UNSUBSCRIBE packet (fixed header flags 0b0010
// [MQTT-3.10.1-1]).
func (u *Unsubscribe) AppendTo(dst []byte, v Version) ([]byte, error) {
	if err := checkVersion(v); err != nil {
		return dst, err
	}
	n := 2
	var pl int
	var err error
	if v == V5 {
		if pl, err = propsLen(UNSUBSCRIBE, &u.Properties, inUnsubscribe); err != nil {
			return dst, err
		}
		n += varintLen(pl) + pl
	}
	for _, f := range u.Filters {
		if len(f) > maxFieldLen {
			return dst, encErr(UNSUBSCRIBE, "topic filter longer than 65535 bytes")
		}
		n += 2 + len(f)
	}
	if dst, err = appendHeader(dst, byte(UNSUBSCRIBE)<<4|0x02, n); err != nil {
		return dst, err
	}
	dst = appendU16(dst, u.PacketID)
	if v == V5 {
		dst = appendProps(dst, &u.Properties, pl)
	}
	for _, f := range u.Filters {
		dst = appendString(dst, f)
	}
	return dst, nil
}

// AppendTo appends the UNSUBACK packet. Before 5.0 it has no payload.
func (u *Unsuback) AppendTo(dst []byte, v Version) ([]byte, error) {
	if err := checkVersion(v); err != nil {
		return dst, err
	}
	if v != V5 {
		return appendU16(append(dst, byte(UNSUBACK)<<4, 2), u.PacketID), nil
	}
	pl, err := propsLen(UNSUBACK, &u.Properties, inUnsuback)
	if err != nil {
		return dst, err
	}
	if dst, err = appendHeader(dst, byte(UNSUBACK)<<4, 2+varintLen(pl)+pl+len(u.ReasonCodes)); err != nil {
		return dst, err
	}
	dst = appendProps(appendU16(dst, u.PacketID), &u.Properties, pl)
	for _, rc := range u.ReasonCodes {
		dst = append(dst, byte(rc))
	}
	return dst, nil
}

// AppendTo appends the PINGREQ packet.
func (*Pingreq) AppendTo(dst []byte, v Version) ([]byte, error) {
	if err := checkVersion(v); err != nil {
		return dst, err
	}
	return append(dst, byte(PINGREQ)<<4, 0), nil
}

// AppendTo appends the PINGRESP packet.
func (*Pingresp) AppendTo(dst []byte, v Version) ([]byte, error) {
	if err := checkVersion(v); err != nil {
		return dst, err
	}
	return append(dst, byte(PINGRESP)<<4, 0), nil
}

// AppendTo appends the DISCONNECT packet. Before 5.0 it is always 0xE0 0x00;
// in 5.0 the reason code and properties are left out when they can be
// [MQTT-3.14.2.1].
func (d *Disconnect) AppendTo(dst []byte, v Version) ([]byte, error) {
	if err := checkVersion(v); err != nil {
		return dst, err
	}
	first := byte(DISCONNECT) << 4
	if v != V5 {
		return append(dst, first, 0), nil
	}
	if !hasProps(&d.Properties) {
		if d.ReasonCode == NormalDisconnection {
			return append(dst, first, 0), nil
		}
		return append(dst, first, 1, byte(d.ReasonCode)), nil
	}
	pl, err := propsLen(DISCONNECT, &d.Properties, inDisconnect)
	if err != nil {
		return dst, err
	}
	if dst, err = appendHeader(dst, first, 1+varintLen(pl)+pl); err != nil {
		return dst, err
	}
	return appendProps(append(dst, byte(d.ReasonCode)), &d.Properties, pl), nil
}

// AppendTo appends the AUTH packet, which exists only in MQTT 5. A Success
// code without properties is written with remaining length 0
// [MQTT-3.15.2.1].
func (a *Auth) AppendTo(dst []byte, v Version) ([]byte, error) {
	if err := checkVersion(v); err != nil {
		return dst, err
	}
	if v != V5 {
		return dst, fmt.Errorf("packet: AUTH does not exist in MQTT %s: %w", v, ProtocolError)
	}
	first := byte(AUTH) << 4
	if a.ReasonCode == Success && !hasProps(&a.Properties) {
		return append(dst, first, 0), nil
	}
	pl, err := propsLen(AUTH, &a.Properties, inAuth)
	if err != nil {
		return dst, err
	}
	if dst, err = appendHeader(dst, first, 1+varintLen(pl)+pl); err != nil {
		return dst, err
	}
	return appendProps(append(dst, byte(a.ReasonCode)), &a.Properties, pl), nil
}
