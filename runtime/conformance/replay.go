package conformance

import (
	"context"
	"errors"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ampyfin/ampy-bus/generated/bars"
	"github.com/ampyfin/ampy-bus/generated/control"
	"github.com/ampyfin/ampy-bus/generated/fx"
	"github.com/ampyfin/ampy-bus/generated/positions"
	"github.com/ampyfin/ampy-bus/generated/ticks"
	controlv1 "github.com/ampyfin/ampy-bus/proto/ampy/control/v1"
	fxv1 "github.com/ampyfin/ampy-bus/proto/ampy/fx/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/checkpoint"
	"github.com/ampyfin/ampy-bus/runtime/dedupe"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// Reading history: bounded windows, replay, state of the world,
// checkpoints and what the broker holds.

// testBoundedWindow: a replay reads [start, end) by stored time, or to the
// high watermark captured when it began, then ends; optionally one key only.
func testBoundedWindow(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	b := s.bus(t)
	tr := b.Transport()
	st := barsStream()
	require.NoError(t, b.Ensure(ctx, bars.Domain))
	pub := bars.NewPublisher(b)
	publish := func(sym string, from, to int) {
		for i := from; i < to; i++ {
			_, err := pub.Publish(ctx, bars.MustSubtopic("XNAS", sym), bar(sym, int64(i)))
			require.NoError(t, err)
		}
	}
	publish("AAPL", 0, 5)
	time.Sleep(60 * time.Millisecond)
	start := time.Now()
	publish("AAPL", 5, 10)
	publish("MSFT", 100, 103)
	time.Sleep(60 * time.Millisecond)
	end := time.Now()
	publish("AAPL", 10, 15)

	all := []string{st.Prefix + ".>"}
	window := transport.Subscription{Stream: st, Filters: all, Bounded: true, Until: end, MaxInFlight: 64, AckWait: 30 * time.Second,
		Start: transport.StartPosition{Kind: transport.StartAtTime, Time: start}}
	got := drain(t, ctx, tr, window)
	sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
	assert.Equal(t, []int64{5, 6, 7, 8, 9, 100, 101, 102}, got, "exactly [start, end)")

	window.Key = "XNAS.MSFT"
	assert.Equal(t, []int64{100, 101, 102}, drain(t, ctx, tr, window), "one key, in order")

	// Without an end time it stops at the high watermark: what is published
	// while it runs is left for the next replay.
	whole := transport.Subscription{Stream: st, Filters: all, Bounded: true, MaxInFlight: 1, AckWait: 30 * time.Second,
		Start: transport.StartPosition{Kind: transport.StartFirst}}
	c, err := tr.Subscribe(ctx, whole)
	require.NoError(t, err)
	n := 0
	for {
		d, err := c.Next(ctx)
		if errors.Is(err, transport.ErrEndOfStream) {
			break
		}
		require.NoError(t, err)
		if n == 0 {
			publish("NVDA", 200, 205) // during the replay
		}
		n++
		require.NoError(t, d.Ack(ctx))
	}
	require.NoError(t, c.Close())
	assert.Equal(t, 18, n, "the 18 messages there when it began")

	// An empty window ends at once.
	empty := window
	empty.Key, empty.Start.Time, empty.Until = "", end.Add(time.Hour), end.Add(2*time.Hour)
	assert.Empty(t, drain(t, ctx, tr, empty))
}

// testReplay publishes a known history and replays a window and a key
// through the typed API: nothing missing, nothing extra, key order kept,
// effects already applied not applied again, the live consumer unmoved.
func testReplay(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	b := s.bus(t)
	pub := positions.NewSnapshotsPublisher(b)
	seq := int64(0)
	batch := func() (ids []string) {
		for range 10 {
			for k := range 3 {
				seq++
				res, err := pub.Publish(ctx, positions.NewSnapshotsSubtopic(), position("ACC-"+strconv.Itoa(k), seq))
				require.NoError(t, err)
				ids = append(ids, res.MessageID)
			}
		}
		return ids
	}
	require.NoError(t, b.Ensure(ctx, positions.Domain))
	before := batch()
	time.Sleep(60 * time.Millisecond)
	start := time.Now()
	window := batch()
	time.Sleep(60 * time.Millisecond)
	end := time.Now()
	after := batch()
	history := len(before) + len(window) + len(after)

	// The live service applies everything, remembering what it applied.
	store := dedupe.NewMemory(4096)
	var mu sync.Mutex
	effects := map[string]int{}
	apply := func(_ context.Context, m *positions.SnapshotsMessage) error {
		mu.Lock()
		effects[m.Headers.MessageID]++
		mu.Unlock()
		return nil
	}
	live, err := positions.SubscribeSnapshots(ctx, b, positions.AllSnapshots(), apply,
		ampybus.Durable("pnl"), ampybus.DeliverAll(), ampybus.Dedupe(store, time.Hour))
	require.NoError(t, err)
	defer live.Stop()
	require.Eventually(t, func() bool { return live.Stats().Handled == uint64(history) }, 30*time.Second, 20*time.Millisecond)

	// An operator replays the window for the live service: nothing is applied twice.
	st, err := positions.ReplaySnapshotsWindow(ctx, b, positions.AllSnapshots(), ampybus.ReplayWindow{Start: start, End: end, RequestID: "rr-1"}, apply,
		ampybus.Durable("pnl"), ampybus.Dedupe(store, time.Hour))
	require.NoError(t, err)
	assert.Equal(t, uint64(len(window)), st.Duplicates, "every replayed message was already applied")
	assert.Zero(t, st.Handled)
	mu.Lock()
	for id, n := range effects {
		assert.Equal(t, 1, n, "effect of %s applied once", id)
	}
	mu.Unlock()

	// A backtest (no prior effects) replays the window while live traffic flows.
	var got []*positions.SnapshotsMessage
	record := func(_ context.Context, m *positions.SnapshotsMessage) error {
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
		return nil
	}
	liveDuring := make(chan []string, 1)
	go func() { liveDuring <- batch() }()
	st, err = positions.ReplaySnapshotsWindow(ctx, b, positions.AllSnapshots(), ampybus.ReplayWindow{Start: start, End: end, RequestID: "rr-2"}, record)
	require.NoError(t, err)
	extra := <-liveDuring
	mu.Lock()
	var ids []string
	for _, m := range got {
		ids = append(ids, m.Headers.MessageID)
		assert.Equal(t, "rr-2", m.ReplayRequestID)
		assert.Equal(t, "rr-2", m.Headers.Extra[ampybus.HeaderReplayRequestID])
	}
	mu.Unlock()
	assert.ElementsMatch(t, window, ids, "exactly the window: nothing missing, nothing extra")
	assert.Equal(t, uint64(len(window)), st.Handled)
	require.Eventually(t, func() bool { return live.Stats().Handled == uint64(history+len(extra)) }, 30*time.Second, 20*time.Millisecond,
		"the live consumer went on unmoved by the replays: %+v", live.Stats())

	// Key-scoped: one key's window, in order.
	got = nil
	_, err = positions.ReplaySnapshotsWindow(ctx, b, positions.AllSnapshots(), ampybus.ReplayWindow{Start: start, End: end, Key: "ACC-1|AAPL.XNAS"}, record)
	require.NoError(t, err)
	var seqs []int64
	for _, m := range got {
		assert.Equal(t, "ACC-1|AAPL.XNAS", m.Headers.PartitionKey)
		seqs = append(seqs, m.Payload.GetQuantity().GetScaled())
	}
	require.Len(t, seqs, 10)
	assert.True(t, sort.SliceIsSorted(seqs, func(i, j int) bool { return seqs[i] < seqs[j] }), "key order kept: %v", seqs)

	// A window with no data finishes cleanly.
	got = nil
	st, err = positions.ReplaySnapshotsWindow(ctx, b, positions.AllSnapshots(), ampybus.ReplayWindow{Start: end.Add(time.Hour), End: end.Add(2 * time.Hour)}, record)
	require.NoError(t, err)
	assert.Empty(t, got)
	assert.Equal(t, ampybus.Stats{}, st)
}

// testControlReplay: a service that started late missed some history; an
// operator posts a ReplayRequest on the control topic and the service
// applies exactly what it missed, through its normal handler, marked with
// the request; a request for another domain is ignored.
func testControlReplay(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	b := s.bus(t)
	require.NoError(t, b.Ensure(ctx, positions.Domain))
	pub := positions.NewSnapshotsPublisher(b)
	publish := func(from, to int64) {
		for i := from; i < to; i++ {
			_, err := pub.Publish(ctx, positions.NewSnapshotsSubtopic(), position("ACC-"+strconv.FormatInt(i%2, 10), i))
			require.NoError(t, err)
		}
	}
	begin := time.Now().Add(-time.Second)
	publish(0, 10) // before the service existed

	store := dedupe.NewMemory(1024)
	var mu sync.Mutex
	effects := map[int64]int{}
	requests := map[int64]string{}
	apply := func(_ context.Context, m *positions.SnapshotsMessage) error {
		mu.Lock()
		defer mu.Unlock()
		q := m.Payload.GetQuantity().GetScaled()
		effects[q]++
		requests[q] = m.ReplayRequestID
		return nil
	}
	opts := []ampybus.SubscribeOption{ampybus.Durable("pnl"), ampybus.Dedupe(store, time.Hour)}
	live, err := positions.SubscribeSnapshots(ctx, b, positions.AllSnapshots(), apply, opts...) // starts at new messages
	require.NoError(t, err)
	defer live.Stop()
	server, err := positions.ServeSnapshotsReplays(ctx, b, positions.AllSnapshots(), apply, opts...)
	require.NoError(t, err)
	defer server.Stop()
	publish(10, 20)
	require.Eventually(t, func() bool { return live.Stats().Handled == 10 }, 30*time.Second, 20*time.Millisecond)

	ops := s.bus(t, ampybus.WithProducer("operator@cli", "ampybusctl"))
	requester := control.NewReplayRequestsPublisher(ops)
	_, err = requester.Publish(ctx, control.NewReplayRequestsSubtopic(), &controlv1.ReplayRequest{
		RequestId: "rr-other", Env: "dev", Domain: "bars", Version: "v1",
		Start: timestamppb.New(begin), End: timestamppb.New(time.Now().Add(time.Second)), Reason: "not for positions",
	})
	require.NoError(t, err)
	_, err = requester.Publish(ctx, control.NewReplayRequestsSubtopic(), &controlv1.ReplayRequest{
		RequestId: "rr-gap", Env: "dev", Domain: "positions", Version: "v1", Subject: "ampy.dev.positions.v1.>",
		Start: timestamppb.New(begin), End: timestamppb.New(time.Now().Add(time.Second)), Reason: "gap after a late start",
		RequestedBy: "operator@cli", RequestedAt: timestamppb.Now(),
	})
	require.NoError(t, err)

	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(effects) == 20
	}, 30*time.Second, 20*time.Millisecond, "the gap was not filled")
	require.Eventually(t, func() bool { return server.Stats().Handled == 2 }, 30*time.Second, 20*time.Millisecond,
		"both requests were served: %+v", server.Stats())
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	for q := range int64(20) {
		assert.Equal(t, 1, effects[q], "effect %d applied exactly once", q)
		want := ""
		if q < 10 {
			want = "rr-gap" // filled by the replay
		}
		assert.Equal(t, want, requests[q], "message %d", q)
	}
}

// testStateOfTheWorld: while rates keep being published, snapshot-then-
// subscribe gives each key its latest value, then every later value once:
// per key the handler sees s0 (the snapshot), then s0+1, s0+2, … to the last.
func testStateOfTheWorld(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	b := s.bus(t)
	require.NoError(t, b.Ensure(ctx, fx.Domain))
	pairs := [][2]string{{"USD", "JPY"}, {"EUR", "USD"}, {"GBP", "USD"}, {"USD", "KRW"}}
	perKey := scale(60)
	t0 := time.Date(2025, 9, 5, 19, 30, 0, 0, time.UTC)
	pub := fx.NewRatesPublisher(b)
	published := make(chan struct{})
	halfway := make(chan struct{})
	go func() {
		defer close(published)
		for seq := 1; seq <= perKey; seq++ {
			for _, p := range pairs {
				_, err := pub.Publish(ctx, fx.NewRatesSubtopic(), &fxv1.FxRate{Pair: &fxv1.Pair{Base: p[0], Quote: p[1]},
					Mid: dec(int64(seq), 0), AsOf: timestamppb.New(t0.Add(time.Duration(seq) * time.Second))})
				assert.NoError(t, err)
			}
			if seq == perKey/3 {
				close(halfway)
			}
			if seq%5 == 0 {
				time.Sleep(5 * time.Millisecond)
			}
		}
	}()
	<-halfway

	var mu sync.Mutex
	seen := map[string][]int64{}
	snapshot := map[string]int64{}
	sub, err := fx.SnapshotThenSubscribeRates(ctx, b, fx.AllRates(), func(_ context.Context, m *fx.RatesMessage) error {
		mu.Lock()
		defer mu.Unlock()
		k := m.Headers.PartitionKey
		if m.Snapshot {
			snapshot[k] = m.Payload.GetMid().GetScaled()
		}
		seen[k] = append(seen[k], m.Payload.GetMid().GetScaled())
		return nil
	})
	require.NoError(t, err)
	defer sub.Stop()
	<-published
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range pairs {
			v := seen[p[0]+"."+p[1]]
			if len(v) == 0 || v[len(v)-1] != int64(perKey) {
				return false
			}
		}
		return true
	}, 30*time.Second, 20*time.Millisecond, "the live part did not reach the end")
	mu.Lock()
	for _, p := range pairs {
		k := p[0] + "." + p[1]
		s0, ok := snapshot[k]
		require.True(t, ok, "key %s had values before the snapshot", k)
		want := []int64{}
		for v := s0; v <= int64(perKey); v++ {
			want = append(want, v)
		}
		assert.Equal(t, want, seen[k], "key %s: the snapshot, then every later value once", k)
	}
	mu.Unlock()

	last, ok, err := fx.SnapshotRates(ctx, b, fx.AllRates(), "USD.JPY")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, int64(perKey), last.Payload.GetMid().GetScaled(), "Snapshot returns the latest value of the key")
	_, ok, err = fx.SnapshotRates(ctx, b, fx.AllRates(), "CHF.SEK")
	require.NoError(t, err)
	assert.False(t, ok)
}

// testCheckpoints: a latest_wins consumer restarted with its checkpoint
// store still skips a value older than the newest it handled before.
func testCheckpoints(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	b := s.bus(t)
	store := checkpoint.NewMemory() // stands in for a store that outlives the process
	t0 := time.Date(2025, 9, 5, 19, 30, 0, 0, time.UTC)
	rate := func(at time.Time, mid int64) *fxv1.FxRate {
		return &fxv1.FxRate{Pair: &fxv1.Pair{Base: "USD", Quote: "JPY"}, Mid: dec(mid, 0), AsOf: timestamppb.New(at)}
	}
	got := make(chan int64, 8)
	handle := func(_ context.Context, m *fx.RatesMessage) error {
		got <- m.Payload.GetMid().GetScaled()
		return nil
	}
	opts := []ampybus.SubscribeOption{ampybus.Durable("fx-book"), ampybus.Checkpoints(store)}
	first, err := fx.SubscribeRates(ctx, b, fx.AllRates(), handle, opts...)
	require.NoError(t, err)
	pub := fx.NewRatesPublisher(b)
	_, err = pub.Publish(ctx, fx.NewRatesSubtopic(), rate(t0.Add(2*time.Minute), 2))
	require.NoError(t, err)
	assert.Equal(t, int64(2), recv(t, got))
	require.NoError(t, first.Stop())

	// While it is down: a late, older rate and a newer one.
	_, err = pub.Publish(ctx, fx.NewRatesSubtopic(), rate(t0.Add(time.Minute), 1))
	require.NoError(t, err)
	_, err = pub.Publish(ctx, fx.NewRatesSubtopic(), rate(t0.Add(3*time.Minute), 3))
	require.NoError(t, err)
	second, err := fx.SubscribeRates(ctx, b, fx.AllRates(), handle, opts...)
	require.NoError(t, err)
	defer second.Stop()
	assert.Equal(t, int64(3), recv(t, got), "the older rate was skipped after the restart")
	require.Eventually(t, func() bool { return second.Stats().Stale == 1 }, 10*time.Second, 10*time.Millisecond, "%+v", second.Stats())
}

// testDescribe: the binding lists and describes its streams with the
// contract's limits and what they hold, and names an absent one ErrNotFound.
func testDescribe(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	b := s.bus(t)
	publishBars(t, ctx, b, 0, 3)
	desc, ok := b.Transport().(transport.Describer)
	require.True(t, ok, "every binding implements transport.Describer")
	info, err := desc.DescribeStream(ctx, bars.Domain.Prefix("dev"))
	require.NoError(t, err)
	assert.Equal(t, bars.Domain.Prefix("dev"), info.Prefix)
	assert.Equal(t, uint64(3), info.Messages)
	assert.Equal(t, bars.Domain.Retention, info.Retention)
	assert.GreaterOrEqual(t, info.MaxMessageBytes, bars.Domain.MaxPayload)
	if s.binding.Name == "kafka" {
		assert.Equal(t, bars.Domain.Partitions, info.Partitions)
	}
	all, err := desc.Streams(ctx, bars.Domain.Namespace)
	require.NoError(t, err)
	var prefixes []string
	for _, st := range all {
		prefixes = append(prefixes, st.Prefix)
	}
	assert.Contains(t, prefixes, bars.Domain.Prefix("dev"))
	_, err = desc.DescribeStream(ctx, "ampy.dev.nosuch.v1")
	assert.ErrorIs(t, err, transport.ErrNotFound)

	// Retention per env: ticks keep three days in dev and the seed's week in prod.
	for env, want := range map[string]time.Duration{"dev": 3 * 24 * time.Hour, "prod": 7 * 24 * time.Hour} {
		eb := s.bus(t, ampybus.WithEnv(env))
		require.NoError(t, eb.Ensure(ctx, ticks.Domain))
		info, err := desc.DescribeStream(ctx, ticks.Domain.Prefix(env))
		require.NoError(t, err)
		assert.Equal(t, want, info.Retention, "ticks in %s", env)
	}
}
