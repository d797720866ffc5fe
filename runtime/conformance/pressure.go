package conformance

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ampyfin/ampy-bus/generated/metrics"
	"github.com/ampyfin/ampy-bus/generated/news"
	"github.com/ampyfin/ampy-bus/generated/orders"
	metricsv1 "github.com/ampyfin/ampy-bus/proto/ampy/metrics/v1"
	newsv1 "github.com/ampyfin/ampy-bus/proto/ampy/news/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
)

// stuckGroup subscribes a consumer group whose handler waits until release:
// a slow consumer, whose lag grows with every message published.
func stuckGroup[M any](t *testing.T, subscribe func(h func(context.Context, M) error) (*ampybus.Subscription, error)) (release func()) {
	gate := make(chan struct{})
	sub, err := subscribe(func(ctx context.Context, _ M) error {
		select {
		case <-gate:
		case <-ctx.Done():
		}
		return nil
	})
	require.NoError(t, err)
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(func() {
		release()
		_ = sub.Stop()
	})
	return release
}

// pressureLog records what a PressureHook sees.
type pressureLog struct {
	mu     sync.Mutex
	events []string
}

func (l *pressureLog) OnPressure(e ampybus.PressureStats) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e.Domain+" lagging="+strconv.FormatBool(e.Lagging)+" group="+e.Group)
}

func (l *pressureLog) seen() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.events...)
}

// pressureOf is the bus's backpressure of one domain prefix.
func pressureOf(b *ampybus.Bus, prefix string) (ampybus.PressureStats, bool) {
	for _, p := range b.Pressure() {
		if p.Domain == prefix {
			return p, true
		}
	}
	return ampybus.PressureStats{}, false
}

// waitLagging waits until the bus sees the domain's watched group lag (or
// catch up, with want false).
func waitLagging(t *testing.T, b *ampybus.Bus, prefix string, want bool) ampybus.PressureStats {
	var st ampybus.PressureStats
	require.Eventually(t, func() bool {
		var ok bool
		st, ok = pressureOf(b, prefix)
		return ok && st.Lagging == want
	}, 45*time.Second, 20*time.Millisecond, "backpressure of %s never became lagging=%v: %+v (all: %+v)", prefix, want, st, b.Pressure())
	return st
}

// testBackpressure: seed §8, consumers signal lag and producers back off by
// priority. A slow consumer group the contract names falls more than its
// QoS class's max_lag behind: a low-priority domain's publishes pause until
// it catches up (or their context ends, with ErrBackpressure), a
// normal-priority domain's are slowed to the bus's slow rate, batching
// producers are told to shrink their batches, and a critical domain's
// publishes go through untouched.
func testProducerBackpressure(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	const slowRate = 50
	hook := &pressureLog{}
	b := s.bus(t, ampybus.WithLagPoll(50*time.Millisecond), ampybus.WithSlowRate(slowRate), ampybus.WithHooks(hook))
	// The backlog comes from another producer, which does not watch.
	flooder := s.bus(t, ampybus.WithoutLagWatch())
	flood := func(n int, publish func(i int) (*ampybus.PublishFuture, error)) {
		for i := range n {
			_, err := publish(i)
			require.NoError(t, err)
		}
		require.NoError(t, flooder.Flush(ctx))
	}

	// Low priority (metrics, telemetry): paused.
	require.Equal(t, ampybus.PriorityLow, metrics.Domain.Priority)
	require.Contains(t, metrics.Domain.ConsumerGroups, "dashboard")
	require.NoError(t, b.Ensure(ctx, metrics.Domain))
	release := stuckGroup(t, func(h func(context.Context, *metrics.Message) error) (*ampybus.Subscription, error) {
		return metrics.Subscribe(ctx, b, metrics.All(), h, ampybus.Durable("dashboard"), ampybus.MaxInFlight(8))
	})
	mpub := metrics.NewPublisher(b)
	svc := metrics.MustSubtopic("ampy-oms")
	metric := func(i int) *metricsv1.Metric {
		return &metricsv1.Metric{Name: "orders_sent_" + strconv.Itoa(i%50), Value: float64(i), At: timestamppb.Now()}
	}
	// A bus watches the domains it publishes to, from its first publish.
	_, err := mpub.Publish(ctx, svc, metric(0))
	require.NoError(t, err)
	mflood := metrics.NewPublisher(flooder)
	flood(int(metrics.Domain.MaxLag)+500, func(i int) (*ampybus.PublishFuture, error) { return mflood.PublishAsync(ctx, svc, metric(i)) })
	st := waitLagging(t, b, metrics.Domain.Prefix("dev"), true)
	assert.Equal(t, "dashboard", st.Group)
	assert.Greater(t, st.Lag, metrics.Domain.MaxLag)
	assert.Equal(t, 25, mpub.BatchSize(100), "batching producers shrink their batches")

	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = mpub.Publish(short, svc, metric(1))
	cancel()
	require.ErrorIs(t, err, ampybus.ErrBackpressure, "a paused publish ends with its context")
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorContains(t, err, `consumer group dashboard is`)

	held := make(chan error, 1)
	go func() {
		_, err := mpub.Publish(ctx, svc, metric(2))
		held <- err
	}()
	select {
	case err := <-held:
		t.Fatalf("a low-priority publish went through while its consumers lag: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	release() // the consumer catches up
	select {
	case err := <-held:
		require.NoError(t, err, "the paused publish resumes once the group catches up")
	case <-time.After(45 * time.Second):
		t.Fatal("the paused publish never resumed")
	}
	st = waitLagging(t, b, metrics.Domain.Prefix("dev"), false)
	assert.LessOrEqual(t, st.Lag, metrics.Domain.MaxLag/2)
	assert.Equal(t, uint64(1), st.Episodes)
	assert.Equal(t, uint64(2), st.Paused, "the two publishes made while lagging")
	assert.Equal(t, 100, mpub.BatchSize(100), "full batches again")
	// Hooks run just after the state changes: wait for the end's.
	require.Eventually(t, func() bool { return len(hook.seen()) >= 2 }, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, []string{"ampy.dev.metrics.v1 lagging=true group=dashboard", "ampy.dev.metrics.v1 lagging=false group=dashboard"}, hook.seen(),
		"a PressureHook sees the episode begin and end")

	// Normal priority (news, standard): slowed to the slow rate.
	require.Equal(t, ampybus.PriorityNormal, news.Domain.Priority)
	require.NoError(t, b.Ensure(ctx, news.Domain))
	stuckGroup(t, func(h func(context.Context, *news.RawMessage) error) (*ampybus.Subscription, error) {
		return news.SubscribeRaw(ctx, b, news.AllRaw(), h, ampybus.Durable("ampy-features"), ampybus.MaxInFlight(8))
	})
	npub := news.NewRawPublisher(b)
	item := func(i int) *newsv1.NewsItem {
		return &newsv1.NewsItem{Id: "mb_" + strconv.Itoa(i), Source: "marketbeat", Headline: "h" + strconv.Itoa(i), PublishedAt: timestamppb.Now()}
	}
	_, err = npub.Publish(ctx, news.NewRawSubtopic(), item(-1))
	require.NoError(t, err)
	nflood := news.NewRawPublisher(flooder)
	flood(int(news.Domain.MaxLag)+500, func(i int) (*ampybus.PublishFuture, error) {
		return nflood.PublishAsync(ctx, news.NewRawSubtopic(), item(i))
	})
	waitLagging(t, b, news.Domain.Prefix("dev"), true)
	const paced = 20
	began := time.Now()
	for i := range paced {
		_, err := npub.Publish(ctx, news.NewRawSubtopic(), item(100_000+i))
		require.NoError(t, err, "a slowed publish is delayed, not refused")
	}
	took := time.Since(began)
	// A slot past the publish's deadline is refused at once, not waited for.
	// When the publish before took longer than a slot (a loaded machine),
	// the limiter has a slot free now and the tiny publish goes to the
	// broker, where its deadline ends it; the one after it then finds the
	// next slot a whole interval away.
	_, err = npub.Publish(ctx, news.NewRawSubtopic(), item(100_100))
	require.NoError(t, err)
	tries := 0
	for tries < 10 {
		tries++
		tiny, cancel := context.WithTimeout(ctx, time.Millisecond)
		_, err = npub.Publish(tiny, news.NewRawSubtopic(), item(100_100+tries))
		cancel()
		if errors.Is(err, ampybus.ErrBackpressure) {
			break
		}
	}
	require.ErrorIs(t, err, ampybus.ErrBackpressure, "after %d tries", tries)
	assert.ErrorContains(t, err, "is slowed (priority normal)")
	st, _ = pressureOf(b, news.Domain.Prefix("dev"))
	assert.Equal(t, uint64(paced+1+tries), st.Slowed)
	assert.Zero(t, st.Paused)
	// Paced to one slot per 1/slowRate: at least (paced-1) slots apart.
	assert.GreaterOrEqual(t, took, time.Duration(paced-1)*time.Second/slowRate, "slowed to %d/s", slowRate)

	// Critical (orders): never held back, whatever the lag.
	require.Equal(t, ampybus.PriorityCritical, orders.Domain.Priority)
	require.NoError(t, b.Ensure(ctx, orders.Domain))
	stuckGroup(t, func(h func(context.Context, *orders.RequestsMessage) error) (*ampybus.Subscription, error) {
		return orders.SubscribeRequests(ctx, b, orders.AllRequests(), h, ampybus.Durable("broker-alpaca"), ampybus.MaxInFlight(8))
	})
	opub := orders.NewRequestsPublisher(b)
	_, err = opub.Publish(ctx, orders.NewRequestsSubtopic(), order("co_bp_first", 1))
	require.NoError(t, err)
	oflood := orders.NewRequestsPublisher(flooder)
	flood(int(orders.Domain.MaxLag)+500, func(i int) (*ampybus.PublishFuture, error) {
		return oflood.PublishAsync(ctx, orders.NewRequestsSubtopic(), order("co_bp_"+strconv.Itoa(i), int64(i)))
	})
	st = waitLagging(t, b, orders.Domain.Prefix("dev"), true)
	assert.Equal(t, "broker-alpaca", st.Group)
	short, cancel = context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for i := range 5 {
		_, err := opub.Publish(short, orders.NewRequestsSubtopic(), order("co_bp_late_"+strconv.Itoa(i), int64(i)))
		require.False(t, errors.Is(err, ampybus.ErrBackpressure), "a critical publish is never held back: %v", err)
		require.NoError(t, err)
	}
	st, _ = pressureOf(b, orders.Domain.Prefix("dev"))
	assert.Zero(t, st.Paused+st.Slowed, "critical publishes neither paused nor slowed")
}
