package meta

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var abc = []string{"a", "b", "c"}

// ownerEverywhere waits until every named node sees want for clientID
// (the zero Owner: no entry).
func (c *cluster) ownerEverywhere(clientID string, want Owner, names ...string) {
	c.t.Helper()
	eventually(c.t, 5*time.Second, func() bool {
		for _, n := range names {
			got, ok := c.node(n).reg.Owner(clientID)
			if ok != (want != Owner{}) || got != want {
				return false
			}
		}
		return true
	}, "owner of %q is not %+v everywhere", clientID, want)
}

func TestThreeNodes(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.bootstrap(abc...)
	leader := c.leader(abc...)
	fol := follower(leader, abc...)
	lr, fr := c.node(leader).reg, c.node(fol).reg
	ctx := ctxTimeout(t, 20*time.Second)

	for _, n := range abc {
		if !c.node(n).reg.HasState() {
			t.Errorf("%s: HasState false after bootstrap", n)
		}
	}

	// A claim from a follower is forwarded; one from the leader applied.
	prev, e1, err := fr.Claim(ctx, "client-1", fol)
	if err != nil {
		t.Fatal(err)
	}
	if prev != (Owner{}) || e1 == 0 {
		t.Fatalf("first claim: prev %+v epoch %d", prev, e1)
	}
	c.ownerEverywhere("client-1", Owner{Node: fol, Epoch: e1}, abc...)

	prev, e2, err := lr.Claim(ctx, "client-1", leader)
	if err != nil {
		t.Fatal(err)
	}
	if prev != (Owner{Node: fol, Epoch: e1}) || e2 <= e1 {
		t.Fatalf("takeover: prev %+v epoch %d (first epoch %d)", prev, e2, e1)
	}
	c.ownerEverywhere("client-1", Owner{Node: leader, Epoch: e2}, abc...)

	// Release is a compare-and-delete: a stale epoch or another node is a
	// no-op, not an error.
	if err := fr.Release(ctx, "client-1", fol, e1); err != nil {
		t.Fatal(err)
	}
	if err := fr.Release(ctx, "client-1", fol, e2); err != nil {
		t.Fatal(err)
	}
	if err := fr.Release(ctx, "missing", fol, e2); err != nil {
		t.Fatal(err)
	}
	// A barrier: once this claim is everywhere, the releases before it
	// were applied too.
	_, e3, err := fr.Claim(ctx, "client-2", fol)
	if err != nil {
		t.Fatal(err)
	}
	c.ownerEverywhere("client-2", Owner{Node: fol, Epoch: e3}, abc...)
	c.ownerEverywhere("client-1", Owner{Node: leader, Epoch: e2}, abc...)

	if err := fr.Release(ctx, "client-1", leader, e2); err != nil {
		t.Fatal(err)
	}
	c.ownerEverywhere("client-1", Owner{}, abc...)

	// Concurrent claims from every node, over pooled connections.
	var wg sync.WaitGroup
	errs := make(chan error, 60)
	epochs := make(chan uint64, 60)
	for _, n := range abc {
		r := c.node(n).reg
		for i := range 20 {
			wg.Go(func() {
				_, e, err := r.Claim(ctx, fmt.Sprintf("%s-%d", n, i), n)
				errs <- err
				epochs <- e
			})
		}
	}
	wg.Wait()
	close(errs)
	close(epochs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	seen := map[uint64]bool{}
	for e := range epochs {
		if seen[e] {
			t.Fatalf("epoch %d given twice", e)
		}
		seen[e] = true
	}

	// PurgeNode, from a follower, deletes exactly that node's entries.
	n, err := fr.PurgeNode(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	wantPurged := 20
	if fol == "b" {
		wantPurged++ // client-2
	}
	if n != wantPurged {
		t.Fatalf("PurgeNode(b) = %d, want %d", n, wantPurged)
	}
	eventually(t, 5*time.Second, func() bool {
		for _, nd := range abc {
			if c.node(nd).reg.Status().Sessions != 61-wantPurged {
				return false
			}
		}
		return true
	}, "sessions after purge")
	if n, err := lr.PurgeNode(ctx, "b"); err != nil || n != 0 {
		t.Fatalf("second PurgeNode(b) = %d, %v", n, err)
	}

	st := lr.Status()
	if st.State != "Leader" || st.Leader != leader || len(st.Servers) != 3 || st.AppliedIndex == 0 || st.LastIndex < st.AppliedIndex {
		t.Fatalf("leader status %+v", st)
	}
	if st := fr.Status(); st.State != "Follower" || st.Leader != leader {
		t.Fatalf("follower status %+v", st)
	}
}

func TestInvalidWrites(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.bootstrap("a")
	r := c.node("a").reg
	ctx := ctxTimeout(t, 5*time.Second)
	long := strings.Repeat("x", MaxNodeLen+1)
	for name, err := range map[string]error{
		"empty client":  func() error { _, _, err := r.Claim(ctx, "", "a"); return err }(),
		"empty node":    func() error { _, _, err := r.Claim(ctx, "c", ""); return err }(),
		"long node":     func() error { _, _, err := r.Claim(ctx, "c", long); return err }(),
		"long client":   func() error { _, _, err := r.Claim(ctx, strings.Repeat("x", MaxClientIDLen+1), "a"); return err }(),
		"release empty": r.Release(ctx, "", "a", 1),
		"purge empty":   func() error { _, err := r.PurgeNode(ctx, ""); return err }(),
		"bootstrap":     r.Bootstrap([]Server{{ID: "other", Addr: "127.0.0.1:1"}}),
	} {
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err %v, want ErrInvalid", name, err)
		}
	}
	// The longest client id fits in a frame and in the log.
	if _, _, err := r.Claim(ctx, strings.Repeat("x", MaxClientIDLen), strings.Repeat("n", MaxNodeLen)); err != nil {
		t.Fatal(err)
	}
}

func TestLongestIDForwarded(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.bootstrap(abc...)
	leader := c.leader(abc...)
	fr := c.node(follower(leader, abc...)).reg
	id, nodeName := strings.Repeat("x", MaxClientIDLen), strings.Repeat("n", MaxNodeLen)
	_, e, err := fr.Claim(ctxTimeout(t, 10*time.Second), id, nodeName)
	if err != nil {
		t.Fatal(err)
	}
	c.ownerEverywhere(id, Owner{Node: nodeName, Epoch: e}, abc...)
}

func TestLeaderFailoverAndMinority(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.bootstrap(abc...)
	leader := c.leader(abc...)
	ctx := ctxTimeout(t, 30*time.Second)
	fr := c.node(follower(leader, abc...)).reg
	_, e1, err := fr.Claim(ctx, "client", "a")
	if err != nil {
		t.Fatal(err)
	}

	// Kill the leader: the two others elect a new one, and writes from
	// either keep working (the follower's pooled connection to the old
	// leader is dead and must be replaced).
	c.stop(leader)
	rest := slices.DeleteFunc(slices.Clone(abc), func(n string) bool { return n == leader })
	newLeader := c.leader(rest...)
	if newLeader == leader {
		t.Fatal("old leader still leads")
	}
	for _, n := range rest {
		prev, e, err := c.node(n).reg.Claim(ctx, "client", n)
		if err != nil {
			t.Fatalf("claim on %s after failover: %v", n, err)
		}
		if e <= e1 || prev.Node == "" {
			t.Fatalf("claim on %s after failover: prev %+v epoch %d", n, prev, e)
		}
		e1 = e
	}
	c.ownerEverywhere("client", Owner{Node: rest[1], Epoch: e1}, rest...)

	// Kill one more: the last node is a minority and cannot write.
	c.stop(rest[0])
	last := c.node(rest[1]).reg
	start := time.Now()
	wctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, _, err = last.Claim(wctx, "other", rest[1])
	if !errors.Is(err, ErrNoLeader) {
		t.Fatalf("minority claim: %v, want ErrNoLeader", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("minority claim took %v with a 1 s ctx", d)
	}
	// Reads still work from the local copy.
	if o, ok := last.Owner("client"); !ok || o.Epoch != e1 {
		t.Fatalf("local read in minority: %+v %v", o, ok)
	}
}

func TestReconcile(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	all := []string{"a", "b", "c", "d", "e"}
	c.bootstrap(abc...)
	c.start("d", "", "")
	c.start("e", "", "")
	leader := c.leader(abc...)
	lr := c.node(leader).reg
	ctx := ctxTimeout(t, 30*time.Second)

	// Followers do nothing.
	if err := c.node(follower(leader, abc...)).reg.Reconcile(ctx, c.servers(all...), nil, time.Minute); err != nil {
		t.Fatal(err)
	}
	if c.node("d").reg.HasState() {
		t.Fatal("d has state before it was added")
	}

	// Five alive: d and e join as nonvoters, then are promoted.
	if err := lr.Reconcile(ctx, c.servers(all...), nil, time.Minute); err != nil {
		t.Fatal(err)
	}
	v, nv := voters(lr)
	if len(v) != 3 || !slices.Equal(nv, []string{"d", "e"}) {
		t.Fatalf("after the first reconcile: voters %v nonvoters %v", v, nv)
	}
	eventually(t, 10*time.Second, func() bool {
		if err := lr.Reconcile(ctx, c.servers(all...), nil, time.Minute); err != nil {
			t.Fatal(err)
		}
		v, _ := voters(lr)
		return len(v) == 5
	}, "five voters")
	for _, n := range all {
		eventually(t, 5*time.Second, func() bool { return c.node(n).reg.HasState() && len(c.node(n).reg.Status().Servers) == 5 },
			"%s sees five servers", n)
	}
	// Writes from a new member work, and reach everyone.
	_, e, err := c.node("e").reg.Claim(ctx, "from-e", "e")
	if err != nil {
		t.Fatal(err)
	}
	c.ownerEverywhere("from-e", Owner{Node: "e", Epoch: e}, all...)

	// Two followers die. Before the dead timeout they stay voters (there
	// is no nonvoter to promote, and three alive voters meet the target
	// for three alive nodes).
	var victims []string
	for _, n := range all {
		if n != leader && len(victims) < 2 {
			victims = append(victims, n)
		}
	}
	if _, _, err := lr.Claim(ctx, "owned-by-victim", victims[0]); err != nil {
		t.Fatal(err)
	}
	for _, n := range victims {
		c.stop(n)
	}
	var alive []string
	for _, n := range all {
		if !slices.Contains(victims, n) {
			alive = append(alive, n)
		}
	}
	now := time.Now()
	dead := map[string]time.Time{victims[0]: now, victims[1]: now}
	if err := lr.Reconcile(ctx, c.servers(alive...), dead, time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, _ := voters(lr); len(v) != 5 {
		t.Fatalf("voters %v: removed before the dead timeout", v)
	}
	// Dead for longer than the timeout: removed, and its entries purged.
	dead[victims[0]] = now.Add(-2 * time.Minute)
	if err := lr.Reconcile(ctx, c.servers(alive...), dead, time.Minute); err != nil {
		t.Fatal(err)
	}
	v, _ = voters(lr)
	if len(v) != 4 || slices.Contains(v, victims[0]) {
		t.Fatalf("voters %v after %s timed out", v, victims[0])
	}
	c.ownerEverywhere("owned-by-victim", Owner{}, alive...)
	// The leader itself is never removed, even if reported dead.
	if err := lr.Reconcile(ctx, c.servers(alive...), map[string]time.Time{leader: now.Add(-time.Hour)}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, _ := voters(lr); !slices.Contains(v, leader) {
		t.Fatalf("leader removed: voters %v", v)
	}
}

func TestReconcileReplacesDeadVoter(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.bootstrap(abc...)
	c.start("d", "", "")
	leader := c.leader(abc...)
	lr := c.node(leader).reg
	ctx := ctxTimeout(t, 30*time.Second)
	abcd := []string{"a", "b", "c", "d"}

	// Four alive: target 3, so d stays a nonvoter however often we call.
	for range 3 {
		if err := lr.Reconcile(ctx, c.servers(abcd...), nil, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if v, nv := voters(lr); len(v) != 3 || !slices.Equal(nv, []string{"d"}) {
		t.Fatalf("voters %v nonvoters %v", v, nv)
	}
	eventually(t, 5*time.Second, func() bool { return c.node("d").reg.HasState() }, "d has state")

	// A voter dies: d is promoted at once, well before the timeout.
	victim := follower(leader, abc...)
	c.stop(victim)
	var alive []string
	for _, n := range abcd {
		if n != victim {
			alive = append(alive, n)
		}
	}
	dead := map[string]time.Time{victim: time.Now()}
	if err := lr.Reconcile(ctx, c.servers(alive...), dead, time.Minute); err != nil {
		t.Fatal(err)
	}
	v, _ := voters(lr)
	if len(v) != 4 || !slices.Contains(v, "d") || !slices.Contains(v, victim) {
		t.Fatalf("voters %v after %s died", v, victim)
	}
	// The dead voter times out: back to three voters, all alive.
	dead[victim] = time.Now().Add(-time.Hour)
	if err := lr.Reconcile(ctx, c.servers(alive...), dead, time.Minute); err != nil {
		t.Fatal(err)
	}
	v, _ = voters(lr)
	slices.Sort(v)
	if !slices.Equal(v, alive) {
		t.Fatalf("voters %v, want %v", v, alive)
	}
	if _, _, err := c.node("d").reg.Claim(ctx, "x", "d"); err != nil {
		t.Fatal(err)
	}
}

func TestLeave(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.bootstrap(abc...)
	leader := c.leader(abc...)
	ctx := ctxTimeout(t, 30*time.Second)

	// The leader leaves: leadership moves, then it is removed.
	if err := c.node(leader).reg.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	c.stop(leader)
	rest := slices.DeleteFunc(slices.Clone(abc), func(n string) bool { return n == leader })
	newLeader := c.leader(rest...)
	eventually(t, 5*time.Second, func() bool { return len(c.node(newLeader).reg.Status().Servers) == 2 }, "leader removed")

	// A follower leaves.
	fol := follower(newLeader, rest...)
	if err := c.node(fol).reg.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	c.stop(fol)
	lr := c.node(newLeader).reg
	if v, nv := voters(lr); !slices.Equal(v, []string{newLeader}) || len(nv) != 0 {
		t.Fatalf("voters %v nonvoters %v", v, nv)
	}
	// Alone, it is its own quorum; leaving is a no-op.
	if _, _, err := lr.Claim(ctx, "x", newLeader); err != nil {
		t.Fatal(err)
	}
	if err := lr.Leave(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestRestartFromDisk(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	dir := t.TempDir()
	r := c.start("a", dir, "")
	if r.HasState() {
		t.Fatal("HasState on an empty dir")
	}
	addr := c.node("a").addr
	if err := r.Bootstrap(c.servers("a")); err != nil {
		t.Fatal(err)
	}
	if err := r.Bootstrap(c.servers("a")); err != nil {
		t.Fatalf("second bootstrap: %v", err)
	}
	c.leader("a")
	ctx := ctxTimeout(t, 20*time.Second)
	want := map[string]Owner{}
	claim := func(r *Registry, id string) {
		t.Helper()
		_, e, err := r.Claim(ctx, id, "a")
		if err != nil {
			t.Fatal(err)
		}
		want[id] = Owner{Node: "a", Epoch: e}
	}
	for i := range 50 {
		claim(r, fmt.Sprintf("c%d", i))
	}
	// Some entries are in a snapshot, the rest only in the log.
	if err := r.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	for i := 50; i < 80; i++ {
		claim(r, fmt.Sprintf("c%d", i))
	}
	if err := r.Release(ctx, "c0", "a", want["c0"].Epoch); err != nil {
		t.Fatal(err)
	}
	delete(want, "c0")
	c.stop("a")

	r = c.start("a", dir, addr)
	if !r.HasState() {
		t.Fatal("no state after restart")
	}
	if err := r.Bootstrap(c.servers("a")); err != nil {
		t.Fatalf("bootstrap with state: %v", err)
	}
	c.leader("a")
	eventually(t, 5*time.Second, func() bool { return r.Status().Sessions == len(want) }, "sessions restored")
	for id, o := range want {
		if got, ok := r.Owner(id); !ok || got != o {
			t.Fatalf("%s: %+v %v, want %+v", id, got, ok, o)
		}
	}
	// Epochs keep growing after a restart.
	_, e, err := r.Claim(ctx, "c1", "a")
	if err != nil || e <= want["c79"].Epoch {
		t.Fatalf("claim after restart: epoch %d, %v", e, err)
	}

	// A second registry on the same dir fails instead of hanging.
	start := time.Now()
	ln := listen(t)
	_, err = Open(Config{NodeName: "z", Addr: ln.Addr().String(), Dir: dir, Layer: tcpLayer(ln), RPCListener: listen(t),
		DialRPC: c.dialRPC})
	if err == nil || time.Since(start) > 10*time.Second {
		t.Fatalf("second Open on one dir: %v after %v", err, time.Since(start))
	}
}

// TestSnapshotInstall forces a snapshot, truncates the log behind it, and
// adds a node: it can only catch up through the snapshot.
func TestSnapshotInstall(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	small := func(cfg *Config) { cfg.TrailingLogs = 1 }
	for _, n := range abc {
		c.start(n, t.TempDir(), "", small)
	}
	for _, n := range abc {
		if err := c.node(n).reg.Bootstrap(c.servers(abc...)); err != nil {
			t.Fatal(err)
		}
	}
	leader := c.leader(abc...)
	lr := c.node(leader).reg
	ctx := ctxTimeout(t, 30*time.Second)
	for i := range 100 {
		if _, _, err := lr.Claim(ctx, fmt.Sprintf("c%d", i), abc[i%3]); err != nil {
			t.Fatal(err)
		}
	}
	if err := lr.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	_, last, err := lr.Claim(ctx, "after-snapshot", leader)
	if err != nil {
		t.Fatal(err)
	}

	c.start("d", "", "")
	eventually(t, 10*time.Second, func() bool {
		if err := lr.Reconcile(ctx, c.servers("a", "b", "c", "d"), nil, time.Minute); err != nil {
			t.Fatal(err)
		}
		return c.node("d").reg.Status().Sessions == 101
	}, "d caught up")
	d := c.node("d").reg
	if o, _ := d.Owner("after-snapshot"); o != (Owner{Node: leader, Epoch: last}) {
		t.Fatalf("d: %+v", o)
	}
	if o, _ := d.Owner("c4"); o.Node != "b" {
		t.Fatalf("d: c4 owned by %+v", o)
	}
}

func TestOpenAndClose(t *testing.T) {
	t.Parallel()
	ln, rpcLn := listen(t), listen(t)
	_, err := Open(Config{Layer: tcpLayer(ln), RPCListener: rpcLn})
	if err == nil {
		t.Fatal("Open with no name, address or dialer")
	}
	for _, want := range []string{"NodeName", "Addr", "DialRPC"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	// Open took the listeners and closed them.
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("layer not closed: %v", err)
	}
	if _, err := rpcLn.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("RPC listener not closed: %v", err)
	}

	c := newCluster(t)
	r := c.start("a", "", "", func(cfg *Config) { cfg.Logger = nil })
	if r.HasState() {
		t.Fatal("in-memory node has state before bootstrap")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, _, err := r.Claim(ctx, "x", "a"); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("claim before bootstrap: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Claim(context.Background(), "x", "a"); !errors.Is(err, ErrClosed) {
		t.Fatalf("claim after close: %v", err)
	}
	if st := r.Status(); st.State != "Shutdown" {
		t.Fatalf("state after close: %s", st.State)
	}
	if err := r.Bootstrap(c.servers("a")); err != nil && !errors.Is(err, ErrClosed) {
		t.Fatalf("bootstrap after close: %v", err)
	}
}

// TestRPCEndpoint talks to the forwarding endpoint directly.
func TestRPCEndpoint(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.bootstrap("a")
	c.leader("a")
	conn, err := c.dialRPC(context.Background(), c.node("a").addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	rc := &rpcConn{c: conn, br: newReader(conn)}
	roundTrip := func(payload []byte) response {
		t.Helper()
		if err := writeFrame(conn, append([]byte{0, 0, 0, 0}, payload...)); err != nil {
			t.Fatal(err)
		}
		b, err := readFrame(rc.br, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := decodeResponse(b)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	ok := roundTrip(request{kind: reqApply, timeout: time.Second, cmd: command{op: opClaim, clientID: "x", node: "a"}}.appendTo(nil))
	if ok.status != statusOK || ok.res.index == 0 {
		t.Fatalf("claim: %+v", ok)
	}
	bad := roundTrip([]byte{rpcVersion, 9, 1})
	if bad.status != statusFailed || !strings.Contains(bad.msg, "invalid") {
		t.Fatalf("bad request: %+v", bad)
	}
	// The connection survives a bad request, but not a bad frame.
	again := roundTrip(request{kind: reqApply, timeout: time.Second, cmd: command{op: opRelease, clientID: "x", node: "a", epoch: ok.res.index}}.appendTo(nil))
	if again.status != statusOK || again.res.deleted != 1 {
		t.Fatalf("release: %+v", again)
	}
	if _, err := conn.Write([]byte{0xff, 0xff, 0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	if _, err := readFrame(rc.br, nil); err == nil {
		t.Fatal("connection still open after an oversized frame")
	}
}
