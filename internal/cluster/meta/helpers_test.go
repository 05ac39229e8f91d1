package meta

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// tcpLayer is a plain TCP raft.StreamLayer.
func tcpLayer(ln net.Listener) raft.StreamLayer {
	var d net.Dialer
	return NewStreamLayer(ln, func(ctx context.Context, addr string) (net.Conn, error) {
		return d.DialContext(ctx, "tcp", addr)
	})
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// eventually polls cond every 10 ms until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %v: "+format, append([]any{timeout}, args...)...)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testLogger returns a logger writing to t.Log until the test ends; later
// records (from goroutines winding down) are dropped.
func testLogger(t testing.TB, level slog.Level) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type testWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(p[:len(p)-1]))
	}
	return len(p), nil
}

// cluster runs registries on loopback TCP.
type cluster struct {
	t   testing.TB
	log *slog.Logger

	mu    sync.Mutex
	rpc   map[string]string // raft address -> RPC address
	nodes map[string]*node
}

type node struct {
	name, addr string
	dir        string
	reg        *Registry
}

func newCluster(t testing.TB) *cluster {
	c := &cluster{
		t:     t,
		log:   testLogger(t, slog.LevelInfo),
		rpc:   make(map[string]string),
		nodes: make(map[string]*node),
	}
	t.Cleanup(c.closeAll)
	return c
}

func (c *cluster) dialRPC(ctx context.Context, addr string) (net.Conn, error) {
	c.mu.Lock()
	rpcAddr, ok := c.rpc[addr]
	c.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("no RPC endpoint for %s", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", rpcAddr)
}

// start opens a registry named name, in memory if dir is "". addr, if not
// "", is the Raft address to listen on (for a restart).
func (c *cluster) start(name, dir, addr string, opts ...func(*Config)) *Registry {
	c.t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	raftLn, err := net.Listen("tcp", addr)
	if err != nil {
		c.t.Fatal(err)
	}
	rpcLn := listen(c.t)
	cfg := Config{
		NodeName:    name,
		Addr:        raftLn.Addr().String(),
		Dir:         dir,
		Layer:       tcpLayer(raftLn),
		RPCListener: rpcLn,
		DialRPC:     c.dialRPC,
		Logger:      c.log.With("node", name),
	}
	for _, o := range opts {
		o(&cfg)
	}
	c.mu.Lock()
	c.rpc[cfg.Addr] = rpcLn.Addr().String()
	c.mu.Unlock()
	r, err := Open(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	c.nodes[name] = &node{name: name, addr: cfg.Addr, dir: dir, reg: r}
	c.mu.Unlock()
	return r
}

func (c *cluster) node(name string) *node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[name]
}

// stop closes a node's registry (a crash, as far as peers can tell).
func (c *cluster) stop(name string) {
	c.t.Helper()
	n := c.node(name)
	if err := n.reg.Close(); err != nil {
		c.t.Errorf("close %s: %v", name, err)
	}
}

func (c *cluster) closeAll() {
	c.mu.Lock()
	var regs []*Registry
	for _, n := range c.nodes {
		regs = append(regs, n.reg)
	}
	c.mu.Unlock()
	for _, r := range regs {
		if err := r.Close(); err != nil {
			c.t.Errorf("close: %v", err)
		}
	}
}

// servers returns the Server of each named node.
func (c *cluster) servers(names ...string) []Server {
	var out []Server
	for _, n := range names {
		nd := c.node(n)
		out = append(out, Server{ID: nd.name, Addr: nd.addr})
	}
	return out
}

// bootstrap starts names in memory and bootstraps them as the voters.
func (c *cluster) bootstrap(names ...string) {
	c.t.Helper()
	for _, n := range names {
		c.start(n, "", "")
	}
	voters := c.servers(names...)
	for _, n := range names {
		if err := c.node(n).reg.Bootstrap(voters); err != nil {
			c.t.Fatal(err)
		}
	}
}

// leader waits until every named running node agrees on one leader among
// them and returns its name.
func (c *cluster) leader(names ...string) string {
	c.t.Helper()
	var leader string
	eventually(c.t, 10*time.Second, func() bool {
		leader = ""
		for _, n := range names {
			r := c.node(n).reg
			id, _ := r.Leader()
			if id == "" || (leader != "" && id != leader) {
				return false
			}
			leader = id
		}
		return c.node(leader).reg.IsLeader()
	}, "no agreed leader among %v", names)
	return leader
}

// follower returns a name among names that is not leader.
func follower(leader string, names ...string) string {
	for _, n := range names {
		if n != leader {
			return n
		}
	}
	return ""
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// voters returns the voters and nonvoters of r's configuration.
func voters(r *Registry) (v, nv []string) {
	for _, s := range r.Status().Servers {
		if s.Voter {
			v = append(v, s.ID)
		} else {
			nv = append(nv, s.ID)
		}
	}
	return v, nv
}

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }
