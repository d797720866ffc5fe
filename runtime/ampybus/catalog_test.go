package ampybus_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ampyfin/ampy-bus/generated"
	"github.com/ampyfin/ampy-bus/generated/orders"
	ordersv1 "github.com/ampyfin/ampy-bus/proto/ampy/orders/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

func TestCatalogResolve(t *testing.T) {
	cat := generated.Catalog
	tests := []struct {
		topic    string
		domain   string
		subtopic string
		schema   string
		err      string
	}{
		{topic: "ampy.prod.bars.v1.XNAS.AAPL", domain: "bars", subtopic: "XNAS.AAPL", schema: "ampy.bars.v1.BarBatch"},
		{topic: "ampy.dev.ticks.v1.quote.MSFT", domain: "ticks", subtopic: "quote.MSFT", schema: "ampy.ticks.v1.QuoteTick"},
		{topic: "ampy.paper.orders.v1.requests", domain: "orders", subtopic: "requests", schema: "ampy.orders.v1.OrderRequest"},
		{topic: "ampy.prod.dlq.v1.bars", domain: "dlq", subtopic: "bars"},
		{topic: "ampy.prod_bars_v1_XNAS_AAPL", err: `uses underscores where dots belong: use "ampy.prod.bars.v1.XNAS.AAPL"`},
		{topic: "ampy.dev_bars_v1_XNAS_AAPL", err: `use "ampy.dev.bars.v1.XNAS.AAPL"`},
		{topic: "ampy.prod.corporate_actions.v1.XNAS.AAPL", domain: "corporate_actions", subtopic: "XNAS.AAPL", schema: "ampy.corporate_actions.v1.CorporateActionBatch"},
		{topic: "ampy.live.corporate_actions.v1.XNAS.AAPL", err: `env "live" is not in the contract`},
		{topic: "test.message", err: `"test.message" is outside the contract: topics are ampy.{env}.{domain}.{version}.{subtopic}`},
		{topic: "ampy.live.bars.v1.XNAS.AAPL", err: `env "live" is not in the contract; envs are dev, paper, prod`},
		{topic: "ampy.prod.barz.v1.XNAS.AAPL", err: `domain "barz" is not in the contract; domains are bars, ticks,`},
		{topic: "ampy.prod.bars.v2.XNAS.AAPL", err: `the contract has bars at v1, not v2`},
		{topic: "ampy.prod.bars.v1.AAPL", err: `subtopic "AAPL" does not match the bars domain's {mic}.{symbol}`},
		{topic: "ampy.prod.ticks.v1.trades.MSFT", err: `trade.{symbol} or quote.{symbol}`},
		{topic: "ampy.prod.bars.v1.>", err: "has wildcards"},
		{topic: "ampy.prod.bars.v1", err: "has no subtopic"},
		{topic: "ampy.prod..bars.v1.X", err: "empty token"},
		{topic: "", err: "the topic is empty"},
		{topic: "ampy.prod.bars.v1.XNAS.AAPL.extra", err: `subtopic "XNAS.AAPL.extra" does not match the bars domain's {mic}.{symbol}: did you mean ampy.prod.bars.v1.XNAS.AAPL?`},
		{topic: "ampy.prod.bars.v1.AAPL", err: `did you mean ampy.prod.bars.v1.AAPL.{symbol}?`},
		{topic: "ampy.prod.ticks.v1.trades.MSFT", err: `trade.{symbol} or quote.{symbol}`},
		{topic: "ampy.prod.ticks.v1.MSFT.trade", err: `trade.{symbol} or quote.{symbol}`},
		{topic: "ampy.prod.dlq.v1.ampy.prod.bars.v1.XNAS.AAPL", err: `the dlq domain's subtopic names the domain whose dead letters it holds: one of bars, ticks,`},
		{topic: "ampy.prod.dlq.v1.ampy.prod.bars.v1.XNAS.AAPL", err: `did you mean ampy.prod.dlq.v1.bars?`},
		{topic: "ampy.prod.dlq.v1.nosuch", err: `the dlq domain's subtopic names the domain whose dead letters it holds`},
		{topic: "ampy.prod.dlq.v1.\x00", err: `invalid token "\x00"`},
		{topic: "ampy.prod.bars.v1.XNAS.AA\x7fPL", err: `invalid token`},
		{topic: "ampy.prod.bars.v1.XNAS.\xff", err: `invalid token`},
	}
	for _, tt := range tests {
		t.Run(tt.topic, func(t *testing.T) {
			got, err := cat.Resolve(tt.topic)
			if tt.err != "" {
				require.Error(t, err)
				assert.ErrorIs(t, err, ampybus.ErrContract)
				assert.Contains(t, err.Error(), tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.domain, got.Domain.Name)
			assert.Equal(t, tt.subtopic, got.Subtopic)
			if tt.schema == "" {
				assert.Nil(t, got.Route)
			} else {
				assert.Equal(t, tt.schema, got.Route.Spec.Schema.FQDN)
			}
		})
	}
}

func TestCatalogResolveSubject(t *testing.T) {
	cat := generated.Catalog
	tests := []struct {
		subject string
		domains int
		err     string
	}{
		{subject: "ampy.prod.bars.v1.>", domains: 1},
		{subject: "ampy.prod.ticks.v1.trade.*", domains: 1},
		{subject: "ampy.prod.dlq.v1.>", domains: 1},
		{subject: "ampy.prod.>", domains: len(cat.Domains())},
		{subject: "ampy.prod.*.v1.>", domains: len(cat.Domains())},
		{subject: "ampy.>", err: "must name one env"},
		{subject: "ampy.prod.bars.v1", err: "add .> for the whole domain"},
		{subject: "ampy.prod.bars.>.x", err: "> must be the last token"},
		{subject: "ampy.prod_bars_v1.>", err: "underscores where dots belong"},
		{subject: "ampy.prod.bars", err: "stops at the domain and matches nothing: add the version and .> (ampy.prod.bars.v1.>)"},
		{subject: "ampy.prod.corporate_actions.v1.>", domains: 1},
		{subject: "ampy.live.corporate_actions.v1.>", err: `env "live" is not in the contract`},
		{subject: "ampy.prod.bars.v1.XNAS.AAPL", domains: 1},
		{subject: "ampy.prod.bars.v1.*.AAPL", domains: 1},
		{subject: "ampy.prod.bars.v1.XNAS.>", domains: 1},
		{subject: "ampy.prod.bars.v1.XNAS.AAPL.extra", err: `subject "ampy.prod.bars.v1.XNAS.AAPL.extra" matches no topic the contract allows: the bars domain's subtopics are {mic}.{symbol}: did you mean ampy.prod.bars.v1.XNAS.AAPL?`},
		{subject: "ampy.prod.bars.v1.XNAS.AAPL.>", err: `did you mean ampy.prod.bars.v1.XNAS.AAPL?`},
		{subject: "ampy.prod.bars.v1.XNAS", err: `did you mean ampy.prod.bars.v1.XNAS.*?`},
		{subject: "ampy.prod.ticks.v1.trades.*", err: `the ticks domain's subtopics are trade.{symbol} or quote.{symbol}`},
		{subject: "ampy.prod.ticks.v1.*.MSFT", domains: 1},
		{subject: "ampy.prod.dlq.v1.bars", domains: 1},
		{subject: "ampy.prod.dlq.v1.*", domains: 1},
		{subject: "ampy.prod.dlq.v1.ampy.prod.bars.v1.XNAS.AAPL", err: `did you mean ampy.prod.dlq.v1.bars?`},
		{subject: "ampy.prod.dlq.v1.nosuch", err: `the dlq domain's subtopic names the domain whose dead letters it holds`},
		{subject: "ampy.prod.*.v1.XNAS.AAPL", domains: 4}, // bars, fundamentals, fx, corporate_actions
		{subject: "ampy.prod.*.v1.a.b.c.d", err: `matches no topic the contract allows: no domain has subtopics of its shape`},
	}
	for _, tt := range tests {
		t.Run(tt.subject, func(t *testing.T) {
			got, err := cat.ResolveSubject(tt.subject)
			if tt.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.err)
				return
			}
			require.NoError(t, err)
			assert.Len(t, got.Domains, tt.domains)
		})
	}
}

// TestSkeleton: pub-empty's payload carries exactly what the contract needs
// to derive the partition key it was given, and nothing else.
func TestSkeleton(t *testing.T) {
	cat := generated.Catalog
	tests := []struct {
		topic, pk string
		json      string
		err       string
	}{
		{topic: "ampy.prod.bars.v1.XNAS.AAPL", pk: "XNAS.AAPL", json: `{}`},
		{topic: "ampy.prod.bars.v1.XNAS.AAPL", pk: "", json: `{}`},
		{topic: "ampy.prod.ticks.v1.trade.MSFT", pk: "MSFT.XNAS", json: `{"security":{"symbol":"MSFT","mic":"XNAS"}}`},
		{topic: "ampy.prod.orders.v1.requests", pk: "co_20250101_001", json: `{"clientOrderId":"co_20250101_001"}`},
		{topic: "ampy.prod.fills.v1.events", pk: "ALPACA-LIVE-01|co_20250101_001", json: `{"accountId":"ALPACA-LIVE-01","clientOrderId":"co_20250101_001"}`},
		{topic: "ampy.prod.signals.v1.hyper@2025-01-01", pk: "hyper@2025-01-01|NVDA.XNAS|5d", json: `{"modelId":"hyper@2025-01-01","security":{"symbol":"NVDA","mic":"XNAS"},"horizon":"5d"}`},
		{topic: "ampy.prod.signals.v1.hyper@2025-01-01", pk: "hyper@2025-01-01|NVDA.XNAS|", json: `{"modelId":"hyper@2025-01-01","security":{"symbol":"NVDA","mic":"XNAS"}}`},
		{topic: "ampy.prod.fundamentals.v1.XNAS.AAPL", pk: "AAPL.XNAS|2025-06-28T00:00:00Z|yfinance", json: `{"security":{"symbol":"AAPL","mic":"XNAS"},"lines":[{"periodEnd":"2025-06-28T00:00:00Z"}],"source":"yfinance"}`},
		{topic: "ampy.prod.fundamentals.v1.XNAS.AAPL", pk: "AAPL.XNAS||yfinance", json: `{"security":{"symbol":"AAPL","mic":"XNAS"},"source":"yfinance"}`},
		{topic: "ampy.prod.fundamentals.v1.XNAS.AAPL", pk: "AAPL.XNAS|June|yfinance", err: `key field lines.period_end needs an RFC 3339 time, not "June"`},
		{topic: "ampy.prod.corporate_actions.v1.XNAS.AAPL", pk: "XNAS.AAPL", json: `{}`},
		{topic: "ampy.prod.fills.v1.events", pk: "fill_20250101_001", err: `does not fit the contract's template {account_id}|{client_order_id}`},
		{topic: "ampy.prod.bars.v1.XNAS.AAPL", pk: "XNYS.AAPL", err: `gives {mic} = "XNYS", but the topic's subtopic has "XNAS"`},
		{topic: "ampy.prod.orders.v1.requests", pk: "", err: "client_order_id"},
	}
	for _, tt := range tests {
		t.Run(tt.topic+"/"+tt.pk, func(t *testing.T) {
			tp, err := cat.Resolve(tt.topic)
			require.NoError(t, err)
			m, err := tp.Route.Skeleton(tp.Subtopic, tt.pk)
			if tt.err != "" {
				require.Error(t, err)
				assert.ErrorIs(t, err, ampybus.ErrContract)
				assert.Contains(t, err.Error(), tt.err)
				return
			}
			require.NoError(t, err)
			if o, ok := m.(*ordersv1.OrderRequest); ok { // its dedupe key reads created_at: now
				assert.WithinDuration(t, time.Now(), o.GetCreatedAt().AsTime(), time.Minute)
				o.CreatedAt = nil
			}
			got, err := protojson.Marshal(m)
			require.NoError(t, err)
			assert.JSONEq(t, tt.json, string(got))
		})
	}
}

// TestTapAndRedrive: a message published through an erased route is read
// back decoded by a tap; a poison pill is dead-lettered, inspected with its
// reason and original bytes, and redriven to its topic once.
func TestTapAndRedrive(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cat := generated.Catalog
	b, err := ampybus.Open(ctx, "embedded://nats", ampybus.WithEnv("prod"), ampybus.WithProducer("test@cli", "test"))
	require.NoError(t, err)
	defer b.Close()

	tp, err := cat.Resolve("ampy.prod.orders.v1.requests")
	require.NoError(t, err)
	p, err := tp.Route.Skeleton(tp.Subtopic, "co_1")
	require.NoError(t, err)
	res, err := tp.Route.Publish(ctx, b, tp.Subtopic, p)
	require.NoError(t, err)
	tap, err := ampybus.OpenTap(ctx, b, cat, "ampy.prod.orders.v1.>", ampybus.TapOptions{Start: transport.StartPosition{Kind: transport.StartFirst}, Bounded: true})
	require.NoError(t, err)
	defer tap.Close()

	// A poison pill: the headers of a real message over bytes that are not one.
	poison := &transport.Message{Topic: tp.Name, Payload: []byte{0xff, 0xff, 0xff}}
	{
		in, err := tap.Next(ctx)
		require.NoError(t, err)
		require.Empty(t, in.Problem)
		require.NotNil(t, in.Decoded)
		assert.Equal(t, res.MessageID, in.Decoded.Headers.MessageID)
		assert.Equal(t, "co_1", in.Decoded.Headers.PartitionKey)
		poison.Headers = in.Decoded.Headers
		poison.Headers.MessageID = ""
		_, err = tap.Next(ctx)
		assert.ErrorIs(t, err, transport.ErrEndOfStream)
	}
	poison.Headers.MessageID = "0192f6d8-0000-7000-8000-000000000001"
	_, err = ampybus.PublishEnvelope(ctx, b, cat, poison)
	require.NoError(t, err)

	// A consumer dead-letters it.
	var handled int
	sub, err := subscribeOrders(ctx, b, &handled)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return sub.Stats().DeadLettered == 1 }, 10*time.Second, 20*time.Millisecond)
	require.NoError(t, sub.Stop())

	dl, err := ampybus.OpenTap(ctx, b, cat, "ampy.prod.dlq.v1.>", ampybus.TapOptions{Group: "redrive", Start: transport.StartPosition{Kind: transport.StartFirst}, Bounded: true})
	require.NoError(t, err)
	in, err := dl.Next(ctx)
	require.NoError(t, err)
	assert.Equal(t, "ampy.prod.dlq.v1.orders", in.Topic)
	assert.Equal(t, tp.Name, in.Original)
	assert.Contains(t, in.Problem, "decode_error")
	assert.Contains(t, in.Message().Headers.DLQReason, "decode_error")
	assert.Equal(t, poison.Payload, in.Message().Payload)

	r1, err := ampybus.Redrive(ctx, b, cat, in)
	require.NoError(t, err)
	assert.Equal(t, tp.Name, r1.Topic)
	r2, err := ampybus.Redrive(ctx, b, cat, in)
	require.NoError(t, err)
	assert.True(t, r2.Duplicate, "redriving the same dead letter twice stores it once")
	require.NoError(t, in.Ack(ctx))
	require.NoError(t, dl.Close())

	back, err := ampybus.OpenTap(ctx, b, cat, tp.Name, ampybus.TapOptions{Start: transport.StartPosition{Kind: transport.StartAtSequence, Sequence: r1.Sequence}, Bounded: true})
	require.NoError(t, err)
	defer back.Close()
	rin, err := back.Next(ctx)
	require.NoError(t, err)
	assert.Equal(t, poison.Payload, rin.Message().Payload)
	assert.Equal(t, 1, rin.Message().Headers.RetryCount)
	assert.Empty(t, rin.Message().Headers.DLQReason)
	assert.NotContains(t, rin.Message().Headers.Extra, ampybus.HeaderDLQTopic)
	assert.Equal(t, "ampy.prod.dlq.v1.orders/0/"+itoa(in.Sequence()), rin.Message().Headers.Extra[ampybus.HeaderRedriveOf])
	_, err = back.Next(ctx)
	assert.True(t, errors.Is(err, transport.ErrEndOfStream))
}

func subscribeOrders(ctx context.Context, b *ampybus.Bus, handled *int) (*ampybus.Subscription, error) {
	return orders.SubscribeRequests(ctx, b, orders.AllRequests(), func(context.Context, *orders.RequestsMessage) error {
		*handled++
		return nil
	}, ampybus.Durable("oms"), ampybus.DeliverAll())
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// A domain with two major versions side by side: topics name one, subjects
// may span both, and a bare domain name asks for the version.
func TestCatalogVersionsSideBySide(t *testing.T) {
	v1 := &ampybus.DomainSpec{Namespace: "cx", Envs: []string{"dev"}, Name: "trades", Version: "v1", Subtopics: []string{"{venue}.{symbol}"}}
	v2 := &ampybus.DomainSpec{Namespace: "cx", Envs: []string{"dev"}, Name: "trades", Version: "v2", Subtopics: []string{"{venue}.{symbol}.{session}"}}
	cat := ampybus.NewCatalog([]*ampybus.DomainSpec{v1, v2})

	tp, err := cat.Resolve("cx.dev.trades.v2.XCX.ABC.am")
	require.NoError(t, err)
	assert.Same(t, v2, tp.Domain)
	_, err = cat.Resolve("cx.dev.trades.v1.XCX.ABC.am")
	assert.ErrorContains(t, err, "did you mean cx.dev.trades.v1.XCX.ABC?")
	_, err = cat.Resolve("cx.dev.trades.v3.XCX.ABC")
	assert.ErrorContains(t, err, "the contract has trades at v1 and v2, not v3")

	sj, err := cat.ResolveSubject("cx.dev.trades.*.>")
	require.NoError(t, err)
	assert.Equal(t, []*ampybus.DomainSpec{v1, v2}, sj.Domains)
	sj, err = cat.ResolveSubject("cx.dev.trades.*.XCX.*")
	require.NoError(t, err)
	assert.Equal(t, []*ampybus.DomainSpec{v1}, sj.Domains, "only v1 has two-token subtopics")
	sj, err = cat.ResolveSubject("cx.dev.trades.v2.>")
	require.NoError(t, err)
	assert.Equal(t, []*ampybus.DomainSpec{v2}, sj.Domains)

	_, err = cat.Domain("trades")
	assert.ErrorContains(t, err, `domain "trades" has versions v1 and v2: name one`)
	d, err := cat.DomainVersion("trades", "v2")
	require.NoError(t, err)
	assert.Same(t, v2, d)
	_, err = cat.DomainVersion("trades", "v9")
	assert.ErrorContains(t, err, "the contract has trades at v1 and v2, not v9")
}
