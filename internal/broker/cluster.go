package broker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/starlingmq/starling/internal/packet"
	"github.com/starlingmq/starling/internal/session"
	"github.com/starlingmq/starling/internal/topic"
)

// Router connects the broker to the other nodes of a cluster
// (ARCHITECTURE.md, "The path of a message"). A single node has none
// (Options.Router nil) and routes to its local subscribers only.
//
// Concurrency: every method is called from many connection goroutines at
// once. Subscribed, Unsubscribed, Forward and Retained are called while a
// broker lock may be held: they must only take the router's own locks and
// queue work, never block on the network or call back into the broker.
// Claim and Ended are called without broker locks.
type Router interface {
	// Subscribed and Unsubscribed tell the router that a session held
	// here gained or lost one subscription to filter (as the client wrote
	// it, "$share/group/" included). The router counts them.
	Subscribed(filter string)
	Unsubscribed(filter string)
	// Forward sends msg, published on this node by publisherID ("" for
	// the broker itself), to every other node with a matching
	// subscription. shared lists the shared subscription groups matched
	// here with their local member counts; Forward sets Remote on each
	// group it gives to another node's member, and the broker then does
	// not deliver that group locally. Groups with members only elsewhere
	// are the router's to handle. Forward copies what it keeps of msg
	// before it returns. It returns how many nodes it sent msg to and, when
	// the publisher must wait for them (QoS 1 and 2), a function that
	// blocks until each has accepted msg or failed.
	Forward(msg *session.Message, publisherID string, shared []SharedMatch) (nodes int, wait func() error)
	// Retained tells the router that a client of this node set the
	// retained message of msg.Topic (deleted it, when msg.Payload is
	// empty), to replicate it to the other nodes.
	Retained(msg *session.Message)
	// Claim makes this node the owner of clientID before its CONNECT is
	// accepted: a connection of the same id on another node is closed,
	// and the session of a persistent client, wherever it is, is fetched
	// and installed here (Install) before Claim returns. An error means
	// the id cannot be claimed: the client is refused with "server
	// unavailable".
	Claim(ctx context.Context, clientID string, persistent bool) error
	// Ended tells the router that a persistent session held here ended
	// (expired), so that the cluster forgets where it was.
	Ended(clientID string)
}

// SharedMatch is a shared subscription group matched by a message, with
// the number of its members on this node.
type SharedMatch struct {
	Group  string
	Filter string // the plain filter, without "$share/group/"
	Local  int
	Remote bool // given to a member on another node
}

// SessionState is a whole session, to move it between nodes: its record,
// subscriptions, queued and inflight deliveries in Seq order, and the
// packet ids of incoming QoS 2 messages awaiting PUBREL.
type SessionState struct {
	Session       SessionRecord
	Subscriptions []SubscriptionRecord
	Deliveries    []DeliveryRecord
	IncomingQoS2  []uint16
	// Seen names the messages the session holds or was routed lately
	// (session.MsgID): the node it moves to takes none of them again.
	Seen []session.MsgID
	// Relayed: the node it comes from relays what still reaches it there
	// (Handover with a RelayFunc) until ReleaseHeld is called here with
	// Epoch, the claim that moved it.
	Relayed bool
	Epoch   uint64
}

// ephemeralPool holds the messages forwarded ones are routed as; a session
// that keeps one gets a copy (routeAsync with ephemeral set).
var ephemeralPool = sync.Pool{New: func() any { return new(session.Message) }}

// ErrSessionOnline: Install found the client connected here with a
// session of its own, which a transferred one must not replace.
var ErrSessionOnline = errors.New("broker: the client is connected here")

// claimTimeout bounds a CONNECT's claim of its client id in a cluster.
const claimTimeout = 5 * time.Second

// DeliverForwarded routes a message that another node forwarded: to the
// local non-shared subscribers, and to one member of each shared group in
// shared (and of no other group). It is not retained here: retained
// messages travel on their own. p and its payload may be reused once it
// returns. wait, when not nil, blocks until the deliveries to persistent
// sessions are stored (QoS 1 and 2), as the origin's acknowledgement
// requires.
func (b *Broker) DeliverForwarded(p *packet.Publish, publisherID string, id session.MsgID, shared []SharedMatch) (n int, wait func() error) {
	now := time.Now()
	m := ephemeralPool.Get().(*session.Message)
	fillMessage(m, p, publisherID, now)
	m.ID = id
	n, done := b.routeAsync(m, nil, now, true, inbound{remote: true, publisherID: publisherID, shared: shared})
	*m = session.Message{}
	ephemeralPool.Put(m)
	if done == nil {
		return n, nil
	}
	return n, done.finish
}

// SetRetained applies a retained message replicated from another node:
// r set as the retained message of its topic, or the topic's retained
// message deleted when r.Payload is empty.
func (b *Broker) SetRetained(r *MessageRecord) error {
	m := messageFromRecord(r)
	m.Payload = append([]byte(nil), r.Payload...)
	b.retain(m)
	if b.store == nil || !persistRetained(m.Topic) {
		return nil
	}
	var batch Batch
	if len(m.Payload) == 0 {
		batch.DeleteRetained(m.Topic)
	} else {
		rec := messageRecord(m)
		batch.PutRetained(&rec)
	}
	return b.apply(&batch, false)
}

// InRetainedOrder runs fn in turn with this node's own retained writes,
// each of which is applied and stamped for the cluster (Router.Retained)
// in one step: a write from another node applied in fn (SetRetained)
// cannot fall between the two, where it would be stamped older than the
// local write yet applied after it.
func (b *Broker) InRetainedOrder(fn func()) {
	b.retOrder.Lock()
	defer b.retOrder.Unlock()
	fn()
}

// EachRetained calls fn for every retained message (not $SYS), to send
// them to a node that joins.
func (b *Broker) EachRetained(fn func(r *MessageRecord)) {
	var all []*session.Message
	b.retMu.RLock()
	b.retained.Match("#", func(_ string, m *session.Message) bool {
		all = append(all, m)
		return true
	})
	b.retMu.RUnlock()
	now := time.Now()
	for _, m := range all {
		if topic.IsSys(m.Topic) || m.Expired(now) {
			continue
		}
		r := messageRecord(m)
		fn(&r)
	}
}

// Kick closes the connection of clientID on this node with "session taken
// over" if it connected before at: the client connected again on another
// node.
func (b *Broker) Kick(clientID string, at time.Time) {
	b.mu.Lock()
	var c *conn
	if s := b.sessions[clientID]; s != nil {
		s.mu.Lock()
		c = s.conn
		s.mu.Unlock()
	}
	b.mu.Unlock()
	if c != nil && c.connectedAt.Before(at) {
		c.kick(packet.SessionTakenOver)
	}
}

// relayGhostLife is how long a session handed over to another node stays
// here as a ghost passing on what still reaches it: the other nodes may go
// on forwarding its messages here until they learn that the new node
// subscribes (milliseconds; a link's route update), and a message
// published here meanwhile matches it here.
const relayGhostLife = 2 * time.Second

// holdMax bounds how long a session that arrived waits for the relay from
// its old node to end (ReleaseHeld) before it takes what came directly.
const holdMax = relayGhostLife + time.Second

// Handover takes the session of clientID out of this broker to move it to
// another node: its connection, if any, is closed (MQTT 5 reason 0x8E),
// and its state is returned. The caller must call done: done(true) once
// the other node has stored the session (its records are then deleted
// here), done(false) to put it back. state is nil (and done a no-op) when
// the broker holds no such session.
//
// With relay nil the session's subscriptions are removed at once. With
// relay set the session stays subscribed as a ghost: what is delivered to
// it from the moment of the snapshot is passed to relay instead (to be
// sent to the new node, DeliverRelayed there, which takes a message once
// even when it also arrives directly), until relayGhostLife after done,
// so that nothing published during the move is lost.
//
// end ends the ghost before its time, once the other nodes have confirmed
// that they forward to the new node, and then calls after (at once
// without a ghost). A ghost still passing on the relay from the node its
// session came from ends after that relay does.
func (b *Broker) Handover(clientID string, relay RelayFunc) (state *SessionState, done func(ok bool), end func(after func())) {
	// what waits for an earlier relay to end goes into the snapshot
	b.ReleaseHeld(clientID, 0)
	s := b.lockOffline(clientID)
	if s == nil {
		b.mu.Unlock()
		return nil, func(bool) {}, func(after func()) {
			if after != nil {
				after()
			}
		}
	}
	delete(b.sessions, clientID)
	delete(b.offline, s)
	var oldGhost *sess
	if relay != nil {
		oldGhost = b.ghosts[clientID]
		b.ghosts[clientID] = s
	}
	s.mu.Lock()
	// snapshot and stop taking deliveries in one step: what follows is
	// relayed (or dropped)
	state = s.stateLocked()
	if relay != nil {
		s.relay = relay
		// still taking the relay from the node it came from: the ghost
		// passes that on too, and ends only after it (ReleaseHeld)
		s.upstream = s.relayOpen && time.Now().Before(s.holdUntil)
		s.st.Reset()
		s.uncongestLocked()
	} else {
		s.gone = true
	}
	s.mu.Unlock()
	b.mu.Unlock()
	if oldGhost != nil {
		b.endGhost(oldGhost)
	}
	if relay == nil {
		b.dropSession(s)
	}
	end = func(after func()) {
		if after != nil {
			after()
		}
	}
	if relay != nil {
		end = func(after func()) {
			s.mu.Lock()
			s.endAsked = true
			s.onGhostEnd = after
			wait := s.upstream && time.Now().Before(s.holdUntil)
			s.mu.Unlock()
			if !wait {
				b.dropGhost(clientID, s)
			}
		}
	}
	return state, func(ok bool) {
		if !ok {
			b.dropGhost(clientID, s)
			if err := b.Install(state); err != nil {
				b.log.Error("session handover failed and the session could not be restored", "client_id", clientID, "err", err)
			}
			return
		}
		if relay != nil {
			s.mu.Lock()
			s.ghostUntil = time.Now().Add(relayGhostLife)
			s.mu.Unlock()
		}
		var batch Batch
		if b.store != nil {
			batch.DeleteSession(clientID)
			if err := b.apply(&batch, true); err != nil {
				b.log.Warn("handed-over session not deleted from the store", "client_id", clientID, "err", err)
			}
		}
	}, end
}

// ReleaseHeld ends the wait of the session of clientID for the relay
// from its old node (see Install): the messages routed to it meanwhile
// are delivered, in order, but for those the relay brought already.
//
// epoch is the claim the relay belonged to (the session's install, see
// SessionState.Epoch); 0 releases whatever the session waits for.
func (b *Broker) ReleaseHeld(clientID string, epoch uint64) {
	b.mu.Lock()
	s := b.sessions[clientID]
	g := b.ghosts[clientID]
	b.mu.Unlock()
	if s != nil {
		if epoch != 0 {
			s.mu.Lock()
			if epoch == s.holdEpoch {
				s.relayOpen = false
			}
			s.mu.Unlock()
		}
		s.releaseHeld(epoch)
	}
	if g != nil && epoch != 0 {
		// a ghost that was still taking its predecessor's relay
		g.mu.Lock()
		wait := g.upstream && epoch == g.holdEpoch
		if wait {
			g.upstream = false
		}
		ended := wait && g.endAsked
		g.mu.Unlock()
		if ended {
			b.dropGhost(clientID, g)
		}
	}
}

func (s *sess) releaseHeld(epoch uint64) {
	s.mu.Lock()
	if !s.holding || s.releasing || (epoch != 0 && epoch != s.holdEpoch) {
		s.mu.Unlock()
		return
	}
	s.releasing = true // one releaser: what is routed meanwhile queues behind
	s.mu.Unlock()
	for {
		s.mu.Lock()
		held := s.held
		s.held = nil
		if len(held) == 0 || s.gone {
			s.holding, s.releasing = false, false
			s.mu.Unlock()
			s.b.mu.Lock()
			delete(s.b.holding, s)
			s.b.mu.Unlock()
			return
		}
		s.mu.Unlock()
		now := time.Now()
		for _, h := range held {
			s.deliverStored(h.msg, h.qos, h.retain, h.subIDs, now, nil)
		}
	}
}

// sweepHolds releases the sessions whose relay did not end in time.
func (b *Broker) sweepHolds(now time.Time) {
	var due []*sess
	b.mu.Lock()
	for s := range b.holding {
		s.mu.Lock()
		if now.After(s.holdUntil) {
			due = append(due, s)
		}
		s.mu.Unlock()
	}
	b.mu.Unlock()
	for _, s := range due {
		s.releaseHeld(0)
	}
}

// dropGhost ends the ghost s of clientID (a no-op for another session).
func (b *Broker) dropGhost(clientID string, s *sess) {
	b.mu.Lock()
	if b.ghosts[clientID] == s {
		delete(b.ghosts, clientID)
	}
	b.mu.Unlock()
	b.endGhost(s)
}

// endGhost unsubscribes a ghost, out of b.ghosts already, and runs what
// waits for its end.
func (b *Broker) endGhost(s *sess) {
	b.dropSession(s)
	s.mu.Lock()
	f := s.onGhostEnd
	s.onGhostEnd = nil
	s.mu.Unlock()
	if f != nil {
		f()
	}
}

// sweepGhosts ends the ghosts whose time is up.
func (b *Broker) sweepGhosts(now time.Time) {
	var ended []*sess
	b.mu.Lock()
	for id, g := range b.ghosts {
		g.mu.Lock()
		due := !g.ghostUntil.IsZero() && now.After(g.ghostUntil)
		g.mu.Unlock()
		if due {
			delete(b.ghosts, id)
			ended = append(ended, g)
		}
	}
	b.mu.Unlock()
	for _, g := range ended {
		b.endGhost(g)
	}
}

// DeliverRelayed delivers msg, relayed by the ghost of clientID on another
// node (see Handover), to the session of clientID here through its
// subscriptions that match (shared: the shared subscription it was chosen
// for), once even when it also came directly. Without a session here, a
// ghost of clientID here relays it further. It reports whether it was
// taken or passed on. p and its payload may be reused once it returns.
func (b *Broker) DeliverRelayed(clientID string, p *packet.Publish, publisherID string, id session.MsgID, shared *SharedMatch) bool {
	b.mu.Lock()
	s := b.sessions[clientID]
	if s == nil {
		s = b.ghosts[clientID]
	}
	b.mu.Unlock()
	if s == nil {
		return false
	}
	now := time.Now()
	msg := newMessage(p, publisherID, now)
	msg.ID = id
	s.mu.Lock()
	if s.gone {
		s.mu.Unlock()
		return false
	}
	if s.relay != nil {
		relay := s.relay
		s.mu.Unlock()
		relay(msg, shared)
		return true
	}
	upgrade := b.opts.UpgradeOutgoingQoS
	var via *subscription
	var qos byte
	var rap, matched bool
	var ids []int
	for _, sub := range s.subs {
		if shared != nil {
			if sub.group == shared.Group && sub.inner == shared.Filter {
				via, matched = sub, true
				qos, rap = min(msg.QoS, sub.qos), sub.rap
				if upgrade {
					qos = sub.qos
				}
				ids = nil
				if sub.subID > 0 {
					ids = []int{sub.subID}
				}
				break
			}
			continue
		}
		if sub.group != "" || !topic.Match(sub.inner, msg.Topic) || (sub.noLocal && msg.Origin == clientID) {
			continue
		}
		q := min(msg.QoS, sub.qos)
		if upgrade {
			q = sub.qos
		}
		qos, rap, matched = max(qos, q), rap || sub.rap, true
		if sub.subID > 0 {
			ids = append(ids, sub.subID)
		}
	}
	s.mu.Unlock()
	if !matched {
		return false
	}
	return s.deliverStored(msg, qos, msg.Retain && rap, ids, now, via)
}

// deliverStored delivers msg to s as a route does, in turn (not held
// back): a durable session's delivery is stored (synced) before it is
// sent, as for a message routed here.
func (s *sess) deliverStored(msg *session.Message, qos byte, retain bool, subIDs []int, now time.Time, via *subscription) bool {
	var ec encCache
	ec.reset(msg)
	var batch Batch
	if s.b.store != nil {
		ec.batch = &batch
	}
	ok := s.deliverVia(msg, qos, retain, subIDs, now, &ec, via, true)
	err := s.b.apply(&batch, true)
	if err != nil {
		s.b.log.Warn("relayed message not stored", "client_id", s.id, "err", err)
	}
	releaseHeld(ec.added, err, now, nil)
	return ok
}

// stateLocked snapshots the session. s.mu must be held.
func (s *sess) stateLocked() *SessionState {
	st := &SessionState{Session: *s.sessionRecordLocked()}
	if st.Session.DisconnectedAt.IsZero() {
		st.Session.DisconnectedAt = time.Now()
	}
	for _, sub := range s.subs {
		st.Subscriptions = append(st.Subscriptions, *subscriptionRecord(sub))
	}
	slices.SortFunc(st.Subscriptions, func(a, b SubscriptionRecord) int { return cmp.Compare(a.Filter, b.Filter) })
	ds := append(s.st.Inflight(nil), s.st.Queued()...)
	slices.SortFunc(ds, func(a, b *session.Delivery) int { return cmp.Compare(a.Seq, b.Seq) })
	for _, d := range ds {
		r := deliveryRecord(d)
		r.Message.Payload = append([]byte(nil), r.Message.Payload...)
		st.Deliveries = append(st.Deliveries, *r)
	}
	st.IncomingQoS2 = s.st.IncomingIDs(nil)
	slices.Sort(st.IncomingQoS2)
	// what it holds or took lately, so that the next node takes none
	// of it twice
	for _, d := range ds {
		if !d.Msg.ID.IsZero() {
			st.Seen = append(st.Seen, d.Msg.ID)
		}
	}
	if s.seen != nil && time.Now().Before(s.seenUntil) {
		for id := range s.seen {
			st.Seen = append(st.Seen, id)
		}
	}
	return st
}

// Install puts a session handed over by another node into this broker,
// offline until its client connects, replacing any session of that id
// held here, and stores it (synced) when there is a store.
func (b *Broker) Install(st *SessionState) error {
	id := st.Session.ClientID
	if id == "" {
		return fmt.Errorf("install: session without a client id")
	}
	b.mu.Lock()
	old := b.sessions[id]
	if old != nil {
		old.mu.Lock()
		online := old.conn != nil
		old.mu.Unlock()
		if online {
			b.mu.Unlock()
			return fmt.Errorf("install %q: %w", id, ErrSessionOnline)
		}
		delete(b.sessions, id)
		delete(b.offline, old)
		old.mu.Lock()
		old.gone = true
		old.mu.Unlock()
	}
	b.mu.Unlock()
	if old != nil {
		b.dropSession(old)
	}
	var batch Batch
	if b.store != nil && st.Session.Expiry > 0 {
		batch.DeleteSession(id)
		rec := st.Session
		batch.PutSession(&rec)
		for i := range st.Subscriptions {
			batch.PutSubscription(id, &st.Subscriptions[i])
		}
		for i := range st.Deliveries {
			batch.PutDelivery(id, &st.Deliveries[i])
		}
		for _, pid := range st.IncomingQoS2 {
			batch.PutIncoming(id, pid)
		}
		if err := b.apply(&batch, true); err != nil {
			return err
		}
	}
	b.mu.Lock()
	ghost := b.ghosts[id]
	delete(b.ghosts, id)
	b.mu.Unlock()
	if ghost != nil {
		// the session came back before its ghost here ended: the ghost
		// ends once the session's subscriptions are in place, so that
		// neither this node nor its route is without them meanwhile
		// (what both take reaches the session once: its seen set)
		defer b.endGhost(ghost)
	}
	l := &loader{b: b, now: time.Now()}
	rec := st.Session
	if err := l.Session(&rec); err != nil {
		return err
	}
	// before its subscriptions: every message routed to it is recorded
	// (and held, while its old node relays)
	b.mu.Lock()
	if s := b.sessions[id]; s != nil {
		s.mu.Lock()
		s.seen = make(map[session.MsgID]struct{}, len(st.Seen))
		for _, mid := range st.Seen {
			s.seen[mid] = struct{}{}
		}
		s.seenUntil = l.now.Add(seenWindow)
		if st.Relayed {
			s.holding, s.holdUntil, s.holdEpoch = true, l.now.Add(holdMax), st.Epoch
			s.relayOpen = true
			b.holding[s] = struct{}{}
		}
		s.mu.Unlock()
	}
	b.mu.Unlock()
	for i := range st.Subscriptions {
		if err := l.Subscription(id, &st.Subscriptions[i]); err != nil {
			return err
		}
	}
	for i := range st.Deliveries {
		if err := l.Delivery(id, &st.Deliveries[i]); err != nil {
			return err
		}
	}
	for _, pid := range st.IncomingQoS2 {
		if err := l.IncomingQoS2(id, pid); err != nil {
			return err
		}
	}
	return nil
}

// PersistentSessions returns the client ids of the sessions held here that
// outlive their connections, for handing them over when the node leaves.
func (b *Broker) PersistentSessions() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var ids []string
	for id, s := range b.sessions {
		s.mu.Lock()
		if s.expiry > 0 && !s.gone {
			ids = append(ids, id)
		}
		s.mu.Unlock()
	}
	slices.Sort(ids)
	return ids
}

// Drain stops accepting clients and disconnects every connected one with
// "server shutting down" (MQTT 5 reason 0x8B), so that they reconnect
// elsewhere; it returns once they are all detached or ctx ends. Sessions
// stay, for Handover. Close still has to be called.
func (b *Broker) Drain(ctx context.Context) error {
	b.mu.Lock()
	b.draining = true
	conns := b.stopAcceptingLocked()
	b.mu.Unlock()
	for _, c := range conns {
		c.kick(packet.ServerShuttingDown)
	}
	for _, c := range conns {
		select {
		case <-c.cleaned:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// ClientCount is the number of connected clients.
func (b *Broker) ClientCount() int { return int(b.stats.connected.Load()) }

// SessionCount is the number of sessions held here, online and offline.
func (b *Broker) SessionCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.sessions)
}

// SharedRetainedCount is the number of retained messages other than the
// node's own $SYS topics: those that the cluster replicates, so that it is
// the same on every node once they have converged.
func (b *Broker) SharedRetainedCount() int {
	b.retMu.RLock()
	defer b.retMu.RUnlock()
	sys := 0
	b.retained.Match("$SYS/#", func(string, *session.Message) bool {
		sys++
		return true
	})
	return b.retained.Len() - sys
}
