package topic

import (
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
)

type hit struct {
	filter string
	key    int
	v      string
}

func collect(tr *Trie[int, string], name string) []hit {
	var hits []hit
	tr.Match(name, func(filter string, key int, v string) {
		hits = append(hits, hit{filter, key, v})
	})
	sortHits(hits)
	return hits
}

func sortHits(h []hit) {
	sort.Slice(h, func(i, j int) bool {
		if h[i].filter != h[j].filter {
			return h[i].filter < h[j].filter
		}
		return h[i].key < h[j].key
	})
}

// vectorFilters and vectorNames are the distinct filters and names of
// matchVectors.
func vectorFilters() []string {
	var fs []string
	for _, v := range matchVectors {
		if !slices.Contains(fs, v.filter) {
			fs = append(fs, v.filter)
		}
	}
	return fs
}

func vectorNames() []string {
	var ns []string
	for _, v := range matchVectors {
		if !slices.Contains(ns, v.name) {
			ns = append(ns, v.name)
		}
	}
	return ns
}

// TestTrieMatchVectors puts every filter of matchVectors in one Trie and
// checks that each name reaches exactly the filters Match accepts.
func TestTrieMatchVectors(t *testing.T) {
	tr := NewTrie[int, string]()
	filters := vectorFilters()
	for i, f := range filters {
		tr.Add(f, i, f)
		tr.Add(f, i+1000, f) // two subscribers per filter
	}
	for _, name := range vectorNames() {
		var want []hit
		for i, f := range filters {
			if Match(f, name) {
				want = append(want, hit{f, i, f}, hit{f, i + 1000, f})
			}
		}
		sortHits(want)
		if got := collect(tr, name); !slices.Equal(got, want) {
			t.Errorf("Trie.Match(%q)\n got %v\nwant %v", name, got, want)
		}
	}
	// The vectors' own expectations, through the Trie.
	for _, v := range matchVectors {
		tr := NewTrie[int, string]()
		tr.Add(v.filter, 1, "")
		if got := len(collect(tr, v.name)) == 1; got != v.want {
			t.Errorf("single-filter Trie %q matches %q = %v, want %v", v.filter, v.name, got, v.want)
		}
	}
}

func TestTrieAddGetRemove(t *testing.T) {
	tr := NewTrie[string, int]()
	if tr.Add("a/+/c", "c1", 1) {
		t.Fatal("first Add reported a replacement")
	}
	if !tr.Add("a/+/c", "c1", 2) {
		t.Fatal("second Add did not report a replacement")
	}
	tr.Add("a/+/c", "c2", 3)
	tr.Add("a/#", "c1", 4)
	if tr.Len() != 3 || tr.Filters() != 2 {
		t.Fatalf("Len, Filters = %d, %d; want 3, 2", tr.Len(), tr.Filters())
	}
	if v, ok := tr.Get("a/+/c", "c1"); !ok || v != 2 {
		t.Fatalf("Get = %v, %v; want 2, true", v, ok)
	}
	for _, f := range []string{"a/+", "a/b/c", "a", "a/+/c/d", "#"} {
		if _, ok := tr.Get(f, "c1"); ok {
			t.Errorf("Get(%q) found an entry", f)
		}
	}
	if _, ok := tr.Get("a/+/c", "c3"); ok {
		t.Error("Get of an unknown key found an entry")
	}
	if tr.Remove("a/+/c", "c3") || tr.Remove("a/b/c", "c1") || tr.Remove("x", "c1") {
		t.Error("Remove of an absent entry reported true")
	}
	if !tr.Remove("a/+/c", "c1") {
		t.Fatal("Remove reported false")
	}
	if tr.Remove("a/+/c", "c1") {
		t.Fatal("second Remove reported true")
	}
	if tr.Len() != 2 || tr.Filters() != 2 {
		t.Fatalf("Len, Filters = %d, %d; want 2, 2", tr.Len(), tr.Filters())
	}
	if v, ok := tr.Get("a/+/c", "c2"); !ok || v != 3 {
		t.Fatalf("Get after Remove = %v, %v", v, ok)
	}
	tr.Remove("a/+/c", "c2")
	tr.Remove("a/#", "c1")
	if tr.Len() != 0 || tr.Filters() != 0 {
		t.Fatalf("Len, Filters = %d, %d; want 0, 0", tr.Len(), tr.Filters())
	}
	assertTrieEmpty(t, tr)
}

func assertTrieEmpty[K comparable, V any](t *testing.T, tr *Trie[K, V]) {
	t.Helper()
	r := &tr.root
	if len(r.children) != 0 || r.plus != nil || r.hash != nil || len(r.subs) != 0 {
		t.Fatalf("trie not pruned: %d children, plus %v, hash %v, %d subs", len(r.children), r.plus != nil, r.hash != nil, len(r.subs))
	}
}

// TestTriePrune checks that removing a filter removes exactly the nodes it
// alone used.
func TestTriePrune(t *testing.T) {
	tr := NewTrie[int, struct{}]()
	tr.Add("a/b/c/d", 1, struct{}{})
	tr.Add("a/b", 1, struct{}{})
	tr.Add("a/+/#", 1, struct{}{})
	tr.Remove("a/b/c/d", 1)
	a := tr.root.children["a"]
	b := a.children["b"]
	if b == nil || len(b.children) != 0 {
		t.Fatalf("a/b should remain without children: %+v", b)
	}
	if a.plus == nil || a.plus.hash == nil {
		t.Fatal("a/+/# was pruned")
	}
	tr.Remove("a/+/#", 1)
	if a.plus != nil {
		t.Fatal("a/+ not pruned")
	}
	tr.Remove("a/b", 1)
	assertTrieEmpty(t, tr)
	// Nodes of a pruned path are fresh when the path comes back.
	tr.Add("a/b", 2, struct{}{})
	if got := len(collect2(tr, "a/b")); got != 1 {
		t.Fatalf("%d matches after re-adding", got)
	}
}

func collect2[V any](tr *Trie[int, V], name string) []int {
	var keys []int
	tr.Match(name, func(_ string, k int, _ V) { keys = append(keys, k) })
	return keys
}

// TestTrieManySubscribers drives one filter across the size where its
// entries get an index map and back, checking every step against a map.
func TestTrieManySubscribers(t *testing.T) {
	tr := NewTrie[int, int]()
	want := map[int]int{}
	check := func() {
		t.Helper()
		got := map[int]int{}
		tr.Match("x/y", func(f string, k, v int) {
			if f != "x/+" {
				t.Fatalf("filter %q", f)
			}
			if _, dup := got[k]; dup {
				t.Fatalf("key %d reported twice", k)
			}
			got[k] = v
		})
		if len(got) != len(want) || tr.Len() != len(want) {
			t.Fatalf("got %d entries, Len %d, want %d", len(got), tr.Len(), len(want))
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("key %d = %d, want %d", k, got[k], v)
			}
			if g, ok := tr.Get("x/+", k); !ok || g != v {
				t.Fatalf("Get(%d) = %d, %v", k, g, ok)
			}
		}
	}
	for i := range 200 {
		tr.Add("x/+", i, i)
		want[i] = i
	}
	check()
	for i := 0; i < 200; i += 3 {
		tr.Add("x/+", i, -i) // replace
		want[i] = -i
	}
	check()
	for i := 0; i < 200; i++ {
		if i%7 == 0 {
			continue
		}
		if !tr.Remove("x/+", i) {
			t.Fatalf("Remove(%d) = false", i)
		}
		delete(want, i)
		if i%25 == 0 {
			check()
		}
	}
	check()
	n := tr.root.children["x"].plus
	if cap(n.subs) > max(64, 4*len(n.subs)) {
		t.Errorf("after shrinking to %d entries: cap %d", len(n.subs), cap(n.subs))
	}
	for k := range want {
		tr.Remove("x/+", k)
		delete(want, k)
		if n.index != nil && len(n.subs) <= indexDropAt {
			t.Fatalf("index kept at %d entries", len(n.subs))
		}
		if len(n.subs) == 5 {
			check()
		}
	}
	assertTrieEmpty(t, tr)
}

func TestTrieWalk(t *testing.T) {
	tr := NewTrie[int, string]()
	filters := []string{"b", "a/#", "a/+", "a/b", "a", "+/x", "#", "a/b/c", "/"}
	for i, f := range filters {
		tr.Add(f, i, f)
	}
	var got []string
	tr.Walk(func(f string, k int, v string) {
		if f != v || filters[k] != f {
			t.Errorf("Walk gave %q, %d, %q", f, k, v)
		}
		got = append(got, f)
	})
	want := []string{"/", "a", "a/b", "a/b/c", "a/+", "a/#", "b", "+/x", "#"}
	if !slices.Equal(got, want) {
		t.Errorf("Walk order\n got %q\nwant %q", got, want)
	}
	// "/" is two empty levels, stored under the "" child.
	if _, ok := tr.Get("/", 8); !ok {
		t.Error(`Get("/") failed`)
	}
}

// TestTrieDollarRule checks the '$' rule with wildcard and literal filters
// side by side.
func TestTrieDollarRule(t *testing.T) {
	tr := NewTrie[int, string]()
	for i, f := range []string{"#", "+/monitor/Clients", "$SYS/#", "$SYS/monitor/+", "+/#", "+"} {
		tr.Add(f, i, f)
	}
	got := collect(tr, "$SYS/monitor/Clients")
	want := []hit{{"$SYS/#", 2, "$SYS/#"}, {"$SYS/monitor/+", 3, "$SYS/monitor/+"}}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if got := collect(tr, "$SYS"); !slices.Equal(got, []hit{{"$SYS/#", 2, "$SYS/#"}}) {
		t.Errorf("$SYS: got %v", got)
	}
	if got := collect(tr, "monitor"); len(got) != 3 { // #, +/#, +
		t.Errorf("monitor: got %v", got)
	}
}

func TestTrieMatchDoesNotAllocate(t *testing.T) {
	tr := NewTrie[int, string]()
	for i, f := range vectorFilters() {
		tr.Add(f, i, f)
	}
	names := vectorNames()
	n := 0
	allocs := testing.AllocsPerRun(100, func() {
		for _, name := range names {
			tr.Match(name, func(string, int, string) { n++ })
		}
	})
	if allocs != 0 {
		t.Errorf("Trie.Match allocates %v times per run", allocs)
	}
	if n == 0 {
		t.Error("no matches")
	}
}

// TestTrieConcurrentMatch runs Match from many goroutines at once; under
// -race it shows that Match only reads the Trie.
func TestTrieConcurrentMatch(t *testing.T) {
	tr := NewTrie[int, int]()
	for i := range 1000 {
		tr.Add(fmt.Sprintf("d/%d/+", i), i, i)
		tr.Add("d/#", i, i)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				n := 0
				tr.Match(fmt.Sprintf("d/%d/x", (i*g)%1000), func(string, int, int) { n++ })
				if n != 1001 {
					t.Errorf("%d matches, want 1001", n)
					return
				}
				tr.Get("d/#", i)
				if i%50 == 0 {
					tr.Walk(func(string, int, int) {})
				}
			}
		})
	}
	wg.Wait()
}
