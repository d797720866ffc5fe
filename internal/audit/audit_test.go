package audit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/generated"
	"github.com/ampyfin/ampy-bus/internal/audit"
	"github.com/ampyfin/ampy-bus/internal/demo"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/embedded"
)

// The demo's session (seed §19) reconstructed from the bus on both
// transports: the signal that led to both orders, each order's request
// and fills in causal order (the poison order's dead-lettered request, its
// redriven copy, then its fills), every record with its message id,
// producer, trace and payload hash, and both positions moved by exactly
// their fills.
func TestAuditReconstructsTheDemoSession(t *testing.T) {
	n, err := embedded.StartNATS(embedded.NATSOptions{})
	require.NoError(t, err)
	defer n.Shutdown()
	k, err := embedded.StartKafka(embedded.KafkaOptions{})
	require.NoError(t, err)
	defer k.Shutdown()
	for name, url := range map[string]string{"nats": n.URL(), "kafka": k.URL()} {
		t.Run(name, func(t *testing.T) {
			start := time.Now().Add(-time.Second)
			require.NoError(t, demo.Run(context.Background(), url, io.Discard))
			end := time.Now().Add(2 * time.Second)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			b, err := ampybus.Open(ctx, url, ampybus.WithEnv("dev"))
			require.NoError(t, err)
			defer b.Close()
			r, err := audit.Run(ctx, b, generated.Catalog, audit.Options{Env: "dev", Start: start, End: end})
			require.NoError(t, err)
			assert.True(t, r.Consistent, "problems: %v", r.Problems)
			require.Len(t, r.Orders, 2)

			good, poison := r.Orders[0], r.Orders[1]
			assert.Equal(t, "co_demo_001", good.ClientOrderID)
			assert.Equal(t, "ALPACA-LIVE-01", good.Account)
			assert.Equal(t, []string{"order", "fill", "fill"}, kinds(good.Events))
			assert.Equal(t, "100.0000", good.Filled)
			require.Len(t, good.Signals, 1, "the order continues the signal's trace")
			assert.Equal(t, good.Signals[0].TraceID, good.Events[0].TraceID)
			assert.Contains(t, good.Signals[0].Summary, "ALPHA hyper@2025-09-05 AAPL.XNAS")
			assert.Equal(t, "co_demo_002", poison.ClientOrderID)
			assert.Equal(t, []string{"order", "order", "fill", "fill"}, kinds(poison.Events), "the request, its redriven copy, then the fills")
			assert.Empty(t, poison.Events[0].RedriveOf)
			assert.Contains(t, poison.Events[1].RedriveOf, "ampy.dev.dlq.v1.orders")
			assert.Equal(t, poison.Events[0].MessageID, poison.Events[1].MessageID, "a redrive keeps the message id")
			for _, o := range r.Orders {
				for _, e := range append(o.Signals, o.Events...) {
					assert.NotEmpty(t, e.MessageID)
					assert.NotEmpty(t, e.Producer)
					assert.Len(t, e.TraceID, 32)
					assert.Regexp(t, `^sha256:[0-9a-f]{64}$`, e.PayloadSHA256)
				}
			}
			assert.Equal(t, "broker-alpaca@alp-1", good.Events[1].Producer)

			require.Len(t, r.Positions, 2)
			for _, p := range r.Positions {
				assert.Equal(t, "0.0000", p.Before)
				assert.Equal(t, "100.0000", p.Fills)
				assert.Equal(t, "100.0000", p.After)
				assert.True(t, p.Consistent)
			}

			one, err := audit.Run(ctx, b, generated.Catalog, audit.Options{Env: "dev", Start: start, End: end, Account: "ALPACA-LIVE-02"})
			require.NoError(t, err)
			require.Len(t, one.Orders, 1)
			assert.Equal(t, "co_demo_002", one.Orders[0].ClientOrderID)
			var text bytes.Buffer
			one.WriteText(&text)
			assert.Contains(t, text.String(), "position ALPACA-LIVE-02 AAPL.XNAS: 0.0000 before + fills 100.0000 = 100.0000 after: consistent")
			_, err = json.Marshal(one)
			require.NoError(t, err)
		})
	}
}

func kinds(rs []audit.Record) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Kind)
	}
	return out
}
