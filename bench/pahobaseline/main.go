// Command pahobaseline is an independent yardstick for `starling bench`: a
// fan-in (N publishers, one subscriber of all their topics) written with
// the Eclipse Paho client instead of Starling's, so one can check that
// `starling bench` drives a broker at least as hard as a plain client does.
//
//	go run ./bench/pahobaseline -h 127.0.0.1:1884 -pubs 50 -q 0 -duration 5s
//
// It prints published and delivered messages per second.
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

func main() {
	host := flag.String("h", "127.0.0.1:1883", "broker host:port")
	pubs := flag.Int("pubs", 50, "publishers")
	qos := flag.Int("q", 0, "QoS")
	size := flag.Int("s", 64, "payload bytes")
	dur := flag.Duration("duration", 5*time.Second, "publishing time")
	window := flag.Int("inflight", 100, "outstanding publishes per publisher")
	flag.Parse()

	prefix := "paho/" + strconv.FormatInt(time.Now().UnixNano(), 36)
	var recv atomic.Int64
	var last atomic.Int64
	opts := func(id string) *mqtt.ClientOptions {
		o := mqtt.NewClientOptions().AddBroker("tcp://" + *host).SetClientID(id).
			SetCleanSession(true).SetAutoReconnect(false).SetOrderMatters(false)
		o.SetMaxResumePubInFlight(*window)
		return o
	}
	sub := mqtt.NewClient(opts(prefix + "-s"))
	if t := sub.Connect(); t.Wait() && t.Error() != nil {
		fail(t.Error())
	}
	if t := sub.Subscribe(prefix+"/+", byte(*qos), func(mqtt.Client, mqtt.Message) {
		recv.Add(1)
		last.Store(time.Now().UnixNano())
	}); t.Wait() && t.Error() != nil {
		fail(t.Error())
	}
	var sent atomic.Int64
	payload := make([]byte, *size)
	start := time.Now()
	stop := start.Add(*dur)
	var wg sync.WaitGroup
	for i := range *pubs {
		c := mqtt.NewClient(opts(prefix + "-p" + strconv.Itoa(i)))
		if t := c.Connect(); t.Wait() && t.Error() != nil {
			fail(t.Error())
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Disconnect(100)
			ring := make([]mqtt.Token, *window)
			topic := prefix + "/" + strconv.Itoa(i)
			for n := 0; time.Now().Before(stop); n++ {
				if t := ring[n%len(ring)]; t != nil {
					t.Wait()
				}
				ring[n%len(ring)] = c.Publish(topic, byte(*qos), false, payload)
				sent.Add(1)
			}
			for _, t := range ring {
				if t != nil {
					t.Wait()
				}
			}
		}()
	}
	wg.Wait()
	pubEnd := time.Now()
	// Wait for the deliveries still on their way.
	for {
		n := recv.Load()
		time.Sleep(time.Second)
		if recv.Load() == n {
			break
		}
	}
	sub.Disconnect(100)
	end := time.Unix(0, last.Load())
	fmt.Printf("paho fan-in %d->1 QoS %d: published %d (%.0f msg/s), delivered %d (%.0f msg/s)\n",
		*pubs, *qos, sent.Load(), float64(sent.Load())/pubEnd.Sub(start).Seconds(),
		recv.Load(), float64(recv.Load())/end.Sub(start).Seconds())
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "pahobaseline:", err)
	os.Exit(1)
}
