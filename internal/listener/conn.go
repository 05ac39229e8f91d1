package listener

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"net"
	"sync"
	"sync/atomic"
)

// netConner is implemented by conns that wrap another one; *tls.Conn and
// every wrapper of this package have it.
type netConner interface {
	NetConn() net.Conn
}

// PeerCertificates returns the verified client certificate chain of c, leaf
// first, if c is or wraps a TLS connection whose client presented a
// certificate that was verified (require_certificate). It looks through the
// wrappers of this package (PROXY, WebSocket, connection counting) and any
// conn with a NetConn() net.Conn method, so it works for TLS, PROXY+TLS and
// wss. It returns nil for plain connections and for certificates that were
// not verified, so an unverified certificate can never become an identity.
func PeerCertificates(c net.Conn) []*x509.Certificate {
	for range 16 { // bounded: a wrapper cycle must not hang the caller
		switch v := c.(type) {
		case nil:
			return nil
		case interface{ ConnectionState() tls.ConnectionState }:
			cs := v.ConnectionState()
			if len(cs.VerifiedChains) == 0 {
				return nil
			}
			return cs.VerifiedChains[0]
		case netConner:
			c = v.NetConn()
		case interface{ Raw() net.Conn }: // *proxyproto.Conn
			c = v.Raw()
		default:
			return nil
		}
	}
	return nil
}

// countedConn releases its slot of MaxConnections once, on the first Close.
type countedConn struct {
	net.Conn
	open *atomic.Int64
	once sync.Once
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.open.Add(-1) })
	return err
}

// NetConn returns the wrapped conn.
func (c *countedConn) NetConn() net.Conn { return c.Conn }

// proxyConn is a conn after a PROXY header: it reports the addresses the
// header carries and first yields the bytes read past the header.
type proxyConn struct {
	net.Conn
	// br holds bytes read past the header; nil once drained. Only the
	// reading goroutine touches it (a net.Conn has one reader).
	br     *bufio.Reader
	remote net.Addr // nil: the socket's own
	local  net.Addr // nil: the socket's own
}

func (c *proxyConn) Read(p []byte) (int, error) {
	if c.br == nil {
		return c.Conn.Read(p)
	}
	n, err := c.br.Read(p)
	if c.br.Buffered() == 0 {
		c.br = nil
	}
	return n, err
}

func (c *proxyConn) RemoteAddr() net.Addr {
	if c.remote != nil {
		return c.remote
	}
	return c.Conn.RemoteAddr()
}

func (c *proxyConn) LocalAddr() net.Addr {
	if c.local != nil {
		return c.local
	}
	return c.Conn.LocalAddr()
}

// NetConn returns the wrapped conn.
func (c *proxyConn) NetConn() net.Conn { return c.Conn }

var (
	_ net.Listener = (*Listener)(nil)
	_ net.Conn     = (*countedConn)(nil)
	_ net.Conn     = (*proxyConn)(nil)
	_ net.Conn     = (*wsConn)(nil)
	_ netConner    = (*countedConn)(nil)
	_ netConner    = (*proxyConn)(nil)
	_ netConner    = (*wsConn)(nil)
)
