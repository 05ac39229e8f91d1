// Package bench is the load generator behind `starling bench`: it drives any
// MQTT broker with many connections, publishers and subscribers, measures
// end-to-end latency (the publish time travels in the payload) and counts
// loss, duplicates and reordering exactly (every message carries its stream
// and sequence number), and reports a summary table, one JSON line or a
// self-contained HTML page.
//
// Scenarios: conn (idle connections), pub, sub (one side only, emqtt-bench
// style), fanin, fanout, p2p and shared (both sides in one process) and
// persist (offline queues drained on reconnect). Compare runs a standard set
// against several brokers started as child processes.
//
// It speaks MQTT through internal/client and internal/packet only; it must
// not import the broker or any other Starling package (its tests may).
package bench
