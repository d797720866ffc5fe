package conformance

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/ampyfin/ampy-bus/generated/bars"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/blob"
	"github.com/ampyfin/ampy-bus/runtime/envelope"
	"github.com/ampyfin/ampy-bus/runtime/kafkabinding"
)

// headerCase names each hostile record, so its dead letter can be found.
const headerCase = "hostile_case"

// hostileRecord is a well-formed bars record that a case then breaks.
type hostileRecord struct {
	WireRecord
}

func (r *hostileRecord) set(k, v string) {
	for i, f := range r.Headers {
		if f.Key == k {
			r.Headers[i].Value = v
			return
		}
	}
	r.Headers = append(r.Headers, envelope.Field{Key: k, Value: v})
}

func (r *hostileRecord) del(k string) {
	for i, f := range r.Headers {
		if f.Key == k {
			r.Headers = append(r.Headers[:i], r.Headers[i+1:]...)
			return
		}
	}
}

func (r *hostileRecord) add(k, v string) {
	r.Headers = append(r.Headers, envelope.Field{Key: k, Value: v})
}

// gzipped is the payload compressed, with content_encoding set.
func (r *hostileRecord) gzipped(payload []byte) {
	r.Payload = ampybus.Gzip(payload)
	r.set(envelope.HeaderContentEncoding, envelope.EncodingGzip)
}

// bombSize is what the gzip bomb inflates to: 128 times the bars domain's
// max_inflated, from 540,160 bytes on the wire (under its max_payload).
const bombSize = 512 << 20

// bomb is bombSize of zeros as gzip members of 1 MiB each, one after
// another (a reader inflates them as one stream). Built from one compressed
// MiB, it costs nothing to make, even under -race on a busy machine.
var bomb = sync.OnceValue(func() []byte {
	member := ampybus.Gzip(make([]byte, 1<<20))
	return bytes.Repeat(member, bombSize>>20)
})

// hostileCase is one way a raw client gets a record wrong.
type hostileCase struct {
	name    string
	corrupt func(r *hostileRecord, blobs *blobFixture)
	// reason is what the dead letter's dlq_reason must contain.
	reason string
	// offContract cases name a topic outside the contract's shapes: a
	// broker that refuses them at the door (NATS) returns an error to the
	// writer instead, and nothing is stored.
	offContract bool
	// only names the binding a case applies to: what only a Kafka record
	// has (its key, the subtopic header) cannot be broken on NATS.
	only string
}

// blobFixture is the consumer's blob store and one real blob in it.
type blobFixture struct {
	dir, ref, hash string
	data           []byte
}

func (b *blobFixture) point(r *hostileRecord, ref, hash string, size int) {
	r.Payload = nil
	r.set(envelope.HeaderBlobRef, ref)
	r.set(envelope.HeaderBlobHash, hash)
	r.set(envelope.HeaderBlobSize, strconv.Itoa(size))
}

func hostileCases() []hostileCase {
	missing := func(h string) hostileCase {
		return hostileCase{name: "missing " + h, corrupt: func(r *hostileRecord, _ *blobFixture) { r.del(h) },
			reason: "contract_violation: header " + h + ": missing"}
	}
	value := func(name, h, v, reason string) hostileCase {
		return hostileCase{name: name, corrupt: func(r *hostileRecord, _ *blobFixture) { r.set(h, v) }, reason: reason}
	}
	payload := func(name string, p []byte, reason string) hostileCase {
		return hostileCase{name: name, corrupt: func(r *hostileRecord, _ *blobFixture) { r.Payload = p }, reason: reason}
	}
	good, _ := proto.Marshal(bar("AAPL", 1))
	wrongType, _ := proto.Marshal(order("co_1", 1))
	mixed := bar("AAPL", 1)
	mixed.Bars = append(mixed.Bars, bar("MSFT", 2).Bars...)
	mixedBatch, _ := proto.Marshal(mixed)
	// Payloads the generated UnmarshalVT alone would decode, and
	// proto.Unmarshal refuses: every consumer must refuse them as proto does.
	field := func(b []byte, num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), v)
	}
	goodBar, _ := proto.Marshal(bar("AAPL", 1).Bars[0])
	security := field(field(nil, 1, []byte("AA\xffPL")), 2, []byte("XNAS")) // SecurityId{symbol, mic}
	notUTF8 := field(nil, 1, field(goodBar, 1, security))                   // merged into the first: symbol AA\xffPL
	overlong := protowire.AppendTag(bytes.Clone(good), 15, protowire.VarintType)
	overlong = append(overlong, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02) // 65 bits
	// A tag whose field number wraps past int32 onto Bar.volume (9).
	wrapped := field(nil, 1, protowire.AppendVarint(protowire.AppendVarint(bytes.Clone(goodBar), (1<<32+9)<<3), 7))
	return []hostileCase{
		missing(envelope.HeaderMessageID),
		missing(envelope.HeaderSchemaFQDN),
		missing(envelope.HeaderSchemaVersion),
		missing(envelope.HeaderContentType),
		missing(envelope.HeaderProducedAt),
		missing(envelope.HeaderProducer),
		missing(envelope.HeaderSource),
		missing(envelope.HeaderRunID),
		missing(envelope.HeaderPartitionKey),
		{name: "missing traceparent", corrupt: func(r *hostileRecord, _ *blobFixture) { r.del(envelope.HeaderTraceparent) },
			reason: "contract_violation: header traceparent"},
		{name: "no headers at all", corrupt: func(r *hostileRecord, _ *blobFixture) {
			r.Headers = []envelope.Field{{Key: headerCase, Value: "no headers at all"}}
		}, reason: "contract_violation: header message_id: missing"},
		value("message_id not a UUID", envelope.HeaderMessageID, "order-1", "header message_id=\"order-1\": not a UUID"),
		value("message_id UUIDv4", envelope.HeaderMessageID, "0b7e0c2e-7d1a-4c1b-9d1e-0c2e7d1a4c1b", "UUID version 4"),
		value("produced_at not RFC 3339", envelope.HeaderProducedAt, "yesterday", "header produced_at=\"yesterday\": not UTC"),
		value("produced_at not UTC", envelope.HeaderProducedAt, "2025-09-05T19:31:01+02:00", "header produced_at=\"2025-09-05T19:31:01+02:00\": not UTC"),
		value("traceparent malformed", envelope.HeaderTraceparent, "00-xyz-01", "header traceparent=\"00-xyz-01\""),
		value("traceparent all-zero trace id", envelope.HeaderTraceparent, "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "header traceparent"),
		value("retry_count negative", envelope.HeaderRetryCount, "-3", "header retry_count=\"-3\": not a non-negative integer"),
		value("retry_count not a number", envelope.HeaderRetryCount, "many", "header retry_count=\"many\": not a non-negative integer"),
		value("content_encoding unknown", envelope.HeaderContentEncoding, "br", "header content_encoding=\"br\": only gzip is supported"),
		value("blob_size not a number", envelope.HeaderBlobSize, "big", "header blob_size=\"big\": not a non-negative integer"),
		{name: "legacy trace_id malformed", corrupt: func(r *hostileRecord, _ *blobFixture) {
			r.del(envelope.HeaderTraceparent)
			r.set(envelope.HeaderTraceID, "not-hex")
		}, reason: "header trace_id=\"not-hex\""},
		value("schema_fqdn of another type", envelope.HeaderSchemaFQDN, "ampy.orders.v1.OrderRequest", "schema_mismatch: schema_fqdn ampy.orders.v1.OrderRequest"),
		value("schema_hash differs at the same version", envelope.HeaderSchemaHash, "sha256:0000", "schema_hash_mismatch: produced against sha256:0000"),
		value("schema_version of another major", envelope.HeaderSchemaVersion, "2.0.0", "schema_mismatch: schema_version 2.0.0 is major 2"),
		value("schema_version not semver", envelope.HeaderSchemaVersion, "1.0", "contract_violation: schema_version \"1.0\" is not MAJOR.MINOR.PATCH"),
		value("content_type JSON", envelope.HeaderContentType, "application/json", "schema_mismatch: content_type application/json"),
		{name: "partition_key not the payload's", corrupt: func(r *hostileRecord, _ *blobFixture) {
			r.set(envelope.HeaderPartitionKey, "XNAS.MSFT")
			r.KafkaKey = "XNAS.MSFT" // the record key agrees with the lie
		}, reason: "contract_violation: partition_key \"XNAS.MSFT\", but the contract derives \"XNAS.AAPL\""},
		value("dedupe_key where the contract has none", envelope.HeaderDedupeKey, "fill-1", "contract_violation: dedupe_key \"fill-1\", but the contract derives none"),
		{name: "partition_key twice", corrupt: func(r *hostileRecord, _ *blobFixture) { r.add(envelope.HeaderPartitionKey, "XNAS.MSFT") },
			reason: "header partition_key: appears 2 times"},
		payload("a bar of the batch for another security", mixedBatch,
			"contract_violation: payload bars[1].security.symbol \"MSFT\" does not match subtopic {symbol} \"AAPL\""),
		payload("payload garbage", []byte("\xff\xfe\xfd not protobuf \x00\x01"), "decode_error: "),
		payload("payload truncated", good[:len(good)-3], "decode_error: "),
		payload("payload of another message type", wrongType, "decode_error: "),
		payload("payload string not UTF-8", notUTF8, "decode_error: "),
		payload("payload varint past 64 bits", overlong, "decode_error: "),
		payload("payload field number past int32", wrapped, "decode_error: "),
		{name: "gzip bomb", corrupt: func(r *hostileRecord, _ *blobFixture) {
			r.Payload = bomb()
			r.set(envelope.HeaderContentEncoding, envelope.EncodingGzip)
		}, reason: "decompression_limit: "},
		{name: "gzip bomb with a lying trailer", corrupt: func(r *hostileRecord, _ *blobFixture) {
			r.Payload = bytes.Clone(bomb())
			binary.LittleEndian.PutUint32(r.Payload[len(r.Payload)-4:], 100)
			r.set(envelope.HeaderContentEncoding, envelope.EncodingGzip)
		}, reason: "decompression_limit: "},
		{name: "gzip claimed, not gzip", corrupt: func(r *hostileRecord, _ *blobFixture) {
			r.set(envelope.HeaderContentEncoding, envelope.EncodingGzip)
		}, reason: "decode_error: gzip: "},
		{name: "gzip truncated", corrupt: func(r *hostileRecord, _ *blobFixture) {
			r.gzipped(good)
			r.Payload = r.Payload[:len(r.Payload)/2]
		}, reason: "decode_error: gzip: "},
		{name: "gzip of garbage", corrupt: func(r *hostileRecord, _ *blobFixture) {
			r.gzipped([]byte("\xff\xfe\xfd not protobuf"))
		}, reason: "decode_error: "},
		{name: "blob pointer to nowhere", corrupt: func(r *hostileRecord, b *blobFixture) {
			b.point(r, "file://"+filepath.Join(b.dir, strings.Repeat("0", 64)), b.hash, len(b.data))
		}, reason: "blob_error: get blob"},
		{name: "blob pointer outside the store", corrupt: func(r *hostileRecord, b *blobFixture) {
			b.point(r, "file:///etc/passwd", b.hash, len(b.data))
		}, reason: "blob_error: get blob \"file:///etc/passwd\": invalid blob reference: outside the store"},
		{name: "blob pointer climbing out of the store", corrupt: func(r *hostileRecord, b *blobFixture) {
			b.point(r, "file://"+b.dir+"/../"+filepath.Base(b.dir)+"/../secret", b.hash, len(b.data))
		}, reason: "blob_error: get blob"},
		{name: "blob pointer of another scheme", corrupt: func(r *hostileRecord, b *blobFixture) {
			b.point(r, "s3://bucket/key", b.hash, len(b.data))
		}, reason: "blob_error: get blob \"s3://bucket/key\": invalid blob reference"},
		{name: "blob pointer without its hash", corrupt: func(r *hostileRecord, b *blobFixture) {
			b.point(r, b.ref, b.hash, len(b.data))
			r.del(envelope.HeaderBlobHash)
		}, reason: "blob_ref, blob_hash and blob_size go together"},
		{name: "blob size lies", corrupt: func(r *hostileRecord, b *blobFixture) {
			b.point(r, b.ref, b.hash, len(b.data)-1)
		}, reason: "blob_hash_mismatch: "},
		{name: "blob hash lies", corrupt: func(r *hostileRecord, b *blobFixture) {
			b.point(r, b.ref, blob.Hash([]byte("other")), len(b.data))
		}, reason: "blob_hash_mismatch: "},
		{name: "blob size negative", corrupt: func(r *hostileRecord, b *blobFixture) {
			b.point(r, b.ref, b.hash, -5)
		}, reason: "header blob_size=\"-5\": not a non-negative integer"},
		{name: "blob size over max_inflated", corrupt: func(r *hostileRecord, b *blobFixture) {
			b.point(r, b.ref, b.hash, 1<<40)
		}, reason: "blob_error: blob_size 1099511627776 is over the domain's max_inflated"},
		{name: "header flood", corrupt: func(r *hostileRecord, _ *blobFixture) {
			for i := range 2000 {
				r.add("x-flood-"+strconv.Itoa(i), "1")
			}
		}, reason: "headers, over the limit of 64"},
		{name: "32 KiB of headers", corrupt: func(r *hostileRecord, _ *blobFixture) {
			r.add("x-big", strings.Repeat("a", 32<<10))
		}, reason: "bytes of header keys and values, over the limit of 16384"},
		{name: "subtopic with an extra token", corrupt: func(r *hostileRecord, _ *blobFixture) {
			r.Topic += ".extra"
		}, reason: "contract_violation: ", offContract: true},
		{name: "no subtopic", corrupt: func(r *hostileRecord, _ *blobFixture) {
			r.Topic = strings.TrimSuffix(r.Topic, ".XNAS.AAPL")
		}, reason: "header subtopic: missing", offContract: true},
		{name: "record key differs from partition_key", corrupt: func(r *hostileRecord, _ *blobFixture) {
			r.KafkaKey = "XNAS.MSFT"
		}, reason: "header record key=\"XNAS.MSFT\": differs from partition_key \"XNAS.AAPL\"", only: "kafka"},
		{name: "subtopic header twice", corrupt: func(r *hostileRecord, _ *blobFixture) {
			r.add(kafkabinding.HeaderSubtopic, "XNAS.MSFT")
		}, reason: "header subtopic: appears 2 times", only: "kafka"},
		{name: "subtopic header with a wildcard", corrupt: func(r *hostileRecord, _ *blobFixture) {
			r.Topic = strings.TrimSuffix(r.Topic, "AAPL") + "*"
		}, reason: "contract_violation: ", only: "kafka"},
		{name: "subtopic header with an empty token", corrupt: func(r *hostileRecord, _ *blobFixture) {
			r.Topic = strings.TrimSuffix(r.Topic, "AAPL")
		}, reason: "contract_violation: ", only: "kafka"},
	}
}

// testHostileWire writes every hostile case as a raw client would, then one
// good message. Each case ends as exactly one dead letter with its reason
// (or, for a topic outside the contract on a broker that refuses it, as an
// error to its writer), the consumer handles the good message after them,
// and its heap stays far below what the gzip bomb would inflate to.
func testHostileWire(t *testing.T, s *suite) {
	_ = bomb() // built before the clock and the heap watch start
	ctx := s.ctx(t)
	dir := t.TempDir()
	store, err := blob.NewFS(dir)
	require.NoError(t, err)
	real := []byte("a real blob")
	ref, err := store.Put(ctx, real)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(filepath.Dir(dir), "secret"), real, 0o600))
	blobs := &blobFixture{dir: dir, ref: ref, hash: blob.Hash(real), data: real}
	b := s.bus(t, ampybus.WithBlobStore(store))
	require.NoError(t, b.Ensure(ctx, bars.Domain))

	var handled atomic.Int64
	sub, err := bars.Subscribe(ctx, b, bars.All(), func(context.Context, *bars.Message) error {
		handled.Add(1)
		return nil
	}, ampybus.Durable("hostile"))
	require.NoError(t, err)
	defer sub.Stop()

	peak := watchHeap(t)
	good, err := proto.Marshal(bar("AAPL", 1))
	require.NoError(t, err)
	wire := s.binding.Wire(t, s.broker.URL())
	want := map[string]string{}
	for _, c := range hostileCases() {
		if c.only != "" && c.only != s.binding.Name {
			continue
		}
		r := &hostileRecord{WireRecord{Topic: "ampy.dev.bars.v1.XNAS.AAPL", Key: "XNAS.AAPL", Partitions: bars.Domain.Partitions, Payload: good}}
		h := envelope.Headers{
			MessageID: envelope.NewMessageID(), SchemaFQDN: bars.SchemaFQDN, SchemaVersion: bars.SchemaVersion,
			SchemaHash: bars.SchemaHash, ContentType: envelope.ContentTypeProtobuf, ProducedAt: time.Now().UTC(),
			Producer: "raw@wire", Source: "raw", RunID: "run_raw", Trace: envelope.NewTrace(), PartitionKey: "XNAS.AAPL",
			Extra: map[string]string{headerCase: c.name},
		}
		r.Headers = h.Fields()
		c.corrupt(r, blobs)
		err := wire.Write(ctx, r.WireRecord)
		if c.offContract && s.binding.RefusesOffContract {
			assert.Error(t, err, "%s: the broker stores a topic outside the contract", c.name)
			continue
		}
		require.NoError(t, err, c.name)
		want[c.name] = c.reason
	}
	require.GreaterOrEqual(t, len(want), 40, "hostile cases that end in the dead-letter queue")

	// The consumer still runs: a good message after all of them is handled.
	_, err = bars.NewPublisher(b).Publish(ctx, bars.MustSubtopic("XNAS", "AAPL"), bar("AAPL", 2))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return handled.Load() == 1 }, 30*time.Second, 10*time.Millisecond, "%+v", sub.Stats())

	dl := readDeadLetters(t, ctx, b, len(want))
	got := map[string][]string{}
	for _, m := range dl {
		name := m.Headers.Extra[headerCase]
		got[name] = append(got[name], m.Headers.DLQReason)
	}
	for name, reason := range want {
		if assert.Len(t, got[name], 1, "%s: dead letters", name) {
			assert.Contains(t, got[name][0], reason, name)
		}
	}
	assert.Len(t, dl, len(want), "no dead letter without its case")
	st := sub.Stats()
	assert.Equal(t, uint64(len(want)), st.DeadLettered, "%+v", st)
	assert.Equal(t, uint64(1), st.Handled, "%+v", st)
	// Other cases run alongside, so the bound is loose; an unbounded
	// inflate of the bomb alone would take bombSize.
	growth := peak()
	t.Logf("%d hostile records dead-lettered; peak heap growth %.1f MiB (the bomb inflates to %d MiB)", len(want), float64(growth)/(1<<20), bombSize>>20)
	assert.Less(t, growth, uint64(192<<20), "heap growth while consuming hostile input")
}

// watchHeap samples the heap until the test ends; the function it returns
// gives the highest growth over the heap when watching began.
func watchHeap(t *testing.T) func() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > base && ms.HeapAlloc-base > peak.Load() {
				peak.Store(ms.HeapAlloc - base)
			}
		}
	}()
	var once sync.Once
	finish := func() { once.Do(func() { close(stop); <-done }) }
	t.Cleanup(finish)
	return func() uint64 {
		finish()
		return peak.Load()
	}
}
