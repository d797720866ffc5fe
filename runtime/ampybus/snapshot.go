package ampybus

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// Snapshot returns the latest message for one partition key: the newest by
// the domain's ordering time (latest_wins, snapshot), or the last stored
// when the rule has none. It reads what the stream holds now and returns.
func Snapshot[S Subtopic, P proto.Message](ctx context.Context, b *Bus, r *Route[S, P], pattern, key string) (*Message[S, P], bool, error) {
	latest, _, err := readLatest(ctx, b, r, pattern, key)
	if err != nil {
		return nil, false, err
	}
	m, ok := latest[key]
	return m, ok, nil
}

// SnapshotThenSubscribe is the state of the world, then live: h gets the
// latest message of every key (Message.Snapshot set, in key order), then
// every message published after that read, with nothing missed and nothing
// repeated at the seam: live reading starts just after the position the
// snapshot read stopped at.
func SnapshotThenSubscribe[S Subtopic, P proto.Message](ctx context.Context, b *Bus, r *Route[S, P], pattern string, h Handler[S, P], opts ...SubscribeOption) (*Subscription, error) {
	latest, wm, err := readLatest(ctx, b, r, pattern, "")
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(latest))
	for k := range latest {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := h(ctx, latest[k]); err != nil {
			return nil, fmt.Errorf("snapshot of %s, key %s: handler: %w", r.Spec.Domain.Prefix(b.env)+"."+pattern, k, err)
		}
	}
	opts = append(opts, func(o *subOptions) {
		o.start = transport.StartPosition{Kind: transport.StartAfter, After: wm}
	})
	return start(ctx, b, r, pattern, h, nil, opts)
}

// readLatest reads the stream to the watermark it captures and keeps the
// newest message per key; poison is skipped (a snapshot is a read, not a
// consumer: the live consumers dead-letter it).
func readLatest[S Subtopic, P proto.Message](ctx context.Context, b *Bus, r *Route[S, P], pattern, key string) (map[string]*Message[S, P], transport.Position, error) {
	d := r.Spec.Domain
	filter := d.Prefix(b.env) + "." + pattern
	if err := validPattern(pattern); err != nil {
		return nil, transport.Position{}, fmt.Errorf("snapshot %s: %w", filter, err)
	}
	s, err := b.stream(ctx, d)
	if err != nil {
		return nil, transport.Position{}, fmt.Errorf("snapshot %s: %w", filter, err)
	}
	cons, err := b.t.Subscribe(ctx, transport.Subscription{
		Stream: s, Filters: []string{filter}, Bounded: true, Key: key,
		Start: transport.StartPosition{Kind: transport.StartFirst}, MaxInFlight: 1024, AckWait: 30 * time.Second,
	})
	if err != nil {
		return nil, transport.Position{}, fmt.Errorf("snapshot %s: %w", filter, err)
	}
	defer cons.Close()
	e := &engine[S, P]{bus: b, route: r, prefix: d.Prefix(b.env) + ".", newPayload: r.payloads()}
	latest := map[string]*Message[S, P]{}
	at := map[string]time.Time{}
	for {
		dl, err := cons.Next(ctx)
		if errors.Is(err, transport.ErrEndOfStream) {
			break
		}
		if err != nil {
			return nil, transport.Position{}, fmt.Errorf("snapshot %s: %w", filter, err)
		}
		msg, reason, fetchErr := e.decode(ctx, dl)
		_ = dl.Ack(ctx)
		if reason != "" || fetchErr != nil {
			b.log.Warn("snapshot: skipping a message the live consumers dead-letter", "topic", dl.Message().Topic,
				"message_id", dl.Message().Headers.MessageID, "reason", reason, "err", fetchErr)
			continue
		}
		msg.Snapshot = true
		k := msg.Headers.PartitionKey
		var t time.Time
		if r.OrderTime != nil {
			t = r.OrderTime(msg.Payload)
		}
		if cur, ok := latest[k]; ok && cur != nil && t.Before(at[k]) {
			continue // an older value stored later: the newer one stays
		}
		latest[k], at[k] = msg, t
	}
	// The state of the world is what is current now: a key whose latest
	// value has expired has none (or, under expired: flag, it is marked).
	now := time.Now()
	for k, m := range latest {
		if e.expired(m, now) {
			if d.FlagExpired {
				m.Expired = true
			} else {
				delete(latest, k)
			}
		}
	}
	return latest, cons.Watermark(), nil
}
