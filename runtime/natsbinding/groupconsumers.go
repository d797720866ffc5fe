package natsbinding

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// ensurePartition creates or updates partition p's consumer without moving
// its deliver subject, and returns the config later moves write. A group
// consumed before push delivery (a pull consumer) is recreated as a push
// consumer from its ack floor: what was acknowledged above the floor comes
// again, once, and the dedupe store passes it over.
func (g *groupConsumer) ensurePartition(ctx context.Context, want jetstream.ConsumerConfig, p int) (jetstream.PushConsumer, jetstream.ConsumerConfig, error) {
	stream := StreamName(g.sub.Stream.Prefix)
	fail := func(err error) (jetstream.PushConsumer, jetstream.ConsumerConfig, error) {
		return nil, want, fmt.Errorf("consumer %q on %s: %w", want.Durable, stream, mapErr(err))
	}
	for try := 0; ; try++ {
		cons, err := g.st.PushConsumer(ctx, want.Durable)
		switch {
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			cfg := want
			cfg.DeliverSubject = unheldSubject(stream, want.Durable)
			cons, err = g.st.CreatePushConsumer(ctx, cfg)
			if errors.Is(err, jetstream.ErrConsumerExists) && try < 3 {
				continue // another member created it meanwhile
			}
			if err != nil {
				return fail(err)
			}
			return cons, cfg, nil
		case errors.Is(err, jetstream.ErrNotPushConsumer):
			return g.migrate(ctx, want)
		case err != nil:
			return fail(err)
		}
		have := cons.CachedInfo().Config
		if p == 0 {
			if err := sameFilters(g.sub, have, want.FilterSubjects); err != nil {
				return nil, want, err
			}
		}
		// Where it starts only matters when it is created; where it
		// delivers belongs to its holder.
		cfg := want
		cfg.DeliverSubject = have.DeliverSubject
		cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = have.DeliverPolicy, have.OptStartSeq, have.OptStartTime
		cons, err = g.st.UpdatePushConsumer(ctx, cfg)
		if heldElsewhere(err) && try < 3 {
			continue // a member moved it meanwhile: read it again
		}
		if err != nil {
			return fail(err)
		}
		return cons, cfg, nil
	}
}

// migrate replaces a partition's pull consumer (the layout before push
// delivery) with a push consumer that starts after its ack floor.
func (g *groupConsumer) migrate(ctx context.Context, want jetstream.ConsumerConfig) (jetstream.PushConsumer, jetstream.ConsumerConfig, error) {
	stream := StreamName(g.sub.Stream.Prefix)
	old, err := g.st.Consumer(ctx, want.Durable)
	if err != nil {
		return nil, want, fmt.Errorf("consumer %q on %s: %w", want.Durable, stream, mapErr(err))
	}
	info := old.CachedInfo()
	if want.Durable == groupName(g.sub.Group, 0) {
		if err := sameFilters(g.sub, info.Config, want.FilterSubjects); err != nil {
			return nil, want, err
		}
	}
	cfg := want
	cfg.DeliverSubject = unheldSubject(stream, want.Durable)
	if floor := info.AckFloor.Stream; floor > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = jetstream.DeliverByStartSequencePolicy, floor+1, nil
	}
	if err := g.st.DeleteConsumer(ctx, want.Durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, want, fmt.Errorf("replace pull consumer %q on %s: %w", want.Durable, stream, mapErr(err))
	}
	cons, err := g.st.CreatePushConsumer(ctx, cfg)
	if errors.Is(err, jetstream.ErrConsumerExists) {
		cons, err = g.st.PushConsumer(ctx, want.Durable) // another member migrated it first
		if err == nil {
			cfg = cons.CachedInfo().Config
		}
	}
	if err != nil {
		return nil, want, fmt.Errorf("replace pull consumer %q on %s: %w", want.Durable, stream, mapErr(err))
	}
	g.t.log.Info("nats: group consumer moved to push delivery; resuming after its ack floor", "consumer", want.Durable, "ack_floor", info.AckFloor.Stream)
	return cons, cfg, nil
}

// heldElsewhere reports the server refusing to move a deliver subject that
// someone listens on.
func heldElsewhere(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeConsumerNameExists
}
