// Package ampyotel reports what the bus does through OpenTelemetry: the
// seed's eight bus.* metrics and the messaging semantic-convention metrics,
// and spans for send, process, settle and dead-letter, carried between
// services by the traceparent header. Attach it with ampybus.WithHooks:
//
//	h, err := ampyotel.New(ampyotel.WithMeterProvider(mp), ampyotel.WithTracerProvider(tp))
//	bus, err := ampybus.Open(ctx, url, ampybus.WithHooks(h))
//
// Metric labels are bounded: topic is the subtopic's pattern
// (ampy.prod.bars.v1.{mic}.{symbol}), never a concrete subject, so a bus of
// ten thousand symbols still has one series per pattern; reason is a
// reason's class (decode_error, handler, max_attempts), never its text.
package ampyotel

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/ampyfin/ampy-bus/runtime/ampybus"
)

// ScopeName is the instrumentation scope of the meter and tracer.
const ScopeName = "github.com/ampyfin/ampy-bus"

// Option configures New.
type Option func(*config)

type config struct {
	meters     metric.MeterProvider
	tracers    trace.TracerProvider
	propagator propagation.TextMapPropagator
	noMetrics  bool
	noTraces   bool
}

// WithMeterProvider records metrics with mp instead of the global provider.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) { c.meters = mp }
}

// WithTracerProvider records spans with tp instead of the global provider.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) { c.tracers = tp }
}

// WithPropagator carries the trace context with p instead of the global
// propagator (by default W3C trace context, the traceparent header).
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(c *config) { c.propagator = p }
}

// WithoutMetrics records spans only.
func WithoutMetrics() Option { return func(c *config) { c.noMetrics = true } }

// WithoutTraces records metrics only; the bus still carries its own
// traceparent from message to message.
func WithoutTraces() Option { return func(c *config) { c.noTraces = true } }

// Hook is the bus hook New returns; it implements ampybus.PublishHook,
// DeliveryHook and SubscriptionHook.
type Hook struct {
	metrics *metrics
	tracing *tracing
}

var (
	_ ampybus.PublishHook      = (*Hook)(nil)
	_ ampybus.DeliveryHook     = (*Hook)(nil)
	_ ampybus.SubscriptionHook = (*Hook)(nil)
)

// New builds the hook. Providers default to the global ones (otel.SetMeterProvider).
func New(opts ...Option) (*Hook, error) {
	c := config{}
	for _, o := range opts {
		o(&c)
	}
	if c.noMetrics && c.noTraces {
		return nil, errors.New("ampyotel: WithoutMetrics and WithoutTraces leave nothing to record")
	}
	if c.meters == nil {
		c.meters = otel.GetMeterProvider()
	}
	if c.tracers == nil {
		c.tracers = otel.GetTracerProvider()
	}
	if c.propagator == nil {
		c.propagator = otel.GetTextMapPropagator()
		if len(c.propagator.Fields()) == 0 {
			// The global default carries nothing; the bus's header is W3C's.
			c.propagator = propagation.TraceContext{}
		}
	}
	h := &Hook{}
	if !c.noMetrics {
		m, err := newMetrics(c.meters.Meter(ScopeName))
		if err != nil {
			return nil, err
		}
		h.metrics = m
	}
	if !c.noTraces {
		h.tracing = &tracing{tracer: c.tracers.Tracer(ScopeName), propagator: c.propagator}
	}
	return h, nil
}

// OnPublish starts the send span and writes its context into the headers.
func (h *Hook) OnPublish(ctx context.Context, e *ampybus.PublishEvent) context.Context {
	if h.tracing != nil {
		ctx = h.tracing.onPublish(ctx, e)
	}
	return ctx
}

// OnPublished counts the message and ends the send span.
func (h *Hook) OnPublished(ctx context.Context, e *ampybus.PublishEvent, res ampybus.PublishResult, err error) {
	if h.metrics != nil {
		h.metrics.onPublished(ctx, e, err)
	}
	if h.tracing != nil {
		h.tracing.onPublished(ctx, e, res, err)
	}
}

// OnDelivery continues the producer's trace with a process span, which the
// handler's context carries.
func (h *Hook) OnDelivery(ctx context.Context, e *ampybus.DeliveryEvent) context.Context {
	if h.metrics != nil {
		h.metrics.onDelivery(ctx, e)
	}
	if h.tracing != nil {
		ctx = h.tracing.onDelivery(ctx, e)
	}
	return ctx
}

// OnResult counts the outcome and settles the process span.
func (h *Hook) OnResult(ctx context.Context, e *ampybus.DeliveryEvent, r ampybus.Result) {
	if h.metrics != nil {
		h.metrics.onResult(ctx, e, r)
	}
	if h.tracing != nil {
		h.tracing.onResult(ctx, e, r)
	}
}

// OnPressure moves the backpressure gauge of a domain whose producers start
// or stop backing off.
func (h *Hook) OnPressure(e ampybus.PressureStats) {
	if h.metrics != nil {
		h.metrics.pressure(e)
	}
}

// OnSubscribe registers the subscription's lag gauge.
func (h *Hook) OnSubscribe(_ context.Context, e *ampybus.SubscriptionEvent) {
	if h.metrics != nil {
		h.metrics.subscribed(e)
	}
}

// OnStop removes the subscription's lag gauge.
func (h *Hook) OnStop(e *ampybus.SubscriptionEvent, _ ampybus.Stats, _ error) {
	if h.metrics != nil {
		h.metrics.stopped(e)
	}
}
