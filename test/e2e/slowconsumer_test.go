package e2e

import (
	"encoding/binary"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// TestSlowConsumerDoesNotBlockOthers: a subscriber that never reads does
// not hold up a publisher sending 50 MB of QoS 0 nor another subscriber,
// which keeps getting messages promptly, and the broker stays up with
// bounded memory.
func TestSlowConsumerDoesNotBlockOthers(t *testing.T) {
	t.Parallel()
	b := startBroker(t, plainConfig())

	// The stuck subscriber: subscribes, then never reads again.
	slow := dialRaw(t, b.Addr(), "stuck", func(c *net.TCPConn) { _ = c.SetReadBuffer(4096) })
	slow.subscribe(t, "flood/#", 0)

	// A normal subscriber reading as fast as it can; it reports the latency
	// of each probe (the payload carries the send time).
	normal := dialRaw(t, b.Addr(), "normal", nil)
	normal.subscribe(t, "flood/#", 0)
	normal.subscribe(t, "probe", 1)
	var floodMsgs atomic.Int64
	var mu sync.Mutex
	var latencies []time.Duration
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			h, body, err := readRawPacket(normal.r)
			if err != nil {
				return
			}
			if h>>4 != 3 {
				continue
			}
			topic, payload := publishTopic(body)
			if qos := h >> 1 & 3; qos == 1 && len(payload) >= 2 {
				id := payload[:2]
				payload = payload[2:]
				if _, err := normal.Write([]byte{0x40, 2, id[0], id[1]}); err != nil {
					return
				}
			}
			switch {
			case topic == "probe" && len(payload) == 8:
				sent := time.Unix(0, int64(binary.BigEndian.Uint64(payload)))
				mu.Lock()
				latencies = append(latencies, time.Since(sent))
				mu.Unlock()
			case strings.HasPrefix(topic, "flood/"):
				floodMsgs.Add(1)
			}
		}
	}()
	t.Cleanup(func() { normal.Close(); <-readerDone })

	// QoS 1 probes every 50 ms from an MQTT 5 client while the flood runs:
	// the flood's QoS 0 messages may be dropped for a subscriber that
	// falls behind, the probes must not.
	prober := dialV5(t, b.Addr(), &paho.Connect{ClientID: "prober", CleanStart: true}, nil)
	stopProbes := make(chan struct{})
	probesDone := make(chan int, 1)
	var stopOnce sync.Once
	stop := func() int {
		stopOnce.Do(func() { close(stopProbes) })
		return <-probesDone
	}
	t.Cleanup(func() { stopOnce.Do(func() { close(stopProbes) }) })
	go func() {
		n := 0
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopProbes:
				probesDone <- n
				return
			case <-tick.C:
			}
			p := binary.BigEndian.AppendUint64(nil, uint64(time.Now().UnixNano()))
			if _, err := prober.Publish(t.Context(), &paho.Publish{Topic: "probe", QoS: 1, Payload: p}); err == nil {
				n++
			}
		}
	}()

	// The flood: 800 messages of 64 KiB, written in batches.
	pubConn := dialRaw(t, b.Addr(), "flooder", nil)
	payload := make([]byte, 64<<10)
	const total = 800
	start := time.Now()
	var batch []byte
	for i := range total {
		batch = appendRawPublish(batch, "flood/data", payload)
		if len(batch) > 1<<20 || i == total-1 {
			_ = pubConn.SetWriteDeadline(time.Now().Add(20 * time.Second))
			if _, err := pubConn.Write(batch); err != nil {
				t.Fatalf("publisher blocked or cut off after %d messages: %v", i, err)
			}
			batch = batch[:0]
		}
	}
	t.Logf("published %d MB in %v", total*len(payload)>>20, time.Since(start).Round(time.Millisecond))

	// Probes keep arriving after the flood.
	eventually(t, 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(latencies) > 2
	}, "probes reach the normal subscriber")
	sent := stop()
	eventually(t, 5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(latencies) >= sent
	}, "all %d QoS 1 probes reach the normal subscriber", sent)
	mu.Lock()
	got := len(latencies)
	var worst time.Duration
	for _, l := range latencies {
		worst = max(worst, l)
	}
	mu.Unlock()
	t.Logf("normal subscriber: %d/%d flood messages, %d/%d probes, worst probe latency %v", floodMsgs.Load(), total, got, sent, worst.Round(time.Millisecond))
	if worst > 3*time.Second {
		t.Errorf("worst probe latency %v with a stuck subscriber, want under 3 s", worst)
	}
	if floodMsgs.Load() == 0 {
		t.Error("normal subscriber got none of the flood")
	}

	// The broker is still up and serving.
	if b.Exited() {
		t.Fatalf("broker exited: %v", b.err)
	}
	late := dialV5(t, b.Addr(), &paho.Connect{ClientID: "late", CleanStart: true}, nil)
	late.sub(&paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "late", QoS: 1}}})
	late.pub(&paho.Publish{Topic: "late", QoS: 1, Payload: []byte("still here")})
	late.next(5 * time.Second)
	if rss := processRSS(b.cmd.Process.Pid); rss > 0 {
		t.Logf("broker RSS after the flood: %d MB", rss>>20)
		if rss > 512<<20 {
			t.Errorf("broker RSS %d MB after a 50 MB flood to a stuck subscriber: not bounded", rss>>20)
		}
	}
}

// processRSS returns the resident set size of pid in bytes, or 0 if
// unknown (no /proc).
func processRSS(pid int) int64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}
