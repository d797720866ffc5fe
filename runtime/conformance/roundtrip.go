package conformance

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/ampyfin/ampy-bus/generated/bars"
	"github.com/ampyfin/ampy-bus/generated/orders"
	barsv1 "github.com/ampyfin/ampy-bus/proto/ampy/bars/v1"
	commonv1 "github.com/ampyfin/ampy-bus/proto/ampy/common/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/blob"
	"github.com/ampyfin/ampy-bus/runtime/envelope"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// Round trips: every header and payload byte arrives as sent, compressed
// or as a blob pointer when large.

func testHeadersByteExact(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	tr := s.bus(t).Transport()
	h := fullHeaders()
	payload := randomBytes(4096)
	d := roundTrip(t, ctx, tr, &transport.Message{Topic: "ampy.dev.bars.v1.XNAS.AAPL", Headers: h, Payload: payload})
	require.NoError(t, d.HeaderErr())
	got := d.Message()
	assert.Equal(t, "ampy.dev.bars.v1.XNAS.AAPL", got.Topic)
	assert.Equal(t, payload, got.Payload, "payload byte-exact")
	assert.Equal(t, h.Fields(), got.Headers.Fields(), "every header, name and value, byte-exact")
	assert.Equal(t, 1, d.Attempt())
}

func testPayloadNearMax(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	tr := s.bus(t).Transport()
	h := fullHeaders()
	payload := randomBytes(1<<20 - 1024)
	d := roundTrip(t, ctx, tr, &transport.Message{Topic: "ampy.dev.bars.v1.XNAS.AAPL", Headers: h, Payload: payload})
	assert.Equal(t, payload, d.Message().Payload)
}

func testTypedRoundTrip(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	b := s.bus(t)
	got := make(chan *orders.RequestsMessage, 1)
	sub, err := orders.SubscribeRequests(ctx, b, orders.AllRequests(), func(_ context.Context, m *orders.RequestsMessage) error {
		got <- m
		return nil
	}, ampybus.Durable("typed"), ampybus.DeliverAll())
	require.NoError(t, err)
	defer sub.Stop()
	parent := envelope.NewTrace()
	res, err := orders.NewRequestsPublisher(b).Publish(envelope.ContextWithTrace(ctx, parent), orders.NewRequestsSubtopic(), order("co_1", 7),
		ampybus.WithHeader("replay_request_id", "rr-7"))
	require.NoError(t, err)
	m := recv(t, got)
	assert.Equal(t, res.MessageID, m.Headers.MessageID)
	assert.Equal(t, "ampy.dev.orders.v1.requests", m.Topic)
	assert.Equal(t, "co_1", m.Headers.PartitionKey)
	assert.Equal(t, "co_1|"+m.Payload.GetCreatedAt().AsTime().Format(time.RFC3339Nano), m.Headers.DedupeKey)
	assert.Equal(t, parent.TraceID, m.Headers.Trace.TraceID)
	assert.Equal(t, "rr-7", m.Headers.Extra["replay_request_id"])
	assert.Equal(t, int64(7), m.Payload.GetQuantity().GetScaled())
	assert.NoError(t, m.Headers.Validate())
}

func testCompression(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	b := s.bus(t)
	big := &barsv1.BarBatch{}
	for i := range 4000 { // about 300 KiB, and very compressible
		big.Bars = append(big.Bars, &barsv1.Bar{Security: &commonv1.SecurityId{Symbol: "AAPL", Mic: "XNAS"},
			Volume: int64(i), Close: dec(1920500, 4), AdjustmentPolicyId: "split-dividend-adjusted"})
	}
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(big)
	require.NoError(t, err)
	require.Greater(t, len(raw), 128<<10)
	got := make(chan *bars.Message, 2)
	sub, err := bars.Subscribe(ctx, b, bars.All(), func(_ context.Context, m *bars.Message) error {
		got <- m
		return nil
	}, ampybus.Durable("gz"), ampybus.NoDedupe())
	require.NoError(t, err)
	defer sub.Stop()
	pub := bars.NewPublisher(b)
	for range 2 {
		_, err := pub.Publish(ctx, bars.MustSubtopic("XNAS", "AAPL"), big)
		require.NoError(t, err)
	}
	for range 2 {
		m := recv(t, got)
		assert.True(t, proto.Equal(big, m.Payload), "inflated transparently")
		assert.Equal(t, "gzip", m.Headers.ContentEncoding)
	}
	stored := readStream(t, ctx, b.Transport(), barsStream())
	require.Len(t, stored, 2)
	assert.Equal(t, ampybus.Gzip(raw), stored[0].Payload, "stored bytes are the gzip of the protobuf")
	assert.Equal(t, stored[0].Payload, stored[1].Payload, "the same payload gives the same bytes every time")
	assert.Less(t, len(stored[0].Payload), len(raw)/4)
}

func testBlobPointer(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	dir := t.TempDir()
	store, err := blob.NewFS(dir)
	require.NoError(t, err)
	b := s.bus(t, ampybus.WithBlobStore(store))
	noisy := func() *barsv1.BarBatch {
		noise := make([]byte, 3<<19)
		_, _ = rand.Read(noise)
		m := bar("AAPL", 1)
		m.Bars[0].AdjustmentPolicyId = base64.StdEncoding.EncodeToString(noise) // ~2 MiB, incompressible
		return m
	}
	want := noisy()
	got := make(chan *bars.Message, 1)
	sub, err := bars.Subscribe(ctx, b, bars.All(), func(_ context.Context, m *bars.Message) error {
		got <- m
		return nil
	}, ampybus.Durable("blobs"))
	require.NoError(t, err)
	res, err := bars.NewPublisher(b).Publish(ctx, bars.MustSubtopic("XNAS", "AAPL"), want)
	require.NoError(t, err)
	m := recv(t, got)
	require.NoError(t, sub.Stop())
	assert.True(t, proto.Equal(want, m.Payload), "fetched, verified and decoded")
	assert.Equal(t, res.MessageID, m.Headers.MessageID)
	assert.Regexp(t, `^file:///`, m.Headers.BlobRef)
	assert.Regexp(t, `^sha256:[0-9a-f]{64}$`, m.Headers.BlobHash)
	assert.Greater(t, m.Headers.BlobSize, int64(1<<20))
	stored := readStream(t, ctx, b.Transport(), barsStream())
	require.Len(t, stored, 1)
	assert.Empty(t, stored[0].Payload, "only the pointer travels on the bus")

	// A blob that changed after publishing is a poison pill.
	tampered := noisy()
	res, err = bars.NewPublisher(b).Publish(ctx, bars.MustSubtopic("XNAS", "AAPL"), tampered)
	require.NoError(t, err)
	stored = readStream(t, ctx, b.Transport(), barsStream())
	require.Len(t, stored, 2)
	u, err := url.Parse(stored[1].Headers.BlobRef)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(u.Path, []byte("not what was published"), 0o644))
	sub, err = bars.Subscribe(ctx, b, bars.All(), func(_ context.Context, m *bars.Message) error { return nil }, ampybus.Durable("blobs"))
	require.NoError(t, err)
	defer sub.Stop()
	dl := readDeadLetters(t, ctx, b, 1)
	require.Len(t, dl, 1)
	assert.Equal(t, res.MessageID, dl[0].Headers.MessageID)
	assert.Contains(t, dl[0].Headers.DLQReason, "blob_hash_mismatch: ")
	assert.Equal(t, stored[1].Headers.BlobRef, dl[0].Headers.BlobRef, "the pointer is kept for forensics")
}
