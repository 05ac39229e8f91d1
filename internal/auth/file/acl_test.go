package file

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/starlingmq/starling/internal/broker"
)

const (
	R = broker.AccessRead
	W = broker.AccessWrite
	S = broker.AccessSubscribe
)

// client is who asks: an empty user with anon set means no username.
type client struct {
	id, user string
	anon     bool
}

var (
	anon  = client{id: "c-anon", anon: true}
	alice = client{id: "c-alice", user: "alice"}
	bob   = client{id: "c-bob", user: "bob"}
	carol = client{id: "c-carol", user: "carol"} // no user section
)

const testACL = `# Mosquitto-style ACL
topic read public/#
topic deny public/secret
topic $SYS/broker/uptime

user alice
topic readwrite alice/#
topic write  cmd/+/set
topic deny alice/private/#
topic read wide/#
topic read with space/x y

pattern read devices/%c/#
pattern write devices/%c/status
pattern readwrite users/%u/#
pattern deny users/%u/locked
pattern readwrite dev_%c/x

user bob
topic #
topic read $SYS/#
# a second alice section adds to the first
user alice
topic read more/alice
pattern deny wide/%c
`

func TestACLAllowed(t *testing.T) {
	acl, err := ParseACL(strings.NewReader(testACL), "acl")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		c      client
		topic  string
		access broker.Access
		want   bool
	}{
		// Anonymous section.
		{"anon reads public", anon, "public/news", R, true},
		{"anon reads public root via #", anon, "public", R, true},
		{"anon cannot write read-only", anon, "public/news", W, false},
		{"anon deny wins in own list", anon, "public/secret", R, false},
		{"anon deny is exact", anon, "public/secret/x", R, true},
		{"anon default readwrite", anon, "$SYS/broker/uptime", W, true},
		{"anon no entry", anon, "other", R, false},
		{"anon section not for users", carol, "public/news", R, false},
		{"alice not in anon section", alice, "public/news", R, false},

		// User sections.
		{"alice own tree", alice, "alice/a/b", W, true},
		{"alice own root", alice, "alice", R, true},
		{"alice + wildcard", alice, "cmd/lamp/set", W, true},
		{"alice + is one level", alice, "cmd/a/b/set", W, false},
		{"alice write-only", alice, "cmd/lamp/set", R, false},
		{"alice deny wins over readwrite", alice, "alice/private/diary", R, false},
		{"alice deny # covers parent", alice, "alice/private", W, false},
		{"alice second section", alice, "more/alice", R, true},
		{"alice topic with spaces", alice, "with space/x y", R, true},
		{"alice other", alice, "bob/x", R, false},
		{"bob everything", bob, "anything/at/all", W, true},
		{"bob # does not match $SYS", bob, "$SYS/broker/load", W, false},
		{"bob $SYS read", bob, "$SYS/broker/load", R, true},
		{"user named like section keyword", client{id: "x", user: "user"}, "alice/x", R, false},

		// Patterns: every client, %c and %u substituted.
		{"pattern %c", carol, "devices/c-carol/temp", R, true},
		{"pattern %c other id", carol, "devices/c-bob/temp", R, false},
		{"pattern %c write", carol, "devices/c-carol/status", W, true},
		{"pattern %c write elsewhere", carol, "devices/c-carol/temp", W, false},
		{"pattern %u", carol, "users/carol/inbox", W, true},
		{"pattern %u other user", carol, "users/alice/inbox", W, false},
		{"pattern %u anon", anon, "users//inbox", W, false},
		{"pattern %u anon literal", anon, "users/%u/inbox", W, false},
		{"pattern %c anon", anon, "devices/c-anon/x", R, true},
		{"pattern deny %u", carol, "users/carol/locked", R, false},
		{"pattern %c inside a level", carol, "dev_c-carol/x", W, true},
		{"pattern written in a user section is global", bob, "devices/c-bob/x", R, true},

		// User list first, then patterns (Mosquitto's order).
		{"user grant beats deny pattern", alice, "wide/c-alice", R, true},
		{"deny pattern applies when user list is silent", carol, "wide/c-carol", R, false},
		{"user deny beats granting pattern", client{id: "private", user: "alice"}, "alice/private/x", R, false},

		// Dangerous client ids and usernames get nothing from patterns.
		{"client id with +", client{id: "a+", user: "carol"}, "users/carol/x", R, false},
		{"client id with #", client{id: "#", user: "carol"}, "users/carol/x", R, false},
		{"client id with /", client{id: "a/b", user: "carol"}, "devices/a/b/x", R, false},
		{"username with /", client{id: "x", user: "a/b"}, "users/a/b/x", R, false},
		{"dangerous id keeps user list", client{id: "a/b", user: "alice"}, "alice/x", R, true},

		// Subscriptions: the filter needs read access, '#' only covered by '#'.
		{"subscribe without any rule", anon, "nothing/#", S, false},
		{"subscribe under a denied tree", alice, "alice/private/#", S, false},
		{"subscribe own tree", alice, "alice/#", S, true},
		{"subscribe + inside own tree", alice, "alice/+/x", S, true},
		{"subscribe # not covered by +", alice, "cmd/#", S, false},
		{"subscribe to write-only", alice, "cmd/lamp/set", S, false},
		{"subscribe public exact", anon, "public/news", S, true},
		{"subscribe pattern %c", carol, "devices/c-carol/#", S, true},
		{"subscribe pattern other id", carol, "devices/+/temp", S, false},
		{"subscribe # everything", bob, "#", S, true},
		{"subscribe $SYS not by #", bob, "$SYS/#", S, true},

		// Topic names with wildcards never match.
		{"wildcard in topic", bob, "a/+", W, false},
		{"empty topic", bob, "", W, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := acl.Allowed(tt.c.id, tt.c.user, !tt.c.anon, tt.topic, tt.access)
			if got != tt.want {
				t.Errorf("Allowed(%q, %q, %v, %q, %v) = %v, want %v", tt.c.id, tt.c.user, !tt.c.anon, tt.topic, tt.access, got, tt.want)
			}
		})
	}
}

func TestACLEmptySections(t *testing.T) {
	// A file with only a user section: anonymous clients get nothing.
	acl, err := ParseACL(strings.NewReader("user a\ntopic x\n"), "acl")
	if err != nil {
		t.Fatal(err)
	}
	if acl.Allowed("c", "", false, "x", R) {
		t.Error("anonymous allowed with no anonymous section")
	}
	if !acl.Allowed("c", "a", true, "x", R) {
		t.Error("a not allowed x")
	}
	// An empty username is a username: it is not anonymous.
	acl, _ = ParseACL(strings.NewReader("topic x\npattern p/%u\n"), "acl")
	if acl.Allowed("c", "", true, "x", R) {
		t.Error("empty username used the anonymous section")
	}
	if !acl.Allowed("c", "", true, "p/", R) {
		t.Error("%u with an empty username: want textual substitution as Mosquitto")
	}
	// An empty file denies everything.
	acl, _ = ParseACL(strings.NewReader(""), "acl")
	if acl.Allowed("c", "u", true, "x", W) || acl.Allowed("c", "u", true, "x", S) {
		t.Error("empty ACL")
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/b", "a/b/c", false},
		{"a/b/c", "a/b", false},
		{"#", "a/b", true},
		{"#", "/", true},
		{"#", "$SYS/x", false},
		{"$SYS/#", "$SYS/x", true},
		{"$SYS/#", "$SYS", true},
		{"+/x", "$SYS/x", false},
		{"a/#", "a", true},
		{"a/#", "ab", false},
		{"a/+", "a/", true},
		{"a/+", "a", false},
		{"+", "a", true},
		{"+", "/a", false},
		{"+/+", "/a", true},
		{"a/+/#", "a/b", true},
		{"a/+/#", "a", false},
		{"/a", "/a", true},
		{"a//b", "a//b", true},
		{"a/+/b", "a//b", true},
		{"", "a", false},
		{"a", "", false},
	}
	for _, tt := range tests {
		if got := match(tt.filter, tt.topic); got != tt.want {
			t.Errorf("match(%q, %q) = %v, want %v", tt.filter, tt.topic, got, tt.want)
		}
	}
}

func TestParseACLErrors(t *testing.T) {
	tests := []struct {
		name, in string
		line     int
		want     string
	}{
		{"unknown keyword", "topic a\nfoo bar\n", 2, "unknown keyword \"foo\""},
		{"bad access", "\n\ntopic rw a/b\n", 3, "invalid topic access type \"rw\""},
		{"empty topic", "topic\n", 1, "empty topic"},
		{"empty pattern", "pattern   \n", 1, "empty topic"},
		{"missing user", "user\n", 1, "missing username"},
		{"# not last", "topic a/#/b\n", 1, "'#' must be the last level"},
		{"+ in level", "topic read a/b+\n", 1, "whole level"},
		{"# in level", "pattern write a/%c#\n", 1, "whole level"},
		{"too long", "topic " + strings.Repeat("a", 65536) + "\n", 1, "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseACL(strings.NewReader(tt.in), "my.acl")
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Line != tt.line || pe.File != "my.acl" {
				t.Fatalf("err = %v, want a ParseError at my.acl:%d", err, tt.line)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestParseACLLenient(t *testing.T) {
	in := "  # indented comment\r\n\ttopic\tread\ta/b  \r\n\nuser   spaced name  \ntopic  deny   c\n"
	acl, err := ParseACL(strings.NewReader(in), "acl")
	if err != nil {
		t.Fatal(err)
	}
	if !acl.Allowed("x", "", false, "a/b", R) || acl.Allowed("x", "", false, "a/b", W) {
		t.Error("tab-separated line misread")
	}
	if _, ok := acl.users["spaced name"]; !ok {
		t.Errorf("users = %v, want \"spaced name\"", acl.users)
	}
}

func TestLoadACL(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadACL(filepath.Join(dir, "none")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: err = %v", err)
	}
	path := filepath.Join(dir, "acl")
	if err := os.WriteFile(path, []byte("topic a\ntopic bad a b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadACL(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+":2: ") {
		t.Fatalf("err = %v, want it to start with %s:2:", err, path)
	}
}

func BenchmarkACLAllowed(b *testing.B) {
	acl, err := ParseACL(strings.NewReader(testACL), "acl")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("user", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			acl.Allowed("c-alice", "alice", true, "alice/a/b/c", W)
		}
	})
	b.Run("pattern", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			acl.Allowed("c-carol", "carol", true, "users/carol/inbox", W)
		}
	})
}

// expand is the reference for matchSubst: it substitutes %c and %u in filter, as Mosquitto does before matching.
func expand(filter string, s *subst) string {
	var b strings.Builder
	for i := 0; i < len(filter); i++ {
		if v, ok := s.value(filter, i); ok {
			b.WriteString(v)
			i++
			continue
		}
		b.WriteByte(filter[i])
	}
	return b.String()
}

func TestMatchSubstEqualsExpand(t *testing.T) {
	filters := []string{"%c", "%u", "a/%c", "a/%c/#", "%c/+", "x%cy/%u", "%c%u", "%%c", "%x/%c", "$%c/a", "%c/a", "+/%u/#", "#", "a/b", "%u", "%"}
	topics := []string{"a", "a/b", "c1/x", "$c1/a", "$SYS/a", "a/c1", "a/c1/z", "xc1y/u1", "c1u1", "%c1", "%x/c1", "/", "u1", "a/", "%"}
	substs := []subst{
		{clientID: "c1", username: "u1", hasUsername: true},
		{clientID: "c1"},
		{clientID: "", username: "", hasUsername: true},
		{clientID: "$c1", username: "u1", hasUsername: true},
	}
	for _, s := range substs {
		for _, f := range filters {
			for _, tp := range topics {
				want := match(expand(f, &s), tp)
				if got := matchSubst(f, tp, &s); got != want {
					t.Errorf("matchSubst(%q, %q, %+v) = %v, match(expand) = %v", f, tp, s, got, want)
				}
			}
		}
	}
}
