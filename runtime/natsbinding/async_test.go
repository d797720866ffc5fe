package natsbinding_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/runtime/envelope"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// Flush returns only after every async publish sent before it has been
// completed: its done callback (where the bus runs hooks and schedules
// retries) has returned, however slow it is.
func TestFlushWaitsForCompletions(t *testing.T) {
	ctx, tr, _ := openEmbedded(t)
	s := transport.Stream{Prefix: "ampy.dev.bars.v1", Partitions: 2, DedupeWindow: time.Minute}
	require.NoError(t, tr.EnsureStream(ctx, s))
	const n = 50
	var completed atomic.Int32
	for i := range n {
		m := &transport.Message{Topic: "ampy.dev.bars.v1.XNAS.AAPL", Payload: []byte{byte(i)}, Headers: envelope.Headers{
			MessageID: envelope.NewMessageID(), PartitionKey: "XNAS.AAPL", ProducedAt: time.Now().UTC(), Trace: envelope.NewTrace(),
		}}
		require.NoError(t, tr.PublishAsync(ctx, s, m, func(_ transport.PublishAck, err error) {
			assert.NoError(t, err)
			time.Sleep(2 * time.Millisecond) // a slow hook
			completed.Add(1)
		}))
	}
	require.NoError(t, tr.Flush(ctx))
	assert.EqualValues(t, n, completed.Load(), "Flush returned before every completion had run")
}
