package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func gen(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestGenerateThenCheck(t *testing.T) {
	out := t.TempDir()
	code, _, stderr := gen(t, "generate", "-contract", "../../contract.yaml", "-out", out, "-import-path", "example.com/svc/bus")
	require.Equal(t, 0, code, stderr)
	code, stdout, _ := gen(t, "check", "-contract", "../../contract.yaml", "-out", out, "-import-path", "example.com/svc/bus")
	require.Equal(t, 0, code)
	assert.Contains(t, stdout, "is up to date")

	// Hand-edit a generated file: check fails and shows the diff.
	p := filepath.Join(out, "orders", "orders.ampybus.go")
	src, err := os.ReadFile(p)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(p, bytes.Replace(src, []byte(`DomainName = "orders"`), []byte(`DomainName = "ordres"`), 1), 0o644))
	code, stdout, stderr = gen(t, "check", "-contract", "../../contract.yaml", "-out", out, "-import-path", "example.com/svc/bus")
	assert.Equal(t, 1, code)
	assert.Contains(t, stdout, "--- a/orders/orders.ampybus.go")
	assert.Contains(t, stdout, `-	DomainName = "ordres"`)
	assert.Contains(t, stdout, `+	DomainName = "orders"`)
	assert.Contains(t, stderr, "is stale for ../../contract.yaml; run: ampybus-gen generate")
}

func TestInvalidContractWritesNothing(t *testing.T) {
	dir := t.TempDir()
	c := filepath.Join(dir, "contract.yaml")
	src, err := os.ReadFile("../../contract.yaml")
	require.NoError(t, err)
	bad := strings.Replace(string(src), "payload: ampy.orders.v1.OrderRequest", "payload: ampy.orders.v1.Order", 1)
	require.NoError(t, os.WriteFile(c, []byte(bad), 0o644))
	out := filepath.Join(dir, "gen")
	code, _, stderr := gen(t, "generate", "-contract", c, "-out", out, "-import-path", "example.com/x")
	assert.Equal(t, 1, code)
	assert.Regexp(t, `contract.yaml:\d+:\d+: payload type "ampy.orders.v1.Order" does not exist`, stderr)
	assert.Contains(t, stderr, "nothing was written")
	_, err = os.Stat(out)
	assert.True(t, os.IsNotExist(err))
}

func TestUsage(t *testing.T) {
	code, _, stderr := gen(t, "bogus")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, `unknown command "bogus"`)
	code, stdout, _ := gen(t, "schema")
	assert.Equal(t, 0, code)
	assert.Contains(t, stdout, `"$schema"`)
}
