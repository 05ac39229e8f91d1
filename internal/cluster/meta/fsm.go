package meta

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/raft"
)

// Owner is the owner of a persistent session: the node that holds it and
// the epoch of the claim that made it the owner. Epochs are Raft log
// indexes, so a later claim always has a larger epoch. The zero Owner
// means "no owner".
type Owner struct {
	Node  string
	Epoch uint64
}

// Limits of what the registry stores. MaxClientIDLen is the longest MQTT
// string, so every valid client id fits.
const (
	// MaxClientIDLen is the longest client id, in bytes.
	MaxClientIDLen = 65535
	// MaxNodeLen is the longest node name, in bytes.
	MaxNodeLen = 255
)

// ErrInvalid is returned (wrapped) for a request the registry refuses
// before it reaches Raft: an empty or too long client id or node name, or
// a malformed command or forwarded request.
var ErrInvalid = errors.New("meta: invalid request")

// The command format, written into the Raft log:
//
//	version byte (cmdVersion)
//	op      byte
//	claim:   clientID str, node str
//	release: clientID str, node str, epoch uvarint
//	purge:   node str
//
// where str is a uvarint length followed by that many bytes. A command
// must be consumed exactly: trailing bytes are an error. Adding an op or
// changing a field needs a new version, and every node must understand it
// before any node writes it, or the FSMs would diverge.
const cmdVersion byte = 1

const (
	opClaim   byte = 1
	opRelease byte = 2
	opPurge   byte = 3
)

// command is one change of the registry, as carried in the Raft log.
type command struct {
	op       byte
	clientID string
	node     string
	epoch    uint64 // opRelease only
}

// validate checks the fields that op uses.
func (c command) validate() error {
	switch c.op {
	case opClaim, opRelease:
		if err := checkClientID(c.clientID); err != nil {
			return err
		}
		return checkNode(c.node)
	case opPurge:
		return checkNode(c.node)
	default:
		return fmt.Errorf("%w: unknown op %d", ErrInvalid, c.op)
	}
}

func checkClientID(id string) error {
	if id == "" || len(id) > MaxClientIDLen {
		return fmt.Errorf("%w: client id of %d bytes", ErrInvalid, len(id))
	}
	return nil
}

func checkNode(node string) error {
	if node == "" || len(node) > MaxNodeLen {
		return fmt.Errorf("%w: node name of %d bytes", ErrInvalid, len(node))
	}
	return nil
}

// appendTo appends the encoding of c to dst. c must be valid.
func (c command) appendTo(dst []byte) []byte {
	dst = append(dst, cmdVersion, c.op)
	switch c.op {
	case opClaim:
		dst = appendString(dst, c.clientID)
		dst = appendString(dst, c.node)
	case opRelease:
		dst = appendString(dst, c.clientID)
		dst = appendString(dst, c.node)
		dst = binary.AppendUvarint(dst, c.epoch)
	case opPurge:
		dst = appendString(dst, c.node)
	}
	return dst
}

// decodeCommand decodes and validates one command. The strings of the
// result are copies: they do not alias b.
func decodeCommand(b []byte) (command, error) {
	d := decoder{b: b}
	var c command
	if v := d.byte(); d.err == nil && v != cmdVersion {
		return c, fmt.Errorf("%w: command version %d", ErrInvalid, v)
	}
	c.op = d.byte()
	switch c.op {
	case opClaim:
		c.clientID = d.str(MaxClientIDLen)
		c.node = d.str(MaxNodeLen)
	case opRelease:
		c.clientID = d.str(MaxClientIDLen)
		c.node = d.str(MaxNodeLen)
		c.epoch = d.uvarint()
	case opPurge:
		c.node = d.str(MaxNodeLen)
	}
	if err := d.end(); err != nil {
		return command{}, fmt.Errorf("command: %w", err)
	}
	if err := c.validate(); err != nil {
		return command{}, err
	}
	return c, nil
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// decoder reads the fields of a command or a forwarded request from a
// byte slice. The first error sticks; later reads return zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
	}
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("truncated")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// str reads a length-prefixed string of at most maxLen bytes.
func (d *decoder) str(maxLen int) string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(maxLen) || n > uint64(len(d.b)) {
		d.fail("string of %d bytes", n)
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// end reports the first error, or an error if bytes are left over.
func (d *decoder) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	return d.err
}

// applyResult is what fsm.Apply returns for a valid command.
type applyResult struct {
	prev    Owner  // opClaim: the owner before the claim
	deleted int    // opRelease: 0 or 1; opPurge: entries deleted
	index   uint64 // the log index of the command (the epoch of a claim)
}

// fsm is the replicated map. Raft calls Apply, Snapshot and Restore from
// one goroutine; Owner, Status and Reconcile read it from others, so the
// map is guarded by mu. Persist of a snapshot runs concurrently with later
// Applies and only reads the copy taken by Snapshot.
type fsm struct {
	mu     sync.RWMutex
	owners map[string]Owner     // mu
	nodes  map[string]*nodeStat // mu; a node is here while it owns an entry
}

// nodeStat is what the FSM knows of a node that owns entries. Its name is
// the one copy every Owner of the node shares, so 1M entries of 5 nodes
// hold 5 node strings.
type nodeStat struct {
	name     string
	sessions int
}

var _ raft.FSM = (*fsm)(nil)

func newFSM() *fsm {
	return &fsm{owners: make(map[string]Owner), nodes: make(map[string]*nodeStat)}
}

// ref counts one more entry of node and returns its shared name. mu must
// be held for writing.
func (f *fsm) ref(node string) string {
	st, ok := f.nodes[node]
	if !ok {
		st = &nodeStat{name: node}
		f.nodes[node] = st
	}
	st.sessions++
	return st.name
}

// unref counts one entry of node less. mu must be held for writing.
func (f *fsm) unref(node string) {
	if st, ok := f.nodes[node]; ok {
		if st.sessions--; st.sessions <= 0 {
			delete(f.nodes, node)
		}
	}
}

// Apply implements raft.FSM. It returns an applyResult, or an error for a
// command it cannot decode (which a validated write never produces).
func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	c, err := decodeCommand(l.Data)
	if err != nil {
		return fmt.Errorf("meta: log entry %d: %w", l.Index, err)
	}
	return f.apply(c, l.Index)
}

func (f *fsm) apply(c command, index uint64) applyResult {
	res := applyResult{index: index}
	switch c.op {
	case opClaim:
		f.mu.Lock()
		prev, ok := f.owners[c.clientID]
		if ok {
			f.unref(prev.Node)
		}
		res.prev = prev
		f.owners[c.clientID] = Owner{Node: f.ref(c.node), Epoch: index}
		f.mu.Unlock()
	case opRelease:
		f.mu.Lock()
		if o, ok := f.owners[c.clientID]; ok && o.Node == c.node && o.Epoch == c.epoch {
			delete(f.owners, c.clientID)
			f.unref(o.Node)
			res.deleted = 1
		}
		f.mu.Unlock()
	case opPurge:
		f.mu.RLock()
		_, owns := f.nodes[c.node]
		f.mu.RUnlock()
		if !owns {
			break
		}
		// Only this goroutine writes the map, so the ids found under the
		// read lock are still owned by the node when they are deleted;
		// readers wait only for the deletes, not for the scan.
		f.mu.RLock()
		var ids []string
		for id, o := range f.owners {
			if o.Node == c.node {
				ids = append(ids, id)
			}
		}
		f.mu.RUnlock()
		f.mu.Lock()
		for _, id := range ids {
			delete(f.owners, id)
		}
		delete(f.nodes, c.node)
		f.mu.Unlock()
		res.deleted = len(ids)
	}
	return res
}

func (f *fsm) owner(clientID string) (Owner, bool) {
	f.mu.RLock()
	o, ok := f.owners[clientID]
	f.mu.RUnlock()
	return o, ok
}

func (f *fsm) len() int {
	f.mu.RLock()
	n := len(f.owners)
	f.mu.RUnlock()
	return n
}

// sessions returns how many entries node owns.
func (f *fsm) sessions(node string) int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if st, ok := f.nodes[node]; ok {
		return st.sessions
	}
	return 0
}

// The snapshot format, streamed:
//
//	version byte (snapVersion)
//	nodes   uvarint count, then count × str
//	entries uvarint count, then count × (clientID str, node index uvarint, epoch uvarint)
//
// and nothing after. Node names are written once and referred to by
// index, so a snapshot of 1M sessions on 5 nodes is about the size of the
// client ids.
const snapVersion byte = 1

// maxSnapNodes bounds the node table of a snapshot being restored, and
// maxPrealloc the map size allocated up front from an untrusted count.
const (
	maxSnapNodes = 1 << 16
	maxPrealloc  = 1 << 20
)

type snapEntry struct {
	clientID string
	owner    Owner
}

// snapshot is a point-in-time copy of the map as a slice: the strings are
// shared with the map (and immutable), so it costs 40 bytes per entry,
// and Persist streams it without building the encoding in memory.
type snapshot struct {
	entries []snapEntry
}

var _ raft.FSMSnapshot = (*snapshot)(nil)

// Snapshot implements raft.FSM.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	entries := make([]snapEntry, 0, len(f.owners))
	for id, o := range f.owners {
		entries = append(entries, snapEntry{clientID: id, owner: o})
	}
	return &snapshot{entries: entries}, nil
}

// Persist implements raft.FSMSnapshot.
func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.writeTo(sink); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *snapshot) writeTo(w io.Writer) error {
	index := make(map[string]uint64)
	var nodes []string
	for _, e := range s.entries {
		if _, ok := index[e.owner.Node]; !ok {
			index[e.owner.Node] = uint64(len(nodes))
			nodes = append(nodes, e.owner.Node)
		}
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	var scratch []byte
	scratch = append(scratch, snapVersion)
	scratch = binary.AppendUvarint(scratch, uint64(len(nodes)))
	for _, n := range nodes {
		scratch = appendString(scratch, n)
	}
	scratch = binary.AppendUvarint(scratch, uint64(len(s.entries)))
	if _, err := bw.Write(scratch); err != nil {
		return err
	}
	for _, e := range s.entries {
		scratch = appendString(scratch[:0], e.clientID)
		scratch = binary.AppendUvarint(scratch, index[e.owner.Node])
		scratch = binary.AppendUvarint(scratch, e.owner.Epoch)
		if _, err := bw.Write(scratch); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// Release implements raft.FSMSnapshot.
func (s *snapshot) Release() { s.entries = nil }

// Restore implements raft.FSM: it replaces the map with the snapshot's,
// or leaves it untouched if the snapshot is malformed.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	owners, nodes, err := readSnapshot(bufio.NewReaderSize(rc, 64<<10))
	if err != nil {
		return fmt.Errorf("meta: restore snapshot: %w", err)
	}
	f.mu.Lock()
	f.owners, f.nodes = owners, nodes
	f.mu.Unlock()
	return nil
}

func readSnapshot(r *bufio.Reader) (map[string]Owner, map[string]*nodeStat, error) {
	v, err := r.ReadByte()
	if err != nil {
		return nil, nil, noEOF(err)
	}
	if v != snapVersion {
		return nil, nil, fmt.Errorf("%w: snapshot version %d", ErrInvalid, v)
	}
	var buf []byte
	readStr := func(maxLen int) (string, error) {
		n, err := binary.ReadUvarint(r)
		if err != nil {
			return "", noEOF(err)
		}
		if n > uint64(maxLen) {
			return "", fmt.Errorf("%w: string of %d bytes", ErrInvalid, n)
		}
		if uint64(cap(buf)) < n {
			buf = make([]byte, n)
		}
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			return "", noEOF(err)
		}
		return string(buf[:n]), nil
	}

	nn, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, nil, noEOF(err)
	}
	if nn > maxSnapNodes {
		return nil, nil, fmt.Errorf("%w: %d nodes", ErrInvalid, nn)
	}
	nodeList := make([]string, 0, nn)
	for range nn {
		n, err := readStr(MaxNodeLen)
		if err != nil {
			return nil, nil, err
		}
		if err := checkNode(n); err != nil {
			return nil, nil, err
		}
		nodeList = append(nodeList, n)
	}

	count, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, nil, noEOF(err)
	}
	owners := make(map[string]Owner, min(count, maxPrealloc))
	for range count {
		id, err := readStr(MaxClientIDLen)
		if err != nil {
			return nil, nil, err
		}
		if err := checkClientID(id); err != nil {
			return nil, nil, err
		}
		ni, err := binary.ReadUvarint(r)
		if err != nil {
			return nil, nil, noEOF(err)
		}
		if ni >= uint64(len(nodeList)) {
			return nil, nil, fmt.Errorf("%w: node index %d of %d", ErrInvalid, ni, len(nodeList))
		}
		epoch, err := binary.ReadUvarint(r)
		if err != nil {
			return nil, nil, noEOF(err)
		}
		if _, dup := owners[id]; dup {
			return nil, nil, fmt.Errorf("%w: client id %q twice", ErrInvalid, id)
		}
		owners[id] = Owner{Node: nodeList[ni], Epoch: epoch}
	}
	// Rebuilt from the entries, so a node table with duplicates or unused
	// names does not leave stale stats.
	nodes := make(map[string]*nodeStat)
	for _, o := range owners {
		st, ok := nodes[o.Node]
		if !ok {
			st = &nodeStat{name: o.Node}
			nodes[o.Node] = st
		}
		st.sessions++
	}
	if _, err := r.ReadByte(); err != io.EOF {
		if err == nil {
			return nil, nil, fmt.Errorf("%w: trailing bytes after snapshot", ErrInvalid)
		}
		return nil, nil, err
	}
	return owners, nodes, nil
}

// noEOF turns an end of input in the middle of a snapshot into an error
// that says so.
func noEOF(err error) error {
	if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: truncated snapshot", ErrInvalid)
	}
	return err
}
