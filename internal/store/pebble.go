package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/starlingmq/starling/internal/broker"
)

// pebbleFormat pins Pebble's on-disk format, so that upgrading the Pebble
// module never ratchets a store's format (which would forbid a downgrade)
// without a deliberate change here.
const pebbleFormat = pebble.FormatValueSeparation

// Defaults for Options.
const (
	// A large memtable lets a delivery's put and its delete (ack) meet in
	// memory, so that a flush writes neither.
	defaultMemTableSize = 64 << 20
	defaultCacheSize    = 32 << 20
	// walBytesPerSync bounds the unsynced WAL tail that NoSync commits
	// leave, so that the next synced commit's fsync stays short.
	walBytesPerSync = 512 << 10
	bytesPerSync    = 1 << 20
)

// Options configure Open.
type Options struct {
	// Dir is the store's folder (persistence_location); created if missing.
	Dir string
	// Logger receives Pebble's messages (info at Debug). Nil: discarded.
	Logger *slog.Logger
	// FS replaces the file system, for fault-injection tests. Nil: the
	// operating system's.
	FS vfs.FS
	// MemTableSize is Pebble's memtable size in bytes; 0: 64 MiB.
	MemTableSize uint64
	// CacheSize is Pebble's block cache size in bytes; 0: 32 MiB.
	CacheSize int64
	// ReopenInterval is how long a failed store waits before it tries to
	// reopen its folder (a full disk that got space back); 0: 5 s.
	ReopenInterval time.Duration
}

// Pebble is the durable store in a folder. It is safe for concurrent use;
// concurrent synced Applies share WAL fsyncs (Pebble's commit pipeline
// groups them).
//
// A failed commit (a WAL write or fsync error, a full disk) makes Pebble's
// handle unusable: that Apply fails, and so does every later one until the
// store has reopened its folder, which the next Apply tries once
// ReopenInterval has passed. The failed batch is then found either whole or
// not at all; never in part.
type Pebble struct {
	dir     string
	db      *pebble.DB // replaced on reopen (mu, with no users)
	open    func() (*pebble.DB, error)
	reopen  time.Duration
	lastTry atomic.Int64 // unix nanoseconds of the last reopen attempt
	failed  atomic.Pointer[error]
	// corrupt is set by Pebble's DataCorruption event (often found by a
	// background goroutine); Load reports it.
	corrupt *atomic.Pointer[error]

	mu      sync.Mutex
	idle    sync.Cond // signalled when users drops to 0 (mu)
	users   int       // Apply and Load calls in progress (mu)
	closed  bool      // (mu)
	closeEr error     // the result of the first Close (mu)
}

var _ broker.Store = (*Pebble)(nil)

// fatalError is what pebbleLogger.Fatalf panics with. Pebble calls Fatalf
// where it cannot go on (a failed WAL write or sync under a commit, a failed
// MANIFEST write); the default logger would exit the process. On an Apply
// goroutine the panic is recovered and becomes Apply's error; on a Pebble
// background goroutine it takes the process down, which is the only safe
// outcome after a failed fsync.
type fatalError struct{ msg string }

func (e fatalError) Error() string { return "pebble: " + e.msg }

// pebbleLogger adapts Pebble's logger to slog. This is the one place where
// that happens.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	if p.l.Enabled(context.Background(), slog.LevelDebug) {
		p.l.Debug(fmt.Sprintf(format, args...))
	}
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...))
}

func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error("pebble fatal", "err", msg)
	panic(fatalError{msg})
}

// Open opens the store in o.Dir, creating the folder and the store if the
// folder is missing or empty. It refuses, with an error naming the folder,
// a non-empty folder that holds no Pebble store, a Pebble database that is
// not a Starling store, a store of an unknown format version, and a store
// Pebble finds corrupt. It never deletes anything.
func Open(o Options) (*Pebble, error) {
	if o.Dir == "" {
		return nil, errors.New("store: no folder given")
	}
	fs := o.FS
	if fs == nil {
		fs = vfs.Default
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fresh, err := inspectDir(fs, o.Dir)
	if err != nil {
		return nil, err
	}
	memtable := o.MemTableSize
	if memtable == 0 {
		memtable = defaultMemTableSize
	}
	cacheSize := o.CacheSize
	if cacheSize == 0 {
		cacheSize = defaultCacheSize
	}
	corrupt := new(atomic.Pointer[error])
	open := func(mustExist bool) (*pebble.DB, error) {
		cache := pebble.NewCache(cacheSize)
		defer cache.Unref()
		return openPebble(o.Dir, &pebble.Options{
			FS:                          fs,
			Logger:                      pebbleLogger{log},
			EventListener:               eventListener(o.Dir, log, corrupt),
			FormatMajorVersion:          pebbleFormat,
			ErrorIfNotExists:            mustExist,
			Cache:                       cache,
			MemTableSize:                memtable,
			MemTableStopWritesThreshold: 4,
			WALBytesPerSync:             walBytesPerSync,
			BytesPerSync:                bytesPerSync,
		})
	}
	db, err := open(!fresh)
	if err != nil {
		return nil, err
	}
	reopen := o.ReopenInterval
	if reopen == 0 {
		reopen = 5 * time.Second
	}
	p := &Pebble{dir: o.Dir, db: db, corrupt: corrupt, reopen: reopen,
		open: func() (*pebble.DB, error) { return open(true) }}
	p.idle.L = &p.mu
	if err := p.checkVersion(); err != nil {
		_ = p.closeDB()
		return nil, err
	}
	return p, nil
}

// eventListener logs Pebble's trouble. Pebble's default DataCorruption
// handler calls Fatalf, which from a background goroutine (table stats,
// compactions) would take the process down; a damaged file must instead be
// a clear error naming the folder.
func eventListener(dir string, log *slog.Logger, corrupt *atomic.Pointer[error]) *pebble.EventListener {
	return &pebble.EventListener{
		BackgroundError: func(err error) {
			log.Error("store background error", "dir", dir, "err", err)
		},
		DataCorruption: func(info pebble.DataCorruptionInfo) {
			err := fmt.Errorf("store %s: %w: %s", dir, ErrCorrupt, info)
			corrupt.CompareAndSwap(nil, &err)
			log.Error("store data corruption", "dir", dir, "err", err)
		},
		DiskSlow: func(info pebble.DiskSlowInfo) {
			log.Warn("store disk slow", "dir", dir, "info", info.String())
		},
	}
}

// openPebble is pebble.Open that turns a panic (a Fatalf through our
// logger, or Pebble tripping over a damaged file) into an error.
func openPebble(dir string, opts *pebble.Options) (db *pebble.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("store %s: cannot open, the folder may be damaged: %v", dir, r)
		}
	}()
	db, err = pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("store %s: cannot open, the folder may be damaged: %w", dir, err)
	}
	return db, nil
}

// inspectDir decides whether dir gets a new store (fresh) or must hold an
// existing one, and refuses a folder with foreign files.
func inspectDir(fs vfs.FS, dir string) (fresh bool, err error) {
	names, err := fs.List(dir)
	if errors.Is(err, os.ErrNotExist) {
		if err := fs.MkdirAll(dir, 0o755); err != nil {
			return false, fmt.Errorf("store %s: %w", dir, err)
		}
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("store %s: %w", dir, err)
	}
	var foreign, manifest bool
	for _, n := range names {
		switch {
		case n == "CURRENT" || strings.HasPrefix(n, "marker.manifest."):
			manifest = true
		case isPebbleFile(n):
		default:
			foreign = true
		}
	}
	switch {
	case len(names) == 0:
		return true, nil
	case manifest:
		// A Pebble database; foreign files beside it are Pebble's business
		// (it ignores what it does not know).
		return false, nil
	case foreign:
		return false, fmt.Errorf("store %s: the folder is not empty and holds no store; refusing to create one there", dir)
	default:
		// Only Pebble's own files and no manifest: a creation that
		// crashed before it finished. Nothing was ever stored.
		return true, nil
	}
}

func isPebbleFile(n string) bool {
	for _, p := range []string{"LOCK", "OPTIONS-", "MANIFEST-", "marker.", "temporary."} {
		if strings.HasPrefix(n, p) {
			return true
		}
	}
	return strings.HasSuffix(n, ".log") || strings.HasSuffix(n, ".sst") || strings.HasSuffix(n, ".blob")
}

// checkVersion reads meta/version, writing it into a database with no keys
// at all (a new store, or one whose creation crashed before the write).
func (p *Pebble) checkVersion() error {
	v, closer, err := p.db.Get(keyVersion)
	switch {
	case err == nil:
		defer closer.Close()
		if len(v) != 4 {
			return fmt.Errorf("store %s: %w: key %q: %d-byte version", p.dir, ErrCorrupt, keyVersion, len(v))
		}
		if got := binary.BigEndian.Uint32(v); got != formatVersion {
			return fmt.Errorf("store %s: format version %d is not supported (this build reads version %d)", p.dir, got, formatVersion)
		}
		return nil
	case errors.Is(err, pebble.ErrNotFound):
	default:
		return fmt.Errorf("store %s: %w", p.dir, err)
	}
	it, err := p.db.NewIter(nil)
	if err != nil {
		return fmt.Errorf("store %s: %w", p.dir, err)
	}
	empty := !it.First()
	err = errors.Join(it.Error(), it.Close())
	if err != nil {
		return fmt.Errorf("store %s: %w", p.dir, err)
	}
	if !empty {
		return fmt.Errorf("store %s: a Pebble database without a Starling format version; refusing to use it", p.dir)
	}
	pb := p.db.NewBatch()
	defer pb.Close()
	if err := pb.Set(keyVersion, binary.BigEndian.AppendUint32(nil, formatVersion), nil); err != nil {
		return fmt.Errorf("store %s: writing the format version: %w", p.dir, err)
	}
	return p.commit(pb, pebble.Sync)
}

// enter registers an Apply or Load; it fails once Close has begun.
func (p *Pebble) enter() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	p.users++
	return nil
}

func (p *Pebble) leave() {
	p.mu.Lock()
	p.users--
	if p.users == 0 {
		p.idle.Broadcast()
	}
	p.mu.Unlock()
}

func (p *Pebble) failure() error {
	if e := p.failed.Load(); e != nil {
		return fmt.Errorf("store %s: unusable after a failed write until it reopens: %w", p.dir, *e)
	}
	return nil
}

// Apply commits b as one Pebble batch, with an fsync of the WAL when sync
// is true (shared with concurrent synced commits). ctx is checked before
// the commit; a commit in progress is not interrupted.
//
// An error from the commit itself leaves the batch's durability unknown:
// after a restart it is there whole or not at all.
func (p *Pebble) Apply(ctx context.Context, b *broker.Batch, sync bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.maybeReopen()
	if err := p.enter(); err != nil {
		return err
	}
	defer p.leave()
	if err := p.failure(); err != nil {
		return err
	}
	if b == nil || len(b.Ops) == 0 {
		return nil
	}
	pb, err := p.buildBatch(b)
	if err != nil {
		return err
	}
	defer pb.Close()
	opts := pebble.NoSync
	if sync {
		opts = pebble.Sync
	}
	return p.commit(pb, opts)
}

// commit commits pb, turning Pebble's Fatalf on a failed commit into an
// error and marking the store failed: Pebble's commit pipeline is not
// usable after that.
func (p *Pebble) commit(pb *pebble.Batch, opts *pebble.WriteOptions) error {
	return p.guard("commit", func() error { return pb.Commit(opts) })
}

// guard runs a write of Pebble's, turning its error, or the panic of a
// Fatalf, into an error that names the folder and marks the store failed.
func (p *Pebble) guard(what string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			fe, ok := r.(fatalError)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("store %s: %s failed: %w", p.dir, what, fe)
			p.fail(&err)
		}
	}()
	if err := f(); err != nil {
		err = fmt.Errorf("store %s: %s failed: %w", p.dir, what, err)
		p.fail(&err)
		return err
	}
	return nil
}

// Load walks the whole store in key order (see the package doc): retained
// messages first, then each session record followed by its subscriptions,
// its deliveries in ascending Seq and its incoming QoS 2 ids. It sees a
// consistent snapshot. It stops at and returns the Loader's first error. A
// record that does not decode is an error wrapping ErrCorrupt that names
// the folder and the key. The Loader may call Apply but not Close.
func (p *Pebble) Load(ctx context.Context, l broker.Loader) (err error) {
	if err := p.enter(); err != nil {
		return err
	}
	defer p.leave()
	if err := p.failure(); err != nil {
		return err
	}
	it, err := p.db.NewIterWithContext(ctx, nil)
	if err != nil {
		return fmt.Errorf("store %s: %w", p.dir, err)
	}
	defer func() {
		if cerr := it.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("store %s: %w", p.dir, cerr)
		}
	}()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		if n++; n&1023 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		val, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("store %s: key %q: %w", p.dir, it.Key(), err)
		}
		if err := dispatch(it.Key(), val, l); err != nil {
			if errors.Is(err, ErrCorrupt) {
				return fmt.Errorf("store %s: %w", p.dir, err)
			}
			return err
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("store %s: %w", p.dir, err)
	}
	if e := p.corrupt.Load(); e != nil {
		return *e
	}
	return nil
}

// Close waits for Apply and Load calls in progress, then closes Pebble.
// Data of NoSync commits is written to the OS before Close returns. Safe
// twice; the second call returns the first's result.
func (p *Pebble) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return p.closeEr
	}
	p.closed = true
	for p.users > 0 {
		p.idle.Wait()
	}
	p.closeEr = p.closeDB()
	return p.closeEr
}

func (p *Pebble) closeDB() (err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(fatalError)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("store %s: close: %w", p.dir, f)
		}
	}()
	if p.db == nil {
		return nil // a reopen failed
	}
	if err := p.db.Close(); err != nil {
		return fmt.Errorf("store %s: close: %w", p.dir, err)
	}
	return nil
}

// maybeReopen reopens the folder of a failed store, at most once per
// ReopenInterval: a full disk that got space back, or a transient I/O
// error, then heals without a restart of the process. It waits for the
// calls in progress, which fail fast on a failed store.
func (p *Pebble) maybeReopen() {
	if p.failed.Load() == nil {
		return
	}
	now := time.Now().UnixNano()
	last := p.lastTry.Load()
	if now-last < int64(p.reopen) || !p.lastTry.CompareAndSwap(last, now) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.users > 0 {
		p.idle.Wait()
	}
	if p.closed || p.failed.Load() == nil {
		return
	}
	_ = p.closeDB() // fails: the handle is broken
	p.db = nil
	db, err := p.open()
	if err != nil {
		err = fmt.Errorf("store %s: reopen after a failure: %w", p.dir, err)
		p.failed.Store(&err)
		return
	}
	p.db = db
	p.failed.Store(nil)
}

// fail marks the store failed with *err (the first failure wins); the next
// reopen is tried ReopenInterval later.
func (p *Pebble) fail(err *error) {
	if p.failed.CompareAndSwap(nil, err) {
		p.lastTry.Store(time.Now().UnixNano())
	}
}
