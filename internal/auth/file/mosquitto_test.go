package file

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/starlingmq/starling/internal/broker"
)

// These tests check interoperability with the real Mosquitto tools: hashes
// written by mosquitto_passwd verify here, hashes written here are accepted
// by the mosquitto broker, and publish decisions from an acl_file agree.
// They are skipped when the binaries are absent, unless
// STARLING_REQUIRE_SERVICES=1.

func requireBinary(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("STARLING_REQUIRE_SERVICES") == "1" {
		t.Fatalf("%s not found and STARLING_REQUIRE_SERVICES=1: %v", name, err)
	}
	t.Skipf("%s not found (install the mosquitto and mosquitto-clients packages to run this test): %v", name, err)
	return ""
}

func run(ctx context.Context, name string, args ...string) (stdout, stderr string, err error) {
	var o, e bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

var interopPasswords = []string{"secret", "", "pässwörd", "with:colon and space", strings.Repeat("long", 200), "$7$101$x"}

func TestMosquittoPasswdHashesVerify(t *testing.T) {
	bin := requireBinary(t, "mosquitto_passwd")
	ctx := t.Context()
	for _, format := range []Format{PBKDF2SHA512, SHA512} {
		t.Run(format.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "pw")
			for i, pw := range interopPasswords {
				args := []string{"-H", format.String(), "-b", path, "user" + strconv.Itoa(i), pw}
				if i == 0 {
					args = append([]string{"-c"}, args...)
				}
				if _, stderr, err := run(ctx, bin, args...); err != nil {
					t.Fatalf("mosquitto_passwd %v: %v: %s", args, err, stderr)
				}
			}
			p, err := LoadPasswords(path)
			if err != nil {
				t.Fatal(err)
			}
			for i, pw := range interopPasswords {
				u := "user" + strconv.Itoa(i)
				if !p.Check(u, []byte(pw)) {
					t.Errorf("%s: password %.20q from mosquitto_passwd not verified", u, pw)
				}
				if p.Check(u, []byte(pw+"!")) {
					t.Errorf("%s: wrong password verified", u)
				}
			}
			// mosquitto_passwd edits a file written here, and the reverse.
			if err := UpdateFileFormat(path, false, "ours", "pw", false, format); err != nil {
				t.Fatal(err)
			}
			if _, stderr, err := run(ctx, bin, "-D", path, "user0"); err != nil {
				t.Fatalf("mosquitto_passwd -D on our file: %v: %s", err, stderr)
			}
			if err := UpdateFile(path, false, "user1", "", true); err != nil {
				t.Fatal(err)
			}
			p, err = LoadPasswords(path)
			if err != nil {
				t.Fatal(err)
			}
			if p.Len() != len(interopPasswords)-1 || !p.Check("ours", []byte("pw")) || p.Check("user0", []byte("secret")) {
				t.Fatalf("after edits by both tools: %d users", p.Len())
			}
		})
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startMosquitto runs the mosquitto broker with conf lines and returns its
// port once it accepts connections; it is stopped when the test ends.
func startMosquitto(t *testing.T, conf ...string) int {
	t.Helper()
	bin := requireBinary(t, "mosquitto")
	port := freePort(t)
	path := filepath.Join(t.TempDir(), "mosquitto.conf")
	all := []string{fmt.Sprintf("listener %d 127.0.0.1", port), "per_listener_settings false"}
	if os.Geteuid() == 0 {
		// Run as root, mosquitto switches to the "mosquitto" user, which
		// cannot read the test's private temporary folders.
		all = append(all, "user root")
	}
	all = append(all, conf...)
	writeFile(t, path, strings.Join(all, "\n")+"\n")
	var logs bytes.Buffer
	cmd := exec.Command(bin, "-c", path)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
		if err == nil {
			c.Close()
			return port
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("mosquitto exited: %v\n%s", err, logs.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto did not listen on %d: %s", port, logs.String())
		}
	}
}

func TestMosquittoAcceptsOurHashes(t *testing.T) {
	pub := requireBinary(t, "mosquitto_pub")
	path := filepath.Join(t.TempDir(), "pw")
	var file bytes.Buffer
	for i, pw := range interopPasswords {
		if err := WritePasswordEntry(&file, "u"+strconv.Itoa(i), pw, Format(i%2)); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, path, file.String())
	if err := UpdateFileFormat(path, false, "viaupdate", "pw!", false, SHA512); err != nil {
		t.Fatal(err)
	}
	port := startMosquitto(t, "allow_anonymous false", "password_file "+path)

	connect := func(user, password string) error {
		args := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(port), "-i", "t-" + user, "-t", "t", "-m", "m"}
		if user != "" {
			args = append(args, "-u", user, "-P", password)
		}
		_, stderr, err := run(t.Context(), pub, args...)
		if err != nil {
			return fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr))
		}
		return nil
	}
	for i, pw := range interopPasswords {
		if pw == "" {
			continue // mosquitto_pub cannot send an empty password
		}
		u := "u" + strconv.Itoa(i)
		t.Run(u, func(t *testing.T) {
			if err := connect(u, pw); err != nil {
				t.Errorf("mosquitto refused our %s hash: %v", Format(i%2), err)
			}
			if err := connect(u, pw+"x"); err == nil {
				t.Error("mosquitto accepted a wrong password")
			}
		})
	}
	if err := connect("viaupdate", "pw!"); err != nil {
		t.Errorf("mosquitto refused a user added by UpdateFile: %v", err)
	}
	if err := connect("nobody", "secret"); err == nil {
		t.Error("mosquitto accepted an unknown user")
	}
	if err := connect("", ""); err == nil {
		t.Error("mosquitto accepted an anonymous client")
	}
}

// TestMosquittoACLAgrees publishes as various clients through a real
// mosquitto with an acl_file and checks that it refuses exactly the
// publishes that ACL.Allowed refuses.
func TestMosquittoACLAgrees(t *testing.T) {
	pub := requireBinary(t, "mosquitto_pub")
	const aclText = `topic read public/#
topic write public/drop/#
topic deny public/drop/secret
topic $other/broker/x

user alice
topic readwrite alice/#
topic write cmd/+/set
topic deny alice/private/#
topic write wide/#
topic write spaced topic/x

pattern write devices/%c/status
pattern write users/%u/#
pattern deny users/%u/locked
pattern write dev_%c/x
pattern write wide/%c

user bob
topic write #
`
	path := filepath.Join(t.TempDir(), "acl")
	writeFile(t, path, aclText)
	acl, err := LoadACL(path)
	if err != nil {
		t.Fatal(err)
	}
	port := startMosquitto(t, "allow_anonymous true", "acl_file "+path)

	type pubCase struct {
		c     client
		topic string
	}
	var cases []pubCase
	clients := []client{anon, alice, bob, carol, {id: "c1", user: "alice"}, {id: "lamp", anon: true}}
	topics := []string{
		// No $SYS topics: Mosquitto refuses every $SYS publish before its
		// ACL is consulted; here that is the broker's job.
		"public/x", "public/drop/x", "public/drop/secret", "$other/broker/x", "$other/x",
		"alice/x", "alice", "alice/private/x", "cmd/lamp/set", "cmd/a/b/set", "wide/c-alice", "wide/c-carol", "spaced topic/x",
		"devices/c-carol/status", "devices/lamp/status", "devices/c-anon/status", "users/carol/x", "users/carol/locked",
		"users/alice/locked", "dev_c1/x", "dev_lamp/x", "anything", "/leading",
	}
	for _, c := range clients {
		for _, tp := range topics {
			cases = append(cases, pubCase{c, tp})
		}
	}
	for _, pc := range cases {
		args := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(port), "-V", "5", "-q", "1", "-i", pc.c.id, "-t", pc.topic, "-m", "m"}
		if !pc.c.anon {
			args = append(args, "-u", pc.c.user)
		}
		_, stderr, err := run(t.Context(), pub, args...)
		if err != nil {
			t.Fatalf("mosquitto_pub %v: %v: %s", args, err, stderr)
		}
		mosq := !strings.Contains(stderr, "Not authorized")
		ours := acl.Allowed(pc.c.id, pc.c.user, !pc.c.anon, pc.topic, broker.AccessWrite)
		if mosq != ours {
			t.Errorf("client %+v publishing to %q: mosquitto allows = %v, Allowed = %v", pc.c, pc.topic, mosq, ours)
		}
	}

	// Mosquitto 2.0 grants any SUBSCRIBE whatever the acl_file says;
	// Starling refuses a filter the ACL gives no read access to.
	sub := requireBinary(t, "mosquitto_sub")
	stdout, stderr, _ := run(t.Context(), sub, "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-V", "5", "-i", "sub1", "-u", "carol", "-t", "alice/private/#", "-d", "-W", "1")
	if !strings.Contains(stdout+stderr, "Subscribed (mid: 1): 0") {
		t.Errorf("mosquitto did not grant a subscription the ACL gives no read access to:\n%s%s", stdout, stderr)
	}
	if acl.Allowed("sub1", "carol", true, "alice/private/#", broker.AccessSubscribe) {
		t.Error("Allowed grants a subscription the ACL gives no read access to")
	}
}
