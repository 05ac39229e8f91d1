package topic

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// refValidFilter is an independent, allocating statement of ValidFilter.
func refValidFilter(s string) bool {
	if s == "" || len(s) > MaxLen || !utf8.ValidString(s) || strings.Contains(s, "\x00") {
		return false
	}
	levels := strings.Split(s, "/")
	if levels[0] == "$share" || levels[0] == "$queue" {
		return false
	}
	for i, l := range levels {
		if strings.Contains(l, "+") && l != "+" {
			return false
		}
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return false
		}
	}
	return true
}

func FuzzValidFilter(f *testing.F) {
	for _, v := range matchVectors {
		f.Add(v.filter)
		f.Add(v.name)
	}
	for _, s := range []string{"", "$share/g/#", "$share/g", "$queue/a/+", "$sharefoo/x", "a/#/b", "+a", "a\x00", "\xff/#"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		errF := ValidFilter(s)
		if (errF == nil) != refValidFilter(s) {
			t.Fatalf("ValidFilter(%q) = %v, reference says %v", s, errF, refValidFilter(s))
		}
		group, inner, shared, errS := ParseShared(s)
		if errF == nil && shared {
			t.Fatalf("ValidFilter accepted shared filter %q", s)
		}
		if !shared && errS != nil {
			t.Fatalf("ParseShared(%q): not shared but error %v", s, errS)
		}
		if shared && errS == nil {
			if err := ValidFilter(inner); err != nil {
				t.Fatalf("ParseShared(%q) gave invalid inner %q: %v", s, inner, err)
			}
			if group == "" || strings.ContainsAny(group, "/+#\x00") {
				t.Fatalf("ParseShared(%q) gave bad group %q", s, group)
			}
			var back string
			if group == QueueGroup && strings.HasPrefix(s, "$queue/") {
				back = "$queue/" + inner
			} else {
				back = "$share/" + group + "/" + inner
			}
			if back != s {
				t.Fatalf("ParseShared(%q) = %q, %q: does not rebuild it", s, group, inner)
			}
		}
		if ValidName(s) == nil {
			if errF != nil && !shared {
				t.Fatalf("valid name %q is not a valid filter: %v", s, errF)
			}
			if !Match(s, s) {
				t.Fatalf("name %q as a filter does not match itself", s)
			}
		}
		if errF == nil {
			// Must not panic on any name, valid or not.
			Match(s, s)
			Match(s, "a/b")
			Match(s, "$SYS/x")
		}
	})
}

var (
	fuzzFilters = []string{"#", "+", "+/+", "a/#", "a/+/c", "$SYS/#", "+/#", "a", "/", "a//c", "/+", "+/b/#"}
	fuzzNames   = []string{"a", "a/b", "a/b/c", "$SYS/x", "$SYS", "/", "a//c", "b", "/b"}
)

// FuzzMatch compares Match with the reference implementation, Trie.Match
// with Match over a set of filters, and Names.Match with Match over a set of
// names; then it empties both indexes and checks they are pruned.
func FuzzMatch(f *testing.F) {
	for _, v := range matchVectors {
		f.Add(v.filter, v.name)
	}
	f.Fuzz(func(t *testing.T, filter, name string) {
		if ValidFilter(filter) != nil || ValidName(name) != nil {
			return
		}
		if got, want := Match(filter, name), refMatch(filter, name); got != want {
			t.Fatalf("Match(%q, %q) = %v, reference %v", filter, name, got, want)
		}

		filters := append(slices.Clone(fuzzFilters), filter)
		tr := NewTrie[int, string]()
		for i, fl := range filters {
			tr.Add(fl, i, fl)
		}
		for _, n := range append(slices.Clone(fuzzNames), name) {
			var got, want []int
			tr.Match(n, func(fl string, k int, v string) {
				if fl != v || filters[k] != fl {
					t.Fatalf("Trie.Match(%q) gave %q, %d, %q", n, fl, k, v)
				}
				got = append(got, k)
			})
			for i, fl := range filters {
				if Match(fl, n) {
					want = append(want, i)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Fatalf("Trie.Match(%q) = %v, Match says %v (filters %q)", n, got, want, filters)
			}
		}
		for i, fl := range filters {
			if !tr.Remove(fl, i) {
				t.Fatalf("Remove(%q, %d) = false", fl, i)
			}
		}
		if tr.Len() != 0 || tr.Filters() != 0 {
			t.Fatalf("Len, Filters = %d, %d after removing all", tr.Len(), tr.Filters())
		}
		assertTrieEmpty(t, tr)

		names := append(slices.Clone(fuzzNames), name)
		idx := NewNames[int]()
		for i, n := range names {
			idx.Set(n, i)
		}
		for _, fl := range filters {
			var got, want []string
			idx.Match(fl, func(n string, i int) bool {
				if names[i] != n {
					t.Fatalf("Names.Match(%q) gave %q, %d", fl, n, i)
				}
				got = append(got, n)
				return true
			})
			for _, n := range names {
				if Match(fl, n) && !slices.Contains(want, n) {
					want = append(want, n)
				}
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("Names.Match(%q) = %q, Match says %q", fl, got, want)
			}
		}
		for _, n := range names {
			idx.Delete(n)
		}
		if idx.Len() != 0 || idx.root.children != nil {
			t.Fatalf("Names not empty after deleting all: Len %d", idx.Len())
		}
	})
}
