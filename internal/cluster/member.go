package cluster

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/starlingmq/starling/internal/cluster/meta"
)

// delegate gives memberlist this node's metadata and tells the node of
// membership changes.
type delegate struct{ n *Node }

// nodeMeta is what a node gossips about itself: its link address, its
// incarnation, and whether it is part of a formed registry.
func (n *Node) nodeMeta() []byte {
	f := "0"
	if n.formed.Load() {
		f = "1"
	}
	return []byte("1|" + n.linkAddr + "|" + itoa(n.inc) + "|" + f)
}

func parseMeta(b []byte) (linkAddr string, inc uint64, formed bool, ok bool) {
	parts := strings.Split(string(b), "|")
	if len(parts) < 4 || parts[0] != "1" {
		return "", 0, false, false
	}
	inc, err := strconv.ParseUint(parts[2], 10, 64)
	if err != nil {
		return "", 0, false, false
	}
	return parts[1], inc, parts[3] == "1", true
}

func (d *delegate) NodeMeta(limit int) []byte {
	m := d.n.nodeMeta()
	if len(m) > limit {
		return nil
	}
	return m
}
func (d *delegate) NotifyMsg([]byte)                           {}
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     {}

func (d *delegate) NotifyJoin(m *memberlist.Node)   { d.n.memberAlive(m) }
func (d *delegate) NotifyUpdate(m *memberlist.Node) { d.n.memberAlive(m) }
func (d *delegate) NotifyLeave(m *memberlist.Node)  { d.n.memberDead(m) }

func (n *Node) startGossip() error {
	host, portStr, err := net.SplitHostPort(n.cfg.GossipAddr)
	if err != nil {
		return fmt.Errorf("cluster_listen %q: %w", n.cfg.GossipAddr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("cluster_listen %q: bad port", n.cfg.GossipAddr)
	}
	c := memberlist.DefaultLANConfig()
	if n.cfg.Fast {
		c = memberlist.DefaultLocalConfig()
		c.ProbeInterval = 300 * time.Millisecond
		c.ProbeTimeout = 200 * time.Millisecond
		c.GossipInterval = 50 * time.Millisecond
		c.SuspicionMult = 2
		c.PushPullInterval = 5 * time.Second
	} else {
		// a LAN with a faster verdict than memberlist's default: a dead
		// node is declared within about 3 to 5 seconds
		c.ProbeInterval = 500 * time.Millisecond
		c.ProbeTimeout = 300 * time.Millisecond
		c.SuspicionMult = 3
	}
	c.Name = n.name
	c.BindAddr = host
	c.BindPort = port
	if n.cfg.Advertise != "" {
		ah := n.cfg.Advertise
		if h, _, err := net.SplitHostPort(ah); err == nil {
			ah = h
		}
		c.AdvertiseAddr = ah
		c.AdvertisePort = port
	}
	if n.cfg.Secret != "" {
		c.SecretKey = gossipKey(n.cfg.Secret)
		c.GossipVerifyIncoming, c.GossipVerifyOutgoing = true, true
	}
	n.delegate = &delegate{n: n}
	c.Delegate = n.delegate
	c.Events = n.delegate
	c.Logger = meta.StdLogger(n.cfg.Logger.With("node", n.name, "component", "memberlist"))
	ml, err := memberlist.Create(c)
	if err != nil {
		return fmt.Errorf("cluster_listen %s: %w", n.cfg.GossipAddr, err)
	}
	n.ml = ml
	return nil
}

// memberAlive records a node memberlist sees alive and links to it.
func (n *Node) memberAlive(m *memberlist.Node) {
	if m.Name == n.name {
		return
	}
	addr, inc, formed, ok := parseMeta(m.Meta)
	if !ok {
		n.log.Warn("cluster: a member without Starling metadata ignored", "peer", m.Name)
		return
	}
	n.mu.Lock()
	mb := n.members[m.Name]
	if mb == nil {
		mb = &member{name: m.Name}
		n.members[m.Name] = mb
	}
	wasAlive := mb.alive
	if !mb.alive || mb.inc != inc {
		mb.since = time.Now()
	}
	mb.alive, mb.linkAddr, mb.inc, mb.formed = true, addr, inc, formed
	n.mu.Unlock()
	if !wasAlive {
		n.log.Info("cluster: node alive", "peer", m.Name, "link", addr)
	}
	// a restarted node's routes are replaced by its next snapshot (a new
	// incarnation wins); removing them here could wipe a snapshot that
	// arrived over a link before gossip brought the new metadata
	n.ensureLink(m.Name)
}

// memberDead handles a node memberlist declared dead or that left: its
// link closes and its routes are dropped at once.
func (n *Node) memberDead(m *memberlist.Node) {
	if m.Name == n.name {
		return
	}
	n.mu.Lock()
	mb := n.members[m.Name]
	if mb != nil && mb.alive {
		mb.alive = false
		mb.since = time.Now()
	}
	l := n.links[m.Name]
	n.mu.Unlock()
	n.log.Warn("cluster: node gone", "peer", m.Name, "state", stateName(m.State))
	if l != nil {
		l.close()
	}
	n.tableMu.Lock()
	n.table.RemoveNode(m.Name)
	n.tableMu.Unlock()
}

func stateName(s memberlist.NodeStateType) string {
	switch s {
	case memberlist.StateAlive:
		return "alive"
	case memberlist.StateSuspect:
		return "suspect"
	case memberlist.StateDead:
		return "dead"
	case memberlist.StateLeft:
		return "left"
	}
	return "unknown"
}

// ensureLink starts dialing peer when this node is the dialer of the pair
// (the smaller name) and no link or dial is under way. The dialer retries
// while the peer is alive.
func (n *Node) ensureLink(peer string) {
	if n.name > peer {
		return
	}
	n.mu.Lock()
	if n.links[peer] != nil || n.dialing[peer] || n.closing.Load() {
		n.mu.Unlock()
		return
	}
	n.dialing[peer] = true
	n.mu.Unlock()
	n.goroutine(func() {
		delay := 50 * time.Millisecond
		var wait time.Duration
		for {
			// Whether to stop and the clearing of dialing are one step
			// under n.mu: a link that goes down after this check finds
			// dialing cleared and calls ensureLink again; one that went
			// down before it (even right after a successful dial) is
			// dialed again here.
			n.mu.Lock()
			mb := n.members[peer]
			alive := mb != nil && mb.alive
			addr := ""
			if mb != nil {
				addr = mb.linkAddr
			}
			up := n.links[peer] != nil
			if !alive || up || n.closing.Load() {
				delete(n.dialing, peer)
				n.mu.Unlock()
				return
			}
			n.mu.Unlock()
			if wait > 0 {
				select {
				case <-n.quit:
					n.mu.Lock()
					delete(n.dialing, peer)
					n.mu.Unlock()
					return
				case <-time.After(wait):
				}
			}
			if err := n.dialLink(peer, addr); err != nil {
				n.log.Debug("cluster: link dial failed", "peer", peer, "err", err)
				wait = delay
				delay = min(2*delay, 2*time.Second)
				continue
			}
			// up: the check above ends the loop, unless the link already
			// died, and then it is dialed again after a short wait
			wait, delay = 50*time.Millisecond, 50*time.Millisecond
		}
	})
}

// joinLoop joins the seeds, resolving their names again every time, until
// the node has peers, then keeps checking every 30 seconds so that seeds
// that appear later (a DNS name gaining addresses) are joined too.
func (n *Node) joinLoop() {
	if len(n.cfg.Join) == 0 {
		return
	}
	wait := 200 * time.Millisecond
	for {
		addrs := n.resolveSeeds()
		if len(addrs) > 0 {
			if _, err := n.ml.Join(addrs); err != nil {
				n.log.Debug("cluster: join", "err", err)
			}
		}
		if n.ml.NumMembers() > 1 {
			wait = 30 * time.Second
		} else {
			wait = min(2*wait, 5*time.Second)
		}
		select {
		case <-n.quit:
			return
		case <-time.After(wait):
		}
	}
}

// resolveSeeds returns the seeds' addresses that are not members yet.
func (n *Node) resolveSeeds() []string {
	known := make(map[string]bool)
	for _, m := range n.ml.Members() {
		known[m.Address()] = true
	}
	var out []string
	for _, s := range n.cfg.Join {
		host, port, err := net.SplitHostPort(s)
		if err != nil {
			continue
		}
		ips, err := net.DefaultResolver.LookupHost(context.Background(), host)
		if err != nil {
			n.log.Debug("cluster: seed not resolved", "seed", s, "err", err)
			continue
		}
		for _, ip := range ips {
			a := net.JoinHostPort(ip, port)
			if !known[a] && a != n.cfg.GossipAddr {
				out = append(out, a)
			}
		}
	}
	return out
}

// registryLoop forms the registry once Expect nodes are seen, and, on the
// leader, keeps its configuration in line with membership.
func (n *Node) registryLoop() {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	var adopted, adopting atomic.Bool
	for {
		select {
		case <-n.quit:
			return
		case <-t.C:
		}
		if !n.formed.Load() {
			if n.reg.HasState() {
				n.setFormed()
			} else {
				n.maybeBootstrap()
			}
			continue
		}
		if !adopted.Load() && !adopting.Load() {
			if id, _ := n.reg.Leader(); id != "" {
				// until it succeeds once (a registry that fails during
				// the check, a leader election, is tried again)
				adopting.Store(true)
				n.goroutine(func() {
					if n.adoptSessions() {
						adopted.Store(true)
					}
					adopting.Store(false)
				})
			}
		}
		if n.reg.IsLeader() {
			alive, dead := n.membership()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := n.reg.Reconcile(ctx, alive, dead, n.cfg.DeadNodeTimeout); err != nil {
				n.log.Debug("cluster: registry reconcile", "err", err)
			}
			cancel()
		}
	}
}

func (n *Node) setFormed() {
	if !n.formed.Swap(true) && n.ml != nil {
		n.ml.UpdateNode(time.Second)
	}
}

// soloBootstrapWait is how long a node that has seeds but sees no other
// node waits before it forms a registry alone (cluster_expect 1).
const soloBootstrapWait = 10 * time.Second

// maybeBootstrap forms the registry, on the first node by name, with the
// first voters (by name) when Expect nodes are alive and none of them
// belongs to a formed registry (a node joining a formed cluster waits for
// the leader to add it).
func (n *Node) maybeBootstrap() {
	alive, _ := n.membership()
	n.mu.Lock()
	anyFormed := false
	for _, m := range n.members {
		if m.alive && m.formed {
			anyFormed = true
		}
	}
	n.mu.Unlock()
	if anyFormed || len(alive) < n.cfg.Expect {
		return
	}
	if len(alive) == 1 && len(n.cfg.Join) > 0 && time.Since(n.started) < soloBootstrapWait {
		// alone, with seeds to join (cluster_expect 1, the default): a
		// node added to a running cluster whose seeds do not answer at
		// once must not form a registry of its own, which would never
		// merge with theirs; it waits a while for them first
		return
	}
	slices.SortFunc(alive, func(a, b meta.Server) int { return strings.Compare(a.ID, b.ID) })
	voters := alive[:meta.VoterTarget(len(alive))]
	if voters[0].ID != n.name {
		// One node bootstraps, the first by name: Raft needs every
		// bootstrapping node to give the same voters, and two nodes that
		// see different sets of nodes at that moment would not. The
		// others, without a configuration, vote for it and are then
		// given the registry's log; the leader adds the rest (Reconcile).
		return
	}
	if err := n.reg.Bootstrap(voters); err != nil {
		n.log.Warn("cluster: registry bootstrap", "err", err)
		return
	}
	n.log.Info("cluster: registry formed", "voters", len(voters))
	n.setFormed()
}

// membership lists the alive nodes (this one included) and when the dead
// ones died.
func (n *Node) membership() ([]meta.Server, map[string]time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	alive := []meta.Server{{ID: n.name, Addr: n.linkAddr}}
	dead := make(map[string]time.Time)
	for _, m := range n.members {
		if m.alive {
			alive = append(alive, meta.Server{ID: m.name, Addr: m.linkAddr})
		} else {
			dead[m.name] = m.since
		}
	}
	return alive, dead
}
