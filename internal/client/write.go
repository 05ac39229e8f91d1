package client

import (
	"context"
	"fmt"
	"time"

	"github.com/starlingmq/starling/internal/packet"
)

// appendLocked encodes p at the end of the write buffer. With checkMax, a
// packet larger than the server's Maximum Packet Size is refused
// [MQTT-3.1.2-24]. wmu must be held.
func (c *Client) appendLocked(p packet.Packet, checkMax bool) error {
	start := len(c.wbuf)
	b, err := p.AppendTo(c.wbuf, c.v)
	if err != nil {
		return fmt.Errorf("client: encode %v: %w", p.Type(), err)
	}
	return c.commitLocked(b, start, checkMax)
}

// appendPublishLocked encodes p with packet identifier id (ignored for QoS
// 0) without modifying p. wmu must be held.
func (c *Client) appendPublishLocked(p *packet.Publish, id uint16) error {
	start := len(c.wbuf)
	var b []byte
	var err error
	if p.QoS == 0 || p.PacketID == id {
		b, err = p.AppendTo(c.wbuf, c.v)
	} else {
		q := *p
		q.PacketID = id
		b, err = q.AppendTo(c.wbuf, c.v)
	}
	if err != nil {
		return fmt.Errorf("client: encode PUBLISH: %w", err)
	}
	return c.commitLocked(b, start, true)
}

// commitLocked adopts b, the write buffer with one packet appended at
// start. wmu must be held.
func (c *Client) commitLocked(b []byte, start int, checkMax bool) error {
	n := len(b) - start
	if checkMax && c.maxOut > 0 && n > c.maxOut {
		c.wbuf = b[:start]
		return fmt.Errorf("client: packet of %d bytes exceeds the server's maximum of %d: %w", n, c.maxOut, packet.PacketTooLarge)
	}
	c.wbuf = b
	c.wqueued += uint64(n)
	return nil
}

// sendAck queues PUBACK, PUBREC, PUBREL or PUBCOMP. It never waits: the
// reader calls it, and acknowledgements are bounded by the inflight windows.
func (c *Client) sendAck(t packet.Type, id uint16, rc packet.ReasonCode) {
	c.wmu.Lock()
	var p packet.Packet
	switch t {
	case packet.PUBACK:
		c.ackPkt.puback = packet.Puback{PacketID: id, ReasonCode: rc}
		p = &c.ackPkt.puback
	case packet.PUBREC:
		c.ackPkt.pubrec = packet.Pubrec{PacketID: id, ReasonCode: rc}
		p = &c.ackPkt.pubrec
	case packet.PUBREL:
		c.ackPkt.pubrel = packet.Pubrel{PacketID: id, ReasonCode: rc}
		p = &c.ackPkt.pubrel
	default:
		c.ackPkt.pubcomp = packet.Pubcomp{PacketID: id, ReasonCode: rc}
		p = &c.ackPkt.pubcomp
	}
	err := c.appendLocked(p, false)
	c.wmu.Unlock()
	if err != nil {
		// Only a codec bug gets here; the connection cannot go on.
		c.fail(err)
		return
	}
	c.wake()
}

// wake tells the writer there is something to write.
func (c *Client) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// signalLocked returns a channel closed after the next write batch.
// wmu must be held.
func (c *Client) signalLocked() chan struct{} {
	if c.wsignal == nil {
		c.wsignal = make(chan struct{})
	}
	return c.wsignal
}

// waitSpace waits until the write buffer is below maxBuffered.
func (c *Client) waitSpace(ctx context.Context) error {
	for {
		c.wmu.Lock()
		if len(c.wbuf) < maxBuffered {
			c.wmu.Unlock()
			select {
			case <-c.closing:
				return c.err
			default:
				return nil
			}
		}
		ch := c.signalLocked()
		c.wmu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-c.closing:
			return c.err
		}
	}
}

// waitWritten waits until the first target bytes ever queued are written.
func (c *Client) waitWritten(ctx context.Context, target uint64) error {
	for {
		c.wmu.Lock()
		if c.wwritten >= target {
			c.wmu.Unlock()
			return nil
		}
		ch := c.signalLocked()
		c.wmu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-c.closing:
			return c.err
		}
	}
}

// writeLoop is the only goroutine that writes to conn. Each round it takes
// everything queued and writes it with one call; it also runs keep alive.
func (c *Client) writeLoop() {
	defer c.wg.Done()
	var (
		out   []byte
		timer *time.Timer
		tick  <-chan time.Time
	)
	if c.keepAlive > 0 {
		timer = time.NewTimer(c.keepAlive)
		defer timer.Stop()
		tick = timer.C
	}
	for {
		select {
		case <-c.kick:
		case <-tick:
			next, err := c.keepAliveCheck(time.Now())
			if err != nil {
				c.fail(err)
				return
			}
			timer.Reset(next)
		case <-c.closing:
			return
		}
		c.wmu.Lock()
		out, c.wbuf = c.wbuf, out[:0]
		c.wmu.Unlock()
		if len(out) == 0 {
			continue
		}
		if _, err := c.conn.Write(out); err != nil {
			c.fail(fmt.Errorf("client: write: %w", err))
			return
		}
		if c.keepAlive > 0 {
			c.lastSent.Store(time.Now().UnixNano())
		}
		c.wmu.Lock()
		c.wwritten += uint64(len(out))
		if c.wsignal != nil {
			close(c.wsignal)
			c.wsignal = nil
		}
		c.wmu.Unlock()
		if cap(out) > keepBuffer {
			out = nil
		}
	}
}

// keepAliveCheck sends PINGREQ when nothing was sent or received for the
// keep alive, fails when a PINGREQ went unanswered for as long, and returns
// when to check next.
func (c *Client) keepAliveCheck(now time.Time) (time.Duration, error) {
	ka := c.keepAlive
	t := now.UnixNano()
	if ps := c.pingSent.Load(); ps != 0 {
		if left := time.Duration(ps + int64(ka) - t); left > 0 {
			return left, nil
		}
		return 0, ErrPingTimeout
	}
	last := min(c.lastSent.Load(), c.lastRecv.Load())
	if left := time.Duration(last + int64(ka) - t); left > 0 {
		return left, nil
	}
	c.pingSent.Store(t)
	c.wmu.Lock()
	err := c.appendLocked(&packet.Pingreq{}, false)
	c.wmu.Unlock()
	if err != nil {
		return 0, err
	}
	return ka, nil
}
