package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// start serves s on a loopback port and returns its base URL; the test's
// cleanup closes s and checks Serve returned nil.
func start(t *testing.T, o Options) (*Server, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(o)
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, "http://" + l.Addr().String()
}

// do sends one request with a client whose connections are closed at the
// end of the test, so goleak sees no idle keep-alive goroutines.
func do(t *testing.T, method, url string) (int, http.Header, string) {
	t.Helper()
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(body)
}

func TestHealth(t *testing.T) {
	tests := []struct {
		name   string
		health func() error
		code   int
		body   string
	}{
		{"nil func", nil, 200, "ok\n"},
		{"healthy", func() error { return nil }, 200, "ok\n"},
		{"unhealthy", func() error { return errors.New("registry has no leader") }, 503, "registry has no leader\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, url := start(t, Options{Health: tt.health})
			code, _, body := do(t, "GET", url+PathHealth)
			if code != tt.code || body != tt.body {
				t.Fatalf("got %d %q, want %d %q", code, body, tt.code, tt.body)
			}
			if code, _, _ := do(t, "HEAD", url+PathHealth); code != tt.code {
				t.Fatalf("HEAD: got %d, want %d", code, tt.code)
			}
		})
	}
}

func TestStatusRoundTrip(t *testing.T) {
	since := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	want := &ClusterStatus{
		Node: "n1", Serving: true, Clustered: true,
		Members: []MemberStatus{
			{Name: "n1", Addr: "127.0.0.1:7946", State: StateAlive, Link: LinkSelf, Since: since, Voter: true, Leader: true},
			{Name: "n2", Addr: "127.0.0.1:7947", State: StateSuspect, Link: LinkDown, RTTMillis: 1.25, Since: since, Voter: true},
		},
		Registry: RegistryStatus{State: "leader", Leader: "n1", Sessions: 7, Voters: []string{"n1", "n2"}, NonVoters: []string{"n3"}, LastIndex: 42},
		Routes:   3, Retained: 4, Clients: 5, Sessions: 6,
	}
	_, url := start(t, Options{Status: func() *ClusterStatus { return want }})
	code, h, body := do(t, "GET", url+PathStatus)
	if code != 200 {
		t.Fatalf("code %d: %s", code, body)
	}
	if ct := h.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var got ClusterStatus
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&got, want) {
		t.Fatalf("got %+v\nwant %+v", got, *want)
	}
	for _, key := range []string{`"rtt_ms"`, `"non_voters"`, `"last_index"`, `"clustered"`} {
		if !strings.Contains(body, key) {
			t.Errorf("body lacks %s: %s", key, body)
		}
	}
}

func TestStatusUnavailable(t *testing.T) {
	_, url := start(t, Options{})
	if code, _, _ := do(t, "GET", url+PathStatus); code != 501 {
		t.Fatalf("nil Status: code %d, want 501", code)
	}
	_, url = start(t, Options{Status: func() *ClusterStatus { return nil }})
	if code, _, _ := do(t, "GET", url+PathStatus); code != 503 {
		t.Fatalf("nil result: code %d, want 503", code)
	}
}

func TestLeave(t *testing.T) {
	tests := []struct {
		name  string
		leave func(context.Context) error
		code  int
		want  LeaveResult
	}{
		{"ok", func(ctx context.Context) error { return ctx.Err() }, 200, LeaveResult{OK: true}},
		{"error", func(context.Context) error { return errors.New("no quorum") }, 500, LeaveResult{Error: "no quorum"}},
		{"nil", nil, 501, LeaveResult{Error: "leave not supported on this node"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, url := start(t, Options{Leave: tt.leave})
			code, _, body := do(t, "POST", url+PathLeave)
			var got LeaveResult
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("%v: %q", err, body)
			}
			if code != tt.code || got != tt.want {
				t.Fatalf("got %d %+v, want %d %+v", code, got, tt.code, tt.want)
			}
		})
	}
}

func TestMethodNotAllowed(t *testing.T) {
	_, url := start(t, Options{
		Status: func() *ClusterStatus { return &ClusterStatus{} },
		Leave:  func(context.Context) error { t.Error("leave called"); return nil },
	})
	tests := []struct{ method, path, allow string }{
		{"POST", PathHealth, "GET, HEAD"},
		{"DELETE", PathStatus, "GET, HEAD"},
		{"GET", PathLeave, "POST"},
		{"PUT", PathLeave, "POST"},
	}
	for _, tt := range tests {
		code, h, _ := do(t, tt.method, url+tt.path)
		if code != http.StatusMethodNotAllowed {
			t.Errorf("%s %s: code %d, want 405", tt.method, tt.path, code)
		}
		if got := h.Get("Allow"); got != tt.allow {
			t.Errorf("%s %s: Allow %q, want %q", tt.method, tt.path, got, tt.allow)
		}
	}
	if code, _, _ := do(t, "GET", url+"/nope"); code != 404 {
		t.Errorf("unknown path: code %d, want 404", code)
	}
}

// TestCloseCancelsLeave checks that Close cancels a leave in flight and
// waits for it.
func TestCloseCancelsLeave(t *testing.T) {
	entered := make(chan struct{})
	returned := make(chan struct{})
	s, url := start(t, Options{Leave: func(ctx context.Context) error {
		close(entered)
		<-ctx.Done()
		close(returned)
		return ctx.Err()
	}})
	reqDone := make(chan struct{})
	go func() {
		defer close(reqDone)
		tr := &http.Transport{DisableKeepAlives: true}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Post(url+PathLeave, "", nil)
		if err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-returned:
	default:
		t.Fatal("Close returned before the leave handler")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	<-reqDone
}

func TestServeAfterClose(t *testing.T) {
	s := New(Options{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(l); err != nil {
		t.Fatalf("Serve after Close: %v", err)
	}
	if _, err := l.Accept(); err == nil {
		t.Fatal("listener still open")
	}
}
