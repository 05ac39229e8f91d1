package broker

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/starlingmq/starling/internal/packet"
	"github.com/starlingmq/starling/internal/session"
)

// durableLocked reports whether s's state goes to the store: a store is
// configured and the session outlives its connection. s.mu must be held.
func (s *sess) durableLocked() bool {
	return s.b.store != nil && s.expiry > 0
}

func messageRecord(m *session.Message) MessageRecord {
	return MessageRecord{
		Topic:      m.Topic,
		Payload:    m.Payload,
		QoS:        m.QoS,
		Retain:     m.Retain,
		Properties: m.Properties,
		ExpiresAt:  m.ExpiresAt,
		Origin:     m.Origin,
	}
}

func messageFromRecord(r *MessageRecord) *session.Message {
	m := &session.Message{
		Topic:      r.Topic,
		Payload:    r.Payload,
		QoS:        r.QoS,
		Retain:     r.Retain,
		Properties: r.Properties,
		ExpiresAt:  r.ExpiresAt,
		Origin:     r.Origin,
		Size:       len(r.Topic) + len(r.Payload) + 64,
	}
	for _, u := range r.Properties.User {
		m.Size += len(u.Key) + len(u.Value)
	}
	return m
}

func deliveryRecord(d *session.Delivery) *DeliveryRecord {
	return &DeliveryRecord{
		Seq:      d.Seq,
		QoS:      d.QoS,
		Retain:   d.Retain,
		SubIDs:   d.SubIDs,
		PacketID: d.PacketID,
		State:    byte(d.State),
		Sent:     d.Sent,
		Message:  messageRecord(d.Msg),
	}
}

// sessionRecordLocked describes s for the store. s.mu must be held.
func (s *sess) sessionRecordLocked() *SessionRecord {
	r := &SessionRecord{ClientID: s.id, Expiry: s.expiry, Will: s.will, WillAt: s.willAt}
	if s.conn == nil {
		r.DisconnectedAt = s.offAt
	}
	if s.info != nil {
		r.Username, r.HasUsername = s.info.Username, s.info.HasUsername
	}
	return r
}

func subscriptionRecord(sub *subscription) *SubscriptionRecord {
	return &SubscriptionRecord{
		Filter:            sub.filter,
		QoS:               sub.qos,
		NoLocal:           sub.noLocal,
		RetainAsPublished: sub.rap,
		RetainHandling:    sub.rh,
		SubscriptionID:    sub.subID,
	}
}

// apply writes a batch when there is a store and the batch is not empty,
// and empties it.
func (b *Broker) apply(batch *Batch, sync bool) error {
	if b.store == nil || batch.Len() == 0 {
		batch.Reset()
		return nil
	}
	err := b.store.Apply(context.Background(), batch, sync)
	batch.Reset()
	if err != nil {
		b.storeFailed(err)
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// storeFailed logs a store failure at most once per 10 seconds.
func (b *Broker) storeFailed(err error) {
	now := time.Now().UnixNano()
	last := b.storeErrAt.Load()
	if now-last < int64(10*time.Second) || !b.storeErrAt.CompareAndSwap(last, now) {
		return
	}
	b.log.Error("cannot write to the store: refusing messages that need it until it recovers", "err", err)
}

// Load reads the store's state into the broker: persistent sessions
// (offline until their clients return), their subscriptions, queued and
// inflight messages and incoming QoS 2 state, and retained messages. Call
// it once, after New and before Serve, when Options.Store is set.
func (b *Broker) Load(ctx context.Context) error {
	if b.store == nil {
		return nil
	}
	l := &loader{b: b, now: time.Now()}
	b.loading.Store(true)
	defer b.loading.Store(false)
	if err := b.store.Load(ctx, l); err != nil {
		return fmt.Errorf("loading the store: %w", err)
	}
	if n := l.orphans.Len(); n > 0 {
		// records written for a session just after its deletion (a
		// message routed while the session ended): forgotten
		b.log.Warn("store: records of sessions that no longer exist removed", "records", n)
		if err := b.apply(&l.orphans, false); err != nil {
			return err
		}
	}
	b.log.Info("state loaded from the store", "sessions", l.sessions, "messages", l.deliveries, "retained", l.retained,
		"took", time.Since(l.now).Round(time.Millisecond).String())
	return nil
}

// loader rebuilds the broker from store records.
type loader struct {
	b                              *Broker
	now                            time.Time
	sessions, deliveries, retained int
	orphans                        Batch // deletes of records whose session is gone
}

// sess returns the loaded session id, or nil when there is none. b.mu
// must be held.
func (l *loader) sess(id string) *sess {
	return l.b.sessions[id]
}

func (l *loader) Session(r *SessionRecord) error {
	b := l.b
	s := &sess{b: b, id: r.ClientID, st: session.New(r.ClientID, session.Limits{
		MaxInflight: b.opts.MaxInflight, MaxQueued: b.opts.MaxQueued,
		MaxQueuedBytes: b.opts.MaxQueuedBytes, QueueQoS0: b.opts.QueueQoS0,
	})}
	s.expiry = r.Expiry
	s.info = &ClientInfo{ClientID: r.ClientID, Username: r.Username, HasUsername: r.HasUsername}
	s.offAt = r.DisconnectedAt
	s.will, s.willAt = r.Will, r.WillAt
	if s.offAt.IsZero() {
		// connected when the broker stopped: it went away then, abnormally
		s.offAt = l.now
		if s.will != nil && s.willAt.IsZero() {
			delay := uint32(0)
			if s.will.Properties.WillDelay != nil {
				delay = *s.will.Properties.WillDelay
			}
			s.willAt = l.now.Add(time.Duration(min(delay, s.expiry)) * time.Second)
		}
	}
	b.mu.Lock()
	b.sessions[s.id] = s
	b.offline[s] = struct{}{}
	b.mu.Unlock()
	l.sessions++
	return nil
}

func (l *loader) Subscription(clientID string, r *SubscriptionRecord) error {
	b := l.b
	b.mu.Lock()
	s := l.sess(clientID)
	b.mu.Unlock()
	if s == nil {
		l.orphans.DeleteSubscription(clientID, r.Filter)
		return nil
	}
	sub, rc := parseSubscription(packet.Subscription{Filter: r.Filter, QoS: r.QoS, NoLocal: r.NoLocal,
		RetainAsPublished: r.RetainAsPublished, RetainHandling: r.RetainHandling}, r.SubscriptionID)
	if sub == nil {
		return fmt.Errorf("session %q: stored subscription %q: %w", clientID, r.Filter, rc)
	}
	s.mu.Lock()
	if s.subs == nil {
		s.subs = make(map[string]*subscription)
	}
	s.subs[sub.filter] = sub
	s.mu.Unlock()
	b.addSubscription(s, sub)
	return nil
}

func (l *loader) Delivery(clientID string, r *DeliveryRecord) error {
	b := l.b
	b.mu.Lock()
	s := l.sess(clientID)
	b.mu.Unlock()
	if s == nil {
		l.orphans.DeleteDelivery(clientID, r.Seq)
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Restore(&session.Delivery{
		Seq: r.Seq, Msg: messageFromRecord(&r.Message), QoS: r.QoS, Retain: r.Retain, SubIDs: r.SubIDs,
		PacketID: r.PacketID, State: session.State(r.State), Sent: r.Sent,
	})
	l.deliveries++
	return nil
}

func (l *loader) IncomingQoS2(clientID string, id uint16) error {
	l.b.mu.Lock()
	s := l.sess(clientID)
	l.b.mu.Unlock()
	if s == nil {
		l.orphans.DeleteIncoming(clientID, id)
		return nil
	}
	s.mu.Lock()
	s.st.ReceiveQoS2(id)
	s.mu.Unlock()
	return nil
}

// Counters starts the broker's counters where the last run left them.
func (l *loader) Counters(r *CountersRecord) error {
	st := &l.b.stats
	st.msgsRecv.Store(r.MessagesReceived)
	st.msgsSent.Store(r.MessagesSent)
	st.pubRecv.Store(r.PublishReceived)
	st.pubSent.Store(r.PublishSent)
	st.pubDropped.Store(r.PublishDropped)
	st.bytesRecv.Store(r.BytesReceived)
	st.bytesSent.Store(r.BytesSent)
	st.connsAccepted.Store(r.ConnectionsAccepted)
	return nil
}

// saveCounters writes the counters to the store (without a sync: losing
// the last seconds of counts in a crash is acceptable).
func (b *Broker) saveCounters() {
	if b.store == nil {
		return
	}
	st := &b.stats
	var batch Batch
	batch.PutCounters(&CountersRecord{
		MessagesReceived: st.msgsRecv.Load(), MessagesSent: st.msgsSent.Load(),
		PublishReceived: st.pubRecv.Load(), PublishSent: st.pubSent.Load(), PublishDropped: st.pubDropped.Load(),
		BytesReceived: st.bytesRecv.Load(), BytesSent: st.bytesSent.Load(), ConnectionsAccepted: st.connsAccepted.Load(),
	})
	b.apply(&batch, false)
}

func (l *loader) Retained(r *MessageRecord) error {
	m := messageFromRecord(r)
	if m.Expired(l.now) {
		return nil
	}
	l.b.retMu.Lock()
	l.b.retained.Set(m.Topic, m)
	l.b.retMu.Unlock()
	l.retained++
	return nil
}

// persistRetained reports whether a retained message is stored: not the
// broker's own $SYS topics, which it publishes again after a restart.
func persistRetained(topic string) bool {
	return !strings.HasPrefix(topic, "$SYS/")
}
