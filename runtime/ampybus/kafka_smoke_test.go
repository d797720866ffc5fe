package ampybus_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/ampyfin/ampy-bus/generated/bars"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
)

func TestKafkaSmoke(t *testing.T) {
	ctx := testCtx(t)
	b := open(t, "embedded://kafka", ampybus.WithProducer("e2e@test-1", "e2e"))
	got := newReceived[bars.Message]()
	s, err := bars.Subscribe(ctx, b, bars.All(), got.handle, ampybus.Durable("k"), ampybus.DeliverAll())
	require.NoError(t, err)
	defer s.Stop()
	res, err := bars.NewPublisher(b).Publish(ctx, bars.MustSubtopic("XNAS", "AAPL"), barBatch())
	require.NoError(t, err)
	t.Logf("%+v", res)
	m := got.next(t)
	require.True(t, proto.Equal(barBatch(), m.Payload))
	require.Equal(t, "ampy.dev.bars.v1.XNAS.AAPL", m.Topic)
	t.Logf("%+v", m.Headers)
}
