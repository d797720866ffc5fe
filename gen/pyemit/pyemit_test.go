package pyemit_test

import (
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/gen/contract"
	"github.com/ampyfin/ampy-bus/gen/output"
	"github.com/ampyfin/ampy-bus/gen/protoset"
	"github.com/ampyfin/ampy-bus/gen/pyemit"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/*/golden")

// cases are the Go emitter's contracts, so both outputs are held to the
// same set: minimal, multiversion, foreign (its own protos) and features.
func cases(t *testing.T) []string {
	t.Helper()
	cs, err := filepath.Glob("../goemit/testdata/*/contract.yaml")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(cs), 4)
	return cs
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

// contractFiles drops the runtime copies: the goldens hold what the
// contract decides, and the runtime is tested on its own.
func contractFiles(files map[string][]byte) map[string][]byte {
	out := map[string][]byte{}
	for name, data := range files {
		if strings.HasPrefix(name, pyemit.Package+"/") {
			out[name] = data
		}
	}
	return out
}

// TestGolden compares the generated package with testdata/<case>/golden;
// run with -update to accept a change after reviewing its diff.
func TestGolden(t *testing.T) {
	for _, c := range cases(t) {
		name := filepath.Base(filepath.Dir(c))
		t.Run(name, func(t *testing.T) {
			files, err := pyemit.Emitter{Source: "contract.yaml"}.Emit(load(t, c))
			require.NoError(t, err)
			golden := filepath.Join("testdata", name, "golden")
			want := contractFiles(files)
			if *update {
				require.NoError(t, os.RemoveAll(golden))
				_, err := output.Write(golden, want)
				require.NoError(t, err)
			}
			diff, err := output.Check(golden, want)
			require.NoError(t, err)
			assert.Empty(t, diff, "generated Python differs from %s; review and run go test ./gen/pyemit -update", golden)
		})
	}
}

// Emit is deterministic: two runs give the same bytes.
func TestDeterministic(t *testing.T) {
	c := load(t, "../../contract.yaml")
	a, err := pyemit.Emitter{Source: "contract.yaml"}.Emit(c)
	require.NoError(t, err)
	b, err := pyemit.Emitter{Source: "contract.yaml"}.Emit(c)
	require.NoError(t, err)
	assert.Equal(t, a, b)
	for name, data := range a {
		assert.True(t, strings.HasPrefix(string(data), "# "+output.Marker+"\n"), "%s starts with the generated marker", name)
	}
}

// python3 finds Debian's python3 with protobuf, which make test installs.
func python3(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("/usr/bin/python3")
	require.NoError(t, err, "python3 is missing: run make tools, or apt-get install python3 python3-protobuf python3-confluent-kafka")
	out, err := exec.Command(p, "-c", "import google.protobuf").CombinedOutput()
	require.NoError(t, err, "python3's protobuf is missing: run make tools, or apt-get install python3-protobuf\n%s", out)
	return p
}

// runPython runs a script with the generated package of dir and the
// runtime on its path.
func runPython(t *testing.T, dir string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python3(t), args...)
	runtime, err := filepath.Abs("../../python")
	require.NoError(t, err)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+dir+string(os.PathListSeparator)+runtime, "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	return string(out)
}

// Every golden package imports under Python: its payload types load from
// the embedded descriptors, every module's routes and subtopics build.
func TestGoldenImports(t *testing.T) {
	for _, c := range cases(t) {
		name := filepath.Base(filepath.Dir(c))
		t.Run(name, func(t *testing.T) {
			dir, err := filepath.Abs(filepath.Join("testdata", name, "golden"))
			require.NoError(t, err)
			out := runPython(t, dir, "-c", `
import importlib, ampybus_contract as c
from ampybus import route
for d in c.DOMAINS:
    m = importlib.import_module("ampybus_contract." + d)
    routes = [v for v in vars(m).values() if isinstance(v, route.Route)]
    for r in routes:
        r.payload()  # the class builds
        assert r.schema_hash.startswith("sha256:"), r
    print(d, len(routes))
`)
			assert.NotEmpty(t, out)
		})
	}
}

// What the cross-language cases cannot carry in JSON: a Kafka header value
// that is not UTF-8 is read (Go reads it, and it is quoted as Go quotes
// it), and a record of another subtopic on a shared topic is passed over
// (None), not dead-lettered.
func TestRuntimeEdgeCases(t *testing.T) {
	gen, err := filepath.Abs("../../python/generated")
	require.NoError(t, err)
	out := runPython(t, gen, "-c", `
from ampybus import envelope, kafka
from ampybus_contract import bars, ticks
h, sub, errs = kafka.parse_headers(b"XNAS.AAPL", [("subtopic", b"XNAS.AAPL"), ("partition_key", b"XNAS.AAPL"), ("producer", b"caf\xe9")])
assert sub == "XNAS.AAPL" and not errs, errs
assert envelope.go_quote(h.producer) == '"caf\\xe9"', envelope.go_quote(h.producer)
assert h.check_size() is None
rec = ticks.TRADE_ROUTE
assert kafka.read(ticks.TRADE_ROUTE, "ampy.dev.ticks.v1", b"AAPL", b"", [("subtopic", b"quote.AAPL")]) is None
try:
    kafka.read(bars.ROUTE, "ampy.dev.bars.v1", b"XNAS.AAPL", b"", [("subtopic", b"XNAS.AAPL")])
except Exception as e:
    assert type(e).__name__ == "PoisonError" and str(e).startswith("contract_violation: "), e
else:
    raise AssertionError("a record without an envelope is poison")
print("ok")
`)
	assert.Contains(t, out, "ok")
}

// Contract text and names that Go accepts become valid Python: quotes and
// backslashes in descriptions, multi-line descriptions, parameters named
// like a subtopic class's own names.
func TestAwkwardNamesAndText(t *testing.T) {
	dir := t.TempDir()
	c := filepath.Join(dir, "contract.yaml")
	require.NoError(t, os.WriteFile(c, []byte(`namespace: ampy
envs: [dev]
qos:
  standard: {latency_p99: 1s}
domains:
  bars:
    version: v1
    description: 'Bars """quoted""" from C:\Users\x and \N{x}'
    qos: standard
    ordering: {rule: accumulate}
    subtopics:
      - pattern: "{self}.{cls}.{parse}"
        description: |
          first line
          second line
        payload: ampy.bars.v1.BarBatch
        partition_key: "{self}.{cls}"
`), 0o644))
	files, err := pyemit.Emitter{Source: "contract.yaml"}.Emit(load(t, c))
	require.NoError(t, err)
	_, err = output.Write(dir, contractFiles(files))
	require.NoError(t, err)
	out := runPython(t, dir, "-c", `
from ampybus_contract import bars
s = bars.Subtopic("a", "b", "c")
assert str(s) == "a.b.c" and bars.Subtopic.parse("a.b.c") == s
assert s.topic("dev") == "ampy.dev.bars.v1.a.b.c"
assert bars.keys(s, bars.BarBatch()).partition == "a.b"
assert '"""quoted"""' in bars.__doc__ and "C:\\Users" in bars.__doc__, bars.__doc__
print("ok")
`)
	assert.Contains(t, out, "ok")
}
