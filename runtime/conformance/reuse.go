package conformance

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/ampyfin/ampy-bus/generated/bars"
	barsv1 "github.com/ampyfin/ampy-bus/proto/ampy/bars/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/envelope"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// testAsyncMessageReuse holds a binding to the rule the typed publisher's
// pool relies on: once PublishAsync's done has returned, the message is the
// caller's again. One message, its payload buffer included, is refilled in
// place for every publish; the stream must hold each publish as it was
// when handed over.
func testAsyncMessageReuse(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	tr := s.bus(t).Transport()
	st := barsStream()
	require.NoError(t, tr.EnsureStream(ctx, st))

	const n = 40
	run := envelope.NewMessageID()[24:] // this run's messages, apart from other cases'
	m := &transport.Message{Payload: make([]byte, 256)}
	want := map[string]envelope.Headers{}
	wantPayload := map[string][]byte{}
	for i := range n {
		sym := "R" + strconv.Itoa(i%3)
		m.Topic = st.Prefix + ".XNAS." + sym
		m.Headers = envelope.Headers{
			MessageID: envelope.NewMessageID(), SchemaFQDN: "ampy.bars.v1.BarBatch", SchemaVersion: "1.0.0",
			ContentType: envelope.ContentTypeProtobuf, ProducedAt: time.Now().UTC(), Producer: "conformance@reuse",
			RunID: run, Trace: envelope.NewTrace(), PartitionKey: "XNAS." + sym,
			Extra: map[string]string{"reuse_index": strconv.Itoa(i)},
		}
		for j := range m.Payload { // in place: the buffer the last publish was handed
			m.Payload[j] = byte(i + j)
		}
		want[m.Headers.MessageID] = m.Headers
		wantPayload[m.Headers.MessageID] = append([]byte(nil), m.Payload...)

		answered := make(chan error, 1)
		require.NoError(t, tr.PublishAsync(ctx, st, m, func(_ transport.PublishAck, err error) { answered <- err }))
		select {
		case err := <-answered:
			require.NoError(t, err, "publish %d", i)
		case <-ctx.Done():
			t.Fatalf("publish %d: no answer: %v", i, ctx.Err())
		}
	}

	got := 0
	for _, msg := range readStream(t, ctx, tr, st) {
		if msg.Headers.RunID != run {
			continue
		}
		h, ok := want[msg.Headers.MessageID]
		if !assert.True(t, ok, "stored a message id never published: %s (the message was read after it was reused)", msg.Headers.MessageID) {
			continue
		}
		got++
		assert.Equal(t, h.Fields(), msg.Headers.Fields(), "headers of %s as handed over", h.MessageID)
		assert.Equal(t, wantPayload[h.MessageID], msg.Payload, "payload of %s as handed over", h.MessageID)
		assert.Equal(t, st.Prefix+"."+h.PartitionKey, msg.Topic, "topic of %s as handed over", h.MessageID)
	}
	assert.Equal(t, n, got, "every publish stored once")
}

// testTypedAsyncPayloads: the generated publisher recycles each async
// publish's state and payload buffer once the binding has answered. Waves
// of async publishes of payloads of varying size, each wave refilling the
// buffers the last one gave back: every stored message must carry exactly
// the payload published under its id.
func testTypedAsyncPayloads(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	b := s.bus(t)
	require.NoError(t, b.Ensure(ctx, bars.Domain))
	pub := bars.NewPublisher(b)

	const waves, perWave = 4, 150
	sent := map[string]*barsv1.BarBatch{}
	for w := range waves {
		var wave []*ampybus.PublishFuture
		var msgs []*barsv1.BarBatch
		for i := range perWave {
			n := w*perWave + i
			sym := "P" + strings.Repeat("Q", n%7) // sizes vary, so a buffer is refilled shorter and longer
			msg := bar(sym, int64(n)<<(n%40))
			f, err := pub.PublishAsync(ctx, bars.MustSubtopic("XNAS", sym), msg)
			require.NoError(t, err, "publish %d", n)
			wave, msgs = append(wave, f), append(msgs, msg)
		}
		waitAll(t, ctx, wave, msgs, sent)
	}

	got := 0
	for _, m := range readStream(t, ctx, b.Transport(), barsStream()) {
		want, ok := sent[m.Headers.MessageID]
		if !ok {
			continue // another case's message
		}
		got++
		var have barsv1.BarBatch
		require.NoError(t, proto.Unmarshal(m.Payload, &have), "payload of %s", m.Headers.MessageID)
		assert.True(t, proto.Equal(want, &have), "payload of %s is what was published under its id: want %v, got %v", m.Headers.MessageID, want, &have)
	}
	assert.Equal(t, waves*perWave, got, "every publish stored once")
}

// waitAll waits for fs and records each of msgs under the id it was stored
// with.
func waitAll(t *testing.T, ctx context.Context, fs []*ampybus.PublishFuture, msgs []*barsv1.BarBatch, into map[string]*barsv1.BarBatch) {
	t.Helper()
	for i, f := range fs {
		res, err := f.Wait(ctx)
		require.NoError(t, err)
		into[res.MessageID] = msgs[i]
	}
}
