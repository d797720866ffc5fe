package kafkabinding

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// Where a subscription starts (offsets resolved when it subscribes, a new
// group seeded with them) and where a bounded one ends.

// bound captures the high watermark of every partition; partitions that
// have nothing between their start and end are finished at once.
func (c *consumer) bound(ctx context.Context, start kadm.Offsets) error {
	listed, err := c.t.adm.ListEndOffsets(ctx, c.sub.Stream.Prefix)
	if err == nil {
		err = listed.Error()
	}
	if err != nil {
		return fmt.Errorf("end offsets of %s: %w", c.sub.Stream.Prefix, mapErr(err))
	}
	c.ends, c.finished, c.eof = map[int32]int64{}, map[int32]bool{}, make(chan struct{})
	listed.Each(func(l kadm.ListedOffset) {
		c.ends[l.Partition] = l.Offset
		if o, ok := start.Lookup(l.Topic, l.Partition); !ok || o.At >= l.Offset {
			c.finished[l.Partition] = true
		}
	})
	if len(c.finished) == len(c.ends) {
		close(c.eof)
	}
	return nil
}

// finish marks a partition read to the end of the window and stops fetching it.
func (c *consumer) finish(p int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.finished[p] {
		return
	}
	c.finished[p] = true
	c.cl.PauseFetchPartitions(map[string][]int32{c.sub.Stream.Prefix: {p}})
	if len(c.finished) == len(c.ends) {
		close(c.eof)
	}
}

// startOffsets resolves the subscription's start position to an offset per
// partition now, so that "new" means published after Subscribe returned, as
// on NATS, rather than after the group's asynchronous first assignment.
func (t *Transport) startOffsets(ctx context.Context, sub transport.Subscription) (kadm.Offsets, error) {
	topic := sub.Stream.Prefix
	var listed kadm.ListedOffsets
	var err error
	switch sub.Start.Kind {
	case transport.StartFirst, transport.StartAtSequence, transport.StartAfter:
		listed, err = t.adm.ListStartOffsets(ctx, topic)
	case transport.StartAtTime:
		listed, err = t.adm.ListOffsetsAfterMilli(ctx, sub.Start.Time.UnixMilli(), topic)
	default:
		listed, err = t.adm.ListEndOffsets(ctx, topic)
	}
	if err == nil {
		err = listed.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("start offsets of %s: %w", topic, needs(mapErr(err), "Describe and Read on topic "+topic))
	}
	out := kadm.Offsets{}
	listed.Each(func(l kadm.ListedOffset) {
		at := l.Offset
		switch sub.Start.Kind {
		case transport.StartAtSequence:
			at = max(at, int64(sub.Start.Sequence))
		case transport.StartAfter:
			// Resume exactly where a bounded read stopped; partitions it
			// did not know (added since) start at their beginning.
			if o, ok := sub.Start.After.Offsets[l.Partition]; ok {
				at = max(at, o)
			}
		}
		out.Add(kadm.Offset{Topic: l.Topic, Partition: l.Partition, At: at, LeaderEpoch: -1})
	})
	if sub.Key != "" && sub.Group == "" {
		// A key lives in one partition: read only that one.
		only := transport.Partition(sub.Key, len(listed[topic]))
		out.KeepFunc(func(o kadm.Offset) bool { return o.Partition == only })
	}
	return out, nil
}

// seedGroup commits the start offsets for a group that has none yet on the
// topic; a group with commits resumes from them.
func (t *Transport) seedGroup(ctx context.Context, sub transport.Subscription, start kadm.Offsets) error {
	fetched, err := t.adm.FetchOffsets(ctx, sub.Group)
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return fmt.Errorf("offsets of group %s: %w", sub.Group, needs(mapErr(err), "Read on group "+sub.Group))
	}
	for _, o := range fetched[sub.Stream.Prefix] {
		if o.Err == nil && o.At >= 0 {
			return nil
		}
	}
	resp, err := t.adm.CommitOffsets(ctx, sub.Group, start)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("seed group %s on %s: %w", sub.Group, sub.Stream.Prefix, needs(mapErr(err), "Read on group "+sub.Group))
	}
	return nil
}
