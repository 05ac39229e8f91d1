package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/starlingmq/starling/internal/packet"
)

// mapStore is a Store in maps, for the broker's own tests (the Pebble and
// in-memory stores are tested in package store against the same contract).
// It can fail the Nth Apply.
type mapStore struct {
	mu       sync.Mutex
	sessions map[string]SessionRecord
	subs     map[string]map[string]SubscriptionRecord
	dels     map[string]map[uint64]DeliveryRecord
	inc      map[string]map[uint16]bool
	ret      map[string]MessageRecord
	counters *CountersRecord
	applies  int
	syncs    int
	failFrom int // Apply number from which every Apply fails; 0: never
	failTo   int // last failing Apply number (inclusive)
}

var errInjected = errors.New("injected store failure")

func newMapStore() *mapStore {
	return &mapStore{
		sessions: map[string]SessionRecord{},
		subs:     map[string]map[string]SubscriptionRecord{},
		dels:     map[string]map[uint64]DeliveryRecord{},
		inc:      map[string]map[uint16]bool{},
		ret:      map[string]MessageRecord{},
	}
}

func (m *mapStore) Apply(_ context.Context, b *Batch, sync bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.applies++
	if m.failFrom > 0 && m.applies >= m.failFrom && m.applies <= m.failTo {
		return errInjected
	}
	if sync {
		m.syncs++
	}
	for _, op := range b.Ops {
		id := op.ClientID
		switch op.Kind {
		case OpPutSession:
			m.sessions[id] = *op.Session
		case OpDeleteSession:
			delete(m.sessions, id)
			delete(m.subs, id)
			delete(m.dels, id)
			delete(m.inc, id)
		case OpPutSubscription:
			if m.subs[id] == nil {
				m.subs[id] = map[string]SubscriptionRecord{}
			}
			m.subs[id][op.Subscription.Filter] = *op.Subscription
		case OpDeleteSubscription:
			delete(m.subs[id], op.Filter)
		case OpPutDelivery:
			if m.dels[id] == nil {
				m.dels[id] = map[uint64]DeliveryRecord{}
			}
			d := *op.Delivery
			d.Message.Payload = append([]byte(nil), d.Message.Payload...)
			m.dels[id][d.Seq] = d
		case OpDeleteDelivery:
			delete(m.dels[id], op.Seq)
		case OpPutIncoming:
			if m.inc[id] == nil {
				m.inc[id] = map[uint16]bool{}
			}
			m.inc[id][op.PacketID] = true
		case OpDeleteIncoming:
			delete(m.inc[id], op.PacketID)
		case OpPutRetained:
			m.ret[op.Retained.Topic] = *op.Retained
		case OpDeleteRetained:
			delete(m.ret, op.Topic)
		case OpPutCounters:
			c := *op.Counters
			m.counters = &c
		}
	}
	return nil
}

func (m *mapStore) Load(_ context.Context, l Loader) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cl, ok := l.(CountersLoader); ok && m.counters != nil {
		if err := cl.Counters(m.counters); err != nil {
			return err
		}
	}
	ids := map[string]bool{} // like Pebble: records without a session too
	for id := range m.sessions {
		ids[id] = true
	}
	for id := range m.dels {
		ids[id] = true
	}
	for id := range m.subs {
		ids[id] = true
	}
	for _, id := range slices.Sorted(mapKeys(ids)) {
		if r, ok := m.sessions[id]; ok {
			if err := l.Session(&r); err != nil {
				return err
			}
		}
		for _, s := range m.subs[id] {
			if err := l.Subscription(id, &s); err != nil {
				return err
			}
		}
		for _, seq := range slices.Sorted(mapKeys(m.dels[id])) {
			d := m.dels[id][seq]
			if err := l.Delivery(id, &d); err != nil {
				return err
			}
		}
		for pid := range m.inc[id] {
			if err := l.IncomingQoS2(id, pid); err != nil {
				return err
			}
		}
	}
	for _, r := range m.ret {
		if err := l.Retained(&r); err != nil {
			return err
		}
	}
	return nil
}

func (m *mapStore) Close() error { return nil }

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// restartable runs a broker on a fixed address over a store, and restarts
// it on the same store (as after a crash of the process: nothing but the
// store is kept).
type restartable struct {
	t     *testing.T
	store Store
	addr  string
	b     *Broker
	done  chan struct{}
}

func startPersistent(t *testing.T, st Store) *restartable {
	r := &restartable{t: t, store: st, addr: "127.0.0.1:0"}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *restartable) start() {
	r.t.Helper()
	b := New(Options{Store: r.store, RetainAvailable: true, MaxInflight: 20, TopicAliasMaximum: 10, AllowZeroLengthClientID: true})
	if err := b.Load(context.Background()); err != nil {
		r.t.Fatal(err)
	}
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", r.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		r.t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.b = b
	r.done = make(chan struct{})
	go func() {
		defer close(r.done)
		b.Serve(tcpListener{ln}, &ListenerOptions{Name: "p"})
	}()
}

func (r *restartable) stop() {
	if r.b != nil {
		r.b.Close()
		<-r.done
		r.b = nil
	}
}

func (r *restartable) restart() {
	r.stop()
	r.start()
}

func persistentConnect(t *testing.T, addr, id string, v packet.Version) (*rawClient, *packet.Connack) {
	c := dialRaw(t, addr, v)
	cp := &packet.Connect{ClientID: id, KeepAlive: 60}
	if v == packet.V5 {
		cp.Properties.SessionExpiry = new(uint32(3600))
	}
	return c, c.connect(cp)
}

func TestPersistentSessionSurvivesRestart(t *testing.T) {
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		t.Run(v.String(), func(t *testing.T) {
			r := startPersistent(t, newMapStore())
			c, _ := persistentConnect(t, r.addr, "keeper", v)
			c.subscribe(1, packet.Subscription{Filter: "k/#", QoS: 2})
			c.send(&packet.Disconnect{})
			c.expectClosed()
			pub := connected(t, r.addr, v, "pub")
			for i := range 5 {
				pub.send(&packet.Publish{Topic: "k/x", QoS: 1, PacketID: uint16(i + 1), Payload: []byte{byte(i)}})
				if a, ok := pub.recv().(*packet.Puback); !ok || a.ReasonCode.IsError() {
					t.Fatalf("puback %+v", a)
				}
			}
			pub.send(&packet.Publish{Topic: "k/retained", Retain: true, Payload: []byte("r")})
			eventually(t, func() bool { return r.b.Stats().Retained == 1 }, "retained stored")
			r.restart()
			c, ack := persistentConnect(t, r.addr, "keeper", v)
			if !ack.SessionPresent {
				t.Fatal("session lost in the restart")
			}
			for i := range 5 {
				m := c.recvPublish()
				if m.Payload[0] != byte(i) || m.QoS != 1 {
					t.Fatalf("message %d: %+v", i, m)
				}
				c.send(&packet.Puback{PacketID: m.PacketID})
			}
			c.expectNothing(150 * time.Millisecond)
			// the subscription itself survived, and the retained message
			pub = connected(t, r.addr, v, "pub")
			pub.send(&packet.Publish{Topic: "k/after", Payload: []byte("a")})
			if m := c.recvPublish(); m.Topic != "k/after" {
				t.Fatalf("got %+v", m)
			}
			s2 := connected(t, r.addr, v, "late")
			s2.subscribe(1, packet.Subscription{Filter: "k/retained"})
			if m := s2.recvPublish(); string(m.Payload) != "r" || !m.Retain {
				t.Fatalf("retained: %+v", m)
			}
		})
	}
}

func TestMQTT_4_3_3_QoS2ExactlyOnceAcrossRestart(t *testing.T) {
	r := startPersistent(t, newMapStore())
	// outgoing: a QoS 2 PUBLISH in flight is resent with its packet id
	sub, _ := persistentConnect(t, r.addr, "sub", packet.V311)
	sub.subscribe(1, packet.Subscription{Filter: "e", QoS: 2})
	pub, _ := persistentConnect(t, r.addr, "pub", packet.V311)
	pub.send(&packet.Publish{Topic: "e", QoS: 2, PacketID: 7, Payload: []byte("once")})
	if _, ok := pub.recv().(*packet.Pubrec); !ok {
		t.Fatal("want PUBREC")
	}
	first := sub.recvPublish()
	r.restart()

	// incoming: the publisher resends id 7 before PUBREL; it is not routed again
	pub, _ = persistentConnect(t, r.addr, "pub", packet.V311)
	pub.send(&packet.Publish{Topic: "e", QoS: 2, PacketID: 7, Dup: true, Payload: []byte("once")})
	if _, ok := pub.recv().(*packet.Pubrec); !ok {
		t.Fatal("want PUBREC for the repeated PUBLISH")
	}
	pub.send(&packet.Pubrel{PacketID: 7})
	if c, ok := pub.recv().(*packet.Pubcomp); !ok || c.ReasonCode != packet.Success {
		t.Fatalf("want PUBCOMP success, got %+v", c)
	}

	sub, ack := persistentConnect(t, r.addr, "sub", packet.V311)
	if !ack.SessionPresent {
		t.Fatal("no session")
	}
	again := sub.recvPublish()
	if again.PacketID != first.PacketID || string(again.Payload) != "once" {
		t.Fatalf("resent as %+v, first sent as %+v", again, first)
	}
	sub.send(&packet.Pubrec{PacketID: again.PacketID})
	if rel, ok := sub.recv().(*packet.Pubrel); !ok || rel.PacketID != again.PacketID {
		t.Fatalf("want PUBREL, got %+v", rel)
	}
	sub.send(&packet.Pubcomp{PacketID: again.PacketID})
	sub.expectNothing(200 * time.Millisecond) // exactly once
}

func TestStoreFailureRefusesAndRecovers(t *testing.T) {
	for n := 1; n <= 4; n++ {
		t.Run("", func(t *testing.T) {
			st := newMapStore()
			r := startPersistent(t, st)
			sub, _ := persistentConnect(t, r.addr, "sub", packet.V5)
			sub.subscribe(1, packet.Subscription{Filter: "f", QoS: 1})
			sub.send(&packet.Disconnect{})
			sub.expectClosed()
			pub := connected(t, r.addr, packet.V5, "pub")
			st.mu.Lock()
			st.failFrom, st.failTo = st.applies+n, st.applies+n
			st.mu.Unlock()
			acked := 0
			for i := range 6 {
				pub.send(&packet.Publish{Topic: "f", QoS: 1, PacketID: uint16(i + 1), Payload: []byte{byte(i)}})
				a, ok := pub.recv().(*packet.Puback)
				if !ok {
					t.Fatal("want PUBACK")
				}
				if a.ReasonCode == packet.Success {
					acked++
				} else if a.ReasonCode != packet.UnspecifiedError {
					t.Fatalf("reason %v", a.ReasonCode)
				}
			}
			if acked != 5 {
				t.Fatalf("%d of 6 acknowledged, want 5 (one write failed)", acked)
			}
			r.restart()
			sub, _ = persistentConnect(t, r.addr, "sub", packet.V5)
			got := 0
			for {
				m, err := sub.tryRecv(300 * time.Millisecond)
				if err != nil {
					break
				}
				p := m.(*packet.Publish)
				sub.send(&packet.Puback{PacketID: p.PacketID})
				got++
			}
			if got != acked {
				t.Fatalf("received %d, acknowledged %d: nothing acknowledged may be lost, nothing refused delivered", got, acked)
			}
		})
	}
}

func TestStoreFailureClosesMQTT311Publisher(t *testing.T) {
	st := newMapStore()
	r := startPersistent(t, st)
	sub, _ := persistentConnect(t, r.addr, "sub", packet.V311)
	sub.subscribe(1, packet.Subscription{Filter: "f", QoS: 1})
	pub := connected(t, r.addr, packet.V311, "pub")
	st.mu.Lock()
	st.failFrom, st.failTo = st.applies+1, st.applies+100
	st.mu.Unlock()
	pub.send(&packet.Publish{Topic: "f", QoS: 1, PacketID: 1, Payload: []byte("x")})
	pub.expectClosed()
}

// A regression seen in another Go broker: a client that connects with a
// clean session, disconnects, and at once reconnects with a persistent one
// must keep the new session (the clean one's removal must not land after).
func TestCleanThenPersistentSessionKeepsTheNewSession(t *testing.T) {
	st := newMapStore()
	r := startPersistent(t, st)
	for i := range 20 {
		id := fmt.Sprintf("flip-%d", i)
		c := connected(t, r.addr, packet.V311, id)
		c.send(&packet.Disconnect{})
		c.expectClosed()
		c, ack := persistentConnect(t, r.addr, id, packet.V311)
		if ack.SessionPresent {
			t.Fatal("a clean session came back as present")
		}
		c.subscribe(1, packet.Subscription{Filter: "flip/" + id, QoS: 1})
		c.send(&packet.Disconnect{})
		c.expectClosed()
	}
	r.restart()
	pub := connected(t, r.addr, packet.V311, "pub")
	for i := range 20 {
		pub.send(&packet.Publish{Topic: fmt.Sprintf("flip/flip-%d", i), QoS: 1, PacketID: uint16(i + 1), Payload: []byte("x")})
		pub.recv()
	}
	for i := range 20 {
		c, ack := persistentConnect(t, r.addr, fmt.Sprintf("flip-%d", i), packet.V311)
		if !ack.SessionPresent {
			t.Fatalf("flip-%d: the persistent session was lost", i)
		}
		if m := c.recvPublish(); string(m.Payload) != "x" {
			t.Fatalf("flip-%d: %+v", i, m)
		}
	}
}

func TestCountersSurviveRestart(t *testing.T) {
	r := startPersistent(t, newMapStore())
	pub := connected(t, r.addr, packet.V311, "pub")
	for i := range 5 {
		pub.send(&packet.Publish{Topic: "c", QoS: 1, PacketID: uint16(i + 1), Payload: []byte("x")})
		pub.recv()
	}
	before := r.b.Stats()
	if before.PublishReceived < 5 {
		t.Fatalf("counted %d publishes", before.PublishReceived)
	}
	r.restart()
	after := r.b.Stats()
	if after.PublishReceived < before.PublishReceived || after.MessagesReceived < before.MessagesReceived ||
		after.ConnectionsAccepted < before.ConnectionsAccepted {
		t.Fatalf("counters went back after a restart: before %+v, after %+v", before, after)
	}
}

// Every delivery record goes once its delivery ends, QoS 0 ones included
// (sent from the queue, or dropped at disconnect), so that nothing comes
// back after a restart and the store does not grow.
func TestDeliveryRecordsAllDeleted(t *testing.T) {
	st := newMapStore()
	r := startPersistent(t, st)
	sub, _ := persistentConnect(t, r.addr, "sub", packet.V311)
	sub.subscribe(1, packet.Subscription{Filter: "d", QoS: 1})
	pub := connected(t, r.addr, packet.V311, "pub")
	for i := range 21 { // one more than the window: queued behind it
		pub.send(&packet.Publish{Topic: "d", QoS: 1, PacketID: uint16(i + 1), Payload: []byte{byte(i)}})
		pub.recv()
	}
	for range 3 {
		pub.send(&packet.Publish{Topic: "d", Payload: []byte("q0")})
	}
	for i := 0; i < 24; i++ {
		m := sub.recvPublish()
		if m.QoS == 1 {
			sub.send(&packet.Puback{PacketID: m.PacketID})
		}
	}
	eventually(t, func() bool {
		st.mu.Lock()
		defer st.mu.Unlock()
		return len(st.dels["sub"]) == 0
	}, "every delivery record deleted")
	r.restart()
	sub, _ = persistentConnect(t, r.addr, "sub", packet.V311)
	sub.expectNothing(300 * time.Millisecond)
}

// Records written for a session after it was deleted (a message routed
// while the session ended) must not stop the broker from starting.
func TestOrphanRecordsDoNotBreakRestart(t *testing.T) {
	st := newMapStore()
	st.dels["ghost"] = map[uint64]DeliveryRecord{7: {Seq: 7, QoS: 1, Message: MessageRecord{Topic: "x", QoS: 1}}}
	st.subs["ghost"] = map[string]SubscriptionRecord{"x": {Filter: "x", QoS: 1}}
	r := startPersistent(t, st)
	_ = r
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.dels["ghost"]) != 0 || len(st.subs["ghost"]) != 0 {
		t.Fatalf("orphan records kept: %v %v", st.dels["ghost"], st.subs["ghost"])
	}
}
