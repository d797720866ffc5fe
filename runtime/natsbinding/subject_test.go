package natsbinding

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/ampyfin/ampy-bus/runtime/transport"
)

func TestSubjectLayout(t *testing.T) {
	p := int(transport.Partition("co_1", 6))
	assert.Equal(t, strconv.Itoa(p)+".ampy.dev.orders.v1.requests", Subject("ampy.dev.orders.v1.requests", "co_1", 6))
	assert.Equal(t, "0.ampy.dev.orders.v1.requests", Subject("ampy.dev.orders.v1.requests", "co_1", 0), "no count means one partition")

	for _, tc := range []struct {
		subject, topic string
		partition      int
		bad            bool
	}{
		{"4.ampy.dev.bars.v1.XNAS.AAPL", "ampy.dev.bars.v1.XNAS.AAPL", 4, false},
		{"0.ampy.dev.dlq.v1.bars", "ampy.dev.dlq.v1.bars", 0, false},
		{"ampy.dev.bars.v1.XNAS.AAPL", "ampy.dev.bars.v1.XNAS.AAPL", 0, true},
		{"-1.ampy.dev.bars.v1.X", "-1.ampy.dev.bars.v1.X", 0, true},
		{"7", "7", 0, true},
	} {
		topic, part, err := topicOf(tc.subject)
		assert.Equal(t, tc.topic, topic, tc.subject)
		assert.Equal(t, tc.partition, part, tc.subject)
		assert.Equal(t, tc.bad, err != nil, tc.subject)
	}

	assert.Equal(t, []string{"*.ampy.dev.bars.v1.XNAS.>", "*.ampy.dev.bars.v1.*.AAPL"}, partitionFilters([]string{"ampy.dev.bars.v1.XNAS.>", "ampy.dev.bars.v1.*.AAPL"}, -1))
	assert.Equal(t, []string{"3.ampy.dev.bars.v1.XNAS.>"}, partitionFilters([]string{"ampy.dev.bars.v1.XNAS.>"}, 3))

	assert.Equal(t, []string{"0.ampy.dev.fx.v1.>", "1.ampy.dev.fx.v1.>"}, streamSubjects("ampy.dev.fx.v1", 2, nil))
	assert.Equal(t, []string{"0.ampy.dev.fx.v1.*.*", "0.ampy.dev.fx.v1.rates", "1.ampy.dev.fx.v1.*.*", "1.ampy.dev.fx.v1.rates"},
		streamSubjects("ampy.dev.fx.v1", 2, []string{"*.*", "rates"}))
	for subject, want := range map[string]string{
		"11.ampy.dev.fx.v1.>": "ampy.dev.fx.v1", "3.ampy.dev.fx.v1.rates": "ampy.dev.fx.v1", "0.ampy.dev.fx.v1.*.*": "ampy.dev.fx.v1",
		"ampy.dev.fx.v1.>": "", "x.ampy.dev.fx.v1.>": "", "3.ampy.dev.fx.v1": "", "3.ampy.*.fx.v1.>": "",
	} {
		got, ok := prefixOfStreamSubject(subject)
		assert.Equal(t, want, got, subject)
		assert.Equal(t, want != "", ok, subject)
	}
}
