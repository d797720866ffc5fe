package goemit_test

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/gen/contract"
	"github.com/ampyfin/ampy-bus/gen/goemit"
	"github.com/ampyfin/ampy-bus/gen/output"
	"github.com/ampyfin/ampy-bus/gen/protoset"
	"github.com/ampyfin/ampy-bus/internal/scratchmod"
	_ "github.com/ampyfin/ampy-bus/proto/ampy"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/*/golden")

const module = "github.com/ampyfin/ampy-bus"

// generate loads a contract with this repository's protos and, for a
// golden case, its own (testdata/<case>/proto), and generates its code.
func generate(t *testing.T, contractPath, importPath string) map[string][]byte {
	t.Helper()
	files, err := goemit.Generate(load(t, contractPath), goemit.Options{ImportPath: importPath, Source: "contract.yaml"})
	require.NoError(t, err)
	return files
}

// load reads a contract against this repository's protos and its own.
func load(t *testing.T, contractPath string) *contract.Contract {
	t.Helper()
	paths := []string{"../../proto"}
	if own := filepath.Join(filepath.Dir(contractPath), "proto"); isDir(own) {
		paths = append(paths, own)
	}
	schemas, err := protoset.Load(context.Background(), protoset.Options{ProtoPaths: paths})
	require.NoError(t, err)
	c, err := contract.Load(contractPath, schemas)
	require.NoError(t, err)
	return c
}

func isDir(p string) bool {
	info, err := os.Stat(p)
	return err == nil && info.IsDir()
}

// goldenModule is the module path the golden cases are generated into; the
// compile test builds them there.
const goldenModule = "example.com/goldens"

// TestGolden compares generated code with testdata/<case>/golden; run with
// -update to accept a change after reviewing its diff.
func TestGolden(t *testing.T) {
	cases, err := filepath.Glob("testdata/*/contract.yaml")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(cases), 4, "minimal, multiversion, foreign and features, besides the shipped contract")
	for _, c := range cases {
		dir := filepath.Dir(c)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			files := generate(t, c, goldenModule+"/"+filepath.Base(dir))
			golden := filepath.Join(dir, "golden")
			if *update {
				require.NoError(t, os.RemoveAll(golden))
				_, err := output.Write(golden, files)
				require.NoError(t, err)
			}
			diff, err := output.Check(golden, files)
			require.NoError(t, err)
			assert.Empty(t, diff, "generated code differs from %s; review and run go test ./gen/goemit -update", golden)
		})
	}
}

// TestGoldenCompiles builds every golden case, with the Go code of its own
// protos, in one scratch module that depends on this checkout, and vets it:
// the goldens are code a team compiles, not only text. (The shipped
// contract's output, generated/, is built with the repository.)
func TestGoldenCompiles(t *testing.T) {
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	m := scratchmod.New(ctx, t, root, goldenModule)
	cases, err := filepath.Glob("testdata/*/contract.yaml")
	require.NoError(t, err)
	for _, c := range cases {
		dir := filepath.Dir(c)
		m.CopyDir(filepath.Join(dir, "golden"), filepath.Base(dir))
		if own := filepath.Join(dir, "proto"); isDir(own) {
			m.CopyDir(own, filepath.Join("protos", filepath.Base(dir)))
			m.ProtoGo(filepath.Join("protos", filepath.Base(dir)))
		}
	}
	m.Go("vet", "./...")
	m.Go("build", "./...")
}

// TestShippedOutputCurrent is ampybus-gen check as a test: generated/ must
// match contract.yaml.
func TestShippedOutputCurrent(t *testing.T) {
	files := generate(t, "../../contract.yaml", module+"/generated")
	diff, err := output.Check("../../generated", files)
	require.NoError(t, err)
	assert.Empty(t, diff, "generated/ is stale: run make generate")
	assert.Len(t, files, 15, "14 domain packages and the root package")
}

func TestDeterministic(t *testing.T) {
	a := generate(t, "../../contract.yaml", module+"/generated")
	for range 3 {
		b := generate(t, "../../contract.yaml", module+"/generated")
		require.Equal(t, len(a), len(b))
		for name := range a {
			require.True(t, bytes.Equal(a[name], b[name]), "%s differs between runs", name)
		}
	}
	for name, src := range a {
		require.True(t, strings.HasPrefix(string(src), goemit.Marker+"\n"), "%s lacks the generated-code marker", name)
	}
}

// TestOutputCompiles generates the golden case into a package inside this
// module and runs go vet on it, so the output is known to build.
func TestOutputCompiles(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles with the go tool; skipped in -short")
	}
	dir, err := os.MkdirTemp(".", "compiletest")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	files := generate(t, "testdata/minimal/contract.yaml", module+"/gen/goemit/"+filepath.Base(dir))
	_, err = output.Write(dir, files)
	require.NoError(t, err)
	out, err := exec.Command("go", "vet", "./"+filepath.Base(dir)+"/...").CombinedOutput()
	require.NoError(t, err, "generated code does not build:\n%s", out)
}

func TestWriteRemovesOnlyStaleGeneratedFiles(t *testing.T) {
	dir := t.TempDir()
	files := map[string][]byte{"a/a.ampybus.go": []byte(goemit.Marker + "\npackage a\n")}
	stale := filepath.Join(dir, "old", "old.ampybus.go")
	mine := filepath.Join(dir, "a", "handwritten.go")
	require.NoError(t, os.MkdirAll(filepath.Dir(stale), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Dir(mine), 0o755))
	require.NoError(t, os.WriteFile(stale, []byte(goemit.Marker+"\npackage old\n"), 0o644))
	require.NoError(t, os.WriteFile(mine, []byte("package a\n"), 0o644))

	diff, err := output.Check(dir, files)
	require.NoError(t, err)
	assert.Contains(t, diff, "--- /dev/null\n+++ b/a/a.ampybus.go")
	assert.Contains(t, diff, "--- a/old/old.ampybus.go\n+++ /dev/null")

	_, err = output.Write(dir, files)
	require.NoError(t, err)
	var left []string
	require.NoError(t, filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			left = append(left, filepath.ToSlash(rel))
		}
		return err
	}))
	sort.Strings(left)
	assert.Equal(t, []string{"a/a.ampybus.go", "a/handwritten.go"}, left)
	_, err = os.Stat(filepath.Dir(stale))
	assert.True(t, os.IsNotExist(err), "the emptied directory is removed")

	diff, err = output.Check(dir, files)
	require.NoError(t, err)
	assert.Empty(t, diff)
}

// ImportPathOf reads the module path as the go command does: comments and
// quotes do not leak into it.
func TestImportPathOf(t *testing.T) {
	for _, tc := range []struct{ gomod, want string }{
		{"module example.com/svc\n", "example.com/svc/internal/bus"},
		{"module example.com/svc // the service\n\ngo 1.24\n", "example.com/svc/internal/bus"},
		{"// a comment first\nmodule \"example.com/quoted\"\n", "example.com/quoted/internal/bus"},
	} {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "go.mod"), []byte(tc.gomod), 0o644))
		out := filepath.Join(dir, "internal", "bus")
		require.NoError(t, os.MkdirAll(out, 0o755))
		got, err := goemit.ImportPathOf(out)
		require.NoError(t, err, tc.gomod)
		assert.Equal(t, tc.want, got, tc.gomod)
	}
}
