package meta

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/raft"
)

// VoterTarget is the number of voters Reconcile aims for with n alive
// nodes: 5 from 5 nodes on, 3 from 3, otherwise n (at least 1). Odd
// sizes tolerate as many failures as the next even size, at less cost.
func VoterTarget(n int) int {
	switch {
	case n >= 5:
		return 5
	case n >= 3:
		return 3
	case n < 1:
		return 1
	default:
		return n
	}
}

// changeKind is one step of Reconcile.
type changeKind int

const (
	changeRemove      changeKind = iota + 1 // RemoveServer
	changePurge                             // PurgeNode
	changeAddNonvoter                       // AddNonvoter: a new node, or a nonvoter's new address
	changeAddVoter                          // AddVoter: a promotion, or a voter's new address
)

func (k changeKind) String() string {
	switch k {
	case changeRemove:
		return "remove"
	case changePurge:
		return "purge"
	case changeAddNonvoter:
		return "add-nonvoter"
	case changeAddVoter:
		return "add-voter"
	}
	return fmt.Sprintf("changeKind(%d)", int(k))
}

type change struct {
	kind changeKind
	id   string
	addr string // the add kinds
}

// plan decides the membership changes that bring the configuration
// (servers) in line with what the failure detector sees: alive nodes
// (self is always alive) and dead ones with the time they were declared
// dead. owns reports whether a node owns registry entries. plan is pure:
// the leader applies its changes in order.
//
//  1. A node dead for deadTimeout or longer (and not alive, and not
//     self) is removed from the configuration and, if it owns entries,
//     purged.
//  2. An alive node missing from the configuration is added as a
//     nonvoter; one whose address changed gets its new address.
//  3. While fewer alive voters than VoterTarget(alive) remain, existing
//     alive nonvoters are promoted, in order of name. Nodes added in
//     step 2 are promoted by a later call, once they have had a chance
//     to catch up. This is also how a dead voter is replaced: it no
//     longer counts as alive, so a nonvoter takes its place at once,
//     long before the dead one is removed.
//
// Voters are never demoted: a cluster that shrank keeps its extra alive
// voters, and loses dead ones when they time out.
func plan(servers []raft.Server, self Server, alive []Server, dead map[string]time.Time,
	now time.Time, deadTimeout time.Duration, owns func(node string) bool) []change {
	aliveAddr := make(map[string]string, len(alive)+1)
	for _, s := range alive {
		aliveAddr[s.ID] = s.Addr
	}
	aliveAddr[self.ID] = self.Addr

	inConfig := make(map[string]raft.Server, len(servers))
	for _, s := range servers {
		inConfig[string(s.ID)] = s
	}

	var out []change

	// 1. Remove and purge nodes dead for too long.
	deadIDs := make([]string, 0, len(dead))
	for id := range dead {
		deadIDs = append(deadIDs, id)
	}
	slices.Sort(deadIDs)
	for _, id := range deadIDs {
		if _, ok := aliveAddr[id]; ok || now.Sub(dead[id]) < deadTimeout {
			continue
		}
		if _, ok := inConfig[id]; ok {
			out = append(out, change{kind: changeRemove, id: id})
			delete(inConfig, id)
		}
		if owns(id) {
			out = append(out, change{kind: changePurge, id: id})
		}
	}

	// 2. Add new alive nodes as nonvoters; update changed addresses.
	aliveIDs := make([]string, 0, len(aliveAddr))
	for id := range aliveAddr {
		aliveIDs = append(aliveIDs, id)
	}
	slices.Sort(aliveIDs)
	for _, id := range aliveIDs {
		addr := aliveAddr[id]
		if id == self.ID || addr == "" {
			continue
		}
		s, ok := inConfig[id]
		switch {
		case !ok:
			out = append(out, change{kind: changeAddNonvoter, id: id, addr: addr})
		case string(s.Address) != addr && s.Suffrage == raft.Voter:
			out = append(out, change{kind: changeAddVoter, id: id, addr: addr})
		case string(s.Address) != addr:
			out = append(out, change{kind: changeAddNonvoter, id: id, addr: addr})
		}
	}

	// 3. Promote alive nonvoters up to the target.
	target := VoterTarget(len(aliveAddr))
	aliveVoters := 0
	var candidates []raft.Server
	for id, s := range inConfig {
		if _, ok := aliveAddr[id]; !ok {
			continue
		}
		if s.Suffrage == raft.Voter {
			aliveVoters++
		} else {
			candidates = append(candidates, s)
		}
	}
	slices.SortFunc(candidates, func(a, b raft.Server) int { return cmp.Compare(a.ID, b.ID) })
	for _, s := range candidates {
		if aliveVoters >= target {
			break
		}
		id := string(s.ID)
		addr := aliveAddr[id]
		if addr == "" {
			addr = string(s.Address)
		}
		out = append(out, change{kind: changeAddVoter, id: id, addr: addr})
		aliveVoters++
	}
	return out
}

// Reconcile brings the Raft configuration in line with the failure
// detector's view: alive holds the nodes seen alive (this node counts as
// alive whether or not it is listed), dead the nodes declared dead or
// gone, with when. In order:
//
//  1. A node dead for deadTimeout or longer is removed from the
//     configuration and its entries are purged (never this node).
//  2. Alive nodes missing from the configuration are added as
//     nonvoters; members whose address changed get the new one.
//  3. While fewer alive voters than VoterTarget(len(alive)) remain,
//     alive nonvoters that were already members are promoted (so a node
//     joins as a nonvoter and is promoted by a later call). A dead voter
//     no longer counts, so it is replaced at once, long before it is
//     removed.
//
// Voters are never demoted, the leader never removed. Only the leader
// acts; on other nodes Reconcile returns nil at once. Call it
// periodically and on membership events: it makes every change it can
// and returns the failures joined; what is left undone is planned again
// by the next call.
func (r *Registry) Reconcile(ctx context.Context, alive []Server, dead map[string]time.Time, deadTimeout time.Duration) error {
	if !r.IsLeader() {
		return nil
	}
	servers, err := r.configuration()
	if err != nil {
		return fmt.Errorf("meta: reconcile: %w", err)
	}
	changes := plan(servers, Server{ID: r.id, Addr: r.addr}, alive, dead, time.Now(), deadTimeout,
		func(node string) bool { return r.fsm.sessions(node) > 0 })
	var errs []error
	for _, c := range changes {
		if !r.IsLeader() || ctx.Err() != nil {
			break
		}
		if err := r.applyChange(ctx, c); err != nil {
			errs = append(errs, fmt.Errorf("meta: reconcile: %s %s: %w", c.kind, c.id, err))
			if errors.Is(err, ErrClosed) {
				break
			}
			continue
		}
	}
	return errors.Join(errs...)
}

func (r *Registry) applyChange(ctx context.Context, c change) error {
	id, addr, timeout := raft.ServerID(c.id), raft.ServerAddress(c.addr), timeoutOf(ctx)
	switch c.kind {
	case changeRemove:
		if err := r.wait(ctx, r.raft.RemoveServer(id, 0, timeout)); err != nil {
			return err
		}
		r.log.Info("dead raft server removed", keyPeer, c.id)
	case changePurge:
		res, err := r.apply(ctx, command{op: opPurge, node: c.id})
		if err != nil {
			return err
		}
		r.log.Info("sessions of dead node purged", keyPeer, c.id, "sessions", res.deleted)
	case changeAddNonvoter:
		if err := r.wait(ctx, r.raft.AddNonvoter(id, addr, 0, timeout)); err != nil {
			return err
		}
		r.log.Info("raft nonvoter added", keyPeer, c.id, "addr", c.addr)
	case changeAddVoter:
		if err := r.wait(ctx, r.raft.AddVoter(id, addr, 0, timeout)); err != nil {
			return err
		}
		r.log.Info("raft voter added", keyPeer, c.id, "addr", c.addr)
	}
	return nil
}
