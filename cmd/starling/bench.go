package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/starlingmq/starling/internal/bench"
	"github.com/starlingmq/starling/internal/packet"
)

const benchUsage = `usage: starling bench SCENARIO [flags]
       starling bench compare [flags]

SCENARIO is conn, pub, sub, fanin, fanout, p2p, shared or persist, or the
common named form SCENARIO-PUBLISHERS-SUBSCRIBERS-TOPICS-RATE, e.g.
p2p-100-100-100-1000 or fanout-1-100-1-max (max: as fast as the broker
accepts); conn-N, pub-N and sub-N set -c. Flags given after a named form
override it.

flags:
`

// msDuration is a duration flag that also takes a bare number of
// milliseconds, as emqtt-bench's -i and -I do.
type msDuration struct{ d *time.Duration }

func (m msDuration) String() string {
	if m.d == nil {
		return "0"
	}
	return m.d.String()
}

func (m msDuration) Set(s string) error {
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		*m.d = time.Duration(n * float64(time.Millisecond))
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want milliseconds or a duration like 10ms")
	}
	*m.d = d
	return nil
}

// listFlag splits a comma-separated list.
type listFlag struct{ l *[]string }

func (f listFlag) String() string {
	if f.l == nil {
		return ""
	}
	return strings.Join(*f.l, ",")
}

func (f listFlag) Set(s string) error {
	*f.l = nil
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*f.l = append(*f.l, p)
		}
	}
	return nil
}

func benchCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "compare" {
		return compareCmd(args[1:], stdout, stderr)
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprint(stderr, benchUsage)
		return usageError{"starling bench: a scenario is required"}
	}
	var c bench.Config
	if err := bench.ParseName(args[0], &c); err != nil {
		return usageError{"starling bench: " + err.Error()}
	}

	fs := flag.NewFlagSet("starling bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, benchUsage)
		fs.PrintDefaults()
	}
	var hosts, ifaddrs []string
	var pubHosts, subHosts []string
	fs.Var(listFlag{&pubHosts}, "pub-h", "publishers' `hosts` (instead of -h), to measure a cluster with publishers and subscribers on different nodes")
	fs.Var(listFlag{&subHosts}, "sub-h", "receivers' `hosts` (instead of -h)")
	fs.Var(listFlag{&hosts}, "h", "broker `hosts`, comma-separated host[:port] or URLs (tls://, ws://); clients spread round-robin (default 127.0.0.1)")
	port := fs.Int("p", 1883, "`port` for hosts given without one")
	fs.Var(listFlag{&ifaddrs}, "ifaddr", "local source `addresses`, comma-separated, used round-robin (more than 64k connections to one port)")
	fs.IntVar(&c.Clients, "c", c.Clients, "client `count` of conn, pub and sub")
	fs.IntVar(&c.Publishers, "pubs", c.Publishers, "publishers of fanin, fanout, p2p, shared, persist")
	fs.IntVar(&c.Subscribers, "subs", c.Subscribers, "subscribers (persist: sessions)")
	fs.IntVar(&c.Topics, "topics", c.Topics, "topics")
	fs.Var(msDuration{&c.ConnectInterval}, "i", "`interval` between connection attempts, ms (0: as fast as -connect-concurrency allows)")
	fs.IntVar(&c.ConnectConcurrency, "connect-concurrency", 64, "connection attempts in flight at once")
	fs.Var(msDuration{&c.Interval}, "I", "`interval` between two publishes of one publisher, ms (0 with no -rate: saturation)")
	fs.Float64Var(&c.Rate, "rate", c.Rate, "total publish `rate`, messages/s (0: saturation)")
	qos := fs.Int("q", 0, "`QoS` 0, 1 or 2")
	fs.IntVar(&c.PayloadSize, "s", 64, "payload `size` in bytes (at least 28: sequence and timestamp travel in it)")
	fs.StringVar(&c.Topic, "t", "bench/%i", "topic `template` of pub and sub: %i client index, %c client id")
	fs.StringVar(&c.Prefix, "prefix", "", "topic `prefix` of fanin, fanout, p2p, shared, persist (default bench/RUNID)")
	ver := fs.Int("V", 4, "MQTT `version`: 3 (3.1), 4 (3.1.1) or 5")
	clean := fs.Bool("clean", true, "clean session; -clean=false keeps sessions (with -session-expiry for MQTT 5)")
	expiry := fs.Uint("session-expiry", 0, "MQTT 5 session expiry `seconds` with -clean=false")
	keep := fs.Int("k", 60, "keep alive `seconds`")
	user := fs.String("u", "", "`username`")
	pass := fs.String("P", "", "`password`")
	cafile := fs.String("cafile", "", "CA certificates `file` (PEM); turns TLS on")
	cert := fs.String("cert", "", "client certificate `file` (PEM); turns TLS on")
	key := fs.String("key", "", "client key `file` (PEM)")
	insecure := fs.Bool("insecure", false, "TLS without verifying the server's certificate; turns TLS on")
	useTLS := fs.Bool("tls", false, "use TLS")
	fs.BoolVar(&c.Retain, "r", false, "publish with the retain flag")
	fs.StringVar(&c.ClientIDPrefix, "client-id-prefix", "", "client id `prefix` (default sb-RUNID)")
	fs.DurationVar(&c.Duration, "duration", 0, "publishing (conn: holding) `time` (default 10s unless -count)")
	fs.IntVar(&c.Count, "count", 0, "messages per publisher (persist: per session; sub: per subscriber), then stop")
	fs.IntVar(&c.Inflight, "inflight", 0, "unacknowledged QoS 1/2 messages per publisher (default 100, QoS 2: 20)")
	fs.DurationVar(&c.Drain, "drain", 3*time.Second, "after publishing, how long a receiver may make no progress before the rest counts as lost")
	maxLoss := fs.String("max-loss", "auto", "loss `percent` above which the exit status is 1 (auto: 0 for QoS > 0, none for QoS 0)")
	fs.BoolVar(&c.Move, "move", false, "persist: reconnect each session to the next host in -h")
	fs.IntVar(&c.PID, "pid", 0, "broker `pid`: report its memory (per connection) and CPU from /proc")
	jsonOut := fs.Bool("json", false, "print the result as one JSON line instead of the table")
	report := fs.String("report", "", "write an HTML report with charts to `file`")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("starling bench: unexpected argument %q (flags come after the scenario)", fs.Arg(0))}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	// A named form sets the rate; -I without -rate overrides it.
	if set["I"] && !set["rate"] {
		c.Rate = 0
	}

	if len(hosts) == 0 {
		hosts = []string{"127.0.0.1"}
	}
	addrs := func(hs []string) []string {
		var out []string
		for _, h := range hs {
			if !strings.Contains(h, "://") {
				if _, _, err := net.SplitHostPort(h); err != nil {
					h = net.JoinHostPort(h, strconv.Itoa(*port))
				}
			}
			out = append(out, h)
		}
		return out
	}
	c.Hosts, c.PubHosts, c.SubHosts = addrs(hosts), addrs(pubHosts), addrs(subHosts)
	c.IfAddrs = ifaddrs
	for _, a := range ifaddrs {
		if net.ParseIP(a) == nil {
			return usageError{fmt.Sprintf("starling bench: -ifaddr %q is not an IP address", a)}
		}
	}
	if *qos < 0 || *qos > 2 {
		return usageError{"starling bench: -q must be 0, 1 or 2"}
	}
	c.QoS = byte(*qos)
	switch *ver {
	case 3:
		c.Version = packet.V31
	case 4:
		c.Version = packet.V311
	case 5:
		c.Version = packet.V5
	default:
		return usageError{"starling bench: -V must be 3, 4 or 5"}
	}
	c.Persistent = !*clean
	c.Expiry = uint32(*expiry)
	c.KeepAlive = time.Duration(*keep) * time.Second
	if *keep == 0 {
		c.KeepAlive = -1 // keep alive off; Normalize treats 0 as the default
	}
	c.Username = *user
	if set["P"] {
		c.Password = []byte(*pass)
	}
	switch *maxLoss {
	case "auto":
		c.MaxLoss = -1
		if c.QoS > 0 {
			c.MaxLoss = 0
		}
	case "none", "-1":
		c.MaxLoss = -1
	default:
		v, err := strconv.ParseFloat(strings.TrimSuffix(*maxLoss, "%"), 64)
		if err != nil {
			return usageError{"starling bench: -max-loss wants a percentage, auto or none"}
		}
		c.MaxLoss = v
	}
	if *useTLS || *cafile != "" || *cert != "" || *insecure {
		cfg, err := benchTLS(*cafile, *cert, *key, *insecure)
		if err != nil {
			return err
		}
		c.TLS = cfg
	}
	if f, ok := stderr.(*os.File); ok && !*jsonOut && term.IsTerminal(int(f.Fd())) {
		c.Progress, c.ProgressCR = stderr, true
	}
	raiseFileLimit()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := bench.Run(ctx, c)
	if res == nil {
		if err != nil && !errors.Is(err, context.Canceled) {
			return usageError{"starling bench: " + err.Error()}
		}
		return err
	}
	if *jsonOut {
		res.WriteJSON(stdout)
	} else {
		res.WriteSummary(stdout)
	}
	if *report != "" {
		f, ferr := os.Create(*report)
		if ferr == nil {
			ferr = bench.WriteHTML(f, res)
			if cerr := f.Close(); ferr == nil {
				ferr = cerr
			}
		}
		if ferr != nil {
			return fmt.Errorf("bench report: %w", ferr)
		}
	}
	return err
}

func benchTLS(cafile, cert, key string, insecure bool) (*tls.Config, error) {
	cfg := &tls.Config{InsecureSkipVerify: insecure}
	if cafile != "" {
		pem, err := os.ReadFile(cafile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate", cafile)
		}
		cfg.RootCAs = pool
	}
	if cert != "" || key != "" {
		if cert == "" || key == "" {
			return nil, usageError{"starling bench: -cert and -key go together"}
		}
		kp, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{kp}
	}
	return cfg, nil
}

// raiseFileLimit lifts the soft limit on open files to the hard limit, so
// thousands of connections fit.
func raiseFileLimit() {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

func compareCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("starling bench compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", false, "short runs (1 s, 5,000 connections): about 12 minutes on 2 cores")
	starlingBin := fs.String("starling", "", "Starling `binary` (default: this one)")
	mosq := fs.String("mosquitto", "/usr/sbin/mosquitto", "Mosquitto `binary` (empty: leave out)")
	nats := fs.String("nats", "", "nats-server `binary` (default: from PATH if installed; \"none\": leave out)")
	rounds := fs.Int("rounds", 0, "rounds (default 3)")
	dur := fs.Duration("duration", 0, "publishing time of each throughput run (default 10s, quick 1s)")
	conns := fs.Int("conns", 0, "idle connections (default 15000, quick 5000)")
	only := fs.String("only", "", "run only the scenarios whose name contains `text`")
	results := fs.String("results", "", "append every run's JSON line to `file`")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err.Error()}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	o := bench.CompareOptions{Bench: []string{self, "bench"}, Starling: *starlingBin, Mosquitto: *mosq, Only: *only, Log: stderr}
	if o.Starling == "" {
		o.Starling = self
	}
	if _, err := os.Stat(o.Mosquitto); o.Mosquitto != "" && err != nil {
		fmt.Fprintf(stderr, "mosquitto: %v; leaving it out\n", err)
		o.Mosquitto = ""
	}
	switch *nats {
	case "":
		if p, err := exec.LookPath("nats-server"); err == nil {
			o.NATS = p
		}
	case "none":
	default:
		o.NATS = *nats
	}
	if *quick {
		o = bench.QuickCompare(o)
	} else {
		o = bench.FullCompare(o)
	}
	if *rounds > 0 {
		o.Rounds = *rounds
	}
	if *dur > 0 {
		o.Duration = *dur
	}
	if *conns > 0 {
		o.Conns = *conns
	}
	if *results != "" {
		f, err := os.OpenFile(*results, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		o.Results = f
	}
	raiseFileLimit()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return bench.Compare(ctx, o, stdout)
}
