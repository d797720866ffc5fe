package ampybus

import (
	"sync"
	"time"
)

// orderTracker remembers, per partition key, the newest payload time a
// subscription has handled, so the contract's ordering rule can be checked.
// It holds at most capacity keys; past that it forgets about a quarter of
// them at random, which can only let an old message through unflagged, never
// hold a new one back.
type orderTracker struct {
	mu       sync.Mutex
	newest   map[string]time.Time
	capacity int
}

func newOrderTracker(capacity int) *orderTracker {
	return &orderTracker{newest: map[string]time.Time{}, capacity: capacity}
}

// behind reports whether t is older than the newest time handled for key.
func (o *orderTracker) behind(key string, t time.Time) (newest time.Time, behind bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n, ok := o.newest[key]
	return n, ok && t.Before(n)
}

// advance records t for key if it is the newest.
func (o *orderTracker) advance(key string, t time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if n, ok := o.newest[key]; ok && !t.After(n) {
		return
	}
	o.newest[key] = t
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
