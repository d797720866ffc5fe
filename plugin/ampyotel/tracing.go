package ampyotel

import (
	"context"
	"errors"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/envelope"
)

// Span attributes of ampy-bus's own, beside the semantic conventions'.
const (
	AttrPartitionKey = attribute.Key("ampy.partition_key")
	AttrResult       = attribute.Key("ampy.result")
	AttrReason       = attribute.Key("ampy.reason")
	AttrAttempt      = attribute.Key("ampy.attempt")
	AttrReplay       = attribute.Key("ampy.replay_request_id")
)

type tracing struct {
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
}

// onPublish starts a producer span, the child of the span in ctx (or of
// the message the handler is processing), and sends its context in the
// message's traceparent.
func (t *tracing) onPublish(ctx context.Context, e *ampybus.PublishEvent) context.Context {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		if tc, ok := envelope.TraceFromContext(ctx); ok {
			ctx = trace.ContextWithRemoteSpanContext(ctx, spanContext(tc))
		}
	}
	op := "send"
	if e.Kind != ampybus.KindPublish {
		op = e.Kind.String()
	}
	attrs := []attribute.KeyValue{
		system(e.Transport), semconv.MessagingOperationName(op), semconv.MessagingOperationTypeSend,
		semconv.MessagingDestinationName(e.Topic), semconv.MessagingMessageID(e.Headers.MessageID),
		AttrPartitionKey.String(e.Headers.PartitionKey),
	}
	if e.Transport == "kafka" {
		attrs = append(attrs, semconv.MessagingKafkaMessageKey(e.Headers.PartitionKey))
	}
	if e.Kind == ampybus.KindDeadLetter {
		attrs = append(attrs, AttrReason.String(e.Headers.DLQReason))
	}
	ctx, _ = t.tracer.Start(ctx, op+" "+e.Pattern(), trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...))
	t.propagator.Inject(ctx, carrier{e.Headers})
	return ctx
}

func (t *tracing) onPublished(ctx context.Context, e *ampybus.PublishEvent, res ampybus.PublishResult, err error) {
	span := trace.SpanFromContext(ctx)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, errorType(err))
		span.SetAttributes(semconv.ErrorTypeKey.String(errorType(err)))
	} else {
		span.SetAttributes(offsetAttrs(e.Transport, res.Partition, res.Sequence)...)
	}
	span.End()
}

// onDelivery starts the process span as the child of the producer's span,
// read from the message's headers through the propagator.
func (t *tracing) onDelivery(ctx context.Context, e *ampybus.DeliveryEvent) context.Context {
	ctx = t.propagator.Extract(ctx, carrier{e.Headers})
	attrs := []attribute.KeyValue{
		system(e.Transport), semconv.MessagingOperationName("process"), semconv.MessagingOperationTypeProcess,
		semconv.MessagingDestinationName(e.Topic), semconv.MessagingMessageID(e.Headers.MessageID),
		AttrPartitionKey.String(e.Headers.PartitionKey), AttrAttempt.Int(e.Attempt),
	}
	if e.Consumer != "" {
		attrs = append(attrs, semconv.MessagingConsumerGroupName(e.Consumer))
	}
	if e.Replay != "" {
		attrs = append(attrs, AttrReplay.String(e.Replay))
	}
	if e.Transport == "kafka" {
		attrs = append(attrs, semconv.MessagingKafkaMessageKey(e.Headers.PartitionKey))
	}
	attrs = append(attrs, offsetAttrs(e.Transport, e.Partition, e.Sequence)...)
	ctx, _ = t.tracer.Start(ctx, "process "+e.Pattern(), trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
	return ctx
}

// onResult marks a retried attempt on the process span; a settling outcome
// gets a settle span and ends the process span.
func (t *tracing) onResult(ctx context.Context, e *ampybus.DeliveryEvent, r ampybus.Result) {
	span := trace.SpanFromContext(ctx)
	if r.Outcome == ampybus.OutcomeRetry {
		span.AddEvent("retry", trace.WithAttributes(AttrAttempt.Int(r.Attempt), AttrReason.String(ampybus.ReasonClass(r.Reason))))
		if r.Err != nil {
			span.RecordError(r.Err)
		}
		return
	}
	result := AttrResult.String(r.Outcome.String())
	span.SetAttributes(result)
	if r.Outcome != ampybus.OutcomeHandedBack && r.Outcome != ampybus.OutcomeObserved {
		_, settle := t.tracer.Start(ctx, "settle "+e.Pattern(), trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
			system(e.Transport), semconv.MessagingOperationName(settleOp(r.Outcome)), semconv.MessagingOperationTypeSettle,
			semconv.MessagingDestinationName(e.Topic), semconv.MessagingMessageID(e.Headers.MessageID), result))
		settle.End()
	}
	if r.Outcome == ampybus.OutcomeDeadLetter || r.Rejected {
		span.SetAttributes(AttrReason.String(ampybus.ReasonClass(r.Reason)))
		span.SetStatus(codes.Error, r.Reason)
	}
	span.End()
}

// settleOp is how the broker was told: a dead letter is terminated, the
// rest acknowledged.
func settleOp(o ampybus.Outcome) string {
	if o == ampybus.OutcomeDeadLetter {
		return "term"
	}
	return "ack"
}

func offsetAttrs(transport string, partition int32, seq uint64) []attribute.KeyValue {
	if transport == "kafka" {
		return []attribute.KeyValue{semconv.MessagingDestinationPartitionID(strconv.Itoa(int(partition))), semconv.MessagingKafkaOffset(int(seq))}
	}
	return []attribute.KeyValue{attribute.Int64("messaging.nats.stream_sequence", int64(seq))}
}

func spanContext(tc envelope.TraceContext) trace.SpanContext {
	return trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID(tc.TraceID), SpanID: trace.SpanID(tc.SpanID), TraceFlags: trace.TraceFlags(tc.Flags), Remote: true,
	})
}

// errorType is a publish error's bounded class, for error.type.
func errorType(err error) string {
	switch {
	case errors.Is(err, ampybus.ErrContract):
		return "contract_violation"
	case errors.Is(err, ampybus.ErrTooLarge):
		return "too_large"
	case errors.Is(err, ampybus.ErrBackpressure):
		return "backpressure"
	case errors.Is(err, ampybus.ErrClosed):
		return "closed"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, ampybus.ErrUnavailable):
		return "unavailable"
	}
	return "_OTHER"
}
