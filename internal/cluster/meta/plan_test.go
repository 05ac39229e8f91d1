package meta

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestVoterTarget(t *testing.T) {
	for n, want := range map[int]int{0: 1, 1: 1, 2: 2, 3: 3, 4: 3, 5: 5, 6: 5, 100: 5} {
		if got := VoterTarget(n); got != want {
			t.Errorf("VoterTarget(%d) = %d, want %d", n, got, want)
		}
	}
}

func TestPlan(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	const timeout = time.Minute
	v := func(id string) raft.Server {
		return raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(id + ":1")}
	}
	nv := func(id string) raft.Server {
		return raft.Server{Suffrage: raft.Nonvoter, ID: raft.ServerID(id), Address: raft.ServerAddress(id + ":1")}
	}
	alive := func(ids ...string) []Server {
		var out []Server
		for _, id := range ids {
			out = append(out, Server{ID: id, Addr: id + ":1"})
		}
		return out
	}
	fresh, old := now.Add(-time.Second), now.Add(-2*timeout)

	tests := []struct {
		name    string
		servers []raft.Server
		alive   []Server
		dead    map[string]time.Time
		owners  []string // nodes that own entries
		want    string   // changes, "kind id" joined with ", "
	}{
		{
			name:    "steady",
			servers: []raft.Server{v("a"), v("b"), v("c")},
			alive:   alive("a", "b", "c"),
		},
		{
			name:    "self need not be listed",
			servers: []raft.Server{v("a")},
		},
		{
			name:    "new nodes join as nonvoters",
			servers: []raft.Server{v("a")},
			alive:   alive("a", "b", "c"),
			want:    "add-nonvoter b, add-nonvoter c",
		},
		{
			name:    "nonvoters promoted up to three",
			servers: []raft.Server{v("a"), nv("b"), nv("c"), nv("d")},
			alive:   alive("a", "b", "c", "d"),
			want:    "add-voter b, add-voter c",
		},
		{
			name:    "five alive: five voters",
			servers: []raft.Server{v("a"), v("b"), v("c"), nv("d"), nv("e"), nv("f")},
			alive:   alive("a", "b", "c", "d", "e", "f"),
			want:    "add-voter d, add-voter e",
		},
		{
			name:    "two alive: two voters",
			servers: []raft.Server{v("a"), nv("b")},
			alive:   alive("a", "b"),
			want:    "add-voter b",
		},
		{
			name:    "dead voter replaced at once",
			servers: []raft.Server{v("a"), v("b"), v("c"), nv("d")},
			alive:   alive("a", "b", "d"),
			dead:    map[string]time.Time{"c": fresh},
			want:    "add-voter d",
		},
		{
			name:    "dead voter without a replacement stays",
			servers: []raft.Server{v("a"), v("b"), v("c")},
			alive:   alive("a", "b"),
			dead:    map[string]time.Time{"c": fresh},
		},
		{
			name:    "dead too long: removed and purged",
			servers: []raft.Server{v("a"), v("b"), v("c")},
			alive:   alive("a", "b"),
			dead:    map[string]time.Time{"c": old},
			owners:  []string{"c"},
			want:    "remove c, purge c",
		},
		{
			name:    "exactly the timeout counts",
			servers: []raft.Server{v("a"), nv("b")},
			alive:   alive("a"),
			dead:    map[string]time.Time{"b": now.Add(-timeout)},
			want:    "remove b",
		},
		{
			name:    "dead nonmember with entries is purged",
			servers: []raft.Server{v("a")},
			alive:   alive("a"),
			dead:    map[string]time.Time{"x": old, "y": old},
			owners:  []string{"x"},
			want:    "purge x",
		},
		{
			name:    "excess alive voters stay; the dead one goes when it times out",
			servers: []raft.Server{v("a"), v("b"), v("c"), v("d"), v("e")},
			alive:   alive("a", "b", "c", "d"),
			dead:    map[string]time.Time{"e": old},
			want:    "remove e",
		},
		{
			name:    "dead and timed out voter replaced and removed",
			servers: []raft.Server{v("a"), v("b"), v("c"), nv("d")},
			alive:   alive("a", "b", "d"),
			dead:    map[string]time.Time{"c": old},
			want:    "remove c, add-voter d",
		},
		{
			name:    "self never removed",
			servers: []raft.Server{v("a"), v("b"), v("c")},
			alive:   alive("b", "c"),
			dead:    map[string]time.Time{"a": old},
			owners:  []string{"a"},
		},
		{
			name:    "alive wins over dead",
			servers: []raft.Server{v("a"), v("b")},
			alive:   alive("a", "b"),
			dead:    map[string]time.Time{"b": old},
		},
		{
			name:    "new address",
			servers: []raft.Server{v("a"), v("b"), nv("c"), nv("d")},
			alive:   []Server{{ID: "a", Addr: "a:1"}, {ID: "b", Addr: "b:2"}, {ID: "c", Addr: "c:2"}},
			want:    "add-voter b, add-nonvoter c, add-voter c",
		},
		{
			name:    "unknown members are left alone",
			servers: []raft.Server{v("a"), v("b"), v("c")},
			alive:   alive("a"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := plan(tt.servers, Server{ID: "a", Addr: "a:1"}, tt.alive, tt.dead, now, timeout,
				func(node string) bool { return slices.Contains(tt.owners, node) })
			var parts []string
			for _, c := range got {
				parts = append(parts, fmt.Sprintf("%s %s", c.kind, c.id))
			}
			if s := strings.Join(parts, ", "); s != tt.want {
				t.Fatalf("got %q\nwant %q", s, tt.want)
			}
		})
	}
}
