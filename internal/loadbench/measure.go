package loadbench

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ampyfin/ampy-bus/internal/latency"
)

// usage is this process's CPU time and allocation count at one instant;
// the difference of two is what the client under test cost in between.
type usage struct {
	at     time.Time
	cpu    time.Duration
	allocs uint64
}

func readUsage() usage {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:objects"}}
	metrics.Read(s)
	return usage{at: time.Now(), cpu: processCPU(), allocs: s[0].Value.Uint64()}
}

// settleHeap collects until the pools hold nothing and returns the freed
// pages: sync.Pool keeps its contents through one collection (as victims), so
// a single GC would bill a burst's pooled buffers to the next window or to
// "heap after" although any later collection frees them.
func settleHeap() {
	runtime.GC()
	debug.FreeOSMemory() // a second, full collection
}

// heapInUse is the heap's in-use spans (runtime.MemStats.HeapInuse), read
// without stopping the world.
func heapInUse() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64() + s[1].Value.Uint64()
}

// sampler records the peak goroutine count and heap in use while a run is
// measured, every 20 ms.
type sampler struct {
	stop       chan struct{}
	done       chan struct{}
	goroutines int
	heap       uint64
}

func startSampler() *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			s.goroutines = max(s.goroutines, runtime.NumGoroutine())
			s.heap = max(s.heap, heapInUse())
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// finish stops sampling and returns the peaks.
func (s *sampler) finish() (goroutines int, heap uint64) {
	close(s.stop)
	<-s.done
	return s.goroutines, s.heap
}

// latencies is one consumer's publish→handler latency histogram.
type latencies = latency.Histogram

func newLatencies() *latencies { return latency.New() }

// mergeLatencies sums the consumers' histograms into the run's figures, in µs.
func mergeLatencies(ls []*latencies) *Latency {
	all := latency.New()
	for _, l := range ls {
		all.Merge(l)
	}
	if all.Count() == 0 {
		return nil
	}
	q := func(p float64) float64 { return float64(all.Percentile(p).Microseconds()) }
	return &Latency{Count: all.Count(), P50: q(50), P90: q(90), P99: q(99), P999: q(99.9), Max: float64(all.Max().Microseconds())}
}

// tally counts what the consumers of one run handled: each sequence number
// once per fan-out group (a bit per message and group), duplicates and
// other runs' messages apart.
type tally struct {
	runID    string
	n        uint64 // messages per group
	bits     []atomic.Uint64
	consumed atomic.Int64
	dups     atomic.Int64
	foreign  atomic.Int64
	first    atomic.Int64 // unix ns of the first handled message
	last     atomic.Int64 // unix ns of the latest
	target   atomic.Int64
	done     chan struct{}
	once     sync.Once
	observe  func(messageID string)
}

func newTally(runID string, n, ways int, observe func(string)) *tally {
	return &tally{runID: runID, n: uint64(n), bits: make([]atomic.Uint64, (n*ways+63)/64), done: make(chan struct{}), observe: observe}
}

// take counts one delivery of message seq of run runID to fan-out group
// way and reports whether it is the group's first delivery of one of this
// run's messages.
func (t *tally) take(way int, runID string, seq uint64, ok bool, messageID string) bool {
	if runID != t.runID || !ok || seq >= t.n {
		t.foreign.Add(1)
		return false
	}
	bit := uint64(way)*t.n + seq
	mask := uint64(1) << (bit % 64)
	if t.bits[bit/64].Or(mask)&mask != 0 {
		t.dups.Add(1)
		return false
	}
	now := time.Now().UnixNano()
	t.first.CompareAndSwap(0, now)
	t.last.Store(now)
	if t.observe != nil {
		t.observe(messageID)
	}
	c := t.consumed.Add(1)
	if tg := t.target.Load(); tg > 0 && c >= tg {
		t.once.Do(func() { close(t.done) })
	}
	return true
}

// expect sets how many messages the consumers must handle; done closes
// when they have.
func (t *tally) expect(n int64) {
	t.target.Store(n)
	if t.consumed.Load() >= n {
		t.once.Do(func() { close(t.done) })
	}
}

func unixTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}
