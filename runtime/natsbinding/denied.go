package natsbinding

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// The server refuses a publish or subscription the identity is not
// allowed by sending a protocol error, not a reply: the request behind it
// would wait for its deadline. denials hands each violation to the
// operations waiting on a subject it covers, so they fail at once with
// transport.ErrForbidden naming the subject and the right.
//
// Async publishes register no waiter (that would cost every publish): a
// refused publish no waiter covers fails the oldest async publish in
// flight to its subject.
type denials struct {
	mu      sync.Mutex
	waiters map[*waiter]struct{}
	// async fails the oldest async publish to a refused subject.
	async func(subject string)
}

// waiter is one operation in flight and the subjects it may publish to.
type waiter struct {
	prefixes []string
	cancel   context.CancelCauseFunc
	fired    chan struct{}
	once     sync.Once
	cause    error
}

func (w *waiter) covers(subject string) bool {
	for _, p := range w.prefixes {
		if strings.HasPrefix(subject, p) {
			return true
		}
	}
	return false
}

func (w *waiter) fire(err error) {
	w.once.Do(func() {
		w.cause = err
		close(w.fired)
		if w.cancel != nil {
			w.cancel(err)
		}
	})
}

// guard registers an operation that publishes to subjects starting with
// the given prefixes. The returned context ends with a ForbiddenError as
// its cause when the server refuses one of them; release unregisters and
// ends it.
func (d *denials) guard(ctx context.Context, prefixes ...string) (context.Context, *waiter, func()) {
	gctx, cancel := context.WithCancelCause(ctx)
	w := &waiter{prefixes: prefixes, cancel: cancel, fired: make(chan struct{})}
	d.add(w)
	return gctx, w, func() {
		d.remove(w)
		cancel(nil)
	}
}

// guardSetup is guard for an operation that leaves work running on its
// context (a subscription's watchers): release only unregisters, and the
// context lives as long as ctx does.
func (d *denials) guardSetup(ctx context.Context, prefixes ...string) (context.Context, *waiter, func()) {
	gctx, cancel := context.WithCancelCause(ctx)
	w := &waiter{prefixes: prefixes, cancel: cancel, fired: make(chan struct{})}
	d.add(w)
	return gctx, w, func() { d.remove(w) }
}

func (d *denials) add(w *waiter) {
	d.mu.Lock()
	if d.waiters == nil {
		d.waiters = map[*waiter]struct{}{}
	}
	d.waiters[w] = struct{}{}
	d.mu.Unlock()
}

func (d *denials) remove(w *waiter) {
	d.mu.Lock()
	delete(d.waiters, w)
	d.mu.Unlock()
}

// violation is how the server words a refusal in its -ERR: its protocol,
// not a client library message.
var violation = regexp.MustCompile(`Permissions Violation for (Publish|Subscription) to "([^"]+)"`)

// refused handles an asynchronous error of the connection. A refused
// subscription (an inbox the identity may not read) fails every operation
// in flight: none of their replies can arrive.
func (d *denials) refused(err error) bool {
	if !errors.Is(err, nats.ErrPermissionViolation) {
		return false
	}
	m := violation.FindStringSubmatch(err.Error())
	if m == nil {
		return false
	}
	op, subject := strings.ToLower(m[1]), m[2]
	if op == "subscription" {
		op = "subscribe"
	}
	ferr := &ForbiddenError{Op: op, Subject: subject}
	d.mu.Lock()
	var hit []*waiter
	for w := range d.waiters {
		if op == "subscribe" || w.covers(subject) {
			hit = append(hit, w)
		}
	}
	d.mu.Unlock()
	for _, w := range hit {
		w.fire(ferr)
	}
	if op == "publish" && len(hit) == 0 && d.async != nil {
		// No operation waits on it: an async publish does.
		d.async(subject)
	}
	return true
}

// ForbiddenError is an action the broker refused this identity; it wraps
// transport.ErrForbidden.
type ForbiddenError struct {
	// Op is publish or subscribe.
	Op      string
	Subject string
}

func (e *ForbiddenError) Error() string {
	return fmt.Sprintf("%s: the NATS user may not %s %s: %s (grant it under services: in the contract, regenerate the permissions and reload the server)",
		transport.ErrForbidden, e.Op, e.Subject, rightFor(e.Op, e.Subject))
}

func (e *ForbiddenError) Unwrap() error { return transport.ErrForbidden }

// rightFor names the contract right behind a subject.
func rightFor(op, subject string) string {
	switch {
	case op == "subscribe":
		return "its inbox or a subscription"
	case strings.HasPrefix(subject, "$JS.API.STREAM.CREATE."), strings.HasPrefix(subject, "$JS.API.STREAM.UPDATE."):
		return "creating or updating a stream needs the admin right (ampybusctl ensure-topic provisions it)"
	case strings.HasPrefix(subject, "$JS.API.STREAM.INFO."):
		return "reading a stream's info needs a right to publish or consume it"
	case strings.HasPrefix(subject, "$JS.API.CONSUMER."), strings.HasPrefix(subject, "$JS.ACK."):
		return "consuming needs the service to consume the domain with that group"
	case strings.HasPrefix(subject, "$KV."):
		return "a key-value bucket the service was not granted"
	case strings.HasPrefix(subject, "$JS.API."):
		return "a JetStream API call it was not granted"
	}
	return "publishing needs the service to publish the subtopic"
}

// forbidden returns the refusal behind an operation's failure, if any.
func forbidden(w *waiter, err error) error {
	if err == nil {
		return nil
	}
	select {
	case <-w.fired:
		return w.cause
	default:
		return err
	}
}
