// Package dedupe remembers which messages a consumer has already applied,
// so a redelivered or republished message becomes a no-op.
package dedupe

import (
	"context"
	"hash/maphash"
	"math"
	"math/bits"
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
// marks held and holds no pointers: about 32 bytes a mark (a full store of
// 65,536 keys is 2 MiB) that the garbage collector never scans, and a store
// that sees few messages within their TTL stays small.
type Memory struct {
	mu    sync.Mutex
	cap   int
	seeds [2]maphash.Seed
	// ring holds the marks oldest first from head, n of them; it doubles
	// up to cap as marks arrive.
	ring    []slot
	head, n int
	// index finds a key's newest slot: an open-addressed table (linear
	// probing, at most half full) of ring positions plus one, 0 for empty.
	// A Go map of digests would take twice the memory a mark.
	index []uint32
	held  int // keys in index
	now   func() time.Time
}

type digest [2]uint64

type slot struct {
	key     digest
	expires int64 // unix nanoseconds
}

// NewMemory returns a Memory holding at most capacity keys.
func NewMemory(capacity int) *Memory {
	return &Memory{cap: min(max(capacity, 1), math.MaxUint32/4),
		seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}, now: time.Now}
}

func (m *Memory) digest(key string) digest {
	return digest{maphash.String(m.seeds[0], key), maphash.String(m.seeds[1], key)}
}

// Seen implements Store.
func (m *Memory) Seen(_ context.Context, key string) (bool, error) {
	d := m.digest(key)
	m.mu.Lock()
	defer m.mu.Unlock()
	i, found := m.find(d)
	if !found {
		return false, nil
	}
	if m.ring[m.index[i]-1].expires <= m.now().UnixNano() {
		m.unindex(i) // its slot is dropped when it reaches the head
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
	i, found := m.find(d)
	if !found {
		m.held++
	}
	m.index[i] = uint32(pos) + 1 // a slot it had before is left to age out
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
	if i, found := m.find(m.ring[m.head].key); found && int(m.index[i]-1) == m.head {
		m.unindex(i)
	}
	m.head = (m.head + 1) % len(m.ring)
	m.n--
}

// grow doubles the ring (up to cap), oldest mark first at 0, and rebuilds
// the index for the new positions.
func (m *Memory) grow() {
	ring := make([]slot, min(max(2*len(m.ring), 64), m.cap))
	old := m.index
	for i := range m.n {
		ring[i] = m.ring[(m.head+i)%len(m.ring)]
	}
	m.index = make([]uint32, max(128, 2<<bits.Len(uint(len(ring)-1))))
	for _, e := range old {
		if e != 0 {
			pos := (int(e-1) - m.head + len(m.ring)) % len(m.ring)
			i, _ := m.findIn(ring, ring[pos].key)
			m.index[i] = uint32(pos) + 1
		}
	}
	m.ring, m.head = ring, 0
}

// find returns the index entry holding d, or the empty entry where d
// belongs.
func (m *Memory) find(d digest) (i int, found bool) { return m.findIn(m.ring, d) }

func (m *Memory) findIn(ring []slot, d digest) (i int, found bool) {
	if len(m.index) == 0 {
		return 0, false
	}
	mask := len(m.index) - 1
	for i = int(d[0]) & mask; m.index[i] != 0; i = (i + 1) & mask {
		if ring[m.index[i]-1].key == d {
			return i, true
		}
	}
	return i, false
}

// unindex empties entry i, moving later entries of its probe run back so
// every key stays reachable from its home entry (deletion without
// tombstones).
func (m *Memory) unindex(i int) {
	mask := len(m.index) - 1
	for j := (i + 1) & mask; m.index[j] != 0; j = (j + 1) & mask {
		home := int(m.ring[m.index[j]-1].key[0]) & mask
		if (j-home)&mask >= (j-i)&mask {
			m.index[i], i = m.index[j], j
		}
	}
	m.index[i] = 0
	m.held--
}

// Len is the number of keys held, expired ones included until looked up or evicted.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.held
}
