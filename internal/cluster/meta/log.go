package meta

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Log keys of this package.
const (
	keyErr       = "err"
	keyPeer      = "peer"
	keyComponent = "component"
)

// LevelTrace is the slog level of hclog's Trace, below slog.LevelDebug.
const LevelTrace = slog.LevelDebug - 4

// quietInfo lists raft's Info messages that describe routine work (startup,
// snapshots, replication set-up, campaigning); HCLogger logs them at
// Debug. Winning an election, becoming leader and configuration changes
// stay at Info.
var quietInfo = [...]string{
	"initial configuration",
	"entering follower state",
	"entering candidate state",
	"pre-vote successful",
	"pre-vote campaign failed",
	"added peer, starting replication",
	"removed peer, stopping replication",
	"aborting pipeline replication",
	"snapshot network transfer progress",
	"starting snapshot up to",
	"snapshot complete up to",
	"compacting logs",
	"creating new snapshot",
	"reaping snapshot",
	"pipelining replication",
	"starting restore from snapshot",
	"restored from snapshot",
	"snapshot restore progress",
	"persisted snapshot",
}

// HCLogger returns an hclog.Logger, for hashicorp/raft, that logs to l
// with hclog's levels mapped to slog's (Trace to LevelTrace). Raft's
// routine Info messages are logged at Debug, and so is a warning or error
// that only says a connection or the transport was closed on purpose
// (net.ErrClosed, raft.ErrTransportShutdown). The name is logged as the
// "component" attribute; Named appends to it with a dot, as hclog does.
// Levels are decided by l's handler at each call (so they can change at
// run time) unless SetLevel sets a floor.
func HCLogger(l *slog.Logger, name string) hclog.Logger {
	return &hcLogger{l: l, name: name, floor: new(atomic.Int32)}
}

type hcLogger struct {
	l       *slog.Logger
	name    string
	implied []any
	floor   *atomic.Int32 // hclog.Level set by SetLevel; NoLevel = the handler decides; shared with derived loggers
}

var _ hclog.Logger = (*hcLogger)(nil)

func slogLevel(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace:
		return LevelTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

func (h *hcLogger) enabled(level hclog.Level) bool {
	if f := hclog.Level(h.floor.Load()); f != hclog.NoLevel && level < f {
		return false
	}
	return h.l.Enabled(context.Background(), slogLevel(level))
}

// Log implements hclog.Logger.
func (h *hcLogger) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off {
		return
	}
	if level == hclog.Info {
		for _, q := range quietInfo {
			if strings.HasPrefix(msg, q) {
				level = hclog.Debug
				break
			}
		}
	}
	if level >= hclog.Warn && closedConnErr(args) {
		level = hclog.Debug
	}
	if !h.enabled(level) {
		return
	}
	attrs := make([]slog.Attr, 0, 1+(len(h.implied)+len(args))/2)
	if h.name != "" {
		attrs = append(attrs, slog.String(keyComponent, h.name))
	}
	attrs = appendAttrs(attrs, h.implied)
	attrs = appendAttrs(attrs, args)
	h.l.LogAttrs(context.Background(), slogLevel(level), msg, attrs...)
}

// closedConnErr reports whether args hold an error caused by closing a
// connection or the transport on this side, which raft logs at Error
// during shutdown.
func closedConnErr(args []any) bool {
	for _, a := range args {
		if err, ok := a.(error); ok && (errors.Is(err, net.ErrClosed) || errors.Is(err, raft.ErrTransportShutdown)) {
			return true
		}
	}
	return false
}

// appendAttrs converts hclog's alternating keys and values.
func appendAttrs(attrs []slog.Attr, args []any) []slog.Attr {
	for i := 0; i < len(args); i += 2 {
		if i+1 == len(args) {
			attrs = append(attrs, slog.Any("EXTRA_VALUE_AT_END", hcValue(args[i])))
			break
		}
		key, ok := args[i].(string)
		if !ok {
			key = fmt.Sprint(args[i])
		}
		attrs = append(attrs, slog.Any(key, hcValue(args[i+1])))
	}
	return attrs
}

// hcValue renders hclog's special values; others pass through.
func hcValue(v any) any {
	switch v := v.(type) {
	case hclog.Format:
		if len(v) == 0 {
			return ""
		}
		if f, ok := v[0].(string); ok {
			return fmt.Sprintf(f, v[1:]...)
		}
		return fmt.Sprint(v...)
	case hclog.Hex:
		return fmt.Sprintf("0x%x", int(v))
	case hclog.Octal:
		return fmt.Sprintf("0%o", int(v))
	case hclog.Binary:
		return fmt.Sprintf("0b%b", int(v))
	case hclog.Quote:
		return fmt.Sprintf("%q", string(v))
	}
	return v
}

// Trace implements hclog.Logger.
func (h *hcLogger) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }

// Debug implements hclog.Logger.
func (h *hcLogger) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }

// Info implements hclog.Logger.
func (h *hcLogger) Info(msg string, args ...any) { h.Log(hclog.Info, msg, args...) }

// Warn implements hclog.Logger.
func (h *hcLogger) Warn(msg string, args ...any) { h.Log(hclog.Warn, msg, args...) }

// Error implements hclog.Logger.
func (h *hcLogger) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

// IsTrace implements hclog.Logger.
func (h *hcLogger) IsTrace() bool { return h.enabled(hclog.Trace) }

// IsDebug implements hclog.Logger.
func (h *hcLogger) IsDebug() bool { return h.enabled(hclog.Debug) }

// IsInfo implements hclog.Logger.
func (h *hcLogger) IsInfo() bool { return h.enabled(hclog.Info) }

// IsWarn implements hclog.Logger.
func (h *hcLogger) IsWarn() bool { return h.enabled(hclog.Warn) }

// IsError implements hclog.Logger.
func (h *hcLogger) IsError() bool { return h.enabled(hclog.Error) }

// ImpliedArgs implements hclog.Logger.
func (h *hcLogger) ImpliedArgs() []any { return h.implied }

// With implements hclog.Logger.
func (h *hcLogger) With(args ...any) hclog.Logger {
	c := *h
	c.implied = append(append([]any(nil), h.implied...), args...)
	return &c
}

// Name implements hclog.Logger.
func (h *hcLogger) Name() string { return h.name }

// Named implements hclog.Logger.
func (h *hcLogger) Named(name string) hclog.Logger {
	c := *h
	if c.name != "" {
		c.name += "." + name
	} else {
		c.name = name
	}
	return &c
}

// ResetNamed implements hclog.Logger.
func (h *hcLogger) ResetNamed(name string) hclog.Logger {
	c := *h
	c.name = name
	return &c
}

// SetLevel implements hclog.Logger: it sets a floor below which nothing
// is logged, on top of the slog handler's own level. hclog.NoLevel
// removes the floor.
func (h *hcLogger) SetLevel(level hclog.Level) { h.floor.Store(int32(level)) }

// GetLevel implements hclog.Logger.
func (h *hcLogger) GetLevel() hclog.Level {
	if f := hclog.Level(h.floor.Load()); f != hclog.NoLevel {
		return f
	}
	for _, l := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if h.enabled(l) {
			return l
		}
	}
	return hclog.Off
}

// StandardLogger implements hclog.Logger. The lines are parsed for
// "[LEVEL]" prefixes whatever the options say; without a prefix they are
// logged at opts.ForceLevel, or Info.
func (h *hcLogger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

// StandardWriter implements hclog.Logger.
func (h *hcLogger) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	level := slog.LevelInfo
	if opts != nil && opts.ForceLevel != hclog.NoLevel {
		level = slogLevel(opts.ForceLevel)
	}
	l := h.l
	if h.name != "" {
		l = l.With(keyComponent, h.name)
	}
	return &lineWriter{l: l, level: level}
}

// StdLogger returns a *log.Logger, for hashicorp/memberlist, that logs
// each line to l at the level of its "[TRACE]", "[DEBUG]", "[INFO]",
// "[WARN]", "[ERR]" or "[ERROR]" prefix (Info without one). A leading
// "name: " word, as in "[WARN] memberlist: ...", becomes the "component"
// attribute. The *log.Logger has no flags: slog adds the time.
func StdLogger(l *slog.Logger) *log.Logger {
	return log.New(&lineWriter{l: l, level: slog.LevelInfo}, "", 0)
}

// lineWriter turns the lines written by a *log.Logger into slog records.
// log.Logger serializes its writes, but the hclog StandardWriter may be
// shared, so it keeps its own lock.
type lineWriter struct {
	l     *slog.Logger
	level slog.Level // for lines without a level prefix
	mu    sync.Mutex
}

var levelPrefixes = [...]struct {
	prefix string
	level  slog.Level
}{
	{"[TRACE]", LevelTrace},
	{"[DEBUG]", slog.LevelDebug},
	{"[INFO]", slog.LevelInfo},
	{"[WARN]", slog.LevelWarn},
	{"[WARNING]", slog.LevelWarn},
	{"[ERR]", slog.LevelError},
	{"[ERROR]", slog.LevelError},
}

// Write logs every line of p. It never fails.
func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for line := range bytes.Lines(p) {
		w.logLine(string(bytes.TrimRight(line, "\r\n")))
	}
	return len(p), nil
}

func (w *lineWriter) logLine(line string) {
	level, msg := parseLine(line, w.level)
	if msg == "" || !w.l.Enabled(context.Background(), level) {
		return
	}
	var attrs []slog.Attr
	if comp, rest, ok := strings.Cut(msg, ": "); ok && comp != "" && !strings.ContainsAny(comp, " \t[]") {
		attrs = append(attrs, slog.String(keyComponent, comp))
		msg = rest
	}
	w.l.LogAttrs(context.Background(), level, msg, attrs...)
}

// parseLine splits a level prefix off line; it may follow a timestamp
// written by a logger with flags ("2024/01/02 15:04:05 [WARN] ...").
func parseLine(line string, def slog.Level) (slog.Level, string) {
	line = strings.TrimSpace(line)
	if i := strings.IndexByte(line, '['); i >= 0 && strings.Trim(line[:i], "0123456789/:. ") == "" {
		for _, p := range levelPrefixes {
			if strings.HasPrefix(line[i:], p.prefix) {
				return p.level, strings.TrimSpace(line[i+len(p.prefix):])
			}
		}
	}
	return def, line
}
