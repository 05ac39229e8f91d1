#!/usr/bin/env bash
# bench/cluster.sh: the cost of clustering, measured on one machine.
#
# Starts one single Starling node and a 3-node Starling cluster on
# loopback, then runs the same load against both with `starling bench`:
# fan-in 50 -> 1 at QoS 0 and QoS 1 (in the cluster every publisher is on
# another node than the subscriber: -sub-h n1 -pub-h n2,n3), p2p at a fixed
# rate for latency, and persistent sessions moving between nodes with 1,000
# queued messages each (persist -move). Mosquitto (one node) runs the
# fan-in too, as the same-run reference. Runs are interleaved, 3 passes,
# medians printed by the caller from the JSON lines in $OUT.
#
#   bench/cluster.sh [-passes N] [-duration 10s] [-only fanin] [-rate 2000]
#
# -rate is the p2p runs' total rate (messages/s; the 50 publishers take
# turns, evenly spread).
set -euo pipefail
cd "$(dirname "$0")/.."
PASSES=3
DUR=10s
ONLY=
RATE=2000
while [ $# -gt 0 ]; do
  case "$1" in
    -passes) PASSES=$2; shift 2 ;;
    -duration) DUR=$2; shift 2 ;;
    -only) ONLY=$2; shift 2 ;;
    -rate) RATE=$2; shift 2 ;;
    *) echo "usage: $0 [-passes N] [-duration D] [-only SUBSTRING] [-rate N]" >&2; exit 2 ;;
  esac
done
BIN=$(mktemp -d)/starling
go build -o "$BIN" ./cmd/starling
WORK=$(mktemp -d)
OUT=${OUT:-$WORK/results.jsonl}
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

MOSQ=$(freeport)
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n' "$MOSQ" > "$WORK/mosquitto.conf"
if [ -x /usr/sbin/mosquitto ]; then /usr/sbin/mosquitto -c "$WORK/mosquitto.conf" 2> "$WORK/mosquitto.log" & PIDS+=($!); fi

SINGLE=$(freeport)
printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n' "$SINGLE" > "$WORK/single.conf"
"$BIN" -c "$WORK/single.conf" 2> "$WORK/single.log" & PIDS+=($!)

declare -a MQTT GOSSIP
for i in 1 2 3; do MQTT[$i]=$(freeport); GOSSIP[$i]=$(freeport); done
for i in 1 2 3; do
  LINK=$(freeport)
  cat > "$WORK/n$i.conf" <<CONF
listener ${MQTT[$i]} 127.0.0.1
allow_anonymous true
max_queued_messages 0
node_name n$i
cluster_listen 127.0.0.1:${GOSSIP[$i]}
cluster_link_listen 127.0.0.1:$LINK
cluster_join 127.0.0.1:${GOSSIP[1]}
cluster_expect 3
CONF
  "$BIN" -c "$WORK/n$i.conf" 2> "$WORK/n$i.log" & PIDS+=($!)
done
# wait for the registry and the links
for _ in $(seq 1 100); do
  if grep -q "registry formed" "$WORK"/n*.log 2>/dev/null && [ "$(grep -c 'link up' "$WORK"/n*.log | awk -F: '{s+=$2} END {print s}')" -ge 6 ]; then break; fi
  sleep 0.2
done
sleep 1
H1=127.0.0.1:${MQTT[1]}; H2=127.0.0.1:${MQTT[2]}; H3=127.0.0.1:${MQTT[3]}; HS=127.0.0.1:$SINGLE

run() { # name args...
  local name=$1; shift
  case "$name" in *"$ONLY"*) ;; *) return 0 ;; esac
  echo "== $name" >&2
  "$BIN" bench "$@" -json | sed "s/^/{\"run\":\"$name\",\"r\":/; s/\$/}/" >> "$OUT"
}
for pass in $(seq 1 "$PASSES"); do
  echo "pass $pass" >&2
  for q in 0 1; do
    [ -x /usr/sbin/mosquitto ] && run "mosquitto-fanin-q$q" fanin -pubs 50 -subs 1 -q "$q" -duration "$DUR" -h "127.0.0.1:$MOSQ" -max-loss 100
    run "single-fanin-q$q" fanin -pubs 50 -subs 1 -q "$q" -duration "$DUR" -h "$HS"
    run "cluster-fanin-q$q" fanin -pubs 50 -subs 1 -q "$q" -duration "$DUR" -sub-h "$H1" -pub-h "$H2,$H3"
  done
  run single-p2p-latency p2p -pubs 50 -subs 50 -q 1 -rate "$RATE" -duration "$DUR" -h "$HS"
  # the cluster's own node, all clients on it: what being in a cluster
  # costs without a hop, to tell it from the hop's cost
  run cluster-local-p2p-latency p2p -pubs 50 -subs 50 -q 1 -rate "$RATE" -duration "$DUR" -h "$H1"
  run cluster-p2p-latency p2p -pubs 50 -subs 50 -q 1 -rate "$RATE" -duration "$DUR" -sub-h "$H1" -pub-h "$H2,$H3"
  # one session moving at a time (-i 100 ms between reconnections), then 20 at once
  run cluster-session-move persist -pubs 10 -subs 20 -count 1000 -q 1 -h "$H1,$H2,$H3" -move -i 100
  run cluster-session-move-burst persist -pubs 10 -subs 20 -count 1000 -q 1 -h "$H1,$H2,$H3" -move
done
echo "results in $OUT" >&2
