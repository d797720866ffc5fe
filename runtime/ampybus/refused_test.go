package ampybus_test

import (
	"crypto/rand"
	"encoding/base64"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ampyfin/ampy-bus/generated/bars"
	"github.com/ampyfin/ampy-bus/generated/orders"
	"github.com/ampyfin/ampy-bus/generated/signals"
	"github.com/ampyfin/ampy-bus/generated/ticks"
	commonv1 "github.com/ampyfin/ampy-bus/proto/ampy/common/v1"
	ordersv1 "github.com/ampyfin/ampy-bus/proto/ampy/orders/v1"
	signalsv1 "github.com/ampyfin/ampy-bus/proto/ampy/signals/v1"
	ticksv1 "github.com/ampyfin/ampy-bus/proto/ampy/ticks/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/blob"
	"github.com/ampyfin/ampy-bus/runtime/envelope"
)

// Publishes the contract refuses leave nothing behind: no message, no
// blob, no stream.

func TestBadInputPublishesNothing(t *testing.T) {
	srv := server(t)
	b := open(t, srv.URL(), ampybus.WithProducer("e2e@test-1", "e2e"))
	anon := open(t, srv.URL())
	ctx := testCtx(t)
	// One good message, so the streams exist and counts are meaningful.
	_, err := bars.NewPublisher(b).Publish(ctx, bars.MustSubtopic("XNAS", "AAPL"), barBatch())
	require.NoError(t, err)
	_, err = ticks.NewTradePublisher(b).Publish(ctx, ticks.MustTradeSubtopic("MSFT"),
		&ticksv1.TradeTick{Security: &commonv1.SecurityId{Symbol: "MSFT", Mic: "XNAS"}})
	require.NoError(t, err)

	// 2 MiB of base64 noise: gzip cannot bring it under 1 MiB.
	noise := make([]byte, 3<<19)
	_, _ = rand.Read(noise)
	huge := barBatch()
	huge.Bars[0].AdjustmentPolicyId = base64.StdEncoding.EncodeToString(noise)

	cases := []struct {
		name    string
		publish func() error
		is      error
		want    string
	}{
		{"bad subtopic token", func() error {
			_, err := bars.NewSubtopic("XNAS", "AAPL.O")
			return err
		}, ampybus.ErrContract, `subtopic parameter symbol="AAPL.O" must not contain '.', '*', '>', whitespace or control characters`},
		{"wildcard token", func() error {
			_, err := ticks.NewTradeSubtopic("*")
			return err
		}, ampybus.ErrContract, `subtopic parameter symbol="*"`},
		{"zero-value subtopic", func() error {
			_, err := bars.NewPublisher(b).Publish(ctx, bars.Subtopic{}, barBatch())
			return err
		}, ampybus.ErrContract, `publish ampy.dev.bars.v1..: contract violation: subtopic "." has an empty or invalid token`},
		{"payload disagrees with subtopic", func() error {
			_, err := ticks.NewTradePublisher(b).Publish(ctx, ticks.MustTradeSubtopic("AAPL"),
				&ticksv1.TradeTick{Security: &commonv1.SecurityId{Symbol: "MSFT", Mic: "XNAS"}})
			return err
		}, ampybus.ErrContract, `publish ampy.dev.ticks.v1.trade.AAPL: contract violation: payload security.symbol "MSFT" does not match subtopic {symbol} "AAPL"`},
		{"a bar of the batch for another security", func() error {
			mixed := barBatch()
			other := barBatch().Bars[0]
			other.Security = &commonv1.SecurityId{Symbol: "MSFT", Mic: "XNAS"}
			mixed.Bars = append(mixed.Bars, other)
			_, err := bars.NewPublisher(b).Publish(ctx, bars.MustSubtopic("XNAS", "AAPL"), mixed)
			return err
		}, ampybus.ErrContract, `publish ampy.dev.bars.v1.XNAS.AAPL: contract violation: payload bars[1].security.symbol "MSFT" does not match subtopic {symbol} "AAPL"`},
		{"a signal that expires when it is generated", func() error {
			at := timestamppb.Now()
			_, err := signals.NewPublisher(b).Publish(ctx, signals.MustSubtopic("hyper@2025-09-05"), &signalsv1.Signal{
				ModelId: "hyper@2025-09-05", Security: &commonv1.SecurityId{Symbol: "AAPL", Mic: "XNAS"}, GeneratedAt: at, ExpiresAt: at})
			return err
		}, ampybus.ErrContract, `is not after generated_at`},
		{"key field empty", func() error {
			_, err := ticks.NewTradePublisher(b).Publish(ctx, ticks.MustTradeSubtopic("MSFT"),
				&ticksv1.TradeTick{Security: &commonv1.SecurityId{Symbol: "MSFT"}})
			return err
		}, ampybus.ErrContract, `partition_key {symbol}.{security.mic} needs payload field security.mic, which is empty`},
		{"payload over max size", func() error {
			_, err := bars.NewPublisher(b).Publish(ctx, bars.MustSubtopic("XNAS", "AAPL"), huge)
			return err
		}, ampybus.ErrTooLarge, `over the bars domain's max_payload of 1048576 bytes: split the batch`},
		{"missing producer identity", func() error {
			_, err := bars.NewPublisher(anon).Publish(ctx, bars.MustSubtopic("XNAS", "AAPL"), barBatch())
			return err
		}, ampybus.ErrNoProducer, `publish ampy.dev.bars.v1.XNAS.AAPL: no producer identity: open the bus with ampybus.WithProducer("svc@host", "svc")`},
		{"async path checks too", func() error {
			_, err := bars.NewPublisher(anon).PublishAsync(ctx, bars.MustSubtopic("XNAS", "AAPL"), barBatch())
			return err
		}, ampybus.ErrNoProducer, `no producer identity`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			barsBefore := streamMsgs(t, srv.URL(), "AMPY_DEV_BARS_V1")
			ticksBefore := streamMsgs(t, srv.URL(), "AMPY_DEV_TICKS_V1")
			err := tc.publish()
			require.Error(t, err)
			assert.ErrorIs(t, err, tc.is)
			assert.Contains(t, err.Error(), tc.want)
			assert.Equal(t, barsBefore, streamMsgs(t, srv.URL(), "AMPY_DEV_BARS_V1"), "nothing published")
			assert.Equal(t, ticksBefore, streamMsgs(t, srv.URL(), "AMPY_DEV_TICKS_V1"), "nothing published")
		})
	}
	_, err = ampybus.Open(ctx, srv.URL(), ampybus.WithProducer("only-producer", ""))
	assert.ErrorIs(t, err, ampybus.ErrNoProducer)
}

// A string proto requires be UTF-8 that is not is refused, as proto.Marshal
// refuses it, though the generated methods that encode BarBatch do not check:
// the generated CheckUTF8 does, naming the field; nothing is published.
func TestInvalidUTF8IsRefused(t *testing.T) {
	srv := server(t)
	b := open(t, srv.URL(), ampybus.WithProducer("e2e@test-1", "e2e"))
	ctx := testCtx(t)
	pub := bars.NewPublisher(b)
	_, err := pub.Publish(ctx, bars.MustSubtopic("XNAS", "AAPL"), barBatch())
	require.NoError(t, err)
	before := streamMsgs(t, srv.URL(), "AMPY_DEV_BARS_V1")
	bad := barBatch()
	bad.Bars[0].Meta = &commonv1.Meta{Source: "feed\xff"}
	_, err = pub.Publish(ctx, bars.MustSubtopic("XNAS", "AAPL"), bad)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "publish ampy.dev.bars.v1.XNAS.AAPL: marshal ampy.bars.v1.BarBatch: string field ampy.common.v1.Meta.source contains invalid UTF-8")
	_, err = pub.PublishAsync(ctx, bars.MustSubtopic("XNAS", "AAPL"), bad)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ampy.common.v1.Meta.source contains invalid UTF-8")
	require.NoError(t, b.Flush(ctx))
	assert.Equal(t, before, streamMsgs(t, srv.URL(), "AMPY_DEV_BARS_V1"), "nothing published")
}

// A publish that fails validation has no side effect: no blob stored, no
// stream created, nothing sent. Each case would need a blob (the payload is
// over max_payload), and the bus has not touched the broker yet.
func TestRefusedPublishLeavesNoTrace(t *testing.T) {
	srv := server(t)
	dir := t.TempDir()
	store, err := blob.NewFS(dir)
	require.NoError(t, err)
	b := open(t, srv.URL(), ampybus.WithProducer("e2e@test-1", "e2e"), ampybus.WithBlobStore(store))
	ctx := testCtx(t)
	noise := make([]byte, 3<<19)
	_, _ = rand.Read(noise)
	huge := barBatch()
	huge.Bars[0].AdjustmentPolicyId = base64.StdEncoding.EncodeToString(noise)

	for _, tc := range []struct {
		name string
		opts []ampybus.PublishOption
		want string
	}{
		{"overrides an envelope header", []ampybus.PublishOption{ampybus.WithHeader("partition_key", "x")}, `WithHeader("partition_key") would override an envelope header`},
		{"overrides a binding header", []ampybus.PublishOption{ampybus.WithHeader("subtopic", "x")}, `WithHeader("subtopic") would override a header the broker binding writes`},
		{"NATS header", []ampybus.PublishOption{ampybus.WithHeader("Nats-Msg-Id", "x")}, `WithHeader("Nats-Msg-Id")`},
		{"header name with a space", []ampybus.PublishOption{ampybus.WithHeader("my header", "x")}, `a header name is printable ASCII without spaces or ':'`},
		{"header value with a line break", []ampybus.PublishOption{ampybus.WithHeader("note", "a\r\nb")}, `the value contains a line break`},
		{"message id not UUIDv7", []ampybus.PublishOption{ampybus.WithMessageID("0b7e0c2e-7d1a-4c1b-9d1e-0c2e7d1a4c1b")}, `is not a UUIDv7`},
		{"headers over the size limit", []ampybus.PublishOption{ampybus.WithHeader("big", strings.Repeat("a", envelope.MaxHeaderBytes))}, `bytes of header keys and values, over the limit of 16384`},
		{"too many headers", func() []ampybus.PublishOption {
			var opts []ampybus.PublishOption
			for i := range envelope.MaxHeaders {
				opts = append(opts, ampybus.WithHeader("x-"+strconv.Itoa(i), "1"))
			}
			return opts
		}(), `headers, over the limit of 64`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := bars.NewPublisher(b).Publish(ctx, bars.MustSubtopic("XNAS", "AAPL"), huge, tc.opts...)
			require.ErrorIs(t, err, ampybus.ErrContract)
			assert.Contains(t, err.Error(), tc.want)
			blobs, err := os.ReadDir(dir)
			require.NoError(t, err)
			assert.Empty(t, blobs, "no blob stored")
			_, err = rawJS(t, srv.URL()).Stream(ctx, "AMPY_DEV_BARS_V1")
			assert.ErrorIs(t, err, jetstream.ErrStreamNotFound, "no stream ensured")
		})
	}
	// The same publish without the bad option goes through, as a pointer.
	res, err := bars.NewPublisher(b).Publish(ctx, bars.MustSubtopic("XNAS", "AAPL"), huge, ampybus.WithHeader("note", "ok"))
	require.NoError(t, err)
	assert.Equal(t, "AMPY_DEV_BARS_V1", res.Stream)
	blobs, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, blobs, 1)
}

// A key derived from the payload counts toward the header limit too: a
// message every consumer would dead-letter is refused at publish.
func TestOversizedKeyIsRefusedAtPublish(t *testing.T) {
	srv := server(t)
	b := open(t, srv.URL(), ampybus.WithProducer("e2e@test-1", "e2e"))
	ctx := testCtx(t)
	o := &ordersv1.OrderRequest{AccountId: "ACC-1", ClientOrderId: strings.Repeat("c", envelope.MaxHeaderBytes/2), CreatedAt: timestamppb.Now()}
	_, err := orders.NewRequestsPublisher(b).Publish(ctx, orders.NewRequestsSubtopic(), o)
	require.ErrorIs(t, err, ampybus.ErrContract)
	assert.Contains(t, err.Error(), "bytes of header keys and values, over the limit of 16384: shorten the key fields")
	assert.Zero(t, streamMsgs(t, srv.URL(), "AMPY_DEV_ORDERS_V1"))
}
