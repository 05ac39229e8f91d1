// Package proto is the node-to-node protocol of a Starling cluster: one Go
// type per message, a Message interface over them, encoders that append
// whole frames to a caller's buffer (Message.AppendTo) and one decoder
// (Decode), plus the framing (ReadFrame, FrameLen).
//
// # Framing
//
// A frame is a 4-byte big-endian length, then that many bytes: a message
// type byte and the message body. Readers check the length against their
// maximum frame size before allocating (ErrFrameTooLarge). Bodies use
// minimal uvarints for unsigned integers, zig-zag varints for times,
// uvarint-length-prefixed strings and lists, flags bytes for booleans, and
// the MQTT 5 PUBLISH encoding of internal/packet for every application
// message, so that properties travel unchanged.
//
// # Versions
//
// A link starts with Hello from each end, carrying the range of protocol
// versions the node speaks (MinVersion to Version) and its capabilities;
// HelloAck gives the version both will speak, the newest in both ranges
// (Negotiate), or refuses the link. The rules that let a cluster be
// upgraded one node at a time:
//
//   - The body of a message type, once released, never changes. A new
//     field means a new message type number; numbers are never reused.
//   - A node sends a message type only when the negotiated version (or a
//     capability both ends announced) says the peer knows it.
//   - A type a node does not know decodes as *Unknown and is skipped, so a
//     newer peer that sends one by mistake costs a log line, not the link.
//   - Within a known type nothing is optional or skippable: unknown flag
//     bits, trailing bytes and out-of-range values are ErrMalformed, and a
//     malformed frame closes the link. Decode never panics on any input.
//   - Version is raised when the set of message types changes; MinVersion
//     is raised only after a release that no longer sends the old types.
//
// Authentication is not in this package: links run over TLS and the peer
// is who its certificate says.
//
// It is pure: no goroutines, no I/O beyond io.Reader in ReadFrame. It may
// import only internal/packet and the standard library (not broker, not
// cluster), so that both ends of every dependency can use it.
package proto
