// Package packet is the MQTT wire codec for protocol versions 3.1, 3.1.1 and
// 5.0: one Go type per control packet, a Packet interface over them, encoders
// that append to a caller's buffer, and a single Decode entry point.
//
// It is pure: no goroutines and no I/O beyond io.Reader. It must not import
// any other Starling package.
package packet
