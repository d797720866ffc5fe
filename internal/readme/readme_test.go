// Package readme keeps the README honest: its Go example must build.
package readme

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

var goBlock = regexp.MustCompile("(?s)```go\n(package main\n.*?)```")

func TestReadmeExampleBuilds(t *testing.T) {
	if testing.Short() {
		t.Skip("builds with the go tool; skipped in -short")
	}
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	m := goBlock.FindSubmatch(readme)
	require.NotNil(t, m, "README.md has no ```go block with a main package")
	dir, err := os.MkdirTemp(".", "example")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.go"), m[1], 0o644))
	out, err := exec.Command("go", "vet", "./"+filepath.Base(dir)).CombinedOutput()
	require.NoError(t, err, "the README example does not build:\n%s", out)
}
