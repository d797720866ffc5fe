package conformance

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/generated/bars"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
)

// Publishing: a broker that is down, a full async window, lag.

func testBrokerDown(t *testing.T, s *suite) {
	b := s.bus(t)
	ctx := s.ctx(t)
	require.NoError(t, b.Ensure(ctx, bars.Domain))
	s.broker.Stop()
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	start := time.Now()
	_, err := bars.NewPublisher(b).Publish(pctx, bars.MustSubtopic("XNAS", "AAPL"), bar("AAPL", 1))
	took := time.Since(start)
	require.Error(t, err)
	assert.ErrorIs(t, err, ampybus.ErrUnavailable, "got %v", err)
	assert.Contains(t, err.Error(), "publish ampy.dev.bars.v1.XNAS.AAPL")
	assert.Less(t, took, 4*time.Second, "the error came within the deadline")
	t.Logf("%s down at %s: %v (after %s)", s.binding.Name, s.broker.URL(), err, took.Round(time.Millisecond))
}

// testBackpressure: with a window of one, a tight async loop fills it. In
// fail-fast mode the overflow fails with ErrBackpressure and only accepted
// messages are stored; by default every publish waits and goes through.
func testBackpressure(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	const n = 200
	count := func(b *ampybus.Bus) uint64 { return uint64(len(readStream(t, ctx, b.Transport(), barsStream()))) }

	fast := s.bus(t, ampybus.WithAsyncWindow(1), ampybus.WithAsyncFailFast())
	require.NoError(t, fast.Ensure(ctx, bars.Domain))
	pub := bars.NewPublisher(fast)
	var accepted []*ampybus.PublishFuture
	refused := 0
	for i := range n {
		f, err := pub.PublishAsync(ctx, bars.MustSubtopic("XNAS", "AAPL"), bar("AAPL", int64(i)))
		if err != nil {
			require.ErrorIs(t, err, ampybus.ErrBackpressure)
			refused++
			continue
		}
		accepted = append(accepted, f)
	}
	require.NoError(t, fast.Flush(ctx))
	for _, f := range accepted {
		_, err := f.Wait(ctx)
		require.NoError(t, err)
	}
	assert.Positive(t, refused, "a window of one must overflow in a tight loop")
	assert.Equal(t, uint64(len(accepted)), count(fast), "exactly the accepted messages are stored")

	wait := s.bus(t, ampybus.WithAsyncWindow(1))
	pub = bars.NewPublisher(wait)
	for i := range n {
		_, err := pub.PublishAsync(ctx, bars.MustSubtopic("XNAS", "MSFT"), bar("MSFT", int64(i)))
		require.NoError(t, err, "the default waits for room")
	}
	require.NoError(t, wait.Flush(ctx))
	assert.Equal(t, uint64(len(accepted)+n), count(wait))
}

func testLag(t *testing.T, s *suite) {
	const n = 20
	ctx := s.ctx(t)
	b := s.bus(t)
	release := make(chan struct{})
	sub, err := bars.Subscribe(ctx, b, bars.All(), func(ctx context.Context, _ *bars.Message) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}, ampybus.Durable("laggard"), ampybus.MaxInFlight(4))
	require.NoError(t, err)
	defer sub.Stop()
	publishBars(t, ctx, b, 0, n)
	require.Eventually(t, func() bool {
		lag, err := sub.Lag(ctx)
		return err == nil && lag == n
	}, 30*time.Second, 50*time.Millisecond, "a stuck consumer shows every message as lag")
	close(release)
	require.Eventually(t, func() bool {
		lag, err := sub.Lag(ctx)
		return err == nil && lag == 0
	}, 30*time.Second, 50*time.Millisecond, "caught up")
}

// testAsyncContext: the context of PublishAsync bounds only the wait for
// room; cancelling it afterwards does not fail the publish.
func testAsyncContext(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	b := s.bus(t)
	require.NoError(t, b.Ensure(ctx, bars.Domain))
	pub := bars.NewPublisher(b)
	var futures []*ampybus.PublishFuture
	for i := range 200 {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		sym := "S" + strconv.Itoa(i)
		f, err := pub.PublishAsync(c, bars.MustSubtopic("XNAS", sym), bar(sym, 1))
		cancel() // the caller is done waiting
		require.NoError(t, err)
		futures = append(futures, f)
	}
	for _, f := range futures {
		_, err := f.Wait(ctx)
		require.NoError(t, err)
	}
}
