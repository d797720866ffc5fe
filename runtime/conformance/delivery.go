package conformance

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ampyfin/ampy-bus/generated/bars"
	"github.com/ampyfin/ampy-bus/generated/orders"
	"github.com/ampyfin/ampy-bus/generated/positions"
	ordersv1 "github.com/ampyfin/ampy-bus/proto/ampy/orders/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// Delivery: per-key and per-order order, redelivery, durable resume,
// patterns and groups; handler leases are in leases.go.

func testPerKeyOrder(t *testing.T, s *suite) {
	const keys, publishers = 16, 4
	perKey := scale(40)
	ctx := s.ctx(t)
	b := s.bus(t)
	var mu sync.Mutex
	seen := map[string][]int64{}
	done := make(chan struct{})
	total := 0
	sub, err := positions.SubscribeSnapshots(ctx, b, positions.AllSnapshots(), func(_ context.Context, m *positions.SnapshotsMessage) error {
		mu.Lock()
		defer mu.Unlock()
		k := m.Headers.PartitionKey
		seen[k] = append(seen[k], m.Payload.GetQuantity().GetScaled())
		if total++; total == keys*perKey {
			close(done)
		}
		return nil
	}, ampybus.Durable("order"), ampybus.DeliverAll(), ampybus.Concurrency(8))
	require.NoError(t, err)
	defer sub.Stop()

	pub := positions.NewSnapshotsPublisher(b)
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each publisher owns keys p, p+publishers, …, and publishes each key's
			// sequence in order, interleaving keys.
			for seq := range int64(perKey) {
				for k := p; k < keys; k += publishers {
					_, err := pub.Publish(ctx, positions.NewSnapshotsSubtopic(), position("ACC-"+strconv.Itoa(k), seq))
					assert.NoError(t, err)
				}
			}
		}()
	}
	wg.Wait()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatalf("received %d of %d", total, keys*perKey)
	}
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, seen, keys)
	for k, seqs := range seen {
		want := make([]int64, perKey)
		for i := range want {
			want[i] = int64(i)
		}
		assert.Equal(t, want, seqs, "key %s out of order", k)
	}
}

func testRedeliveryOnError(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	b := s.bus(t)
	var mu sync.Mutex
	attempts := map[string][]int{}
	ok := make(chan string, 4)
	sub, err := bars.Subscribe(ctx, b, bars.All(), func(_ context.Context, m *bars.Message) error {
		mu.Lock()
		attempts[m.Subtopic.Symbol()] = append(attempts[m.Subtopic.Symbol()], m.Attempt)
		n := len(attempts[m.Subtopic.Symbol()])
		mu.Unlock()
		if n < 3 {
			return fmt.Errorf("transient failure %d", n)
		}
		ok <- m.Subtopic.Symbol()
		return nil
	}, ampybus.Durable("retry"), ampybus.DeliverAll(), ampybus.RetryBackoff(func(int) time.Duration { return 20 * time.Millisecond }))
	require.NoError(t, err)
	defer sub.Stop()
	_, err = bars.NewPublisher(b).Publish(ctx, bars.MustSubtopic("XNAS", "AAPL"), bar("AAPL", 1))
	require.NoError(t, err)
	assert.Equal(t, "AAPL", recv(t, ok))
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []int{1, 2, 3}, attempts["AAPL"])
}

// testMaxInFlight: a group member given messages of many keys over every
// partition holds at most MaxInFlight of them unsettled, in all, and gets
// the rest as it settles what it holds.
func testMaxInFlight(t *testing.T, s *suite) {
	const limit, keys, total = 24, 60, 240
	ctx := s.ctx(t)
	b := s.bus(t)
	pub := bars.NewPublisher(b)
	for i := range total {
		sym := "S" + strconv.Itoa(i%keys)
		_, err := pub.Publish(ctx, bars.MustSubtopic("XNAS", sym), bar(sym, int64(i)))
		require.NoError(t, err)
	}
	tr := b.Transport()
	st := barsStream()
	c, err := tr.Subscribe(ctx, transport.Subscription{Stream: st, Filters: []string{st.Prefix + ".>"}, Group: "bounded",
		Start: transport.StartPosition{Kind: transport.StartFirst}, MaxInFlight: limit, AckWait: time.Minute})
	require.NoError(t, err)
	defer c.Close()
	// next is a delivery, or nil once none comes for a while.
	next := func(quiet time.Duration) transport.Delivery {
		nctx, cancel := context.WithTimeout(ctx, quiet)
		defer cancel()
		d, err := c.Next(nctx)
		if err != nil {
			require.ErrorIs(t, err, context.DeadlineExceeded)
			return nil
		}
		return d
	}
	var held []transport.Delivery
	for quiet := 10 * time.Second; len(held) <= limit; quiet = 2 * time.Second {
		d := next(quiet)
		if d == nil {
			break
		}
		held = append(held, d)
	}
	require.NotEmpty(t, held)
	assert.LessOrEqual(t, len(held), limit, "unsettled deliveries handed to one member")
	seen := map[int64]bool{}
	for _, d := range held {
		seen[volume(t, d)] = true
		require.NoError(t, d.Ack(ctx))
	}
	for range 10 * total {
		d := next(10 * time.Second)
		if d == nil {
			break
		}
		seen[volume(t, d)] = true
		require.NoError(t, d.Ack(ctx))
		if len(seen) == total {
			break
		}
	}
	assert.Len(t, seen, total, "every message arrives as the member settles")
}

func testRedeliveryOnDeath(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	b := s.bus(t)
	tr := b.Transport()
	first := consumer(t, ctx, tr, "mortal")
	publishBars(t, ctx, b, 0, 1)
	d, err := first.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(0), volume(t, d))
	// The consumer dies holding the message, without settling it.
	require.NoError(t, first.Close())

	second := consumer(t, ctx, tr, "mortal")
	defer second.Close()
	d, err = second.Next(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(0), volume(t, d), "the unacked message comes back")
	require.NoError(t, d.Ack(ctx))
}

func testDurableResume(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	b := s.bus(t)
	tr := b.Transport()
	publishBars(t, ctx, b, 0, 10)
	c := consumer(t, ctx, tr, "resumer")
	for i := range 5 {
		d, err := c.Next(ctx)
		require.NoError(t, err)
		require.Equal(t, int64(i), volume(t, d))
		require.NoError(t, d.Ack(ctx))
	}
	require.NoError(t, c.Close())
	publishBars(t, ctx, b, 10, 15)

	c = consumer(t, ctx, tr, "resumer")
	defer c.Close()
	var got []int64
	for len(got) < 10 {
		d, err := c.Next(ctx)
		require.NoError(t, err)
		got = append(got, volume(t, d))
		require.NoError(t, d.Ack(ctx))
	}
	sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
	assert.Equal(t, []int64{5, 6, 7, 8, 9, 10, 11, 12, 13, 14}, got, "resumes after the last acked message, nothing lost, nothing repeated")
}

func testPatterns(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	b := s.bus(t)
	xnas, err := bars.ByMIC("XNAS")
	require.NoError(t, err)
	collect := func(p bars.Pattern, group string) *collector {
		c := newCollector()
		sub, err := bars.Subscribe(ctx, b, p, c.handle, ampybus.Durable(group), ampybus.DeliverAll())
		require.NoError(t, err)
		t.Cleanup(func() { _ = sub.Stop() })
		return c
	}
	all := collect(bars.All(), "all")
	narrow := collect(xnas, "xnas")
	exact := collect(bars.MustSubtopic("XNYS", "IBM").Pattern(), "ibm")
	pub := bars.NewPublisher(b)
	for _, st := range []bars.Subtopic{bars.MustSubtopic("XNAS", "AAPL"), bars.MustSubtopic("XNYS", "IBM"), bars.MustSubtopic("XNAS", "MSFT")} {
		b := bar(st.Symbol(), 1)
		b.Bars[0].Security.Mic = st.MIC()
		_, err := pub.Publish(ctx, st, b)
		require.NoError(t, err)
	}
	assert.ElementsMatch(t, []string{"XNAS.AAPL", "XNYS.IBM", "XNAS.MSFT"}, all.wait(t, 3))
	assert.ElementsMatch(t, []string{"XNAS.AAPL", "XNAS.MSFT"}, narrow.wait(t, 2))
	assert.ElementsMatch(t, []string{"XNYS.IBM"}, exact.wait(t, 1))
	time.Sleep(300 * time.Millisecond)
	assert.Len(t, narrow.snapshot(), 2, "the narrowed pattern got nothing else")
	assert.Len(t, exact.snapshot(), 1)
}

func testIndependentGroups(t *testing.T, s *suite) {
	n := scale(50)
	ctx := s.ctx(t)
	b := s.bus(t)
	var cs []*collector
	for _, g := range []string{"features", "risk"} {
		c := newCollector()
		sub, err := bars.Subscribe(ctx, b, bars.All(), c.handle, ampybus.Durable(g), ampybus.DeliverAll())
		require.NoError(t, err)
		defer sub.Stop()
		cs = append(cs, c)
	}
	publishBars(t, ctx, b, 0, n)
	for _, c := range cs {
		c.wait(t, n)
		c.mu.Lock()
		assert.Len(t, c.ids, n, "each group sees every message")
		c.mu.Unlock()
	}
}

func testGroupSharesWork(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	b := s.bus(t)
	require.NoError(t, b.Ensure(ctx, bars.Domain))
	members := []*collector{newCollector(), newCollector()}
	for _, c := range members {
		sub, err := bars.Subscribe(ctx, b, bars.All(), c.handle, ampybus.Durable("shared"), ampybus.DeliverAll(), ampybus.MaxInFlight(4))
		require.NoError(t, err)
		defer sub.Stop()
	}
	// Publish across many keys (so Kafka spreads them over partitions) until
	// both members have done some of the work.
	pub := bars.NewPublisher(b)
	published := 0
	deadline := time.Now().Add(30 * time.Second)
	for len(members[0].snapshot()) == 0 || len(members[1].snapshot()) == 0 {
		require.True(t, time.Now().Before(deadline), "the work was not shared: %d and %d", len(members[0].snapshot()), len(members[1].snapshot()))
		for i := range 20 {
			sym := "S" + strconv.Itoa(published+i)
			_, err := pub.Publish(ctx, bars.MustSubtopic("XNAS", sym), bar(sym, 1))
			require.NoError(t, err)
		}
		published += 20
		time.Sleep(100 * time.Millisecond)
	}
	// Together they see every message at least once.
	require.Eventually(t, func() bool {
		ids := map[string]bool{}
		for _, c := range members {
			c.mu.Lock()
			for id := range c.ids {
				ids[id] = true
			}
			c.mu.Unlock()
		}
		return len(ids) == published
	}, 30*time.Second, 50*time.Millisecond)
}

func testStartNew(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	b := s.bus(t)
	publishBars(t, ctx, b, 0, 3) // history the new subscriptions must not see
	for _, opts := range [][]ampybus.SubscribeOption{nil, {ampybus.Durable("fresh")}} {
		c := newCollector()
		sub, err := bars.Subscribe(ctx, b, bars.All(), c.handle, opts...)
		require.NoError(t, err)
		pub := bars.NewPublisher(b)
		var ids []string
		for i := range 5 {
			res, err := pub.Publish(ctx, bars.MustSubtopic("XNAS", "AAPL"), bar("AAPL", int64(100+i)))
			require.NoError(t, err)
			ids = append(ids, res.MessageID)
		}
		c.wait(t, 5)
		time.Sleep(200 * time.Millisecond)
		c.mu.Lock()
		assert.Len(t, c.ids, 5, "only what followed Subscribe")
		for _, id := range ids {
			assert.True(t, c.ids[id], "missed %s", id)
		}
		c.mu.Unlock()
		require.NoError(t, sub.Stop())
	}
}

// testOrderChain: submit, amend and cancel of one order travel as
// OrderRequests with its client_order_id, each created at its own time. All
// three reach the handler, in that order, across a group of members; the
// submit re-sent under a new message id (an OMS restarted before its ack)
// does not.
func testOrderChain(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	b := s.bus(t)
	var mu sync.Mutex
	var seen []string
	handle := func(_ context.Context, m *orders.RequestsMessage) error {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, fmt.Sprintf("%s qty=%d", m.Payload.GetClientOrderId(), m.Payload.GetQuantity().GetScaled()))
		return nil
	}
	store := s.binding.SharedStore(t, b, "orderchain")
	for range 2 {
		sub, err := orders.SubscribeRequests(ctx, b, orders.AllRequests(), handle, ampybus.Durable("oms-chain"), ampybus.Dedupe(store, time.Hour))
		require.NoError(t, err)
		defer sub.Stop()
	}
	pub := orders.NewRequestsPublisher(b)
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	version := func(id string, qty int64, at time.Duration) *ordersv1.OrderRequest {
		o := order(id, qty)
		o.CreatedAt = timestamppb.New(t0.Add(at))
		return o
	}
	var want []string
	for _, id := range []string{"co_chain_1", "co_chain_2", "co_chain_3"} {
		chain := []*ordersv1.OrderRequest{
			version(id, 100, 0),           // submit
			version(id, 150, time.Second), // amend: more shares
			version(id, 100, 0),           // the submit again, re-sent under a new message id
			version(id, 150, time.Second), // and the amend
			version(id, 0, 2*time.Second), // cancel
		}
		for _, o := range chain {
			_, err := pub.Publish(ctx, orders.NewRequestsSubtopic(), o)
			require.NoError(t, err)
		}
		want = append(want, id+" qty=100", id+" qty=150", id+" qty=0")
	}
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) >= len(want)
	}, 30*time.Second, 10*time.Millisecond)
	time.Sleep(200 * time.Millisecond) // a swallowed duplicate would arrive by now
	mu.Lock()
	defer mu.Unlock()
	perOrder := map[string][]string{}
	for _, e := range seen {
		id, _, _ := strings.Cut(e, " ")
		perOrder[id] = append(perOrder[id], e)
	}
	for _, id := range []string{"co_chain_1", "co_chain_2", "co_chain_3"} {
		assert.Equal(t, []string{id + " qty=100", id + " qty=150", id + " qty=0"}, perOrder[id], "submit → amend → cancel, each once")
	}
	assert.Len(t, seen, len(want))
}
