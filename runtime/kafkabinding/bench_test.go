package kafkabinding_test

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/ampyfin/ampy-bus/generated/bars"
	barsv1 "github.com/ampyfin/ampy-bus/proto/ampy/bars/v1"
	commonv1 "github.com/ampyfin/ampy-bus/proto/ampy/common/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/embedded"
	"github.com/ampyfin/ampy-bus/runtime/envelope"
)

// BenchmarkPublish publishes the same BarBatch through the typed publisher
// and through raw franz-go on an embedded kfake cluster, sync and async. kfake
// is not a performance proxy for Kafka: read the ratios, not the absolutes.
// raw+headers sends the typed path's envelope, captured once:
//
//	go test -run '^$' -bench Publish -benchmem ./runtime/kafkabinding/
func BenchmarkPublish(b *testing.B) {
	e, err := embedded.StartKafka(embedded.KafkaOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Shutdown()
	ctx := context.Background()
	bus, err := ampybus.Open(ctx, e.URL(), ampybus.WithProducer("bench@local", "bench"), ampybus.WithProvisioning())
	if err != nil {
		b.Fatal(err)
	}
	defer bus.Close()
	if err := bus.Ensure(ctx, bars.Domain); err != nil {
		b.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Brokers()...))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	payload := &barsv1.BarBatch{Bars: []*barsv1.Bar{{Security: &commonv1.SecurityId{Symbol: "AAPL", Mic: "XNAS"},
		Open: &commonv1.Decimal{Scaled: 1919900, Scale: 4}, Close: &commonv1.Decimal{Scaled: 1920500, Scale: 4}, Volume: 120345}}}
	size, _ := proto.Marshal(payload)
	pub := bars.NewPublisher(bus)
	st := bars.MustSubtopic("XNAS", "AAPL")
	topic := bars.Domain.Prefix("dev")

	// The envelope of one typed publish, as record headers.
	var headers []kgo.RecordHeader
	{
		res, err := pub.Publish(ctx, st, payload)
		if err != nil {
			b.Fatal(err)
		}
		fetch, err := kgo.NewClient(kgo.SeedBrokers(e.Brokers()...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
			topic: {res.Partition: kgo.NewOffset().At(int64(res.Sequence))}}))
		if err != nil {
			b.Fatal(err)
		}
		fs := fetch.PollFetches(ctx)
		headers = fs.Records()[0].Headers
		fetch.Close()
	}
	raw := func(withHeaders bool) *kgo.Record {
		data, err := proto.Marshal(payload)
		if err != nil {
			b.Fatal(err)
		}
		r := &kgo.Record{Topic: topic, Key: []byte("XNAS.AAPL"), Value: data}
		if withHeaders {
			r.Headers = append([]kgo.RecordHeader(nil), headers...)
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: "message_id", Value: []byte(envelope.NewMessageID())})
		}
		return r
	}
	report := func(b *testing.B) {
		b.SetBytes(int64(len(size)))
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	}
	for _, v := range []struct {
		name string
		sync func() error
	}{
		{"typed/sync", func() error { _, err := pub.Publish(ctx, st, payload); return err }},
		{"raw/sync", func() error { return cl.ProduceSync(ctx, raw(false)).FirstErr() }},
		{"raw+headers/sync", func() error { return cl.ProduceSync(ctx, raw(true)).FirstErr() }},
	} {
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := v.sync(); err != nil {
					b.Fatal(err)
				}
			}
			report(b)
		})
	}
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
	for _, withHeaders := range []bool{false, true} {
		name := map[bool]string{false: "raw/async", true: "raw+headers/async"}[withHeaders]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				cl.Produce(ctx, raw(withHeaders), func(_ *kgo.Record, err error) {
					if err != nil {
						b.Error(err)
					}
				})
			}
			if err := cl.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			report(b)
		})
	}
}
