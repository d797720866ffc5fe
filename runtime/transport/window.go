package transport

import (
	"context"
	"fmt"
)

// Window bounds async publishes awaiting the broker's answer. Bindings take
// a slot before handing a message to their client and give it back when the
// broker answers, so memory stays bounded whatever the broker's pace.
type Window struct {
	slots    chan struct{}
	failFast bool
}

// NewWindow allows size publishes in flight; failFast refuses a publish at
// once when none is free instead of waiting.
func NewWindow(size int, failFast bool) *Window {
	return &Window{slots: make(chan struct{}, size), failFast: failFast}
}

// Acquire takes a slot, waiting until ctx ends or closed closes unless the
// window fails fast. Its errors wrap ErrBackpressure or ErrClosed.
func (w *Window) Acquire(ctx context.Context, closed <-chan struct{}) error {
	select {
	case w.slots <- struct{}{}:
		return nil // the common case: room at once, without a three-way select
	default:
	}
	if w.failFast {
		return fmt.Errorf("%w: %d publishes await their ack", ErrBackpressure, cap(w.slots))
	}
	select {
	case w.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %d publishes await their ack: %w", ErrBackpressure, cap(w.slots), ctx.Err())
	case <-closed:
		return ErrClosed
	}
}

// Release gives a slot back.
func (w *Window) Release() { <-w.slots }

// InFlight is how many publishes await their answer.
func (w *Window) InFlight() int { return len(w.slots) }
