package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/starlingmq/starling/internal/admin"
)

// startAdmin serves an admin.Server on a loopback port and returns its
// host:port.
func startAdmin(t *testing.T, o admin.Options) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := admin.New(o)
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return l.Addr().String()
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func ctl(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := runCtl(args, &out, &errb)
	return code, out.String(), errb.String()
}

func sampleStatus() *admin.ClusterStatus {
	since := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	return &admin.ClusterStatus{
		Node: "n1", Serving: true, Clustered: true,
		Members: []admin.MemberStatus{
			{Name: "n1", Addr: "127.0.0.1:7946", State: admin.StateAlive, Link: admin.LinkSelf, Since: since, Voter: true, Leader: true},
			{Name: "n2", Addr: "127.0.0.1:7947", State: admin.StateSuspect, Link: admin.LinkDown, RTTMillis: 1.25, Since: since, Voter: true},
			{Name: "n3", Addr: "127.0.0.1:7948", State: admin.StateAlive, Link: admin.LinkUp, RTTMillis: 0.5},
		},
		Registry: admin.RegistryStatus{State: "leader", Leader: "n1", Sessions: 7, Voters: []string{"n1", "n2"}, NonVoters: []string{"n3"}, LastIndex: 42},
		Routes:   3, Retained: 4, Clients: 5, Sessions: 6,
	}
}

func TestCtlClusterStatus(t *testing.T) {
	want := sampleStatus()
	addr := startAdmin(t, admin.Options{Status: func() *admin.ClusterStatus { return want }})

	for _, a := range []string{addr, "http://" + addr, "http://" + addr + "/"} {
		code, out, errs := ctl(t, "-a", a, "cluster", "status")
		if code != 0 {
			t.Fatalf("-a %s: exit %d: %s", a, code, errs)
		}
		for _, s := range []string{
			"node:        n1",
			"serving:     yes",
			"registry:    leader, leader n1, last index 42, 7 sessions",
			"voters:      n1, n2",
			"non-voters:  n3",
			"here:        5 clients, 6 sessions, 4 retained, 3 remote routes",
			"NAME  ADDR            STATE    LINK  RTT    VOTER  LEADER  SINCE",
			"n1    127.0.0.1:7946  alive    self  -      *      *       2026-03-04T05:06:07Z",
			"n2    127.0.0.1:7947  suspect  down  1.2ms  *      -       2026-03-04T05:06:07Z",
			"n3    127.0.0.1:7948  alive    up    0.5ms  -      -       -",
		} {
			if !strings.Contains(out, s+"\n") {
				t.Errorf("-a %s: output lacks %q:\n%s", a, s, out)
			}
		}
	}

	code, out, errs := ctl(t, "-a", addr, "cluster", "status", "-json")
	if code != 0 {
		t.Fatalf("-json: exit %d: %s", code, errs)
	}
	var got admin.ClusterStatus
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("-json: %v: %q", err, out)
	}
	if got.Node != "n1" || len(got.Members) != 3 || got.Registry.LastIndex != 42 {
		t.Fatalf("-json: %+v", got)
	}
}

func TestCtlStatusSingleNode(t *testing.T) {
	addr := startAdmin(t, admin.Options{Status: func() *admin.ClusterStatus {
		return &admin.ClusterStatus{Node: "solo", Serving: true}
	}})
	code, out, errs := ctl(t, "-a", addr, "cluster", "status")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(out, "clustered:   no\n") || strings.Contains(out, "NAME") {
		t.Fatalf("output:\n%s", out)
	}
}

func TestCtlEnvDefault(t *testing.T) {
	addr := startAdmin(t, admin.Options{})
	t.Setenv("STARLING_ADMIN", "http://"+addr)
	if code, out, errs := ctl(t, "health"); code != 0 || out != "ok\n" {
		t.Fatalf("exit %d, out %q, err %q", code, out, errs)
	}
	// -a wins over the environment.
	t.Setenv("STARLING_ADMIN", closedAddr(t))
	if code, _, errs := ctl(t, "-a", addr, "health"); code != 0 {
		t.Fatalf("-a over env: exit %d: %s", code, errs)
	}
}

func TestCtlHealth(t *testing.T) {
	ok := startAdmin(t, admin.Options{Health: func() error { return nil }})
	sick := startAdmin(t, admin.Options{Health: func() error { return errors.New("draining") }})
	tests := []struct {
		addr string
		code int
		out  string
	}{
		{ok, 0, "ok\n"},
		{sick, 1, "draining\n"},
	}
	for _, tt := range tests {
		code, out, errs := ctl(t, "-a", tt.addr, "health")
		if code != tt.code || out != tt.out {
			t.Errorf("%s: exit %d, out %q (err %q); want %d, %q", tt.addr, code, out, errs, tt.code, tt.out)
		}
	}
}

func TestCtlLeave(t *testing.T) {
	var left atomic.Bool
	ok := startAdmin(t, admin.Options{Leave: func(context.Context) error { left.Store(true); return nil }})
	fail := startAdmin(t, admin.Options{Leave: func(context.Context) error { return errors.New("no quorum") }})
	none := startAdmin(t, admin.Options{})

	code, out, errs := ctl(t, "-a", ok, "cluster", "leave")
	if code != 0 || !left.Load() || !strings.Contains(out, "left the cluster") {
		t.Fatalf("exit %d, left %v, out %q, err %q", code, left.Load(), out, errs)
	}
	code, _, errs = ctl(t, "-a", fail, "cluster", "leave")
	if code != 1 || !strings.Contains(errs, "500") || !strings.Contains(errs, "no quorum") {
		t.Fatalf("failing leave: exit %d, err %q", code, errs)
	}
	code, _, errs = ctl(t, "-a", none, "cluster", "leave")
	if code != 1 || !strings.Contains(errs, "501") {
		t.Fatalf("no leave: exit %d, err %q", code, errs)
	}
}

func TestCtlUnreachable(t *testing.T) {
	addr := closedAddr(t)
	for _, args := range [][]string{{"cluster", "status"}, {"cluster", "leave"}, {"health"}} {
		code, _, errs := ctl(t, append([]string{"-a", addr}, args...)...)
		if code != 1 || !strings.Contains(errs, "cannot reach admin server at http://"+addr) {
			t.Errorf("%v: exit %d, err %q", args, code, errs)
		}
	}
}

func TestCtlUsage(t *testing.T) {
	addr := "127.0.0.1:" + strconv.Itoa(1) // never dialled
	for _, args := range [][]string{
		nil,
		{"cluster"},
		{"cluster", "nope"},
		{"cluster", "status", "extra"},
		{"cluster", "status", "-bogus"},
		{"cluster", "leave", "-json"},
		{"health", "extra"},
		{"-bogus", "health"},
		{"-h"},
		{"-a", "ftp://x", "health"},
		{"-a", "", "health"},
		{"-a", addr, "status"},
	} {
		code, out, errs := ctl(t, args...)
		if code != 2 || out != "" || !strings.Contains(errs, "usage: starling ctl") {
			t.Errorf("%q: exit %d, out %q, err %q", args, code, out, errs)
		}
	}
}
