// Package packet is the MQTT wire codec for protocol versions 3.1, 3.1.1 and
// 5.0: one Go type per control packet, a Packet interface over them, encoders
// that append to a caller's buffer, and a single body decoder behind two
// entry points.
//
// Encoding: Packet.AppendTo(dst, v) appends the whole packet for version v
// and does not allocate beyond growing dst; Encode is the allocating
// shorthand. Properties and other MQTT 5 fields are silently left out for
// 3.x; a property the packet type may not carry in 5.0 is an error wrapping
// ProtocolError; AUTH cannot be encoded for 3.x.
//
// Decoding: ReadPacket reads one packet from a stream, enforcing a maximum
// packet size before reading the body; Decode decodes one packet from a
// byte slice. Both validate what the specifications require of a receiver
// (reserved flags, variable byte integers, UTF-8 strings, CONNECT flags,
// packet identifiers, subscription options, reason codes per packet type,
// and MQTT 5 property identifiers, placement, repetition and values) and
// return errors that wrap the ReasonCode to put on the wire, so callers use
// errors.Is and errors.As. Decoded strings are copies; decoded []byte fields
// alias the packet's own buffer (a fresh one per packet in ReadPacket, the
// caller's in Decode).
//
// Left to other packages: topic name and filter syntax (wildcards, length,
// $share), rules that depend on the direction of a packet or on connection
// state (a client sending Subscription Identifiers, a second CONNECT, topic
// alias limits, Receive Maximum), and Payload Format Indicator checks.
//
// It is pure: no goroutines and no I/O beyond io.Reader. It must not import
// any other Starling package.
package packet
