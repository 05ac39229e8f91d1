package cluster

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/starlingmq/starling/internal/cluster/proto"
	"github.com/starlingmq/starling/internal/topic"
)

// interest is what Match reported for one node, sorted for comparison.
type interest struct {
	Direct bool
	Shared []SharedGroup
}

func matchAll(t *RouteTable, name string) map[string]interest {
	got := map[string]interest{}
	t.Match(name, func(node string, direct bool, shared []SharedGroup) {
		if _, dup := got[node]; dup {
			panic("node " + node + " reported twice")
		}
		got[node] = interest{direct, sortedGroups(slices.Clone(shared))}
	})
	return got
}

func sortedGroups(g []SharedGroup) []SharedGroup {
	if len(g) == 0 {
		return nil
	}
	slices.SortFunc(g, func(a, b SharedGroup) int {
		if c := strings.Compare(a.Filter, b.Filter); c != 0 {
			return c
		}
		return strings.Compare(a.Group, b.Group)
	})
	return g
}

func snap(origin string, inc, seq uint64, entries ...proto.RouteEntry) *proto.RouteSnapshot {
	return &proto.RouteSnapshot{Origin: origin, Incarnation: inc, Seq: seq, Entries: entries}
}

func delta(origin string, inc, seq uint64, changes ...proto.RouteChange) *proto.RouteDelta {
	return &proto.RouteDelta{Origin: origin, Incarnation: inc, Seq: seq, Changes: changes}
}

func entry(filter string, count uint32, groups ...proto.GroupCount) proto.RouteEntry {
	return proto.RouteEntry{Filter: filter, Count: count, Shared: groups}
}

// step is one update of a route table test: a snapshot part or a delta,
// and the error it must give.
type step struct {
	snap  *proto.RouteSnapshot
	delta *proto.RouteDelta
	err   error
}

func TestRouteTableSequencing(t *testing.T) {
	const n = "b"
	tests := []struct {
		name  string
		steps []step
		// after the steps: what node b holds and what topic "x" matches
		want     NodeRoutes
		wantX    bool
		wantNode bool
	}{
		{name: "snapshot",
			steps: []step{{snap: snap(n, 1, 5, entry("x", 1))}},
			want:  NodeRoutes{Incarnation: 1, Seq: 5, Synced: true, Filters: 1}, wantX: true, wantNode: true},
		{name: "delta-before-any-snapshot",
			steps: []step{{delta: delta(n, 1, 1, proto.RouteChange{Filter: "x", Count: 1}), err: ErrGap}}},
		{name: "next-delta",
			steps: []step{{snap: snap(n, 1, 5)}, {delta: delta(n, 1, 6, proto.RouteChange{Filter: "x", Count: 1})}},
			want:  NodeRoutes{Incarnation: 1, Seq: 6, Synced: true, Filters: 1}, wantX: true, wantNode: true},
		{name: "duplicate-delta-is-stale",
			steps: []step{{snap: snap(n, 1, 5)}, {delta: delta(n, 1, 6, proto.RouteChange{Filter: "x", Count: 1})},
				{delta: delta(n, 1, 6, proto.RouteChange{Filter: "x"}), err: ErrStale}},
			want: NodeRoutes{Incarnation: 1, Seq: 6, Synced: true, Filters: 1}, wantX: true, wantNode: true},
		{name: "delta-covered-by-snapshot-is-stale",
			steps: []step{{snap: snap(n, 1, 5, entry("x", 1))}, {delta: delta(n, 1, 5, proto.RouteChange{Filter: "x"}), err: ErrStale}},
			want:  NodeRoutes{Incarnation: 1, Seq: 5, Synced: true, Filters: 1}, wantX: true, wantNode: true},
		{name: "gap-keeps-old-routes-and-refuses-deltas",
			steps: []step{{snap: snap(n, 1, 5, entry("x", 1))},
				{delta: delta(n, 1, 7, proto.RouteChange{Filter: "x"}), err: ErrGap},
				{delta: delta(n, 1, 6, proto.RouteChange{Filter: "x"}), err: ErrGap}, // out of sync now
				{delta: delta(n, 1, 8), err: ErrGap}},
			want: NodeRoutes{Incarnation: 1, Seq: 5, Filters: 1}, wantX: true, wantNode: true},
		{name: "snapshot-after-gap-resyncs",
			steps: []step{{snap: snap(n, 1, 5, entry("x", 1))}, {delta: delta(n, 1, 7), err: ErrGap},
				{snap: snap(n, 1, 9)}, {delta: delta(n, 1, 10, proto.RouteChange{Filter: "y", Count: 2})}},
			want: NodeRoutes{Incarnation: 1, Seq: 10, Synced: true, Filters: 1}, wantNode: true},
		{name: "delta-of-new-incarnation-is-a-gap",
			steps: []step{{snap: snap(n, 1, 5, entry("x", 1))}, {delta: delta(n, 2, 1, proto.RouteChange{Filter: "x"}), err: ErrGap}},
			want:  NodeRoutes{Incarnation: 1, Seq: 5, Filters: 1}, wantX: true, wantNode: true},
		{name: "delta-of-old-incarnation-is-stale",
			steps: []step{{snap: snap(n, 2, 1, entry("x", 1))}, {delta: delta(n, 1, 9, proto.RouteChange{Filter: "x"}), err: ErrStale}},
			want:  NodeRoutes{Incarnation: 2, Seq: 1, Synced: true, Filters: 1}, wantX: true, wantNode: true},
		{name: "older-snapshot-is-stale",
			steps: []step{{snap: snap(n, 1, 5, entry("x", 1))}, {snap: snap(n, 1, 4), err: ErrStale}},
			want:  NodeRoutes{Incarnation: 1, Seq: 5, Synced: true, Filters: 1}, wantX: true, wantNode: true},
		{name: "snapshot-of-old-incarnation-is-stale",
			steps: []step{{snap: snap(n, 2, 1, entry("x", 1))}, {snap: snap(n, 1, 50), err: ErrStale}},
			want:  NodeRoutes{Incarnation: 2, Seq: 1, Synced: true, Filters: 1}, wantX: true, wantNode: true},
		{name: "same-snapshot-again-replaces",
			steps: []step{{snap: snap(n, 1, 5, entry("x", 1))}, {snap: snap(n, 1, 5, entry("y", 1))}},
			want:  NodeRoutes{Incarnation: 1, Seq: 5, Synced: true, Filters: 1}, wantNode: true},
		{name: "restarted-node-snapshot-replaces",
			steps: []step{{snap: snap(n, 1, 500, entry("x", 1))}, {snap: snap(n, 2, 0, entry("y", 1))}},
			want:  NodeRoutes{Incarnation: 2, Seq: 0, Synced: true, Filters: 1}, wantNode: true},
		{name: "snapshot-parts",
			steps: []step{{snap: snap(n, 1, 5, entry("x", 1))},
				{snap: &proto.RouteSnapshot{Origin: n, Incarnation: 1, Seq: 7, More: true, Entries: []proto.RouteEntry{entry("y", 1)}}},
				{snap: &proto.RouteSnapshot{Origin: n, Incarnation: 1, Seq: 7, Part: 1, More: true, Entries: []proto.RouteEntry{entry("z", 1)}}},
				{snap: &proto.RouteSnapshot{Origin: n, Incarnation: 1, Seq: 7, Part: 2, Entries: []proto.RouteEntry{entry("w", 1)}}}},
			want: NodeRoutes{Incarnation: 1, Seq: 7, Synced: true, Filters: 3}, wantNode: true},
		{name: "unfinished-snapshot-keeps-old-routes",
			steps: []step{{snap: snap(n, 1, 5, entry("x", 1))},
				{snap: &proto.RouteSnapshot{Origin: n, Incarnation: 1, Seq: 7, More: true, Entries: []proto.RouteEntry{entry("y", 1)}}}},
			want: NodeRoutes{Incarnation: 1, Seq: 5, Synced: true, Filters: 1}, wantX: true, wantNode: true},
		{name: "missing-part-is-a-gap",
			steps: []step{{snap: snap(n, 1, 5, entry("x", 1))},
				{snap: &proto.RouteSnapshot{Origin: n, Incarnation: 1, Seq: 7, More: true}},
				{snap: &proto.RouteSnapshot{Origin: n, Incarnation: 1, Seq: 7, Part: 2}, err: ErrGap},
				{snap: &proto.RouteSnapshot{Origin: n, Incarnation: 1, Seq: 7, Part: 1}, err: ErrGap}}, // staging dropped
			want: NodeRoutes{Incarnation: 1, Seq: 5, Synced: true, Filters: 1}, wantX: true, wantNode: true},
		{name: "part-of-another-snapshot-is-a-gap",
			steps: []step{{snap: &proto.RouteSnapshot{Origin: n, Incarnation: 1, Seq: 7, More: true}},
				{snap: &proto.RouteSnapshot{Origin: n, Incarnation: 1, Seq: 8, Part: 1}, err: ErrGap}},
			want: NodeRoutes{}, wantNode: true},
		{name: "delta-during-snapshot-is-a-gap",
			steps: []step{{snap: snap(n, 1, 5, entry("x", 1))},
				{snap: &proto.RouteSnapshot{Origin: n, Incarnation: 1, Seq: 7, More: true}},
				{delta: delta(n, 1, 6), err: ErrGap}},
			want: NodeRoutes{Incarnation: 1, Seq: 5, Filters: 1}, wantX: true, wantNode: true},
		{name: "invalid-filter-in-snapshot",
			steps: []step{{snap: snap(n, 1, 5, entry("x", 1))}, {snap: snap(n, 1, 6, entry("a/#/b", 1)), err: ErrInvalidRoute}},
			want:  NodeRoutes{Incarnation: 1, Seq: 5, Synced: true, Filters: 1}, wantX: true, wantNode: true},
		{name: "shared-form-filter-in-snapshot",
			steps: []step{{snap: snap(n, 1, 5, entry("$share/g/x", 1)), err: ErrInvalidRoute}}},
		{name: "invalid-group-in-snapshot",
			steps: []step{{snap: snap(n, 1, 5, entry("x", 0, proto.GroupCount{Group: "g/h", Members: 1})), err: ErrInvalidRoute}}},
		{name: "invalid-delta-is-not-applied-and-unsyncs",
			steps: []step{{snap: snap(n, 1, 5, entry("x", 1))},
				{delta: delta(n, 1, 6, proto.RouteChange{Filter: "x"}, proto.RouteChange{Filter: "y", Group: "+", Count: 1}), err: ErrInvalidRoute},
				{delta: delta(n, 1, 6), err: ErrGap}},
			want: NodeRoutes{Incarnation: 1, Seq: 5, Filters: 1}, wantX: true, wantNode: true},
		{name: "empty-filter-in-delta",
			steps: []step{{snap: snap(n, 1, 5)}, {delta: delta(n, 1, 6, proto.RouteChange{Count: 1}), err: ErrInvalidRoute}},
			want:  NodeRoutes{Incarnation: 1, Seq: 5}, wantNode: true},
		{name: "from-self", steps: []step{{snap: snap("a", 1, 1), err: ErrInvalidRoute}, {delta: delta("a", 1, 2), err: ErrInvalidRoute}}},
		{name: "from-nobody", steps: []step{{snap: snap("", 1, 1), err: ErrInvalidRoute}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rt := NewRouteTable("a")
			for i, s := range tc.steps {
				var err error
				if s.snap != nil {
					err = rt.ApplySnapshot(s.snap)
				} else {
					err = rt.ApplyDelta(s.delta)
				}
				if s.err == nil && err != nil || s.err != nil && !errors.Is(err, s.err) {
					t.Fatalf("step %d: %v, want %v", i, err, s.err)
				}
			}
			got, ok := rt.Node(n)
			if ok != tc.wantNode || got != tc.want {
				t.Fatalf("Node = %+v, %v; want %+v, %v", got, ok, tc.want, tc.wantNode)
			}
			if _, matched := matchAll(rt, "x")[n]; matched != tc.wantX {
				t.Fatalf("x matched: %v, want %v", matched, tc.wantX)
			}
			if rt.Len() != got.Filters {
				t.Fatalf("Len %d, node holds %d filters", rt.Len(), got.Filters)
			}
		})
	}
}

func TestRouteTableMatch(t *testing.T) {
	rt := NewRouteTable("a")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(rt.ApplySnapshot(snap("b", 1, 1,
		entry("s/+/t", 2), entry("s/#", 1), entry("s/1/t", 1, proto.GroupCount{Group: "g", Members: 2}),
		entry("#", 0, proto.GroupCount{Group: "all", Members: 1}), entry("$SYS/x", 1))))
	must(rt.ApplySnapshot(snap("c", 1, 1, entry("s/1/t", 0, proto.GroupCount{Group: "g", Members: 3}, proto.GroupCount{Group: "h", Members: 1}))))
	must(rt.ApplySnapshot(snap("d", 1, 1, entry("other", 1), entry("s", 1))))

	tests := []struct {
		name string
		want map[string]interest
	}{
		{"s/1/t", map[string]interest{
			"b": {true, []SharedGroup{{"all", "#", 1}, {"g", "s/1/t", 2}}},
			"c": {false, []SharedGroup{{"g", "s/1/t", 3}, {"h", "s/1/t", 1}}},
		}},
		{"s/2/t", map[string]interest{"b": {true, []SharedGroup{{"all", "#", 1}}}}},
		// "s/#" matches its parent level [MQTT-4.7.1-2].
		{"s", map[string]interest{"b": {true, []SharedGroup{{"all", "#", 1}}}, "d": {Direct: true}}},
		{"q", map[string]interest{"b": {false, []SharedGroup{{"all", "#", 1}}}}},
		// '#' does not match a $-topic [MQTT-4.7.2-1]; a literal filter does.
		{"$SYS/x", map[string]interest{"b": {Direct: true}}},
		{"$SYS/y", map[string]interest{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := matchAll(rt, tc.name); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Match:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}

	t.Run("delta-updates-and-removes", func(t *testing.T) {
		must(rt.ApplyDelta(delta("c", 1, 2,
			proto.RouteChange{Filter: "s/1/t", Group: "g", Count: 5}, // update
			proto.RouteChange{Filter: "s/1/t", Group: "h"},           // remove a group
			proto.RouteChange{Filter: "s/+/t", Count: 1},             // add a filter
			proto.RouteChange{Filter: "never", Group: "z"},           // remove what is not there
		)))
		must(rt.ApplyDelta(delta("b", 1, 2, proto.RouteChange{Filter: "#", Group: "all"}, proto.RouteChange{Filter: "s/#"},
			proto.RouteChange{Filter: "s/+/t"}, proto.RouteChange{Filter: "s/1/t"})))
		want := map[string]interest{
			"b": {false, []SharedGroup{{"g", "s/1/t", 2}}},
			"c": {true, []SharedGroup{{"g", "s/1/t", 5}}},
		}
		if got := matchAll(rt, "s/1/t"); !reflect.DeepEqual(got, want) {
			t.Fatalf("Match:\n got %+v\nwant %+v", got, want)
		}
		if got := matchAll(rt, "q"); len(got) != 0 {
			t.Fatalf("q still matches %+v", got)
		}
		if nr, _ := rt.Node("b"); nr.Filters != 2 {
			t.Fatalf("b holds %d filters, want 2 (s/1/t, $SYS/x)", nr.Filters)
		}
	})

	t.Run("remove-node", func(t *testing.T) {
		if !rt.RemoveNode("c") || rt.RemoveNode("c") {
			t.Fatal("RemoveNode")
		}
		if got := matchAll(rt, "s/1/t"); len(got) != 1 {
			t.Fatalf("after removing c: %+v", got)
		}
		if !slices.Equal(rt.Nodes(), []string{"b", "d"}) {
			t.Fatalf("Nodes = %v", rt.Nodes())
		}
		if err := rt.ApplyDelta(delta("c", 1, 3)); !errors.Is(err, ErrGap) {
			t.Fatalf("delta of a removed node: %v", err)
		}
	})
}

func TestRouteTableMatchDoesNotAllocate(t *testing.T) {
	rt := NewRouteTable("a")
	for i := range 5 {
		node := fmt.Sprintf("n%d", i)
		if err := rt.ApplySnapshot(snap(node, 1, 1, entry("s/+/t", 1), entry("s/#", 1, proto.GroupCount{Group: "g", Members: 1}))); err != nil {
			t.Fatal(err)
		}
	}
	calls := 0
	fn := func(string, bool, []SharedGroup) { calls++ }
	rt.Match("s/1/t", fn) // warm the scratch
	// Under the race detector sync.Pool drops items on purpose.
	if allocs := testing.AllocsPerRun(100, func() { rt.Match("s/1/t", fn) }); allocs != 0 && !raceEnabled {
		t.Fatalf("Match allocates %.1f times", allocs)
	}
	if calls != 5*102 { // AllocsPerRun runs once more to warm up
		t.Fatalf("fn called %d times", calls)
	}
}

func TestLocalRoutes(t *testing.T) {
	l := NewLocalRoutes("a", 7)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	takeDelta := func(want ...proto.RouteChange) {
		t.Helper()
		d, ok := l.Delta()
		if len(want) == 0 {
			if ok {
				t.Fatalf("unexpected delta %+v", d)
			}
			return
		}
		if !ok || d.Origin != "a" || d.Incarnation != 7 || d.Seq != l.Seq() || !reflect.DeepEqual(d.Changes, want) {
			t.Fatalf("Delta = %+v, %v; want changes %+v at seq %d", d, ok, want, l.Seq())
		}
	}

	takeDelta()
	must(l.Add("s/+"))
	must(l.Add("s/+")) // 1 -> 2: no change to report
	must(l.Add("$share/g/s/+"))
	must(l.Add("$queue/s/+"))
	if !l.Pending() {
		t.Fatal("Pending false after Add")
	}
	takeDelta(proto.RouteChange{Filter: "s/+", Count: 2}, proto.RouteChange{Filter: "s/+", Group: "$queue", Count: 1},
		proto.RouteChange{Filter: "s/+", Group: "g", Count: 1})
	if l.Seq() != 1 || l.Pending() {
		t.Fatalf("Seq %d, Pending %v", l.Seq(), l.Pending())
	}

	must(l.Add("s/+"))          // 2 -> 3: nothing
	must(l.Remove("s/+"))       // 3 -> 2: nothing
	must(l.Add("$share/g/s/+")) // shared counts are always reported
	takeDelta(proto.RouteChange{Filter: "s/+", Group: "g", Count: 2})

	must(l.Remove("s/+"))
	must(l.Remove("s/+")) // 1 -> 0
	must(l.Add("x"))
	must(l.Remove("x")) // 0 -> 1 -> 0 between deltas: reported as removed, harmless
	takeDelta(proto.RouteChange{Filter: "s/+"}, proto.RouteChange{Filter: "x"})

	for _, bad := range []string{"a/#/b", "", "$share/g", "$share//x", "s/+x"} {
		if err := l.Add(bad); !errors.Is(err, ErrInvalidRoute) {
			t.Errorf("Add(%q) = %v", bad, err)
		}
	}
	for _, absent := range []string{"s/+", "$share/h/s/+", "nothing"} {
		if err := l.Remove(absent); !errors.Is(err, ErrInvalidRoute) {
			t.Errorf("Remove(%q) = %v", absent, err)
		}
	}
	takeDelta()

	must(l.Add("b"))
	want := []*proto.RouteSnapshot{{Origin: "a", Incarnation: 7, Seq: 3, Entries: []proto.RouteEntry{
		{Filter: "b", Count: 1},
		{Filter: "s/+", Shared: []proto.GroupCount{{Group: "$queue", Members: 1}, {Group: "g", Members: 2}}},
	}}}
	if got := l.Snapshot(0); !reflect.DeepEqual(got, want) {
		t.Fatalf("Snapshot:\n got %+v\nwant %+v", got[0], want[0])
	}
	takeDelta(proto.RouteChange{Filter: "b", Count: 1}) // still pending after Snapshot
}

func TestLocalRoutesSnapshotParts(t *testing.T) {
	l := NewLocalRoutes("a", 1)
	for i := range 100 {
		if err := l.Add(fmt.Sprintf("f/%03d", i)); err != nil {
			t.Fatal(err)
		}
	}
	parts := l.Snapshot(200)
	if len(parts) < 5 {
		t.Fatalf("%d parts", len(parts))
	}
	rt := NewRouteTable("b")
	var all []string
	for i, p := range parts {
		if p.Part != uint32(i) || p.More != (i < len(parts)-1) || len(p.Entries) == 0 {
			t.Fatalf("part %d: Part %d More %v, %d entries", i, p.Part, p.More, len(p.Entries))
		}
		raw, err := p.AppendTo(nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(raw) > 200+64 {
			t.Fatalf("part %d is %d bytes", i, len(raw))
		}
		for _, e := range p.Entries {
			all = append(all, e.Filter)
		}
		if err := rt.ApplySnapshot(p); err != nil {
			t.Fatal(err)
		}
	}
	if len(all) != 100 || !slices.IsSorted(all) {
		t.Fatalf("parts hold %d filters, sorted %v", len(all), slices.IsSorted(all))
	}
	if rt.Len() != 100 {
		t.Fatalf("table holds %d", rt.Len())
	}
	if got := l.Snapshot(0); len(got) != 1 || len(got[0].Entries) != 100 {
		t.Fatal("Snapshot(0) is not one part")
	}
	if got := NewLocalRoutes("a", 1).Snapshot(10); len(got) != 1 || got[0].Entries != nil {
		t.Fatalf("empty Snapshot = %+v", got)
	}
}

// randFilter returns a random filter as subscribed, over a small alphabet
// so that filters collide and match often.
func randFilter(r *rand.Rand) string {
	for {
		if f := randFilterOnce(r); topic.ValidFilter(strings.TrimPrefix(strings.TrimPrefix(f, "$queue/"), "$share/g0/")) == nil {
			if _, _, err := splitFilter(f); err == nil {
				return f
			}
		}
	}
}

func randFilterOnce(r *rand.Rand) string {
	levels := []string{"a", "b", "", "+", "$SYS", "c"}
	n := 1 + r.IntN(4)
	var parts []string
	for i := range n {
		if i == n-1 && r.IntN(4) == 0 {
			parts = append(parts, "#")
			break
		}
		parts = append(parts, levels[r.IntN(len(levels))])
	}
	f := strings.Join(parts, "/")
	switch r.IntN(6) {
	case 0:
		return "$share/g" + fmt.Sprint(r.IntN(2)) + "/" + f
	case 1:
		return "$queue/" + f
	}
	return f
}

func randName(r *rand.Rand) string {
	levels := []string{"a", "b", "", "$SYS", "c", "d"}
	n := 1 + r.IntN(4)
	parts := make([]string, n)
	for i := range parts {
		parts[i] = levels[r.IntN(len(levels))]
	}
	return strings.Join(parts, "/")
}

// bruteForce is what Match must report, computed from every node's
// subscriptions with topic.Match.
func bruteForce(subs map[string]map[string]int, name string) map[string]interest {
	want := map[string]interest{}
	for node, fs := range subs {
		var in interest
		found := false
		for f, n := range fs {
			if n == 0 {
				continue
			}
			group, inner, shared, _ := topic.ParseShared(f)
			if !shared {
				inner = f
			}
			if !topic.Match(inner, name) {
				continue
			}
			found = true
			if shared {
				in.Shared = append(in.Shared, SharedGroup{Group: group, Filter: inner, Members: uint32(n)})
			} else {
				in.Direct = true
			}
		}
		if found {
			in.Shared = sortedGroups(in.Shared)
			want[node] = in
		}
	}
	return want
}

// TestMatchAgainstBruteForce drives LocalRoutes on several nodes with
// random subscribes and unsubscribes, carries their snapshots and deltas
// to a RouteTable (a link coming up at a random moment starts with a
// snapshot), and compares Match with a brute-force matcher for random
// topic names.
func TestMatchAgainstBruteForce(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 99))
			nodes := []string{"n1", "n2", "n3", "n4"}
			local := map[string]*LocalRoutes{}
			subs := map[string]map[string]int{}
			linked := map[string]bool{}
			rt := NewRouteTable("self")
			for _, n := range nodes {
				local[n] = NewLocalRoutes(n, 1)
				subs[n] = map[string]int{}
			}
			for range 400 {
				n := nodes[r.IntN(len(nodes))]
				l := local[n]
				switch op := r.IntN(10); {
				case op < 6:
					f := randFilter(r)
					if err := l.Add(f); err != nil {
						t.Fatal(err)
					}
					subs[n][f]++
				case op < 9:
					for f, c := range subs[n] {
						if c > 0 {
							if err := l.Remove(f); err != nil {
								t.Fatal(err)
							}
							subs[n][f]--
							break
						}
					}
				default:
					if !linked[n] {
						linked[n] = true
						for _, p := range l.Snapshot(100) {
							if err := rt.ApplySnapshot(p); err != nil {
								t.Fatal(err)
							}
						}
					}
				}
				if r.IntN(3) == 0 {
					if d, ok := l.Delta(); ok && linked[n] {
						if err := rt.ApplyDelta(d); err != nil {
							t.Fatal(err)
						}
					}
				}
				if r.IntN(50) == 0 && linked[n] {
					rt.RemoveNode(n) // died; comes back with a new link
					linked[n] = false
				}
			}
			// Flush and link everyone, then compare.
			for _, n := range nodes {
				d, ok := local[n].Delta()
				switch {
				case !linked[n]:
					for _, p := range local[n].Snapshot(0) {
						if err := rt.ApplySnapshot(p); err != nil {
							t.Fatal(err)
						}
					}
				case ok:
					if err := rt.ApplyDelta(d); err != nil {
						t.Fatal(err)
					}
				}
			}
			for range 300 {
				name := randName(r)
				got, want := matchAll(rt, name), bruteForce(subs, name)
				// A non-shared count is reported only on 0 <-> 1, so
				// compare shared members exactly and direct as a flag.
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("Match(%q):\n got %+v\nwant %+v", name, got, want)
				}
			}
		})
	}
}

// BenchmarkMatch: 100k filters over 10 nodes (10k each, of the shapes
// device fleets use), matched against topics that hit a few of them.
func BenchmarkMatch(b *testing.B) {
	rt := NewRouteTable("self")
	r := rand.New(rand.NewPCG(1, 2))
	const perNode = 10_000
	for n := range 10 {
		s := &proto.RouteSnapshot{Origin: fmt.Sprintf("node-%d", n), Incarnation: 1, Seq: 1}
		for i := range perNode {
			// Ids overlap between neighbouring nodes, so that some
			// topics interest several nodes.
			id := n*perNode/2 + i
			var f string
			switch i % 4 {
			case 0:
				f = fmt.Sprintf("devices/%d/cmd", id)
			case 1:
				f = fmt.Sprintf("devices/%d/+/state", id)
			case 2:
				f = fmt.Sprintf("sensors/building-%d/floor-%d/#", id%100, id)
			default:
				f = fmt.Sprintf("tenants/t%d/+/events/#", id)
			}
			e := proto.RouteEntry{Filter: f, Count: 1}
			if i%50 == 0 {
				e.Shared = []proto.GroupCount{{Group: "workers", Members: 3}}
			}
			s.Entries = append(s.Entries, e)
		}
		if err := rt.ApplySnapshot(s); err != nil {
			b.Fatal(err)
		}
	}
	if rt.Len() != 10*perNode {
		b.Fatalf("%d routes", rt.Len())
	}
	const ids = 11 * perNode / 2
	topics := make([]string, 1024)
	for i := range topics {
		id := r.IntN(ids)
		switch i % 4 {
		case 0:
			topics[i] = fmt.Sprintf("devices/%d/cmd", id&^3)
		case 1:
			topics[i] = fmt.Sprintf("devices/%d/x/state", id&^3|1)
		case 2:
			id = id&^3 | 2
			topics[i] = fmt.Sprintf("sensors/building-%d/floor-%d/temp", id%100, id)
		default:
			topics[i] = fmt.Sprintf("tenants/t%d/dev/events/alarm", id|3)
		}
	}
	b.Logf("%d routes, %d nodes", rt.Len(), len(rt.Nodes()))
	nodes := 0
	fn := func(string, bool, []SharedGroup) { nodes++ }
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		rt.Match(topics[i&1023], fn)
		i++
	}
	b.ReportMetric(float64(nodes)/float64(i), "nodes/op")
}

// TestMatchConcurrent: Match calls may run at once on an unchanging table
// (the documented read-lock use); run with -race.
func TestMatchConcurrent(t *testing.T) {
	rt := NewRouteTable("a")
	for i := range 4 {
		if err := rt.ApplySnapshot(snap(fmt.Sprintf("n%d", i), 1, 1, entry("s/+", 1), entry("s/#", 0, proto.GroupCount{Group: "g", Members: 1}))); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan int)
	for range 4 {
		go func() {
			calls := 0
			for range 500 {
				rt.Match("s/x", func(_ string, direct bool, shared []SharedGroup) {
					if direct && len(shared) == 1 {
						calls++
					}
				})
			}
			done <- calls
		}()
	}
	for range 4 {
		if calls := <-done; calls != 4*500 {
			t.Fatalf("%d complete matches, want %d", calls, 4*500)
		}
	}
}
