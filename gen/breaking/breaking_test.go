package breaking_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/reflect/protoregistry"

	_ "github.com/ampyfin/ampy-bus/generated" // links the shipped payload schemas

	"github.com/ampyfin/ampy-bus/gen/breaking"
	"github.com/ampyfin/ampy-bus/gen/contract"
	"github.com/ampyfin/ampy-bus/gen/protoset"
)

const baseProto = `syntax = "proto3";
package cx.market.v1;
option go_package = "example.com/cx/market/v1;marketv1";
import "google/protobuf/timestamp.proto";
enum Side { SIDE_UNSPECIFIED = 0; SIDE_BUY = 1; SIDE_SELL = 2; }
message Venue { string mic = 1; }
message Trade {
  string symbol = 1;
  string trade_id = 2;
  int64 price_e4 = 3;
  int64 qty = 4;
  Side side = 5;
  Venue venue = 6;
  repeated string tags = 7;
  oneof px { int64 limit_e4 = 8; int64 stop_e4 = 9; }
  google.protobuf.Timestamp at = 10;
}
message Quote { string symbol = 1; int64 bid_e4 = 2; google.protobuf.Timestamp at = 3; }
`

// v2Proto is a new major of the payloads, for a domain's v2 beside v1.
const v2Proto = `syntax = "proto3";
package cx.market.v2;
option go_package = "example.com/cx/market/v2;marketv2";
import "google/protobuf/timestamp.proto";
message Quote { string symbol = 1; string venue = 2; int64 bid_e4 = 3; google.protobuf.Timestamp at = 4; }
`

const baseContract = `namespace: cx
envs: [dev, prod]
qos:
  fast: {latency_p99: 50ms}
  slow: {latency_p99: 2s}
defaults:
  retention: 7d
domains:
  trades:
    version: v1
    qos: fast
    ordering: {rule: monotonic, by: at}
    partitions: 6
    replicas: 3
    max_payload: 1MiB
    subtopics:
      - name: trade
        pattern: "trade.{symbol}"
        payload: cx.market.v1.Trade
        bind: {symbol: symbol}
        partition_key: "{symbol}"
        dedupe_key: "{trade_id}"
      - name: quote
        pattern: "quote.{symbol}"
        payload: cx.market.v1.Quote
        partition_key: "{symbol}"
  alerts:
    version: v1
    qos: slow
    ordering: {rule: accumulate}
    subtopics:
      - pattern: "all"
        payload: cx.market.v1.Quote
        partition_key: "{symbol}"
services:
  feed:
    publishes: [trades]
  desk:
    consumes: [trades.trade]
    may: [replay]
`

const alertsV1 = `  alerts:
    version: v1
    qos: slow
    ordering: {rule: accumulate}
    subtopics:
      - pattern: "all"
        payload: cx.market.v1.Quote
        partition_key: "{symbol}"
`

// load compiles protos and parses a contract in a directory of their own.
func load(t *testing.T, proto, contractText string) *contract.Contract {
	t.Helper()
	dir := t.TempDir()
	for path, text := range map[string]string{"cx/market/v1/market.proto": proto, "cx/market/v2/market.proto": v2Proto} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, filepath.Dir(path)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, path), []byte(text), 0o644))
	}
	schemas, err := protoset.Load(context.Background(), protoset.Options{ProtoPaths: []string{dir}})
	require.NoError(t, err)
	c, err := contract.Parse("contract.yaml", []byte(contractText), schemas)
	require.NoError(t, err)
	return c
}

type edit struct{ from, to string }

func apply(t *testing.T, base string, edits []edit) string {
	t.Helper()
	for _, e := range edits {
		require.Contains(t, base, e.from, "edit does not apply")
		base = strings.Replace(base, e.from, e.to, 1)
	}
	return base
}

// Each change to the contract or its payload schemas raises exactly the
// rules it must, and a change made as a new major version raises none.
func TestBreakingChanges(t *testing.T) {
	cases := []struct {
		name     string
		contract []edit
		proto    []edit
		// prev edits the previous contract, for changes that start from a
		// feature the base contract does not use.
		prev []edit
		want []string
	}{
		{name: "nothing changed"},
		{name: "retention shortened", contract: []edit{{"  retention: 7d\n", "  retention: 3d\n  short_retention: test\n"}}, want: []string{breaking.RetentionShortened}},
		{name: "retention lengthened", contract: []edit{{"  retention: 7d\n", "  retention: 14d\n"}}},
		{name: "retention shortened in one env", contract: []edit{{"  retention: 7d\n", "  retention: {default: 7d, dev: 3d}\n  short_retention: test\n"}}, want: []string{breaking.RetentionShortened}},
		{name: "retention lengthened in prod only", contract: []edit{{"  retention: 7d\n", "  retention: {default: 7d, prod: 30d}\n"}}},
		{name: "partitions changed", contract: []edit{{"partitions: 6", "partitions: 12"}}, want: []string{breaking.PartitionsChanged}},
		{name: "max_payload lowered", contract: []edit{{"max_payload: 1MiB", "max_payload: 512KiB"}}, want: []string{breaking.MaxPayloadLowered}},
		{name: "max_payload raised", contract: []edit{{"max_payload: 1MiB", "max_payload: 2MiB"}}},
		{name: "replicas lowered", contract: []edit{{"replicas: 3", "replicas: 1"}}, want: []string{breaking.ReplicasLowered}},
		{name: "replicas raised", contract: []edit{{"replicas: 3", "replicas: 5"}}},
		{name: "qos downgraded", contract: []edit{{"    qos: fast\n", "    qos: slow\n"}}, want: []string{breaking.QoSDowngraded}},
		{name: "qos upgraded", contract: []edit{{"    qos: slow\n", "    qos: fast\n"}}},
		{name: "ordering rule changed", contract: []edit{{"{rule: monotonic, by: at}", "{rule: latest_wins, by: at}"}}, want: []string{breaking.OrderingChanged}},
		{name: "expiry added", contract: []edit{{"{rule: monotonic, by: at}", "{rule: monotonic, by: at, expires: at}"}}, want: []string{breaking.OrderingChanged}},
		{name: "expired messages flagged instead of skipped", prev: []edit{{"{rule: monotonic, by: at}", "{rule: monotonic, by: at, expires: at}"}},
			contract: []edit{{"{rule: monotonic, by: at}", "{rule: monotonic, by: at, expires: at, expired: flag}"}}, want: []string{breaking.OrderingChanged}},
		{name: "restatements flagged", prev: []edit{{"{rule: monotonic, by: at}", "{rule: snapshot, by: at}"}},
			contract: []edit{{"{rule: monotonic, by: at}", "{rule: snapshot, by: at, restatements: true}"}}, want: []string{breaking.OrderingChanged}},
		{name: "bind added", contract: []edit{{"        pattern: \"quote.{symbol}\"\n", "        pattern: \"quote.{symbol}\"\n        bind: {symbol: symbol}\n"}}, want: []string{breaking.BindAdded}},
		{name: "bind removed", prev: []edit{{"        pattern: \"quote.{symbol}\"\n", "        pattern: \"quote.{symbol}\"\n        bind: {symbol: symbol}\n"}}},
		{name: "partition key changed", contract: []edit{{`partition_key: "{symbol}"` + "\n        dedupe_key", `partition_key: "{trade_id}"` + "\n        dedupe_key"}}, want: []string{breaking.PartitionKeyChanged}},
		{name: "dedupe key changed", contract: []edit{{`dedupe_key: "{trade_id}"`, `dedupe_key: "{symbol}|{trade_id}"`}}, want: []string{breaking.DedupeKeyChanged}},
		{name: "dedupe key removed", contract: []edit{{"\n        dedupe_key: \"{trade_id}\"", ""}}, want: []string{breaking.DedupeKeyRemoved}},
		{name: "subtopic pattern changed", contract: []edit{{`pattern: "trade.{symbol}"`, `pattern: "trades.{symbol}"`}}, want: []string{breaking.SubtopicPatternChanged}},
		{name: "subtopic removed", contract: []edit{{"      - name: quote\n        pattern: \"quote.{symbol}\"\n        payload: cx.market.v1.Quote\n        partition_key: \"{symbol}\"\n", ""}}, want: []string{breaking.SubtopicRemoved}},
		{name: "payload type changed", contract: []edit{{"        pattern: \"quote.{symbol}\"\n        payload: cx.market.v1.Quote", "        pattern: \"quote.{symbol}\"\n        payload: cx.market.v1.Trade"}}, want: []string{breaking.PayloadTypeChanged}},
		{name: "env removed", contract: []edit{{"envs: [dev, prod]", "envs: [dev]"}}, want: []string{breaking.EnvRemoved}},
		{name: "domain removed", contract: []edit{{alertsV1, ""}}, want: []string{breaking.DomainRemoved}},
		{name: "domain added", contract: []edit{{"services:", "  news:\n    version: v1\n    qos: slow\n    ordering: {rule: accumulate}\n    subtopics:\n      - pattern: \"raw\"\n        payload: cx.market.v1.Quote\n        partition_key: \"{symbol}\"\nservices:"}}},
		{name: "new major beside the old, its key changed",
			contract: []edit{{alertsV1, "  alerts:\n    qos: slow\n    ordering: {rule: accumulate}\n    versions:\n      v1:\n        subtopics:\n          - pattern: \"all\"\n            payload: cx.market.v1.Quote\n            partition_key: \"{symbol}\"\n      v2:\n        schema_version: 2.0.0\n        subtopics:\n          - pattern: \"all\"\n            payload: cx.market.v2.Quote\n            partition_key: \"{venue}.{symbol}\"\n"}},
			want:     []string{breaking.NewMajorVersion}},
		{name: "service removed", contract: []edit{{"  feed:\n    publishes: [trades]\n", ""}}, want: []string{breaking.ServiceRightsNarrowed}},
		{name: "service loses a right", contract: []edit{{"    may: [replay]\n", ""}}, want: []string{breaking.ServiceRightsNarrowed}},
		{name: "service consumes another subtopic", contract: []edit{{"consumes: [trades.trade]", "consumes: [trades.quote]"}}, want: []string{breaking.ServiceRightsNarrowed}},
		{name: "service granted more", contract: []edit{{"publishes: [trades]", "publishes: [trades, alerts]"}}},
		{name: "field removed", proto: []edit{{"  int64 qty = 4;\n", ""}}, want: []string{breaking.FieldRemoved}},
		{name: "field renumbered", proto: []edit{{"int64 qty = 4;", "int64 qty = 12;"}}, want: []string{breaking.FieldRenumbered}},
		{name: "field type changed", proto: []edit{{"int64 qty = 4;", "double qty = 4;"}}, want: []string{breaking.FieldTypeChanged}},
		{name: "field cardinality changed", proto: []edit{{"repeated string tags = 7;", "string tags = 7;"}}, want: []string{breaking.FieldCardinalityChanged}},
		{name: "enum value removed", proto: []edit{{" SIDE_SELL = 2;", ""}}, want: []string{breaking.EnumValueRemoved}},
		{name: "oneof changed", proto: []edit{{"oneof px { int64 limit_e4 = 8; int64 stop_e4 = 9; }", "int64 limit_e4 = 8; oneof px { int64 stop_e4 = 9; }"}}, want: []string{breaking.OneofChanged}},
		{name: "nested message removed", proto: []edit{{"message Venue { string mic = 1; }\n", ""}, {"  Venue venue = 6;\n", ""}}, want: []string{breaking.FieldRemoved, breaking.MessageRemoved}},
		{name: "field added", proto: []edit{{"  google.protobuf.Timestamp at = 10;\n}", "  google.protobuf.Timestamp at = 10;\n  int64 fee_e4 = 11;\n}"}}},
		{name: "enum value added", proto: []edit{{"SIDE_SELL = 2;", "SIDE_SELL = 2; SIDE_SHORT = 3;"}}},
	}
	require.GreaterOrEqual(t, len(cases), 25)
	base := load(t, baseProto, baseContract)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			prev := base
			if tc.prev != nil {
				prev = load(t, baseProto, apply(t, baseContract, tc.prev))
			}
			cur := load(t, apply(t, baseProto, tc.proto), apply(t, baseContract, tc.contract))
			findings := breaking.Check(prev, cur)
			var rules []string
			for _, f := range findings {
				rules = append(rules, f.Rule)
				assert.Regexp(t, `^contract\.yaml:\d+:\d+: [A-Z_]+: .+`, f.String())
				assert.Equal(t, !strings.HasPrefix(f.Rule, "NOTE_"), f.Breaking, f.String())
			}
			slices.Sort(rules)
			rules = slices.Compact(rules)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			assert.Equal(t, want, rules, "%v", findings)
		})
	}
}

// The shipped contract compared with itself breaks nothing.
func TestShippedContractAgainstItself(t *testing.T) {
	c, err := contract.Load("../../contract.yaml", protoregistry.GlobalFiles)
	require.NoError(t, err)
	assert.Empty(t, breaking.Check(c, c))
}

// A reviewer can accept a rule, with a reason, in the contract or by a
// flag: the change is still reported, but it breaks nothing.
func TestExceptedRules(t *testing.T) {
	prev := load(t, baseProto, baseContract)
	changed := apply(t, baseContract, []edit{{"partitions: 6", "partitions: 12"}, {"replicas: 3", "replicas: 1"}})
	cur := load(t, baseProto, changed+"breaking:\n  except:\n    SEM_PARTITIONS_CHANGED: re-sharded in the maintenance window, consumers drained first\n")
	findings := breaking.Check(prev, cur, map[string]string{breaking.ReplicasLowered: "a single-node dev cluster"})
	require.Len(t, findings, 2)
	for _, f := range findings {
		assert.False(t, f.Breaking, f.String())
		assert.NotEmpty(t, f.Excepted)
	}
	assert.Contains(t, findings[0].String()+findings[1].String(), "(excepted: re-sharded in the maintenance window")

	_, err := contract.Parse("c.yaml", []byte(baseContract+"breaking:\n  except:\n    PARTITIONS: because\n"), nil)
	assert.ErrorContains(t, err, `"PARTITIONS" is not a breaking-change rule ID`)
}
