package ampybus_test

import (
	"context"
	"encoding/hex"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ampyfin/ampy-bus/generated/bars"
	"github.com/ampyfin/ampy-bus/generated/fills"
	"github.com/ampyfin/ampy-bus/generated/orders"
	"github.com/ampyfin/ampy-bus/generated/ticks"
	barsv1 "github.com/ampyfin/ampy-bus/proto/ampy/bars/v1"
	commonv1 "github.com/ampyfin/ampy-bus/proto/ampy/common/v1"
	fillsv1 "github.com/ampyfin/ampy-bus/proto/ampy/fills/v1"
	ordersv1 "github.com/ampyfin/ampy-bus/proto/ampy/orders/v1"
	ticksv1 "github.com/ampyfin/ampy-bus/proto/ampy/ticks/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/embedded"
	"github.com/ampyfin/ampy-bus/runtime/envelope"
	"github.com/ampyfin/ampy-bus/runtime/natsbinding"
	"github.com/ampyfin/ampy-bus/runtime/schema"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// server starts an embedded JetStream server for one test.
func server(t *testing.T) *embedded.NATS {
	t.Helper()
	e, err := embedded.StartNATS(embedded.NATSOptions{})
	require.NoError(t, err)
	t.Cleanup(e.Shutdown)
	return e
}

func open(t *testing.T, url string, opts ...ampybus.Option) *ampybus.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := ampybus.Open(ctx, url, append([]ampybus.Option{ampybus.WithProvisioning()}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func dec(scaled int64, scale int32) *commonv1.Decimal {
	return &commonv1.Decimal{Scaled: scaled, Scale: scale}
}

var at = time.Date(2025, 9, 5, 19, 30, 0, 0, time.UTC)

func barBatch() *barsv1.BarBatch {
	sec := &commonv1.SecurityId{Symbol: "AAPL", Mic: "XNAS"}
	return &barsv1.BarBatch{Bars: []*barsv1.Bar{{
		Security: sec, Start: timestamppb.New(at), End: timestamppb.New(at.Add(time.Minute)),
		Open: dec(1919900, 4), High: dec(1921000, 4), Low: dec(1918800, 4), Close: dec(1920500, 4),
		Volume: 120345, TradeCount: 812, Adjusted: true, EventTime: timestamppb.New(at.Add(time.Minute)),
		AdjustmentPolicy: commonv1.AdjustmentPolicy_ADJUSTMENT_POLICY_SPLIT_DIVIDEND,
	}}}
}

// received collects what a typed handler got.
type received[M any] struct{ ch chan *M }

func newReceived[M any]() received[M] { return received[M]{ch: make(chan *M, 16)} }

func (r received[M]) handle(_ context.Context, m *M) error { r.ch <- m; return nil }

func (r received[M]) next(t *testing.T) *M {
	t.Helper()
	select {
	case m := <-r.ch:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message within 10s")
		return nil
	}
}

var uuidV7 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// checkHeaders asserts the envelope every published message must carry.
func checkHeaders(t *testing.T, h envelope.Headers, fqdn, pk, dk string, before time.Time) {
	t.Helper()
	assert.Regexp(t, uuidV7, h.MessageID)
	assert.Equal(t, fqdn, h.SchemaFQDN)
	assert.Equal(t, "1.0.0", h.SchemaVersion)
	assert.Equal(t, "application/x-protobuf", h.ContentType)
	assert.Empty(t, h.ContentEncoding)
	assert.WithinDuration(t, before, h.ProducedAt, 5*time.Second)
	assert.Equal(t, time.UTC, h.ProducedAt.Location())
	assert.Equal(t, "e2e@test-1", h.Producer)
	assert.Equal(t, "e2e", h.Source)
	assert.Equal(t, "run_e2e", h.RunID)
	assert.True(t, h.Trace.Valid(), "traceparent must never be all zeros")
	assert.Equal(t, pk, h.PartitionKey)
	assert.Equal(t, dk, h.DedupeKey)
	assert.Zero(t, h.RetryCount)
	assert.Empty(t, h.DLQReason)
	assert.True(t, strings.HasPrefix(h.SchemaHash, "sha256:"), h.SchemaHash)
	assert.NoError(t, h.Validate())
}

func TestTypedRoundTrip(t *testing.T) {
	srv := server(t)
	pub := open(t, srv.URL(), ampybus.WithProducer("e2e@test-1", "e2e"), ampybus.WithRunID("run_e2e"), ampybus.WithEnv("prod"))
	sub := open(t, srv.URL(), ampybus.WithEnv("prod"))
	ctx := testCtx(t)
	before := time.Now()

	t.Run("bars", func(t *testing.T) {
		got := newReceived[bars.Message]()
		s, err := bars.Subscribe(ctx, sub, bars.All(), got.handle, ampybus.Durable("e2e-bars"))
		require.NoError(t, err)
		defer s.Stop()
		want := barBatch()
		res, err := bars.NewPublisher(pub).Publish(ctx, bars.MustSubtopic("XNAS", "AAPL"), want)
		require.NoError(t, err)
		assert.Equal(t, "ampy.prod.bars.v1.XNAS.AAPL", res.Topic)
		assert.Equal(t, "AMPY_PROD_BARS_V1", res.Stream)
		m := got.next(t)
		assert.True(t, proto.Equal(want, m.Payload), "payload differs")
		assert.Equal(t, "ampy.prod.bars.v1.XNAS.AAPL", m.Topic)
		assert.Equal(t, "XNAS", m.Subtopic.MIC())
		assert.Equal(t, "AAPL", m.Subtopic.Symbol())
		assert.Equal(t, res.MessageID, m.Headers.MessageID)
		assert.Equal(t, 1, m.Attempt)
		checkHeaders(t, m.Headers, "ampy.bars.v1.BarBatch", "XNAS.AAPL", "", before)
		assert.Equal(t, bars.SchemaHash, m.Headers.SchemaHash)
	})

	t.Run("ticks", func(t *testing.T) {
		trades, quotes := newReceived[ticks.TradeMessage](), newReceived[ticks.QuoteMessage]()
		s1, err := ticks.SubscribeTrade(ctx, sub, ticks.AllTrade(), trades.handle)
		require.NoError(t, err)
		defer s1.Stop()
		s2, err := ticks.SubscribeQuote(ctx, sub, ticks.MustQuoteSubtopic("MSFT").Pattern(), quotes.handle)
		require.NoError(t, err)
		defer s2.Stop()
		sec := &commonv1.SecurityId{Symbol: "MSFT", Mic: "XNAS"}
		trade := &ticksv1.TradeTick{Security: sec, Price: dec(4123450, 4), Size: 100, Venue: "XNAS", EventTime: timestamppb.New(at)}
		quote := &ticksv1.QuoteTick{Security: sec, Bid: dec(4123400, 4), BidSize: 200, Ask: dec(4123500, 4), AskSize: 300, EventTime: timestamppb.New(at)}
		_, err = ticks.NewTradePublisher(pub).Publish(ctx, ticks.MustTradeSubtopic("MSFT"), trade)
		require.NoError(t, err)
		_, err = ticks.NewQuotePublisher(pub).Publish(ctx, ticks.MustQuoteSubtopic("MSFT"), quote)
		require.NoError(t, err)
		tm, qm := trades.next(t), quotes.next(t)
		assert.True(t, proto.Equal(trade, tm.Payload))
		assert.True(t, proto.Equal(quote, qm.Payload))
		assert.Equal(t, "ampy.prod.ticks.v1.trade.MSFT", tm.Topic)
		assert.Equal(t, "ampy.prod.ticks.v1.quote.MSFT", qm.Topic)
		checkHeaders(t, tm.Headers, "ampy.ticks.v1.TradeTick", "MSFT.XNAS", "", before)
		checkHeaders(t, qm.Headers, "ampy.ticks.v1.QuoteTick", "MSFT.XNAS", "", before)
		select {
		case m := <-trades.ch:
			t.Fatalf("trade subscription got an extra message on %s", m.Topic)
		default:
		}
	})

	t.Run("orders and fills", func(t *testing.T) {
		gotOrders, gotFills := newReceived[orders.RequestsMessage](), newReceived[fills.EventsMessage]()
		s1, err := orders.SubscribeRequests(ctx, sub, orders.AllRequests(), gotOrders.handle, ampybus.Durable("oms"))
		require.NoError(t, err)
		defer s1.Stop()
		s2, err := fills.SubscribeEvents(ctx, sub, fills.AllEvents(), gotFills.handle, ampybus.Durable("pnl"))
		require.NoError(t, err)
		defer s2.Stop()
		order := &ordersv1.OrderRequest{
			AccountId: "ALPACA-LIVE-01", ClientOrderId: "co_20250905_001",
			Security: &commonv1.SecurityId{Symbol: "AAPL", Mic: "XNAS"}, Side: commonv1.Side_SIDE_BUY,
			OrderType: commonv1.OrderType_ORDER_TYPE_LIMIT, Tif: commonv1.TimeInForce_TIME_IN_FORCE_DAY,
			Quantity: dec(100, 0), LimitPrice: dec(1919900, 4), CreatedAt: timestamppb.New(at),
		}
		fill := &fillsv1.FillEvent{
			AccountId: "ALPACA-LIVE-01", ClientOrderId: "co_20250905_001", BrokerOrderId: "alp-9",
			Security: order.Security, Price: dec(1919800, 4), Quantity: dec(40, 0), Venue: "ALPACA", EventTime: timestamppb.New(at),
		}
		_, err = orders.NewRequestsPublisher(pub).Publish(ctx, orders.NewRequestsSubtopic(), order)
		require.NoError(t, err)
		_, err = fills.NewEventsPublisher(pub).Publish(ctx, fills.NewEventsSubtopic(), fill)
		require.NoError(t, err)
		om, fm := gotOrders.next(t), gotFills.next(t)
		assert.True(t, proto.Equal(order, om.Payload))
		assert.True(t, proto.Equal(fill, fm.Payload))
		checkHeaders(t, om.Headers, "ampy.orders.v1.OrderRequest", "co_20250905_001", "co_20250905_001|2025-09-05T19:30:00Z", before)
		checkHeaders(t, fm.Headers, "ampy.fills.v1.FillEvent", "ALPACA-LIVE-01|co_20250905_001", "", before)
	})
}

func TestWireHeaders(t *testing.T) {
	srv := server(t)
	b := open(t, srv.URL(), ampybus.WithProducer("yfinance-go@ingest-1", "yfinance-go"), ampybus.WithRunID("run_abc123"), ampybus.WithEnv("prod"))
	ctx := testCtx(t)
	// A trace in the context continues as a child span on the wire.
	parent := envelope.NewTrace()
	res, err := bars.NewPublisher(b).Publish(envelope.ContextWithTrace(ctx, parent), bars.MustSubtopic("XNAS", "AAPL"), barBatch())
	require.NoError(t, err)

	// Read the stored message with plain nats.go, as any other client would.
	st, err := rawJS(t, srv.URL()).Stream(ctx, "AMPY_PROD_BARS_V1")
	require.NoError(t, err)
	raw, err := st.GetMsg(ctx, res.Sequence)
	require.NoError(t, err)
	assert.Equal(t, natsbinding.Subject("ampy.prod.bars.v1.XNAS.AAPL", "XNAS.AAPL", bars.Domain.Partitions), raw.Subject)
	assert.Equal(t, strconv.Itoa(int(transport.Partition("XNAS.AAPL", 12)))+".ampy.prod.bars.v1.XNAS.AAPL", raw.Subject,
		"stored under the key's partition, the one Kafka uses")

	h := raw.Header
	want := map[string]string{
		"schema_fqdn":    "ampy.bars.v1.BarBatch",
		"schema_version": "1.0.0",
		"content_type":   "application/x-protobuf",
		"producer":       "yfinance-go@ingest-1",
		"source":         "yfinance-go",
		"run_id":         "run_abc123",
		"partition_key":  "XNAS.AAPL",
		"schema_hash":    bars.SchemaHash,
		"message_id":     res.MessageID,
		"Nats-Msg-Id":    res.MessageID,
	}
	for k, v := range want {
		assert.Equal(t, []string{v}, h[k], "header %s", k)
	}
	// Exactly the seed's lower_snake_case names, plus traceparent and produced_at.
	var keys []string
	for k := range h {
		keys = append(keys, k)
	}
	assert.ElementsMatch(t, []string{"message_id", "schema_fqdn", "schema_version", "content_type", "produced_at",
		"producer", "source", "run_id", "traceparent", "partition_key", "schema_hash",
		"Nats-Msg-Id", "Nats-Expected-Stream"}, keys, "JetStream's own Nats-* headers aside, only envelope headers")

	id, err := uuid.Parse(h.Get("message_id"))
	require.NoError(t, err)
	assert.Equal(t, uuid.Version(7), id.Version())
	produced, err := time.Parse(time.RFC3339Nano, h.Get("produced_at"))
	require.NoError(t, err)
	assert.True(t, strings.HasSuffix(h.Get("produced_at"), "Z"), "produced_at must be UTC")
	assert.WithinDuration(t, time.Now(), produced, 10*time.Second)

	tp := h.Get("traceparent")
	require.Regexp(t, `^00-[0-9a-f]{32}-[0-9a-f]{16}-01$`, tp)
	assert.Equal(t, parent.TraceIDHex(), tp[3:35], "the trace id continues the caller's trace")
	assert.NotEqual(t, parent.SpanIDHex(), tp[36:52], "the message gets its own span")
	assert.NotEqual(t, strings.Repeat("0", 32), tp[3:35])

	// The payload bytes are the deterministic protobuf encoding.
	wantBytes, err := proto.MarshalOptions{Deterministic: true}.Marshal(barBatch())
	require.NoError(t, err)
	assert.Equal(t, hex.EncodeToString(wantBytes), hex.EncodeToString(raw.Data))
	assert.Equal(t, schema.Hash((&barsv1.BarBatch{}).ProtoReflect().Descriptor()), bars.SchemaHash)
}

// rawJS is a plain nats.go JetStream client, independent of the bus under test.
func rawJS(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js
}

func streamMsgs(t *testing.T, url, stream string) uint64 {
	t.Helper()
	st, err := rawJS(t, url).Stream(context.Background(), stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0
	}
	require.NoError(t, err)
	info, err := st.Info(context.Background())
	require.NoError(t, err)
	return info.State.Msgs
}

func TestWithMessageIDDeduplicates(t *testing.T) {
	srv := server(t)
	b := open(t, srv.URL(), ampybus.WithProducer("e2e@test-1", "e2e"))
	ctx := testCtx(t)
	pub := bars.NewPublisher(b)
	id := envelope.NewMessageID()
	first, err := pub.Publish(ctx, bars.MustSubtopic("XNAS", "AAPL"), barBatch(), ampybus.WithMessageID(id))
	require.NoError(t, err)
	again, err := pub.Publish(ctx, bars.MustSubtopic("XNAS", "AAPL"), barBatch(), ampybus.WithMessageID(id))
	require.NoError(t, err)
	assert.False(t, first.Duplicate)
	assert.True(t, again.Duplicate, "JetStream recognises the repeated message id")
	assert.Equal(t, uint64(1), streamMsgs(t, srv.URL(), "AMPY_DEV_BARS_V1"))
	_, err = pub.Publish(ctx, bars.MustSubtopic("XNAS", "AAPL"), barBatch(), ampybus.WithMessageID("0b7e0c2e-7d1a-4c1b-9d1e-0c2e7d1a4c1b"))
	assert.ErrorIs(t, err, ampybus.ErrContract)
	assert.ErrorContains(t, err, "is not a UUIDv7")
}

func TestOpenErrors(t *testing.T) {
	ctx := testCtx(t)
	_, err := ampybus.Open(ctx, "nats://127.0.0.1:1")
	assert.ErrorIs(t, err, ampybus.ErrUnavailable)
	assert.ErrorContains(t, err, "connect to NATS at nats://127.0.0.1:1")
	assert.ErrorContains(t, err, "is nats-server running there with JetStream enabled, -js?")

	_, err = ampybus.Open(ctx, "amqp://127.0.0.1:5672")
	assert.ErrorIs(t, err, ampybus.ErrBadURL)
	assert.ErrorContains(t, err, `no binding for the URL scheme "amqp": this program has embedded://, kafka://, nats://`)

	_, err = ampybus.Open(ctx, "embedded://rabbit")
	assert.ErrorIs(t, err, ampybus.ErrBadURL)
	assert.ErrorContains(t, err, "use embedded://nats or embedded://kafka")

	_, err = ampybus.Open(ctx, "127.0.0.1:4222")
	assert.ErrorIs(t, err, ampybus.ErrBadURL)
	assert.ErrorContains(t, err, "want scheme://host")
}

// A bus runs over a transport the caller opened with the binding's own Open:
// it provisions only when asked, the same typed round trip follows, and
// closing the bus closes the transport.
func TestNewBusOverAnOpenedTransport(t *testing.T) {
	ctx := testCtx(t)
	srv, err := embedded.StartNATS(embedded.NATSOptions{})
	require.NoError(t, err)
	defer srv.Shutdown()
	tr, err := natsbinding.Open(ctx, natsbinding.Config{URL: srv.URL()})
	require.NoError(t, err)
	_, err = ampybus.NewBus(nil)
	assert.ErrorContains(t, err, "the transport is nil")
	b, err := ampybus.NewBus(tr, ampybus.WithProducer("newbus@test", "newbus"))
	require.NoError(t, err)
	// Without WithProvisioning the bus creates nothing: a missing stream is
	// an error that says how to provision it.
	_, err = bars.NewPublisher(b).Publish(ctx, bars.MustSubtopic("XNAS", "AAPL"), barBatch())
	require.ErrorIs(t, err, transport.ErrNotFound)
	assert.ErrorContains(t, err, "stream AMPY_DEV_BARS_V1 (ampy.dev.bars.v1.>) does not exist: provision it with ampybusctl ensure-topic --topic ampy.dev.bars.v1")
	require.NoError(t, b.Ensure(ctx, bars.Domain), "Ensure provisions whatever the bus's default")
	got := make(chan *bars.Message, 1)
	sub, err := bars.Subscribe(ctx, b, bars.All(), func(_ context.Context, m *bars.Message) error {
		got <- m
		return nil
	})
	require.NoError(t, err)
	_, err = bars.NewPublisher(b).Publish(ctx, bars.MustSubtopic("XNAS", "AAPL"), barBatch())
	require.NoError(t, err)
	select {
	case m := <-got:
		assert.Equal(t, "newbus@test", m.Headers.Producer)
	case <-ctx.Done():
		t.Fatal("nothing delivered")
	}
	require.NoError(t, sub.Stop())
	require.NoError(t, b.Close())
	_, err = tr.Publish(ctx, transport.Stream{Prefix: "ampy.dev.bars.v1"}, &transport.Message{Topic: "ampy.dev.bars.v1.XNAS.AAPL"})
	assert.ErrorIs(t, err, transport.ErrClosed, "closing the bus closed the transport")
}
