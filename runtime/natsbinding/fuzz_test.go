package natsbinding

import (
	"bytes"
	"encoding/json"
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
	f.Add(wire(toNats(&route{partitions: 4, stream: "AMPY_DEV_T"}, &transport.Message{Topic: "t", Headers: good}).Header))
	f.Add([]byte("message_id\x00a\x00message_id\x00b\x00retry_count\x00-1\x00Nats-Msg-Id\x00z\x00"))
	f.Add([]byte("\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := parseHeaders(unwire(data))
		if err != nil {
			return
		}
		again, err := parseHeaders(toNats(&route{partitions: 4, stream: "AMPY_DEV_T"}, &transport.Message{Topic: "t", Headers: h}).Header)
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

// FuzzParsePubAck: whatever a server answers to an async publish,
// parsePubAck never panics, and its fast path reads an ack exactly as
// encoding/json does.
func FuzzParsePubAck(f *testing.F) {
	for _, s := range []string{
		`{"stream":"AMPY_DEV_BARS_V1","seq":42}`,
		`{"stream":"AMPY_DEV_BARS_V1","seq":42,"duplicate":true}`,
		`{"stream":"S","domain":"hub","seq":1}`,
		`{"stream":"S","seq":7,"duplicate": true}`,
		`{"stream":"S","seq":01}`,
		`{"stream":"S\u0041","seq":1}`,
		`{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}`,
		`{"stream":"S","seq":18446744073709551616}`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ack, err := parsePubAck(data)
		fast, ok := parsePlainPubAck(string(data))
		if !ok {
			return
		}
		require.NoError(t, err)
		assert.Equal(t, fast, ack)
		var want struct {
			Stream    string `json:"stream"`
			Sequence  uint64 `json:"seq"`
			Duplicate bool   `json:"duplicate"`
		}
		require.NoError(t, json.Unmarshal(data, &want), "the fast path read %q, which is not JSON", data)
		assert.Equal(t, transport.PublishAck{Stream: want.Stream, Sequence: want.Sequence, Duplicate: want.Duplicate}, ack)
	})
}

// The forms nats-server writes take the fast path.
func TestServerAckFormsTakeTheFastPath(t *testing.T) {
	for in, want := range map[string]transport.PublishAck{
		`{"stream":"AMPY_DEV_BARS_V1","seq":42}`:                   {Stream: "AMPY_DEV_BARS_V1", Sequence: 42},
		`{"stream":"AMPY_DEV_BARS_V1","seq":42,"duplicate": true}`: {Stream: "AMPY_DEV_BARS_V1", Sequence: 42, Duplicate: true},
		`{"stream":"S","domain":"hub","seq":1}`:                    {Stream: "S", Sequence: 1},
	} {
		got, ok := parsePlainPubAck(in)
		assert.True(t, ok, in)
		assert.Equal(t, want, got, in)
	}
}
