package demo

import (
	"context"
	"strings"
	"sync"

	"github.com/ampyfin/ampy-bus/internal/latency"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// counts is one domain's row of the summary, read from the bus_* metrics.
type counts struct {
	produced, consumed, retried, dlq, decodeFail uint64
}

// latencies is each domain's delivery latency (produced_at to a first
// delivery) in the one HDR histogram implementation the CLI uses, recorded
// by a delivery hook on every service's bus.
type latencies struct {
	mu     sync.Mutex
	domain map[string]*latency.Histogram
}

func (l *latencies) OnDelivery(ctx context.Context, e *ampybus.DeliveryEvent) context.Context {
	if e.Attempt != 1 || e.Headers == nil || e.Headers.ProducedAt.IsZero() || e.Domain == nil {
		return ctx
	}
	l.get(e.Domain.Name).Record(e.Received.Sub(e.Headers.ProducedAt))
	return ctx
}

func (l *latencies) OnResult(context.Context, *ampybus.DeliveryEvent, ampybus.Result) {}

func (l *latencies) get(domain string) *latency.Histogram {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.domain == nil {
		l.domain = map[string]*latency.Histogram{}
	}
	h := l.domain[domain]
	if h == nil {
		h = latency.New()
		l.domain[domain] = h
	}
	return h
}

// readTally sums the bus_* metrics in g by domain (the third token of the
// topic label: ampy.dev.bars.v1.{mic}.{symbol} is bars).
func readTally(g prometheus.Gatherer) (map[string]*counts, error) {
	families, err := g.Gather()
	if err != nil {
		return nil, err
	}
	out := map[string]*counts{}
	row := func(m *dto.Metric) *counts {
		var topic string
		for _, l := range m.GetLabel() {
			if l.GetName() == "topic" {
				topic = l.GetValue()
			}
		}
		parts := strings.Split(topic, ".")
		dom := "?"
		if len(parts) > 2 {
			dom = parts[2]
		}
		c := out[dom]
		if c == nil {
			c = &counts{}
			out[dom] = c
		}
		return c
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			n := uint64(m.GetCounter().GetValue())
			switch f.GetName() {
			case "bus_produced_total":
				row(m).produced += n
			case "bus_consumed_total":
				row(m).consumed += n
			case "bus_retry_total":
				row(m).retried += n
			case "bus_dlq_total":
				row(m).dlq += n
			case "bus_decode_fail_total":
				row(m).decodeFail += n
			}
		}
	}
	for _, dom := range []string{"bars", "signals", "orders", "fills", "positions", "metrics", "control", "dlq"} {
		if out[dom] == nil {
			out[dom] = &counts{}
		}
	}
	return out, nil
}
