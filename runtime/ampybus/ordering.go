package ampybus

import (
	"context"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/ampyfin/ampy-bus/runtime/checkpoint"
)

// orderTracker remembers, per partition key, the newest payload time a
// subscription has handled, so the contract's ordering rule can be checked.
// It holds at most capacity keys; past that it forgets about a quarter of
// them at random, which can only let an old message through unflagged, never
// hold a new one back.
type orderTracker struct {
	mu sync.Mutex
	// slot maps a key to its newest time in times, in unix nanoseconds.
	// The map is only written when a key is new or forgotten: assigning to
	// an existing string key stores the new key string, which would keep
	// the whole header block of the latest message of every key alive.
	slot     map[string]int32
	times    []int64
	free     []int32
	capacity int
	// store, when set, keeps the state across restarts; the map caches it.
	store checkpoint.Store
	scope string
	log   *slog.Logger
}

func newOrderTracker(capacity int) *orderTracker {
	return &orderTracker{slot: map[string]int32{}, capacity: capacity}
}

// behind reports whether t is older than the newest time handled for key.
func (o *orderTracker) behind(key string, t time.Time) (newest time.Time, behind bool) {
	o.mu.Lock()
	i, ok := o.slot[key]
	var ns int64
	if ok {
		ns = o.times[i]
	}
	o.mu.Unlock()
	if ok {
		return time.Unix(0, ns).UTC(), nanos(t) < ns
	}
	if o.store == nil {
		return time.Time{}, false
	}
	n, ok, err := o.store.Load(context.Background(), o.scope+key)
	if err != nil {
		o.log.Warn("ordering checkpoint unreadable; not checking this message", "partition_key", key, "err", err)
		return time.Time{}, false
	}
	if ok {
		o.mu.Lock()
		o.raise(key, nanos(n))
		o.mu.Unlock()
	}
	return n, ok && t.Before(n)
}

// advance records t for key if it is the newest.
func (o *orderTracker) advance(key string, t time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.raise(key, nanos(t)) {
		return
	}
	if o.store != nil {
		if err := o.store.Save(context.Background(), o.scope+key, t); err != nil {
			o.log.Warn("ordering checkpoint not saved; a restart may miss a stale value of this key", "partition_key", key, "err", err)
		}
	}
	if len(o.slot) > o.capacity {
		drop := len(o.slot) - o.capacity*3/4
		for k, i := range o.slot {
			if drop == 0 {
				break
			}
			delete(o.slot, k)
			o.free = append(o.free, i)
			drop--
		}
	}
}

// raise sets key's newest time to ns unless it holds a newer one; it
// reports whether it did. Callers hold mu.
func (o *orderTracker) raise(key string, ns int64) bool {
	if i, ok := o.slot[key]; ok {
		if ns <= o.times[i] {
			return false
		}
		o.times[i] = ns
		return true
	}
	var i int32
	if n := len(o.free); n > 0 {
		i, o.free = o.free[n-1], o.free[:n-1]
		o.times[i] = ns
	} else {
		i = int32(len(o.times))
		o.times = append(o.times, ns)
	}
	// A key read from a message shares memory with all its headers: the
	// map keeps a copy of its own.
	o.slot[strings.Clone(key)] = i
	return true
}

// nanos is t in unix nanoseconds, clamped to what an int64 holds (years
// 1678 to 2262), so a payload time outside that range still compares in order.
func nanos(t time.Time) int64 {
	switch {
	case t.Before(minNanos):
		return math.MinInt64
	case t.After(maxNanos):
		return math.MaxInt64
	}
	return t.UnixNano()
}

var minNanos, maxNanos = time.Unix(0, math.MinInt64), time.Unix(0, math.MaxInt64)
