package conformance

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/generated"
	"github.com/ampyfin/ampy-bus/generated/orders"
	ordersv1 "github.com/ampyfin/ampy-bus/proto/ampy/orders/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/envelope"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// recorder is a hook of every kind that writes down what it saw.
type recorder struct {
	mu        sync.Mutex
	published []string // kind pattern err
	results   []string // client order id / message id: outcome class rejected
	delivered int
	subs      []string
	stopped   []ampybus.Stats
}

type ctxMark struct{}

func (r *recorder) OnPublish(ctx context.Context, e *ampybus.PublishEvent) context.Context {
	return context.WithValue(ctx, ctxMark{}, e.Headers.MessageID)
}

func (r *recorder) OnPublished(ctx context.Context, e *ampybus.PublishEvent, res ampybus.PublishResult, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	mark, _ := ctx.Value(ctxMark{}).(string)
	line := e.Kind.String() + " " + e.Pattern()
	switch {
	case err != nil:
		line += " error"
	case mark != res.MessageID || res.Sequence == 0 && res.Partition == 0 && res.Stream == "":
		line += " lost its context or result"
	}
	r.published = append(r.published, line)
}

func (r *recorder) OnDelivery(ctx context.Context, e *ampybus.DeliveryEvent) context.Context {
	r.mu.Lock()
	r.delivered++
	r.mu.Unlock()
	return context.WithValue(ctx, ctxMark{}, e.Headers.MessageID)
}

func (r *recorder) OnResult(ctx context.Context, e *ampybus.DeliveryEvent, res ampybus.Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	line := e.Headers.PartitionKey + ": " + res.Outcome.String()
	if res.Reason != "" {
		line += " " + ampybus.ReasonClass(res.Reason)
	}
	if res.Rejected {
		line += " rejected"
	}
	if mark, _ := ctx.Value(ctxMark{}).(string); mark != e.Headers.MessageID {
		line += " without OnDelivery's context"
	}
	if e.Consumer != "hooks" || e.Pattern() != "ampy.dev.orders.v1.requests" {
		line += " as " + e.Consumer + " on " + e.Pattern()
	}
	r.results = append(r.results, line)
}

func (r *recorder) OnSubscribe(_ context.Context, e *ampybus.SubscriptionEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.subs = append(r.subs, e.Consumer+" "+e.Pattern()+" "+e.Filter)
}

func (r *recorder) OnStop(_ *ampybus.SubscriptionEvent, st ampybus.Stats, _ error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = append(r.stopped, st)
}

func (r *recorder) snapshot() (published, results []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.published...), append([]string(nil), r.results...)
}

// testHooks: one hook sees every publish (typed, envelope, dead-letter
// writes) with its outcome, every delivery and each of its results (ok,
// duplicate, retry, dead letter by the handler, dead letter of a message
// that failed the checks), and the subscription start and stop; the context
// a hook returns reaches its completion.
func testHooks(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	rec := &recorder{}
	b := s.bus(t, ampybus.WithHooks(rec))
	sub, err := orders.SubscribeRequests(ctx, b, orders.AllRequests(), func(_ context.Context, m *orders.RequestsMessage) error {
		switch id := m.Payload.GetClientOrderId(); {
		case id == "co_retry" && m.Attempt == 1:
			return errors.New("not yet")
		case id == "co_perm":
			return ampybus.Permanent(errors.New("never"))
		}
		return nil
	}, ampybus.Durable("hooks"), ampybus.RetryBackoff(func(int) time.Duration { return 10 * time.Millisecond }))
	require.NoError(t, err)
	pub := orders.NewRequestsPublisher(b)
	first := order("co_1", 1)
	for _, o := range []*ordersv1.OrderRequest{first, first, order("co_retry", 1), order("co_perm", 1)} {
		_, err := pub.Publish(ctx, orders.NewRequestsSubtopic(), o)
		require.NoError(t, err)
	}
	h := envelope.Headers{
		MessageID: envelope.NewMessageID(), SchemaFQDN: orders.RequestsSpec.Schema.FQDN, SchemaVersion: orders.RequestsSpec.Schema.Version,
		ContentType: envelope.ContentTypeProtobuf, ProducedAt: time.Now().UTC(), Producer: "poison@conformance", Source: "poison",
		RunID: "run_p", Trace: envelope.NewTrace(), PartitionKey: "co_poison",
	}
	_, err = ampybus.PublishEnvelope(ctx, b, generated.Catalog, &transport.Message{Topic: "ampy.dev.orders.v1.requests", Headers: h, Payload: []byte{0xff, 0xff}})
	require.NoError(t, err)

	want := []string{
		"co_1: ok", "co_1: duplicate", "co_retry: retry handler", "co_retry: ok",
		"co_perm: dlq handler", "co_poison: dlq decode_error rejected",
	}
	require.Eventually(t, func() bool {
		_, results := rec.snapshot()
		return len(results) >= len(want)
	}, 30*time.Second, 20*time.Millisecond)
	require.NoError(t, sub.Stop())
	published, results := rec.snapshot()
	assert.ElementsMatch(t, want, results)
	assert.Equal(t, []string{"co_retry: retry handler", "co_retry: ok"}, filter(results, "co_retry"), "a retry is reported before the attempt that settles")
	assert.ElementsMatch(t, []string{
		"publish ampy.dev.orders.v1.requests", "publish ampy.dev.orders.v1.requests", "publish ampy.dev.orders.v1.requests",
		"publish ampy.dev.orders.v1.requests", "envelope ampy.dev.orders.v1.requests",
		"dead_letter ampy.dev.dlq.v1.orders", "dead_letter ampy.dev.dlq.v1.orders",
	}, published)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	assert.Equal(t, 5, rec.delivered, "one OnDelivery per delivery: co_retry is retried in place, within its delivery")
	assert.Equal(t, []string{"hooks ampy.dev.orders.v1.requests ampy.dev.orders.v1.requests"}, rec.subs)
	require.Len(t, rec.stopped, 1)
	assert.Equal(t, ampybus.Stats{Handled: 2, Retried: 1, DeadLettered: 2, Duplicates: 1}, rec.stopped[0])

	_, err = ampybus.Open(ctx, s.broker.URL(), ampybus.WithHooks(struct{}{}))
	assert.ErrorContains(t, err, "WithHooks: struct {} implements none of PublishHook, DeliveryHook, SubscriptionHook and PressureHook")
}

func filter(lines []string, prefix string) []string {
	var out []string
	for _, l := range lines {
		if len(l) > len(prefix) && l[:len(prefix)] == prefix && l[len(prefix)] == ':' {
			out = append(out, l)
		}
	}
	return out
}
