package kafkabinding

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Rebalances: a member waits for its handlers on a revoked partition before
// the group moves it, and forgets what it lost.

// assigned runs the subscription's OnAssign before the new partitions are
// fetched, so a shared store holds what their previous owner wrote.
func (c *consumer) assigned(ctx context.Context, _ *kgo.Client, _ map[string][]int32) {
	if c.sub.OnAssign == nil {
		return
	}
	for try := 1; ; try++ {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := c.sub.OnAssign(actx)
		cancel()
		if err == nil {
			return
		}
		if try == 3 || ctx.Err() != nil {
			c.t.log.Error("kafka: the group's shared store did not catch up; handling the new partitions anyway (at-least-once)", "topic", c.sub.Stream.Prefix, "group", c.sub.Group, "err", err)
			return
		}
		c.t.log.Warn("kafka: the group's shared store did not catch up; retrying", "topic", c.sub.Stream.Prefix, "group", c.sub.Group, "err", err)
	}
}

// revoked commits what is settled in the partitions leaving this member and
// forgets them: acks that arrive later do not commit across the rebalance.
//
// Before that it lets the handlers already running on those partitions
// finish (up to revokeWait): the new owner starts from the commit, so work
// still running here would otherwise be done twice, or after newer messages
// of its key. Deliveries not yet started are revoked at once.
func (c *consumer) revoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	only := partitionSet(revoked)
	c.mu.Lock()
	for id := range only {
		if p := c.parts[id]; p != nil {
			p.revoking = true
		}
	}
	c.mu.Unlock()
	c.waitStarted(ctx, only)
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	c.commitLocked(ctx, only)
	c.forget(only)
}

// revokeWait bounds how long a revocation waits for running handlers.
const revokeWait = 10 * time.Second

// waitStarted waits until no delivery of the given partitions is being
// handled: each is settled, or was handed back unstarted.
func (c *consumer) waitStarted(ctx context.Context, parts map[int32]bool) {
	deadline := time.Now().Add(revokeWait)
	for {
		busy := 0
		c.mu.Lock()
		for id := range parts {
			if p := c.parts[id]; p != nil {
				for _, d := range p.pending {
					if !d.settled && d.started {
						busy++
					}
				}
			}
		}
		c.mu.Unlock()
		if busy == 0 || ctx.Err() != nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.log.Warn("kafka: handlers still running on revoked partitions; the new owner may handle their messages again", "topic", c.sub.Stream.Prefix, "running", busy)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lost forgets partitions without committing: another member owns them already.
func (c *consumer) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	c.forget(partitionSet(lost))
}

// partitionSet flattens a rebalance callback's partitions; a consumer reads one topic.
func partitionSet(m map[string][]int32) map[int32]bool {
	set := map[int32]bool{}
	for _, ps := range m {
		for _, p := range ps {
			set[p] = true
		}
	}
	return set
}

func (c *consumer) forget(parts map[int32]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range parts {
		delete(c.parts, id)
	}
}
