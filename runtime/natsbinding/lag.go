package natsbinding

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ampyfin/ampy-bus/runtime/transport"
)

var _ transport.LagReader = (*Transport)(nil)

// GroupLag implements transport.LagReader: pending plus unacknowledged over
// every partition consumer of the group, read from the server's consumer
// info, so the reader need not be a member (LagRights). A refused read
// fails at once with transport.ErrForbidden.
func (t *Transport) GroupLag(ctx context.Context, s transport.Stream, group string) (uint64, error) {
	name := StreamName(s.Prefix)
	ctx, w, release := t.denials.guard(ctx, "$JS.API.STREAM.INFO."+name, "$JS.API.CONSUMER.INFO."+name+".")
	defer release()
	st, err := t.js.Stream(ctx, name)
	if err != nil {
		return 0, fmt.Errorf("lag of group %s: stream %s: %w", group, name, mapErr(forbidden(w, err)))
	}
	n := t.Partitions(s.Prefix)
	if n == 1 {
		n = max(s.Partitions, 1)
	}
	var total uint64
	found := false
	for p := range n {
		c, err := st.PushConsumer(ctx, groupName(group, p))
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			continue
		}
		if err == nil {
			info := c.CachedInfo() // just read: PushConsumer fetches it
			found = true
			total += info.NumPending + uint64(info.NumAckPending)
			continue
		}
		return 0, fmt.Errorf("lag of group %s: consumer %s: %w", group, groupName(group, p), mapErr(forbidden(w, err)))
	}
	if !found {
		return 0, fmt.Errorf("lag of group %s on %s: %w: the group has not consumed it", group, name, transport.ErrNotFound)
	}
	return total, nil
}
