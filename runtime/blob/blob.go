// Package blob keeps payloads too large for the bus out of band (seed §10,
// the pointer pattern): the message carries a reference, a hash and a size.
package blob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// Store holds blobs by reference. Implementations must be safe for concurrent use.
type Store interface {
	// Put stores data and returns a reference to fetch it by.
	Put(ctx context.Context, data []byte) (ref string, err error)
	// Get fetches the blob ref names.
	Get(ctx context.Context, ref string) ([]byte, error)
}

// Errors a Store returns for a reference that will never resolve; the bus
// dead-letters such a message at once rather than retrying it.
var (
	// ErrNotFound: no blob has that reference.
	ErrNotFound = errors.New("blob not found")
	// ErrInvalidRef: the reference is not one this store can hold (another
	// scheme, or a path outside the store).
	ErrInvalidRef = errors.New("invalid blob reference")
)

// Hash is the blob_hash of data: "sha256:<hex>".
func Hash(data []byte) string { return "sha256:" + Name(data) }

// Name is the name a content-addressed store gives data: its SHA-256 in
// hex, so storing the same payload twice costs nothing and a blob never
// changes under its reference.
func Name(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// ValidName reports whether name is one Name gives, so a store need not
// look up a reference that cannot be one of its blobs.
func ValidName(name string) bool {
	return len(name) == 2*sha256.Size && strings.Trim(name, "0123456789abcdef") == ""
}

// FS stores blobs as files in a directory, named by content hash, so
// storing the same payload twice costs nothing and a blob never changes
// under its reference. References are file:// URLs.
type FS struct {
	dir string
}

// NewFS stores blobs under dir, creating it if needed.
func NewFS(dir string) (*FS, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("blob store %s: %w", abs, err)
	}
	return &FS{dir: abs}, nil
}

// Put implements Store; it writes through a temporary file, so a reader
// never sees a partial blob.
func (f *FS) Put(_ context.Context, data []byte) (string, error) {
	name := Name(data)
	path := filepath.Join(f.dir, name)
	if _, err := os.Stat(path); err == nil {
		return fileRef(path), nil
	}
	tmp, err := os.CreateTemp(f.dir, name+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("put blob: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return "", fmt.Errorf("put blob: %w", err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("put blob: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("put blob: %w", err)
	}
	return fileRef(path), nil
}

// Get implements Store for file:// references inside the store's directory.
func (f *FS) Get(_ context.Context, ref string) ([]byte, error) {
	u, err := url.Parse(ref)
	if err != nil || u.Scheme != "file" {
		return nil, fmt.Errorf("get blob %q: %w: not a file:// reference", ref, ErrInvalidRef)
	}
	path := filepath.Clean(u.Path)
	if filepath.Dir(path) != f.dir {
		return nil, fmt.Errorf("get blob %q: %w: outside the store %s", ref, ErrInvalidRef, f.dir)
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("get blob %q: %w", ref, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get blob %q: %w", ref, err)
	}
	return data, nil
}

func fileRef(path string) string {
	return (&url.URL{Scheme: "file", Path: path}).String()
}
