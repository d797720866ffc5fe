package obsemit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/gen/contract"
	"github.com/ampyfin/ampy-bus/gen/obsemit"
	"github.com/ampyfin/ampy-bus/gen/output"
	"github.com/ampyfin/ampy-bus/gen/protoset"
)

// promtool finds promtool, which make test installs (Debian's prometheus).
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	require.NoError(t, err, "promtool is missing: run make tools (it installs Debian's prometheus package), or apt-get install prometheus")
	return p
}

func run(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(context.Background(), promtool(t), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// load reads a contract against this repository's protos and its own.
func load(t *testing.T, path string) *contract.Contract {
	t.Helper()
	paths := []string{"../../proto"}
	if own := filepath.Join(filepath.Dir(path), "proto"); isDir(own) {
		paths = append(paths, own)
	}
	schemas, err := protoset.Load(context.Background(), protoset.Options{ProtoPaths: paths})
	require.NoError(t, err)
	c, err := contract.Load(path, schemas)
	require.NoError(t, err)
	return c
}

func isDir(p string) bool {
	info, err := os.Stat(p)
	return err == nil && info.IsDir()
}

// For the shipped contract and every golden contract, the rules pass
// promtool check rules, the rule test fires every alert of every domain
// (promtool test rules), and the dashboard's queries are valid PromQL.
func TestRulesAndDashboardPassPromtool(t *testing.T) {
	contracts := []string{"../../contract.yaml"}
	goldens, err := filepath.Glob("../goemit/testdata/*/contract.yaml")
	require.NoError(t, err)
	contracts = append(contracts, goldens...)
	for _, path := range contracts {
		t.Run(filepath.Base(filepath.Dir(path)), func(t *testing.T) {
			c := load(t, path)
			files, err := obsemit.Emitter{Source: "contract.yaml"}.Emit(c)
			require.NoError(t, err)
			dir := t.TempDir()
			_, err = output.Write(dir, files)
			require.NoError(t, err)
			prom := filepath.Join(dir, "prometheus")
			out, err := run(t, prom, "check", "rules", "alerts.yml")
			require.NoError(t, err, out)
			out, err = run(t, prom, "test", "rules", "alerts_test.yml")
			require.NoError(t, err, out)

			// Every domain with typed payloads has each alert in the test.
			tests := string(files[obsemit.AlertTestsFile])
			for _, d := range c.Domains {
				if d.Name == "dlq" {
					continue
				}
				for _, alert := range []string{obsemit.AlertLag, obsemit.AlertDLQ, obsemit.AlertRetries, obsemit.AlertDecodeFail} {
					assert.Contains(t, string(files[obsemit.AlertsFile]), "alert: "+alert)
				}
				assert.Contains(t, tests, "domain: "+d.Name, "the rule test fires %s's alerts", d.Name)
			}

			// The queries of every dashboard panel, as recording rules, are
			// valid PromQL (with the env variable filled in).
			var dash struct {
				Panels []struct {
					Type    string `json:"type"`
					Targets []struct {
						Expr string `json:"expr"`
					} `json:"targets"`
				} `json:"panels"`
			}
			require.NoError(t, json.Unmarshal(files[obsemit.DashboardFile], &dash))
			var rules bytes.Buffer
			rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
			n := 0
			for _, p := range dash.Panels {
				for _, tg := range p.Targets {
					n++
					expr := strings.ReplaceAll(tg.Expr, "$env", "prod")
					fmt.Fprintf(&rules, "      - record: dashboard:q%d\n        expr: %q\n", n, expr)
				}
			}
			require.Greater(t, n, 5*len(c.Domains)-1)
			require.NoError(t, os.WriteFile(filepath.Join(dir, "dashboard_rules.yml"), rules.Bytes(), 0o644))
			out, err = run(t, dir, "check", "rules", "dashboard_rules.yml")
			require.NoError(t, err, out)
		})
	}
}

// The rule test can fail: with an alert's expectation dropped, promtool
// reports the alert it did not expect.
func TestRuleTestFailsWhenAnAlertIsNotExpected(t *testing.T) {
	files, err := obsemit.Emitter{Source: "contract.yaml"}.Emit(load(t, "../../contract.yaml"))
	require.NoError(t, err)
	dir := t.TempDir()
	tests := string(files[obsemit.AlertTestsFile])
	i := strings.LastIndex(tests, "eval_time: 25m")
	require.Positive(t, i)
	j := strings.Index(tests[i:], "exp_alerts:")
	broken := tests[:i+j] + "exp_alerts: []\n" + "# dropped\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "alerts.yml"), files[obsemit.AlertsFile], 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "alerts_test.yml"), []byte(broken), 0o644))
	out, err := run(t, dir, "test", "rules", "alerts_test.yml")
	require.Error(t, err)
	assert.Contains(t, out, "FAILED")
}

// The committed templates are what the generator writes for contract.yaml
// (make check also diffs them) and pass promtool as they are.
func TestCommittedTemplatesPassPromtool(t *testing.T) {
	prom := "../../templates/observability/prometheus"
	out, err := run(t, prom, "check", "rules", "alerts.yml")
	require.NoError(t, err, out)
	out, err = run(t, prom, "test", "rules", "alerts_test.yml")
	require.NoError(t, err, out)
	files, err := obsemit.Emitter{Source: "contract.yaml"}.Emit(load(t, "../../contract.yaml"))
	require.NoError(t, err)
	diff, err := output.Check("../../templates/observability", files)
	require.NoError(t, err)
	assert.Empty(t, diff, "templates/observability is stale: make generate")
}
