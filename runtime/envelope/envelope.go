// Package envelope defines the headers every ampy-bus message carries and
// their wire form. Both transports write the same names, so a message
// published on NATS reads the same as one published on Kafka.
package envelope

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Wire names of the envelope headers, exactly as the seed spells them. NATS
// header keys are case-sensitive: never write them in another case.
const (
	HeaderMessageID       = "message_id"
	HeaderSchemaFQDN      = "schema_fqdn"
	HeaderSchemaVersion   = "schema_version"
	HeaderContentType     = "content_type"
	HeaderContentEncoding = "content_encoding"
	HeaderProducedAt      = "produced_at"
	HeaderProducer        = "producer"
	HeaderSource          = "source"
	HeaderRunID           = "run_id"
	HeaderTraceparent     = "traceparent"
	HeaderPartitionKey    = "partition_key"
	HeaderDedupeKey       = "dedupe_key"
	HeaderRetryCount      = "retry_count"
	HeaderDLQReason       = "dlq_reason"
	HeaderSchemaHash      = "schema_hash"
	HeaderBlobRef         = "blob_ref"
	HeaderBlobHash        = "blob_hash"
	HeaderBlobSize        = "blob_size"

	// HeaderTraceID is the seed's legacy 32-hex trace id; read when no
	// traceparent is present, never written.
	HeaderTraceID = "trace_id"
)

// Content types and encodings the bus writes.
const (
	ContentTypeProtobuf = "application/x-protobuf"
	EncodingGzip        = "gzip"
)

// Headers is the envelope of one message. The zero value is not valid: use
// Validate before publishing.
type Headers struct {
	MessageID       string
	SchemaFQDN      string
	SchemaVersion   string
	ContentType     string
	ContentEncoding string
	ProducedAt      time.Time
	Producer        string
	Source          string
	RunID           string
	Trace           TraceContext
	PartitionKey    string
	DedupeKey       string
	RetryCount      int
	DLQReason       string
	SchemaHash      string
	BlobRef         string
	BlobHash        string
	BlobSize        int64
	// Extra holds headers outside the envelope set (a replay's request id, a
	// dead letter's original topic), carried through unchanged.
	Extra map[string]string
}

// Limits on a message's headers. The envelope writes about 20; the rest is
// room for a team's own (WithHeader) and the dead-letter queue's. A message
// over either limit is refused at publish and dead-lettered on receipt, so a
// header flood costs a consumer no more than these bounds.
const (
	// MaxHeaders is the most headers one message may carry.
	MaxHeaders = 64
	// MaxHeaderBytes bounds the summed length of every header key and value.
	MaxHeaderBytes = 16 << 10
)

// ErrInvalidHeaders is matched by every header validation error.
var ErrInvalidHeaders = errors.New("invalid envelope headers")

// HeaderError names the header that is wrong and why.
type HeaderError struct {
	Header string
	Value  string
	Reason string
}

func (e *HeaderError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("header %s: %s", e.Header, e.Reason)
	}
	return fmt.Sprintf("header %s=%q: %s", e.Header, e.Value, e.Reason)
}

func (e *HeaderError) Is(target error) bool { return target == ErrInvalidHeaders }

// FormatTime writes t as the wire form of produced_at: RFC 3339 in UTC.
func FormatTime(t time.Time) string {
	return t.UTC().Format(time.RFC3339Nano)
}

// AppendTime is FormatTime appending to b.
func AppendTime(b []byte, t time.Time) []byte {
	return t.UTC().AppendFormat(b, time.RFC3339Nano)
}

// timeLen is len(FormatTime(t)), counted rather than formatted for the
// four-digit years every real message has.
func timeLen(t time.Time) int {
	t = t.UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		return len(FormatTime(t))
	}
	n := len("2006-01-02T15:04:05Z")
	if ns := t.Nanosecond(); ns != 0 {
		digits := 9
		for ; ns%10 == 0; ns /= 10 {
			digits--
		}
		n += 1 + digits
	}
	return n
}

// ParseTime reads produced_at; it must be RFC 3339 and in UTC (a Z suffix).
func ParseTime(s string) (time.Time, error) {
	if !strings.HasSuffix(s, "Z") {
		return time.Time{}, errors.New("not UTC: write RFC 3339 with a Z suffix, e.g. 2025-09-05T19:31:01Z")
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, errors.New("not RFC 3339, e.g. 2025-09-05T19:31:01Z")
	}
	return t, nil
}

// Validate checks that every required header is present and well formed.
// It returns every problem joined, each a *HeaderError.
func (h *Headers) Validate() error {
	var errs []error
	bad := func(name, value, reason string) {
		errs = append(errs, &HeaderError{Header: name, Value: value, Reason: reason})
	}
	if h.MessageID == "" {
		bad(HeaderMessageID, "", "missing")
	} else if id, err := uuid.Parse(h.MessageID); err != nil {
		bad(HeaderMessageID, h.MessageID, "not a UUID")
	} else if id.Version() != 7 {
		bad(HeaderMessageID, h.MessageID, fmt.Sprintf("UUID version %d; message ids are UUIDv7", id.Version()))
	}
	for _, r := range []struct{ name, val string }{
		{HeaderSchemaFQDN, h.SchemaFQDN},
		{HeaderSchemaVersion, h.SchemaVersion},
		{HeaderContentType, h.ContentType},
		{HeaderProducer, h.Producer},
		{HeaderSource, h.Source},
		{HeaderRunID, h.RunID},
		{HeaderPartitionKey, h.PartitionKey},
	} {
		if r.val == "" {
			bad(r.name, "", "missing")
		}
	}
	if h.ProducedAt.IsZero() {
		bad(HeaderProducedAt, "", "missing")
	}
	if !h.Trace.Valid() {
		bad(HeaderTraceparent, h.Trace.String(), "trace and span ids must be non-zero")
	}
	if h.ContentEncoding != "" && h.ContentEncoding != EncodingGzip {
		bad(HeaderContentEncoding, h.ContentEncoding, "only gzip is supported")
	}
	if h.RetryCount < 0 {
		bad(HeaderRetryCount, strconv.Itoa(h.RetryCount), "negative")
	}
	if (h.BlobRef == "") != (h.BlobHash == "") || (h.BlobRef != "" && h.BlobSize <= 0) {
		bad(HeaderBlobRef, h.BlobRef, "blob_ref, blob_hash and blob_size go together")
	}
	return errors.Join(errs...)
}

// CheckSize holds the headers' wire form to MaxHeaders and MaxHeaderBytes;
// Parse applies the same limits to what it reads.
func (h *Headers) CheckSize() error {
	return sizeErr(h.size())
}

// size is the number of wire headers and the bytes of their keys and
// values, as Each would visit them, computed without allocating (times and
// numbers are formatted into a stack buffer): the publish path checks it on
// every message. It lists the headers again; TestCountAndSizeMatchEach
// holds the two lists together.
func (h *Headers) size() (count, bytes int) {
	add := func(k string, n int) {
		if n > 0 {
			count, bytes = count+1, bytes+len(k)+n
		}
	}
	var buf [64]byte
	add(HeaderMessageID, len(h.MessageID))
	add(HeaderSchemaFQDN, len(h.SchemaFQDN))
	add(HeaderSchemaVersion, len(h.SchemaVersion))
	add(HeaderContentType, len(h.ContentType))
	add(HeaderContentEncoding, len(h.ContentEncoding))
	if !h.ProducedAt.IsZero() {
		add(HeaderProducedAt, timeLen(h.ProducedAt))
	}
	add(HeaderProducer, len(h.Producer))
	add(HeaderSource, len(h.Source))
	add(HeaderRunID, len(h.RunID))
	if h.Trace.Valid() {
		add(HeaderTraceparent, traceparentLen)
	}
	add(HeaderPartitionKey, len(h.PartitionKey))
	add(HeaderDedupeKey, len(h.DedupeKey))
	if h.RetryCount > 0 {
		add(HeaderRetryCount, len(strconv.AppendInt(buf[:0], int64(h.RetryCount), 10)))
	}
	add(HeaderDLQReason, len(h.DLQReason))
	add(HeaderSchemaHash, len(h.SchemaHash))
	add(HeaderBlobRef, len(h.BlobRef))
	add(HeaderBlobHash, len(h.BlobHash))
	if h.BlobSize > 0 {
		add(HeaderBlobSize, len(strconv.AppendInt(buf[:0], h.BlobSize, 10)))
	}
	for k, v := range h.Extra {
		count, bytes = count+1, bytes+len(k)+len(v) // even empty: Each visits every Extra header
	}
	return count, bytes
}

func sizeErr(count, bytes int) error {
	switch {
	case count > MaxHeaders:
		return &HeaderError{Header: "headers", Reason: fmt.Sprintf("%d headers, over the limit of %d", count, MaxHeaders)}
	case bytes > MaxHeaderBytes:
		return &HeaderError{Header: "headers", Reason: fmt.Sprintf("%d bytes of header keys and values, over the limit of %d", bytes, MaxHeaderBytes)}
	}
	return nil
}

// Repeated is the error for a header a message carries n > 1 times: a
// reader would have to pick one, and another reader might pick another.
func Repeated(key string, n int) error {
	return &HeaderError{Header: key, Reason: fmt.Sprintf("appears %d times; each header appears once", n)}
}

// Field is one wire header.
type Field struct {
	Key, Value string
}

// Fields returns the wire headers in a fixed order (envelope headers first,
// then Extra sorted by key), omitting empty envelope headers.
func (h *Headers) Fields() []Field {
	f := make([]Field, 0, 12+len(h.Extra))
	h.each(func(k, v string) { f = append(f, Field{k, v}) })
	extra := f[len(f)-len(h.Extra):]
	sort.Slice(extra, func(i, j int) bool { return extra[i].Key < extra[j].Key })
	return f
}

// Each visits the wire headers without building a slice, for bindings that
// write them straight into their own header type: the envelope's in their
// fixed order, omitting empty ones, then every Extra header (even empty: a
// dead letter carries every header it came with), in map order.
func (h *Headers) Each(fn func(k, v string)) { h.each(fn) }

// Count is the number of headers Each visits, to size a binding's header map.
func (h *Headers) Count() int {
	n, _ := h.size()
	return n
}

func (h *Headers) each(fn func(k, v string)) {
	var scratch [64]byte
	h.walk(fn, func(k string, format formatter) { fn(k, string(format(h, scratch[:0]))) })
}

// AppendEach visits each wire header in Each's order without allocating
// for it: headers held as text go to text as they are held, and the others
// (produced_at, traceparent, the counts) are formatted into buf and go to
// formatted as the bytes written there. It returns buf, grown if it had
// to; what formatted was handed stays valid either way.
func (h *Headers) AppendEach(buf []byte, text func(k, v string), formatted func(k string, v []byte)) []byte {
	h.walk(text, func(k string, format formatter) {
		n := len(buf)
		buf = format(h, buf)
		formatted(k, buf[n:len(buf):len(buf)])
	})
	return buf
}

// formatter appends the wire form of one header that is not held as text.
type formatter func(h *Headers, b []byte) []byte

func appendProducedAt(h *Headers, b []byte) []byte  { return AppendTime(b, h.ProducedAt) }
func appendTraceparent(h *Headers, b []byte) []byte { return h.Trace.AppendTo(b) }
func appendRetryCount(h *Headers, b []byte) []byte {
	return strconv.AppendInt(b, int64(h.RetryCount), 10)
}
func appendBlobSize(h *Headers, b []byte) []byte { return strconv.AppendInt(b, h.BlobSize, 10) }

// walk is the one list of wire headers in their order: text headers go to
// text (empty ones omitted), the others to formatted with how to write
// them. Extra headers follow, every one even empty (a dead letter carries
// every header it came with), in map order.
func (h *Headers) walk(text func(k, v string), formatted func(k string, format formatter)) {
	add := func(k, v string) {
		if v != "" {
			text(k, v)
		}
	}
	add(HeaderMessageID, h.MessageID)
	add(HeaderSchemaFQDN, h.SchemaFQDN)
	add(HeaderSchemaVersion, h.SchemaVersion)
	add(HeaderContentType, h.ContentType)
	add(HeaderContentEncoding, h.ContentEncoding)
	if !h.ProducedAt.IsZero() {
		formatted(HeaderProducedAt, appendProducedAt)
	}
	add(HeaderProducer, h.Producer)
	add(HeaderSource, h.Source)
	add(HeaderRunID, h.RunID)
	if h.Trace.Valid() {
		formatted(HeaderTraceparent, appendTraceparent)
	}
	add(HeaderPartitionKey, h.PartitionKey)
	add(HeaderDedupeKey, h.DedupeKey)
	if h.RetryCount > 0 {
		formatted(HeaderRetryCount, appendRetryCount)
	}
	add(HeaderDLQReason, h.DLQReason)
	add(HeaderSchemaHash, h.SchemaHash)
	add(HeaderBlobRef, h.BlobRef)
	add(HeaderBlobHash, h.BlobHash)
	if h.BlobSize > 0 {
		formatted(HeaderBlobSize, appendBlobSize)
	}
	for k, v := range h.Extra {
		text(k, v)
	}
}

// Parse reads headers from their wire form. get returns a header's value and
// whether it is present; each key is visited through keys so that unknown
// headers land in Extra. It fills what it can and returns every malformed
// header as an error, so a bad message can still be dead-lettered intact;
// headers past MaxHeaders or MaxHeaderBytes are an error too.
func Parse(keys []string, get func(string) string) (Headers, error) {
	var h Headers
	var errs []error
	size := 0
	// A malformed value stays in Extra under its own key, so Fields writes
	// the message back exactly as it came (a dead letter loses nothing).
	bad := func(name, value, reason string) {
		errs = append(errs, &HeaderError{Header: name, Value: value, Reason: reason})
		if h.Extra == nil {
			h.Extra = map[string]string{}
		}
		h.Extra[name] = value
	}
	var legacyTraceID string
	for _, k := range keys {
		v := get(k)
		size += len(k) + len(v)
		switch k {
		case HeaderMessageID:
			h.MessageID = v
		case HeaderSchemaFQDN:
			h.SchemaFQDN = v
		case HeaderSchemaVersion:
			h.SchemaVersion = v
		case HeaderContentType:
			h.ContentType = v
		case HeaderContentEncoding:
			h.ContentEncoding = v
		case HeaderProducedAt:
			if t, err := ParseTime(v); err != nil {
				bad(k, v, err.Error())
			} else {
				h.ProducedAt = t
			}
		case HeaderProducer:
			h.Producer = v
		case HeaderSource:
			h.Source = v
		case HeaderRunID:
			h.RunID = v
		case HeaderTraceparent:
			if tc, err := ParseTraceparent(v); err != nil {
				bad(k, v, err.Error())
			} else {
				h.Trace = tc
			}
		case HeaderTraceID:
			legacyTraceID = v
		case HeaderPartitionKey:
			h.PartitionKey = v
		case HeaderDedupeKey:
			h.DedupeKey = v
		case HeaderRetryCount:
			if n, err := strconv.Atoi(v); err != nil || n < 0 {
				bad(k, v, "not a non-negative integer")
			} else {
				h.RetryCount = n
			}
		case HeaderDLQReason:
			h.DLQReason = v
		case HeaderSchemaHash:
			h.SchemaHash = v
		case HeaderBlobRef:
			h.BlobRef = v
		case HeaderBlobHash:
			h.BlobHash = v
		case HeaderBlobSize:
			if n, err := strconv.ParseInt(v, 10, 64); err != nil || n < 0 {
				bad(k, v, "not a non-negative integer")
			} else {
				h.BlobSize = n
			}
		default:
			if h.Extra == nil {
				h.Extra = map[string]string{}
			}
			h.Extra[k] = v
		}
	}
	if err := sizeErr(len(keys), size); err != nil {
		errs = append([]error{err}, errs...) // the limit first, as before the headers it counts
	}
	if !h.Trace.Valid() && legacyTraceID != "" {
		if tc, err := traceFromLegacyID(legacyTraceID); err == nil {
			h.Trace = tc
		} else {
			bad(HeaderTraceID, legacyTraceID, err.Error())
		}
	} else if legacyTraceID != "" {
		if h.Extra == nil {
			h.Extra = map[string]string{}
		}
		h.Extra[HeaderTraceID] = legacyTraceID
	}
	return h, errors.Join(errs...)
}
