package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// A cluster of starling processes on loopback ports, each with its own
// configuration file and temp dir, each joining the nodes started before
// it. The names here are prefixed (cluster..., node...) to stay clear of
// the helpers of the other test files.

// Port indexes of a cluster node (brokerSpec.Ports).
const (
	nodePortMQTT   = iota // plain MQTT listener, for direct clients
	nodePortGossip        // cluster_listen (memberlist, TCP and UDP)
	nodePortLink          // cluster_link_listen (node links, Raft, registry)
	nodePortAdmin         // admin_listen (HTTP)
	nodePortProxy         // a second MQTT listener with proxy_protocol true (clusterOpts.ProxyListener)
)

// clusterOpts describes the nodes of a test cluster.
type clusterOpts struct {
	// Expect is cluster_expect (default: the number of nodes started).
	Expect int
	// ProxyListener adds a listener with proxy_protocol true (port
	// nodePortProxy) for clients that come through HAProxy.
	ProxyListener bool
	// DeadNodeTimeout is cluster_dead_node_timeout (default 5s).
	DeadNodeTimeout string
	// Extra returns more configuration lines for a node, given its
	// chosen ports; nil for none.
	Extra func(name string, ports []int) []string
}

// clusterNode is one starling process of a test cluster.
type clusterNode struct {
	*broker
	Name string
}

// GossipAddr is the node's cluster_listen address.
func (n *clusterNode) GossipAddr() string {
	return "127.0.0.1:" + strconv.Itoa(n.Ports[nodePortGossip])
}

// AdminAddr is the node's admin_listen address.
func (n *clusterNode) AdminAddr() string { return "127.0.0.1:" + strconv.Itoa(n.Ports[nodePortAdmin]) }

// ProxyAddr is the node's proxy_protocol listener.
func (n *clusterNode) ProxyAddr() string { return "127.0.0.1:" + strconv.Itoa(n.Ports[nodePortProxy]) }

// testCluster is a set of nodes started by one test.
type testCluster struct {
	t     *testing.T
	opts  clusterOpts
	mu    sync.Mutex
	nodes []*clusterNode
	seeds []string // gossip addresses of the nodes started so far
}

// startCluster starts n nodes named n1..nN and waits until the cluster
// has formed (see waitFormed). Cleanup stops every node still running
// at once with SIGINT (no handover: the harness's sequential SIGTERM
// would make each node in turn hand its sessions to the others).
func startCluster(t *testing.T, n int, opts clusterOpts) *testCluster {
	t.Helper()
	if opts.Expect == 0 {
		opts.Expect = n
	}
	if opts.DeadNodeTimeout == "" {
		opts.DeadNodeTimeout = "5s"
	}
	c := &testCluster{t: t, opts: opts}
	start := time.Now()
	for range n {
		c.addNode()
	}
	c.waitFormed(30*time.Second, c.nodes...)
	t.Logf("cluster of %d nodes formed in %v", n, time.Since(start).Round(time.Millisecond))
	return c
}

// node returns the node called name.
func (c *testCluster) node(name string) *clusterNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		if n.Name == name {
			return n
		}
	}
	c.t.Fatalf("no node %s", name)
	return nil
}

// addNode starts the next node (n<k>), joining every node started so
// far. It does not wait for the node to join.
func (c *testCluster) addNode() *clusterNode {
	c.t.Helper()
	c.mu.Lock()
	name := fmt.Sprintf("n%d", len(c.nodes)+1)
	join := strings.Join(c.seeds, ",")
	c.mu.Unlock()
	nports := 4
	if c.opts.ProxyListener {
		nports = 5
	}
	spec := brokerSpec{Ports: nports, Config: func(p []int) string {
		var b strings.Builder
		fmt.Fprintf(&b, "allow_anonymous true\nlistener %d 127.0.0.1\n", p[nodePortMQTT])
		if c.opts.ProxyListener {
			fmt.Fprintf(&b, "\nlistener %d 127.0.0.1\nproxy_protocol true\n\n", p[nodePortProxy])
		}
		fmt.Fprintf(&b, "node_name %s\n", name)
		fmt.Fprintf(&b, "cluster_listen 127.0.0.1:%d\n", p[nodePortGossip])
		fmt.Fprintf(&b, "cluster_link_listen 127.0.0.1:%d\n", p[nodePortLink])
		if join != "" {
			fmt.Fprintf(&b, "cluster_join %s\n", join)
		}
		fmt.Fprintf(&b, "cluster_expect %d\n", c.opts.Expect)
		// One secret per test: nodes of tests running side by side never
		// merge, even if one reuses a port another test just freed.
		fmt.Fprintf(&b, "cluster_secret s3cret-%s\n", c.t.Name())
		fmt.Fprintf(&b, "cluster_dead_node_timeout %s\n", c.opts.DeadNodeTimeout)
		b.WriteString("allow_register_during_netsplit false\n")
		fmt.Fprintf(&b, "admin_listen 127.0.0.1:%d\n", p[nodePortAdmin])
		if c.opts.Extra != nil {
			for _, l := range c.opts.Extra(name, p) {
				b.WriteString(l + "\n")
			}
		}
		return b.String()
	}}
	b := startBroker(c.t, spec)
	// Registered after the node's own cleanup, so it runs before: every
	// node stops at once rather than each in turn with SIGTERM.
	c.t.Cleanup(c.stopAll)
	n := &clusterNode{broker: b, Name: name}
	c.mu.Lock()
	c.nodes = append(c.nodes, n)
	c.seeds = append(c.seeds, n.GossipAddr())
	c.mu.Unlock()
	return n
}

// stopAll ends every node still running, all at once, with SIGINT.
func (c *testCluster) stopAll() {
	c.mu.Lock()
	nodes := slices.Clone(c.nodes)
	c.mu.Unlock()
	var signalled []*clusterNode
	for _, n := range nodes {
		if !n.Exited() {
			_ = n.cmd.Process.Signal(syscall.SIGINT)
			signalled = append(signalled, n)
		}
	}
	for _, n := range signalled {
		err, ok := n.waitExit(10 * time.Second)
		if !ok {
			c.t.Errorf("%s did not exit within 10 s of SIGINT", n.Name)
			continue // the harness's cleanup kills it
		}
		if err != nil {
			c.t.Errorf("%s exited with %v after SIGINT (want status 0)", n.Name, err)
		}
	}
}

// clusterStatus is the admin API's GET /api/v1/cluster/status.
type clusterStatus struct {
	Node      string                `json:"node"`
	Serving   bool                  `json:"serving"`
	Clustered bool                  `json:"clustered"`
	Members   []clusterMemberStatus `json:"members"`
	Registry  struct {
		State     string   `json:"state"`
		Leader    string   `json:"leader"`
		Sessions  int      `json:"sessions"`
		Voters    []string `json:"voters"`
		NonVoters []string `json:"non_voters"`
		LastIndex uint64   `json:"last_index"`
	} `json:"registry"`
	Routes   int    `json:"routes"`
	Retained int    `json:"retained"`
	Clients  int    `json:"clients"`
	Sessions int    `json:"sessions"`
	Relayed  uint64 `json:"relayed"`
}

type clusterMemberStatus struct {
	Name   string    `json:"name"`
	Addr   string    `json:"addr"`
	State  string    `json:"state"`
	Link   string    `json:"link"`
	RTT    float64   `json:"rtt_ms"`
	Since  time.Time `json:"since"`
	Voter  bool      `json:"voter"`
	Leader bool      `json:"leader"`
}

// member returns the node's view of the member called name.
func (s *clusterStatus) member(name string) (clusterMemberStatus, bool) {
	for _, m := range s.Members {
		if m.Name == name {
			return m, true
		}
	}
	return clusterMemberStatus{}, false
}

// inRegistry reports whether name is a voter or non-voter of the registry.
func (s *clusterStatus) inRegistry(name string) bool {
	return slices.Contains(s.Registry.Voters, name) || slices.Contains(s.Registry.NonVoters, name)
}

// clusterAdminHTTP has no keep-alives: idle connections would outlive the
// tests (goleak) and the nodes.
var clusterAdminHTTP = &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// health returns the HTTP status of GET /health (0 if unreachable).
func (n *clusterNode) health() int {
	resp, err := clusterAdminHTTP.Get("http://" + n.AdminAddr() + "/health")
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// status fetches the node's cluster status.
func (n *clusterNode) status() (*clusterStatus, error) {
	resp, err := clusterAdminHTTP.Get("http://" + n.AdminAddr() + "/api/v1/cluster/status")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	var st clusterStatus
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, fmt.Errorf("%w: %s", err, body)
	}
	return &st, nil
}

// mustStatus is status failing the test on an error.
func (n *clusterNode) mustStatus(t testing.TB) *clusterStatus {
	t.Helper()
	st, err := n.status()
	if err != nil {
		t.Fatalf("%s status: %v", n.Name, err)
	}
	return st
}

// clusterFormedProblem says why nodes have not formed a cluster yet, or "" once
// they have: every node answers /health with 200 and sees every other one
// alive with its link up, and a registry leader.
func clusterFormedProblem(nodes []*clusterNode) string {
	for _, n := range nodes {
		if n.Exited() {
			return n.Name + " exited"
		}
		if h := n.health(); h != http.StatusOK {
			return fmt.Sprintf("%s /health %d", n.Name, h)
		}
		st, err := n.status()
		if err != nil {
			return fmt.Sprintf("%s status: %v", n.Name, err)
		}
		if st.Registry.Leader == "" {
			return n.Name + " sees no registry leader"
		}
		for _, o := range nodes {
			if o == n {
				continue
			}
			m, ok := st.member(o.Name)
			if !ok || m.State != "alive" || m.Link != "up" {
				return fmt.Sprintf("%s sees %s as %+v", n.Name, o.Name, m)
			}
		}
	}
	return ""
}

// waitFormed waits until nodes form a cluster (see clusterFormedProblem).
func (c *testCluster) waitFormed(d time.Duration, nodes ...*clusterNode) {
	c.t.Helper()
	var why string
	eventually(c.t, d, func() bool {
		why = clusterFormedProblem(nodes)
		return why == ""
	}, "cluster formed (last problem: %s)", lazyText(func() string { return why }))
}

// routes returns how many remote routes n knows.
func (n *clusterNode) routes(t *testing.T) int {
	t.Helper()
	return n.mustStatus(t).Routes
}

// waitClusterRoutes waits until n knows at least min remote routes.
func waitClusterRoutes(t *testing.T, n *clusterNode, min int) {
	t.Helper()
	last := -1
	eventually(t, 10*time.Second, func() bool {
		st, err := n.status()
		if err != nil {
			return false
		}
		last = st.Routes
		return st.Routes >= min
	}, "%s knows %d remote routes (last seen %s)", n.Name, min, lazyText(func() string { return strconv.Itoa(last) }))
}

// lazyText is a message argument of eventually computed when it fails.
type lazyText func() string

func (l lazyText) String() string { return l() }

// --- MQTT clients for cluster tests ---

// v5 connects an MQTT 5 client to a node's direct listener.
func nodeV5(t *testing.T, n *clusterNode, id string, expiry uint32, cleanStart bool) *v5Client {
	t.Helper()
	cp := &paho.Connect{ClientID: id, CleanStart: cleanStart}
	if expiry > 0 {
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: u32(expiry)}
	}
	return dialV5(t, n.Addr(), cp, nil)
}

// clusterV3Conn is a paho.mqtt.golang client connected without failing the test
// from the calling goroutine.
type clusterV3Conn struct {
	mqtt.Client
	ID             string
	SessionPresent bool
	Local          string     // the client's own address of its TCP connection
	lost           chan error // the connection-lost handler's error
}

// Lost receives the error with which the connection was lost, if it was.
func (c *clusterV3Conn) Lost() <-chan error { return c.lost }

// clusterDialV3 connects an MQTT 3.1.1 client to server (tcp://host:port) that
// passes the messages it receives to onMessage; it is safe from any
// goroutine. The caller must Disconnect it.
func clusterDialV3(server, id string, clean bool, onMessage mqtt.MessageHandler) (*clusterV3Conn, error) {
	c := &clusterV3Conn{ID: id, lost: make(chan error, 1)}
	o := mqtt.NewClientOptions().
		AddBroker(server).
		SetClientID(id).
		SetProtocolVersion(4).
		SetCleanSession(clean).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetKeepAlive(30 * time.Second).
		SetConnectTimeout(10 * time.Second).
		SetWriteTimeout(10 * time.Second).
		SetDefaultPublishHandler(onMessage).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			select {
			case c.lost <- err:
			default:
			}
		}).
		SetCustomOpenConnectionFn(func(u *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
			conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
			if err == nil {
				c.Local = conn.LocalAddr().String() // read after the connect token completes
			}
			return conn, err
		})
	c.Client = mqtt.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(15 * time.Second) {
		c.Client.Disconnect(0)
		return nil, fmt.Errorf("connect %s: no CONNACK within 15 s", id)
	}
	if err := tok.Error(); err != nil {
		return nil, fmt.Errorf("connect %s: %w", id, err)
	}
	c.SessionPresent = tok.(*mqtt.ConnectToken).SessionPresent()
	return c, nil
}

// clusterTokenErr waits for tok and returns its error.
func clusterTokenErr(tok mqtt.Token, d time.Duration) error {
	if !tok.WaitTimeout(d) {
		return fmt.Errorf("no answer within %v", d)
	}
	return tok.Error()
}

// clusterCtx is a context for one MQTT exchange.
func clusterCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 10*time.Second)
}
