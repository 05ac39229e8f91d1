package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// CompareOptions configure Compare.
type CompareOptions struct {
	// Bench is the command that runs one benchmark: Bench followed by a
	// scenario and flags, printing one JSON line (e.g. ["starling",
	// "bench"]).
	Bench []string
	// Starling, Mosquitto and NATS are the broker binaries; an empty one is
	// left out.
	Starling, Mosquitto, NATS string
	// Rounds is how many times the set runs, interleaving brokers.
	Rounds int
	// Duration is the publishing time of each throughput scenario.
	Duration time.Duration
	// Conns is the size of the idle-connection scenario.
	Conns int
	// Sessions and Messages size the persist scenario.
	Sessions, Messages int
	// FixedRate is the offered load of the latency pass, messages/s.
	FixedRate int
	// Only, if set, keeps the scenarios whose key contains it.
	Only string
	// Dir holds the brokers' configurations, data and logs; default a new
	// temporary folder, removed at the end.
	Dir string
	// Log receives one line per run; nil is quiet.
	Log io.Writer
	// Results, if set, receives every run's JSON line.
	Results io.Writer
}

// QuickCompare returns options for a run of about two minutes.
func QuickCompare(o CompareOptions) CompareOptions {
	o.Rounds = 3
	o.Duration = time.Second
	o.Conns = 5000
	o.Sessions, o.Messages = 200, 50
	o.FixedRate = 2000
	return o
}

// FullCompare returns the standard set's options.
func FullCompare(o CompareOptions) CompareOptions {
	o.Rounds = 3
	o.Duration = 10 * time.Second
	o.Conns = 15000
	o.Sessions, o.Messages = 1000, 100
	o.FixedRate = 5000
	return o
}

// metric is one number taken from a result.
type metric struct {
	name   string
	higher bool // higher is better
	get    func(*Result) float64
}

// compareCase is one scenario of the standard set.
type compareCase struct {
	key     string
	args    []string
	metrics []metric
	// fresh runs the case against a newly started broker: resident memory
	// only grows back slowly after earlier runs, which would hide the cost
	// of new connections.
	fresh bool
}

var (
	mRecv = metric{"delivered msg/s", true, func(r *Result) float64 { return r.Messages.RecvRate }}
	mP50  = metric{"p50 latency ms", false, func(r *Result) float64 { return r.Latency.P50 }}
	mP99  = metric{"p99 latency ms", false, func(r *Result) float64 { return r.Latency.P99 }}
)

func (o CompareOptions) cases() []compareCase {
	d := o.Duration.String()
	common := []string{"-s", "64", "-duration", d, "-drain", "2s", "-max-loss", "none", "-json"}
	// The scenario comes first, then the common flags, then its own.
	with := func(name string, a ...string) []string {
		return append(append([]string{name}, common...), a...)
	}
	cs := []compareCase{
		{"fanin-50-1-50-max q0", with("fanin-50-1-50-max", "-q", "0"), []metric{mRecv}, false},
		{"fanin-50-1-50-max q1", with("fanin-50-1-50-max", "-q", "1"), []metric{mRecv, mP99}, false},
		{"fanout-1-100-1-max q0", with("fanout-1-100-1-max", "-q", "0"), []metric{mRecv}, false},
		{"p2p-100-100-100-max q1", with("p2p-100-100-100-max", "-q", "1"), []metric{mRecv, mP99}, false},
		{fmt.Sprintf("conn-%d", o.Conns), []string{fmt.Sprintf("conn-%d", o.Conns), "-duration", "1s", "-json", "-connect-concurrency", "128"}, []metric{
			{"connects/s", true, func(r *Result) float64 { return r.Connections.Rate }},
			{"KB/connection", false, func(r *Result) float64 {
				if r.Broker == nil {
					return math.NaN()
				}
				return r.Broker.KBPerConn
			}},
		}, true},
		{fmt.Sprintf("persist %dx%d q1", o.Sessions, o.Messages), []string{
			fmt.Sprintf("persist-1-%d-%d-max", o.Sessions, o.Sessions), "-q", "1", "-count", strconv.Itoa(o.Messages),
			"-s", "64", "-drain", "5s", "-max-loss", "none", "-json"}, []metric{
			{"drain msg/s", true, func(r *Result) float64 { return r.Messages.RecvRate }},
			{"drain s", false, func(r *Result) float64 {
				if r.Persist == nil {
					return math.NaN()
				}
				return r.Persist.DrainSeconds
			}},
		}, false},
		{fmt.Sprintf("p2p-100-100-100-%d q1", o.FixedRate), with(fmt.Sprintf("p2p-100-100-100-%d", o.FixedRate), "-q", "1"), []metric{mRecv, mP50, mP99}, false},
	}
	if o.Only != "" {
		cs = slices.DeleteFunc(cs, func(c compareCase) bool { return !strings.Contains(c.key, o.Only) })
	}
	return cs
}

// brokerProc is a broker started for the comparison.
type brokerProc struct {
	name string
	bin  string
	addr string
	cmd  *exec.Cmd
	log  *os.File
}

// Compare starts each broker on free loopback ports, runs the standard set
// against each (interleaved, o.Rounds times), stops them and writes a table
// of medians and Starling's ratio to the others to w.
func Compare(ctx context.Context, o CompareOptions, w io.Writer) error {
	if o.Rounds <= 0 {
		o = FullCompare(o)
	}
	if len(o.Bench) == 0 {
		return errors.New("compare: no bench command")
	}
	if o.Dir == "" {
		dir, err := os.MkdirTemp("", "starling-compare-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		o.Dir = dir
	}
	var brokers []*brokerProc
	defer func() {
		for _, b := range brokers {
			b.stop()
		}
	}()
	for _, spec := range []struct{ name, bin string }{{"starling", o.Starling}, {"mosquitto", o.Mosquitto}, {"nats", o.NATS}} {
		if spec.bin == "" {
			continue
		}
		b, err := startBroker(ctx, spec.name, spec.bin, o.Dir)
		if err != nil {
			return fmt.Errorf("compare: start %s: %w", spec.name, err)
		}
		brokers = append(brokers, b)
		o.logf("started %s (pid %d) on %s", b.name, b.cmd.Process.Pid, b.addr)
	}
	if len(brokers) == 0 {
		return errors.New("compare: no broker to run")
	}
	cases := o.cases()
	// results[case][broker] holds one result per round.
	results := make([][][]*Result, len(cases))
	for i := range results {
		results[i] = make([][]*Result, len(brokers))
	}
	for round := range o.Rounds {
		for ci, cc := range cases {
			for bi, b := range brokers {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if b.cmd.ProcessState != nil || b.cmd.Process.Signal(syscall.Signal(0)) != nil {
					o.logf("%s is not running any more; see %s", b.name, b.log.Name())
					continue
				}
				var res *Result
				var err error
				if cc.fresh {
					var nb *brokerProc
					nb, err = startBroker(ctx, b.name, b.bin, filepath.Join(o.Dir, "fresh"))
					if err == nil {
						res, err = o.runOne(ctx, cc, nb)
						nb.stop()
					}
				} else {
					res, err = o.runOne(ctx, cc, b)
				}
				if err != nil {
					o.logf("round %d %s %s: %v", round+1, cc.key, b.name, err)
					continue
				}
				results[ci][bi] = append(results[ci][bi], res)
				var parts []string
				for _, m := range cc.metrics {
					parts = append(parts, fmt.Sprintf("%s %s", m.name, fmtNum(m.get(res))))
				}
				if res.Messages.Lost > 0 {
					parts = append(parts, fmt.Sprintf("lost %d", res.Messages.Lost))
				}
				parts = append(parts, fmt.Sprintf("bench cpu %.0f%%", res.Client.CPUPercent))
				if res.Broker != nil {
					parts = append(parts, fmt.Sprintf("broker cpu %.0f%%", res.Broker.CPUPercent))
				}
				o.logf("round %d %-26s %-9s %s", round+1, cc.key, b.name, strings.Join(parts, ", "))
			}
		}
	}
	return writeCompareTable(w, cases, brokers, results)
}

func (o CompareOptions) logf(f string, a ...any) {
	if o.Log != nil {
		fmt.Fprintf(o.Log, f+"\n", a...)
	}
}

// runOne runs one case against one broker in a child process.
func (o CompareOptions) runOne(ctx context.Context, cc compareCase, b *brokerProc) (*Result, error) {
	args := append(slices.Clone(o.Bench[1:]), cc.args...)
	args = append(args, "-h", b.addr, "-pid", strconv.Itoa(b.cmd.Process.Pid))
	cmd := exec.CommandContext(ctx, o.Bench[0], args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	runErr := cmd.Run()
	line := bytes.TrimSpace(out.Bytes())
	if i := bytes.LastIndexByte(line, '\n'); i >= 0 {
		line = line[i+1:]
	}
	var res Result
	if err := json.Unmarshal(line, &res); err != nil {
		return nil, fmt.Errorf("%v: %s", runErr, strings.TrimSpace(errb.String()))
	}
	if o.Results != nil {
		o.Results.Write(append(line, '\n'))
	}
	time.Sleep(200 * time.Millisecond) // let the broker settle between runs
	return &res, nil
}

func writeCompareTable(w io.Writer, cases []compareCase, brokers []*brokerProc, results [][][]*Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	hdr := []string{"scenario", "metric"}
	for _, b := range brokers {
		hdr = append(hdr, b.name)
	}
	for _, b := range brokers[1:] {
		hdr = append(hdr, brokers[0].name+"/"+b.name)
	}
	hdr = append(hdr, "bench cpu%", "loss")
	fmt.Fprintln(tw, strings.Join(hdr, "\t")+"\t")
	for ci, cc := range cases {
		// The tool's own CPU, as a share of one core, worst over the runs,
		// and any loss, for honesty.
		maxCPU := 0.0
		var loss []string
		for bi, b := range brokers {
			var lost int64
			for _, r := range results[ci][bi] {
				maxCPU = max(maxCPU, r.Client.CPUPercent)
				lost += r.Messages.Lost
			}
			if lost > 0 {
				loss = append(loss, fmt.Sprintf("%s:%d", b.name, lost))
			}
		}
		for mi, m := range cc.metrics {
			row := []string{cc.key, m.name}
			if mi > 0 {
				row[0] = ""
			}
			med := make([]float64, len(brokers))
			for bi := range brokers {
				var vs []float64
				for _, r := range results[ci][bi] {
					if v := m.get(r); !math.IsNaN(v) {
						vs = append(vs, v)
					}
				}
				med[bi] = median(vs)
				row = append(row, fmtNum(med[bi]))
			}
			for bi := range brokers[1:] {
				row = append(row, fmtRatio(med[0], med[bi+1], m.higher))
			}
			if mi == 0 {
				row = append(row, fmt.Sprintf("%.0f", maxCPU), strings.Join(loss, " "))
			} else {
				row = append(row, "", "")
			}
			fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "medians of the rounds; ratio = starling/other, marked + where starling is better; bench cpu% = the tool's own CPU, worst run, % of one core; loss = messages lost over all rounds")
	return nil
}

func median(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func fmtNum(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case v >= 1000:
		return human(v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.3g", v)
}

func fmtRatio(a, b float64, higher bool) string {
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return "-"
	}
	r := a / b
	mark := " "
	if (higher && r > 1) || (!higher && r < 1) {
		mark = "+"
	}
	return fmt.Sprintf("%.2fx%s", r, mark)
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if p != 1883 && p != 4222 {
			return p, nil
		}
	}
	return 0, errors.New("no free port")
}

func startBroker(ctx context.Context, name, bin, dir string) (*brokerProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	bdir := filepath.Join(dir, name)
	if err := os.MkdirAll(bdir, 0o755); err != nil {
		return nil, err
	}
	conf := filepath.Join(bdir, "broker.conf")
	var text string
	var args []string
	switch name {
	case "starling":
		text = fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n", port)
		args = []string{"-c", conf}
	case "mosquitto":
		text = fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\nlog_type error\nlog_type warning\nconnection_messages false\n", port)
		args = []string{"-c", conf}
	case "nats":
		cport, err := freePort()
		if err != nil {
			return nil, err
		}
		text = fmt.Sprintf("server_name: compare\nlisten: \"127.0.0.1:%d\"\njetstream {\n  store_dir: %q\n}\nmqtt {\n  host: \"127.0.0.1\"\n  port: %d\n}\n",
			cport, filepath.Join(bdir, "js"), port)
		args = []string{"-c", conf}
	default:
		return nil, fmt.Errorf("unknown broker %q", name)
	}
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(bdir, "broker.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = bdir
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	b := &brokerProc{name: name, bin: bin, addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd, log: logf}
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", b.addr, time.Second)
		if err == nil {
			c.Close()
			return b, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			b.stop()
			return nil, fmt.Errorf("not listening on %s after 15s; log: %s", b.addr, tail(logf.Name()))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends the broker: SIGTERM, then SIGKILL after 5s.
func (b *brokerProc) stop() {
	if b.cmd.Process == nil {
		return
	}
	b.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { b.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		b.cmd.Process.Kill()
		<-done
	}
	b.log.Close()
}

func tail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 5 {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, " | ")
}
