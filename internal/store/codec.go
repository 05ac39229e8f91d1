package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/starlingmq/starling/internal/broker"
	"github.com/starlingmq/starling/internal/packet"
)

// ErrCorrupt marks a record or key that cannot be decoded. Errors that wrap
// it name the key.
var ErrCorrupt = errors.New("store: corrupt record")

// recordV1 is the leading format byte of every value written by this
// version. A later version that changes a record's layout writes a new
// byte and keeps decoding the old ones.
const recordV1 byte = 1

// formatVersion is the value of keyVersion this build writes and reads.
const formatVersion uint32 = 1

// Encoding primitives. Lengths, counts and unsigned integers are uvarints,
// signed integers varints. A byte slice is uvarint(len+1) then the bytes,
// with 0 for nil, so that nil and empty survive a round trip. A string is
// uvarint(len) then the bytes. A time is 0 for the zero time, else 1,
// varint(unix seconds), uvarint(nanoseconds).

func putUvarint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }
func putVarint(b []byte, v int64) []byte   { return binary.AppendVarint(b, v) }

func putString(b []byte, s string) []byte {
	return append(putUvarint(b, uint64(len(s))), s...)
}

func putBytes(b []byte, p []byte) []byte {
	if p == nil {
		return putUvarint(b, 0)
	}
	return append(putUvarint(b, uint64(len(p))+1), p...)
}

func putTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0)
	}
	b = append(b, 1)
	b = putVarint(b, t.Unix())
	return putUvarint(b, uint64(t.Nanosecond()))
}

func putInts(b []byte, v []int) []byte {
	if v == nil {
		return putUvarint(b, 0)
	}
	b = putUvarint(b, uint64(len(v))+1)
	for _, x := range v {
		b = putVarint(b, int64(x))
	}
	return b
}

// reader decodes; the first error sticks and later reads return zeros, so
// decoders check r.err once at the end.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf(format, args...)
	}
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.fail("truncated")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("bad uvarint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) int() int {
	v := r.varint()
	if int64(int(v)) != v {
		r.fail("integer %d out of range", v)
		return 0
	}
	return int(v)
}

func (r *reader) u32() uint32 {
	v := r.uvarint()
	if v > math.MaxUint32 {
		r.fail("value %d exceeds 32 bits", v)
		return 0
	}
	return uint32(v)
}

func (r *reader) u16() uint16 {
	v := r.uvarint()
	if v > math.MaxUint16 {
		r.fail("value %d exceeds 16 bits", v)
		return 0
	}
	return uint16(v)
}

// take returns the next n bytes, aliasing r.b.
func (r *reader) take(n uint64) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.fail("length %d exceeds the %d bytes left", n, len(r.b))
		return nil
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

func (r *reader) string() string { return string(r.take(r.uvarint())) }

func (r *reader) bytes() []byte {
	n := r.uvarint()
	if n == 0 || r.err != nil {
		return nil
	}
	p := r.take(n - 1)
	if r.err != nil {
		return nil
	}
	return append(make([]byte, 0, len(p)), p...)
}

func (r *reader) time() time.Time {
	switch r.byte() {
	case 0:
		return time.Time{}
	case 1:
		sec := r.varint()
		nsec := r.uvarint()
		if nsec >= 1e9 {
			r.fail("nanoseconds %d out of range", nsec)
		}
		if r.err != nil {
			return time.Time{}
		}
		return time.Unix(sec, int64(nsec)).UTC()
	default:
		if r.err == nil {
			r.fail("bad time tag")
		}
		return time.Time{}
	}
}

// count reads a count encoded as n+1 (0: nil) and bounds it by the bytes
// left, each element taking at least min bytes, so that a corrupt count
// cannot make the decoder allocate more than the record's size.
func (r *reader) count(min int) (n int, isNil bool) {
	v := r.uvarint()
	if r.err != nil || v == 0 {
		return 0, true
	}
	v--
	if v > uint64(len(r.b)/min) {
		r.fail("count %d exceeds the %d bytes left", v, len(r.b))
		return 0, true
	}
	return int(v), false
}

func (r *reader) ints() []int {
	n, isNil := r.count(1)
	if isNil {
		return nil
	}
	v := make([]int, n)
	for i := range v {
		v[i] = r.int()
	}
	return v
}

func (r *reader) flags(known byte) byte {
	f := r.byte()
	if f&^known != 0 {
		r.fail("unknown flags 0x%02x", f)
	}
	return f
}

func (r *reader) format() {
	if f := r.byte(); r.err == nil && f != recordV1 {
		r.fail("unknown record format %d", f)
	}
}

func (r *reader) end() error {
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d trailing bytes", len(r.b))
	}
	return r.err
}

// Properties: a uvarint mask of the fields present, then those fields in
// bit order. A pointer is present when non-nil, a string when non-empty, a
// slice when non-nil.
const (
	propPayloadFormat = 1 << iota
	propMessageExpiry
	propContentType
	propResponseTopic
	propCorrelationData
	propSubscriptionIDs
	propSessionExpiry
	propAssignedClientID
	propServerKeepAlive
	propAuthMethod
	propAuthData
	propRequestProblemInfo
	propWillDelay
	propRequestResponseInfo
	propResponseInfo
	propServerReference
	propReasonString
	propReceiveMaximum
	propTopicAliasMaximum
	propTopicAlias
	propMaximumQoS
	propRetainAvailable
	propUser
	propMaximumPacketSize
	propWildcardSubAvailable
	propSubIDAvailable
	propSharedSubAvailable
	propAll = propSharedSubAvailable<<1 - 1
)

func putProperties(b []byte, p *packet.Properties) []byte {
	var m uint64
	set := func(bit uint64, present bool) {
		if present {
			m |= bit
		}
	}
	set(propPayloadFormat, p.PayloadFormat != nil)
	set(propMessageExpiry, p.MessageExpiry != nil)
	set(propContentType, p.ContentType != "")
	set(propResponseTopic, p.ResponseTopic != "")
	set(propCorrelationData, p.CorrelationData != nil)
	set(propSubscriptionIDs, p.SubscriptionIDs != nil)
	set(propSessionExpiry, p.SessionExpiry != nil)
	set(propAssignedClientID, p.AssignedClientID != "")
	set(propServerKeepAlive, p.ServerKeepAlive != nil)
	set(propAuthMethod, p.AuthMethod != "")
	set(propAuthData, p.AuthData != nil)
	set(propRequestProblemInfo, p.RequestProblemInfo != nil)
	set(propWillDelay, p.WillDelay != nil)
	set(propRequestResponseInfo, p.RequestResponseInfo != nil)
	set(propResponseInfo, p.ResponseInfo != "")
	set(propServerReference, p.ServerReference != "")
	set(propReasonString, p.ReasonString != "")
	set(propReceiveMaximum, p.ReceiveMaximum != nil)
	set(propTopicAliasMaximum, p.TopicAliasMaximum != nil)
	set(propTopicAlias, p.TopicAlias != nil)
	set(propMaximumQoS, p.MaximumQoS != nil)
	set(propRetainAvailable, p.RetainAvailable != nil)
	set(propUser, p.User != nil)
	set(propMaximumPacketSize, p.MaximumPacketSize != nil)
	set(propWildcardSubAvailable, p.WildcardSubAvailable != nil)
	set(propSubIDAvailable, p.SubIDAvailable != nil)
	set(propSharedSubAvailable, p.SharedSubAvailable != nil)
	b = putUvarint(b, m)
	if m == 0 {
		return b
	}
	if m&propPayloadFormat != 0 {
		b = append(b, *p.PayloadFormat)
	}
	if m&propMessageExpiry != 0 {
		b = putUvarint(b, uint64(*p.MessageExpiry))
	}
	if m&propContentType != 0 {
		b = putString(b, p.ContentType)
	}
	if m&propResponseTopic != 0 {
		b = putString(b, p.ResponseTopic)
	}
	if m&propCorrelationData != 0 {
		b = putBytes(b, p.CorrelationData)
	}
	if m&propSubscriptionIDs != 0 {
		b = putInts(b, p.SubscriptionIDs)
	}
	if m&propSessionExpiry != 0 {
		b = putUvarint(b, uint64(*p.SessionExpiry))
	}
	if m&propAssignedClientID != 0 {
		b = putString(b, p.AssignedClientID)
	}
	if m&propServerKeepAlive != 0 {
		b = putUvarint(b, uint64(*p.ServerKeepAlive))
	}
	if m&propAuthMethod != 0 {
		b = putString(b, p.AuthMethod)
	}
	if m&propAuthData != 0 {
		b = putBytes(b, p.AuthData)
	}
	if m&propRequestProblemInfo != 0 {
		b = append(b, *p.RequestProblemInfo)
	}
	if m&propWillDelay != 0 {
		b = putUvarint(b, uint64(*p.WillDelay))
	}
	if m&propRequestResponseInfo != 0 {
		b = append(b, *p.RequestResponseInfo)
	}
	if m&propResponseInfo != 0 {
		b = putString(b, p.ResponseInfo)
	}
	if m&propServerReference != 0 {
		b = putString(b, p.ServerReference)
	}
	if m&propReasonString != 0 {
		b = putString(b, p.ReasonString)
	}
	if m&propReceiveMaximum != 0 {
		b = putUvarint(b, uint64(*p.ReceiveMaximum))
	}
	if m&propTopicAliasMaximum != 0 {
		b = putUvarint(b, uint64(*p.TopicAliasMaximum))
	}
	if m&propTopicAlias != 0 {
		b = putUvarint(b, uint64(*p.TopicAlias))
	}
	if m&propMaximumQoS != 0 {
		b = append(b, *p.MaximumQoS)
	}
	if m&propRetainAvailable != 0 {
		b = append(b, *p.RetainAvailable)
	}
	if m&propUser != 0 {
		b = putUvarint(b, uint64(len(p.User)))
		for _, u := range p.User {
			b = putString(putString(b, u.Key), u.Value)
		}
	}
	if m&propMaximumPacketSize != 0 {
		b = putUvarint(b, uint64(*p.MaximumPacketSize))
	}
	if m&propWildcardSubAvailable != 0 {
		b = append(b, *p.WildcardSubAvailable)
	}
	if m&propSubIDAvailable != 0 {
		b = append(b, *p.SubIDAvailable)
	}
	if m&propSharedSubAvailable != 0 {
		b = append(b, *p.SharedSubAvailable)
	}
	return b
}

func ptr[T any](v T) *T { return &v }

func (r *reader) properties(p *packet.Properties) {
	m := r.uvarint()
	if r.err != nil || m == 0 {
		return
	}
	if m&^propAll != 0 {
		r.fail("unknown properties 0x%x", m&^propAll)
		return
	}
	str := func(bit uint64) string {
		if m&bit == 0 {
			return ""
		}
		s := r.string()
		if s == "" && r.err == nil {
			r.fail("empty string property 0x%x", bit)
		}
		return s
	}
	if m&propPayloadFormat != 0 {
		p.PayloadFormat = ptr(r.byte())
	}
	if m&propMessageExpiry != 0 {
		p.MessageExpiry = ptr(r.u32())
	}
	p.ContentType = str(propContentType)
	p.ResponseTopic = str(propResponseTopic)
	if m&propCorrelationData != 0 {
		p.CorrelationData = r.bytes()
		if p.CorrelationData == nil {
			r.fail("nil correlation data marked present")
		}
	}
	if m&propSubscriptionIDs != 0 {
		p.SubscriptionIDs = r.ints()
		if p.SubscriptionIDs == nil {
			r.fail("nil subscription ids marked present")
		}
	}
	if m&propSessionExpiry != 0 {
		p.SessionExpiry = ptr(r.u32())
	}
	p.AssignedClientID = str(propAssignedClientID)
	if m&propServerKeepAlive != 0 {
		p.ServerKeepAlive = ptr(r.u16())
	}
	p.AuthMethod = str(propAuthMethod)
	if m&propAuthData != 0 {
		p.AuthData = r.bytes()
		if p.AuthData == nil {
			r.fail("nil auth data marked present")
		}
	}
	if m&propRequestProblemInfo != 0 {
		p.RequestProblemInfo = ptr(r.byte())
	}
	if m&propWillDelay != 0 {
		p.WillDelay = ptr(r.u32())
	}
	if m&propRequestResponseInfo != 0 {
		p.RequestResponseInfo = ptr(r.byte())
	}
	p.ResponseInfo = str(propResponseInfo)
	p.ServerReference = str(propServerReference)
	p.ReasonString = str(propReasonString)
	if m&propReceiveMaximum != 0 {
		p.ReceiveMaximum = ptr(r.u16())
	}
	if m&propTopicAliasMaximum != 0 {
		p.TopicAliasMaximum = ptr(r.u16())
	}
	if m&propTopicAlias != 0 {
		p.TopicAlias = ptr(r.u16())
	}
	if m&propMaximumQoS != 0 {
		p.MaximumQoS = ptr(r.byte())
	}
	if m&propRetainAvailable != 0 {
		p.RetainAvailable = ptr(r.byte())
	}
	if m&propUser != 0 {
		n := r.uvarint()
		if n > uint64(len(r.b)/2) {
			r.fail("user property count %d exceeds the %d bytes left", n, len(r.b))
			return
		}
		p.User = make([]packet.UserProperty, n)
		for i := range p.User {
			p.User[i].Key = r.string()
			p.User[i].Value = r.string()
		}
	}
	if m&propMaximumPacketSize != 0 {
		p.MaximumPacketSize = ptr(r.u32())
	}
	if m&propWildcardSubAvailable != 0 {
		p.WildcardSubAvailable = ptr(r.byte())
	}
	if m&propSubIDAvailable != 0 {
		p.SubIDAvailable = ptr(r.byte())
	}
	if m&propSharedSubAvailable != 0 {
		p.SharedSubAvailable = ptr(r.byte())
	}
}

// Session record: format, flags (1 HasUsername, 2 Will), Expiry,
// DisconnectedAt, Username, WillAt, then the will if flagged: Topic,
// Payload, QoS, flags (1 Retain), Properties. The client id is in the key.
const (
	sessHasUsername = 1 << iota
	sessWill
)

func encodeSession(b []byte, s *broker.SessionRecord) []byte {
	var f byte
	if s.HasUsername {
		f |= sessHasUsername
	}
	if s.Will != nil {
		f |= sessWill
	}
	b = append(b, recordV1, f)
	b = putUvarint(b, uint64(s.Expiry))
	b = putTime(b, s.DisconnectedAt)
	b = putString(b, s.Username)
	b = putTime(b, s.WillAt)
	if w := s.Will; w != nil {
		b = putString(b, w.Topic)
		b = putBytes(b, w.Payload)
		b = append(b, w.QoS, boolByte(w.Retain))
		b = putProperties(b, &w.Properties)
	}
	return b
}

func decodeSession(clientID string, v []byte) (*broker.SessionRecord, error) {
	r := reader{b: v}
	r.format()
	f := r.flags(sessHasUsername | sessWill)
	s := &broker.SessionRecord{ClientID: clientID, HasUsername: f&sessHasUsername != 0}
	s.Expiry = r.u32()
	s.DisconnectedAt = r.time()
	s.Username = r.string()
	s.WillAt = r.time()
	if f&sessWill != 0 && r.err == nil {
		w := &packet.Will{}
		w.Topic = r.string()
		w.Payload = r.bytes()
		w.QoS = r.byte()
		w.Retain = r.flags(1) != 0
		r.properties(&w.Properties)
		s.Will = w
	}
	return s, r.end()
}

// Subscription record: format, QoS, flags (1 NoLocal, 2 RetainAsPublished),
// RetainHandling, SubscriptionID. The filter is in the key.
func encodeSubscription(b []byte, s *broker.SubscriptionRecord) []byte {
	f := boolByte(s.NoLocal) | boolByte(s.RetainAsPublished)<<1
	b = append(b, recordV1, s.QoS, f, s.RetainHandling)
	return putVarint(b, int64(s.SubscriptionID))
}

func decodeSubscription(filter string, v []byte) (*broker.SubscriptionRecord, error) {
	r := reader{b: v}
	r.format()
	s := &broker.SubscriptionRecord{Filter: filter}
	s.QoS = r.byte()
	f := r.flags(3)
	s.NoLocal, s.RetainAsPublished = f&1 != 0, f&2 != 0
	s.RetainHandling = r.byte()
	s.SubscriptionID = r.int()
	return s, r.end()
}

// Message: [Topic], Payload, QoS, flags (1 Retain), Properties, ExpiresAt,
// Origin. A retained message's topic is in its key.
func putMessage(b []byte, m *broker.MessageRecord, withTopic bool) []byte {
	if withTopic {
		b = putString(b, m.Topic)
	}
	b = putBytes(b, m.Payload)
	b = append(b, m.QoS, boolByte(m.Retain))
	b = putProperties(b, &m.Properties)
	b = putTime(b, m.ExpiresAt)
	return putString(b, m.Origin)
}

func (r *reader) message(m *broker.MessageRecord, withTopic bool) {
	if withTopic {
		m.Topic = r.string()
	}
	m.Payload = r.bytes()
	m.QoS = r.byte()
	m.Retain = r.flags(1) != 0
	r.properties(&m.Properties)
	m.ExpiresAt = r.time()
	m.Origin = r.string()
}

func encodeRetained(b []byte, m *broker.MessageRecord) []byte {
	return putMessage(append(b, recordV1), m, false)
}

func decodeRetained(topic string, v []byte) (*broker.MessageRecord, error) {
	r := reader{b: v}
	r.format()
	m := &broker.MessageRecord{}
	r.message(m, false)
	m.Topic = topic
	return m, r.end()
}

// Delivery record: format, QoS, flags (1 Retain, 2 Sent), PacketID, State,
// SubIDs, Message with its topic. Seq is in the key.
func encodeDelivery(b []byte, d *broker.DeliveryRecord) []byte {
	b = append(b, recordV1, d.QoS, boolByte(d.Retain)|boolByte(d.Sent)<<1)
	b = putUvarint(b, uint64(d.PacketID))
	b = append(b, d.State)
	b = putInts(b, d.SubIDs)
	return putMessage(b, &d.Message, true)
}

func decodeDelivery(seq uint64, v []byte) (*broker.DeliveryRecord, error) {
	r := reader{b: v}
	r.format()
	d := &broker.DeliveryRecord{Seq: seq}
	d.QoS = r.byte()
	f := r.flags(3)
	d.Retain, d.Sent = f&1 != 0, f&2 != 0
	d.PacketID = r.u16()
	d.State = r.byte()
	d.SubIDs = r.ints()
	r.message(&d.Message, true)
	return d, r.end()
}

// Incoming QoS 2 record: just the format byte; the packet id is in the key.
func encodeIncoming(b []byte) []byte { return append(b, recordV1) }

func decodeIncoming(v []byte) error {
	r := reader{b: v}
	r.format()
	return r.end()
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// dispatch decodes one stored key and value and hands the record to l.
// Errors from decoding wrap ErrCorrupt and name the key; errors from l are
// returned as they are.
func dispatch(key, val []byte, l broker.Loader) error {
	corrupt := func(err error) error {
		return fmt.Errorf("%w: key %q: %v", ErrCorrupt, key, err)
	}
	if len(key) == 0 {
		return corrupt(errors.New("empty key"))
	}
	switch key[0] {
	case keyVersion[0]:
		switch string(key) {
		case string(keyVersion):
			return nil
		case string(keyCounters):
			c, err := decodeCounters(val)
			if err != nil {
				return corrupt(err)
			}
			if cl, ok := l.(broker.CountersLoader); ok {
				return cl.Counters(c)
			}
			return nil
		}
		return corrupt(errors.New("unknown meta key"))
	case prefixRetained:
		m, err := decodeRetained(string(key[1:]), val)
		if err != nil {
			return corrupt(err)
		}
		return l.Retained(m)
	case prefixSession:
		k, err := parseSessionKey(key)
		if err != nil {
			return corrupt(err)
		}
		switch k.suffix {
		case suffixSession:
			s, err := decodeSession(k.clientID, val)
			if err != nil {
				return corrupt(err)
			}
			return l.Session(s)
		case suffixSubscription:
			s, err := decodeSubscription(string(k.rest), val)
			if err != nil {
				return corrupt(err)
			}
			return l.Subscription(k.clientID, s)
		case suffixDelivery:
			d, err := decodeDelivery(binary.BigEndian.Uint64(k.rest), val)
			if err != nil {
				return corrupt(err)
			}
			return l.Delivery(k.clientID, d)
		default: // suffixIncoming; parseSessionKey refuses others
			if err := decodeIncoming(val); err != nil {
				return corrupt(err)
			}
			return l.IncomingQoS2(k.clientID, binary.BigEndian.Uint16(k.rest))
		}
	default:
		return corrupt(errors.New("unknown key prefix"))
	}
}

// encodedOp is an Op turned into its key and value (nil value: delete;
// non-nil end: range delete [key, end)).
type encodedOp struct {
	key, val, end []byte
}

// encodeOp appends op's key and value to buf and returns the encodedOp
// slicing buf. It validates op, so that a batch is rejected before any of
// it is applied.
func encodeOp(buf []byte, op *broker.Op) ([]byte, encodedOp, error) {
	var e encodedOp
	var err error
	start := len(buf)
	mark := func() []byte { return buf[start:len(buf):len(buf)] }
	switch op.Kind {
	case broker.OpPutSession:
		if op.Session == nil {
			return buf, e, errors.New("store: OpPutSession without a session record")
		}
		if buf, err = sessionKey(buf, op.Session.ClientID); err != nil {
			return buf, e, err
		}
		e.key = mark()
		start = len(buf)
		buf = encodeSession(buf, op.Session)
		e.val = mark()
	case broker.OpDeleteSession:
		s, end, err := sessionRange(op.ClientID)
		if err != nil {
			return buf, e, err
		}
		e.key, e.end = s, end
	case broker.OpPutSubscription:
		if op.Subscription == nil {
			return buf, e, errors.New("store: OpPutSubscription without a subscription record")
		}
		if buf, err = subscriptionKey(buf, op.ClientID, op.Subscription.Filter); err != nil {
			return buf, e, err
		}
		e.key = mark()
		start = len(buf)
		buf = encodeSubscription(buf, op.Subscription)
		e.val = mark()
	case broker.OpDeleteSubscription:
		if buf, err = subscriptionKey(buf, op.ClientID, op.Filter); err != nil {
			return buf, e, err
		}
		e.key = mark()
	case broker.OpPutDelivery:
		if op.Delivery == nil {
			return buf, e, errors.New("store: OpPutDelivery without a delivery record")
		}
		if buf, err = deliveryKey(buf, op.ClientID, op.Delivery.Seq); err != nil {
			return buf, e, err
		}
		e.key = mark()
		start = len(buf)
		buf = encodeDelivery(buf, op.Delivery)
		e.val = mark()
	case broker.OpDeleteDelivery:
		if buf, err = deliveryKey(buf, op.ClientID, op.Seq); err != nil {
			return buf, e, err
		}
		e.key = mark()
	case broker.OpPutIncoming, broker.OpDeleteIncoming:
		if buf, err = incomingKey(buf, op.ClientID, op.PacketID); err != nil {
			return buf, e, err
		}
		e.key = mark()
		if op.Kind == broker.OpPutIncoming {
			start = len(buf)
			buf = encodeIncoming(buf)
			e.val = mark()
		}
	case broker.OpPutRetained:
		if op.Retained == nil {
			return buf, e, errors.New("store: OpPutRetained without a message record")
		}
		buf = retainedKey(buf, op.Retained.Topic)
		e.key = mark()
		start = len(buf)
		buf = encodeRetained(buf, op.Retained)
		e.val = mark()
	case broker.OpDeleteRetained:
		buf = retainedKey(buf, op.Topic)
		e.key = mark()
	case broker.OpPutCounters:
		if op.Counters == nil {
			return buf, e, errors.New("store: OpPutCounters without counters")
		}
		buf = append(buf, keyCounters...)
		e.key = mark()
		start = len(buf)
		buf = encodeCounters(buf, op.Counters)
		e.val = mark()
	default:
		return buf, e, fmt.Errorf("store: unknown op kind %d", op.Kind)
	}
	return buf, e, nil
}

// encodeCounters appends the counters record: the format byte, then each
// counter as a uvarint.
func encodeCounters(buf []byte, c *broker.CountersRecord) []byte {
	buf = append(buf, recordV1)
	for _, v := range []uint64{c.MessagesReceived, c.MessagesSent, c.PublishReceived, c.PublishSent,
		c.PublishDropped, c.BytesReceived, c.BytesSent, c.ConnectionsAccepted} {
		buf = binary.AppendUvarint(buf, v)
	}
	return buf
}

func decodeCounters(val []byte) (*broker.CountersRecord, error) {
	if len(val) == 0 || val[0] != recordV1 {
		return nil, errors.New("unknown counters format")
	}
	val = val[1:]
	var c broker.CountersRecord
	for _, p := range []*uint64{&c.MessagesReceived, &c.MessagesSent, &c.PublishReceived, &c.PublishSent,
		&c.PublishDropped, &c.BytesReceived, &c.BytesSent, &c.ConnectionsAccepted} {
		v, n := binary.Uvarint(val)
		if n <= 0 {
			return nil, errors.New("truncated counters")
		}
		*p, val = v, val[n:]
	}
	return &c, nil
}
