package meta

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// recorder is a slog.Handler that keeps the records it is given.
type recorder struct {
	level slog.Leveler
	mu    *sync.Mutex
	recs  *[]string // "LEVEL msg k=v ..."
	attrs []slog.Attr
}

func newRecorder(level slog.Level) *recorder {
	return &recorder{level: level, mu: new(sync.Mutex), recs: new([]string)}
}

func (r *recorder) Enabled(_ context.Context, l slog.Level) bool { return l >= r.level.Level() }

func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", rec.Level, rec.Message)
	for _, a := range r.attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	rec.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	r.mu.Lock()
	*r.recs = append(*r.recs, b.String())
	r.mu.Unlock()
	return nil
}

func (r *recorder) WithAttrs(as []slog.Attr) slog.Handler {
	c := *r
	c.attrs = append(append([]slog.Attr(nil), r.attrs...), as...)
	return &c
}

func (r *recorder) WithGroup(string) slog.Handler { return r }

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := *r.recs
	*r.recs = nil
	return out
}

func TestHCLogger(t *testing.T) {
	rec := newRecorder(LevelTrace)
	l := HCLogger(slog.New(rec), "raft")
	l.Trace("t", "k", 1)
	l.Debug("d")
	l.Info("entering leader state", "leader", "a")
	l.Info("entering follower state", "follower", "a")
	l.Warn("w", "peer", hclog.Fmt("%s/%d", "x", 2))
	l.Error("e", "error", fmt.Errorf("wrapped: %w", net.ErrClosed))
	l.Error("e2", "error", "plain", "odd")
	l.Named("snap").With("id", 7).Info("i")
	l.Log(hclog.Off, "never")
	want := []string{
		"DEBUG-4 t component=raft k=1",
		"DEBUG d component=raft",
		"INFO entering leader state component=raft leader=a",
		"DEBUG entering follower state component=raft follower=a",
		"WARN w component=raft peer=x/2",
		"DEBUG e component=raft error=wrapped: use of closed network connection",
		"ERROR e2 component=raft error=plain EXTRA_VALUE_AT_END=odd",
		"INFO i component=raft.snap id=7",
	}
	if got := rec.take(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Levels follow the handler, with SetLevel as a floor on top.
	var lv slog.LevelVar
	lv.Set(slog.LevelInfo)
	rec = newRecorder(0)
	rec.level = &lv
	l = HCLogger(slog.New(rec), "raft")
	if l.IsDebug() || !l.IsInfo() || l.GetLevel() != hclog.Info {
		t.Fatalf("at Info: IsDebug %v IsInfo %v GetLevel %v", l.IsDebug(), l.IsInfo(), l.GetLevel())
	}
	lv.Set(slog.LevelDebug)
	if !l.IsDebug() {
		t.Fatal("level change not seen")
	}
	l.SetLevel(hclog.Warn)
	l.Info("dropped")
	l.Warn("kept")
	if got := rec.take(); len(got) != 1 || !strings.HasPrefix(got[0], "WARN kept") {
		t.Fatalf("with a Warn floor: %q", got)
	}
	if l.Name() != "raft" || l.ResetNamed("x").Name() != "x" || len(l.With("a", 1).ImpliedArgs()) != 2 {
		t.Fatal("names or implied args")
	}
	std := l.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Error})
	std.Print("from std")
	if got := rec.take(); len(got) != 1 || got[0] != "ERROR from std component=raft" {
		t.Fatalf("standard logger: %q", got)
	}
}

func TestStdLogger(t *testing.T) {
	rec := newRecorder(LevelTrace)
	l := StdLogger(slog.New(rec))
	l.Print("[DEBUG] memberlist: Stream connection from=127.0.0.1:1234")
	l.Print("[WARN] memberlist: Was able to connect to b but other probes failed, network may be misconfigured")
	l.Print("[ERR] memberlist: Failed to send ping: write: broken pipe")
	l.Print("[INFO] memberlist: Suspect b has failed, no acks received")
	l.Print("[ERROR] other: e")
	l.Print("[TRACE] t")
	l.Print("2024/01/02 15:04:05 [WARN] stamped")
	l.Print("no level here: [WARN] inside")
	l.Print("two\n[ERR] lines")
	l.Print("")
	want := []string{
		"DEBUG Stream connection from=127.0.0.1:1234 component=memberlist",
		"WARN Was able to connect to b but other probes failed, network may be misconfigured component=memberlist",
		"ERROR Failed to send ping: write: broken pipe component=memberlist",
		"INFO Suspect b has failed, no acks received component=memberlist",
		"ERROR e component=other",
		"DEBUG-4 t",
		"WARN stamped",
		"INFO no level here: [WARN] inside",
		"INFO two",
		"ERROR lines",
	}
	if got := rec.take(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Disabled levels are not formatted.
	rec = newRecorder(slog.LevelInfo)
	StdLogger(slog.New(rec)).Print("[DEBUG] memberlist: hidden")
	if got := rec.take(); len(got) != 0 {
		t.Fatalf("debug logged at Info: %q", got)
	}
}
