package ampybus

import (
	"context"
	"sync"
	"time"

	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// leases keeps the ack deadline of every delivery the engine holds — being
// handled, in backoff, or queued behind its key — so none is redelivered by
// the broker while it waits its turn.
type leases struct {
	mu   sync.Mutex
	held map[transport.Delivery]struct{}
}

func newLeases() *leases { return &leases{held: map[transport.Delivery]struct{}{}} }

func (l *leases) hold(d transport.Delivery) {
	l.mu.Lock()
	l.held[d] = struct{}{}
	l.mu.Unlock()
}

func (l *leases) release(d transport.Delivery) {
	l.mu.Lock()
	delete(l.held, d)
	l.mu.Unlock()
}

// keep extends every held lease each third of ackWait until the returned
// func is called or the subscription is aborted (a dead consumer's leases lapse).
func (l *leases) keep(ackWait time.Duration, aborted <-chan struct{}) func() {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(max(ackWait/3, 100*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-t.C:
				l.mu.Lock()
				ds := make([]transport.Delivery, 0, len(l.held))
				for d := range l.held {
					ds = append(ds, d)
				}
				l.mu.Unlock()
				for _, d := range ds {
					_ = d.InProgress(context.Background())
				}
			case <-done:
				return
			case <-aborted:
				return
			}
		}
	}()
	return func() { close(done) }
}
