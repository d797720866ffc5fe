package natsbinding_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/runtime/embedded"
	"github.com/ampyfin/ampy-bus/runtime/natsbinding"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// One stream per env and domain, with the contract's retention, size limit
// and duplicate window; ensuring again updates it.
func TestEnsureStreamFromContract(t *testing.T) {
	e, err := embedded.StartNATS(embedded.NATSOptions{})
	require.NoError(t, err)
	defer e.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tr, err := natsbinding.Open(ctx, natsbinding.Config{URL: e.URL()})
	require.NoError(t, err)
	defer tr.Close()

	s := transport.Stream{Prefix: "ampy.prod.orders.v1", Retention: 400 * 24 * time.Hour, MaxPayload: 1 << 20, DedupeWindow: 2 * time.Minute, Partitions: 3}
	require.NoError(t, tr.EnsureStream(ctx, s))
	js, err := jetstream.New(tr.Conn())
	require.NoError(t, err)
	st, err := js.Stream(ctx, "AMPY_PROD_ORDERS_V1")
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"0.ampy.prod.orders.v1.>", "1.ampy.prod.orders.v1.>", "2.ampy.prod.orders.v1.>"}, info.Config.Subjects,
		"one subject per partition")
	assert.Equal(t, 400*24*time.Hour, info.Config.MaxAge)
	assert.Equal(t, int32(1<<20+natsbinding.HeaderAllowance), info.Config.MaxMsgSize)
	assert.Equal(t, 2*time.Minute, info.Config.Duplicates)
	assert.Equal(t, jetstream.FileStorage, info.Config.Storage)

	s.Retention = 800 * 24 * time.Hour
	require.NoError(t, tr.EnsureStream(ctx, s))
	info, err = st.Info(ctx)
	require.NoError(t, err)
	assert.Equal(t, 800*24*time.Hour, info.Config.MaxAge, "an existing stream follows the contract")
}

// Ensuring never lowers what the broker has, and changes nothing when the
// stream already matches: many processes opening one bus update nothing.
func TestEnsureStreamKeepsWhatTheBrokerHas(t *testing.T) {
	ctx, tr, js := openEmbedded(t)

	s := transport.Stream{Prefix: "ampy.prod.fills.v1", Retention: time.Hour, MaxPayload: 1 << 20, DedupeWindow: time.Minute, Partitions: 16, Replicas: 3}
	require.NoError(t, tr.EnsureStream(ctx, s))
	st, err := js.Stream(ctx, "AMPY_PROD_FILLS_V1")
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, info.Config.Replicas, "a server outside a cluster holds one copy")
	assert.Equal(t, "16", info.Config.Metadata[natsbinding.MetaPartitions])
	created := info.Created

	s.Partitions = 12
	require.NoError(t, tr.EnsureStream(ctx, s))
	info, err = st.Info(ctx)
	require.NoError(t, err)
	assert.Equal(t, "16", info.Config.Metadata[natsbinding.MetaPartitions], "partitions are never lowered")
	assert.Equal(t, created, info.Created)
	assert.Equal(t, 16, tr.Partitions(s.Prefix), "publishers follow the broker's count")

	// A matching stream is left alone: the server announces every update,
	// and ensuring again announces none; growing partitions announces one.
	updates, err := tr.Conn().SubscribeSync("$JS.EVENT.ADVISORY.STREAM.UPDATED.AMPY_PROD_FILLS_V1")
	require.NoError(t, err)
	require.NoError(t, tr.Conn().Flush())
	require.NoError(t, tr.EnsureStream(ctx, s))
	s.Partitions = 20
	require.NoError(t, tr.EnsureStream(ctx, s))
	assert.Equal(t, "20", mustInfo(ctx, t, js, "AMPY_PROD_FILLS_V1").Config.Metadata[natsbinding.MetaPartitions], "partitions grow")
	_, err = updates.NextMsg(5 * time.Second)
	require.NoError(t, err, "growing partitions updates the stream")
	_, err = updates.NextMsg(time.Second)
	assert.ErrorIs(t, err, nats.ErrTimeout, "ensuring a matching stream updated it")
}

// openEmbedded starts a server and opens the binding and a raw JetStream client
// on it, all closed when the test ends.
func openEmbedded(t *testing.T) (context.Context, *natsbinding.Transport, jetstream.JetStream) {
	t.Helper()
	e, err := embedded.StartNATS(embedded.NATSOptions{})
	require.NoError(t, err)
	t.Cleanup(e.Shutdown)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	tr, err := natsbinding.Open(ctx, natsbinding.Config{URL: e.URL()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = tr.Close() })
	js, err := jetstream.New(tr.Conn())
	require.NoError(t, err)
	return ctx, tr, js
}

func mustInfo(ctx context.Context, t *testing.T, js jetstream.JetStream, name string) *jetstream.StreamInfo {
	t.Helper()
	st, err := js.Stream(ctx, name)
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	return info
}

// A stream of the layout before partition subjects is brought to the new
// one, and a publish that skips the partition token is refused rather than
// stored where no consumer group reads it.
func TestUnpartitionedPublishIsRefused(t *testing.T) {
	ctx, tr, js := openEmbedded(t)
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "AMPY_DEV_ORDERS_V1", Subjects: []string{"ampy.dev.orders.v1.>"}})
	require.NoError(t, err)

	require.NoError(t, tr.EnsureStream(ctx, transport.Stream{Prefix: "ampy.dev.orders.v1", Partitions: 2, DedupeWindow: time.Minute}))
	assert.Equal(t, []string{"0.ampy.dev.orders.v1.>", "1.ampy.dev.orders.v1.>"}, mustInfo(ctx, t, js, "AMPY_DEV_ORDERS_V1").Config.Subjects)

	_, err = js.Publish(ctx, "ampy.dev.orders.v1.requests", []byte("x"))
	assert.ErrorIs(t, err, jetstream.ErrNoStreamResponse, "a plain-topic publish must not be stored")
	_, err = js.Publish(ctx, "2.ampy.dev.orders.v1.requests", []byte("x"))
	assert.ErrorIs(t, err, jetstream.ErrNoStreamResponse, "nor one to a partition the stream does not have")
	ack, err := js.Publish(ctx, natsbinding.Subject("ampy.dev.orders.v1.requests", "co_1", 2), []byte("x"))
	require.NoError(t, err)
	assert.Equal(t, "AMPY_DEV_ORDERS_V1", ack.Stream)
}

// The stream stores only the contract's subtopic shapes, so a topic no
// consumer would route is refused at the door. Shapes only accrue: a
// process on an older contract keeps a newer one's subtopics, and the
// shape-less layout (N.prefix.>) gives way to the contract's.
func TestOffContractSubjectIsRefused(t *testing.T) {
	ctx, tr, js := openEmbedded(t)
	const name = "AMPY_DEV_TICKS_V1"
	s := transport.Stream{Prefix: "ampy.dev.ticks.v1", Partitions: 2, DedupeWindow: time.Minute}
	require.NoError(t, tr.EnsureStream(ctx, s))
	assert.Equal(t, []string{"0.ampy.dev.ticks.v1.>", "1.ampy.dev.ticks.v1.>"}, mustInfo(ctx, t, js, name).Config.Subjects)

	s.Subtopics = []string{"trade.*"}
	require.NoError(t, tr.EnsureStream(ctx, s))
	assert.Equal(t, []string{"0.ampy.dev.ticks.v1.trade.*", "1.ampy.dev.ticks.v1.trade.*"}, mustInfo(ctx, t, js, name).Config.Subjects)

	s.Subtopics = []string{"trade.*", "quote.*"} // a newer contract adds quotes
	require.NoError(t, tr.EnsureStream(ctx, s))
	s.Subtopics = []string{"trade.*"} // an older process opens the bus again
	require.NoError(t, tr.EnsureStream(ctx, s))
	assert.Equal(t, []string{"0.ampy.dev.ticks.v1.quote.*", "0.ampy.dev.ticks.v1.trade.*", "1.ampy.dev.ticks.v1.quote.*", "1.ampy.dev.ticks.v1.trade.*"},
		mustInfo(ctx, t, js, name).Config.Subjects)

	for _, topic := range []string{"ampy.dev.ticks.v1.trade.AAPL.extra", "ampy.dev.ticks.v1.book.AAPL", "ampy.dev.ticks.v1.trade"} {
		_, err := js.Publish(ctx, natsbinding.Subject(topic, "AAPL", 2), []byte("x"))
		assert.ErrorIs(t, err, jetstream.ErrNoStreamResponse, "%s must not be stored", topic)
	}
	for _, topic := range []string{"ampy.dev.ticks.v1.trade.AAPL", "ampy.dev.ticks.v1.quote.AAPL"} {
		_, err := js.Publish(ctx, natsbinding.Subject(topic, "AAPL", 2), []byte("x"))
		assert.NoError(t, err, topic)
	}

	// Two contracts whose shapes overlap without one covering the other
	// would give a stream JetStream refuses: they merge into one that
	// covers both, and either process can still open the stream.
	q := transport.Stream{Prefix: "ampy.dev.quotes.v1", Partitions: 1, DedupeWindow: time.Minute, Subtopics: []string{"binance.*"}}
	require.NoError(t, tr.EnsureStream(ctx, q))
	q.Subtopics = []string{"*.latest"}
	require.NoError(t, tr.EnsureStream(ctx, q))
	q.Subtopics = []string{"binance.*"}
	require.NoError(t, tr.EnsureStream(ctx, q))
	assert.Equal(t, []string{"0.ampy.dev.quotes.v1.*.*"}, mustInfo(ctx, t, js, "AMPY_DEV_QUOTES_V1").Config.Subjects)
}
