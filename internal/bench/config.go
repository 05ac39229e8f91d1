package bench

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/starlingmq/starling/internal/packet"
)

// Scenario names.
const (
	Conn    = "conn"    // open connections and hold them
	Pub     = "pub"     // publishers only
	Sub     = "sub"     // subscribers only
	FanIn   = "fanin"   // many publishers, few subscribers of every topic
	FanOut  = "fanout"  // few publishers, many subscribers per topic
	P2P     = "p2p"     // publisher i to subscriber i
	Shared  = "shared"  // subscribers share one $share group
	Persist = "persist" // offline persistent sessions drained on reconnect
)

// Scenarios lists every scenario name.
var Scenarios = []string{Conn, Pub, Sub, FanIn, FanOut, P2P, Shared, Persist}

// Config describes one benchmark run. Zero fields take the defaults
// documented on them once Normalize has run.
type Config struct {
	// Scenario is one of Scenarios.
	Scenario string
	// Name is the scenario as given (e.g. "p2p-100-100-100-1000"); it names
	// the run in reports.
	Name string

	// Hosts are "host:port" addresses (or client URLs); clients are spread
	// over them round-robin. Default "127.0.0.1:1883".
	Hosts []string
	// PubHosts and SubHosts, when set, are where publishers and receivers
	// connect instead of Hosts (a cluster: publishers on other nodes than
	// their subscribers).
	PubHosts, SubHosts []string
	// IfAddrs are local source addresses, used round-robin, so one machine
	// can open more than 64k connections to one port.
	IfAddrs []string

	// Clients is the connection count of conn, pub and sub (-c).
	Clients int
	// Publishers, Subscribers and Topics size fanin, fanout, p2p, shared
	// and persist (where Subscribers is the number of sessions).
	Publishers, Subscribers, Topics int

	// Rate is the total publish rate in messages per second; 0 with
	// Interval 0 means saturation: as fast as the broker accepts.
	Rate float64
	// Interval is the time between two publishes of one publisher (-I);
	// Rate, when set, wins.
	Interval time.Duration
	// ConnectInterval is the time between two connection attempts (-i);
	// 0 connects as fast as ConnectConcurrency allows.
	ConnectInterval time.Duration
	// ConnectConcurrency bounds connection attempts in flight. Default 64.
	ConnectConcurrency int

	QoS         byte
	PayloadSize int // bytes, at least the 28-byte header; default 64
	// Topic is the topic template of pub and sub: %i is the client index,
	// %c the client id. Default "bench/%i".
	Topic string
	// Prefix roots the topics of the scenarios with both sides; default
	// "bench/RUNID", so concurrent runs and retained leftovers never mix.
	Prefix  string
	Version packet.Version // default 3.1.1
	// Persistent asks for sessions that outlive the connection
	// (clean_session=false; MQTT 5: clean start false and Expiry).
	Persistent bool
	Expiry     uint32        // MQTT 5 session expiry, seconds
	KeepAlive  time.Duration // default 60s
	Username   string
	Password   []byte // nil: no password
	TLS        *tls.Config
	Retain     bool
	// ClientIDPrefix starts every client id; default "sb-RUNID".
	ClientIDPrefix string

	// Duration bounds the publishing (or, for conn, the holding) phase.
	// Count bounds the messages of each publisher (persist: of each
	// session). With neither, Duration defaults to 10s.
	Duration time.Duration
	Count    int
	// Inflight bounds each publisher's unacknowledged QoS 1/2 messages.
	// Default 100 for QoS 1, 20 for QoS 2.
	Inflight int
	// Drain is how long to wait, after publishing stopped, for a receiver
	// that makes no progress before counting what is missing as lost.
	// Default 3s.
	Drain time.Duration
	// MaxLoss is the loss, in percent, above which Run reports an error.
	// Negative: no limit. The command line defaults it to 0 for QoS > 0.
	MaxLoss float64
	// Move makes persist sessions reconnect to the next host in Hosts.
	Move bool

	// PID is the broker's process id on this machine: its memory and CPU
	// are read from /proc. 0: not measured.
	PID int

	// Progress receives one status line a second; nil is quiet.
	Progress io.Writer
	// ProgressCR writes progress lines ending in '\r' (for a terminal).
	ProgressCR bool
}

// ParseName splits a scenario name of the common form
// SCENARIO-PUBLISHERS-SUBSCRIBERS-TOPICS-RATE ("p2p-100-100-100-1000",
// "fanout-1-100-1-max", "max" for saturation) into c. A bare scenario name
// ("fanin") sets only the scenario. conn-N and pub-N/sub-N set Clients.
func ParseName(name string, c *Config) error {
	parts := strings.Split(name, "-")
	scen := parts[0]
	known := false
	for _, s := range Scenarios {
		if s == scen {
			known = true
		}
	}
	if !known {
		return fmt.Errorf("unknown scenario %q (want one of %s)", scen, strings.Join(Scenarios, ", "))
	}
	c.Scenario = scen
	c.Name = name
	nums := parts[1:]
	switch scen {
	case Conn, Pub, Sub:
		if len(nums) > 1 {
			return fmt.Errorf("scenario %q: want %s or %s-COUNT", name, scen, scen)
		}
		if len(nums) == 1 {
			n, err := strconv.Atoi(nums[0])
			if err != nil || n <= 0 {
				return fmt.Errorf("scenario %q: bad count %q", name, nums[0])
			}
			c.Clients = n
		}
		return nil
	}
	if len(nums) == 0 {
		return nil
	}
	if len(nums) != 4 {
		return fmt.Errorf("scenario %q: want %s-PUBLISHERS-SUBSCRIBERS-TOPICS-RATE", name, scen)
	}
	var v [3]int
	for i := range 3 {
		n, err := strconv.Atoi(nums[i])
		if err != nil || n <= 0 {
			return fmt.Errorf("scenario %q: bad number %q", name, nums[i])
		}
		v[i] = n
	}
	c.Publishers, c.Subscribers, c.Topics = v[0], v[1], v[2]
	if nums[3] == "max" {
		c.Rate = 0
	} else {
		r, err := strconv.ParseFloat(nums[3], 64)
		if err != nil || r <= 0 {
			return fmt.Errorf("scenario %q: bad rate %q (a number of messages/s, or max)", name, nums[3])
		}
		c.Rate = r
	}
	return nil
}

// Normalize fills defaults and checks c, reporting every problem at once.
func (c *Config) Normalize() error {
	var errs []error
	bad := func(f string, a ...any) { errs = append(errs, fmt.Errorf(f, a...)) }
	if c.Name == "" {
		c.Name = c.Scenario
	}
	if len(c.Hosts) == 0 {
		c.Hosts = []string{"127.0.0.1:1883"}
	}
	if c.Version == 0 {
		c.Version = packet.V311
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = 60 * time.Second
	}
	if c.ConnectConcurrency <= 0 {
		c.ConnectConcurrency = 64
	}
	if c.PayloadSize == 0 {
		c.PayloadSize = 64
	}
	if c.Inflight <= 0 {
		c.Inflight = 100
		if c.QoS == 2 {
			// Brokers bound the QoS 2 messages awaiting PUBREL (Starling
			// and Mosquitto at 20 by default) and may disconnect an MQTT
			// 3.1.1 client that exceeds it: it cannot see the limit.
			c.Inflight = 20
		}
	}
	if c.Drain <= 0 {
		c.Drain = 3 * time.Second
	}
	if c.Topic == "" {
		c.Topic = "bench/%i"
	}
	if c.Duration == 0 && c.Count == 0 {
		c.Duration = 10 * time.Second
	}
	if c.QoS > 2 {
		bad("QoS %d: want 0, 1 or 2", c.QoS)
	}
	one := func(p *int, d int) {
		if *p == 0 {
			*p = d
		}
	}
	switch c.Scenario {
	case Conn, Pub, Sub:
		one(&c.Clients, 1)
	case FanIn:
		one(&c.Publishers, 10)
		one(&c.Subscribers, 1)
		one(&c.Topics, c.Publishers)
	case FanOut:
		one(&c.Publishers, 1)
		one(&c.Subscribers, 10)
		one(&c.Topics, 1)
	case P2P:
		one(&c.Publishers, 10)
		one(&c.Subscribers, c.Publishers)
		one(&c.Topics, c.Publishers)
		if c.Publishers != c.Subscribers || c.Topics != c.Publishers {
			bad("p2p needs as many publishers, subscribers and topics (got %d-%d-%d)", c.Publishers, c.Subscribers, c.Topics)
		}
	case Shared:
		one(&c.Publishers, 1)
		one(&c.Subscribers, 10)
		one(&c.Topics, 1)
	case Persist:
		one(&c.Publishers, 1)
		one(&c.Subscribers, 100)
		one(&c.Topics, c.Subscribers)
		if c.Count == 0 {
			c.Count = 100
		}
		if c.QoS == 0 {
			bad("persist needs QoS 1 or 2: brokers do not queue QoS 0 for offline sessions by default")
		}
		if c.Topics != c.Subscribers {
			bad("persist uses one topic per session (topics %d, sessions %d)", c.Topics, c.Subscribers)
		}
		if c.Version == packet.V5 && c.Expiry == 0 {
			c.Expiry = 3600
		}
	case "":
		bad("no scenario")
	default:
		bad("unknown scenario %q", c.Scenario)
	}
	for _, n := range []int{c.Clients, c.Publishers, c.Subscribers, c.Topics} {
		if n < 0 {
			bad("negative count %d", n)
		}
	}
	if c.Rate < 0 {
		bad("negative rate")
	}
	if c.Count < 0 {
		bad("negative count")
	}
	return errors.Join(errs...)
}

// Saturation reports whether the run publishes as fast as possible.
func (c *Config) Saturation() bool { return c.Rate == 0 && c.Interval == 0 }

// perPublisherRate is the messages per second of one of n publishers, 0
// for saturation.
func (c *Config) perPublisherRate(n int) float64 {
	if c.Rate > 0 {
		return c.Rate / float64(max(n, 1))
	}
	if c.Interval > 0 {
		return float64(time.Second) / float64(c.Interval)
	}
	return 0
}

// expandTopic replaces %i with the client index and %c with its id.
func expandTopic(tmpl string, idx int, id string) string {
	if !strings.Contains(tmpl, "%") {
		return tmpl
	}
	r := strings.NewReplacer("%i", strconv.Itoa(idx), "%c", id)
	return r.Replace(tmpl)
}
