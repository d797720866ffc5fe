package ampybus

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/ampyfin/ampy-bus/runtime/blob"
	"github.com/ampyfin/ampy-bus/runtime/envelope"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// verify checks a stored message against its route as every consumer does,
// and decodes it. It returns the message, or the reason it is a poison pill
// (the dlq_reason), or (only for a blob that could not be fetched) an error
// worth retrying. prefix is the domain's topic prefix with its final dot.
func verify[S Subtopic, P proto.Message](ctx context.Context, b *Bus, r *Route[S, P], newPayload func() P, prefix string, m *transport.Message, headerErr error) (*Message[S, P], string, error) {
	if headerErr != nil {
		return nil, "contract_violation: " + headerErr.Error(), nil
	}
	if err := m.Headers.Validate(); err != nil {
		return nil, "contract_violation: " + err.Error(), nil
	}
	if m.Headers.SchemaFQDN != r.Spec.Schema.FQDN {
		return nil, fmt.Sprintf("schema_mismatch: schema_fqdn %s, but %s carries %s", m.Headers.SchemaFQDN, r.Spec.Pattern, r.Spec.Schema.FQDN), nil
	}
	if reason := checkSchema(&m.Headers, r.Spec.Schema); reason != "" {
		return nil, reason, nil
	}
	if len(m.Topic) <= len(prefix) || m.Topic[:len(prefix)] != prefix {
		return nil, "contract_violation: topic " + m.Topic + " is outside " + prefix + ">", nil
	}
	st, err := r.Parse(m.Topic[len(prefix):])
	if err != nil {
		return nil, violation(err), nil
	}
	payload, reason, err := b.openPayload(ctx, &m.Headers, m.Payload, r.Spec.Domain.InflateLimit())
	if reason != "" || err != nil {
		return nil, reason, err
	}
	p := newPayload()
	if err := r.decoder().unmarshal(payload, p); err != nil {
		return nil, "decode_error: " + err.Error(), nil
	}
	keys, err := r.Keys(st, p)
	if err != nil {
		return nil, violation(err), nil
	}
	if keys.Partition != m.Headers.PartitionKey {
		return nil, fmt.Sprintf("contract_violation: partition_key %q, but the contract derives %q from the payload", m.Headers.PartitionKey, keys.Partition), nil
	}
	// The dedupe key decides whether a message reaches its handler, so it
	// is the contract's or nothing: a header must not switch dedupe off,
	// nor make an unrelated message look like a duplicate.
	switch got := m.Headers.DedupeKey; {
	case got == keys.Dedupe:
	case got == "":
		return nil, fmt.Sprintf("contract_violation: dedupe_key is missing, but the contract derives %q from the payload", keys.Dedupe), nil
	case keys.Dedupe == "":
		return nil, fmt.Sprintf("contract_violation: dedupe_key %q, but the contract derives none for %s", got, r.Spec.Pattern), nil
	default:
		return nil, fmt.Sprintf("contract_violation: dedupe_key %q, but the contract derives %q from the payload", got, keys.Dedupe), nil
	}
	return &Message[S, P]{Topic: m.Topic, Subtopic: st, Payload: p, Headers: m.Headers}, "", nil
}

// violation is the dlq_reason of a contract error: contract_violation:
// and what was wrong, without the error's own "contract violation: ".
func violation(err error) string {
	text := err.Error()
	if errors.Is(err, ErrContract) {
		text = strings.TrimPrefix(text, ErrContract.Error()+": ")
	}
	return "contract_violation: " + text
}

// checkSchema holds the headers that describe the payload to what the
// contract says the topic carries. A producer on a newer minor or patch is
// compatible (additive evolution within a major), so schema_hash, optional
// in the seed, is compared only at the same schema_version: a difference
// there is a schema changed without a version bump.
func checkSchema(h *envelope.Headers, want Schema) string {
	if h.ContentType != envelope.ContentTypeProtobuf {
		return fmt.Sprintf("schema_mismatch: content_type %s, but the contract carries %s as %s", h.ContentType, want.FQDN, envelope.ContentTypeProtobuf)
	}
	if h.SchemaVersion == want.Version && (h.SchemaHash == "" || want.Hash == "" || h.SchemaHash == want.Hash) {
		return "" // the common case: produced against this very schema
	}
	got, ok := semverMajor(h.SchemaVersion)
	if !ok {
		return fmt.Sprintf("contract_violation: schema_version %q is not MAJOR.MINOR.PATCH", h.SchemaVersion)
	}
	if major, _ := semverMajor(want.Version); got != major {
		return fmt.Sprintf("schema_mismatch: schema_version %s is major %s, but this topic carries %s major %s (a new major travels on a new topic version)", h.SchemaVersion, got, want.FQDN, major)
	}
	if hash := h.SchemaHash; hash != "" && want.Hash != "" && hash != want.Hash && h.SchemaVersion == want.Version {
		return fmt.Sprintf("schema_hash_mismatch: produced against %s, this consumer has %s for %s %s: the schema changed without a version bump", hash, want.Hash, want.FQDN, want.Version)
	}
	return ""
}

// semverMajor returns the major of a MAJOR.MINOR.PATCH version.
func semverMajor(v string) (string, bool) {
	major, rest, _ := strings.Cut(v, ".")
	minor, patch, ok := strings.Cut(rest, ".")
	if !ok {
		return "", false
	}
	for _, p := range [...]string{major, minor, patch} {
		if p == "" || len(p) > 9 || strings.Trim(p, "0123456789") != "" || (len(p) > 1 && p[0] == '0') {
			return "", false
		}
	}
	return major, true
}

// openPayload returns the protobuf bytes a message carries: fetched from the
// blob store for a pointer, inflated when gzipped. A reason is a poison pill;
// an error is a blob fetch worth retrying.
func (b *Bus) openPayload(ctx context.Context, h *envelope.Headers, payload []byte, maxInflated int64) ([]byte, string, error) {
	var err error
	if ref := h.BlobRef; ref != "" {
		if b.blobs == nil {
			return nil, "blob_error: the message points at " + ref + " but this bus has no blob store (ampybus.WithBlobStore)", nil
		}
		if h.BlobSize > maxInflated {
			return nil, fmt.Sprintf("blob_error: blob_size %d is over the domain's max_inflated of %d bytes", h.BlobSize, maxInflated), nil
		}
		if payload, err = b.blobs.Get(ctx, ref); errors.Is(err, blob.ErrNotFound) || errors.Is(err, blob.ErrInvalidRef) {
			return nil, "blob_error: " + err.Error(), nil
		} else if err != nil {
			return nil, "", err
		}
		if got := blob.Hash(payload); got != h.BlobHash || int64(len(payload)) != h.BlobSize {
			return nil, fmt.Sprintf("blob_hash_mismatch: %s is %d bytes with %s; the message says %d bytes with %s", ref, len(payload), got, h.BlobSize, h.BlobHash), nil
		}
	}
	switch h.ContentEncoding {
	case "":
	case envelope.EncodingGzip:
		compressed := len(payload)
		if payload, err = GunzipLimit(payload, maxInflated); errors.Is(err, ErrDecompressionLimit) {
			return nil, fmt.Sprintf("decompression_limit: the gzip payload of %d bytes inflates past the domain's max_inflated of %d bytes", compressed, maxInflated), nil
		} else if err != nil {
			return nil, "decode_error: gzip: " + err.Error(), nil
		}
	default:
		return nil, "decode_error: unknown content_encoding " + h.ContentEncoding, nil
	}
	return payload, "", nil
}

// ErrDecompressionLimit: a compressed payload inflates past its limit (a
// gzip bomb, or a payload over the domain's max_inflated).
var ErrDecompressionLimit = errors.New("decompression limit exceeded")

// GunzipLimit inflates a gzip payload of at most limit bytes. Past limit it
// stops and returns ErrDecompressionLimit, so a bomb costs at most about
// limit bytes of memory. The trailer's declared size only sizes the first
// buffer: a truncated or lying stream must not pick the verdict.
func GunzipLimit(b []byte, limit int64) ([]byte, error) {
	r, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	// The trailer's ISIZE is the (last member's) size modulo 2^32. A buffer
	// of that size and a byte to see the end; a stream that outgrows it
	// doubles up to the limit, so memory stays within a few times the limit.
	declared := int64(binary.LittleEndian.Uint32(b[len(b)-4:]))
	out := make([]byte, 0, max(min(declared, limit)+1, 512))
	for {
		if len(out) == cap(out) {
			grown := make([]byte, len(out), min(limit+1, 2*int64(cap(out))))
			copy(grown, out)
			out = grown
		}
		n, err := r.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if int64(len(out)) > limit {
			return nil, fmt.Errorf("%w: more than %d bytes", ErrDecompressionLimit, limit)
		}
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
	}
}
