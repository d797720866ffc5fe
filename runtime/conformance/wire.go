package conformance

import (
	"context"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ampyfin/ampy-bus/runtime/envelope"
	"github.com/ampyfin/ampy-bus/runtime/kafkabinding"
	"github.com/ampyfin/ampy-bus/runtime/natsbinding"
)

// Wire writes records as any client of the broker could, past every check
// the bus makes: the hostile-input cases use it to put on the wire what a
// buggy or malicious producer would.
type Wire interface {
	Write(ctx context.Context, r WireRecord) error
}

// WireRecord is one record as a raw client writes it.
type WireRecord struct {
	// Topic is the full topic. NATS stores it under the partition of Key;
	// Kafka writes its first four tokens as the topic and the rest, when
	// there is any, as the subtopic header.
	Topic string
	// Key places the record: the NATS partition token, the Kafka record key.
	Key string
	// KafkaKey, when set, is the Kafka record key instead of Key.
	KafkaKey string
	// Partitions is the domain's partition count (NATS subjects carry the partition).
	Partitions int
	// Headers are written in order; a key may repeat.
	Headers []envelope.Field
	Payload []byte
}

// natsWire publishes with nats.go's JetStream API.
type natsWire struct{ js jetstream.JetStream }

func newNATSWire(t *testing.T, url string) Wire {
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return &natsWire{js: js}
}

func (w *natsWire) Write(ctx context.Context, r WireRecord) error {
	m := nats.NewMsg(natsbinding.Subject(r.Topic, r.Key, r.Partitions))
	m.Data = r.Payload
	for _, f := range r.Headers {
		m.Header.Add(f.Key, f.Value)
	}
	_, err := w.js.PublishMsg(ctx, m)
	return err
}

// kafkaWire produces with franz-go, placing keys as the Java client does.
type kafkaWire struct{ cl *kgo.Client }

func newKafkaWire(t *testing.T, url string) Wire {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(strings.TrimPrefix(url, "kafka://"), ",")...),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	return &kafkaWire{cl: cl}
}

func (w *kafkaWire) Write(ctx context.Context, r WireRecord) error {
	toks := strings.SplitN(r.Topic, ".", 5)
	rec := &kgo.Record{Topic: strings.Join(toks[:min(4, len(toks))], "."), Key: []byte(r.Key), Value: r.Payload}
	if r.KafkaKey != "" {
		rec.Key = []byte(r.KafkaKey)
	}
	if len(toks) == 5 {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: kafkabinding.HeaderSubtopic, Value: []byte(toks[4])})
	}
	for _, f := range r.Headers {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: f.Key, Value: []byte(f.Value)})
	}
	return w.cl.ProduceSync(ctx, rec).FirstErr()
}
