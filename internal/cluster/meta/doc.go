// Package meta is the cluster's session registry: a small state machine
// replicated by hashicorp/raft that maps each persistent MQTT session's
// client id to its Owner, the node that holds the session and an epoch
// (the Raft log index of the claim that made it the owner). Epochs only
// grow, so an epoch tells a stale owner from the current one, and Release
// is a compare-and-delete on (node, epoch).
//
// What it owns:
//
//   - Registry: Raft itself (log and stable store in bbolt, file
//     snapshots, or everything in memory), the FSM, and the small
//     request/response protocol that followers use to forward Claim,
//     Release, PurgeNode and Leave to the leader, with pooled
//     connections. Writes work on any node; Owner reads this node's copy.
//   - Membership of the Raft configuration (Reconcile): which alive nodes
//     are voters (3 or 5), nonvoters for the rest, dead voters replaced,
//     nodes dead for longer than a timeout removed and their sessions
//     purged. It is driven by the caller's failure detector (memberlist);
//     meta does not detect failures itself.
//   - The adapters of raft's and memberlist's loggers to log/slog
//     (HCLogger, StdLogger): the only place in Starling where they live.
//
// What it does not own: the network. The caller builds the Raft stream
// layer (plain TCP, TLS or a multiplexed listener; NewStreamLayer adapts
// a listener and a dial function), the listener for forwarded requests
// and the dialer for them, and maps a Raft address to the forwarding
// endpoint of the same node.
//
// Imports: only the standard library, github.com/hashicorp/raft,
// github.com/hashicorp/raft-boltdb/v2, and two packages those bring:
// github.com/hashicorp/go-hclog (raft's logger interface) and
// go.etcd.io/bbolt (only for raft-boltdb's open timeout). It must not
// import any other Starling package: cluster imports meta, never the
// reverse.
package meta
