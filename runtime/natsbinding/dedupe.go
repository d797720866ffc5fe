package natsbinding

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// KVStore is a dedupe.Store in a JetStream key-value bucket: marks survive
// a consumer's restart and are shared by every member of a group. Entries
// expire with the bucket's TTL.
type KVStore struct {
	kv  jetstream.KeyValue
	ttl time.Duration
}

// NewKVStore creates (or opens) bucket with the given TTL, held by replicas
// servers (give the replicas of the streams it serves: a mark on a server
// that is down cannot be written, and the group waits for it). A server
// outside a cluster holds one copy.
func NewKVStore(ctx context.Context, t *Transport, bucket string, ttl time.Duration, replicas int) (*KVStore, error) {
	kv, err := t.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: bucket, Description: "ampy-bus consumer dedupe marks", TTL: ttl, Storage: jetstream.FileStorage, History: 1,
		Replicas: t.replicasFor(replicas),
	})
	if err != nil {
		return nil, fmt.Errorf("dedupe bucket %s: %w", bucket, mapErr(err))
	}
	return &KVStore{kv: kv, ttl: ttl}, nil
}

// kvKey maps any key onto the characters KV keys allow.
func kvKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:16])
}

// Seen implements dedupe.Store.
func (s *KVStore) Seen(ctx context.Context, key string) (bool, error) {
	e, err := s.kv.Get(ctx, kvKey(key))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("dedupe lookup: %w", mapErr(err))
	}
	return time.Since(e.Created()) < s.ttl, nil
}

// Mark implements dedupe.Store; the bucket's TTL bounds how long it is kept.
func (s *KVStore) Mark(ctx context.Context, key string, _ time.Duration) error {
	if _, err := s.kv.Put(ctx, kvKey(key), nil); err != nil {
		return fmt.Errorf("dedupe mark: %w", mapErr(err))
	}
	return nil
}
