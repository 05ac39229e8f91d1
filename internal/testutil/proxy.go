package testutil

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// dialTimeout bounds the proxy's connection to its target.
const dialTimeout = 5 * time.Second

// Proxy is a TCP proxy on a loopback port that forwards every connection it
// accepts to one target, and can fail like a network: Cut makes it a black
// hole, Heal ends that, Reset drops every connection. Its methods are safe
// for concurrent use.
type Proxy struct {
	target string
	ln     net.Listener
	ctx    context.Context // cancelled by Close, to abort dials
	cancel context.CancelFunc
	wg     sync.WaitGroup // the accept loop and every connection's goroutines

	mu     sync.Mutex
	cut    bool
	closed bool
	conns  map[*link]struct{}

	closeOnce sync.Once
}

// link is one proxied connection. Its fields other than client are guarded
// by Proxy.mu.
type link struct {
	client net.Conn
	// server is nil until dialled, and stays nil for a connection accepted
	// while the proxy was cut.
	server net.Conn
	// dropped is set once a cut has touched the link: bytes may have been
	// lost, so Heal closes it.
	dropped bool
	closed  bool
	eofs    int // directions that ended with a clean EOF
}

// NewProxy listens on 127.0.0.1:0 and forwards each connection it accepts
// to target (host:port). Close stops it.
func NewProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{target: target, ln: ln, ctx: ctx, cancel: cancel, conns: make(map[*link]struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr returns the address the proxy listens on, for clients to dial.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut makes the proxy a black hole, like a cut link: from now on every byte
// read on an existing or new connection, either way, is dropped, and no
// connection is closed. Connections accepted while cut are not forwarded to
// the target at all.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for l := range p.conns {
		l.dropped = true
	}
}

// Heal ends a Cut: it closes every connection the cut touched (their
// streams have lost bytes) and forwards new connections again.
func (p *Proxy) Heal() {
	p.mu.Lock()
	p.cut = false
	var lost []*link
	for l := range p.conns {
		if l.dropped {
			lost = append(lost, l)
		}
	}
	p.mu.Unlock()
	for _, l := range lost {
		p.closeLink(l, false)
	}
}

// Reset closes every current connection at once, with a TCP RST where it
// can, and keeps listening for new ones.
func (p *Proxy) Reset() {
	for _, l := range p.snapshot() {
		p.closeLink(l, true)
	}
}

// Close stops listening, closes every connection and returns once every
// goroutine of the proxy has exited. It is safe to call more than once.
func (p *Proxy) Close() error {
	var err error
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		p.cancel()
		err = p.ln.Close()
		for _, l := range p.snapshot() {
			p.closeLink(l, false)
		}
		p.wg.Wait()
	})
	return err
}

// snapshot returns the current links.
func (p *Proxy) snapshot() []*link {
	p.mu.Lock()
	defer p.mu.Unlock()
	links := make([]*link, 0, len(p.conns))
	for l := range p.conns {
		links = append(links, l)
	}
	return links
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed; a proxy for tests needs no retry on EMFILE
		}
		l := &link{client: c}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			return
		}
		l.dropped = p.cut
		p.conns[l] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(1)
		go p.serve(l)
	}
}

// serve dials the target for l and copies client to server; a second
// goroutine copies the other way.
func (p *Proxy) serve(l *link) {
	defer p.wg.Done()
	p.mu.Lock()
	blackHole := l.dropped
	p.mu.Unlock()
	if blackHole {
		// Accepted while cut: nothing reaches the target, not even the
		// connection. Read and drop until Heal, Reset or Close.
		io.Copy(io.Discard, l.client)
		return
	}
	d := net.Dialer{Timeout: dialTimeout}
	server, err := d.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		p.closeLink(l, false)
		return
	}
	p.mu.Lock()
	if l.closed {
		p.mu.Unlock()
		server.Close()
		return
	}
	l.server = server
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.pipe(l, server, l.client)
	}()
	p.pipe(l, l.client, server)
}

// pipe copies src to dst while the proxy is not cut, and drops what it
// reads while it is.
func (p *Proxy) pipe(l *link, src, dst net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && p.forwarding(l) {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				p.closeLink(l, false)
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				p.halfClose(l, dst)
				return
			}
			p.closeLink(l, false)
			return
		}
	}
}

// forwarding reports whether bytes read on l go through, and marks l as
// having lost some if not.
func (p *Proxy) forwarding(l *link) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		l.dropped = true
	}
	return !l.dropped
}

// halfClose passes a clean EOF on to dst, unless a cut swallows it; the
// link is closed when both directions have ended.
func (p *Proxy) halfClose(l *link, dst net.Conn) {
	p.mu.Lock()
	if p.cut {
		l.dropped = true
	}
	if l.dropped || l.closed {
		p.mu.Unlock()
		return // a cut link carries no FIN either; Heal closes it
	}
	l.eofs++
	both := l.eofs == 2
	p.mu.Unlock()
	if both {
		p.closeLink(l, false)
		return
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	p.closeLink(l, false)
}

// closeLink closes both sides of l once; with rst it asks for a TCP RST
// rather than a FIN.
func (p *Proxy) closeLink(l *link, rst bool) {
	p.mu.Lock()
	if l.closed {
		p.mu.Unlock()
		return
	}
	l.closed = true
	delete(p.conns, l)
	server := l.server
	p.mu.Unlock()
	for _, c := range []net.Conn{l.client, server} {
		if c == nil {
			continue
		}
		if tc, ok := c.(*net.TCPConn); ok && rst {
			tc.SetLinger(0)
		}
		c.Close()
	}
}
