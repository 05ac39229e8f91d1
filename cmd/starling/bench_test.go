package main

import (
	"bytes"
	"encoding/json"
	"net"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/starlingmq/starling/internal/broker"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestBenchCommand(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := broker.New(broker.Options{RetainAvailable: true, MaxInflight: 20, AllowZeroLengthClientID: true})
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Serve(ln, &broker.ListenerOptions{Name: "t"})
	}()
	defer func() {
		b.Close()
		ln.Close()
		<-done
	}()
	addr := ln.Addr().String()

	var out, errb bytes.Buffer
	if code := run([]string{"bench", "p2p-3-3-3-max", "-h", addr, "-q", "1", "-count", "20", "-json"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var res struct {
		Name     string `json:"name"`
		QoS      int    `json:"qos"`
		Messages struct {
			Sent     int64 `json:"sent"`
			Expected int64 `json:"expected"`
			Lost     int64 `json:"lost"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%v: %q", err, out.String())
	}
	if res.Name != "p2p-3-3-3-max" || res.QoS != 1 || res.Messages.Sent != 60 || res.Messages.Expected != 60 || res.Messages.Lost != 0 {
		t.Fatalf("result %+v", res)
	}

	// Flags after a named form override it; the summary is a table.
	out.Reset()
	if code := run([]string{"bench", "fanin-2-1-2-max", "-pubs", "3", "-topics", "3", "-h", addr, "-count", "5", "-q", "1"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "3 pub, 1 sub, 3 topics") || !strings.Contains(out.String(), "lost 0") {
		t.Fatalf("summary:\n%s", out.String())
	}

	for _, args := range [][]string{
		{"bench"},
		{"bench", "warp-1-1-1-max"},
		{"bench", "fanin", "-q", "3"},
		{"bench", "fanin", "-V", "6"},
		{"bench", "p2p-2-3-2-max", "-h", addr},
	} {
		errb.Reset()
		if code := run(args, &out, &errb); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, errb.String())
		}
	}
}
