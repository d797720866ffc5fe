package natsbinding

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"
)

// ensurePartition creates or updates partition p's consumer without moving
// its deliver subject, and returns the config later moves write.
//
// A group consumed before push delivery has a pull consumer per partition
// under its old name (legacyGroupName). The push consumer is then created
// to start after the pull consumer's ack floor (what was acknowledged above
// the floor comes again, once, and the dedupe store passes it over), and
// the pull consumer is deleted. The push consumer has a name of its own and
// is only ever created, never replaced: members starting at once each try
// to create it, the first wins, and the others use it.
func (g *groupConsumer) ensurePartition(ctx context.Context, want jetstream.ConsumerConfig, p int) (jetstream.PushConsumer, jetstream.ConsumerConfig, error) {
	stream := StreamName(g.sub.Stream.Prefix)
	fail := func(err error) (jetstream.PushConsumer, jetstream.ConsumerConfig, error) {
		return nil, want, fmt.Errorf("consumer %q on %s: %w", want.Durable, stream, mapErr(err))
	}
	for try := 0; ; try++ {
		cons, err := g.st.PushConsumer(ctx, want.Durable)
		switch {
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			cfg, legacy, err := g.startAfterLegacy(ctx, want, p)
			if err != nil {
				return nil, want, err
			}
			cfg.DeliverSubject = unheldSubject(stream, want.Durable)
			cons, err = g.st.CreatePushConsumer(ctx, cfg)
			if errors.Is(err, jetstream.ErrConsumerExists) && try < 3 {
				continue // another member created it meanwhile, perhaps from another floor: use theirs
			}
			if err != nil {
				return fail(err)
			}
			if legacy != "" {
				g.dropLegacy(ctx, legacy, cfg.OptStartSeq)
			}
			return cons, cfg, nil
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

// legacyGroupName is a partition's pull consumer before push delivery.
func legacyGroupName(group string, p int) string { return DurableName(group) + "-p" + strconv.Itoa(p) }

// startAfterLegacy is want, starting after the ack floor of partition p's
// pull consumer from before push delivery when there is one; legacy names
// it.
func (g *groupConsumer) startAfterLegacy(ctx context.Context, want jetstream.ConsumerConfig, p int) (cfg jetstream.ConsumerConfig, legacy string, err error) {
	name := legacyGroupName(g.sub.Group, p)
	old, err := g.st.Consumer(ctx, name)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound), errors.Is(err, jetstream.ErrNotPullConsumer):
		return want, "", nil
	case err != nil:
		return want, "", fmt.Errorf("consumer %q on %s: %w", name, StreamName(g.sub.Stream.Prefix), mapErr(err))
	}
	info := old.CachedInfo()
	if p == 0 {
		if err := sameFilters(g.sub, info.Config, want.FilterSubjects); err != nil {
			return want, "", err
		}
	}
	cfg = want
	if floor := info.AckFloor.Stream; floor > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = jetstream.DeliverByStartSequencePolicy, floor+1, nil
	} else {
		cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = info.Config.DeliverPolicy, info.Config.OptStartSeq, info.Config.OptStartTime
	}
	return cfg, name, nil
}

// dropLegacy deletes a pull consumer a push consumer replaced; members of an
// older version reading it then fail rather than share its partition.
func (g *groupConsumer) dropLegacy(ctx context.Context, name string, from uint64) {
	if err := g.st.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		g.t.log.Warn("nats: cannot delete a group's pull consumer from before push delivery; delete it by hand", "consumer", name, "err", err)
		return
	}
	g.t.log.Info("nats: group moved to push delivery; resuming after the pull consumer's ack floor", "consumer", name, "from_seq", from)
}

// heldElsewhere reports the server refusing to move a deliver subject that
// someone listens on.
func heldElsewhere(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeConsumerNameExists
}
