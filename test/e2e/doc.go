// Package e2e holds black-box end-to-end tests of the real starling
// binary driven by real MQTT peers: mosquitto_pub/mosquitto_sub,
// eclipse/paho.mqtt.golang, eclipse/paho.golang, Python's paho-mqtt and
// HAProxy in front of a PROXY-protocol listener.
//
// TestMain builds ./cmd/starling once; every test starts its own broker
// process on free loopback ports with a configuration file in its temp
// dir, and stops it at cleanup (SIGTERM, then SIGKILL after 5 s). Port
// 1883 is never used.
//
// Environment:
//
//	STARLING_REQUIRE_SERVICES=1  a missing external program fails the test
//	                             instead of skipping it (as CI runs)
//	STARLING_E2E_BIN=PATH        test this binary instead of building one
//	STARLING_E2E_RACE=1          build the binary with -race
//
// The package has no code outside its tests and imports nothing of ours
// but internal/testutil (a fault-injecting TCP proxy): it sees Starling
// only through the binary, the network and files.
package e2e
