// Package listener owns the network front door of the broker: it binds a
// TCP socket and yields net.Conn values carrying MQTT, over plain TCP, TLS,
// WebSocket (ws) or WebSocket over TLS (wss), each optionally behind
// HAProxy's PROXY protocol (v1 or v2).
//
// Every per-connection setup step (PROXY header, TLS handshake, WebSocket
// upgrade) runs in a goroutine of its own, bounded by a deadline, so a slow
// or malicious client never delays Accept for the others. The order of the
// steps is fixed: PROXY header (plaintext), then TLS, then the WebSocket
// upgrade.
//
// It also turns mosquitto-style TLS settings (cafile, capath, certfile,
// keyfile, require_certificate, tls_version, ciphers) into a *tls.Config.
//
// It must not import any other Starling package: the broker and cmd/starling
// import it, never the other way round.
package listener
