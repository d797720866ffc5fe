package conformance

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ampyfin/ampy-bus/generated/bars"
	"github.com/ampyfin/ampy-bus/generated/fills"
	"github.com/ampyfin/ampy-bus/generated/fx"
	"github.com/ampyfin/ampy-bus/generated/orders"
	"github.com/ampyfin/ampy-bus/generated/positions"
	fillsv1 "github.com/ampyfin/ampy-bus/proto/ampy/fills/v1"
	fxv1 "github.com/ampyfin/ampy-bus/proto/ampy/fx/v1"
	positionsv1 "github.com/ampyfin/ampy-bus/proto/ampy/positions/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/dedupe"
	"github.com/ampyfin/ampy-bus/runtime/envelope"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// Retries, dead letters, duplicates, and each effect applied once.

func testRetryThenSuccess(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	b := s.bus(t)
	policy := ampybus.RetryPolicy{MaxAttempts: 6, Backoff: 40 * time.Millisecond, MaxBackoff: time.Second}
	var mu sync.Mutex
	var at []time.Time
	done := make(chan int, 1)
	sub, err := bars.Subscribe(ctx, b, bars.All(), func(_ context.Context, m *bars.Message) error {
		mu.Lock()
		at = append(at, time.Now())
		n := len(at)
		mu.Unlock()
		if n <= 3 {
			return fmt.Errorf("downstream busy (%d)", n)
		}
		done <- m.Attempt
		return nil
	}, ampybus.Durable("retrier"), ampybus.Retry(policy))
	require.NoError(t, err)
	defer sub.Stop()
	publishBars(t, ctx, b, 0, 1)
	assert.Equal(t, 4, recv(t, done), "succeeded on the fourth attempt")
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, at, 4, "three retries, then success, then nothing more")
	// Equal jitter: the wait after attempt n is at least half of
	// backoff·2^(n-1), so the guaranteed wait doubles with each attempt.
	// (Comparing the measured gaps with each other would fail under load:
	// scheduling can stretch any one of them.)
	for n := 1; n <= 3; n++ {
		gap := at[n].Sub(at[n-1])
		floor := policy.Backoff << (n - 1) / 2
		assert.GreaterOrEqual(t, gap, floor, "wait after attempt %d", n)
	}
}

func testAlwaysFailing(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	b := s.bus(t)
	var calls sync.WaitGroup
	calls.Add(3)
	var n int
	var mu sync.Mutex
	sub, err := bars.Subscribe(ctx, b, bars.All(), func(context.Context, *bars.Message) error {
		mu.Lock()
		defer mu.Unlock()
		if n++; n <= 3 {
			calls.Done()
		}
		return fmt.Errorf("boom %d", n)
	}, ampybus.Durable("doomed"), ampybus.Retry(ampybus.RetryPolicy{MaxAttempts: 3, Backoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}))
	require.NoError(t, err)
	defer sub.Stop()
	want := bar("AAPL", 42)
	res, err := bars.NewPublisher(b).Publish(ctx, bars.MustSubtopic("XNAS", "AAPL"), want)
	require.NoError(t, err)
	calls.Wait()

	dl := readDeadLetters(t, ctx, b, 1)
	require.Len(t, dl, 1)
	m := dl[0]
	assert.Equal(t, "ampy.dev.dlq.v1.bars", m.Topic)
	assert.Equal(t, res.MessageID, m.Headers.MessageID)
	assert.Equal(t, "max_attempts: 3 attempts failed; last error: boom 3", m.Headers.DLQReason)
	assert.Equal(t, "ampy.dev.bars.v1.XNAS.AAPL", m.Headers.Extra[ampybus.HeaderDLQTopic])
	wantBytes, err := proto.MarshalOptions{Deterministic: true}.Marshal(want)
	require.NoError(t, err)
	assert.Equal(t, wantBytes, m.Payload, "original payload bytes")
	// Nothing more: not retried after dead-lettering, not dead-lettered twice.
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	assert.Equal(t, 3, n)
	mu.Unlock()
	assert.Len(t, readDeadLetters(t, ctx, b, 1), 1)
}

// testHeadOfLinePerKey: a message that fails is retried before any later
// message of its key, while other keys carry on.
func testHeadOfLinePerKey(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	b := s.bus(t)
	var mu sync.Mutex
	var log []string
	failsLeft := 2
	done := make(chan struct{})
	sub, err := positions.SubscribeSnapshots(ctx, b, positions.AllSnapshots(), func(_ context.Context, m *positions.SnapshotsMessage) error {
		mu.Lock()
		defer mu.Unlock()
		entry := fmt.Sprintf("%s#%d", m.Payload.GetAccountId(), m.Payload.GetQuantity().GetScaled())
		if entry == "A#1" && failsLeft > 0 {
			failsLeft--
			log = append(log, entry+"!")
			return fmt.Errorf("A#1 fails")
		}
		log = append(log, entry)
		if len(log) == 2+4 {
			close(done)
		}
		return nil
	}, ampybus.Durable("hol"), ampybus.Concurrency(4),
		ampybus.Retry(ampybus.RetryPolicy{MaxAttempts: 5, Backoff: 150 * time.Millisecond, MaxBackoff: time.Second}))
	require.NoError(t, err)
	defer sub.Stop()
	pub := positions.NewSnapshotsPublisher(b)
	for _, p := range []*positionsv1.PositionSnapshot{position("A", 1), position("A", 2), position("B", 1), position("B", 2)} {
		_, err := pub.Publish(ctx, positions.NewSnapshotsSubtopic(), p)
		require.NoError(t, err)
	}
	recv(t, done)
	mu.Lock()
	defer mu.Unlock()
	pos := map[string]int{}
	for i, e := range log {
		pos[e] = i
	}
	assert.Less(t, pos["A#1"], pos["A#2"], "A#2 waits for A#1's retries: %v", log)
	assert.Less(t, pos["B#1"], pos["B#2"], "%v", log)
	assert.Less(t, pos["B#2"], pos["A#1"], "B does not wait for A's retries: %v", log)
}

// testDuplicates: a republished message (same message_id) and a second
// message with the same dedupe_key reach the handler once; the consumer
// counts what it skipped.
func testDuplicates(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	b := s.bus(t)
	var mu sync.Mutex
	applied := map[string]int{}
	sub, err := orders.SubscribeRequests(ctx, b, orders.AllRequests(), func(_ context.Context, m *orders.RequestsMessage) error {
		mu.Lock()
		applied[m.Payload.GetClientOrderId()]++
		mu.Unlock()
		return nil
	}, ampybus.Durable("idem"))
	require.NoError(t, err)
	defer sub.Stop()
	pub := orders.NewRequestsPublisher(b)
	id := envelope.NewMessageID()
	submit := order("co_dup_1", 1)
	first, err := pub.Publish(ctx, orders.NewRequestsSubtopic(), submit, ampybus.WithMessageID(id))
	require.NoError(t, err)
	again, err := pub.Publish(ctx, orders.NewRequestsSubtopic(), submit, ampybus.WithMessageID(id))
	require.NoError(t, err)
	_, err = pub.Publish(ctx, orders.NewRequestsSubtopic(), submit) // re-sent under a new id: same dedupe_key
	require.NoError(t, err)
	_, err = pub.Publish(ctx, orders.NewRequestsSubtopic(), order("co_dup_2", 1))
	require.NoError(t, err)
	assert.False(t, first.Duplicate)

	// The broker may drop the republished id itself (JetStream's duplicate
	// window); whatever reaches the consumer twice is skipped and counted.
	wantSkipped := uint64(2)
	if again.Duplicate {
		wantSkipped = 1
	}
	require.Eventually(t, func() bool {
		st := sub.Stats()
		return st.Handled == 2 && st.Duplicates == wantSkipped
	}, 30*time.Second, 20*time.Millisecond, "stats %+v", sub.Stats())
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, map[string]int{"co_dup_1": 1, "co_dup_2": 1}, applied)
}

// testFanOutDedupe: subscriptions on one bus without a Dedupe option share
// its default store, yet each subscription without a group, and each group,
// handles every message once and skips only its own repeats: a message
// applied by one is not a duplicate for another.
func testFanOutDedupe(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	b := s.bus(t)
	n := scale(20)
	type tally struct {
		mu      sync.Mutex
		applied map[string]int
	}
	var tallies []*tally
	var subs []*ampybus.Subscription
	for _, group := range []string{"", "", "", "fan-a", "fan-b"} {
		tl := &tally{applied: map[string]int{}}
		opts := []ampybus.SubscribeOption{ampybus.DeliverAll()}
		if group != "" {
			opts = append(opts, ampybus.Durable(group))
		}
		sub, err := orders.SubscribeRequests(ctx, b, orders.AllRequests(), func(_ context.Context, m *orders.RequestsMessage) error {
			tl.mu.Lock()
			tl.applied[m.Payload.GetClientOrderId()]++
			tl.mu.Unlock()
			return nil
		}, opts...)
		require.NoError(t, err)
		defer sub.Stop()
		tallies, subs = append(tallies, tl), append(subs, sub)
	}
	pub := orders.NewRequestsPublisher(b)
	for i := range n {
		submit := order("co_fan_"+strconv.Itoa(i), 1)
		_, err := pub.Publish(ctx, orders.NewRequestsSubtopic(), submit)
		require.NoError(t, err)
		_, err = pub.Publish(ctx, orders.NewRequestsSubtopic(), submit) // re-sent under a new id: same dedupe_key
		require.NoError(t, err)
	}
	for i, sub := range subs {
		require.Eventually(t, func() bool {
			st := sub.Stats()
			return st.Handled == uint64(n) && st.Duplicates == uint64(n)
		}, 30*time.Second, 20*time.Millisecond, "subscription %d: stats %+v", i, sub.Stats())
		tl := tallies[i]
		tl.mu.Lock()
		assert.Len(t, tl.applied, n, "subscription %d", i)
		for id, times := range tl.applied {
			assert.Equal(t, 1, times, "subscription %d applied %s", i, id)
		}
		tl.mu.Unlock()
	}
}

// testKilledMidBatch: a consumer dies in the middle of a batch and a new one
// takes over with the same group and dedupe store; every message's effect is
// applied exactly once.
func testKilledMidBatch(t *testing.T, s *suite) {
	const n = 40
	ctx := s.ctx(t)
	b := s.bus(t)
	store := dedupe.NewMemory(1024) // stands in for a store that outlives the process
	var mu sync.Mutex
	effects := map[int64]int{}
	apply := func(m *positions.SnapshotsMessage) {
		mu.Lock()
		effects[m.Payload.GetQuantity().GetScaled()]++
		mu.Unlock()
	}
	pub := positions.NewSnapshotsPublisher(b)
	for i := range int64(n) {
		_, err := pub.Publish(ctx, positions.NewSnapshotsSubtopic(), position("ACC-"+strconv.FormatInt(i%4, 10), i))
		require.NoError(t, err)
	}
	opts := []ampybus.SubscribeOption{ampybus.Durable("survivor"), ampybus.DeliverAll(), ampybus.Concurrency(4),
		ampybus.AckWait(time.Second), ampybus.Dedupe(store, time.Hour)}

	// The first consumer applies half the batch; then the process dies with
	// handlers mid-flight, before their effects commit.
	killed := make(chan struct{})
	var once sync.Once
	started := 0
	first, err := positions.SubscribeSnapshots(ctx, b, positions.AllSnapshots(), func(_ context.Context, m *positions.SnapshotsMessage) error {
		mu.Lock()
		started++
		dying := started > n/2
		mu.Unlock()
		if dying {
			once.Do(func() { close(killed) })
			<-ctx.Done() // the process is gone: this handler never finishes
			return ctx.Err()
		}
		apply(m)
		return nil
	}, opts...)
	require.NoError(t, err)
	recv(t, killed)
	first.Abort()

	second, err := positions.SubscribeSnapshots(ctx, b, positions.AllSnapshots(), func(_ context.Context, m *positions.SnapshotsMessage) error {
		apply(m)
		return nil
	}, opts...)
	require.NoError(t, err)
	defer second.Stop()
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(effects) == n
	}, 45*time.Second, 50*time.Millisecond, "not every message was applied")
	time.Sleep(1500 * time.Millisecond) // let any redelivery arrive
	mu.Lock()
	defer mu.Unlock()
	for i := range int64(n) {
		assert.Equal(t, 1, effects[i], "message %d applied exactly once", i)
	}
	t.Logf("%s: %d messages applied once each; after the restart the store skipped %d redelivered ones (%+v)", s.binding.Name, n, second.Stats().Duplicates, second.Stats())
}

// testFaultInjection publishes reordered, duplicated and corrupted messages
// and checks each is met by the right mechanism: order checks by the
// contract's rule, dedupe, and the dead-letter queue with its reason.
func testFaultInjection(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	b := s.bus(t)
	t0 := time.Date(2025, 9, 5, 19, 30, 0, 0, time.UTC)

	t.Run("reordered snapshot is flagged", func(t *testing.T) {
		got := make(chan *positions.SnapshotsMessage, 4)
		sub, err := positions.SubscribeSnapshots(ctx, b, positions.AllSnapshots(), func(_ context.Context, m *positions.SnapshotsMessage) error {
			got <- m
			return nil
		}, ampybus.Durable("reorder-pos"))
		require.NoError(t, err)
		defer sub.Stop()
		pub := positions.NewSnapshotsPublisher(b)
		for _, at := range []time.Time{t0.Add(2 * time.Minute), t0.Add(time.Minute), t0.Add(3 * time.Minute)} {
			p := position("ACC-R", at.Unix())
			p.AsOf = timestamppb.New(at)
			_, err := pub.Publish(ctx, positions.NewSnapshotsSubtopic(), p)
			require.NoError(t, err)
		}
		flags := []bool{recv(t, got).OutOfOrder, recv(t, got).OutOfOrder, recv(t, got).OutOfOrder}
		assert.Equal(t, []bool{false, true, false}, flags, "the snapshot that went back in as_of is reported")
		assert.Equal(t, uint64(1), sub.Stats().Regressions)
	})

	t.Run("stale latest-wins value is skipped", func(t *testing.T) {
		got := make(chan *fx.RatesMessage, 4)
		sub, err := fx.SubscribeRates(ctx, b, fx.AllRates(), func(_ context.Context, m *fx.RatesMessage) error {
			got <- m
			return nil
		}, ampybus.Durable("reorder-fx"))
		require.NoError(t, err)
		defer sub.Stop()
		pub := fx.NewRatesPublisher(b)
		rate := func(at time.Time, mid int64) *fxv1.FxRate {
			return &fxv1.FxRate{Pair: &fxv1.Pair{Base: "USD", Quote: "JPY"}, Mid: dec(mid, 2), AsOf: timestamppb.New(at)}
		}
		for _, r := range []*fxv1.FxRate{rate(t0.Add(time.Minute), 14720), rate(t0, 14700), rate(t0.Add(2*time.Minute), 14730)} {
			_, err := pub.Publish(ctx, fx.NewRatesSubtopic(), r)
			require.NoError(t, err)
		}
		assert.Equal(t, int64(14720), recv(t, got).Payload.GetMid().GetScaled())
		assert.Equal(t, int64(14730), recv(t, got).Payload.GetMid().GetScaled(), "the older rate never reached the handler")
		require.Eventually(t, func() bool { return sub.Stats().Stale == 1 }, 10*time.Second, 10*time.Millisecond, "%+v", sub.Stats())
	})

	t.Run("out-of-order fills accumulate", func(t *testing.T) {
		got := make(chan *fills.EventsMessage, 4)
		sub, err := fills.SubscribeEvents(ctx, b, fills.AllEvents(), func(_ context.Context, m *fills.EventsMessage) error {
			got <- m
			return nil
		}, ampybus.Durable("reorder-fills"))
		require.NoError(t, err)
		defer sub.Stop()
		pub := fills.NewEventsPublisher(b)
		for i, at := range []time.Time{t0.Add(time.Minute), t0} {
			f := &fillsv1.FillEvent{AccountId: "ACC-F", ClientOrderId: "co_f", BrokerOrderId: "b" + strconv.Itoa(i),
				Quantity: dec(int64(10*(i+1)), 0), EventTime: timestamppb.New(at)}
			_, err := pub.Publish(ctx, fills.NewEventsSubtopic(), f)
			require.NoError(t, err)
		}
		a, c := recv(t, got), recv(t, got)
		assert.False(t, a.OutOfOrder || c.OutOfOrder)
		assert.Equal(t, int64(30), a.Payload.GetQuantity().GetScaled()+c.Payload.GetQuantity().GetScaled())
		assert.Zero(t, sub.Stats().Regressions+sub.Stats().Stale)
	})

	t.Run("duplicated and corrupted", func(t *testing.T) {
		handled := make(chan struct{}, 4)
		sub, err := bars.Subscribe(ctx, b, bars.All(), func(context.Context, *bars.Message) error {
			handled <- struct{}{}
			return nil
		}, ampybus.Durable("faults"))
		require.NoError(t, err)
		defer sub.Stop()
		st := barsStream()
		good, err := proto.Marshal(bar("AAPL", 1))
		require.NoError(t, err)
		h := fullHeaders()
		h.ContentEncoding, h.BlobRef, h.BlobHash, h.BlobSize, h.DLQReason, h.RetryCount = "", "", "", 0, "", 0
		h.SchemaHash, h.DedupeKey = bars.SchemaHash, "" // bars derive no dedupe key
		h.PartitionKey = "XNAS.AAPL"
		tr := b.Transport()
		m := &transport.Message{Topic: "ampy.dev.bars.v1.XNAS.AAPL", Headers: h, Payload: good}
		_, err = tr.Publish(ctx, st, m) // the original
		require.NoError(t, err)
		dup := *m
		dup.Headers.Extra = map[string]string{"copy": "2"}
		dupAck, err := tr.Publish(ctx, st, &dup) // a duplicate in transit (same message_id)
		require.NoError(t, err)
		// JetStream drops the copy itself (same Nats-Msg-Id); Kafka stores it
		// and the consumer must skip it.
		wantDup := uint64(1)
		if dupAck.Duplicate {
			wantDup = 0
		}
		bad := *m
		bad.Headers.MessageID = envelope.NewMessageID()
		bad.Payload = []byte{0x0a, 0xff, 0xff, 0xff, 0x0f} // truncated: a length past the end
		_, err = tr.Publish(ctx, st, &bad)
		require.NoError(t, err)

		recv(t, handled)
		dl := readDeadLetters(t, ctx, b, 1)
		require.Len(t, dl, 1)
		assert.Equal(t, bad.Headers.MessageID, dl[0].Headers.MessageID)
		assert.Contains(t, dl[0].Headers.DLQReason, "decode_error: ")
		assert.Equal(t, bad.Payload, dl[0].Payload)
		require.Eventually(t, func() bool {
			st := sub.Stats()
			return st.Handled == 1 && st.DeadLettered == 1 && st.Duplicates == wantDup
		}, 10*time.Second, 10*time.Millisecond, "%+v", sub.Stats())
	})
}

// testDeadLetterPerGroup: two groups that both reject a message each leave
// their own dead letter; neither is taken for a duplicate of the other.
func testDeadLetterPerGroup(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	b := s.bus(t)
	for _, g := range []string{"risk", "features"} {
		sub, err := bars.Subscribe(ctx, b, bars.All(), func(context.Context, *bars.Message) error {
			return ampybus.Permanent(errors.New("rejected by " + g))
		}, ampybus.Durable(g))
		require.NoError(t, err)
		defer sub.Stop()
	}
	res, err := bars.NewPublisher(b).Publish(ctx, bars.MustSubtopic("XNAS", "AAPL"), bar("AAPL", 1))
	require.NoError(t, err)
	dl := readDeadLetters(t, ctx, b, 2)
	require.Len(t, dl, 2)
	var groups []string
	for _, m := range dl {
		assert.Equal(t, res.MessageID, m.Headers.MessageID)
		groups = append(groups, m.Headers.Extra[ampybus.HeaderDLQConsumer])
	}
	assert.ElementsMatch(t, []string{"risk", "features"}, groups)
}
