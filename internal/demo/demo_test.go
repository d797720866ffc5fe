package demo_test

import (
	"bytes"
	"context"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/internal/demo"
	"github.com/ampyfin/ampy-bus/runtime/embedded"
)

// The demo plays seed §19 the same on every transport: only the URL changes.
// Its summary counts come from the bus_* metrics the hooks record, so a step
// that went missing (a fill not consumed, a poison order not dead-lettered,
// a replay that applied fills twice) changes the table or fails the run.
func TestDemo(t *testing.T) {
	for _, url := range []string{"embedded://nats", "embedded://kafka"} {
		t.Run(url, func(t *testing.T) {
			var out bytes.Buffer
			require.NoError(t, demo.Run(context.Background(), url, &out))
			s := out.String()
			row := func(domain, counts string) {
				t.Helper()
				assert.Regexp(t, regexp.MustCompile(`(?m)^`+domain+`\s+`+counts+`\s`), s)
			}
			// domain: published consumed retried dead-lettered decode-fail replayed.
			// bars: 3 and a corrupt one, dead-lettered by the checks; orders:
			// 2 and the poison one redriven; fills: 4 live and 4 replayed,
			// skipped as duplicates; dlq: the corrupt bar and the poison order.
			row("bars", `4\s+4\s+0\s+1\s+1\s+0`)
			row("signals", `1\s+1\s+0\s+0\s+0\s+0`)
			row("orders", `3\s+3\s+0\s+1\s+0\s+0`)
			row("fills", `4\s+8\s+1\s+0\s+0\s+4`)
			row("positions", `4\s+4\s+0\s+0\s+0\s+0`)
			row("metrics", `9\s+9\s+0\s+0\s+0\s+0`)
			row("control", `1\s+1\s+0\s+0\s+0\s+0`)
			row("dlq", `2\s+0\s+0\s+0\s+0\s+0`)
			assert.Contains(t, s, "dead-lettered: decode_error, the handler never saw it")
			assert.Contains(t, s, "key co_demo_001")
			assert.Contains(t, s, "handler: permanent failure: unknown account ALPACA-LIVE-02 (original ampy.dev.orders.v1.requests)")
			assert.Regexp(t, `broker  ← ampy.dev.orders.v1.requests\s+key co_demo_002\s+redriven from ampy.dev.dlq.v1.orders/`, s)
			assert.Contains(t, s, "replayed 4 fills: 0 applied again, 4 skipped as already applied")
			assert.Contains(t, s, "key ALPACA-LIVE-01|AAPL.XNAS 100 AAPL avg 192.0860")
		})
	}
}

// Against a shared broker the demo runs again and reads only its own run:
// the durable groups resume, the DLQ watch and the replay window start at
// the run's start.
func TestDemoRunsTwiceOnOneBroker(t *testing.T) {
	n, err := embedded.StartNATS(embedded.NATSOptions{})
	require.NoError(t, err)
	defer n.Shutdown()
	k, err := embedded.StartKafka(embedded.KafkaOptions{})
	require.NoError(t, err)
	defer k.Shutdown()
	for _, url := range []string{n.URL(), k.URL()} {
		for run := 1; run <= 2; run++ {
			var out bytes.Buffer
			require.NoError(t, demo.Run(context.Background(), url, &out), "run %d on %s:\n%s", run, url, out.String())
			assert.Contains(t, out.String(), "replayed 4 fills: 0 applied again")
		}
	}
}
