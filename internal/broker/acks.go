package broker

import (
	"context"

	"github.com/starlingmq/starling/internal/packet"
)

// AsyncStore is a Store that can write a batch durably without holding its
// caller until the sync: ApplyAsync returns once the batch is applied and
// queued for the disk, and wait returns once it is durable, or failed. It
// lets one connection have many acknowledgements waiting for the disk at
// once, all covered by one sync.
type AsyncStore interface {
	Store
	ApplyAsync(ctx context.Context, b *Batch) (wait func() error, err error)
}

// applyAsync starts a synced write of batch and empties it. Without an
// AsyncStore it writes synchronously and returns a wait that reports the
// result. The returned wait is nil when there was nothing to write.
func (b *Broker) applyAsync(batch *Batch) func() error {
	if b.store == nil || batch.Len() == 0 {
		batch.Reset()
		return nil
	}
	as, ok := b.store.(AsyncStore)
	if !ok {
		err := b.apply(batch, true)
		return func() error { return err }
	}
	wait, err := as.ApplyAsync(context.Background(), batch)
	batch.Reset()
	if err != nil {
		b.storeFailed(err)
		return func() error { return err }
	}
	return func() error {
		if err := wait(); err != nil {
			b.storeFailed(err)
			return err
		}
		return nil
	}
}

// ackEntry is an acknowledgement that must wait for the store: done (if
// any) is awaited, then send is called with its result, in the order the
// entries were queued [MQTT-4.6.0-2..4].
type ackEntry struct {
	done *routeDone
	wait func() error
	send func(err error)
}

// queueAck sends an acknowledgement in order: at once when nothing waits
// for the store before it and it has nothing to wait for itself, else
// through the acker goroutine.
func (c *conn) queueAck(e ackEntry) {
	if e.done == nil && e.wait == nil && c.ackNow() {
		e.send(nil)
		return
	}
	c.ackMu.Lock()
	c.acks = append(c.acks, e)
	if !c.acking {
		c.acking = true
		c.wg.Add(1)
		go c.ackLoop()
	}
	c.ackMu.Unlock()
}

// ackNow reports whether an acknowledgement with nothing to wait for may be
// sent at once: none waits before it.
func (c *conn) ackNow() bool {
	c.ackMu.Lock()
	defer c.ackMu.Unlock()
	return len(c.acks) == 0 && !c.acking
}

// ackLoop waits for the store on behalf of the reader, in order, and sends
// the acknowledgements. It exits when the queue is empty. It goes on after
// the connection closed, so that routed messages are released or taken
// back; its sends are then dropped.
func (c *conn) ackLoop() {
	defer c.wg.Done()
	for {
		c.ackMu.Lock()
		if len(c.acks) == 0 {
			c.acking = false
			c.acks = nil
			c.ackMu.Unlock()
			return
		}
		e := c.acks[0]
		c.acks[0] = ackEntry{}
		c.acks = c.acks[1:]
		c.ackMu.Unlock()
		var err error
		switch {
		case e.done != nil:
			c.outMu.Lock()
			closing := c.closing
			c.outMu.Unlock()
			if closing {
				e.done.congested = nil // nobody to slow down any more
			}
			err = e.done.finish()
		case e.wait != nil:
			err = e.wait()
		}
		e.send(err)
	}
}

// storeErr turns a store failure into what to tell the client: for MQTT 5
// the reason code to put in the acknowledgement; for 3.x nothing can be
// said, so the connection is closed and ok is false.
func (c *conn) storeErr(err error) (packet.ReasonCode, bool) {
	if err == nil {
		return packet.Success, true
	}
	if c.version != packet.V5 {
		c.kick(packet.UnspecifiedError)
		return 0, false
	}
	return packet.UnspecifiedError, true
}
