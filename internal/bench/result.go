package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is the outcome of one run. Its JSON form is what --json prints on
// one line, and what notes and the README quote.
type Result struct {
	Scenario    string      `json:"scenario"`
	Name        string      `json:"name"`
	Hosts       []string    `json:"hosts"`
	Version     string      `json:"mqtt_version"`
	QoS         byte        `json:"qos"`
	Payload     int         `json:"payload_bytes"`
	Clients     int         `json:"clients,omitempty"`
	Publishers  int         `json:"publishers,omitempty"`
	Subscribers int         `json:"subscribers,omitempty"`
	Topics      int         `json:"topics,omitempty"`
	Mode        string      `json:"mode"`            // "saturation" or "fixed-rate"
	TargetRate  float64     `json:"target_rate_ps"`  // messages/s offered, 0 for saturation
	Started     time.Time   `json:"started"`         //
	Seconds     float64     `json:"seconds"`         // whole run
	PubSeconds  float64     `json:"publish_seconds"` // publishing phase
	LatencyKind string      `json:"latency_kind"`    // end-to-end, ack or queue
	Latency     Percentiles `json:"latency"`

	Connections ConnStats        `json:"connections"`
	Messages    MsgStats         `json:"messages"`
	Persist     *PersistResult   `json:"persist,omitempty"`
	Broker      *BrokerUsage     `json:"broker,omitempty"`
	Client      ClientUsage      `json:"client"`
	Errors      map[string]int64 `json:"errors,omitempty"`
	Series      []Point          `json:"series,omitempty"`
	// Failure is the run's error, if any (loss above the limit included).
	Failure string `json:"failure,omitempty"`
}

// ConnStats counts connections.
type ConnStats struct {
	Attempted int64   `json:"attempted"`
	Connected int64   `json:"connected"` // up at the measuring point
	Failed    int64   `json:"failed"`
	Dropped   int64   `json:"dropped"` // lost after connecting
	Seconds   float64 `json:"seconds"` // to open them all
	Rate      float64 `json:"rate_ps"` // connections/s
}

// MsgStats counts messages. Counts is filled only where loss is measurable
// (both sides in this process).
type MsgStats struct {
	Sent          int64   `json:"sent"`
	Acked         int64   `json:"acked"`
	PublishErrors int64   `json:"publish_errors"`
	SendRate      float64 `json:"send_ps"`
	RecvRate      float64 `json:"recv_ps"`
	Counts
	LossPercent float64 `json:"loss_pct"`
	Foreign     int64   `json:"foreign"` // received, not from this run
}

// BrokerUsage is what /proc says of the broker process.
type BrokerUsage struct {
	PID           int     `json:"pid"`
	Error         string  `json:"error,omitempty"`
	RSSBeforeKB   int64   `json:"rss_before_kb"`
	RSSKB         int64   `json:"rss_kb"` // with the load on
	KBPerConn     float64 `json:"kb_per_conn,omitempty"`
	CPUSeconds    float64 `json:"cpu_s"`
	CPUPercent    float64 `json:"cpu_pct"`                     // of one core, over the run
	CPUPerMillion float64 `json:"cpu_s_per_million,omitempty"` // per million delivered
}

// ClientUsage is the CPU this tool used, so a reader can tell whether it
// was the bottleneck.
type ClientUsage struct {
	CPUSeconds float64 `json:"cpu_s"`
	CPUPercent float64 `json:"cpu_pct"` // of one core, over the run
}

func (r *run) result(ph phases, end time.Time) *Result {
	c := &r.c
	res := &Result{
		Scenario:    c.Scenario,
		Name:        c.Name,
		Hosts:       c.Hosts,
		Version:     c.Version.String(),
		QoS:         c.QoS,
		Payload:     max(c.PayloadSize, headerSize),
		Mode:        "saturation",
		Started:     r.start,
		Seconds:     end.Sub(r.start).Seconds(),
		LatencyKind: r.latKind,
		Latency:     percentiles(r.lat.total()),
		Persist:     ph.persist,
		Series:      r.series,
	}
	switch c.Scenario {
	case Conn, Pub, Sub:
		res.Clients = c.Clients
	default:
		res.Publishers, res.Subscribers, res.Topics = c.Publishers, c.Subscribers, c.Topics
	}
	if c.Scenario == Conn {
		res.Mode = "connections"
	} else if !c.Saturation() {
		res.Mode = "fixed-rate"
		res.TargetRate = c.Rate
		if c.Rate == 0 {
			n := c.Publishers
			if c.Scenario == Pub {
				n = c.Clients
			}
			res.TargetRate = c.perPublisherRate(1) * float64(n)
		}
	}
	res.Connections = ConnStats{
		Attempted: r.attempted.Load(),
		Connected: ph.connected,
		Failed:    r.connFail.Load(),
		Dropped:   r.dropped.Load(),
		Seconds:   ph.connTime.Seconds(),
	}
	if s := ph.connTime.Seconds(); s > 0 {
		res.Connections.Rate = float64(ph.connected) / s
	}
	m := &res.Messages
	m.Sent, m.Acked, m.PublishErrors = r.sent.Load(), r.acked.Load(), r.pubErrs.Load()
	m.Foreign = r.foreign.Load()
	if !ph.pubStart.IsZero() {
		pub := ph.pubEnd.Sub(ph.pubStart)
		res.PubSeconds = pub.Seconds()
		if pub > 0 {
			m.SendRate = float64(m.Sent) / pub.Seconds()
		}
		// Receiving ends with the last message, which may come after
		// publishing stopped.
		recvEnd := ph.pubEnd
		if l := time.Unix(0, r.lastRecv.Load()); l.After(recvEnd) {
			recvEnd = l
		}
		if ph.persist != nil {
			// Persist receives after publishing: its rate is the drain's.
			m.RecvRate = ph.persist.DrainRate
		} else if d := recvEnd.Sub(ph.pubStart); d > 0 {
			n := r.recv.Load()
			if r.latKind == "ack" {
				n = m.Acked
			}
			m.RecvRate = float64(n) / d.Seconds()
		}
	}
	if ph.counts != nil {
		m.Counts = *ph.counts
		if m.Expected > 0 {
			m.LossPercent = 100 * float64(m.Lost) / float64(m.Expected)
		}
	} else {
		m.Received = r.recv.Load()
		m.Unique = r.recvUniq.Load()
	}
	r.emu.Lock()
	if len(r.errs) > 0 {
		res.Errors = maps.Clone(r.errs)
	}
	r.emu.Unlock()
	return res
}

func (r *run) brokerUsage(before procSample, procErr error, ph phases, res *Result) *BrokerUsage {
	b := &BrokerUsage{PID: r.c.PID}
	if procErr != nil {
		b.Error = procErr.Error()
		return b
	}
	after := ph.rssAt
	if after == nil {
		s, err := readProc(r.c.PID)
		if err != nil {
			b.Error = err.Error()
			return b
		}
		after = &s
	}
	// CPU is read now, at the end, to cover the whole run.
	now, err := readProc(r.c.PID)
	if err != nil {
		b.Error = err.Error()
		return b
	}
	b.RSSBeforeKB, b.RSSKB = before.rssKB, after.rssKB
	if ph.connected > 0 && r.c.Scenario == Conn {
		b.KBPerConn = float64(after.rssKB-before.rssKB) / float64(ph.connected)
	}
	b.CPUSeconds = (now.cpu - before.cpu).Seconds()
	if res.Seconds > 0 {
		b.CPUPercent = 100 * b.CPUSeconds / res.Seconds
	}
	delivered := res.Messages.Unique
	if delivered == 0 {
		delivered = res.Messages.Received
	}
	if delivered > 0 {
		b.CPUPerMillion = b.CPUSeconds / (float64(delivered) / 1e6)
	}
	return b
}

// WriteJSON writes res as one line of JSON.
func (res *Result) WriteJSON(w io.Writer) error {
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}

// WriteSummary writes res as a human-readable table.
func (res *Result) WriteSummary(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(k, f string, a ...any) { fmt.Fprintf(tw, "%s\t"+f+"\n", append([]any{k}, a...)...) }
	shape := ""
	switch {
	case res.Clients > 0:
		shape = fmt.Sprintf("%d clients", res.Clients)
	default:
		shape = fmt.Sprintf("%d pub, %d sub, %d topics", res.Publishers, res.Subscribers, res.Topics)
	}
	p("scenario", "%s (%s; MQTT %s, QoS %d, %d-byte payload)", res.Name, shape, res.Version, res.QoS, res.Payload)
	p("brokers", "%s", strings.Join(res.Hosts, ", "))
	mode := res.Mode
	if res.Mode == "fixed-rate" {
		mode = fmt.Sprintf("fixed rate, %s msg/s offered", human(res.TargetRate))
	}
	p("mode", "%s; %.1fs in all", mode, res.Seconds)
	cs := res.Connections
	p("connections", "%d up of %d attempted, %d failed, %d dropped; %.0f/s (%.2fs)",
		cs.Connected, cs.Attempted, cs.Failed, cs.Dropped, cs.Rate, cs.Seconds)
	m := res.Messages
	if res.Scenario != Conn {
		p("published", "%d (%s msg/s over %.1fs), %d acked, %d errors", m.Sent, human(m.SendRate), res.PubSeconds, m.Acked, m.PublishErrors)
		if res.LatencyKind == "ack" {
			p("acknowledged", "%s msg/s", human(m.RecvRate))
		} else {
			p("received", "%d (%s msg/s)", m.Received, human(m.RecvRate))
		}
		if m.Expected > 0 {
			p("expected", "%d: lost %d (%.4g%%), duplicates %d, reordered %d", m.Expected, m.Lost, m.LossPercent, m.Duplicates, m.Reordered)
		}
		if m.Foreign > 0 {
			p("foreign", "%d messages not from this run", m.Foreign)
		}
	}
	if pr := res.Persist; pr != nil {
		p("persist", "%d sessions, %d queued (published in %.2fs); reconnect %.2fs, %d present; drained in %.2fs (%s msg/s)",
			pr.Sessions, pr.Queued, pr.PublishSeconds, pr.ReconnectSeconds, pr.SessionsPresent, pr.DrainSeconds, human(pr.DrainRate))
		p("reconnect", "CONNECT to CONNACK p50 %.1f ms  p99 %.1f ms  max %.1f ms", pr.ConnectP50, pr.ConnectP99, pr.ConnectMax)
	}
	if l := res.Latency; l.Count > 0 {
		p("latency ("+res.LatencyKind+")", "p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (mean %s, %d samples)",
			fmtMs(l.P50), fmtMs(l.P90), fmtMs(l.P99), fmtMs(l.P999), fmtMs(l.Max), fmtMs(l.Mean), l.Count)
	}
	if b := res.Broker; b != nil {
		if b.Error != "" {
			p("broker", "pid %d: %s", b.PID, b.Error)
		} else {
			s := fmt.Sprintf("pid %d: RSS %d KB (before %d KB)", b.PID, b.RSSKB, b.RSSBeforeKB)
			if b.KBPerConn != 0 {
				s += fmt.Sprintf(", %.1f KB/connection", b.KBPerConn)
			}
			s += fmt.Sprintf("; CPU %.2fs (%.0f%% of a core)", b.CPUSeconds, b.CPUPercent)
			if b.CPUPerMillion > 0 {
				s += fmt.Sprintf(", %.2f CPU s per million delivered", b.CPUPerMillion)
			}
			p("broker", "%s", s)
		}
	}
	p("bench CPU", "%.2fs (%.0f%% of a core)", res.Client.CPUSeconds, res.Client.CPUPercent)
	for _, k := range slices.Sorted(maps.Keys(res.Errors)) {
		p("error", "%s: %d", k, res.Errors[k])
	}
	if res.Failure != "" {
		p("FAILED", "%s", res.Failure)
	}
	return tw.Flush()
}
