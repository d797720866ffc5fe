package goemit_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/gen/contract"
	"github.com/ampyfin/ampy-bus/gen/naming"
)

// The naming rule (docs/ARCHITECTURE.md, "Names") keeps every generated
// identifier from reading as something else: no identifier is another
// subtopic's bare name, or that name with a type suffix, in any domain
// package. orders.ReplayRequests (replaying the requests subtopic) would
// read as the control domain's replay_requests; the rule writes
// orders.ReplayRequestsWindow.
func TestGeneratedNamesDoNotMislead(t *testing.T) {
	contracts, err := filepath.Glob("testdata/*/contract.yaml")
	require.NoError(t, err)
	for _, cp := range append(contracts, "../../contract.yaml") {
		t.Run(cp, func(t *testing.T) {
			c := load(t, cp)
			files := generate(t, cp, "example.com/svc/bus")
			// Each subtopic's bare Go name, by its domain package.
			type bare struct{ pkg, name string }
			var bares []bare
			for _, d := range c.Domains {
				for _, s := range d.Subtopics {
					if s.Name != "" {
						bares = append(bares, bare{contract.GoPackage(d.Name), naming.Exported(s.Name)})
					}
				}
			}
			suffixes := []string{"", "Spec", "Subtopic", "Pattern", "Publisher", "Message", "Handler", "SchemaFQDN", "SchemaVersion", "SchemaHash"}
			n := 0
			for name, src := range files {
				pkg := path.Base(path.Dir(name))
				f, err := parser.ParseFile(token.NewFileSet(), name, src, 0)
				require.NoError(t, err)
				for _, id := range topLevel(f) {
					n++
					for _, b := range bares {
						for _, suf := range suffixes {
							if b.pkg == pkg && suf != "" {
								continue // its own subtopic's types are meant to read so
							}
							assert.NotEqual(t, b.name+suf, id, "%s.%s reads as %s.%s", pkg, id, b.pkg, b.name+suf)
						}
					}
				}
			}
			assert.Greater(t, n, 20, "identifiers checked")
		})
	}
}

func topLevel(f *ast.File) []string {
	var out []string
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			if d.Recv == nil && d.Name.IsExported() {
				out = append(out, d.Name.Name)
			}
		case *ast.GenDecl:
			for _, s := range d.Specs {
				switch s := s.(type) {
				case *ast.TypeSpec:
					out = append(out, s.Name.Name)
				case *ast.ValueSpec:
					for _, n := range s.Names {
						out = append(out, n.Name)
					}
				}
			}
		}
	}
	return out
}
