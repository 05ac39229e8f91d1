package e2e

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// A minimal MQTT 3.1.1 codec for tests that need a client to misbehave
// (stop reading, flood) in ways real client libraries do not allow.

func appendVarint(dst []byte, n int) []byte {
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		dst = append(dst, b)
		if n == 0 {
			return dst
		}
	}
}

func appendString(dst []byte, s string) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

func rawPacket(header byte, body []byte) []byte {
	p := appendVarint([]byte{header}, len(body))
	return append(p, body...)
}

// rawConnect is a clean-session MQTT 3.1.1 CONNECT.
func rawConnect(clientID string) []byte {
	body := appendString(nil, "MQTT")
	body = append(body, 4, 0x02, 0, 60)
	body = appendString(body, clientID)
	return rawPacket(0x10, body)
}

func rawSubscribe(packetID uint16, filter string, qos byte) []byte {
	body := binary.BigEndian.AppendUint16(nil, packetID)
	body = appendString(body, filter)
	body = append(body, qos)
	return rawPacket(0x82, body)
}

// appendRawPublish appends a QoS 0 PUBLISH.
func appendRawPublish(dst []byte, topic string, payload []byte) []byte {
	dst = append(dst, 0x30)
	dst = appendVarint(dst, 2+len(topic)+len(payload))
	dst = appendString(dst, topic)
	return append(dst, payload...)
}

// readRawPacket reads one packet: the first header byte and the body.
func readRawPacket(r *bufio.Reader) (byte, []byte, error) {
	h, err := r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mul := 0, 1
	for i := 0; ; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n += int(b&0x7f) * mul
		mul *= 128
		if b&0x80 == 0 {
			break
		}
		if i == 3 {
			return 0, nil, fmt.Errorf("malformed remaining length")
		}
	}
	body := make([]byte, n)
	_, err = io.ReadFull(r, body)
	return h, body, err
}

// rawClient is a connected raw MQTT 3.1.1 connection.
type rawClient struct {
	net.Conn
	r *bufio.Reader
}

// dialRaw connects, sends CONNECT and checks the CONNACK; before, if set,
// adjusts the TCP connection first (e.g. a tiny receive buffer).
func dialRaw(t *testing.T, addr, clientID string, before func(*net.TCPConn)) *rawClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if before != nil {
		before(conn.(*net.TCPConn))
	}
	c := &rawClient{Conn: conn, r: bufio.NewReaderSize(conn, 1<<16)}
	if _, err := conn.Write(rawConnect(clientID)); err != nil {
		t.Fatal(err)
	}
	c.expect(t, 0x20, func(body []byte) error {
		if len(body) != 2 || body[1] != 0 {
			return fmt.Errorf("CONNACK %x", body)
		}
		return nil
	})
	return c
}

// subscribe subscribes and checks the SUBACK.
func (c *rawClient) subscribe(t *testing.T, filter string, qos byte) {
	t.Helper()
	if _, err := c.Write(rawSubscribe(1, filter, qos)); err != nil {
		t.Fatal(err)
	}
	c.expect(t, 0x90, func(body []byte) error {
		if len(body) != 3 || body[2] != qos {
			return fmt.Errorf("SUBACK %x", body)
		}
		return nil
	})
}

// expect reads the next packet, which must have the given first byte.
func (c *rawClient) expect(t *testing.T, header byte, check func([]byte) error) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	h, body, err := readRawPacket(c.r)
	if err != nil {
		t.Fatalf("reading packet %#x: %v", header, err)
	}
	if h != header {
		t.Fatalf("got packet %#x, want %#x", h, header)
	}
	if err := check(body); err != nil {
		t.Fatal(err)
	}
}

// publishTopic returns the topic and payload of a QoS 0 PUBLISH body.
func publishTopic(body []byte) (string, []byte) {
	if len(body) < 2 {
		return "", nil
	}
	n := int(binary.BigEndian.Uint16(body))
	if 2+n > len(body) {
		return "", nil
	}
	return string(body[2 : 2+n]), body[2+n:]
}
