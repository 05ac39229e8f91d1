package store

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/starlingmq/starling/internal/broker"
)

// impl opens a store for the conformance suite. reopen, when not nil,
// closes a store and opens it again from the same place.
type impl struct {
	name   string
	open   func(t testing.TB) broker.Store
	reopen func(t testing.TB, s broker.Store) broker.Store
}

func impls() []impl {
	return []impl{
		{name: "Memory", open: func(t testing.TB) broker.Store { return NewMemory() }},
		{
			name: "Pebble",
			open: func(t testing.TB) broker.Store { return openPebbleT(t, t.TempDir()) },
			reopen: func(t testing.TB, s broker.Store) broker.Store {
				p := s.(*Pebble)
				if err := p.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
				return openPebbleT(t, p.dir)
			},
		},
	}
}

func openPebbleT(t testing.TB, dir string) *Pebble {
	t.Helper()
	p, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func load(t testing.TB, s broker.Store) []event {
	t.Helper()
	var r recorder
	if err := s.Load(context.Background(), &r); err != nil {
		t.Fatalf("Load: %v", err)
	}
	return r.events
}

func apply(t testing.TB, s broker.Store, b *broker.Batch) {
	t.Helper()
	if err := s.Apply(context.Background(), b, true); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

// samePartition returns n client ids beginning with prefix that share one
// partition, so that tests cover neighbours inside a partition.
func samePartition(prefix string, n int) []string {
	want := Partition(prefix)
	ids := []string{prefix}
	for i := 0; len(ids) < n; i++ {
		id := fmt.Sprintf("%s%d", prefix, i)
		if Partition(id) == want {
			ids = append(ids, id)
		}
	}
	return ids
}

// Every Op kind, on every implementation, through one table.
func TestConformanceOps(t *testing.T) {
	// "c" and its neighbours in the same partition, one a prefix of
	// another, must not be touched by each other's DeleteSession.
	ids := samePartition("c", 3)
	c, c2 := ids[0], ids[1]
	longID := strings.Repeat("x", 65536)

	type step struct {
		batch   func(b *broker.Batch)
		wantErr bool
	}
	tests := []struct {
		name  string
		steps []step
		want  []event
	}{
		{
			name:  "put session",
			steps: []step{{batch: func(b *broker.Batch) { b.PutSession(fullSession(c)) }}},
			want:  []event{{"session", c, fullSession(c)}},
		},
		{
			name: "replace session",
			steps: []step{
				{batch: func(b *broker.Batch) { b.PutSession(fullSession(c)) }},
				{batch: func(b *broker.Batch) { b.PutSession(session(c)) }},
			},
			want: []event{{"session", c, session(c)}},
		},
		{
			name: "delete session removes everything under it and nothing else",
			steps: []step{
				{batch: func(b *broker.Batch) {
					for _, id := range []string{c, c2} {
						b.PutSession(session(id))
						b.PutSubscription(id, sub("a/#"))
						b.PutDelivery(id, delivery(1))
						b.PutIncoming(id, 5)
					}
					b.PutRetained(ptr(message("r", 1)))
				}},
				{batch: func(b *broker.Batch) { b.DeleteSession(c) }},
			},
			want: []event{
				{"retained", "", ptr(message("r", 1))},
				{"session", c2, session(c2)},
				{"sub", c2, sub("a/#")},
				{"delivery", c2, delivery(1)},
				{"incoming", c2, uint16(5)},
			},
		},
		{
			name: "delete then put session in one batch",
			steps: []step{
				{batch: func(b *broker.Batch) {
					b.PutSession(fullSession(c))
					b.PutSubscription(c, sub("old"))
				}},
				{batch: func(b *broker.Batch) {
					b.DeleteSession(c)
					b.PutSession(session(c))
					b.PutSubscription(c, sub("new"))
				}},
			},
			want: []event{{"session", c, session(c)}, {"sub", c, sub("new")}},
		},
		{
			name:  "delete missing session",
			steps: []step{{batch: func(b *broker.Batch) { b.DeleteSession(c) }}},
		},
		{
			name: "subscriptions put, replace, delete, in filter order",
			steps: []step{
				{batch: func(b *broker.Batch) {
					b.PutSession(session(c))
					b.PutSubscription(c, sub("b/+"))
					b.PutSubscription(c, sub("$share/g/a"))
					b.PutSubscription(c, sub("a/#"))
					b.PutSubscription(c, sub("gone"))
				}},
				{batch: func(b *broker.Batch) {
					b.PutSubscription(c, &broker.SubscriptionRecord{Filter: "b/+", QoS: 2, SubscriptionID: -1})
					b.DeleteSubscription(c, "gone")
					b.DeleteSubscription(c, "never")
				}},
			},
			want: []event{
				{"session", c, session(c)},
				{"sub", c, sub("$share/g/a")},
				{"sub", c, sub("a/#")},
				{"sub", c, &broker.SubscriptionRecord{Filter: "b/+", QoS: 2, SubscriptionID: -1}},
			},
		},
		{
			name: "deliveries in ascending seq",
			steps: []step{
				{batch: func(b *broker.Batch) {
					b.PutSession(session(c))
					for _, s := range []uint64{1 << 40, 256, 3, 1, 2, 255, 0} {
						b.PutDelivery(c, delivery(s))
					}
				}},
				{batch: func(b *broker.Batch) {
					b.DeleteDelivery(c, 2)
					b.DeleteDelivery(c, 99)
					b.PutDelivery(c, &broker.DeliveryRecord{Seq: 3, Message: broker.MessageRecord{Topic: "x"}})
				}},
			},
			want: []event{
				{"session", c, session(c)},
				{"delivery", c, delivery(0)},
				{"delivery", c, delivery(1)},
				{"delivery", c, &broker.DeliveryRecord{Seq: 3, Message: broker.MessageRecord{Topic: "x"}}},
				{"delivery", c, delivery(255)},
				{"delivery", c, delivery(256)},
				{"delivery", c, delivery(1 << 40)},
			},
		},
		{
			name: "incoming qos 2 ids",
			steps: []step{
				{batch: func(b *broker.Batch) {
					b.PutSession(session(c))
					b.PutIncoming(c, 65535)
					b.PutIncoming(c, 1)
					b.PutIncoming(c, 256)
				}},
				{batch: func(b *broker.Batch) {
					b.DeleteIncoming(c, 256)
					b.PutIncoming(c, 1)
				}},
			},
			want: []event{{"session", c, session(c)}, {"incoming", c, uint16(1)}, {"incoming", c, uint16(65535)}},
		},
		{
			name: "retained put, replace, delete",
			steps: []step{
				{batch: func(b *broker.Batch) {
					b.PutRetained(ptr(fullMessage("a/b")))
					b.PutRetained(ptr(message("a", 1)))
					b.PutRetained(&broker.MessageRecord{Topic: "empty"})
					b.PutRetained(ptr(message("gone", 1)))
				}},
				{batch: func(b *broker.Batch) {
					b.PutRetained(ptr(message("a", 4)))
					b.DeleteRetained("gone")
					b.DeleteRetained("never")
				}},
			},
			want: []event{
				{"retained", "", ptr(message("a", 4))},
				{"retained", "", ptr(fullMessage("a/b"))},
				{"retained", "", &broker.MessageRecord{Topic: "empty"}},
			},
		},
		{
			name: "sub-records without a session record are loaded",
			steps: []step{{batch: func(b *broker.Batch) {
				b.PutSubscription(c, sub("a"))
				b.PutIncoming(c, 1)
			}}},
			want: []event{{"sub", c, sub("a")}, {"incoming", c, uint16(1)}},
		},
		{
			name: "invalid op rejects the whole batch",
			steps: []step{
				{batch: func(b *broker.Batch) { b.PutSession(session(c)) }},
				{batch: func(b *broker.Batch) {
					b.DeleteSession(c)
					b.PutRetained(ptr(message("a", 1)))
					b.Ops = append(b.Ops, broker.Op{Kind: broker.OpPutDelivery, ClientID: c})
				}, wantErr: true},
				{batch: func(b *broker.Batch) {
					b.DeleteSession(c)
					b.Ops = append(b.Ops, broker.Op{Kind: 200})
				}, wantErr: true},
				{batch: func(b *broker.Batch) {
					b.DeleteSession(c)
					b.PutSession(session(longID))
				}, wantErr: true},
			},
			want: []event{{"session", c, session(c)}},
		},
		{
			name:  "empty batch",
			steps: []step{{batch: func(b *broker.Batch) {}}},
		},
		{
			name: "empty client id and topic",
			steps: []step{{batch: func(b *broker.Batch) {
				b.PutSession(session(""))
				b.PutDelivery("", delivery(1))
				b.PutRetained(&broker.MessageRecord{Topic: ""})
			}}},
			want: []event{
				{"retained", "", &broker.MessageRecord{}},
				{"session", "", session("")},
				{"delivery", "", delivery(1)},
			},
		},
	}
	for _, im := range impls() {
		t.Run(im.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					s := im.open(t)
					defer s.Close()
					for i, st := range tt.steps {
						var b broker.Batch
						st.batch(&b)
						err := s.Apply(context.Background(), &b, i%2 == 0)
						if (err != nil) != st.wantErr {
							t.Fatalf("step %d: Apply error %v, want error %v", i, err, st.wantErr)
						}
					}
					check := func(when string) {
						got := load(t, s)
						if !reflect.DeepEqual(got, tt.want) {
							t.Fatalf("%s: Load:\n%swant:\n%s", when, formatEvents(got), formatEvents(tt.want))
						}
					}
					check("after Apply")
					if im.reopen != nil {
						s = im.reopen(t, s)
						check("after reopen")
					}
				})
			}
		})
	}
}

// Load order over many sessions: retained first, then sessions by
// partition, each session's record before its sub-records.
func TestConformanceLoadOrder(t *testing.T) {
	for _, im := range impls() {
		t.Run(im.name, func(t *testing.T) {
			s := im.open(t)
			defer s.Close()
			var b broker.Batch
			for i := range 200 {
				id := fmt.Sprintf("client-%d", i)
				b.PutSession(session(id))
				b.PutSubscription(id, sub("f"))
				for seq := uint64(10); seq > 0; seq-- {
					b.PutDelivery(id, &broker.DeliveryRecord{Seq: seq * 1000})
				}
				b.PutIncoming(id, 9)
				b.PutRetained(ptr(message(id, i)))
			}
			apply(t, s, &b)
			check := func(events []event) {
				if len(events) != 200*14 {
					t.Fatalf("%d events, want %d", len(events), 200*14)
				}
				for i, e := range events[:200] {
					if e.Kind != "retained" || (i > 0 && e.Rec.(*broker.MessageRecord).Topic < events[i-1].Rec.(*broker.MessageRecord).Topic) {
						t.Fatalf("event %d: %v; want retained in topic order first", i, e)
					}
				}
				lastPart := -1
				for i := 200; i < len(events); i += 13 {
					sess := events[i]
					if sess.Kind != "session" {
						t.Fatalf("event %d: %v, want a session", i, sess)
					}
					if p := int(Partition(sess.ClientID)); p < lastPart {
						t.Fatalf("session %q in partition %d after partition %d", sess.ClientID, p, lastPart)
					} else {
						lastPart = p
					}
					kinds := []string{"sub"}
					for range 10 {
						kinds = append(kinds, "delivery")
					}
					kinds = append(kinds, "incoming")
					var lastSeq uint64
					for j, k := range kinds {
						e := events[i+1+j]
						if e.Kind != k || e.ClientID != sess.ClientID {
							t.Fatalf("event %d: %v, want %s of %q", i+1+j, e, k, sess.ClientID)
						}
						if d, ok := e.Rec.(*broker.DeliveryRecord); ok {
							if d.Seq <= lastSeq {
								t.Fatalf("delivery seq %d after %d", d.Seq, lastSeq)
							}
							lastSeq = d.Seq
						}
					}
				}
			}
			check(load(t, s))
			if im.reopen != nil {
				s = im.reopen(t, s)
				check(load(t, s))
			}
		})
	}
}

func TestConformanceLoaderErrorStopsLoad(t *testing.T) {
	for _, im := range impls() {
		t.Run(im.name, func(t *testing.T) {
			s := im.open(t)
			defer s.Close()
			var b broker.Batch
			b.PutSession(session("a"))
			for i := range 10 {
				b.PutDelivery("a", delivery(uint64(i)))
			}
			apply(t, s, &b)
			stop := errors.New("stop")
			r := recorder{failAt: 3, fail: stop}
			if err := s.Load(context.Background(), &r); !errors.Is(err, stop) {
				t.Fatalf("Load: %v, want %v", err, stop)
			}
			if len(r.events) != 4 {
				t.Fatalf("%d loader calls, want 4", len(r.events))
			}
		})
	}
}

// What was passed to Apply may be reused at once; what Load returns is
// the caller's.
func TestConformanceRecordsAreCopied(t *testing.T) {
	for _, im := range impls() {
		t.Run(im.name, func(t *testing.T) {
			s := im.open(t)
			defer s.Close()
			rec := fullSession("a")
			d := delivery(1)
			var b broker.Batch
			b.PutSession(rec)
			b.PutDelivery("a", d)
			apply(t, s, &b)
			rec.Username = "mallory"
			rec.Will.Payload[0] = 'X'
			d.Message.Payload[0] = 'X'
			d.SubIDs[0] = 100
			b.Reset()
			want := []event{{"session", "a", fullSession("a")}, {"delivery", "a", delivery(1)}}
			got := load(t, s)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Load:\n%swant:\n%s", formatEvents(got), formatEvents(want))
			}
			got[0].Rec.(*broker.SessionRecord).Will.Payload[0] = 'Y'
			if got := load(t, s); !reflect.DeepEqual(got, want) {
				t.Fatalf("Load after changing a loaded record:\n%s", formatEvents(got))
			}
		})
	}
}

func TestConformanceClose(t *testing.T) {
	for _, im := range impls() {
		t.Run(im.name, func(t *testing.T) {
			s := im.open(t)
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			var b broker.Batch
			b.PutSession(session("a"))
			if err := s.Apply(context.Background(), &b, true); !errors.Is(err, ErrClosed) {
				t.Fatalf("Apply after Close: %v, want ErrClosed", err)
			}
			if err := s.Load(context.Background(), &recorder{}); !errors.Is(err, ErrClosed) {
				t.Fatalf("Load after Close: %v, want ErrClosed", err)
			}
		})
	}
}

func TestConformanceCanceledContext(t *testing.T) {
	for _, im := range impls() {
		t.Run(im.name, func(t *testing.T) {
			s := im.open(t)
			defer s.Close()
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			var b broker.Batch
			b.PutSession(session("a"))
			if err := s.Apply(ctx, &b, true); !errors.Is(err, context.Canceled) {
				t.Fatalf("Apply: %v, want context.Canceled", err)
			}
			if got := load(t, s); len(got) != 0 {
				t.Fatalf("Load after a canceled Apply:\n%s", formatEvents(got))
			}
		})
	}
}

// Concurrent Apply, Load and Close: every acknowledged batch is loaded,
// and Close waits for calls in progress (run with -race).
func TestConformanceConcurrent(t *testing.T) {
	for _, im := range impls() {
		t.Run(im.name, func(t *testing.T) {
			s := im.open(t)
			const workers, each = 8, 50
			var wg sync.WaitGroup
			errs := make(chan error, workers*each)
			for w := range workers {
				wg.Go(func() {
					id := fmt.Sprintf("w%d", w)
					for i := range each {
						var b broker.Batch
						if i == 0 {
							b.PutSession(session(id))
						}
						b.PutDelivery(id, &broker.DeliveryRecord{Seq: uint64(i)})
						if err := s.Apply(context.Background(), &b, i%3 != 0); err != nil {
							errs <- err
						}
						if i%10 == 0 {
							if err := s.Load(context.Background(), &recorder{}); err != nil {
								errs <- err
							}
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if im.reopen != nil {
				s = im.reopen(t, s)
			}
			got := load(t, s)
			if len(got) != workers*(each+1) {
				t.Fatalf("%d records, want %d", len(got), workers*(each+1))
			}
			// Close while Applies run: each either succeeds or fails with
			// ErrClosed, none panics.
			var wg2 sync.WaitGroup
			for w := range workers {
				wg2.Go(func() {
					for i := range each {
						var b broker.Batch
						b.PutIncoming(fmt.Sprintf("w%d", w), uint16(i))
						if err := s.Apply(context.Background(), &b, true); err != nil && !errors.Is(err, ErrClosed) {
							t.Errorf("Apply during Close: %v", err)
						}
					}
				})
			}
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			wg2.Wait()
		})
	}
}

// countersLoader records the counters a store reports.
type countersLoader struct {
	recorder
	got *broker.CountersRecord
}

func (c *countersLoader) Counters(r *broker.CountersRecord) error {
	c.got = r
	return nil
}

func TestConformanceCounters(t *testing.T) {
	for _, im := range impls() {
		t.Run(im.name, func(t *testing.T) {
			s := im.open(t)
			want := broker.CountersRecord{MessagesReceived: 1, MessagesSent: 2, PublishReceived: 3, PublishSent: 4,
				PublishDropped: 5, BytesReceived: 1 << 40, BytesSent: 7, ConnectionsAccepted: 8}
			var b broker.Batch
			b.PutCounters(&broker.CountersRecord{MessagesReceived: 99})
			b.PutCounters(&want) // the last write wins
			apply(t, s, &b)
			if im.reopen != nil {
				s = im.reopen(t, s)
			}
			var l countersLoader
			if err := s.Load(context.Background(), &l); err != nil {
				t.Fatal(err)
			}
			if l.got == nil || *l.got != want {
				t.Fatalf("counters %+v, want %+v", l.got, want)
			}
			if len(l.events) != 0 {
				t.Fatalf("counters reported as other records: %v", l.events)
			}
			// a Loader without Counters just does not get them
			if got := load(t, s); len(got) != 0 {
				t.Fatalf("events %v", got)
			}
		})
	}
}
