// Package cluster makes a set of Starling nodes behave, to every MQTT
// client, like one broker (ARCHITECTURE.md, "Cluster"). A Node is the
// broker's Router (broker.Router): the broker calls it for every
// subscription change, every message published here, every retained write
// and every CONNECT; the Node calls the broker back to deliver forwarded
// messages, apply replicated retained messages and install or hand over
// sessions.
//
// What it owns:
//
//   - Membership and failure detection: hashicorp/memberlist (member.go),
//     seeds from cluster_join resolved again while the node runs; a dead
//     node's link is closed and its routes dropped at once, and after
//     cluster_dead_node_timeout the registry's leader removes it.
//   - Node links (link.go): one TCP connection per pair of nodes, the
//     smaller name dialing, mutual TLS from the cluster secret or the
//     cluster_cafile/certfile/keyfile (tls.go). The link port also carries
//     Raft and the registry's requests, told apart by a first byte. Each
//     link has one reader, one coalescing writer with a bounded buffer,
//     and one goroutine acknowledging forwarded messages in order.
//   - Routes: RouteTable (the other nodes' routes, from each node's
//     snapshot and numbered deltas) and LocalRoutes (this node's, counted
//     from its sessions' subscriptions). Pure: no goroutines, no I/O.
//   - Forwarding (Node.Forward): a message goes once to each node with a
//     matching route; shared subscription groups pick one member
//     cluster-wide in proportion to members; QoS 1 and 2 publishers wait
//     for the receiving nodes' acknowledgements.
//   - Retained messages: replicated over the links, last writer wins by
//     hybrid logical clock (Clock, pure), snapshot when a link comes up.
//   - Sessions (claim.go): the registry (sub-package meta, hashicorp/raft)
//     maps client ids of persistent sessions to their owner; a CONNECT
//     claims the id and the previous owner hands the session over
//     (SessionClaim, SessionTransfer, SessionTransferAck); every node is
//     told to close an older connection of the id (SessionKick); Leave
//     hands every session to another node.
//   - proto (sub-package): the versioned node-to-node protocol.
//
// Imports: proto imports only internal/packet and the standard library;
// meta only the standard library and Raft. cluster imports broker,
// session, topic, packet, proto and meta; broker never imports cluster.
package cluster
