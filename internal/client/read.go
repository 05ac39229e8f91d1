package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/starlingmq/starling/internal/packet"
)

// readLoop reads and handles packets until the connection ends, then fails
// every pending operation and reports the end.
func (c *Client) readLoop() {
	defer c.wg.Done()
	for {
		pk, err := packet.ReadPacket(c.br, c.v, c.maxIn)
		if err != nil {
			var rc packet.ReasonCode
			if errors.As(err, &rc) && rc.IsError() {
				// A malformed or oversized packet: tell an MQTT 5 server why.
				c.protocolError(rc)
			}
			if c.disconnecting.Load() {
				c.fail(ErrClosed)
			} else {
				c.fail(fmt.Errorf("client: connection lost: %w", err))
			}
			break
		}
		if c.keepAlive > 0 {
			c.lastRecv.Store(time.Now().UnixNano())
		}
		if err := c.handle(pk); err != nil {
			c.fail(err)
			break
		}
	}
	<-c.closing
	err := c.err

	c.mu.Lock()
	c.closed = true
	pending := make([]*op, 0, len(c.ops)+len(c.waiting)-c.waitHead)
	for _, o := range c.ops {
		pending = append(pending, o)
	}
	for _, o := range c.waiting[c.waitHead:] {
		if !o.cancelled {
			pending = append(pending, o)
		}
	}
	c.ops, c.waiting, c.waitHead = nil, nil, 0
	c.mu.Unlock()
	for _, o := range pending {
		o.finish(0, nil, err)
	}
	if c.onDisconnect != nil {
		c.onDisconnect(c.serverDisc, err)
	}
	close(c.done)
}

// protocolError tells an MQTT 5 server why the client is hanging up, giving
// the writer a moment to send it.
func (c *Client) protocolError(rc packet.ReasonCode) {
	if c.v != packet.V5 {
		return
	}
	c.wmu.Lock()
	err := c.appendLocked(&packet.Disconnect{ReasonCode: rc}, false)
	target := c.wqueued
	c.wmu.Unlock()
	if err != nil {
		return
	}
	c.wake()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c.waitWritten(ctx, target)
}

// handle acts on one packet read from the server. An error ends the
// connection.
func (c *Client) handle(pk packet.Packet) error {
	switch p := pk.(type) {
	case *packet.Publish:
		return c.handlePublish(p)
	case *packet.Puback:
		return c.handleAck(packet.PUBACK, p.PacketID, p.ReasonCode, nil)
	case *packet.Pubrec:
		return c.handleAck(packet.PUBREC, p.PacketID, p.ReasonCode, nil)
	case *packet.Pubcomp:
		return c.handleAck(packet.PUBCOMP, p.PacketID, p.ReasonCode, nil)
	case *packet.Suback:
		return c.handleAck(packet.SUBACK, p.PacketID, 0, p)
	case *packet.Unsuback:
		return c.handleAck(packet.UNSUBACK, p.PacketID, 0, p)
	case *packet.Pubrel:
		rc := packet.Success
		if _, ok := c.recvQoS2[p.PacketID]; ok {
			delete(c.recvQoS2, p.PacketID)
		} else if c.v == packet.V5 {
			// [MQTT-3.7.2.1] the id is unknown (e.g. state from an
			// earlier connection); answer so the server can move on.
			rc = packet.PacketIdentifierNotFound
		}
		c.sendAck(packet.PUBCOMP, p.PacketID, rc)
		return nil
	case *packet.Pingresp:
		c.pingSent.Store(0)
		c.pings.Add(1)
		return nil
	case *packet.Disconnect:
		c.serverDisc = p
		return fmt.Errorf("client: disconnected by server: %w", p.ReasonCode)
	case *packet.Auth:
		c.protocolError(packet.ProtocolError)
		return fmt.Errorf("client: AUTH is not supported: %w", packet.ProtocolError)
	default:
		c.protocolError(packet.ProtocolError)
		return fmt.Errorf("client: unexpected %v from server: %w", pk.Type(), packet.ProtocolError)
	}
}

// handlePublish resolves topic aliases, delivers p and acknowledges it.
func (c *Client) handlePublish(p *packet.Publish) error {
	if a := p.Properties.TopicAlias; a != nil && c.v == packet.V5 {
		if *a == 0 || *a > c.aliasMax {
			// [MQTT-3.3.2-9] [MQTT-3.3.2-10]
			c.protocolError(packet.TopicAliasInvalid)
			return fmt.Errorf("client: server sent topic alias %d, maximum %d: %w", *a, c.aliasMax, packet.TopicAliasInvalid)
		}
		if p.Topic != "" {
			if c.aliases == nil {
				c.aliases = make(map[uint16]string)
			}
			c.aliases[*a] = p.Topic
		} else {
			t, ok := c.aliases[*a]
			if !ok {
				c.protocolError(packet.ProtocolError)
				return fmt.Errorf("client: server used unset topic alias %d: %w", *a, packet.ProtocolError)
			}
			p.Topic = t
		}
	}
	if p.QoS == 2 {
		if _, dup := c.recvQoS2[p.PacketID]; dup {
			// Delivered already; only the PUBREC can have been lost.
			if !c.manualAcks {
				c.sendAck(packet.PUBREC, p.PacketID, packet.Success)
			}
			return nil
		}
		if c.recvQoS2 == nil {
			c.recvQoS2 = make(map[uint16]struct{})
		}
		c.recvQoS2[p.PacketID] = struct{}{}
	}
	if c.onMessage != nil {
		c.onMessage(p)
	}
	if p.QoS > 0 && !c.manualAcks {
		c.sendAck(ackType(p.QoS), p.PacketID, packet.Success)
	}
	return nil
}

// handleAck matches an acknowledgement to its operation.
func (c *Client) handleAck(t packet.Type, id uint16, rc packet.ReasonCode, pk packet.Packet) error {
	c.mu.Lock()
	o, ok := c.ops[id]
	if !ok {
		c.mu.Unlock()
		if t == packet.PUBREC {
			// Nothing of ours: release it so the server forgets it too.
			rel := packet.Success
			if c.v == packet.V5 {
				rel = packet.PacketIdentifierNotFound
			}
			c.sendAck(packet.PUBREL, id, rel)
		}
		// Other answers to ids we do not track come from Send; ignore.
		return nil
	}
	var want bool
	switch t {
	case packet.PUBACK:
		want = o.kind == opPublish && o.qos == 1
	case packet.PUBREC:
		want = o.kind == opPublish && o.qos == 2 && !o.rec
	case packet.PUBCOMP:
		want = o.kind == opPublish && o.qos == 2 && o.rec
	case packet.SUBACK:
		want = o.kind == opSubscribe
	case packet.UNSUBACK:
		want = o.kind == opUnsubscribe
	}
	if !want {
		c.mu.Unlock()
		c.protocolError(packet.ProtocolError)
		return fmt.Errorf("client: unexpected %v for packet id %d: %w", t, id, packet.ProtocolError)
	}
	if t == packet.PUBREC && !rc.IsError() {
		o.rec = true
		c.mu.Unlock()
		c.sendAck(packet.PUBREL, id, packet.Success)
		return nil
	}
	delete(c.ops, id)
	var failed []failedOp
	if o.kind == opPublish {
		c.inflight--
		if c.waitHead < len(c.waiting) {
			failed = c.sendWaitingLocked(nil)
		}
	}
	c.mu.Unlock()

	var err error
	if rc.IsError() {
		err = fmt.Errorf("client: %v: %w", t, rc)
	}
	o.finish(rc, pk, err)
	for _, f := range failed {
		f.o.finish(0, nil, f.err)
	}
	return nil
}
