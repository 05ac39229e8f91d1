// Package testutil owns helpers shared by Starling's tests: a TCP proxy
// that injects network faults between cluster nodes (a cut link that drops
// bytes silently, a heal, a reset), an Eventually helper that polls instead
// of sleeping, and FreePort.
//
// It is for tests only: no production package may import it. It must import
// the standard library only, so any package's tests can use it without an
// import cycle.
package testutil
