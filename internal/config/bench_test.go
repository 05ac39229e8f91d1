package config

import (
	"os"
	"strings"
	"testing"
)

func BenchmarkParse(b *testing.B) {
	data, err := os.ReadFile("testdata/mosquitto.conf")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parse(strings.NewReader(string(data)), "mosquitto.conf", testdataFS{}); err != nil {
			b.Fatal(err)
		}
	}
}
