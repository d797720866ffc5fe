package natsbinding

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// KVCheckpoints is a checkpoint.Store in a JetStream key-value bucket: the
// ordering state outlives the consumer and is shared by its group.
type KVCheckpoints struct {
	kv jetstream.KeyValue
}

// NewKVCheckpoints creates (or opens) bucket, held by replicas servers (one
// outside a cluster).
func NewKVCheckpoints(ctx context.Context, t *Transport, bucket string, replicas int) (*KVCheckpoints, error) {
	kv, err := t.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: bucket, Description: "ampy-bus consumer ordering checkpoints", Storage: jetstream.FileStorage, History: 1,
		Replicas: t.replicasFor(replicas),
	})
	if err != nil {
		return nil, fmt.Errorf("checkpoint bucket %s: %w", bucket, mapErr(err))
	}
	return &KVCheckpoints{kv: kv}, nil
}

// Load implements checkpoint.Store.
func (s *KVCheckpoints) Load(ctx context.Context, key string) (time.Time, bool, error) {
	e, err := s.kv.Get(ctx, kvKey(key))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return time.Time{}, false, nil
	case err != nil:
		return time.Time{}, false, fmt.Errorf("checkpoint load: %w", mapErr(err))
	}
	t, err := time.Parse(time.RFC3339Nano, string(e.Value()))
	if err != nil {
		return time.Time{}, false, fmt.Errorf("checkpoint %q is not a time: %w", e.Value(), err)
	}
	return t, true, nil
}

// Save implements checkpoint.Store.
func (s *KVCheckpoints) Save(ctx context.Context, key string, t time.Time) error {
	if _, err := s.kv.Put(ctx, kvKey(key), []byte(t.UTC().Format(time.RFC3339Nano))); err != nil {
		return fmt.Errorf("checkpoint save: %w", mapErr(err))
	}
	return nil
}
