// Package scratchmod builds throwaway Go modules that depend on this
// checkout, for tests that use ampy-bus as another team's repository does:
// generate, tidy, vet, build and run, offline.
package scratchmod

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/mod/modfile"

	"github.com/ampyfin/ampy-bus/internal/protogo"
)

// Module is a scratch module in a temporary directory.
type Module struct {
	t    *testing.T
	ctx  context.Context
	Dir  string
	Path string
}

// New makes an empty module path in a temporary directory that requires
// this checkout (root) through a replace. It starts from the checkout's
// requirements, as a module already using ampy-bus would, so its module
// graph is the checkout's: go mod tidy -diff in the checkout first fetches
// what tidying that graph reads (from the module cache, or the proxy on a
// fresh machine, as the checkout's own build does), and after it the
// module's go commands run with GOPROXY=off, but for go mod tidy: pruning
// the graph to what the module imports can read the go.mod of an older
// version the checkout never needed, which tidy may fetch.
func New(ctx context.Context, t *testing.T, root, path string) *Module {
	t.Helper()
	prime := exec.CommandContext(ctx, "go", "mod", "tidy", "-diff")
	prime.Dir = root
	if out, err := prime.CombinedOutput(); err != nil {
		t.Fatalf("go mod tidy -diff in the checkout (is go.mod tidy?): %v\n%s", err, out)
	}
	own, err := os.ReadFile(filepath.Join(root, "go.mod"))
	require.NoError(t, err)
	mf, err := modfile.Parse("go.mod", own, nil)
	require.NoError(t, err)
	require.NoError(t, mf.AddModuleStmt(path))
	require.NoError(t, mf.AddRequire("github.com/ampyfin/ampy-bus", "v0.0.0"))
	require.NoError(t, mf.AddReplace("github.com/ampyfin/ampy-bus", "", root, ""))
	for _, tool := range mf.Tool {
		require.NoError(t, mf.DropTool(tool.Path))
	}
	gomod, err := mf.Format()
	require.NoError(t, err)
	m := &Module{t: t, ctx: ctx, Dir: t.TempDir(), Path: path}
	m.Write("go.mod", gomod)
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	require.NoError(t, err)
	m.Write("go.sum", sum)
	return m
}

// Write puts a file in the module, creating its directory.
func (m *Module) Write(name string, data []byte) {
	m.t.Helper()
	p := filepath.Join(m.Dir, filepath.FromSlash(name))
	require.NoError(m.t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(m.t, os.WriteFile(p, data, 0o644))
}

// CopyDir copies a directory tree into the module under to ("" for its root).
func (m *Module) CopyDir(from, to string) {
	m.t.Helper()
	require.NoError(m.t, os.MkdirAll(filepath.Join(m.Dir, to), 0o755))
	require.NoError(m.t, os.CopyFS(filepath.Join(m.Dir, to), os.DirFS(from)))
}

// ProtoGo writes the protoc-gen-go code of the .proto files under the
// module's import root protoDir, at their go_package paths inside the module.
func (m *Module) ProtoGo(protoDir string) {
	m.t.Helper()
	files, err := protogo.Generate(m.ctx, []string{filepath.Join(m.Dir, protoDir)}, "module="+m.Path, false)
	require.NoError(m.t, err)
	for name, src := range files {
		m.Write(name, src)
	}
}

// Go runs the go command in the module and returns its output, offline but
// for go mod tidy (see New).
func (m *Module) Go(args ...string) string {
	m.t.Helper()
	cmd := exec.CommandContext(m.ctx, "go", args...)
	cmd.Dir = m.Dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOSUMDB=off", "GOWORK=off", "GOTOOLCHAIN=local")
	if len(args) < 2 || args[0] != "mod" || args[1] != "tidy" {
		cmd.Env = append(cmd.Env, "GOPROXY=off")
	}
	out, err := cmd.CombinedOutput()
	require.NoError(m.t, err, "go %s:\n%s", strings.Join(args, " "), out)
	return string(out)
}
