package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"time"

	"github.com/starlingmq/starling/internal/broker"
	"github.com/starlingmq/starling/internal/cluster/meta"
	"github.com/starlingmq/starling/internal/cluster/proto"
	"github.com/starlingmq/starling/internal/packet"
	"github.com/starlingmq/starling/internal/session"
)

// transfer is a session being received from another node, in parts.
type transfer struct {
	epoch uint64
	parts []*proto.SessionTransfer
	done  chan struct{} // closed when installed or failed
	err   error
	// seen: the messages the session held or took lately (SessionSeen);
	// relays: messages its old node relayed before it was installed
	seen   []session.MsgID
	relays []*proto.Relay
	ended  bool // RelayEnd came while relays were queued
}

func (x *transfer) fail() {
	select {
	case <-x.done:
	default:
		x.err = errLinkDown
		close(x.done)
	}
}

// handoverTimeout bounds the wait for the node that held a session to
// send it, and for the claimant to store it.
const handoverTimeout = 10 * time.Second

// ErrRegistryUnavailable: the registry's majority cannot be reached (a
// netsplit, or the registry has not formed yet).
var ErrRegistryUnavailable = errors.New("cluster: session registry unavailable")

// Claim implements broker.Router: every other node closes an older
// connection of clientID; for a persistent session (or one the registry
// still places on another node) the registry makes this node the owner
// and the previous owner hands the session over.
func (n *Node) Claim(ctx context.Context, clientID string, persistent bool) error {
	kick := &proto.SessionKick{ClientID: clientID, Node: n.name, AtUnixNano: time.Now().UnixNano()}
	for _, l := range n.allLinks() {
		l.send(kick)
	}
	if !persistent {
		o, ok := n.reg.Owner(clientID)
		if !ok {
			return nil
		}
		if o.Node == n.name {
			// the session here ends with this clean connection
			n.release(clientID, o.Epoch)
			return nil
		}
	}
	prev, epoch, err := n.reg.Claim(ctx, clientID, n.name)
	if err != nil {
		if n.cfg.AllowRegisterDuringNetsplit {
			n.log.Warn("cluster: registry unreachable, session registered here only (allow_register_during_netsplit)",
				"client_id", clientID, "err", err)
			return nil
		}
		return fmt.Errorf("%w: %w", ErrRegistryUnavailable, err)
	}
	if prev.Node != "" && prev.Node != n.name {
		if err := n.fetch(ctx, prev.Node, clientID, epoch); err != nil {
			// the previous owner is gone or silent: its session is lost
			n.log.Warn("cluster: session not handed over, starting afresh", "client_id", clientID, "from", prev.Node, "err", err)
		}
	}
	if !persistent {
		n.release(clientID, epoch)
	}
	return nil
}

func (n *Node) release(clientID string, epoch uint64) {
	n.goroutine(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.reg.Release(ctx, clientID, n.name, epoch); err != nil {
			n.log.Debug("cluster: registry release", "client_id", clientID, "err", err)
		}
	})
}

// fetch asks from for the session of clientID and waits until it is
// installed here.
func (n *Node) fetch(ctx context.Context, from, clientID string, epoch uint64) error {
	l := n.linkTo(from)
	if l == nil {
		return fmt.Errorf("no link to %s", from)
	}
	x := &transfer{epoch: epoch, done: make(chan struct{})}
	n.mu.Lock()
	if old := n.xfers[clientID]; old != nil {
		old.fail()
		x.relays, old.relays = old.relays, nil // still the client's
	}
	n.xfers[clientID] = x
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		if n.xfers[clientID] == x {
			delete(n.xfers, clientID)
		}
		n.mu.Unlock()
	}()
	if !l.send(&proto.SessionClaim{ClientID: clientID, Node: n.name, Epoch: epoch}) {
		return errLinkDown
	}
	t := time.NewTimer(handoverTimeout)
	defer t.Stop()
	select {
	case <-x.done:
		return x.err
	case <-l.done:
		return errLinkDown
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errors.New("handover timed out")
	}
}

// receiveTransfer collects a session's parts; on the last it installs the
// session and acknowledges it. A transfer nobody here waits for (a node
// leaving pushes its sessions) is installed all the same.
func (n *Node) receiveTransfer(l *link, m *proto.SessionTransfer) {
	n.mu.Lock()
	x := n.xfers[m.ClientID]
	if x != nil && m.Epoch < x.epoch {
		n.mu.Unlock() // a part of an older transfer: superseded
		return
	}
	if x == nil || x.epoch != m.Epoch || uint32(len(x.parts)) != m.Part {
		if m.Part != 0 {
			n.mu.Unlock() // a transfer whose start this node did not see
			return
		}
		if x != nil && x.epoch == m.Epoch {
			x.parts = nil // a transfer started again
		} else {
			nx := &transfer{epoch: m.Epoch, done: make(chan struct{})}
			if x != nil {
				nx.relays, x.relays = x.relays, nil
			}
			x = nx
			n.xfers[m.ClientID] = x
		}
	}
	x.parts = append(x.parts, m)
	if m.More {
		n.mu.Unlock()
		return
	}
	delete(n.xfers, m.ClientID)
	n.installing[m.ClientID] = x
	n.mu.Unlock()
	// installed off the link's reader, which serves every other session
	n.goroutine(func() {
		defer n.relayQueued(m.ClientID, x)
		code := packet.Success
		st := sessionFromParts(m.ClientID, x.parts)
		if st != nil {
			st.Seen = x.seen
			st.Relayed = l.ver >= 2 // the sender relays (see relayer)
			st.Epoch = m.Epoch
			switch err := n.b.Install(st); {
			case errors.Is(err, broker.ErrSessionOnline):
				// it came too late: the client is connected here with a
				// session of its own; the sender forgets its copy
				code = packet.SessionTakenOver
			case err != nil:
				n.log.Error("cluster: handed-over session not installed", "client_id", m.ClientID, "err", err)
				code = packet.UnspecifiedError
				x.err = err
			}
		}
		l.send(&proto.SessionTransferAck{ClientID: m.ClientID, Epoch: m.Epoch, Code: code})
		if st != nil && st.Relayed && code == packet.Success {
			// the old node relays until every node forwards here
			n.sendBarriers(m.ClientID, m.Epoch, l.peer)
		}
		select {
		case <-x.done:
		default:
			close(x.done)
		}
	})
}

// relayQueued delivers the messages relayed for the session of clientID
// while x was being installed, then lets the next ones through at once.
func (n *Node) relayQueued(clientID string, x *transfer) {
	for {
		n.mu.Lock()
		rs := x.relays
		x.relays = nil
		if len(rs) == 0 {
			if n.installing[clientID] == x {
				delete(n.installing, clientID)
			}
			ended := x.ended
			n.mu.Unlock()
			if ended {
				n.b.ReleaseHeld(clientID, x.epoch)
			}
			return
		}
		n.mu.Unlock()
		for _, r := range rs {
			n.deliverRelay(r)
		}
	}
}

// receiveSeen records, for the transfer of a session that follows, the
// messages the session must not take again.
func (n *Node) receiveSeen(m *proto.SessionSeen) {
	n.mu.Lock()
	defer n.mu.Unlock()
	x := n.xfers[m.ClientID]
	switch {
	case x != nil && m.Epoch < x.epoch:
		return // an older transfer's
	case x == nil || m.Epoch > x.epoch:
		// a transfer nobody here waits for (a node leaving pushes its
		// sessions) starts with this
		nx := &transfer{epoch: m.Epoch, done: make(chan struct{})}
		if x != nil {
			x.fail()
			nx.relays, x.relays = x.relays, nil
		}
		x = nx
		n.xfers[m.ClientID] = x
	}
	for _, id := range m.IDs {
		x.seen = append(x.seen, session.MsgID(id))
	}
}

// receiveRelay takes a message relayed by a session's old node: queued
// while the session is on its way here, delivered to it otherwise.
func (n *Node) receiveRelay(m *proto.Relay) {
	n.mu.Lock()
	x := n.installing[m.ClientID]
	if x == nil {
		x = n.xfers[m.ClientID]
	}
	if x != nil {
		x.relays = append(x.relays, m)
		n.mu.Unlock()
		return
	}
	n.mu.Unlock()
	n.deliverRelay(m)
}

// receiveRelayEnd lets the messages that came directly to a session here
// go, after those relayed before the end.
func (n *Node) receiveRelayEnd(m *proto.RelayEnd) {
	n.mu.Lock()
	if x := n.installing[m.ClientID]; x != nil && x.epoch == m.Epoch {
		x.ended = true
		n.mu.Unlock()
		return
	}
	n.mu.Unlock()
	n.b.ReleaseHeld(m.ClientID, m.Epoch)
}

func (n *Node) deliverRelay(m *proto.Relay) {
	var shared *broker.SharedMatch
	if m.Group != "" {
		shared = &broker.SharedMatch{Group: m.Group, Filter: m.Filter}
	}
	if n.b.DeliverRelayed(m.ClientID, m.Publish, m.PublisherID, session.MsgID(m.ID), shared) {
		n.relayed.Add(1)
	}
}

// relayer passes what reaches a session handed over from here (its
// ghost, see broker.Handover) to the node it went to, on the link to
// that node, after the session's transfer: held until start.
//
// The ghost ends, and RelayEnd tells the new node so, once every node
// linked here has passed the new node's RelayBarrier on (BarrierPassed:
// it forwards to the new node, and what it forwarded here before has
// arrived), plus relayGrace for forwards that were being queued; or
// after relayGhostLife at the latest.
type relayer struct {
	n        *Node
	l        *link
	clientID string
	epoch    uint64
	end      func(after func()) // ends the ghost (broker.Handover)
	mu       sync.Mutex
	held     []*proto.Relay
	open     bool
	waiting  map[string]bool // nodes whose BarrierPassed is awaited
	finished bool
	quit     chan struct{} // closed when all passed
}

// relayGrace: how long a session's old node still relays after the last
// node passed the barrier on, for a forward that matched the routes just
// before the new node's and was still being queued.
const relayGrace = 50 * time.Millisecond

// relayGhostLife bounds a ghost's life when a node never passes the
// barrier on (cut off, or gone).
const relayGhostLife = 2 * time.Second

// newRelayer returns nil when the peer does not take relays (protocol
// version 1): the ghost then drops what reaches it, as before.
func (n *Node) newRelayer(l *link, clientID string, epoch uint64) *relayer {
	if l.ver < 2 {
		return nil
	}
	return &relayer{n: n, l: l, clientID: clientID, epoch: epoch, quit: make(chan struct{})}
}

// watch registers r to count the nodes linked now (those that speak
// version 2) as they pass the new node's barrier on; end is what
// Handover returned. arm starts the wait once the transfer is done.
func (r *relayer) watch(end func(after func())) {
	if r == nil {
		return
	}
	n := r.n
	r.mu.Lock()
	r.end = end
	r.waiting = make(map[string]bool)
	for _, l := range n.allLinks() {
		if l.ver >= 2 {
			r.waiting[l.peer] = true
		}
	}
	if len(r.waiting) == 0 {
		close(r.quit)
	}
	r.mu.Unlock()
	k := ackKey{r.clientID, r.epoch}
	n.mu.Lock()
	if old := n.relayers[k]; old != nil {
		n.goroutine(old.finish)
	}
	n.relayers[k] = r
	n.mu.Unlock()
}

// arm ends the ghost once every node passed the barrier on (and
// relayGrace), or relayGhostLife after the transfer; at once when the new
// node did not install the session (ok false): it then takes nothing
// relayed.
func (r *relayer) arm(ok bool) {
	if r == nil {
		return
	}
	if !ok {
		r.finish()
		return
	}
	n := r.n
	n.goroutine(func() {
		t := time.NewTimer(relayGhostLife)
		defer t.Stop()
		select {
		case <-r.quit:
			g := time.NewTimer(relayGrace)
			defer g.Stop()
			select {
			case <-g.C:
			case <-t.C:
			case <-n.quit:
			}
		case <-t.C:
		case <-n.quit:
		}
		r.finish()
	})
}

// passed records that node passed the barrier on.
func (r *relayer) passed(node string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.waiting == nil || !r.waiting[node] {
		return
	}
	delete(r.waiting, node)
	if len(r.waiting) == 0 {
		close(r.quit)
	}
}

// finish ends the ghost and tells the new node; safe twice.
func (r *relayer) finish() {
	r.mu.Lock()
	if r.finished {
		r.mu.Unlock()
		return
	}
	r.finished = true
	end := r.end
	r.mu.Unlock()
	after := func() {
		r.mu.Lock()
		r.l.send(&proto.RelayEnd{ClientID: r.clientID, Epoch: r.epoch})
		r.mu.Unlock()
		k := ackKey{r.clientID, r.epoch}
		n := r.n
		n.mu.Lock()
		if n.relayers[k] == r {
			delete(n.relayers, k)
		}
		n.mu.Unlock()
	}
	if end == nil {
		after()
		return
	}
	// after the ghost ends (later when it still passes on the relay
	// from the node its session came from)
	end(after)
}

// receiveBarrier handles the barrier the new node of a session sends
// once it holds it: passed on to the old node (its ghost), or, on the old
// node, counted for the new node itself (whose routes here came before it).
func (n *Node) receiveBarrier(l *link, m *proto.RelayBarrier) {
	if m.Ghost == n.name {
		n.barrierPassed(m.ClientID, m.Epoch, l.peer)
		return
	}
	if g := n.linkTo(m.Ghost); g != nil {
		g.send(&proto.BarrierPassed{ClientID: m.ClientID, Epoch: m.Epoch, Node: n.name})
	}
}

func (n *Node) barrierPassed(clientID string, epoch uint64, node string) {
	n.mu.Lock()
	r := n.relayers[ackKey{clientID, epoch}]
	n.mu.Unlock()
	if r != nil {
		r.passed(node)
	}
}

// sendBarriers tells every node that the session of clientID, come from
// ghost, is held here (RelayBarrier).
func (n *Node) sendBarriers(clientID string, epoch uint64, ghost string) {
	m := &proto.RelayBarrier{ClientID: clientID, Epoch: epoch, Ghost: ghost}
	for _, l := range n.allLinks() {
		if l.ver >= 2 {
			l.send(m)
		}
	}
}

// relayFunc is r's broker.RelayFunc, nil for a nil r.
func (r *relayer) relayFunc() broker.RelayFunc {
	if r == nil {
		return nil
	}
	return r.relay
}

func (r *relayer) relay(msg *session.Message, shared *broker.SharedMatch) {
	m := &proto.Relay{ClientID: r.clientID, ID: proto.MsgID(msg.ID), PublisherID: msg.Origin, Publish: new(packet.Publish)}
	if shared != nil {
		m.Group, m.Filter = shared.Group, shared.Filter
	}
	rem := new(uint32)
	publishOf(m.Publish, rem, msg, time.Now())
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.open {
		if !r.l.send(m) {
			r.n.dropped.Add(1)
		}
		return
	}
	// kept past this call: msg's memory may be a read buffer's
	p := m.Publish
	p.Payload = bytes.Clone(p.Payload)
	p.Properties.CorrelationData = bytes.Clone(p.Properties.CorrelationData)
	p.Properties.User = slices.Clone(p.Properties.User)
	r.held = append(r.held, m)
}

// start sends what was held and relays the rest at once; call it once the
// session's transfer is queued on the link.
func (r *relayer) start() {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.held {
		if !r.l.send(m) {
			r.n.dropped.Add(1)
		}
	}
	r.held, r.open = nil, true
}

// sendSeen sends the messages st holds or took lately ahead of its
// transfer, in lists of at most maxSeen.
func sendSeen(l *link, clientID string, epoch uint64, st *broker.SessionState) bool {
	const maxSeen = 8192
	if l.ver < 2 || len(st.Seen) == 0 {
		return true
	}
	for ids := range slices.Chunk(st.Seen, maxSeen) {
		m := &proto.SessionSeen{ClientID: clientID, Epoch: epoch, IDs: make([]proto.MsgID, len(ids))}
		for i, id := range ids {
			m.IDs[i] = proto.MsgID(id)
		}
		if !l.send(m) {
			return false
		}
	}
	return true
}

// acks waiting for the transfers this node sends, by client id and epoch.
type ackKey struct {
	clientID string
	epoch    uint64
}

// handOver sends the session of clientID to peer, which claimed it at
// epoch, and forgets it here once peer has stored it.
func (n *Node) handOver(peer, clientID string, epoch uint64) {
	l := n.linkTo(peer)
	if l == nil {
		if _, done, _ := n.b.Handover(clientID, nil); done != nil {
			done(false)
		}
		return
	}
	r := n.newRelayer(l, clientID, epoch)
	st, done, end := n.b.Handover(clientID, r.relayFunc())
	if st != nil {
		r.watch(end)
	}
	ch := n.expectAck(ackKey{clientID, epoch})
	if st != nil && !sendSeen(l, clientID, epoch, st) {
		n.dropAck(ackKey{clientID, epoch})
		done(false)
		r.arm(false)
		return
	}
	for _, p := range transferParts(clientID, epoch, st) {
		if !l.send(p) {
			n.dropAck(ackKey{clientID, epoch})
			done(false)
			if st != nil {
				r.arm(false)
			}
			return
		}
	}
	r.start()
	t := time.NewTimer(handoverTimeout)
	defer t.Stop()
	installed := false
	select {
	case code := <-ch:
		done(!code.IsError() || code == packet.SessionTakenOver)
		installed = !code.IsError()
		if code.IsError() && code != packet.SessionTakenOver {
			n.log.Warn("cluster: session handover refused", "client_id", clientID, "peer", peer, "code", code)
		}
	case <-l.done:
		n.dropAck(ackKey{clientID, epoch})
		done(false)
	case <-t.C:
		n.dropAck(ackKey{clientID, epoch})
		done(false)
	case <-n.quit:
		done(false)
	}
	if st != nil {
		r.arm(installed)
	}
}

func (n *Node) expectAck(k ackKey) chan packet.ReasonCode {
	ch := make(chan packet.ReasonCode, 1)
	n.mu.Lock()
	if n.acks == nil {
		n.acks = make(map[ackKey]chan packet.ReasonCode)
	}
	n.acks[k] = ch
	n.mu.Unlock()
	return ch
}

func (n *Node) dropAck(k ackKey) {
	n.mu.Lock()
	delete(n.acks, k)
	n.mu.Unlock()
}

func (n *Node) transferAcked(m *proto.SessionTransferAck) {
	k := ackKey{m.ClientID, m.Epoch}
	n.mu.Lock()
	ch := n.acks[k]
	delete(n.acks, k)
	n.mu.Unlock()
	if ch != nil {
		ch <- m.Code
	}
}

// Leave hands this node's persistent sessions to the other nodes and
// leaves the cluster: clients are told to go (MQTT 5 "server shutting
// down") and reconnect elsewhere, where their sessions are waiting. The
// broker must then be closed.
func (n *Node) Leave(ctx context.Context) error {
	n.leaving.Store(true)
	if err := n.b.Drain(ctx); err != nil {
		return err
	}
	var errs []error
	for _, id := range n.b.PersistentSessions() {
		if err := n.pushSession(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("session %q: %w", id, err))
		}
	}
	if err := n.reg.Leave(ctx); err != nil {
		errs = append(errs, fmt.Errorf("registry: %w", err))
	}
	if n.ml != nil {
		if err := n.ml.Leave(2 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// pushSession gives one session to another alive node, chosen by a hash
// of the client id, through the registry.
func (n *Node) pushSession(ctx context.Context, clientID string) error {
	alive, _ := n.membership()
	alive = slices.DeleteFunc(alive, func(s meta.Server) bool { return s.ID == n.name || n.linkTo(s.ID) == nil })
	if len(alive) == 0 {
		return errors.New("no other node to take it")
	}
	slices.SortFunc(alive, func(a, b meta.Server) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	h := fnv.New32a()
	h.Write([]byte(clientID))
	target := alive[int(h.Sum32()%uint32(len(alive)))].ID
	l := n.linkTo(target)
	if l == nil {
		return errLinkDown
	}
	// out of the broker first: a client that reconnected elsewhere since
	// the drain has taken its session already, and is not to lose it
	// (the relayer's epoch is set once the registry gives one)
	r := n.newRelayer(l, clientID, 0)
	st, done, end := n.b.Handover(clientID, r.relayFunc())
	if st == nil {
		return nil
	}
	prev, epoch, err := n.reg.Claim(ctx, clientID, target)
	if err != nil {
		done(false)
		return err
	}
	if prev.Node != "" && prev.Node != n.name {
		done(true) // claimed elsewhere meanwhile: this copy is stale
		end(nil)
		return nil
	}
	if r != nil {
		r.epoch = epoch
		r.watch(end)
	}
	ch := n.expectAck(ackKey{clientID, epoch})
	if !sendSeen(l, clientID, epoch, st) {
		n.dropAck(ackKey{clientID, epoch})
		done(false)
		r.arm(false)
		return errLinkDown
	}
	for _, p := range transferParts(clientID, epoch, st) {
		if !l.send(p) {
			n.dropAck(ackKey{clientID, epoch})
			done(false)
			r.arm(false)
			return errLinkDown
		}
	}
	r.start()
	select {
	case code := <-ch:
		done(!code.IsError() || code == packet.SessionTakenOver)
		r.arm(!code.IsError())
		if code.IsError() && code != packet.SessionTakenOver {
			return code
		}
		return nil
	case <-l.done:
		done(false)
		r.arm(false)
		return errLinkDown
	case <-ctx.Done():
		done(false)
		r.arm(false)
		return ctx.Err()
	}
}

// syncClientID is a client id no session uses: a compare-and-delete of it
// never matches, so releasing it is a write through the registry's leader
// that changes nothing, after which this node's copy is current.
const syncClientID = "$starling/registry-sync"

// adoptSessions runs after start, when the registry is in reach, until it
// reports ok (the registry answered for every session). A
// persistent session this node loaded from its store while the registry
// gives the client id to another node (the client moved while this node
// was down) is dropped here; one the registry forgot (this node was
// removed from it while down) is claimed again, so that the client finds
// it wherever it reconnects.
func (n *Node) adoptSessions() (ok bool) {
	ids := n.b.PersistentSessions()
	if len(ids) == 0 {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.reg.Release(ctx, syncClientID, n.name, 0); err != nil {
		n.log.Warn("cluster: stored sessions not checked against the registry, trying again", "err", err)
		return false
	}
	for {
		st := n.reg.Status()
		if st.AppliedIndex >= st.LastIndex {
			break
		}
		select {
		case <-ctx.Done():
			n.log.Warn("cluster: registry copy not caught up, stored sessions checked again later")
			return false
		case <-n.quit:
			return true
		case <-time.After(20 * time.Millisecond):
		}
	}
	ok = true
	dropped, claimed := 0, 0
	drop := func(id string) {
		if _, done, _ := n.b.Handover(id, nil); done != nil {
			done(true)
		}
		dropped++
	}
	for _, id := range ids {
		o, ok := n.reg.Owner(id)
		switch {
		case ok && o.Node != n.name:
			drop(id)
		case !ok:
			prev, _, err := n.reg.Claim(ctx, id, n.name)
			switch {
			case err != nil:
				n.log.Warn("cluster: stored session not registered", "client_id", id, "err", err)
				// tried again later, unless the registry refuses it for good
				ok = ok && errors.Is(err, meta.ErrInvalid)
			case prev.Node != "" && prev.Node != n.name:
				drop(id)
			default:
				claimed++
			}
		}
	}
	if dropped+claimed > 0 {
		n.log.Info("cluster: stored sessions checked against the registry", "dropped_moved_elsewhere", dropped, "registered_again", claimed)
	}
	return ok
}
