// Package crash tests that Starling keeps its promises across kill -9: a
// real broker process is killed in the middle of a QoS 1 and QoS 2 publish
// storm to persistent subscribers and restarted on the same folder.
package crash

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starlingmq/starling/internal/packet"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "starling-crash-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "starling")
	build := exec.Command("go", "build", "-o", binary, "github.com/starlingmq/starling/cmd/starling")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building starling:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// broker is one starling process on a data folder.
type broker struct {
	t    *testing.T
	dir  string
	port int
	cmd  *exec.Cmd
	log  *os.File
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (b *broker) start() {
	t := b.t
	t.Helper()
	conf := filepath.Join(b.dir, "starling.conf")
	text := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s\nsys_interval 0\nmax_queued_messages 0\n",
		b.port, filepath.Join(b.dir, "data"))
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.OpenFile(filepath.Join(b.dir, "broker.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	b.log = logf
	b.cmd = exec.Command(binary, "-c", conf)
	b.cmd.Stdout, b.cmd.Stderr = logf, logf
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", b.addr())
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			b.dumpLog()
			t.Fatalf("broker did not start: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *broker) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port)) }

func (b *broker) kill9() {
	b.cmd.Process.Kill() // SIGKILL
	b.cmd.Wait()
	b.log.Close()
}

func (b *broker) stop() {
	if b.cmd != nil && b.cmd.ProcessState == nil {
		b.kill9()
	}
}

func (b *broker) dumpLog() {
	data, _ := os.ReadFile(filepath.Join(b.dir, "broker.log"))
	b.t.Logf("broker log:\n%s", data)
}

// mqttConn is a packet-level MQTT 3.1.1 connection: the test controls
// every acknowledgement.
type mqttConn struct {
	nc  net.Conn
	br  *bufio.Reader
	wmu sync.Mutex
}

func dial(addr, id string, clean bool) (*mqttConn, *packet.Connack, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, nil, err
	}
	c := &mqttConn{nc: nc, br: bufio.NewReader(nc)}
	if err := c.send(&packet.Connect{ProtocolName: "MQTT", Version: packet.V311, ClientID: id, CleanStart: clean, KeepAlive: 60}); err != nil {
		nc.Close()
		return nil, nil, err
	}
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	p, err := packet.ReadPacket(c.br, packet.V311, 0)
	nc.SetReadDeadline(time.Time{})
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	ack, ok := p.(*packet.Connack)
	if !ok || ack.ReasonCode != packet.Success {
		nc.Close()
		return nil, nil, fmt.Errorf("connect refused: %+v", p)
	}
	return c, ack, nil
}

func (c *mqttConn) send(p packet.Packet) error {
	b, err := packet.Encode(p, packet.V311)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err = c.nc.Write(b)
	return err
}

func (c *mqttConn) read(d time.Duration) (packet.Packet, error) {
	c.nc.SetReadDeadline(time.Now().Add(d))
	return packet.ReadPacket(c.br, packet.V311, 0)
}

// subscriber is a persistent subscriber that remembers, across its
// connections, the QoS 2 packet ids it received and has not seen released,
// as a client must to receive exactly once [MQTT-4.3.3].
type subscriber struct {
	id       string
	mu       sync.Mutex
	got      map[string][]int // publisher -> sequence numbers in arrival order
	pending  map[uint16]bool
	received int
}

func newSubscriber(id string) *subscriber {
	return &subscriber{id: id, got: map[string][]int{}, pending: map[uint16]bool{}}
}

// handle processes one packet from the broker.
func (s *subscriber) handle(c *mqttConn, p packet.Packet) error {
	switch p := p.(type) {
	case *packet.Publish:
		deliver := true
		if p.QoS == 2 {
			s.mu.Lock()
			if s.pending[p.PacketID] {
				deliver = false // a resend of what we already have
			}
			s.pending[p.PacketID] = true
			s.mu.Unlock()
		}
		if deliver {
			pub, seq, ok := strings.Cut(string(p.Payload), ":")
			n, err := strconv.Atoi(seq)
			if !ok || err != nil {
				return fmt.Errorf("bad payload %q", p.Payload)
			}
			s.mu.Lock()
			s.got[pub] = append(s.got[pub], n)
			s.received++
			s.mu.Unlock()
		}
		switch p.QoS {
		case 1:
			return c.send(&packet.Puback{PacketID: p.PacketID})
		case 2:
			return c.send(&packet.Pubrec{PacketID: p.PacketID})
		}
	case *packet.Pubrel:
		s.mu.Lock()
		delete(s.pending, p.PacketID)
		s.mu.Unlock()
		return c.send(&packet.Pubcomp{PacketID: p.PacketID})
	}
	return nil
}

// run reads until the connection fails or ctx ends.
func (s *subscriber) run(ctx context.Context, c *mqttConn) {
	go func() {
		<-ctx.Done()
		c.nc.Close()
	}()
	for {
		p, err := c.read(time.Hour)
		if err != nil {
			return
		}
		if err := s.handle(c, p); err != nil {
			return
		}
	}
}

// drain reads until nothing arrives for quiet.
func (s *subscriber) drain(c *mqttConn, quiet time.Duration) error {
	for {
		p, err := c.read(quiet)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil
			}
			return err
		}
		if err := s.handle(c, p); err != nil {
			return err
		}
	}
}

// publisher sends numbered messages at one QoS and records which the
// broker acknowledged (PUBACK, or PUBREC for QoS 2).
type publisher struct {
	name  string
	qos   byte
	mu    sync.Mutex
	acked map[int]bool
	sent  int
}

func (p *publisher) run(ctx context.Context, addr string) {
	c, _, err := dial(addr, p.name, true)
	if err != nil {
		return
	}
	window := make(chan struct{}, 16)
	ids := map[uint16]int{}
	var idsMu sync.Mutex
	done := make(chan struct{})
	defer func() {
		// the reader of acknowledgements ends before run returns: the
		// caller reads p.acked then
		c.nc.Close()
		<-done
	}()
	go func() { // acknowledgements
		defer close(done)
		for {
			pk, err := c.read(time.Hour)
			if err != nil {
				return
			}
			var id uint16
			switch a := pk.(type) {
			case *packet.Puback:
				id = a.PacketID
			case *packet.Pubrec:
				id = a.PacketID
				if c.send(&packet.Pubrel{PacketID: id}) != nil {
					return
				}
			case *packet.Pubcomp:
				continue
			default:
				continue
			}
			idsMu.Lock()
			seq, ok := ids[id]
			delete(ids, id)
			idsMu.Unlock()
			if ok {
				p.mu.Lock()
				p.acked[seq] = true
				p.mu.Unlock()
				<-window
			}
		}
	}()
	for seq := 1; ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case window <- struct{}{}:
		}
		id := uint16(seq%60000 + 1)
		idsMu.Lock()
		ids[id] = seq
		idsMu.Unlock()
		msg := &packet.Publish{Topic: "storm/" + p.name, QoS: p.qos, PacketID: id, Payload: []byte(fmt.Sprintf("%s:%d", p.name, seq))}
		if c.send(msg) != nil {
			return
		}
		p.mu.Lock()
		p.sent = seq
		p.mu.Unlock()
	}
}

func TestKill9DuringPublishStormLosesNothingAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("kill -9 test skipped in -short mode")
	}
	for round := range 3 {
		t.Run(fmt.Sprintf("round%d", round), func(t *testing.T) {
			b := &broker{t: t, dir: t.TempDir(), port: freePort(t)}
			b.start()
			t.Cleanup(b.stop)

			online, offline := newSubscriber("online"), newSubscriber("offline")
			for _, s := range []*subscriber{online, offline} {
				c, _, err := dial(b.addr(), s.id, false)
				if err != nil {
					t.Fatal(err)
				}
				if err := c.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "storm/#", QoS: 2}}}); err != nil {
					t.Fatal(err)
				}
				if p, err := c.read(5 * time.Second); err != nil {
					t.Fatal(err)
				} else if _, ok := p.(*packet.Suback); !ok {
					t.Fatalf("want SUBACK, got %T", p)
				}
				if s == offline {
					c.send(&packet.Disconnect{})
					c.nc.Close()
					continue
				}
				ctx, cancel := context.WithCancel(context.Background())
				t.Cleanup(cancel)
				go s.run(ctx, c)
			}

			pubs := []*publisher{
				{name: "q1a", qos: 1}, {name: "q1b", qos: 1},
				{name: "q2a", qos: 2}, {name: "q2b", qos: 2},
			}
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			for _, p := range pubs {
				p.acked = map[int]bool{}
				wg.Go(func() { p.run(ctx, b.addr()) })
			}
			time.Sleep(time.Duration(200+rand.IntN(1300)) * time.Millisecond)
			b.kill9()
			cancel()
			wg.Wait()
			total := 0
			for _, p := range pubs {
				total += len(p.acked)
			}
			if total == 0 {
				b.dumpLog()
				t.Fatal("no message was acknowledged before the kill: the storm did not start")
			}

			b.start()
			for _, s := range []*subscriber{online, offline} {
				c, ack, err := dial(b.addr(), s.id, false)
				if err != nil {
					b.dumpLog()
					t.Fatal(err)
				}
				if !ack.SessionPresent {
					t.Errorf("%s: session not present after restart", s.id)
				}
				if err := s.drain(c, 1500*time.Millisecond); err != nil {
					t.Fatalf("%s: %v", s.id, err)
				}
				c.nc.Close()
			}
			for _, s := range []*subscriber{online, offline} {
				for _, p := range pubs {
					got := s.got[p.name]
					seen := map[int]int{}
					last := 0
					for _, n := range got {
						seen[n]++
						if seen[n] == 1 {
							if n < last {
								t.Errorf("%s from %s: %d after %d: out of order", s.id, p.name, n, last)
							}
							last = n
						}
					}
					missing := 0
					for seq := range p.acked {
						if seen[seq] == 0 {
							missing++
						}
					}
					dups := 0
					for _, k := range seen {
						if k > 1 {
							dups++
						}
					}
					if missing > 0 {
						t.Errorf("%s lost %d of %d messages %s acknowledged (QoS %d)", s.id, missing, len(p.acked), p.name, p.qos)
					}
					if p.qos == 2 && dups > 0 {
						t.Errorf("%s received %d QoS 2 messages of %s more than once", s.id, dups, p.name)
					}
					t.Logf("%s from %s (QoS %d): acked %d, received %d distinct, %d repeated", s.id, p.name, p.qos, len(p.acked), len(seen), dups)
				}
			}
			if t.Failed() {
				b.dumpLog()
			}
		})
	}
}
