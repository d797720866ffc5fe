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

func TestUncovered(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{nil, nil},
		{[]string{"*.*", "trade.*"}, []string{"*.*"}},
		{[]string{"trade.*", "quote.*"}, []string{"trade.*", "quote.*"}},
		{[]string{"rates", "*.*", "rates"}, []string{"rates", "*.*"}},
		{[]string{"trade.*", ">"}, []string{">"}},
	} {
		assert.Equal(t, tc.want, transport.Uncovered(tc.in), "%v", tc.in)
	}
}

func TestStreamHolds(t *testing.T) {
	s := transport.Stream{Prefix: "ampy.dev.fx.v1", Subtopics: []string{"rates", "*.*"}}
	any := transport.Stream{Prefix: "ampy.dev.fx.v1"}
	for _, tc := range []struct {
		topic     string
		want, any bool
	}{
		{"ampy.dev.fx.v1.rates", true, true},
		{"ampy.dev.fx.v1.USD.JPY", true, true},
		{"ampy.dev.fx.v1", false, false},
		{"ampy.dev.fx.v1.", false, false},
		{"ampy.dev.fx.v1.USD", false, true},
		{"ampy.dev.fx.v1.USD.JPY.x", false, true},
		{"ampy.dev.fx.v1.USD.", false, false},
		{"ampy.dev.fx.v1.USD.*", false, false},
		{"ampy.dev.fx.v1.US D.JPY", false, false},
		{"ampy.dev.bars.v1.USD.JPY", false, false},
	} {
		assert.Equal(t, tc.want, s.Holds(tc.topic), tc.topic)
		assert.Equal(t, tc.any, any.Holds(tc.topic), "any: %s", tc.topic)
	}
}

func TestOverlap(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"XNAS.AAPL", "*.*", true},
		{"XNAS.*", "*.AAPL", true},
		{"XNAS.AAPL.extra", "*.*", false},
		{"XNAS", "*.*", false},
		{">", "*.*", true},
		{"XNAS.>", "*.*", true},
		{"XNAS.>", "*", false},
		{"trade.*", "quote.*", false},
		{"*.MSFT", "trade.*", true},
		{"rates", "rates", true},
		{"rates", "*.*", false},
	} {
		assert.Equal(t, tc.want, transport.Overlap(tc.a, tc.b), "%s ∩ %s", tc.a, tc.b)
		assert.Equal(t, tc.want, transport.Overlap(tc.b, tc.a), "%s ∩ %s", tc.b, tc.a)
	}
}

func TestMergeShapes(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{[]string{"trade.*", "quote.*"}, []string{"trade.*", "quote.*"}},
		{[]string{"binance.*", "*.latest"}, []string{"*.*"}},
		{[]string{"*.*", "trade.*"}, []string{"*.*"}},
		{[]string{"a.*.c", "a.b.*", "x"}, []string{"x", "a.*.*"}},
		{[]string{"rates", "*.*", "rates"}, []string{"rates", "*.*"}},
	} {
		assert.ElementsMatch(t, tc.want, transport.MergeShapes(tc.in), "%v", tc.in)
	}
}
