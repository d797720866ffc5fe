package kafkabinding

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ampyfin/ampy-bus/runtime/envelope"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// FuzzParseHeaders: whatever headers a client writes on a record,
// parseHeaders never panics, and a record it reads cleanly survives a round
// trip through toRecord unchanged (a dead letter loses nothing).
func FuzzParseHeaders(f *testing.F) {
	good := envelope.Headers{MessageID: envelope.NewMessageID(), SchemaFQDN: "ampy.bars.v1.BarBatch", SchemaVersion: "1.0.0",
		ContentType: envelope.ContentTypeProtobuf, ProducedAt: time.Unix(1, 5).UTC(), Producer: "p@h", Source: "s",
		Trace: envelope.NewTrace(), PartitionKey: "XNAS.AAPL", Extra: map[string]string{"x": "y"}}
	rec, err := toRecord(transport.Stream{Prefix: "ampy.dev.bars.v1"}, &transport.Message{Topic: "ampy.dev.bars.v1.XNAS.AAPL", Headers: good})
	require.NoError(f, err)
	f.Add(rec.Key, wire(rec.Headers))
	f.Add([]byte("k"), []byte("subtopic\x00A\x00subtopic\x00B\x00message_id\x00\x00message_id\x00x\x00retry_count\x00-1\x00"))
	f.Add([]byte(""), []byte("\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, key, data []byte) {
		hs := unwire(data)
		h, sub, err := parseHeaders(key, hs)
		if err != nil || sub == "" {
			return
		}
		rec, err := toRecord(transport.Stream{Prefix: "p"}, &transport.Message{Topic: "p." + sub, Headers: h})
		require.NoError(t, err)
		again, sub2, err := parseHeaders(rec.Key, rec.Headers)
		require.NoError(t, err, "the record form of parsed headers parses")
		assert.Equal(t, h, again)
		assert.Equal(t, sub, sub2)
	})
}

// wire writes headers as key NUL value NUL pairs, the fuzzer's input form.
func wire(hs []kgo.RecordHeader) []byte {
	var b bytes.Buffer
	for _, h := range hs {
		b.WriteString(h.Key)
		b.WriteByte(0)
		b.Write(h.Value)
		b.WriteByte(0)
	}
	return b.Bytes()
}

func unwire(data []byte) []kgo.RecordHeader {
	parts := bytes.Split(data, []byte{0})
	var hs []kgo.RecordHeader
	for i := 0; i+1 < len(parts); i += 2 {
		hs = append(hs, kgo.RecordHeader{Key: string(parts[i]), Value: parts[i+1]})
	}
	return hs
}
