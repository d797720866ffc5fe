package dynamic_test

import (
	"context"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/ampyfin/ampy-bus/gen/contract"
	"github.com/ampyfin/ampy-bus/gen/dynamic"
	"github.com/ampyfin/ampy-bus/gen/protoset"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/embedded"
	_ "github.com/ampyfin/ampy-bus/runtime/natsbinding"
)

// A contract that says expired: flag hands an expired signal over with
// Expired set and counts it, instead of skipping it; a current one arrives
// unflagged.
func TestExpiredFlagHandsOverMarked(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	src, err := os.ReadFile("../../contract.yaml")
	require.NoError(t, err)
	flagged := strings.Replace(string(src), "expires: expires_at, expired: skip}", "expires: expires_at, expired: flag}", 1)
	require.NotEqual(t, string(src), flagged, "the shipped contract's signals expire")
	schemas, err := protoset.Load(ctx, protoset.Options{ProtoPaths: []string{"../../proto"}})
	require.NoError(t, err)
	c, err := contract.Parse("contract.yaml", []byte(flagged), schemas)
	require.NoError(t, err)
	cat := dynamic.Catalog(c)

	srv, err := embedded.StartNATS(embedded.NATSOptions{})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	b, err := ampybus.Open(ctx, srv.URL(), ampybus.WithProducer("ampy-model-server@t", "ampy-model-server"), ampybus.WithProvisioning())
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })

	tp, err := cat.Resolve("ampy.dev.signals.v1.hyper@2025-09-05")
	require.NoError(t, err)
	require.True(t, tp.Domain.FlagExpired)
	require.NoError(t, b.Ensure(ctx, tp.Domain))
	signal := func(symbol string, generated, expires time.Time) *dynamicpb.Message {
		m := tp.Route.NewPayload().(*dynamicpb.Message)
		fields := m.Descriptor().Fields()
		m.Set(fields.ByName("model_id"), protoreflect.ValueOfString("hyper@2025-09-05"))
		sec := m.Mutable(fields.ByName("security")).Message()
		sec.Set(sec.Descriptor().Fields().ByName("symbol"), protoreflect.ValueOfString(symbol))
		sec.Set(sec.Descriptor().Fields().ByName("mic"), protoreflect.ValueOfString("XNAS"))
		for name, at := range map[protoreflect.Name]time.Time{"generated_at": generated, "expires_at": expires} {
			ts := m.Mutable(fields.ByName(name)).Message()
			ts.Set(ts.Descriptor().Fields().ByName("seconds"), protoreflect.ValueOfInt64(at.Unix()))
		}
		return m
	}
	now := time.Now()
	_, err = tp.Route.Publish(ctx, b, tp.Subtopic, signal("MSFT", now.Add(-2*time.Hour), now.Add(-time.Hour)))
	require.NoError(t, err)
	_, err = tp.Route.Publish(ctx, b, tp.Subtopic, signal("AAPL", now.Add(-time.Minute), now.Add(time.Hour)))
	require.NoError(t, err)

	var expired, current atomic.Int32
	sub, err := tp.Route.Subscribe(ctx, b, "*", func(_ context.Context, m *ampybus.AnyMessage) error {
		if strings.Contains(m.Headers.PartitionKey, "MSFT") {
			assert.True(t, m.Expired, "MSFT's signal expired an hour ago")
			expired.Add(1)
		} else {
			assert.False(t, m.Expired, "AAPL's signal is current")
			current.Add(1)
		}
		return nil
	}, ampybus.Durable("ensemble"), ampybus.DeliverAll())
	require.NoError(t, err)
	require.Eventually(t, func() bool { return sub.Stats().Handled == 2 }, 20*time.Second, 10*time.Millisecond)
	require.NoError(t, sub.Stop())
	assert.Equal(t, int32(1), expired.Load())
	assert.Equal(t, int32(1), current.Load())
	assert.Equal(t, uint64(1), sub.Stats().Expired, "a flagged message is counted too")
}
