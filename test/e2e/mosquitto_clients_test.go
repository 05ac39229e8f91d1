package e2e

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// msgFormat is the -F format of mosquitto_sub in these tests: a marker,
// topic, payload, retain flag and QoS, then (MQTT 5) user properties,
// content type and response topic.
const msgFormat = "MSG|%t|%p|%r|%q|%P|%C|%R"

// subMsg is one line mosquitto_sub printed with msgFormat.
type subMsg struct {
	Topic, Payload string
	Retain         bool
	QoS            int
	UserProps      string // "k:v" as %P prints them
	ContentType    string
	ResponseTopic  string
}

// parseSubMsgs picks the message lines out of mosquitto_sub -d output.
func parseSubMsgs(out string) []subMsg {
	var msgs []subMsg
	for line := range strings.SplitSeq(out, "\n") {
		f := strings.Split(line, "|")
		if len(f) < 8 || f[0] != "MSG" {
			continue
		}
		q, _ := strconv.Atoi(f[4])
		msgs = append(msgs, subMsg{Topic: f[1], Payload: f[2], Retain: f[3] == "1", QoS: q, UserProps: f[5], ContentType: f[6], ResponseTopic: f[7]})
	}
	return msgs
}

func payloads(ms []subMsg) []string {
	var p []string
	for _, m := range ms {
		p = append(p, m.Payload)
	}
	return p
}

// mosqSub starts mosquitto_sub against b in debug mode and waits until
// the broker has acknowledged its subscriptions.
func mosqSub(t *testing.T, b *broker, args ...string) *bgCmd {
	t.Helper()
	c := mosqSubNoWait(t, b, args...)
	eventually(t, 5*time.Second, func() bool {
		return strings.Contains(c.stdout.String(), "Subscribed (mid") || exited(c)
	}, "mosquitto_sub %q subscribed", args)
	if exited(c) && !strings.Contains(c.stdout.String(), "Subscribed (mid") {
		t.Fatalf("mosquitto_sub %q exited before subscribing: %v\n%s\n%s", args, c.err, c.stdout.String(), c.stderr.String())
	}
	return c
}

// mosqSubNoWait starts mosquitto_sub against b in debug mode.
func mosqSubNoWait(t *testing.T, b *broker, args ...string) *bgCmd {
	t.Helper()
	bin := needProgram(t, "mosquitto_sub")
	all := append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(b.Port()), "-d", "-F", msgFormat}, args...)
	name, a := lineBuffered(t, bin, all)
	return startBg(t, name, a...)
}

// lineBuffered returns a command line that runs bin with line-buffered
// stdout: mosquitto_sub does not flush its debug lines into a pipe.
func lineBuffered(t *testing.T, bin string, args []string) (string, []string) {
	t.Helper()
	stdbuf := needProgram(t, "stdbuf")
	return stdbuf, append([]string{"-oL", bin}, args...)
}

func exited(c *bgCmd) bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// mosqPub runs mosquitto_pub against b and fails the test on a non-zero
// exit status.
func mosqPub(t *testing.T, b *broker, args ...string) {
	t.Helper()
	bin := needProgram(t, "mosquitto_pub")
	mustRun(t, 10*time.Second, bin, append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(b.Port())}, args...)...)
}

var mosquittoVersions = []string{"mqttv31", "mqttv311", "mqttv5"}

// TestMosquittoClientsQoSRoundTrips: mosquitto_pub to mosquitto_sub at each
// QoS with each protocol version; the subscriber gets the message at the
// QoS it asked for (the minimum of both).
func TestMosquittoClientsQoSRoundTrips(t *testing.T) {
	t.Parallel()
	needProgram(t, "mosquitto_pub")
	needProgram(t, "mosquitto_sub")
	b := startBroker(t, plainConfig())
	for _, v := range mosquittoVersions {
		for pubQoS := range 3 {
			for subQoS := range 3 {
				t.Run(fmt.Sprintf("%s/pub%d/sub%d", v, pubQoS, subQoS), func(t *testing.T) {
					t.Parallel()
					topic := fmt.Sprintf("rt/%s/%d/%d", v, pubQoS, subQoS)
					payload := fmt.Sprintf("hello %s %d %d", v, pubQoS, subQoS)
					sub := mosqSub(t, b, "-V", v, "-q", strconv.Itoa(subQoS), "-t", topic, "-C", "1", "-W", "10")
					mosqPub(t, b, "-V", v, "-q", strconv.Itoa(pubQoS), "-t", topic, "-m", payload)
					if err := sub.wait(t, 10*time.Second); err != nil {
						t.Fatalf("mosquitto_sub: %v\n%s", err, sub.stdout.String())
					}
					msgs := parseSubMsgs(sub.stdout.String())
					if len(msgs) != 1 || msgs[0].Payload != payload || msgs[0].Topic != topic {
						t.Fatalf("got %+v, want one message %q on %q", msgs, payload, topic)
					}
					if want := min(pubQoS, subQoS); msgs[0].QoS != want {
						t.Errorf("delivered at QoS %d, want %d", msgs[0].QoS, want)
					}
				})
			}
		}
	}
}

// TestMosquittoClientsRetained: a retained message (-r) reaches a later
// subscriber with the retain flag; an empty retained message (-r -n)
// deletes it.
func TestMosquittoClientsRetained(t *testing.T) {
	t.Parallel()
	needProgram(t, "mosquitto_pub")
	needProgram(t, "mosquitto_sub")
	b := startBroker(t, plainConfig())
	for _, v := range mosquittoVersions {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			topic := "retained/" + v
			mosqPub(t, b, "-V", v, "-q", "1", "-r", "-t", topic, "-m", "kept-"+v)
			sub := mosqSub(t, b, "-V", v, "-q", "1", "-t", topic, "-C", "1", "-W", "5")
			if err := sub.wait(t, 10*time.Second); err != nil {
				t.Fatalf("mosquitto_sub: %v", err)
			}
			msgs := parseSubMsgs(sub.stdout.String())
			if len(msgs) != 1 || msgs[0].Payload != "kept-"+v || !msgs[0].Retain {
				t.Fatalf("got %+v, want the retained message with the retain flag", msgs)
			}

			mosqPub(t, b, "-V", v, "-q", "1", "-r", "-n", "-t", topic)
			// A live message proves the subscription works; a retained
			// one would arrive before it.
			sub = mosqSub(t, b, "-V", v, "-q", "1", "-t", topic, "-C", "1", "-W", "5")
			mosqPub(t, b, "-V", v, "-q", "1", "-t", topic, "-m", "live")
			if err := sub.wait(t, 10*time.Second); err != nil {
				t.Fatalf("mosquitto_sub: %v", err)
			}
			msgs = parseSubMsgs(sub.stdout.String())
			if len(msgs) != 1 || msgs[0].Payload != "live" || msgs[0].Retain {
				t.Fatalf("after deleting the retained message got %+v, want only the live message", msgs)
			}
		})
	}
}

// TestMosquittoClientsWill: a client with --will-topic that dies without
// DISCONNECT has its will published.
func TestMosquittoClientsWill(t *testing.T) {
	t.Parallel()
	needProgram(t, "mosquitto_pub")
	needProgram(t, "mosquitto_sub")
	b := startBroker(t, plainConfig())
	for _, v := range mosquittoVersions {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			willTopic := "will/" + v
			watcher := mosqSub(t, b, "-V", v, "-q", "1", "-t", willTopic, "-C", "1", "-W", "10")
			dying := mosqSub(t, b, "-V", v, "-t", "will-dummy/"+v, "--will-topic", willTopic, "--will-payload", "gone-"+v, "--will-qos", "1")
			// Also a client that disconnects cleanly: its will must not be sent.
			clean := mosqSub(t, b, "-V", v, "-t", "will-dummy/"+v, "--will-topic", willTopic, "--will-payload", "clean-"+v, "-C", "1", "-W", "10")
			mosqPub(t, b, "-V", v, "-t", "will-dummy/"+v, "-m", "x")
			if err := clean.wait(t, 10*time.Second); err != nil {
				t.Fatalf("clean mosquitto_sub: %v", err)
			}
			if err := dying.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			if err := watcher.wait(t, 10*time.Second); err != nil {
				t.Fatalf("watcher: %v", err)
			}
			msgs := parseSubMsgs(watcher.stdout.String())
			if len(msgs) != 1 || msgs[0].Payload != "gone-"+v {
				t.Fatalf("will watcher got %+v, want only %q", msgs, "gone-"+v)
			}
		})
	}
}

// TestMosquittoClientsUserProperties: MQTT 5 properties given with -D
// reach an MQTT 5 subscriber unchanged.
func TestMosquittoClientsUserProperties(t *testing.T) {
	t.Parallel()
	needProgram(t, "mosquitto_pub")
	needProgram(t, "mosquitto_sub")
	b := startBroker(t, plainConfig())
	sub := mosqSub(t, b, "-V", "mqttv5", "-q", "1", "-t", "props/#", "-C", "1", "-W", "10")
	mosqPub(t, b, "-V", "mqttv5", "-q", "1", "-t", "props/a", "-m", "with props",
		"-D", "publish", "user-property", "colour", "blue",
		"-D", "publish", "content-type", "text/plain",
		"-D", "publish", "response-topic", "reply/here")
	if err := sub.wait(t, 10*time.Second); err != nil {
		t.Fatalf("mosquitto_sub: %v", err)
	}
	msgs := parseSubMsgs(sub.stdout.String())
	if len(msgs) != 1 {
		t.Fatalf("got %+v, want one message", msgs)
	}
	m := msgs[0]
	if m.UserProps != "colour:blue" || m.ContentType != "text/plain" || m.ResponseTopic != "reply/here" {
		t.Errorf("got user properties %q, content type %q, response topic %q; want colour:blue, text/plain, reply/here", m.UserProps, m.ContentType, m.ResponseTopic)
	}
}

// TestMosquittoClientsPersistentSession: a subscriber with -c -i ID -q 1
// gets, when it comes back, the QoS 1 messages published while it was away.
func TestMosquittoClientsPersistentSession(t *testing.T) {
	t.Parallel()
	needProgram(t, "mosquitto_pub")
	needProgram(t, "mosquitto_sub")
	b := startBroker(t, plainConfig())
	for _, v := range mosquittoVersions {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			id, topic := "persist-"+v, "offline/"+v
			first := mosqSub(t, b, "-V", v, "-c", "-i", id, "-q", "1", "-t", topic, "-E")
			if err := first.wait(t, 5*time.Second); err != nil {
				t.Fatalf("first mosquitto_sub: %v", err)
			}
			want := []string{"m1", "m2", "m3"}
			for _, m := range want {
				mosqPub(t, b, "-V", v, "-q", "1", "-t", topic, "-m", m)
			}
			// Queued messages may arrive before the SUBACK, so do not wait for it.
			again := mosqSubNoWait(t, b, "-V", v, "-c", "-i", id, "-q", "1", "-t", topic, "-C", "3", "-W", "10")
			if err := again.wait(t, 10*time.Second); err != nil {
				t.Fatalf("second mosquitto_sub: %v\n%s", err, again.stdout.String())
			}
			if got := payloads(parseSubMsgs(again.stdout.String())); !slices.Equal(got, want) {
				t.Fatalf("queued messages: got %q, want %q", got, want)
			}
		})
	}
}
