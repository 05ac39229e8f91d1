package testutil

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// echo is a target that sends back what it reads and counts what it saw.
type echo struct {
	ln       net.Listener
	wg       sync.WaitGroup
	accepted atomic.Int64
	active   atomic.Int64 // connections not yet ended
	bytes    atomic.Int64
	mu       sync.Mutex
	conns    []net.Conn
}

func newEcho(t *testing.T) *echo {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echo{ln: ln}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.accepted.Add(1)
			e.active.Add(1)
			e.mu.Lock()
			e.conns = append(e.conns, c)
			e.mu.Unlock()
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer e.active.Add(-1)
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					e.bytes.Add(int64(n))
					if n > 0 {
						if _, err := c.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		e.mu.Lock()
		for _, c := range e.conns {
			c.Close()
		}
		e.mu.Unlock()
		e.wg.Wait()
	})
	return e
}

func newProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := NewProxy(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip writes msg and expects it echoed within 5 s.
func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(got) != msg {
		t.Fatalf("echo %q, want %q", got, msg)
	}
}

// silent writes msg and checks nothing comes back within 300 ms and the
// connection stays open.
func silent(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	n, err := c.Read(make([]byte, 64))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read through a cut link: %d bytes, %v; want a timeout", n, err)
	}
}

// closed waits until c reads an error other than a timeout.
func closed(t *testing.T, c net.Conn) {
	t.Helper()
	Eventually(t, 5*time.Second, func() bool {
		c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		_, err := c.Read(make([]byte, 64))
		return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
	}, "connection %s not closed", c.LocalAddr())
}

func TestProxyForwards(t *testing.T) {
	e := newEcho(t)
	p := newProxy(t, e.ln.Addr().String())
	a, b := dial(t, p.Addr()), dial(t, p.Addr())
	roundTrip(t, a, "hello")
	roundTrip(t, b, "world")
	roundTrip(t, a, string(make([]byte, 100_000)))
	if got := e.accepted.Load(); got != 2 {
		t.Fatalf("target accepted %d conns, want 2", got)
	}
}

func TestProxyHalfClose(t *testing.T) {
	e := newEcho(t)
	p := newProxy(t, e.ln.Addr().String())
	c := dial(t, p.Addr())
	if _, err := c.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "bye" {
		t.Fatalf("got %q, %v; want \"bye\" then EOF", got, err)
	}
}

func TestProxyCutAndHeal(t *testing.T) {
	e := newEcho(t)
	p := newProxy(t, e.ln.Addr().String())
	old := dial(t, p.Addr())
	roundTrip(t, old, "before")

	p.Cut()
	p.Cut() // idempotent
	seen := e.bytes.Load()
	silent(t, old, "lost")
	during := dial(t, p.Addr()) // accepted, but a black hole
	silent(t, during, "lost too")
	if got := e.bytes.Load(); got != seen {
		t.Fatalf("target got %d bytes through a cut link", got-seen)
	}
	if got := e.accepted.Load(); got != 1 {
		t.Fatalf("target accepted %d conns while cut, want none new", got-1)
	}
	// Still open: a cut is silent.
	silent(t, old, "still lost")

	p.Heal()
	closed(t, old)
	closed(t, during)
	roundTrip(t, dial(t, p.Addr()), "after")
}

func TestProxyReset(t *testing.T) {
	e := newEcho(t)
	p := newProxy(t, e.ln.Addr().String())
	a, b := dial(t, p.Addr()), dial(t, p.Addr())
	roundTrip(t, a, "a")
	roundTrip(t, b, "b")

	p.Reset()
	closed(t, a)
	closed(t, b)
	Eventually(t, 5*time.Second, func() bool { return e.active.Load() == 0 },
		"target side not closed by Reset")
	roundTrip(t, dial(t, p.Addr()), "again")
}

func TestProxyCloseTwice(t *testing.T) {
	e := newEcho(t)
	p, err := NewProxy(e.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Addr())
	roundTrip(t, c, "x")
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	closed(t, c)
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		t.Fatal("proxy still listening after Close")
	}
}

func TestProxyUnreachableTarget(t *testing.T) {
	p := newProxy(t, "127.0.0.1:"+strconv.Itoa(FreePort(t)))
	closed(t, dial(t, p.Addr()))
}

// fakeTB records a Fatalf and ends the goroutine, as testing.T does.
type fakeTB struct {
	testing.TB
	msg string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestEventually(t *testing.T) {
	n := 0
	Eventually(t, 5*time.Second, func() bool { n++; return n == 3 }, "n reaches 3")
	if n != 3 {
		t.Fatalf("cond called %d times, want 3", n)
	}

	tests := []struct {
		args []any
		want string
	}{
		{[]any{"waiting for %s", "x"}, "condition not met within 30ms: waiting for x"},
		{[]any{42}, "condition not met within 30ms: 42"},
		{nil, "condition not met within 30ms: (no message)"},
	}
	for _, tt := range tests {
		f := &fakeTB{}
		done := make(chan struct{})
		go func() {
			defer close(done)
			Eventually(f, 30*time.Millisecond, func() bool { return false }, tt.args...)
		}()
		<-done
		if f.msg != tt.want {
			t.Errorf("message %q, want %q", f.msg, tt.want)
		}
	}
}

func TestFreePort(t *testing.T) {
	port := FreePort(t)
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatalf("port %d not free: %v", port, err)
	}
	l.Close()
}
