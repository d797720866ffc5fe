package ampybus

import (
	"context"
	"sync"
	"time"

	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// keyScheduler hands a subscription's deliveries to a fixed pool of
// workers: one message per partition key at a time, keys served in turn. A
// key costs a small record while it has messages held, not a goroutine, so
// the engine's goroutines are bounded by Concurrency however many keys are
// in flight. It also knows every delivery the engine holds, for their leases.
type keyScheduler struct {
	mu   sync.Mutex
	wake sync.Cond
	// keys holds a line for every key with a message being handled or waiting.
	keys map[string]*keyLine
	// ready is the FIFO of lines with a message waiting and none being
	// handled; ready[head:] are live.
	ready  []*keyLine
	head   int
	closed bool
	// spare lines are reused, so a key that comes and goes costs no garbage.
	spare []*keyLine
}

// keyLine is one key's messages: the one being handled and those behind it,
// in arrival order.
type keyLine struct {
	key     string
	cur     transport.Delivery
	waiting []transport.Delivery
	next    int // waiting[next:] are still to be handled
}

// maxSpare bounds the recycled lines kept after a burst of keys.
const maxSpare = 1024

func newKeyScheduler() *keyScheduler {
	s := &keyScheduler{keys: map[string]*keyLine{}}
	s.wake.L = &s.mu
	return s
}

// add queues d behind the messages of its key.
func (s *keyScheduler) add(d transport.Delivery) {
	key := d.Message().Headers.PartitionKey
	s.mu.Lock()
	l := s.keys[key]
	if l == nil {
		if n := len(s.spare); n > 0 {
			l, s.spare = s.spare[n-1], s.spare[:n-1]
		} else {
			l = &keyLine{}
		}
		l.key = key
		s.keys[key] = l
	}
	l.waiting = append(l.waiting, d)
	if l.cur == nil && len(l.waiting)-l.next == 1 {
		s.ready = append(s.ready, l)
		s.wake.Signal()
	}
	s.mu.Unlock()
}

// take waits for a key with a message to handle and marks it busy; ok is
// false once the scheduler is closed and nothing is left.
func (s *keyScheduler) take() (l *keyLine, d transport.Delivery, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.head == len(s.ready) {
		if s.closed {
			return nil, nil, false
		}
		s.wake.Wait()
	}
	l = s.ready[s.head]
	s.ready[s.head] = nil
	if s.head++; s.head == len(s.ready) {
		s.ready, s.head = s.ready[:0], 0
	}
	l.cur = l.waiting[l.next]
	l.waiting[l.next] = nil
	if l.next++; l.next > 64 && l.next > len(l.waiting)/2 {
		// A key that always has a backlog would otherwise grow its array
		// by a dead slot per message handled.
		n := copy(l.waiting, l.waiting[l.next:])
		clear(l.waiting[n:])
		l.waiting, l.next = l.waiting[:n], 0
	}
	return l, l.cur, true
}

// done ends the handling of l's current message. When the message was
// abandoned (handed back unsettled), the messages behind it are returned,
// in order, for the caller to hand back too: handling them would overtake it.
func (s *keyScheduler) done(l *keyLine, abandoned bool) (rest []transport.Delivery) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l.cur = nil
	if abandoned && l.next < len(l.waiting) {
		rest = append(rest, l.waiting[l.next:]...)
		clear(l.waiting[l.next:])
		l.waiting, l.next = l.waiting[:0], 0
	}
	if l.next < len(l.waiting) {
		s.ready = append(s.ready, l)
		s.wake.Signal()
		return rest
	}
	delete(s.keys, l.key)
	l.key, l.waiting, l.next = "", l.waiting[:0], 0
	if len(s.spare) < maxSpare && cap(l.waiting) <= 64 {
		s.spare = append(s.spare, l)
	}
	return rest
}

// close lets the workers return once every queued message is handled.
func (s *keyScheduler) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.wake.Broadcast()
}

// held lists every delivery the engine holds: being handled, in backoff, or
// waiting behind its key.
func (s *keyScheduler) held() []transport.Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ds []transport.Delivery
	for _, l := range s.keys {
		if l.cur != nil {
			ds = append(ds, l.cur)
		}
		ds = append(ds, l.waiting[l.next:]...)
	}
	return ds
}

// keepLeases extends the ack deadline of every held delivery each third of
// ackWait, so none is redelivered by the broker while it waits its turn,
// until the returned func is called or the subscription is aborted (a dead
// consumer's leases lapse).
func (s *keyScheduler) keepLeases(ackWait time.Duration, aborted <-chan struct{}) func() {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(max(ackWait/3, 100*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-t.C:
				for _, d := range s.held() {
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
