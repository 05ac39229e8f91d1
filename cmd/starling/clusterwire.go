package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/starlingmq/starling/internal/admin"
	"github.com/starlingmq/starling/internal/cluster"
	"github.com/starlingmq/starling/internal/config"
)

// newNode builds the cluster node of cfg's cluster keys.
func newNode(cfg *config.Config, log *slog.Logger) (*cluster.Node, error) {
	c := cfg.Clustering
	name := c.NodeName
	if name == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, errors.New("node_name is not set and the host name is unknown")
		}
		name = h
	}
	link := c.LinkListen
	if link == "" {
		host, port, _ := net.SplitHostPort(c.Listen)
		p, _ := strconv.Atoi(port)
		if p == 0 {
			return nil, errors.New("cluster_link_listen is required when cluster_listen has port 0")
		}
		link = net.JoinHostPort(host, strconv.Itoa(p+1))
	}
	raftDir := ""
	if cfg.Persistence {
		raftDir = filepath.Join(filepath.Dir(storeDir(cfg)), "starling.raft")
		if err := os.MkdirAll(raftDir, 0o700); err != nil {
			return nil, err
		}
	}
	return cluster.New(cluster.Config{
		NodeName: name, GossipAddr: c.Listen, LinkAddr: link, Advertise: c.Advertise, Join: c.Join,
		Expect: c.Expect, Secret: c.Secret, CAFile: c.CAFile, CertFile: c.CertFile, KeyFile: c.KeyFile,
		AllowRegisterDuringNetsplit: c.AllowRegisterDuringNetsplit, DeadNodeTimeout: c.DeadNodeTimeout,
		RaftDir: raftDir, Logger: log,
	})
}

// startAdmin serves the admin API on addr.
func (s *server) startAdmin(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s.admin = admin.New(admin.Options{
		Health: func() error {
			if s.node != nil {
				return s.node.Healthy()
			}
			return nil
		},
		Status: s.status,
		Leave: func(ctx context.Context) error {
			if s.node == nil {
				return errors.New("not in a cluster")
			}
			s.leaveCluster()
			s.once.Do(func() { close(s.leave) })
			return nil
		},
		Logger: s.log,
	})
	go s.admin.Serve(ln)
	s.log.Info("admin API serving", "addr", ln.Addr().String())
	return nil
}

// leaveCluster hands this node's sessions over and leaves, once.
func (s *server) leaveCluster() {
	s.leaveOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		start := time.Now()
		if err := s.node.Leave(ctx); err != nil {
			s.log.Warn("leaving the cluster", "err", err)
		}
		s.log.Info("left the cluster", "took", time.Since(start).Round(time.Millisecond).String())
	})
}

// status is the admin API's cluster status.
func (s *server) status() *admin.ClusterStatus {
	st := &admin.ClusterStatus{Serving: true, Clients: s.b.ClientCount(), Sessions: s.b.SessionCount(),
		Retained: s.b.SharedRetainedCount()}
	if s.node == nil {
		h, _ := os.Hostname()
		st.Node = h
		return st
	}
	cs := s.node.Status()
	st.Node, st.Clustered, st.Routes = cs.Node, true, cs.Routes
	st.Forwarded, st.Dropped, st.Relayed = cs.Forwarded, cs.Dropped, cs.Relayed
	st.Serving = s.node.Healthy() == nil
	st.Registry = admin.RegistryStatus{State: cs.Registry.State, Leader: cs.Registry.Leader, Sessions: cs.Registry.Sessions,
		Voters: cs.Registry.Voters, NonVoters: cs.Registry.NonVoters, LastIndex: cs.Registry.LastIndex}
	for _, m := range cs.Members {
		st.Members = append(st.Members, admin.MemberStatus{Name: m.Name, Addr: m.Addr, State: m.State, Link: m.Link,
			RTTMillis: float64(m.RTT.Microseconds()) / 1000, Since: m.Since, Voter: m.Voter, Leader: m.Leader})
	}
	return st
}

// stop closes the admin API, the broker, the node and the store.
func (s *server) stop() {
	if s.admin != nil {
		s.admin.Close()
	}
	s.b.Close()
	if s.node != nil {
		s.node.Close()
	}
	s.closeStore()
}
