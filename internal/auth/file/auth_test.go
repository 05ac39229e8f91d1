package file

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/starlingmq/starling/internal/broker"
	"github.com/starlingmq/starling/internal/packet"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func pwFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pw")
	writeFile(t, path, mosquittoVectors[0].line+"\n"+mosquittoVectors[1].line+"\n")
	return path
}

func user(name, password string) *broker.ClientInfo {
	return &broker.ClientInfo{ClientID: "c-" + name, Username: name, HasUsername: true, Password: []byte(password), HasPassword: true}
}

func TestAuthenticate(t *testing.T) {
	pw := pwFile(t)
	anonymous := &broker.ClientInfo{ClientID: "c"}
	noPassword := &broker.ClientInfo{ClientID: "c", Username: "alice", HasUsername: true}
	tests := []struct {
		name string
		o    Options
		c    *broker.ClientInfo
		want error // nil, packet.NotAuthorized or packet.BadUsernameOrPassword
	}{
		{"anonymous refused", Options{PasswordFile: pw}, anonymous, packet.NotAuthorized},
		{"anonymous allowed", Options{PasswordFile: pw, AllowAnonymous: true}, anonymous, nil},
		{"anonymous no files refused", Options{}, anonymous, packet.NotAuthorized},
		{"anonymous no files allowed", Options{AllowAnonymous: true}, anonymous, nil},
		{"right password", Options{PasswordFile: pw}, user("alice", "secret"), nil},
		{"right password sha512", Options{PasswordFile: pw}, user("bob", "hunter2"), nil},
		{"wrong password", Options{PasswordFile: pw}, user("alice", "Secret"), packet.BadUsernameOrPassword},
		{"wrong password anonymous allowed", Options{PasswordFile: pw, AllowAnonymous: true}, user("alice", "x"), packet.BadUsernameOrPassword},
		{"unknown user", Options{PasswordFile: pw}, user("mallory", "secret"), packet.BadUsernameOrPassword},
		{"unknown user anonymous allowed", Options{PasswordFile: pw, AllowAnonymous: true}, user("mallory", "secret"), packet.BadUsernameOrPassword},
		{"no password sent", Options{PasswordFile: pw}, noPassword, packet.BadUsernameOrPassword},
		{"username without password file refused", Options{}, user("alice", "secret"), packet.NotAuthorized},
		{"username without password file allowed", Options{AllowAnonymous: true}, user("anyone", "x"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := New(tt.o)
			if err != nil {
				t.Fatal(err)
			}
			err = a.Authenticate(context.Background(), tt.c)
			switch {
			case tt.want == nil && err != nil:
				t.Fatalf("Authenticate = %v, want nil", err)
			case tt.want != nil && !errors.Is(err, tt.want):
				t.Fatalf("Authenticate = %v, want %v", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), string(tt.c.Password)) && len(tt.c.Password) > 0 {
				t.Fatalf("error %q contains the password", err)
			}
		})
	}
}

func TestAuthorize(t *testing.T) {
	a, err := New(Options{AllowAnonymous: true})
	if err != nil {
		t.Fatal(err)
	}
	c := user("alice", "")
	for _, acc := range []broker.Access{R, W, S} {
		if !a.Authorize(context.Background(), c, "any/topic", acc) {
			t.Errorf("no ACL file: %v refused", acc)
		}
	}
	path := filepath.Join(t.TempDir(), "acl")
	writeFile(t, path, "user alice\ntopic read a/#\n")
	a, err = New(Options{ACLFile: path})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		topic  string
		access broker.Access
		want   bool
	}{{"a/b", R, true}, {"a/b", W, false}, {"b", R, false}, {"b/#", S, false}, {"a/#", S, true}} {
		if got := a.Authorize(context.Background(), c, tt.topic, tt.access); got != tt.want {
			t.Errorf("Authorize(%q, %v) = %v, want %v", tt.topic, tt.access, got, tt.want)
		}
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	writeFile(t, bad, "alice:plaintext\n")
	if _, err := New(Options{PasswordFile: bad}); err == nil || !strings.Contains(err.Error(), bad+":1:") {
		t.Errorf("bad password file: err = %v", err)
	}
	badACL := filepath.Join(dir, "badacl")
	writeFile(t, badACL, "topic a\nbogus\n")
	if _, err := New(Options{ACLFile: badACL}); err == nil || !strings.Contains(err.Error(), badACL+":2:") {
		t.Errorf("bad ACL file: err = %v", err)
	}
	if _, err := New(Options{PasswordFile: filepath.Join(dir, "missing")}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v", err)
	}
}

func TestReload(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	acl := filepath.Join(dir, "acl")
	writeFile(t, pw, mosquittoVectors[0].line+"\n")
	writeFile(t, acl, "user alice\ntopic a\n")
	a, err := New(Options{PasswordFile: pw, ACLFile: acl})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	alice, bob := user("alice", "secret"), user("bob", "hunter2")
	check := func(step string, aliceOK, bobOK, aliceA, aliceB bool) {
		t.Helper()
		if got := a.Authenticate(ctx, alice) == nil; got != aliceOK {
			t.Errorf("%s: alice authenticated = %v, want %v", step, got, aliceOK)
		}
		if got := a.Authenticate(ctx, bob) == nil; got != bobOK {
			t.Errorf("%s: bob authenticated = %v, want %v", step, got, bobOK)
		}
		if got := a.Authorize(ctx, alice, "a", W); got != aliceA {
			t.Errorf("%s: alice writes a = %v, want %v", step, got, aliceA)
		}
		if got := a.Authorize(ctx, alice, "b", W); got != aliceB {
			t.Errorf("%s: alice writes b = %v, want %v", step, got, aliceB)
		}
	}
	check("initial", true, false, true, false)

	writeFile(t, pw, mosquittoVectors[1].line+"\n")
	writeFile(t, acl, "user alice\ntopic b\n")
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	check("reloaded", false, true, false, true)

	// A broken ACL keeps both old files' contents, even though the new
	// password file is fine.
	writeFile(t, pw, mosquittoVectors[0].line+"\n")
	writeFile(t, acl, "user alice\ntopic a/#/b\n")
	if err := a.Reload(); err == nil || !strings.Contains(err.Error(), acl+":2:") {
		t.Fatalf("Reload with a broken ACL: err = %v", err)
	}
	check("failed reload", false, true, false, true)

	// A missing file fails too.
	if err := os.Remove(pw); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Reload with a missing file: err = %v", err)
	}
	check("failed reload 2", false, true, false, true)
}

func TestReloadConcurrent(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	writeFile(t, pw, mosquittoVectors[0].line+"\n")
	acl := filepath.Join(dir, "acl")
	writeFile(t, acl, "user alice\ntopic a\n")
	a, err := New(Options{PasswordFile: pw, ACLFile: acl})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 20 {
				if err := a.Reload(); err != nil {
					t.Error(err)
				}
			}
		})
		wg.Go(func() {
			for range 20 {
				if a.Authenticate(context.Background(), user("alice", "secret")) != nil || !a.Authorize(context.Background(), user("alice", ""), "a", R) {
					t.Error("refused during reload")
				}
			}
		})
	}
	wg.Wait()
}
