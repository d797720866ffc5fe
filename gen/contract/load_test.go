package contract_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/ampyfin/ampy-bus/gen/contract"
	"github.com/ampyfin/ampy-bus/gen/protoset"
	_ "github.com/ampyfin/ampy-bus/proto/ampy"
)

// base is a small valid contract; cases replace one line of it.
const base = `namespace: ampy
envs: [dev, prod]
qos:
  critical: {latency_p99: 50ms}
defaults:
  retention: 7d
domains:
  orders:
    version: v1
    qos: critical
    ordering: {rule: causal}
    subtopics:
      - name: requests
        pattern: "requests"
        payload: ampy.orders.v1.OrderRequest
        partition_key: "{client_order_id}"
        dedupe_key: "{client_order_id}"
  ticks:
    version: v1
    qos: critical
    ordering: {rule: monotonic, by: event_time}
    subtopics:
      - name: trade
        pattern: "trade.{symbol}"
        payload: ampy.ticks.v1.TradeTick
        bind: {symbol: security.symbol}
        partition_key: "{symbol}.{security.mic}"
`

func TestReplicasInheritAndOverride(t *testing.T) {
	src := strings.Replace(base, "  retention: 7d\n", "  retention: 7d\n  replicas: 3\n", 1)
	src = strings.Replace(src, "    ordering: {rule: causal}\n", "    ordering: {rule: causal}\n    replicas: 5\n", 1)
	c, err := contract.Parse("c.yaml", []byte(src), protoregistry.GlobalFiles)
	require.NoError(t, err)
	assert.Equal(t, 5, c.Domain("orders").Replicas)
	assert.Equal(t, 3, c.Domain("ticks").Replicas)

	_, err = contract.Parse("c.yaml", []byte(strings.Replace(src, "replicas: 5", "replicas: 6", 1)), protoregistry.GlobalFiles)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "c.yaml:13:15")
	assert.Contains(t, err.Error(), `replicas "6" is not a replica count; write 1, 3 or 5`)
}

// Retention is one duration or per env; an env a mapping does not name
// keeps what it inherits unless the mapping gives a default; prod keeps at
// least a week unless the contract says why.
func TestRetentionPerEnv(t *testing.T) {
	day := 24 * time.Hour
	tests := []struct {
		name            string
		defaults, order string // the defaults' and the orders domain's retention lines
		dev, prod       time.Duration
		err             string
	}{
		{name: "one for all", defaults: "  retention: 7d\n", dev: 7 * day, prod: 7 * day},
		{name: "per env in defaults", defaults: "  retention: {default: 3d, prod: 30d}\n", dev: 3 * day, prod: 30 * day},
		{name: "domain names only prod", defaults: "  retention: 3d\n  short_retention: dev only\n", order: "    retention: {prod: 400d}\n", dev: 3 * day, prod: 400 * day},
		{name: "domain default over inherited per env", defaults: "  retention: {default: 3d, prod: 30d}\n", order: "    retention: {default: 10d}\n", dev: 10 * day, prod: 10 * day},
		{name: "domain scalar over inherited per env", defaults: "  retention: {default: 3d, prod: 30d}\n", order: "    retention: 8d\n", dev: 8 * day, prod: 8 * day},
		{name: "short prod with a reason", defaults: "  retention: 3d\n  short_retention: rebuilt from the vendor archive\n", dev: 3 * day, prod: 3 * day},
		{name: "short prod without a reason", defaults: "  retention: {default: 7d, prod: 3d}\n",
			err: `c.yaml:6:14: domain "orders" keeps 3d in prod, under the seed's week of live messages; keep at least 7d in prod (retention: {prod: 7d}), or say why less is enough with short_retention: <reason>`},
		{name: "short prod in a domain", order: "    retention: 2d\n",
			err: `c.yaml:12:16: domain "orders" keeps 2d in prod, under the seed's week of live messages`},
		{name: "unknown env", defaults: "  retention: {default: 7d, production: 30d}\n",
			err: `c.yaml:6:28: defaults retention names "production", which is not an env; name one of the contract's envs (dev, prod) or default`},
		{name: "empty reason", defaults: "  retention: 3d\n  short_retention: \"\"\n",
			err: `c.yaml:7:20: defaults short_retention gives no reason; say why a shorter retention is enough`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := base
			if tt.defaults != "" {
				src = strings.Replace(src, "  retention: 7d\n", tt.defaults, 1)
			}
			if tt.order != "" {
				src = strings.Replace(src, "    ordering: {rule: causal}\n", "    ordering: {rule: causal}\n"+tt.order, 1)
			}
			c, err := contract.Parse("c.yaml", []byte(src), protoregistry.GlobalFiles)
			if tt.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.err)
				if strings.Contains(tt.err, "under the seed's week") {
					// A contract written before the rule still reads for review.
					_, err := contract.Parse("c.yaml", []byte(src), protoregistry.GlobalFiles, contract.WithoutPolicy())
					assert.NoError(t, err)
				}
				return
			}
			require.NoError(t, err)
			d := c.Domain("orders")
			assert.Equal(t, tt.dev, d.RetentionIn("dev"), "dev")
			assert.Equal(t, tt.prod, d.RetentionIn("prod"), "prod")
		})
	}
}

func TestMaxInflated(t *testing.T) {
	c, err := contract.Parse("c.yaml", []byte(base), protoregistry.GlobalFiles)
	require.NoError(t, err)
	assert.Equal(t, int64(4<<20), c.Domain("orders").MaxInflated, "four times max_payload by default")
	src := strings.Replace(base, "  retention: 7d\n", "  retention: 7d\n  max_inflated: 8MiB\n", 1)
	c, err = contract.Parse("c.yaml", []byte(src), protoregistry.GlobalFiles)
	require.NoError(t, err)
	assert.Equal(t, int64(8<<20), c.Domain("ticks").MaxInflated)
	_, err = contract.Parse("c.yaml", []byte(strings.Replace(src, "8MiB", "512KiB", 1)), protoregistry.GlobalFiles)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "c.yaml:7:17")
	assert.Contains(t, err.Error(), "set max_inflated at or above max_payload")
}

func TestParseValid(t *testing.T) {
	c, err := contract.Parse("c.yaml", []byte(base), protoregistry.GlobalFiles)
	require.NoError(t, err)
	require.Len(t, c.Domains, 2)
	ticks := c.Domain("ticks")
	require.NotNil(t, ticks)
	assert.Equal(t, 7*24*time.Hour, ticks.Retention)
	assert.Equal(t, int64(1<<20), ticks.MaxPayload, "built-in default applies")
	assert.Equal(t, 1, ticks.Replicas, "built-in default applies")
	st := ticks.Subtopics[0]
	assert.Equal(t, "ampy.ticks.v1.TradeTick", string(st.Payload.FullName()))
	assert.Equal(t, []string{"symbol"}, st.Pattern.Params())
	require.Len(t, st.PartitionKey.Parts, 3)
	assert.Equal(t, "symbol", st.PartitionKey.Parts[0].Param)
	assert.Equal(t, ".", st.PartitionKey.Parts[1].Literal)
	assert.Equal(t, "security.mic", st.PartitionKey.Parts[2].Field.Text)
	assert.Equal(t, "event_time", st.OrderBy.Text)
	assert.Equal(t, "security.symbol", st.Bind["symbol"][0].Text)
}

func TestParseReportsAllErrors(t *testing.T) {
	src := strings.NewReplacer(
		"ordering: {rule: causal}", "ordering: {rule: casual}",
		"payload: ampy.ticks.v1.TradeTick", "payload: ampy.ticks.v1.Trade",
		"envs: [dev, prod]", "envs: [dev, dev]",
	).Replace(base)
	_, err := contract.Parse("c.yaml", []byte(src), protoregistry.GlobalFiles)
	var errs contract.Errors
	require.True(t, errors.As(err, &errs))
	require.Len(t, errs, 3, "got:\n%v", err)
	assert.Contains(t, errs[0].Error(), `c.yaml:2:13: env "dev" is listed twice`)
	assert.Contains(t, errs[1].Error(), `c.yaml:11:22: unknown ordering rule "casual"`)
	assert.Contains(t, errs[2].Error(), `c.yaml:25:18: payload type "ampy.ticks.v1.Trade" is not in the payload schemas`)
}

func TestOverlappingPatterns(t *testing.T) {
	src := strings.Replace(base, `        partition_key: "{symbol}.{security.mic}"
`, `        partition_key: "{symbol}.{security.mic}"
      - name: any
        pattern: "{kind}.{symbol}"
        payload: ampy.ticks.v1.QuoteTick
        partition_key: "{symbol}"
`, 1)
	_, err := contract.Parse("c.yaml", []byte(src), protoregistry.GlobalFiles)
	require.ErrorContains(t, err, `c.yaml:28:9: subtopic pattern "{kind}.{symbol}" overlaps "trade.{symbol}" (line 23)`)
}

func TestShippedContract(t *testing.T) {
	c, err := contract.Load("../../contract.yaml", protoregistry.GlobalFiles)
	require.NoError(t, err)
	var names []string
	for _, d := range c.Domains {
		names = append(names, d.Name)
	}
	assert.Equal(t, []string{"bars", "ticks", "fundamentals", "news", "fx", "corporate_actions", "universe",
		"signals", "orders", "fills", "positions", "metrics", "dlq", "control"}, names)
	assert.Equal(t, []string{"dev", "paper", "prod"}, c.Envs)
	for _, d := range []string{"orders", "signals", "fills"} {
		assert.Equal(t, 50*time.Millisecond, c.Domain(d).QoS.LatencyP99, d)
	}
	for _, d := range []string{"bars", "ticks"} {
		assert.Equal(t, 150*time.Millisecond, c.Domain(d).QoS.LatencyP99, d)
	}
	assert.Equal(t, contract.RetryPolicy{MaxAttempts: 5, Backoff: 100 * time.Millisecond, MaxBackoff: 30 * time.Second}, c.Domain("bars").Retry)
	assert.Equal(t, contract.RetryPolicy{MaxAttempts: 12, Backoff: 100 * time.Millisecond, MaxBackoff: time.Minute}, c.Domain("orders").Retry,
		"a domain's retry overrides defaults key by key")
	assert.Equal(t, int64(128<<10), c.Domain("bars").CompressAbove)
	assert.Equal(t, int64(1<<20), c.Domain("bars").MaxPayload)
}

func TestUnits(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{{"7d", 7 * 24 * time.Hour}, {"2w", 14 * 24 * time.Hour}, {"50ms", 50 * time.Millisecond}, {"36h", 36 * time.Hour}} {
		got, err := contract.ParseDuration(tc.in)
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, got, tc.in)
	}
	for _, tc := range []struct {
		in     string
		want   int64
		format string
	}{{"128KiB", 128 << 10, "128KiB"}, {"1MiB", 1 << 20, "1MiB"}, {"4096", 4096, "4KiB"}, {"1000", 1000, "1000B"}, {"2GiB", 2 << 30, "2GiB"}} {
		got, err := contract.ParseSize(tc.in)
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, got, tc.in)
		assert.Equal(t, tc.format, contract.FormatSize(got), tc.in)
	}
	for _, bad := range []string{"", "d", "1.5d", "-1", "7days", "1 d"} {
		_, err := contract.ParseDuration(bad)
		assert.Error(t, err, "duration %q", bad)
	}
	for _, bad := range []string{"", "KiB", "1MB", "-1", "1.5MiB", "0x10"} {
		_, err := contract.ParseSize(bad)
		assert.Error(t, err, "size %q", bad)
	}
}

// schema_version is inherited defaults → domain → subtopic, each level
// overriding the one above.
func TestSchemaVersionInherits(t *testing.T) {
	src := strings.Replace(base, "  retention: 7d\n", "  retention: 7d\n  schema_version: 1.1.0\n", 1)
	src = strings.Replace(src, "    ordering: {rule: causal}\n", "    ordering: {rule: causal}\n    schema_version: 1.4.0\n", 1)
	src = strings.Replace(src, "        payload: ampy.ticks.v1.TradeTick\n", "        payload: ampy.ticks.v1.TradeTick\n        schema_version: 1.7.2\n", 1)
	c, err := contract.Parse("c.yaml", []byte(src), protoregistry.GlobalFiles)
	require.NoError(t, err)
	assert.Equal(t, "1.4.0", c.Domain("orders").Subtopics[0].SchemaVersion)
	assert.Equal(t, "1.7.2", c.Domain("ticks").Subtopics[0].SchemaVersion)

	src = strings.Replace(src, "    schema_version: 1.4.0\n", "", 1)
	c, err = contract.Parse("c.yaml", []byte(src), protoregistry.GlobalFiles)
	require.NoError(t, err)
	assert.Equal(t, "1.1.0", c.Domain("orders").Subtopics[0].SchemaVersion)
}

// Hints name payloads in the contract's own namespace.
func TestHintsUseTheContractsNamespace(t *testing.T) {
	src := strings.Replace(strings.Replace(base, "namespace: ampy", "namespace: cx", 1), "payload: ampy.orders.v1.OrderRequest", "payload: cx.orders.v1.Order", 1)
	_, err := contract.Parse("c.yaml", []byte(src), protoregistry.GlobalFiles)
	require.ErrorContains(t, err, "e.g. cx.orders.v1.<Message>")
}

// A domain orders by a Timestamp or by an integer sequence, the same kind
// in every subtopic.
func TestOrderingBySequence(t *testing.T) {
	src := strings.Replace(base, "{rule: monotonic, by: event_time}", "{rule: monotonic, by: size}", 1)
	c, err := contract.Parse("c.yaml", []byte(src), protoregistry.GlobalFiles)
	require.NoError(t, err)
	assert.True(t, c.Domain("ticks").Ordering.Sequence)
	assert.Equal(t, "size", c.Domain("ticks").Subtopics[0].OrderBy.Text)
	assert.False(t, c.Domain("orders").Ordering.Sequence)

	mixed := strings.Replace(base, "{rule: monotonic, by: event_time}", "{rule: monotonic, by: event_time}", 1) + `      - name: quote
        pattern: "quote.{symbol}"
        payload: ampy.ticks.v1.QuoteTick
        partition_key: "{symbol}"
`
	_, err = contract.Parse("c.yaml", []byte(mixed), protoregistry.GlobalFiles)
	require.NoError(t, err, "both order by event_time, a Timestamp")

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "m.proto"), []byte(`syntax = "proto3";
package cx.m.v1;
import "google/protobuf/timestamp.proto";
option go_package = "example.com/cx/m;m";
message Seq { string k = 1; int64 at = 2; }
message Time { string k = 1; google.protobuf.Timestamp at = 2; }
`), 0o644))
	schemas, err := protoset.Load(context.Background(), protoset.Options{ProtoPaths: []string{dir}})
	require.NoError(t, err)
	_, err = contract.Parse("c.yaml", []byte(`namespace: cx
envs: [dev]
qos: {fast: {latency_p99: 5ms}}
domains:
  m:
    version: v1
    qos: fast
    ordering: {rule: monotonic, by: at}
    subtopics:
      - {name: seq, pattern: "seq.{k}", payload: cx.m.v1.Seq, partition_key: "{k}"}
      - {name: time, pattern: "time.{k}", payload: cx.m.v1.Time, partition_key: "{k}"}
`), schemas)
	require.ErrorContains(t, err, `c.yaml:8:37: ordering by "at": it is an integer sequence in cx.m.v1.Seq but a Timestamp in cx.m.v1.Time; order every subtopic of the domain by the same kind of field`)
}

// A domain lists several major versions side by side: one Domain each,
// inheriting what the domain says, in Go packages named with the version.
func TestVersionsSideBySide(t *testing.T) {
	dir := t.TempDir()
	for _, v := range []string{"v1", "v2"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "cx", "m", v), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "cx", "m", v, "m.proto"), []byte(`syntax = "proto3";
package cx.m.`+v+`;
option go_package = "example.com/cx/m/`+v+`;m`+v+`";
message Trade { string k = 1; int64 seq = 2; }
`), 0o644))
	}
	schemas, err := protoset.Load(context.Background(), protoset.Options{ProtoPaths: []string{dir}})
	require.NoError(t, err)
	src := `namespace: cx
envs: [dev]
qos: {fast: {latency_p99: 5ms}, slow: {latency_p99: 1s}}
domains:
  trades:
    qos: fast
    ordering: {rule: monotonic, by: seq}
    retention: 2d
    versions:
      v1:
        subtopics:
          - {pattern: "{k}", payload: cx.m.v1.Trade, partition_key: "{k}"}
      v2:
        qos: slow
        retention: 9d
        schema_version: 2.0.0
        subtopics:
          - {pattern: "{k}", payload: cx.m.v2.Trade, partition_key: "{k}"}
`
	c, err := contract.Parse("c.yaml", []byte(src), schemas)
	require.NoError(t, err)
	require.Len(t, c.Domains, 2)
	v1, v2 := c.DomainVersion("trades", "v1"), c.DomainVersion("trades", "v2")
	require.NotNil(t, v1)
	require.NotNil(t, v2)
	assert.Equal(t, "tradesv1", v1.Package)
	assert.Equal(t, "tradesv2", v2.Package)
	assert.Equal(t, "fast", v1.QoS.Name)
	assert.Equal(t, "slow", v2.QoS.Name)
	assert.Equal(t, 48*time.Hour, v1.Retention)
	assert.Equal(t, 9*24*time.Hour, v2.Retention)
	assert.Equal(t, "seq", v2.Subtopics[0].OrderBy.Text)

	for _, tc := range []struct{ from, to, want string }{
		{"payload: cx.m.v2.Trade", "payload: cx.m.v1.Trade", `payload "cx.m.v1.Trade" is from package cx.m.v1, not a v2 package`},
		{"    versions:\n", "    version: v1\n    versions:\n", `domain "trades" lists versions:, so version: belongs to each version`},
		{"      v2:\n", "      2:\n", `c.yaml:13:7: domain "trades" version "2" is not a major version; write v1, v2, …`},
		{"        qos: slow\n", "        qos: slow\n        version: v2\n", `unknown key "version" in domain "trades" v2`},
		{"        schema_version: 2.0.0\n", "", `c.yaml:17:13: subtopic "{k}" of domain "trades" v2 has schema_version 1.0.0, major 1, but its topics are v2; set schema_version: 2.0.0 (or a later 2.x.y) on the v2 domain or the subtopic`},
	} {
		_, err := contract.Parse("c.yaml", []byte(strings.Replace(src, tc.from, tc.to, 1)), schemas)
		require.ErrorContains(t, err, tc.want, tc.to)
	}
}
