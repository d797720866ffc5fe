package kafkabinding_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ampyfin/ampy-bus/generated/bars"
	"github.com/ampyfin/ampy-bus/generated/orders"
	barsv1 "github.com/ampyfin/ampy-bus/proto/ampy/bars/v1"
	commonv1 "github.com/ampyfin/ampy-bus/proto/ampy/common/v1"
	ordersv1 "github.com/ampyfin/ampy-bus/proto/ampy/orders/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/embedded"
	"github.com/ampyfin/ampy-bus/runtime/envelope"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// kcat is librdkafka's command-line client, an independent Kafka
// implementation; make test installs it (apt-get install kcat).
func kcat(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("kcat")
	require.NoError(t, err, "kcat is not installed: run make test (it installs kcat) or apt-get install kcat")
	return p
}

func cluster(t *testing.T) (*embedded.Kafka, *ampybus.Bus, context.Context) {
	t.Helper()
	e, err := embedded.StartKafka(embedded.KafkaOptions{})
	require.NoError(t, err)
	t.Cleanup(e.Shutdown)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	b, err := ampybus.Open(ctx, e.URL(), ampybus.WithProducer("interop@1", "interop"), ampybus.WithRunID("run_interop"), ampybus.WithProvisioning())
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return e, b, ctx
}

// javaPartition is where the Java client puts key: kafkabinding.Partition,
// which TestMurmur2MatchesKafka checks against Kafka's own reference values,
// so the test does not trust franz-go's partitioner.
func javaPartition(key string, partitions int) int32 {
	return transport.Partition(key, partitions)
}

type kcatRecord struct {
	Topic     string   `json:"topic"`
	Partition int32    `json:"partition"`
	Offset    int64    `json:"offset"`
	TS        int64    `json:"ts"`
	Headers   []string `json:"headers"`
	Key       string   `json:"key"`
}

func TestKcatReadsWhatWeProduce(t *testing.T) {
	bin := kcat(t)
	e, b, ctx := cluster(t)
	keys := []string{"AAPL", "MSFT", "NVDA", "IBM", "TSLA"}
	want := map[string]*barsv1.BarBatch{}
	for i, sym := range keys {
		batch := &barsv1.BarBatch{Bars: []*barsv1.Bar{{Security: &commonv1.SecurityId{Symbol: sym, Mic: "XNAS"}, Volume: int64(i + 1)}}}
		want["XNAS."+sym] = batch
		_, err := bars.NewPublisher(b).Publish(ctx, bars.MustSubtopic("XNAS", sym), batch)
		require.NoError(t, err)
	}
	out, err := exec.CommandContext(ctx, bin, "-b", e.Brokers()[0], "-C", "-t", "ampy.dev.bars.v1",
		"-o", "beginning", "-c", strconv.Itoa(len(keys)), "-e", "-q", "-J").Output()
	require.NoError(t, err, "kcat: %s", out)
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	require.Len(t, lines, len(keys))
	for _, line := range lines {
		var r kcatRecord
		require.NoError(t, json.Unmarshal(line, &r), "%s", line)
		h := map[string]string{}
		for i := 0; i+1 < len(r.Headers); i += 2 {
			h[r.Headers[i]] = r.Headers[i+1]
		}
		assert.Equal(t, "ampy.dev.bars.v1", r.Topic)
		assert.Equal(t, h["partition_key"], r.Key, "record key is the partition key")
		assert.Equal(t, javaPartition(r.Key, bars.Domain.Partitions), r.Partition, "key %s lands where the Java client would put it", r.Key)
		assert.Equal(t, r.Key, h["subtopic"])
		for _, name := range []string{"message_id", "schema_fqdn", "schema_version", "content_type", "produced_at", "producer", "source", "run_id", "traceparent", "schema_hash"} {
			assert.NotEmpty(t, h[name], "header %s", name)
		}
		assert.Equal(t, "ampy.bars.v1.BarBatch", h["schema_fqdn"])
		assert.Equal(t, "interop@1", h["producer"])
		assert.Equal(t, bars.SchemaHash, h["schema_hash"])
		produced, err := envelope.ParseTime(h["produced_at"])
		require.NoError(t, err)
		// The record timestamp is the write time, just after produced_at.
		assert.GreaterOrEqual(t, r.TS, produced.UnixMilli(), "record timestamp is the write time")
		assert.Less(t, r.TS, produced.Add(10*time.Second).UnixMilli(), "record timestamp is the write time")
	}

	// The payload bytes, read raw by kcat at each record's partition and
	// offset, are exactly the protobuf we published.
	checked := 0
	for _, line := range lines {
		var r kcatRecord
		require.NoError(t, json.Unmarshal(line, &r))
		payload, err := exec.CommandContext(ctx, bin, "-b", e.Brokers()[0], "-C", "-t", r.Topic,
			"-p", strconv.Itoa(int(r.Partition)), "-o", strconv.FormatInt(r.Offset, 10), "-c", "1", "-e", "-q", "-f", "%s").Output()
		require.NoError(t, err)
		wantBytes, err := proto.MarshalOptions{Deterministic: true}.Marshal(want[r.Key])
		require.NoError(t, err)
		assert.Equal(t, wantBytes, payload, "payload of %s byte-exact", r.Key)
		checked++
	}
	assert.Equal(t, len(keys), checked)
}

func TestGeneratedConsumerReadsKcatRecord(t *testing.T) {
	bin := kcat(t)
	e, b, ctx := cluster(t)
	require.NoError(t, b.Ensure(ctx, orders.Domain))
	got := make(chan *orders.RequestsMessage, 1)
	sub, err := orders.SubscribeRequests(ctx, b, orders.AllRequests(), func(_ context.Context, m *orders.RequestsMessage) error {
		got <- m
		return nil
	}, ampybus.Durable("oms"), ampybus.DeliverAll())
	require.NoError(t, err)
	defer sub.Stop()

	want := &ordersv1.OrderRequest{AccountId: "ALPACA-LIVE-01", ClientOrderId: "co_kcat_1",
		Security: &commonv1.SecurityId{Symbol: "AAPL", Mic: "XNAS"}, Side: commonv1.Side_SIDE_SELL, Quantity: &commonv1.Decimal{Scaled: 25},
		CreatedAt: timestamppb.New(time.Date(2025, 9, 5, 19, 30, 0, 0, time.UTC))}
	payload, err := proto.Marshal(want)
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "order.bin")
	require.NoError(t, os.WriteFile(file, payload, 0o644))
	id, trace := envelope.NewMessageID(), envelope.NewTrace()
	args := []string{"-b", e.Brokers()[0], "-P", "-t", "ampy.dev.orders.v1", "-k", "co_kcat_1"}
	for _, h := range [][2]string{
		{"subtopic", "requests"}, {"message_id", id}, {"schema_fqdn", orders.RequestsSchemaFQDN},
		{"schema_version", "1.0.0"}, {"content_type", "application/x-protobuf"},
		{"produced_at", envelope.FormatTime(time.Now())}, {"producer", "kcat@shell"}, {"source", "kcat"},
		{"run_id", "run_kcat"}, {"traceparent", trace.String()}, {"partition_key", "co_kcat_1"}, {"dedupe_key", "co_kcat_1|2025-09-05T19:30:00Z"},
	} {
		args = append(args, "-H", h[0]+"="+h[1])
	}
	out, err := exec.CommandContext(ctx, bin, append(args, file)...).CombinedOutput()
	require.NoError(t, err, "kcat produce: %s", out)

	select {
	case m := <-got:
		assert.True(t, proto.Equal(want, m.Payload))
		assert.Equal(t, id, m.Headers.MessageID)
		assert.Equal(t, "kcat@shell", m.Headers.Producer)
		assert.Equal(t, trace, m.Headers.Trace)
		assert.Equal(t, "ampy.dev.orders.v1.requests", m.Topic)
	case <-ctx.Done():
		t.Fatal("the generated consumer did not receive kcat's record")
	}
}
