// Package dedupe remembers which messages a consumer has already applied,
// so a redelivered or republished message becomes a no-op.
package dedupe

import (
	"container/list"
	"context"
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
type Memory struct {
	mu    sync.Mutex
	cap   int
	items map[string]*list.Element
	order *list.List // of *entry, oldest mark first
	now   func() time.Time
}

type entry struct {
	key     string
	expires time.Time
}

// NewMemory returns a Memory holding at most capacity keys.
func NewMemory(capacity int) *Memory {
	return &Memory{cap: max(capacity, 1), items: map[string]*list.Element{}, order: list.New(), now: time.Now}
}

// Seen implements Store.
func (m *Memory) Seen(_ context.Context, key string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.items[key]
	if !ok {
		return false, nil
	}
	if m.now().After(el.Value.(*entry).expires) {
		m.order.Remove(el)
		delete(m.items, key)
		return false, nil
	}
	return true, nil
}

// Mark implements Store.
func (m *Memory) Mark(_ context.Context, key string, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	exp := m.now().Add(ttl)
	if el, ok := m.items[key]; ok {
		el.Value.(*entry).expires = exp
		m.order.MoveToBack(el)
		return nil
	}
	m.items[key] = m.order.PushBack(&entry{key: key, expires: exp})
	for m.order.Len() > m.cap {
		oldest := m.order.Front()
		m.order.Remove(oldest)
		delete(m.items, oldest.Value.(*entry).key)
	}
	return nil
}

// Len is the number of keys held, expired ones included until looked up or evicted.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.order.Len()
}
