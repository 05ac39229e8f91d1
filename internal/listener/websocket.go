package listener

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"
)

const (
	// maxUpgradeRequestBytes bounds the HTTP upgrade request (request line
	// and headers) a client may send.
	maxUpgradeRequestBytes = 64 << 10
	// wsCloseTimeout bounds the WebSocket close handshake in Close, so a
	// dead peer cannot hold the closing goroutine for long.
	wsCloseTimeout = time.Second
)

// wsSubprotocols are the subprotocols MQTT clients offer: "mqtt" (MQTT
// 3.1.1 and 5.0) and "mqttv3.1" (MQTT 3.1).
var wsSubprotocols = []string{"mqtt", "mqttv3.1"}

// errSubprotocol refuses a client that offers subprotocols, none of them MQTT.
var errSubprotocol = errors.New("client offers no mqtt WebSocket subprotocol")

// upgrade reads one HTTP request from c and upgrades c to a WebSocket
// carrying binary frames. Any path is accepted. The HTTP exchange is done
// here rather than by an http.Server so that it runs in the setup goroutine
// under the setup deadline, and the Listener owns every goroutine involved.
func upgrade(c net.Conn) (net.Conn, error) {
	// coder/websocket re-points the reader at c after the hijack, so the
	// limit covers the request only.
	br := bufio.NewReader(&io.LimitedReader{R: c, N: maxUpgradeRequestBytes})
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, fmt.Errorf("websocket upgrade: read request: %w", err)
	}
	req.RemoteAddr = c.RemoteAddr().String()
	w := &upgradeWriter{
		conn:   c,
		brw:    bufio.NewReadWriter(br, bufio.NewWriter(c)),
		header: make(http.Header),
	}
	if offered := headerTokens(req.Header, "Sec-WebSocket-Protocol"); len(offered) > 0 && !offersMQTT(offered) {
		http.Error(w, errSubprotocol.Error(), http.StatusBadRequest)
		w.finishError()
		return nil, fmt.Errorf("websocket upgrade: %w: %q", errSubprotocol, offered)
	}
	ws, err := websocket.Accept(w, req, &websocket.AcceptOptions{
		Subprotocols: wsSubprotocols,
		// MQTT authenticates in CONNECT, not with ambient browser
		// credentials, so a cross-origin page gains nothing; Mosquitto does
		// not check Origin either.
		InsecureSkipVerify: true,
		CompressionMode:    websocket.CompressionDisabled,
	})
	if err != nil {
		w.finishError()
		return nil, fmt.Errorf("websocket upgrade: %w", err)
	}
	// MQTT packets may be far larger than the library's 32 KiB default; the
	// broker enforces its own maximum packet size while it streams.
	ws.SetReadLimit(-1)
	nc := websocket.NetConn(context.Background(), ws, websocket.MessageBinary)
	return &wsConn{Conn: nc, under: c}, nil
}

func headerTokens(h http.Header, key string) []string {
	var tokens []string
	for _, v := range h.Values(key) {
		for t := range strings.SplitSeq(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				tokens = append(tokens, t)
			}
		}
	}
	return tokens
}

func offersMQTT(offered []string) bool {
	for _, o := range offered {
		for _, s := range wsSubprotocols {
			if strings.EqualFold(o, s) {
				return true
			}
		}
	}
	return false
}

// upgradeWriter is the minimal http.ResponseWriter and http.Hijacker that
// websocket.Accept needs. A 101 response goes out at Hijack; any other
// response is buffered and written, with Connection: close, by finishError.
type upgradeWriter struct {
	conn     net.Conn
	brw      *bufio.ReadWriter
	header   http.Header
	status   int
	body     bytes.Buffer
	hijacked bool
}

var _ http.Hijacker = (*upgradeWriter)(nil)

func (w *upgradeWriter) Header() http.Header { return w.header }

func (w *upgradeWriter) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.body.Write(p)
}

func (w *upgradeWriter) WriteHeader(code int) {
	if w.status != 0 || w.hijacked {
		return
	}
	w.status = code
	if code == http.StatusSwitchingProtocols {
		bw := w.brw.Writer
		_, _ = bw.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
		_ = w.header.Write(bw)
		_, _ = bw.WriteString("\r\n")
	}
}

func (w *upgradeWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	if err := w.brw.Flush(); err != nil {
		return nil, nil, err
	}
	w.hijacked = true
	return w.conn, w.brw, nil
}

// finishError writes the buffered error response, if there is one.
func (w *upgradeWriter) finishError() {
	if w.hijacked || w.status == 0 || w.status == http.StatusSwitchingProtocols {
		return
	}
	resp := &http.Response{
		StatusCode:    w.status,
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        w.header,
		ContentLength: int64(w.body.Len()),
		Body:          io.NopCloser(&w.body),
		Close:         true,
	}
	_ = resp.Write(w.conn)
}

// wsConn is the net.Conn of one MQTT-over-WebSocket client: reads and writes
// are binary messages, the addresses are those of the conn below (so PROXY
// addresses show through), and the conn below is reachable for
// PeerCertificates.
type wsConn struct {
	net.Conn          // from websocket.NetConn
	under    net.Conn // what the WebSocket runs on (TLS, PROXY or TCP)
}

func (c *wsConn) RemoteAddr() net.Addr { return c.under.RemoteAddr() }
func (c *wsConn) LocalAddr() net.Addr  { return c.under.LocalAddr() }

// NetConn returns the conn the WebSocket runs on.
func (c *wsConn) NetConn() net.Conn { return c.under }

// Close sends a normal-closure frame and waits, at most wsCloseTimeout, for
// the peer's answer before closing the conn below.
func (c *wsConn) Close() error {
	_ = c.under.SetDeadline(time.Now().Add(wsCloseTimeout))
	return c.Conn.Close()
}
