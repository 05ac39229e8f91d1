// Package admin owns a node's HTTP admin endpoint: the health check a load
// balancer polls (GET /health, as HAProxy's "option httpchk GET /health"),
// the cluster status (GET /api/v1/cluster/status) and a graceful leave
// (POST /api/v1/cluster/leave).
//
// It defines the JSON shapes of the status (ClusterStatus, MemberStatus,
// RegistryStatus) and calls functions the caller passes in Options to fill
// them, so the cluster and broker packages depend on it, never the other way
// round. It must import the standard library only.
package admin
