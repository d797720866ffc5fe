package pyemit_test

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ampyfin/ampy-bus/generated/bars"
	barsv1 "github.com/ampyfin/ampy-bus/proto/ampy/bars/v1"
	commonv1 "github.com/ampyfin/ampy-bus/proto/ampy/common/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/embedded"
	"github.com/ampyfin/ampy-bus/runtime/envelope"
	_ "github.com/ampyfin/ampy-bus/runtime/kafkabinding"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// pyRecord is a line kafka_roundtrip.py prints.
type pyRecord struct {
	MessageID string `json:"message_id"`
	Partition int32  `json:"partition"`
	Key       string `json:"key"`
	Subtopic  string `json:"subtopic"`
	TraceID   string `json:"trace_id"`
	Volume    int64  `json:"volume"`
}

// Go and Python on one embedded Kafka broker, through confluent-kafka
// (librdkafka): what the generated Go publisher writes, Python reads and
// checks as a Go consumer would, on the partition Go chose; what Python
// publishes, a generated Go consumer handles, with the trace continued.
func TestKafkaAcrossLanguages(t *testing.T) {
	py := python3(t)
	out, err := exec.Command(py, "-c", "import confluent_kafka").CombinedOutput()
	require.NoError(t, err, "python3's confluent-kafka is missing: run make tools, or apt-get install python3-confluent-kafka\n%s", out)
	k, err := embedded.StartKafka(embedded.KafkaOptions{})
	require.NoError(t, err)
	t.Cleanup(k.Shutdown)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := ampybus.Open(ctx, k.URL(), ampybus.WithProvisioning(), ampybus.WithEnv("dev"), ampybus.WithProducer("go-check@local", "go-check"))
	require.NoError(t, err)
	defer b.Close()
	require.NoError(t, b.Ensure(ctx, bars.Domain))
	bootstrap := strings.TrimPrefix(k.URL(), "kafka://")

	// Go publishes; Python reads every record and checks it.
	const n = 24
	sent := map[string]ampybus.PublishResult{}
	pub := bars.NewPublisher(b)
	for i := range n {
		sym := "GO" + string(rune('A'+i%5))
		res, err := pub.Publish(ctx, bars.MustSubtopic("XNAS", sym), &barsv1.BarBatch{Bars: []*barsv1.Bar{{
			Security: &commonv1.SecurityId{Symbol: sym, Mic: "XNAS"}, Volume: int64(100 + i),
			EventTime: timestamppb.New(time.Unix(1_757_100_000+int64(i), 0)),
		}}})
		require.NoError(t, err)
		sent[res.MessageID] = res
	}
	got := runRoundtrip(t, py, "consume", bootstrap, "dev", strconv.Itoa(n))
	require.Len(t, got, n)
	for _, r := range got {
		res, ok := sent[r.MessageID]
		require.True(t, ok, "Python read a message Go did not send: %+v", r)
		assert.Equal(t, res.Partition, r.Partition, "%s: partition", r.MessageID)
		assert.Equal(t, r.Subtopic, r.Key, "bars are keyed by {mic}.{symbol}")
		assert.Len(t, r.TraceID, 32)
	}

	// Python publishes under a trace; a generated Go consumer handles each
	// message in that trace, on the partition Python chose.
	trace := envelope.NewTrace()
	var mu sync.Mutex
	handled := map[string]*bars.Message{}
	sub, err := bars.Subscribe(ctx, b, bars.All(), func(_ context.Context, m *bars.Message) error {
		if m.Headers.Producer == "py-check@local" {
			mu.Lock()
			handled[m.Headers.MessageID] = m
			mu.Unlock()
		}
		return nil
	}, ampybus.Durable("go-check"), ampybus.DeliverAll())
	require.NoError(t, err)
	defer sub.Stop()
	const m = 14
	produced := runRoundtrip(t, py, "produce", bootstrap, "dev", strconv.Itoa(m), trace.String())
	require.Len(t, produced, m)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(handled) == m
	}, time.Minute, 50*time.Millisecond, "the Go consumer handles every Python message")
	st := sub.Stats()
	assert.Zero(t, st.DeadLettered, "nothing Python wrote is poison to Go: %+v", st)
	mu.Lock()
	defer mu.Unlock()
	for _, p := range produced {
		msg := handled[p.MessageID]
		require.NotNil(t, msg, p.MessageID)
		assert.Equal(t, trace.TraceIDHex(), msg.Headers.Trace.TraceIDHex(), "the trace continues")
		assert.NotEqual(t, trace.SpanIDHex(), msg.Headers.Trace.SpanIDHex(), "as a child span")
		assert.Equal(t, p.Subtopic, msg.Subtopic.String())
		assert.Equal(t, p.Key, msg.Headers.PartitionKey)
		assert.Equal(t, transport.Partition(p.Key, bars.Domain.Partitions), p.Partition, "%s: Python produced on Go's partition for its key", p.MessageID)
		want, err := hex.DecodeString(trace.TraceIDHex())
		require.NoError(t, err)
		assert.Equal(t, want, msg.Headers.Trace.TraceID[:])
	}
}

// runRoundtrip runs kafka_roundtrip.py and reads its JSON lines.
func runRoundtrip(t *testing.T, py string, args ...string) []pyRecord {
	t.Helper()
	gen, err := filepath.Abs("../../python/generated")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, append([]string{"testdata/kafka_roundtrip.py"}, args...)...)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+gen, "PYTHONDONTWRITEBYTECODE=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	require.NoError(t, err, "kafka_roundtrip.py %v: %s", args, stderr.String())
	var out []pyRecord
	sc := bufio.NewScanner(strings.NewReader(string(stdout)))
	for sc.Scan() {
		var r pyRecord
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r), sc.Text())
		out = append(out, r)
	}
	return out
}
