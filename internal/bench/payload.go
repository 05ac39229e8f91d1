package bench

import (
	"encoding/binary"
)

// headerSize is the size of the header every benchmark payload starts with:
//
//	0  2  magic "SB"
//	2  2  reserved
//	4  4  run id: messages from another run are counted as foreign
//	8  4  stream: the publisher, or the persistent session a message is for
//	12 8  sequence number within the stream, from 0
//	20 8  publish time, Unix nanoseconds
const headerSize = 28

const (
	magic0 = 'S'
	magic1 = 'B'
)

// header is the decoded start of a benchmark payload.
type header struct {
	run    uint32
	stream uint32
	seq    uint64
	sentNs int64
}

// putHeader writes h at the start of b, which must hold headerSize bytes.
func putHeader(b []byte, h header) {
	_ = b[headerSize-1]
	b[0], b[1], b[2], b[3] = magic0, magic1, 0, 0
	binary.BigEndian.PutUint32(b[4:], h.run)
	binary.BigEndian.PutUint32(b[8:], h.stream)
	binary.BigEndian.PutUint64(b[12:], h.seq)
	binary.BigEndian.PutUint64(b[20:], uint64(h.sentNs))
}

// parseHeader decodes the header of b; ok is false when b is not a
// benchmark payload.
func parseHeader(b []byte) (h header, ok bool) {
	if len(b) < headerSize || b[0] != magic0 || b[1] != magic1 {
		return header{}, false
	}
	h.run = binary.BigEndian.Uint32(b[4:])
	h.stream = binary.BigEndian.Uint32(b[8:])
	h.seq = binary.BigEndian.Uint64(b[12:])
	h.sentNs = int64(binary.BigEndian.Uint64(b[20:]))
	return h, true
}

// newPayload returns a payload buffer of size bytes (at least headerSize),
// filled after the header with a repeating pattern.
func newPayload(size int) []byte {
	if size < headerSize {
		size = headerSize
	}
	b := make([]byte, size)
	for i := headerSize; i < size; i++ {
		b[i] = 'a' + byte(i%26)
	}
	return b
}
