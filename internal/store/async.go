package store

import (
	"context"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/starlingmq/starling/internal/broker"
)

var _ broker.AsyncStore = (*Pebble)(nil)

// buildBatch turns a broker batch into a Pebble batch; the caller closes it.
func (p *Pebble) buildBatch(b *broker.Batch) (*pebble.Batch, error) {
	pb := p.db.NewBatch()
	var buf []byte
	for i := range b.Ops {
		var e encodedOp
		var err error
		buf, e, err = encodeOp(buf[:0], &b.Ops[i])
		if err == nil {
			switch {
			case e.end != nil:
				err = pb.DeleteRange(e.key, e.end, nil)
			case e.val != nil:
				err = pb.Set(e.key, e.val, nil)
			default:
				err = pb.Delete(e.key, nil)
			}
		}
		if err != nil {
			pb.Close()
			return nil, fmt.Errorf("store %s: %w", p.dir, err)
		}
	}
	return pb, nil
}

// ApplyAsync applies b and queues it for the WAL's fsync without waiting:
// wait returns once it is durable. Many batches, of one caller or many,
// share one fsync. The caller must call wait exactly once; Close waits for
// outstanding waits.
func (p *Pebble) ApplyAsync(ctx context.Context, b *broker.Batch) (wait func() error, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p.maybeReopen()
	if err := p.enter(); err != nil {
		return nil, err
	}
	if err := p.failure(); err != nil {
		p.leave()
		return nil, err
	}
	if b == nil || len(b.Ops) == 0 {
		p.leave()
		return func() error { return nil }, nil
	}
	pb, err := p.buildBatch(b)
	if err != nil {
		p.leave()
		return nil, err
	}
	if err := p.applyNoSyncWait(pb); err != nil {
		pb.Close()
		p.leave()
		return nil, err
	}
	return func() error {
		defer p.leave()
		err := p.syncWait(pb)
		pb.Close()
		return err
	}, nil
}

// applyNoSyncWait is ApplyNoSyncWait with Pebble's fatal errors turned into
// a failed store, as commit does.
func (p *Pebble) applyNoSyncWait(pb *pebble.Batch) error {
	return p.guard("commit", func() error { return p.db.ApplyNoSyncWait(pb, pebble.Sync) })
}

func (p *Pebble) syncWait(pb *pebble.Batch) error {
	return p.guard("sync", pb.SyncWait)
}
