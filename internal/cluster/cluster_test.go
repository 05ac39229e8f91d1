package cluster

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/starlingmq/starling/internal/broker"
	"github.com/starlingmq/starling/internal/client"
	"github.com/starlingmq/starling/internal/packet"
	"github.com/starlingmq/starling/internal/store"
	"github.com/starlingmq/starling/internal/testutil"
)

// tnode is one node of an in-process cluster: a broker serving MQTT on a
// loopback port, with its cluster Node.
type tnode struct {
	n      *Node
	b      *broker.Broker
	mqtt   string
	gossip string
	closed bool
}

func (tn *tnode) close() {
	if tn.closed {
		return
	}
	tn.closed = true
	tn.b.Close()
	tn.n.Close()
}

type clusterOpts struct {
	secret  string
	expect  int
	netsplt bool
	// a node that restarts: its store, Raft folder, fixed addresses
	store          broker.Store
	raftDir        string
	gossip, link   string
	deadNodeTimout time.Duration
}

// startNode starts one node joining seeds.
func startNode(t *testing.T, name string, seeds []string, o clusterOpts) *tnode {
	t.Helper()
	gossip, link := o.gossip, o.link
	if gossip == "" {
		gossip = "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
	}
	if link == "" {
		link = "127.0.0.1:0"
	}
	dead := o.deadNodeTimout
	if dead == 0 {
		dead = 3 * time.Second
	}
	n, err := New(Config{NodeName: name, GossipAddr: gossip, LinkAddr: link, Join: seeds,
		Expect: o.expect, Secret: o.secret, Fast: true, DeadNodeTimeout: dead,
		AllowRegisterDuringNetsplit: o.netsplt, RaftDir: o.raftDir})
	if err != nil {
		t.Fatal(err)
	}
	b := broker.New(broker.Options{Router: n, RetainAvailable: true, MaxKeepAlive: 65535, Store: o.store})
	if o.store != nil {
		if err := b.Load(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Start(b); err != nil {
		b.Close()
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go b.Serve(ln, &broker.ListenerOptions{Name: "test"})
	tn := &tnode{n: n, b: b, mqtt: ln.Addr().String(), gossip: gossip}
	t.Cleanup(tn.close)
	return tn
}

// startCluster starts k nodes n1..nk and waits until they have formed the
// registry and linked to each other.
func startCluster(t *testing.T, k int, o clusterOpts) []*tnode {
	t.Helper()
	if o.expect == 0 {
		o.expect = k
	}
	var nodes []*tnode
	var seeds []string
	for i := range k {
		tn := startNode(t, fmt.Sprintf("n%d", i+1), seeds, o)
		nodes = append(nodes, tn)
		if i == 0 {
			seeds = []string{tn.gossip}
		}
	}
	waitLinked(t, nodes...)
	return nodes
}

// waitLinked waits until every node has a link to every other and the
// registry has a leader.
func waitLinked(t *testing.T, nodes ...*tnode) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, func() bool {
		for _, tn := range nodes {
			st := tn.n.Status()
			up := 0
			for _, m := range st.Members {
				if m.Link == "up" {
					up++
				}
			}
			if up < len(nodes)-1 || st.Registry.Leader == "" || tn.n.Healthy() != nil {
				return false
			}
		}
		return true
	}, "cluster of %d did not link up", len(nodes))
}

// waitRoutes waits until node sees at least n remote routes.
func waitRoutes(t *testing.T, tn *tnode, n int) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, func() bool { return tn.n.Status().Routes >= n },
		"%s sees %d routes, want %d", tn.n.Name(), tn.n.Status().Routes, n)
}

// routedTo reports whether from would forward topic to to.
func routedTo(from, to *tnode, topic string) bool {
	from.n.tableMu.RLock()
	defer from.n.tableMu.RUnlock()
	found := false
	from.n.table.Match(topic, func(node string, direct bool, _ []SharedGroup) {
		found = found || (node == to.n.Name() && direct)
	})
	return found
}

// inbox collects the messages a client receives.
type inbox struct {
	mu   sync.Mutex
	msgs []*packet.Publish
	disc *packet.Disconnect
	gone bool
}

func (ib *inbox) add(p *packet.Publish) {
	ib.mu.Lock()
	defer ib.mu.Unlock()
	c := *p
	c.Payload = append([]byte(nil), p.Payload...)
	ib.msgs = append(ib.msgs, &c)
}

func (ib *inbox) len() int {
	ib.mu.Lock()
	defer ib.mu.Unlock()
	return len(ib.msgs)
}

func (ib *inbox) payloads() []string {
	ib.mu.Lock()
	defer ib.mu.Unlock()
	var out []string
	for _, m := range ib.msgs {
		out = append(out, string(m.Payload))
	}
	return out
}

func connect(t *testing.T, addr, id string, v packet.Version, clean bool, expiry uint32, ib *inbox) (*client.Client, *packet.Connack) {
	t.Helper()
	o := client.Options{Addr: addr, ClientID: id, Version: v, CleanStart: clean, KeepAlive: 30 * time.Second}
	if v == packet.V5 && expiry > 0 {
		o.Properties.SessionExpiry = &expiry
	}
	if ib != nil {
		o.OnMessage = ib.add
		o.OnDisconnect = func(d *packet.Disconnect, err error) {
			ib.mu.Lock()
			ib.disc, ib.gone = d, true
			ib.mu.Unlock()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, ack, err := client.Connect(ctx, o)
	if err != nil {
		t.Fatalf("connect %s to %s: %v", id, addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c, ack
}

func subscribe(t *testing.T, c *client.Client, filter string, qos byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, err := c.Subscribe(ctx, &packet.Subscribe{Subscriptions: []packet.Subscription{{Filter: filter, QoS: qos}}})
	if err != nil || sa.ReasonCodes[0].IsError() {
		t.Fatalf("subscribe %s: %v %v", filter, err, sa)
	}
}

func publish(t *testing.T, c *client.Client, topic, payload string, qos byte, retain bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rc, err := c.Publish(ctx, &packet.Publish{Topic: topic, Payload: []byte(payload), QoS: qos, Retain: retain})
	if err != nil || rc.IsError() {
		t.Fatalf("publish %s: %v %v", topic, rc, err)
	}
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// memberlist's and raft's background goroutines that outlive
		// Shutdown by a moment
		goleak.IgnoreTopFunction("github.com/hashicorp/raft.(*NetworkTransport).listen"),
		goleak.IgnoreAnyFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"),
	)
}

func TestPubSubAcrossNodes(t *testing.T) {
	nodes := startCluster(t, 3, clusterOpts{})
	a, c := nodes[0], nodes[2]
	for _, qos := range []byte{0, 1, 2} {
		t.Run("qos"+strconv.Itoa(int(qos)), func(t *testing.T) {
			var ib inbox
			sub, _ := connect(t, c.mqtt, "sub-"+strconv.Itoa(int(qos)), packet.V5, true, 0, &ib)
			filter := fmt.Sprintf("q%d/+/x", qos)
			subscribe(t, sub, filter, 2)
			subscribe(t, sub, fmt.Sprintf("q%d/#", qos), 2) // overlapping: still once
			testutil.Eventually(t, 10*time.Second, func() bool {
				return routedTo(a, c, fmt.Sprintf("q%d/0/x", qos)) && routedTo(a, c, fmt.Sprintf("q%d/z", qos))
			}, "routes of %s not on %s", c.n.Name(), a.n.Name())
			pub, _ := connect(t, a.mqtt, "pub-"+strconv.Itoa(int(qos)), packet.V311, true, 0, nil)
			for i := range 50 {
				publish(t, pub, fmt.Sprintf("q%d/%d/x", qos, i%5), strconv.Itoa(i), qos, false)
			}
			testutil.Eventually(t, 10*time.Second, func() bool { return ib.len() >= 50 }, "got %d of 50", ib.len())
			time.Sleep(100 * time.Millisecond) // a duplicate would arrive now
			got := ib.payloads()
			if len(got) != 50 {
				t.Fatalf("got %d messages, want 50 exactly once", len(got))
			}
			for i, p := range got {
				if p != strconv.Itoa(i) {
					t.Fatalf("message %d is %q: out of order", i, p)
				}
			}
		})
	}
}

func TestSharedSubscriptionAcrossNodes(t *testing.T) {
	nodes := startCluster(t, 3, clusterOpts{})
	var ibs [3]inbox
	for i, tn := range nodes[1:] {
		c, _ := connect(t, tn.mqtt, "member"+strconv.Itoa(i), packet.V5, true, 0, &ibs[i])
		subscribe(t, c, "$share/g/jobs/#", 1)
	}
	waitRoutes(t, nodes[0], 2)
	pub, _ := connect(t, nodes[0].mqtt, "pub", packet.V5, true, 0, nil)
	const n = 200
	for i := range n {
		publish(t, pub, "jobs/"+strconv.Itoa(i), strconv.Itoa(i), 1, false)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return ibs[0].len()+ibs[1].len() >= n },
		"shared members got %d+%d of %d", ibs[0].len(), ibs[1].len(), n)
	time.Sleep(100 * time.Millisecond)
	seen := make(map[string]int)
	for i := range 2 {
		for _, p := range ibs[i].payloads() {
			seen[p]++
		}
	}
	if len(seen) != n || ibs[0].len()+ibs[1].len() != n {
		t.Fatalf("%d distinct of %d delivered, %d deliveries: each once to one member", len(seen), n, ibs[0].len()+ibs[1].len())
	}
	if ibs[0].len() == 0 || ibs[1].len() == 0 {
		t.Errorf("one member got everything (%d, %d): members on both nodes should share", ibs[0].len(), ibs[1].len())
	}
}

func TestRetainedAcrossNodes(t *testing.T) {
	nodes := startCluster(t, 2, clusterOpts{})
	pub, _ := connect(t, nodes[0].mqtt, "pub", packet.V311, true, 0, nil)
	publish(t, pub, "r/1", "one", 1, true)
	publish(t, pub, "r/2", "two", 1, true)
	publish(t, pub, "r/2", "", 1, true) // deleted
	var ib inbox
	testutil.Eventually(t, 5*time.Second, func() bool { return nodes[1].b.Stats().Retained == 1 }, "retained not replicated")
	sub, _ := connect(t, nodes[1].mqtt, "sub", packet.V311, true, 0, &ib)
	subscribe(t, sub, "r/#", 1)
	testutil.Eventually(t, 5*time.Second, func() bool { return ib.len() == 1 }, "retained not received")
	if got := ib.payloads(); got[0] != "one" {
		t.Fatalf("retained %q", got)
	}
	// a node that joins later gets the retained messages in its snapshot;
	// its seed is a host name, resolved by the node
	_, port, _ := net.SplitHostPort(nodes[0].gossip)
	late := startNode(t, "n3", []string{"localhost:" + port}, clusterOpts{expect: 2})
	testutil.Eventually(t, 15*time.Second, func() bool { return late.b.Stats().Retained == 1 }, "late node has no retained")
	var ib2 inbox
	sub2, _ := connect(t, late.mqtt, "sub2", packet.V5, true, 0, &ib2)
	subscribe(t, sub2, "r/#", 0)
	testutil.Eventually(t, 5*time.Second, func() bool { return ib2.len() == 1 }, "late node's subscriber got no retained")
}

func TestClientIDUniqueAcrossNodes(t *testing.T) {
	nodes := startCluster(t, 2, clusterOpts{})
	var ib inbox
	connect(t, nodes[0].mqtt, "dup", packet.V5, true, 0, &ib)
	connect(t, nodes[1].mqtt, "dup", packet.V5, true, 0, nil)
	testutil.Eventually(t, 5*time.Second, func() bool {
		ib.mu.Lock()
		defer ib.mu.Unlock()
		return ib.gone
	}, "first connection not closed")
	ib.mu.Lock()
	defer ib.mu.Unlock()
	if ib.disc == nil || ib.disc.ReasonCode != packet.SessionTakenOver {
		t.Fatalf("first connection closed with %+v, want DISCONNECT 0x8E", ib.disc)
	}
}

func TestPersistentSessionFollowsClient(t *testing.T) {
	nodes := startCluster(t, 3, clusterOpts{})
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		t.Run(v.String(), func(t *testing.T) {
			id := "roamer-" + v.String()
			c, _ := connect(t, nodes[0].mqtt, id, v, false, 3600, nil)
			subscribe(t, c, "roam/"+id, 1)
			c.Close()
			// this session's own route (the previous subtest's is there too)
			testutil.Eventually(t, 5*time.Second, func() bool { return routedTo(nodes[1], nodes[0], "roam/"+id) }, "no route")
			pub, _ := connect(t, nodes[1].mqtt, "pub-"+id, packet.V311, true, 0, nil)
			const n = 300
			for i := range n {
				publish(t, pub, "roam/"+id, strconv.Itoa(i), 1, false)
			}
			var ib inbox
			start := time.Now()
			_, ack := connect(t, nodes[2].mqtt, id, v, false, 3600, &ib)
			t.Logf("session moved with %d queued messages in %v", n, time.Since(start))
			if !ack.SessionPresent {
				t.Fatal("no session present on the new node")
			}
			testutil.Eventually(t, 10*time.Second, func() bool { return ib.len() >= n }, "got %d of %d", ib.len(), n)
			for i, p := range ib.payloads()[:n] {
				if p != strconv.Itoa(i) {
					t.Fatalf("message %d is %q: lost or out of order", i, p)
				}
			}
			// the subscription moved too: a new message still arrives
			publish(t, pub, "roam/"+id, "after", 1, false)
			testutil.Eventually(t, 5*time.Second, func() bool { return ib.len() >= n+1 }, "subscription did not move")
			if nodes[0].b.SessionCount() != 0 {
				t.Errorf("old node still holds %d sessions", nodes[0].b.SessionCount())
			}
		})
	}
}

func TestLeaveHandsSessionsOver(t *testing.T) {
	nodes := startCluster(t, 3, clusterOpts{})
	a := nodes[0]
	var ib inbox
	c, _ := connect(t, a.mqtt, "stay", packet.V5, false, 3600, &ib)
	subscribe(t, c, "keep/#", 1)
	waitRoutes(t, nodes[1], 1)
	pub, _ := connect(t, nodes[1].mqtt, "pub", packet.V311, true, 0, nil)
	for i := range 20 {
		publish(t, pub, "keep/x", strconv.Itoa(i), 1, false)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return ib.len() == 20 }, "online delivery")
	c.Close()
	for i := 20; i < 40; i++ {
		publish(t, pub, "keep/x", strconv.Itoa(i), 1, false)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a.n.Leave(ctx); err != nil {
		t.Fatalf("leave: %v", err)
	}
	if a.n.Healthy() == nil {
		t.Error("a node that left still reports healthy")
	}
	a.close()
	held := nodes[1].b.SessionCount() + nodes[2].b.SessionCount()
	if held < 2 { // "pub" is not persistent; "stay" moved
		t.Logf("sessions on n2 %d, n3 %d", nodes[1].b.SessionCount(), nodes[2].b.SessionCount())
	}
	var ib2 inbox
	_, ack := connect(t, nodes[2].mqtt, "stay", packet.V5, false, 3600, &ib2)
	if !ack.SessionPresent {
		t.Fatal("session lost when its node left")
	}
	// The client's last PUBACKs before Close may not have reached the
	// node: those messages come again first, marked DUP, as they must.
	queued := func() (later []string) {
		ib2.mu.Lock()
		defer ib2.mu.Unlock()
		for _, m := range ib2.msgs {
			if n, _ := strconv.Atoi(string(m.Payload)); n < 20 {
				if !m.Dup {
					t.Fatalf("message %s delivered again without DUP", m.Payload)
				}
				continue
			}
			later = append(later, string(m.Payload))
		}
		return later
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return len(queued()) >= 20 }, "got %d of 20 queued", len(queued()))
	for i, p := range queued() {
		if p != strconv.Itoa(20+i) {
			t.Fatalf("queued message %d is %q", i, p)
		}
	}
}

func TestWrongSecretLearnsNothing(t *testing.T) {
	a := startNode(t, "a", nil, clusterOpts{secret: "right", expect: 1})
	waitLinked(t, a)
	b := startNode(t, "b", []string{a.gossip}, clusterOpts{secret: "wrong", expect: 1})
	time.Sleep(2 * time.Second) // time to join, were it possible
	if n := a.n.ml.NumMembers(); n != 1 {
		t.Fatalf("node with the wrong secret joined: %d members", n)
	}
	if n := b.n.ml.NumMembers(); n != 1 {
		t.Fatalf("node with the wrong secret sees %d members", n)
	}
	// and its link port refuses the other's certificate
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if nc, err := b.n.dialConn(ctx, a.n.linkAddr, tagLink); err == nil {
		buf := make([]byte, 1)
		nc.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := nc.Read(buf); err == nil {
			t.Fatal("link port answered a node of another cluster")
		}
		nc.Close()
	}
}

// partition cuts n off the others' node links and Raft (gossip is left
// alone, so memberlist still sees every node alive: the hardest case, a
// cut link rather than a dead node). heal undoes it.
func partition(n *tnode, others ...*tnode) {
	all := func(string) bool { return true }
	n.n.blocked.Store(&all)
	addr := n.n.linkAddr
	toN := func(a string) bool { return a == addr }
	for _, o := range others {
		o.n.blocked.Store(&toN)
	}
	n.n.cutAll()
	for _, o := range others {
		o.n.cutAll()
	}
}

func heal(nodes ...*tnode) {
	for _, tn := range nodes {
		tn.n.blocked.Store(nil)
	}
}

func TestNetsplit(t *testing.T) {
	for _, allow := range []bool{false, true} {
		t.Run(fmt.Sprintf("allow_register_during_netsplit=%v", allow), func(t *testing.T) {
			nodes := startCluster(t, 3, clusterOpts{netsplt: allow})
			n1, n3 := nodes[0], nodes[2]
			var ib inbox
			sub, _ := connect(t, n3.mqtt, "q2sub", packet.V5, true, 0, &ib)
			subscribe(t, sub, "split/#", 2)
			testutil.Eventually(t, 5*time.Second, func() bool { return routedTo(n1, n3, "split/x") }, "no route")
			pub, _ := connect(t, n1.mqtt, "pub", packet.V5, true, 0, nil)
			publish(t, pub, "split/before", "before", 2, false)
			testutil.Eventually(t, 5*time.Second, func() bool { return ib.len() == 1 }, "not delivered before the split")

			partition(n3, nodes[0], nodes[1])
			testutil.Eventually(t, 10*time.Second, func() bool {
				id, _ := n3.n.reg.Leader()
				return id == "" && n3.n.Status().Members[1].Link == "down"
			}, "n3 still reaches the registry after the cut")
			// the majority side serves persistent clients
			connect(t, n1.mqtt, "majority", packet.V5, false, 600, nil)
			// the minority side: refused unless allow_register_during_netsplit
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, ack, err := client.Connect(ctx, client.Options{Addr: n3.mqtt, ClientID: "minority", Version: packet.V5,
				Properties: packet.Properties{SessionExpiry: new(uint32(600))}})
			cancel()
			if allow {
				if err != nil {
					t.Fatalf("persistent client refused on the minority side with allow_register_during_netsplit: %v", err)
				}
			} else if err == nil || ack == nil || ack.ReasonCode != packet.ServerUnavailable {
				t.Fatalf("persistent client on the minority side: %v %+v, want CONNACK 0x88", err, ack)
			}
			// a clean client needs no registry: served on both sides
			connect(t, n3.mqtt, "clean-minority", packet.V5, true, 0, nil)
			if err := n3.n.Healthy(); (err == nil) == !allow {
				t.Errorf("health of the minority node during the split: %v", err)
			}
			// retained written on both sides during the split
			publish(t, pub, "ret/a", "from-n1", 1, true)
			pub3, _ := connect(t, n3.mqtt, "pub3", packet.V5, true, 0, nil)
			publish(t, pub3, "ret/b", "from-n3", 1, true)

			heal(nodes...)
			waitLinked(t, nodes...)
			// routes converge: n1 forwards to n3's subscriber again
			testutil.Eventually(t, 10*time.Second, func() bool { return routedTo(n1, n3, "split/x") }, "routes did not converge")
			publish(t, pub, "split/after", "after", 2, false)
			testutil.Eventually(t, 5*time.Second, func() bool { return ib.len() >= 2 }, "not delivered after healing")
			time.Sleep(200 * time.Millisecond)
			if got := ib.payloads(); len(got) != 2 || got[0] != "before" || got[1] != "after" {
				t.Fatalf("QoS 2 subscriber got %q, want each message once", got)
			}
			// retained converge both ways
			for _, tn := range []*tnode{n1, n3} {
				testutil.Eventually(t, 10*time.Second, func() bool { return tn.b.Stats().Retained == 2 },
					"%s has %d retained, want 2", tn.n.Name(), tn.b.Stats().Retained)
			}
		})
	}
}

// TestManySessionsMove moves 20 persistent sessions with 1,000 queued
// messages each at once, and checks every message arrives; it logs the
// CONNECT-to-CONNACK times (the move), which bench/cluster.sh measures on
// real processes.
func TestManySessionsMove(t *testing.T) {
	nodes := startCluster(t, 3, clusterOpts{})
	const S, N = 20, 1000
	for i := range S {
		c, _ := connect(t, nodes[0].mqtt, "mover"+strconv.Itoa(i), packet.V311, false, 0, nil)
		subscribe(t, c, "mv/"+strconv.Itoa(i), 1)
		c.Close()
	}
	waitRoutes(t, nodes[1], S)
	pub, _ := connect(t, nodes[1].mqtt, "pub", packet.V5, true, 0, nil)
	var wg sync.WaitGroup
	for i := range S {
		for j := range N {
			wg.Add(1)
			if err := pub.PublishAsync(&packet.Publish{Topic: "mv/" + strconv.Itoa(i), Payload: []byte(strconv.Itoa(j)), QoS: 1},
				func(packet.ReasonCode, error) { wg.Done() }); err != nil {
				t.Fatal(err)
			}
		}
	}
	wg.Wait()
	ibs := make([]inbox, S)
	lats := make([]time.Duration, S)
	var cw sync.WaitGroup
	for i := range S {
		cw.Go(func() {
			start := time.Now()
			_, ack := connect(t, nodes[2].mqtt, "mover"+strconv.Itoa(i), packet.V311, false, 0, &ibs[i])
			lats[i] = time.Since(start)
			if !ack.SessionPresent {
				t.Errorf("session %d not present", i)
			}
		})
	}
	cw.Wait()
	slices.Sort(lats)
	t.Logf("%d sessions with %d queued each moved: CONNACK p50 %v, max %v", S, N, lats[S/2], lats[S-1])
	for i := range S {
		testutil.Eventually(t, 20*time.Second, func() bool { return ibs[i].len() >= N }, "session %d got %d of %d", i, ibs[i].len(), N)
	}
}

// TestInflightMovesWithSession: QoS 1 and 2 messages sent but not
// acknowledged when the client goes away are sent again, with DUP and
// their packet identifiers, by the node it reconnects to; a QoS 2 message
// whose PUBREC was sent (awaiting PUBCOMP) gets its PUBREL there
// [MQTT-4.4.0-1].
func TestInflightMovesWithSession(t *testing.T) {
	nodes := startCluster(t, 2, clusterOpts{})
	var first inbox
	o := client.Options{Addr: nodes[0].mqtt, ClientID: "holder", Version: packet.V5, KeepAlive: 30 * time.Second,
		Properties: packet.Properties{SessionExpiry: new(uint32(600))}, ManualAcks: true, OnMessage: first.add}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := client.Connect(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	subscribe(t, c, "in/#", 2)
	pub, _ := connect(t, nodes[0].mqtt, "pub", packet.V5, true, 0, nil)
	publish(t, pub, "in/1", "one", 1, false)
	publish(t, pub, "in/2", "two", 2, false)
	testutil.Eventually(t, 5*time.Second, func() bool { return first.len() == 2 }, "got %d of 2", first.len())
	c.Close() // neither acknowledged
	ids := map[string]uint16{}
	for _, m := range first.msgs {
		ids[string(m.Payload)] = m.PacketID
	}

	var second inbox
	o.Addr, o.OnMessage = nodes[1].mqtt, second.add
	c2, ack, err := client.Connect(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if !ack.SessionPresent {
		t.Fatal("session not present on the other node")
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return second.len() == 2 }, "resent %d of 2", second.len())
	for _, m := range second.msgs {
		if !m.Dup || m.PacketID != ids[string(m.Payload)] {
			t.Errorf("%q resent with DUP=%v id %d, want DUP and id %d", m.Payload, m.Dup, m.PacketID, ids[string(m.Payload)])
		}
	}
	for _, m := range second.msgs {
		if err := c2.Ack(m); err != nil {
			t.Fatal(err)
		}
	}
	// acknowledged (PUBACK; PUBREC, PUBREL, PUBCOMP): nothing more comes on
	// a third connection. The broker shows no inflight count to poll, so
	// the acknowledgements get a moment to arrive.
	time.Sleep(300 * time.Millisecond)
	c2.Close()
	testutil.Eventually(t, 5*time.Second, func() bool { return nodes[1].b.SessionCount() >= 1 }, "session gone")
	var third inbox
	o.Addr, o.OnMessage = nodes[0].mqtt, third.add
	c3, _, err := client.Connect(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	time.Sleep(300 * time.Millisecond)
	if third.len() != 0 {
		t.Fatalf("acknowledged messages sent again after a second move: %q", third.payloads())
	}
}

// TestRestartedNodeDropsMovedSessions: a node goes down holding a
// persistent session in its store; the client reconnects elsewhere (its
// session is lost: its node is down) and gets a new one there. When the
// node comes back with its store, it drops its stale copy instead of
// collecting the client's messages forever.
func TestRestartedNodeDropsMovedSessions(t *testing.T) {
	nodes := startCluster(t, 2, clusterOpts{})
	st := store.NewMemory()
	o3 := clusterOpts{expect: 2, store: st, raftDir: t.TempDir(),
		gossip: "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t)), link: "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t)),
		deadNodeTimout: time.Minute}
	n3 := startNode(t, "n3", []string{nodes[0].gossip}, o3)
	waitLinked(t, append(nodes, n3)...)
	c, _ := connect(t, n3.mqtt, "wanderer", packet.V311, false, 0, nil)
	subscribe(t, c, "w/#", 1)
	c.Close()
	testutil.Eventually(t, 5*time.Second, func() bool {
		o, ok := nodes[0].n.reg.Owner("wanderer")
		return ok && o.Node == "n3"
	}, "session not registered")
	n3.close()

	var ib inbox
	c2, ack := connect(t, nodes[0].mqtt, "wanderer", packet.V311, false, 0, &ib)
	if ack.SessionPresent {
		t.Fatal("session present, but its node is down")
	}
	subscribe(t, c2, "w/#", 1)

	again := startNode(t, "n3", []string{nodes[0].gossip}, o3)
	waitLinked(t, append(nodes, again)...)
	testutil.Eventually(t, 10*time.Second, func() bool { return again.b.SessionCount() == 0 },
		"restarted node still holds %d sessions", again.b.SessionCount())
	pub, _ := connect(t, nodes[1].mqtt, "pub", packet.V311, true, 0, nil)
	publish(t, pub, "w/x", "hello", 1, false)
	testutil.Eventually(t, 5*time.Second, func() bool { return ib.len() == 1 }, "not delivered")
	time.Sleep(200 * time.Millisecond)
	if ib.len() != 1 {
		t.Fatalf("delivered %d times", ib.len())
	}
}

// gatedStore is a store whose synced writes are acknowledged only when the
// test opens its gate (an fsync that takes as long as the test wants).
type gatedStore struct {
	*store.Memory
	mu   sync.Mutex
	gate chan struct{}
}

func (g *gatedStore) setGate(ch chan struct{}) {
	g.mu.Lock()
	g.gate = ch
	g.mu.Unlock()
}

func (g *gatedStore) ApplyAsync(ctx context.Context, b *broker.Batch) (func() error, error) {
	if err := g.Memory.Apply(ctx, b, false); err != nil {
		return nil, err
	}
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	return func() error { <-gate; return nil }, nil
}

// TestLinkLossReleasesHeldDeliveries: a QoS 1 message forwarded to a node
// for an offline persistent session is held there until its record is
// durable. If the link it came on closes meanwhile, the hold must still
// end once the write is done, or the session would never deliver again.
func TestLinkLossReleasesHeldDeliveries(t *testing.T) {
	a := startNode(t, "n1", nil, clusterOpts{expect: 2})
	open := make(chan struct{})
	close(open) // the subscription itself is stored normally
	gs := &gatedStore{Memory: store.NewMemory(), gate: open}
	b := startNode(t, "n2", []string{a.gossip}, clusterOpts{expect: 2, store: gs})
	waitLinked(t, a, b)
	c, _ := connect(t, b.mqtt, "durable", packet.V5, false, 600, nil)
	subscribe(t, c, "h/#", 1)
	c.Close()
	waitRoutes(t, a, 1)
	gate := make(chan struct{})
	gs.setGate(gate)

	pub, _ := connect(t, a.mqtt, "pub", packet.V5, true, 0, nil)
	acked := make(chan struct{})
	if err := pub.PublishAsync(&packet.Publish{Topic: "h/1", Payload: []byte("held"), QoS: 1},
		func(packet.ReasonCode, error) { close(acked) }); err != nil {
		t.Fatal(err)
	}
	// the message reached b and waits for its write; then the link goes
	time.Sleep(300 * time.Millisecond)
	a.n.cutAll()
	b.n.cutAll()
	close(gate)
	<-acked

	var ib inbox
	connect(t, b.mqtt, "durable", packet.V5, false, 600, &ib)
	testutil.Eventually(t, 5*time.Second, func() bool { return ib.len() == 1 },
		"the message held while its link closed was never delivered")
}

// TestLinkLostRightAfterDialIsDialedAgain: a link that goes down while
// its dial is still finishing (the reader's ensureLink then sees a dial
// under way) is dialed again, not left down for good.
func TestLinkLostRightAfterDialIsDialedAgain(t *testing.T) {
	nodes := startCluster(t, 2, clusterOpts{})
	waitLinked(t, nodes...)
	dialer := nodes[0] // n1 < n2: n1 dials
	var drops atomic.Int32
	hook := func(l *link) {
		if drops.Add(1) > 3 {
			return
		}
		l.close()
		// the reader's linkDown runs meanwhile, while the dial goroutine
		// has not returned yet
		for end := time.Now().Add(5 * time.Second); dialer.n.linkTo(l.peer) == l && time.Now().Before(end); {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond)
	}
	dialer.n.dialed.Store(&hook)
	dialer.n.linkTo("n2").close()
	testutil.Eventually(t, 20*time.Second, func() bool { return drops.Load() > 3 }, "link not dialed again after it was lost while its dial finished")
	waitLinked(t, nodes...)
}

// TestNodeWithSeedsWaitsBeforeFormingAlone: with cluster_expect 1 and
// seeds that do not answer (a node added while they are down), the node
// does not form a registry of its own at once, which would never merge
// with theirs; it forms one alone only after soloBootstrapWait.
func TestNodeWithSeedsWaitsBeforeFormingAlone(t *testing.T) {
	seed := "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t)) // nothing listens
	start := time.Now()
	a := startNode(t, "a", []string{seed}, clusterOpts{expect: 1})
	time.Sleep(2 * time.Second) // absence check: several registry ticks
	if a.n.formed.Load() {
		t.Fatal("a node with unanswering seeds formed a registry alone at once")
	}
	testutil.Eventually(t, soloBootstrapWait+5*time.Second, func() bool { return a.n.formed.Load() }, "never formed alone")
	if d := time.Since(start); d < soloBootstrapWait {
		t.Fatalf("formed alone after %v, before %v", d, soloBootstrapWait)
	}
}

// TestSessionMovesWhilePublishing: a persistent session moves between
// nodes again and again while publishers on every node keep publishing to
// it: every message arrives, in each publisher's order, and none twice
// (but for the redeliveries, with DUP, of messages sent and not
// acknowledged when the client left).
func TestSessionMovesWhilePublishing(t *testing.T) {
	nodes := startCluster(t, 3, clusterOpts{})
	// a move every 300 ms, then moves back to back (each move starting
	// while the relays of the one before may still run)
	t.Run("steady", func(t *testing.T) { movesWhilePublishing(t, nodes, "wanderer", 9, 150*time.Millisecond, true) })
	// back to back, each publisher's order is not kept (README, "Limits")
	t.Run("rapid", func(t *testing.T) { movesWhilePublishing(t, nodes, "sprinter", 15, 0, false) })
}

func movesWhilePublishing(t *testing.T, nodes []*tnode, id string, moves int, dwell time.Duration, inOrder bool) {
	topicName := "live/" + id
	c, _ := connect(t, nodes[0].mqtt, id, packet.V311, false, 0, nil)
	subscribe(t, c, topicName, 1)
	c.Close()
	for _, tn := range nodes[1:] {
		testutil.Eventually(t, 5*time.Second, func() bool { return routedTo(tn, nodes[0], topicName) }, "no route")
	}
	stop := make(chan struct{})
	var pw sync.WaitGroup
	sent := make([]atomic.Int64, len(nodes))
	for k, tn := range nodes {
		pub, _ := connect(t, tn.mqtt, id+"-pub"+strconv.Itoa(k), packet.V311, true, 0, nil)
		pw.Go(func() {
			var acks sync.WaitGroup
			defer acks.Wait()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				acks.Add(1)
				err := pub.PublishAsync(&packet.Publish{Topic: topicName, Payload: fmt.Appendf(nil, "%d-%d", k, i), QoS: 1},
					func(rc packet.ReasonCode, err error) {
						if err != nil || rc.IsError() {
							t.Errorf("publish %d-%d: %v %v", k, i, rc, err)
						}
						acks.Done()
					})
				if err != nil {
					acks.Done()
					t.Errorf("publish: %v", err)
					return
				}
				sent[k].Store(int64(i + 1))
				time.Sleep(300 * time.Microsecond)
			}
		})
	}
	var ib inbox
	time.Sleep(100 * time.Millisecond)
	for move := range moves {
		time.Sleep(dwell)
		cl, ack := connect(t, nodes[(move+1)%len(nodes)].mqtt, id, packet.V311, false, 0, &ib)
		if !ack.SessionPresent {
			t.Fatalf("move %d: no session present", move)
		}
		time.Sleep(dwell)
		cl.Close()
	}
	close(stop)
	pw.Wait()
	cl, _ := connect(t, nodes[0].mqtt, id, packet.V311, false, 0, &ib)
	defer cl.Close()
	total := 0
	for k := range nodes {
		total += int(sent[k].Load())
	}
	seen := func() map[string]int {
		ib.mu.Lock()
		defer ib.mu.Unlock()
		m := make(map[string]int)
		for _, p := range ib.msgs {
			m[string(p.Payload)]++
		}
		return m
	}
	for deadline := time.Now().Add(20 * time.Second); len(seen()) < total && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	got := seen()
	lost := 0
	for k := range nodes {
		for i := range sent[k].Load() {
			if got[fmt.Sprintf("%d-%d", k, i)] == 0 {
				lost++
			}
		}
	}
	ib.mu.Lock()
	firsts := make(map[string]bool)
	dups, reordered := 0, 0
	last := make(map[int]int)
	for _, p := range ib.msgs {
		if firsts[string(p.Payload)] && !p.Dup {
			dups++
		}
		firsts[string(p.Payload)] = true
		var k, i int
		fmt.Sscanf(string(p.Payload), "%d-%d", &k, &i)
		if l, ok := last[k]; ok && i < l && !p.Dup {
			reordered++
		}
		last[k] = max(last[k], i)
	}
	ib.mu.Unlock()
	t.Logf("%d messages published during %d moves; relayed by old nodes: %d", total, moves,
		nodes[0].n.relayed.Load()+nodes[1].n.relayed.Load()+nodes[2].n.relayed.Load())
	if lost > 0 || dups > 0 || (inOrder && reordered > 0) {
		t.Fatalf("%d of %d messages lost, %d delivered twice without DUP, %d out of order", lost, total, dups, reordered)
	}
}
