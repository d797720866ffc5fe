package main

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/modfile"

	"github.com/ampyfin/ampy-bus/internal/protogo"
)

// A service repository uses the generator as its README says: its own
// module, protos (package cx.market.v1), namespace, envs and contract, the
// generator added with go get -tool and run by go generate. The module then
// tidies, vets, builds, and round-trips a typed message on both embedded
// brokers, all offline (GOPROXY=off; everything comes from the module cache
// this checkout already uses).
func TestServiceRepositoryFlow(t *testing.T) {
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	dir := t.TempDir()
	require.NoError(t, os.CopyFS(dir, os.DirFS("testdata/service")))

	// The protos' own Go code, as protoc-gen-go writes it for the team.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	pbs, err := protogo.Generate(ctx, []string{filepath.Join(dir, "proto")}, "module=example.com/cx")
	require.NoError(t, err)
	for name, src := range pbs {
		p := filepath.Join(dir, filepath.FromSlash(name))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, src, 0o644))
	}
	// The module starts from this checkout's requirements, as a module that
	// already uses ampy-bus would, so its module graph is the checkout's.
	// go mod tidy -diff in the checkout fetches what tidying that graph
	// reads (files other platforms build, tests of dependencies) from the
	// module cache, or from the proxy on a fresh machine, as the checkout's
	// own tidy would; after it nothing needs the network.
	prime := exec.CommandContext(ctx, "go", "mod", "tidy", "-diff")
	prime.Dir = root
	if out, err := prime.CombinedOutput(); err != nil {
		t.Fatalf("go mod tidy -diff in the checkout (is go.mod tidy?): %v\n%s", err, out)
	}
	own, err := os.ReadFile(filepath.Join(root, "go.mod"))
	require.NoError(t, err)
	mf, err := modfile.Parse("go.mod", own, nil)
	require.NoError(t, err)
	require.NoError(t, mf.AddModuleStmt("example.com/cx"))
	require.NoError(t, mf.AddRequire("github.com/ampyfin/ampy-bus", "v0.0.0"))
	require.NoError(t, mf.AddReplace("github.com/ampyfin/ampy-bus", "", root, ""))
	for _, tool := range mf.Tool {
		require.NoError(t, mf.DropTool(tool.Path))
	}
	gomod, err := mf.Format()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "go.mod"), gomod, 0o644))
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644))

	goCmd := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOSUMDB=off", "GOWORK=off", "GOTOOLCHAIN=local")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "go %s:\n%s", strings.Join(args, " "), out)
		return string(out)
	}
	goCmd("get", "-tool", "github.com/ampyfin/ampy-bus/cmd/ampybus-gen")
	out := goCmd("generate", "./...")
	assert.Contains(t, out, "wrote   tradesv1/tradesv1.ampybus.go")
	assert.Contains(t, out, "wrote   tradesv2/tradesv2.ampybus.go")
	goCmd("mod", "tidy")
	mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	require.NoError(t, err)
	assert.Contains(t, string(mod), "tool github.com/ampyfin/ampy-bus/cmd/ampybus-gen", "the tool survives tidy")
	goCmd("vet", "./...")
	goCmd("build", "./...")
	goCmd("generate", "./...") // again, after tidy: nothing changes
	var generated []string
	require.NoError(t, filepath.WalkDir(filepath.Join(dir, "internal", "bus"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			generated = append(generated, filepath.ToSlash(rel))
		}
		return err
	}))
	assert.Equal(t, []string{"internal/bus/bus.ampybus.go", "internal/bus/bus.go", "internal/bus/tradesv1/tradesv1.ampybus.go", "internal/bus/tradesv2/tradesv2.ampybus.go"}, generated)
	for _, url := range []string{"embedded://nats", "embedded://kafka"} {
		out := goCmd("run", ".", url)
		assert.Contains(t, out, "received cx.staging.trades.v1.XCX.ABC t-2 1234500 seq=2 out_of_order=false dedupe_key=t-2 schema_version=1.2.0", url)
		assert.Contains(t, out, "received cx.staging.trades.v1.XCX.ABC t-1 1234500 seq=1 out_of_order=true dedupe_key=t-1 schema_version=1.2.0", url)
		assert.Contains(t, out, "received cx.staging.trades.v2.XCX.ABC t-9 price=123.45 schema_version=2.0.0", url)
	}
}
