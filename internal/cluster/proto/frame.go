package proto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// HeaderLen is the size of a frame's length prefix: a 4-byte big-endian
// count of the bytes that follow it (the type byte and the body).
const HeaderLen = 4

// DefaultMaxFrameSize is a sensible bound for ReadFrame and FrameLen: large
// enough for a Forward batch of big messages or one part of a snapshot,
// small enough that a corrupt or hostile length cannot make a node allocate
// gigabytes. Senders split snapshots into parts to stay under it.
const DefaultMaxFrameSize = 16 << 20

// The errors of the codec; test for them with errors.Is.
var (
	// ErrMalformed: a complete frame whose content does not follow the
	// protocol. The link that sent it is closed.
	ErrMalformed = errors.New("proto: malformed frame")
	// ErrFrameTooLarge: the length prefix announces a frame larger than
	// the receiver's maximum. It is reported before anything is allocated.
	ErrFrameTooLarge = errors.New("proto: frame too large")
	// ErrEncode: a message cannot be encoded (a field out of range).
	ErrEncode = errors.New("proto: cannot encode")
)

// FrameLen returns the total length (prefix included) of the frame at the
// start of buf, as soon as buf holds the 4-byte prefix, so that a reader
// working from its own buffer knows how much more to read. A frame longer
// than maxSize bytes (prefix included; 0 means DefaultMaxFrameSize) is
// ErrFrameTooLarge, a prefix announcing an empty frame is ErrMalformed, and
// fewer than 4 bytes is io.ErrUnexpectedEOF.
func FrameLen(buf []byte, maxSize int) (int, error) {
	if len(buf) < HeaderLen {
		return 0, fmt.Errorf("proto: %d bytes of a length prefix: %w", len(buf), io.ErrUnexpectedEOF)
	}
	return checkLen(binary.BigEndian.Uint32(buf), maxSize)
}

func checkLen(n uint32, maxSize int) (int, error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxFrameSize
	}
	if n == 0 {
		return 0, fmt.Errorf("proto: zero-length frame: %w", ErrMalformed)
	}
	total := uint64(n) + HeaderLen
	if total > uint64(maxSize) {
		return 0, fmt.Errorf("proto: frame of %d bytes, maximum %d: %w", total, maxSize, ErrFrameTooLarge)
	}
	return int(total), nil
}

// ReadFrame reads one whole frame (prefix included) from r, ready for
// Decode. The length is checked against maxSize (0 means
// DefaultMaxFrameSize) before any allocation. The frame is read into buf
// when its capacity suffices, otherwise into a new slice; since decoded
// messages alias their frame, a caller that keeps messages passes nil (or a
// buffer it will not reuse).
//
// At a clean end of stream before any byte the error is io.EOF; a stream
// that ends inside a frame gives io.ErrUnexpectedEOF.
func ReadFrame(r io.Reader, buf []byte, maxSize int) ([]byte, error) {
	var hdr []byte // in buf when it has room: a local array would escape
	if cap(buf) >= HeaderLen {
		hdr = buf[:HeaderLen]
	} else {
		hdr = make([]byte, HeaderLen)
	}
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, err
	}
	total, err := checkLen(binary.BigEndian.Uint32(hdr[:]), maxSize)
	if err != nil {
		return nil, err
	}
	if cap(buf) >= total {
		buf = buf[:total]
	} else {
		buf = make([]byte, total)
	}
	copy(buf, hdr)
	if _, err := io.ReadFull(r, buf[HeaderLen:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}

// beginFrame appends the placeholder prefix and the type byte.
func beginFrame(dst []byte, t Type) ([]byte, int) {
	start := len(dst)
	return append(dst, 0, 0, 0, 0, byte(t)), start
}

// endFrame writes the length of the frame started at start. On error dst
// is cut back to where the frame started.
func endFrame(dst []byte, start int, err error) ([]byte, error) {
	if err != nil {
		return dst[:start], err
	}
	n := len(dst) - start - HeaderLen
	if uint64(n) > math.MaxUint32 {
		return dst[:start], fmt.Errorf("%w: frame of %d bytes", ErrEncode, n)
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(n))
	return dst, nil
}
