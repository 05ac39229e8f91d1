package store

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/starlingmq/starling/internal/broker"
)

// nthOp is an errorfs injector that, once armed, fails the nth operation
// that match reports, and every matching one after it (a dead disk does
// not come back). It counts what it saw.
type nthOp struct {
	match func(op errorfs.Op) bool
	armed atomic.Bool
	n     atomic.Int64 // matching ops left before the failure
	seen  atomic.Int64
}

func (f *nthOp) String() string { return "nthOp" }

func (f *nthOp) MaybeError(op errorfs.Op) error {
	if !f.armed.Load() || !f.match(op) {
		return nil
	}
	f.seen.Add(1)
	if f.n.Add(-1) <= 0 {
		return errorfs.ErrInjected
	}
	return nil
}

func (f *nthOp) arm(n int) {
	f.n.Store(int64(n))
	f.armed.Store(true)
}

func isWAL(op errorfs.Op) bool { return strings.HasSuffix(op.Path, ".log") }

func isSync(op errorfs.Op) bool {
	switch op.Kind {
	case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
		return true
	}
	return false
}

// faultBatch is batch k of the fault and crash tests: three records that
// must appear together or not at all.
func faultBatch(b *broker.Batch, id string, k int) {
	b.PutDelivery(id, &broker.DeliveryRecord{Seq: uint64(k), Message: broker.MessageRecord{Topic: "t", Payload: make([]byte, 100)}})
	b.PutSubscription(id, &broker.SubscriptionRecord{Filter: fmt.Sprintf("f/%d", k)})
	b.PutIncoming(id, uint16(k))
}

// batchesOf returns, per client id, which faultBatch numbers are in s, and
// fails the test on a batch found in part.
func batchesOf(t *testing.T, s broker.Store) map[string]map[int]bool {
	t.Helper()
	type parts struct{ d, s, i bool }
	found := map[string]map[int]*parts{}
	get := func(id string, k int) *parts {
		if found[id] == nil {
			found[id] = map[int]*parts{}
		}
		if found[id][k] == nil {
			found[id][k] = &parts{}
		}
		return found[id][k]
	}
	for _, e := range load(t, s) {
		switch r := e.Rec.(type) {
		case *broker.DeliveryRecord:
			get(e.ClientID, int(r.Seq)).d = true
		case *broker.SubscriptionRecord:
			var k int
			fmt.Sscanf(r.Filter, "f/%d", &k)
			get(e.ClientID, k).s = true
		case uint16:
			get(e.ClientID, int(r)).i = true
		}
	}
	out := map[string]map[int]bool{}
	for id, m := range found {
		out[id] = map[int]bool{}
		for k, p := range m {
			if !(p.d && p.s && p.i) {
				t.Fatalf("batch %d of %q half applied: %+v", k, id, *p)
			}
			out[id][k] = true
		}
	}
	return out
}

// A WAL write or sync that fails under Apply: that Apply returns an error
// (Pebble's Fatalf is recovered), the store refuses later writes, Close
// does not hang or panic, and after reopening every acknowledged batch is
// there, the failed one whole or not at all, nothing after it.
func TestApplyFailsOnWALFault(t *testing.T) {
	kinds := []struct {
		name  string
		match func(op errorfs.Op) bool
	}{
		{"sync", func(op errorfs.Op) bool { return isWAL(op) && isSync(op) }},
		{"write", func(op errorfs.Op) bool { return isWAL(op) && op.Kind == errorfs.OpFileWrite }},
		{"any write op", func(op errorfs.Op) bool { return op.Kind.ReadOrWrite() == errorfs.OpIsWrite }},
	}
	for _, kind := range kinds {
		for _, async := range []bool{false, true} {
			for n := 1; n <= 4; n++ {
				t.Run(fmt.Sprintf("%s/async=%v/%d", kind.name, async, n), func(t *testing.T) {
					dir := t.TempDir()
					inj := &nthOp{match: kind.match}
					s, err := Open(Options{Dir: dir, FS: errorfs.Wrap(vfs.Default, inj)})
					if err != nil {
						t.Fatal(err)
					}
					ctx := context.Background()
					const acked0 = 5
					for k := range acked0 {
						var b broker.Batch
						faultBatch(&b, "c", k)
						if err := s.Apply(ctx, &b, true); err != nil {
							t.Fatal(err)
						}
					}
					inj.arm(n)
					lastAcked, failedAt := acked0-1, -1
					for k := acked0; k < 100; k++ {
						var b broker.Batch
						faultBatch(&b, "c", k)
						if err := applySync(ctx, s, &b, async); err != nil {
							t.Logf("Apply %d: %v", k, err)
							failedAt = k
							break
						}
						lastAcked = k
					}
					if failedAt < 0 {
						t.Fatalf("no Apply failed (%d matching ops seen)", inj.seen.Load())
					}
					var b broker.Batch
					faultBatch(&b, "c", failedAt+1)
					if err := s.Apply(ctx, &b, true); err == nil {
						t.Fatal("Apply after a failed commit succeeded")
					}
					if err := s.Load(ctx, &recorder{}); err == nil {
						t.Fatal("Load after a failed commit succeeded")
					}
					t.Logf("Close: %v", s.Close())

					s = openPebbleT(t, dir)
					got := batchesOf(t, s)["c"]
					for k := 0; k <= lastAcked; k++ {
						if !got[k] {
							t.Errorf("acknowledged batch %d lost", k)
						}
					}
					for k := range got {
						if k > failedAt {
							t.Errorf("batch %d, after the failed one, found", k)
						}
					}
					t.Logf("failed batch %d present after reopen: %v", failedAt, got[failedAt])
					if err := s.Close(); err != nil {
						t.Fatal(err)
					}
				})
			}
		}
	}
}

// applySync applies b durably through Apply or through ApplyAsync and its
// wait.
func applySync(ctx context.Context, s *Pebble, b *broker.Batch, async bool) error {
	if !async {
		return s.Apply(ctx, b, true)
	}
	wait, err := s.ApplyAsync(ctx, b)
	if err != nil {
		return err
	}
	return wait()
}

// Fail the nth write operation of any kind from the start, Open included,
// for every n until a run sees no failure: Open or Apply returns an error,
// nothing panics, and a reopen without faults finds every acknowledged
// batch.
func TestFaultAtEveryWriteOp(t *testing.T) {
	for n := 1; ; n++ {
		if n > 200 {
			t.Fatal("still failing after 200 ops")
		}
		dir := t.TempDir()
		inj := &nthOp{match: func(op errorfs.Op) bool { return op.Kind.ReadOrWrite() == errorfs.OpIsWrite }}
		inj.arm(n)
		acked := -1
		failed := false
		s, err := Open(Options{Dir: dir, FS: errorfs.Wrap(vfs.Default, inj)})
		if err != nil {
			failed = true
		} else {
			for k := range 10 {
				var b broker.Batch
				faultBatch(&b, "c", k)
				if err := s.Apply(context.Background(), &b, k%2 == 0); err != nil {
					failed = true
					break
				}
				acked = k
			}
			if err := s.Close(); err != nil {
				failed = true
			}
		}
		if !failed && inj.seen.Load() < int64(n) {
			t.Logf("no failure with n=%d: done (%d write ops in a run)", n, inj.seen.Load())
			return
		}
		s, err = Open(Options{Dir: dir})
		if err != nil {
			t.Fatalf("n=%d: reopen without faults: %v", n, err)
		}
		got := batchesOf(t, s)["c"]
		// NoSync batches (odd k) are acknowledged without durability; an
		// even k acknowledged implies every k before it.
		for k := 0; k <= acked; k++ {
			if !got[k] && acked%2 == 0 {
				t.Errorf("n=%d: acknowledged batch %d lost", n, k)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// A store whose WAL sync failed heals by itself once writes work again
// (a full disk that got space back): after ReopenInterval, the next Apply
// reopens the folder and succeeds, and everything acknowledged is there.
func TestFailedStoreReopens(t *testing.T) {
	dir := t.TempDir()
	inj := &nthOp{match: func(op errorfs.Op) bool { return isWAL(op) && isSync(op) }}
	s, err := Open(Options{Dir: dir, FS: errorfs.Wrap(vfs.Default, inj), ReopenInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var b broker.Batch
	faultBatch(&b, "c", 0)
	if err := s.Apply(ctx, &b, true); err != nil {
		t.Fatal(err)
	}
	inj.arm(1)
	faultBatch(&b, "c", 1)
	if err := s.Apply(ctx, &b, true); err == nil {
		t.Fatal("the injected sync failure was not reported")
	}
	b.Reset()
	faultBatch(&b, "c", 2)
	if err := s.Apply(ctx, &b, true); err == nil {
		t.Fatal("Apply right after a failure succeeded: no reopen interval")
	}
	inj.armed.Store(false) // the disk works again
	deadline := time.Now().Add(5 * time.Second)
	for k := 3; ; k++ {
		b.Reset()
		faultBatch(&b, "c", k)
		err := s.Apply(ctx, &b, true)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the store never reopened: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	got := batchesOf(t, s)["c"]
	if !got[0] {
		t.Fatal("acknowledged batch 0 lost across the reopen")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
