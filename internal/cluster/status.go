package cluster

import (
	"errors"
	"slices"
	"strings"
	"time"
)

// Status describes the node's view of the cluster.
type Status struct {
	Node      string
	Members   []MemberStatus // this node first, then by name
	Registry  RegistryStatus
	Routes    int // remote routes known
	Forwarded uint64
	Dropped   uint64
	Relayed   uint64
}

// MemberStatus is one node as this node sees it.
type MemberStatus struct {
	Name   string
	Addr   string // link address
	State  string // alive, dead
	Link   string // up, down, self
	RTT    time.Duration
	Since  time.Time
	Voter  bool
	Leader bool
}

// RegistryStatus is the session registry's state on this node.
type RegistryStatus struct {
	State     string
	Leader    string
	Sessions  int
	Voters    []string
	NonVoters []string
	LastIndex uint64
}

// Status returns the node's view of the cluster.
func (n *Node) Status() Status {
	rs := n.reg.Status()
	st := Status{Node: n.name, Forwarded: n.forwarded.Load(), Dropped: n.dropped.Load(), Relayed: n.relayed.Load()}
	st.Registry = RegistryStatus{State: rs.State, Leader: rs.Leader, Sessions: rs.Sessions, LastIndex: rs.LastIndex}
	voter := make(map[string]bool)
	for _, s := range rs.Servers {
		voter[s.ID] = s.Voter
		if s.Voter {
			st.Registry.Voters = append(st.Registry.Voters, s.ID)
		} else {
			st.Registry.NonVoters = append(st.Registry.NonVoters, s.ID)
		}
	}
	st.Members = append(st.Members, MemberStatus{Name: n.name, Addr: n.linkAddr, State: "alive", Link: "self",
		Voter: voter[n.name], Leader: rs.Leader == n.name})
	n.mu.Lock()
	var others []MemberStatus
	for _, m := range n.members {
		ms := MemberStatus{Name: m.name, Addr: m.linkAddr, State: "dead", Link: "down", Since: m.since,
			Voter: voter[m.name], Leader: rs.Leader == m.name}
		if m.alive {
			ms.State = "alive"
		}
		if l := n.links[m.name]; l != nil {
			ms.Link = "up"
			ms.RTT = time.Duration(l.rttNano.Load())
		}
		others = append(others, ms)
	}
	n.mu.Unlock()
	slices.SortFunc(others, func(a, b MemberStatus) int { return strings.Compare(a.Name, b.Name) })
	st.Members = append(st.Members, others...)
	n.tableMu.RLock()
	st.Routes = n.table.Len()
	n.tableMu.RUnlock()
	return st
}

// Healthy reports whether the node is in the cluster: the registry has a
// leader this node can see, and every node memberlist sees alive has a
// link up. HAProxy's check (/health) sends clients elsewhere otherwise.
func (n *Node) Healthy() error {
	if n.closing.Load() || n.leaving.Load() {
		return errors.New("leaving the cluster")
	}
	if !n.formed.Load() {
		return errors.New("the session registry has not formed yet (cluster_expect)")
	}
	if id, _ := n.reg.Leader(); id == "" && !n.cfg.AllowRegisterDuringNetsplit {
		return errors.New("no session registry leader in reach (netsplit?)")
	}
	return nil
}
