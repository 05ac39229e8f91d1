package cluster

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/starlingmq/starling/internal/cluster/proto"
)

func ms(n int64) time.Time { return time.UnixMilli(n) }

func ts(wall int64, logical uint32, node string) proto.Timestamp {
	return proto.Timestamp{WallMilli: wall, Logical: logical, Node: node}
}

func TestClockNow(t *testing.T) {
	c := NewClock("a", 0)
	steps := []struct {
		now  int64
		want proto.Timestamp
	}{
		{100, ts(100, 0, "a")},
		{100, ts(100, 1, "a")}, // same millisecond
		{101, ts(101, 0, "a")}, // time moves on
		{90, ts(101, 1, "a")},  // physical clock went back: stay ahead
		{101, ts(101, 2, "a")},
		{102, ts(102, 0, "a")},
	}
	for i, s := range steps {
		if got := c.Now(ms(s.now)); got != s.want {
			t.Fatalf("step %d: Now(%d) = %+v, want %+v", i, s.now, got, s.want)
		}
	}
}

func TestClockObserve(t *testing.T) {
	tests := []struct {
		name   string
		last   proto.Timestamp // set through Now at last.WallMilli, Logical times
		now    int64
		remote proto.Timestamp
		want   proto.Timestamp // Last() after Observe
	}{
		{"physical-ahead-of-both", ts(100, 0, "a"), 200, ts(150, 3, "b"), ts(200, 0, "a")},
		{"remote-ahead", ts(100, 0, "a"), 100, ts(150, 3, "b"), ts(150, 4, "a")},
		{"local-ahead", ts(160, 2, "a"), 100, ts(150, 3, "b"), ts(160, 3, "a")},
		{"same-wall-remote-logical-higher", ts(150, 1, "a"), 100, ts(150, 7, "b"), ts(150, 8, "a")},
		{"same-wall-local-logical-higher", ts(150, 9, "a"), 100, ts(150, 7, "b"), ts(150, 10, "a")},
		{"remote-logical-at-max", ts(100, 0, "a"), 100, ts(150, math.MaxUint32, "b"), ts(151, 0, "a")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := NewClock("a", time.Minute)
			for range tc.last.Logical + 1 {
				c.Now(ms(tc.last.WallMilli))
			}
			if c.Last() != tc.last {
				t.Fatalf("setup: %+v", c.Last())
			}
			if err := c.Observe(ms(tc.now), tc.remote); err != nil {
				t.Fatal(err)
			}
			if c.Last() != tc.want {
				t.Fatalf("Last = %+v, want %+v", c.Last(), tc.want)
			}
			if next := c.Now(ms(tc.now)); next.Compare(tc.remote) <= 0 || next.Compare(tc.want) <= 0 {
				t.Fatalf("Now after Observe = %+v, not after %+v and %+v", next, tc.remote, tc.want)
			}
		})
	}
}

func TestClockMaxOffset(t *testing.T) {
	c := NewClock("a", time.Second)
	c.Now(ms(1000))
	if err := c.Observe(ms(1000), ts(2001, 0, "b")); !errors.Is(err, ErrClockOffset) {
		t.Fatalf("Observe 1001 ms ahead: %v", err)
	}
	if c.Last() != ts(1000, 0, "a") {
		t.Fatalf("clock followed a refused timestamp: %+v", c.Last())
	}
	if err := c.Observe(ms(1000), ts(2000, 0, "b")); err != nil {
		t.Fatalf("Observe exactly the maximum ahead: %v", err)
	}
	if err := NewClock("a", 0).Observe(ms(0), ts(math.MaxInt64/2, 0, "b")); err != nil {
		t.Fatalf("no limit: %v", err)
	}
}

func TestClockLogicalOverflow(t *testing.T) {
	c := NewClock("a", 0)
	c.last = ts(5, math.MaxUint32, "a")
	if got := c.Now(ms(5)); got != ts(6, 0, "a") {
		t.Fatalf("Now at logical max = %+v", got)
	}
}

// TestClockMonotonic: across random physical times (going back too) and
// observed timestamps, readings strictly increase.
func TestClockMonotonic(t *testing.T) {
	c := NewClock("a", 0)
	prev := c.Now(ms(0))
	seed := uint64(1)
	for i := range 10000 {
		seed = seed*6364136223846793005 + 1442695040888963407
		now := int64(seed>>40) % 50
		if seed&1 == 0 {
			if err := c.Observe(ms(now), ts(int64(seed>>20)%60, uint32(seed>>8)%4, "b")); err != nil {
				t.Fatal(err)
			}
		}
		got := c.Now(ms(now))
		if got.Compare(prev) <= 0 {
			t.Fatalf("step %d: %+v after %+v", i, got, prev)
		}
		prev = got
	}
}

func TestLastWriterWins(t *testing.T) {
	tests := []struct {
		name              string
		current, incoming proto.Timestamp
		want              bool
	}{
		{"later-wall", ts(1, 5, "z"), ts(2, 0, "a"), true},
		{"earlier-wall", ts(2, 0, "a"), ts(1, 5, "z"), false},
		{"later-logical", ts(1, 1, "z"), ts(1, 2, "a"), true},
		{"tie-broken-by-node", ts(1, 1, "a"), ts(1, 1, "b"), true},
		{"tie-broken-by-node-reverse", ts(1, 1, "b"), ts(1, 1, "a"), false},
		{"same-write-twice", ts(1, 1, "a"), ts(1, 1, "a"), false},
		{"over-nothing", proto.Timestamp{}, ts(0, 0, "a"), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := LastWriterWins(tc.current, tc.incoming); got != tc.want {
				t.Fatalf("LastWriterWins = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestLastWriterWinsConverges: nodes applying the same writes in different
// orders keep the same winner.
func TestLastWriterWinsConverges(t *testing.T) {
	writes := []proto.Timestamp{ts(5, 0, "b"), ts(5, 0, "a"), ts(4, 9, "c"), ts(5, 1, "a"), ts(5, 1, "a")}
	var winners []proto.Timestamp
	for rot := range writes {
		var cur proto.Timestamp
		for i := range writes {
			if w := writes[(rot+i)%len(writes)]; LastWriterWins(cur, w) {
				cur = w
			}
		}
		winners = append(winners, cur)
	}
	for _, w := range winners {
		if w != ts(5, 1, "a") {
			t.Fatalf("winners %+v", winners)
		}
	}
}
