package session

import (
	"errors"
	"testing"
	"time"
)

var t0 = time.Unix(1_700_000_000, 0)

func msg(payload string) *Message {
	return &Message{Topic: "t", Payload: []byte(payload), Size: len(payload)}
}

func TestOfferOnlineWithinWindowSendsAtOnce(t *testing.T) {
	s := New("c", Limits{MaxInflight: 2})
	for i, want := range []bool{true, true, false} {
		d := &Delivery{Msg: msg("x"), QoS: 1}
		got, err := s.Offer(d, true, t0)
		if err != nil {
			t.Fatal(err)
		}
		if (got != nil) != want {
			t.Fatalf("offer %d: sent=%v, want %v", i, got != nil, want)
		}
		if got != nil && (got.PacketID == 0 || got.State != AwaitPuback) {
			t.Fatalf("offer %d: %+v", i, got)
		}
	}
	if s.InflightLen() != 2 || s.QueueLen() != 1 {
		t.Fatalf("inflight %d queue %d", s.InflightLen(), s.QueueLen())
	}
}

func TestAckRefillsWindowInOrder(t *testing.T) {
	s := New("c", Limits{MaxInflight: 1})
	first, _ := s.Offer(&Delivery{Msg: msg("1"), QoS: 1}, true, t0)
	for _, p := range []string{"2", "3"} {
		if d, _ := s.Offer(&Delivery{Msg: msg(p), QoS: 1}, true, t0); d != nil {
			t.Fatal("window of 1 exceeded")
		}
	}
	if _, err := s.Puback(first.PacketID); err != nil {
		t.Fatal(err)
	}
	next := s.Next(nil, t0)
	if len(next) != 1 || string(next[0].Msg.Payload) != "2" {
		t.Fatalf("got %v", next)
	}
	if len(s.Next(nil, t0)) != 0 {
		t.Fatal("window overrun")
	}
}

func TestQoS2StateMachine(t *testing.T) {
	s := New("c", Limits{})
	d, _ := s.Offer(&Delivery{Msg: msg("x"), QoS: 2}, true, t0)
	if _, err := s.Pubcomp(d.PacketID); !errors.Is(err, ErrWrongState) {
		t.Fatalf("PUBCOMP before PUBREC: %v", err)
	}
	if _, rel, err := s.Pubrec(d.PacketID, false); !rel || err != nil {
		t.Fatalf("pubrec: %v %v", rel, err)
	}
	if _, rel, err := s.Pubrec(d.PacketID, false); !rel || err != nil {
		t.Fatalf("repeated pubrec must release again: %v %v", rel, err)
	}
	if _, err := s.Puback(d.PacketID); !errors.Is(err, ErrWrongState) {
		t.Fatalf("PUBACK on QoS 2: %v", err)
	}
	if _, err := s.Pubcomp(d.PacketID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pubcomp(d.PacketID); !errors.Is(err, ErrUnknownPacket) {
		t.Fatalf("second PUBCOMP: %v", err)
	}
}

func TestPubrecFailureEndsDelivery(t *testing.T) {
	s := New("c", Limits{})
	d, _ := s.Offer(&Delivery{Msg: msg("x"), QoS: 2}, true, t0)
	if _, rel, err := s.Pubrec(d.PacketID, true); rel || err != nil {
		t.Fatalf("got %v %v", rel, err)
	}
	if s.InflightLen() != 0 {
		t.Fatal("delivery still inflight")
	}
}

func TestQueueLimits(t *testing.T) {
	cases := []struct {
		name    string
		limits  Limits
		offers  int
		queued  int
		dropped uint64
	}{
		{"by count", Limits{MaxQueued: 3}, 5, 3, 2},
		{"by bytes", Limits{MaxQueuedBytes: 10}, 5, 2, 3},
		{"unlimited", Limits{}, 50, 50, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := New("c", c.limits)
			for range c.offers {
				s.Offer(&Delivery{Msg: msg("12345"), QoS: 1}, false, t0)
			}
			if s.QueueLen() != c.queued || s.Dropped != c.dropped {
				t.Fatalf("queued %d dropped %d", s.QueueLen(), s.Dropped)
			}
		})
	}
}

func TestQoS0OfflineQueuedOnlyWhenAsked(t *testing.T) {
	s := New("c", Limits{})
	s.Offer(&Delivery{Msg: msg("x")}, false, t0)
	if s.QueueLen() != 0 {
		t.Fatal("QoS 0 queued offline")
	}
	s.Limits.QueueQoS0 = true
	s.Offer(&Delivery{Msg: msg("x")}, false, t0)
	if s.QueueLen() != 1 {
		t.Fatal("QoS 0 not queued with QueueQoS0")
	}
	s.DropQoS0()
	if s.QueueLen() != 0 || s.QueuedBytes() != 0 {
		t.Fatal("DropQoS0 left something")
	}
}

func TestExpiredMessagesAreNotSent(t *testing.T) {
	s := New("c", Limits{})
	m := msg("x")
	m.ExpiresAt = t0.Add(time.Second)
	s.Offer(&Delivery{Msg: m, QoS: 1}, false, t0)
	if got := s.Next(nil, t0.Add(2*time.Second)); len(got) != 0 || s.Expired != 1 {
		t.Fatalf("sent %d expired %d", len(got), s.Expired)
	}
	if rem, ok := m.RemainingExpiry(t0.Add(300 * time.Millisecond)); !ok || rem != 1 {
		t.Fatalf("remaining %d %v", rem, ok)
	}
}

func TestInflightKeepsSendOrderAndIDsWrap(t *testing.T) {
	s := New("c", Limits{})
	s.nextSeq = 65533 // identifiers derive from Seq: 65534, 65535, 65536
	var ids []uint16
	for range 3 {
		d, _ := s.Offer(&Delivery{Msg: msg("x"), QoS: 1}, true, t0)
		ids = append(ids, d.PacketID)
	}
	if ids[0] != 65535 || ids[1] != 1 || ids[2] != 2 {
		t.Fatalf("ids %v", ids)
	}
	got := s.Inflight(nil)
	for i, d := range got {
		if d.PacketID != ids[i] {
			t.Fatalf("order %v", got)
		}
	}
}

func TestIncomingQoS2(t *testing.T) {
	s := New("c", Limits{})
	if !s.ReceiveQoS2(5) || s.ReceiveQoS2(5) {
		t.Fatal("duplicate not detected")
	}
	if s.IncomingQoS2() != 1 || !s.Pubrel(5) || s.Pubrel(5) {
		t.Fatal("pubrel bookkeeping")
	}
	if !s.ReceiveQoS2(5) {
		t.Fatal("id reusable after PUBREL")
	}
}

func TestPacketIDDerivedFromSeqFallsBackWhenTaken(t *testing.T) {
	s := New("c", Limits{})
	a, _ := s.Offer(&Delivery{Seq: 5, Msg: msg("a"), QoS: 1}, true, t0)
	b, _ := s.Offer(&Delivery{Seq: 5 + 65535, Msg: msg("b"), QoS: 1}, true, t0)
	if a.PacketID != 6 || b.PacketID == 6 || b.PacketID == 0 {
		t.Fatalf("ids %d %d", a.PacketID, b.PacketID)
	}
}

func TestRestore(t *testing.T) {
	s := New("c", Limits{MaxInflight: 10})
	s.Restore(&Delivery{Seq: 3, Msg: msg("q"), QoS: 1, State: Queued})
	s.Restore(&Delivery{Seq: 1, Msg: msg("a"), QoS: 1, State: AwaitPuback, PacketID: 2})
	s.Restore(&Delivery{Seq: 2, Msg: msg("b"), QoS: 2, State: AwaitPubcomp, PacketID: 3})
	s.Restore(&Delivery{Seq: 4, Msg: msg("c"), QoS: 2, State: AwaitPubrec, PacketID: 3}) // id clash: queued
	if s.InflightLen() != 2 || s.QueueLen() != 2 {
		t.Fatalf("inflight %d queue %d", s.InflightLen(), s.QueueLen())
	}
	if _, err := s.Pubcomp(3); err != nil {
		t.Fatal(err)
	}
	next := s.Next(nil, t0)
	if len(next) != 2 || next[0].Seq != 3 || next[1].Seq != 4 {
		t.Fatalf("next %v", next)
	}
	d, _ := s.Offer(&Delivery{Msg: msg("new"), QoS: 1}, true, t0)
	if d == nil || d.Seq != 5 {
		t.Fatalf("seq after restore: %+v", d)
	}
}

func TestCancel(t *testing.T) {
	s := New("c", Limits{MaxInflight: 1})
	a, _ := s.Offer(&Delivery{Msg: msg("a"), QoS: 1}, true, t0)
	b := &Delivery{Msg: msg("b"), QoS: 1}
	s.Offer(b, true, t0)
	if !s.IsInflight(a) || s.IsInflight(b) {
		t.Fatal("IsInflight")
	}
	if !s.Cancel(b) || s.QueueLen() != 0 || s.QueuedBytes() != 0 {
		t.Fatal("cancel queued")
	}
	if !s.Cancel(a) || s.InflightLen() != 0 || s.Cancel(a) {
		t.Fatal("cancel inflight")
	}
}

func TestHeldDeliveriesBlockLaterOnes(t *testing.T) {
	s := New("c", Limits{MaxInflight: 1})
	a := &Delivery{Msg: msg("a"), QoS: 1, Hold: true}
	if got, _ := s.Offer(a, true, t0); got != a {
		t.Fatal("a not started")
	}
	b := &Delivery{Msg: msg("b"), QoS: 1}
	s.Offer(b, true, t0)
	s.Limits.MaxInflight = 5
	if got := s.Next(nil, t0); len(got) != 0 {
		t.Fatal("b overtook held a")
	}
	s.Release(a)
	if got := s.Next(nil, t0); len(got) != 1 || got[0] != b {
		t.Fatalf("after release: %v", got)
	}
	c := &Delivery{Msg: msg("c"), QoS: 1, Hold: true}
	s.Limits.MaxInflight = 2
	s.Offer(c, true, t0) // window full: queued, held
	s.Puback(a.PacketID)
	if got := s.Next(nil, t0); len(got) != 0 {
		t.Fatal("held queue head given out")
	}
	s.Release(c)
	if got := s.Next(nil, t0); len(got) != 1 || got[0] != c {
		t.Fatalf("c: %v", got)
	}
}

func TestTakeGone(t *testing.T) {
	s := New("c", Limits{MaxInflight: 1, QueueQoS0: true})
	a, _ := s.Offer(&Delivery{Msg: msg("a"), QoS: 1}, true, t0)
	m := msg("late")
	m.ExpiresAt = t0.Add(time.Second)
	s.Offer(&Delivery{Msg: m, QoS: 1}, true, t0)
	s.Offer(&Delivery{Msg: msg("q0")}, false, t0)
	s.Forget(a.PacketID)
	s.Next(nil, t0.Add(2*time.Second)) // the expired one goes
	s.DropQoS0()
	got := s.TakeGone(nil)
	if len(got) != 2 || got[0] != a || got[1].Msg != m {
		t.Fatalf("gone %v", got)
	}
	if len(s.TakeGone(nil)) != 0 {
		t.Fatal("TakeGone twice")
	}
}
