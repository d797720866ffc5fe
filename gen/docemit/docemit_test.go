package docemit_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/ampyfin/ampy-bus/gen/contract"
	"github.com/ampyfin/ampy-bus/gen/docemit"
	"github.com/ampyfin/ampy-bus/gen/output"
	_ "github.com/ampyfin/ampy-bus/generated" // links the shipped payload schemas
)

// The catalog has each domain's page, the mermaid diagram of who publishes
// and consumes what, and each service's integration note; the committed
// docs/contract is current (make check diffs it too).
func TestCatalog(t *testing.T) {
	c, err := contract.Load("../../contract.yaml", protoregistry.GlobalFiles)
	require.NoError(t, err)
	files, err := docemit.Emitter{Source: "contract.yaml"}.Emit(c)
	require.NoError(t, err)
	require.Len(t, files, len(c.Domains)+1)
	index := string(files["README.md"])
	assert.Contains(t, index, "```mermaid\nflowchart LR")
	assert.Contains(t, index, "s_ampy_oms --> d_orders_v1")
	assert.Contains(t, index, "d_fills_v1 --> s_ampy_position_pnl")
	assert.Contains(t, index, "| [orders v1](orders.v1.md) | critical (50ms) | causal | 400d | 3 | `requests` |")
	assert.Contains(t, index, "### broker-alpaca")
	assert.Contains(t, index, "- `ampy.{env}.fills.v1.events` carrying `ampy.fills.v1.FillEvent`: partition_key `{account_id}|{client_order_id}`")
	assert.Contains(t, index, "- `ampy.{env}.orders.v1.requests` as group `broker-alpaca`")
	orders := string(files["orders.v1.md"])
	assert.Contains(t, orders, "| QoS | critical (p99 publish to first delivery ≤ 50ms) |")
	assert.Contains(t, orders, "Published by: ampy-oms. Consumed by: broker-alpaca (group broker-alpaca).")
	assert.Contains(t, orders, "| `security.symbol` | string | 1 |")
	for name, data := range files {
		assert.True(t, strings.HasPrefix(string(data), "<!-- "+output.Marker), name)
	}
	diff, err := output.Check("../../docs/contract", files)
	require.NoError(t, err)
	assert.Empty(t, diff, "docs/contract is stale: make generate")
}
