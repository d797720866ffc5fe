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
	code, _, stderr := gen(t, "generate", "-contract", "../../contract.yaml", "-proto_path", "../../proto", "-out", out, "-import-path", "example.com/svc/bus")
	require.Equal(t, 0, code, stderr)
	code, stdout, _ := gen(t, "check", "-contract", "../../contract.yaml", "-proto_path", "../../proto", "-out", out, "-import-path", "example.com/svc/bus")
	require.Equal(t, 0, code)
	assert.Contains(t, stdout, "is up to date")

	// Hand-edit a generated file: check fails and shows the diff.
	p := filepath.Join(out, "orders", "orders.ampybus.go")
	src, err := os.ReadFile(p)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(p, bytes.Replace(src, []byte(`DomainName = "orders"`), []byte(`DomainName = "ordres"`), 1), 0o644))
	code, stdout, stderr = gen(t, "check", "-contract", "../../contract.yaml", "-proto_path", "../../proto", "-out", out, "-import-path", "example.com/svc/bus")
	assert.Equal(t, 1, code)
	assert.Contains(t, stdout, "--- a/orders/orders.ampybus.go")
	assert.Contains(t, stdout, `-	DomainName = "ordres"`)
	assert.Contains(t, stdout, `+	DomainName = "orders"`)
	assert.Contains(t, stderr, "is stale for ../../contract.yaml; run: ampybus-gen generate")

	// Without schema flags, proto/ beside the contract is the default.
	code, stdout, stderr = gen(t, "check", "-contract", "../../contract.yaml", "-out", "../../generated")
	assert.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "is up to date")
	c := filepath.Join(t.TempDir(), "contract.yaml")
	src, err = os.ReadFile("../../contract.yaml")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(c, src, 0o644))
	code, _, stderr = gen(t, "check", "-contract", c, "-out", out)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "no payload schemas: give --proto_path DIR or --descriptor_set_in FILE")
}

func TestInvalidContractWritesNothing(t *testing.T) {
	dir := t.TempDir()
	c := filepath.Join(dir, "contract.yaml")
	src, err := os.ReadFile("../../contract.yaml")
	require.NoError(t, err)
	bad := strings.Replace(string(src), "payload: ampy.orders.v1.OrderRequest", "payload: ampy.orders.v1.Order", 1)
	require.NoError(t, os.WriteFile(c, []byte(bad), 0o644))
	out := filepath.Join(dir, "gen")
	code, _, stderr := gen(t, "generate", "-contract", c, "-I", "../../proto", "-out", out, "-import-path", "example.com/x")
	assert.Equal(t, 1, code)
	assert.Regexp(t, `contract.yaml:\d+:\d+: payload type "ampy.orders.v1.Order" is not in the payload schemas`, stderr)
	assert.Contains(t, stderr, "nothing was written")
	_, err = os.Stat(out)
	assert.True(t, os.IsNotExist(err))
}

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		name         string
		args         []string
		code         int
		stdout, errs string
	}{
		{"no command", nil, 2, "", "usage: ampybus-gen <command>"},
		{"unknown command", []string{"bogus"}, 2, "", `unknown command "bogus"`},
		{"help", []string{"help"}, 0, "-import-path string", ""},
		{"-h", []string{"-h"}, 0, "-contract string", ""},
		{"generate -h", []string{"generate", "-h"}, 0, "usage: ampybus-gen generate [-contract FILE]", ""},
		{"check --help", []string{"check", "--help"}, 0, "-out string", ""},
		{"unknown flag", []string{"generate", "-bogus"}, 2, "", "flag provided but not defined: -bogus"},
		{"stray argument", []string{"generate", "contract.yaml"}, 2, "", `unexpected argument "contract.yaml": flags take the form -name value (the contract is -contract contract.yaml)`},
		{"stray argument after flags", []string{"check", "-out", "x", "extra"}, 2, "", `unexpected argument "extra"`},
		{"version", []string{"version"}, 0, "ampybus-gen (devel) (runtime 0.1.0)", ""},
		{"schema", []string{"schema"}, 0, `"$schema"`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := gen(t, tc.args...)
			assert.Equal(t, tc.code, code, stderr)
			assert.Contains(t, stdout, tc.stdout)
			assert.Contains(t, stderr, tc.errs)
			if tc.code == 0 {
				assert.Empty(t, stderr)
			}
		})
	}
}

// generate says what it wrote and removed.
func TestGenerateReports(t *testing.T) {
	out := t.TempDir()
	args := []string{"generate", "-contract", "../../contract.yaml", "-proto_path", "../../proto", "-out", out, "-import-path", "example.com/svc/bus"}
	code, stdout, stderr := gen(t, args...)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "wrote   "+filepath.Join(out, "orders", "orders.ampybus.go"))
	assert.Contains(t, stdout, "15 written, 0 removed, 0 unchanged")

	stale := filepath.Join(out, "gone", "gone.ampybus.go")
	require.NoError(t, os.MkdirAll(filepath.Dir(stale), 0o755))
	src, err := os.ReadFile(filepath.Join(out, "orders", "orders.ampybus.go"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(stale, src, 0o644))
	code, stdout, stderr = gen(t, args...)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "removed "+stale)
	assert.Contains(t, stdout, "0 written, 1 removed, 15 unchanged")
}

// ampybus-gen python writes the Python package alone; -check diffs it; the
// Python output may not overlap the Go one.
func TestPythonOutput(t *testing.T) {
	out := t.TempDir()
	flags := []string{"-contract", "../../contract.yaml", "-proto_path", "../../proto", "-out", out}
	code, stdout, stderr := gen(t, append([]string{"python"}, flags...)...)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "ampybus_contract/bars.py")
	assert.FileExists(t, filepath.Join(out, "ampybus", "envelope.py"))
	code, stdout, _ = gen(t, append([]string{"python", "-check"}, flags...)...)
	require.Equal(t, 0, code)
	assert.Contains(t, stdout, "is up to date")

	p := filepath.Join(out, "ampybus_contract", "orders.py")
	src, err := os.ReadFile(p)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(p, bytes.Replace(src, []byte(`DOMAIN = "orders"`), []byte(`DOMAIN = "ordres"`), 1), 0o644))
	code, stdout, stderr = gen(t, append([]string{"python", "-check"}, flags...)...)
	assert.Equal(t, 1, code)
	assert.Contains(t, stdout, `+DOMAIN = "orders"`)
	assert.Contains(t, stderr, "run: ampybus-gen python with the same flags")

	code, _, stderr = gen(t, "generate", "-contract", "../../contract.yaml", "-proto_path", "../../proto", "-out", out, "-import-path", "example.com/svc/bus", "-python", filepath.Join(out, "py"))
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "overlap")
}
