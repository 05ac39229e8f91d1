// Package session holds the pure per-client state of an MQTT session:
// packet identifiers, the outgoing inflight window with its QoS 1 and QoS 2
// state machines, the incoming QoS 2 identifiers awaiting PUBREL, and the
// offline queue with its limits and message expiry.
//
// It has no goroutines, does no I/O and never reads the clock: callers pass
// the current time. It is not safe for concurrent use; the broker guards
// each Session with its own mutex. It imports only packet and topic.
package session
