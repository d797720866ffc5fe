package conformance

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ampyfin/ampy-bus/generated/signals"
	commonv1 "github.com/ampyfin/ampy-bus/proto/ampy/common/v1"
	signalsv1 "github.com/ampyfin/ampy-bus/proto/ampy/signals/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
)

// signalLife is how long the signal that expires during the test is
// current: long enough for a live consumer on a loaded machine to handle
// it, short enough to wait out.
const signalLife = 8 * time.Second

// testSignals: the seed keys signals by (model_id, symbol, mic, horizon) and
// the latest before expires_at wins. A 1d and a 5d signal of one model and
// security are two values; an older signal of one horizon is stale; an
// expired signal is never handed over as current, live or in the state of
// the world, while a replay re-lives the stream and hands over what was
// current when it was published.
func testSignals(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	b := s.bus(t)
	require.NoError(t, b.Ensure(ctx, signals.Domain))
	pub := signals.NewPublisher(b)
	model := signals.MustSubtopic("hyper@2025-09-05")
	sig := func(symbol, horizon string, score int64, generated, expires time.Time) *signalsv1.Signal {
		m := &signalsv1.Signal{
			Security: &commonv1.SecurityId{Symbol: symbol, Mic: "XNAS"}, Type: commonv1.SignalType_SIGNAL_TYPE_ALPHA,
			ModelId: "hyper@2025-09-05", Horizon: horizon, GeneratedAt: timestamppb.New(generated),
			Value: &signalsv1.Signal_Score{Score: dec(score, 4)},
		}
		if !expires.IsZero() {
			m.ExpiresAt = timestamppb.New(expires)
		}
		return m
	}

	now := time.Now()
	// A signal that expires when it is generated is never current: refused.
	_, err := pub.Publish(ctx, model, sig("AAPL", "5d", 1, now, now))
	require.ErrorIs(t, err, ampybus.ErrContract)
	assert.ErrorContains(t, err, "is not after generated_at")

	start := time.Now().Add(-time.Second)
	publish := func(m *signalsv1.Signal) {
		_, err := pub.Publish(ctx, model, m)
		require.NoError(t, err)
	}
	publish(sig("AAPL", "5d", 5000, now.Add(-2*time.Second), now.Add(time.Hour))) // current
	publish(sig("AAPL", "1d", 1000, now.Add(-3*time.Second), now.Add(time.Hour))) // older, another horizon: current
	publish(sig("AAPL", "1d", 999, now.Add(-4*time.Second), now.Add(time.Hour)))  // older, same horizon: stale
	publish(sig("MSFT", "5d", -3450, now.Add(-2*time.Hour), now.Add(-time.Hour))) // expired before it was sent
	publish(sig("TSLA", "", 1, now, time.Time{}))                                 // no horizon, no expiry
	expiresSoon := time.Now().Add(signalLife)
	publish(sig("NVDA", "1d", 7000, time.Now(), expiresSoon)) // current, for a while

	collect := func() (func(context.Context, *signals.Message) error, func() []string) {
		var mu sync.Mutex
		var seen []string
		return func(_ context.Context, m *signals.Message) error {
				mu.Lock()
				defer mu.Unlock()
				assert.False(t, m.Expired, "expired: skip hands nothing expired over")
				seen = append(seen, m.Headers.PartitionKey)
				return nil
			}, func() []string {
				mu.Lock()
				defer mu.Unlock()
				out := append([]string(nil), seen...)
				sort.Strings(out)
				return out
			}
	}
	current := []string{"hyper@2025-09-05|AAPL.XNAS|1d", "hyper@2025-09-05|AAPL.XNAS|5d", "hyper@2025-09-05|NVDA.XNAS|1d", "hyper@2025-09-05|TSLA.XNAS|"}

	// Live: both horizons of AAPL, the signals still current; the older 1d
	// is stale and MSFT's expired.
	h, seen := collect()
	live, err := signals.Subscribe(ctx, b, signals.All(), h, ampybus.Durable("ensemble"), ampybus.DeliverAll())
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		st := live.Stats()
		return st.Handled+st.Stale+st.Expired >= 6
	}, 30*time.Second, 10*time.Millisecond)
	require.NoError(t, live.Stop())
	require.True(t, time.Now().Before(expiresSoon), "the live consumer took over %s; the test cannot tell expiry from delay", signalLife)
	st := live.Stats()
	assert.Equal(t, current, seen())
	assert.Equal(t, uint64(4), st.Handled)
	assert.Equal(t, uint64(1), st.Stale, "the older 1d signal")
	assert.Equal(t, uint64(1), st.Expired, "MSFT's signal")

	time.Sleep(time.Until(expiresSoon) + 50*time.Millisecond)

	// A replay re-lives the window: NVDA's signal was current when it was
	// published, so it is replayed as current; MSFT's never was.
	h, seen = collect()
	rst, err := signals.Replay(ctx, b, signals.All(), ampybus.ReplayWindow{Start: start, RequestID: "rr-signals"}, h)
	require.NoError(t, err)
	assert.Equal(t, current, seen())
	assert.Equal(t, ampybus.Stats{Handled: 4, Stale: 1, Expired: 1}, rst)

	// A new consumer now: NVDA's signal has expired too.
	h, seen = collect()
	late, err := signals.Subscribe(ctx, b, signals.All(), h, ampybus.Durable("late-joiner"), ampybus.DeliverAll())
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		st := late.Stats()
		return st.Handled+st.Stale+st.Expired >= 6
	}, 30*time.Second, 10*time.Millisecond)
	require.NoError(t, late.Stop())
	assert.Equal(t, []string{"hyper@2025-09-05|AAPL.XNAS|1d", "hyper@2025-09-05|AAPL.XNAS|5d", "hyper@2025-09-05|TSLA.XNAS|"}, seen())
	assert.Equal(t, uint64(2), late.Stats().Expired, "MSFT's and NVDA's signals")

	// The state of the world holds only current values.
	_, ok, err := signals.Snapshot(ctx, b, signals.All(), "hyper@2025-09-05|NVDA.XNAS|1d")
	require.NoError(t, err)
	assert.False(t, ok, "an expired signal is not part of the state of the world")
	m, ok, err := signals.Snapshot(ctx, b, signals.All(), "hyper@2025-09-05|AAPL.XNAS|1d")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, int64(1000), m.Payload.GetScore().GetScaled(), "the newer 1d signal")
}
