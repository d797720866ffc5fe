// Package latency records durations in an HDR histogram, the one way the
// CLI and the benchmarks turn latencies into percentiles: every percentile
// within 0.1% at a fixed cost and memory per record, where sorting samples
// costs memory per sample and hand-made buckets trade accuracy for range.
package latency

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Ceiling is the longest latency recorded as itself; longer ones are
// recorded as Ceiling.
const Ceiling = 10 * time.Minute

// Histogram is a concurrency-safe latency histogram at microsecond
// resolution.
type Histogram struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
}

// New returns an empty histogram.
func New() *Histogram {
	return &Histogram{h: hdrhistogram.New(1, Ceiling.Microseconds(), 3)}
}

// Record adds one latency (at least 1 µs, at most Ceiling).
func (h *Histogram) Record(d time.Duration) {
	us := min(max(d.Microseconds(), 1), Ceiling.Microseconds())
	h.mu.Lock()
	_ = h.h.RecordValue(us)
	h.mu.Unlock()
}

// Merge adds o's records to h.
func (h *Histogram) Merge(o *Histogram) {
	o.mu.Lock()
	snap := hdrhistogram.Import(o.h.Export())
	o.mu.Unlock()
	h.mu.Lock()
	h.h.Merge(snap)
	h.mu.Unlock()
}

// Count is how many latencies were recorded.
func (h *Histogram) Count() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.h.TotalCount()
}

// Percentile is the latency at or below which p percent of the records fall
// (p from 0 to 100: 99.9 for p99.9).
func (h *Histogram) Percentile(p float64) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return time.Duration(h.h.ValueAtQuantile(p)) * time.Microsecond
}

// Max is the longest latency recorded.
func (h *Histogram) Max() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return time.Duration(h.h.Max()) * time.Microsecond
}
