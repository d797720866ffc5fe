package main

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/internal/scratchmod"
)

// A service repository uses the generator as its README says: its own
// module, protos (package cx.market.v1 and v2), namespace, envs and
// contract, the generator added with go get -tool and run by go generate.
// The module then tidies, vets, builds, and round-trips typed messages on
// both embedded brokers, all offline (internal/scratchmod).
func TestServiceRepositoryFlow(t *testing.T) {
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	m := scratchmod.New(ctx, t, root, "example.com/cx")
	m.CopyDir("testdata/service", "")
	m.ProtoGo("proto") // the protos' own Go code, as protoc-gen-go writes it for the team

	m.Go("get", "-tool", "github.com/ampyfin/ampy-bus/cmd/ampybus-gen")
	out := m.Go("generate", "./...")
	assert.Contains(t, out, "wrote   tradesv1/tradesv1.ampybus.go")
	assert.Contains(t, out, "wrote   tradesv2/tradesv2.ampybus.go")
	m.Go("mod", "tidy")
	mod, err := os.ReadFile(filepath.Join(m.Dir, "go.mod"))
	require.NoError(t, err)
	assert.Contains(t, string(mod), "tool github.com/ampyfin/ampy-bus/cmd/ampybus-gen", "the tool survives tidy")
	m.Go("vet", "./...")
	m.Go("build", "./...")
	assert.Contains(t, m.Go("generate", "./..."), "0 written, 0 removed, 3 unchanged", "after tidy, generating again changes nothing")
	var generated []string
	require.NoError(t, filepath.WalkDir(filepath.Join(m.Dir, "internal", "bus"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(m.Dir, p)
			generated = append(generated, filepath.ToSlash(rel))
		}
		return err
	}))
	assert.Equal(t, []string{"internal/bus/bus.ampybus.go", "internal/bus/bus.go", "internal/bus/tradesv1/tradesv1.ampybus.go", "internal/bus/tradesv2/tradesv2.ampybus.go"}, generated)
	for _, url := range []string{"embedded://nats", "embedded://kafka"} {
		out := m.Go("run", ".", url)
		assert.Contains(t, out, "received cx.staging.trades.v1.XCX.ABC t-2 1234500 seq=2 out_of_order=false dedupe_key=t-2 schema_version=1.2.0", url)
		assert.Contains(t, out, "received cx.staging.trades.v1.XCX.ABC t-1 1234500 seq=1 out_of_order=true dedupe_key=t-1 schema_version=1.2.0", url)
		assert.Contains(t, out, "received cx.staging.trades.v2.XCX.ABC t-9 price=123.45 schema_version=2.0.0", url)
	}
}
