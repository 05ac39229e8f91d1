package broker

import (
	"io"
	"sync"
)

// readBufSize is the size of the pooled read buffers.
const readBufSize = 4096

// maxKeptWriteBuf is the largest write buffer returned to the pool.
const maxKeptWriteBuf = 64 << 10

var (
	readBufPool  = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}
	writeBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}
)

// idleReader is a buffered reader that holds no buffer while its connection
// is idle: the first byte of a packet is read alone, and only then is a
// pooled buffer taken for the rest of what has arrived. It gives the buffer
// back whenever it has been drained. An idle connection then costs no read
// buffer at all, at the price of one extra read call per burst of packets.
// It is used by one goroutine only.
type idleReader struct {
	src  io.Reader
	buf  *[]byte // nil while nothing is buffered
	r, w int
	one  [1]byte
}

func (l *idleReader) release() {
	if l.buf != nil && l.r == l.w {
		readBufPool.Put(l.buf)
		l.buf = nil
		l.r, l.w = 0, 0
	}
}

// ReadByte implements io.ByteReader.
func (l *idleReader) ReadByte() (byte, error) {
	if l.r < l.w {
		b := (*l.buf)[l.r]
		l.r++
		l.release()
		return b, nil
	}
	for {
		n, err := l.src.Read(l.one[:])
		if n == 1 {
			return l.one[0], nil
		}
		if err != nil {
			return 0, err
		}
	}
}

// Read implements io.Reader.
func (l *idleReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if l.r == l.w {
		if len(p) >= readBufSize {
			return l.src.Read(p) // large bodies go straight to their buffer
		}
		if l.buf == nil {
			l.buf = readBufPool.Get().(*[]byte)
		}
		n, err := l.src.Read(*l.buf)
		l.r, l.w = 0, n
		if n == 0 {
			l.release()
			return 0, err
		}
	}
	n := copy(p, (*l.buf)[l.r:l.w])
	l.r += n
	l.release()
	return n, nil
}

// putWriteBuf returns a write buffer to the pool, unless it grew beyond
// maxKeptWriteBuf: then it is left to the garbage collector, so that idle
// connections do not pin megabytes.
func putWriteBuf(b *[]byte) {
	if cap(*b) <= maxKeptWriteBuf {
		writeBufPool.Put(b)
	}
}
