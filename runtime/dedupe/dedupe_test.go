package dedupe

import (
	"context"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMemory(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1000, 0)
	m := NewMemory(3)
	m.now = func() time.Time { return now }

	seen, err := m.Seen(ctx, "a")
	require.NoError(t, err)
	assert.False(t, seen)
	require.NoError(t, m.Mark(ctx, "a", time.Minute))
	seen, _ = m.Seen(ctx, "a")
	assert.True(t, seen)

	now = now.Add(2 * time.Minute)
	seen, _ = m.Seen(ctx, "a")
	assert.False(t, seen, "expired after its TTL")
	assert.Zero(t, m.Len(), "an expired key is dropped when looked up")

	for i := range 5 {
		require.NoError(t, m.Mark(ctx, strconv.Itoa(i), time.Hour))
	}
	assert.Equal(t, 3, m.Len(), "bounded")
	for i, want := range []bool{false, false, true, true, true} {
		seen, _ := m.Seen(ctx, strconv.Itoa(i))
		assert.Equal(t, want, seen, "key %d: the oldest marks are forgotten first", i)
	}
	// Marking again refreshes a key's place.
	require.NoError(t, m.Mark(ctx, "2", time.Hour))
	require.NoError(t, m.Mark(ctx, "5", time.Hour))
	seen, _ = m.Seen(ctx, "2")
	assert.True(t, seen)
	seen, _ = m.Seen(ctx, "3")
	assert.False(t, seen)
}

// The ring grows by doubling and wraps: whatever the count marked, exactly
// the newest min(count, capacity) keys are remembered, and a refreshed key
// outlives the keys marked between its two marks.
func TestMemoryGrowsAndWraps(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ capacity, marks int }{
		{1, 3}, {63, 63}, {64, 65}, {100, 99}, {1000, 700}, {1000, 2500}, {4096, 10000},
	} {
		t.Run(strconv.Itoa(tc.capacity)+"/"+strconv.Itoa(tc.marks), func(t *testing.T) {
			m := NewMemory(tc.capacity)
			for i := range tc.marks {
				require.NoError(t, m.Mark(ctx, "k"+strconv.Itoa(i), time.Hour))
			}
			kept := min(tc.marks, tc.capacity)
			assert.Equal(t, kept, m.Len())
			assert.LessOrEqual(t, len(m.ring), tc.capacity)
			for i := range tc.marks {
				seen, _ := m.Seen(ctx, "k"+strconv.Itoa(i))
				assert.Equal(t, i >= tc.marks-kept, seen, "key %d", i)
			}
			// Refresh the oldest kept key, then push capacity-1 new keys: it stays.
			oldest := "k" + strconv.Itoa(tc.marks-kept)
			require.NoError(t, m.Mark(ctx, oldest, time.Hour))
			for i := range tc.capacity - 1 {
				require.NoError(t, m.Mark(ctx, "n"+strconv.Itoa(i), time.Hour))
			}
			seen, _ := m.Seen(ctx, oldest)
			assert.True(t, seen, "a refreshed key keeps its new place")
		})
	}
}

// Expired marks leave the ring as new marks arrive, so a store that sees few
// messages within their TTL stays small.
func TestMemoryDropsExpiredMarks(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1000, 0)
	m := NewMemory(1 << 16)
	m.now = func() time.Time { return now }
	for i := range 10000 {
		require.NoError(t, m.Mark(ctx, strconv.Itoa(i), time.Second))
		now = now.Add(time.Millisecond) // 1,000 marks a second, each kept for one
	}
	assert.LessOrEqual(t, m.n, 1001, "only the marks of the last TTL are held")
	assert.LessOrEqual(t, len(m.ring), 2048, "the ring is sized by rate × TTL, not capacity")
	seen, _ := m.Seen(ctx, "9999")
	assert.True(t, seen)
	seen, _ = m.Seen(ctx, "8000")
	assert.False(t, seen)
}

// A TTL meant as "for ever" saturates instead of wrapping into the past.
func TestMemoryLongTTL(t *testing.T) {
	ctx := context.Background()
	m := NewMemory(4)
	require.NoError(t, m.Mark(ctx, "k", time.Duration(math.MaxInt64)))
	seen, _ := m.Seen(ctx, "k")
	assert.True(t, seen)
}

// modelStore is the plain version of Memory: marks in a FIFO, a map from
// each key to its newest mark.
type modelStore struct {
	cap    int
	marks  []modelMark
	newest map[string]int // key → id of its newest mark
	nextID int
}

type modelMark struct {
	key     string
	id      int
	expires time.Time
}

func (s *modelStore) seen(key string, now time.Time) bool {
	id, ok := s.newest[key]
	if !ok {
		return false
	}
	for _, mk := range s.marks {
		if mk.id == id {
			if !mk.expires.After(now) {
				delete(s.newest, key)
				return false
			}
			return true
		}
	}
	panic("indexed mark not held")
}

func (s *modelStore) mark(key string, ttl time.Duration, now time.Time) {
	for len(s.marks) > 0 && !s.marks[0].expires.After(now) {
		s.dropOldest()
	}
	if len(s.marks) == s.cap {
		s.dropOldest()
	}
	s.nextID++
	s.marks = append(s.marks, modelMark{key, s.nextID, now.Add(ttl)})
	s.newest[key] = s.nextID
}

func (s *modelStore) dropOldest() {
	if s.newest[s.marks[0].key] == s.marks[0].id {
		delete(s.newest, s.marks[0].key)
	}
	s.marks = s.marks[1:]
}

// Memory answers as the plain model does over random marks, lookups, TTLs
// and clock steps, through growth, wrap-around, refreshes and index
// deletions.
func TestMemoryMatchesModel(t *testing.T) {
	ctx := context.Background()
	for _, capacity := range []int{1, 7, 64, 100, 1000} {
		t.Run(strconv.Itoa(capacity), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(capacity), 1))
			now := time.Unix(1000, 0)
			m := NewMemory(capacity)
			m.now = func() time.Time { return now }
			model := &modelStore{cap: capacity, newest: map[string]int{}}
			keys := 3 * capacity
			for op := range 20000 {
				key := "k" + strconv.Itoa(rng.IntN(keys))
				switch rng.IntN(10) {
				case 0:
					now = now.Add(time.Duration(rng.IntN(50)) * time.Millisecond)
				case 1, 2, 3, 4:
					ttl := time.Duration(1+rng.IntN(2000)) * time.Millisecond
					require.NoError(t, m.Mark(ctx, key, ttl))
					model.mark(key, ttl, now)
				default:
					got, err := m.Seen(ctx, key)
					require.NoError(t, err)
					require.Equal(t, model.seen(key, now), got, "op %d: Seen(%s)", op, key)
				}
				require.Equal(t, len(model.newest), m.Len(), "op %d", op)
			}
		})
	}
}
