package ampyotel_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ampyfin/ampy-bus/generated/bars"
	"github.com/ampyfin/ampy-bus/generated/positions"
	"github.com/ampyfin/ampy-bus/plugin/ampyotel"
	barsv1 "github.com/ampyfin/ampy-bus/proto/ampy/bars/v1"
	commonv1 "github.com/ampyfin/ampy-bus/proto/ampy/common/v1"
	positionsv1 "github.com/ampyfin/ampy-bus/proto/ampy/positions/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	_ "github.com/ampyfin/ampy-bus/runtime/embedded"
)

type telemetry struct {
	spans   *tracetest.InMemoryExporter
	reader  *sdkmetric.ManualReader
	tracer  trace.Tracer
	hookOpt ampybus.Option
}

func newTelemetry(t *testing.T) *telemetry {
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()); _ = mp.Shutdown(context.Background()) })
	h, err := ampyotel.New(ampyotel.WithTracerProvider(tp), ampyotel.WithMeterProvider(mp))
	require.NoError(t, err)
	return &telemetry{spans: spans, reader: reader, tracer: tp.Tracer("test"), hookOpt: ampybus.WithHooks(h)}
}

func barBatch(symbol string) *barsv1.BarBatch {
	now := timestamppb.Now()
	return &barsv1.BarBatch{Bars: []*barsv1.Bar{{Security: &commonv1.SecurityId{Symbol: symbol, Mic: "XNAS"}, Start: now, End: now, EventTime: now}}}
}

// A producer publishes under a span of its own; a consumer whose handler
// publishes relays it; a second consumer handles the relayed message: one
// trace, each span the child of the one before, on both transports. A
// message the second consumer refuses gives a dead-letter span in the same
// trace. The metrics the run implies are recorded.
func TestOneTraceFromProducerThroughRelayToConsumer(t *testing.T) {
	for _, url := range []string{"embedded://nats", "embedded://kafka"} {
		t.Run(url, func(t *testing.T) {
			tel := newTelemetry(t)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			b, err := ampybus.Open(ctx, url, ampybus.WithProducer("otel@test", "otel"), tel.hookOpt)
			require.NoError(t, err)
			defer b.Close()

			relay, err := bars.Subscribe(ctx, b, bars.All(), func(ctx context.Context, m *bars.Message) error {
				p := &positionsv1.PositionSnapshot{AccountId: "ACC-1", Security: m.Payload.GetBars()[0].GetSecurity(), AsOf: timestamppb.Now()}
				if m.Subtopic.Symbol() == "BAD" {
					p.AccountId = "REFUSE"
				}
				_, err := positions.NewSnapshotsPublisher(b).Publish(ctx, positions.NewSnapshotsSubtopic(), p)
				return err
			}, ampybus.Durable("relay"))
			require.NoError(t, err)
			var handled, refused atomic.Int32
			sink, err := positions.SubscribeSnapshots(ctx, b, positions.AllSnapshots(), func(_ context.Context, m *positions.SnapshotsMessage) error {
				if m.Payload.GetAccountId() == "REFUSE" {
					refused.Add(1)
					return ampybus.Permanent(errors.New("refused"))
				}
				handled.Add(1)
				return nil
			}, ampybus.Durable("sink"))
			require.NoError(t, err)

			rootCtx, root := tel.tracer.Start(ctx, "producer job")
			_, err = bars.NewPublisher(b).Publish(rootCtx, bars.MustSubtopic("XNAS", "AAPL"), barBatch("AAPL"))
			require.NoError(t, err)
			_, err = bars.NewPublisher(b).Publish(rootCtx, bars.MustSubtopic("XNAS", "BAD"), barBatch("BAD"))
			require.NoError(t, err)
			root.End()
			require.Eventually(t, func() bool { return handled.Load() == 1 && refused.Load() == 1 }, 30*time.Second, 20*time.Millisecond)
			require.NoError(t, relay.Stop())
			require.NoError(t, sink.Stop())

			spans := tel.spans.GetSpans()
			byName := map[string][]tracetest.SpanStub{}
			for _, s := range spans {
				assert.Equal(t, root.SpanContext().TraceID(), s.SpanContext.TraceID(), "span %q is in another trace", s.Name)
				byName[s.Name] = append(byName[s.Name], s)
			}
			sendBars := byName["send ampy.dev.bars.v1.{mic}.{symbol}"]
			require.Len(t, sendBars, 2, "spans: %v", names(spans))
			for _, s := range sendBars {
				assert.Equal(t, root.SpanContext().SpanID(), s.Parent.SpanID(), "the span in ctx is the publish's parent")
				assert.Equal(t, trace.SpanKindProducer, s.SpanKind)
			}
			processBars := byName["process ampy.dev.bars.v1.{mic}.{symbol}"]
			sendPos := byName["send ampy.dev.positions.v1.snapshots"]
			processPos := byName["process ampy.dev.positions.v1.snapshots"]
			require.Len(t, processBars, 2)
			require.Len(t, sendPos, 2)
			require.Len(t, processPos, 2)
			assert.ElementsMatch(t, spanIDs(sendBars), parentIDs(processBars), "each process span continues its message's send span")
			assert.ElementsMatch(t, spanIDs(processBars), parentIDs(sendPos), "the handler's publish is the child of its process span")
			assert.ElementsMatch(t, spanIDs(sendPos), parentIDs(processPos))
			assert.Len(t, byName["settle ampy.dev.bars.v1.{mic}.{symbol}"], 2)
			assert.Len(t, byName["settle ampy.dev.positions.v1.snapshots"], 2)
			dl := byName["dead_letter ampy.dev.dlq.v1.positions"]
			require.Len(t, dl, 1, "spans: %v", names(spans))
			assert.Contains(t, spanIDs(processPos), dl[0].Parent.SpanID(), "the dead-letter write is the child of the refused message's process span")

			system := url[len("embedded://"):]
			var keys []string
			for _, s := range processPos {
				attrs := attrMap(s.Attributes)
				assert.Equal(t, system, attrs["messaging.system"])
				assert.Equal(t, "ampy.dev.positions.v1.snapshots", attrs["messaging.destination.name"])
				assert.Equal(t, "sink", attrs["messaging.consumer.group.name"])
				assert.NotEmpty(t, attrs["messaging.message.id"])
				keys = append(keys, attrs["ampy.partition_key"])
				if system == "kafka" {
					assert.Equal(t, attrs["ampy.partition_key"], attrs["messaging.kafka.message.key"])
					assert.Contains(t, attrs, "messaging.kafka.offset")
					assert.Contains(t, attrs, "messaging.destination.partition.id")
				} else {
					assert.Contains(t, attrs, "messaging.nats.stream_sequence")
				}
			}
			assert.ElementsMatch(t, []string{"ACC-1|AAPL.XNAS", "REFUSE|BAD.XNAS"}, keys)

			var rm metricdata.ResourceMetrics
			require.NoError(t, tel.reader.Collect(ctx, &rm))
			got := sums(rm)
			assert.Equal(t, int64(2), got["bus.produced_total topic=ampy.dev.bars.v1.{mic}.{symbol} producer=otel@test"])
			assert.Equal(t, int64(2), got["bus.produced_total topic=ampy.dev.positions.v1.snapshots producer=otel@test"])
			assert.Equal(t, int64(2), got["bus.consumed_total topic=ampy.dev.positions.v1.snapshots consumer=sink"])
			assert.Equal(t, int64(1), got["bus.dlq_total topic=ampy.dev.positions.v1.snapshots reason=handler"])
			assert.Equal(t, int64(2), got["bus.delivery_latency_ms topic=ampy.dev.bars.v1.{mic}.{symbol}"], "histogram count")
			assert.Equal(t, int64(2), got["bus.batch_size_bytes topic=ampy.dev.bars.v1.{mic}.{symbol}"], "histogram count")
			for _, name := range []string{"messaging.client.sent.messages", "messaging.client.consumed.messages", "messaging.client.operation.duration", "messaging.process.duration"} {
				assert.Contains(t, metricNames(rm), name)
			}
		})
	}
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}

func spanIDs(spans []tracetest.SpanStub) []trace.SpanID {
	var out []trace.SpanID
	for _, s := range spans {
		out = append(out, s.SpanContext.SpanID())
	}
	return out
}

func parentIDs(spans []tracetest.SpanStub) []trace.SpanID {
	var out []trace.SpanID
	for _, s := range spans {
		out = append(out, s.Parent.SpanID())
	}
	return out
}

func attrMap(kvs []attribute.KeyValue) map[string]string {
	out := map[string]string{}
	for _, kv := range kvs {
		out[string(kv.Key)] = kv.Value.Emit()
	}
	return out
}

func metricNames(rm metricdata.ResourceMetrics) []string {
	var out []string
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			out = append(out, m.Name)
		}
	}
	return out
}

// sums flattens counters (their value) and histograms (their count) to
// "name label=value …" keys, labels in the instrument's order of keys.
func sums(rm metricdata.ResourceMetrics) map[string]int64 {
	out := map[string]int64{}
	key := func(name string, set attribute.Set) string {
		k := name
		for _, l := range []string{"topic", "producer", "consumer", "reason"} {
			if v, ok := set.Value(attribute.Key(l)); ok {
				k += " " + l + "=" + v.Emit()
			}
		}
		return k
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out[key(m.Name, p.Attributes)] += p.Value
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					out[key(m.Name, p.Attributes)] += int64(p.Count)
				}
			case metricdata.Histogram[int64]:
				for _, p := range d.DataPoints {
					out[key(m.Name, p.Attributes)] += int64(p.Count)
				}
			}
		}
	}
	return out
}

// The backpressure gauge is 1 for a domain while its producers back off and
// 0 once the consumer groups caught up.
func TestBackpressureGauge(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	h, err := ampyotel.New(ampyotel.WithMeterProvider(mp))
	require.NoError(t, err)
	read := func() int64 {
		var rm metricdata.ResourceMetrics
		require.NoError(t, reader.Collect(context.Background(), &rm))
		return sums(rm)[ampyotel.MetricBackpressure+" topic=ampy.prod.metrics.v1"]
	}
	e := ampybus.PressureStats{Domain: "ampy.prod.metrics.v1", Priority: ampybus.PriorityLow, MaxLag: 5000, Lag: 6000, Group: "dashboard", Lagging: true}
	h.OnPressure(e)
	assert.Equal(t, int64(1), read())
	e.Lagging, e.Lag = false, 100
	h.OnPressure(e)
	assert.Equal(t, int64(0), read())
}
