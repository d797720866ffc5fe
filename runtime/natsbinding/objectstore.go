package natsbinding

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ampyfin/ampy-bus/runtime/blob"
)

// ObjectScheme is the scheme of the blob_ref an ObjectStore writes:
// nats-object://<bucket>/<sha256 hex>.
const ObjectScheme = "nats-object"

// ObjectStore is a blob.Store in a JetStream object store bucket, so a NATS
// deployment keeps the pointer pattern's payloads on its own servers,
// replicated like its streams, with no second system to run. Objects are
// named by the hash of their content: storing a payload twice costs
// nothing, and an object never changes under its reference.
type ObjectStore struct {
	os     jetstream.ObjectStore
	bucket string
}

// NewObjectStore creates (or opens) bucket, held by replicas servers (a
// server outside a cluster holds one copy).
func NewObjectStore(ctx context.Context, t *Transport, bucket string, replicas int) (*ObjectStore, error) {
	os, err := t.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket: bucket, Description: "ampy-bus blob pointer payloads", Storage: jetstream.FileStorage,
		Replicas: t.replicasFor(replicas),
	})
	if err != nil {
		return nil, fmt.Errorf("blob bucket %s: %w", bucket, mapErr(err))
	}
	return &ObjectStore{os: os, bucket: bucket}, nil
}

// Put implements blob.Store.
func (s *ObjectStore) Put(ctx context.Context, data []byte) (string, error) {
	name := blob.Name(data)
	ref := (&url.URL{Scheme: ObjectScheme, Host: s.bucket, Path: "/" + name}).String()
	if _, err := s.os.GetInfo(ctx, name); err == nil {
		return ref, nil
	} else if !errors.Is(err, jetstream.ErrObjectNotFound) {
		return "", fmt.Errorf("put blob: %w", mapErr(err))
	}
	if _, err := s.os.PutBytes(ctx, name, data); err != nil {
		return "", fmt.Errorf("put blob: %w", mapErr(err))
	}
	return ref, nil
}

// Get implements blob.Store for nats-object:// references to this bucket.
func (s *ObjectStore) Get(ctx context.Context, ref string) ([]byte, error) {
	u, err := url.Parse(ref)
	if err != nil || u.Scheme != ObjectScheme {
		return nil, fmt.Errorf("get blob %q: %w: not a %s:// reference", ref, blob.ErrInvalidRef, ObjectScheme)
	}
	if u.Host != s.bucket {
		return nil, fmt.Errorf("get blob %q: %w: bucket %q, but this store reads %q", ref, blob.ErrInvalidRef, u.Host, s.bucket)
	}
	name := strings.TrimPrefix(u.Path, "/")
	if !blob.ValidName(name) {
		return nil, fmt.Errorf("get blob %q: %w: the object name is not a sha256 in hex", ref, blob.ErrInvalidRef)
	}
	data, err := s.os.GetBytes(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, fmt.Errorf("get blob %q: %w", ref, blob.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get blob %q: %w", ref, mapErr(err))
	}
	return data, nil
}
