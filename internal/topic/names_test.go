package topic

import (
	"fmt"
	"slices"
	"sync"
	"testing"
)

func collectNames(n *Names[int], filter string) []string {
	var got []string
	n.Match(filter, func(name string, _ int) bool {
		got = append(got, name)
		return true
	})
	slices.Sort(got)
	return got
}

// TestNamesMatchVectors puts every name of matchVectors in one Names and
// checks that each filter reaches exactly the names Match accepts.
func TestNamesMatchVectors(t *testing.T) {
	idx := NewNames[int]()
	names := vectorNames()
	for i, name := range names {
		idx.Set(name, i)
	}
	if idx.Len() != len(names) {
		t.Fatalf("Len = %d, want %d", idx.Len(), len(names))
	}
	for _, f := range append(vectorFilters(), "#", "+", "+/+", "$SYS/#", "/#", "+/#") {
		var want []string
		for _, name := range names {
			if Match(f, name) {
				want = append(want, name)
			}
		}
		slices.Sort(want)
		if got := collectNames(idx, f); !slices.Equal(got, want) {
			t.Errorf("Names.Match(%q)\n got %q\nwant %q", f, got, want)
		}
	}
	for _, v := range matchVectors {
		idx := NewNames[int]()
		idx.Set(v.name, 1)
		if got := len(collectNames(idx, v.filter)) == 1; got != v.want {
			t.Errorf("single-name Names %q matched by %q = %v, want %v", v.name, v.filter, got, v.want)
		}
	}
}

func TestNamesSetGetDelete(t *testing.T) {
	idx := NewNames[int]()
	idx.Set("a/b", 1)
	idx.Set("a/b", 2)
	idx.Set("a", 3)
	idx.Set("a/b/c", 4)
	if idx.Len() != 3 {
		t.Fatalf("Len = %d, want 3", idx.Len())
	}
	if v, ok := idx.Get("a/b"); !ok || v != 2 {
		t.Fatalf("Get(a/b) = %v, %v", v, ok)
	}
	for _, name := range []string{"a/", "b", "a/b/c/d", "", "/a"} {
		if _, ok := idx.Get(name); ok {
			t.Errorf("Get(%q) found a value", name)
		}
	}
	idx.Match("", func(string, int) bool { t.Error("an empty filter matched"); return true })
	if idx.Delete("a/b/c/d") || idx.Delete("a/x") || idx.Delete("") {
		t.Error("Delete of an absent name reported true")
	}
	if !idx.Delete("a/b") || idx.Delete("a/b") {
		t.Fatal("Delete(a/b) should succeed once")
	}
	// a/b's node stays: a/b/c hangs from it.
	if _, ok := idx.Get("a/b/c"); !ok {
		t.Fatal("a/b/c lost")
	}
	if got := collectNames(idx, "a/#"); !slices.Equal(got, []string{"a", "a/b/c"}) {
		t.Fatalf("a/# = %q", got)
	}
	idx.Delete("a/b/c")
	if b := idx.root.children["a"].children; b != nil {
		t.Fatalf("a/b not pruned: %v", b)
	}
	idx.Delete("a")
	if idx.Len() != 0 || idx.root.children != nil {
		t.Fatalf("not empty: Len %d, %d children", idx.Len(), len(idx.root.children))
	}
}

func TestNamesMatchStops(t *testing.T) {
	idx := NewNames[int]()
	for i := range 100 {
		idx.Set(fmt.Sprintf("s/%d/t", i), i)
		idx.Set(fmt.Sprintf("s/%d", i), i)
	}
	for _, f := range []string{"#", "s/#", "s/+/t", "+/+", "s/+/#"} {
		for _, stop := range []int{1, 2, 50} {
			calls := 0
			idx.Match(f, func(string, int) bool {
				calls++
				return calls < stop
			})
			if calls != stop {
				t.Errorf("Match(%q) stopping after %d: %d calls", f, stop, calls)
			}
		}
	}
}

func TestNamesDollarRule(t *testing.T) {
	idx := NewNames[int]()
	for i, name := range []string{"$SYS/broker/uptime", "$SYS", "$SYS/monitor/Clients", "a/$SYS", "monitor", "x/monitor/Clients"} {
		idx.Set(name, i)
	}
	tests := []struct {
		filter string
		want   []string
	}{
		{"#", []string{"a/$SYS", "monitor", "x/monitor/Clients"}},
		{"+/monitor/Clients", []string{"x/monitor/Clients"}},
		{"+", []string{"monitor"}},
		{"+/#", []string{"a/$SYS", "monitor", "x/monitor/Clients"}},
		{"$SYS/#", []string{"$SYS", "$SYS/broker/uptime", "$SYS/monitor/Clients"}},
		{"$SYS/+/Clients", []string{"$SYS/monitor/Clients"}},
		{"a/+", []string{"a/$SYS"}},
	}
	for _, tt := range tests {
		if got := collectNames(idx, tt.filter); !slices.Equal(got, tt.want) {
			t.Errorf("Match(%q) = %q, want %q", tt.filter, got, tt.want)
		}
	}
}

func TestNamesMatchDoesNotAllocate(t *testing.T) {
	idx := NewNames[int]()
	for i, name := range vectorNames() {
		idx.Set(name, i)
	}
	filters := vectorFilters()
	n := 0
	allocs := testing.AllocsPerRun(100, func() {
		for _, f := range filters {
			idx.Match(f, func(string, int) bool { n++; return true })
		}
	})
	if allocs != 0 {
		t.Errorf("Names.Match allocates %v times per run", allocs)
	}
}

func TestNamesConcurrentMatch(t *testing.T) {
	idx := NewNames[int]()
	for i := range 1000 {
		idx.Set(fmt.Sprintf("d/%d/t", i), i)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range 30 {
				n := 0
				idx.Match("d/+/t", func(string, int) bool { n++; return true })
				if n != 1000 {
					t.Errorf("%d matches, want 1000", n)
					return
				}
				idx.Get(fmt.Sprintf("d/%d/t", i))
			}
		})
	}
	wg.Wait()
}
