package broker

import (
	"context"
	"slices"
	"time"

	"github.com/starlingmq/starling/internal/packet"
	"github.com/starlingmq/starling/internal/session"
	"github.com/starlingmq/starling/internal/topic"
)

// subscription is one filter of one session, with its options.
type subscription struct {
	filter  string // as the client wrote it, $share/ prefix included
	inner   string // the filter to match
	group   string // shared subscription group, "" when not shared
	qos     byte
	noLocal bool
	rap     bool
	rh      byte
	subID   int
}

// newMessage builds the routed form of a PUBLISH, copying what p shares
// with a read buffer.
func newMessage(p *packet.Publish, origin string, now time.Time) *session.Message {
	m := &session.Message{}
	fillMessage(m, p, origin, now)
	return stableCopy(m)
}

// fillMessage sets m from p without copying p's payload.
func fillMessage(m *session.Message, p *packet.Publish, origin string, now time.Time) {
	*m = session.Message{
		Topic:   p.Topic,
		Payload: p.Payload,
		QoS:     p.QoS,
		Retain:  p.Retain,
		Origin:  origin,
	}
	pr := &p.Properties
	if pr.PayloadFormat != nil || pr.ContentType != "" || pr.ResponseTopic != "" ||
		pr.CorrelationData != nil || pr.User != nil {
		m.Properties = packet.Properties{
			PayloadFormat:   pr.PayloadFormat,
			ContentType:     pr.ContentType,
			ResponseTopic:   pr.ResponseTopic,
			CorrelationData: pr.CorrelationData,
			User:            pr.User,
		}
	}
	if pr.MessageExpiry != nil {
		m.ExpiresAt = now.Add(time.Duration(*pr.MessageExpiry) * time.Second)
	}
	m.Size = len(p.Topic) + len(p.Payload) + 64
	for _, u := range pr.User {
		m.Size += len(u.Key) + len(u.Value)
	}
}

// stableCopy returns m with its payload and correlation data in memory of
// their own, so the message may outlive the buffer it was read into.
func stableCopy(m *session.Message) *session.Message {
	c := *m
	if m.Payload != nil {
		c.Payload = append([]byte(nil), m.Payload...)
	}
	if m.Properties.CorrelationData != nil {
		c.Properties.CorrelationData = append([]byte{}, m.Properties.CorrelationData...)
	}
	if m.Properties.User != nil {
		c.Properties.User = append([]packet.UserProperty(nil), m.Properties.User...)
	}
	return &c
}

// target is one session a message goes to, after overlapping subscriptions
// were merged [MQTT-3.3.4-3..5].
type target struct {
	s      *sess
	qos    byte
	rap    bool
	subIDs []int
}

type sharedGroup struct {
	group, filter string
}

type sharedCand struct {
	s   *sess
	sub *subscription
}

type matchScratch struct {
	enc     encCache
	batch   Batch
	idx     map[*sess]int
	targets []target
	groups  map[sharedGroup][]sharedCand
	matches []SharedMatch
}

func newMatchScratch() *matchScratch {
	return &matchScratch{idx: make(map[*sess]int), groups: make(map[sharedGroup][]sharedCand)}
}

func (m *matchScratch) reset() {
	clear(m.idx)
	clear(m.targets)
	m.targets = m.targets[:0]
	for k, v := range m.groups {
		clear(v)
		m.groups[k] = v[:0]
	}
	if len(m.groups) > 256 {
		clear(m.groups)
	}
	clear(m.matches)
	m.matches = m.matches[:0]
}

// inbound is what the store must learn with a routed message, in the same
// write as its deliveries.
type inbound struct {
	retain   bool   // store msg as the topic's retained message
	clientID string // the publisher, when its session is durable
	qos2ID   uint16 // an incoming QoS 2 packet id to record for clientID

	// remote: forwarded by another node; publisherID is the publishing
	// client (for No Local), shared the groups this node delivers
	remote      bool
	publisherID string
	shared      []SharedMatch
}

// routeMsg delivers msg to every matching subscription. With a store, the
// deliveries to durable sessions (and the retained message and incoming
// QoS 2 id of in) are written in one batch, synced when msg.QoS > 0, and
// those deliveries are sent only once the write is done; if it fails they
// are taken back and the error returned, so that nothing is acknowledged
// that was not stored. An ephemeral msg's memory is reused once routeMsg
// returns: a session that keeps it gets a copy, made once.
func (b *Broker) routeMsg(msg *session.Message, from *sess, now time.Time, ephemeral bool, in inbound) (int, error) {
	n, done := b.routeStart(msg, from, now, ephemeral, in, false)
	if done != nil {
		return n, done.finish()
	}
	return n, nil
}

// routeDone is the end of a route that waits for the store: the deliveries
// to durable sessions are sent once the write is durable, or taken back.
type routeDone struct {
	wait      func() error
	added     []pendingSend
	congested []chan struct{}
	remote    func() error // the other nodes' acceptance
}

// finish waits for the write and then sends or takes back the deliveries.
func (d *routeDone) finish() error {
	var err error
	if d.wait != nil {
		err = d.wait()
	}
	releaseHeld(d.added, err, time.Now(), nil)
	if d.remote != nil {
		if rerr := d.remote(); err == nil {
			err = rerr
		}
	}
	if len(d.congested) > 0 {
		t := time.NewTimer(congestWait)
		defer t.Stop()
		for _, ch := range d.congested {
			select {
			case <-ch:
			case <-t.C:
				return err
			}
		}
	}
	return err
}

// releaseHeld ends the hold of deliveries whose records were written:
// sends those in flight and lets their sessions' queues move, or, when the
// write failed, takes them back.
func releaseHeld(added []pendingSend, err error, now time.Time, ec *encCache) {
	if len(added) == 0 {
		return
	}
	var batch Batch // state changes of deliveries the pumps start
	b := added[0].s.b
	for _, a := range added {
		s := a.s
		s.mu.Lock()
		if err != nil {
			s.st.Cancel(a.d)
		} else {
			s.st.Release(a.d)
			if s.conn != nil && !a.d.Sent && s.st.IsInflight(a.d) {
				s.sendLocked(a.d, now, ec)
			}
		}
		if s.conn != nil {
			var sb *Batch
			if s.durableLocked() {
				sb = &batch
			}
			s.pumpLocked(now, sb) // the queue behind a held or cancelled one moves on
		}
		s.mu.Unlock()
	}
	b.apply(&batch, false)
}

// routeAsync routes like routeMsg, but when the store must sync it does
// not wait: the returned routeDone (nil when there is nothing to wait for)
// finishes the route.
func (b *Broker) routeAsync(msg *session.Message, from *sess, now time.Time, ephemeral bool, in inbound) (int, *routeDone) {
	return b.routeStart(msg, from, now, ephemeral, in, true)
}

func (b *Broker) routeStart(msg *session.Message, from *sess, now time.Time, ephemeral bool, in inbound, async bool) (int, *routeDone) {
	if msg.ID.IsZero() && b.router != nil && !in.remote {
		msg.ID = session.MsgID{Node: b.msgNode, Seq: b.msgSeq.Add(1)}
	}
	sc := b.scratch.Get().(*matchScratch)
	sc.enc.reset(msg)
	sc.enc.ephemeral = ephemeral
	if b.store != nil {
		sc.enc.batch = &sc.batch
		if in.qos2ID != 0 && in.clientID != "" {
			sc.batch.PutIncoming(in.clientID, in.qos2ID)
		}
	}
	if in.retain && !in.remote {
		m := sc.enc.keep()
		if b.router != nil && !topic.IsSys(m.Topic) {
			// applied here and stamped for the cluster in one step, so
			// that two writes of a topic get their clock readings in the
			// order this node applied them
			b.retOrder.Lock()
			b.retain(m)
			b.router.Retained(m)
			b.retOrder.Unlock()
		} else {
			b.retain(m)
		}
		if b.store != nil && persistRetained(m.Topic) {
			if len(m.Payload) == 0 {
				sc.batch.DeleteRetained(m.Topic)
			} else {
				r := messageRecord(m)
				sc.batch.PutRetained(&r)
			}
		}
	}
	upgrade := b.opts.UpgradeOutgoingQoS
	b.subMu.RLock()
	b.subs.Match(msg.Topic, func(_ string, s *sess, sub *subscription) {
		if sub.noLocal && (s == from || (in.remote && s.id == in.publisherID)) {
			return // [MQTT-3.8.3-3]
		}
		qos := min(msg.QoS, sub.qos)
		if upgrade {
			qos = sub.qos
		}
		i, ok := sc.idx[s]
		if !ok {
			sc.idx[s] = len(sc.targets)
			t := target{s: s, qos: qos, rap: sub.rap}
			if sub.subID > 0 {
				t.subIDs = []int{sub.subID}
			}
			sc.targets = append(sc.targets, t)
			return
		}
		t := &sc.targets[i]
		t.qos = max(t.qos, qos)
		t.rap = t.rap || sub.rap
		if sub.subID > 0 {
			t.subIDs = append(t.subIDs, sub.subID)
		}
	})
	b.shared.Match(msg.Topic, func(_ string, k sharedKey, sub *subscription) {
		g := sharedGroup{group: sub.group, filter: sub.inner}
		sc.groups[g] = append(sc.groups[g], sharedCand{s: k.s, sub: sub})
	})
	b.subMu.RUnlock()

	n := 0
	var remoteWait func() error
	if in.remote {
		// only the groups the publishing node chose this node for
		for g, cands := range sc.groups {
			if !slices.ContainsFunc(in.shared, func(m SharedMatch) bool { return m.Group == g.group && m.Filter == g.filter }) {
				sc.groups[g] = cands[:0]
			}
		}
	} else if b.router != nil && !topic.IsSys(msg.Topic) {
		for g, cands := range sc.groups {
			if len(cands) > 0 {
				sc.matches = append(sc.matches, SharedMatch{Group: g.group, Filter: g.filter, Local: len(cands)})
			}
		}
		var nodes int
		nodes, remoteWait = b.router.Forward(msg, msg.Origin, sc.matches)
		n += nodes
		for _, m := range sc.matches {
			if m.Remote {
				g := sharedGroup{group: m.Group, filter: m.Filter}
				sc.groups[g] = sc.groups[g][:0]
			}
		}
	}
	for i := range sc.targets {
		t := &sc.targets[i]
		if t.s.deliver(msg, t.qos, msg.Retain && t.rap, t.subIDs, now, &sc.enc) {
			n++
		}
	}
	for _, cands := range sc.groups {
		if len(cands) == 0 {
			continue
		}
		if b.deliverShared(msg, cands, upgrade, now, &sc.enc) {
			n++
		}
	}
	var done *routeDone
	ec := &sc.enc
	switch {
	case ec.batch == nil || ec.batch.Len() == 0:
	case msg.QoS == 0:
		// nothing promised to the publisher: written without a sync
		if err := b.apply(ec.batch, false); err != nil {
			done = &routeDone{wait: func() error { return err }}
		}
	case async:
		done = &routeDone{wait: b.applyAsync(ec.batch)}
	default:
		err := b.apply(ec.batch, true)
		done = &routeDone{wait: func() error { return err }}
	}
	if done != nil {
		done.added = append([]pendingSend(nil), ec.added...)
	} else {
		releaseHeld(ec.added, nil, now, ec) // written without a sync
	}
	if remoteWait != nil {
		if done == nil {
			done = &routeDone{}
		}
		done.remote = remoteWait
	}
	if len(ec.congested) > 0 && async {
		if done == nil {
			done = &routeDone{}
		}
		done.congested = append([]chan struct{}(nil), ec.congested...)
	}
	b.resetRoute(ec)
	sc.reset()
	b.scratch.Put(sc)
	return n, done
}

// resetRoute empties the route state of ec for reuse.
func (b *Broker) resetRoute(ec *encCache) {
	if ec.batch != nil {
		ec.batch.Reset()
	}
	clear(ec.congested)
	ec.congested = ec.congested[:0]
	clear(ec.added)
	ec.added = ec.added[:0]
	ec.batch = nil
	ec.msg, ec.stable = nil, nil
}

// deliverShared gives msg to one member of a shared subscription group,
// preferring connected members, round robin [MQTT-4.8.2].
func (b *Broker) deliverShared(msg *session.Message, cands []sharedCand, upgrade bool, now time.Time, ec *encCache) bool {
	start := int(b.rr.Add(1) % uint64(len(cands)))
	pick := func(online bool) bool {
		for i := range cands {
			c := cands[(start+i)%len(cands)]
			if online && !c.s.online() {
				continue
			}
			qos := min(msg.QoS, c.sub.qos)
			if upgrade {
				qos = c.sub.qos
			}
			var ids []int
			if c.sub.subID > 0 {
				ids = []int{c.sub.subID}
			}
			if c.s.deliverVia(msg, qos, msg.Retain && c.sub.rap, ids, now, ec, c.sub, false) {
				return true
			}
		}
		return false
	}
	return pick(true) || pick(false)
}

// retain stores or deletes a retained message [MQTT-3.3.1-5..7].
func (b *Broker) retain(msg *session.Message) {
	b.retMu.Lock()
	defer b.retMu.Unlock()
	if len(msg.Payload) == 0 {
		b.retained.Delete(msg.Topic)
		return
	}
	b.retained.Set(msg.Topic, msg)
}

// retainedFor returns the retained messages matching filter.
func (b *Broker) retainedFor(filter string, now time.Time) []*session.Message {
	var out []*session.Message
	var expired []string
	b.retMu.RLock()
	b.retained.Match(filter, func(name string, m *session.Message) bool {
		if m.Expired(now) {
			expired = append(expired, name)
			return true
		}
		out = append(out, m)
		return true
	})
	b.retMu.RUnlock()
	if len(expired) > 0 {
		b.retMu.Lock()
		for _, name := range expired {
			if m, ok := b.retained.Get(name); ok && m.Expired(now) {
				b.retained.Delete(name)
			}
		}
		b.retMu.Unlock()
	}
	return out
}

// addSubscription indexes sub for s; reports whether it replaced one.
func (b *Broker) addSubscription(s *sess, sub *subscription) bool {
	b.subMu.Lock()
	defer b.subMu.Unlock()
	var replaced bool
	if sub.group != "" {
		replaced = b.shared.Add(sub.inner, sharedKey{group: sub.group, s: s}, sub)
	} else {
		replaced = b.subs.Add(sub.inner, s, sub)
	}
	if !replaced && b.router != nil {
		b.router.Subscribed(sub.filter)
	}
	return replaced
}

func (b *Broker) removeSubscription(s *sess, sub *subscription) bool {
	b.subMu.Lock()
	defer b.subMu.Unlock()
	var removed bool
	if sub.group != "" {
		removed = b.shared.Remove(sub.inner, sharedKey{group: sub.group, s: s})
	} else {
		removed = b.subs.Remove(sub.inner, s)
	}
	if removed && b.router != nil {
		b.router.Unsubscribed(sub.filter)
	}
	return removed
}

// parseSubscription validates one SUBSCRIBE entry.
func parseSubscription(ps packet.Subscription, id int) (*subscription, packet.ReasonCode) {
	sub := &subscription{filter: ps.Filter, inner: ps.Filter, qos: ps.QoS, noLocal: ps.NoLocal,
		rap: ps.RetainAsPublished, rh: ps.RetainHandling, subID: id}
	group, inner, shared, err := topic.ParseShared(ps.Filter)
	if err != nil {
		return nil, packet.TopicFilterInvalid
	}
	if shared {
		if ps.NoLocal {
			return nil, packet.ProtocolError // [MQTT-3.8.3-4]
		}
		sub.group, sub.inner = group, inner
	}
	if err := topic.ValidFilter(sub.inner); err != nil {
		return nil, packet.TopicFilterInvalid
	}
	return sub, packet.ReasonCode(ps.QoS)
}

// authorize asks the listener's authorizer, if any.
func authorize(ctx context.Context, az Authorizer, info *ClientInfo, name string, a Access) bool {
	if az == nil {
		return true
	}
	return az.Authorize(ctx, info, name, a)
}
