package topic

import (
	"sort"
	"strings"
)

// indexAt is the number of entries on one filter above which the filter's
// entries get a map from key to position; below it a linear scan of a few
// entries is cheaper and far smaller than a map. indexDropAt, lower, gives
// hysteresis so that churn around the threshold does not rebuild maps.
const (
	indexAt     = 16
	indexDropAt = 8
)

// Trie is the subscription index: topic filter -> subscribers, where a
// subscriber is a key K (a client id, a (node, group) pair...) with a value V
// (its subscription options). Each level of a filter is one node, with '+'
// and '#' held apart from literal levels, so that Match costs O(levels of the
// name x wildcard branches), not O(subscriptions).
//
// A Trie is not safe for concurrent use. Match, Get, Len, Filters and Walk
// do not modify it, so any number of them may run at once (for example under
// a sync.RWMutex read lock) as long as no Add or Remove runs at the same
// time. The zero Trie is not usable; call NewTrie.
type Trie[K comparable, V any] struct {
	root    trieNode[K, V]
	entries int
	filters int
}

// trieNode is one level of a filter.
type trieNode[K comparable, V any] struct {
	parent   *trieNode[K, V]
	level    string // this node's level, its key in parent (or "+" or "#")
	children map[string]*trieNode[K, V]
	plus     *trieNode[K, V] // the '+' child
	hash     *trieNode[K, V] // the '#' child; it has no children itself

	filter string // the whole filter, set while subs is not empty
	subs   []trieEntry[K, V]
	index  map[K]int // key -> position in subs, only for big filters
}

type trieEntry[K comparable, V any] struct {
	key K
	v   V
}

// NewTrie returns an empty Trie.
func NewTrie[K comparable, V any]() *Trie[K, V] {
	return &Trie[K, V]{}
}

// Add sets the value for (filter, key) and reports whether it replaced an
// existing entry. filter must have passed ValidFilter (a shared filter is
// indexed by its inner filter); a level that is exactly "+" or "#" is a
// wildcard wherever it appears.
func (t *Trie[K, V]) Add(filter string, key K, v V) (replaced bool) {
	n := &t.root
	for rest, more := filter, true; more; {
		var level string
		level, rest, more = cutLevel(rest)
		n = n.child(level)
	}
	if i := n.find(key); i >= 0 {
		n.subs[i].v = v
		return true
	}
	if len(n.subs) == 0 {
		// Cloned so that the index never pins a caller's larger string.
		n.filter = strings.Clone(filter)
		t.filters++
	}
	n.subs = append(n.subs, trieEntry[K, V]{key: key, v: v})
	if n.index != nil {
		n.index[key] = len(n.subs) - 1
	} else if len(n.subs) > indexAt {
		n.index = make(map[K]int, len(n.subs))
		for i := range n.subs {
			n.index[n.subs[i].key] = i
		}
	}
	t.entries++
	return false
}

// Remove deletes (filter, key) and reports whether it existed. Nodes left
// with no entries and no children are pruned, so memory returns to what it
// was before the filter was added.
func (t *Trie[K, V]) Remove(filter string, key K) bool {
	n := t.lookup(filter)
	if n == nil {
		return false
	}
	i := n.find(key)
	if i < 0 {
		return false
	}
	n.removeAt(i)
	t.entries--
	if len(n.subs) == 0 {
		n.filter = ""
		t.filters--
		n.prune()
	}
	return true
}

// Get returns the value of (filter, key) and whether it exists.
func (t *Trie[K, V]) Get(filter string, key K) (V, bool) {
	if n := t.lookup(filter); n != nil {
		if i := n.find(key); i >= 0 {
			return n.subs[i].v, true
		}
	}
	var zero V
	return zero, false
}

// Match calls fn for every (filter, key, value) whose filter matches the
// topic name, honouring the rule that a filter starting with '+' or '#' does
// not match a name starting with '$' [MQTT-4.7.2-1]. A filter ending in "/#"
// also matches its parent level [MQTT-4.7.1-2]. Each matching entry is
// reported once; the order is unspecified.
//
// name should have passed ValidName. Match does not allocate and does not
// modify the Trie; fn must not modify it either.
func (t *Trie[K, V]) Match(name string, fn func(filter string, key K, v V)) {
	r := &t.root
	if !IsSys(name) {
		r.matchFrom(name, fn)
		return
	}
	// A $-name: only literal first levels may match.
	level, rest, more := cutLevel(name)
	if c := r.children[level]; c != nil {
		c.step(rest, more, fn)
	}
}

// matchFrom reports the entries below n that match name, the remaining one
// or more levels of the topic name.
func (n *trieNode[K, V]) matchFrom(name string, fn func(string, K, V)) {
	if n.hash != nil {
		// '#' matches every remaining level, however many.
		n.hash.emit(fn)
	}
	level, rest, more := cutLevel(name)
	if c := n.children[level]; c != nil {
		c.step(rest, more, fn)
	}
	if n.plus != nil {
		n.plus.step(rest, more, fn)
	}
}

// step continues a match at n, which matched one level of the name; more
// reports whether the name has levels after it, in rest.
func (n *trieNode[K, V]) step(rest string, more bool, fn func(string, K, V)) {
	if more {
		n.matchFrom(rest, fn)
		return
	}
	n.emit(fn)
	if n.hash != nil {
		// "sport/#" matches "sport" [MQTT-4.7.1-2].
		n.hash.emit(fn)
	}
}

func (n *trieNode[K, V]) emit(fn func(string, K, V)) {
	for i := range n.subs {
		e := &n.subs[i]
		fn(n.filter, e.key, e.v)
	}
}

// Len returns the number of (filter, key) entries.
func (t *Trie[K, V]) Len() int { return t.entries }

// Filters returns the number of distinct filters with at least one entry.
func (t *Trie[K, V]) Filters() int { return t.filters }

// Walk calls fn for every entry. Filters are visited depth first with
// literal levels in byte order, then '+', then '#'; the entries of one
// filter come in no specified order. fn must not modify the Trie.
func (t *Trie[K, V]) Walk(fn func(filter string, key K, v V)) {
	t.root.walk(fn)
}

func (n *trieNode[K, V]) walk(fn func(string, K, V)) {
	n.emit(fn)
	if len(n.children) > 0 {
		levels := make([]string, 0, len(n.children))
		for l := range n.children {
			levels = append(levels, l)
		}
		sort.Strings(levels)
		for _, l := range levels {
			n.children[l].walk(fn)
		}
	}
	if n.plus != nil {
		n.plus.walk(fn)
	}
	if n.hash != nil {
		n.hash.walk(fn)
	}
}

// lookup returns the node of filter, or nil if there is none.
func (t *Trie[K, V]) lookup(filter string) *trieNode[K, V] {
	n := &t.root
	for rest, more := filter, true; more && n != nil; {
		var level string
		level, rest, more = cutLevel(rest)
		switch level {
		case "+":
			n = n.plus
		case "#":
			n = n.hash
		default:
			n = n.children[level]
		}
	}
	return n
}

// child returns n's child for level, creating it if needed.
func (n *trieNode[K, V]) child(level string) *trieNode[K, V] {
	var slot **trieNode[K, V]
	switch level {
	case "+":
		slot = &n.plus
	case "#":
		slot = &n.hash
	default:
		if c := n.children[level]; c != nil {
			return c
		}
		level = strings.Clone(level)
		c := &trieNode[K, V]{parent: n, level: level}
		if n.children == nil {
			n.children = make(map[string]*trieNode[K, V])
		}
		n.children[level] = c
		return c
	}
	if *slot == nil {
		*slot = &trieNode[K, V]{parent: n, level: level}
	}
	return *slot
}

// find returns the position of key in n.subs, or -1.
func (n *trieNode[K, V]) find(key K) int {
	if n.index != nil {
		if i, ok := n.index[key]; ok {
			return i
		}
		return -1
	}
	for i := range n.subs {
		if n.subs[i].key == key {
			return i
		}
	}
	return -1
}

// removeAt removes n.subs[i] by moving the last entry into its place.
func (n *trieNode[K, V]) removeAt(i int) {
	last := len(n.subs) - 1
	key := n.subs[i].key
	if i != last {
		n.subs[i] = n.subs[last]
		if n.index != nil {
			n.index[n.subs[i].key] = i
		}
	}
	n.subs[last] = trieEntry[K, V]{} // drop references held by K and V
	n.subs = n.subs[:last]
	if n.index != nil {
		delete(n.index, key)
		if len(n.subs) <= indexDropAt {
			n.index = nil
		}
	}
	// Give back the memory of a filter that once had many subscribers.
	if c := cap(n.subs); c > 64 && len(n.subs) < c/4 {
		n.subs = append([]trieEntry[K, V](nil), n.subs...)
	}
	if len(n.subs) == 0 {
		n.subs = nil
	}
}

// prune removes n and then its ancestors for as long as they hold nothing.
func (n *trieNode[K, V]) prune() {
	for n.parent != nil && len(n.subs) == 0 && len(n.children) == 0 && n.plus == nil && n.hash == nil {
		p := n.parent
		switch {
		case p.plus == n:
			p.plus = nil
		case p.hash == n:
			p.hash = nil
		default:
			delete(p.children, n.level)
			if len(p.children) == 0 {
				p.children = nil
			}
		}
		n.parent = nil
		n = p
	}
}
