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

// Each answer the server gives an async publish reaches its callback as the
// sync path reports it: an ack, a duplicate, a refusal by the stream, and no
// stream at all (not stored, so the bus retries it).
func TestAsyncPublishAnswers(t *testing.T) {
	ctx, tr, js := openEmbedded(t)
	s := transport.Stream{Prefix: "ampy.dev.bars.v1", Partitions: 2, DedupeWindow: time.Minute, MaxPayload: 1 << 10}
	require.NoError(t, tr.EnsureStream(ctx, s))
	msg := func(id string, size int) *transport.Message {
		return &transport.Message{Topic: "ampy.dev.bars.v1.XNAS.AAPL", Payload: make([]byte, size), Headers: envelope.Headers{
			MessageID: id, PartitionKey: "XNAS.AAPL", ProducedAt: time.Now().UTC(), Trace: envelope.NewTrace(),
		}}
	}
	publish := func(m *transport.Message) (transport.PublishAck, error) {
		type outcome struct {
			ack transport.PublishAck
			err error
		}
		got := make(chan outcome, 1)
		require.NoError(t, tr.PublishAsync(ctx, s, m, func(ack transport.PublishAck, err error) { got <- outcome{ack, err} }))
		select {
		case o := <-got:
			return o.ack, o.err
		case <-time.After(10 * time.Second):
			t.Fatal("no outcome")
			return transport.PublishAck{}, nil
		}
	}
	id := envelope.NewMessageID()
	ack, err := publish(msg(id, 10))
	require.NoError(t, err)
	assert.Equal(t, transport.PublishAck{Stream: "AMPY_DEV_BARS_V1", Sequence: 1}, ack)

	ack, err = publish(msg(id, 10))
	require.NoError(t, err)
	assert.Equal(t, transport.PublishAck{Stream: "AMPY_DEV_BARS_V1", Sequence: 1, Duplicate: true}, ack, "the same message id is stored once")

	_, err = publish(msg(envelope.NewMessageID(), 200<<10))
	assert.ErrorIs(t, err, transport.ErrTooLarge, "the stream's max message size: %v", err)

	require.NoError(t, js.DeleteStream(ctx, "AMPY_DEV_BARS_V1"))
	_, err = publish(msg(envelope.NewMessageID(), 10))
	assert.ErrorIs(t, err, transport.ErrUnavailable, "no stream answered: %v", err)
	assert.NotErrorIs(t, err, transport.ErrMaybeStored, "no responders means nothing was stored")
}
