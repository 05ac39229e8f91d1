package meta

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImports keeps meta to the standard library and raft's own modules
// (doc.go): it must not import other Starling packages.
func TestImports(t *testing.T) {
	allowed := map[string]bool{
		"github.com/hashicorp/raft":           true,
		"github.com/hashicorp/raft-boltdb/v2": true,
		"github.com/hashicorp/go-hclog":       true,
		"go.etcd.io/bbolt":                    true,
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
			std := !strings.Contains(strings.SplitN(path, "/", 2)[0], ".")
			if !std && !allowed[path] {
				t.Errorf("%s imports %s", name, path)
			}
		}
	}
}
