package meta

import (
	"context"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// NewStreamLayer makes a raft.StreamLayer of a listener and a dial
// function: Accept comes from ln, Dial calls dial with the peer's Raft
// address and a ctx bounded by raft's timeout. With net.Dialer.DialContext
// it is plain TCP; with tls.NewListener and tls.Dialer.DialContext it is
// TLS; with a listener that a multiplexer feeds and a dial that writes
// the multiplexer's header, it shares a port.
func NewStreamLayer(ln net.Listener, dial func(ctx context.Context, addr string) (net.Conn, error)) raft.StreamLayer {
	return &streamLayer{Listener: ln, dial: dial}
}

type streamLayer struct {
	net.Listener
	dial func(ctx context.Context, addr string) (net.Conn, error)
}

var _ raft.StreamLayer = (*streamLayer)(nil)

// Dial implements raft.StreamLayer.
func (l *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return l.dial(ctx, string(addr))
}
