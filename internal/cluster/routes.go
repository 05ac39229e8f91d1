package cluster

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/starlingmq/starling/internal/cluster/proto"
	"github.com/starlingmq/starling/internal/topic"
)

// The errors of route updates; test for them with errors.Is.
var (
	// ErrStale: an update older than what the table holds for its node (a
	// duplicate, or a late message of a previous incarnation). Ignore it.
	ErrStale = errors.New("cluster: stale route update")
	// ErrGap: an update that does not follow what the table holds for its
	// node (a delta was missed, a delta arrived before any snapshot, or a
	// snapshot part is missing). The caller asks the node for a snapshot
	// (proto.RouteSnapshotRequest); until one has arrived every delta of
	// the node is refused with ErrGap and its last known routes stay in
	// use.
	ErrGap = errors.New("cluster: route update out of sequence")
	// ErrInvalidRoute: a filter or group that is not valid, a route update
	// from no node or from this node, or (LocalRoutes.Remove) a
	// subscription that was never added.
	ErrInvalidRoute = errors.New("cluster: invalid route")
)

// SharedGroup is a shared subscription group, of one filter, with members
// on one node.
type SharedGroup struct {
	Group   string
	Filter  string // the plain filter, without "$share/{group}/"
	Members uint32
}

// RouteTable is the cluster route table: for every other node, the
// filters its sessions subscribe to, with counts, as that node reported
// them. Each node is the authority for its own routes and reports them as
// a snapshot followed by numbered deltas; the table checks the numbering
// and never edits one node's routes on another's word.
//
// A RouteTable does no I/O and starts no goroutines. It is not safe for
// concurrent use, except that any number of Match, Node, Nodes and Len
// calls may run at once (under a read lock, for example) while nothing
// modifies the table.
type RouteTable struct {
	self    string
	nodes   map[string]*nodeRoutes
	trie    *topic.Trie[*nodeRoutes, *route]
	nextID  int
	scratch sync.Pool // *matchScratch
}

// nodeRoutes is what the table holds for one node.
type nodeRoutes struct {
	name        string
	id          int // orders Match hits so that one node's are adjacent
	incarnation uint64
	seq         uint64
	synced      bool // false until a snapshot, and after a gap
	routes      map[string]*route
	staging     *staging
}

// staging collects the parts of a snapshot until the last one.
type staging struct {
	incarnation, seq uint64
	next             uint32
	routes           map[string]*route
}

// route is one filter of one node.
type route struct {
	count  uint32        // non-shared subscriptions
	shared []SharedGroup // Filter set, Members > 0
}

func (r *route) empty() bool { return r.count == 0 && len(r.shared) == 0 }

// setGroup sets the member count of group, 0 removing it.
func (r *route) setGroup(filter, group string, members uint32) {
	for i := range r.shared {
		if r.shared[i].Group == group {
			if members == 0 {
				r.shared = slices.Delete(r.shared, i, i+1)
			} else {
				r.shared[i].Members = members
			}
			return
		}
	}
	if members > 0 {
		r.shared = append(r.shared, SharedGroup{Group: group, Filter: filter, Members: members})
	}
}

type matchHit struct {
	node  *nodeRoutes
	route *route
}

type matchScratch struct {
	hits    []matchHit
	shared  []SharedGroup
	collect func(string, *nodeRoutes, *route)
}

// NewRouteTable returns an empty table for the node named self, whose own
// routes it refuses (they live in LocalRoutes).
func NewRouteTable(self string) *RouteTable {
	t := &RouteTable{self: self, nodes: make(map[string]*nodeRoutes), trie: topic.NewTrie[*nodeRoutes, *route]()}
	t.scratch.New = func() any {
		s := &matchScratch{}
		s.collect = func(_ string, n *nodeRoutes, r *route) { s.hits = append(s.hits, matchHit{n, r}) }
		return s
	}
	return t
}

// NodeRoutes describes what a RouteTable holds for one node.
type NodeRoutes struct {
	Incarnation uint64
	Seq         uint64
	// Synced is false before the node's first snapshot and after a gap,
	// until the next snapshot: its deltas are refused meanwhile.
	Synced  bool
	Filters int
}

// Node returns what the table holds for node.
func (t *RouteTable) Node(node string) (NodeRoutes, bool) {
	n := t.nodes[node]
	if n == nil {
		return NodeRoutes{}, false
	}
	return NodeRoutes{Incarnation: n.incarnation, Seq: n.seq, Synced: n.synced, Filters: len(n.routes)}, true
}

// Nodes returns the names of the nodes the table holds, sorted.
func (t *RouteTable) Nodes() []string {
	names := make([]string, 0, len(t.nodes))
	for name := range t.nodes {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Len returns the number of (node, filter) routes.
func (t *RouteTable) Len() int { return t.trie.Len() }

func (t *RouteTable) checkOrigin(origin string) error {
	if origin == "" || origin == t.self {
		return fmt.Errorf("cluster: route update from %q on node %q: %w", origin, t.self, ErrInvalidRoute)
	}
	return nil
}

func (t *RouteTable) node(name string) *nodeRoutes {
	n := t.nodes[name]
	if n == nil {
		t.nextID++
		n = &nodeRoutes{name: name, id: t.nextID, routes: make(map[string]*route)}
		t.nodes[name] = n
	}
	return n
}

// before reports whether (inc1, seq1) is older than (inc2, seq2).
func before(inc1, seq1, inc2, seq2 uint64) bool {
	return inc1 < inc2 || inc1 == inc2 && seq1 < seq2
}

// ApplySnapshot applies one part of a node's route snapshot. The node's
// routes are replaced when the last part (More false) arrives; until then
// the old ones stay in use. A snapshot older than what the table holds is
// ErrStale; a part that does not follow the previous one is ErrGap (the
// parts so far are dropped); an invalid filter or group is
// ErrInvalidRoute. On error the routes are unchanged.
func (t *RouteTable) ApplySnapshot(s *proto.RouteSnapshot) error {
	if err := t.checkOrigin(s.Origin); err != nil {
		return err
	}
	for i := range s.Entries {
		e := &s.Entries[i]
		if err := validFilter(e.Filter); err != nil {
			return err
		}
		for _, g := range e.Shared {
			if err := validGroup(g.Group); err != nil {
				return err
			}
		}
	}
	n := t.node(s.Origin)
	if before(s.Incarnation, s.Seq, n.incarnation, n.seq) {
		return fmt.Errorf("cluster: routes of %s: snapshot %d/%d after %d/%d: %w",
			s.Origin, s.Incarnation, s.Seq, n.incarnation, n.seq, ErrStale)
	}
	st := n.staging
	switch {
	case s.Part == 0:
		st = &staging{incarnation: s.Incarnation, seq: s.Seq, routes: make(map[string]*route, len(s.Entries))}
		n.staging = st
	case st == nil || st.incarnation != s.Incarnation || st.seq != s.Seq || st.next != s.Part:
		n.staging = nil
		return fmt.Errorf("cluster: routes of %s: snapshot %d/%d part %d out of order: %w",
			s.Origin, s.Incarnation, s.Seq, s.Part, ErrGap)
	}
	st.next++
	for i := range s.Entries {
		e := &s.Entries[i]
		r := st.routes[e.Filter]
		if r == nil {
			r = &route{}
			st.routes[e.Filter] = r
		}
		r.count = e.Count
		for _, g := range e.Shared {
			r.setGroup(e.Filter, g.Group, g.Members)
		}
		if r.empty() {
			delete(st.routes, e.Filter)
		}
	}
	if s.More {
		return nil
	}
	for filter := range n.routes {
		t.trie.Remove(filter, n)
	}
	for filter, r := range st.routes {
		t.trie.Add(filter, n, r)
	}
	n.routes = st.routes
	n.incarnation, n.seq, n.synced, n.staging = st.incarnation, st.seq, true, nil
	return nil
}

// ApplyDelta applies a node's route delta, which must be the one after
// what the table holds: an older one is ErrStale, any other (a gap, a new
// incarnation, a delta before the first snapshot or during one) is ErrGap
// and the node stays out of sync until its next snapshot. A delta with an
// invalid filter or group is ErrInvalidRoute, is not applied and also
// leaves the node out of sync.
func (t *RouteTable) ApplyDelta(d *proto.RouteDelta) error {
	if err := t.checkOrigin(d.Origin); err != nil {
		return err
	}
	n := t.nodes[d.Origin]
	switch {
	case n == nil:
		return fmt.Errorf("cluster: routes of %s: delta %d/%d before any snapshot: %w", d.Origin, d.Incarnation, d.Seq, ErrGap)
	case before(d.Incarnation, d.Seq, n.incarnation, n.seq+1):
		return fmt.Errorf("cluster: routes of %s: delta %d/%d after %d/%d: %w",
			d.Origin, d.Incarnation, d.Seq, n.incarnation, n.seq, ErrStale)
	case !n.synced || n.staging != nil || d.Incarnation != n.incarnation || d.Seq != n.seq+1:
		n.synced, n.staging = false, nil
		return fmt.Errorf("cluster: routes of %s: delta %d/%d after %d/%d: %w",
			d.Origin, d.Incarnation, d.Seq, n.incarnation, n.seq, ErrGap)
	}
	for _, c := range d.Changes {
		err := validFilter(c.Filter)
		if err == nil && c.Group != "" {
			err = validGroup(c.Group)
		}
		if err != nil {
			n.synced = false
			return err
		}
	}
	for _, c := range d.Changes {
		r := n.routes[c.Filter]
		if r == nil {
			if c.Count == 0 {
				continue
			}
			r = &route{}
			n.routes[c.Filter] = r
			t.trie.Add(c.Filter, n, r)
		}
		if c.Group == "" {
			r.count = c.Count
		} else {
			r.setGroup(c.Filter, c.Group, c.Count)
		}
		if r.empty() {
			delete(n.routes, c.Filter)
			t.trie.Remove(c.Filter, n)
		}
	}
	n.seq = d.Seq
	return nil
}

// RemoveNode forgets every route of node (it died or left) and reports
// whether there were any. A later snapshot from it starts afresh.
func (t *RouteTable) RemoveNode(node string) bool {
	n := t.nodes[node]
	if n == nil {
		return false
	}
	for filter := range n.routes {
		t.trie.Remove(filter, n)
	}
	delete(t.nodes, node)
	return true
}

// Match calls fn once for every node with a route matching the topic name
// (which should have passed topic.ValidName), never twice for one node,
// in no particular order: the message is forwarded once to each such node.
// direct reports whether the node has non-shared subscriptions that match;
// shared lists the node's matching shared groups, to be weighed against
// other nodes' members of the same (Group, Filter) when the publishing
// node picks one member cluster-wide. A node with only shared groups gets
// the message only where it was picked.
//
// shared is valid only during the call to fn, which must not modify the
// table. Match costs O(levels of the name x wildcard branches) plus the
// matches, and does not allocate once warm.
func (t *RouteTable) Match(name string, fn func(node string, direct bool, shared []SharedGroup)) {
	s := t.scratch.Get().(*matchScratch)
	t.trie.Match(name, s.collect)
	hits := s.hits
	if len(hits) > 1 {
		slices.SortFunc(hits, func(a, b matchHit) int { return cmp.Compare(a.node.id, b.node.id) })
	}
	for i := 0; i < len(hits); {
		n := hits[i].node
		direct := false
		shared := s.shared[:0]
		for ; i < len(hits) && hits[i].node == n; i++ {
			r := hits[i].route
			direct = direct || r.count > 0
			shared = append(shared, r.shared...)
		}
		s.shared = shared
		fn(n.name, direct, shared)
	}
	clear(s.hits)
	clear(s.shared)
	s.hits, s.shared = s.hits[:0], s.shared[:0]
	t.scratch.Put(s)
}

func validFilter(filter string) error {
	if err := topic.ValidFilter(filter); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRoute, err)
	}
	return nil
}

// validGroup checks a share name [MQTT-4.8.2-1, MQTT-4.8.2-2].
func validGroup(group string) error {
	if group == "" || strings.ContainsAny(group, "/+#\x00") || !utf8.ValidString(group) {
		return fmt.Errorf("%w: share name %q", ErrInvalidRoute, group)
	}
	return nil
}

// LocalRoutes aggregates this node's sessions' subscriptions into the
// routes other nodes hold for it: a count per filter and per (shared
// group, filter), reported as numbered deltas and, to a link that comes
// up, as a snapshot.
//
// A non-shared filter changes the route only when its count goes from 0
// to 1 or from 1 to 0 (other nodes need to know whether to forward, not to
// whom); a shared group's member count is reported on every change, since
// the publishing node picks a member cluster-wide in proportion.
//
// Not safe for concurrent use; the owner also serialises Delta with
// sending, so that every link gets a snapshot then the deltas after it.
type LocalRoutes struct {
	node        string
	incarnation uint64
	seq         uint64
	routes      map[string]*localRoute // plain filter
	dirty       map[routeKey]struct{}
}

type localRoute struct {
	count  uint32
	shared map[string]uint32 // group -> members
}

type routeKey struct{ filter, group string }

// NewLocalRoutes returns the routes of node in its incarnation (see
// proto.Hello.Incarnation), empty, at sequence 0.
func NewLocalRoutes(node string, incarnation uint64) *LocalRoutes {
	return &LocalRoutes{node: node, incarnation: incarnation,
		routes: make(map[string]*localRoute), dirty: make(map[routeKey]struct{})}
}

// splitFilter returns the plain filter and group of a filter as
// subscribed ("$share/g/f" is f in g).
func splitFilter(filter string) (plain, group string, err error) {
	group, inner, shared, err := topic.ParseShared(filter)
	switch {
	case err != nil:
		return "", "", fmt.Errorf("%w: %w", ErrInvalidRoute, err)
	case shared:
		return inner, group, nil
	}
	return filter, "", validFilter(filter)
}

// Add counts one new subscription of a local session to filter, as
// subscribed ("$share/{group}/..." included). Replacing a session's
// existing subscription is not a new one.
func (l *LocalRoutes) Add(filter string) error {
	plain, group, err := splitFilter(filter)
	if err != nil {
		return err
	}
	r := l.routes[plain]
	if r == nil {
		r = &localRoute{}
		l.routes[plain] = r
	}
	if group == "" {
		if r.count == math.MaxUint32 {
			return fmt.Errorf("cluster: route %q: count overflow: %w", filter, ErrInvalidRoute)
		}
		if r.count++; r.count == 1 {
			l.dirty[routeKey{plain, ""}] = struct{}{}
		}
		return nil
	}
	if r.shared == nil {
		r.shared = make(map[string]uint32)
	}
	if r.shared[group] == math.MaxUint32 {
		return fmt.Errorf("cluster: route %q: count overflow: %w", filter, ErrInvalidRoute)
	}
	r.shared[group]++
	l.dirty[routeKey{plain, group}] = struct{}{}
	return nil
}

// Remove uncounts one subscription that Add counted. Removing one that was
// not added is ErrInvalidRoute.
func (l *LocalRoutes) Remove(filter string) error {
	plain, group, err := splitFilter(filter)
	if err != nil {
		return err
	}
	r := l.routes[plain]
	switch {
	case r == nil, group == "" && r.count == 0, group != "" && r.shared[group] == 0:
		return fmt.Errorf("cluster: route %q: not subscribed: %w", filter, ErrInvalidRoute)
	case group == "":
		if r.count--; r.count == 0 {
			l.dirty[routeKey{plain, ""}] = struct{}{}
		}
	default:
		if r.shared[group]--; r.shared[group] == 0 {
			delete(r.shared, group)
		}
		l.dirty[routeKey{plain, group}] = struct{}{}
	}
	if r.count == 0 && len(r.shared) == 0 {
		delete(l.routes, plain)
	}
	return nil
}

// Pending reports whether there are changes for Delta.
func (l *LocalRoutes) Pending() bool { return len(l.dirty) > 0 }

// Seq is the sequence number of the last delta.
func (l *LocalRoutes) Seq() uint64 { return l.seq }

func (l *LocalRoutes) count(k routeKey) uint32 {
	r := l.routes[k.filter]
	switch {
	case r == nil:
		return 0
	case k.group == "":
		return r.count
	}
	return r.shared[k.group]
}

// Delta returns the changes since the last Delta as the next delta (its
// Seq one more than the last), or false when there are none. Changes are
// the current absolute counts of what changed, sorted by filter and group.
func (l *LocalRoutes) Delta() (*proto.RouteDelta, bool) {
	if len(l.dirty) == 0 {
		return nil, false
	}
	changes := make([]proto.RouteChange, 0, len(l.dirty))
	for k := range l.dirty {
		changes = append(changes, proto.RouteChange{Filter: k.filter, Group: k.group, Count: l.count(k)})
	}
	clear(l.dirty)
	slices.SortFunc(changes, func(a, b proto.RouteChange) int {
		return cmp.Or(strings.Compare(a.Filter, b.Filter), strings.Compare(a.Group, b.Group))
	})
	l.seq++
	return &proto.RouteDelta{Origin: l.node, Incarnation: l.incarnation, Seq: l.seq, Changes: changes}, true
}

// Snapshot returns every route, as of Seq, in parts of about maxPartBytes
// encoded bytes each (0: one part), filters in sorted order; there is
// always at least one part. Changes not yet taken by Delta are included;
// the next delta repeats them, which is harmless since changes are
// absolute.
func (l *LocalRoutes) Snapshot(maxPartBytes int) []*proto.RouteSnapshot {
	filters := make([]string, 0, len(l.routes))
	for f := range l.routes {
		filters = append(filters, f)
	}
	slices.Sort(filters)
	newPart := func(part uint32) *proto.RouteSnapshot {
		return &proto.RouteSnapshot{Origin: l.node, Incarnation: l.incarnation, Seq: l.seq, Part: part}
	}
	parts := []*proto.RouteSnapshot{newPart(0)}
	size := 0
	for _, f := range filters {
		r := l.routes[f]
		e := proto.RouteEntry{Filter: f, Count: r.count}
		n := len(f) + 8
		if len(r.shared) > 0 {
			e.Shared = make([]proto.GroupCount, 0, len(r.shared))
			for g, m := range r.shared {
				e.Shared = append(e.Shared, proto.GroupCount{Group: g, Members: m})
				n += len(g) + 8
			}
			slices.SortFunc(e.Shared, func(a, b proto.GroupCount) int { return strings.Compare(a.Group, b.Group) })
		}
		last := parts[len(parts)-1]
		if maxPartBytes > 0 && size > 0 && size+n > maxPartBytes {
			last.More = true
			last = newPart(uint32(len(parts)))
			parts = append(parts, last)
			size = 0
		}
		last.Entries = append(last.Entries, e)
		size += n
	}
	return parts
}
