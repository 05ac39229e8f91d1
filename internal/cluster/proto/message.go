package proto

import (
	"fmt"

	"github.com/starlingmq/starling/internal/packet"
)

// Version is the newest protocol version this code speaks; MinVersion the
// oldest it still speaks. See the package comment for what may change
// between versions.
const (
	Version    uint32 = 2
	MinVersion uint32 = 1
)

// Type is a message type, the byte after a frame's length prefix. Numbers
// are never reused; a type this code does not know decodes as Unknown.
type Type byte

// Message types. 0 is invalid.
const (
	TypeHello                Type = 1
	TypeHelloAck             Type = 2
	TypePing                 Type = 3
	TypePong                 Type = 4
	TypeRouteSnapshot        Type = 5
	TypeRouteDelta           Type = 6
	TypeRouteSnapshotRequest Type = 7
	TypeForward              Type = 8
	TypeForwardAck           Type = 9
	TypeRetained             Type = 10
	TypeRetainedSnapshot     Type = 11
	TypeSessionClaim         Type = 12
	TypeSessionTransfer      Type = 13
	TypeSessionTransferAck   Type = 14
	TypeSessionKick          Type = 15
	// Version 2: forwarded messages carry their MsgID; a session's old
	// node relays what still reaches it to the new one.
	TypeForwardV2     Type = 16
	TypeSessionSeen   Type = 17
	TypeRelay         Type = 18
	TypeRelayBarrier  Type = 19
	TypeBarrierPassed Type = 20
	TypeRelayEnd      Type = 21
)

var typeNames = [...]string{"Invalid", "Hello", "HelloAck", "Ping", "Pong", "RouteSnapshot", "RouteDelta",
	"RouteSnapshotRequest", "Forward", "ForwardAck", "Retained", "RetainedSnapshot", "SessionClaim",
	"SessionTransfer", "SessionTransferAck", "SessionKick", "ForwardV2", "SessionSeen", "Relay",
	"RelayBarrier", "BarrierPassed", "RelayEnd"}

// String returns the type's name.
func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", byte(t))
}

// Message is one node-to-node message, one Go type per message type.
//
// AppendTo appends the whole frame (length prefix, type, body) to dst. On
// error dst is returned unchanged and the error wraps ErrEncode.
type Message interface {
	Type() Type
	AppendTo(dst []byte) ([]byte, error)
}

// Capabilities is a set of optional features a node announces in Hello.
// Bits are assigned in this file, in order, and never reused; bits a node
// does not know are ignored. A feature is used on a link only when both
// ends announce it. None is defined yet.
type Capabilities uint64

// Has reports whether every bit of c2 is in c.
func (c Capabilities) Has(c2 Capabilities) bool { return c&c2 == c2 }

// Hello is the first message each end of a new link sends. Who the peer
// is was established by TLS underneath; Hello only says what it speaks.
type Hello struct {
	// ProtocolVersion is the newest version the sender speaks and
	// MinProtocolVersion the oldest.
	ProtocolVersion    uint32
	MinProtocolVersion uint32
	NodeName           string
	ClusterName        string // "" when the cluster is unnamed
	// Incarnation identifies one run of the node and grows with every
	// start (its boot time in Unix nanoseconds does), so that a peer can
	// tell a restarted node from a late message of its previous run.
	Incarnation  uint64
	Capabilities Capabilities
}

// HelloAck answers Hello. Code is packet.Success with the version both
// ends will speak, or the reason the link is refused
// (packet.UnsupportedProtocolVersion, packet.NotAuthorized for another
// cluster name, packet.ImplementationSpecificError) with a human Reason.
type HelloAck struct {
	ProtocolVersion uint32
	NodeName        string
	Incarnation     uint64
	Capabilities    Capabilities
	Code            packet.ReasonCode
	Reason          string
}

// Negotiate returns the version two nodes speak: the newest both know. The
// error wraps packet.UnsupportedProtocolVersion when their ranges do not
// overlap.
func Negotiate(a, b *Hello) (uint32, error) {
	v := min(a.ProtocolVersion, b.ProtocolVersion)
	if v < a.MinProtocolVersion || v < b.MinProtocolVersion || v == 0 {
		return 0, fmt.Errorf("proto: versions %d-%d and %d-%d do not overlap: %w",
			a.MinProtocolVersion, a.ProtocolVersion, b.MinProtocolVersion, b.ProtocolVersion, packet.UnsupportedProtocolVersion)
	}
	return v, nil
}

// Ping asks for a Pong, to measure the link's round trip and to keep an
// idle link alive.
type Ping struct {
	SentUnixNano int64 // the sender's clock
}

// Pong answers Ping. The round trip is the pinger's clock at receipt minus
// PingSentUnixNano; SentUnixNano (the answering node's clock) gives an
// estimate of the offset between the two clocks.
type Pong struct {
	PingSentUnixNano int64
	SentUnixNano     int64
}

// GroupCount is the number of a node's sessions in one shared
// subscription group of a filter.
type GroupCount struct {
	Group   string
	Members uint32
}

// RouteEntry is one filter of a node's route snapshot. Filter is a plain
// filter: a shared subscription "$share/g/f" is filter f with group g.
// Count is the number of the node's sessions with a non-shared
// subscription to the filter (0 when it only has shared ones).
type RouteEntry struct {
	Filter string
	Count  uint32
	Shared []GroupCount
}

// RouteSnapshot is the whole route table of its Origin node, as of Seq in
// the node's Incarnation. It is what a link starts with. A large table is
// sent in parts 0, 1, 2... with the same (Incarnation, Seq), More set on
// every part but the last; the receiver replaces the node's routes once the
// last part has arrived.
type RouteSnapshot struct {
	Origin      string
	Incarnation uint64
	Seq         uint64
	Part        uint32
	More        bool
	Entries     []RouteEntry
}

// RouteChange sets the count of one (filter, group) of a node: Group ""
// is the non-shared subscriptions. Count 0 removes it. Changes are
// absolute, not increments, so applying one twice is harmless.
type RouteChange struct {
	Filter string
	Group  string
	Count  uint32
}

// RouteDelta is the next change to its Origin's route table: Seq is the
// previous delta's (or snapshot's) Seq plus one, in the same Incarnation.
// A receiver that sees a gap asks for a snapshot (RouteSnapshotRequest).
type RouteDelta struct {
	Origin      string
	Incarnation uint64
	Seq         uint64
	Changes     []RouteChange
}

// RouteSnapshotRequest asks the peer for a new RouteSnapshot of its own
// routes, after a gap. Incarnation and Seq are what the asker holds, for
// the peer's logs.
type RouteSnapshotRequest struct {
	Incarnation uint64
	Seq         uint64
}

// SharedTarget is a shared subscription for which the publishing node chose
// Node (the receiver of the Forward) to deliver the message to one of its
// members. Filter is the plain filter.
type SharedTarget struct {
	Group  string
	Filter string
	Node   string
}

// ForwardMessage is one message forwarded to a node with interest. The
// receiver delivers it to its local non-shared subscribers and to one member
// of each shared group in Shared, and to no other shared group.
type ForwardMessage struct {
	// Seq numbers the messages of one link, for ForwardAck.
	Seq uint64
	// NeedsAck: the publisher waits for this node to accept the message
	// (QoS 1 and 2, where it holds a persistent session that matches).
	NeedsAck bool
	// Origin is the node where the message was published.
	Origin string
	// PublisherID is the publishing client's id, for No Local.
	PublisherID string
	// Publish is the message with its MQTT 5 properties; its PacketID has
	// no meaning here (see AppendTo) and it must carry no Topic Alias.
	Publish *packet.Publish
	Shared  []SharedTarget
	// ID names the publish cluster-wide (sent in ForwardV2 only).
	ID MsgID
}

// MsgID names one publish in a cluster: a number the node it was
// published on drew at start, and the publish's number there.
type MsgID struct {
	Node, Seq uint64
}

// Forward is a batch of forwarded messages. V2 sends it as ForwardV2,
// with each message's ID (protocol version 2).
type Forward struct {
	Messages []ForwardMessage
	V2       bool
}

// SessionSeen gives the node a session moves to, before the session's
// transfer (same ClientID and Epoch), the messages the session holds or
// was routed lately: it takes none of them again. Long lists come in
// several SessionSeen messages.
type SessionSeen struct {
	ClientID string
	Epoch    uint64
	IDs      []MsgID
}

// RelayBarrier: the node a session moved to (ClientID, claimed at Epoch)
// sends it to every node once the session is installed, after the route
// changes that make them forward its messages there. Ghost is the node
// the session came from, which relays meanwhile: each node passes the
// barrier on to Ghost (BarrierPassed) after what it forwarded there.
type RelayBarrier struct {
	ClientID string
	Epoch    uint64
	Ghost    string
}

// BarrierPassed tells a session's old node that Node forwards the
// session's messages to its new node from now on (RelayBarrier), and sent
// everything before it here.
type BarrierPassed struct {
	ClientID string
	Epoch    uint64
	Node     string
}

// RelayEnd tells a session's new node that its old node relays nothing
// more after it: the messages that came directly meanwhile may go.
type RelayEnd struct {
	ClientID string
	Epoch    uint64
}

// Relay passes a message that reached a session's old node after the
// session was handed over (its ghost) to the node the session went to,
// for that session only. Group and Filter name the shared subscription
// it was chosen for ("" for the session's other subscriptions).
type Relay struct {
	ClientID      string
	Group, Filter string
	ID            MsgID
	PublisherID   string
	Publish       *packet.Publish
}

// ForwardStatus is the outcome of one forwarded message.
type ForwardStatus struct {
	Seq  uint64
	Code packet.ReasonCode
}

// ForwardAck acknowledges forwarded messages: every Seq up to UpTo was
// accepted (packet.Success) unless Statuses lists it with another code;
// Statuses may also list messages after UpTo, acknowledged out of order.
type ForwardAck struct {
	UpTo     uint64
	Statuses []ForwardStatus
}

// Timestamp is a hybrid logical clock reading: physical milliseconds, a
// logical counter for events within one millisecond, and the node that
// made the reading to break ties, so that two distinct writes never compare
// equal.
type Timestamp struct {
	WallMilli int64 // Unix milliseconds
	Logical   uint32
	Node      string
}

// Compare orders timestamps: by WallMilli, then Logical, then Node. It
// returns -1, 0 or +1.
func (t Timestamp) Compare(u Timestamp) int {
	switch {
	case t.WallMilli != u.WallMilli:
		return cmp3(t.WallMilli < u.WallMilli)
	case t.Logical != u.Logical:
		return cmp3(t.Logical < u.Logical)
	case t.Node != u.Node:
		return cmp3(t.Node < u.Node)
	}
	return 0
}

func cmp3(less bool) int {
	if less {
		return -1
	}
	return 1
}

// IsZero reports whether t is the zero Timestamp, older than every reading.
func (t Timestamp) IsZero() bool { return t == Timestamp{} }

// MessageRecord is a stored application message, as in the broker's store.
// It travels as an MQTT 5 PUBLISH (Topic, Payload, QoS, Retain,
// Properties) plus the fields PUBLISH cannot carry.
type MessageRecord struct {
	Topic            string
	Payload          []byte
	QoS              byte
	Retain           bool
	Properties       packet.Properties
	ExpiresUnixMilli int64 // 0: never
	Origin           string
}

// Retained is a write of the retained message of Topic: Message, or a
// delete when Message is nil. Writes are last-writer-wins by Time, so a
// delete is kept (as a tombstone) for as long as a late older write could
// arrive.
type Retained struct {
	Topic   string
	Message *MessageRecord // nil: delete; else Message.Topic == Topic
	Time    Timestamp
}

// RetainedSnapshot is every retained message (and tombstone) Origin holds,
// sent when a link comes up, in parts like RouteSnapshot. Merging is
// last-writer-wins, so parts need no sequence beyond More.
type RetainedSnapshot struct {
	Origin   string
	Part     uint32
	More     bool
	Messages []Retained
}

// SessionClaim tells the node holding a persistent session that Node now
// owns ClientID, as of registry Epoch, and asks for the session.
type SessionClaim struct {
	ClientID string
	Node     string
	Epoch    uint64
}

// SessionRecord is a persistent session, as in the broker's store (the
// client id travels in SessionTransfer).
type SessionRecord struct {
	// Expiry is the session expiry interval in seconds; 0xFFFFFFFF never.
	Expiry                  uint32
	DisconnectedAtUnixMilli int64 // 0 while connected
	Username                string
	HasUsername             bool
	Will                    *packet.Will
	WillAtUnixMilli         int64 // when a delayed will is due; 0 none
}

// SubscriptionRecord is one subscription of a session.
type SubscriptionRecord struct {
	Filter            string // as subscribed, $share/ prefix included
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
	SubscriptionID    int // 0: none
}

// DeliveryRecord is one message queued for, or inflight to, a session. Seq
// orders a session's deliveries.
type DeliveryRecord struct {
	Seq      uint64
	QoS      byte
	Retain   bool
	SubIDs   []int
	PacketID uint16 // 0 while queued
	State    byte   // session.State
	Sent     bool
	Message  MessageRecord
}

// SessionTransfer hands a session to the node that claimed it, in parts
// like RouteSnapshot (same ClientID and Epoch, More on all but the last).
// Session is set in part 0, nil there when the sender holds no session;
// the lists of all parts are concatenated, deliveries in Seq order.
type SessionTransfer struct {
	ClientID      string
	Epoch         uint64
	Part          uint32
	More          bool
	Session       *SessionRecord
	Subscriptions []SubscriptionRecord
	Deliveries    []DeliveryRecord
	IncomingQoS2  []uint16 // packet ids of incoming QoS 2 awaiting PUBREL
}

// SessionTransferAck tells the old owner the transfer is durable
// (packet.Success), so it may forget the session, or why it failed.
type SessionTransferAck struct {
	ClientID string
	Epoch    uint64
	Code     packet.ReasonCode
}

// SessionKick tells every node that ClientID connected to Node at
// AtUnixNano (Node's clock): a node with an older connection of that id
// closes it (MQTT 5 reason 0x8E), so that a client id is connected once
// cluster-wide even for sessions the registry does not hold.
type SessionKick struct {
	ClientID   string
	Node       string
	AtUnixNano int64
}

// Unknown is a message of a type this code does not know, sent by a newer
// node. Receivers skip it; Body aliases the frame.
type Unknown struct {
	MsgType Type
	Body    []byte
}

// Type implementations.
func (*Hello) Type() Type                { return TypeHello }
func (*HelloAck) Type() Type             { return TypeHelloAck }
func (*Ping) Type() Type                 { return TypePing }
func (*Pong) Type() Type                 { return TypePong }
func (*RouteSnapshot) Type() Type        { return TypeRouteSnapshot }
func (*RouteDelta) Type() Type           { return TypeRouteDelta }
func (*RouteSnapshotRequest) Type() Type { return TypeRouteSnapshotRequest }
func (f *Forward) Type() Type {
	if f.V2 {
		return TypeForwardV2
	}
	return TypeForward
}
func (*SessionSeen) Type() Type        { return TypeSessionSeen }
func (*Relay) Type() Type              { return TypeRelay }
func (*RelayBarrier) Type() Type       { return TypeRelayBarrier }
func (*BarrierPassed) Type() Type      { return TypeBarrierPassed }
func (*RelayEnd) Type() Type           { return TypeRelayEnd }
func (*ForwardAck) Type() Type         { return TypeForwardAck }
func (*Retained) Type() Type           { return TypeRetained }
func (*RetainedSnapshot) Type() Type   { return TypeRetainedSnapshot }
func (*SessionClaim) Type() Type       { return TypeSessionClaim }
func (*SessionTransfer) Type() Type    { return TypeSessionTransfer }
func (*SessionTransferAck) Type() Type { return TypeSessionTransferAck }
func (*SessionKick) Type() Type        { return TypeSessionKick }
func (u *Unknown) Type() Type          { return u.MsgType }
