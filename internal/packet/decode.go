package packet

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"unicode/utf8"
)

// ReadPacket reads exactly one packet from r. v is the connection's
// negotiated protocol version; before CONNECT has been read the caller
// passes 0, and CONNECT is always decoded by the version it carries.
//
// The fixed header is read byte by byte (through io.ByteReader when r
// implements it, so wrap a net.Conn in a bufio.Reader). If maxSize > 0 and
// the whole packet, fixed header included, is larger, ReadPacket returns an
// error wrapping PacketTooLarge without reading the body; the connection is
// then out of step and must be closed.
//
// The body is read into a buffer allocated for this packet alone; []byte
// fields of the result (Publish.Payload, Will.Payload, Password,
// CorrelationData, AuthData) alias it and it is never reused. Strings are
// copies.
//
// A clean end of stream before the first byte returns io.EOF; an end of
// stream inside a packet returns an error wrapping io.ErrUnexpectedEOF.
// Other errors wrap a ReasonCode (see Decode).
func ReadPacket(r io.Reader, v Version, maxSize int) (Packet, error) {
	first, remaining, err := readHeader(r, v, maxSize)
	if err != nil {
		return nil, err
	}
	body, err := readBody(r, remaining)
	if err != nil {
		return nil, bodyErr(first, remaining, err)
	}
	return decodeBody(first, body, v)
}

// readHeader reads the fixed header and checks the packet's size.
func readHeader(r io.Reader, v Version, maxSize int) (first byte, remaining int, err error) {
	br, ok := r.(io.ByteReader)
	if !ok {
		br = &byteReader{r: r}
	}
	first, err = br.ReadByte()
	if err != nil {
		return 0, 0, err
	}
	if err := checkFirst(first, v); err != nil {
		return 0, 0, err
	}
	size := 0
	for i := 0; size == 0; i++ {
		b, err := br.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return 0, 0, fmt.Errorf("packet: %s: reading remaining length: %w", Type(first>>4), err)
		}
		var done bool
		if remaining, done, err = addVarintByte(remaining, i, b); err != nil {
			return 0, 0, fmt.Errorf("packet: %s: remaining length: %w", Type(first>>4), err)
		}
		if done {
			size = i + 2
		}
	}
	total := size + remaining
	if maxSize > 0 && total > maxSize {
		return 0, 0, fmt.Errorf("packet: %s of %d bytes exceeds the maximum packet size %d: %w",
			Type(first>>4), total, maxSize, PacketTooLarge)
	}
	return first, remaining, nil
}

func bodyErr(first byte, remaining int, err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("packet: %s: reading %d byte body: %w", Type(first>>4), remaining, err)
}

// Reader reads the packets of one connection and reuses what it can: a
// PUBLISH it returns, its Topic, Payload and every other field, is valid
// only until the next call of ReadPacket, which may overwrite it. A topic
// name equal to the previous one is not allocated again. Other packet types
// are allocated afresh, as by the function ReadPacket. The body buffer is
// given back to a pool before ReadPacket waits for the next packet, so an
// idle connection holds none. A Reader is used by one goroutine.
type Reader struct {
	r     io.Reader
	pool  *sync.Pool
	body  *[]byte
	pub   *Publish // made on the first PUBLISH: a subscriber never needs it
	topic string
}

var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxPooledBody is the largest PUBLISH body read into a pooled buffer.
const maxPooledBody = 16 << 10

// NewReader returns a Reader of r (wrap a net.Conn in something with
// ReadByte, such as bufio.Reader).
func NewReader(r io.Reader) *Reader {
	return &Reader{r: r, pool: &bodyPool}
}

// ReadPacket reads one packet as the function ReadPacket does, reusing the
// Reader's PUBLISH and buffers.
func (rd *Reader) ReadPacket(v Version, maxSize int) (Packet, error) {
	if rd.body != nil {
		rd.pool.Put(rd.body)
		rd.body = nil
	}
	if rd.pub != nil {
		rd.pub.Payload = nil
		rd.pub.Properties = Properties{}
	}
	first, remaining, err := readHeader(rd.r, v, maxSize)
	if err != nil {
		return nil, err
	}
	if Type(first>>4) != PUBLISH || remaining > maxPooledBody {
		body, err := readBody(rd.r, remaining)
		if err != nil {
			return nil, bodyErr(first, remaining, err)
		}
		return decodeBody(first, body, v)
	}
	bp := rd.pool.Get().(*[]byte)
	if cap(*bp) < remaining {
		*bp = make([]byte, remaining)
	}
	body := (*bp)[:remaining]
	rd.body = bp
	if _, err := io.ReadFull(rd.r, body); err != nil {
		return nil, bodyErr(first, remaining, err)
	}
	d := decoder{b: body}
	if rd.pub == nil {
		rd.pub = new(Publish)
	}
	d.publishInto(rd.pub, first, v, &rd.topic)
	if d.err != nil {
		return nil, fmt.Errorf("packet: PUBLISH: %w", d.err)
	}
	return rd.pub, nil
}

// byteReader reads single bytes from an io.Reader that has no ReadByte.
type byteReader struct {
	r io.Reader
	b [1]byte
}

func (br *byteReader) ReadByte() (byte, error) {
	_, err := io.ReadFull(br.r, br.b[:])
	return br.b[0], err
}

// readBody reads n bytes. Large bodies are read in growing chunks so that a
// peer cannot make us allocate a quarter of a gigabyte by sending a few
// header bytes.
func readBody(r io.Reader, n int) ([]byte, error) {
	const chunk = 64 << 10
	if n <= chunk {
		buf := make([]byte, n)
		_, err := io.ReadFull(r, buf)
		return buf, err
	}
	buf := make([]byte, 0, chunk)
	for len(buf) < n {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(2*cap(buf), n))
			copy(grown, buf)
			buf = grown
		}
		k, err := io.ReadFull(r, buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+k]
		if err != nil {
			return nil, err
		}
	}
	return buf, nil
}

// Decode decodes one complete packet, fixed header included, from the
// start of buf and returns it with the number of bytes it used. v is as for
// ReadPacket. []byte fields of the result alias buf.
//
// If buf holds only part of a packet the error wraps io.ErrUnexpectedEOF and
// n is 0. Otherwise an error wraps the ReasonCode to send (MalformedPacket,
// ProtocolError, UnsupportedProtocolVersion, ...), found with errors.Is or
// errors.As, and n is the length of the bad packet when it is known. For a
// CONNECT with a known protocol name but an unsupported level, Decode
// returns a *Connect holding ProtocolName and Version together with an
// error wrapping UnsupportedProtocolVersion, so the server can answer with
// CONNACK [MQTT-3.1.2-2].
func Decode(buf []byte, v Version) (Packet, int, error) {
	if len(buf) == 0 {
		return nil, 0, fmt.Errorf("packet: empty buffer: %w", io.ErrUnexpectedEOF)
	}
	first := buf[0]
	if err := checkFirst(first, v); err != nil {
		return nil, 0, err
	}
	remaining, size := 0, 0
	for i := 0; size == 0; i++ {
		if 1+i >= len(buf) {
			return nil, 0, fmt.Errorf("packet: %s: incomplete remaining length: %w", Type(first>>4), io.ErrUnexpectedEOF)
		}
		var done bool
		var err error
		if remaining, done, err = addVarintByte(remaining, i, buf[1+i]); err != nil {
			return nil, 0, fmt.Errorf("packet: %s: remaining length: %w", Type(first>>4), err)
		}
		if done {
			size = i + 2
		}
	}
	total := size + remaining
	if len(buf) < total {
		return nil, 0, fmt.Errorf("packet: %s needs %d bytes, have %d: %w", Type(first>>4), total, len(buf), io.ErrUnexpectedEOF)
	}
	p, err := decodeBody(first, buf[size:total:total], v)
	return p, total, err
}

// DecodePublishInto decodes the PUBLISH at the start of buf into p,
// overwriting it, and returns the packet's length. Nothing is allocated
// for a topic name equal to *lastTopic (when lastTopic is not nil): that
// string is reused, and a new topic is stored there. The payload and
// binary properties alias buf. Errors are those of Decode; a packet of
// another type is MalformedPacket.
func DecodePublishInto(buf []byte, v Version, p *Publish, lastTopic *string) (int, error) {
	if len(buf) == 0 {
		return 0, fmt.Errorf("packet: empty buffer: %w", io.ErrUnexpectedEOF)
	}
	first := buf[0]
	if Type(first>>4) != PUBLISH {
		return 0, fmt.Errorf("packet: %s where a PUBLISH belongs: %w", Type(first>>4), MalformedPacket)
	}
	if err := checkFirst(first, v); err != nil {
		return 0, err
	}
	remaining, size := 0, 0
	for i := 0; size == 0; i++ {
		if 1+i >= len(buf) {
			return 0, fmt.Errorf("packet: PUBLISH: incomplete remaining length: %w", io.ErrUnexpectedEOF)
		}
		var done bool
		var err error
		if remaining, done, err = addVarintByte(remaining, i, buf[1+i]); err != nil {
			return 0, fmt.Errorf("packet: PUBLISH: remaining length: %w", err)
		}
		if done {
			size = i + 2
		}
	}
	total := size + remaining
	if len(buf) < total {
		return 0, fmt.Errorf("packet: PUBLISH needs %d bytes, have %d: %w", total, len(buf), io.ErrUnexpectedEOF)
	}
	d := decoder{b: buf[size:total:total]}
	d.publishInto(p, first, v, lastTopic)
	if d.err == nil && len(d.b) > 0 {
		d.fail(malformed("bytes after the PUBLISH payload"))
	}
	if d.err != nil {
		return 0, fmt.Errorf("packet: PUBLISH: %w", d.err)
	}
	return total, nil
}

// addVarintByte adds byte i (from 0) of a variable byte integer to n. The
// encoding may use at most four bytes and must be minimal [MQTT-1.5.5-1].
func addVarintByte(n, i int, b byte) (int, bool, error) {
	n |= int(b&0x7F) << (7 * i)
	if b&0x80 == 0 {
		if b == 0 && i > 0 {
			return 0, false, malformed("variable byte integer not minimally encoded")
		}
		return n, true, nil
	}
	if i == 3 {
		return 0, false, malformed("variable byte integer longer than four bytes")
	}
	return n, false, nil
}

// checkFirst validates the first byte of the fixed header: packet type and
// reserved flags [MQTT-2.1.3-1].
func checkFirst(first byte, v Version) error {
	t, flags := Type(first>>4), first&0x0F
	switch {
	case t == 0:
		return fmt.Errorf("packet: reserved packet type 0: %w", MalformedPacket)
	case t == CONNECT:
		if flags != 0 {
			return fmt.Errorf("packet: CONNECT: reserved flags 0x%X: %w", flags, MalformedPacket)
		}
		return nil
	case v != V31 && v != V311 && v != V5:
		// [MQTT-3.1.0-1] The first packet from the client must be CONNECT.
		return fmt.Errorf("packet: %s before CONNECT: %w", t, ProtocolError)
	case t == AUTH && v != V5:
		return fmt.Errorf("packet: AUTH is reserved in MQTT %s: %w", v, MalformedPacket)
	case t == PUBLISH:
		if flags&0x06 == 0x06 {
			return fmt.Errorf("packet: PUBLISH: QoS 3: %w", MalformedPacket) // [MQTT-3.3.1-4]
		}
		return nil
	case v == V31:
		// MQTT 3.1 gave every packet DUP, QoS and RETAIN bits and sent
		// PUBREL, SUBSCRIBE and UNSUBSCRIBE with QoS 1 and possibly DUP;
		// like mosquitto, accept whatever a 3.1 client sets.
		return nil
	case t == PUBREL || t == SUBSCRIBE || t == UNSUBSCRIBE:
		if flags != 0x02 {
			// [MQTT-3.6.1-1], [MQTT-3.8.1-1], [MQTT-3.10.1-1]
			return fmt.Errorf("packet: %s: reserved flags 0x%X, want 0x2: %w", t, flags, MalformedPacket)
		}
		return nil
	case flags != 0:
		return fmt.Errorf("packet: %s: reserved flags 0x%X: %w", t, flags, MalformedPacket)
	}
	return nil
}

func malformed(msg string) error { return fmt.Errorf("%s: %w", msg, MalformedPacket) }

func protocolError(msg string) error { return fmt.Errorf("%s: %w", msg, ProtocolError) }

// decoder reads fields from a packet body. The first error sticks and
// later reads return zero values, so a decode function can read a run of
// fields and check d.err once.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *decoder) need(n int) bool {
	if d.err != nil {
		return false
	}
	if len(d.b) < n {
		d.fail(malformed("packet too short"))
		return false
	}
	return true
}

func (d *decoder) u8() byte {
	if !d.need(1) {
		return 0
	}
	b := d.b[0]
	d.b = d.b[1:]
	return b
}

func (d *decoder) u16() uint16 {
	if !d.need(2) {
		return 0
	}
	n := binary.BigEndian.Uint16(d.b)
	d.b = d.b[2:]
	return n
}

func (d *decoder) u32() uint32 {
	if !d.need(4) {
		return 0
	}
	n := binary.BigEndian.Uint32(d.b)
	d.b = d.b[4:]
	return n
}

func (d *decoder) varint() int {
	n := 0
	for i := 0; ; i++ {
		b := d.u8()
		if d.err != nil {
			return 0
		}
		var done bool
		var err error
		if n, done, err = addVarintByte(n, i, b); err != nil {
			d.fail(err)
			return 0
		}
		if done {
			return n
		}
	}
}

// bin reads two-byte-length binary data [MQTT-1.5.6]. The result aliases
// the body, is never nil and has no spare capacity.
func (d *decoder) bin() []byte {
	n := int(d.u16())
	if !d.need(n) {
		return nil
	}
	if n == 0 {
		return []byte{}
	}
	b := d.b[:n:n]
	d.b = d.b[n:]
	return b
}

// str reads a UTF-8 encoded string. It must be well formed, which excludes
// surrogates, and must not contain U+0000 [MQTT-1.5.4-1], [MQTT-1.5.4-2].
func (d *decoder) str() string {
	b := d.bin()
	if d.err != nil {
		return ""
	}
	if !validUTF8(b) {
		d.fail(malformed("string is not well-formed UTF-8 or contains U+0000"))
		return ""
	}
	return string(b)
}

func validUTF8(b []byte) bool {
	return bytes.IndexByte(b, 0) < 0 && utf8.Valid(b)
}

// rest returns the unread bytes, or nil if there are none.
func (d *decoder) rest() []byte {
	if d.err != nil || len(d.b) == 0 {
		return nil
	}
	b := d.b[:len(d.b):len(d.b)]
	d.b = d.b[len(d.b):]
	return b
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// decodeBody decodes the variable header and payload of a packet whose
// first header byte checkFirst accepted.
func decodeBody(first byte, body []byte, v Version) (Packet, error) {
	d := decoder{b: body}
	t := Type(first >> 4)
	var p Packet
	switch t {
	case CONNECT:
		c, err := d.connect()
		switch {
		case err == nil:
			return c, nil
		case c != nil: // unsupported protocol level: the caller still needs c
			return c, fmt.Errorf("packet: CONNECT: %w", err)
		}
		return nil, fmt.Errorf("packet: CONNECT: %w", err) // never a typed nil in the interface
	case CONNACK:
		p = d.connack(v)
	case PUBLISH:
		p = d.publish(first, v)
	case PUBACK:
		a := &Puback{}
		d.ack(t, v, &a.PacketID, &a.ReasonCode, &a.Properties)
		p = a
	case PUBREC:
		a := &Pubrec{}
		d.ack(t, v, &a.PacketID, &a.ReasonCode, &a.Properties)
		p = a
	case PUBREL:
		a := &Pubrel{}
		d.ack(t, v, &a.PacketID, &a.ReasonCode, &a.Properties)
		p = a
	case PUBCOMP:
		a := &Pubcomp{}
		d.ack(t, v, &a.PacketID, &a.ReasonCode, &a.Properties)
		p = a
	case SUBSCRIBE:
		p = d.subscribe(v)
	case SUBACK:
		p = d.suback(v)
	case UNSUBSCRIBE:
		p = d.unsubscribe(v)
	case UNSUBACK:
		p = d.unsuback(v)
	case PINGREQ:
		p = &Pingreq{}
	case PINGRESP:
		p = &Pingresp{}
	case DISCONNECT:
		x := &Disconnect{}
		if v == V5 {
			d.reasonAndProps(t, &x.ReasonCode, &x.Properties, inDisconnect)
		}
		p = x
	case AUTH:
		x := &Auth{}
		d.reasonAndProps(t, &x.ReasonCode, &x.Properties, inAuth)
		p = x
	default:
		return nil, fmt.Errorf("packet: type %d: %w", t, MalformedPacket)
	}
	if d.err == nil && len(d.b) > 0 {
		// Covers PINGREQ, PINGRESP and 3.x DISCONNECT with a body too.
		d.fail(malformed(fmt.Sprintf("%d unexpected trailing bytes", len(d.b))))
	}
	if d.err != nil {
		return nil, fmt.Errorf("packet: %s: %w", t, d.err)
	}
	return p, nil
}

// connect decodes CONNECT [MQTT-3.1]. It returns a partial *Connect with an
// error only for an unsupported protocol level.
func (d *decoder) connect() (*Connect, error) {
	name := d.str()
	level := d.u8()
	if d.err != nil {
		return nil, d.err
	}
	c := &Connect{ProtocolName: name, Version: Version(level)}
	switch {
	case name == "MQTT" && (level == 4 || level == 5), name == "MQIsdp" && level == 3:
	case name == "MQTT" || name == "MQIsdp":
		// [MQTT-3.1.2-2] Answer with CONNACK 0x01 (3.x) or 0x84 (5.0).
		return c, fmt.Errorf("protocol level %d: %w", level, UnsupportedProtocolVersion)
	default:
		// [MQTT-3.1.2-1]
		return nil, malformed(fmt.Sprintf("unknown protocol name %q", name))
	}
	v := c.Version
	flags := d.u8()
	c.KeepAlive = d.u16()
	if d.err != nil {
		return nil, d.err
	}
	if flags&0x01 != 0 {
		return nil, malformed("reserved connect flag set") // [MQTT-3.1.2-3]
	}
	c.CleanStart = flags&0x02 != 0
	willFlag := flags&0x04 != 0
	willQoS := flags >> 3 & 0x03
	willRetain := flags&0x20 != 0
	c.PasswordFlag = flags&0x40 != 0
	c.UsernameFlag = flags&0x80 != 0
	if willQoS == 3 {
		return nil, malformed("will QoS 3") // [MQTT-3.1.2-14]
	}
	if !willFlag && (willQoS != 0 || willRetain) {
		return nil, malformed("will QoS or retain set without will flag") // [MQTT-3.1.2-13], [MQTT-3.1.2-15]
	}
	if v != V5 && c.PasswordFlag && !c.UsernameFlag {
		return nil, malformed("password flag set without user name flag") // [MQTT-3.1.2-22]
	}
	if v == V5 {
		d.props(&c.Properties, inConnect)
		if d.err == nil && c.Properties.AuthData != nil && c.Properties.AuthMethod == "" {
			// 3.1.2.11.10: Authentication Data without Authentication
			// Method is a Protocol Error.
			return nil, protocolError("authentication data without authentication method")
		}
	}
	c.ClientID = d.str() // [MQTT-3.1.3-4]
	if willFlag {
		w := &Will{QoS: willQoS, Retain: willRetain}
		if v == V5 {
			d.props(&w.Properties, inWill)
		}
		w.Topic = d.str()
		w.Payload = nilIfEmpty(d.bin())
		c.Will = w
	}
	if c.UsernameFlag {
		c.Username = d.str() // [MQTT-3.1.3-11]
	}
	if c.PasswordFlag {
		// MQTT 3.1 clients may set the password flag and send no password;
		// like mosquitto, accept that.
		if v != V31 || d.err != nil || len(d.b) > 0 {
			c.Password = nilIfEmpty(d.bin())
		}
	}
	if d.err == nil && len(d.b) > 0 {
		d.fail(malformed(fmt.Sprintf("%d unexpected trailing bytes", len(d.b))))
	}
	if d.err != nil {
		return nil, d.err
	}
	return c, nil
}

// connackReasons maps 3.x connect return codes to MQTT 5 reason codes.
var connackReasons = [...]ReasonCode{Success, UnsupportedProtocolVersion, ClientIdentifierNotValid,
	ServerUnavailable, BadUsernameOrPassword, NotAuthorized}

func (d *decoder) connack(v Version) *Connack {
	c := &Connack{}
	flags := d.u8()
	code := d.u8()
	if d.err != nil {
		return nil
	}
	if v != V31 { // 3.1 had no session present flag; the byte was unused
		if flags&0xFE != 0 {
			d.fail(malformed("reserved connect acknowledge flags set")) // [MQTT-3.2.2-1]
			return nil
		}
		c.SessionPresent = flags == 1
	}
	if v != V5 {
		if int(code) >= len(connackReasons) {
			d.fail(malformed(fmt.Sprintf("reserved connect return code %d", code)))
			return nil
		}
		c.ReasonCode = connackReasons[code]
		return c
	}
	c.ReasonCode = ReasonCode(code)
	if !validReason(CONNACK, c.ReasonCode) {
		d.fail(protocolError(fmt.Sprintf("reason code 0x%02X not valid in CONNACK", code)))
		return nil
	}
	d.props(&c.Properties, inConnack)
	return c
}

func (d *decoder) publish(first byte, v Version) *Publish {
	p := &Publish{}
	d.publishInto(p, first, v, nil)
	if d.err != nil {
		return nil
	}
	return p
}

// publishInto decodes a PUBLISH into p. When last is not nil and the topic
// name equals *last, that string is reused instead of a new one.
func (d *decoder) publishInto(p *Publish, first byte, v Version, last *string) {
	*p = Publish{Dup: first&0x08 != 0, QoS: first >> 1 & 0x03, Retain: first&0x01 != 0}
	if p.Dup && p.QoS == 0 && v != V31 {
		d.fail(malformed("DUP set on a QoS 0 message")) // [MQTT-3.3.1-2]
		return
	}
	if last == nil {
		p.Topic = d.str() // [MQTT-3.3.2-1]
	} else {
		b := d.bin()
		switch {
		case d.err != nil:
		case string(b) == *last:
			p.Topic = *last
		case !validUTF8(b):
			d.fail(malformed("string is not well-formed UTF-8 or contains U+0000"))
		default:
			p.Topic = string(b)
			*last = p.Topic
		}
	}
	if p.QoS > 0 {
		p.PacketID = d.u16()
		if d.err == nil && p.PacketID == 0 {
			d.fail(protocolError("packet identifier 0")) // [MQTT-2.3.1-1] (3.1.1), [MQTT-2.2.1-3] (5.0)
		}
	}
	if v == V5 {
		d.props(&p.Properties, inPublish)
		if d.err == nil && p.Topic == "" && p.Properties.TopicAlias == nil {
			// 3.3.2.1: a zero-length Topic Name without a Topic Alias is a
			// Protocol Error.
			d.fail(protocolError("empty topic name without topic alias"))
		}
	}
	p.Payload = d.rest()
}

// ack decodes PUBACK, PUBREC, PUBREL and PUBCOMP. In MQTT 5 a remaining
// length of 2 means Success and no properties, 3 means no properties
// [MQTT-3.4.2.1], [MQTT-3.5.2.1], [MQTT-3.6.2.1], [MQTT-3.7.2.1].
func (d *decoder) ack(t Type, v Version, id *uint16, rc *ReasonCode, p *Properties) {
	*id = d.u16()
	if v == V5 && d.err == nil && len(d.b) > 0 {
		*rc = d.reason(t)
		if len(d.b) > 0 {
			d.props(p, inPuback)
		}
	}
}

// reasonAndProps decodes the MQTT 5 DISCONNECT and AUTH variable header,
// where a remaining length of 0 means Success and 1 means no properties
// [MQTT-3.14.2.1], [MQTT-3.15.2.1].
func (d *decoder) reasonAndProps(t Type, rc *ReasonCode, p *Properties, ctx propCtx) {
	if len(d.b) == 0 {
		return
	}
	*rc = d.reason(t)
	if len(d.b) > 0 {
		d.props(p, ctx)
	}
}

// reason reads an MQTT 5 reason code and checks that packet type t may
// carry it.
func (d *decoder) reason(t Type) ReasonCode {
	rc := ReasonCode(d.u8())
	if d.err == nil && !validReason(t, rc) {
		d.fail(protocolError(fmt.Sprintf("reason code 0x%02X not valid in %s", byte(rc), t)))
	}
	return rc
}

// validReason reports whether MQTT 5 lets packet type t carry rc (the
// reason code tables of sections 3.2.2.2 to 3.15.2.1).
func validReason(t Type, rc ReasonCode) bool {
	switch t {
	case CONNACK:
		switch rc {
		case Success, UnspecifiedError, MalformedPacket, ProtocolError, ImplementationSpecificError,
			UnsupportedProtocolVersion, ClientIdentifierNotValid, BadUsernameOrPassword, NotAuthorized,
			ServerUnavailable, ServerBusy, Banned, BadAuthenticationMethod, TopicNameInvalid,
			PacketTooLarge, QuotaExceeded, PayloadFormatInvalid, RetainNotSupported, QoSNotSupported,
			UseAnotherServer, ServerMoved, ConnectionRateExceeded:
			return true
		}
	case PUBACK, PUBREC:
		switch rc {
		case Success, NoMatchingSubscribers, UnspecifiedError, ImplementationSpecificError, NotAuthorized,
			TopicNameInvalid, PacketIdentifierInUse, QuotaExceeded, PayloadFormatInvalid:
			return true
		}
	case PUBREL, PUBCOMP:
		return rc == Success || rc == PacketIdentifierNotFound
	case SUBACK:
		switch rc {
		case GrantedQoS0, GrantedQoS1, GrantedQoS2, UnspecifiedError, ImplementationSpecificError,
			NotAuthorized, TopicFilterInvalid, PacketIdentifierInUse, QuotaExceeded,
			SharedSubscriptionsNotSupported, SubscriptionIdentifiersNotSupported,
			WildcardSubscriptionsNotSupported:
			return true
		}
	case UNSUBACK:
		switch rc {
		case Success, NoSubscriptionExisted, UnspecifiedError, ImplementationSpecificError,
			NotAuthorized, TopicFilterInvalid, PacketIdentifierInUse:
			return true
		}
	case DISCONNECT:
		switch rc {
		case NormalDisconnection, DisconnectWithWill, UnspecifiedError, MalformedPacket, ProtocolError,
			ImplementationSpecificError, NotAuthorized, ServerBusy, ServerShuttingDown,
			KeepAliveTimeout, SessionTakenOver, TopicFilterInvalid, TopicNameInvalid,
			ReceiveMaximumExceeded, TopicAliasInvalid, PacketTooLarge, MessageRateTooHigh,
			QuotaExceeded, AdministrativeAction, PayloadFormatInvalid, RetainNotSupported,
			QoSNotSupported, UseAnotherServer, ServerMoved, SharedSubscriptionsNotSupported,
			ConnectionRateExceeded, MaximumConnectTime, SubscriptionIdentifiersNotSupported,
			WildcardSubscriptionsNotSupported:
			return true
		}
	case AUTH:
		return rc == Success || rc == ContinueAuthentication || rc == ReAuthenticate
	}
	return false
}

func (d *decoder) packetID() uint16 {
	id := d.u16()
	if d.err == nil && id == 0 {
		d.fail(protocolError("packet identifier 0")) // [MQTT-2.3.1-1] (3.1.1), [MQTT-2.2.1-3] (5.0)
	}
	return id
}

func (d *decoder) subscribe(v Version) *Subscribe {
	s := &Subscribe{PacketID: d.packetID()}
	if v == V5 {
		d.props(&s.Properties, inSubscribe)
	}
	for d.err == nil && len(d.b) > 0 {
		filter := d.str() // [MQTT-3.8.3-1]
		opts := d.u8()
		if d.err != nil {
			break
		}
		sub := Subscription{Filter: filter, QoS: opts & 0x03}
		if v == V5 {
			switch {
			case opts&0xC0 != 0:
				d.fail(malformed("reserved subscription option bits set")) // [MQTT-3.8.3-5]
			case sub.QoS == 3:
				d.fail(protocolError("subscription QoS 3")) // 3.8.3.1
			case opts>>4&0x03 == 3:
				d.fail(protocolError("retain handling 3")) // 3.8.3.1
			}
			sub.NoLocal = opts&0x04 != 0
			sub.RetainAsPublished = opts&0x08 != 0
			sub.RetainHandling = opts >> 4 & 0x03
		} else if opts&0xFC != 0 || sub.QoS == 3 {
			d.fail(malformed("reserved bits set or QoS 3 in requested QoS")) // [MQTT-3-8.3-4]
		}
		s.Subscriptions = append(s.Subscriptions, sub)
	}
	if d.err == nil && len(s.Subscriptions) == 0 {
		// [MQTT-3.8.3-3] (3.1.1), [MQTT-3.8.3-2] (5.0)
		d.fail(protocolError("no topic filters"))
	}
	if d.err != nil {
		return nil
	}
	return s
}

func (d *decoder) suback(v Version) *Suback {
	s := &Suback{PacketID: d.u16()}
	if v == V5 {
		d.props(&s.Properties, inSuback)
	}
	codes := d.rest()
	if d.err != nil {
		return nil
	}
	if len(codes) == 0 {
		d.fail(protocolError("no reason codes")) // one per topic filter [MQTT-3.9.3-1]
		return nil
	}
	s.ReasonCodes = make([]ReasonCode, len(codes))
	for i, c := range codes {
		rc := ReasonCode(c)
		switch {
		case v == V5:
			if !validReason(SUBACK, rc) {
				d.fail(protocolError(fmt.Sprintf("reason code 0x%02X not valid in SUBACK", c)))
			}
		case rc > GrantedQoS2 && rc != UnspecifiedError:
			d.fail(malformed(fmt.Sprintf("reserved return code 0x%02X", c))) // [MQTT-3.9.3-2]
		}
		s.ReasonCodes[i] = rc
	}
	if d.err != nil {
		return nil
	}
	return s
}

func (d *decoder) unsubscribe(v Version) *Unsubscribe {
	u := &Unsubscribe{PacketID: d.packetID()}
	if v == V5 {
		d.props(&u.Properties, inUnsubscribe)
	}
	for d.err == nil && len(d.b) > 0 {
		f := d.str() // [MQTT-3.10.3-1]
		if d.err == nil {
			u.Filters = append(u.Filters, f)
		}
	}
	if d.err == nil && len(u.Filters) == 0 {
		// [MQTT-3.10.3-2]
		d.fail(protocolError("no topic filters"))
	}
	if d.err != nil {
		return nil
	}
	return u
}

func (d *decoder) unsuback(v Version) *Unsuback {
	u := &Unsuback{PacketID: d.u16()}
	if v != V5 {
		return u // 3.x UNSUBACK has no payload; trailing bytes are caught later
	}
	d.props(&u.Properties, inUnsuback)
	codes := d.rest()
	if d.err != nil {
		return nil
	}
	if len(codes) == 0 {
		d.fail(protocolError("no reason codes")) // one per topic filter [MQTT-3.11.3-1]
		return nil
	}
	u.ReasonCodes = make([]ReasonCode, len(codes))
	for i, c := range codes {
		if !validReason(UNSUBACK, ReasonCode(c)) {
			d.fail(protocolError(fmt.Sprintf("reason code 0x%02X not valid in UNSUBACK", c)))
			return nil
		}
		u.ReasonCodes[i] = ReasonCode(c)
	}
	return u
}
