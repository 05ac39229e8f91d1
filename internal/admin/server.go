package admin

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Paths served.
const (
	PathHealth = "/health"
	PathStatus = "/api/v1/cluster/status"
	PathLeave  = "/api/v1/cluster/leave"
)

// Timeouts of the HTTP server. The write timeout bounds a leave too: a leave
// that takes longer still runs to its end, but its answer is lost.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 2 * time.Minute
	idleTimeout       = 60 * time.Second
	maxHeaderBytes    = 64 << 10
	// shutdownGrace is how long Close lets requests in flight finish (their
	// context is already cancelled) before it closes their connections.
	shutdownGrace = 5 * time.Second
)

// Options configures a Server. Every function may be called from several
// goroutines at once.
type Options struct {
	// Health reports whether the node should get traffic: nil means healthy
	// (200 "ok\n"), an error gives 503 with the error's text. A nil Health
	// always reports healthy.
	Health func() error
	// Status fills GET /api/v1/cluster/status. A nil Status gives 501; a
	// nil result gives 503.
	Status func() *ClusterStatus
	// Leave makes the node leave the cluster gracefully. It runs in the
	// request, with the request's context, which is cancelled if the client
	// goes away or the Server closes. A nil Leave gives 501.
	Leave func(ctx context.Context) error
	// Logger receives the HTTP server's own errors. Nil discards them.
	Logger *slog.Logger
}

// Server is the HTTP admin server of one node. Its methods are safe for
// concurrent use.
type Server struct {
	opts   Options
	log    *slog.Logger
	http   *http.Server
	ctx    context.Context // base context of every request
	cancel context.CancelFunc

	mu      sync.Mutex
	closed  bool
	running sync.WaitGroup // Serve calls and handlers in flight; Add only under mu while !closed

	closeOnce sync.Once
	closeErr  error
}

// New returns a Server; it serves nothing until Serve is called.
func New(o Options) *Server {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{opts: o, log: log, ctx: ctx, cancel: cancel}
	mux := http.NewServeMux()
	// Method patterns make the mux answer 405 with an Allow header for a
	// known path and a wrong method. GET patterns also match HEAD.
	mux.HandleFunc("GET "+PathHealth, s.health)
	mux.HandleFunc("GET "+PathStatus, s.status)
	mux.HandleFunc("POST "+PathLeave, s.leave)
	s.http = &http.Server{
		Handler:           s.track(mux),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	return s
}

// Serve answers HTTP requests on l until Close, then returns nil. It closes
// l. It may be called for several listeners at once.
func (s *Server) Serve(l net.Listener) error {
	if !s.begin() {
		l.Close()
		return nil
	}
	defer s.running.Done()
	err := s.http.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops every Serve call, cancels the context of requests in flight,
// gives them a few seconds to finish, then closes their connections. It
// returns once every Serve call and handler has returned, so a Leave that
// ignores its context delays it. It is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.cancel()
		ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		if err := s.http.Shutdown(ctx); err != nil {
			s.closeErr = s.http.Close()
		}
		s.running.Wait()
	})
	return s.closeErr
}

// begin registers a Serve call or a handler; it reports false once the
// Server is closing.
func (s *Server) begin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.running.Add(1)
	return true
}

// track lets Close wait for handlers: net/http does not wait for them.
func (s *Server) track(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.begin() {
			writeJSONError(w, http.StatusServiceUnavailable, "admin server closing")
			return
		}
		defer s.running.Done()
		h.ServeHTTP(w, r)
	})
}

func (s *Server) health(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	var err error
	if s.opts.Health != nil {
		err = s.opts.Health()
	}
	if err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(err.Error() + "\n"))
		return
	}
	w.Write([]byte("ok\n"))
}

func (s *Server) status(w http.ResponseWriter, _ *http.Request) {
	if s.opts.Status == nil {
		writeJSONError(w, http.StatusNotImplemented, "cluster status not available on this node")
		return
	}
	st := s.opts.Status()
	if st == nil {
		writeJSONError(w, http.StatusServiceUnavailable, "cluster status not ready")
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) leave(w http.ResponseWriter, r *http.Request) {
	if s.opts.Leave == nil {
		writeJSONError(w, http.StatusNotImplemented, "leave not supported on this node")
		return
	}
	if err := s.opts.Leave(r.Context()); err != nil {
		writeJSONError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, LeaveResult{OK: true})
}

// LeaveResult is the body of every answer to POST /api/v1/cluster/leave,
// and of every other JSON error: OK on success, Error otherwise.
type LeaveResult struct {
	// OK is true when the leave succeeded.
	OK bool `json:"ok,omitempty"`
	// Error is the reason of a failure.
	Error string `json:"error,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v) // the status line is out: a failure here has no one to go to
}

func writeJSONError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, LeaveResult{Error: msg})
}
