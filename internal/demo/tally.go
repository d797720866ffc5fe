package demo

import (
	"math"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// counts is one domain's row of the summary, read from the bus_* metrics.
type counts struct {
	produced, consumed, retried, dlq, decodeFail uint64
	latency                                      histogram
}

// histogram is bus_delivery_latency_ms summed over a domain's topics.
type histogram struct {
	count   uint64
	buckets map[float64]uint64 // upper bound → cumulative count
}

// quantile estimates q as Prometheus's histogram_quantile does: linear
// within the bucket that holds it.
func (h histogram) quantile(q float64) float64 {
	bounds := make([]float64, 0, len(h.buckets))
	for b := range h.buckets {
		bounds = append(bounds, b)
	}
	sort.Float64s(bounds)
	rank := q * float64(h.count)
	lower, below := 0.0, uint64(0)
	for _, b := range bounds {
		n := h.buckets[b]
		if float64(n) >= rank {
			if math.IsInf(b, 1) {
				return lower
			}
			if n == below {
				return b
			}
			return lower + (b-lower)*(rank-float64(below))/float64(n-below)
		}
		lower, below = b, n
	}
	return lower
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
			c = &counts{latency: histogram{buckets: map[float64]uint64{}}}
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
			case "bus_delivery_latency_ms":
				h := &row(m).latency
				h.count += m.GetHistogram().GetSampleCount()
				for _, b := range m.GetHistogram().GetBucket() {
					h.buckets[b.GetUpperBound()] += b.GetCumulativeCount()
				}
				h.buckets[math.Inf(1)] += m.GetHistogram().GetSampleCount()
			}
		}
	}
	for _, dom := range []string{"bars", "signals", "orders", "fills", "positions", "metrics", "control", "dlq"} {
		if out[dom] == nil {
			out[dom] = &counts{latency: histogram{buckets: map[float64]uint64{}}}
		}
	}
	return out, nil
}
