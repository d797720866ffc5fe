package contract_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/ampyfin/ampy-bus/gen/contract"
)

// malformedCase breaks the base contract one way.
type malformedCase struct {
	name     string
	from, to string // replace the first from in base with to; an empty from makes to the whole file
	want     string // the first error in full: file:line:col: problem; fix
}

func (c malformedCase) src() string {
	if c.from == "" {
		return c.to
	}
	return strings.Replace(base, c.from, c.to, 1)
}

const (
	ordersHead = "    version: v1\n    qos: critical\n    ordering: {rule: causal}\n"
	tradeSub   = `        pattern: "trade.{symbol}"`
)

var malformed = []malformedCase{
	{"unknown key", "    qos: critical\n    ordering: {rule: causal}", "    qos: critical\n    ordreing: {rule: causal}",
		`c.yaml:11:5: unknown key "ordreing" in domain "orders"; did you mean "ordering"?`},
	{"missing field", "        pattern: \"requests\"\n", "",
		`c.yaml:13:9: a subtopic of domain "orders" is missing required key "pattern"; add pattern: to a subtopic of domain "orders"`},
	{"duplicate domain", "  ticks:", "  orders:",
		`c.yaml:18:3: duplicate domain "orders" (first defined at line 8); remove or rename one of them`},
	{"bad pattern wildcard", `pattern: "trade.{symbol}"`, `pattern: "trade.*"`,
		`c.yaml:24:25: subtopic pattern "trade.*": has the wildcard '*'; name each variable token as a {parameter}, e.g. "{mic}.{symbol}"; wildcards (* and >) belong in subscription subjects, not in the contract`},
	{"bad pattern empty token", `pattern: "trade.{symbol}"`, `pattern: "trade..{symbol}"`,
		`c.yaml:24:25: subtopic pattern "trade..{symbol}": has an empty token (two dots, or a leading or trailing dot); separate tokens with single dots`},
	{"key names missing field", `partition_key: "{symbol}.{security.mic}"`, `partition_key: "{symbol}.{security.mci}"`,
		`c.yaml:27:35: subtopic "trade.{symbol}" of domain "ticks" partition_key: {security.mci} is neither a parameter of "trade.{symbol}" nor a field of ampy.ticks.v1.TradeTick: ampy.common.v1.SecurityId has no field "mci"; did you mean "security.mic"?; subtopic parameters: symbol`},
	{"key names message field", `dedupe_key: "{client_order_id}"`, `dedupe_key: "{security}"`,
		`c.yaml:17:23: subtopic "requests" of domain "orders" dedupe_key: {security} is neither a parameter of "requests" nor a field of ampy.orders.v1.OrderRequest: field ampy.orders.v1.OrderRequest.security is a message ampy.common.v1.SecurityId; build keys from string, integer, bool, enum or Timestamp fields`},
	{"payload does not exist", "payload: ampy.orders.v1.OrderRequest", "payload: ampy.orders.v1.Order",
		`c.yaml:15:18: payload type "ampy.orders.v1.Order" is not in the payload schemas; write the full name of a protobuf message, e.g. ampy.orders.v1.<Message>, or "raw" for opaque bytes`},
	{"unknown qos", "    qos: critical\n    ordering: {rule: monotonic", "    qos: critcal\n    ordering: {rule: monotonic",
		`c.yaml:20:10: unknown qos class "critcal"; did you mean "critical"?`},
	{"bad ordering rule", "{rule: causal}", "{rule: casual}",
		`c.yaml:11:22: unknown ordering rule "casual"; did you mean "causal"?`},
	{"ordering field not timestamp", "by: event_time", "by: venue",
		`c.yaml:21:37: ordering by "venue" in ampy.ticks.v1.TradeTick: field ampy.ticks.v1.TradeTick.venue is a string, neither a google.protobuf.Timestamp nor an integer sequence; order by a Timestamp field such as event_time or as_of, or an integer sequence such as seq`},
	{"bind to unknown param", "bind: {symbol: security.symbol}", "bind: {sym: security.symbol}",
		`c.yaml:26:16: bind names "sym", which is not a parameter of pattern "trade.{symbol}"; bind one of the pattern's parameters: symbol`},
	{"bad retry attempts", "retention: 7d", "retention: 7d\n  retry: {max_attempts: 0}",
		`c.yaml:7:25: defaults retry max_attempts "0" is not an attempt count; write a whole number from 1 to 1000`},
	{"bad duration", "retention: 7d", "retention: 7days",
		`c.yaml:6:14: defaults retention "7days" is not a duration; write a positive duration such as 50ms, 2m, 36h or 7d`},
	{"unclosed placeholder", `partition_key: "{client_order_id}"`, `partition_key: "{client_order_id"`,
		`c.yaml:16:25: subtopic "requests" of domain "orders" partition_key "{client_order_id" has an unclosed {; close the placeholder with }`},
	{"constant key", `partition_key: "{client_order_id}"`, `partition_key: "orders"`,
		`c.yaml:16:24: subtopic "requests" of domain "orders" partition_key "orders" is a constant: every message would share one key; build the key from parameters or payload fields, e.g. "{client_order_id}"`},
	{"wrong version package", "payload: ampy.orders.v1.OrderRequest", "payload: ampy.orders.v1.OrderRequest\n        schema_version: 1.0",
		`c.yaml:16:25: subtopic "requests" of domain "orders" schema_version "1.0" is not a semantic version; write MAJOR.MINOR.PATCH, e.g. 1.0.0`},
	{"yaml syntax", "envs: [dev, prod]", "envs: [dev, prod",
		`c.yaml:2: not valid YAML: did not find expected ',' or ']'; fix the YAML syntax (indentation, quoting) at that line`},
	{name: "a YAML directive on the first line", want: `c.yaml:1: not valid YAML: could not find expected directive name; fix the YAML syntax (indentation, quoting) at that line`, to: "%\n"},
	{name: "binary garbage", want: `c.yaml:1:1: control character 0x00: the file holds binary data, not YAML text; point the generator at the contract's YAML file`, to: "\x00\x01\x02garbage\xff"},
	{name: "NUL inside a value", want: `c.yaml:1:14: control character 0x00: the file holds binary data, not YAML text; point the generator at the contract's YAML file`, from: "namespace: ampy", to: "namespace: am\x00py"},
	{name: "not UTF-8", want: `c.yaml:1:15: byte 0xff is not UTF-8 text; save the contract as UTF-8`, from: "namespace: ampy", to: "namespace: amp\xff"},
	{name: "Latin-1 description", want: `c.yaml:20:21: byte 0xe9 is not UTF-8 text; save the contract as UTF-8`, from: "    version: v1\n    qos: critical\n    ordering: {rule: monotonic", to: "    version: v1\n    description: caf\xe9 prices\n    qos: critical\n    ordering: {rule: monotonic"},
	{name: "flow nesting 20000 deep", want: `c.yaml:1:44: nesting deeper than 32 levels; a contract nests a few levels deep: close the brackets`, to: "namespace: " + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + "\n"},
	{name: "block nesting 40 deep", want: `c.yaml:37:63: nesting deeper than 32 levels; a contract nests a few levels deep: check the indentation`, from: "  retention: 7d\n", to: "  retention: 7d\n" + func() string {
		var b strings.Builder
		for i := 1; i <= 40; i++ {
			b.WriteString(strings.Repeat("  ", i) + "x:\n")
		}
		return b.String()
	}()},
	{name: "tab indentation", want: `c.yaml:10:1: a tab in the indentation; YAML indents with spaces only; replace the tab with spaces`, from: "    qos: critical\n    ordering: {rule: causal}", to: "\tqos: critical\n    ordering: {rule: causal}"},
	{name: "tab after spaces", want: `c.yaml:10:3: a tab in the indentation; YAML indents with spaces only; replace the tab with spaces`, from: "    qos: critical\n    ordering: {rule: causal}", to: "  \t  qos: critical\n    ordering: {rule: causal}"},
	{name: "empty file", want: `c.yaml:1:1: the contract is empty; start with namespace:, envs:, qos:, defaults: and domains:`, to: ""},
	{name: "only a comment", want: `c.yaml:1:1: the contract is empty; start with namespace:, envs:, qos:, defaults: and domains:`, to: "# nothing here\n"},
	{name: "a list, not a mapping", want: `c.yaml:1:1: the contract must be a mapping, not a list; write the contract as a mapping of key: value lines`, to: "- orders\n- ticks\n"},
	{name: "a scalar, not a mapping", want: `c.yaml:1:1: the contract must be a mapping, not the scalar "hello"; write the contract as a mapping of key: value lines`, to: "hello\n"},
	{name: "domain named func", want: `c.yaml:18:3: domain name "func": "func" is a Go keyword and cannot name a package; rename the domain: its name is its Go package as well as its topic token`, from: "  ticks:", to: "  func:"},
	{name: "domain named type", want: `c.yaml:18:3: domain name "type": "type" is a Go keyword and cannot name a package; rename the domain: its name is its Go package as well as its topic token`, from: "  ticks:", to: "  type:"},
	{name: "domain named string", want: `c.yaml:18:3: domain name "string": "string" is predeclared in Go (a built-in type or function); as a package it would shadow it; rename the domain: its name is its Go package as well as its topic token`, from: "  ticks:", to: "  string:"},
	{name: "domain named len", want: `c.yaml:18:3: domain name "len": "len" is predeclared in Go (a built-in type or function); as a package it would shadow it; rename the domain: its name is its Go package as well as its topic token`, from: "  ticks:", to: "  len:"},
	{name: "domain named time", want: `c.yaml:18:3: domain name "time": "time" is the name of a package the generated code imports; rename the domain: its name is its Go package as well as its topic token`, from: "  ticks:", to: "  time:"},
	{name: "domain named ampybus", want: `c.yaml:18:3: domain name "ampybus": "ampybus" is the name of a package the generated code imports; rename the domain: its name is its Go package as well as its topic token`, from: "  ticks:", to: "  ampybus:"},
	{name: "domains that share a Go package", want: `c.yaml:18:3: domain "ord_ers" and domain "orders" would both generate Go package "orders"; rename one of them`, from: "  ticks:", to: "  ord_ers:"},
	{name: "domain name in capitals", want: `c.yaml:18:3: domain name "Ticks" is not a valid name; use lower_snake_case: a letter, then letters, digits or _`, from: "  ticks:", to: "  Ticks:"},
	{name: "domain name starting with a digit", want: `c.yaml:18:3: domain name "1ticks" is not a valid name; use lower_snake_case: a letter, then letters, digits or _`, from: "  ticks:", to: "  1ticks:"},
	{name: "parameter named func", want: `c.yaml:24:26: subtopic pattern "trade.{func}": "func" is a Go keyword and cannot name a parameter; rename the parameter: it becomes a Go parameter and accessor in generated code`, from: tradeSub, to: `        pattern: "trade.{func}"`},
	{name: "parameter named len", want: `c.yaml:24:26: subtopic pattern "trade.{len}": "len" is predeclared in Go (a built-in type or function); as a parameter it would shadow it; rename the parameter: it becomes a Go parameter and accessor in generated code`, from: tradeSub, to: `        pattern: "trade.{len}"`},
	{name: "parameter named string", want: `c.yaml:24:26: subtopic pattern "trade.{string}": "string" is predeclared in Go (a built-in type or function); as a parameter it would shadow it; rename the parameter: it becomes a Go parameter and accessor in generated code`, from: tradeSub, to: `        pattern: "trade.{string}"`},
	{name: "parameter named topic", want: `c.yaml:24:26: subtopic pattern "trade.{topic}": parameter {topic} would clash with the generated subtopic type's Topic method; rename the parameter: it becomes a Go parameter and accessor in generated code`, from: tradeSub, to: `        pattern: "trade.{topic}"`},
	{name: "parameter named pattern", want: `c.yaml:24:26: subtopic pattern "trade.{pattern}": parameter {pattern} would clash with the generated subtopic type's Pattern method; rename the parameter: it becomes a Go parameter and accessor in generated code`, from: tradeSub, to: `        pattern: "trade.{pattern}"`},
	{name: "parameters that share a Go name", want: `c.yaml:24:30: subtopic pattern "{sym_bol}.{symbol}": parameters {sym_bol} and {symbol} would generate the same Go identifiers; rename one of them`, from: tradeSub, to: `        pattern: "{sym_bol}.{symbol}"`},
	{name: "subtopic names that share a Go name", want: `c.yaml:28:9: subtopic names "tra_de" and "trade" (line 23) of domain "ticks" would generate the same Go identifiers; rename one of them`, from: `        partition_key: "{symbol}.{security.mic}"` + "\n", to: `        partition_key: "{symbol}.{security.mic}"` + "\n" +
		"      - name: tra_de\n        pattern: \"quote.{symbol}\"\n        payload: ampy.ticks.v1.QuoteTick\n        partition_key: \"{symbol}\"\n"},
	{name: "namespace in capitals", want: `c.yaml:1:12: namespace "Ampy" is not a valid name; use lower_snake_case: a letter, then letters, digits or _`, from: "namespace: ampy", to: "namespace: Ampy"},
	{name: "env in capitals", want: `c.yaml:2:13: env "Prod" is not a valid name; use lower_snake_case: a letter, then letters, digits or _`, from: "envs: [dev, prod]", to: "envs: [dev, Prod]"},
	{name: "max_payload of 100GiB", want: `c.yaml:7:16: defaults max_payload 100GiB is over 64MiB, the most a NATS server carries in one message; keep messages small and send larger payloads as blob pointers (ampybus.WithBlobStore)`, from: "  retention: 7d\n", to: "  retention: 7d\n  max_payload: 100GiB\n"},
	{name: "max_payload just over 64MiB", want: `c.yaml:7:16: defaults max_payload 65MiB is over 64MiB, the most a NATS server carries in one message; keep messages small and send larger payloads as blob pointers (ampybus.WithBlobStore)`, from: "  retention: 7d\n", to: "  retention: 7d\n  max_payload: 65MiB\n"},
	{name: "max_payload zero", want: `c.yaml:7:16: defaults max_payload "0" is not a size; write a positive size such as 131072, 128KiB or 1MiB`, from: "  retention: 7d\n", to: "  retention: 7d\n  max_payload: 0\n"},
	{name: "max_payload negative", want: `c.yaml:7:16: defaults max_payload "-1" is not a size; write a positive size such as 131072, 128KiB or 1MiB`, from: "  retention: 7d\n", to: "  retention: 7d\n  max_payload: -1\n"},
	{name: "max_payload with a space", want: `c.yaml:7:16: defaults max_payload "1 MiB" is not a size; write a positive size such as 131072, 128KiB or 1MiB`, from: "  retention: 7d\n", to: "  retention: 7d\n  max_payload: 1 MiB\n"},
	{name: "max_inflated of 2GiB", want: `c.yaml:7:17: defaults max_inflated 2GiB is over 1GiB; split such payloads: a consumer holds each one whole in memory`, from: "  retention: 7d\n", to: "  retention: 7d\n  max_inflated: 2GiB\n"},
	{name: "max_inflated below max_payload", want: `c.yaml:8:17: defaults inflates payloads to at most 512KiB but max_payload is 1MiB; set max_inflated at or above max_payload`, from: "  retention: 7d\n", to: "  retention: 7d\n  max_payload: 1MiB\n  max_inflated: 512KiB\n"},
	{name: "compress_above over max_payload", want: `c.yaml:8:19: defaults compresses above 2MiB but max_payload is 1MiB, so compression never applies; set compress_above below max_payload`, from: "  retention: 7d\n", to: "  retention: 7d\n  max_payload: 1MiB\n  compress_above: 2MiB\n"},
	{name: "partitions zero", want: `c.yaml:7:15: defaults partitions "0" is not a partition count; write a whole number from 1 to 10000`, from: "  retention: 7d\n", to: "  retention: 7d\n  partitions: 0\n"},
	{name: "partitions over 10000", want: `c.yaml:7:15: defaults partitions "10001" is not a partition count; write a whole number from 1 to 10000`, from: "  retention: 7d\n", to: "  retention: 7d\n  partitions: 10001\n"},
	{name: "replicas seven", want: `c.yaml:7:13: defaults replicas "7" is not a replica count; write 1, 3 or 5 (an odd count keeps a quorum; JetStream allows at most 5)`, from: "  retention: 7d\n", to: "  retention: 7d\n  replicas: 7\n"},
	{name: "retention zero", want: `c.yaml:6:14: defaults retention "0s" is not a duration; write a positive duration such as 50ms, 2m, 36h or 7d`, from: "  retention: 7d\n", to: "  retention: 0s\n"},
	{name: "dedupe_window forever", want: `c.yaml:7:18: defaults dedupe_window "forever" is not a duration; write a positive duration such as 50ms, 2m, 36h or 7d`, from: "  retention: 7d\n", to: "  retention: 7d\n  dedupe_window: forever\n"},
	{name: "pattern with a slash and a wildcard", want: `c.yaml:24:34: subtopic pattern "{venue}/{pair}.*": has the wildcard '*'; name each variable token as a {parameter}, e.g. "{mic}.{symbol}"; wildcards (* and >) belong in subscription subjects, not in the contract`, from: tradeSub, to: `        pattern: "{venue}/{pair}.*"`},
	{name: "pattern of a full wildcard", want: `c.yaml:24:19: subtopic pattern ">": has the wildcard '>'; name each variable token as a {parameter}, e.g. "{mic}.{symbol}"; wildcards (* and >) belong in subscription subjects, not in the contract`, from: tradeSub, to: `        pattern: ">"`},
	{name: "pattern with a space", want: `c.yaml:24:25: subtopic pattern "trade. {symbol}": has whitespace; remove it: topic tokens hold no spaces`, from: tradeSub, to: `        pattern: "trade. {symbol}"`},
	{name: "two parameters in a token", want: `c.yaml:24:19: subtopic pattern "{venue}{pair}": token "{venue}{pair}" holds more than one parameter; give each {parameter} its own dot-separated token, e.g. "{venue}.{pair}"`, from: tradeSub, to: `        pattern: "{venue}{pair}"`},
	{name: "pattern empty", want: `c.yaml:24:19: subtopic pattern "": the pattern is empty; write literal tokens and {parameters} separated by dots, e.g. "{mic}.{symbol}"`, from: tradeSub, to: `        pattern: ""`},
	{name: "parameter twice", want: `c.yaml:24:28: subtopic pattern "{symbol}.{symbol}": parameter {symbol} appears twice; give each parameter its own name`, from: tradeSub, to: `        pattern: "{symbol}.{symbol}"`},
	{name: "text around a parameter", want: `c.yaml:24:25: subtopic pattern "trade.x{symbol}": token "x{symbol}" mixes text and a parameter; make each dot-separated token either literal text or one whole {parameter}`, from: tradeSub, to: `        pattern: "trade.x{symbol}"`},
	{name: "domains as a list", want: `c.yaml:8: not valid YAML: did not find expected '-' indicator; fix the YAML syntax (indentation, quoting) at that line`, from: "domains:\n  orders:", to: "domains:\n  - orders:"},
	{name: "subtopics empty", want: `c.yaml:22:16: domain "ticks" subtopics must be a non-empty list; write subtopics: as a list of {pattern: "...", payload: ..., partition_key: "..."}`, from: "    subtopics:\n      - name: trade", to: "    subtopics: []\n    x:\n      - name: trade"},
	{name: "envs a single value", want: `c.yaml:2:7: envs must be a non-empty list; write envs: [dev, paper, prod]`, from: "envs: [dev, prod]", to: "envs: dev"},
	{name: "qos by alias", want: `c.yaml:5:9: qos class "fast" must be a mapping, not an alias; write qos class "fast" as a mapping of key: value lines`, from: "  critical: {latency_p99: 50ms}", to: "  critical: &c {latency_p99: 50ms}\n  fast: *c"},
	{name: "key twice", want: `c.yaml:11:5: key "qos" appears twice in domain "orders" (first at line 10); remove one of them`, from: "    qos: critical\n    ordering: {rule: causal}", to: "    qos: critical\n    qos: critical\n    ordering: {rule: causal}"},
	{name: "version missing", want: `c.yaml:9:5: domain "orders" is missing required key "version"; add version: to domain "orders"`, from: ordersHead, to: "    qos: critical\n    ordering: {rule: causal}\n"},
	{name: "version without v", want: `c.yaml:9:14: domain "orders" version "1" is not a major version; write v1, v2, … (the payload's major version)`, from: ordersHead, to: "    version: 1\n    qos: critical\n    ordering: {rule: causal}\n"},
	{name: "top-level key misspelled", want: `c.yaml:7:1: unknown key "domain" in the contract; did you mean "domains"?`, from: "domains:\n", to: "domain:\n"},
	{name: "dedupe_key on a missing field", want: `c.yaml:17:23: subtopic "requests" of domain "orders" dedupe_key: {order_id} is neither a parameter of "requests" nor a field of ampy.orders.v1.OrderRequest: ampy.orders.v1.OrderRequest has no field "order_id"; did you mean "order_type"?`, from: `dedupe_key: "{client_order_id}"`, to: `dedupe_key: "{order_id}"`},
	{name: "bind to a missing field", want: `c.yaml:26:24: bind symbol: ampy.common.v1.SecurityId has no field "ticker"; did you mean "security.mic"?`, from: "bind: {symbol: security.symbol}", to: "bind: {symbol: security.ticker}"},
	{name: "unterminated quote", want: `c.yaml:14:18: this quoted value is not closed on its line (the YAML parser then reports: line 12: did not find expected key); close the quote on the same line`, from: `pattern: "requests"`, to: `pattern: "requests`},
	{name: "optional subtopic parameter", want: `c.yaml:27:32: subtopic "trade.{symbol}" of domain "ticks" partition_key: {symbol?} marks a subtopic parameter optional; remove the ?: a subtopic parameter always has a value`, from: `partition_key: "{symbol}.{security.mic}"`, to: `partition_key: "{symbol?}.{security.mic}"`},
	{name: "optional enum", want: `c.yaml:16:48: subtopic "requests" of domain "orders" partition_key: {side?} is optional, but enum fields always have a value; remove the ?: only a string or Timestamp field may be left out of a key`, from: `partition_key: "{client_order_id}"`, to: `partition_key: "{client_order_id}|{side?}"`},
	{name: "bind to no field", want: `c.yaml:26:24: bind symbol lists no field; list the payload fields the parameter must equal, or remove it`, from: "bind: {symbol: security.symbol}", to: "bind: {symbol: []}"},
	{name: "bind to a field twice", want: `c.yaml:26:42: bind symbol lists security.symbol twice; list each field once`, from: "bind: {symbol: security.symbol}", to: "bind: {symbol: [security.symbol, security.symbol]}"},
	{name: "expires not a Timestamp", want: `c.yaml:21:58: domain "ticks" ordering expires: "venue" in ampy.ticks.v1.TradeTick: field ampy.ticks.v1.TradeTick.venue is a string, not a singular google.protobuf.Timestamp; name the Timestamp after which a message is no longer current, such as expires_at`, from: "by: event_time", to: "by: event_time, expires: venue"},
	{name: "expires through nothing", want: `c.yaml:21:58: domain "ticks" ordering expires: "expiry" in ampy.ticks.v1.TradeTick: ampy.ticks.v1.TradeTick has no field "expiry"; fields of ampy.ticks.v1.TradeTick: security, price, size, venue, event_time, ingest_time, meta`, from: "by: event_time", to: "by: event_time, expires: expiry"},
	{name: "expired without expires", want: `c.yaml:21:49: domain "ticks" ordering expired: needs expires:; add expires: with the payload Timestamp after which a message is stale, or remove expired:`, from: "by: event_time", to: "by: event_time, expired: flag"},
	{name: "expired of another kind", want: `c.yaml:21:79: domain "ticks" ordering expired: "drop" is not skip or flag; write skip (acknowledge it without the handler, counted in Stats.Expired) or flag (hand it over with Expired set)`, from: "by: event_time", to: "by: event_time, expires: event_time, expired: drop"},
	{name: "restatements on a monotonic domain", want: `c.yaml:21:49: domain "ticks" ordering restatements: applies to snapshots, not to rule "monotonic"; remove restatements:, or use rule snapshot`, from: "by: event_time", to: "by: event_time, restatements: true"},
	{name: "restatements often", want: `c.yaml:11:62: domain "orders" ordering restatements "often" is not true or false; write true or false`, from: "{rule: causal}", to: "{rule: snapshot, by: created_at, restatements: often}"},
	{name: "retry backoff not a duration", want: `c.yaml:7:37: defaults retry backoff "soon" is not a duration; write a positive duration such as 50ms, 2m, 36h or 7d`, from: "retention: 7d", to: "retention: 7d\n  retry: {max_attempts: 3, backoff: soon}"},
}

// Each malformed contract is refused with its first problem at
// file:line:column and a hint that says what to write instead.
func TestMalformedContracts(t *testing.T) {
	require.GreaterOrEqual(t, len(malformed), 60)
	shape := regexp.MustCompile(`^c\.yaml:\d+(:\d+)?: [^;]+; .+$`)
	for _, tc := range malformed {
		t.Run(tc.name, func(t *testing.T) {
			if tc.from != "" {
				require.Contains(t, base, tc.from, "case does not apply to the base contract")
			}
			_, err := contract.Parse("c.yaml", []byte(tc.src()), protoregistry.GlobalFiles)
			require.Error(t, err)
			assert.True(t, errors.Is(err, contract.ErrInvalid))
			var errs contract.Errors
			require.True(t, errors.As(err, &errs), "want contract.Errors, got %T", err)
			assert.Equal(t, tc.want, errs[0].Error())
			assert.Regexp(t, shape, errs[0].Error(), "position, problem and hint")
		})
	}
}

// What YAML allows is not refused by the checks that explain parser
// errors: tabs inside values and flow lists, brackets and quotes inside
// comments and block scalars, comments in column 1, multi-line quoted
// values.
func TestValidYAMLIsAccepted(t *testing.T) {
	ordersDesc := "    version: v1\n    qos: critical\n    ordering: {rule: causal}\n"
	for name, to := range map[string]string{
		"tab inside a block scalar":       "    version: v1\n    description: |\n      line one\n      \tindented\n    qos: critical\n    ordering: {rule: causal}\n",
		"tab on a plain continuation":     "    version: v1\n    description: one\n     \ttwo\n    qos: critical\n    ordering: {rule: causal}\n",
		"tab in a quoted continuation":    "    version: v1\n    description: \"one\n     \ttwo\"\n    qos: critical\n    ordering: {rule: causal}\n",
		"brackets in column-1 comments":   strings.Repeat("# TODO [ticket\n", 40) + ordersDesc,
		"quotes in column-1 comments":     "# note: \"legacy\n" + ordersDesc,
		"brackets inside a block scalar":  "    version: v1\n    description: |\n" + strings.Repeat("      a [b\n", 40) + "    qos: critical\n    ordering: {rule: causal}\n",
		"an apostrophe in a plain scalar": "    version: v1\n    description: Orders - 'client side\n    qos: critical\n    ordering: {rule: causal}\n",
	} {
		t.Run(name, func(t *testing.T) {
			src := strings.Replace(base, ordersDesc, to, 1)
			require.NotEqual(t, base, src)
			_, err := contract.Parse("c.yaml", []byte(src), protoregistry.GlobalFiles)
			assert.NoError(t, err)
		})
	}
	src := strings.Replace(base, "envs: [dev, prod]", "envs: [dev,\n\tprod]", 1)
	_, err := contract.Parse("c.yaml", []byte(src), protoregistry.GlobalFiles)
	assert.NoError(t, err, "a tab inside a flow list")
}
