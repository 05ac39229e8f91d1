package broker

import (
	"context"
	"crypto/x509"
	"net"
)

// Access is what a client asks to do with a topic.
type Access byte

// Kinds of access checked by an Authorizer.
const (
	AccessRead      Access = 1 // a message on the topic is delivered to the client
	AccessWrite     Access = 2 // the client publishes to the topic (also wills)
	AccessSubscribe Access = 4 // the client subscribes to the filter
)

// String names the access as Mosquitto's ACL files do.
func (a Access) String() string {
	switch a {
	case AccessRead:
		return "read"
	case AccessWrite:
		return "write"
	case AccessSubscribe:
		return "subscribe"
	}
	return "unknown"
}

// ClientInfo is what the broker knows of a connecting or connected client.
// It is immutable once the client is connected.
type ClientInfo struct {
	ClientID        string
	Username        string
	HasUsername     bool
	Password        []byte // only set during authentication; cleared afterwards
	HasPassword     bool
	RemoteAddr      net.Addr // the client's real address (after the PROXY header)
	Listener        string   // the listener's name, e.g. "1883" or "8883 0.0.0.0"
	PeerCerts       []*x509.Certificate
	ProtocolVersion byte
}

// Authenticator decides whether a client may connect. It returns nil to
// accept; an error wrapping a packet.ReasonCode (BadUsernameOrPassword,
// NotAuthorized, ServerUnavailable...) to refuse with that reason; any other
// error refuses with "server unavailable". It must be safe for concurrent
// use and may block (it is called from the connection's own goroutine).
type Authenticator interface {
	Authenticate(ctx context.Context, c *ClientInfo) error
}

// Authorizer decides whether a client may read, write or subscribe to a
// topic (a filter for AccessSubscribe). It must be safe for concurrent use.
// It is called on the publish path, so implementations cache what is
// expensive.
type Authorizer interface {
	Authorize(ctx context.Context, c *ClientInfo, topic string, a Access) bool
}
