// Package client is a small, fast MQTT client for protocol versions 3.1,
// 3.1.1 and 5.0. The bridge, the load generator (`starling bench`) and the
// tests share it.
//
// A Client is one network connection: Connect dials, sends CONNECT and
// returns once the CONNACK arrives; the connection then has one reader and
// one writer goroutine. The writer coalesces every queued packet into one
// buffer per write call, so many goroutines (or one goroutine pipelining with
// PublishAsync) can drive hundreds of thousands of messages per second.
//
// The client keeps no state across connections: packet identifiers, the
// publish inflight window, the QoS 2 receive bookkeeping and the server's
// topic aliases belong to one connection. A persistent session lives on the
// server; after a reconnect the server redelivers what it holds.
//
// It owns the client side of the wire protocol only. It imports
// internal/packet and must not import any other Starling package.
package client
