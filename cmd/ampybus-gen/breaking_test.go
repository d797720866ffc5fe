package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/ampyfin/ampy-bus/gen/breaking"
)

// breaking compares with a git ref of this repository (unchanged: exit 0)
// and with a contract file that the current one breaks (exit 1, the rule
// at the current contract's line, in each format).
func TestBreakingAgainstARefAndAFile(t *testing.T) {
	code, stdout, stderr := gen(t, "breaking", "-contract", "../../contract.yaml", "-proto_path", "../../proto", "-against", "HEAD")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "0 breaking change(s) against HEAD")

	// The previous contract kept orders longer than the current one does.
	cur, err := os.ReadFile("../../contract.yaml")
	require.NoError(t, err)
	prev := filepath.Join(t.TempDir(), "contract.yaml")
	longer := strings.Replace(string(cur), "    retention: 400d\n", "    retention: 800d\n", 1)
	require.NotEqual(t, string(cur), longer)
	require.NoError(t, os.WriteFile(prev, []byte(longer), 0o644))
	code, stdout, _ = gen(t, "breaking", "-contract", "../../contract.yaml", "-proto_path", "../../proto", "-against", prev)
	assert.Equal(t, 1, code)
	assert.Regexp(t, `(?m)^\.\./\.\./contract\.yaml:\d+:\d+: SEM_RETENTION_SHORTENED: orders v1 retention shortened from 19200h0m0s to 9600h0m0s`, stdout)
	code, stdout, _ = gen(t, "breaking", "-contract", "../../contract.yaml", "-proto_path", "../../proto", "-against", prev, "-format", "github-actions")
	assert.Equal(t, 1, code)
	assert.Regexp(t, `^::error file=\.\./\.\./contract\.yaml,line=\d+,col=\d+,title=SEM_RETENTION_SHORTENED::orders v1`, stdout)
	code, stdout, _ = gen(t, "breaking", "-contract", "../../contract.yaml", "-proto_path", "../../proto", "-against", prev, "-format", "json")
	assert.Equal(t, 1, code)
	var findings []breaking.Finding
	require.NoError(t, json.Unmarshal([]byte(stdout), &findings))
	require.Len(t, findings, 1)
	assert.Equal(t, breaking.RetentionShortened, findings[0].Rule)

	code, stdout, _ = gen(t, "breaking", "-contract", "../../contract.yaml", "-proto_path", "../../proto", "-against", prev,
		"-except", "SEM_RETENTION_SHORTENED=orders are archived elsewhere after 400 days")
	assert.Equal(t, 0, code, stdout)
	assert.Contains(t, stdout, "(excepted: orders are archived elsewhere after 400 days)")

	code, _, stderr = gen(t, "breaking", "-contract", "../../contract.yaml", "-against", "no-such-ref")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "no such file, directory or git ref")
}

// The CI recipe under templates/ci runs the three checks a contract pull
// request needs, with the flags these commands take.
func TestCIRecipe(t *testing.T) {
	data, err := os.ReadFile("../../templates/ci/contract-review.yml")
	require.NoError(t, err)
	var wf struct {
		Jobs map[string]struct {
			Steps []struct {
				Run  string            `yaml:"run"`
				With map[string]string `yaml:"with"`
			} `yaml:"steps"`
		} `yaml:"jobs"`
	}
	require.NoError(t, yaml.Unmarshal(data, &wf))
	var runs []string
	for _, s := range wf.Jobs["contract"].Steps {
		if s.Run != "" {
			runs = append(runs, s.Run)
		}
	}
	require.Len(t, runs, 3)
	assert.Contains(t, runs[0], "ampybus-gen check")
	assert.Contains(t, runs[1], "ampybus-gen docs -check")
	assert.Contains(t, runs[2], "ampybus-gen breaking")
	assert.Contains(t, runs[2], "-format github-actions")
	for _, r := range runs {
		// Each step's flags are ones the command accepts.
		line := strings.ReplaceAll(r, `"origin/${{ github.base_ref }}"`, "HEAD")
		args := strings.Fields(strings.TrimPrefix(line, "go tool ampybus-gen "))
		var out, errOut bytes.Buffer
		code := run(append(args, "-h"), &out, &errOut)
		assert.Equal(t, 0, code, "%s: %s", r, errOut.String())
	}
}
