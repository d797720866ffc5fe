package ampyprom_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ampyfin/ampy-bus/generated/positions"
	"github.com/ampyfin/ampy-bus/plugin/ampyprom"
	commonv1 "github.com/ampyfin/ampy-bus/proto/ampy/common/v1"
	positionsv1 "github.com/ampyfin/ampy-bus/proto/ampy/positions/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	_ "github.com/ampyfin/ampy-bus/runtime/embedded"
)

// /metrics, scraped over HTTP, has the seed's eight names as Prometheus
// spells them, and the semantic-convention metrics with their units, with
// the values one retried and dead-lettered message implies, on both
// transports.
func TestMetricsEndpointNamesEveryMetric(t *testing.T) {
	for _, url := range []string{"embedded://nats", "embedded://kafka"} {
		t.Run(url, func(t *testing.T) { testMetricsEndpoint(t, url) })
	}
}

func testMetricsEndpoint(t *testing.T, url string) {
	system := strings.TrimPrefix(url, "embedded://")
	exp, err := ampyprom.New(nil)
	require.NoError(t, err)
	srv, err := exp.Serve("127.0.0.1:0")
	require.NoError(t, err)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := ampybus.Open(ctx, url, ampybus.WithProducer("prom@test", "prom"), ampybus.WithHooks(exp.Hook))
	require.NoError(t, err)
	defer b.Close()
	var calls atomic.Int32
	sub, err := positions.SubscribeSnapshots(ctx, b, positions.AllSnapshots(), func(context.Context, *positions.SnapshotsMessage) error {
		if calls.Add(1) == 1 {
			return errors.New("first attempt fails")
		}
		return ampybus.Permanent(errors.New("then it is refused"))
	}, ampybus.Durable("prom"), ampybus.RetryBackoff(func(int) time.Duration { return time.Millisecond }))
	require.NoError(t, err)
	defer sub.Stop()
	_, err = positions.NewSnapshotsPublisher(b).Publish(ctx, positions.NewSnapshotsSubtopic(), &positionsv1.PositionSnapshot{
		AccountId: "A", Security: &commonv1.SecurityId{Symbol: "AAPL", Mic: "XNAS"}, AsOf: timestamppb.Now()})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return sub.Stats().DeadLettered == 1 }, 20*time.Second, 10*time.Millisecond)

	res, err := http.Get("http://" + srv.Addr() + "/metrics")
	require.NoError(t, err)
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	require.NoError(t, err)
	text := string(body)
	for _, want := range []string{
		`bus_produced_total{producer="prom@test",topic="ampy.dev.positions.v1.snapshots"} 1`,
		`bus_consumed_total{consumer="prom",topic="ampy.dev.positions.v1.snapshots"} 1`,
		`bus_delivery_latency_ms_count{topic="ampy.dev.positions.v1.snapshots"} 1`,
		`bus_batch_size_bytes_count{topic="ampy.dev.positions.v1.snapshots"} 1`,
		`bus_consumer_lag{consumer="prom",topic="ampy.dev.positions.v1.snapshots"} `,
		`bus_dlq_total{reason="handler",topic="ampy.dev.positions.v1.snapshots"} 1`,
		`bus_retry_total{reason="handler",topic="ampy.dev.positions.v1.snapshots"} 1`,
		`messaging_client_sent_messages_total{`,
		`messaging_client_consumed_messages_total{`,
		`messaging_client_operation_duration_seconds_bucket{`,
		`messaging_process_duration_seconds_bucket{`,
		`messaging_process_duration_seconds_count{error_type="handler_error",messaging_consumer_group_name="prom",messaging_destination_name="ampy.dev.positions.v1.snapshots",messaging_operation_name="process",messaging_operation_type="process",messaging_system="` + system + `"} 2`,
		`messaging_process_duration_seconds_bucket{error_type="handler_error",messaging_consumer_group_name="prom",messaging_destination_name="ampy.dev.positions.v1.snapshots",messaging_operation_name="process",messaging_operation_type="process",messaging_system="` + system + `",le="0.0005"} `,
		`go_goroutines `,
	} {
		assert.True(t, strings.Contains(text, want), "/metrics lacks %s", want)
	}
	assert.NotContains(t, text, "_total_total")
	assert.False(t, strings.Contains(text, "AAPL"), "no label carries a subject's symbol")
}
