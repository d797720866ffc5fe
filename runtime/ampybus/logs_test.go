package ampybus_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ampyfin/ampy-bus/generated/positions"
	commonv1 "github.com/ampyfin/ampy-bus/proto/ampy/common/v1"
	positionsv1 "github.com/ampyfin/ampy-bus/proto/ampy/positions/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
)

// syncBuffer is a log sink for several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// With a JSON logger at Debug, each message's path is one line per step
// with message_id, trace_id, topic, producer or consumer, result and
// latency_ms, and no line carries payload bytes. At the default Info
// level a message handled without trouble logs nothing.
func TestLogsAreStructuredQuietAndCarryNoPayload(t *testing.T) {
	const secret = "PAYLOAD-ONLY-7f3a" // in a field no key or header derives from
	snapshot := func(acct string) *positionsv1.PositionSnapshot {
		return &positionsv1.PositionSnapshot{AccountId: acct, Security: &commonv1.SecurityId{Symbol: "AAPL", Mic: "XNAS"},
			AsOf: timestamppb.Now(), Meta: &commonv1.Meta{Checksum: secret}}
	}
	for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo} {
		t.Run(level.String(), func(t *testing.T) {
			ctx := testCtx(t)
			var logs syncBuffer
			b, err := ampybus.Open(ctx, "embedded://nats", ampybus.WithProducer("logs@test", "logs"),
				ampybus.WithLogger(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: level}))))
			require.NoError(t, err)
			defer b.Close()
			var calls atomic.Int32
			sub, err := positions.SubscribeSnapshots(ctx, b, positions.AllSnapshots(), func(_ context.Context, m *positions.SnapshotsMessage) error {
				switch m.Payload.GetAccountId() {
				case "RETRY":
					if calls.Add(1) == 1 {
						return errors.New("try again")
					}
				case "REFUSE":
					return ampybus.Permanent(errors.New("refused"))
				}
				return nil
			}, ampybus.Durable("logs"), ampybus.RetryBackoff(func(int) time.Duration { return time.Millisecond }))
			require.NoError(t, err)
			var payloads [][]byte
			for _, acct := range []string{"OK", "RETRY", "REFUSE"} {
				p := snapshot(acct)
				raw, err := proto.Marshal(p)
				require.NoError(t, err)
				payloads = append(payloads, raw)
				_, err = positions.NewSnapshotsPublisher(b).Publish(ctx, positions.NewSnapshotsSubtopic(), p)
				require.NoError(t, err)
			}
			require.Eventually(t, func() bool {
				st := sub.Stats()
				return st.Handled == 2 && st.DeadLettered == 1
			}, 20*time.Second, 10*time.Millisecond)
			require.NoError(t, sub.Stop())

			text := logs.String()
			assert.NotContains(t, text, secret, "a log line carries payload bytes")
			for _, raw := range payloads {
				assert.NotContains(t, text, base64.StdEncoding.EncodeToString(raw))
			}
			results := map[string]int{}
			for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
				var rec map[string]any
				require.NoError(t, json.Unmarshal([]byte(line), &rec), "not a JSON line: %s", line)
				result, ok := rec["result"].(string)
				if !ok {
					continue
				}
				results[result]++
				for _, k := range []string{"message_id", "trace_id", "topic", "result", "latency_ms"} {
					assert.Contains(t, rec, k, "%s", line)
				}
				assert.True(t, rec["producer"] != nil || rec["consumer"] != nil, "%s", line)
				if result == "ok" && rec["msg"] == "consumed" {
					assert.Equal(t, "DEBUG", rec["level"], "a handled message logs at Debug")
				}
			}
			if level == slog.LevelDebug {
				// published: 3 messages and a dead letter; consumed ok: 2.
				assert.Equal(t, map[string]int{"ok": 6, "retry": 1, "dlq": 1}, results)
			} else {
				assert.Equal(t, map[string]int{"retry": 1, "dlq": 1}, results, "at Info only the retry and the dead letter log")
			}
		})
	}
}
