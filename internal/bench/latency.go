package bench

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

const (
	latencyShards = 16
	// Latencies are recorded in microseconds, from 1µs to 5 minutes, with
	// three significant digits.
	latencyMaxUs = int64(5 * time.Minute / time.Microsecond)
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, latencyMaxUs, 3) }

// latency records latencies into sharded HDR histograms, so concurrent
// receivers rarely share a lock, and keeps both the whole run and the
// current interval.
type latency struct {
	shards [latencyShards]struct {
		mu       sync.Mutex
		total    *hdrhistogram.Histogram
		interval *hdrhistogram.Histogram
		_        [40]byte // keep shards on separate cache lines
	}
}

func newLatency() *latency {
	l := &latency{}
	for i := range l.shards {
		l.shards[i].total = newHist()
		l.shards[i].interval = newHist()
	}
	return l
}

// record adds one latency; shard is any number, usually the receiver's index.
func (l *latency) record(shard int, d time.Duration) {
	us := int64(d / time.Microsecond)
	if us < 1 {
		us = 1
	} else if us > latencyMaxUs {
		us = latencyMaxUs
	}
	s := &l.shards[shard%latencyShards]
	s.mu.Lock()
	s.total.RecordValue(us)
	s.interval.RecordValue(us)
	s.mu.Unlock()
}

// takeInterval returns the latencies recorded since the last call and
// starts a new interval.
func (l *latency) takeInterval(into *hdrhistogram.Histogram) {
	into.Reset()
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		into.Merge(s.interval)
		s.interval.Reset()
		s.mu.Unlock()
	}
}

// total returns the latencies of the whole run.
func (l *latency) total() *hdrhistogram.Histogram {
	h := newHist()
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		h.Merge(s.total)
		s.mu.Unlock()
	}
	return h
}

// Percentiles summarises a latency distribution, in milliseconds.
type Percentiles struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

func percentiles(h *hdrhistogram.Histogram) Percentiles {
	if h.TotalCount() == 0 {
		return Percentiles{}
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Percentiles{
		Count: h.TotalCount(),
		Mean:  h.Mean() / 1000,
		P50:   ms(h.ValueAtQuantile(50)),
		P90:   ms(h.ValueAtQuantile(90)),
		P99:   ms(h.ValueAtQuantile(99)),
		P999:  ms(h.ValueAtQuantile(99.9)),
		Max:   ms(h.Max()),
	}
}
