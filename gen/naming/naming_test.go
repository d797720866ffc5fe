package naming_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/ampyfin/ampy-bus/gen/naming"
)

func TestNames(t *testing.T) {
	for _, tc := range []struct{ in, exported, unexported string }{
		{"client_order_id", "ClientOrderID", "clientOrderID"},
		{"mic", "MIC", "mic"},
		{"model_id", "ModelID", "modelID"},
		{"replay_requests", "ReplayRequests", "replayRequests"},
		{"type", "Type", "type_"},
		{"fx", "FX", "fx"},
		{"trade", "Trade", "trade"},
		{"", "", ""},
	} {
		assert.Equal(t, tc.exported, naming.Exported(tc.in), tc.in)
		assert.Equal(t, tc.unexported, naming.Unexported(tc.in), tc.in)
	}
}
