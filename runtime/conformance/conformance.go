// Package conformance is the one test suite every transport binding passes:
// the bus must behave the same on NATS JetStream and on Kafka. A binding's
// test calls Run with a Broker that starts its embedded server.
package conformance

import (
	"context"
	"crypto/rand"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ampyfin/ampy-bus/generated/bars"
	barsv1 "github.com/ampyfin/ampy-bus/proto/ampy/bars/v1"
	commonv1 "github.com/ampyfin/ampy-bus/proto/ampy/common/v1"
	ordersv1 "github.com/ampyfin/ampy-bus/proto/ampy/orders/v1"
	positionsv1 "github.com/ampyfin/ampy-bus/proto/ampy/positions/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
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
		{"TypedAsyncPublishesKeepTheirOwnPayloads", testTypedAsyncPayloads},
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
