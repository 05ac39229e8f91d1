package meta

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// Errors of the registry; test for them with errors.Is.
var (
	// ErrNoLeader is returned (wrapped, with ctx's error) by a write
	// that could not get through to a leader before its ctx ended: no
	// leader elected, the leader unreachable, or it could not commit in
	// time. The write may still have been applied. Callers map it to
	// MQTT "Server unavailable".
	ErrNoLeader = errors.New("meta: no leader")
	// ErrClosed is returned by a call on a closed registry.
	ErrClosed = errors.New("meta: registry closed")
)

// Default Raft timing, tuned for a LAN or loopback. CommitTimeout is how
// often an idle leader sends each follower an empty AppendEntries (how
// late a follower's copy may learn of a commit); 10 ms made an idle
// 3-node cluster's leader use 6.5% of a core, 50 ms (Raft's own default)
// 3.7%. Writes are not slowed by it: they are sent at once.
const (
	DefaultHeartbeatTimeout   = 500 * time.Millisecond
	DefaultElectionTimeout    = 500 * time.Millisecond
	DefaultLeaderLeaseTimeout = 250 * time.Millisecond
	DefaultCommitTimeout      = 50 * time.Millisecond
)

// Config configures a Registry.
type Config struct {
	// NodeName is this node's Raft server id, and the node name owners
	// are recorded with. Required, at most MaxNodeLen bytes.
	NodeName string
	// Addr is this node's Raft address, the one peers dial through their
	// Layer; it is also what Leader returns and what DialRPC receives.
	// Raft is told it is the Layer's address, whatever the Layer's
	// listener is bound to (":0", or a mux behind a proxy). Required.
	Addr string
	// Dir holds the Raft log and stable store (raft.db, bbolt) and the
	// snapshots. "" keeps everything in memory: the node then has no
	// state after a restart.
	Dir string
	// Layer is Raft's stream layer, built by the caller (TCP, TLS or a
	// multiplexed listener). Its Dial receives peers' Addr. Required;
	// the Registry owns it from Open on, even when Open fails.
	Layer raft.StreamLayer
	// RPCListener accepts the connections over which followers forward
	// writes to the leader. Required; owned by the Registry like Layer.
	RPCListener net.Listener
	// DialRPC connects to the forwarding endpoint (the RPCListener) of
	// the node whose Raft address is addr. Required.
	DialRPC func(ctx context.Context, addr string) (net.Conn, error)
	// Logger receives the registry's and Raft's logs (Raft's with a
	// "component" attribute); nil discards them. It should carry the
	// node's name if the process runs several.
	Logger *slog.Logger

	// Raft timing; zero means the Default* constants. ElectionTimeout
	// must be at least HeartbeatTimeout, LeaderLeaseTimeout at most
	// HeartbeatTimeout.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// Snapshots; zero means raft's defaults (a snapshot every 120 s
	// when 8192 entries were written since the last, keeping 10240
	// entries of log behind it).
	SnapshotInterval  time.Duration
	SnapshotThreshold uint64
	TrailingLogs      uint64
}

// Validate reports every problem of c at once.
func (c *Config) Validate() error {
	var errs []error
	if err := checkNode(c.NodeName); err != nil {
		errs = append(errs, fmt.Errorf("meta: NodeName: %w", err))
	}
	if c.Addr == "" {
		errs = append(errs, errors.New("meta: Addr is required"))
	}
	if c.Layer == nil {
		errs = append(errs, errors.New("meta: Layer is required"))
	}
	if c.RPCListener == nil {
		errs = append(errs, errors.New("meta: RPCListener is required"))
	}
	if c.DialRPC == nil {
		errs = append(errs, errors.New("meta: DialRPC is required"))
	}
	return errors.Join(errs...)
}

// Server is a member of the Raft configuration: a node's name and Raft
// address.
type Server struct {
	ID   string
	Addr string
}

// ServerStatus is a member of the Raft configuration as Status reports
// it.
type ServerStatus struct {
	ID    string
	Addr  string
	Voter bool
}

// Status is a snapshot of the registry's state on this node.
type Status struct {
	Leader       string // the leader's node name; "" if none is known
	State        string // "Leader", "Follower", "Candidate" or "Shutdown"
	Servers      []ServerStatus
	Sessions     int // entries in this node's copy of the registry
	LastIndex    uint64
	AppliedIndex uint64
}

// Registry is the replicated session registry of one node. All methods
// are safe for concurrent use. Writes (Claim, Release, PurgeNode) work on
// every node: the leader applies them, a follower forwards them to the
// leader. Reads (Owner) are served from this node's copy, which may lag.
type Registry struct {
	id   string
	addr string
	log  *slog.Logger

	raft  *raft.Raft
	fsm   *fsm
	trans *raft.NetworkTransport
	layer *trackedLayer
	bolt  *raftboltdb.BoltStore // nil in memory
	rpcLn net.Listener
	pool  *rpcPool

	hasState atomic.Bool

	done      chan struct{} // closed by Close
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup // the RPC accept loop and its connections
	waiters   atomic.Int64   // goroutines waiting on raft futures, see wait

	srvMu     sync.Mutex
	srvConns  map[net.Conn]struct{} // srvMu
	srvClosed bool                  // srvMu
}

// Open starts Raft and the forwarding endpoint. It does not bootstrap:
// a node with no state (HasState false) waits to be bootstrapped
// (Bootstrap) or added by a leader (Reconcile). Open takes ownership of
// cfg.Layer and cfg.RPCListener, and closes them if it fails.
func Open(cfg Config) (_ *Registry, err error) {
	if err := cfg.Validate(); err != nil {
		closeQuietly(cfg.Layer, cfg.RPCListener)
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Registry{
		id:       cfg.NodeName,
		addr:     cfg.Addr,
		log:      logger.With(keyComponent, "meta"),
		fsm:      newFSM(),
		rpcLn:    cfg.RPCListener,
		pool:     newRPCPool(cfg.DialRPC),
		done:     make(chan struct{}),
		srvConns: make(map[net.Conn]struct{}),
		layer: &trackedLayer{
			StreamLayer: cfg.Layer,
			addr:        advertisedAddr(cfg.Addr),
			conns:       make(map[*trackedConn]struct{}),
		},
	}
	defer func() {
		if err != nil {
			if r.trans != nil {
				_ = r.trans.Close()
			} else {
				_ = r.layer.Close()
			}
			r.layer.closeConns()
			_ = r.rpcLn.Close()
			if r.bolt != nil {
				_ = r.bolt.Close()
			}
		}
	}()

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeName)
	rc.Logger = HCLogger(logger, "raft")
	rc.HeartbeatTimeout = orDefault(cfg.HeartbeatTimeout, DefaultHeartbeatTimeout)
	rc.ElectionTimeout = orDefault(cfg.ElectionTimeout, DefaultElectionTimeout)
	rc.LeaderLeaseTimeout = orDefault(cfg.LeaderLeaseTimeout, DefaultLeaderLeaseTimeout)
	rc.CommitTimeout = orDefault(cfg.CommitTimeout, DefaultCommitTimeout)
	rc.SnapshotInterval = orDefault(cfg.SnapshotInterval, rc.SnapshotInterval)
	rc.SnapshotThreshold = orDefault(cfg.SnapshotThreshold, rc.SnapshotThreshold)
	rc.TrailingLogs = orDefault(cfg.TrailingLogs, rc.TrailingLogs)
	// A node removed from the configuration (dead too long, or Leave)
	// keeps running, so that Reconcile can add it back when it returns.
	rc.ShutdownOnRemove = false
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("meta: %w", err)
	}

	var (
		logs   raft.LogStore
		stable raft.StableStore
		snaps  raft.SnapshotStore
	)
	if cfg.Dir == "" {
		mem := raft.NewInmemStore()
		logs, stable, snaps = mem, mem, raft.NewInmemSnapshotStore()
	} else {
		if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("meta: %w", err)
		}
		// The timeout turns a second process on the same Dir into an
		// error instead of a wait on bbolt's file lock.
		r.bolt, err = raftboltdb.New(raftboltdb.Options{
			Path:        filepath.Join(cfg.Dir, "raft.db"),
			BoltOptions: &bbolt.Options{Timeout: time.Second},
		})
		if err != nil {
			return nil, fmt.Errorf("meta: open %s: %w", filepath.Join(cfg.Dir, "raft.db"), err)
		}
		cached, err := raft.NewLogCache(512, r.bolt)
		if err != nil {
			return nil, fmt.Errorf("meta: %w", err)
		}
		logs, stable = cached, r.bolt
		snaps, err = raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, HCLogger(logger, "raft-snapshot"))
		if err != nil {
			return nil, fmt.Errorf("meta: %w", err)
		}
	}
	has, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		return nil, fmt.Errorf("meta: %w", err)
	}
	r.hasState.Store(has)

	r.trans = raft.NewNetworkTransportWithLogger(r.layer, 3, 5*time.Second, HCLogger(logger, "raft-net"))
	r.raft, err = raft.NewRaft(rc, r.fsm, logs, stable, snaps, r.trans)
	if err != nil {
		return nil, fmt.Errorf("meta: %w", err)
	}
	r.wg.Go(r.acceptRPC)
	r.log.Debug("session registry opened", "addr", cfg.Addr, "dir", cfg.Dir, "has_state", has)
	return r, nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func closeQuietly(l ...net.Listener) {
	for _, x := range l {
		if x != nil {
			_ = x.Close()
		}
	}
}

// HasState reports whether this node is part of a cluster: it had Raft
// state on disk when opened, was bootstrapped since, or has received log
// entries or heard from a leader. A node without state must be
// bootstrapped or added by a leader.
func (r *Registry) HasState() bool {
	if r.hasState.Load() {
		return true
	}
	if r.raft.LastIndex() > 0 {
		return true
	}
	addr, _ := r.raft.LeaderWithID()
	return addr != ""
}

// Bootstrap makes voters, which must include this node, the first
// configuration of a new cluster. Every node of the expected set calls it
// with the same list (hashicorp/raft's documented way to start a
// cluster); on a node that already has state it does nothing and returns
// nil.
func (r *Registry) Bootstrap(voters []Server) error {
	var conf raft.Configuration
	self := false
	for _, v := range voters {
		if err := checkNode(v.ID); err != nil {
			return fmt.Errorf("meta: bootstrap: %w", err)
		}
		if v.Addr == "" {
			return fmt.Errorf("meta: bootstrap: %w: %s has no address", ErrInvalid, v.ID)
		}
		self = self || v.ID == r.id
		conf.Servers = append(conf.Servers, raft.Server{
			Suffrage: raft.Voter,
			ID:       raft.ServerID(v.ID),
			Address:  raft.ServerAddress(v.Addr),
		})
	}
	if !self {
		return fmt.Errorf("meta: bootstrap: %w: %s is not among the voters", ErrInvalid, r.id)
	}
	err := r.raft.BootstrapCluster(conf).Error()
	switch {
	case err == nil:
		r.hasState.Store(true)
		return nil
	case errors.Is(err, raft.ErrCantBootstrap):
		return nil
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrClosed
	default:
		return fmt.Errorf("meta: bootstrap: %w", err)
	}
}

// Claim makes node the owner of clientID with a new epoch, whoever owned
// it before, and returns the previous owner (the zero Owner if none) and
// the new epoch. A write that had to be retried (the connection to the
// leader broke) may have been applied twice: prev is then node itself,
// with an earlier epoch.
func (r *Registry) Claim(ctx context.Context, clientID, node string) (prev Owner, epoch uint64, err error) {
	c := command{op: opClaim, clientID: clientID, node: node}
	if err := c.validate(); err != nil {
		return Owner{}, 0, fmt.Errorf("meta: claim: %w", err)
	}
	res, err := r.write(ctx, request{kind: reqApply, cmd: c})
	if err != nil {
		return Owner{}, 0, fmt.Errorf("meta: claim: %w", err)
	}
	return res.prev, res.index, nil
}

// Release deletes the entry of clientID if it is still owned by node with
// epoch (a compare-and-delete). It returns nil whether or not the entry
// matched.
func (r *Registry) Release(ctx context.Context, clientID, node string, epoch uint64) error {
	c := command{op: opRelease, clientID: clientID, node: node, epoch: epoch}
	if err := c.validate(); err != nil {
		return fmt.Errorf("meta: release: %w", err)
	}
	if _, err := r.write(ctx, request{kind: reqApply, cmd: c}); err != nil {
		return fmt.Errorf("meta: release: %w", err)
	}
	return nil
}

// PurgeNode deletes every entry owned by node and returns how many there
// were.
func (r *Registry) PurgeNode(ctx context.Context, node string) (int, error) {
	c := command{op: opPurge, node: node}
	if err := c.validate(); err != nil {
		return 0, fmt.Errorf("meta: purge: %w", err)
	}
	res, err := r.write(ctx, request{kind: reqApply, cmd: c})
	if err != nil {
		return 0, fmt.Errorf("meta: purge: %w", err)
	}
	return res.deleted, nil
}

// Owner returns the owner of clientID in this node's copy of the
// registry, which may lag behind the leader's.
func (r *Registry) Owner(clientID string) (Owner, bool) {
	return r.fsm.owner(clientID)
}

// Leader returns the current leader's node name and Raft address, or ""
// and "" if none is known.
func (r *Registry) Leader() (id, addr string) {
	a, i := r.raft.LeaderWithID()
	return string(i), string(a)
}

// IsLeader reports whether this node is the leader.
func (r *Registry) IsLeader() bool {
	return r.raft.State() == raft.Leader
}

// Status returns the state of the registry on this node.
func (r *Registry) Status() Status {
	leader, _ := r.Leader()
	st := Status{
		Leader:       leader,
		State:        r.raft.State().String(),
		Sessions:     r.fsm.len(),
		LastIndex:    r.raft.LastIndex(),
		AppliedIndex: r.raft.AppliedIndex(),
	}
	if f := r.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			st.Servers = append(st.Servers, ServerStatus{
				ID:    string(s.ID),
				Addr:  string(s.Address),
				Voter: s.Suffrage == raft.Voter,
			})
		}
	}
	return st
}

// configuration returns the latest Raft configuration.
func (r *Registry) configuration() ([]raft.Server, error) {
	f := r.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrRaftShutdown) {
			return nil, ErrClosed
		}
		return nil, err
	}
	return f.Configuration().Servers, nil
}

// Leave takes this node out of the Raft configuration, for a graceful
// shutdown: a leader first hands leadership to another voter, then the
// (new) leader removes this node. A node alone in its cluster has no one
// to leave to and returns nil. Close the registry afterwards.
func (r *Registry) Leave(ctx context.Context) error {
	if r.IsLeader() {
		servers, err := r.configuration()
		if err != nil {
			return fmt.Errorf("meta: leave: %w", err)
		}
		others := slices.ContainsFunc(servers, func(s raft.Server) bool {
			return s.Suffrage == raft.Voter && string(s.ID) != r.id
		})
		if !others {
			return nil
		}
		if err := r.wait(ctx, r.raft.LeadershipTransfer()); err != nil {
			return fmt.Errorf("meta: leave: transfer leadership: %w", err)
		}
	}
	if _, err := r.write(ctx, request{kind: reqRemove, id: r.id}); err != nil {
		return fmt.Errorf("meta: leave: %w", err)
	}
	return nil
}

// errIsLeader is the (retried) error of a request to remove this node
// while it is the leader: a leadership transfer has not completed yet.
var errIsLeader = errors.New("meta: this node is still the leader")

// errNoLeaderKnown is the (retried) error of a write while no leader is
// known.
var errNoLeaderKnown = errors.New("meta: no leader known")

// write applies q on the leader, here or through forwarding, retrying
// while no leader can take it, until ctx ends.
func (r *Registry) write(ctx context.Context, q request) (applyResult, error) {
	delay := 5 * time.Millisecond
	for {
		res, err := r.try(ctx, q)
		if err == nil {
			return res, nil
		}
		if !retryable(err) {
			return applyResult{}, err
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return applyResult{}, fmt.Errorf("%w: %w (last error: %v)", ErrNoLeader, ctx.Err(), err)
		case <-r.done:
			t.Stop()
			return applyResult{}, ErrClosed
		}
		delay = min(delay*2, 100*time.Millisecond)
	}
}

// retryable reports whether a failed write may be tried again.
func retryable(err error) bool {
	return !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrClosed)
}

// try makes one attempt at q.
func (r *Registry) try(ctx context.Context, q request) (applyResult, error) {
	select {
	case <-r.done:
		return applyResult{}, ErrClosed
	default:
	}
	if r.IsLeader() {
		return r.local(ctx, q)
	}
	addr, id := r.raft.LeaderWithID()
	if addr == "" || string(id) == r.id {
		return applyResult{}, errNoLeaderKnown
	}
	resp, err := r.pool.call(ctx, string(addr), q)
	if err != nil {
		return applyResult{}, err
	}
	switch resp.status {
	case statusOK:
		return resp.res, nil
	case statusRetry:
		return applyResult{}, fmt.Errorf("meta: leader %s: %s", id, resp.msg)
	default: // statusFailed: the leader found the request invalid
		return applyResult{}, fmt.Errorf("%w (leader %s): %s", ErrInvalid, id, resp.msg)
	}
}

// local applies q on this node, which must be the leader.
func (r *Registry) local(ctx context.Context, q request) (applyResult, error) {
	switch q.kind {
	case reqApply:
		return r.apply(ctx, q.cmd)
	case reqRemove:
		if q.id == r.id {
			return applyResult{}, errIsLeader
		}
		f := r.raft.RemoveServer(raft.ServerID(q.id), 0, timeoutOf(ctx))
		if err := r.wait(ctx, f); err != nil {
			return applyResult{}, err
		}
		r.log.Info("raft server removed on leave", keyPeer, q.id)
		return applyResult{index: f.Index()}, nil
	default:
		return applyResult{}, fmt.Errorf("%w: request kind %d", ErrInvalid, q.kind)
	}
}

// apply writes c to the Raft log and waits for it to be applied.
func (r *Registry) apply(ctx context.Context, c command) (applyResult, error) {
	f := r.raft.Apply(c.appendTo(nil), timeoutOf(ctx))
	if err := r.wait(ctx, f); err != nil {
		return applyResult{}, err
	}
	switch v := f.Response().(type) {
	case applyResult:
		return v, nil
	case error:
		return applyResult{}, v
	default:
		return applyResult{}, fmt.Errorf("meta: unexpected FSM response %T", v)
	}
}

// timeoutOf returns the time left before ctx's deadline (at least 1 ms),
// or defaultTimeout.
func timeoutOf(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(time.Until(dl), time.Millisecond)
	}
	return defaultTimeout
}

// wait waits for f until ctx ends or the registry closes. Raft futures
// have no channel, so a goroutine waits on f.Error; it ends when raft
// answers f, which it does for every future, except one still queued for
// the FSM when raft shuts down. Close therefore waits for such
// goroutines only briefly (see close).
func (r *Registry) wait(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	r.waiters.Add(1)
	go func() {
		defer r.waiters.Add(-1)
		done <- f.Error()
	}()
	select {
	case err := <-done:
		if errors.Is(err, raft.ErrRaftShutdown) {
			return ErrClosed
		}
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-r.done:
		return ErrClosed
	}
}

// acceptRPC accepts forwarded-request connections until Close.
func (r *Registry) acceptRPC() {
	delay := 5 * time.Millisecond
	for {
		c, err := r.rpcLn.Accept()
		if err != nil {
			select {
			case <-r.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			r.log.Warn("cannot accept forwarded request", keyErr, err)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-r.done:
				t.Stop()
				return
			}
			delay = min(delay*2, time.Second)
			continue
		}
		delay = 5 * time.Millisecond
		r.srvMu.Lock()
		if r.srvClosed {
			r.srvMu.Unlock()
			_ = c.Close()
			return
		}
		r.srvConns[c] = struct{}{}
		r.srvMu.Unlock()
		r.wg.Go(func() { r.serveConn(c) })
	}
}

// serveConn answers the requests of one follower connection in turn.
func (r *Registry) serveConn(c net.Conn) {
	defer func() {
		r.srvMu.Lock()
		delete(r.srvConns, c)
		r.srvMu.Unlock()
		_ = c.Close()
	}()
	br := bufio.NewReaderSize(c, 4096)
	var in, out []byte
	for {
		var err error
		in, err = readFrame(br, in)
		if err != nil {
			if errors.Is(err, ErrInvalid) {
				r.log.Warn("bad frame from follower", keyPeer, c.RemoteAddr().String(), keyErr, err)
			}
			return
		}
		var resp response
		if q, err := decodeRequest(in); err != nil {
			resp = response{status: statusFailed, msg: err.Error()}
		} else {
			resp = r.serve(q)
		}
		out = resp.appendTo(append(out[:0], 0, 0, 0, 0))
		if err := c.SetWriteDeadline(time.Now().Add(defaultTimeout)); err != nil {
			return
		}
		if err := writeFrame(c, out); err != nil {
			return
		}
	}
}

// serve handles one forwarded request.
func (r *Registry) serve(q request) response {
	if !r.IsLeader() {
		return response{status: statusRetry, msg: "not the leader"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), q.timeout)
	defer cancel()
	res, err := r.local(ctx, q)
	switch {
	case err == nil:
		return response{status: statusOK, res: res}
	case errors.Is(err, ErrInvalid):
		return response{status: statusFailed, msg: err.Error()}
	default:
		return response{status: statusRetry, msg: err.Error()}
	}
}

// Close shuts Raft down, closes the stores, the stream layer, the
// forwarding listener and every connection, and waits for the
// goroutines it started. It does not leave the cluster (see Leave). It
// is safe to call more than once; later calls return the first result.
func (r *Registry) Close() error {
	r.closeOnce.Do(func() { r.closeErr = r.close() })
	return r.closeErr
}

func (r *Registry) close() error {
	close(r.done)
	var errs []error

	_ = r.rpcLn.Close()
	r.srvMu.Lock()
	r.srvClosed = true
	for c := range r.srvConns {
		_ = c.Close()
	}
	r.srvMu.Unlock()
	r.pool.close()

	// Shutdown waits for raft's goroutines and closes the transport,
	// which closes the stream layer; the connections raft leaves open
	// (pooled outbound, accepted inbound) are closed here so that raft's
	// connection goroutines, ours and the peers', end too.
	if err := r.raft.Shutdown().Error(); err != nil {
		errs = append(errs, fmt.Errorf("meta: raft shutdown: %w", err))
	}
	r.trans.CloseStreams()
	r.layer.closeConns()
	r.wg.Wait()

	// Goroutines waiting on futures end as soon as raft answers them,
	// which it has done for all but futures orphaned by the shutdown (see
	// wait); those are abandoned after a grace period.
	for deadline := time.Now().Add(time.Second); r.waiters.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(2 * time.Millisecond)
	}
	if r.bolt != nil {
		if err := r.bolt.Close(); err != nil {
			errs = append(errs, fmt.Errorf("meta: close log store: %w", err))
		}
	}
	return errors.Join(errs...)
}

// trackedLayer wraps the caller's stream layer to report the advertised
// address to raft and to close, on Close, the connections raft's
// transport leaves open after its own Close.
type trackedLayer struct {
	raft.StreamLayer
	addr net.Addr

	mu     sync.Mutex
	conns  map[*trackedConn]struct{} // mu
	closed bool                      // mu
}

var _ raft.StreamLayer = (*trackedLayer)(nil)

// Addr returns the advertised address (Config.Addr), which raft sends to
// its peers as this node's address.
func (l *trackedLayer) Addr() net.Addr { return l.addr }

// Accept accepts a connection and tracks it.
func (l *trackedLayer) Accept() (net.Conn, error) {
	c, err := l.StreamLayer.Accept()
	if err != nil {
		return nil, err
	}
	return l.track(c)
}

// Dial dials a peer and tracks the connection.
func (l *trackedLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := l.StreamLayer.Dial(addr, timeout)
	if err != nil {
		return nil, err
	}
	return l.track(c)
}

func (l *trackedLayer) track(c net.Conn) (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	tc := &trackedConn{Conn: c, l: l}
	l.conns[tc] = struct{}{}
	return tc, nil
}

// closeConns closes every tracked connection and any later one.
func (l *trackedLayer) closeConns() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for c := range l.conns {
		_ = c.Conn.Close()
	}
	clear(l.conns)
}

type trackedConn struct {
	net.Conn
	l *trackedLayer
}

func (c *trackedConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// advertisedAddr is a TCP address given as a string.
type advertisedAddr string

func (a advertisedAddr) Network() string { return "tcp" }
func (a advertisedAddr) String() string  { return string(a) }
