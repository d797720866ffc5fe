// Package checkpoint persists a consumer's per-key ordering state — the
// newest ordering time handled for each partition key — so a restarted
// consumer still skips stale values and flags regressions. (Positions in the
// stream are the brokers' to keep: durable acks, committed offsets.)
package checkpoint

import (
	"context"
	"sync"
	"time"
)

// Store keeps the newest ordering time per key. Implementations must be safe
// for concurrent use.
type Store interface {
	// Load returns the time saved for key, if any.
	Load(ctx context.Context, key string) (time.Time, bool, error)
	// Save records t for key.
	Save(ctx context.Context, key string, t time.Time) error
}

// Memory is an in-process Store, for tests and single-process tools; it does
// not survive a restart (natsbinding.KVCheckpoints does).
type Memory struct {
	mu sync.Mutex
	m  map[string]time.Time
}

// NewMemory returns an empty Memory.
func NewMemory() *Memory { return &Memory{m: map[string]time.Time{}} }

// Load implements Store.
func (s *Memory) Load(_ context.Context, key string) (time.Time, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.m[key]
	return t, ok, nil
}

// Save implements Store.
func (s *Memory) Save(_ context.Context, key string, t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[key] = t
	return nil
}
