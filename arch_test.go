package starling_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/starlingmq/starling/"

// allowed lists, for each package, the packages of ours it may depend on
// (directly or not), as ARCHITECTURE.md draws them.
var allowed = map[string][]string{
	"internal/packet":        {},
	"internal/topic":         {},
	"internal/config":        {},
	"internal/listener":      {},
	"internal/session":       {"internal/packet", "internal/topic"},
	"internal/client":        {"internal/packet"},
	"internal/bench":         {"internal/client", "internal/packet"},
	"internal/cluster/proto": {"internal/packet"},
	"internal/cluster": {"internal/packet", "internal/topic", "internal/session", "internal/broker",
		"internal/cluster/proto", "internal/cluster/meta"},
	"internal/cluster/meta": {},
	"internal/admin":        {},
	"internal/testutil":     {},
	"internal/broker":       {"internal/packet", "internal/topic", "internal/session"},
	"internal/auth/file":    {"internal/broker", "internal/packet", "internal/topic", "internal/session"},
	"internal/store":        {"internal/broker", "internal/packet", "internal/topic", "internal/session"},
}

// pure lists the packages that must depend on the standard library and
// the packages of ours above only: the codecs and pure cores.
var pure = map[string]bool{
	"internal/packet": true, "internal/topic": true, "internal/session": true,
	"internal/cluster/proto": true, "internal/admin": true, "internal/testutil": true,
}

func TestImportDirections(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go command not found")
	}
	for pkg, ok := range allowed {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", module+pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			rel, ours := strings.CutPrefix(dep, module)
			if !ours {
				if pure[pkg] {
					t.Errorf("%s depends on %s: it may use the standard library only", pkg, dep)
				}
				continue
			}
			if rel == pkg {
				continue
			}
			if !slices.Contains(ok, rel) {
				t.Errorf("%s depends on %s, which ARCHITECTURE.md forbids", pkg, rel)
			}
		}
	}
}
