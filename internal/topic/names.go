package topic

import "strings"

// Names is the index of retained-message topic names: name -> V. It answers
// the reverse of Trie's question: given a topic filter (on SUBSCRIBE), which
// stored names does it match? Each name level is one node, so a filter with
// a literal prefix ("devices/42/#") visits only the names under that prefix;
// only a '+' or '#' level visits every child at its depth.
//
// Names is not safe for concurrent use. Get, Match and Len do not modify
// it, so any number of them may run at once (for example under a
// sync.RWMutex read lock) as long as no Set or Delete runs at the same time.
// The zero Names is not usable; call NewNames.
type Names[V any] struct {
	root  nameNode[V]
	count int
}

// nameNode is one level of a topic name.
type nameNode[V any] struct {
	parent   *nameNode[V]
	level    string // this node's key in parent.children
	children map[string]*nameNode[V]

	set  bool   // whether a name ends here
	name string // the whole name, while set
	v    V
}

// NewNames returns an empty Names.
func NewNames[V any]() *Names[V] {
	return &Names[V]{}
}

// Set adds name with value v, or replaces the value of name. name must have
// passed ValidName.
func (n *Names[V]) Set(name string, v V) {
	nd := &n.root
	for rest, more := name, true; more; {
		var level string
		level, rest, more = cutLevel(rest)
		c := nd.children[level]
		if c == nil {
			level = strings.Clone(level)
			c = &nameNode[V]{parent: nd, level: level}
			if nd.children == nil {
				nd.children = make(map[string]*nameNode[V])
			}
			nd.children[level] = c
		}
		nd = c
	}
	if !nd.set {
		nd.set = true
		// Cloned so that the index never pins a caller's larger string.
		nd.name = strings.Clone(name)
		n.count++
	}
	nd.v = v
}

// Delete removes name and reports whether it was there. Nodes left with no
// name and no children are pruned.
func (n *Names[V]) Delete(name string) bool {
	nd := n.lookup(name)
	if nd == nil || !nd.set {
		return false
	}
	var zero V
	nd.set, nd.name, nd.v = false, "", zero
	n.count--
	for nd.parent != nil && !nd.set && len(nd.children) == 0 {
		p := nd.parent
		delete(p.children, nd.level)
		if len(p.children) == 0 {
			p.children = nil
		}
		nd.parent = nil
		nd = p
	}
	return true
}

// Get returns the value stored for name and whether there is one.
func (n *Names[V]) Get(name string) (V, bool) {
	if nd := n.lookup(name); nd != nil && nd.set {
		return nd.v, true
	}
	var zero V
	return zero, false
}

// Len returns the number of names.
func (n *Names[V]) Len() int { return n.count }

// Match calls fn for every stored name that the topic filter matches, as
// Match(filter, name) would decide, including the rule that a filter
// starting with '+' or '#' does not match a name starting with '$'
// [MQTT-4.7.2-1]. fn returns false to stop. The order is unspecified.
//
// filter should have passed ValidFilter (for a shared subscription, pass the
// inner filter). Match does not modify Names; fn must not modify it either.
func (n *Names[V]) Match(filter string, fn func(name string, v V) bool) {
	if filter == "" {
		return
	}
	n.root.match(filter, true, fn)
}

// match reports the names below nd that match filter, the remaining one or
// more levels of a filter. root marks the root, where the '$' rule applies.
// It returns false once fn has asked to stop.
func (nd *nameNode[V]) match(filter string, root bool, fn func(string, V) bool) bool {
	level, rest, more := cutLevel(filter)
	switch level {
	case "#":
		// '#' matches the parent level too: "sport/#" matches "sport"
		// [MQTT-4.7.1-2]. The root never holds a name.
		if nd.set && !fn(nd.name, nd.v) {
			return false
		}
		for l, c := range nd.children {
			if root && IsSys(l) {
				continue
			}
			if !c.all(fn) {
				return false
			}
		}
	case "+":
		for l, c := range nd.children {
			if root && IsSys(l) {
				continue
			}
			if !c.step(rest, more, fn) {
				return false
			}
		}
	default:
		if c := nd.children[level]; c != nil {
			return c.step(rest, more, fn)
		}
	}
	return true
}

// step continues a match at nd, which matched one level of the filter; more
// reports whether the filter has levels after it, in rest.
func (nd *nameNode[V]) step(rest string, more bool, fn func(string, V) bool) bool {
	if more {
		return nd.match(rest, false, fn)
	}
	if nd.set {
		return fn(nd.name, nd.v)
	}
	return true
}

// all reports every name at or below nd.
func (nd *nameNode[V]) all(fn func(string, V) bool) bool {
	if nd.set && !fn(nd.name, nd.v) {
		return false
	}
	for _, c := range nd.children {
		if !c.all(fn) {
			return false
		}
	}
	return true
}

// lookup returns the node of name, or nil if there is none.
func (n *Names[V]) lookup(name string) *nameNode[V] {
	nd := &n.root
	for rest, more := name, true; more && nd != nil; {
		var level string
		level, rest, more = cutLevel(rest)
		nd = nd.children[level]
	}
	return nd
}
