package meta

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// The forwarding protocol: followers send writes to the leader over
// connections from Config.DialRPC to Config.RPCListener. Each message is
// a frame: a 4-byte big-endian length, then that many bytes (1 to
// maxFrameLen). A connection carries one request at a time: the client
// writes a request frame and reads one response frame.
//
// Request:
//
//	version   byte (rpcVersion)
//	kind      byte
//	timeout   uvarint, milliseconds the leader may spend (1 to maxRPCTimeout)
//	reqApply:  a command, as written to the Raft log (see command)
//	reqRemove: server id str
//
// Response:
//
//	version byte (rpcVersion)
//	status  byte
//	statusOK:    index uvarint, previous owner node str, previous epoch uvarint, deleted uvarint
//	statusRetry, statusFailed: message str
//
// statusRetry means "not applied, try again, maybe elsewhere" (not the
// leader, leadership lost, shutting down); statusFailed means the request
// is invalid (ErrInvalid), which is final.
const (
	rpcVersion byte = 1

	reqApply  byte = 1
	reqRemove byte = 2

	statusOK     byte = 0
	statusRetry  byte = 1
	statusFailed byte = 2

	// maxFrameLen is 64 KiB plus room for the header and the node name,
	// so that every MQTT client id (up to 65535 bytes) fits in one frame.
	maxFrameLen = 64<<10 + 512
	// maxMessageLen bounds the error message of a response.
	maxMessageLen = 1024
	// maxRPCTimeout bounds the time a forwarded request may take on the
	// leader.
	maxRPCTimeout = time.Minute
	// defaultTimeout applies to a write whose ctx has no deadline.
	defaultTimeout = 10 * time.Second
	// maxIdleConns is how many idle connections to the leader are kept.
	maxIdleConns = 8
)

// request is one forwarded write.
type request struct {
	kind    byte
	timeout time.Duration // whole milliseconds
	cmd     command       // reqApply
	id      string        // reqRemove
}

func (q request) appendTo(dst []byte) []byte {
	dst = append(dst, rpcVersion, q.kind)
	dst = binary.AppendUvarint(dst, uint64(q.timeout/time.Millisecond))
	switch q.kind {
	case reqApply:
		dst = q.cmd.appendTo(dst)
	case reqRemove:
		dst = appendString(dst, q.id)
	}
	return dst
}

// decodeRequest decodes and validates a request frame's payload.
func decodeRequest(b []byte) (request, error) {
	d := decoder{b: b}
	var q request
	if v := d.byte(); d.err == nil && v != rpcVersion {
		return q, fmt.Errorf("%w: request version %d", ErrInvalid, v)
	}
	q.kind = d.byte()
	ms := d.uvarint()
	if d.err == nil && (ms == 0 || ms > uint64(maxRPCTimeout/time.Millisecond)) {
		d.fail("timeout of %d ms", ms)
	}
	q.timeout = time.Duration(ms) * time.Millisecond
	switch q.kind {
	case reqApply:
		if d.err != nil {
			return request{}, fmt.Errorf("request: %w", d.err)
		}
		c, err := decodeCommand(d.b)
		if err != nil {
			return request{}, fmt.Errorf("request: %w", err)
		}
		q.cmd = c
		return q, nil
	case reqRemove:
		q.id = d.str(MaxNodeLen)
		if err := d.end(); err != nil {
			return request{}, fmt.Errorf("request: %w", err)
		}
		if err := checkNode(q.id); err != nil {
			return request{}, err
		}
		return q, nil
	default:
		if d.err != nil {
			return request{}, fmt.Errorf("request: %w", d.err)
		}
		return request{}, fmt.Errorf("%w: request kind %d", ErrInvalid, q.kind)
	}
}

// response is the answer to a request.
type response struct {
	status byte
	res    applyResult // statusOK
	msg    string      // statusRetry, statusFailed
}

func (p response) appendTo(dst []byte) []byte {
	dst = append(dst, rpcVersion, p.status)
	if p.status == statusOK {
		dst = binary.AppendUvarint(dst, p.res.index)
		dst = appendString(dst, p.res.prev.Node)
		dst = binary.AppendUvarint(dst, p.res.prev.Epoch)
		return binary.AppendUvarint(dst, uint64(p.res.deleted))
	}
	msg := p.msg
	if len(msg) > maxMessageLen {
		msg = msg[:maxMessageLen]
	}
	return appendString(dst, msg)
}

func decodeResponse(b []byte) (response, error) {
	d := decoder{b: b}
	var p response
	if v := d.byte(); d.err == nil && v != rpcVersion {
		return p, fmt.Errorf("%w: response version %d", ErrInvalid, v)
	}
	p.status = d.byte()
	switch p.status {
	case statusOK:
		p.res.index = d.uvarint()
		p.res.prev.Node = d.str(MaxNodeLen)
		p.res.prev.Epoch = d.uvarint()
		n := d.uvarint()
		if n > 1<<40 {
			d.fail("count %d", n)
		}
		p.res.deleted = int(n)
	case statusRetry, statusFailed:
		p.msg = d.str(maxMessageLen)
	default:
		d.fail("response status %d", p.status)
	}
	if err := d.end(); err != nil {
		return response{}, fmt.Errorf("response: %w", err)
	}
	return p, nil
}

// writeFrame writes the length of payload and payload in one write.
// frame must have 4 bytes of room before payload: frame[4:] is the
// payload.
func writeFrame(w io.Writer, frame []byte) error {
	n := len(frame) - 4
	if n <= 0 || n > maxFrameLen {
		return fmt.Errorf("%w: frame of %d bytes", ErrInvalid, n)
	}
	binary.BigEndian.PutUint32(frame, uint32(n))
	_, err := w.Write(frame)
	return err
}

// readFrame reads one frame's payload into buf (grown as needed) and
// returns it; the result aliases buf.
func readFrame(r *bufio.Reader, buf []byte) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return buf, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > maxFrameLen {
		return buf, fmt.Errorf("%w: frame of %d bytes", ErrInvalid, n)
	}
	if uint32(cap(buf)) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return buf, err
	}
	return buf, nil
}

// rpcConn is a client connection to the leader's RPC endpoint.
type rpcConn struct {
	addr string // the leader's Raft address
	c    net.Conn
	br   *bufio.Reader
	buf  []byte
}

// rpcPool dials and keeps connections to the leader's RPC endpoint. Idle
// connections are kept for one address, the last leader; a connection
// that failed is closed, never reused. Safe for concurrent use.
type rpcPool struct {
	dial func(ctx context.Context, addr string) (net.Conn, error)

	mu     sync.Mutex
	idle   []*rpcConn            // mu; all to idleTo
	idleTo string                // mu
	all    map[*rpcConn]struct{} // mu; idle and in use, closed by close
	closed bool                  // mu
}

func newRPCPool(dial func(ctx context.Context, addr string) (net.Conn, error)) *rpcPool {
	return &rpcPool{dial: dial, all: make(map[*rpcConn]struct{})}
}

func (p *rpcPool) get(ctx context.Context, addr string) (*rpcConn, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	if p.idleTo == addr && len(p.idle) > 0 {
		rc := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		p.mu.Unlock()
		return rc, nil
	}
	p.mu.Unlock()

	c, err := p.dial(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("meta: dial leader %s: %w", addr, err)
	}
	rc := &rpcConn{addr: addr, c: c, br: bufio.NewReaderSize(c, 4096)}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		return nil, ErrClosed
	}
	p.all[rc] = struct{}{}
	return rc, nil
}

// put returns a healthy connection for reuse.
func (p *rpcPool) put(rc *rpcConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return // closed by close
	}
	if p.idleTo != rc.addr {
		// The leader changed: the old leader's connections are of no use.
		for _, old := range p.idle {
			p.discardLocked(old)
		}
		p.idle, p.idleTo = p.idle[:0], rc.addr
	}
	if len(p.idle) >= maxIdleConns {
		p.discardLocked(rc)
		return
	}
	p.idle = append(p.idle, rc)
}

// discard closes a connection that failed.
func (p *rpcPool) discard(rc *rpcConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.discardLocked(rc)
}

// discardLocked closes rc. p.mu must be held.
func (p *rpcPool) discardLocked(rc *rpcConn) {
	delete(p.all, rc)
	_ = rc.c.Close()
}

// close closes every connection, idle or in use; calls in progress fail.
func (p *rpcPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for rc := range p.all {
		_ = rc.c.Close()
	}
	clear(p.all)
	p.idle = nil
}

// call sends q to the leader at addr (its Raft address) and returns its
// response. An error means the request may or may not have been applied.
func (p *rpcPool) call(ctx context.Context, addr string, q request) (response, error) {
	rc, err := p.get(ctx, addr)
	if err != nil {
		return response{}, err
	}
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(defaultTimeout)
	}
	// Give the leader the time left, less a margin to send the answer.
	left := time.Until(dl)
	q.timeout = min(max(left-left/10, time.Millisecond), maxRPCTimeout).Truncate(time.Millisecond)
	if err := rc.c.SetDeadline(dl); err != nil {
		p.discard(rc)
		return response{}, err
	}
	// A deadline in the past when ctx is cancelled unblocks the read at once.
	stop := context.AfterFunc(ctx, func() { _ = rc.c.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	rc.buf = q.appendTo(append(rc.buf[:0], 0, 0, 0, 0))
	if err := writeFrame(rc.c, rc.buf); err != nil {
		p.discard(rc)
		return response{}, fmt.Errorf("meta: send to leader %s: %w", addr, err)
	}
	rc.buf, err = readFrame(rc.br, rc.buf)
	if err != nil {
		p.discard(rc)
		return response{}, fmt.Errorf("meta: read from leader %s: %w", addr, err)
	}
	resp, err := decodeResponse(rc.buf)
	if err != nil {
		p.discard(rc)
		return response{}, fmt.Errorf("meta: leader %s: %w", addr, err)
	}
	if !stop() {
		// ctx ended after the answer arrived: the deadline is spoiled.
		p.discard(rc)
		return resp, nil
	}
	p.put(rc)
	return resp, nil
}
