package bench

import (
	"math/bits"
	"sync"
)

// stream is what one receiver saw of one stream of sequence numbers.
type stream struct {
	seen      []uint64 // bitmap of sequence numbers received
	max       int64    // highest sequence number received, -1 before any
	received  int64    // every arrival, duplicates included
	dups      int64
	reordered int64 // arrivals below an already received higher number
}

// Tracker counts, for one receiver, the messages of each stream: unique,
// duplicated and reordered arrivals. Its methods are safe for concurrent
// use; in practice one connection's reader calls Record.
type Tracker struct {
	mu      sync.Mutex
	streams map[uint32]*stream
}

// NewTracker returns an empty Tracker.
func NewTracker() *Tracker { return &Tracker{streams: make(map[uint32]*stream)} }

// Record notes the arrival of seq on stream id and reports whether it is
// the first arrival of that message.
func (t *Tracker) Record(id uint32, seq uint64) (first bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.streams[id]
	if s == nil {
		s = &stream{max: -1}
		t.streams[id] = s
	}
	s.received++
	w := int(seq / 64)
	if w >= len(s.seen) {
		n := max(2*len(s.seen), w+1, 4)
		s.seen = append(s.seen, make([]uint64, n-len(s.seen))...)
	}
	bit := uint64(1) << (seq % 64)
	if s.seen[w]&bit != 0 {
		s.dups++
		return false
	}
	s.seen[w] |= bit
	if int64(seq) < s.max {
		s.reordered++
	} else {
		s.max = int64(seq)
	}
	return true
}

// Counts is the outcome of comparing what was sent with what arrived.
type Counts struct {
	Expected   int64 `json:"expected"`
	Unique     int64 `json:"unique"`
	Received   int64 `json:"received"`
	Lost       int64 `json:"lost"`
	Duplicates int64 `json:"duplicates"`
	Reordered  int64 `json:"reordered"`
}

// Add accumulates o into c.
func (c *Counts) Add(o Counts) {
	c.Expected += o.Expected
	c.Unique += o.Unique
	c.Received += o.Received
	c.Lost += o.Lost
	c.Duplicates += o.Duplicates
	c.Reordered += o.Reordered
}

// Sink is one logical receiver: a subscriber, or the members of a shared
// subscription group, which together must see each message once.
type Sink struct {
	Members []*Tracker
	// Streams lists the streams this sink must receive in full.
	Streams []uint32
}

// Count compares the sink's arrivals with sent, the number of messages
// sent on each stream. Duplicates across members of a group count as
// duplicates; reordering is counted within each member only, since members
// of a group receive concurrently. Arrivals on streams the sink does not
// expect are counted as received and duplicates.
func (s Sink) Count(sent func(stream uint32) int64) Counts {
	var c Counts
	expect := make(map[uint32]bool, len(s.Streams))
	for _, id := range s.Streams {
		expect[id] = true
	}
	var union map[uint32][]uint64
	if len(s.Members) > 1 {
		union = make(map[uint32][]uint64)
	}
	for _, m := range s.Members {
		m.mu.Lock()
		for id, st := range m.streams {
			c.Received += st.received
			c.Reordered += st.reordered
			if !expect[id] {
				c.Duplicates += st.received
				continue
			}
			c.Duplicates += st.dups
			if union == nil {
				continue
			}
			u := union[id]
			if len(u) < len(st.seen) {
				u = append(u, make([]uint64, len(st.seen)-len(u))...)
			}
			for i, w := range st.seen {
				c.Duplicates += int64(bits.OnesCount64(u[i] & w))
				u[i] |= w
			}
			union[id] = u
		}
		m.mu.Unlock()
	}
	for _, id := range s.Streams {
		n := sent(id)
		c.Expected += n
		var seen []uint64
		if union != nil {
			seen = union[id]
		} else if len(s.Members) == 1 {
			m := s.Members[0]
			m.mu.Lock()
			if st := m.streams[id]; st != nil {
				seen = st.seen
			}
			m.mu.Unlock()
		}
		u := uniqueBelow(seen, n)
		c.Unique += u
		c.Lost += n - u
		// Arrivals numbered at or above n were never sent: count them as
		// duplicates so they cannot hide a loss.
		c.Duplicates += popcount(seen) - u
	}
	return c
}

func popcount(b []uint64) int64 {
	var n int
	for _, w := range b {
		n += bits.OnesCount64(w)
	}
	return int64(n)
}

// uniqueBelow counts the bits set below n.
func uniqueBelow(b []uint64, n int64) int64 {
	var u int
	full := int(n / 64)
	for i := 0; i < full && i < len(b); i++ {
		u += bits.OnesCount64(b[i])
	}
	if r := n % 64; r > 0 && full < len(b) {
		u += bits.OnesCount64(b[full] & (1<<r - 1))
	}
	return int64(u)
}
