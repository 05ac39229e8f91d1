package store

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/starlingmq/starling/internal/broker"
	"github.com/starlingmq/starling/internal/packet"
)

// syncCounter counts fsyncs of WAL files through errorfs (it never fails
// anything).
type syncCounter struct{ n atomic.Int64 }

func (c *syncCounter) String() string { return "syncCounter" }

func (c *syncCounter) MaybeError(op errorfs.Op) error {
	if isWAL(op) && isSync(op) {
		c.n.Add(1)
	}
	return nil
}

func benchDelivery(seq uint64) *broker.DeliveryRecord {
	return &broker.DeliveryRecord{
		Seq: seq, QoS: 1, SubIDs: []int{1},
		Message: broker.MessageRecord{
			Topic:   "sensors/building-1/floor-2/temperature",
			Payload: make([]byte, 100),
			QoS:     1,
			Properties: packet.Properties{
				ContentType: "application/json",
				User:        []packet.UserProperty{{Key: "source", Value: "bench"}},
			},
			ExpiresAt: time.Unix(1_800_000_000, 0),
		},
	}
}

// BenchmarkApplySync measures synced one-op batches: sequential (one fsync
// per Apply) and parallel (Pebble's commit pipeline shares fsyncs between
// concurrent commits). ops/s is Applies per second; wal-fsyncs/op below 1
// is group commit at work.
func BenchmarkApplySync(b *testing.B) {
	run := func(b *testing.B, parallel bool, sync bool) {
		c := &syncCounter{}
		s, err := Open(Options{Dir: b.TempDir(), FS: errorfs.Wrap(vfs.Default, c)})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		ctx := context.Background()
		var seq atomic.Uint64
		one := func() {
			var bt broker.Batch
			bt.PutDelivery("client-1", benchDelivery(seq.Add(1)))
			if err := s.Apply(ctx, &bt, sync); err != nil {
				b.Error(err)
			}
		}
		b.ReportAllocs()
		c.n.Store(0)
		start := time.Now()
		b.ResetTimer()
		if parallel {
			b.SetParallelism(16) // many connections per core, as in a broker
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					one()
				}
			})
		} else {
			for range b.N {
				one()
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
		b.ReportMetric(float64(c.n.Load())/float64(b.N), "wal-fsyncs/op")
	}
	b.Run("sequential", func(b *testing.B) { run(b, false, true) })
	b.Run("parallel", func(b *testing.B) { run(b, true, true) })
	b.Run("nosync-sequential", func(b *testing.B) { run(b, false, false) })
}

// loadCounter is a Loader that counts.
type loadCounter struct{ n int }

func (c *loadCounter) Session(*broker.SessionRecord) error                   { c.n++; return nil }
func (c *loadCounter) Subscription(string, *broker.SubscriptionRecord) error { c.n++; return nil }
func (c *loadCounter) Delivery(string, *broker.DeliveryRecord) error         { c.n++; return nil }
func (c *loadCounter) IncomingQoS2(string, uint16) error                     { c.n++; return nil }
func (c *loadCounter) Retained(*broker.MessageRecord) error                  { c.n++; return nil }

// BenchmarkLoad measures a restart with 100,000 queued messages (1,000
// sessions with 100 deliveries each): Open, Load everything, Close. The
// target is under 2 s.
func BenchmarkLoad(b *testing.B) {
	const sessions, perSession = 1000, 100
	fill := func(b *testing.B, s broker.Store) {
		var bt broker.Batch
		for i := range sessions {
			id := fmt.Sprintf("client-%d", i)
			bt.PutSession(session(id))
			bt.PutSubscription(id, sub("sensors/#"))
			for j := range perSession {
				bt.PutDelivery(id, benchDelivery(uint64(j)))
			}
			if err := s.Apply(context.Background(), &bt, false); err != nil {
				b.Fatal(err)
			}
			bt.Reset()
		}
	}
	const want = sessions * (perSession + 2)
	b.Run("Pebble", func(b *testing.B) {
		dir := b.TempDir()
		s, err := Open(Options{Dir: dir})
		if err != nil {
			b.Fatal(err)
		}
		fill(b, s)
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			s, err := Open(Options{Dir: dir})
			if err != nil {
				b.Fatal(err)
			}
			var c loadCounter
			if err := s.Load(context.Background(), &c); err != nil {
				b.Fatal(err)
			}
			if c.n != want {
				b.Fatalf("loaded %d records, want %d", c.n, want)
			}
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/restart")
	})
	// The whole restart as the broker does it: open the folder and rebuild
	// sessions, subscriptions and 100,000 queued messages in the broker.
	b.Run("PebbleBroker", func(b *testing.B) {
		dir := b.TempDir()
		s, err := Open(Options{Dir: dir})
		if err != nil {
			b.Fatal(err)
		}
		fill(b, s)
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			s, err := Open(Options{Dir: dir})
			if err != nil {
				b.Fatal(err)
			}
			br := broker.New(broker.Options{Store: s, MaxInflight: 20})
			if err := br.Load(context.Background()); err != nil {
				b.Fatal(err)
			}
			if st := br.Stats(); st.ClientsTotal != sessions {
				b.Fatalf("%d sessions restored, want %d", st.ClientsTotal, sessions)
			}
			br.Close()
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/restart")
	})
	b.Run("Memory", func(b *testing.B) {
		s := NewMemory()
		defer s.Close()
		fill(b, s)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			var c loadCounter
			if err := s.Load(context.Background(), &c); err != nil {
				b.Fatal(err)
			}
			if c.n != want {
				b.Fatalf("loaded %d records, want %d", c.n, want)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/load")
	})
}
