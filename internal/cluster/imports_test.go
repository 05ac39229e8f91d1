package cluster

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImports keeps the rule of doc.go for what exists today: the
// standard library, proto, packet and topic; nothing third-party yet.
func TestImports(t *testing.T) {
	allowed := map[string]bool{
		"github.com/starlingmq/starling/internal/cluster/proto": true,
		"github.com/starlingmq/starling/internal/packet":        true,
		"github.com/starlingmq/starling/internal/topic":         true,
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if first, _, _ := strings.Cut(path, "/"); strings.Contains(first, ".") && !allowed[path] {
				t.Errorf("%s imports %q", name, path)
			}
		}
	}
}
