package ampybus_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/ampyfin/ampy-bus/generated/bars"
	"github.com/ampyfin/ampy-bus/plugin/ampyprom"
	barsv1 "github.com/ampyfin/ampy-bus/proto/ampy/bars/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/embedded"
	"github.com/ampyfin/ampy-bus/runtime/envelope"
	"github.com/ampyfin/ampy-bus/runtime/natsbinding"
)

// BenchmarkPublish publishes the same BarBatch through the generated, typed
// publisher and through raw nats.go on one embedded JetStream server, sync
// and async. All variants marshal the payload on every op. raw sends bare
// bytes; raw+headers sends the same envelope headers and Nats-Msg-Id that
// typed writes, built once. typed/raw+headers is the client-side cost of this
// layer (envelope, keys, checks); raw+headers/raw is what carrying the
// envelope costs on the wire and in the server:
//
//	go test -run '^$' -bench Publish -benchmem ./runtime/ampybus/
//
// benchBus starts an embedded server and opens a producing bus on it.
func benchBus(b *testing.B) (*embedded.NATS, *ampybus.Bus) {
	b.Helper()
	srv, err := embedded.StartNATS(embedded.NATSOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Shutdown)
	bus, err := ampybus.Open(context.Background(), srv.URL(), ampybus.WithProducer("bench@local", "bench"), ampybus.WithProvisioning())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = bus.Close() })
	return srv, bus
}

// otelBus opens another bus on srv with OpenTelemetry attached as a
// service would run it: metrics into a Prometheus registry and, with
// traces, every span sampled and batched to an exporter that drops them.
func otelBus(b *testing.B, srv *embedded.NATS, traces bool) *ampybus.Bus {
	b.Helper()
	var tp *sdktrace.TracerProvider
	if traces {
		tp = sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()), sdktrace.WithSampler(sdktrace.AlwaysSample()))
		b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	}
	exp, err := ampyprom.New(nilIfNoTraces(tp))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = exp.Shutdown(context.Background()) })
	bus, err := ampybus.Open(context.Background(), srv.URL(), ampybus.WithProducer("bench@local", "bench"), ampybus.WithHooks(exp.Hook), ampybus.WithProvisioning())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = bus.Close() })
	return bus
}

// nilIfNoTraces keeps a nil provider an untyped nil for ampyprom.New.
func nilIfNoTraces(tp *sdktrace.TracerProvider) trace.TracerProvider {
	if tp == nil {
		return nil
	}
	return tp
}

// stallWait lets a raw async publish wait for room in nats.go's pending
// window, as the bus's own window does, instead of failing after 200ms with
// "stalled with too many outstanding async published messages".
var stallWait = jetstream.WithStallWait(time.Minute)

func BenchmarkPublish(b *testing.B) {
	srv, bus := benchBus(b)
	obus, mbus := otelBus(b, srv, true), otelBus(b, srv, false)
	opub, mpub := bars.NewPublisher(obus), bars.NewPublisher(mbus)
	ctx := context.Background()
	if err := bus.Ensure(ctx, bars.Domain); err != nil {
		b.Fatal(err)
	}
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		b.Fatal(err)
	}
	payload := barBatch()
	size, _ := proto.Marshal(payload)
	pub := bars.NewPublisher(bus)
	st := bars.MustSubtopic("XNAS", "AAPL")
	// The subject the bus stores XNAS.RAW's messages under (its partition first).
	rawSubject := natsbinding.Subject("ampy.dev.bars.v1.XNAS.RAW", "XNAS.RAW", bars.Domain.Partitions)

	report := func(b *testing.B) {
		b.SetBytes(int64(len(size)))
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	}
	b.Run("typed/sync", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := pub.Publish(ctx, st, payload); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	b.Run("typed+otel/sync", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := opub.Publish(ctx, st, payload); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	b.Run("raw/sync", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			data, err := proto.Marshal(payload)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := js.Publish(ctx, rawSubject, data); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	// The envelope a typed publish writes, captured once for the raw+headers runs.
	res, err := pub.Publish(ctx, st, payload)
	if err != nil {
		b.Fatal(err)
	}
	stream, err := js.Stream(ctx, "AMPY_DEV_BARS_V1")
	if err != nil {
		b.Fatal(err)
	}
	stored, err := stream.GetMsg(ctx, res.Sequence)
	if err != nil {
		b.Fatal(err)
	}
	withHeaders := func() *nats.Msg {
		data, err := proto.Marshal(payload)
		if err != nil {
			b.Fatal(err)
		}
		h := make(nats.Header, len(stored.Header))
		for k, v := range stored.Header {
			h[k] = v
		}
		h.Set(jetstream.MsgIDHeader, envelope.NewMessageID())
		return &nats.Msg{Subject: rawSubject, Header: h, Data: data}
	}
	b.Run("raw+headers/sync", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := js.PublishMsg(ctx, withHeaders()); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	b.Run("typed/async", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := pub.PublishAsync(ctx, st, payload); err != nil {
				b.Fatal(err)
			}
		}
		if err := bus.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		report(b)
	})
	b.Run("typed+metrics/async", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := mpub.PublishAsync(ctx, st, payload); err != nil {
				b.Fatal(err)
			}
		}
		if err := mbus.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		report(b)
	})
	b.Run("typed+otel/async", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := opub.PublishAsync(ctx, st, payload); err != nil {
				b.Fatal(err)
			}
		}
		if err := obus.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		report(b)
	})
	b.Run("raw/async", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			data, err := proto.Marshal(payload)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := js.PublishAsync(rawSubject, data, stallWait); err != nil {
				b.Fatal(err)
			}
		}
		<-js.PublishAsyncComplete()
		report(b)
	})
	b.Run("raw+headers/async", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := js.PublishMsgAsync(withHeaders(), stallWait); err != nil {
				b.Fatal(err)
			}
		}
		<-js.PublishAsyncComplete()
		report(b)
	})
}

// BenchmarkConsume measures what the consumer engine costs per message
// (header validation, schema and key checks, dedupe, ordering, per-key
// scheduling, ack) against a raw nats.go pull consumer that only decodes and
// acks, on the same pre-published messages:
//
//	go test -run '^$' -bench Consume -benchmem ./runtime/ampybus/
func BenchmarkConsume(b *testing.B) {
	srv, bus := benchBus(b)
	ctx := context.Background()
	payload := barBatch()
	fill := func(b *testing.B, symbol string, n int) {
		b.Helper()
		pub := bars.NewPublisher(bus)
		// Every bar's security is bound to the subtopic's.
		payload := proto.Clone(payload).(*barsv1.BarBatch)
		payload.Bars[0].Security.Symbol = symbol
		for range n {
			if _, err := pub.PublishAsync(ctx, bars.MustSubtopic("XNAS", symbol), payload); err != nil {
				b.Fatal(err)
			}
		}
		if err := bus.Flush(ctx); err != nil {
			b.Fatal(err)
		}
	}
	run := 0
	engine := func(name string, cbus *ampybus.Bus) {
		b.Run(name, func(b *testing.B) {
			run++
			sym := "E" + strconv.Itoa(run)
			fill(b, sym, b.N)
			st := bars.MustSubtopic("XNAS", sym)
			done := make(chan struct{})
			var n atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			sub, err := bars.Subscribe(ctx, cbus, st.Pattern(), func(context.Context, *bars.Message) error {
				if n.Add(1) == int64(b.N) {
					close(done)
				}
				return nil
			}, ampybus.Durable("bench-"+sym), ampybus.DeliverAll(), ampybus.Concurrency(4))
			if err != nil {
				b.Fatal(err)
			}
			<-done
			b.StopTimer()
			_ = sub.Stop()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
	engine("engine", bus)
	engine("engine+metrics", otelBus(b, srv, false))
	engine("engine+otel", otelBus(b, srv, true))
	b.Run("raw", func(b *testing.B) {
		run++
		sym := "R" + strconv.Itoa(run)
		fill(b, sym, b.N)
		nc, err := nats.Connect(srv.URL())
		if err != nil {
			b.Fatal(err)
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		b.ReportAllocs()
		b.ResetTimer()
		cons, err := js.CreateOrUpdateConsumer(ctx, "AMPY_DEV_BARS_V1", jetstream.ConsumerConfig{
			Durable: "raw-" + sym, FilterSubject: "*.ampy.dev.bars.v1.XNAS." + sym, AckPolicy: jetstream.AckExplicitPolicy,
			DeliverPolicy: jetstream.DeliverAllPolicy, MaxAckPending: 1024,
		})
		if err != nil {
			b.Fatal(err)
		}
		it, err := cons.Messages(jetstream.PullMaxMessages(512))
		if err != nil {
			b.Fatal(err)
		}
		for range b.N {
			m, err := it.Next()
			if err != nil {
				b.Fatal(err)
			}
			var batch barsv1.BarBatch
			if err := proto.Unmarshal(m.Data(), &batch); err != nil {
				b.Fatal(err)
			}
			_ = m.Ack()
		}
		b.StopTimer()
		it.Stop()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
}
