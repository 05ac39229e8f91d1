package store

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/starlingmq/starling/internal/broker"
)

const killWorkers = 4

// killChild runs in a child process: it applies synced batches from
// killWorkers goroutines forever, printing "acked W K" after batch K of
// worker W is acknowledged, until the parent kills it. A small memtable
// makes flushes (and so MANIFEST writes) happen under the kill too.
func killChild(dir string) {
	s, err := Open(Options{Dir: dir, MemTableSize: 64 << 10})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: open:", err)
		os.Exit(2)
	}
	next := make(map[string]int)
	var rec recorder
	if err := s.Load(context.Background(), &rec); err != nil {
		fmt.Fprintln(os.Stderr, "child: load:", err)
		os.Exit(2)
	}
	for _, e := range rec.events {
		if d, ok := e.Rec.(*broker.DeliveryRecord); ok && int(d.Seq) >= next[e.ClientID] {
			next[e.ClientID] = int(d.Seq) + 1
		}
	}
	var out sync.Mutex
	var wg sync.WaitGroup
	for w := range killWorkers {
		id := fmt.Sprintf("w%d", w)
		wg.Go(func() {
			for k := next[id]; ; k++ {
				var b broker.Batch
				faultBatch(&b, id, k)
				if k%20 == 0 { // a range delete under the kill as well
					b.DeleteSession("churn-" + id)
					b.PutSession(session("churn-" + id))
				}
				// Odd workers go through ApplyAsync, as the broker does.
				if err := applySync(context.Background(), s, &b, w%2 == 1); err != nil {
					fmt.Fprintln(os.Stderr, "child: apply:", err)
					os.Exit(2)
				}
				out.Lock()
				fmt.Printf("acked %d %d\n", w, k)
				out.Unlock()
			}
		})
	}
	wg.Wait()
}

// The real crash test: a child process applies synced batches and is
// killed with SIGKILL at random moments; after each kill every batch it
// acknowledged is in the store, no batch is there in part, and each
// worker's batches form a prefix (nothing after a hole).
func TestKillDurability(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	dir := t.TempDir()
	acked := make([]int, killWorkers)
	for i := range acked {
		acked[i] = -1
	}
	rounds := 3 + rand.IntN(3)
	for round := range rounds {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envKillChild+"="+dir)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Let the child acknowledge a random number of batches, then kill
		// it at once: the kill lands at a random point of its work.
		target := 100 + rand.IntN(3000)
		sc := bufio.NewScanner(stdout)
		n := 0
		killed := false
		kill := func() {
			if !killed {
				killed = true
				_ = cmd.Process.Signal(syscall.SIGKILL)
			}
		}
		timer := time.AfterFunc(30*time.Second, kill)
		for sc.Scan() {
			var w, k int
			if _, err := fmt.Sscanf(sc.Text(), "acked %d %d", &w, &k); err != nil || w < 0 || w >= killWorkers {
				kill()
				t.Fatalf("child said %q", sc.Text())
			}
			acked[w] = max(acked[w], k)
			if n++; n == target {
				kill()
			}
		}
		timer.Stop()
		err = cmd.Wait()
		if !killed || stderr.Len() > 0 {
			t.Fatalf("round %d: child ended by itself (%v): %s", round, err, stderr.String())
		}

		s := openPebbleT(t, dir)
		found := batchesOf(t, s) // fails on a half-applied batch
		for w := range killWorkers {
			got := found[fmt.Sprintf("w%d", w)]
			for k := 0; k <= acked[w]; k++ {
				if !got[k] {
					t.Fatalf("round %d: worker %d: acknowledged batch %d lost (acked up to %d)", round, w, k, acked[w])
				}
			}
			for k := range got {
				if k > 0 && !got[k-1] {
					t.Fatalf("round %d: worker %d: batch %d present but %d missing", round, w, k, k-1)
				}
			}
		}
		ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
		t.Logf("round %d: killed after %d acks; acked up to %v; after reopen %d batches of worker 0; %d sstables",
			round, n, acked, len(found["w0"]), len(ssts))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
