package ampyotel

import (
	"cmp"
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/semconv/v1.43.0/messagingconv"

	"github.com/ampyfin/ampy-bus/runtime/ampybus"
)

// The seed's metric names. Prometheus renders the dots as underscores
// (bus_produced_total); the names carry their units, so the instruments
// declare none and no suffix is added.
const (
	MetricProduced        = "bus.produced_total"
	MetricConsumed        = "bus.consumed_total"
	MetricDeliveryLatency = "bus.delivery_latency_ms"
	MetricBatchSize       = "bus.batch_size_bytes"
	MetricConsumerLag     = "bus.consumer_lag"
	MetricDLQ             = "bus.dlq_total"
	MetricRetry           = "bus.retry_total"
	MetricDecodeFail      = "bus.decode_fail_total"
	// MetricBackpressure is 1 while a domain's producers back off because a
	// consumer group the contract names lags past max_lag, by domain prefix
	// (ampybus.PressureHook; the bus logs which group).
	MetricBackpressure = "bus.backpressure_active"
)

// Label names of the bus.* metrics.
const (
	LabelTopic    = "topic"
	LabelProducer = "producer"
	LabelConsumer = "consumer"
	LabelReason   = "reason"
)

// lagTimeout bounds one subscription's lag query during a collection.
const lagTimeout = 2 * time.Second

type metrics struct {
	produced, consumed, dlq, retry, decodeFail metric.Int64Counter
	backpressure                               metric.Int64UpDownCounter
	latency                                    metric.Float64Histogram
	batchSize                                  metric.Int64Histogram
	sent                                       messagingconv.ClientSentMessages
	received                                   messagingconv.ClientConsumedMessages
	operation                                  messagingconv.ClientOperationDuration
	process                                    messagingconv.ProcessDuration

	mu   sync.Mutex
	subs map[*ampybus.SubscriptionEvent]struct{}
	// sets caches attribute sets: one per label combination, which the
	// bounded labels keep few.
	sets sync.Map // setKey → attribute.Set
	// patterns caches topic labels per subtopic and env.
	patterns sync.Map // patternKey → string
}

type patternKey struct {
	spec       *ampybus.SubtopicSpec
	env, topic string
}

// pattern is the topic label: the subtopic's pattern, built once per
// subtopic and env (a dead letter's topic is its own label).
func (x *metrics) pattern(spec *ampybus.SubtopicSpec, env, topic string, build func() string) string {
	k := patternKey{spec: spec, env: env}
	if spec == nil {
		k.topic = topic
	}
	if p, ok := x.patterns.Load(k); ok {
		return p.(string)
	}
	p, _ := x.patterns.LoadOrStore(k, build())
	return p.(string)
}

func newMetrics(m metric.Meter) (*metrics, error) {
	x := &metrics{subs: map[*ampybus.SubscriptionEvent]struct{}{}}
	var err error
	counter := func(name, desc string) metric.Int64Counter {
		if err != nil {
			return nil
		}
		var c metric.Int64Counter
		c, err = m.Int64Counter(name, metric.WithDescription(desc))
		return c
	}
	x.produced = counter(MetricProduced, "Messages the broker acknowledged, by topic pattern and producer.")
	x.consumed = counter(MetricConsumed, "Deliveries settled (handled, duplicate, stale or dead-lettered) or read by a tap, by topic pattern and consumer group.")
	x.dlq = counter(MetricDLQ, "Messages written to the dead-letter queue, by topic pattern and reason class.")
	x.retry = counter(MetricRetry, "Failed attempts that were retried, by topic pattern and reason class.")
	x.decodeFail = counter(MetricDecodeFail, "Messages that failed the consumer's checks (decode, schema, keys, limits) or a tap's, by topic pattern and reason class.")
	if err != nil {
		return nil, err
	}
	if x.latency, err = m.Float64Histogram(MetricDeliveryLatency,
		metric.WithDescription("Milliseconds from produced_at to the consumer taking the message (first delivery), by topic pattern."),
		metric.WithExplicitBucketBoundaries(0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)); err != nil {
		return nil, err
	}
	if x.batchSize, err = m.Int64Histogram(MetricBatchSize,
		metric.WithDescription("Payload bytes as sent (compressed when gzipped), by topic pattern."),
		metric.WithExplicitBucketBoundaries(64, 256, 1024, 4096, 16384, 65536, 262144, 1<<20, 4<<20, 16<<20)); err != nil {
		return nil, err
	}
	if _, err = m.Int64ObservableGauge(MetricConsumerLag,
		metric.WithDescription("Messages of a subscription not yet acknowledged, by topic pattern and consumer group."),
		metric.WithInt64Callback(x.observeLag)); err != nil {
		return nil, err
	}
	if x.backpressure, err = m.Int64UpDownCounter(MetricBackpressure,
		metric.WithDescription("1 while a domain's producers back off because a consumer group lags past the contract's max_lag, by domain prefix.")); err != nil {
		return nil, err
	}
	if x.sent, err = messagingconv.NewClientSentMessages(m); err != nil {
		return nil, err
	}
	if x.received, err = messagingconv.NewClientConsumedMessages(m); err != nil {
		return nil, err
	}
	// The SDK's default buckets are for milliseconds; these are seconds.
	seconds := metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
	if x.operation, err = messagingconv.NewClientOperationDuration(m, seconds); err != nil {
		return nil, err
	}
	if x.process, err = messagingconv.NewProcessDuration(m, seconds); err != nil {
		return nil, err
	}
	return x, nil
}

// setKey names one cached attribute set.
type setKey struct {
	kind              uint8
	topic, who, other string
	// op and errType complete the semantic-convention sets, kept apart so
	// building a key allocates nothing.
	op      ampybus.PublishKind
	errType string
}

const (
	setProducer uint8 = iota
	setConsumer
	setTopic
	setReason
	setSent
	setReceived
	setProcess
)

func (x *metrics) set(k setKey, build func() attribute.Set) attribute.Set {
	if s, ok := x.sets.Load(k); ok {
		return s.(attribute.Set)
	}
	s, _ := x.sets.LoadOrStore(k, build())
	return s.(attribute.Set)
}

func (x *metrics) topicSet(topic string) attribute.Set {
	return x.set(setKey{kind: setTopic, topic: topic}, func() attribute.Set {
		return attribute.NewSet(attribute.String(LabelTopic, topic))
	})
}

func (x *metrics) reasonSet(topic, reason string) attribute.Set {
	return x.set(setKey{kind: setReason, topic: topic, other: reason}, func() attribute.Set {
		return attribute.NewSet(attribute.String(LabelTopic, topic), attribute.String(LabelReason, reason))
	})
}

func (x *metrics) onPublished(ctx context.Context, e *ampybus.PublishEvent, err error) {
	topic := x.pattern(e.Spec, e.Env, e.Topic, e.Pattern)
	errType := ""
	if err != nil {
		errType = errorType(err)
	} else {
		producer := cmp.Or(e.Producer, e.Headers.Producer)
		x.produced.Add(ctx, 1, metric.WithAttributeSet(x.set(setKey{kind: setProducer, topic: topic, who: producer}, func() attribute.Set {
			return attribute.NewSet(attribute.String(LabelTopic, topic), attribute.String(LabelProducer, producer))
		})))
		x.batchSize.Record(ctx, int64(e.PayloadBytes), metric.WithAttributeSet(x.topicSet(topic)))
	}
	set := x.set(setKey{kind: setSent, topic: topic, who: e.Transport, op: e.Kind, errType: errType}, func() attribute.Set {
		kv := []attribute.KeyValue{system(e.Transport), semconv.MessagingDestinationName(topic),
			semconv.MessagingOperationName(e.Kind.String()), semconv.MessagingOperationTypeSend}
		if errType != "" {
			kv = append(kv, semconv.ErrorTypeKey.String(errType))
		}
		return attribute.NewSet(kv...)
	})
	x.sent.AddSet(ctx, 1, set)
	x.operation.RecordSet(ctx, time.Since(e.Start).Seconds(), set)
}

func (x *metrics) onDelivery(ctx context.Context, e *ampybus.DeliveryEvent) {
	topic := x.pattern(e.Spec, e.Env, e.Topic, e.Pattern)
	x.received.AddSet(ctx, 1, x.set(setKey{kind: setReceived, topic: topic, who: e.Consumer, other: e.Transport}, func() attribute.Set {
		return attribute.NewSet(system(e.Transport), semconv.MessagingDestinationName(topic), semconv.MessagingConsumerGroupName(e.Consumer),
			semconv.MessagingOperationName("receive"), semconv.MessagingOperationTypeReceive)
	}))
	if e.Attempt == 1 && !e.Headers.ProducedAt.IsZero() {
		ms := float64(e.Received.Sub(e.Headers.ProducedAt).Microseconds()) / 1000
		x.latency.Record(ctx, max(ms, 0), metric.WithAttributeSet(x.topicSet(topic)))
	}
}

func (x *metrics) onResult(ctx context.Context, e *ampybus.DeliveryEvent, r ampybus.Result) {
	topic := x.pattern(e.Spec, e.Env, e.Topic, e.Pattern)
	switch r.Outcome {
	case ampybus.OutcomeOK, ampybus.OutcomeDuplicate, ampybus.OutcomeStale, ampybus.OutcomeExpired, ampybus.OutcomeDeadLetter, ampybus.OutcomeObserved:
		x.consumed.Add(ctx, 1, metric.WithAttributeSet(x.set(setKey{kind: setConsumer, topic: topic, who: e.Consumer}, func() attribute.Set {
			return attribute.NewSet(attribute.String(LabelTopic, topic), attribute.String(LabelConsumer, e.Consumer))
		})))
	}
	switch r.Outcome {
	case ampybus.OutcomeDeadLetter:
		set := x.reasonSet(topic, ampybus.ReasonClass(r.Reason))
		x.dlq.Add(ctx, 1, metric.WithAttributeSet(set))
		if r.Rejected {
			x.decodeFail.Add(ctx, 1, metric.WithAttributeSet(set))
		}
	case ampybus.OutcomeObserved:
		if r.Rejected {
			x.decodeFail.Add(ctx, 1, metric.WithAttributeSet(x.reasonSet(topic, ampybus.ReasonClass(r.Reason))))
		}
	case ampybus.OutcomeRetry:
		x.retry.Add(ctx, 1, metric.WithAttributeSet(x.reasonSet(topic, ampybus.ReasonClass(r.Reason))))
	}
	if r.Handler > 0 {
		errType := ""
		if r.Err != nil {
			errType = "handler_error"
		}
		x.process.RecordSet(ctx, r.Handler.Seconds(), x.set(setKey{kind: setProcess, topic: topic, who: e.Consumer, other: e.Transport, errType: errType}, func() attribute.Set {
			kv := []attribute.KeyValue{system(e.Transport), semconv.MessagingDestinationName(topic), semconv.MessagingConsumerGroupName(e.Consumer),
				semconv.MessagingOperationName("process"), semconv.MessagingOperationTypeProcess}
			if errType != "" {
				kv = append(kv, semconv.ErrorTypeKey.String(errType))
			}
			return attribute.NewSet(kv...)
		}))
	}
}

// pressure moves the domain's backpressure gauge with each episode.
func (x *metrics) pressure(e ampybus.PressureStats) {
	n := int64(-1)
	if e.Lagging {
		n = 1
	}
	x.backpressure.Add(context.Background(), n, metric.WithAttributeSet(x.topicSet(e.Domain)))
}

func (x *metrics) subscribed(e *ampybus.SubscriptionEvent) {
	if e.Replay != "" {
		return // a replay's backlog is its window, not lag
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.subs[e] = struct{}{}
}

func (x *metrics) stopped(e *ampybus.SubscriptionEvent) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.subs, e)
}

// observeLag asks each live subscription for its lag. Of several
// subscriptions of one group and pattern in the process the largest is
// kept: each reads the group's backlog, so adding them would count it twice.
func (x *metrics) observeLag(ctx context.Context, o metric.Int64Observer) error {
	x.mu.Lock()
	subs := make([]*ampybus.SubscriptionEvent, 0, len(x.subs))
	for e := range x.subs {
		subs = append(subs, e)
	}
	x.mu.Unlock()
	type key struct{ topic, consumer string }
	lags := map[key]int64{}
	for _, e := range subs {
		lctx, cancel := context.WithTimeout(ctx, lagTimeout)
		n, err := e.Lag(lctx)
		cancel()
		if err != nil {
			continue // a broker that does not answer: no sample rather than a false 0
		}
		k := key{e.Pattern(), e.Consumer}
		lags[k] = max(lags[k], int64(n))
	}
	for k, n := range lags {
		o.Observe(n, metric.WithAttributes(attribute.String(LabelTopic, k.topic), attribute.String(LabelConsumer, k.consumer)))
	}
	return nil
}

func system(transport string) attribute.KeyValue {
	return semconv.MessagingSystemKey.String(transport)
}
