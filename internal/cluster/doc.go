// Package cluster will make a set of Starling nodes behave, to every MQTT
// client, like one broker (ARCHITECTURE.md, "Cluster"). This first part is
// its pure foundations; nothing here is wired into the broker yet.
//
// What it owns today:
//
//   - proto (sub-package): the versioned node-to-node protocol, its framing
//     and its rules for rolling upgrades (see its package comment).
//   - RouteTable: the routes of the other nodes, built from each node's
//     snapshot and numbered deltas, with gaps and stale updates reported
//     (ErrGap: ask for a snapshot; ErrStale: ignore), matched per topic in
//     O(levels) to forward a message once to each node with interest and
//     to weigh shared-subscription members cluster-wide.
//   - LocalRoutes: this node's own routes, aggregated from its sessions'
//     subscriptions into counts, emitted as deltas and snapshots.
//   - Clock: the hybrid logical clock stamping retained messages, and
//     LastWriterWins, the rule that merges them.
//
// All of it is pure: no goroutines, no I/O, no clocks read (time is passed
// in), not safe for concurrent use unless a type says otherwise.
//
// Planned, not done:
//
//   - Membership and failure detection with hashicorp/memberlist, seeds
//     from cluster_join re-resolved through DNS; dead nodes' routes purged
//     (RouteTable.RemoveNode) and, after cluster_dead_node_timeout, the
//     node removed from the registry.
//   - Node links: one TCP connection per pair of nodes over TLS (key from
//     cluster_secret, or cluster_cafile/certfile/keyfile), Hello/HelloAck,
//     a reader and a coalescing writer goroutine, bounded send queues,
//     Ping/Pong latency.
//   - Forwarding: a Router that the broker uses in place of its local one,
//     matching RouteTable, batching proto.Forward per link, picking shared
//     members, and holding QoS 1/2 acknowledgements until every node with
//     a matching persistent session has acknowledged (ForwardAck).
//   - Retained replication over the links, snapshot on join.
//   - The session registry: hashicorp/raft (sub-package meta) holding
//     client id -> (owner, epoch) and cluster-wide settings; session
//     claims and handover (SessionClaim, SessionTransfer).
//
// Imports: proto imports only internal/packet and the standard library.
// cluster may import proto, packet, topic and session, and later broker
// (to implement its Router); broker never imports cluster.
package cluster
