package ampybus

import (
	"context"
	"log/slog"
	"math"
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
	// newest is in unix nanoseconds: a map without pointers in its values
	// costs the garbage collector less over many keys.
	newest   map[string]int64
	capacity int
	// store, when set, keeps the state across restarts; the map caches it.
	store checkpoint.Store
	scope string
	log   *slog.Logger
}

func newOrderTracker(capacity int) *orderTracker {
	return &orderTracker{newest: map[string]int64{}, capacity: capacity}
}

// behind reports whether t is older than the newest time handled for key.
func (o *orderTracker) behind(key string, t time.Time) (newest time.Time, behind bool) {
	o.mu.Lock()
	ns, ok := o.newest[key]
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
		if cur, seen := o.newest[key]; !seen || nanos(n) > cur {
			o.newest[key] = nanos(n)
		}
		o.mu.Unlock()
	}
	return n, ok && t.Before(n)
}

// advance records t for key if it is the newest.
func (o *orderTracker) advance(key string, t time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if n, ok := o.newest[key]; ok && nanos(t) <= n {
		return
	}
	o.newest[key] = nanos(t)
	if o.store != nil {
		if err := o.store.Save(context.Background(), o.scope+key, t); err != nil {
			o.log.Warn("ordering checkpoint not saved; a restart may miss a stale value of this key", "partition_key", key, "err", err)
		}
	}
	if len(o.newest) > o.capacity {
		drop := len(o.newest) - o.capacity*3/4
		for k := range o.newest {
			if drop == 0 {
				break
			}
			delete(o.newest, k)
			drop--
		}
	}
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
