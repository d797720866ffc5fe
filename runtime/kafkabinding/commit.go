package kafkabinding

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Commits: settled offsets go to the group every 100 ms, and before a
// partition is given up.

// commitLoop commits settled offsets every 100 ms.
func (c *consumer) commitLoop() {
	if c.sub.Group == "" {
		return
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			c.commitSettled(context.Background(), nil)
		case <-c.stopped:
			return
		}
	}
}

// commitSettled commits the settled offsets of the given partitions (all
// when nil). Callers hold neither lock.
func (c *consumer) commitSettled(ctx context.Context, only map[int32]bool) {
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	c.commitLocked(ctx, only)
}

func (c *consumer) commitLocked(ctx context.Context, only map[int32]bool) {
	if c.noCommit.Load() {
		return
	}
	c.mu.Lock()
	offsets := map[int32]kgo.EpochOffset{}
	owners := map[int32]*partition{}
	for id, p := range c.parts {
		if p.dirty && (only == nil || only[id]) {
			offsets[id] = kgo.EpochOffset{Epoch: p.commit.epoch, Offset: p.commit.offset + 1}
			owners[id] = p
			p.dirty = false
		}
	}
	c.mu.Unlock()
	if len(offsets) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.commit(cctx, offsets); err != nil {
		c.t.log.Warn("kafka offset commit failed; retrying on the next tick", "topic", c.sub.Stream.Prefix, "group", c.sub.Group, "err", err)
		c.mu.Lock()
		for id, p := range owners {
			if c.parts[id] == p && p.commit.offset+1 == offsets[id].Offset {
				p.dirty = true
			}
		}
		c.mu.Unlock()
	}
}

// commit commits offsets of the subscription's topic for the group; any
// partition's error fails it.
func (c *consumer) commit(ctx context.Context, offsets map[int32]kgo.EpochOffset) error {
	var cerr error
	c.cl.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{c.sub.Stream.Prefix: offsets},
		func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
			if err != nil {
				cerr = err
				return
			}
			for _, t := range resp.Topics {
				for _, p := range t.Partitions {
					if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
						cerr = err
						return
					}
				}
			}
		})
	return cerr
}
