package natsbinding

import (
	"bytes"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/runtime/envelope"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// FuzzParseHeaders: whatever headers a client writes on a message,
// parseHeaders never panics, and a message it reads cleanly survives a round
// trip through toNats unchanged (a dead letter loses nothing).
func FuzzParseHeaders(f *testing.F) {
	good := envelope.Headers{MessageID: envelope.NewMessageID(), SchemaFQDN: "ampy.bars.v1.BarBatch", SchemaVersion: "1.0.0",
		ContentType: envelope.ContentTypeProtobuf, ProducedAt: time.Unix(1, 5).UTC(), Producer: "p@h", Source: "s",
		Trace: envelope.NewTrace(), PartitionKey: "XNAS.AAPL", Extra: map[string]string{"x": "y"}}
	f.Add(wire(toNats(4, &transport.Message{Topic: "t", Headers: good}).Header))
	f.Add([]byte("message_id\x00a\x00message_id\x00b\x00retry_count\x00-1\x00Nats-Msg-Id\x00z\x00"))
	f.Add([]byte("\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := parseHeaders(unwire(data))
		if err != nil {
			return
		}
		again, err := parseHeaders(toNats(4, &transport.Message{Topic: "t", Headers: h}).Header)
		require.NoError(t, err, "the wire form of parsed headers parses")
		assert.Equal(t, h, again)
	})
}

// wire writes headers as key NUL value NUL pairs, the fuzzer's input form.
func wire(h nats.Header) []byte {
	var b bytes.Buffer
	for k, vs := range h {
		for _, v := range vs {
			b.WriteString(k + "\x00" + v + "\x00")
		}
	}
	return b.Bytes()
}

func unwire(data []byte) nats.Header {
	parts := bytes.Split(data, []byte{0})
	h := nats.Header{}
	for i := 0; i+1 < len(parts); i += 2 {
		k := string(parts[i])
		h[k] = append(h[k], string(parts[i+1]))
	}
	return h
}
