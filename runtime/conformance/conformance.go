// Package conformance is the one test suite every transport binding passes:
// the bus must behave the same on NATS JetStream and on Kafka. A binding's
// test calls Run with a Broker that starts its embedded server.
package conformance

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ampyfin/ampy-bus/generated/bars"
	"github.com/ampyfin/ampy-bus/generated/control"
	"github.com/ampyfin/ampy-bus/generated/fills"
	"github.com/ampyfin/ampy-bus/generated/fx"
	"github.com/ampyfin/ampy-bus/generated/orders"
	"github.com/ampyfin/ampy-bus/generated/positions"
	"github.com/ampyfin/ampy-bus/generated/ticks"
	barsv1 "github.com/ampyfin/ampy-bus/proto/ampy/bars/v1"
	commonv1 "github.com/ampyfin/ampy-bus/proto/ampy/common/v1"
	controlv1 "github.com/ampyfin/ampy-bus/proto/ampy/control/v1"
	fillsv1 "github.com/ampyfin/ampy-bus/proto/ampy/fills/v1"
	fxv1 "github.com/ampyfin/ampy-bus/proto/ampy/fx/v1"
	ordersv1 "github.com/ampyfin/ampy-bus/proto/ampy/orders/v1"
	positionsv1 "github.com/ampyfin/ampy-bus/proto/ampy/positions/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/blob"
	"github.com/ampyfin/ampy-bus/runtime/checkpoint"
	"github.com/ampyfin/ampy-bus/runtime/dedupe"
	"github.com/ampyfin/ampy-bus/runtime/embedded"
	"github.com/ampyfin/ampy-bus/runtime/envelope"
	"github.com/ampyfin/ampy-bus/runtime/kafkabinding"
	"github.com/ampyfin/ampy-bus/runtime/natsbinding"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// Broker is a running embedded broker of one transport.
type Broker interface {
	// URL opens a bus on it: nats://… or kafka://….
	URL() string
	// Stop shuts the broker down, as an outage would.
	Stop()
}

// Binding names a transport and starts fresh brokers of it.
type Binding struct {
	Name  string
	Start func(t *testing.T) Broker
	// SharedStore opens the binding's persistent dedupe store on b, named
	// name: every member that opens the same name shares it.
	SharedStore func(t *testing.T, b *ampybus.Bus, name string) dedupe.Store
	// Wire writes raw records to a broker at url, as a client without
	// ampy-bus would.
	Wire func(t *testing.T, url string) Wire
	// RefusesOffContract: the broker refuses a topic outside the contract's
	// subtopic shapes when it is written (NATS). Otherwise it stores it and
	// every consumer dead-letters it (Kafka).
	RefusesOffContract bool
}

// NATS starts embedded JetStream servers.
var NATS = Binding{Name: "nats", Start: func(t *testing.T) Broker {
	e, err := embedded.StartNATS(embedded.NATSOptions{})
	require.NoError(t, err)
	b := &stopper{url: e.URL(), stop: e.Shutdown}
	t.Cleanup(b.Stop)
	return b
}, SharedStore: func(t *testing.T, b *ampybus.Bus, name string) dedupe.Store {
	s, err := natsbinding.NewKVStore(context.Background(), b.Transport().(*natsbinding.Transport), name, time.Hour, 1)
	require.NoError(t, err)
	return s
}, Wire: newNATSWire, RefusesOffContract: true}

// Kafka starts embedded kfake clusters.
var Kafka = Binding{Name: "kafka", Start: func(t *testing.T) Broker {
	e, err := embedded.StartKafka(embedded.KafkaOptions{})
	require.NoError(t, err)
	b := &stopper{url: e.URL(), stop: e.Shutdown}
	t.Cleanup(b.Stop)
	return b
}, SharedStore: func(t *testing.T, b *ampybus.Bus, name string) dedupe.Store {
	s, err := kafkabinding.NewTopicStore(context.Background(), b.Transport().(*kafkabinding.Transport), name, time.Hour, 1)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}, Wire: newKafkaWire}

type stopper struct {
	url  string
	once sync.Once
	stop func()
}

func (s *stopper) URL() string { return s.url }
func (s *stopper) Stop()       { s.once.Do(s.stop) }

// Run runs every case against b, each on a fresh broker and in parallel;
// -short runs them with fewer messages.
func Run(t *testing.T, b Binding) {
	cases := []struct {
		name string
		fn   func(t *testing.T, s *suite)
	}{
		{"HeadersAndBinaryPayloadByteExact", testHeadersByteExact},
		{"PayloadNearMaxSize", testPayloadNearMax},
		{"TypedRoundTrip", testTypedRoundTrip},
		{"PerKeyOrderUnderConcurrency", testPerKeyOrder},
		{"RedeliveryOnHandlerError", testRedeliveryOnError},
		{"RedeliveryWhenConsumerDiesBeforeAck", testRedeliveryOnDeath},
		{"DurableResumesAfterLastAck", testDurableResume},
		{"SubscriptionPatterns", testPatterns},
		{"IndependentGroupsBothReceiveEverything", testIndependentGroups},
		{"GroupMembersShareTheWork", testGroupSharesWork},
		{"GroupMembersKeepKeyOrderThroughCrashAndJoin", testGroupMembersKeepKeyOrder},
		{"CloseWithMessagesInFlightLosesNothing", testCloseInFlight},
		{"PublishToDownBrokerFailsWithinDeadline", testBrokerDown},
		{"NewSubscriptionSeesExactlyWhatFollows", testStartNew},
		{"RetriesWithGrowingDelaysThenSuccess", testRetryThenSuccess},
		{"AlwaysFailingGoesToDeadLetterQueueOnce", testAlwaysFailing},
		{"FailingMessageHoldsBackOnlyItsOwnKey", testHeadOfLinePerKey},
		{"DuplicatesAreNoOps", testDuplicates},
		{"FanOutSubscriptionsEachDedupeTheirOwn", testFanOutDedupe},
		{"OrderSubmitAmendCancelTravelInOrder", testOrderChain},
		{"SignalsKeyByHorizonAndExpire", testSignals},
		{"FundamentalsRestatementsAreNotRegressions", testRestatements},
		{"ProducersBackOffWhileAConsumerGroupLags", testProducerBackpressure},
		{"KilledMidBatchAppliesEachMessageOnce", testKilledMidBatch},
		{"FaultInjection", testFaultInjection},
		{"LargePayloadsAreCompressedDeterministically", testCompression},
		{"OversizedPayloadsTravelAsBlobPointers", testBlobPointer},
		{"FullAsyncWindowWaitsOrFailsFast", testBackpressure},
		{"ConsumerReportsLag", testLag},
		{"SlowHandlerKeepsItsLease", testSlowHandler},
		{"BoundedReadsAWindowThenEnds", testBoundedWindow},
		{"ReplayReprocessesAWindowIdempotently", testReplay},
		{"ControlTopicReplayRequestFillsAGap", testControlReplay},
		{"QueuedMessagesKeepTheirLease", testQueuedLease},
		{"GroupMemberHoldsAtMostMaxInFlight", testMaxInFlight},
		{"AbortStopsEveryHandler", testAbortStopsHandlers},
		{"AsyncPublishOutlivesItsContext", testAsyncContext},
		{"AsyncPublishLetsGoOfItsMessageOnceAnswered", testAsyncMessageReuse},
		{"EachGroupDeadLettersItsOwnCopy", testDeadLetterPerGroup},
		{"SnapshotThenSubscribeHasNoGapOrDuplicate", testStateOfTheWorld},
		{"OrderingStateSurvivesRestart", testCheckpoints},
		{"DescribesWhatTheBrokerHolds", testDescribe},
		{"HostileWireIsDeadLetteredWithItsReason", testHostileWire},
		{"HooksSeeEveryPublishDeliveryAndResult", testHooks},
		{"ManyKeysInFlightCostNoGoroutineEach", testManyKeys},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.fn(t, &suite{binding: b, broker: b.Start(t)})
		})
	}
}

type suite struct {
	binding Binding
	broker  Broker
}

func (s *suite) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// bus opens a bus on the suite's broker, closed at the end of the test.
func (s *suite) bus(t *testing.T, opts ...ampybus.Option) *ampybus.Bus {
	t.Helper()
	// The suite owns its brokers: it provisions as it goes.
	opts = append([]ampybus.Option{ampybus.WithProducer("conformance@"+s.binding.Name, "conformance"), ampybus.WithRunID("conformance"), ampybus.WithProvisioning()}, opts...)
	b, err := ampybus.Open(s.ctx(t), s.broker.URL(), opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func dec(scaled int64, scale int32) *commonv1.Decimal {
	return &commonv1.Decimal{Scaled: scaled, Scale: scale}
}

func order(id string, seq int64) *ordersv1.OrderRequest {
	return &ordersv1.OrderRequest{
		AccountId: "ACC-1", ClientOrderId: id, Security: &commonv1.SecurityId{Symbol: "AAPL", Mic: "XNAS"},
		Side: commonv1.Side_SIDE_BUY, Quantity: dec(seq, 0), CreatedAt: timestamppb.Now(),
	}
}

// position is snapshot seq of key acct|AAPL.XNAS; positions order per key
// and have no dedupe key, so one key carries many messages.
func position(acct string, seq int64) *positionsv1.PositionSnapshot {
	return &positionsv1.PositionSnapshot{AccountId: acct, Security: &commonv1.SecurityId{Symbol: "AAPL", Mic: "XNAS"},
		Quantity: dec(seq, 0), AsOf: timestamppb.Now()}
}

func bar(symbol string, volume int64) *barsv1.BarBatch {
	return &barsv1.BarBatch{Bars: []*barsv1.Bar{{
		Security: &commonv1.SecurityId{Symbol: symbol, Mic: "XNAS"}, Volume: volume, Close: dec(1920500, 4),
	}}}
}

// barsStream is the transport stream of the bars domain in dev.
func barsStream() transport.Stream { return streamOf(bars.Domain) }

// streamOf is the transport stream of a domain in dev, as the bus ensures it.
func streamOf(d *ampybus.DomainSpec) transport.Stream {
	return transport.Stream{Prefix: d.Prefix("dev"), Retention: d.Retention, MaxPayload: d.MaxPayload, Partitions: d.Partitions,
		Replicas: d.Replicas, DedupeWindow: d.DedupeWindow, Subtopics: d.Shapes()}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// fullHeaders sets every envelope header, so a round trip shows each survives.
func fullHeaders() envelope.Headers {
	return envelope.Headers{
		MessageID: envelope.NewMessageID(), SchemaFQDN: "ampy.bars.v1.BarBatch", SchemaVersion: "1.0.0",
		ContentType: envelope.ContentTypeProtobuf, ContentEncoding: envelope.EncodingGzip,
		ProducedAt: time.Now().UTC(), Producer: "conformance@1", Source: "conformance", RunID: "run_c",
		Trace: envelope.NewTrace(), PartitionKey: "XNAS.AAPL", DedupeKey: "dk-1", RetryCount: 3,
		DLQReason: "decode_error: test", SchemaHash: "sha256:00ff", BlobRef: "file:///blobs/x",
		BlobHash: "sha256:abcd", BlobSize: 5 << 20, Extra: map[string]string{"replay_request_id": "rr-1"},
	}
}

// roundTrip publishes m on the transport and reads it back from a fresh subscription.
func roundTrip(t *testing.T, ctx context.Context, tr transport.Transport, m *transport.Message) transport.Delivery {
	t.Helper()
	st := barsStream()
	require.NoError(t, tr.EnsureStream(ctx, st))
	cons, err := tr.Subscribe(ctx, transport.Subscription{Stream: st, Filters: []string{st.Prefix + ".>"}, Group: "rt-" + m.Headers.MessageID[:8],
		Start: transport.StartPosition{Kind: transport.StartFirst}, MaxInFlight: 16, AckWait: 30 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cons.Close() })
	_, err = tr.Publish(ctx, st, m)
	require.NoError(t, err)
	d, err := cons.Next(ctx)
	require.NoError(t, err)
	require.NoError(t, d.Ack(ctx))
	return d
}

func testHeadersByteExact(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	tr := s.bus(t).Transport()
	h := fullHeaders()
	payload := randomBytes(4096)
	d := roundTrip(t, ctx, tr, &transport.Message{Topic: "ampy.dev.bars.v1.XNAS.AAPL", Headers: h, Payload: payload})
	require.NoError(t, d.HeaderErr())
	got := d.Message()
	assert.Equal(t, "ampy.dev.bars.v1.XNAS.AAPL", got.Topic)
	assert.Equal(t, payload, got.Payload, "payload byte-exact")
	assert.Equal(t, h.Fields(), got.Headers.Fields(), "every header, name and value, byte-exact")
	assert.Equal(t, 1, d.Attempt())
}

func testPayloadNearMax(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	tr := s.bus(t).Transport()
	h := fullHeaders()
	payload := randomBytes(1<<20 - 1024)
	d := roundTrip(t, ctx, tr, &transport.Message{Topic: "ampy.dev.bars.v1.XNAS.AAPL", Headers: h, Payload: payload})
	assert.Equal(t, payload, d.Message().Payload)
}

func testTypedRoundTrip(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	b := s.bus(t)
	got := make(chan *orders.RequestsMessage, 1)
	sub, err := orders.SubscribeRequests(ctx, b, orders.AllRequests(), func(_ context.Context, m *orders.RequestsMessage) error {
		got <- m
		return nil
	}, ampybus.Durable("typed"), ampybus.DeliverAll())
	require.NoError(t, err)
	defer sub.Stop()
	parent := envelope.NewTrace()
	res, err := orders.NewRequestsPublisher(b).Publish(envelope.ContextWithTrace(ctx, parent), orders.NewRequestsSubtopic(), order("co_1", 7),
		ampybus.WithHeader("replay_request_id", "rr-7"))
	require.NoError(t, err)
	m := recv(t, got)
	assert.Equal(t, res.MessageID, m.Headers.MessageID)
	assert.Equal(t, "ampy.dev.orders.v1.requests", m.Topic)
	assert.Equal(t, "co_1", m.Headers.PartitionKey)
	assert.Equal(t, "co_1|"+m.Payload.GetCreatedAt().AsTime().Format(time.RFC3339Nano), m.Headers.DedupeKey)
	assert.Equal(t, parent.TraceID, m.Headers.Trace.TraceID)
	assert.Equal(t, "rr-7", m.Headers.Extra["replay_request_id"])
	assert.Equal(t, int64(7), m.Payload.GetQuantity().GetScaled())
	assert.NoError(t, m.Headers.Validate())
}

func recv[M any](t *testing.T, ch <-chan M) M {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(30 * time.Second):
		t.Fatal("nothing received within 30s")
		var zero M
		return zero
	}
}

// scale shrinks message counts under -short, for a quick run.
func scale(n int) int {
	if testing.Short() {
		return max(n/8, 4)
	}
	return n
}

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

// consumer opens a raw transport consumer on the bars stream.
func consumer(t *testing.T, ctx context.Context, tr transport.Transport, group string) transport.Consumer {
	t.Helper()
	st := barsStream()
	require.NoError(t, tr.EnsureStream(ctx, st))
	c, err := tr.Subscribe(ctx, transport.Subscription{Stream: st, Filters: []string{st.Prefix + ".>"}, Group: group,
		Start: transport.StartPosition{Kind: transport.StartFirst}, MaxInFlight: 64, AckWait: time.Second})
	require.NoError(t, err)
	return c
}

func publishBars(t *testing.T, ctx context.Context, b *ampybus.Bus, from, to int) {
	t.Helper()
	pub := bars.NewPublisher(b)
	for i := from; i < to; i++ {
		_, err := pub.Publish(ctx, bars.MustSubtopic("XNAS", "AAPL"), bar("AAPL", int64(i)))
		require.NoError(t, err)
	}
}

func volume(t *testing.T, d transport.Delivery) int64 {
	t.Helper()
	var m barsv1.BarBatch
	require.NoError(t, proto.Unmarshal(d.Message().Payload, &m))
	return m.GetBars()[0].GetVolume()
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

type collector struct {
	mu   sync.Mutex
	got  []string
	ids  map[string]bool
	more chan struct{}
}

func newCollector() *collector {
	return &collector{ids: map[string]bool{}, more: make(chan struct{}, 1)}
}

func (c *collector) handle(_ context.Context, m *bars.Message) error {
	c.mu.Lock()
	c.got = append(c.got, m.Subtopic.String())
	c.ids[m.Headers.MessageID] = true
	c.mu.Unlock()
	select {
	case c.more <- struct{}{}:
	default:
	}
	return nil
}

func (c *collector) snapshot() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.got...)
}

func (c *collector) wait(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		if got := c.snapshot(); len(got) >= n {
			return got
		}
		select {
		case <-c.more:
		case <-deadline:
			t.Fatalf("received %d of %d", len(c.snapshot()), n)
		}
	}
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

// testStartNew: a new subscription without DeliverAll sees every message
// published after Subscribe returned and none from before, durable or not.
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

// read runs a bounded subscription to its end and returns what it held,
// failing the test on any error but the end of the window.
func read(t *testing.T, ctx context.Context, tr transport.Transport, sub transport.Subscription) []*transport.Message {
	t.Helper()
	c, err := tr.Subscribe(ctx, sub)
	require.NoError(t, err)
	defer c.Close()
	var out []*transport.Message
	for {
		d, err := c.Next(ctx)
		if errors.Is(err, transport.ErrEndOfStream) {
			return out
		}
		require.NoError(t, err)
		out = append(out, d.Message())
		require.NoError(t, d.Ack(ctx))
	}
}

// readStream reads everything st holds now.
func readStream(t *testing.T, ctx context.Context, tr transport.Transport, st transport.Stream) []*transport.Message {
	t.Helper()
	require.NoError(t, tr.EnsureStream(ctx, st))
	return read(t, ctx, tr, transport.Subscription{Stream: st, Filters: []string{st.Prefix + ".>"}, Bounded: true,
		Start: transport.StartPosition{Kind: transport.StartFirst}, MaxInFlight: 1024, AckWait: 30 * time.Second})
}

// readDeadLetters waits until the dev dead-letter stream holds at least want
// messages (they are written as consumers give up), then a moment more for
// any that should not be there, and returns them all.
func readDeadLetters(t *testing.T, ctx context.Context, b *ampybus.Bus, want int) []*transport.Message {
	t.Helper()
	st := streamOf(ampybus.DeadLetterDomain(bars.Domain))
	deadline := time.Now().Add(10 * time.Second)
	for len(readStream(t, ctx, b.Transport(), st)) < want && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	return readStream(t, ctx, b.Transport(), st)
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

func testCompression(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	b := s.bus(t)
	big := &barsv1.BarBatch{}
	for i := range 4000 { // about 300 KiB, and very compressible
		big.Bars = append(big.Bars, &barsv1.Bar{Security: &commonv1.SecurityId{Symbol: "AAPL", Mic: "XNAS"},
			Volume: int64(i), Close: dec(1920500, 4), AdjustmentPolicyId: "split-dividend-adjusted"})
	}
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(big)
	require.NoError(t, err)
	require.Greater(t, len(raw), 128<<10)
	got := make(chan *bars.Message, 2)
	sub, err := bars.Subscribe(ctx, b, bars.All(), func(_ context.Context, m *bars.Message) error {
		got <- m
		return nil
	}, ampybus.Durable("gz"), ampybus.NoDedupe())
	require.NoError(t, err)
	defer sub.Stop()
	pub := bars.NewPublisher(b)
	for range 2 {
		_, err := pub.Publish(ctx, bars.MustSubtopic("XNAS", "AAPL"), big)
		require.NoError(t, err)
	}
	for range 2 {
		m := recv(t, got)
		assert.True(t, proto.Equal(big, m.Payload), "inflated transparently")
		assert.Equal(t, "gzip", m.Headers.ContentEncoding)
	}
	stored := readStream(t, ctx, b.Transport(), barsStream())
	require.Len(t, stored, 2)
	assert.Equal(t, ampybus.Gzip(raw), stored[0].Payload, "stored bytes are the gzip of the protobuf")
	assert.Equal(t, stored[0].Payload, stored[1].Payload, "the same payload gives the same bytes every time")
	assert.Less(t, len(stored[0].Payload), len(raw)/4)
}

func testBlobPointer(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	dir := t.TempDir()
	store, err := blob.NewFS(dir)
	require.NoError(t, err)
	b := s.bus(t, ampybus.WithBlobStore(store))
	noisy := func() *barsv1.BarBatch {
		noise := make([]byte, 3<<19)
		_, _ = rand.Read(noise)
		m := bar("AAPL", 1)
		m.Bars[0].AdjustmentPolicyId = base64.StdEncoding.EncodeToString(noise) // ~2 MiB, incompressible
		return m
	}
	want := noisy()
	got := make(chan *bars.Message, 1)
	sub, err := bars.Subscribe(ctx, b, bars.All(), func(_ context.Context, m *bars.Message) error {
		got <- m
		return nil
	}, ampybus.Durable("blobs"))
	require.NoError(t, err)
	res, err := bars.NewPublisher(b).Publish(ctx, bars.MustSubtopic("XNAS", "AAPL"), want)
	require.NoError(t, err)
	m := recv(t, got)
	require.NoError(t, sub.Stop())
	assert.True(t, proto.Equal(want, m.Payload), "fetched, verified and decoded")
	assert.Equal(t, res.MessageID, m.Headers.MessageID)
	assert.Regexp(t, `^file:///`, m.Headers.BlobRef)
	assert.Regexp(t, `^sha256:[0-9a-f]{64}$`, m.Headers.BlobHash)
	assert.Greater(t, m.Headers.BlobSize, int64(1<<20))
	stored := readStream(t, ctx, b.Transport(), barsStream())
	require.Len(t, stored, 1)
	assert.Empty(t, stored[0].Payload, "only the pointer travels on the bus")

	// A blob that changed after publishing is a poison pill.
	tampered := noisy()
	res, err = bars.NewPublisher(b).Publish(ctx, bars.MustSubtopic("XNAS", "AAPL"), tampered)
	require.NoError(t, err)
	stored = readStream(t, ctx, b.Transport(), barsStream())
	require.Len(t, stored, 2)
	u, err := url.Parse(stored[1].Headers.BlobRef)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(u.Path, []byte("not what was published"), 0o644))
	sub, err = bars.Subscribe(ctx, b, bars.All(), func(_ context.Context, m *bars.Message) error { return nil }, ampybus.Durable("blobs"))
	require.NoError(t, err)
	defer sub.Stop()
	dl := readDeadLetters(t, ctx, b, 1)
	require.Len(t, dl, 1)
	assert.Equal(t, res.MessageID, dl[0].Headers.MessageID)
	assert.Contains(t, dl[0].Headers.DLQReason, "blob_hash_mismatch: ")
	assert.Equal(t, stored[1].Headers.BlobRef, dl[0].Headers.BlobRef, "the pointer is kept for forensics")
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

// drain reads a bounded subscription to its end and returns the volumes of
// the bars it held, in order.
func drain(t *testing.T, ctx context.Context, tr transport.Transport, sub transport.Subscription) []int64 {
	t.Helper()
	var got []int64
	for _, m := range read(t, ctx, tr, sub) {
		var batch barsv1.BarBatch
		require.NoError(t, proto.Unmarshal(m.Payload, &batch))
		got = append(got, batch.GetBars()[0].GetVolume())
	}
	return got
}

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
