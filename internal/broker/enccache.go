package broker

import (
	"time"

	"github.com/starlingmq/starling/internal/packet"
	"github.com/starlingmq/starling/internal/session"
)

// encCache holds the encodings of one message made while it is routed, so
// that the message is encoded once per (version, QoS, retain flag) and
// copied into each subscriber's buffer, with its packet identifier patched
// in. Deliveries that need their own bytes (subscription identifiers,
// outgoing topic aliases, DUP) are encoded on their own. It is owned by one
// route call at a time.
type encCache struct {
	batch     *Batch          // store writes of this route; nil without a store
	added     []pendingSend   // deliveries held until the batch is written
	congested []chan struct{} // congested sessions the acknowledgement waits for

	msg       *session.Message
	ephemeral bool             // msg's memory is reused after the route
	stable    *session.Message // msg's copy, once one was needed
	n         int
	e         [6]encoded
}

// keep returns the message to store in a session: msg itself, or when it is
// ephemeral, a copy made on first use and shared by every session.
func (ec *encCache) keep() *session.Message {
	if !ec.ephemeral {
		return ec.msg
	}
	if ec.stable == nil {
		ec.stable = stableCopy(ec.msg)
	}
	return ec.stable
}

// pendingSend is a delivery given to a durable session during a route.
type pendingSend struct {
	s *sess
	d *session.Delivery
}

type encoded struct {
	v      packet.Version
	qos    byte
	retain bool
	ok     bool
	buf    []byte
	idOff  int // offset of the packet identifier; 0 for QoS 0
}

func (ec *encCache) reset(msg *session.Message) {
	ec.msg = msg
	ec.stable = nil
	ec.ephemeral = false
	for i := range ec.n {
		ec.e[i].buf = ec.e[i].buf[:0]
		if cap(ec.e[i].buf) > 64<<10 {
			ec.e[i].buf = nil
		}
	}
	ec.n = 0
}

// get returns the encoding for (v, qos, retain), making it on first use;
// nil when the cache is full or the message cannot be encoded.
func (ec *encCache) get(v packet.Version, qos byte, retain bool, now time.Time) *encoded {
	for i := range ec.n {
		if e := &ec.e[i]; e.v == v && e.qos == qos && e.retain == retain {
			if !e.ok {
				return nil
			}
			return e
		}
	}
	if ec.n == len(ec.e) {
		return nil
	}
	e := &ec.e[ec.n]
	ec.n++
	e.v, e.qos, e.retain = v, qos, retain
	m := ec.msg
	p := packet.Publish{QoS: qos, Retain: retain, Topic: m.Topic, Payload: m.Payload}
	if qos > 0 {
		p.PacketID = 1
	}
	var expiry uint32
	if v == packet.V5 {
		p.Properties = m.Properties
		if rem, ok := m.RemainingExpiry(now); ok {
			expiry = rem
			p.Properties.MessageExpiry = &expiry
		}
	}
	buf, err := p.AppendTo(e.buf[:0], v)
	e.buf = buf
	e.ok = err == nil
	if !e.ok {
		return nil
	}
	if qos > 0 {
		// fixed header: type byte and the remaining length's varint
		hdr := 2
		for buf[hdr-1]&0x80 != 0 {
			hdr++
		}
		e.idOff = hdr + 2 + len(m.Topic)
	}
	return e
}
