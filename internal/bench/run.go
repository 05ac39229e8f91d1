package bench

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/starlingmq/starling/internal/client"
	"github.com/starlingmq/starling/internal/packet"
)

// ErrLoss is reported (wrapped) by Run when the loss exceeds Config.MaxLoss.
var ErrLoss = errors.New("bench: loss exceeds --max-loss")

// run is the state of one benchmark run.
type run struct {
	c     Config
	runID uint32
	start time.Time
	lat   *latency
	// latKind says what lat measures: "end-to-end", "ack" or "queue".
	latKind string

	clientSeq atomic.Int64 // global client number, for host/ifaddr round-robin

	attempted atomic.Int64
	connected atomic.Int64 // currently connected
	connFail  atomic.Int64
	dropped   atomic.Int64 // connections lost unexpectedly
	sent      atomic.Int64
	acked     atomic.Int64
	pubErrs   atomic.Int64
	recv      atomic.Int64 // our messages received, duplicates included
	recvUniq  atomic.Int64
	foreign   atomic.Int64
	lastRecv  atomic.Int64 // unix nanos of the last receipt
	sentBy    []atomic.Int64

	emu  sync.Mutex
	errs map[string]int64

	series  []Point // owned by the sampler, read after it stopped
	sampler sync.WaitGroup
}

// Point is one second of a run.
type Point struct {
	T         float64 `json:"t"`         // seconds since the start
	SentRate  float64 `json:"sent_ps"`   // messages/s published
	RecvRate  float64 `json:"recv_ps"`   // messages/s received
	P50       float64 `json:"p50_ms"`    // latency of this second
	P99       float64 `json:"p99_ms"`    //
	Max       float64 `json:"max_ms"`    //
	Connected int64   `json:"connected"` // connections up
	Errors    int64   `json:"errors"`    // errors so far
}

func newRun(c Config) *run {
	var b [4]byte
	rand.Read(b[:])
	r := &run{
		c:     c,
		runID: binary.BigEndian.Uint32(b[:]),
		lat:   newLatency(),
		errs:  make(map[string]int64),
	}
	id := strconv.FormatUint(uint64(r.runID), 36)
	if r.c.Prefix == "" {
		r.c.Prefix = "bench/" + id
	}
	if r.c.ClientIDPrefix == "" {
		r.c.ClientIDPrefix = "sb-" + id
	}
	return r
}

// Run runs the benchmark described by c until it completes or ctx ends. It
// returns the result even with an error, unless c is invalid. An error
// wrapping ErrLoss means the run completed with more loss than c.MaxLoss.
func Run(ctx context.Context, c Config) (*Result, error) {
	if err := c.Normalize(); err != nil {
		return nil, err
	}
	r := newRun(c)
	var before procSample
	var procErr error
	if c.PID > 0 {
		before, procErr = readProc(c.PID)
	}
	cpu0 := selfCPU()
	r.start = time.Now()
	stopSampler := r.startSampler()

	var err error
	var ph phases
	switch c.Scenario {
	case Conn:
		ph, err = r.runConn(ctx)
	case Pub:
		ph, err = r.runPub(ctx)
	case Sub:
		ph, err = r.runSub(ctx)
	case Persist:
		ph, err = r.runPersist(ctx)
	default:
		ph, err = r.runBoth(ctx)
	}
	stopSampler()
	end := time.Now()
	res := r.result(ph, end)
	res.Client.CPUSeconds = (selfCPU() - cpu0).Seconds()
	if wall := end.Sub(r.start).Seconds(); wall > 0 {
		res.Client.CPUPercent = 100 * res.Client.CPUSeconds / wall
	}
	if c.PID > 0 {
		res.Broker = r.brokerUsage(before, procErr, ph, res)
	}
	if err == nil && c.MaxLoss >= 0 && res.Messages.Expected > 0 && res.Messages.LossPercent > c.MaxLoss {
		err = fmt.Errorf("%w: lost %d of %d (%.4g%% > %.4g%%)", ErrLoss,
			res.Messages.Lost, res.Messages.Expected, res.Messages.LossPercent, c.MaxLoss)
	}
	if err != nil {
		res.Failure = err.Error()
	}
	return res, err
}

// phases carries what a scenario measured beyond the counters.
type phases struct {
	pubStart, pubEnd time.Time
	connTime         time.Duration // to open every connection
	connected        int64         // connections open at the measuring point
	rssAt            *procSample   // broker sample with every connection up
	counts           *Counts       // nil when loss is not measurable
	persist          *PersistResult
}

// errorf counts an error under a short reason.
func (r *run) countErr(reason string) {
	r.emu.Lock()
	r.errs[reason]++
	r.emu.Unlock()
}

func (r *run) errTotal() int64 {
	r.emu.Lock()
	defer r.emu.Unlock()
	var n int64
	for _, v := range r.errs {
		n += v
	}
	return n
}

// Reason classifies a connection or publish error into a short, stable
// reason for the failure table.
func Reason(err error) string {
	var rc packet.ReasonCode
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &rc):
		return "refused: " + rc.Error()
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset"
	case errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EADDRINUSE):
		return "no free local port"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too many open files"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "closed by broker"
	case errors.Is(err, client.ErrPingTimeout):
		return "keep alive timeout"
	case errors.Is(err, client.ErrClosed):
		return "closed"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	s := err.Error()
	if len(s) > 60 {
		s = s[:60]
	}
	return s
}

// dialOpts returns the options for one client; g is its global number.
func (r *run) dialOpts(g int, id string, persistent bool, onMsg func(*packet.Publish)) client.Options {
	c := &r.c
	hosts := c.Hosts
	switch {
	case onMsg == nil && len(c.PubHosts) > 0:
		hosts = c.PubHosts
	case onMsg != nil && len(c.SubHosts) > 0:
		hosts = c.SubHosts
	}
	o := client.Options{
		Addr:           hosts[g%len(hosts)],
		TLS:            c.TLS,
		Version:        c.Version,
		ClientID:       id,
		CleanStart:     !persistent,
		KeepAlive:      c.KeepAlive,
		Username:       c.Username,
		Password:       c.Password,
		ConnectTimeout: 30 * time.Second,
		InflightLimit:  c.Inflight,
		OnMessage:      onMsg,
		OnDisconnect: func(_ *packet.Disconnect, err error) {
			r.connected.Add(-1)
			if !errors.Is(err, client.ErrClosed) {
				r.dropped.Add(1)
				r.countErr("connection lost: " + Reason(err))
			}
		},
	}
	if len(c.IfAddrs) > 0 {
		ip := net.ParseIP(c.IfAddrs[g%len(c.IfAddrs)])
		o.Dialer = &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}}
	}
	if c.Version == packet.V5 && persistent {
		exp := c.Expiry
		o.Properties.SessionExpiry = &exp
	}
	return o
}

// connect opens one connection and counts the outcome.
func (r *run) connect(ctx context.Context, o client.Options) (*client.Client, error) {
	r.attempted.Add(1)
	cl, _, err := client.Connect(ctx, o)
	if err != nil {
		r.connFail.Add(1)
		if ctx.Err() == nil {
			r.countErr("connect: " + Reason(err))
		}
		return nil, err
	}
	r.connected.Add(1)
	return cl, nil
}

// paced calls fn(i) for i in [0,n) with at most ConnectConcurrency calls
// at once, starting one every ConnectInterval when that is set. It returns
// when every call has returned.
func (r *run) paced(ctx context.Context, n int, fn func(i int)) {
	sem := make(chan struct{}, r.c.ConnectConcurrency)
	var wg sync.WaitGroup
	var tick *time.Ticker
	if r.c.ConnectInterval > 0 {
		tick = time.NewTicker(r.c.ConnectInterval)
		defer tick.Stop()
	}
	for i := 0; i < n; i++ {
		if tick != nil && i > 0 {
			select {
			case <-tick.C:
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn(i)
		}()
	}
	wg.Wait()
}

// closeAll disconnects every non-nil client, politely and in parallel.
func (r *run) closeAll(cls []*client.Client) {
	sem := make(chan struct{}, 256)
	var wg sync.WaitGroup
	for _, cl := range cls {
		if cl == nil {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			cl.Disconnect(ctx, nil)
			cancel()
		}()
	}
	wg.Wait()
}

// onMessage returns the OnMessage handler of a receiver recording into tr
// (nil: count only) and latency shard shard.
func (r *run) onMessage(tr *Tracker, shard int, anyRun bool) func(*packet.Publish) {
	return func(p *packet.Publish) {
		now := time.Now().UnixNano()
		h, ok := parseHeader(p.Payload)
		if !ok || (!anyRun && h.run != r.runID) {
			r.foreign.Add(1)
			return
		}
		r.recv.Add(1)
		if tr == nil || tr.Record(h.stream, h.seq) {
			r.recvUniq.Add(1)
		}
		r.lat.record(shard, time.Duration(now-h.sentNs))
		r.lastRecv.Store(now)
	}
}

// qos0Window is how many QoS 0 messages a publisher queues before it waits
// for them to be written.
const qos0Window = 128

// job is one stream a publisher sends on.
type job struct {
	stream uint32
	topic  string
}

// slot is one reusable QoS 1/2 publish in flight.
type slot struct {
	p      packet.Publish
	sentNs int64
	done   func(packet.ReasonCode, error)
}

// publish sends on jobs in turn, at rate messages/s (0: as fast as the
// broker takes them), count messages per job (0: no limit), until stop is
// closed; at a fixed rate its first message is due at first (see
// firstDue). It returns once every QoS 1/2 publish is acknowledged or
// failed, or ackWait after stop, whichever is first.
func (r *run) publish(sctx context.Context, cl *client.Client, jobs []job, rate float64, first time.Time, count int, ackWait time.Duration, ackLatency bool, shard int) {
	c := &r.c
	stop := sctx.Done()
	seqs := make([]uint64, len(jobs))
	limit := -1
	if count > 0 {
		limit = count * len(jobs)
	}
	var free chan *slot
	var qos0 *packet.Publish
	if c.QoS == 0 {
		qos0 = &packet.Publish{Retain: c.Retain, Payload: newPayload(c.PayloadSize)}
	} else {
		free = make(chan *slot, c.Inflight)
		for range c.Inflight {
			s := &slot{p: packet.Publish{QoS: c.QoS, Retain: c.Retain, Payload: newPayload(c.PayloadSize)}}
			s.done = func(_ packet.ReasonCode, err error) {
				if err != nil {
					r.pubErrs.Add(1)
					r.countErr("publish: " + Reason(err))
				} else {
					r.acked.Add(1)
					if ackLatency {
						r.lat.record(shard, time.Duration(time.Now().UnixNano()-s.sentNs))
						r.lastRecv.Store(time.Now().UnixNano())
					}
				}
				free <- s
			}
			free <- s
		}
	}
	var timer *time.Timer
	var interval time.Duration
	if rate > 0 {
		interval = time.Duration(float64(time.Second) / rate)
	}
loop:
	for n := 0; limit < 0 || n < limit; n++ {
		select {
		case <-stop:
			break loop
		default:
		}
		if interval > 0 {
			due := first.Add(time.Duration(n) * interval)
			if wait := time.Until(due); wait > 100*time.Microsecond {
				if timer == nil {
					timer = time.NewTimer(wait)
				} else {
					timer.Reset(wait)
				}
				select {
				case <-timer.C:
				case <-stop:
					break loop
				}
			}
		}
		j := n % len(jobs)
		h := header{run: r.runID, stream: jobs[j].stream, seq: seqs[j]}
		var err error
		if qos0 != nil {
			qos0.Topic = jobs[j].topic
			h.sentNs = time.Now().UnixNano()
			putHeader(qos0.Payload, h)
			if n%qos0Window == qos0Window-1 {
				// Now and then wait until the queue is written, so that
				// the client never holds more than a window of messages
				// and publishing stops on time.
				_, err = cl.Publish(sctx, qos0)
				if err != nil && sctx.Err() != nil {
					// Queued but maybe not written: it may still arrive.
					seqs[j]++
					r.sentBy[jobs[j].stream].Add(1)
					r.sent.Add(1)
					break
				}
			} else {
				err = cl.PublishAsync(qos0, nil)
			}
		} else {
			var s *slot
			select {
			case s = <-free:
			case <-stop:
				break loop
			}
			s.p.Topic = jobs[j].topic
			h.sentNs = time.Now().UnixNano()
			s.sentNs = h.sentNs
			putHeader(s.p.Payload, h)
			err = cl.PublishAsync(&s.p, s.done)
			if err != nil {
				free <- s
			}
		}
		if err != nil {
			r.pubErrs.Add(1)
			r.countErr("publish: " + Reason(err))
			break
		}
		seqs[j]++
		r.sentBy[jobs[j].stream].Add(1)
		r.sent.Add(1)
	}
	if timer != nil {
		timer.Stop()
	}
	if free == nil {
		return
	}
	// Wait for the acknowledgements of what is in flight.
	deadline := time.NewTimer(ackWait)
	defer deadline.Stop()
	for range c.Inflight {
		select {
		case <-free:
		case <-deadline.C:
			r.countErr("publish: no acknowledgement")
			return
		case <-cl.Done():
			return
		}
	}
}

// waitDrain waits until want messages were received once each, or none
// arrived for c.Drain, or ctx ends.
func (r *run) waitDrain(ctx context.Context, want int64) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	last, lastAt := r.recvUniq.Load(), time.Now()
	for {
		n := r.recvUniq.Load()
		if n >= want {
			return
		}
		if n != last {
			last, lastAt = n, time.Now()
		} else if time.Since(lastAt) > r.c.Drain {
			return
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// stopAfter returns a context ended after c.Duration (never, when Duration
// is 0), when ctx ends or when cancel is called.
func (r *run) stopAfter(ctx context.Context) (context.Context, context.CancelFunc) {
	if r.c.Duration > 0 {
		return context.WithTimeout(ctx, r.c.Duration)
	}
	return context.WithCancel(ctx)
}

// startSampler starts the once-a-second sampler; the returned func stops
// it and records the final partial second.
func (r *run) startSampler() func() {
	done := make(chan struct{})
	r.sampler.Add(1)
	go func() {
		defer r.sampler.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		h := newHist()
		var lastSent, lastRecv int64
		last := r.start
		sample := func(now time.Time) {
			dt := now.Sub(last).Seconds()
			if dt <= 0 {
				return
			}
			r.lat.takeInterval(h)
			s, rc := r.sent.Load(), r.recv.Load()
			if r.latKind == "ack" {
				rc = r.acked.Load()
			}
			pt := Point{
				T:         now.Sub(r.start).Seconds(),
				SentRate:  float64(s-lastSent) / dt,
				RecvRate:  float64(rc-lastRecv) / dt,
				Connected: r.connected.Load(),
				Errors:    r.errTotal(),
			}
			if h.TotalCount() > 0 {
				pt.P50 = float64(h.ValueAtQuantile(50)) / 1000
				pt.P99 = float64(h.ValueAtQuantile(99)) / 1000
				pt.Max = float64(h.Max()) / 1000
			}
			r.series = append(r.series, pt)
			lastSent, lastRecv, last = s, rc, now
			if r.c.Progress != nil {
				r.progress(pt)
			}
		}
		for {
			select {
			case now := <-t.C:
				sample(now)
			case <-done:
				if time.Since(last) > 100*time.Millisecond {
					sample(time.Now())
				}
				if r.c.Progress != nil && r.c.ProgressCR {
					fmt.Fprintln(r.c.Progress)
				}
				return
			}
		}
	}()
	return func() {
		close(done)
		r.sampler.Wait()
	}
}

func (r *run) progress(pt Point) {
	tot := r.lat.total()
	end := "\n"
	if r.c.ProgressCR {
		end = "\x1b[K\r"
	}
	fmt.Fprintf(r.c.Progress, "%5.0fs  conn %d  out %s/s  in %s/s  p50 %s  p99 %s  errors %d%s",
		pt.T, pt.Connected, human(pt.SentRate), human(pt.RecvRate),
		fmtMs(float64(tot.ValueAtQuantile(50))/1000), fmtMs(float64(tot.ValueAtQuantile(99))/1000), pt.Errors, end)
}

// runConn opens the connections, holds them for the duration and measures
// the broker's memory with all of them up.
func (r *run) runConn(ctx context.Context) (phases, error) {
	c := &r.c
	var ph phases
	cls := make([]*client.Client, c.Clients)
	t0 := time.Now()
	r.paced(ctx, c.Clients, func(i int) {
		id := c.ClientIDPrefix + "-c" + strconv.Itoa(i)
		cl, err := r.connect(ctx, r.dialOpts(int(r.clientSeq.Add(1)-1), id, c.Persistent, nil))
		if err == nil {
			cls[i] = cl
		}
	})
	ph.connTime = time.Since(t0)
	ph.connected = r.connected.Load()
	defer r.closeAll(cls)
	if c.PID > 0 {
		// Let the broker finish its per-connection setup before reading.
		sleepCtx(ctx, 500*time.Millisecond)
		if s, err := readProc(c.PID); err == nil {
			ph.rssAt = &s
		}
	}
	sctx, cancel := r.stopAfter(ctx)
	defer cancel()
	if c.Duration == 0 {
		return ph, nil // hold for nothing: Count makes no sense here
	}
	<-sctx.Done()
	if ph.connected == 0 {
		return ph, errors.New("no connection succeeded")
	}
	return ph, ctx.Err()
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// runPub connects publishers and publishes from all of them; with QoS > 0
// the latency measured is that of the acknowledgement.
func (r *run) runPub(ctx context.Context) (phases, error) {
	c := &r.c
	var ph phases
	r.latKind = "ack"
	r.sentBy = make([]atomic.Int64, c.Clients)
	cls := make([]*client.Client, c.Clients)
	topics := make([]string, c.Clients)
	t0 := time.Now()
	r.paced(ctx, c.Clients, func(i int) {
		id := c.ClientIDPrefix + "-p" + strconv.Itoa(i)
		topics[i] = expandTopic(c.Topic, i, id)
		cl, err := r.connect(ctx, r.dialOpts(int(r.clientSeq.Add(1)-1), id, c.Persistent, nil))
		if err == nil {
			cls[i] = cl
		}
	})
	ph.connTime = time.Since(t0)
	ph.connected = r.connected.Load()
	defer r.closeAll(cls)
	if ph.connected == 0 {
		return ph, errors.New("no publisher connected")
	}
	r.pubPhase(ctx, cls, func(i int) []job { return []job{{uint32(i), topics[i]}} }, c.Clients, &ph)
	return ph, ctx.Err()
}

// firstDue is when publisher i of n, each sending rate messages/s from
// start, sends its first message: at a fixed rate the publishers take
// turns, spread evenly over one interval, so that the broker sees a
// steady rate, not every publisher's message at the same instant then
// nothing (a burst of n messages, the last of which waits for all the
// others: what a latency percentile would then measure).
func firstDue(start time.Time, rate float64, i, n int) time.Time {
	if rate <= 0 || n <= 1 {
		return start
	}
	interval := float64(time.Second) / rate
	return start.Add(time.Duration(interval * float64(i) / float64(n)))
}

// pubPhase runs publisher i of cls on jobs(i) until the duration or count
// is reached.
func (r *run) pubPhase(ctx context.Context, cls []*client.Client, jobs func(i int) []job, nStreams int, ph *phases) {
	c := &r.c
	sctx, cancel := r.stopAfter(ctx)
	defer cancel()
	stop := sctx.Done()
	rate := c.perPublisherRate(len(cls))
	ph.pubStart = time.Now()
	var wg sync.WaitGroup
	for i, cl := range cls {
		if cl == nil {
			continue
		}
		js := jobs(i)
		if len(js) == 0 {
			continue
		}
		first := firstDue(ph.pubStart, rate, i, len(cls))
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.publish(sctx, cl, js, rate, first, c.Count, c.Drain+5*time.Second, r.latKind == "ack", i)
		}()
	}
	pubsDone := make(chan struct{})
	go func() { wg.Wait(); close(pubsDone) }()
	select {
	case <-pubsDone:
	case <-stop:
		<-pubsDone
	}
	ph.pubEnd = time.Now()
}

// runSub connects subscribers and counts what they receive.
func (r *run) runSub(ctx context.Context) (phases, error) {
	c := &r.c
	var ph phases
	r.latKind = "end-to-end"
	cls := make([]*client.Client, c.Clients)
	t0 := time.Now()
	r.paced(ctx, c.Clients, func(i int) {
		id := c.ClientIDPrefix + "-s" + strconv.Itoa(i)
		cl, err := r.connect(ctx, r.dialOpts(int(r.clientSeq.Add(1)-1), id, c.Persistent, r.onMessage(nil, i, true)))
		if err != nil {
			return
		}
		if err := r.subscribe(ctx, cl, expandTopic(c.Topic, i, id)); err != nil {
			cl.Close()
			return
		}
		cls[i] = cl
	})
	ph.connTime = time.Since(t0)
	ph.connected = r.connected.Load()
	defer r.closeAll(cls)
	if ph.connected == 0 {
		return ph, errors.New("no subscriber connected")
	}
	sctx, cancel := r.stopAfter(ctx)
	defer cancel()
	stop := sctx.Done()
	ph.pubStart = time.Now()
	if c.Count > 0 {
		// Count is the messages each subscriber should receive.
		want := int64(c.Count) * ph.connected
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.waitCount(stop, want)
			cancel()
		}()
	}
	<-stop
	ph.pubEnd = time.Now()
	return ph, ctx.Err()
}

func (r *run) waitCount(stop <-chan struct{}, want int64) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for r.recv.Load() < want {
		select {
		case <-t.C:
		case <-stop:
			return
		}
	}
}

func (r *run) subscribe(ctx context.Context, cl *client.Client, filter string) error {
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ack, err := cl.Subscribe(sctx, &packet.Subscribe{Subscriptions: []packet.Subscription{{Filter: filter, QoS: r.c.QoS}}})
	if err != nil {
		r.countErr("subscribe: " + Reason(err))
		return err
	}
	if len(ack.ReasonCodes) != 1 || ack.ReasonCodes[0].IsError() || ack.ReasonCodes[0] == 0x80 {
		err := fmt.Errorf("subscribe %q refused: %v", filter, ack.ReasonCodes)
		r.countErr("subscribe: refused")
		return err
	}
	return nil
}

// runBoth runs fanin, fanout, p2p and shared: subscribers first, then
// publishers, then a drain of what is still on its way.
func (r *run) runBoth(ctx context.Context) (phases, error) {
	c := &r.c
	var ph phases
	r.latKind = "end-to-end"
	P, S, T := c.Publishers, c.Subscribers, c.Topics
	r.sentBy = make([]atomic.Int64, P)
	pubTopic := func(i int) string { return c.Prefix + "/" + strconv.Itoa(i%T) }

	trackers := make([]*Tracker, S)
	filters := make([]string, S)
	var sinks []Sink
	receivers := make([]int64, P) // sinks expecting each stream
	all := make([]uint32, P)
	for i := range all {
		all[i] = uint32(i)
	}
	for j := range S {
		trackers[j] = NewTracker()
		switch c.Scenario {
		case FanIn:
			filters[j] = c.Prefix + "/+"
		case Shared:
			filters[j] = "$share/sb/" + c.Prefix + "/+"
		default:
			filters[j] = c.Prefix + "/" + strconv.Itoa(j%T)
		}
	}
	switch c.Scenario {
	case FanIn:
		for j := range S {
			sinks = append(sinks, Sink{Members: trackers[j : j+1], Streams: all})
		}
	case Shared:
		sinks = []Sink{{Members: trackers, Streams: all}}
	default:
		for j := range S {
			var st []uint32
			for i := range P {
				if i%T == j%T {
					st = append(st, uint32(i))
				}
			}
			sinks = append(sinks, Sink{Members: trackers[j : j+1], Streams: st})
		}
	}
	for _, s := range sinks {
		for _, id := range s.Streams {
			receivers[id]++
		}
	}

	subs := make([]*client.Client, S)
	pubs := make([]*client.Client, P)
	defer func() {
		r.closeAll(pubs)
		r.closeAll(subs)
	}()
	t0 := time.Now()
	r.paced(ctx, S, func(j int) {
		id := c.ClientIDPrefix + "-s" + strconv.Itoa(j)
		cl, err := r.connect(ctx, r.dialOpts(int(r.clientSeq.Add(1)-1), id, c.Persistent, r.onMessage(trackers[j], j, false)))
		if err != nil {
			return
		}
		if err := r.subscribe(ctx, cl, filters[j]); err != nil {
			cl.Close()
			return
		}
		subs[j] = cl
	})
	r.paced(ctx, P, func(i int) {
		id := c.ClientIDPrefix + "-p" + strconv.Itoa(i)
		cl, err := r.connect(ctx, r.dialOpts(int(r.clientSeq.Add(1)-1), id, c.Persistent, nil))
		if err == nil {
			pubs[i] = cl
		}
	})
	ph.connTime = time.Since(t0)
	ph.connected = r.connected.Load()
	if ctx.Err() != nil {
		return ph, ctx.Err()
	}
	if ph.connected < int64(P+S) {
		return ph, fmt.Errorf("only %d of %d connections succeeded", ph.connected, P+S)
	}
	r.pubPhase(ctx, pubs, func(i int) []job { return []job{{uint32(i), pubTopic(i)}} }, P, &ph)

	var want int64
	for i := range P {
		want += r.sentBy[i].Load() * receivers[i]
	}
	r.waitDrain(ctx, want)
	var counts Counts
	sent := func(id uint32) int64 { return r.sentBy[id].Load() }
	for _, s := range sinks {
		counts.Add(s.Count(sent))
	}
	ph.counts = &counts
	return ph, ctx.Err()
}

// PersistResult is what the persist scenario measures.
type PersistResult struct {
	Sessions int `json:"sessions"`
	// Queued is the messages published while the sessions were offline.
	Queued int64 `json:"queued"`
	// PublishSeconds is the time to publish them (acknowledged).
	PublishSeconds float64 `json:"publish_s"`
	// ReconnectSeconds is the time to reconnect every session.
	ReconnectSeconds float64 `json:"reconnect_s"`
	// DrainSeconds runs from the start of the reconnection to the last
	// queued message received.
	DrainSeconds float64 `json:"drain_s"`
	// DrainRate is Queued / DrainSeconds.
	DrainRate float64 `json:"drain_ps"`
	// SessionsPresent counts CONNACKs that said the session was kept.
	SessionsPresent int64 `json:"sessions_present"`
	// ConnectP50, P99 and Max are the CONNECT-to-CONNACK times of the
	// reconnections, milliseconds: in a cluster with -move, the time for
	// a session to move to another node with its queued messages.
	ConnectP50 float64 `json:"reconnect_p50_ms"`
	ConnectP99 float64 `json:"reconnect_p99_ms"`
	ConnectMax float64 `json:"reconnect_max_ms"`
}

// runPersist subscribes persistent sessions, takes them offline, publishes
// Count messages to each, reconnects them and waits for every message.
func (r *run) runPersist(ctx context.Context) (phases, error) {
	c := &r.c
	var ph phases
	r.latKind = "queue"
	S := c.Subscribers
	P := min(c.Publishers, S)
	r.sentBy = make([]atomic.Int64, S)
	pr := &PersistResult{Sessions: S}
	ph.persist = pr
	ids := make([]string, S)
	gs := make([]int, S) // global client numbers, for host choice
	trackers := make([]*Tracker, S)
	for j := range S {
		ids[j] = c.ClientIDPrefix + "-q" + strconv.Itoa(j)
		trackers[j] = NewTracker()
	}
	topic := func(j int) string { return c.Prefix + "/" + strconv.Itoa(j) }
	defer r.cleanSessions(ids, gs)

	// 1. Subscribe with persistent sessions, then go offline.
	subs := make([]*client.Client, S)
	t0 := time.Now()
	var subscribed atomic.Int64
	r.paced(ctx, S, func(j int) {
		gs[j] = int(r.clientSeq.Add(1) - 1)
		o := r.dialOpts(gs[j], ids[j], true, nil)
		if c.Version == packet.V5 {
			o.CleanStart = true // a fresh session that outlives this connection
		}
		cl, err := r.connect(ctx, o)
		if err != nil {
			return
		}
		if r.subscribe(ctx, cl, topic(j)) == nil {
			subscribed.Add(1)
		}
		subs[j] = cl
	})
	ph.connTime = time.Since(t0)
	ph.connected = r.connected.Load()
	r.closeAll(subs)
	if ctx.Err() != nil {
		return ph, ctx.Err()
	}
	if subscribed.Load() < int64(S) {
		return ph, fmt.Errorf("only %d of %d sessions subscribed", subscribed.Load(), S)
	}

	// 2. Publish Count messages to each offline session.
	pubs := make([]*client.Client, P)
	r.paced(ctx, P, func(i int) {
		id := c.ClientIDPrefix + "-p" + strconv.Itoa(i)
		cl, err := r.connect(ctx, r.dialOpts(int(r.clientSeq.Add(1)-1), id, false, nil))
		if err == nil {
			pubs[i] = cl
		}
	})
	for _, p := range pubs {
		if p == nil {
			r.closeAll(pubs)
			return ph, errors.New("a publisher failed to connect")
		}
	}
	saved := c.Duration
	c.Duration = 0 // persist publishes exactly Count per session
	r.pubPhase(ctx, pubs, func(i int) []job {
		var js []job
		for j := i; j < S; j += P {
			js = append(js, job{uint32(j), topic(j)})
		}
		return js
	}, S, &ph)
	c.Duration = saved
	r.closeAll(pubs)
	pr.PublishSeconds = ph.pubEnd.Sub(ph.pubStart).Seconds()
	pr.Queued = r.sent.Load()
	if ctx.Err() != nil {
		return ph, ctx.Err()
	}

	// 3. Reconnect (to the next host with Move) and drain.
	shift := 0
	if c.Move {
		shift = 1
	}
	t1 := time.Now()
	var present atomic.Int64
	var latMu sync.Mutex
	lats := make([]time.Duration, 0, S)
	r.paced(ctx, S, func(j int) {
		o := r.dialOpts(gs[j]+shift, ids[j], true, r.onMessage(trackers[j], j, false))
		r.attempted.Add(1)
		cstart := time.Now()
		cl, ack, err := client.Connect(ctx, o)
		latMu.Lock()
		lats = append(lats, time.Since(cstart))
		latMu.Unlock()
		if err != nil {
			r.connFail.Add(1)
			r.countErr("reconnect: " + Reason(err))
			return
		}
		r.connected.Add(1)
		if ack.SessionPresent {
			present.Add(1)
		}
		subs[j] = cl
	})
	pr.ReconnectSeconds = time.Since(t1).Seconds()
	pr.SessionsPresent = present.Load()
	latMu.Lock()
	if len(lats) > 0 {
		slices.Sort(lats)
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		pr.ConnectP50 = ms(lats[len(lats)/2])
		pr.ConnectP99 = ms(lats[min(len(lats)-1, len(lats)*99/100)])
		pr.ConnectMax = ms(lats[len(lats)-1])
	}
	latMu.Unlock()
	r.waitDrain(ctx, pr.Queued)
	if last := r.lastRecv.Load(); last > t1.UnixNano() {
		pr.DrainSeconds = time.Duration(last - t1.UnixNano()).Seconds()
	}
	if pr.DrainSeconds > 0 {
		pr.DrainRate = float64(r.recvUniq.Load()) / pr.DrainSeconds
	}
	r.closeAll(subs)
	var counts Counts
	sent := func(id uint32) int64 { return r.sentBy[id].Load() }
	for j := range S {
		counts.Add(Sink{Members: trackers[j : j+1], Streams: []uint32{uint32(j)}}.Count(sent))
	}
	ph.counts = &counts
	return ph, ctx.Err()
}

// cleanSessions removes the persistent sessions from the broker: connect
// with a clean session and leave. Failures are ignored: this is tidying.
func (r *run) cleanSessions(ids []string, gs []int) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cls := make([]*client.Client, len(ids))
	r.paced(ctx, len(ids), func(j int) {
		o := r.dialOpts(gs[j], ids[j], false, nil)
		o.OnDisconnect = nil
		o.ConnectTimeout = 5 * time.Second
		cl, _, err := client.Connect(ctx, o)
		if err == nil {
			cls[j] = cl
		}
	})
	r.closeAll(cls)
}

// human formats a rate with a k/M suffix.
func human(v float64) string {
	switch {
	case v >= 10e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 10e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	case v >= 1e3:
		return fmt.Sprintf("%.2fk", v/1e3)
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

// fmtMs formats milliseconds with a sensible precision.
func fmtMs(ms float64) string {
	switch {
	case ms == 0:
		return "-"
	case ms < 1:
		return fmt.Sprintf("%.3fms", ms)
	case ms < 100:
		return fmt.Sprintf("%.2fms", ms)
	}
	return fmt.Sprintf("%.0fms", ms)
}
