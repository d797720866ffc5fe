package contract_test

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/reflect/protoregistry"
	"gopkg.in/yaml.v3"

	"github.com/ampyfin/ampy-bus/gen/contract"
	_ "github.com/ampyfin/ampy-bus/proto/ampy"
)

const schemaID = "https://github.com/ampyfin/ampy-bus/gen/contract/contract.schema.json"

// compileSchema compiles the embedded schema; compiling also checks it against
// the draft 2020-12 metaschema.
func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(contract.JSONSchema))
	require.NoError(t, err)
	c := jsonschema.NewCompiler()
	require.NoError(t, c.AddResource(schemaID, doc))
	sch, err := c.Compile(schemaID)
	require.NoError(t, err)
	return sch
}

// validateYAML checks a YAML document against the schema the way an editor
// does: YAML decoded to plain values, then validated as JSON.
func validateYAML(sch *jsonschema.Schema, src string) error {
	var v any
	if err := yaml.Unmarshal([]byte(src), &v); err != nil {
		return err
	}
	js, err := json.Marshal(v)
	if err != nil {
		return err
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
	if err != nil {
		return err
	}
	return sch.Validate(inst)
}

// TestSchemaAgreesWithLoader keeps the JSON schema and the Go loader in step:
// the shipped contract passes both, and each mutation of it fails both.
func TestSchemaAgreesWithLoader(t *testing.T) {
	sch := compileSchema(t)
	data, err := os.ReadFile("../../contract.yaml")
	require.NoError(t, err)
	shipped := string(data)

	t.Run("shipped contract", func(t *testing.T) {
		require.NoError(t, validateYAML(sch, shipped))
		_, err := contract.Parse("contract.yaml", data, protoregistry.GlobalFiles)
		require.NoError(t, err)
	})

	cases := []struct {
		name     string
		from, to string // replace the first occurrence of from with to
	}{
		{"unknown top-level key", "\ndomains:\n", "\nextra: 1\ndomains:\n"},
		{"unknown domain key", "    version: v1\n    description: OHLCV", "    version: v1\n    colour: blue\n    description: OHLCV"},
		{"unknown subtopic key", "        payload: ampy.bars.v1.BarBatch\n", "        payload: ampy.bars.v1.BarBatch\n        colour: blue\n"},
		{"unknown qos class key", "    latency_p99: 50ms\n", "    latency_p99: 50ms\n    latency_p50: 10ms\n"},
		{"unknown defaults key", "  partitions: 3\n", "  partitions: 3\n  replication: 3\n"},
		{"missing namespace", "namespace: ampy\n", ""},
		{"missing version", "    version: v1\n    description: OHLCV", "    description: OHLCV"},
		{"missing ordering", "    ordering: {rule: monotonic, by: bars.event_time}\n", ""},
		{"missing latency_p99", "    latency_p99: 50ms\n", ""},
		{"missing payload", "        payload: ampy.bars.v1.BarBatch\n", ""},
		{"bad version", "    version: v1\n    description: OHLCV", "    version: 1\n    description: OHLCV"},
		{"bad version v0", "    version: v1\n    description: OHLCV", "    version: v0\n    description: OHLCV"},
		{"bad namespace", "namespace: ampy", "namespace: Ampy"},
		{"empty envs", "envs: [dev, paper, prod]", "envs: []"},
		{"duplicate env", "envs: [dev, paper, prod]", "envs: [dev, paper, dev]"},
		{"bad domain name", "\n  bars:\n", "\n  Bars:\n"},
		{"bad ordering rule", "{rule: causal}", "{rule: casual}"},
		{"monotonic without by", "{rule: monotonic, by: bars.event_time}", "{rule: monotonic}"},
		{"snapshot without by", "{rule: snapshot, by: as_of}", "{rule: snapshot}"},
		{"causal with by", "{rule: causal}", "{rule: causal, by: created_at}"},
		{"accumulate with by", "{rule: accumulate}", "{rule: accumulate, by: as_of}"},
		{"restatements on another rule", "{rule: snapshot, by: as_of, restatements: true}", "{rule: monotonic, by: as_of, restatements: true}"},
		{"restatements not a boolean", "restatements: true}", "restatements: often}"},
		{"expired without expires", "{rule: latest_wins, by: generated_at, expires: expires_at, expired: skip}", "{rule: latest_wins, by: generated_at, expired: skip}"},
		{"expired neither skip nor flag", "expires: expires_at, expired: skip}", "expires: expires_at, expired: drop}"},
		{"ordering by on raw payload", "    ordering: {rule: accumulate}\n    retention: 30d\n    subtopics:\n      - pattern: \"{domain}\"",
			"    ordering: {rule: latest_wins, by: as_of}\n    retention: 30d\n    subtopics:\n      - pattern: \"{domain}\""},
		{"bad duration", "retention: 7d", "retention: 7days"},
		{"zero duration", "dedupe_window: 2m", "dedupe_window: 0s"},
		{"duration without unit", "latency_p99: 50ms", "latency_p99: 50"},
		{"bad size", "max_payload: 1MiB", "max_payload: 1MB"},
		{"zero size", "compress_above: 128KiB", "compress_above: 0"},
		{"bad semver", "schema_version: 1.0.0", "schema_version: 1.0"},
		{"bad pattern wildcard", `pattern: "trade.{symbol}"`, `pattern: "trade.*"`},
		{"bad pattern empty token", `pattern: "trade.{symbol}"`, `pattern: "trade..{symbol}"`},
		{"bad pattern mixed token", `pattern: "trade.{symbol}"`, `pattern: "trade.x{symbol}"`},
		{"bad pattern parameter name", `pattern: "trade.{symbol}"`, `pattern: "trade.{Symbol}"`},
		{"partitions 0", "partitions: 12", "partitions: 0"},
		{"partitions too many", "partitions: 12", "partitions: 10001"},
		{"replicas 0", "  partitions: 3\n", "  partitions: 3\n  replicas: 0\n"},
		{"replicas over 5", "  partitions: 3\n", "  partitions: 3\n  replicas: 7\n"},
		{"replicas not a number", "  partitions: 3\n", "  partitions: 3\n  replicas: three\n"},
		{"payload not a name", "payload: ampy.bars.v1.BarBatch", `payload: "not a name"`},
		{"constant partition key", `partition_key: "{client_order_id}"`, `partition_key: "orders"`},
		{"unclosed placeholder", `partition_key: "{client_order_id}"`, `partition_key: "{client_order_id"`},
		{"empty placeholder", `dedupe_key: "{request_id}"`, `dedupe_key: "{}"`},
		{"typed subtopic without partition key", "        partition_key: \"{model_id}|{security.symbol}.{security.mic}|{horizon?}\"\n", ""},
		{"several subtopics without names", "      - name: quote\n", "      - \n"},
		{"bind not a mapping", "bind: {symbol: security.symbol}", "bind: security.symbol"},
		{"bind on raw payload", "        payload: raw\n", "        payload: raw\n        bind: {domain: domain}\n"},
		{"subtopics empty", "    subtopics:\n      - pattern: \"{domain}\"\n        payload: raw\n", "    subtopics: []\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.Contains(t, shipped, tc.from, "case does not apply to contract.yaml")
			src := strings.Replace(shipped, tc.from, tc.to, 1)
			require.Error(t, validateYAML(sch, src), "the JSON schema accepts it")
			_, err := contract.Parse("contract.yaml", []byte(src), protoregistry.GlobalFiles)
			require.Error(t, err, "the Go loader accepts it")
		})
	}
}

// TestSchemaAcceptsLoaderForms checks forms the loader accepts that the
// shipped contract does not use, so the schema does not flag valid contracts.
func TestSchemaAcceptsLoaderForms(t *testing.T) {
	sch := compileSchema(t)
	data, err := os.ReadFile("../../contract.yaml")
	require.NoError(t, err)
	shipped := string(data)
	cases := []struct {
		name     string
		from, to string
	}{
		{"size in bytes", "max_payload: 1MiB", "max_payload: 1048576"},
		{"size quoted bytes", "max_payload: 1MiB", `max_payload: "1048576"`},
		{"size with B", "compress_above: 128KiB", "compress_above: 131072B"},
		{"duration in weeks", "retention: 7d", "retention: 1w"},
		{"compound duration", "dedupe_window: 2m", "dedupe_window: 1m30s"},
		{"fractional duration", "dedupe_window: 2m", "dedupe_window: 1.5m"},
		{"microseconds", "latency_p99: 50ms", "latency_p99: 50000µs"},
		{"quoted partitions", "partitions: 12", `partitions: "12"`},
		{"domain schema_version", "    partitions: 12\n", "    partitions: 12\n    schema_version: 1.3.0\n"},
		{"subtopic schema_version", "        payload: ampy.bars.v1.BarBatch\n", "        payload: ampy.bars.v1.BarBatch\n        schema_version: 1.2.0\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.Contains(t, shipped, tc.from, "case does not apply to contract.yaml")
			src := strings.Replace(shipped, tc.from, tc.to, 1)
			_, err := contract.Parse("contract.yaml", []byte(src), protoregistry.GlobalFiles)
			require.NoError(t, err, "the Go loader rejects it")
			require.NoError(t, validateYAML(sch, src), "the JSON schema rejects it")
		})
	}
}

// TestSchemaUnitsAgreeWithParsers checks the schema's duration and size
// patterns against ParseDuration and ParseSize, which the loader uses (a value
// must also be positive). Out-of-range numbers are the loader's alone to catch.
func TestSchemaUnitsAgreeWithParsers(t *testing.T) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(contract.JSONSchema))
	require.NoError(t, err)
	c := jsonschema.NewCompiler()
	require.NoError(t, c.AddResource(schemaID, doc))
	duration, err := c.Compile(schemaID + "#/$defs/duration")
	require.NoError(t, err)
	size, err := c.Compile(schemaID + "#/$defs/size")
	require.NoError(t, err)

	for _, s := range []string{"50ms", "7d", "2w", "00d", "1h30m", "1.5m", ".5s", "1.s", "+1s", "10ns", "3us", "3µs", "3μs",
		"0", "0s", "0d", "0.0s", "-1s", "50", "7days", "1.5d", "d", "", "1e3s", "1 s", "1h7d", "µs", "1S"} {
		t.Run("duration "+s, func(t *testing.T) {
			d, err := contract.ParseDuration(s)
			want := err == nil && d > 0
			got := duration.Validate(s) == nil
			require.Equal(t, want, got, "loader accepts: %v, schema accepts: %v", want, got)
		})
	}
	for _, s := range []string{"1", "131072", "128KiB", "1MiB", "2GiB", "1B", "007KiB",
		"0", "0B", "00KiB", "1MB", "1KB", "KiB", "B", "", "-1", "1.5KiB", "1 KiB", "1kib"} {
		t.Run("size "+s, func(t *testing.T) {
			n, err := contract.ParseSize(s)
			want := err == nil && n > 0
			got := size.Validate(s) == nil
			require.Equal(t, want, got, "loader accepts: %v, schema accepts: %v", want, got)
		})
	}
}

// The JSON schema takes a domain listed with versions:, as the loader does,
// and refuses version: beside it.
func TestSchemaAcceptsVersions(t *testing.T) {
	sch := compileSchema(t)
	data, err := os.ReadFile("../../cmd/ampybus-gen/testdata/service/contract.yaml")
	require.NoError(t, err)
	src := string(data)
	require.Contains(t, src, "versions:")
	require.NoError(t, validateYAML(sch, src))
	require.Error(t, validateYAML(sch, strings.Replace(src, "    versions:\n", "    version: v1\n    versions:\n", 1)))
	require.Error(t, validateYAML(sch, strings.Replace(src, "      v2:\n", "      two:\n", 1)))
}
