package admin

import "time"

// ClusterStatus is the body of GET /api/v1/cluster/status: one node's view
// of the cluster.
type ClusterStatus struct {
	// Node is the name of the node answering.
	Node string `json:"node"`
	// Serving tells whether the node accepts MQTT clients.
	Serving bool `json:"serving"`
	// Clustered is false on a single node.
	Clustered bool `json:"clustered"`
	// Members lists every member this node knows, itself included.
	Members []MemberStatus `json:"members"`
	// Registry is the state of the session registry.
	Registry RegistryStatus `json:"registry"`
	// Routes is the number of remote routes known.
	Routes int `json:"routes"`
	// Retained is the number of retained messages held, not counting the
	// node's own $SYS topics (which are not replicated).
	Retained int `json:"retained"`
	// Clients is the number of clients connected to this node.
	Clients int `json:"clients"`
	// Sessions is the number of sessions held by this node.
	Sessions int `json:"sessions"`
	// Forwarded counts messages sent to other nodes; Dropped those meant
	// for a node whose link was down or full (and not sent).
	Forwarded uint64 `json:"forwarded"`
	Dropped   uint64 `json:"dropped"`
	// Relayed counts messages that reached a session's old node while the
	// session moved here, passed on by that node and delivered here.
	Relayed uint64 `json:"relayed"`
}

// Member states, for MemberStatus.State.
const (
	StateAlive   = "alive"
	StateSuspect = "suspect"
	StateDead    = "dead"
	StateLeft    = "left"
)

// Link states, for MemberStatus.Link.
const (
	LinkUp   = "up"
	LinkDown = "down"
	LinkSelf = "self"
)

// MemberStatus is one member of the cluster as the answering node sees it.
type MemberStatus struct {
	// Name is the member's node name.
	Name string `json:"name"`
	// Addr is the member's cluster address (host:port).
	Addr string `json:"addr"`
	// State is StateAlive, StateSuspect, StateDead or StateLeft.
	State string `json:"state"`
	// Link is LinkUp, LinkDown or LinkSelf: the node-to-node connection.
	Link string `json:"link"`
	// RTTMillis is the last measured round trip time in milliseconds.
	RTTMillis float64 `json:"rtt_ms"`
	// Since is when State last changed.
	Since time.Time `json:"since"`
	// Voter tells whether the member votes in the registry.
	Voter bool `json:"voter"`
	// Leader tells whether the member leads the registry.
	Leader bool `json:"leader"`
}

// RegistryStatus is the state of the replicated session registry.
type RegistryStatus struct {
	// State is the local replica's role (for example leader, follower,
	// candidate, shutdown).
	State string `json:"state"`
	// Leader is the name of the current leader, empty if none is known.
	Leader string `json:"leader"`
	// Sessions is the number of sessions the registry records.
	Sessions int `json:"sessions"`
	// Voters lists the names of the voting members.
	Voters []string `json:"voters"`
	// NonVoters lists the names of the non-voting members.
	NonVoters []string `json:"non_voters"`
	// LastIndex is the index of the last log entry applied.
	LastIndex uint64 `json:"last_index"`
}
