package conformance

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/generated/positions"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/dedupe"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// countingStore wraps a member's handle on the group's persistent dedupe
// store and counts the marks it made, so a test can crash the member at a
// point where every effect it applied is also recorded.
type countingStore struct {
	dedupe.Store
	marks atomic.Int64
}

// Sync passes the store's catch-up through, as the bus calls it on takeover.
func (s *countingStore) Sync(ctx context.Context) error {
	if sy, ok := s.Store.(dedupe.Syncer); ok {
		return sy.Sync(ctx)
	}
	return nil
}

func (s *countingStore) Mark(ctx context.Context, key string, ttl time.Duration) error {
	err := s.Store.Mark(ctx, key, ttl)
	s.marks.Add(1)
	return err
}

// groupMember is one member of a consumer group with a bus of its own, as a
// separate process would have.
type groupMember struct {
	id      int
	sub     *ampybus.Subscription
	store   *countingStore
	dying   atomic.Bool
	running atomic.Int64
	blocked atomic.Int64
	applied atomic.Int64
}

// groupLog records, per partition key, the order in which members applied
// the key's sequence numbers.
type groupLog struct {
	mu    sync.Mutex
	byKey map[string][]int64
	by    map[int]int // member → messages applied
	last  time.Time   // when anything was last applied
	keyAt map[string]time.Time
	owner map[string]int
}

func (l *groupLog) apply(member int, key string, seq int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.byKey[key] = append(l.byKey[key], seq)
	l.by[member]++
	now := time.Now()
	l.last, l.keyAt[key], l.owner[key] = now, now, member
}

// testGroupMembersKeepKeyOrder runs three members of one durable group,
// each on its own connection; mid-stream one crashes and a fourth joins.
// Every key's messages are applied in order and exactly once, the work is
// spread over members, and the crashed member's keys resume on others
// within the failover bound.
func testGroupMembersKeepKeyOrder(t *testing.T, s *suite) {
	const keys = 24
	perKey := scale(48)
	failover := transport.DefaultFailover
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	log := &groupLog{byKey: map[string][]int64{}, by: map[int]int{}, keyAt: map[string]time.Time{}, owner: map[string]int{}}

	join := func(id int) *groupMember {
		b := s.bus(t)
		// Each member opens the group's store itself, as a process would.
		m := &groupMember{id: id, store: &countingStore{Store: s.binding.SharedStore(t, b, "conformance_members")}}
		sub, err := positions.SubscribeSnapshots(ctx, b, positions.AllSnapshots(), func(hctx context.Context, msg *positions.SnapshotsMessage) error {
			m.running.Add(1)
			defer m.running.Add(-1)
			if m.dying.Load() {
				m.blocked.Add(1)
				<-ctx.Done() // the process is gone: this handler never finishes
				return ctx.Err()
			}
			log.apply(id, msg.Headers.PartitionKey, msg.Payload.GetQuantity().GetScaled())
			m.applied.Add(1)
			return nil
		}, ampybus.Durable("members"), ampybus.DeliverAll(), ampybus.Concurrency(4),
			ampybus.Dedupe(m.store, time.Hour))
		require.NoError(t, err)
		m.sub = sub
		t.Cleanup(func() { _ = sub.Stop() })
		return m
	}
	// crash kills m while messages flow: handlers it starts from now on
	// hang, holding their deliveries unsettled, and it dies once every
	// effect it did apply is marked in the store.
	crash := func(m *groupMember) {
		m.dying.Store(true)
		require.Eventually(t, func() bool {
			b := m.blocked.Load()
			return b > 0 && m.running.Load() == b && m.store.marks.Load() >= m.applied.Load()
		}, 10*time.Second, time.Millisecond)
		m.sub.Abort()
	}

	members := []*groupMember{join(0), join(1), join(2)}
	pub := positions.NewSnapshotsPublisher(s.bus(t))
	publish := func(from, to int) {
		for seq := from; seq < to; seq++ {
			for k := range keys {
				_, err := pub.Publish(ctx, positions.NewSnapshotsSubtopic(), position("ACC-"+strconv.Itoa(k), int64(seq)))
				require.NoError(t, err)
			}
		}
	}
	appliedAll := func(n int) func() bool {
		return func() bool {
			log.mu.Lock()
			defer log.mu.Unlock()
			total := 0
			for _, seqs := range log.byKey {
				total += len(seqs)
			}
			return total >= n
		}
	}

	// The first third, and more until every member has keys (a Kafka group
	// settles its assignment after the members join).
	sent := perKey / 3
	publish(0, sent)
	for deadline := time.Now().Add(30 * time.Second); members[0].applied.Load() == 0 || members[1].applied.Load() == 0 || members[2].applied.Load() == 0; sent++ {
		require.True(t, time.Now().Before(deadline), "not every member got keys: %d %d %d", members[0].applied.Load(), members[1].applied.Load(), members[2].applied.Load())
		publish(sent, sent+1)
		time.Sleep(20 * time.Millisecond)
	}
	perKey = max(perKey, sent+2)
	require.Eventually(t, appliedAll(keys*sent), 60*time.Second, 10*time.Millisecond, "first part not applied")

	// The rest flows while one member crashes and another joins.
	published := make(chan struct{})
	go func() {
		defer close(published)
		for seq := sent; seq < perKey; seq++ {
			publish(seq, seq+1)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	require.Eventually(t, appliedAll(keys*(sent+(perKey-sent)/4)), 60*time.Second, time.Millisecond, "publishing stalled")
	log.mu.Lock()
	var orphaned []string
	for k, owner := range log.owner {
		if owner == 1 {
			orphaned = append(orphaned, k)
		}
	}
	log.mu.Unlock()
	crash(members[1])
	crashed := time.Now()
	require.Eventually(t, appliedAll(keys*(sent+(perKey-sent)/2)), 60*time.Second, time.Millisecond, "publishing stalled")
	members = append(members, join(3))
	recv(t, published)
	require.Eventually(t, appliedAll(keys*perKey), 90*time.Second, 10*time.Millisecond, "not every message was applied")
	held := members[1].blocked.Load()
	log.mu.Lock()
	defer log.mu.Unlock()
	inversions, duplicates, missing := 0, 0, 0
	for k := range keys {
		key := "ACC-" + strconv.Itoa(k) + "|AAPL.XNAS"
		seqs := log.byKey[key]
		seen := map[int64]bool{}
		for i, seq := range seqs {
			if seen[seq] {
				duplicates++
			}
			seen[seq] = true
			if i > 0 && seq < seqs[i-1] {
				inversions++
			}
		}
		missing += perKey - len(seen)
	}
	assert.Zero(t, inversions, "per-key inversions")
	assert.Zero(t, duplicates, "effects applied twice")
	assert.Zero(t, missing, "messages never applied")
	worked := 0
	for _, n := range log.by {
		if n > 0 {
			worked++
		}
	}
	assert.GreaterOrEqual(t, worked, 3, "the work was spread over members: %v", log.by)
	// Every key the crashed member held resumed on another member.
	var slowest time.Duration
	for _, k := range orphaned {
		if at := log.keyAt[k]; at.After(crashed) {
			slowest = max(slowest, at.Sub(crashed))
		}
	}
	t.Logf("%s: %d keys × %d messages over members %v; the crashed member held %d unsettled, its %d keys resumed within %v (failover %v); %d inversions, %d duplicates, %d missing",
		s.binding.Name, keys, perKey, log.by, held, len(orphaned), slowest.Round(time.Millisecond), failover, inversions, duplicates, missing)
	// Publishing itself takes time after the crash, so this bounds the
	// failover from above; it is not a latency figure.
	assert.Less(t, slowest, 2*failover, "the crashed member's keys waited too long")
}
