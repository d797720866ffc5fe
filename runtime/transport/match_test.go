package transport_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/ampyfin/ampy-bus/runtime/transport"
)

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, topic string
		want           bool
	}{
		{"ampy.prod.ticks.v1.trade.>", "ampy.prod.ticks.v1.trade.MSFT", true},
		{"ampy.prod.ticks.v1.trade.>", "ampy.prod.ticks.v1.quote.MSFT", false},
		{"ampy.prod.ticks.v1.trade.>", "ampy.prod.ticks.v1.trade", false},
		{"ampy.prod.bars.v1.*.*", "ampy.prod.bars.v1.XNAS.AAPL", true},
		{"ampy.prod.bars.v1.*.*", "ampy.prod.bars.v1.XNAS.AAPL.X", false},
		{"ampy.prod.bars.v1.XNAS.*", "ampy.prod.bars.v1.XNYS.AAPL", false},
		{"ampy.prod.bars.v1.>", "ampy.prod.bars.v1.XNAS.AAPL", true},
		{"ampy.prod.orders.v1.requests", "ampy.prod.orders.v1.requests", true},
		{"ampy.prod.orders.v1.requests", "ampy.prod.orders.v1.requestsX", false},
		{"ampy.prod.orders.v1", "ampy.prod.orders.v1.requests", false},
		{">", "a", true},
		{"*", "a.b", false},
	} {
		assert.Equal(t, tc.want, transport.Match(tc.pattern, tc.topic), "%s ~ %s", tc.pattern, tc.topic)
	}
}
