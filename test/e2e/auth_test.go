package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

const testACL = `# admin reads and writes everything
user admin
topic readwrite #

user alice
topic readwrite alice/#
topic read public/#

# every user has a home
pattern readwrite users/%u/#
`

// authBroker starts a broker with allow_anonymous false, the password
// file pw and testACL.
func authBroker(t *testing.T, pw string) *broker {
	t.Helper()
	acl := filepath.Join(filepath.Dir(pw), "acl")
	if err := os.WriteFile(acl, []byte(testACL), 0o600); err != nil {
		t.Fatal(err)
	}
	return startBroker(t, brokerSpec{Config: func(p []int) string {
		return fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous false\npassword_file %s\nacl_file %s\nlog_level debug\n", p[0], pw, acl)
	}})
}

// starlingPasswd runs `starling passwd` with args.
func starlingPasswd(t *testing.T, args ...string) {
	t.Helper()
	mustRun(t, 30*time.Second, starlingBin, append([]string{"passwd"}, args...)...)
}

// v5Login connects an MQTT 5 client with a username and password.
func v5Login(t *testing.T, b *broker, id, user, password string) (*v5Client, error) {
	t.Helper()
	cp := &paho.Connect{ClientID: id, CleanStart: true}
	if user != "" {
		cp.Username, cp.UsernameFlag = user, true
		cp.Password, cp.PasswordFlag = []byte(password), true
	}
	return tryV5(t, b.Addr(), cp, nil)
}

// TestAccessControlStarlingPasswd: password and ACL files enforced by the
// binary, with a password file written by `starling passwd -b`; SIGHUP
// loads a user added later.
func TestAccessControlStarlingPasswd(t *testing.T) {
	t.Parallel()
	pw := filepath.Join(t.TempDir(), "passwd")
	starlingPasswd(t, "-c", "-b", pw, "admin", "adminpw")
	starlingPasswd(t, "-b", pw, "alice", "alice pw")
	b := authBroker(t, pw)
	checkAccessControl(t, b)

	// carol is added to the file; she can log in only after SIGHUP.
	starlingPasswd(t, "-b", pw, "carol", "carolpw")
	if c, err := v5Login(t, b, "carol-early", "carol", "carolpw"); err == nil {
		c.close()
		t.Fatal("carol accepted before SIGHUP reloaded the password file")
	}
	b.Signal(syscall.SIGHUP)
	var carol *v5Client
	eventually(t, 5*time.Second, func() bool {
		c, err := v5Login(t, b, "carol", "carol", "carolpw")
		carol = c
		return err == nil
	}, "carol accepted after SIGHUP")
	carol.sub(&paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "users/carol/#", QoS: 1}}})
	carol.pub(&paho.Publish{Topic: "users/carol/note", QoS: 1, Payload: []byte("mine")})
	if m := carol.next(5 * time.Second); string(m.Payload) != "mine" {
		t.Fatalf("carol got %q", m.Payload)
	}
}

// TestAccessControlMosquittoPasswd: the same checks with a password file
// written by the real mosquitto_passwd.
func TestAccessControlMosquittoPasswd(t *testing.T) {
	t.Parallel()
	mp := needProgram(t, "mosquitto_passwd")
	pw := filepath.Join(t.TempDir(), "passwd")
	mustRun(t, 30*time.Second, mp, "-c", "-b", pw, "admin", "adminpw")
	mustRun(t, 30*time.Second, mp, "-b", pw, "alice", "alice pw")
	b := authBroker(t, pw)
	checkAccessControl(t, b)
}

// checkAccessControl runs the checks of the access-control tests against a
// broker with users admin/adminpw and alice/"alice pw" and testACL.
func checkAccessControl(t *testing.T, b *broker) {
	t.Helper()
	port := strconv.Itoa(b.Port())

	// A watcher with full read access sees what gets through.
	admin, err := v5Login(t, b, "admin", "admin", "adminpw")
	if err != nil {
		t.Fatalf("admin refused: %v", err)
	}
	admin.sub(&paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "#", QoS: 1}}})

	if haveProgram(t, "mosquitto_pub") {
		checkAccessControlMosquittoPub(t, b, admin)
	}

	// MQTT 5 reason codes.
	if _, err := v5Login(t, b, "anon5", "", ""); err == nil {
		t.Error("anonymous MQTT 5 client accepted")
	}
	c, err := v5Login(t, b, "wrong5", "alice", "nope")
	if err == nil {
		t.Error("MQTT 5 client with a wrong password accepted")
	} else if c == nil || c.Connack == nil || c.Connack.ReasonCode != 0x86 {
		t.Errorf("wrong password: CONNACK %+v, want reason 0x86 (bad user name or password)", c)
	}

	alice, err := v5Login(t, b, "alice5", "alice", "alice pw")
	if err != nil {
		t.Fatalf("alice refused: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pr, err := alice.Publish(ctx, &paho.Publish{Topic: "secret/y", QoS: 1, Payload: []byte("denied5")})
	if pr == nil || pr.ReasonCode != 0x87 {
		t.Errorf("MQTT 5 publish to a denied topic: response %+v (%v), want PUBACK 0x87", pr, err)
	}
	alice.pub(&paho.Publish{Topic: "users/alice/home", QoS: 1, Payload: []byte("pattern ok")})
	if m := admin.next(5 * time.Second); string(m.Payload) != "pattern ok" {
		t.Fatalf("admin got %q on %q, want the pattern-allowed message (denied5 must not be delivered)", m.Payload, m.Topic)
	}

	sa, err := alice.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "public/news", QoS: 1}, {Topic: "secret/#", QoS: 1}, {Topic: "users/bob/#", QoS: 1},
	}})
	if sa == nil || len(sa.Reasons) != 3 {
		t.Fatalf("subscribe: %+v %v", sa, err)
	}
	if sa.Reasons[0] >= 0x80 {
		t.Errorf("subscribe to a readable topic refused: %#x", sa.Reasons[0])
	}
	if sa.Reasons[1] != 0x87 || sa.Reasons[2] != 0x87 {
		t.Errorf("denied subscriptions got SUBACK %#x, %#x; want 0x87 (not authorized)", sa.Reasons[1], sa.Reasons[2])
	}
	// alice may read public/ but not write it.
	admin.pub(&paho.Publish{Topic: "public/news", QoS: 1, Payload: []byte("news")})
	if m := alice.next(5 * time.Second); string(m.Payload) != "news" {
		t.Fatalf("alice got %q, want news", m.Payload)
	}
	if m := admin.next(5 * time.Second); string(m.Payload) != "news" {
		t.Fatalf("admin got %q, want its own news", m.Payload)
	}

	// MQTT 3.1.1 SUBACK failure as mosquitto_sub shows it.
	if !haveProgram(t, "mosquitto_sub") || !haveProgram(t, "stdbuf") {
		return
	}
	subBin := needProgram(t, "mosquitto_sub")
	name, args := lineBuffered(t, subBin, []string{"-h", "127.0.0.1", "-p", port, "-d", "-u", "alice", "-P", "alice pw", "-t", "secret/#", "-W", "2"})
	r := run(t, 10*time.Second, name, args...)
	if !strings.Contains(r.Stdout, "Subscribed (mid: 1): 128") {
		t.Errorf("mosquitto_sub to a denied topic: want SUBACK failure 128, got (%v):\n%s%s", r.Err, r.Stdout, r.Stderr)
	}
}

// checkAccessControlMosquittoPub checks refusals and denied publishes with
// mosquitto_pub at every protocol version; admin reads everything.
func checkAccessControlMosquittoPub(t *testing.T, b *broker, admin *v5Client) {
	t.Helper()
	pubBin := needProgram(t, "mosquitto_pub")
	port := strconv.Itoa(b.Port())
	for _, v := range mosquittoVersions {
		r := run(t, 10*time.Second, pubBin, "-h", "127.0.0.1", "-p", port, "-V", v, "-q", "1", "-t", "alice/x", "-m", "anon")
		if r.Err == nil {
			t.Errorf("%s: anonymous mosquitto_pub succeeded", v)
		}
		r = run(t, 10*time.Second, pubBin, "-h", "127.0.0.1", "-p", port, "-V", v, "-q", "1", "-u", "alice", "-P", "wrong", "-t", "alice/x", "-m", "wrongpw")
		if r.Err == nil {
			t.Errorf("%s: mosquitto_pub with a wrong password succeeded", v)
		}
		r = run(t, 10*time.Second, pubBin, "-h", "127.0.0.1", "-p", port, "-V", v, "-q", "1", "-u", "nobody", "-P", "x", "-t", "alice/x", "-m", "unknown")
		if r.Err == nil {
			t.Errorf("%s: mosquitto_pub with an unknown user succeeded", v)
		}
		// Denied publish: accepted on the wire (3.x cannot say no) but not delivered.
		mustRun(t, 10*time.Second, pubBin, "-h", "127.0.0.1", "-p", port, "-V", v, "-q", "1", "-u", "alice", "-P", "alice pw", "-t", "secret/x", "-m", "denied")
		mustRun(t, 10*time.Second, pubBin, "-h", "127.0.0.1", "-p", port, "-V", v, "-q", "1", "-u", "alice", "-P", "alice pw", "-t", "alice/x", "-m", "allowed-"+v)
		if m := admin.next(5 * time.Second); string(m.Payload) != "allowed-"+v {
			t.Fatalf("%s: admin got %q on %q, want allowed-%s (denied publishes must not be delivered)", v, m.Payload, m.Topic, v)
		}
	}

}
