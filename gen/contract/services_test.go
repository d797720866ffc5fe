package contract_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/ampyfin/ampy-bus/gen/contract"
	"github.com/ampyfin/ampy-bus/gen/protoset"
)

// services is a services: section for base; it starts at line 28.
const services = `services:
  ampy-oms:
    consumes:
      - {from: [orders, ticks.trade], group: oms}
    publishes: [orders.requests]
    may: [replay]
  ops:
    publishes: [orders.v1]
    consumes: [ticks]
    may: [redrive, admin]
`

func TestServicesResolveToSubtopics(t *testing.T) {
	c, err := contract.Parse("c.yaml", []byte(base+services), protoregistry.GlobalFiles)
	require.NoError(t, err)
	require.Len(t, c.Services, 2)
	oms := c.Service("ampy-oms")
	require.NotNil(t, oms)
	require.Len(t, oms.Consumes, 2)
	assert.Equal(t, "orders", oms.Consumes[0].Domain.Name)
	assert.Equal(t, "requests", oms.Consumes[0].Subtopic.Name)
	assert.Equal(t, "trade", oms.Consumes[1].Subtopic.Name)
	assert.Equal(t, "oms", oms.Consumes[1].Group)
	require.Len(t, oms.Publishes, 1)
	assert.True(t, oms.Replay)
	assert.False(t, oms.Redrive || oms.Admin)
	ops := c.Service("ops")
	assert.Equal(t, "ops", ops.Consumes[0].Group, "the group defaults to the service's name")
	assert.Equal(t, "requests", ops.Publishes[0].Subtopic.Name)
	assert.True(t, ops.Redrive && ops.Admin && !ops.Replay)
	assert.Equal(t, contract.Pos{Line: 29, Column: 3}, oms.Pos)

	// A group reads one subtopic of a domain: naming a domain of several
	// gives each subtopic its own group; naming two under one is refused.
	shipped, err := contract.Load("../../contract.yaml", protoregistry.GlobalFiles)
	require.NoError(t, err)
	var groups []string
	for _, cons := range shipped.Service("ampy-features").Consumes {
		if cons.Domain.Name == "ticks" {
			groups = append(groups, cons.Group)
		}
	}
	assert.Equal(t, []string{"ampy-features.trade", "ampy-features.quote"}, groups)
	two := strings.Replace(base, "    subtopics:\n      - name: trade", "    subtopics:\n      - name: quote\n        pattern: \"quote.{symbol}\"\n        payload: ampy.ticks.v1.QuoteTick\n        partition_key: \"{symbol}\"\n      - name: trade", 1)
	_, err = contract.Parse("c.yaml", []byte(two+"services:\n  x:\n    consumes:\n      - {from: ticks.trade, group: g}\n      - {from: ticks.quote, group: g}\n"), protoregistry.GlobalFiles)
	assert.ErrorContains(t, err, `consumer group "g" of service x already reads ticks.trade; give quote its own group: a group reads one subtopic of a domain`)
}

// A services: section that names what the contract lacks is refused at the
// reference, with what it could have said.
func TestMalformedServices(t *testing.T) {
	cases := []malformedCase{
		{"unknown domain", "[orders.requests]", "[order.requests]",
			`c.yaml:32:17: service ampy-oms publishes names "order.requests", but the contract has no domain "order"; did you mean "orders"?`},
		{"unknown subtopic", "ticks.trade]", "ticks.trades]",
			`c.yaml:31:25: service ampy-oms consumes names "ticks.trades", but domain ticks has no subtopic "trades"; did you mean ticks.trade?`},
		{"unknown version", "[orders.v1]", "[orders.v2]",
			`c.yaml:35:17: service ops publishes names "orders.v2", but domain orders has no version v2; the versions of orders are v1`},
		{"too many parts", "[orders.v1]", "[orders.v1.requests.x]",
			`c.yaml:35:17: service ops publishes entry "orders.v1.requests.x" has too many parts; write domain, domain.subtopic, domain.vN or domain.vN.subtopic`},
		{"unknown right", "may: [replay]", "may: [replays]",
			`c.yaml:33:11: unknown right "replays" for service ampy-oms; did you mean "replay"?`},
		{"group of another service", "consumes: [ticks]", "consumes: [{from: ticks, group: oms}]",
			`c.yaml:36:23: consumer group "oms" of service ops is also service ampy-oms's; give each service its own consumer group, so each gets every message`},
		{"bad service name", "  ops:\n", "  Ops:\n",
			`c.yaml:34:3: service name "Ops" is not valid; use lower case letters, digits, - and _, starting with a letter (yfinance-go)`},
		{"bad group", "group: oms}", "group: \"o ms\"}",
			`c.yaml:31:46: consumer group "o ms" is not valid; use letters, digits, ., - and _ (no wildcards or spaces)`},
		{"unknown key", "    may: [redrive, admin]", "    mays: [redrive, admin]",
			`c.yaml:37:5: unknown key "mays" in service ops; did you mean "may"?`},
		{"nothing granted", "    publishes: [orders.v1]\n    consumes: [ticks]\n    may: [redrive, admin]\n", "    description: idle\n",
			`c.yaml:34:3: service ops neither publishes nor consumes anything; list what it publishes: or consumes:, or remove the service`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := base + services
			require.Contains(t, src, tc.from)
			_, err := contract.Parse("c.yaml", []byte(strings.Replace(src, tc.from, tc.to, 1)), protoregistry.GlobalFiles)
			var errs contract.Errors
			require.True(t, errors.As(err, &errs), "want contract.Errors, got %v", err)
			assert.Equal(t, tc.want, errs[0].Error())
		})
	}
}

// A pii policy refuses a payload schema with a forbidden field at any
// depth, at the line that names the payload; the shipped contract enables
// one and its schemas pass it.
func TestPIIPolicyRefusesPersonalData(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "cx/crm/v1"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "cx/crm/v1/crm.proto"), []byte(`syntax = "proto3";
package cx.crm.v1;
option go_package = "example.com/cx/crm/v1;crmv1";
message Contact { string contact_email = 1; string desk = 2; }
message Account { string account_id = 1; Contact owner = 2; }
`), 0o644))
	schemas, err := protoset.Load(context.Background(), protoset.Options{ProtoPaths: []string{dir}})
	require.NoError(t, err)
	src := `namespace: cx
envs: [prod]
qos:
  critical: {latency_p99: 50ms}
domains:
  accounts:
    version: v1
    qos: critical
    ordering: {rule: accumulate}
    subtopics:
      - pattern: "updates"
        payload: cx.crm.v1.Account
        partition_key: "{account_id}"
pii:
  forbid: ["*email*", ssn]
`
	_, err = contract.Parse("c.yaml", []byte(src), schemas)
	var errs contract.Errors
	require.True(t, errors.As(err, &errs), "want contract.Errors, got %v", err)
	assert.Equal(t, `c.yaml:12:18: payload cx.crm.v1.Account has field owner.contact_email, which the pii policy forbids (pattern "*email*" at line 15): personal data must not travel on the bus; remove or rename the field in cx/crm/v1/crm.proto, or carry a reference (an id) instead of the data`, errs[0].Error())

	_, err = contract.Parse("c.yaml", []byte(strings.Replace(src, `"*email*", ssn`, "ssn", 1)), schemas)
	assert.NoError(t, err, "without the pattern the schema is accepted")
	_, err = contract.Parse("c.yaml", []byte(strings.Replace(src, `"*email*", ssn`, `"[x"`, 1)), schemas)
	assert.ErrorContains(t, err, `pii pattern "[x" is not a field-name pattern`)

	shipped, err := contract.Load("../../contract.yaml", protoregistry.GlobalFiles)
	require.NoError(t, err)
	require.NotNil(t, shipped.PII)
	assert.Contains(t, shipped.PII.Forbid, "*email*")
	assert.Len(t, shipped.Services, 12)
}
