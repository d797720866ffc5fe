package ampybus_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	neturl "net/url"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/ampyfin/ampy-bus/generated/bars"
	"github.com/ampyfin/ampy-bus/generated/dlq"
	"github.com/ampyfin/ampy-bus/generated/orders"
	commonv1 "github.com/ampyfin/ampy-bus/proto/ampy/common/v1"
	ordersv1 "github.com/ampyfin/ampy-bus/proto/ampy/orders/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/blob"
	"github.com/ampyfin/ampy-bus/runtime/embedded"
	"github.com/ampyfin/ampy-bus/runtime/envelope"
	"github.com/ampyfin/ampy-bus/runtime/natsbinding"
)

func TestHandlerErrorRedelivers(t *testing.T) {
	srv := server(t)
	b := open(t, srv.URL(), ampybus.WithProducer("e2e@test-1", "e2e"))
	ctx := testCtx(t)
	var calls atomic.Int32
	got := make(chan *bars.Message, 1)
	s, err := bars.Subscribe(ctx, b, bars.All(), func(_ context.Context, m *bars.Message) error {
		if calls.Add(1) < 3 {
			return errors.New("feature store busy")
		}
		got <- m
		return nil
	}, ampybus.Durable("retry"), ampybus.RetryBackoff(func(int) time.Duration { return 10 * time.Millisecond }))
	require.NoError(t, err)
	defer s.Stop()
	res, err := bars.NewPublisher(b).Publish(ctx, bars.MustSubtopic("XNAS", "AAPL"), barBatch())
	require.NoError(t, err)
	select {
	case m := <-got:
		assert.Equal(t, res.MessageID, m.Headers.MessageID)
		assert.Equal(t, 3, m.Attempt)
		assert.Equal(t, 2, m.Headers.RetryCount, "two deliveries came before")
	case <-time.After(10 * time.Second):
		t.Fatalf("not redelivered; handler called %d times", calls.Load())
	}
}

// gzipBomb is a gzip stream of n zero bytes: a small message that inflates
// to n bytes.
func gzipBomb(t testing.TB, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	require.NoError(t, err)
	zeros := make([]byte, 1<<20)
	for range n >> 20 {
		_, err = w.Write(zeros)
		require.NoError(t, err)
	}
	require.NoError(t, w.Close())
	return buf.Bytes()
}

// Gzip bombs under max_payload that inflate to 128 MiB are dead-lettered
// with decompression_limit, and the consumer's heap never grows by more than
// a few times the domain's inflate limit (4 MiB for bars) while it reads
// them: one with an honest trailer, one whose trailer lies about its size;
// both are cut off past the limit.
func TestGzipBombIsDeadLetteredInBoundedMemory(t *testing.T) {
	srv := server(t)
	b := open(t, srv.URL(), ampybus.WithProducer("e2e@test-1", "e2e"))
	ctx := testCtx(t)
	honest := gzipBomb(t, 128<<20)
	lying := bytes.Clone(honest)
	copy(lying[len(lying)-4:], []byte{0, 1, 0, 0}) // ISIZE: 256 bytes
	require.Less(t, len(honest), int(bars.Domain.MaxPayload), "the bomb fits under max_payload")

	var handled atomic.Int32
	s, err := bars.Subscribe(ctx, b, bars.All(), func(context.Context, *bars.Message) error {
		handled.Add(1)
		return nil
	}, ampybus.Durable("bomb"), ampybus.DeliverAll())
	require.NoError(t, err)
	defer s.Stop()

	// Collect garbage eagerly, so the heap measures what is live rather
	// than what the collector has not reached yet.
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	for i, bomb := range [][]byte{honest, lying} {
		runtime.GC()
		var base runtime.MemStats
		runtime.ReadMemStats(&base)
		var peak atomic.Uint64
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			var m runtime.MemStats
			for {
				runtime.ReadMemStats(&m)
				if m.HeapAlloc > peak.Load() {
					peak.Store(m.HeapAlloc)
				}
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
				}
			}
		}()
		h := validHeaders(bars.SchemaFQDN)
		h.Set("content_encoding", "gzip")
		rawPublish(t, srv.URL(), "ampy.dev.bars.v1.XNAS.AAPL", h, bomb)
		require.Eventually(t, func() bool { return s.Stats().DeadLettered == uint64(i+1) }, 20*time.Second, 5*time.Millisecond, "not dead-lettered")
		close(stop)
		<-sampled
		growth := int64(peak.Load()) - int64(base.HeapAlloc)
		t.Logf("bomb %d (%d bytes, 128 MiB inflated): dead-lettered; peak heap growth %.1f MiB (bars max_inflated %d MiB)",
			i+1, len(bomb), float64(growth)/(1<<20), bars.Domain.MaxInflated>>20)
		assert.Less(t, growth, int64(4*bars.Domain.MaxInflated), "heap grew by %d bytes", growth)
	}
	assert.Zero(t, handled.Load())
}

// rawPublish sends bytes with the given headers straight through nats.go, as
// a misbehaving or foreign producer would, on the partition subject of the
// partition_key header (a bars topic).
func rawPublish(t *testing.T, url, topic string, h nats.Header, data []byte) {
	t.Helper()
	subject := natsbinding.Subject(topic, h.Get("partition_key"), bars.Domain.Partitions)
	_, err := rawJS(t, url).PublishMsg(context.Background(), &nats.Msg{Subject: subject, Header: h, Data: data})
	require.NoError(t, err)
}

func validHeaders(fqdn string) nats.Header {
	h := nats.Header{}
	eh := envelope.Headers{
		MessageID: envelope.NewMessageID(), SchemaFQDN: fqdn, SchemaVersion: "1.0.0",
		ContentType: envelope.ContentTypeProtobuf, ProducedAt: time.Now(), Producer: "foreign@1", Source: "foreign",
		RunID: "r1", Trace: envelope.NewTrace(), PartitionKey: "XNAS.AAPL",
	}
	for _, f := range eh.Fields() {
		h.Set(f.Key, f.Value)
	}
	return h
}

func TestPoisonGoesToDeadLetterQueue(t *testing.T) {
	srv := server(t)
	b := open(t, srv.URL(), ampybus.WithProducer("e2e@test-1", "e2e"))
	ctx := testCtx(t)
	// The stream must exist before raw publishes.
	require.NoError(t, b.Ensure(ctx, bars.Domain, dlq.Domain))

	good, err := proto.Marshal(barBatch())
	require.NoError(t, err)
	badTrace := validHeaders(bars.SchemaFQDN)
	badTrace.Set("traceparent", "00-00000000000000000000000000000000-0000000000000000-01")
	cases := []struct {
		name, subject string
		h             nats.Header
		data          []byte
		reason        string
	}{
		{"undecodable payload", "ampy.dev.bars.v1.XNAS.AAPL", validHeaders(bars.SchemaFQDN), []byte{0xff, 0xff, 0xff}, "decode_error: "},
		{"wrong schema", "ampy.dev.bars.v1.XNAS.AAPL", validHeaders("ampy.ticks.v1.TradeTick"), good, "schema_mismatch: schema_fqdn ampy.ticks.v1.TradeTick"},
		{"zero trace", "ampy.dev.bars.v1.XNAS.AAPL", badTrace, good, "contract_violation: header traceparent="},
		{"key disagrees with payload", "ampy.dev.bars.v1.XNAS.AAPL", func() nats.Header {
			h := validHeaders(bars.SchemaFQDN)
			h.Set("partition_key", "XNAS.MSFT")
			return h
		}(), good, `contract_violation: partition_key "XNAS.MSFT", but the contract derives "XNAS.AAPL" from the payload`},
		{"schema hash mismatch", "ampy.dev.bars.v1.XNAS.AAPL", func() nats.Header {
			h := validHeaders(bars.SchemaFQDN)
			h.Set("schema_hash", "sha256:0bad")
			return h
		}(), good, "schema_hash_mismatch: produced against sha256:0bad, this consumer has " + bars.SchemaHash},
		{"bad gzip", "ampy.dev.bars.v1.XNAS.AAPL", func() nats.Header {
			h := validHeaders(bars.SchemaFQDN)
			h.Set("content_encoding", "gzip")
			return h
		}(), good, "decode_error: gzip: "},
		{"dedupe key the contract does not derive", "ampy.dev.bars.v1.XNAS.AAPL", func() nats.Header {
			h := validHeaders(bars.SchemaFQDN)
			h.Set("dedupe_key", "co_1")
			return h
		}(), good, `contract_violation: dedupe_key "co_1", but the contract derives none for {mic}.{symbol}`},
		{"gzip bomb", "ampy.dev.bars.v1.XNAS.AAPL", func() nats.Header {
			h := validHeaders(bars.SchemaFQDN)
			h.Set("content_encoding", "gzip")
			return h
		}(), gzipBomb(t, 64<<20), "decompression_limit: the gzip payload of"},
	}
	var handled atomic.Int32
	s, err := bars.Subscribe(ctx, b, bars.All(), func(context.Context, *bars.Message) error {
		handled.Add(1)
		return nil
	}, ampybus.Durable("poison"), ampybus.DeliverAll())
	require.NoError(t, err)
	defer s.Stop()

	dl, err := rawJS(t, srv.URL()).Stream(ctx, natsbinding.StreamName(dlq.Domain.Prefix("dev")))
	require.NoError(t, err)

	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rawPublish(t, srv.URL(), tc.subject, tc.h, tc.data)
			var m *jetstream.RawStreamMsg
			require.Eventually(t, func() bool {
				m, err = dl.GetMsg(ctx, uint64(i+1))
				return err == nil
			}, 10*time.Second, 20*time.Millisecond, "no dead letter")
			assert.Equal(t, natsbinding.Subject("ampy.dev.dlq.v1.bars", tc.h.Get("partition_key"), dlq.Domain.Partitions), m.Subject)
			assert.Equal(t, tc.data, m.Data, "original payload bytes preserved")
			assert.Contains(t, m.Header.Get("dlq_reason"), tc.reason)
			assert.Equal(t, tc.subject, m.Header.Get("dlq_original_topic"))
			assert.Equal(t, "poison", m.Header.Get("dlq_consumer"))
			for k, v := range tc.h {
				assert.Equal(t, v, m.Header[k], "original header %s preserved verbatim", k)
			}
		})
	}
	assert.Zero(t, handled.Load(), "no poison reached the handler")

	// A permanent handler error dead-letters too, once.
	s2, err := bars.Subscribe(ctx, b, bars.All(), func(context.Context, *bars.Message) error {
		return ampybus.Permanent(errors.New("bar from the future"))
	}, ampybus.Durable("permanent"))
	require.NoError(t, err)
	defer s2.Stop()
	res, err := bars.NewPublisher(b).Publish(ctx, bars.MustSubtopic("XNAS", "AAPL"), barBatch())
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := dl.Info(ctx)
		return err == nil && info.State.Msgs == uint64(len(cases)+1)
	}, 10*time.Second, 20*time.Millisecond)
	m, err := dl.GetMsg(ctx, uint64(len(cases)+1))
	require.NoError(t, err)
	assert.Equal(t, res.MessageID, m.Header.Get("message_id"))
	assert.Equal(t, "handler: permanent failure: bar from the future", m.Header.Get("dlq_reason"))
}

func TestReconnectAfterServerRestart(t *testing.T) {
	dir := t.TempDir()
	srv, err := embedded.StartNATS(embedded.NATSOptions{StoreDir: dir})
	require.NoError(t, err)
	url := srv.URL()
	u, err := neturl.Parse(url)
	require.NoError(t, err)
	port, err := strconv.Atoi(u.Port())
	require.NoError(t, err)
	b := open(t, url, ampybus.WithProducer("e2e@test-1", "e2e"))
	ctx := testCtx(t)
	got := make(chan string, 4)
	s, err := bars.Subscribe(ctx, b, bars.All(), func(_ context.Context, m *bars.Message) error {
		got <- m.Subtopic.Symbol()
		return nil
	}, ampybus.Durable("survivor"))
	require.NoError(t, err)
	defer s.Stop()
	pub := bars.NewPublisher(b)
	_, err = pub.Publish(ctx, bars.MustSubtopic("XNAS", "AAPL"), barBatch())
	require.NoError(t, err)
	assert.Equal(t, "AAPL", <-got)

	// The broker goes away and comes back on the same port and store.
	srv.Shutdown()
	srv, err = embedded.StartNATS(embedded.NATSOptions{StoreDir: dir, Port: port})
	require.NoError(t, err)
	defer srv.Shutdown()

	require.Eventually(t, func() bool {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		msft := barBatch()
		msft.Bars[0].Security.Symbol = "MSFT"
		_, err := pub.Publish(pctx, bars.MustSubtopic("XNAS", "MSFT"), msft)
		return err == nil
	}, 15*time.Second, 100*time.Millisecond, "publish did not recover after reconnect")
	select {
	case sym := <-got:
		assert.Equal(t, "MSFT", sym)
	case <-time.After(15 * time.Second):
		t.Fatal("the durable consumer did not resume after reconnect")
	}
}

// Closing the bus while async publishes are in flight must neither panic nor
// lose an acknowledged message: every future completes, and every success is stored.
func TestCloseDuringAsyncPublish(t *testing.T) {
	srv := server(t)
	ctx := testCtx(t)
	b, err := ampybus.Open(ctx, srv.URL(), ampybus.WithProducer("e2e@test-1", "e2e"), ampybus.WithAsyncWindow(64), ampybus.WithProvisioning())
	require.NoError(t, err)
	require.NoError(t, b.Ensure(ctx, bars.Domain))
	pub := bars.NewPublisher(b)
	var futures []*ampybus.PublishFuture
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 2000 {
			f, err := pub.PublishAsync(ctx, bars.MustSubtopic("XNAS", "AAPL"), barBatch())
			if err != nil {
				assert.ErrorIs(t, err, ampybus.ErrClosed)
				return
			}
			futures = append(futures, f)
		}
	}()
	time.Sleep(5 * time.Millisecond)
	require.NoError(t, b.Close())
	<-done
	acked := 0
	for _, f := range futures {
		if _, err := f.Wait(ctx); err == nil {
			acked++
		}
	}
	assert.Equal(t, uint64(acked), streamMsgs(t, srv.URL(), "AMPY_DEV_BARS_V1"), "every acknowledged publish is stored")
}

type flakyStore struct {
	mu     sync.Mutex
	data   map[string][]byte
	failed bool
}

func (f *flakyStore) Put(context.Context, []byte) (string, error) { return "", errors.New("unused") }

func (f *flakyStore) Get(_ context.Context, ref string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ref == "first" && !f.failed {
		f.failed = true
		return nil, errors.New("blob store briefly unavailable")
	}
	return f.data[ref], nil
}

// A blob that cannot be fetched for a moment is retried in place in an
// ordered domain: the next message of its key waits.
func TestBlobRetryKeepsKeyOrder(t *testing.T) {
	srv := server(t)
	payload, err := proto.Marshal(barBatch())
	require.NoError(t, err)
	store := &flakyStore{data: map[string][]byte{"first": payload}}
	b := open(t, srv.URL(), ampybus.WithProducer("e2e@test-1", "e2e"), ampybus.WithBlobStore(store))
	ctx := testCtx(t)
	require.NoError(t, b.Ensure(ctx, bars.Domain))
	var mu sync.Mutex
	var order []string
	done := make(chan struct{})
	s, err := bars.Subscribe(ctx, b, bars.All(), func(_ context.Context, m *bars.Message) error {
		mu.Lock()
		defer mu.Unlock()
		order = append(order, m.Headers.Extra["n"])
		if len(order) == 2 {
			close(done)
		}
		return nil
	}, ampybus.Durable("blob"), ampybus.DeliverAll(), ampybus.RetryBackoff(func(int) time.Duration { return 200 * time.Millisecond }))
	require.NoError(t, err)
	defer s.Stop()
	for i, ref := range []string{"first", ""} {
		h := validHeaders(bars.SchemaFQDN)
		data := payload
		if ref != "" {
			h.Set(envelope.HeaderBlobRef, ref)
			h.Set(envelope.HeaderBlobHash, blob.Hash(payload))
			h.Set(envelope.HeaderBlobSize, strconv.Itoa(len(payload)))
			data = nil
		}
		h.Set("n", []string{"1", "2"}[i])
		rawPublish(t, srv.URL(), "ampy.dev.bars.v1.XNAS.AAPL", h, data)
	}
	<-done
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"1", "2"}, order)
	assert.Equal(t, uint64(1), s.Stats().Retried)
}

// One Durable name serves one pattern: a second pattern under the same name
// would re-point the broker consumer, so it is refused.
func TestDurableNameServesOnePattern(t *testing.T) {
	srv := server(t)
	b := open(t, srv.URL())
	ctx := testCtx(t)
	noop := func(context.Context, *bars.Message) error { return nil }
	s1, err := bars.Subscribe(ctx, b, bars.All(), noop, ampybus.Durable("features"))
	require.NoError(t, err)
	defer s1.Stop()
	again, err := bars.Subscribe(ctx, b, bars.All(), noop, ampybus.Durable("features"))
	require.NoError(t, err, "the same pattern joins the group")
	defer again.Stop()
	xnas, err := bars.ByMIC("XNAS")
	require.NoError(t, err)
	_, err = bars.Subscribe(ctx, b, xnas, noop, ampybus.Durable("features"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `consumer group "features" on AMPY_DEV_BARS_V1 already reads [ampy.dev.bars.v1.*.*], not [ampy.dev.bars.v1.XNAS.*]: one Durable name serves one pattern`)
}

// GunzipLimit inflates what fits (several members, an exact trailer),
// refuses what does not, and calls a truncated stream truncated whatever its
// last four bytes say.
func TestGunzipLimit(t *testing.T) {
	payload := bytes.Repeat([]byte("ampy-bus "), 10000)
	one := ampybus.Gzip(payload)
	two := append(bytes.Clone(one), one...) // two gzip members
	for _, tc := range []struct {
		name  string
		in    []byte
		limit int64
		want  []byte
		err   error
	}{
		{"exact", one, int64(len(payload)), payload, nil},
		{"room to spare", one, 1 << 20, payload, nil},
		{"two members", two, 1 << 20, append(bytes.Clone(payload), payload...), nil},
		{"declared over the limit", one, int64(len(payload)) - 1, nil, ampybus.ErrDecompressionLimit},
		{"two members over the limit", two, int64(len(payload)) + 10, nil, ampybus.ErrDecompressionLimit},
		{"truncated, its tail read as a huge size", one[:len(one)/2], 1 << 20, nil, io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ampybus.GunzipLimit(tc.in, tc.limit)
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
	_, err := ampybus.GunzipLimit([]byte("not gzip"), 1<<20)
	require.Error(t, err)
	assert.NotErrorIs(t, err, ampybus.ErrDecompressionLimit)
}

// The dedupe key is the contract's or nothing: an order whose header leaves
// it out (which would switch its dedupe off) is dead-lettered, not handled.
func TestMissingDedupeKeyIsDeadLettered(t *testing.T) {
	srv := server(t)
	b := open(t, srv.URL(), ampybus.WithProducer("e2e@test-1", "e2e"))
	ctx := testCtx(t)
	var handled atomic.Int32
	s, err := orders.SubscribeRequests(ctx, b, orders.AllRequests(), func(context.Context, *orders.RequestsMessage) error {
		handled.Add(1)
		return nil
	}, ampybus.Durable("dk"), ampybus.DeliverAll())
	require.NoError(t, err)
	defer s.Stop()
	payload, err := proto.Marshal(&ordersv1.OrderRequest{AccountId: "ACC-1", ClientOrderId: "co_dk", Security: &commonv1.SecurityId{Symbol: "AAPL", Mic: "XNAS"}})
	require.NoError(t, err)
	h := validHeaders(orders.RequestsSchemaFQDN)
	h.Set("partition_key", "co_dk")
	subject := natsbinding.Subject("ampy.dev.orders.v1.requests", "co_dk", orders.Domain.Partitions)
	_, err = rawJS(t, srv.URL()).PublishMsg(ctx, &nats.Msg{Subject: subject, Header: h, Data: payload})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return s.Stats().DeadLettered == 1 }, 10*time.Second, 10*time.Millisecond, "%+v", s.Stats())
	assert.Zero(t, handled.Load())
}
