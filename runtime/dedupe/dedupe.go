// Package dedupe remembers which messages a consumer has already applied,
// so a redelivered or republished message becomes a no-op.
package dedupe

import (
	"context"
	"hash/maphash"
	"math"
	"sync"
	"time"
)

// Store records keys (message ids, dedupe keys) for a time. Implementations
// must be safe for concurrent use.
type Store interface {
	// Seen reports whether key was marked and has not expired.
	Seen(ctx context.Context, key string) (bool, error)
	// Mark records key for ttl.
	Mark(ctx context.Context, key string, ttl time.Duration) error
}

// Syncer is implemented by stores that members of a group share through a
// log they each follow (kafkabinding.TopicStore): Sync reads it up to now,
// so marks written by another member before the call are seen. The bus
// calls it when partitions move to this member.
type Syncer interface {
	Sync(ctx context.Context) error
}

// Memory is a bounded in-process Store: at most Capacity keys, each kept
// for its TTL; when full, the oldest mark is forgotten first. It does not
// survive a restart; use a persistent store (natsbinding.KVStore) for that.
//
// It holds a 128-bit hash of each key (two distinct keys collide with
// probability about 2⁻¹²⁸), not the key, in memory that grows with the
// marks held and holds no pointers: a full store of 65,536 keys is about
// 3 MiB that the garbage collector never scans, and a store that sees few
// messages within their TTL stays small.
type Memory struct {
	mu    sync.Mutex
	cap   int
	seeds [2]maphash.Seed
	// index maps a key's hash to its slot in ring.
	index map[digest]int
	// ring holds the marks oldest first from head, n of them; it doubles
	// up to cap as marks arrive.
	ring    []slot
	head, n int
	now     func() time.Time
}

type digest [2]uint64

type slot struct {
	key     digest
	expires int64 // unix nanoseconds
}

// NewMemory returns a Memory holding at most capacity keys.
func NewMemory(capacity int) *Memory {
	return &Memory{cap: max(capacity, 1), seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
		index: map[digest]int{}, now: time.Now}
}

func (m *Memory) digest(key string) digest {
	return digest{maphash.String(m.seeds[0], key), maphash.String(m.seeds[1], key)}
}

// Seen implements Store.
func (m *Memory) Seen(_ context.Context, key string) (bool, error) {
	d := m.digest(key)
	m.mu.Lock()
	defer m.mu.Unlock()
	pos, ok := m.index[d]
	if !ok {
		return false, nil
	}
	if m.ring[pos].expires <= m.now().UnixNano() {
		delete(m.index, d) // its slot is dropped when it reaches the head
		return false, nil
	}
	return true, nil
}

// Mark implements Store. Marking a key again refreshes its place.
func (m *Memory) Mark(_ context.Context, key string, ttl time.Duration) error {
	d := m.digest(key)
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now().UnixNano()
	for m.n > 0 && m.ring[m.head].expires <= now {
		m.dropOldest()
	}
	if m.n == len(m.ring) {
		if len(m.ring) < m.cap {
			m.grow()
		} else {
			m.dropOldest()
		}
	}
	pos := (m.head + m.n) % len(m.ring)
	m.ring[pos] = slot{key: d, expires: expiry(now, ttl)}
	m.n++
	m.index[d] = pos // a slot it had before is left to age out
	return nil
}

// expiry is now + ttl, saturating: a TTL meant as "for ever" must not wrap
// into the past.
func expiry(now int64, ttl time.Duration) int64 {
	if ttl > 0 && now > math.MaxInt64-int64(ttl) {
		return math.MaxInt64
	}
	return now + int64(ttl)
}

// dropOldest forgets the mark at the head, unless its key was marked again since.
func (m *Memory) dropOldest() {
	s := m.ring[m.head]
	if pos, ok := m.index[s.key]; ok && pos == m.head {
		delete(m.index, s.key)
	}
	m.head = (m.head + 1) % len(m.ring)
	m.n--
}

// grow doubles the ring (up to cap), oldest mark first at 0.
func (m *Memory) grow() {
	ring := make([]slot, min(max(2*len(m.ring), 64), m.cap))
	for i := range m.n {
		old := (m.head + i) % len(m.ring)
		ring[i] = m.ring[old]
		if pos, ok := m.index[ring[i].key]; ok && pos == old {
			m.index[ring[i].key] = i
		}
	}
	m.ring, m.head = ring, 0
}

// Len is the number of keys held, expired ones included until looked up or evicted.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.index)
}
