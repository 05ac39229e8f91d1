// Package broker is the single-node MQTT engine: connection read and write
// loops, sessions, routing to local subscribers, retained messages, wills,
// keepalive and $SYS. It declares the interfaces it needs (Authenticator,
// Authorizer, Router, Store) and never imports their implementations.
//
// It may import only packet, topic and session of Starling's packages.
package broker
