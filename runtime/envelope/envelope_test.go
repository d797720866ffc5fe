package envelope_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/runtime/envelope"
)

func full() envelope.Headers {
	return envelope.Headers{
		MessageID: envelope.NewMessageID(), SchemaFQDN: "ampy.bars.v1.BarBatch", SchemaVersion: "1.0.0",
		ContentType: envelope.ContentTypeProtobuf, ContentEncoding: envelope.EncodingGzip,
		ProducedAt: time.Date(2025, 9, 5, 19, 30, 12, 462_000_000, time.UTC), Producer: "yfinance-go@ingest-1",
		Source: "yfinance-go", RunID: "run_abc123", Trace: envelope.NewTrace(), PartitionKey: "XNAS.AAPL",
		DedupeKey: "d1", RetryCount: 2, DLQReason: "decode_error: x", SchemaHash: "sha256:ab",
		BlobRef: "s3://b/k", BlobHash: "sha256:cd", BlobSize: 2 << 20, Extra: map[string]string{"replay_request_id": "r9"},
	}
}

func parse(fields []envelope.Field) (envelope.Headers, error) {
	m := map[string]string{}
	var keys []string
	for _, f := range fields {
		m[f.Key] = f.Value
		keys = append(keys, f.Key)
	}
	return envelope.Parse(keys, func(k string) string { return m[k] })
}

func TestRoundTrip(t *testing.T) {
	h := full()
	require.NoError(t, h.Validate())
	fields := h.Fields()
	var names []string
	for _, f := range fields {
		names = append(names, f.Key)
	}
	assert.Equal(t, []string{"message_id", "schema_fqdn", "schema_version", "content_type", "content_encoding",
		"produced_at", "producer", "source", "run_id", "traceparent", "partition_key", "dedupe_key", "retry_count",
		"dlq_reason", "schema_hash", "blob_ref", "blob_hash", "blob_size", "replay_request_id"}, names)
	got, err := parse(fields)
	require.NoError(t, err)
	assert.Equal(t, h, got)
	assert.Contains(t, fields, envelope.Field{Key: "produced_at", Value: "2025-09-05T19:30:12.462Z"})
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*envelope.Headers)
		want   string
	}{
		{"missing id", func(h *envelope.Headers) { h.MessageID = "" }, "header message_id: missing"},
		{"uuid v4", func(h *envelope.Headers) { h.MessageID = "0b7e0c2e-7d1a-4c1b-9d1e-0c2e7d1a4c1b" }, "UUID version 4; message ids are UUIDv7"},
		{"missing producer", func(h *envelope.Headers) { h.Producer = "" }, "header producer: missing"},
		{"zero trace", func(h *envelope.Headers) { h.Trace = envelope.TraceContext{} }, "trace and span ids must be non-zero"},
		{"unknown encoding", func(h *envelope.Headers) { h.ContentEncoding = "zstd" }, "only gzip is supported"},
		{"blob without hash", func(h *envelope.Headers) { h.BlobHash = "" }, "blob_ref, blob_hash and blob_size go together"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := full()
			tc.mutate(&h)
			err := h.Validate()
			require.ErrorIs(t, err, envelope.ErrInvalidHeaders)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestParseKeepsMalformedValues(t *testing.T) {
	orig := full()
	fields := orig.Fields()
	for i := range fields {
		switch fields[i].Key {
		case "produced_at":
			fields[i].Value = "2025-09-05 19:30:12" // not RFC 3339, not UTC
		case "retry_count":
			fields[i].Value = "many"
		case "traceparent":
			fields[i].Value = "00-xyz"
		}
	}
	h, err := parse(fields)
	require.Error(t, err)
	for _, want := range []string{"header produced_at=", "header retry_count=\"many\"", "header traceparent=\"00-xyz\""} {
		assert.Contains(t, err.Error(), want)
	}
	// Written back, the message is byte-for-byte what arrived.
	back := h.Fields()
	assert.ElementsMatch(t, fields, back)
}

func TestTraceparent(t *testing.T) {
	tc := envelope.NewTrace()
	s := tc.String()
	require.Regexp(t, `^00-[0-9a-f]{32}-[0-9a-f]{16}-01$`, s)
	back, err := envelope.ParseTraceparent(s)
	require.NoError(t, err)
	assert.Equal(t, tc, back)
	child := tc.Child()
	assert.Equal(t, tc.TraceID, child.TraceID)
	assert.NotEqual(t, tc.SpanID, child.SpanID)
	for _, bad := range []string{"", "01-" + s[3:], "00-" + strings.Repeat("0", 32) + s[35:], s[:50], strings.Replace(s, "-", "_", 1)} {
		_, err := envelope.ParseTraceparent(bad)
		assert.Error(t, err, bad)
	}
}

func TestLegacyTraceID(t *testing.T) {
	h, err := envelope.Parse([]string{"trace_id"}, func(string) string { return "4b5b3f2a0f9d4e3db4c8a1f0e3a7c812" })
	require.NoError(t, err)
	assert.Equal(t, "4b5b3f2a0f9d4e3db4c8a1f0e3a7c812", h.Trace.TraceIDHex())
	assert.True(t, h.Trace.Valid())
}

func TestParseTime(t *testing.T) {
	_, err := envelope.ParseTime("2025-09-05T19:31:01+02:00")
	assert.ErrorContains(t, err, "not UTC")
	got, err := envelope.ParseTime("2025-09-05T19:31:01Z")
	require.NoError(t, err)
	assert.Equal(t, time.Date(2025, 9, 5, 19, 31, 1, 0, time.UTC), got)
}

// Count sizes the bindings' header maps: it must match what Each visits
// for every mix of set and empty headers.
func TestCountAndSizeMatchEach(t *testing.T) {
	cases := map[string]envelope.Headers{
		"full":          full(),
		"empty":         {},
		"no extra":      func() envelope.Headers { h := full(); h.Extra = nil; return h }(),
		"minimal":       {MessageID: "m", Producer: "p", ProducedAt: time.Unix(1, 0).UTC()},
		"empty extra":   {Extra: map[string]string{"a": "", "b": "x"}},
		"counters only": {RetryCount: 1, BlobSize: 9, Trace: envelope.NewTrace()},
		"big counters":  {RetryCount: 123456, BlobSize: 1 << 40, ProducedAt: time.Date(2025, 1, 2, 3, 4, 5, 600, time.FixedZone("x", 3600))},
	}
	for i, at := range []time.Time{time.Unix(0, 1), time.Unix(1, 120_000_000), time.Unix(1, 999_999_999), time.Date(1, 1, 1, 0, 0, 0, 5, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-3, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 100, time.UTC)} {
		cases["time "+strconv.Itoa(i)] = envelope.Headers{MessageID: "m", ProducedAt: at}
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			n, bytes := 0, 0
			h.Each(func(k, v string) { n, bytes = n+1, bytes+len(k)+len(v) })
			assert.Equal(t, n, h.Count())
			assert.Len(t, h.Fields(), n)
			// AppendEach visits what Each visits, in its order, formatting
			// within the headers' bytes; what it handed over survives buf
			// growing.
			var each, appended []envelope.Field
			h.Each(func(k, v string) { each = append(each, envelope.Field{Key: k, Value: v}) })
			type visit struct {
				key, text string
				formatted []byte // nil for text
			}
			var visits []visit
			buf := h.AppendEach(make([]byte, 0, 1), func(k, v string) {
				visits = append(visits, visit{key: k, text: v})
			}, func(k string, v []byte) {
				visits = append(visits, visit{key: k, formatted: v})
			})
			for _, v := range visits { // read once buf has grown past them
				if v.formatted != nil {
					v.text = string(v.formatted)
				}
				appended = append(appended, envelope.Field{Key: v.key, Value: v.text})
			}
			sortExtra := func(f []envelope.Field) {
				extra := f[len(f)-len(h.Extra):]
				slices.SortFunc(extra, func(a, b envelope.Field) int { return strings.Compare(a.Key, b.Key) })
			}
			sortExtra(each)
			sortExtra(appended)
			assert.Equal(t, each, appended)
			assert.LessOrEqual(t, len(buf), bytes, "formatted values are no longer than the headers they are")
			// CheckSize measures without formatting: it must measure what is written.
			big := h
			big.Extra = map[string]string{"pad": strings.Repeat("x", envelope.MaxHeaderBytes-bytes-len("pad"))}
			if len(h.Extra) == 0 && big.Count() <= envelope.MaxHeaders {
				assert.NoError(t, big.CheckSize(), "exactly at the byte limit")
				big.Extra["pad"] += "x"
				assert.Error(t, big.CheckSize(), "one byte over")
			}
		})
	}
}
