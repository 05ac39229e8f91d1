package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/starlingmq/starling/internal/broker"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestParseName(t *testing.T) {
	tests := []struct {
		name    string
		want    Config
		wantErr string
	}{
		{"p2p-100-100-100-1000", Config{Scenario: P2P, Name: "p2p-100-100-100-1000", Publishers: 100, Subscribers: 100, Topics: 100, Rate: 1000}, ""},
		{"fanout-1-100-1-max", Config{Scenario: FanOut, Name: "fanout-1-100-1-max", Publishers: 1, Subscribers: 100, Topics: 1}, ""},
		{"fanin-50-1-50-2500.5", Config{Scenario: FanIn, Name: "fanin-50-1-50-2500.5", Publishers: 50, Subscribers: 1, Topics: 50, Rate: 2500.5}, ""},
		{"shared-2-10-1-max", Config{Scenario: Shared, Name: "shared-2-10-1-max", Publishers: 2, Subscribers: 10, Topics: 1}, ""},
		{"persist-1-1000-1000-max", Config{Scenario: Persist, Name: "persist-1-1000-1000-max", Publishers: 1, Subscribers: 1000, Topics: 1000}, ""},
		{"fanin", Config{Scenario: FanIn, Name: "fanin"}, ""},
		{"conn-15000", Config{Scenario: Conn, Name: "conn-15000", Clients: 15000}, ""},
		{"pub", Config{Scenario: Pub, Name: "pub"}, ""},
		{"sub-3", Config{Scenario: Sub, Name: "sub-3", Clients: 3}, ""},
		{"nope-1-1-1-1", Config{}, "unknown scenario"},
		{"p2p-1-1-1", Config{}, "want p2p-PUBLISHERS"},
		{"p2p-1-x-1-max", Config{}, "bad number"},
		{"p2p-1-1-1-fast", Config{}, "bad rate"},
		{"p2p-0-1-1-max", Config{}, "bad number"},
		{"conn-0", Config{}, "bad count"},
		{"conn-1-2", Config{}, "want conn"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Config
			err := ParseName(tt.name, &c)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Scenario != tt.want.Scenario || c.Name != tt.want.Name || c.Publishers != tt.want.Publishers ||
				c.Subscribers != tt.want.Subscribers || c.Topics != tt.want.Topics || c.Rate != tt.want.Rate || c.Clients != tt.want.Clients {
				t.Fatalf("got %+v, want %+v", c, tt.want)
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		name    string
		c       Config
		wantErr string
	}{
		{"p2p mismatch", Config{Scenario: P2P, Publishers: 2, Subscribers: 3}, "p2p needs"},
		{"persist qos0", Config{Scenario: Persist}, "persist needs QoS"},
		{"bad qos", Config{Scenario: FanIn, QoS: 3}, "QoS 3"},
		{"two problems", Config{Scenario: P2P, Publishers: 2, Subscribers: 3, QoS: 3}, "QoS 3"},
		{"ok", Config{Scenario: FanOut}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Normalize()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestTracker(t *testing.T) {
	tr := NewTracker()
	for _, s := range []uint64{0, 1, 3, 2, 2, 5, 200, 4} {
		tr.Record(7, s)
	}
	tr.Record(9, 0) // a stream this sink does not expect
	c := Sink{Members: []*Tracker{tr}, Streams: []uint32{7}}.Count(func(uint32) int64 { return 8 })
	// Sent 0..7; got 0,1,2,3,4,5 (6 and 7 lost), 2 twice, 200 never sent,
	// 2 and 4 arrived after a higher number, and one stray stream.
	want := Counts{Expected: 8, Unique: 6, Received: 9, Lost: 2, Duplicates: 3, Reordered: 2}
	if c != want {
		t.Fatalf("got %+v, want %+v", c, want)
	}

	// A shared group: members together must see each message once.
	a, b := NewTracker(), NewTracker()
	a.Record(1, 0)
	a.Record(1, 2)
	b.Record(1, 1)
	b.Record(1, 2) // also at a: a duplicate across members
	c = Sink{Members: []*Tracker{a, b}, Streams: []uint32{1}}.Count(func(uint32) int64 { return 4 })
	want = Counts{Expected: 4, Unique: 3, Received: 4, Lost: 1, Duplicates: 1}
	if c != want {
		t.Fatalf("shared: got %+v, want %+v", c, want)
	}
}

func TestPayloadHeader(t *testing.T) {
	b := newPayload(10)
	if len(b) != headerSize {
		t.Fatalf("payload of %d bytes, want %d", len(b), headerSize)
	}
	h := header{run: 1, stream: 2, seq: 1 << 40, sentNs: time.Now().UnixNano()}
	putHeader(b, h)
	got, ok := parseHeader(b)
	if !ok || got != h {
		t.Fatalf("got %+v %v, want %+v", got, ok, h)
	}
	if _, ok := parseHeader([]byte("hello, this is not a benchmark payload")); ok {
		t.Fatal("foreign payload parsed")
	}
}

// At a fixed rate, publishers started together send in turns spread over
// one interval, not all at the same instants.
func TestFirstDueSpreadsPublishers(t *testing.T) {
	start := time.Unix(1000, 0)
	// 4 publishers at 40 messages/s each: one interval is 25 ms
	for i, want := range []time.Duration{0, 6250 * time.Microsecond, 12500 * time.Microsecond, 18750 * time.Microsecond} {
		if got := firstDue(start, 40, i, 4).Sub(start); got != want {
			t.Errorf("publisher %d of 4: first due %v after start, want %v", i, got, want)
		}
	}
	if got := firstDue(start, 0, 3, 4); !got.Equal(start) {
		t.Errorf("saturation: first due %v, want start", got)
	}
	if got := firstDue(start, 40, 0, 1); !got.Equal(start) {
		t.Errorf("one publisher: first due %v, want start", got)
	}
}

func TestParseStatCPU(t *testing.T) {
	stat := []byte("1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 10 0 123 456 789")
	d, err := parseStatCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	if d != 3*time.Second {
		t.Fatalf("got %v, want 3s", d)
	}
}

// TestCountingFaults runs fanin through a fake broker that drops,
// duplicates and reorders known messages, and checks that every one of them
// is reported exactly.
func TestCountingFaults(t *testing.T) {
	f := faults{
		drop: map[key]bool{{0, 10}: true, {1, 20}: true, {1, 21}: true},
		dup:  map[key]bool{{0, 30}: true, {1, 99}: true},
		hold: map[key]bool{{0, 40}: true, {1, 50}: true, {1, 60}: true},
	}
	fb := newFakeBroker(t, f)
	for _, qos := range []byte{0, 1} {
		res, err := Run(context.Background(), Config{
			Scenario: FanIn, Publishers: 2, Subscribers: 1, Topics: 2,
			Hosts: []string{fb.addr()}, QoS: qos, Count: 100, Drain: 300 * time.Millisecond,
			Rate: 20000, MaxLoss: 0,
		})
		if !errors.Is(err, ErrLoss) {
			t.Fatalf("QoS %d: err = %v, want ErrLoss", qos, err)
		}
		want := Counts{Expected: 200, Unique: 197, Received: 199, Lost: 3, Duplicates: 2, Reordered: 3}
		if res.Messages.Counts != want {
			t.Errorf("QoS %d: got %+v, want %+v", qos, res.Messages.Counts, want)
		}
		if res.Messages.Sent != 200 {
			t.Errorf("QoS %d: sent %d, want 200", qos, res.Messages.Sent)
		}
	}
}

// startStarling serves a Starling broker on a loopback port.
func startStarling(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := broker.New(broker.Options{RetainAvailable: true, MaxInflight: 20, AllowZeroLengthClientID: true})
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Serve(ln, &broker.ListenerOptions{Name: "t"})
	}()
	t.Cleanup(func() {
		b.Close()
		ln.Close()
		<-done
	})
	return ln.Addr().String()
}

func TestEndToEnd(t *testing.T) {
	addr := startStarling(t)
	tests := []struct {
		name string
		c    Config
		// wantRecv is the unique messages the receivers must get.
		wantRecv int64
	}{
		{"fanin q1", Config{Scenario: FanIn, Publishers: 4, Subscribers: 2, Topics: 4, QoS: 1, Count: 50}, 4 * 50 * 2},
		{"fanin q2", Config{Scenario: FanIn, Publishers: 2, Subscribers: 1, Topics: 2, QoS: 2, Count: 50}, 2 * 50},
		{"fanout q1", Config{Scenario: FanOut, Publishers: 1, Subscribers: 5, Topics: 1, QoS: 1, Count: 100}, 100 * 5},
		{"p2p q1 fixed rate", Config{Scenario: P2P, Publishers: 3, QoS: 1, Count: 20, Rate: 600}, 3 * 20},
		{"p2p q1 v5", Config{Scenario: P2P, Publishers: 3, QoS: 1, Count: 20, Version: 5}, 3 * 20},
		{"shared q1", Config{Scenario: Shared, Publishers: 2, Subscribers: 3, Topics: 1, QoS: 1, Count: 60}, 2 * 60},
		{"persist q1", Config{Scenario: Persist, Publishers: 2, Subscribers: 10, QoS: 1, Count: 30}, 10 * 30},
		{"persist q1 v5 move", Config{Scenario: Persist, Publishers: 1, Subscribers: 5, QoS: 1, Count: 10, Version: 5, Move: true}, 5 * 10},
		{"fanin q0 duration", Config{Scenario: FanIn, Publishers: 2, Subscribers: 1, QoS: 0, Duration: 300 * time.Millisecond, Rate: 2000, MaxLoss: -1}, -1},
		{"conn", Config{Scenario: Conn, Clients: 50, Duration: 200 * time.Millisecond, KeepAlive: time.Second}, 0},
		{"pub q1", Config{Scenario: Pub, Clients: 2, QoS: 1, Count: 100}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.c
			c.Hosts = []string{addr}
			if c.Move {
				c.Hosts = []string{addr, addr}
			}
			if c.Drain == 0 {
				c.Drain = 2 * time.Second
			}
			res, err := Run(context.Background(), c)
			if err != nil {
				t.Fatal(err)
			}
			m := res.Messages
			if m.Lost != 0 && c.QoS > 0 {
				t.Errorf("lost %d of %d", m.Lost, m.Expected)
			}
			if m.Duplicates != 0 || m.Foreign != 0 {
				t.Errorf("duplicates %d, foreign %d", m.Duplicates, m.Foreign)
			}
			if tt.wantRecv > 0 && (m.Unique != tt.wantRecv || m.Expected != tt.wantRecv) {
				t.Errorf("unique %d, expected %d, want %d", m.Unique, m.Expected, tt.wantRecv)
			}
			if tt.wantRecv != 0 && res.Latency.Count == 0 {
				t.Error("no latency recorded")
			}
			if c.Scenario == Conn && res.Connections.Connected != int64(c.Clients) {
				t.Errorf("connected %d of %d", res.Connections.Connected, c.Clients)
			}
			if c.Scenario == Pub && m.Acked != 200 {
				t.Errorf("acked %d, want 200", m.Acked)
			}
			if p := res.Persist; p != nil && p.SessionsPresent != int64(c.Subscribers) {
				t.Errorf("sessions present %d of %d", p.SessionsPresent, c.Subscribers)
			}
			if res.Connections.Failed != 0 || len(res.Errors) != 0 {
				t.Errorf("failures %d, errors %v", res.Connections.Failed, res.Errors)
			}
			if err := res.WriteSummary(io.Discard); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestSubscribeOnly(t *testing.T) {
	addr := startStarling(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type out struct {
		res *Result
		err error
	}
	ch := make(chan out, 1)
	go func() {
		res, err := Run(ctx, Config{Scenario: Sub, Clients: 2, Topic: "x/%i", Hosts: []string{addr}, QoS: 1, Count: 10, Duration: 10 * time.Second})
		ch <- out{res, err}
	}()
	// Publish to the subscribers' topics once they are there: pub retries
	// until both have their ten messages.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := Run(ctx, Config{Scenario: Pub, Clients: 2, Topic: "x/%i", Hosts: []string{addr}, QoS: 1, Count: 10, MaxLoss: -1})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case o := <-ch:
			if o.err != nil {
				t.Fatal(o.err)
			}
			if o.res.Messages.Received < 20 {
				t.Fatalf("received %d, want 20", o.res.Messages.Received)
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("subscribers never got their messages")
		}
	}
}

func TestOutputs(t *testing.T) {
	addr := startStarling(t)
	res, err := Run(context.Background(), Config{
		Scenario: P2P, Name: "p2p-2-2-2-400", Publishers: 2, QoS: 1, Rate: 400,
		Duration: 1500 * time.Millisecond, Hosts: []string{addr},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Series) < 1 {
		t.Fatalf("series has %d points", len(res.Series))
	}

	var buf bytes.Buffer
	if err := res.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(buf.Bytes(), []byte("\n")); n != 1 || !bytes.HasSuffix(buf.Bytes(), []byte("\n")) {
		t.Fatalf("JSON is %d lines, want one", n)
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"scenario", "name", "qos", "mode", "latency", "connections", "messages", "client", "series"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	msgs := m["messages"].(map[string]any)
	for _, k := range []string{"sent", "expected", "lost", "duplicates", "reordered", "recv_ps", "loss_pct"} {
		if _, ok := msgs[k]; !ok {
			t.Errorf("JSON messages lacks %q", k)
		}
	}
	lat := m["latency"].(map[string]any)
	for _, k := range []string{"p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"} {
		if v, ok := lat[k].(float64); !ok || v <= 0 {
			t.Errorf("latency %q = %v", k, lat[k])
		}
	}
	if m["name"] != "p2p-2-2-2-400" || m["mode"] != "fixed-rate" {
		t.Errorf("name %v mode %v", m["name"], m["mode"])
	}

	buf.Reset()
	if err := WriteHTML(&buf, res); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	if !strings.Contains(page, "<svg") || !strings.Contains(page, "<polyline") {
		t.Error("report has no chart")
	}
	if strings.Contains(page, "<script") || strings.Contains(page, "src=") || strings.Contains(page, "href=") {
		t.Error("report is not self-contained")
	}
	d := xml.NewDecoder(strings.NewReader(page))
	d.Strict = true
	for {
		_, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("report is not well-formed: %v", err)
		}
	}
}
