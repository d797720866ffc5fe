// Package s3blob is a blob.Store in an S3-compatible bucket (AWS S3,
// MinIO, Ceph, R2), through minio-go, for the pointer pattern's payloads:
// the seed's s3://bucket/key references resolve here. It is a package of
// its own so a service that keeps blobs elsewhere does not link an S3
// client.
package s3blob

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/ampyfin/ampy-bus/runtime/blob"
)

// Config says where the bucket is and how to reach it.
type Config struct {
	// Endpoint is host[:port] of the S3 API (s3.amazonaws.com, a MinIO
	// server).
	Endpoint string
	// Bucket holds the blobs; it must exist.
	Bucket string
	// Prefix is put before each object's name (blobs/), "" for none.
	Prefix string
	// AccessKey and SecretKey sign requests; SessionToken for temporary
	// credentials. All empty: anonymous.
	AccessKey, SecretKey, SessionToken string
	// Region of the bucket, when the endpoint needs it.
	Region string
	// Insecure talks plain HTTP (a local test server), not HTTPS.
	Insecure bool
}

// Store is a blob.Store in an S3 bucket. Objects are named by the hash of
// their content: storing a payload twice costs nothing, and an object never
// changes under its reference.
type Store struct {
	cl     *minio.Client
	bucket string
	prefix string
}

// New returns a Store for cfg's bucket.
func New(cfg Config) (*Store, error) {
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return nil, errors.New("s3 blob store: give the endpoint (host:port) and the bucket")
	}
	var creds *credentials.Credentials
	if cfg.AccessKey != "" || cfg.SecretKey != "" {
		creds = credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken)
	} else {
		creds = credentials.New(&credentials.Static{})
	}
	cl, err := minio.New(cfg.Endpoint, &minio.Options{Creds: creds, Secure: !cfg.Insecure, Region: cfg.Region})
	if err != nil {
		return nil, fmt.Errorf("s3 blob store %s: %w", cfg.Endpoint, err)
	}
	return &Store{cl: cl, bucket: cfg.Bucket, prefix: cfg.Prefix}, nil
}

// Put implements blob.Store; the reference is s3://<bucket>/<prefix><sha256>.
func (s *Store) Put(ctx context.Context, data []byte) (string, error) {
	key := s.prefix + blob.Name(data)
	ref := "s3://" + s.bucket + "/" + key
	if _, err := s.cl.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{}); err == nil {
		return ref, nil
	} else if minio.ToErrorResponse(err).Code != minio.NoSuchKey {
		return "", fmt.Errorf("put blob %s: %w", ref, err)
	}
	if _, err := s.cl.PutObject(ctx, s.bucket, key, bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{ContentType: "application/octet-stream"}); err != nil {
		return "", fmt.Errorf("put blob %s: %w", ref, err)
	}
	return ref, nil
}

// Get implements blob.Store for s3:// references into this bucket.
func (s *Store) Get(ctx context.Context, ref string) ([]byte, error) {
	u, err := url.Parse(ref)
	if err != nil || u.Scheme != "s3" {
		return nil, fmt.Errorf("get blob %q: %w: not an s3:// reference", ref, blob.ErrInvalidRef)
	}
	if u.Host != s.bucket {
		return nil, fmt.Errorf("get blob %q: %w: bucket %q, but this store reads %q", ref, blob.ErrInvalidRef, u.Host, s.bucket)
	}
	key := strings.TrimPrefix(u.Path, "/")
	if key == "" || !strings.HasPrefix(key, s.prefix) {
		return nil, fmt.Errorf("get blob %q: %w: not under the store's prefix %q", ref, blob.ErrInvalidRef, s.prefix)
	}
	obj, err := s.cl.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("get blob %q: %w", ref, err)
	}
	defer obj.Close()
	data, err := io.ReadAll(obj)
	if minio.ToErrorResponse(err).Code == minio.NoSuchKey {
		return nil, fmt.Errorf("get blob %q: %w", ref, blob.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get blob %q: %w", ref, err)
	}
	return data, nil
}
