package broker

import (
	"context"
	"time"

	"github.com/starlingmq/starling/internal/packet"
)

// Store keeps the broker's durable state: persistent sessions with their
// subscriptions, queued and inflight deliveries and incoming QoS 2 state,
// and retained messages. The broker writes through it before it sends an
// acknowledgement that promises durability (PUBACK, PUBREC, SUBACK), and
// reads it all back once at start.
//
// Implementations must be safe for concurrent use. Apply with sync=true
// must not return before the batch is durable (fsync), and should let
// concurrent callers share one sync (group commit). Apply is atomic: all
// of a batch or nothing is applied.
type Store interface {
	// Apply writes a batch of changes.
	Apply(ctx context.Context, b *Batch, sync bool) error
	// Load calls the Loader's methods for every stored record, sessions
	// before their subscriptions, deliveries and incoming ids; deliveries
	// of one session in ascending Seq order.
	Load(ctx context.Context, l Loader) error
	// Close flushes and releases the store; safe twice.
	Close() error
}

// Loader receives the records of a Store at start.
type Loader interface {
	Session(r *SessionRecord) error
	Subscription(clientID string, r *SubscriptionRecord) error
	Delivery(clientID string, r *DeliveryRecord) error
	IncomingQoS2(clientID string, packetID uint16) error
	Retained(r *MessageRecord) error
}

// SessionRecord is a persistent session.
type SessionRecord struct {
	ClientID string
	// Expiry is the session expiry interval in seconds; 0xFFFFFFFF never.
	Expiry uint32
	// DisconnectedAt is when the client went away; zero while connected
	// (a session found connected at start went away at the crash).
	DisconnectedAt time.Time
	Username       string
	HasUsername    bool
	Will           *packet.Will
	// WillAt is when a delayed will is due; zero when none is pending.
	WillAt time.Time
}

// SubscriptionRecord is one subscription of a session.
type SubscriptionRecord struct {
	Filter            string // as subscribed, $share/ prefix included
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
	SubscriptionID    int
}

// MessageRecord is a stored application message.
type MessageRecord struct {
	Topic      string
	Payload    []byte
	QoS        byte
	Retain     bool
	Properties packet.Properties // payload format, content type, response topic, correlation data, user properties
	ExpiresAt  time.Time         // zero: never
	Origin     string
}

// DeliveryRecord is one message queued for, or inflight to, a session.
// Seq orders a session's deliveries (ascending = delivery order) and is
// the delivery's key.
type DeliveryRecord struct {
	Seq      uint64
	QoS      byte
	Retain   bool
	SubIDs   []int
	PacketID uint16 // 0 while queued
	State    byte   // session.State: Queued, AwaitPuback, AwaitPubrec, AwaitPubcomp
	Sent     bool
	Message  MessageRecord
}

// Batch collects changes for Store.Apply. The zero value is empty and
// ready; a Batch is used by one goroutine.
type Batch struct {
	Ops []Op
}

// OpKind is what an Op does.
type OpKind byte

// Kinds of changes.
const (
	OpPutSession    OpKind = iota + 1
	OpDeleteSession        // the session and everything under it
	OpPutSubscription
	OpDeleteSubscription
	OpPutDelivery
	OpDeleteDelivery
	OpPutIncoming
	OpDeleteIncoming
	OpPutRetained
	OpDeleteRetained
	OpPutCounters
)

// CountersRecord holds the broker's counters that outlive a restart, as
// $SYS reports them.
type CountersRecord struct {
	MessagesReceived, MessagesSent                uint64
	PublishReceived, PublishSent, PublishDropped  uint64
	BytesReceived, BytesSent, ConnectionsAccepted uint64
}

// CountersLoader is a Loader that also takes the stored counters; a Store
// reports them, when it has them, to a Loader that implements it.
type CountersLoader interface {
	Counters(r *CountersRecord) error
}

// Op is one change. Which fields matter depends on Kind.
type Op struct {
	Kind         OpKind
	ClientID     string
	Session      *SessionRecord
	Subscription *SubscriptionRecord
	Filter       string // OpDeleteSubscription
	Delivery     *DeliveryRecord
	Seq          uint64 // OpDeleteDelivery
	PacketID     uint16 // incoming QoS 2
	Retained     *MessageRecord
	Topic        string // OpDeleteRetained
	Counters     *CountersRecord
}

// Len is the number of changes in b.
func (b *Batch) Len() int { return len(b.Ops) }

// Reset empties b for reuse.
func (b *Batch) Reset() {
	clear(b.Ops)
	b.Ops = b.Ops[:0]
}

// PutSession adds or replaces a session record.
func (b *Batch) PutSession(r *SessionRecord) {
	b.Ops = append(b.Ops, Op{Kind: OpPutSession, ClientID: r.ClientID, Session: r})
}

// DeleteSession removes a session and all its records.
func (b *Batch) DeleteSession(clientID string) {
	b.Ops = append(b.Ops, Op{Kind: OpDeleteSession, ClientID: clientID})
}

// PutSubscription adds or replaces a subscription.
func (b *Batch) PutSubscription(clientID string, r *SubscriptionRecord) {
	b.Ops = append(b.Ops, Op{Kind: OpPutSubscription, ClientID: clientID, Subscription: r})
}

// DeleteSubscription removes a subscription.
func (b *Batch) DeleteSubscription(clientID, filter string) {
	b.Ops = append(b.Ops, Op{Kind: OpDeleteSubscription, ClientID: clientID, Filter: filter})
}

// PutDelivery adds or replaces a delivery.
func (b *Batch) PutDelivery(clientID string, r *DeliveryRecord) {
	b.Ops = append(b.Ops, Op{Kind: OpPutDelivery, ClientID: clientID, Delivery: r})
}

// DeleteDelivery removes a delivery.
func (b *Batch) DeleteDelivery(clientID string, seq uint64) {
	b.Ops = append(b.Ops, Op{Kind: OpDeleteDelivery, ClientID: clientID, Seq: seq})
}

// PutIncoming records an incoming QoS 2 packet id awaiting PUBREL.
func (b *Batch) PutIncoming(clientID string, id uint16) {
	b.Ops = append(b.Ops, Op{Kind: OpPutIncoming, ClientID: clientID, PacketID: id})
}

// DeleteIncoming forgets an incoming QoS 2 packet id.
func (b *Batch) DeleteIncoming(clientID string, id uint16) {
	b.Ops = append(b.Ops, Op{Kind: OpDeleteIncoming, ClientID: clientID, PacketID: id})
}

// PutRetained stores a retained message.
func (b *Batch) PutRetained(r *MessageRecord) {
	b.Ops = append(b.Ops, Op{Kind: OpPutRetained, Retained: r})
}

// PutCounters stores the broker's counters.
func (b *Batch) PutCounters(r *CountersRecord) {
	b.Ops = append(b.Ops, Op{Kind: OpPutCounters, Counters: r})
}

// DeleteRetained removes a retained message.
func (b *Batch) DeleteRetained(topic string) {
	b.Ops = append(b.Ops, Op{Kind: OpDeleteRetained, Topic: topic})
}
