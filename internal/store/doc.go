// Package store keeps the broker's durable state behind broker.Store: a
// Pebble implementation for persistence_location and an in-memory one for
// persistence false, with the same semantics and the same record encoding.
//
// It owns the key layout, the binary encoding of records and the on-disk
// format version. It imports internal/broker (for the interface and record
// types) and internal/packet (for the types inside records); it must not
// import session, topic, cluster, auth or anything that speaks MQTT on the
// network.
//
// # Key layout
//
//	meta/version                                  format version (uint32 BE)
//	'r' topic                                     retained message
//	's' part len16 clientID 0x01                  session record
//	's' part len16 clientID 0x02 filter           subscription
//	's' part len16 clientID 0x03 seq(uint64 BE)   delivery (queued or inflight)
//	's' part len16 clientID 0x04 id(uint16 BE)    incoming QoS 2 packet id
//
// part is Partition(clientID), one byte: FNV-1a 32 of the id & 0xFF.
// len16 is the id's length in bytes, big-endian, so that no client's keys
// fall inside another's: everything of a session lies in
// ['s' part len16 clientID 0x00, 's' part len16 clientID 0xFF), which is what
// OpDeleteSession range-deletes.
//
// Load walks keys in byte order, so retained messages ('r') come first, then
// sessions partition by partition; a session record (suffix 0x01) precedes
// its subscriptions, then its deliveries in ascending Seq, then its incoming
// packet ids.
package store
