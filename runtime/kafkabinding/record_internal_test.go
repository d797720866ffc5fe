package kafkabinding

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/runtime/envelope"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// TestOutgoingRecord checks the record a publish becomes: the subtopic
// first, then every envelope header in Each's order with Extra sorted, the
// partition key as the key, empty values sent empty rather than null, and
// nothing changed when the message is reused once handed over (as the
// typed publisher's pool does).
func TestOutgoingRecord(t *testing.T) {
	s := transport.Stream{Prefix: "ampy.dev.bars.v1"}
	at := time.Date(2026, 12, 2, 16, 0, 0, 123456789, time.UTC)
	base := func() transport.Message {
		return transport.Message{Topic: s.Prefix + ".XNAS.AAPL", Payload: []byte("payload"), Headers: envelope.Headers{
			MessageID: envelope.MessageIDAt(at), SchemaFQDN: "ampy.bars.v1.BarBatch", SchemaVersion: "1.0.0",
			ContentType: envelope.ContentTypeProtobuf, ProducedAt: at, Producer: "svc@host", Source: "test",
			RunID: "run-1", Trace: envelope.NewTrace(), PartitionKey: "XNAS.AAPL", SchemaHash: "sha256:00",
		}}
	}
	many := map[string]string{}
	for i := range 20 {
		many["x-"+strconv.Itoa(100+i)] = strings.Repeat("v", i)
	}
	for _, tc := range []struct {
		name  string
		edit  func(*transport.Message)
		extra []string // the Extra keys in wire order
	}{
		{"envelope only", func(*transport.Message) {}, nil},
		{"empty extra value", func(m *transport.Message) { m.Headers.Extra = map[string]string{"b": "", "a": "x"} }, []string{"a", "b"}},
		{"past the inline room", func(m *transport.Message) { m.Headers.Extra = many }, sortedKeys(many)},
		{"dead letter counts", func(m *transport.Message) {
			m.Headers.RetryCount, m.Headers.BlobSize, m.Headers.DLQReason = 123456, 1<<40, "decode: bad"
		}, nil},
		{"no partition key", func(m *transport.Message) { m.Headers.PartitionKey = "" }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := base()
			tc.edit(&m)
			o, err := newOutgoing(s, &m)
			require.NoError(t, err)
			var want []envelope.Field
			m.Headers.Each(func(k, v string) { want = append(want, envelope.Field{Key: k, Value: v}) })
			copy(want[len(want)-len(tc.extra):], fieldsOf(tc.extra, m.Headers.Extra))
			want = append([]envelope.Field{{Key: HeaderSubtopic, Value: "XNAS.AAPL"}}, want...)
			wantKey := m.Headers.PartitionKey

			m = transport.Message{Topic: "reused", Payload: []byte("other"), Headers: envelope.Headers{MessageID: "reused", Extra: map[string]string{"a": "reused"}}}

			var got []envelope.Field
			for _, h := range o.rec.Headers {
				require.NotNil(t, h.Value, "header %s is null, not empty", h.Key)
				got = append(got, envelope.Field{Key: h.Key, Value: string(h.Value)})
			}
			assert.Equal(t, want, got)
			assert.Equal(t, wantKey, string(o.rec.Key))
			assert.NotNil(t, o.rec.Key, "an empty key, not a null one")
			assert.Equal(t, s.Prefix, o.rec.Topic)
			assert.Equal(t, "payload", string(o.rec.Value))
		})
	}
	t.Run("topic outside the stream", func(t *testing.T) {
		m := base()
		m.Topic = "ampy.dev.news.v1.x"
		_, err := newOutgoing(s, &m)
		assert.ErrorContains(t, err, "is not under ampy.dev.bars.v1")
	})
}

func sortedKeys(m map[string]string) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func fieldsOf(keys []string, extra map[string]string) []envelope.Field {
	var f []envelope.Field
	for _, k := range keys {
		f = append(f, envelope.Field{Key: k, Value: extra[k]})
	}
	return f
}
