package topic

import (
	"fmt"
	"testing"
)

// benchTrie builds a Trie of n subscriptions shaped like a device fleet:
// a quarter each of "devices/{i}/telemetry/#", "devices/{i}/status",
// "site/{i}/+/temperature" and "devices/{i}/cmd/+", plus a few
// fleet-wide wildcard subscriptions every real broker carries. Each filter is
// distinct, so the number of matches per publish does not grow with n.
func benchTrie(n int) *Trie[int, byte] {
	tr := NewTrie[int, byte]()
	for i := range n {
		d := i / 4
		var f string
		switch i % 4 {
		case 0:
			f = fmt.Sprintf("devices/%d/telemetry/#", d)
		case 1:
			f = fmt.Sprintf("devices/%d/status", d)
		case 2:
			f = fmt.Sprintf("site/%d/+/temperature", d)
		case 3:
			f = fmt.Sprintf("devices/%d/cmd/+", d)
		}
		tr.Add(f, i, 1)
	}
	for i, f := range []string{"devices/+/status", "devices/+/alerts/#", "$SYS/#", "site/+/+/humidity"} {
		tr.Add(f, n+i, 1)
	}
	return tr
}

func benchNames(devices int) []string {
	var names []string
	for i := range 1024 {
		d := (i * 7919) % devices
		switch i % 4 {
		case 0:
			names = append(names, fmt.Sprintf("devices/%d/telemetry/cpu", d))
		case 1:
			names = append(names, fmt.Sprintf("devices/%d/status", d))
		case 2:
			names = append(names, fmt.Sprintf("site/%d/room1/temperature", d))
		case 3:
			names = append(names, fmt.Sprintf("devices/%d/unknown/topic/x", d)) // no match but a wildcard walk
		}
	}
	return names
}

func BenchmarkTrieMatch(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		tr := benchTrie(n)
		names := benchNames(n / 4)
		// hot: the same publish topic again and again, so the path stays
		// in cache and only the algorithm's cost shows.
		b.Run(fmt.Sprintf("subs=%d/hot", n), func(b *testing.B) {
			b.ReportAllocs()
			hits := 0
			for b.Loop() {
				tr.Match("devices/123/status", func(string, int, byte) { hits++ })
			}
		})
		// spread: 1024 topics over the whole fleet, so at 100k
		// subscriptions most node visits are cache misses.
		b.Run(fmt.Sprintf("subs=%d/spread", n), func(b *testing.B) {
			b.ReportAllocs()
			hits := 0
			i := 0
			for b.Loop() {
				tr.Match(names[i%len(names)], func(string, int, byte) { hits++ })
				i++
			}
			b.ReportMetric(float64(hits)/float64(i), "matches/op")
		})
	}
}

// BenchmarkTrieMatchFanout measures one publish reaching many subscribers
// of the same filter.
func BenchmarkTrieMatchFanout(b *testing.B) {
	tr := NewTrie[int, byte]()
	for i := range 1000 {
		tr.Add("news/+", i, 1)
	}
	b.ReportAllocs()
	hits := 0
	for b.Loop() {
		tr.Match("news/today", func(string, int, byte) { hits++ })
	}
}

func BenchmarkTrieAddRemove(b *testing.B) {
	tr := benchTrie(100_000)
	b.ReportAllocs()
	for b.Loop() {
		tr.Add("devices/123/telemetry/extra/#", -1, 1)
		tr.Remove("devices/123/telemetry/extra/#", -1)
	}
}

func BenchmarkMatch(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		Match("devices/+/telemetry/#", "devices/12345/telemetry/cpu/0")
	}
}

func BenchmarkValidFilter(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = ValidFilter("devices/+/telemetry/#")
	}
}

func BenchmarkNamesMatch(b *testing.B) {
	const devices = 25_000
	idx := NewNames[int]()
	for d := range devices {
		for _, m := range []string{"telemetry/cpu", "telemetry/mem", "status", "config"} {
			idx.Set(fmt.Sprintf("devices/%d/%s", d, m), d)
		}
	}
	if idx.Len() != 100_000 {
		b.Fatalf("Len = %d", idx.Len())
	}
	for _, bc := range []struct{ name, filter string }{
		{"literal", "devices/12345/status"},
		{"prefix#", "devices/12345/#"},
		{"prefix+", "devices/12345/telemetry/+"},
		{"miss", "devices/99999999/#"},
		{"wildcard-all-devices", "devices/+/status"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			hits, runs := 0, 0
			for b.Loop() {
				idx.Match(bc.filter, func(string, int) bool { hits++; return true })
				runs++
			}
			b.ReportMetric(float64(hits)/float64(runs), "matches/op")
		})
	}
}
