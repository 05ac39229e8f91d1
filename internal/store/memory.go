package store

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/starlingmq/starling/internal/broker"
)

// ErrClosed is returned by Apply and Load after Close.
var ErrClosed = errors.New("store: closed")

// Memory keeps everything in maps, for persistence false. It has the same
// semantics as Pebble: records are stored encoded (so a caller may reuse
// what it passed to Apply, and Load yields fresh copies), a batch is atomic,
// and Load reports records in the same order. Apply returns at once, sync or
// not. It is safe for concurrent use.
type Memory struct {
	mu       sync.Mutex
	closed   bool
	sessions map[string]*memSession // by client id
	retained map[string][]byte      // by topic
	counters []byte                 // the broker's counters, encoded
}

// memSession holds the encoded records of one client id. rec is nil when
// only sub-records were written.
type memSession struct {
	rec        []byte
	subs       map[string][]byte
	deliveries map[uint64][]byte
	incoming   map[uint16]struct{}
}

func (s *memSession) empty() bool {
	return s.rec == nil && len(s.subs) == 0 && len(s.deliveries) == 0 && len(s.incoming) == 0
}

var _ broker.Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{sessions: make(map[string]*memSession), retained: make(map[string][]byte)}
}

// Apply applies b atomically: an invalid op rejects the whole batch.
func (m *Memory) Apply(ctx context.Context, b *broker.Batch, sync bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b == nil {
		b = &broker.Batch{}
	}
	// Encode first, outside the lock: it validates every op and copies
	// the records, so nothing is half-applied and the caller may reuse b.
	var buf []byte
	enc := make([]encodedOp, len(b.Ops))
	for i := range b.Ops {
		var err error
		if buf, enc[i], err = encodeOp(buf, &b.Ops[i]); err != nil {
			return err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	for i := range b.Ops {
		m.applyLocked(&b.Ops[i], enc[i].val)
	}
	return nil
}

// applyLocked applies one validated op whose encoded value is val. m.mu
// must be held.
func (m *Memory) applyLocked(op *broker.Op, val []byte) {
	id := op.ClientID
	if op.Kind == broker.OpPutSession {
		id = op.Session.ClientID
	}
	switch op.Kind {
	case broker.OpPutCounters:
		m.counters = val
		return
	case broker.OpPutRetained:
		m.retained[op.Retained.Topic] = val
		return
	case broker.OpDeleteRetained:
		delete(m.retained, op.Topic)
		return
	case broker.OpDeleteSession:
		delete(m.sessions, id)
		return
	}
	s := m.sessions[id]
	if s == nil {
		s = &memSession{}
		m.sessions[id] = s
	}
	switch op.Kind {
	case broker.OpPutSession:
		s.rec = val
	case broker.OpPutSubscription:
		if s.subs == nil {
			s.subs = make(map[string][]byte)
		}
		s.subs[op.Subscription.Filter] = val
	case broker.OpDeleteSubscription:
		delete(s.subs, op.Filter)
	case broker.OpPutDelivery:
		if s.deliveries == nil {
			s.deliveries = make(map[uint64][]byte)
		}
		s.deliveries[op.Delivery.Seq] = val
	case broker.OpDeleteDelivery:
		delete(s.deliveries, op.Seq)
	case broker.OpPutIncoming:
		if s.incoming == nil {
			s.incoming = make(map[uint16]struct{})
		}
		s.incoming[op.PacketID] = struct{}{}
	case broker.OpDeleteIncoming:
		delete(s.incoming, op.PacketID)
	}
	if s.empty() {
		delete(m.sessions, id)
	}
}

// Load reports every record in the order Pebble would: retained messages
// by topic, then sessions by key (partition first), each session record
// before its subscriptions, deliveries (ascending Seq) and incoming ids.
// The loader is called without m's lock held.
func (m *Memory) Load(ctx context.Context, l broker.Loader) error {
	type kv struct{ key, val []byte }
	var recs []kv
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	// Values are immutable once stored, so the snapshot only copies keys.
	if m.counters != nil {
		recs = append(recs, kv{keyCounters, m.counters})
	}
	for topic, v := range m.retained {
		recs = append(recs, kv{retainedKey(nil, topic), v})
	}
	for id, s := range m.sessions {
		// Ids were validated by Apply; the key functions cannot fail.
		if s.rec != nil {
			k, _ := sessionKey(nil, id)
			recs = append(recs, kv{k, s.rec})
		}
		for f, v := range s.subs {
			k, _ := subscriptionKey(nil, id, f)
			recs = append(recs, kv{k, v})
		}
		for seq, v := range s.deliveries {
			k, _ := deliveryKey(nil, id, seq)
			recs = append(recs, kv{k, v})
		}
		for pid := range s.incoming {
			k, _ := incomingKey(nil, id, pid)
			recs = append(recs, kv{k, encodeIncoming(nil)})
		}
	}
	m.mu.Unlock()
	slices.SortFunc(recs, func(a, b kv) int { return bytes.Compare(a.key, b.key) })
	for i, r := range recs {
		if i&1023 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if err := dispatch(r.key, r.val, l); err != nil {
			return err
		}
	}
	return nil
}

// Close drops everything; safe twice.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.sessions, m.retained = nil, nil
	return nil
}
