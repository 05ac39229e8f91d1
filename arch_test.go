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
	"internal/broker":        {"internal/packet", "internal/topic", "internal/session"},
	"internal/auth/file":     {"internal/broker", "internal/packet", "internal/topic", "internal/session"},
	"internal/store":         {"internal/broker", "internal/packet", "internal/topic", "internal/session"},
}

func TestImportDirections(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go command not found")
	}
	for pkg, ok := range allowed {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", module+pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			rel, ours := strings.CutPrefix(dep, module)
			if !ours || rel == pkg {
				continue
			}
			if !slices.Contains(ok, rel) {
				t.Errorf("%s depends on %s, which ARCHITECTURE.md forbids", pkg, rel)
			}
		}
	}
}
