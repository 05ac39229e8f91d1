package broker

import (
	"context"
	"math"
	"runtime"
	"strconv"
	"time"

	"github.com/starlingmq/starling/internal/packet"
)

// sysLoad is one exponentially damped moving average, per minute, as
// Mosquitto computes $SYS/broker/load/...
type sysLoad struct {
	topic string
	read  func(Stats) float64
	last  float64
	avg   [3]float64 // 1, 5 and 15 minutes
}

// sysLoop publishes $SYS topics every SysInterval, retained, only those
// whose value changed, as Mosquitto does. They are never matched by a
// filter starting with a wildcard [MQTT-4.7.2-1].
func (b *Broker) sysLoop() {
	defer b.wg.Done()
	interval := b.opts.SysInterval
	t := time.NewTicker(interval)
	defer t.Stop()
	prev := map[string]string{}
	pub := func(name, v string) {
		if prev[name] == v {
			return
		}
		prev[name] = v
		b.Publish(context.Background(), &packet.Publish{Topic: name, Payload: []byte(v), Retain: true})
	}
	loads := []*sysLoad{
		{topic: "messages/received", read: func(s Stats) float64 { return float64(s.MessagesReceived) }},
		{topic: "messages/sent", read: func(s Stats) float64 { return float64(s.MessagesSent) }},
		{topic: "publish/received", read: func(s Stats) float64 { return float64(s.PublishReceived) }},
		{topic: "publish/sent", read: func(s Stats) float64 { return float64(s.PublishSent) }},
		{topic: "publish/dropped", read: func(s Stats) float64 { return float64(s.PublishDropped) }},
		{topic: "bytes/received", read: func(s Stats) float64 { return float64(s.BytesReceived) }},
		{topic: "bytes/sent", read: func(s Stats) float64 { return float64(s.BytesSent) }},
		{topic: "connections", read: func(s Stats) float64 { return float64(s.ConnectionsAccepted) }},
	}
	periods := [3]float64{60, 300, 900}
	names := [3]string{"1min", "5min", "15min"}
	first := true
	for {
		st := b.Stats()
		pub("$SYS/broker/version", "starling version "+b.opts.Version)
		pub("$SYS/broker/uptime", strconv.FormatInt(int64(time.Since(b.start)/time.Second), 10)+" seconds")
		pub("$SYS/broker/clients/connected", itoa(st.ClientsConnected))
		pub("$SYS/broker/clients/active", itoa(st.ClientsConnected))
		pub("$SYS/broker/clients/disconnected", itoa(st.ClientsTotal-st.ClientsConnected))
		pub("$SYS/broker/clients/inactive", itoa(st.ClientsTotal-st.ClientsConnected))
		pub("$SYS/broker/clients/total", itoa(st.ClientsTotal))
		pub("$SYS/broker/clients/maximum", itoa(st.ClientsMaximum))
		pub("$SYS/broker/messages/received", utoa(st.MessagesReceived))
		pub("$SYS/broker/messages/sent", utoa(st.MessagesSent))
		pub("$SYS/broker/publish/messages/received", utoa(st.PublishReceived))
		pub("$SYS/broker/publish/messages/sent", utoa(st.PublishSent))
		pub("$SYS/broker/publish/messages/dropped", utoa(st.PublishDropped))
		pub("$SYS/broker/bytes/received", utoa(st.BytesReceived))
		pub("$SYS/broker/bytes/sent", utoa(st.BytesSent))
		pub("$SYS/broker/subscriptions/count", itoa(int64(st.Subscriptions)))
		pub("$SYS/broker/retained messages/count", itoa(int64(st.Retained)))
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		pub("$SYS/broker/heap/current", utoa(ms.HeapAlloc))
		pub("$SYS/broker/heap/maximum", utoa(ms.HeapSys))
		secs := interval.Seconds()
		for _, l := range loads {
			v := l.read(st)
			if first {
				l.last = v
				continue
			}
			rate := (v - l.last) / secs * 60
			l.last = v
			for i, p := range periods {
				k := math.Exp(-secs / p)
				l.avg[i] = l.avg[i]*k + rate*(1-k)
				pub("$SYS/broker/load/"+l.topic+"/"+names[i], strconv.FormatFloat(l.avg[i], 'f', 2, 64))
			}
		}
		first = false
		select {
		case <-b.quit:
			return
		case <-t.C:
		}
	}
}

func itoa(v int64) string  { return strconv.FormatInt(v, 10) }
func utoa(v uint64) string { return strconv.FormatUint(v, 10) }
