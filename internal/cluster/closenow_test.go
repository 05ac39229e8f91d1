package cluster

import (
	"crypto/tls"
	"net"
	"testing"
	"time"
)

// TestCloseNowDoesNotWaitForPeer: closing a TLS link whose peer stopped
// reading (a cut link) returns at once, where tls.Conn.Close would first
// try to send close_notify for up to 5 seconds.
func TestCloseNowDoesNotWaitForPeer(t *testing.T) {
	cfgA, err := linkTLS("a", "s3cret", "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	cfgB, err := linkTLS("b", "s3cret", "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	cfgA = cfgA.Clone()
	cfgA.ServerName = "b"
	ca, cb := net.Pipe() // synchronous: a write waits for a read
	client := tls.Client(ca, cfgA)
	server := tls.Server(cb, cfgB)
	defer server.Close()
	hs := make(chan error, 1)
	go func() { hs <- server.Handshake() }() // then it never reads again
	if err := client.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if err := <-hs; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	n := &Node{conns: make(map[*trackedConn]struct{})}
	nc := n.track(client)
	start := time.Now()
	closeNow(nc)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("closeNow took %v: it waited for the peer", d)
	}
	if _, err := nc.Write([]byte("x")); err == nil {
		t.Fatal("write after closeNow succeeded")
	}
	if len(n.conns) != 0 {
		t.Fatal("closed connection still tracked")
	}
}
