#!/usr/bin/env bash
# Compare Starling with Mosquitto 2 and NATS (MQTT) on this machine.
#
#   bench/compare.sh            the standard set, 10 s runs, three rounds
#   bench/compare.sh --quick    about two minutes
#   bench/compare.sh --only p2p any flag of `starling bench compare`
#
# Builds Starling from this repository, then `starling bench compare` starts
# each broker on free loopback ports (never 1883 or 4222) with its own
# temporary configuration, runs the set interleaved and prints the table.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(mktemp -d)"
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/starling" ./cmd/starling
# 15,000 connections need more open files than the usual 1024; the children
# (brokers and runs) inherit the raised limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
"$bin/starling" bench compare -starling "$bin/starling" "$@"
