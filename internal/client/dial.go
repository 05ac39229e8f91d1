package client

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/coder/websocket"
)

// dial opens the transport named by o.Addr.
func dial(ctx context.Context, o Options) (net.Conn, error) {
	d := o.Dialer
	if d == nil {
		d = &net.Dialer{}
	}
	scheme, rest, ok := strings.Cut(o.Addr, "://")
	if !ok {
		scheme, rest = "", o.Addr
	}
	switch strings.ToLower(scheme) {
	case "", "tcp", "mqtt":
		if o.TLS != nil {
			return dialTLS(ctx, d, o.TLS, rest)
		}
		conn, err := d.DialContext(ctx, "tcp", rest)
		if err != nil {
			return nil, fmt.Errorf("client: dial %s: %w", o.Addr, err)
		}
		return conn, nil
	case "tls", "ssl", "mqtts":
		cfg := o.TLS
		if cfg == nil {
			cfg = &tls.Config{}
		}
		return dialTLS(ctx, d, cfg, rest)
	case "ws", "wss":
		return dialWebSocket(ctx, d, o.TLS, o.Addr)
	}
	return nil, fmt.Errorf("client: address %q: unknown scheme %q", o.Addr, scheme)
}

func dialTLS(ctx context.Context, d *net.Dialer, cfg *tls.Config, addr string) (net.Conn, error) {
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("client: address %q: %w", addr, err)
		}
		cfg = cfg.Clone()
		cfg.ServerName = host
	}
	td := &tls.Dialer{NetDialer: d, Config: cfg}
	conn, err := td.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("client: dial tls %s: %w", addr, err)
	}
	return conn, nil
}

// dialWebSocket opens an MQTT-over-WebSocket connection (subprotocol
// "mqtt", binary messages) and presents it as a byte stream.
func dialWebSocket(ctx context.Context, d *net.Dialer, cfg *tls.Config, url string) (net.Conn, error) {
	tr := &http.Transport{
		DialContext:       d.DialContext,
		TLSClientConfig:   cfg,
		ForceAttemptHTTP2: false,
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{
		HTTPClient:   &http.Client{Transport: tr},
		Subprotocols: []string{"mqtt"},
	})
	if err != nil {
		return nil, fmt.Errorf("client: dial %s: %w", url, err)
	}
	if p := ws.Subprotocol(); p != "mqtt" {
		ws.Close(websocket.StatusProtocolError, "subprotocol mqtt required")
		return nil, fmt.Errorf("client: dial %s: server chose subprotocol %q, not mqtt", url, p)
	}
	// The connection outlives ctx, which only bounds the handshake.
	return websocket.NetConn(context.Background(), ws, websocket.MessageBinary), nil
}
