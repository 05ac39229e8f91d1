package proto

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/starlingmq/starling/internal/packet"
)

// Primitive encodings. Unsigned integers are minimal uvarints, signed ones
// (times) zig-zag varints, strings and byte strings a uvarint length then
// the bytes, booleans bits of a flags byte, lists a uvarint count then the
// items.

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendBytes(dst []byte, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

func appendUvarint(dst []byte, v uint64) []byte { return binary.AppendUvarint(dst, v) }

func appendVarint(dst []byte, v int64) []byte { return binary.AppendVarint(dst, v) }

// maxSubID is the largest MQTT Subscription Identifier (a variable byte
// integer of at most four bytes).
const maxSubID = 268435455

func encErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrEncode}, args...)...)
}

// appendPublish appends p's MQTT 5 PUBLISH encoding, which delimits itself
// (fixed header with remaining length). Packet identifiers mean nothing
// between nodes, but the MQTT encoding of QoS 1 and 2 cannot carry 0, so
// 0 is sent as 1. A Topic Alias is per client connection and is refused.
func appendPublish(dst []byte, p *packet.Publish) ([]byte, error) {
	if p.Topic == "" {
		return dst, encErr("publish without a topic name")
	}
	if p.Properties.TopicAlias != nil {
		return dst, encErr("publish with a topic alias")
	}
	var err error
	if p.QoS > 0 && p.PacketID == 0 {
		q := *p
		q.PacketID = 1
		dst, err = q.AppendTo(dst, packet.V5)
	} else {
		dst, err = p.AppendTo(dst, packet.V5)
	}
	if err != nil {
		return dst, fmt.Errorf("%w: %w", ErrEncode, err)
	}
	return dst, nil
}

// decoder reads a frame body. The first problem is kept in err and every
// later read returns a zero value, so decoding code checks once at the end.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format+": %w", append(args, ErrMalformed)...)
	}
}

func (d *decoder) u8() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("truncated")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

// flags reads a flags byte; bits outside allowed are malformed, so that a
// meaning given to a bit later cannot be silently ignored by an older node.
func (d *decoder) flags(allowed byte) byte {
	f := d.u8()
	if f&^allowed != 0 {
		d.fail("unknown flags %#02x", f&^allowed)
		return 0
	}
	return f
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	switch {
	case n == 0:
		d.fail("truncated integer")
		return 0
	case n < 0:
		d.fail("integer overflows 64 bits")
		return 0
	case n > 1 && d.b[n-1] == 0:
		d.fail("non-minimal integer")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	u := d.uvarint()
	// Zig-zag, as binary.AppendVarint writes it.
	x := int64(u >> 1)
	if u&1 != 0 {
		x = ^x
	}
	return x
}

func (d *decoder) u32() uint32 {
	v := d.uvarint()
	if v > math.MaxUint32 {
		d.fail("integer %d exceeds 32 bits", v)
		return 0
	}
	return uint32(v)
}

func (d *decoder) u16() uint16 {
	v := d.uvarint()
	if v > math.MaxUint16 {
		d.fail("integer %d exceeds 16 bits", v)
		return 0
	}
	return uint16(v)
}

func (d *decoder) qos(what string) byte {
	v := d.u8()
	if v > 2 {
		d.fail("%s QoS %d", what, v)
		return 0
	}
	return v
}

// bin returns the next length-prefixed bytes, aliasing the frame.
func (d *decoder) bin() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("length %d beyond the frame", n)
		return nil
	}
	b := d.b[:n:n]
	d.b = d.b[n:]
	return b
}

// str returns the next string, a copy.
func (d *decoder) str() string { return string(d.bin()) }

// strLike returns the next string, reusing *last when the bytes are the
// same, so that a batch repeating one node name or client id allocates it
// once.
func (d *decoder) strLike(last *string) string {
	b := d.bin()
	if string(b) == *last {
		return *last
	}
	*last = string(b)
	return *last
}

// count reads a list length. Every item takes at least minSize bytes, so
// a count the rest of the frame cannot hold is refused before anything is
// allocated for it.
func (d *decoder) count(minSize int) int {
	n := d.uvarint()
	if d.err != nil {
		return 0
	}
	if n > uint64(len(d.b)/minSize) {
		d.fail("count %d beyond the frame", n)
		return 0
	}
	return int(n)
}

// publish decodes an MQTT 5 PUBLISH. Its payload aliases the frame.
func (d *decoder) publish() *packet.Publish {
	if d.err != nil {
		return nil
	}
	if len(d.b) == 0 {
		d.fail("truncated publish")
		return nil
	}
	p, n, err := packet.Decode(d.b, packet.V5)
	if err != nil {
		// Not wrapped: a truncated packet inside a whole frame is
		// malformed, not a reason to wait for more bytes.
		d.fail("publish: %v", err)
		return nil
	}
	pub, ok := p.(*packet.Publish)
	if !ok {
		d.fail("%s where a PUBLISH belongs", p.Type())
		return nil
	}
	if pub.Properties.TopicAlias != nil {
		d.fail("publish with a topic alias")
		return nil
	}
	d.b = d.b[n:]
	return pub
}

func (d *decoder) end() {
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d bytes after the message", len(d.b))
	}
}
