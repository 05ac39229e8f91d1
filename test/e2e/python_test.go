package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// pahoPyScript publishes from one Python paho client to another over the
// broker and prints what the subscriber received as JSON. It uses the
// paho-mqtt 1.6 API (Debian bookworm's python3-paho-mqtt).
const pahoPyScript = `
import json, sys, threading
import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

host, port, version, qos, topic = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
proto = mqtt.MQTTv5 if version == "5" else mqtt.MQTTv311
n = 5
got, subscribed, done = [], threading.Event(), threading.Event()

def make(cid):
    if proto == mqtt.MQTTv5:
        return mqtt.Client(client_id=cid, protocol=proto)
    return mqtt.Client(client_id=cid, protocol=proto, clean_session=True)

def on_subscribe(c, userdata, mid, granted, *rest):
    subscribed.set()

def on_message(c, userdata, msg):
    props = {}
    if proto == mqtt.MQTTv5 and msg.properties is not None and hasattr(msg.properties, "UserProperty"):
        props = dict(msg.properties.UserProperty)
    got.append({"topic": msg.topic, "payload": msg.payload.decode(), "qos": msg.qos, "props": props})
    if len(got) == n:
        done.set()

sub = make("py-sub-" + version + "-" + str(qos))
sub.on_subscribe = on_subscribe
sub.on_message = on_message
sub.connect(host, port, keepalive=30)
sub.loop_start()
sub.subscribe(topic, qos)
if not subscribed.wait(10):
    sys.exit("no SUBACK")

pub = make("py-pub-" + version + "-" + str(qos))
pub.connect(host, port, keepalive=30)
pub.loop_start()
for i in range(n):
    props = None
    if proto == mqtt.MQTTv5:
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = [("seq", str(i))]
    info = pub.publish(topic, "py %d" % i, qos=qos, properties=props)
    info.wait_for_publish(10)
    if not info.is_published():
        sys.exit("publish %d not acknowledged" % i)
ok = done.wait(10)
pub.disconnect(); pub.loop_stop()
sub.disconnect(); sub.loop_stop()
print(json.dumps(got))
sys.exit(0 if ok else "received %d of %d" % (len(got), n))
`

// TestPythonPahoRoundTrip: Python's paho-mqtt publishes and subscribes
// through Starling with MQTT 3.1.1 and 5.0 at QoS 1 and 2.
func TestPythonPahoRoundTrip(t *testing.T) {
	t.Parallel()
	py := needPythonPaho(t)
	script := filepath.Join(t.TempDir(), "roundtrip.py")
	if err := os.WriteFile(script, []byte(pahoPyScript), 0o600); err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, plainConfig())
	for _, version := range []string{"311", "5"} {
		for _, qos := range []int{1, 2} {
			t.Run("v"+version+"/qos"+strconv.Itoa(qos), func(t *testing.T) {
				t.Parallel()
				topic := "py/" + version + "/" + strconv.Itoa(qos)
				r := mustRun(t, 30*time.Second, py, script, "127.0.0.1", strconv.Itoa(b.Port()), version, strconv.Itoa(qos), topic)
				var got []struct {
					Topic, Payload string
					QoS            int
					Props          map[string]string
				}
				if err := json.Unmarshal([]byte(r.Stdout), &got); err != nil {
					t.Fatalf("script output %q: %v", r.Stdout, err)
				}
				for i, m := range got {
					if m.Topic != topic || m.Payload != "py "+strconv.Itoa(i) || m.QoS != qos {
						t.Errorf("message %d: %+v", i, m)
					}
					if version == "5" && m.Props["seq"] != strconv.Itoa(i) {
						t.Errorf("message %d: user properties %v, want seq=%d", i, m.Props, i)
					}
				}
			})
		}
	}
}
