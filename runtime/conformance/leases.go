package conformance

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/generated/bars"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
)

// Leases: a message a handler holds, or waits to be handed, stays its
// until settled, and stopping lets go of what is in flight.

func testCloseInFlight(t *testing.T, s *suite) {
	n := scale(300)
	ctx := s.ctx(t)
	b := s.bus(t)
	require.NoError(t, b.Ensure(ctx, bars.Domain))
	// Producer side: async publishes are flushed by Close.
	producer := s.bus(t)
	pub := bars.NewPublisher(producer)
	var futures []*ampybus.PublishFuture
	for i := range n {
		f, err := pub.PublishAsync(ctx, bars.MustSubtopic("XNAS", "AAPL"), bar("AAPL", int64(i)))
		require.NoError(t, err)
		futures = append(futures, f)
	}
	require.NoError(t, producer.Close())
	for _, f := range futures {
		_, err := f.Wait(ctx)
		require.NoError(t, err, "Close flushed every pending publish")
	}

	// Consumer side: stop a subscription mid-stream, start it again; together
	// the two runs see every message.
	seen := newCollector()
	slow := func(ctx context.Context, m *bars.Message) error {
		time.Sleep(time.Millisecond)
		return seen.handle(ctx, m)
	}
	sub, err := bars.Subscribe(ctx, b, bars.All(), slow, ampybus.Durable("closer"), ampybus.DeliverAll(), ampybus.AckWait(time.Second))
	require.NoError(t, err)
	seen.wait(t, n/3)
	require.NoError(t, sub.Stop())
	sub, err = bars.Subscribe(ctx, b, bars.All(), slow, ampybus.Durable("closer"), ampybus.DeliverAll(), ampybus.AckWait(time.Second))
	require.NoError(t, err)
	defer sub.Stop()
	require.Eventually(t, func() bool {
		seen.mu.Lock()
		defer seen.mu.Unlock()
		return len(seen.ids) == n
	}, 45*time.Second, 50*time.Millisecond, "a message was lost across the stop")
}

// testStartNew: a new subscription without DeliverAll sees every message
// published after Subscribe returned and none from before, durable or not.
// testSlowHandler: a handler that takes longer than the ack wait keeps its
// lease (NATS InProgress) and is not redelivered meanwhile.
func testSlowHandler(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	b := s.bus(t)
	var calls atomic.Int32
	done := make(chan struct{})
	sub, err := bars.Subscribe(ctx, b, bars.All(), func(context.Context, *bars.Message) error {
		if calls.Add(1) == 1 {
			time.Sleep(2500 * time.Millisecond) // 2.5× the ack wait
			close(done)
		}
		return nil
	}, ampybus.Durable("slow"), ampybus.AckWait(time.Second), ampybus.Concurrency(2), ampybus.NoDedupe())
	require.NoError(t, err)
	defer sub.Stop()
	publishBars(t, ctx, b, 0, 1)
	recv(t, done)
	time.Sleep(1500 * time.Millisecond)
	assert.Equal(t, int32(1), calls.Load(), "not redelivered while the handler was working")
	assert.Equal(t, uint64(1), sub.Stats().Handled)
}

// testQueuedLease: messages waiting for a handler (Concurrency 1, a slow
// handler) keep their lease; none is redelivered, let alone dead-lettered.
func testQueuedLease(t *testing.T, s *suite) {
	const n = 20
	ctx := s.ctx(t)
	b := s.bus(t)
	sub, err := bars.Subscribe(ctx, b, bars.All(), func(context.Context, *bars.Message) error {
		time.Sleep(100 * time.Millisecond) // 20 × 100ms = 2× the ack wait
		return nil
	}, ampybus.Durable("lease"), ampybus.AckWait(time.Second), ampybus.MaxAttempts(2))
	require.NoError(t, err)
	defer sub.Stop()
	pub := bars.NewPublisher(b)
	for i := range n {
		sym := "S" + strconv.Itoa(i)
		_, err := pub.Publish(ctx, bars.MustSubtopic("XNAS", sym), bar(sym, 1))
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return sub.Stats().Handled == n }, 30*time.Second, 20*time.Millisecond, "%+v", sub.Stats())
	time.Sleep(1500 * time.Millisecond)
	st := sub.Stats()
	assert.Zero(t, st.DeadLettered, "nothing failed: %+v", st)
	assert.Zero(t, st.Duplicates, "nothing was redelivered: %+v", st)
}

// testAbortStopsHandlers: after Abort no handler starts, whatever was queued.
func testAbortStopsHandlers(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	b := s.bus(t)
	require.NoError(t, b.Ensure(ctx, bars.Domain))
	var aborted atomic.Bool
	var after atomic.Int32
	started := make(chan struct{}, 100)
	sub, err := bars.Subscribe(ctx, b, bars.All(), func(context.Context, *bars.Message) error {
		if aborted.Load() {
			after.Add(1)
		}
		started <- struct{}{}
		time.Sleep(50 * time.Millisecond)
		return nil
	}, ampybus.Durable("abort"), ampybus.DeliverAll())
	require.NoError(t, err)
	pub := bars.NewPublisher(b)
	for i := range 20 {
		sym := "S" + strconv.Itoa(i)
		_, err := pub.Publish(ctx, bars.MustSubtopic("XNAS", sym), bar(sym, 1))
		require.NoError(t, err)
	}
	<-started
	time.Sleep(200 * time.Millisecond) // the rest are fetched and queued
	aborted.Store(true)
	sub.Abort()
	<-sub.Done()
	assert.Zero(t, after.Load(), "no handler ran after Abort")
}
